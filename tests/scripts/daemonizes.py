"""Leaves a daemon behind: double fork, setsid, then the script exits at once. The daemon
writes its pid to ``pidfile`` and sleeps; with ``linger`` the script itself waits too."""

# /// scriptrun
# description = "A script that leaves a daemon (double fork and setsid)"
# timeout = 120
# [parameters.pidfile]
# type = "string"
# required = true
# [parameters.linger]
# type = "number"
# default = 0
# ///
import json
import os
import sys
import time

params = json.loads(os.environ["SCRIPT_PARAMETERS"])
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        with open(params["pidfile"], "w") as f:
            f.write(str(os.getpid()))
        time.sleep(600)
        os._exit(0)
    os._exit(0)
deadline = time.monotonic() + 10
while not os.path.exists(params["pidfile"]) and time.monotonic() < deadline:
    time.sleep(0.01)
time.sleep(params["linger"])
print(json.dumps({"status": "success", "data": "daemon left"}))
sys.exit(0)
