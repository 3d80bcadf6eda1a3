"""The files a run writes to SCRIPTRUN_OUTPUT_DIR are kept with it — in the store (SQLite
or PostgreSQL) or in object storage (a real S3 API) — listed with their size, media type
and checksum, read back through Python, and removed with the run; what cannot be kept
(a link out, a FIFO, a file over a limit) is listed with why, and never read."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import psutil
import pytest

from jupyter_scriptrun.config import Settings
from jupyter_scriptrun.exceptions import FileNotKept
from jupyter_scriptrun.service.client import Client
from jupyter_scriptrun.status import ExecutionStatus

S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def kept(run) -> dict[str, dict]:
    return {f["name"]: f for f in run.files() if f["note"] is None}


def not_kept(run) -> dict[str, str]:
    return {f["name"]: f["note"] for f in run.files() if f["note"] is not None}


def check_files_round_trip(client: Client, tmp_path: Path) -> None:
    """The specification every backend meets."""
    run = client.run("writes_files", {"note": "héllo"})
    assert run.status is ExecutionStatus.SUCCEEDED, run.record()["message"]
    # The result came through script.result(), past the chatter on stdout.
    assert run.data == {"written": ["notes.txt", "plot.png", "tables"]}
    files = kept(run)
    assert sorted(files) == ["notes.txt", "plot.png", "tables/out.csv"]
    assert files["plot.png"]["media_type"] == "image/png"
    assert files["tables/out.csv"]["media_type"] == "text/csv"
    png = run.read_file("plot.png")
    assert png.startswith(b"\x89PNG") and files["plot.png"]["size"] == len(png)
    assert files["plot.png"]["sha256"] == hashlib.sha256(png).hexdigest()
    assert run.read_file("notes.txt").decode() == "héllo"
    table = run.frame("tables/out.csv")
    assert table.to_dict("list") == {"x": [1, 3], "y": [2, 4]}
    written = run.save_files(tmp_path / "saved")
    assert sorted(p.relative_to(tmp_path / "saved").as_posix() for p in written) == sorted(files)
    assert (tmp_path / "saved" / "plot.png").read_bytes() == png
    with pytest.raises(FileNotKept, match=r"no file 'nothing\.txt'"):
        run.read_file("nothing.txt")
    with pytest.raises(ValueError, match="not a table"):
        run.frame("plot.png")
    # Removed with the run.
    assert client.prune(older_than=timedelta(0)) >= 1
    assert client.store.files(run.id) == []


def test_what_a_run_writes_is_kept_with_it_in_the_store(client: Client, tmp_path: Path):
    check_files_round_trip(client, tmp_path)


@pytest.mark.postgres
def test_what_a_run_writes_is_kept_in_postgresql(
    redis_settings: Settings, postgres_url: str, start_worker: Callable, tmp_path: Path
):
    fleet = redis_settings.with_(database_url=postgres_url)
    start_worker(fleet)
    check_files_round_trip(Client(fleet), tmp_path)


def test_what_a_run_writes_is_kept_in_s3(
    redis_settings: Settings,
    s3_endpoint: str,
    start_worker: Callable,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
):
    import s3fs

    env = {**S3_ENV, "AWS_ENDPOINT_URL": s3_endpoint}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    bucket = f"runs-{redis_settings.queue}"
    s3 = s3fs.S3FileSystem(endpoint_url=s3_endpoint, key="testing", secret="testing")
    s3.mkdir(bucket)
    fleet = redis_settings.with_(files_url=f"s3://{bucket}/kept")
    start_worker(fleet, extra_env=env)
    client = Client(fleet)
    run = client.run("writes_files", {})
    files = kept(run)
    assert files["plot.png"]["location"] == f"s3://{bucket}/kept/{run.id}/plot.png"
    s3.invalidate_cache()
    assert s3.cat(f"{bucket}/kept/{run.id}/tables/out.csv") == b"x,y\n1,2\n3,4\n"
    assert list(client.store.file_chunks(run.id, "plot.png")) == []  # nothing in the store
    s3.invalidate_cache()
    check_files_round_trip(client, tmp_path)
    s3.invalidate_cache()
    assert s3.find(f"{bucket}/kept") == [], "prune removes a run's files from the bucket"


def test_links_fifos_and_big_files_are_listed_never_read(
    redis_settings: Settings, start_worker: Callable
):
    """A link out of the folder is not followed, a FIFO not opened (it would block), and
    a 1 GiB file over the limit is never read: the worker's memory does not grow by it."""
    worker = start_worker(redis_settings, concurrency=1)
    client = Client(redis_settings)
    client.run("writes_files", {})  # the worker's memory after a first run, as a baseline
    before = psutil.Process(worker.pid).memory_info().rss
    run = client.run("writes_files", {"links": True, "big_mb": 1024})
    grew_mb = (psutil.Process(worker.pid).memory_info().rss - before) / 2**20
    assert run.status is ExecutionStatus.SUCCEEDED
    notes = not_kept(run)
    assert notes["escape.txt"] == notes["etc"] == "a link (links are not followed)"
    assert notes["pipe"] == "not a plain file"
    assert notes["big.bin"] == "1024.0 MB, over the 100 MB kept of one file"
    assert sorted(kept(run)) == ["notes.txt", "plot.png", "tables/out.csv"]
    assert grew_mb < 50, f"the worker grew by {grew_mb:.0f} MB"
    with pytest.raises(FileNotKept, match=r"was not kept .*over the 100 MB"):
        run.read_file("big.bin")


