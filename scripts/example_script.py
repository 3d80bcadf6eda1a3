#!/usr/bin/env python3
"""The seed's example script, in English: shows every feature of the script contract.
(The seed's own template, verbatim, runs too: tests/scripts/seed_template.py.)

Runs on its own too:
    SCRIPT_PARAMETERS='{"message": "Hi", "multiplier": 3}' python example_script.py
"""

# /// scriptrun
# description = "Repeats a message: parameters, a delay, a JSON result (the seed's example)"
# timeout = 60
# [parameters.message]
# type = "string"
# default = "Hello World!"
# description = "The text to repeat"
# [parameters.multiplier]
# type = "integer"
# default = 2
# minimum = 1
# maximum = 1000
# description = "How many times"
# [parameters.delay]
# type = "number"
# default = 0
# minimum = 0
# maximum = 30
# description = "Seconds to sleep first (to watch a run in progress)"
# ///
import json
import os
import sys
import time
from datetime import datetime


def get_script_parameters():
    """The parameters, from the environment."""
    try:
        params_str = os.environ.get("SCRIPT_PARAMETERS", "{}")
        return json.loads(params_str)
    except json.JSONDecodeError:
        return {}


def process_data(parameters):
    message = parameters.get("message", "Hello World!")
    multiplier = int(parameters.get("multiplier", 2))
    delay = float(parameters.get("delay", 0))
    if multiplier < 1:
        raise ValueError("multiplier must be at least 1")
    if delay:
        print(f"sleeping {delay} s", file=sys.stderr)
        time.sleep(delay)
    return {
        "original_message": message,
        "multiplied_message": " ".join([message] * multiplier),
        "multiplier": multiplier,
        "length": len(message) * multiplier,
    }


def main():
    try:
        parameters = get_script_parameters()
        page_context = os.environ.get("PAGE_CONTEXT", "unknown")
        script_name = os.environ.get("SCRIPT_NAME", "unknown")
        result = process_data(parameters)
        output = {
            "status": "success",
            "message": "Executed successfully",
            "data": result,
            "metadata": {
                "script_name": script_name,
                "page_context": page_context,
                "execution_id": os.environ.get("EXECUTION_ID"),
                "execution_time": datetime.now().isoformat(),
            },
        }
        print(json.dumps(output, ensure_ascii=False, indent=2))
    except Exception as e:
        error_output = {"status": "error", "message": str(e), "error_type": type(e).__name__}
        print(json.dumps(error_output, ensure_ascii=False))
        sys.exit(1)


if __name__ == "__main__":
    main()
