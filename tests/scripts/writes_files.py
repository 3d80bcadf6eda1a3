"""Writes files into its output folder: a table, an image, a subfolder; on request links
out of the folder, a FIFO, a sparse file of big_mb MiB, then fails or sleeps. Gives its
result through script.result() after printing chatter that is not JSON."""

# /// scriptrun
# description = "Writes files to keep"
# additional_parameters = true
# ///
import json
import os
import struct
import time
import zlib

from jupyter_scriptrun.script import result

params = json.loads(os.environ.get("SCRIPT_PARAMETERS") or "{}")
out = os.environ["SCRIPTRUN_OUTPUT_DIR"]
os.makedirs(os.path.join(out, "tables"))
with open(os.path.join(out, "tables", "out.csv"), "w") as f:
    f.write("x,y\n1,2\n3,4\n")


def png(width: int, height: int) -> bytes:
    """A red square as a real PNG (no library)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + b"\xd0\x30\x30\xff" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


PNG = png(16, 16)
with open(os.path.join(out, "plot.png"), "wb") as f:
    f.write(PNG)
with open(os.path.join(out, "notes.txt"), "w") as f:
    f.write(params.get("note", "hello") * int(params.get("repeat", 1)))
if params.get("links"):
    os.symlink("/etc/hostname", os.path.join(out, "escape.txt"))
    os.symlink("/etc", os.path.join(out, "etc"))
    os.mkfifo(os.path.join(out, "pipe"))
if params.get("big_mb"):
    with open(os.path.join(out, "big.bin"), "wb") as f:
        f.truncate(int(params["big_mb"]) * 1024 * 1024)  # sparse: no disk, no time
print("some chatter that is not the result")
result({"status": "success", "data": {"written": sorted(os.listdir(out))}})
if params.get("fail"):
    raise RuntimeError("failed after writing its files")
time.sleep(float(params.get("sleep", 0)))
