"""The exception hierarchy: every error the product raises derives from ScriptrunError."""

from __future__ import annotations

from collections.abc import Sequence


class ScriptrunError(Exception):
    """Base of every jupyter_scriptrun error."""


class ConfigurationError(ScriptrunError):
    """A setting is missing or malformed."""


class ScriptNotFound(ScriptrunError, LookupError):
    """No registered script has that name (or the name is not a valid script name)."""


class ScriptVersionMismatch(ScriptrunError):
    """A worker cannot run the version of a script that was submitted: its own copy
    differs and the store keeps no copy of the submitted one."""


class ScriptMetadataError(ScriptrunError):
    """A script's ``# /// scriptrun`` block is malformed."""


class AdhocNotAllowed(ScriptrunError, PermissionError):
    """The workers were configured not to run ad-hoc sources (``SCRIPTRUN_ALLOW_ADHOC=0``)."""


def listing(what: str, problems: Sequence[str]) -> str:
    """``what (2 problems):`` and one line per problem: how every problem is told at once."""
    lines = "\n".join(f"  - {p}" for p in problems)
    count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
    return f"{what} ({count}):\n{lines}"


class Problem(str):
    """One problem with a request (its parameters or options): its text, as every front
    end shows it, and the field it is about (``.field``; None when it is about the
    request as a whole), so a form can put it beside the field instead of parsing text."""

    field: str | None

    def __new__(cls, message: str, field: str | None = None) -> Problem:
        problem = super().__new__(cls, message)
        problem.field = field
        return problem


class InvalidParameters(ScriptrunError, ValueError):
    """Parameters do not match the script's schema; ``problems`` lists every one."""

    def __init__(self, script: str, problems: Sequence[str]) -> None:
        self.script = script
        self.problems = list(problems)
        super().__init__(listing(f"invalid parameters for {script!r}", problems))


class InvalidSchedule(ScriptrunError, ValueError):
    """A schedule cannot be made as asked; ``problems`` lists every reason at once."""

    def __init__(self, name: str, problems: Sequence[str], script: str | None = None) -> None:
        self.name = name
        self.problems = list(problems)
        # A schedule not named by its maker is named after its script, not a made-up name.
        what = f"invalid schedule of {script!r}" if script else f"invalid schedule {name!r}"
        super().__init__(listing(what, problems))


class ScheduleNotFound(ScriptrunError, LookupError):
    """No schedule has that id or name."""


class InvalidRequest(ScriptrunError, ValueError):
    """A REST request is malformed; ``problems`` lists every one."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid request: " + "; ".join(problems))


class ExecutionNotFound(ScriptrunError, LookupError):
    """No execution has that id (or the id prefix is ambiguous)."""


class FileNotKept(ScriptrunError, LookupError):
    """A run has no kept file of that name (none, or one listed but not kept)."""


class ExecutionConflict(ScriptrunError):
    """The operation does not apply to the execution in its current state (or an
    idempotency key was used before: ``execution_id`` names the existing run)."""

    def __init__(self, message: str, execution_id: str | None = None) -> None:
        super().__init__(message)
        self.execution_id = execution_id


class WorkerUnavailable(ScriptrunError):
    """No worker could be reached or started."""


class StoreUnavailable(ScriptrunError):
    """The store (the database) could not be reached or opened."""


class SchemaMismatch(ScriptrunError):
    """The database's schema is not this version's: behind (run the migration) or ahead
    (upgrade this host)."""


class RunFailed(ScriptrunError):
    """Raised by the Celery task when a run did not succeed, so that Celery, its result
    backend and Flower record a failed task (with the error type and message)."""


class MalformedTask(ScriptrunError, ValueError):
    """A ``scriptrun.execute`` message whose arguments are not an execution id and an
    attempt number (a foreign or corrupt message); refused without touching the store."""


class ExecutionTimeout(ScriptrunError, TimeoutError):
    """Waiting for an execution took longer than the caller allowed (the run goes on)."""


class ExecutionFailed(ScriptrunError):
    """A run ended in failure; carries the structured fields of the record."""

    def __init__(
        self,
        execution_id: str,
        script: str,
        status: str,
        error_type: str | None,
        message: str | None,
        exit_code: int | None,
        stderr_tail: str = "",
    ) -> None:
        self.execution_id = execution_id
        self.script = script
        self.status = status
        self.error_type = error_type
        self.message = message
        self.exit_code = exit_code
        self.stderr_tail = stderr_tail
        what = f"{error_type}: {message}" if error_type else (message or "")
        super().__init__(f"{script} [{execution_id[:8]}] {status}: {what}".rstrip(": "))
