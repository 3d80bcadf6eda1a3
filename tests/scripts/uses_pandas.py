"""Imports pandas and builds a small frame (the warm runner's preload case)."""

# /// scriptrun
# description = "Imports pandas (warm vs fresh start-up)"
# ///
import json

import pandas as pd

frame = pd.DataFrame({"n": range(5)})
print(json.dumps({"status": "success", "data": {"sum": int(frame["n"].sum())}}))
