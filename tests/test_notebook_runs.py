"""A notebook in the scripts path is a script: its parameters cell declares and defaults
its parameters, papermill runs it in the worker's child process with the script contract,
progress is cells done, a failing cell fails the run with the cell's number, and a
timeout leaves no kernel behind. The executed notebook is kept as one of the run's files."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable

import pytest
from conftest import WorkerProcess, pid_alive, scriptrun_cli, wait_until

from jupyter_scriptrun.config import Settings
from jupyter_scriptrun.exceptions import InvalidParameters
from jupyter_scriptrun.service.client import Client
from jupyter_scriptrun.service.handle import Execution
from jupyter_scriptrun.status import ExecutionStatus


def test_a_notebook_is_listed_as_a_script_with_its_parameters_cell(client: Client):
    script = client.script("nb_squares")
    assert script.description == "Squares numbers in a notebook; gives them as its result"
    assert script.meta.schema["properties"] == {
        "n": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 3},
        "label": {"type": "string", "default": "squares"},  # from the cell's assignment
    }
    assert script.meta.schema["additionalProperties"] is False
    assert script.command()[:3] == [sys.executable, "-m", "jupyter_scriptrun.execution.notebook"]


def test_a_notebook_runs_with_its_parameters_and_keeps_the_executed_notebook(client: Client):
    run = client.run("nb_squares", {"n": 5}, page_context="a-notebook", timeout=120)
    assert run.status is ExecutionStatus.SUCCEEDED, run.record()["message"]
    # The notebook's own result() call gives the result; the contract's variables reached
    # the kernel.
    assert run.data == {"squares": [1, 4, 9, 16, 25], "context": "a-notebook", "id": run.id}
    assert run.record()["message"] == "squares"
    progress = run.record()["progress"]
    assert progress["done"] == progress["total"] == 4  # 3 cells and the injected parameters
    files = {f["name"]: f for f in run.files()}
    assert files["nb_squares.ipynb"]["media_type"] == "application/x-ipynb+json"
    executed = json.loads(run.read_file("nb_squares.ipynb"))
    printed = [
        "".join(out.get("text", ""))
        for cell in executed["cells"]
        for out in cell.get("outputs", [])
        if out.get("name") == "stdout"
    ]
    assert printed == ["squares [1, 4, 9, 16, 25]\n"]
    assert "injected-parameters" in executed["cells"][2]["metadata"]["tags"]
    page = run.notebook_html()
    assert "<html" in page and "squares [1, 4, 9, 16, 25]" in page
    card = run._repr_html_()
    assert "<iframe sandbox srcdoc=" in card and "nb_squares.ipynb" in card


def test_bad_parameters_are_refused_before_anything_is_queued(client: Client):
    before = client.count_runs()
    with pytest.raises(InvalidParameters) as caught:
        client.submit("nb_squares", {"n": 0, "label": 3, "colour": "red"})
    problems = " | ".join(caught.value.problems)
    assert "n" in problems and "minimum" in problems
    assert "label" in problems and "colour" in problems
    assert client.count_runs() == before


def test_a_failing_cell_fails_the_run_with_its_number_and_traceback(client: Client):
    run = client.submit("nb_fails", {"x": 7}, timeout=120).wait(150)
    assert run.status is ExecutionStatus.FAILED
    record = run.record()
    assert record["error_type"] == "ValueError"
    assert record["message"] == "cell 3: ValueError: bad x: 7"
    assert "bad x: 7" in (run.traceback or "")
    assert "nb_fails.ipynb" in {f["name"] for f in run.files()}, "kept when it failed, too"


def reports_from_a_cell(run: Execution) -> bool:
    return (run.record()["progress"] or {}).get("message") == "sleeping in a cell"


def time_out_leaving_no_kernel(client: Client, timeout: float) -> None:
    """``nb_sleeps`` reports from its sleeping cell, times out, and leaves neither its
    kernel nor the process the kernel started."""
    run = client.submit("nb_sleeps", {"seconds": 120}, timeout=timeout)
    wait_until(lambda: reports_from_a_cell(run), timeout - 1, "the cell's own progress")
    run.wait(120)
    assert run.status is ExecutionStatus.TIMED_OUT
    kernel, child = map(int, run.read_file("pids.txt").split())
    wait_until(lambda: not pid_alive(kernel) and not pid_alive(child), 15, "the kernel's end")


def test_a_notebook_that_times_out_leaves_no_kernel_behind(client: Client):
    time_out_leaving_no_kernel(client, timeout=15)


def test_the_cli_runs_a_notebook(redis_settings: Settings, client: Client):
    done = scriptrun_cli(redis_settings, "run", "nb_squares", "n=2", "--timeout", "120")
    assert done.returncode == 0, done.stderr
    assert "succeeded" in done.stdout and '"context": "cli"' in done.stdout
    assert "files: nb_squares.ipynb (scriptrun files " in done.stdout


def test_a_notebook_whose_kernel_is_not_here_runs_on_the_workers_python_saying_so(
    client: Client,
):
    """It names an R kernel this worker does not have: it runs on python3, its
    parameters written in Python, and the record says so."""
    run = client.run("nb_elsewhere", {"x": 21}, timeout=120)
    assert run.status is ExecutionStatus.SUCCEEDED, run.record()["message"]
    assert run.data == 42
    assert "kernel: python3 (the worker's Python (the notebook's kernel 'ir' is not here))" in (
        run.stderr
    )


def standbys(worker_pid: int) -> dict[int, list[int]]:
    """The worker's notebook standbys waiting for a run, each with its kernel's pid."""
    import psutil

    found = {}
    for process in psutil.Process(worker_pid).children():
        with contextlib.suppress(psutil.Error):
            if "--standby" in process.cmdline():
                found[process.pid] = [k.pid for k in process.children()]
    return found


@pytest.fixture
def warm_worker(redis_settings: Settings, start_worker: Callable[..., WorkerProcess]):
    return start_worker(redis_settings.with_(default_runner="warm"))


def test_a_warm_notebook_runs_on_a_kernel_started_before_it_fresh_for_each_run(
    redis_settings: Settings, warm_worker: WorkerProcess
):
    """The warm runner keeps a standby child whose kernel is up before the run comes; the
    run gets the contract as a fresh one does (environment, folder, id, result, files),
    and every run has a kernel of its own that ends with it."""
    client = Client(redis_settings)
    first = client.run("nb_whoami", {"note": "one"}, page_context="ctx", timeout=120)
    assert first.status is ExecutionStatus.SUCCEEDED, first.stderr
    data = first.data
    assert data["note"] == "one" and data["earlier"] is None
    assert data["env"]["EXECUTION_ID"] == first.id and data["env"]["PAGE_CONTEXT"] == "ctx"
    assert data["env"]["SCRIPT_NAME"] == "nb_whoami"
    assert data["cwd"] == data["env"]["TMPDIR"]  # the run's own folder, as fresh
    assert data["child_sees_id"] and data["tagged"], "its daemons are told by their run"
    assert "nb_whoami.ipynb" in {f["name"] for f in first.files()}
    assert first.record()["progress"]["done"] == 3  # two cells and the injected one

    # Behind the run, a standby got ready: the next run's kernel is the one it started.
    wait_until(lambda: any(standbys(warm_worker.pid).values()), 60, "a standby kernel")
    [(standby, [kernel])] = standbys(warm_worker.pid).items()
    second = client.run("nb_whoami", {"note": "two"}, timeout=120)
    assert second.status is ExecutionStatus.SUCCEEDED, second.stderr
    assert second.data["pid"] == kernel and second.data["note"] == "two"
    assert second.data["earlier"] is None, "nothing of the first run reached the second"
    assert second.data["env"]["EXECUTION_ID"] == second.id and second.data["tagged"]
    wait_until(
        lambda: not pid_alive(kernel) and not pid_alive(standby) and not pid_alive(data["pid"]),
        15,
        "the used kernels' end",
    )


def test_a_warm_notebook_that_times_out_leaves_no_kernel_and_stopping_lets_standbys_go(
    redis_settings: Settings, warm_worker: WorkerProcess
):
    client = Client(redis_settings)
    time_out_leaving_no_kernel(client, timeout=10)
    # A bad parameter is still refused on submit, as for every script.
    with pytest.raises(InvalidParameters):
        client.submit("nb_sleeps", {"seconds": "soon"})

    wait_until(lambda: any(standbys(warm_worker.pid).values()), 60, "a standby kernel")
    waiting = [pid for s, kernels in standbys(warm_worker.pid).items() for pid in (s, *kernels)]
    warm_worker.stop()
    wait_until(lambda: not any(map(pid_alive, waiting)), 15, "the standbys' end")
