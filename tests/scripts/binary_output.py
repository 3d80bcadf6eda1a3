"""Writes bytes that are not UTF-8 to stdout and stderr."""

import sys

sys.stdout.buffer.write(b"before \xff\xfe\x80 after\n")
sys.stderr.buffer.write(b"err \xc3\x28 end\n")
