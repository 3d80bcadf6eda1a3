#!/usr/bin/env python3
"""Works through items one by one, reporting progress: a bar with the time left in a notebook."""

# /// scriptrun
# description = "Processes items one by one, reporting its progress"
# timeout = 600
# [parameters.items]
# type = "integer"
# default = 20
# minimum = 1
# maximum = 10000
# description = "How many items to process"
# [parameters.pause]
# type = "number"
# default = 0.25
# minimum = 0
# maximum = 10
# description = "Seconds of work per item"
# ///
import json
import os
import time

try:
    from jupyter_scriptrun.script import track
except ImportError:  # somewhere without the package: the same work, no progress reports

    def track(items, total=None, message=None):
        return items


params = json.loads(os.environ.get("SCRIPT_PARAMETERS") or "{}")
count, pause = int(params.get("items", 20)), float(params.get("pause", 0.25))
total = 0
for n in track(range(1, count + 1), message="processing"):
    time.sleep(pause)
    total += n * n
print(json.dumps({"status": "success", "data": {"items": count, "sum_of_squares": total}}))
