"""Default values, each with the reason for its value.

Everything here can be overridden through :class:`jupyter_scriptrun.config.Settings`.
"""

import functools

QUEUE = "scriptrun"
"""Celery queue for runs. Not Celery's own ``celery`` queue, so that a fleet shared with
other applications does not mix our tasks with theirs."""

TIMEOUT_S = 3600.0
"""A script's time limit when its metadata names none: long enough for real jobs, short
enough that a hung script cannot hold a worker slot for a day."""

KILL_GRACE_S = 5.0
"""Seconds between SIGTERM and SIGKILL when a run is timed out or cancelled: time for a
script to clean up, bounded so a script that ignores SIGTERM still dies promptly."""

MAX_OUTPUT_BYTES = 2 * 1024 * 1024
MAX_FILES_MB = 100.0
"""What a run's files may take in all, and any one of them (SCRIPTRUN_MAX_FILES_MB, _FILE_MB)."""
MAX_FILE_COUNT = 1000
"""Files kept per run; a folder of more is a cache, not a result."""
FILE_CHUNK_BYTES = 1024 * 1024
"""Files are read, hashed and stored in pieces this size: a worker never holds a whole one."""
"""Per-stream output cap (stdout and stderr each). Beyond it the middle of the stream is
dropped (the start and the end are kept, the end holding the result), so a script printing
gigabytes cannot grow a worker's memory."""

MAX_PARAMETERS_BYTES = 128 * 1024 - 64
MAX_PARAMETERS_DEPTH = 64
"""Objects and arrays nested in parameters (and in a REST body): far beyond any real form,
and well inside every JSON library's recursion on the way to a script."""
"""Largest parameters document accepted (as UTF-8 JSON). Parameters travel in the one
environment variable ``SCRIPT_PARAMETERS``, and Linux refuses to exec with a single
variable over 128 KiB (MAX_ARG_STRLEN); larger inputs belong in a file the script reads."""

HEARTBEAT_S = 10.0
"""How often a running run refreshes its heartbeat in the store."""

LOST_AFTER_S = 60.0
"""A ``running`` run whose heartbeat is older than this is declared ``lost``: six missed
heartbeats, so a busy database or a paused VM does not make live runs look dead."""

REQUEUE_AFTER_S = 30.0
"""A run still queued and unclaimed this long after its message was sent is looked for in
the broker (once per period): a broker restarted without persistence loses messages, and a
run must never wait forever for one. Only a message that is really gone is sent again, so
a long backlog or a queue no worker consumes gets no copies; with the reaper's period, a
lost run is running again within about a minute of the broker's return."""

REAP_EVERY_S = 30.0
"""How often each worker looks for lost runs."""

TICK_S = 0.25
"""How often the supervisor looks at its run (a cancel asked through this worker ends the
run within a tick)."""

STORE_TICK_S = 1.0
"""How often a running run meets the store: one transaction writes the output that
arrived since the last one and reads whether a cancel was asked (the latency of live
output and of a cancel asked on another host). About one transaction per second per
running run, plus a heartbeat every HEARTBEAT_S."""

LIVE_OUTPUT_BYTES = 1024 * 1024
"""Live output kept per attempt for watchers (``logs?offset=``, the magics' live view).
Beyond it live output stops with a note; the final record still keeps the start and the
end of each stream (MAX_OUTPUT_BYTES)."""

RETRY_BACKOFF_S = 2.0
"""First retry delay; doubled for each further attempt (with full jitter)."""

RETRY_BACKOFF_MAX_S = 300.0
"""Upper bound of a retry delay."""

VISIBILITY_TIMEOUT_S = 6 * 3600.0
"""Redis redelivers an unacknowledged message after this long. It must exceed the longest
run (late acks keep a message unacknowledged while its run lasts), or a long run would be
delivered twice (celery#5935)."""

RESULT_EXPIRES_S = 3600.0
"""Celery task results (tiny completion notices; the store holds the real record) expire
after an hour so they never pile up in Redis (celery#7801)."""

LOCAL_IDLE_TIMEOUT_S = 600.0
"""The embedded local worker stops itself after this long with nothing to do."""

EMBEDDED_POLL_S = 0.01
"""Polling interval of the embedded (filesystem) broker where wake-ups do not reach the
worker (not Linux): the latency it adds on average is half of it."""

EMBEDDED_WOKEN_POLL_S = 0.25
"""The same where the worker is woken by every put (fleet/wakeups.py): the poll is only a
fallback then, and an idle local worker lists its folder 4 times a second."""

ENV_ALLOW = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LANGUAGE",
    "LC_*",
    "TZ",
    "TMPDIR",
    "TERM",
    "SHELL",
)
"""Environment variables a script inherits from its worker. Everything else (broker and
database URLs, passwords, tokens, cloud credentials) is withheld unless an operator allows
it with ``SCRIPTRUN_ENV_ALLOW``."""

HISTORY_LIMIT = 100
"""How many runs a history shows when not told (the newest): the same in Python, the CLI,
the magics and REST. ``None`` (``all`` where typed) means every run; 0 means none."""

RUNNERS = ("fresh", "warm")
"""How a Python script's process can start (``execution/runners.py`` has one of each):
a new interpreter per run, or forked from a pre-warmed parent. More come from plug-ins."""
RUNNER_GROUP = "jupyter_scriptrun.runners"
"""The entry-point group of runner plug-ins: ``name = module:Class``, where the class is
made with the worker's Settings and has ``spawner(script)`` and ``close()``."""


@functools.cache
def runner_names() -> tuple[str, ...]:
    """Every runner's name: the built-in ones, then the plug-ins' (read once, when first
    asked: scanning the installed packages is not paid at import)."""
    from importlib.metadata import entry_points

    plugged = sorted({ep.name for ep in entry_points(group=RUNNER_GROUP)} - set(RUNNERS))
    return (*RUNNERS, *plugged)


RUNNER = "fresh"
"""The runner of scripts whose metadata names none, unless SCRIPTRUN_DEFAULT_RUNNER does."""
