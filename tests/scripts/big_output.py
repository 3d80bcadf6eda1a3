"""Writes `mb` MiB to stdout and to stderr, then a JSON result."""

# /// scriptrun
# description = "Floods its output"
# [parameters.mb]
# type = "integer"
# default = 50
# ///
import json
import os
import sys

mb = json.loads(os.environ.get("SCRIPT_PARAMETERS") or "{}").get("mb", 50)
line = "x" * 1023 + "\n"
for _ in range(mb * 1024):
    sys.stdout.write(line)
    sys.stderr.write(line)
print(json.dumps({"status": "success", "message": "flooded", "data": mb}))
