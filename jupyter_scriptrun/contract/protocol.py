"""The script contract: the environment a script gets and how its output is read.

A script receives ``SCRIPT_PARAMETERS`` (one JSON object), ``PAGE_CONTEXT``,
``SCRIPT_NAME`` and ``EXECUTION_ID`` and a minimal environment. Its result is the JSON
document it prints last on stdout, ``{"status", "message", "data", "metadata"}``; exit code
0 with ``status: success`` (or with no JSON at all) is a success.
"""

from __future__ import annotations

import fnmatch
import functools
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jupyter_scriptrun import defaults
from jupyter_scriptrun.exceptions import InvalidParameters
from jupyter_scriptrun.params import huge_integer, nesting
from jupyter_scriptrun.status import ExecutionStatus

if TYPE_CHECKING:  # the runner's outcome is read, never made, here
    from jupyter_scriptrun.execution.child import RunOutcome

EX_TEMPFAIL = 75
"""sysexits.h's "temporary failure": a script exiting with it asks to be retried."""

NOT_FOUND: Any = object()
OUTPUT_DIR_ENV = "SCRIPTRUN_OUTPUT_DIR"
"""The contract's folder for files to keep: empty at the start, collected at the end."""
MAX_CANDIDATES = 200
TRACEBACK_HEADER = "Traceback (most recent call last):"


