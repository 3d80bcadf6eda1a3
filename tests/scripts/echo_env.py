"""Prints its whole environment as the result's data (for the allowlist tests)."""

# /// scriptrun
# description = "Echoes its environment"
# additional_parameters = true
# ///
import json
import os

print(json.dumps({"status": "success", "message": "env", "data": dict(os.environ)}))
