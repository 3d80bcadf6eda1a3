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

    python -m jupyter_scriptrun.execution.notebook --standby

is the warm runner's way (``execution/standby.py``): the child starts before its run is
known, imports papermill, starts a ``python3`` kernel and connects to it, then waits for
its run on stdin (one JSON line: argv, env, cwd, memory limit). The run then costs only
its cells: the kernel takes the run's environment, folder and id before any cell runs, is
used for this one run and ends with it, like a fresh one.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from jupyter_scriptrun.contract.protocol import OUTPUT_DIR_ENV
from jupyter_scriptrun.script import PROGRESS_FD_ENV, RESULT_FILE_ENV, progress, result

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
ENGINE = "scriptrun"
STANDBY_KERNEL = "python3"
"""The kernel a standby starts: the worker's own Python (a notebook asking for another
kernel starts it when its run comes, as a fresh run does)."""


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


def _channel() -> tuple[int, ...]:
    """The progress channel's descriptor, for the kernel to inherit (none: standalone)."""
    value = os.environ.get(PROGRESS_FD_ENV, "")
    return (int(value),) if value.isdigit() else ()


def _register_engine() -> None:
    """papermill's nbclient engine, reporting each cell done on the progress channel."""
    from papermill.engines import NBClientEngine, papermill_engines

    class ProgressEngine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(cls, nb_man: Any, kernel_name: str, **kwargs: Any) -> Any:
            kernel = kwargs.pop("ready_kernel", None)
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
            if kernel is None:
                progress(0, len(cells), f"starting the kernel ({len(cells)} cells)")
            return cls._execute(kernel, nb_man, kernel_name, **kwargs)

        @classmethod
        def _execute(
            cls,
            kernel: Kernel | None,
            nb_man: Any,
            kernel_name: str,
            log_output: bool = False,
            stdout_file: Any = None,
            stderr_file: Any = None,
            start_timeout: float = 60,
            execution_timeout: float | None = None,
            **kwargs: Any,
        ) -> Any:
            """As papermill's own, with two differences: the kernel inherits the progress
            channel (a cell can call ``progress()``), and on a ready kernel (a standby's)
            nbclient starts neither kernel nor client (a new client alone waits 0.2 s
            for its IOPub to settle)."""
            from papermill.clientwrap import PapermillNotebookClient
            from papermill.engines import logger

            for name in ("input_path", "timeout", "startup_timeout"):
                kwargs.pop(name, None)
            client = PapermillNotebookClient(
                nb_man,
                km=None if kernel is None else kernel.km,
                kernel_name=kernel_name,
                log=logger,
                log_output=log_output,
                stdout_file=stdout_file,
                stderr_file=stderr_file,
                startup_timeout=start_timeout,
                timeout=execution_timeout,
                **kwargs,
            )
            if kernel is None:
                return client.execute(pass_fds=_channel())
            client.kc = kernel.kc
            return client.execute()

    papermill_engines.register(ENGINE, ProgressEngine)


def _import_papermill() -> None:
    from jupyter_scriptrun.schemas import load_jsonschema

    load_jsonschema()  # before nbformat imports it: ~1 s less per run (see schemas.py)
    import papermill  # noqa: F401


def _kernel_config(folder: str) -> Any:
    from traitlets.config import Config

    # Over local sockets in the run's folder, not TCP ports: nothing to listen on the
    # network, and no "running over TCP without encryption" in every run's log.
    return Config({"KernelManager": {"transport": "ipc", "ip": os.path.join(folder, "kernel")}})


def run(path: Path, ready: Kernel | None = None) -> int:
    """Execute the notebook at ``path`` (on ``ready``, a standby's kernel, when it is the
    kernel the notebook runs on); the exit code."""
    _import_papermill()
    import papermill
    from papermill.exceptions import PapermillExecutionError

    notebook = json.loads(path.read_text(encoding="utf-8"))
    params = json.loads(os.environ.get("SCRIPT_PARAMETERS") or "{}")
    out = Path(os.environ.get(OUTPUT_DIR_ENV) or ".") / path.name
    kernel, why = choose_kernel(notebook)
    print(f"kernel: {kernel} ({why})", file=sys.stderr, flush=True)
    _register_engine()
    extra = {"ready_kernel": ready} if ready is not None and kernel == ready.name else {}
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
            config=_kernel_config(os.getcwd()),
            **extra,
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


