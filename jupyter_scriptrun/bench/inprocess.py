"""The in-process baseline: a script's work as a plain Celery task, run inside the
worker's own process (no child process, no isolation, no recording).

    celery -A jupyter_scriptrun.bench.inprocess worker --pool prefork --concurrency 2

Configured by ``SCRIPTRUN_BENCH_BROKER`` and ``SCRIPTRUN_BENCH_QUEUE``. Each pool process
compiles a script once and then executes it as ``__main__`` per task, with the script
contract's variables in ``os.environ`` (safe: a prefork pool process runs one task at a
time) and its stdout captured; the task returns the last line that is a JSON object.
It is the design the subprocess runner is weighed against (the seed document's "Plan 2"):
the floor of the Celery round trip with no process start at all.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from typing import Any

from celery import Celery

TASK_NAME = "scriptrun.bench.inprocess"


def make_app(broker: str, queue: str) -> Celery:
    """A Celery app for the baseline: JSON, results in Redis (or over AMQP replies)."""
    backend = broker if broker.startswith("redis") else "rpc://"
    app = Celery("scriptrun_inprocess", broker=broker, backend=backend)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_default_queue=queue,
        worker_prefetch_multiplier=1,
        result_expires=300,
        broker_connection_retry_on_startup=True,
    )
    return app


app = make_app(
    # The harness's broker in its worker; imported by the harness itself only for the
    # task's name and make_app (an app it makes with its own broker).
    os.environ.get("SCRIPTRUN_BENCH_BROKER", "memory://"),
    os.environ.get("SCRIPTRUN_BENCH_QUEUE", "scriptrun-inprocess"),
)
_compiled: dict[str, Any] = {}


@app.task(name=TASK_NAME)
def run_in_process(path: str, env: dict[str, str]) -> dict[str, Any] | None:
    """Execute the script at ``path`` in this process with ``env`` set; its JSON result."""
    code = _compiled.get(path)
    if code is None:
        with open(path, encoding="utf-8") as f:
            code = _compiled[path] = compile(f.read(), path, "exec")
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
            exec(code, {"__name__": "__main__", "__file__": path})
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return _last_json(out.getvalue())


def _last_json(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)  # the seed's example prints indented JSON
        return value if isinstance(value, dict) else None
    except ValueError:
        pass
    for line in reversed(text.splitlines()):
        with contextlib.suppress(ValueError):
            value = json.loads(line)
            if isinstance(value, dict):
                return value
    return None
