"""Runs a notebook as a run's child process, with papermill:

    python -m jupyter_scriptrun.execution.notebook NOTEBOOK

The script contract holds: ``SCRIPT_PARAMETERS`` are injected after the cell tagged
``parameters`` (papermill's way), and the kernel inherits the environment, so the notebook
reads ``PAGE_CONTEXT``, ``EXECUTION_ID`` … and gives its result with
``jupyter_scriptrun.script.result()``. Progress is cells done of cells to run, on the
progress channel. The executed notebook is written to ``SCRIPTRUN_OUTPUT_DIR`` under the
notebook's own name, so it is kept with the run, also when a cell fails. A failing cell
ends the run failed with the cell's number, error type, message and traceback.

The kernel is the notebook's kernelspec when this machine has it, else this Python's own
(``python3``), and the run's message says which.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from jupyter_scriptrun.contract.protocol import OUTPUT_DIR_ENV
from jupyter_scriptrun.script import RESULT_FILE_ENV, progress, result

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
ENGINE = "scriptrun"


def choose_kernel(notebook: dict[str, Any]) -> tuple[str, str]:
    """(kernel name, why): the notebook's kernelspec if installed here, else python3."""
    from jupyter_client.kernelspec import KernelSpecManager

    wanted = notebook.get("metadata", {}).get("kernelspec", {}).get("name")
    available = KernelSpecManager().find_kernel_specs()
    if wanted and wanted in available:
        return wanted, f"the notebook's kernel {wanted!r}"
    if wanted:
        return "python3", f"the worker's Python (the notebook's kernel {wanted!r} is not here)"
    return "python3", "the worker's Python (the notebook names no kernel)"


def _language(notebook: dict[str, Any], kernel: str) -> str:
    """The language papermill writes the parameters in (it refuses a notebook that names
    none): the notebook's own on its own kernel, else Python's (the worker's Python)."""
    metadata = notebook.get("metadata", {})
    if metadata.get("kernelspec", {}).get("name") != kernel:
        return "python"  # it runs on this Python instead of the kernel it names
    spec_language = metadata.get("kernelspec", {}).get("language")
    return spec_language or metadata.get("language_info", {}).get("name") or "python"


def _register_engine() -> None:
    """papermill's nbclient engine, reporting each cell done on the progress channel."""
    from papermill.engines import NBClientEngine, papermill_engines

    class ProgressEngine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(cls, nb_man: Any, kernel_name: str, **kwargs: Any) -> Any:
            cells = [c for c in nb_man.nb.cells if c.cell_type == "code"]
            done = 0
            original = nb_man.cell_complete

            def cell_complete(cell: Any, cell_index: int | None = None, **kw: Any) -> Any:
                nonlocal done
                answer = original(cell, cell_index=cell_index, **kw)
                if cell.cell_type == "code":
                    done += 1
                    progress(done, len(cells), f"cell {done} of {len(cells)}")
                return answer

            nb_man.cell_complete = cell_complete
            progress(0, len(cells), f"starting the kernel ({len(cells)} cells)")
            return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)

    papermill_engines.register(ENGINE, ProgressEngine)


def run(path: Path) -> int:
    """Execute the notebook at ``path``; the exit code."""
    from jupyter_scriptrun.schemas import load_jsonschema

    load_jsonschema()  # before nbformat imports it: ~1 s less per run (see schemas.py)
    import papermill
    from papermill.exceptions import PapermillExecutionError
    from traitlets.config import Config

    notebook = json.loads(path.read_text(encoding="utf-8"))
    params = json.loads(os.environ.get("SCRIPT_PARAMETERS") or "{}")
    out = Path(os.environ.get(OUTPUT_DIR_ENV) or ".") / path.name
    kernel, why = choose_kernel(notebook)
    print(f"kernel: {kernel} ({why})", file=sys.stderr, flush=True)
    _register_engine()
    try:
        papermill.execute_notebook(
            str(path),
            str(out),
            parameters=params,
            kernel_name=kernel,
            language=_language(notebook, kernel),
            engine_name=ENGINE,
            progress_bar=False,
            cwd=os.getcwd(),
            # Over local sockets in the run's folder, not TCP ports: nothing to listen on
            # the network, and no "running over TCP without encryption" in every run's log.
            config=Config({"KernelManager": {"transport": "ipc", "ip": "kernel"}}),
        )
    except PapermillExecutionError as exc:
        cell = _code_cell_number(out, exc.exec_count, exc.cell_index)
        trace = ANSI.sub("", "\n".join(exc.traceback or ()))
        print(trace, file=sys.stderr)
        result(
            {
                "status": "error",
                "error_type": exc.ename,
                "message": f"cell {cell}: {exc.ename}: {exc.evalue}",
                "traceback": trace,
                "data": {"cell": cell, "notebook": out.name, "kernel": kernel},
            }
        )
        return 1
    result_file = os.environ.get(RESULT_FILE_ENV)
    if not result_file or not os.path.exists(result_file):  # the notebook gave none
        result(
            {
                "status": "success",
                "message": f"{out.name} executed on {why}",
                "data": {"notebook": out.name, "kernel": kernel},
            }
        )
    return 0


def _code_cell_number(executed: Path, count: int | None, index: int) -> int:
    """Which code cell of the user's notebook failed, 1-based: the one the executed
    notebook ran as ``In [count]``, counted without the injected parameters cell (nor the
    error note papermill puts on top)."""
    try:
        cells = json.loads(executed.read_text(encoding="utf-8"))["cells"]
    except (OSError, ValueError, KeyError):
        return index + 1
    number = 0
    for cell in cells:
        if cell.get("cell_type") != "code":
            continue
        if "injected-parameters" not in cell.get("metadata", {}).get("tags", []):
            number += 1
        if count is not None and cell.get("execution_count") == count:
            return number
    return index + 1


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m jupyter_scriptrun.execution.notebook NOTEBOOK", file=sys.stderr)
        return 2
    return run(Path(argv[1]))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
