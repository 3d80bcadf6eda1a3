"""Output watched while a run goes on; ad-hoc scripts; idempotent submission."""

from __future__ import annotations

import time

import pytest

from jupyter_scriptrun.config import Settings
from jupyter_scriptrun.exceptions import ExecutionConflict, InvalidParameters, ScriptNotFound
from jupyter_scriptrun.service.client import Client
from jupyter_scriptrun.status import ExecutionStatus


def test_output_is_readable_while_the_run_goes_on(client: Client):
    run = client.submit("slow_script", {"seconds": 2.5})
    seen: list[str] = []
    offset = 0
    deadline = time.monotonic() + 30
    while run.status is not ExecutionStatus.SUCCEEDED:
        assert time.monotonic() < deadline
        page = run.output(offset)
        offset = page["next_offset"]
        seen += [c["text"] for c in page["chunks"] if c["stream"] == "stdout"]
        if run.status is ExecutionStatus.RUNNING and "".join(seen).count("step ") >= 2:
            break
        time.sleep(0.1)
    assert run.status is ExecutionStatus.RUNNING, "lines arrived only after the end"
    run.wait(30)
    seen += [c["text"] for c in run.output(offset)["chunks"] if c["stream"] == "stdout"]
    assert "".join(seen) == run.stdout  # nothing lost or repeated between the two


def test_an_ad_hoc_python_cell_runs_like_a_script(client: Client):
    source = (
        "import json, os\n"
        "p = json.loads(os.environ['SCRIPT_PARAMETERS'])\n"
        "print('working')\n"
        "print(json.dumps({'status': 'success', 'data': {'double': p['x'] * 2}}))\n"
    )
    run = client.submit_source(source, {"x": 21}, name="my_cell").wait(30)
    assert run.status is ExecutionStatus.SUCCEEDED and run.data == {"double": 42}
    rec = run.record()
    assert rec["script"] == "my_cell" and rec["source"] == source and rec["language"] == "python"
    assert client.history(script="my_cell")["id"].tolist() == [run.id]


def test_an_ad_hoc_cell_declares_its_parameters_like_a_file(client: Client):
    source = (
        "# /// scriptrun\n"
        "# timeout = 20\n"
        "# [parameters.n]\n"
        "# type = 'integer'\n"
        "# minimum = 1\n"
        "# ///\n"
        "n=$(python3 -c 'import json, os; "
        'print(json.loads(os.environ["SCRIPT_PARAMETERS"])["n"])\')\n'
        'echo "{\\"status\\": \\"success\\", \\"data\\": {\\"n\\": $n}}"\n'
    )
    with pytest.raises(InvalidParameters, match="n"):
        client.submit_source(source, {"n": 0}, language="bash")
    run = client.submit_source(source, {"n": 3}, language="bash").wait(30)
    assert run.status is ExecutionStatus.SUCCEEDED and run.data == {"n": 3}
    assert run.record()["timeout_s"] == 20
    with pytest.raises(ScriptNotFound, match="unknown language"):
        client.submit_source("print(1)", language="cobol")
    with pytest.raises(InvalidParameters, match="empty"):
        client.submit_source("   \n")


def test_workers_can_refuse_ad_hoc_sources(redis_settings: Settings, start_worker):
    start_worker(redis_settings, extra_env={"SCRIPTRUN_ALLOW_ADHOC": "0"})
    client = Client(redis_settings)
    run = client.submit_source("print('hello')").wait(30)
    rec = run.record()
    assert (rec["status"], rec["error_type"]) == ("failed", "AdhocNotAllowed")
    assert "SCRIPTRUN_ALLOW_ADHOC=0" in rec["message"]
    assert client.run("example_script").status is ExecutionStatus.SUCCEEDED


def test_an_idempotency_key_starts_one_run_only(client: Client):
    first = client.submit("example_script", idempotency_key="report-2026-11-28")
    with pytest.raises(ExecutionConflict) as caught:
        client.submit("example_script", idempotency_key="report-2026-11-28")
    assert caught.value.execution_id == first.id
    with pytest.raises(InvalidParameters, match="idempotency_key"):
        client.submit("example_script", idempotency_key="x" * 300)
    assert first.wait(30).status is ExecutionStatus.SUCCEEDED
