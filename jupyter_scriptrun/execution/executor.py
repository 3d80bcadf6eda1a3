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
import socket
import tempfile
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jupyter_scriptrun import defaults
from jupyter_scriptrun.config import Settings
from jupyter_scriptrun.contract import protocol
from jupyter_scriptrun.contract.metadata import ScriptMeta, parse_metadata
from jupyter_scriptrun.contract.registry import Registry, Script, adhoc_script
from jupyter_scriptrun.exceptions import (
    AdhocNotAllowed,
    ScriptMetadataError,
    ScriptNotFound,
    ScriptVersionMismatch,
)
from jupyter_scriptrun.execution import child, outputs
from jupyter_scriptrun.execution.lease import Lease
from jupyter_scriptrun.execution.live import LiveOutput
from jupyter_scriptrun.execution.notify import Notifier
from jupyter_scriptrun.execution.orphans import Ledger
from jupyter_scriptrun.execution.progress import Progress
from jupyter_scriptrun.execution.runners import Runner, Spawn, WarmRunner, make_runner
from jupyter_scriptrun.models import ATTEMPT_MEASURES, ATTEMPT_STREAMS, ExecutionRecord
from jupyter_scriptrun.queues import queue_problem
from jupyter_scriptrun.script import PROGRESS_FD_ENV, RESULT_FILE_ENV
from jupyter_scriptrun.status import ExecutionStatus
from jupyter_scriptrun.store import Store, get_store, utcnow

log = logging.getLogger(__name__)

CANNOT_RUN_HERE = (ScriptNotFound, ScriptMetadataError, AdhocNotAllowed, ScriptVersionMismatch)
"""Why a script cannot run on this worker: its attempt fails with the reason."""
RESULT_FILE = "result.json"
"""Where ``script.result()`` writes, in the attempt's working folder (not kept as a file)."""
OUTPUT_FOLDER = "output"
"""The attempt's folder for files to keep, inside its working folder (SCRIPTRUN_OUTPUT_DIR)."""


