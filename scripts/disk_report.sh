#!/usr/bin/env bash
# A shell script: reads its parameters from SCRIPT_PARAMETERS, prints a JSON result.
# /// scriptrun
# description = "Shell example: disk usage of a folder, as JSON"
# timeout = 30
# [parameters.path]
# type = "string"
# default = "/tmp"
# ///
set -euo pipefail
path=$(python3 -c 'import json,os; print(json.loads(os.environ.get("SCRIPT_PARAMETERS") or "{}").get("path", "/tmp"))' 2>/dev/null || echo /tmp)
echo "measuring ${path}" >&2
# du exits 1 when a file vanishes under it (a busy /tmp) but still prints the total: keep
# that, and never let a failing pipeline add a second number to the JSON.
kb=$(du -sk "$path" 2>/dev/null | cut -f1 | tail -n 1) || true
cat <<JSON
{"status": "success", "message": "disk usage of ${path}", "data": {"path": "${path}", "kilobytes": ${kb:-0}}, "metadata": {"script_name": "${SCRIPT_NAME:-disk_report}"}}
JSON
