"""One attempt of one execution, from claim to record; and the reaper of lost runs.

Called by the Celery task (which stays thin: delivery and retries) and by the worker's
housekeeping thread. Uses the store, the registry, the runner and the protocol.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import defaults, protocol, runner
from .config import Settings
from .exceptions import AdhocNotAllowed, ScriptMetadataError, ScriptNotFound
from .live import LiveOutput
from .metadata import ScriptMeta
from .orphans import Ledger
from .registry import Registry, Script, adhoc_script
from .status import ExecutionStatus
from .store import Store

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """What the task must do after an attempt."""

    status: ExecutionStatus | None
    """The status recorded (None when this delivery was not ours to run)."""
    retry_in_s: float | None = None
    """Seconds until the next attempt, when one is due."""


def backoff(attempt: int) -> float:
    """Delay before attempt ``attempt + 1``: exponential, capped, with equal jitter."""
    ceiling = min(defaults.RETRY_BACKOFF_MAX_S, defaults.RETRY_BACKOFF_S * 2 ** (attempt - 1))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def wants_retry(meta: ScriptMeta, status: ExecutionStatus, retryable: bool, attempt: int) -> bool:
    """Whether an attempt that ended in ``status`` gets another try."""
    if attempt > meta.retries:
        return False
    if status is ExecutionStatus.FAILED:
        return retryable or "failed" in meta.retry_on
    if status is ExecutionStatus.TIMED_OUT:
        return "timed_out" in meta.retry_on
    if status is ExecutionStatus.LOST:
        return "lost" in meta.retry_on
    return False


class Executor:
    """Runs attempts for a worker."""

    def __init__(self, settings: Settings, store: Store, registry: Registry) -> None:
        self.settings = settings
        self.store = store
        self.registry = registry
        self.ledger = Ledger(settings.data_dir / "running")
        self._warm: Any = None

    def run_attempt(self, execution_id: str, attempt: int, worker: str) -> Outcome:
        """Claim, run and record one attempt."""
        row = self.store.claim(execution_id, attempt, worker)
        if row is None:
            log.info(
                "execution %s attempt %s: not pending, delivery ignored", execution_id, attempt
            )
            return Outcome(None)
        workdir = tempfile.mkdtemp(prefix=f"scriptrun-{execution_id[:8]}-")
        try:
            try:
                script = self._script(row, Path(workdir))
            except (ScriptNotFound, ScriptMetadataError, AdhocNotAllowed) as exc:
                status = ExecutionStatus.FAILED
                self.store.finish(
                    execution_id,
                    attempt,
                    status,
                    record={"error_type": type(exc).__name__, "message": str(exc)},
                    output={},
                )
                return Outcome(status)
            timeout = row["timeout_s"] or script.meta.timeout or self.settings.default_timeout_s
            env = protocol.script_env(
                os.environ,
                self.settings.env_allow,
                parameters=row["parameters"],
                page_context=row["page_context"],
                script_name=script.name,
                execution_id=execution_id,
            )
            env["TMPDIR"] = workdir
            memory_limit = script.meta.memory_limit_mb or self.settings.memory_limit_mb
            spec = runner.RunSpec(
                argv=script.command(),
                env=env,
                cwd=workdir,
                timeout_s=timeout,
                kill_grace_s=self.settings.kill_grace_s,
                max_output_bytes=self.settings.max_output_bytes,
                memory_limit_mb=memory_limit,
            )
            live = LiveOutput(min(defaults.LIVE_OUTPUT_BYTES, self.settings.max_output_bytes))
            sessions: list[int] = []
            try:
                outcome = runner.run(
                    spec,
                    poll=self._poller(execution_id, attempt, live),
                    on_output=live.add,
                    spawn=self._spawner(script),
                    on_start=lambda sid: self._record_session(sid, execution_id, attempt, sessions),
                )
            finally:
                for sid in sessions:  # the tree is gone when run() returns
                    self.ledger.remove(sid)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        verdict = protocol.interpret(outcome, timeout)
        if memory_limit and verdict.error_type == "MemoryError":
            verdict = dataclasses.replace(
                verdict,
                error_type="MemoryLimitExceeded",
                message=f"the run reached its memory limit of {memory_limit:g} MiB "
                f"(MemoryError: {verdict.message or ''})",
            )
        retry = wants_retry(script.meta, verdict.status, verdict.retryable, attempt)
        status = ExecutionStatus.RETRYING if retry else verdict.status
        self.store.finish(
            execution_id,
            attempt,
            status,
            record={
                "duration_s": outcome.duration_s,
                "cpu_user_s": outcome.cpu_user_s,
                "cpu_system_s": outcome.cpu_system_s,
                "peak_rss_mb": outcome.peak_rss_mb,
                "exit_code": outcome.exit_code,
                "error_type": verdict.error_type,
                "message": _clip(verdict.message),
                "content_hash": script.content_hash,
            },
            output={
                "stdout": outcome.stdout,
                "stderr": outcome.stderr,
                "stdout_bytes": outcome.stdout_bytes,
                "stderr_bytes": outcome.stderr_bytes,
                "stdout_truncated": outcome.stdout_truncated,
                "stderr_truncated": outcome.stderr_truncated,
                "traceback": verdict.traceback,
                "result": _dump(verdict.result),
                "data": _dump(verdict.data),
            },
            chunks=live.take(final=True),
        )
        log.info(
            "execution %s (%s) attempt %s: %s in %.3f s",
            execution_id,
            script.name,
            attempt,
            status.value,
            outcome.duration_s,
        )
        return Outcome(status, backoff(attempt) if retry else None)

    def _spawner(self, script: Script) -> Callable[[runner.RunSpec], Any] | None:
        """The warm runner for a Python script that asks for it (or by the worker's
        default); None (a fresh interpreter) otherwise."""
        mode = script.meta.runner or self.settings.default_runner
        if mode != "warm" or script.command() != [sys.executable, str(script.path)]:
            return None  # not Python on this interpreter, or interpreter options: fresh
        if self._warm is None:
            from .warm import WarmParent

            parent_env = protocol.script_env(
                os.environ,
                self.settings.env_allow,
                parameters="{}",
                page_context="",
                script_name="",
                execution_id="",
            )
            for name in ("PYTHONPATH", "VIRTUAL_ENV"):
                if name in os.environ:
                    parent_env[name] = os.environ[name]
            self._warm = WarmParent(self.settings.warm_preload, parent_env)
        warm = self._warm
        return lambda spec: warm.spawn(spec.argv, spec.env, spec.cwd, spec.memory_limit_mb)

    def close(self) -> None:
        """Stop the warm parent, if one was started."""
        if self._warm is not None:
            self._warm.stop()

    def _script(self, row: dict[str, Any], workdir: Path | None) -> Script:
        """The registered script a run names, or its ad-hoc source written to ``workdir``."""
        if row.get("source") is None:
            return self.registry.get(row["script"])
        if not self.settings.allow_adhoc:
            raise AdhocNotAllowed(
                "this worker does not run ad-hoc scripts (SCRIPTRUN_ALLOW_ADHOC=0); "
                "register the script in a scripts folder instead"
            )
        script = adhoc_script(row["script"], row["source"], row["language"] or "python", workdir)
        if workdir is not None:
            script.path.write_text(row["source"], encoding="utf-8", errors="surrogatepass")
        return script

    def _poller(self, execution_id: str, attempt: int, live: LiveOutput) -> Callable[[], bool]:
        last_beat = time.monotonic()

        def poll() -> bool:
            nonlocal last_beat
            chunks = live.take()
            if chunks:
                try:
                    self.store.append_output(execution_id, attempt, chunks)
                except Exception:  # live output is a courtesy: the run must go on
                    log.warning("live output of %s not written", execution_id, exc_info=True)
            now = time.monotonic()
            beat = now - last_beat >= self.settings.heartbeat_s
            if beat:
                last_beat = now
            return self.store.beat(execution_id, beat)

        return poll

    def _record_session(self, sid: int, execution_id: str, attempt: int, into: list[int]) -> None:
        try:
            self.ledger.add(sid, execution_id, attempt)
            into.append(sid)
        except OSError:  # the run goes on; only the clean-up after a crash is lost
            log.warning("could not record session %s of %s", sid, execution_id, exc_info=True)

    def sweep_orphans(self) -> int:
        """Kill what scripts of dead workers on this host left running; how many."""
        return sum(len(entry["killed"]) for entry in self.ledger.sweep())

    def reap(self, resend: Callable[[str, int, str | None, float], None]) -> list[str]:
        """Declare silent running runs lost (or pending again, per their retry policy).

        ``resend(id, next_attempt, queue, countdown)`` queues a retry. Returns the ids
        handled.
        """
        handled = []
        for row in self.store.stale_running(self.settings.lost_after_s):
            try:
                meta = self._script(row, None).meta
            except (ScriptNotFound, ScriptMetadataError, AdhocNotAllowed):
                meta = ScriptMeta()
            retry = wants_retry(meta, ExecutionStatus.LOST, False, row["attempt"])
            if not self.store.mark_lost(
                row["id"], row["attempt"], retry, self.settings.lost_after_s
            ):
                continue
            handled.append(row["id"])
            log.warning(
                "execution %s attempt %s lost (worker %s)%s",
                row["id"],
                row["attempt"],
                row["worker"],
                "; retrying" if retry else "",
            )
            if retry:
                try:
                    resend(row["id"], row["attempt"] + 1, row["queue"], backoff(row["attempt"]))
                except Exception as exc:
                    log.exception("could not queue the retry of %s", row["id"])
                    self.store.fail_pending(row["id"], "BrokerUnavailable", str(exc))
        self._resend_unclaimed(resend)
        return handled

    def _resend_unclaimed(self, resend: Callable[[str, int, str | None, float], None]) -> None:
        """Send again the messages of runs queued long ago and never claimed. Safe: a
        duplicate delivery cannot claim a run twice, so at worst it is dropped."""
        for row in self.store.unclaimed(self.settings.requeue_after_s):
            log.warning("execution %s still queued, unclaimed: sending it again", row["id"])
            try:
                resend(row["id"], 1, row["queue"], 0.0)
            except Exception:
                log.warning("could not send %s again (broker down?)", row["id"], exc_info=True)


def _clip(message: str | None, limit: int = 8000) -> str | None:
    if message is None or len(message) <= limit:
        return message
    return message[:limit] + "…"


def _dump(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False)