@dataclass
class Outcome:
    """What the task must do after an attempt."""

    status: ExecutionStatus | None
    """The status recorded (None when this delivery was not ours to run, or when the run
    moved on without this attempt)."""
    retry_in_s: float | None = None
    """Seconds until the next attempt, when one is due."""
    error_type: str | None = None
    message: str | None = None
    """The error of a run that did not succeed (what Celery records for the task)."""


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

    def __init__(self, settings: Settings, registry: Registry, store: Store | None = None) -> None:
        self.settings = settings
        self.registry = registry
        self.ledger = Ledger(settings.data_dir / "running")
        self._store = store
        self._runners: dict[str, Runner] = {}
        self._progress: dict[str, Progress] = {}
        """The running attempts' progress, by run (for the worker's status reply)."""
        self._notifier: Notifier | None = None

    @property
    def notifier(self) -> Notifier:
        """Sends the notifications of the runs this worker ends (made with the store)."""
        if self._notifier is None:
            self._notifier = Notifier(self.store)
        return self._notifier

    @property
    def store(self) -> Store:
        """The store, opened (and migrated) on first use: when the worker starts, not when
        Celery's own tools import the worker module."""
        if self._store is None:
            self._store = get_store(
                self.settings.effective_database_url, migrate=self.settings.auto_migrate
            )
        return self._store

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
            except CANNOT_RUN_HERE as exc:
                return self._refuse(row, attempt, exc)
            spec = self._spec(row, script, workdir)
            live = LiveOutput(min(defaults.LIVE_OUTPUT_BYTES, self.settings.max_output_bytes))
            progress = self._progress[execution_id] = Progress(live)
            lease = Lease(
                self.store,
                execution_id,
                attempt,
                live,
                self.settings.heartbeat_s,
                self.settings.lost_after_s,
                progress,
            ).start()
            try:
                outcome = self._execute(spec, script, execution_id, attempt, progress, lease)
            finally:
                # Kept also when it failed or timed out (what it wrote may say why), while
                # the lease still beats: storing big files is part of the run.
                outputs.keep(self.store, self.settings, execution_id, attempt, spec.env)
                unsent = lease.close()
                self._progress.pop(execution_id, None)
            given = given_result(spec)
        finally:
            _remove_later(workdir)
        verdict = self._judge(outcome, spec, given)
        if lease.reason is not None:  # it stopped itself: the run is no longer surely its
            verdict = protocol.Verdict(ExecutionStatus.LOST, lease.reason, "LeaseLost")
        retry = wants_retry(script.meta, verdict.status, verdict.retryable, attempt)
        status = ExecutionStatus.RETRYING if retry else verdict.status
        counted = self.store.finish(
            execution_id,
            attempt,
            status,
            record={
                **{column: getattr(outcome, column) for column in ATTEMPT_MEASURES},
                "error_type": verdict.error_type,
                "message": _clip(verdict.message),
                "progress": progress.latest,
            },
            output={
                **{column: getattr(outcome, column) for column in ATTEMPT_STREAMS},
                "traceback": verdict.traceback,
                "result": verdict.result,
                "data": verdict.data,
                "content_hash": script.content_hash,  # what ran; the run keeps what was asked
            },
            chunks=unsent,
            ended_as=verdict.status,
        )
        log.info(
            "execution %s (%s) attempt %s: %s in %.3f s%s",
            execution_id,
            script.name,
            attempt,
            (status if counted else verdict.status).value,
            outcome.duration_s,
            "" if counted else " (superseded: the run had moved on)",
        )
        if not counted:  # it no longer speaks for the run: no retry, no task state of its own
            return Outcome(None)
        self.notifier.ended(execution_id, row, status)  # (a retrying run tells no one yet)
        return Outcome(
            status,
            backoff(attempt) if retry else None,
            error_type=verdict.error_type,
            message=_clip(verdict.message, 500),
        )

    def _refuse(self, row: ExecutionRecord, attempt: int, exc: Exception) -> Outcome:
        """End an attempt whose script cannot run here (missing, bad metadata, ad-hoc
        refused) as failed, with the reason."""
        status = ExecutionStatus.FAILED
        if self.store.finish(
            row["id"],
            attempt,
            status,
            record={"error_type": type(exc).__name__, "message": str(exc)},
            output={},
        ):
            self.notifier.ended(row["id"], row, status)
        return Outcome(status, error_type=type(exc).__name__, message=str(exc))

    def _spec(self, row: ExecutionRecord, script: Script, workdir: str) -> child.RunSpec:
        """The command, environment and limits of one attempt (its output folder made)."""
        os.mkdir(os.path.join(workdir, OUTPUT_FOLDER), 0o700)
        env = protocol.script_env(
            os.environ,
            self.settings.env_allow,
            parameters=protocol.encode_parameters(script.name, row["parameters"]),
            page_context=row["page_context"],
            script_name=script.name,
            execution_id=row["id"],
            output_dir=os.path.join(workdir, OUTPUT_FOLDER),
        )
        env["TMPDIR"] = workdir
        env[RESULT_FILE_ENV] = os.path.join(workdir, RESULT_FILE)
        return child.RunSpec(
            argv=script.command(),
            env=env,
            cwd=workdir,
            timeout_s=row["timeout_s"] or script.meta.timeout or self.settings.default_timeout_s,
            kill_grace_s=self.settings.kill_grace_s,
            max_output_bytes=self.settings.max_output_bytes,
            memory_limit_mb=script.meta.memory_limit_mb or self.settings.memory_limit_mb,
            channel_env=PROGRESS_FD_ENV,
        )

    def _execute(
        self,
        spec: child.RunSpec,
        script: Script,
        execution_id: str,
        attempt: int,
        progress: Progress,
        lease: Lease,
    ) -> child.RunOutcome:
        """Run the process, its session in the host's ledger while it lives; the lease
        (on its own thread) says when to stop it."""
        sessions: list[int] = []
        live = progress.live

        def on_output(stream: str, data: bytes) -> None:
            live.add(stream, data)
            if stream == "stderr":  # a tqdm bar, for a script that does not report itself
                progress.add_stderr(data)

        try:
            return child.run(
                spec,
                poll=lease.poll,
                on_output=on_output,
                spawn=self._spawner(script),
                on_start=lambda sid: self._record_session(sid, execution_id, attempt, sessions),
                on_channel=progress.add,
            )
        finally:
            for sid in sessions:  # the tree is gone when run() returns
                self.ledger.remove(sid)

    @staticmethod
    def _judge(outcome: child.RunOutcome, spec: child.RunSpec, given: Any) -> protocol.Verdict:
        """The contract's reading of the outcome (``given``: the document of the script's
        ``result()`` call); a MemoryError under a limit is the limit's doing."""
        verdict = protocol.interpret(outcome, spec.timeout_s, given)
        if spec.memory_limit_mb and verdict.error_type == "MemoryError":
            verdict = dataclasses.replace(
                verdict,
                error_type="MemoryLimitExceeded",
                message=f"the run reached its memory limit of {spec.memory_limit_mb:g} MiB "
                f"(MemoryError: {verdict.message or ''})",
            )
        return verdict

    def _spawner(self, script: Script) -> Spawn | None:
        """How ``script``'s process starts: its metadata's runner, else the worker's
        default (see ``execution/runners.py``); None for a fresh process."""
        name = script.meta.runner or self.settings.default_runner
        if name not in self._runners:
            self._runners[name] = make_runner(name, self.settings)
        return self._runners[name].spawner(script)

    def progress_of(self, execution_id: str) -> dict[str, Any] | None:
        """The latest progress of a run this executor runs now (None: none reported)."""
        progress = self._progress.get(execution_id)
        return progress.latest if progress is not None else None

    def warm_parent_pid(self) -> int | None:
        """The warm parent's pid, if this executor started one and it lives."""
        runner = self._runners.get("warm")
        return runner.parent_pid() if isinstance(runner, WarmRunner) else None

    def close(self) -> None:
        """Release every runner started (the warm parent, if one was)."""
        for one in self._runners.values():
            one.close()

    def _meta(self, row: ExecutionRecord) -> ScriptMeta:
        """The submitted version's metadata (for its retry policy), read without writing
        any file; the defaults when no copy of it can be found."""
        source = row.get("source")
        try:
            if source is not None:
                return parse_metadata(source, source=f"ad-hoc script {row['script']!r}")
            local = self.registry.get(row["script"])
            if row["content_hash"] in (None, local.content_hash):
                return local.meta
        except (ScriptNotFound, ScriptMetadataError):
            pass
        kept = self.store.script_version(row["content_hash"]) if row["content_hash"] else None
        if kept is None:
            return ScriptMeta()
        try:
            return parse_metadata(kept[1].decode("utf-8", "replace"), source=kept[0])
        except ScriptMetadataError:
            return ScriptMeta()

    def _script(self, row: ExecutionRecord, workdir: Path) -> Script:
        """The script a run names, exactly as submitted: this host's copy when it is the
        submitted version, else the store's copy of that version (written to ``workdir``,
        the attempt's folder); an ad-hoc source likewise.

        Raises:
            ScriptVersionMismatch: neither this host nor the store has that version.
            ScriptNotFound, AdhocNotAllowed, ScriptMetadataError: as their names say.
        """
        source = row.get("source")
        if source is not None:
            return self._adhoc(row, source, workdir)
        wanted = row["content_hash"]
        try:
            local = self.registry.get(row["script"])
        except ScriptNotFound:
            local = None
        if local is not None and (wanted is None or local.content_hash == wanted):
            return local
        kept = self.store.script_version(wanted) if wanted else None
        if kept is None:
            if local is None:
                raise ScriptNotFound(
                    f"no script {row['script']!r} on {socket.gethostname()}, and the store "
                    "keeps no copy of the submitted version"
                )
            raise ScriptVersionMismatch(
                f"{row['script']!r} was submitted as {wanted} but {socket.gethostname()} "
                f"has {local.content_hash}, and the store keeps no copy of {wanted}"
            )
        file_name, data = kept
        path = workdir / file_name
        path.write_bytes(data)
        path.chmod(0o700)
        return self.registry.load(row["script"], path)

    def _adhoc(self, row: ExecutionRecord, source: str, workdir: Path) -> Script:
        if not self.settings.allow_adhoc:
            raise AdhocNotAllowed(
                "this worker does not run ad-hoc scripts (SCRIPTRUN_ALLOW_ADHOC=0); "
                "register the script in a scripts folder instead"
            )
        script = adhoc_script(row["script"], source, row["language"] or "python", workdir)
        script.path.write_text(source, encoding="utf-8", errors="surrogatepass")
        return script

    def _record_session(self, sid: int, execution_id: str, attempt: int, into: list[int]) -> None:
        try:
            self.ledger.add(sid, execution_id, attempt)
            into.append(sid)
        except OSError:  # the run goes on; only the clean-up after a crash is lost
            log.warning("could not record session %s of %s", sid, execution_id, exc_info=True)

    def sweep_orphans(self) -> int:
        """Kill what scripts of dead workers on this host left running; how many."""
        return sum(len(entry["killed"]) for entry in self.ledger.sweep())

    def reap(
        self,
        resend: Resend,
        probe: Callable[[str, list[str]], Any] | None = None,
        on_lost: Callable[[str, str], None] | None = None,
    ) -> list[str]:
        """Declare silent running runs lost (or pending again, per their retry policy),
        and send again the messages of queued runs that the broker lost.

        ``resend(id, next_attempt, queue, countdown, script)`` queues an attempt;
        ``probe(queue, ids)`` says which messages the broker lost and whether a worker
        consumes the queue (a ``brokers.Probe``); ``on_lost(id, message)`` hears of
        each run that ended lost. Returns the ids declared lost.
        """
        handled = []
        for row in self.store.stale_running(self.settings.lost_after_s):
            retry = wants_retry(self._meta(row), ExecutionStatus.LOST, False, row["attempt"])
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
                self._resend(resend, row, row["attempt"] + 1, backoff(row["attempt"]))
                continue
            self.notifier.ended(row["id"], row, ExecutionStatus.LOST)
            if on_lost is not None:
                on_lost(row["id"], f"worker {row['worker']} stopped responding")
        self._resend_unclaimed(resend, probe)
        return handled

    def _resend(
        self, resend: Resend, row: Mapping[str, Any], attempt: int, countdown: float
    ) -> None:
        """Queue an attempt of a pending run; a run that cannot be queued fails with the
        reason (a queue refused as unsafe, or the broker away)."""
        queue = row["queue"] or self.settings.queue
        if problem := queue_problem(queue):
            # Recorded before this release checked queue names: never send it anywhere.
            self.store.fail_pending(row["id"], "InvalidQueue", problem)
            log.error("execution %s not sent again: %s", row["id"], problem)
            return
        try:
            resend(row["id"], attempt, queue, countdown, row["script"])
        except Exception as exc:
            log.exception("could not queue %s again", row["id"])
            if attempt > 1:  # a retry that cannot be queued would wait forever
                self.store.fail_pending(row["id"], "BrokerUnavailable", str(exc))

    def _resend_unclaimed(
        self, resend: Resend, probe: Callable[[str, list[str]], Any] | None
    ) -> None:
        """Send again the messages that the broker lost (a restart without persistence),
        of runs queued ``requeue_after_s`` ago and never claimed. A message the broker
        still holds is not copied; a queue no worker consumes is noted in its runs."""
        by_queue: dict[str, list[dict[str, Any]]] = {}
        for row in self.store.unclaimed(self.settings.requeue_after_s):
            by_queue.setdefault(row["queue"] or self.settings.queue, []).append(row)
        for queue, rows in by_queue.items():
            ids = [r["id"] for r in rows]
            found = None
            if probe is not None and queue_problem(queue) is None:
                try:
                    found = probe(queue, ids)
                except Exception:
                    log.warning("could not look into queue %s", queue, exc_info=True)
                    continue  # the broker is away: try again next period
            if found is not None and found.consumers == 0:
                note = (
                    f"waiting: no worker consumes queue {queue!r} "
                    f"(checked {utcnow():%Y-%m-%d %H:%M:%S} UTC); start one with "
                    f"'scriptrun worker -Q {queue}'"
                )
                self.store.note_pending(ids, note)
                log.warning("%d run(s) %s", len(ids), note)
            lost = (
                rows
                if found is None or found.missing is None
                else [r for r in rows if r["id"] in found.missing]
            )
            for row in lost:
                log.warning(
                    "execution %s still queued and its message is gone: sending it again",
                    row["id"],
                )
                self._resend(resend, row, 1, 0.0)


