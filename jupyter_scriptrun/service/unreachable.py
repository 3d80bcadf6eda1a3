"""One-line messages for a store or a broker that cannot be reached: which, why, what to
check (passwords hidden)."""

from __future__ import annotations

from jupyter_scriptrun.config import Settings, get_settings


def broker_reason(exc: BaseException) -> str:
    """The cause of a failed send, in one line: the network error behind it (connection
    refused, a timeout) when there is one. Celery's own words for a Redis broker that is
    down blame "the result store backend", which misleads."""
    chain, seen = [], set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        chain.append(link)
        link = link.__cause__ or link.__context__
    network = [e for e in chain if isinstance(e, OSError)]
    chosen = network[0] if network else exc
    return " ".join(f"{type(chosen).__name__}: {chosen}".split())[:300]


def unreachable_message(exc: BaseException, settings: Settings | None = None) -> str | None:
    """One line for a store or broker that went away in the middle of a command (for
    front ends that show errors as one line), or None for any other error."""
    from kombu.exceptions import OperationalError as BrokerError
    from sqlalchemy.exc import SQLAlchemyError

    if isinstance(exc, SQLAlchemyError):
        return store_problem((settings or get_settings()).effective_database_url, exc)
    if isinstance(exc, BrokerError | ConnectionError):
        return f"the broker is unreachable ({broker_reason(exc)}); check SCRIPTRUN_BROKER_URL"
    return None


def store_problem(url: str, exc: BaseException) -> str:
    """One line on a store that cannot be opened: which (password hidden), why, what to do."""
    from sqlalchemy.engine import make_url

    try:
        shown = make_url(url).render_as_string(hide_password=True)
    except Exception:
        shown = "(an unreadable URL)"
    orig = getattr(exc, "orig", None) or exc
    lines = [ln.strip() for ln in str(orig).splitlines() if ln.strip()]
    why = " ".join(lines[:2])[:300] if lines else type(orig).__name__
    return (
        f"the store {shown} cannot be opened ({why}); check SCRIPTRUN_DATABASE_URL and that "
        "the database server runs"
    )
