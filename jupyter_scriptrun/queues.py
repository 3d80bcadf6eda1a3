"""Queue names: what a safe name is, and which queues runs may be sent to.

Queues are the operator's choice. A name reaches the broker as a key (Redis) or a queue
(RabbitMQ), so a name that collides with the broker's own bookkeeping — kombu's
``unacked`` hash on Redis, say — would break every worker that touches it. Names are
therefore checked against a safe pattern and a list of reserved names, and a run may go
only to an allowed queue: the default queue, and those in ``SCRIPTRUN_QUEUES`` when set,
else the queues that registered scripts name in their metadata.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

QUEUE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
"""A safe queue name: letters, digits, ``_``, ``.``, ``-``; no leading punctuation (kombu's
own keys start with ``_``), at most 100 characters."""

REDIS_UNACKED_KEYS = {
    "unacked_key": "_scriptrun:unacked",
    "unacked_index_key": "_scriptrun:unacked_index",
    "unacked_mutex_key": "_scriptrun:unacked_mutex",
}
"""Where kombu's Redis transport keeps the messages workers hold (its transport options).
kombu's own names, ``unacked`` and ``unacked_index``, are names any foreign client may
send to as a queue, which broke delivery (WRONGTYPE); these cannot be a safe queue name,
so a stray message to ``unacked`` is just a message on a queue nobody consumes."""

RESERVED = frozenset({"unacked", "unacked_index", "unacked_mutex", "celeryev", "celery.pidbox"})
"""Keys the Redis transport and Celery use for themselves (kombu's unacked names too: a
worker of an older release may still use them)."""
RESERVED_PREFIXES = ("celery-task-meta-", "celery-taskset-meta-", "chord-unlock", "celeryev.")
RESERVED_SUFFIXES = (".pidbox", ".celery.pidbox")


def queue_problem(name: object) -> str | None:
    """Why ``name`` cannot be a queue, or None when it is a safe name."""
    if not isinstance(name, str) or not name:
        return f"queue must be a non-empty string, not {name!r}"
    shown = name if len(name) <= 80 else name[:80] + "…"
    if not QUEUE_RE.match(name):
        return (
            f"queue {shown!r} is not a valid queue name (letters, digits, '_', '.', '-'; "
            "starting with a letter or digit; at most 100 characters)"
        )
    lowered = name.lower()
    if (
        lowered in RESERVED
        or lowered.startswith(RESERVED_PREFIXES)
        or lowered.endswith(RESERVED_SUFFIXES)
    ):
        return f"queue {shown!r} is a name the broker or Celery uses for itself"
    return None


def parse_queues(text: str) -> tuple[str, ...]:
    """``"a, b,c"`` → ``("a", "b", "c")`` (order kept, duplicates dropped)."""
    names = [n.strip() for n in text.replace(" ", ",").split(",")]
    return tuple(dict.fromkeys(n for n in names if n))


def allowed_queues(
    configured: Iterable[str] | None, default: str, script_queues: Iterable[str | None]
) -> tuple[str, ...]:
    """The queues runs may go to: ``default`` and either ``configured`` (the operator's
    list) or, when none is configured, every queue a registered script names."""
    if configured:
        return tuple(dict.fromkeys([default, *configured]))
    return tuple(dict.fromkeys([default, *(q for q in script_queues if q)]))
