"""Holds `mb` MiB for a moment, then reports."""

# /// scriptrun
# description = "Allocates memory"
# [parameters.mb]
# type = "integer"
# default = 200
# ///
import json
import os
import time

mb = json.loads(os.environ.get("SCRIPT_PARAMETERS") or "{}").get("mb", 200)
block = bytearray(mb * 1024 * 1024)
for i in range(0, len(block), 4096):
    block[i] = 1
time.sleep(0.3)
print(json.dumps({"status": "success", "data": len(block)}))
