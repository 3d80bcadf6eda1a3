"""Burns CPU for `seconds` (for the CPU-time measurement)."""

# /// scriptrun
# [parameters.seconds]
# type = "number"
# default = 0.5
# ///
import json
import os
import time

seconds = json.loads(os.environ.get("SCRIPT_PARAMETERS") or "{}").get("seconds", 0.5)
end = time.process_time() + seconds
x = 0
while time.process_time() < end:
    x += 1
print(json.dumps({"status": "success", "data": x}))
