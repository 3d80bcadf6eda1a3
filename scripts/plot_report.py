#!/usr/bin/env python3
"""Writes a CSV table and a plot of it to its output folder: both are kept with the run."""

# /// scriptrun
# description = "Writes squares.csv and plot.png (kept with the run: see run.files())"
# [parameters.rows]
# type = "integer"
# default = 20
# minimum = 1
# maximum = 10000
# ///
import csv
import json
import os

from jupyter_scriptrun.script import result

rows = int(json.loads(os.environ.get("SCRIPT_PARAMETERS") or "{}").get("rows", 20))
# Run on its own, it writes beside itself, into ./output.
out = os.environ.get("SCRIPTRUN_OUTPUT_DIR") or os.path.join(os.getcwd(), "output")
os.makedirs(out, exist_ok=True)
table = [{"n": n, "square": n * n} for n in range(1, rows + 1)]
with open(os.path.join(out, "squares.csv"), "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=["n", "square"])
    writer.writeheader()
    writer.writerows(table)
written = ["squares.csv"]
try:
    import matplotlib

    matplotlib.use("Agg")  # no display on a worker
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(5, 3))
    axes.plot([r["n"] for r in table], [r["square"] for r in table], marker="o")
    axes.set(xlabel="n", ylabel="n²", title=f"{rows} squares")
    figure.tight_layout()
    figure.savefig(os.path.join(out, "plot.png"), dpi=100)
    written.append("plot.png")
    note = f"{rows} rows, plotted"
except ImportError:
    note = f"{rows} rows (no plot: matplotlib is not installed on the worker)"
result({"status": "success", "message": note, "data": {"files": written}})
