#!/usr/bin/env python3
"""Fails on purpose, in the two ways a script can: the seed's error JSON, or a crash."""

# /// scriptrun
# description = "Fails on purpose: mode 'json' (the seed's error output) or 'crash' (a traceback)"
# [parameters.mode]
# type = "string"
# enum = ["json", "crash"]
# default = "json"
# ///
import json
import os
import sys

params = json.loads(os.environ.get("SCRIPT_PARAMETERS") or "{}")
if params.get("mode") == "crash":
    {}["missing key"]  # an uncaught exception: traceback on stderr, exit code 1
try:
    raise ValueError("invalid input")
except ValueError as e:
    print(
        json.dumps(
            {"status": "error", "message": str(e), "error_type": type(e).__name__},
            ensure_ascii=False,
        )
    )
    sys.exit(1)
