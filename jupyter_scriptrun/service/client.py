"""The client: submit runs, follow them, read the history. What every front end calls."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from jupyter_scriptrun import defaults
from jupyter_scriptrun.config import Settings, get_settings
from jupyter_scriptrun.contract.registry import Registry, Script, adhoc_script, keep_version
from jupyter_scriptrun.contract.request import RunRequest
from jupyter_scriptrun.exceptions import (
    ExecutionTimeout,
    InvalidParameters,
    SchemaMismatch,
    StoreUnavailable,
    WorkerUnavailable,
)
from jupyter_scriptrun.fleet import control, wakeups
from jupyter_scriptrun.models import HistoryQuery, export_record
from jupyter_scriptrun.queues import allowed_queues, parse_queues, queue_problem
from jupyter_scriptrun.service.handle import Execution
from jupyter_scriptrun.service.unreachable import broker_reason, store_problem
from jupyter_scriptrun.status import ExecutionStatus
from jupyter_scriptrun.store import Store, get_store, new_execution_id

if TYPE_CHECKING:
    from datetime import timedelta
    from pathlib import Path

    import pandas as pd
    from celery import Celery

    from jupyter_scriptrun.service.scheduling import Schedule

log = logging.getLogger(__name__)

# wait() without a push notification reads the store at growing intervals: every 20 ms
# at most during the first seconds (short scripts are noticed at once), then every 100 ms
# (a long script costs next to nothing to wait for). One read is a primary-key lookup.
POLL_FIRST_S = 0.002
POLL_SHORT_MAX_S = 0.02
POLL_MAX_S = 0.1
SHORT_PHASE_S = 5.0
# On the embedded default the store is a local SQLite file (a read is about 0.1 ms of
# CPU), so its first second is read every 5 ms at most: a short run is seen within a
# few ms, not at the next of the growing steps (26, 42, 62 ms after the submit), which
# gave its latency two modes 15 ms apart.
LOCAL_POLL_MAX_S = 0.005
LOCAL_DENSE_S = 1.0
NOTIFY_SLICE_S = 2.0


class Client:
    """Submits scripts and reads executions, for one configuration.

    Args:
        settings: the configuration; the environment's (``SCRIPTRUN_*``) by default.
    """

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self.registry = Registry(self.settings.scripts_path)
        self._store: Store | None = None
        self._app: Celery | None = None
        self._script_ids: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    # -- parts, made on first use ----------------------------------------------

    @property
    def store(self) -> Store:
        """The store (opened, and migrated if needed, on first use).

        Raises:
            StoreUnavailable: the database cannot be reached or opened (the message names
                it, without its password, and says what to check).
            SchemaMismatch: its schema is not this version's and this process may not
                migrate it (``SCRIPTRUN_AUTO_MIGRATE``), or it is newer than this version.
        """
        if self._store is None:
            url = self.settings.effective_database_url
            try:
                self._store = get_store(url, migrate=self.settings.auto_migrate)
            except SchemaMismatch:
                raise  # it says what to do: migrate, or upgrade this host
            except Exception as exc:
                raise StoreUnavailable(store_problem(url, exc)) from None
        return self._store

    def close(self) -> None:
        """Release the store's pooled connections (they reopen if the client is used)."""
        if self._store is not None:
            self._store.dispose()

    @property
    def app(self) -> Celery:
        """The Celery app used to send runs (imported on first use: Celery is heavy)."""
        with self._lock:
            if self._app is None:
                from jupyter_scriptrun.fleet.celery_app import make_app

                self._app = make_app(self.settings)
            return self._app

    def local_worker(self) -> Any:
        """The embedded default's local worker manager."""
        from jupyter_scriptrun.fleet.local import LocalWorker

        return LocalWorker(self.settings)

    def prune(self, older_than: timedelta, *, dry_run: bool = False) -> int:
        """Remove runs that ended more than ``older_than`` ago (their counts per script
        and status are kept); how many were removed (or would be, with ``dry_run``)."""
        return self.store.prune(older_than, dry_run=dry_run)

    def local_workers(self) -> dict[Path, int]:
        """Every local worker running under this data folder (any configuration): its
        folder and pid."""
        from jupyter_scriptrun.fleet.local import LocalWorker

        return LocalWorker.all_pids(self.settings.data_dir)

    def stop_local_workers(self) -> int:
        """Stop every local worker under this data folder; how many were running."""
        from jupyter_scriptrun.fleet.local import LocalWorker

        return LocalWorker.stop_all(self.settings.data_dir)

    def worker_command(self, queues: str | None = None, **options: Any) -> list[str]:
        """The command line of a worker on these settings' queues (``queues``: comma-
        separated, default the default queue); ``options`` as ``fleet.local.worker_argv``.

        Raises:
            ValueError: a queue name that is not allowed.
        """
        from jupyter_scriptrun.fleet.local import worker_argv

        names = queues or self.settings.queue
        if problems := [p for p in map(queue_problem, parse_queues(names)) if p]:
            raise ValueError("; ".join(problems))
        return worker_argv(names, **options)

    # -- scripts ---------------------------------------------------------------

    def scripts(self) -> list[Script]:
        """Every registered script."""
        return self.registry.scripts()

    def script_ids(self) -> dict[str, int]:
        """Every discovered script's stable integer id (the seed's ``script_id``), by name;
        scripts seen for the first time are registered now."""
        return self.store.ensure_scripts({s.name: s.content_hash for s in self.scripts()})

    def script(self, name: str) -> Script:
        """One script by name (raises ScriptNotFound with the known names)."""
        return self.registry.get(name)

    # -- runs ------------------------------------------------------------------

    def submit(
        self,
        script: str,
        params: dict[str, Any] | None = None,
        *,
        page_context: str = "python",
        timeout: float | None = None,
        queue: str | None = None,
        idempotency_key: str | None = None,
        notify: Sequence[str] | None = None,
        notify_on: Sequence[str] | None = None,
        schedule_id: str | None = None,
    ) -> Execution:
        """Validate and queue a run; returns its handle at once. ``notify``: apprise URLs
        told when the run ends ``notify_on`` (default failed, timed_out, lost).

        Raises:
            ScriptNotFound: no such script (or a malformed name).
            InvalidParameters: every problem with ``params``, at once.
            ExecutionConflict: ``idempotency_key`` was used before (``execution_id`` of
                the exception names that run).
            WorkerUnavailable: the broker could not be reached (the run is recorded as
                failed with the reason, nothing is lost silently).
        """
        found = self.registry.get(script)
        return self._submit(
            found,
            params,
            script_id=self._script_id(found),
            page_context=page_context,
            timeout=timeout,
            queue=queue,
            idempotency_key=idempotency_key,
            notify=notify,
            notify_on=notify_on,
            schedule_id=schedule_id,
        )

    def submit_source(
        self,
        source: str,
        params: dict[str, Any] | None = None,
        *,
        name: str = "cell",
        language: str = "python",
        **options: Any,
    ) -> Execution:
        """Queue an ad-hoc script (e.g. a notebook cell) under ``name``: it runs and is
        recorded like a registered script; its text travels with the run, so any worker
        can run it. Options as for :meth:`submit`."""
        if not isinstance(source, str) or not source.strip():
            raise InvalidParameters(name, ["the script's source is empty"])
        found = adhoc_script(name, source, language)
        return self._submit(
            found, params, script_id=None, source=source, language=language.lower(), **options
        )

    def _submit(
        self,
        found: Script,
        params: dict[str, Any] | None,
        *,
        script_id: int | None,
        page_context: str = "python",
        timeout: float | None = None,
        queue: str | None = None,
        idempotency_key: str | None = None,
        source: str | None = None,
        language: str | None = None,
        **more: Any,
    ) -> Execution:
        schedule_id = more.pop("schedule_id", None)
        request = RunRequest(params, page_context, timeout, queue, idempotency_key, **more)
        columns = request.prepare(found, self.settings, self.queue_problem)
        if source is None:
            keep_version(self.store, found)
        execution_id = new_execution_id()
        created = self.store.create(
            id=execution_id,
            script_id=script_id,
            source=source,
            language=language,
            **columns,
            **({"schedule_id": schedule_id} if schedule_id else {}),
        )
        execution = Execution(self, execution_id, created=created)
        execution.sent_at = self._send(execution_id, columns["queue"], found.name)
        return execution

    def queues(self) -> tuple[str, ...]:
        """The queues runs may be sent to (``SCRIPTRUN_QUEUES``, or the default queue and
        the queues registered scripts name)."""
        return allowed_queues(
            self.settings.queues, self.settings.queue, (s.meta.queue for s in self.scripts())
        )

    def queue_problem(self, queue: object, script_queue: str | None = None) -> str | None:
        """Why runs cannot be sent to ``queue``, or None when they can (``script_queue``:
        the queue the submitted script names, allowed unless an operator lists queues)."""
        if problem := queue_problem(queue):
            return problem
        if queue == self.settings.queue or (queue == script_queue and not self.settings.queues):
            return None  # allowed by definition: no need to list every script
        allowed = self.queues()
        if queue not in allowed:
            return (
                f"queue {queue!r} is not one of the allowed queues ({', '.join(allowed)}); "
                "an operator allows more with SCRIPTRUN_QUEUES"
            )
        return None

    def _script_id(self, script: Script) -> int:
        key = (script.name, script.content_hash)
        if key not in self._script_ids:
            self._script_ids[key] = self.store.ensure_script(script.name, script.content_hash)
        return self._script_ids[key]

    def _send(self, execution_id: str, queue: str, script: str) -> float:
        """Send the run's message; the instant (``time.time()``) it was handed to Celery."""
        from jupyter_scriptrun.fleet.celery_app import TASK_NAME, shadow_name

        try:
            if self.settings.embedded:
                self.local_worker().ensure()
            sent_at = time.time()
            self.app.send_task(
                TASK_NAME,
                args=(execution_id, 1),
                task_id=execution_id,
                queue=queue,
                shadow=shadow_name(script),
            )
        except Exception as exc:
            reason = broker_reason(exc)
            self.store.fail_pending(execution_id, "BrokerUnavailable", reason)
            where = (
                "check SCRIPTRUN_BROKER_URL and that the broker runs"
                if not self.settings.embedded
                else "see 'scriptrun local status'"
            )
            raise WorkerUnavailable(
                f"could not queue the run: {self._broker_label()} is unreachable ({reason}); "
                f"{where}. The run is recorded as failed."
            ) from exc
        return sent_at

    def _broker_label(self) -> str:
        if self.settings.embedded:
            return "the embedded broker"
        from kombu.utils.url import maybe_sanitize_url

        return str(maybe_sanitize_url(self.settings.broker_url))

    def where(self) -> dict[str, str]:
        """Where runs go and are recorded, passwords hidden: ``{"broker", "store"}``."""
        from sqlalchemy.engine import make_url

        store = make_url(self.settings.effective_database_url)
        return {
            "broker": "embedded (this machine)" if self.settings.embedded else self._broker_label(),
            "store": store.render_as_string(hide_password=True),
        }

    def run(
        self,
        script: str,
        params: dict[str, Any] | None = None,
        *,
        wait_timeout: float | None = None,
        check: bool = False,
        **options: Any,
    ) -> Execution:
        """Submit and wait; with ``check=True`` a run that did not succeed raises."""
        execution = self.submit(script, params, **options).wait(wait_timeout)
        if check:
            execution.raise_for_status()
        return execution

    def get(self, id_or_prefix: str) -> Execution:
        """The handle of an existing execution (a unique id prefix is enough)."""
        return Execution(self, self.store.resolve(id_or_prefix))

    def cancel(self, id_or_prefix: str) -> ExecutionStatus:
        """Cancel an execution (see :meth:`Execution.cancel`)."""
        return self.get(id_or_prefix).cancel()

    def cancel_queued(self, script: str | None = None, queue: str | None = None) -> list[str]:
        """Cancel every run not started yet (queued or waiting for a retry), only those of
        ``script`` and on ``queue`` when given; returns their ids. This, not ``celery
        purge``, is how queued runs are dropped: the store is the truth, and a purged
        message of a queued run is sent again by the reaper."""
        what = " and ".join(
            f"{k} {v!r}" for k, v in (("script", script), ("queue", queue)) if v is not None
        )
        reason = "dropped from the queue by request"
        if what:
            reason += f" (every queued run of {what})"
        return self.store.cancel_pending(reason, script=script, queue=queue)

    def history(
        self, limit: int | str | None = defaults.HISTORY_LIMIT, **filters: Any
    ) -> pd.DataFrame:
        """The newest ``limit`` runs as a DataFrame, newest first (``limit=None``: every
        run; ValueError for a negative one).

        Filters (``models.HistoryQuery``): ``script`` (name or names), ``status`` (value
        or values), ``since`` / ``until`` (datetimes), ``page_context``, ``text`` (in the
        message or error type, or an id prefix), ``schedule_id``, ``offset``. ValueError
        lists every problem with them (an unknown filter, a status that is none).
        """
        from jupyter_scriptrun.params import history_limit
        from jupyter_scriptrun.service.frames import history

        query = HistoryQuery.of(limit=history_limit(limit), **filters)
        return history(self.store, **query.filters())

    def history_records(
        self, limit: int | str | None = defaults.HISTORY_LIMIT, **filters: Any
    ) -> list[dict[str, Any]]:
        """The same runs as :meth:`history`, as JSON-ready records with the values of its
        JSON export (``frames.history_json``), without pandas: what the REST API and the
        JupyterLab extension poll (a DataFrame cost ~10 ms of server CPU a request)."""
        from jupyter_scriptrun.params import history_limit

        query = HistoryQuery.of(limit=history_limit(limit), **filters)
        return [export_record(row) for row in self.store.history_rows(**query.filters())]

    def schedule(
        self, script: str, params: dict[str, Any] | None = None, **options: Any
    ) -> Schedule:
        """Run ``script`` on ``cron`` (5 fields) or ``every`` (seconds, "30s", "5m", "1h"),
        exactly once per tick while any worker lives. Options and their defaults: see
        :func:`jupyter_scriptrun.service.scheduling.create`. Raises InvalidSchedule listing every
        problem (timing, zone, policies, parameters)."""
        from jupyter_scriptrun.service.scheduling import create

        return create(self, script, params, **options)

    def schedules(self) -> pd.DataFrame:
        """Every schedule as a DataFrame (see ``scheduling.LIST_COLUMNS``)."""
        from jupyter_scriptrun.service.scheduling import listing

        return listing(self)

    def get_schedule(self, key: str) -> Schedule:
        """A schedule by id or name (ScheduleNotFound when none)."""
        from jupyter_scriptrun.service.scheduling import Schedule

        return Schedule(self, self.store.get_schedule(key))

    def ensure_scheduler(self) -> None:
        """On the embedded default, start the local worker: it is what fires schedules
        (and it stays while one is active)."""
        if self.settings.embedded:
            self.local_worker().ensure()

    def resume_schedules(self) -> bool:
        """On the embedded default, start the local worker if a schedule is active: after a
        reboot nothing else runs to fire them (a fleet's workers fire them themselves).
        Whether the local worker was asked to run."""
        if not self.settings.embedded:
            return False
        if not self.settings.database_url and not self.settings.default_store_file.exists():
            return False  # no store yet, so no schedule: create nothing
        if not self.store.has_active_schedules():
            return False
        self.local_worker().ensure()
        return True

    def count_runs(self, **filters: Any) -> int:
        """How many runs the history filters match (every run without filters)."""
        return self.store.history_count(**HistoryQuery.of(**filters).filters())

    def history_page(self, **options: Any) -> tuple[list[dict[str, Any]], int]:
        """One page of the history as records (each with ``files``: how many it kept),
        and how many runs match: for table views.
        Options: ``order_by`` (a history column), ``descending``, ``limit``, ``offset``
        and the filters of :meth:`history`."""
        order = {k: options.pop(k) for k in ("order_by", "descending") if k in options}
        records, total = self.store.history_page(**order, **HistoryQuery.of(**options).filters())
        kept = self.store.file_counts(r["id"] for r in records)
        for record in records:  # a table marks the runs that kept files
            record["files"] = kept.get(record["id"], 0)
        return records, total

    def workers(self, timeout: float = 1.0) -> list[dict[str, Any]]:
        """Online workers, by name: the ids they run (``active``) and hold (``reserved``),
        and, from the ``scriptrun_status`` reply, their queues, slots, runs (script and
        elapsed seconds), memory and pid. One broadcast; a worker that does not know the
        command (another version) is listed with its name and ids only."""
        workers = []
        for reply in control.statuses(self.app, timeout):
            for name, status in reply.items():
                known = isinstance(status, dict) and "slots" in status
                state: dict[str, Any] = _dated(status) if known else {}
                runs = state.get("runs", [])
                workers.append(
                    {
                        **state,
                        "name": name,
                        "active": [r["id"] for r in runs],
                        "reserved": list(state.get("waiting", [])),
                    }
                )
        return sorted(workers, key=lambda w: w["name"])

    def wait_for(self, execution_id: str, timeout: float | None = None) -> ExecutionStatus:
        """Block until the execution ends; return its final status.

        With a Redis result backend the end is pushed (no polling interval is added);
        otherwise the store is read at short, growing intervals.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        notify = self.settings.effective_result_backend is not None
        # Without a result backend, a worker on this host rings the run's end: listen
        # before the first read, so an end between the two is not missed.
        listener = None if notify else wakeups.Listener(wakeups.run_name(execution_id))
        try:
            return self._wait_loop(execution_id, deadline, timeout, notify, listener)
        finally:
            if listener is not None:
                listener.close()

    def _wait_loop(
        self,
        execution_id: str,
        deadline: float | None,
        timeout: float | None,
        notify: bool,
        listener: wakeups.Listener | None,
    ) -> ExecutionStatus:
        """``wait_for``'s loop: a notice or a wake-up, then the store says the status."""
        status = self.store.status(execution_id)
        if status.is_final:
            return status
        interval = POLL_FIRST_S
        started = time.monotonic()
        next_check = started + 2.0
        # A local worker's wake-up makes dense polling pointless; without one, the
        # embedded store is read densely (LOCAL_POLL_MAX_S).
        dense = self.settings.embedded and not (listener and listener.listening)
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise ExecutionTimeout(
                    f"execution {execution_id} still {status.value} after {timeout:g} s "
                    "(it goes on; wait again or cancel it)"
                )
            noticed: bool | ExecutionStatus = False
            if notify:
                slice_s = NOTIFY_SLICE_S if remaining is None else min(NOTIFY_SLICE_S, remaining)
                noticed = self._await_notice(execution_id, slice_s)
                if noticed is ExecutionStatus.SUCCEEDED:
                    return noticed  # sent after the finish was committed: no read needed
            else:
                pause = interval if remaining is None else min(interval, remaining)
                if listener is not None:
                    listener.wait(pause)
                else:
                    time.sleep(pause)
                elapsed = time.monotonic() - started
                cap = POLL_SHORT_MAX_S if elapsed < SHORT_PHASE_S else POLL_MAX_S
                if dense and elapsed < LOCAL_DENSE_S:
                    cap = LOCAL_POLL_MAX_S
                interval = min(cap, interval * 1.5)
            status = self.store.status(execution_id)
            if status.is_final:
                return status
            if noticed:
                # A notice for a delivery that did not end the run (a duplicate, or a run
                # declared lost): it would return at once again, so read the store.
                notify = False
            if self.settings.embedded and time.monotonic() >= next_check:
                next_check = time.monotonic() + 2.0
                self._revive_local_worker(execution_id, status)

    def _await_notice(self, execution_id: str, timeout: float) -> bool | ExecutionStatus:
        """Wait up to ``timeout`` for Celery's completion notice: False if none came,
        ``SUCCEEDED`` when the notice says the run succeeded (the task returns only after
        the store recorded it), True for any other notice (the store says what)."""
        from celery.exceptions import TimeoutError as CeleryTimeout

        try:
            value = self.app.AsyncResult(execution_id).get(
                timeout=timeout, propagate=False, disable_sync_subtasks=False
            )
        except CeleryTimeout:
            return False
        except Exception:
            log.debug("result backend unavailable; reading the store instead", exc_info=True)
            return True
        if isinstance(value, dict) and value.get("status") == ExecutionStatus.SUCCEEDED.value:
            return ExecutionStatus.SUCCEEDED
        return True

    def _revive_local_worker(self, execution_id: str, status: ExecutionStatus) -> None:
        """A pending run with no local worker would wait forever: start one again."""
        if status.value in ("queued", "retrying"):
            local = self.local_worker()
            if local.pid() is None:
                log.warning(
                    "local worker gone while %s was %s; starting it again",
                    execution_id,
                    status.value,
                )
                local.ensure()


_default: Client | None = None
_default_lock = threading.Lock()


def default_client() -> Client:
    """The process-wide client, configured from the environment (made on first use)."""
    global _default
    from jupyter_scriptrun.service import warmup

    warmup.wait()
    with _default_lock:
        if _default is None:
            _default = Client()
        return _default


def _dated(state: dict[str, Any]) -> dict[str, Any]:
    """A worker's status with its times as UTC datetimes, as every record has them (the
    broadcast carries epoch seconds)."""
    from datetime import UTC, datetime

    def at(value: Any) -> Any:
        return datetime.fromtimestamp(value, UTC) if isinstance(value, int | float) else value

    runs = [{**r, "started_at": at(r.get("started_at"))} for r in state.get("runs", [])]
    return {**state, "runs": runs, **{k: at(state.get(k)) for k in ("started_at", "time")}}
