#!/usr/bin/env python3
"""The seed's former Celery task, turned into a standalone script: logs, then a result."""

# /// scriptrun
# description = "A former Celery task as a standalone script: prints log lines, then JSON"
# [parameters.count]
# type = "integer"
# default = 3
# minimum = 0
# maximum = 10000
# ///
import json
import os
from datetime import datetime


def main():
    try:
        params = json.loads(os.environ.get("SCRIPT_PARAMETERS", "{}"))
    except json.JSONDecodeError:
        params = {}
    count = int(params.get("count", 3))
    for i in range(count):
        print(f"print test line {i + 1}/{count}")
    print(
        json.dumps(
            {
                "status": "success",
                "message": f"printed {count} lines",
                "data": {"lines": count},
                "metadata": {
                    "script_name": os.environ.get("SCRIPT_NAME"),
                    "execution_time": datetime.now().isoformat(),
                },
            },
            ensure_ascii=False,
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
