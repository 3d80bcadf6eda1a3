"""Sends one malformed progress line, then a good one: the run goes on regardless."""

import os
import time

fd = int(os.environ["SCRIPTRUN_PROGRESS_FD"])
os.write(fd, b'{"done": "three"}\n')
os.write(fd, b'{"done": 2, "total": 4}\n')
time.sleep(0.3)
print("still fine")
