"""The REST API fuzzed from its own OpenAPI document by schemathesis, against a real
JupyterLab with a real worker and Redis: no 5xx, every answer as documented."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from conftest import JupyterLabProcess

from jupyter_scriptrun.config import Settings


def test_schemathesis_finds_no_server_error_and_no_undocumented_answer(
    redis_settings: Settings, start_worker, tmp_path: Path
):
    start_worker(redis_settings)
    lab = JupyterLabProcess(redis_settings, tmp_path)
    st = shutil.which("st") or str(Path(sys.executable).parent / "st")
    try:
        result = subprocess.run(
            [
                st,
                "run",
                f"{lab.url}scriptrun/api/openapi.json",
                "--header",
                f"Authorization: token {lab.token}",
                "--checks",
                "not_a_server_error,response_schema_conformance,status_code_conformance,"
                "content_type_conformance",
                "--max-examples",
                "25",
                "--generation-deterministic",
                "--request-timeout",
                "30",
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        lab.stop()
    report = result.stdout[-8000:]
    assert result.returncode == 0, report
    assert "passed" in report and "generated" in report
