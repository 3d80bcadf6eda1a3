"""A fleet's schema changes: one migration job migrates (``scriptrun migrate``), processes
told not to (``SCRIPTRUN_AUTO_MIGRATE=false``) refuse a schema behind theirs saying so,
every process refuses a schema newer than it knows, and settings can come from files
(secrets) without being printed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text

from jupyter_scriptrun.store.engine import HEAD_REVISION, MIGRATIONS

PREVIOUS = f"{int(HEAD_REVISION) - 1:04d}"


def scriptrun(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SCRIPTRUN_")}
    return subprocess.run(
        [sys.executable, "-m", "jupyter_scriptrun", *args],
        env={**environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def at_revision(url: str, revision: str) -> None:
    """An empty store migrated only up to ``revision``, as an older release left it."""
    engine = create_engine(url)
    with engine.connect() as conn:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
        conn.commit()
    engine.dispose()


def revision_of(url: str) -> str:
    engine = create_engine(url)
    with engine.connect() as conn:
        found = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    engine.dispose()
    return found


def test_the_migration_job_migrates_once_and_processes_that_may_not_wait_for_it(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    at_revision(url, PREVIOUS)
    env = {"SCRIPTRUN_DATABASE_URL": url, "SCRIPTRUN_DATA_DIR": str(tmp_path / "data")}

    refused = scriptrun("history", SCRIPTRUN_AUTO_MIGRATE="false", **env)
    assert refused.returncode == 2, refused
    assert f"at schema revision {PREVIOUS}" in refused.stderr
    assert f"needs {HEAD_REVISION}" in refused.stderr
    assert "scriptrun migrate" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert revision_of(url) == PREVIOUS  # it touched nothing

    job = scriptrun("migrate", **env)
    assert job.returncode == 0, job
    assert f"migrated from {PREVIOUS} to {HEAD_REVISION}" in job.stdout
    assert revision_of(url) == HEAD_REVISION
    again = scriptrun("migrate", **env)
    assert f"already at revision {HEAD_REVISION}; nothing to do" in again.stdout

    served = scriptrun("history", SCRIPTRUN_AUTO_MIGRATE="false", **env)
    assert served.returncode == 0, served
    assert served.stdout.lower().startswith("no runs yet"), served


def test_every_process_refuses_a_schema_newer_than_it_knows(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    at_revision(url, HEAD_REVISION)
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    env = {"SCRIPTRUN_DATABASE_URL": url, "SCRIPTRUN_DATA_DIR": str(tmp_path / "data")}

    for args in (("history",), ("migrate",)):
        refused = scriptrun(*args, **env)  # auto-migrating, as by default
        assert refused.returncode == 2, refused
        assert "at schema revision 9999, newer than this version" in refused.stderr
        assert "upgrade jupyter_scriptrun here too" in refused.stderr
        assert "Traceback" not in refused.stderr
    assert revision_of(url) == "9999"


def test_the_migration_job_on_a_database_that_is_away_says_so(tmp_path: Path):
    away = "postgresql+psycopg://scriptrun:s3cret@127.0.0.1:1/scriptrun"
    result = scriptrun("migrate", SCRIPTRUN_DATABASE_URL=away)
    assert result.returncode == 3, result
    assert "127.0.0.1:1" in result.stderr
    assert "s3cret" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_a_setting_comes_from_a_file_and_its_password_is_never_printed(tmp_path: Path):
    secret = tmp_path / "database_url"
    secret.write_text("postgresql+psycopg://scriptrun:s3cret@db.internal:5432/scriptrun\n")
    shown = scriptrun("settings", SCRIPTRUN_DATABASE_URL_FILE=str(secret))
    assert shown.returncode == 0, shown
    line = next(x for x in shown.stdout.splitlines() if x.startswith("SCRIPTRUN_DATABASE_URL "))
    assert "db.internal:5432/scriptrun" in line and "***" in line
    as_json = scriptrun("settings", "--json", SCRIPTRUN_DATABASE_URL_FILE=str(secret))
    assert "s3cret" not in shown.stdout + as_json.stdout + shown.stderr + as_json.stderr

    missing = scriptrun("settings", SCRIPTRUN_DATABASE_URL_FILE=str(tmp_path / "nowhere"))
    assert missing.returncode == 2, missing
    assert "SCRIPTRUN_DATABASE_URL_FILE: cannot read it" in missing.stderr


def test_a_worker_that_may_not_migrate_refuses_to_start_on_an_old_schema(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    at_revision(url, PREVIOUS)
    worker = scriptrun(
        "worker",
        "--loglevel",
        "INFO",
        SCRIPTRUN_DATABASE_URL=url,
        SCRIPTRUN_AUTO_MIGRATE="false",
        # It refuses before it would connect: no broker is needed to see it.
        SCRIPTRUN_BROKER_URL="redis://127.0.0.1:1/0",
        SCRIPTRUN_DATA_DIR=str(tmp_path / "data"),
    )
    assert worker.returncode == 2, worker
    assert "scriptrun worker not started" in worker.stderr
    assert f"at schema revision {PREVIOUS}" in worker.stderr
    assert revision_of(url) == PREVIOUS