def given_result(spec: child.RunSpec) -> Any:
    """The document a script gave through ``script.result()`` (``protocol.NOT_FOUND``: it
    gave none, or one that is not JSON, which is logged and the stdout read instead).
    Read before the working folder goes."""
    path = spec.env.get(RESULT_FILE_ENV)
    if not path:
        return protocol.NOT_FOUND
    try:
        with open(path, "rb") as handle:
            raw = handle.read(spec.max_output_bytes + 1)
    except FileNotFoundError:
        return protocol.NOT_FOUND
    except OSError:
        log.warning("could not read a result file", exc_info=True)
        return protocol.NOT_FOUND
    if len(raw) > spec.max_output_bytes:
        log.warning("a result document over %d bytes: its stdout is read", spec.max_output_bytes)
        return protocol.NOT_FOUND
    try:
        return json.loads(raw)
    except ValueError:
        log.warning("a result file that is not JSON: its stdout is read instead")
        return protocol.NOT_FOUND


Resend = Callable[[str, int, str, float, str], None]
"""``resend(id, attempt, queue, countdown, script)``: queue one attempt of a run."""


def _clip(message: str | None, limit: int = 8000) -> str | None:
    if message is None or len(message) <= limit:
        return message
    return message[:limit] + "…"


_cleaner: ThreadPoolExecutor | None = None
_cleaner_lock = threading.Lock()


def _remove_later(folder: str) -> None:
    """Remove a run's folder on a thread of its own: the run's end is recorded and told
    without waiting for its files to be deleted (a fraction of a millisecond for a small
    run, much more for many files). Pending removals finish before the worker exits
    (concurrent.futures joins its threads at exit)."""
    global _cleaner
    with _cleaner_lock:
        if _cleaner is None:
            _cleaner = ThreadPoolExecutor(1, thread_name_prefix="scriptrun-cleanup")
    try:
        _cleaner.submit(shutil.rmtree, folder, ignore_errors=True)
    except RuntimeError:  # the interpreter is shutting down: remove it now
        shutil.rmtree(folder, ignore_errors=True)
