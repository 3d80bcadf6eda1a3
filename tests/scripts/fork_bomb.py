"""Forks `children` sleeping children (each ignoring SIGTERM), then sleeps."""

# /// scriptrun
# description = "Forks many children that ignore SIGTERM"
# [parameters.children]
# type = "integer"
# default = 200
# [parameters.pidfile]
# type = "string"
# ///
import json
import os
import signal
import time

params = json.loads(os.environ["SCRIPT_PARAMETERS"])
signal.signal(signal.SIGTERM, signal.SIG_IGN)
pids = []
for _ in range(params["children"]):
    pid = os.fork()
    if pid == 0:
        time.sleep(120)
        os._exit(0)
    pids.append(pid)
with open(params["pidfile"], "w") as f:
    f.write(" ".join(map(str, pids)))
print(f"forked {len(pids)}", flush=True)
time.sleep(120)
