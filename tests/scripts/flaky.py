"""Fails with EX_TEMPFAIL (75: 'retry me') until its counter file reaches `succeed_on`."""

# /// scriptrun
# description = "Fails, asking for a retry, until the given attempt"
# retries = 3
# [parameters.counter]
# type = "string"
# required = true
# [parameters.succeed_on]
# type = "integer"
# default = 2
# ///
import json
import os
import sys
from pathlib import Path

p = json.loads(os.environ["SCRIPT_PARAMETERS"])
counter = Path(p["counter"])
n = int(counter.read_text()) + 1 if counter.exists() else 1
counter.write_text(str(n))
if os.environ.get("SCRIPTRUN_OUTPUT_DIR"):  # each attempt leaves a file of its own
    Path(os.environ["SCRIPTRUN_OUTPUT_DIR"], f"attempt-{n}.txt").write_text(str(n))
if n < p["succeed_on"]:
    print(f"attempt {n}: not yet", file=sys.stderr)
    sys.exit(75)
print(json.dumps({"status": "success", "message": f"succeeded on attempt {n}", "data": n}))