def test_files_over_the_runs_limit_are_listed_with_why_and_the_run_stands(
    redis_settings: Settings, start_worker: Callable
):
    small = redis_settings.with_(max_files_mb=0.0002)  # about 210 bytes per run
    start_worker(small)
    run = Client(small).run("writes_files", {"note": "x", "repeat": 200})
    assert run.status is ExecutionStatus.SUCCEEDED
    assert sorted(kept(run)) == ["notes.txt"]
    assert not_kept(run)["plot.png"].endswith("would pass the 0.0002 MB kept per run")


def test_a_failed_or_timed_out_run_keeps_what_it_wrote(client: Client):
    failed = client.submit("writes_files", {"fail": True}).wait(60)
    assert failed.status is ExecutionStatus.FAILED
    assert failed.record()["error_type"] == "RuntimeError"
    assert sorted(kept(failed)) == ["notes.txt", "plot.png", "tables/out.csv"]
    slow = client.submit("writes_files", {"sleep": 30}, timeout=2).wait(60)
    assert slow.status is ExecutionStatus.TIMED_OUT
    assert "plot.png" in kept(slow)


def test_result_gives_the_result_outside_a_worker_by_printing_it(tmp_path: Path):
    """Standalone, script.result() prints the document as a seed script would."""
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "SCRIPTRUN_OUTPUT_DIR": str(tmp_path)}
    env.pop("SCRIPTRUN_RESULT_FILE", None)
    script = Path(__file__).parent / "scripts" / "writes_files.py"
    done = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, check=True
    )
    assert json.loads(done.stdout.splitlines()[-1])["status"] == "success"


def test_the_history_table_marks_the_runs_that_kept_files(client: Client):
    from datetime import UTC, datetime

    from jupyter_scriptrun.jupyter.history_table import row_html

    with_files = client.run("writes_files", {})
    without = client.run("example_script", {})
    records, _ = client.history_page(limit=10)
    counts = {r["id"]: r["files"] for r in records}
    assert counts[with_files.id] == 3 and counts[without.id] == 0
    row = next(r for r in records if r["id"] == with_files.id)
    assert "📎3" in row_html(row, datetime.now(UTC))


def test_a_retrys_files_replace_the_earlier_attempts(client: Client, tmp_path: Path):
    run = client.run("flaky", {"counter": str(tmp_path / "n"), "succeed_on": 2}, timeout=60)
    assert run.status is ExecutionStatus.SUCCEEDED and run.record()["attempt"] == 2
    assert [(f["name"], f["attempt"]) for f in run.files()] == [("attempt-2.txt", 2)]


def test_a_folder_of_too_many_files_is_listed_only_so_far(tmp_path: Path):
    """1000 files are kept; listing stops at 10,000 entries, saying so (a script that
    writes a million files does not hold its worker)."""
    from jupyter_scriptrun.execution.outputs import MAX_LISTED, collect

    for i in range(MAX_LISTED + 5):
        (tmp_path / f"f{i:06d}").touch()
    found = collect(str(tmp_path), 100, 100)
    assert len(found) == MAX_LISTED + 1
    assert found[-1].note == f"more than {MAX_LISTED} entries"
    assert sum(f.kept for f in found) == 1000
    assert found[1000].note == "past the 1000 files kept per run"
