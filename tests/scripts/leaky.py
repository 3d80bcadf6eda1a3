"""Tries to leave traces for the next run: patches a preloaded module, sets a global,
writes an environment variable, and reports what it found from earlier runs."""

# /// scriptrun
# description = "Looks for and leaves traces between runs (warm runner isolation)"
# runner = "warm"
# ///
import json
import os
import sys

with open("/proc/self/environ", "rb") as f:
    environ_block = f.read()
found = {
    "patched_json": getattr(json, "scriptrun_mark", None),
    "env": os.environ.get("LEFT_BEHIND"),
    "modules_marked": "scriptrun_leaky_mark" in sys.modules,
    "environ_block_has_secret": b"hunter2" in environ_block,
}
json.scriptrun_mark = "left"
os.environ["LEFT_BEHIND"] = "yes"
sys.modules["scriptrun_leaky_mark"] = json
try:
    import numpy

    found["random"] = float(numpy.random.rand())
except ImportError:
    found["random"] = None
print(json.dumps({"status": "success", "data": found}))
