#!/usr/bin/env python3
"""Takes its time, reporting progress: for watching, cancelling and timing out runs."""

# /// scriptrun
# description = "Sleeps in steps, printing progress (for cancel and timeout)"
# timeout = 600
# [parameters.seconds]
# type = "number"
# default = 5
# minimum = 0
# maximum = 3600
# ///
import json
import os
import time

seconds = float(json.loads(os.environ.get("SCRIPT_PARAMETERS") or "{}").get("seconds", 5))
start = time.monotonic()
step = 0
while time.monotonic() - start < seconds:
    step += 1
    print(f"step {step}: {time.monotonic() - start:.1f}/{seconds:g} s", flush=True)
    time.sleep(min(0.5, max(0.0, seconds - (time.monotonic() - start))))
print(
    json.dumps(
        {
            "status": "success",
            "message": f"slept {seconds:g} s",
            "data": {"seconds": seconds, "steps": step},
        }
    )
)
