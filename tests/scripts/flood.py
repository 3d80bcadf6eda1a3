"""Writes `mib` MiB to stdout as fast as it can, then a JSON result."""

# /// scriptrun
# description = "Floods stdout"
# [parameters.mib]
# type = "integer"
# default = 1024
# ///
import json
import os

mib = json.loads(os.environ["SCRIPT_PARAMETERS"]).get("mib", 1024)
block = b"y" * (1024 * 1024 - 1) + b"\n"
for _ in range(mib):
    os.write(1, block)
print(json.dumps({"status": "success", "data": mib}), flush=True)
