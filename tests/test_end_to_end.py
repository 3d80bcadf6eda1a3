"""Runs through a real Redis broker and real worker processes, recorded in a real store."""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from pathlib import Path

import pytest
from conftest import pid_alive

from jupyter_scriptrun.config import Settings
from jupyter_scriptrun.exceptions import (
    ExecutionConflict,
    ExecutionFailed,
    ExecutionTimeout,
    InvalidParameters,
    ScriptNotFound,
    WorkerUnavailable,
)
from jupyter_scriptrun.models import HISTORY_COLUMNS
from jupyter_scriptrun.service.client import Client
from jupyter_scriptrun.status import ExecutionStatus


def test_the_seed_example_runs_and_is_recorded(client: Client):
    run = client.run("example_script", {"message": "你好", "multiplier": 3}, page_context="nb")
    assert run.status is ExecutionStatus.SUCCEEDED
    assert run.data["multiplied_message"] == "你好 你好 你好"
    assert run.result["message"] == "Executed successfully"
    assert run.result["metadata"]["script_name"] == "example_script"
    assert run.result["metadata"]["execution_id"] == run.id
    assert run.result["metadata"]["page_context"] == "nb"
    rec = run.record()
    assert rec["parameters"] == {"message": "你好", "multiplier": 3, "delay": 0}
    assert rec["exit_code"] == 0 and rec["attempt"] == 1 and rec["worker"].startswith("test-")
    assert rec["duration_s"] > 0 and rec["peak_rss_mb"] > 0 and rec["cpu_user_s"] > 0
    assert rec["content_hash"].startswith("sha256:")


def test_a_script_written_from_the_seeds_template_runs_unchanged(client: Client):
    """The seed's standard script structure, verbatim (tests/scripts/seed_style.py adds only
    the process_data a user writes): it runs, and its words are recorded as it says them."""
    seed = (Path(__file__).parents[2] / "shared" / "seed").glob("000_*.txt")
    text = next(seed, None)
    mine = (Path(__file__).parent / "scripts" / "seed_style.py").read_text()
    if text is not None:  # beside the project here; a clone elsewhere has only the copy
        doc = text.read_text()
        start = doc.index("```python\n#!/usr/bin/env python3") + len("```python\n")
        template = doc[start : doc.index("```", start)]
        assert mine.replace(mine[mine.index("def process_data") : mine.index("def main")], "") == (
            template
        )
    run = client.run("seed_style", {"message": "你好"}, page_context="seed")
    assert run.status is ExecutionStatus.SUCCEEDED
    assert run.result["message"] == "执行成功" and run.record()["message"] == "执行成功"
    assert run.data == {"original_message": "你好", "multiplied_message": "你好 你好"}


def test_failures_keep_message_type_and_traceback(client: Client):
    seed_style = client.run("failing_script", {"mode": "json"})
    rec = seed_style.record()
    assert (rec["status"], rec["error_type"], rec["exit_code"]) == ("failed", "ValueError", 1)
    assert rec["message"] == "invalid input"

    crash = client.run("failing_script", {"mode": "crash"})
    assert crash.record()["error_type"] == "KeyError"
    assert "Traceback (most recent call last)" in crash.traceback
    with pytest.raises(ExecutionFailed, match="KeyError"):
        crash.raise_for_status()


def test_a_shell_script_and_a_script_without_json_run(client: Client):
    shell = client.run("disk_report", {"path": "/tmp"})
    assert shell.status is ExecutionStatus.SUCCEEDED and shell.data["path"] == "/tmp"
    text = client.run("plain_text")
    assert text.status is ExecutionStatus.SUCCEEDED
    assert text.data is None and text.stdout == "just some text\nand more\n"


def test_tabular_data_loads_as_a_dataframe(client: Client):
    frame = client.run("table_script", {"rows": 4}).frame()
    assert list(frame.columns) == ["n", "square", "cube"] and frame["cube"].tolist() == [
        1,
        8,
        27,
        64,
    ]


