#!/usr/bin/env python3
"""Returns a table (a list of records): its data loads as a DataFrame."""

# /// scriptrun
# description = "Returns a table of squares and cubes (data loads as a DataFrame)"
# [parameters.rows]
# type = "integer"
# default = 10
# minimum = 1
# maximum = 100000
# ///
import json
import os

rows = int(json.loads(os.environ.get("SCRIPT_PARAMETERS") or "{}").get("rows", 10))
data = [{"n": n, "square": n * n, "cube": n**3} for n in range(1, rows + 1)]
print(json.dumps({"status": "success", "message": f"{rows} rows", "data": data}))
