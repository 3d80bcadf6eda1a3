"""Reports `steps` steps of progress, `pause` seconds apart, then prints its result."""

# /// scriptrun
# description = "Counts steps, reporting progress"
# [parameters.steps]
# type = "integer"
# default = 10
# [parameters.pause]
# type = "number"
# default = 0.3
# ///
import json
import os
import time

from jupyter_scriptrun.script import progress

params = json.loads(os.environ.get("SCRIPT_PARAMETERS") or "{}")
steps, pause = params.get("steps", 10), params.get("pause", 0.3)
for i in range(steps):
    time.sleep(pause)
    progress(i + 1, steps, f"step {i + 1}")
print(json.dumps({"status": "success", "data": {"steps": steps}}))