def test_bad_input_is_refused_before_anything_is_queued(client: Client):
    before = client.store.count()
    with pytest.raises(ScriptNotFound):
        client.submit("../etc/passwd")
    with pytest.raises(ScriptNotFound, match="known:"):
        client.submit("no_such_script")
    with pytest.raises(InvalidParameters) as info:
        client.submit("example_script", {"multiplier": "many", "colour": 1})
    assert len(info.value.problems) == 2
    with pytest.raises(InvalidParameters, match="timeout"):
        client.submit("example_script", timeout=-1)
    assert client.store.count() == before


def test_timeout_kills_the_whole_tree(client: Client, tmp_path: Path):
    pidfile = tmp_path / "pids"
    run = client.run("tree_ignores_term", {"pidfile": str(pidfile)}, timeout=2)
    rec = run.record()
    assert rec["status"] == "timed_out" and rec["error_type"] == "Timeout"
    assert "timed out after 2 s" in rec["message"]
    assert run.stdout == "tree started\n"
    time.sleep(0.3)
    pids = [int(p) for p in pidfile.read_text().split()]
    assert len(pids) == 3 and not any(pid_alive(p) for p in pids)


def test_cancel_a_running_run_kills_its_tree(client: Client, tmp_path: Path):
    pidfile = tmp_path / "pids"
    run = client.submit("tree_ignores_term", {"pidfile": str(pidfile)})
    deadline = time.monotonic() + 20
    while run.status is not ExecutionStatus.RUNNING or not pidfile.exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.3)
    t0 = time.monotonic()
    assert run.cancel() is ExecutionStatus.RUNNING
    run.wait(15)
    elapsed = time.monotonic() - t0
    assert run.status is ExecutionStatus.CANCELLED
    # poll interval (0.5 s) + grace (1 s) + margin
    assert elapsed < 3.5, elapsed
    time.sleep(0.3)
    assert not any(pid_alive(int(p)) for p in pidfile.read_text().split())
    with pytest.raises(ExecutionConflict):
        client.run("plain_text").cancel()


def test_cancel_a_queued_run_it_never_starts(redis_settings: Settings):
    client = Client(redis_settings)  # no worker: the run stays queued
    run = client.submit("example_script")
    assert run.status is ExecutionStatus.QUEUED
    assert run.cancel() is ExecutionStatus.CANCELLED
    assert run.wait(1).status is ExecutionStatus.CANCELLED


def test_wait_with_a_timeout_raises_and_the_run_goes_on(client: Client):
    run = client.submit("slow_script", {"seconds": 3})
    with pytest.raises(ExecutionTimeout, match="goes on"):
        run.wait(0.5)
    assert run.wait(30).status is ExecutionStatus.SUCCEEDED


def test_a_retryable_failure_is_retried_and_every_attempt_kept(client: Client, tmp_path: Path):
    run = client.run("flaky", {"counter": str(tmp_path / "n"), "succeed_on": 3}, wait_timeout=60)
    rec = run.record()
    assert rec["status"] == "succeeded" and rec["attempt"] == 3
    attempts = run.attempts()
    assert [a["status"] for a in attempts] == ["retrying", "retrying", "succeeded"]
    assert [a["exit_code"] for a in attempts] == [75, 75, 0]
    assert attempts[0]["started_at"] < attempts[1]["started_at"]


def test_the_script_never_sees_the_workers_secrets(redis_settings: Settings, start_worker):
    start_worker(
        redis_settings,
        extra_env={"GITHUB_TOKEN": "secret", "DB_PASSWORD": "pw", "TEAM_SETTING": "visible"},
    )
    client = Client(redis_settings)
    env = client.run("echo_env").data
    assert env["SCRIPT_NAME"] == "echo_env" and json.loads(env["SCRIPT_PARAMETERS"]) == {}
    for secret in (
        "GITHUB_TOKEN",
        "DB_PASSWORD",
        "SCRIPTRUN_BROKER_URL",
        "SCRIPTRUN_DATABASE_URL",
        "TEAM_SETTING",
    ):
        assert secret not in env


def test_operators_can_allow_more_variables(redis_settings: Settings, start_worker):
    allowed = redis_settings.with_(env_allow=(*redis_settings.env_allow, "TEAM_*"))
    start_worker(allowed, extra_env={"TEAM_SETTING": "visible", "GITHUB_TOKEN": "secret"})
    env = Client(allowed).run("echo_env").data
    assert env["TEAM_SETTING"] == "visible" and "GITHUB_TOKEN" not in env


