"""Writes its pid to `pidfile`, then sleeps without a word (no pipe write to die on)."""

# /// scriptrun
# description = "Sleeps silently"
# [parameters.pidfile]
# type = "string"
# ///
import json
import os
import time

with open(json.loads(os.environ["SCRIPT_PARAMETERS"])["pidfile"], "w") as f:
    f.write(str(os.getpid()))
time.sleep(120)
