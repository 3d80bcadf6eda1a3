"""Whether a deployment works, for liveness probes and operators: the store opens at the
newest schema, the broker answers, and a worker (on this host, if asked) consumes the
queue (``scriptrun health``)."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

from jupyter_scriptrun.fleet import control
from jupyter_scriptrun.service.client import Client
from jupyter_scriptrun.service.unreachable import broker_reason, store_problem


@dataclass
class Check:
    """One thing checked: its name, whether it is fine, and what was found."""

    name: str
    ok: bool
    detail: str


@dataclass
class Health:
    """Every check, in order; :attr:`ok` when all passed."""

    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every check passed."""
        return all(c.ok for c in self.checks)

    @property
    def unreachable(self) -> bool:
        """True when the store or the broker could not be reached."""
        return any(not c.ok and c.name in ("store", "broker") for c in self.checks)


def check(
    client: Client, *, queue: str | None = None, this_host: bool = False, timeout: float = 2.0
) -> Health:
    """Check the store, the broker, and that some worker (on this host with
    ``this_host``) consumes ``queue`` (default: the default queue)."""
    from jupyter_scriptrun.store import HEAD_REVISION

    health = Health()
    url = client.settings.effective_database_url
    try:
        revision = client.store.revision()
        fine = revision == HEAD_REVISION
        health.checks.append(Check("store", fine, f"schema {revision} (newest {HEAD_REVISION})"))
    except Exception as exc:
        health.checks.append(Check("store", False, store_problem(url, exc)))
    try:
        with client.app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout)
            shown = conn.as_uri()  # the password masked
        if client.settings.embedded:
            shown = f"embedded, in {client.settings.data_dir / 'broker'}"
        health.checks.append(Check("broker", True, shown))
    except Exception as exc:
        health.checks.append(Check("broker", False, f"unreachable ({broker_reason(exc)})"))
        return health
    health.checks.append(_consumer(client, queue or client.settings.queue, this_host, timeout))
    return health


def _consumer(client: Client, queue: str, this_host: bool, timeout: float) -> Check:
    replies = control.active_queues(client.app, timeout)
    host = socket.gethostname()
    nodes = sorted(
        node
        for node, queues in replies.items()
        if any(q.get("name") == queue for q in queues or ())
        and (not this_host or node.rsplit("@", 1)[-1] == host)
    )
    where = f" on {host}" if this_host else ""
    if nodes:
        return Check("worker", True, f"{queue!r} consumed by {', '.join(nodes)}")
    if client.settings.embedded:
        # The embedded default's worker stops when idle and the next run starts it again:
        # none running is its resting state, not a fault.
        return Check("worker", True, "none running (idle); the next run starts the local one")
    return Check("worker", False, f"no worker{where} consumes {queue!r} (answered: {len(replies)})")