def test_output_is_capped_and_the_result_still_read(redis_settings: Settings, start_worker):
    capped = redis_settings.with_(max_output_bytes=256 * 1024)
    start_worker(capped)
    run = Client(capped).run("big_output", {"mb": 40}, wait_timeout=120)
    assert run.status is ExecutionStatus.SUCCEEDED and run.data == 40
    last = run.attempts()[-1]
    assert last["stdout_truncated"] and last["stderr_truncated"]
    assert last["stdout_bytes"] > 40 * 1024 * 1024
    assert len(run.stdout) < 300 * 1024


def test_history_is_a_typed_dataframe(client: Client):
    client.run("example_script")
    client.run("failing_script")
    frame = client.history()
    assert list(frame.columns) == list(HISTORY_COLUMNS)
    assert str(frame["queued_at"].dt.tz) == "UTC"
    assert frame["status"].dtype.name == "category"
    assert "lost" in frame["status"].cat.categories
    for col in (
        "queue_s",
        "duration_s",
        "cpu_user_s",
        "cpu_system_s",
        "peak_rss_mb",
        "exit_code",
        "attempt",
    ):
        assert frame[col].dtype == "float64", col
    assert frame["status"].tolist() == ["failed", "succeeded"]
    assert isinstance(frame["parameters"].iloc[0], dict)
    assert len(client.history(script="failing_script")) == 1
    assert len(client.history(status=["succeeded"])) == 1


def test_the_exports_read_back_whole_with_no_float_noise(client: Client):
    """CSV and JSON give the measures as measured (microseconds, not binary noise), and
    read back with pandas; an integer pandas could not read back is refused up front."""
    import io
    import re

    import pandas as pd

    from jupyter_scriptrun.exceptions import InvalidParameters
    from jupyter_scriptrun.service.frames import history_csv, history_json

    for _ in range(3):
        client.run("example_script", {"multiplier": 3, "message": "big"}).wait(60)
    client.submit_source("print(1)", {"n": 2**62}, name="big").wait(60)
    frame = client.history()
    for text in (history_csv(frame), history_json(frame)):
        numbers = re.findall(r"\d+\.\d+", text.replace(str(2**62), ""))
        assert numbers and max(len(n.split(".")[1]) for n in numbers) <= 6, numbers
    back = pd.read_json(io.StringIO(history_json(frame)))
    assert back["parameters"][0]["n"] == 2**62
    assert len(pd.read_csv(io.StringIO(history_csv(frame)))) == 4
    with pytest.raises(InvalidParameters, match=r"the integer 18446744073709551616, outside"):
        client.submit_source("print(1)", {"n": 2**64})


def test_a_shell_run_too_short_to_sample_has_no_made_up_peak(client: Client):
    """A 2 ms shell run may end before the first sample: its peak is then unknown (None),
    never setpriv's few hundred KiB, an exec's few KiB, nor 0.0; a longer one has bash's."""
    for _ in range(5):
        rec = client.submit_source("echo hi", {}, name="quick", language="bash").wait(60).record()
        assert rec["peak_rss_mb"] is None or rec["peak_rss_mb"] > 1.0, rec["peak_rss_mb"]
    longer = client.submit_source("sleep 0.1", {}, name="quick", language="bash").wait(60)
    assert longer.record()["peak_rss_mb"] > 1.0


def _submit_from_process(settings: Settings, n: int) -> list[str]:
    client = Client(settings)
    return [client.submit("example_script", {"multiplier": i + 1}).id for i in range(n)]


def test_concurrent_submissions_from_several_processes(redis_settings: Settings, start_worker):
    start_worker(redis_settings, concurrency=4)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        chunks = pool.starmap(_submit_from_process, [(redis_settings, 15)] * 4)
    ids = [i for chunk in chunks for i in chunk]
    assert len(set(ids)) == 60
    client = Client(redis_settings)
    for eid in ids:
        client.get(eid).wait(120)
    frame = client.history()
    assert len(frame) == 60 and (frame["status"] == "succeeded").all()