def encode_parameters(script: str, params: Mapping[str, Any]) -> str:
    """Parameters as the compact UTF-8 JSON a script receives; refuse what cannot travel."""
    try:
        text = json.dumps(params, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise InvalidParameters(script, [f"parameters are not valid JSON: {exc}"]) from None
    except RecursionError:
        raise InvalidParameters(script, ["parameters are nested too deeply"]) from None
    size = len(text.encode("utf-8"))
    if size > defaults.MAX_PARAMETERS_BYTES:
        raise InvalidParameters(
            script,
            [
                f"parameters are {size} bytes of JSON; the limit is "
                f"{defaults.MAX_PARAMETERS_BYTES} (pass large inputs as a file path)"
            ],
        )
    if "\x00" in text:
        raise InvalidParameters(script, ["parameters contain a NUL character"])
    if (depth := nesting(params)) > defaults.MAX_PARAMETERS_DEPTH:
        raise InvalidParameters(
            script,
            [f"parameters nest {depth} levels deep; the limit is {defaults.MAX_PARAMETERS_DEPTH}"],
        )
    if (huge := huge_integer(params)) is not None:
        raise InvalidParameters(
            script,
            [
                f"parameters hold the integer {huge}, outside the 64-bit range the history "
                "keeps whole (pass it as a string)"
            ],
        )
    return text


def script_env(
    worker_env: Mapping[str, str],
    allow: Iterable[str],
    *,
    parameters: str,
    page_context: str,
    script_name: str,
    execution_id: str,
    output_dir: str | None = None,
) -> dict[str, str]:
    """The environment of a script: allowed worker variables plus the contract's
    (``output_dir``: its folder for files to keep, as ``SCRIPTRUN_OUTPUT_DIR``).

    ``allow`` holds names or shell-style patterns (``LC_*``). Nothing else of the worker's
    environment reaches the script: broker and database URLs, passwords and tokens stay out.
    """
    allowed = _allow_regex(tuple(allow))
    env = {
        k: v for k, v in worker_env.items() if allowed.match(k) and not k.startswith("SCRIPTRUN_")
    }
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    if "LANG" not in env and "LC_ALL" not in env:
        env["LANG"] = "C.UTF-8"
    # Scripts print their result as UTF-8 whatever the locale, and their logs stream live.
    env["PYTHONIOENCODING"] = "utf-8"
    env["PYTHONUNBUFFERED"] = "1"
    env["SCRIPT_PARAMETERS"] = parameters
    env["PAGE_CONTEXT"] = page_context
    env["SCRIPT_NAME"] = script_name
    env["EXECUTION_ID"] = execution_id
    if output_dir is not None:
        env[OUTPUT_DIR_ENV] = output_dir
    return env


@functools.lru_cache(maxsize=16)
def _allow_regex(allow: tuple[str, ...]) -> re.Pattern[str]:
    """One compiled pattern for the allowlist (it is checked for every variable of every run)."""
    parts = [fnmatch.translate(p) for p in allow if p]
    return re.compile("|".join(parts) if parts else "(?!)")


def parse_result(stdout: str) -> Any:
    """The result document: the whole stdout as JSON, else the last JSON document that
    starts a line and runs to the end. ``NOT_FOUND`` when there is none."""
    text = stdout.strip()
    if not text:
        return NOT_FOUND
    try:
        return json.loads(text)
    except ValueError:
        pass
    if text[-1] not in "}]":
        return NOT_FOUND
    decoder = json.JSONDecoder()
    end = len(text)
    for _ in range(MAX_CANDIDATES):
        idx = max(text.rfind("\n{", 0, end), text.rfind("\n[", 0, end))
        if idx < 0:
            break
        try:
            doc, stop = decoder.raw_decode(text, idx + 1)
        except ValueError:
            end = idx
            continue
        if not text[stop:].strip():
            return doc
        end = idx
    return NOT_FOUND


@dataclass
class Verdict:
    """How a finished process maps onto an execution record."""

    status: ExecutionStatus
    message: str | None = None
    error_type: str | None = None
    data: Any = None
    result: Any = None
    """The whole result document (None when the script printed no JSON)."""
    traceback: str | None = None
    retryable: bool = False


def parse_traceback(stderr: str) -> tuple[str, str, str] | None:
    """(error type, message, traceback) of the last Python traceback on stderr."""
    idx = stderr.rfind(TRACEBACK_HEADER)
    if idx < 0:
        return None
    block = stderr[idx:].rstrip()
    lines = block.splitlines()
    for i, line in enumerate(lines[1:], start=1):
        if line and not line[0].isspace():
            head, _, message = "\n".join(lines[i:]).partition(":")
            error_type = head.strip().rsplit(".", 1)[-1]
            return error_type, message.strip(), block
    return None


def interpret(
    outcome: RunOutcome, timeout_s: float | None = None, given: Any = NOT_FOUND
) -> Verdict:
    """Classify a finished process: status, message, error type, data and traceback.
    ``given``: the document the script gave through ``script.result()``, which stands
    instead of its stdout's."""
    doc = given if given is not NOT_FOUND else parse_result(outcome.stdout)
    shaped = isinstance(doc, dict) and "status" in doc
    result = None if doc is NOT_FOUND else doc
    data = (doc.get("data") if shaped else result) if result is not None else None
    tb = parse_traceback(outcome.stderr)
    doc_message = _text(doc.get("message")) if shaped else None
    doc_type = _text(doc.get("error_type")) if shaped else None
    doc_tb = _text(doc.get("traceback")) if shaped else None

    if outcome.spawn_error:
        return Verdict(ExecutionStatus.FAILED, outcome.spawn_error, "SpawnError", retryable=False)
    if outcome.runner_error:
        # Not the script's fault: worth another attempt when the script allows retries.
        return Verdict(ExecutionStatus.FAILED, outcome.runner_error, "RunnerLost", retryable=True)
    if outcome.cancelled:
        return Verdict(
            ExecutionStatus.CANCELLED,
            "cancelled by request",
            "Cancelled",
            data,
            result,
            doc_tb or (tb[2] if tb else None),
        )
    if outcome.timed_out:
        return Verdict(
            ExecutionStatus.TIMED_OUT,
            f"timed out after {timeout_s:g} s" if timeout_s else "timed out",
            "Timeout",
            data,
            result,
            doc_tb or (tb[2] if tb else None),
        )
    ok_status = (not shaped) or str(doc.get("status")).lower() in ("success", "ok", "succeeded")
    if outcome.exit_code == 0 and ok_status:
        return Verdict(ExecutionStatus.SUCCEEDED, doc_message, None, data, result)

    retryable = outcome.exit_code == EX_TEMPFAIL or (shaped and doc.get("retryable") is True)
    if doc_type or (shaped and not ok_status):
        error_type = doc_type or (tb[0] if tb else "ScriptError")
        message = doc_message or (tb[1] if tb else None) or _stderr_tail(outcome.stderr)
    elif tb:
        error_type, message = tb[0], tb[1]
    elif outcome.signal_name:
        error_type, message = "Signal", f"killed by {outcome.signal_name}"
    else:
        error_type = "ExitCode"
        tail = _stderr_tail(outcome.stderr)
        code = outcome.exit_code
        message = f"{tail} (exit code {code})" if tail else f"exited with code {code}"
    return Verdict(
        ExecutionStatus.FAILED,
        message,
        error_type,
        data,
        result,
        doc_tb or (tb[2] if tb else None),
        retryable,
    )


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _stderr_tail(stderr: str) -> str | None:
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    return lines[-1][:2000] if lines else None