class Kernel:
    """A kernel started before its run is known, with its client connected and ready."""

    def __init__(self, folder: str, name: str = STANDBY_KERNEL) -> None:
        from jupyter_client.manager import AsyncKernelManager
        from jupyter_core.utils import run_sync

        self.name = name
        self.km = AsyncKernelManager(kernel_name=name, config=_kernel_config(folder))
        run_sync(self.km.start_kernel)(cwd=folder, pass_fds=_channel())
        self.kc = self.km.client()
        self.kc.start_channels()
        run_sync(self.kc.wait_for_ready)(timeout=60)
        self.kc.allow_stdin = False

    @property
    def pid(self) -> int | None:
        process = getattr(self.km.provisioner, "process", None)
        return None if process is None else process.pid

    def enter(self, env: dict[str, str], cwd: str, memory_limit_mb: float | None) -> None:
        """Give the kernel its run before any cell runs: the run's id over its environment
        block's placeholder (so its daemons are told by their run), then the run's
        environment, folder and memory limit."""
        from jupyter_core.utils import run_sync

        if memory_limit_mb and self.pid is not None:
            limit = int(memory_limit_mb * 2**20)
            resource.prlimit(self.pid, resource.RLIMIT_AS, (limit, limit))
        code = (
            "from jupyter_scriptrun.execution.runtag import tag_process as _tag\n"
            f"_tag({env.get('EXECUTION_ID', '')!r})\n"
            "import os as _os\n"
            f"_os.environ.clear(); _os.environ.update({env!r}); _os.chdir({cwd!r})\n"
            "del _os, _tag\n"
        )
        reply = run_sync(self.kc.execute_interactive)(
            code, silent=True, store_history=False, timeout=30
        )
        if reply["content"]["status"] != "ok":
            raise RuntimeError(f"the kernel did not take its run: {reply['content']}")

    def stop(self) -> None:
        """End the kernel now: asked first, killed if it lingers (it served one run)."""
        self.kc.stop_channels()
        process = getattr(self.km.provisioner, "process", None)
        if process is not None:
            with contextlib.suppress(OSError):
                process.terminate()
            try:
                process.wait(timeout=2)
            except Exception:
                with contextlib.suppress(OSError):
                    process.kill()
                process.wait()
        from jupyter_core.utils import run_sync

        with contextlib.suppress(Exception):
            run_sync(self.km.cleanup_resources)()


def standby() -> int:
    """Get ready (papermill imported, a kernel started and connected), wait for the run on
    stdin, run it; the exit code (0 with no run: the worker let the standby go)."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    folder = tempfile.mkdtemp(prefix="scriptrun-standby-")
    kernel, problem = None, None
    try:
        _import_papermill()
        import nbformat

        nbformat.validate(nbformat.v4.new_notebook())  # compiles the validator, once
        try:
            kernel = Kernel(folder)
        except Exception as exc:  # the run still goes: on a kernel started for it
            problem = f"standby kernel: {type(exc).__name__}: {exc}"
        line = sys.stdin.buffer.readline()
        if not line:
            return 0
        request = json.loads(line)
        with open(os.devnull, "rb") as null:
            os.dup2(null.fileno(), 0)
        from jupyter_scriptrun.execution.runtag import tag_process

        tag_process(request["env"].get("EXECUTION_ID", ""))
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        if problem:
            print(f"{problem} (started a kernel for the run instead)", file=sys.stderr)
        elif kernel is not None:
            kernel.enter(request["env"], request["cwd"], request.get("memory_limit_mb"))
        return run(Path(request["argv"][-1]), kernel)
    finally:
        if kernel is not None:
            kernel.stop()
        shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str]) -> int:
    if argv[1:] == ["--standby"]:
        return standby()
    if len(argv) != 2:
        print("usage: python -m jupyter_scriptrun.execution.notebook NOTEBOOK", file=sys.stderr)
        return 2
    return run(Path(argv[1]))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