def test_a_worker_killed_mid_run_leaves_its_run_lost_not_running(
    redis_settings: Settings, start_worker
):
    doomed = start_worker(redis_settings)
    client = Client(redis_settings)
    run = client.submit("slow_script", {"seconds": 60})
    deadline = time.monotonic() + 20
    while run.status is not ExecutionStatus.RUNNING:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    doomed.kill()
    start_worker(redis_settings)  # a survivor whose reaper notices (lost_after = 3 s)
    run.wait(30)
    rec = run.record()
    assert rec["status"] == "lost" and rec["error_type"] == "WorkerLost"


def test_no_broker_is_a_clear_error_and_the_run_is_not_left_queued(settings: Settings):
    client = Client(settings.with_(broker_url="redis://127.0.0.1:1/0"))
    t0 = time.monotonic()
    with pytest.raises(
        WorkerUnavailable, match=r"could not queue the run: redis://127\.0\.0\.1:1/0"
    ):
        client.submit("example_script")
    assert time.monotonic() - t0 < 10, "an unreachable broker must fail fast, not hang"
    [row] = client.store.history_rows()
    assert row["status"] == "failed" and row["error_type"] == "BrokerUnavailable"


def test_postgres_store_with_several_workers(
    redis_settings: Settings, postgres_url: str, start_worker
):
    fleet = redis_settings.with_(database_url=postgres_url)
    start_worker(fleet)
    start_worker(fleet)
    client = Client(fleet)
    runs = [client.submit("example_script", {"multiplier": i + 1}) for i in range(10)]
    for run in runs:
        run.wait(60)
    frame = client.history(limit=10)
    assert (frame["status"] == "succeeded").all()
    assert frame["worker"].nunique() == 2, "both workers should have taken runs"
    assert os.environ.get("SCRIPTRUN_DATABASE_URL") is None


def test_a_script_that_vanished_before_it_ran_still_runs_as_submitted(
    redis_settings: Settings, start_worker, tmp_path: Path
):
    """What was submitted (and validated) runs: the store kept that version."""
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "ephemeral.py").write_text("print('hi')\n")
    mine = redis_settings.with_(scripts_path=(folder,))
    run = Client(mine).submit("ephemeral")  # queued: no worker yet
    (folder / "ephemeral.py").unlink()
    start_worker(mine)
    assert run.wait(30).status is ExecutionStatus.SUCCEEDED and run.stdout == "hi\n"


def test_a_script_gone_from_the_worker_and_the_store_fails_clearly(
    redis_settings: Settings, start_worker, tmp_path: Path
):
    from sqlalchemy import delete

    from jupyter_scriptrun.store.tables import script_versions

    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "ephemeral.py").write_text("print('hi')\n")
    mine = redis_settings.with_(scripts_path=(folder,))
    client = Client(mine)
    run = client.submit("ephemeral")  # queued: no worker yet
    (folder / "ephemeral.py").unlink()
    with client.store.engine.begin() as conn:
        conn.execute(delete(script_versions))
    start_worker(mine)
    rec = run.wait(30).record()
    assert rec["status"] == "failed" and rec["error_type"] == "ScriptNotFound"
    assert "ephemeral" in rec["message"] and "keeps no copy" in rec["message"]


def test_rabbitmq_broker_without_a_result_backend(
    settings: Settings, rabbitmq_url: str, start_worker
):
    rabbit = settings.with_(broker_url=rabbitmq_url)
    assert rabbit.effective_result_backend is None  # completion is read from the store
    start_worker(rabbit)
    run = Client(rabbit).run("example_script", {"multiplier": 2}, wait_timeout=60)
    assert run.status is ExecutionStatus.SUCCEEDED and run.data["multiplier"] == 2


def test_the_shell_example_reports_when_du_meets_a_vanishing_file(
    redis_settings: Settings, start_worker, tmp_path
):
    """du exits 1 when a file vanishes under it (a busy /tmp) but still prints the total;
    the example then printed two numbers and invalid JSON."""
    import os

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "du"
    fake.write_text('#!/bin/sh\nprintf "123\\t%s\\n" "$2"\nexit 1\n')
    fake.chmod(0o755)
    start_worker(redis_settings, extra_env={"PATH": f"{bin_dir}:{os.environ['PATH']}"})
    run = Client(redis_settings).run("disk_report", {"path": "/tmp"}, wait_timeout=60)
    assert run.status is ExecutionStatus.SUCCEEDED
    assert run.data == {"path": "/tmp", "kilobytes": 123}
