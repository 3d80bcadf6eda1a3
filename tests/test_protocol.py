"""The script contract: the environment in, the result document out."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from jupyter_scriptrun import defaults
from jupyter_scriptrun.contract.protocol import (
    NOT_FOUND,
    encode_parameters,
    interpret,
    parse_result,
    script_env,
)
from jupyter_scriptrun.exceptions import InvalidParameters
from jupyter_scriptrun.execution.child import RunOutcome
from jupyter_scriptrun.status import ExecutionStatus

PRETTY = """starting
loading data: 3 rows
{
  "status": "success",
  "message": "执行成功",
  "data": {"rows": [1, 2, 3]},
  "metadata": {"script_name": "x"}
}
"""


def outcome(stdout: str = "", stderr: str = "", exit_code: int | None = 0, **kw) -> RunOutcome:
    now = datetime.now(UTC)
    fields = dict(
        pid=1,
        exit_code=exit_code,
        stdout=stdout,
        stderr=stderr,
        stdout_bytes=len(stdout),
        stderr_bytes=len(stderr),
        stdout_truncated=False,
        stderr_truncated=False,
        started_at=now,
        finished_at=now,
        duration_s=0.1,
        cpu_user_s=0.0,
        cpu_system_s=0.0,
        peak_rss_mb=1.0,
    )
    fields.update(kw)
    return RunOutcome(**fields)


def test_the_whole_stdout_as_json():
    assert parse_result('{"status": "success", "data": 1}') == {"status": "success", "data": 1}


def test_the_last_pretty_printed_document_after_log_lines_with_chinese_text():
    doc = parse_result(PRETTY)
    assert doc["message"] == "执行成功" and doc["data"] == {"rows": [1, 2, 3]}


def test_the_last_of_several_documents_wins():
    assert parse_result('{"a": 1}\nlog\n{"b": 2}\n') == {"b": 2}


def test_text_without_json_is_not_a_result():
    assert parse_result("hello\nworld\n") is NOT_FOUND
    assert parse_result("") is NOT_FOUND
    assert parse_result("log {not json}\n") is NOT_FOUND


def test_a_success_keeps_message_and_data():
    v = interpret(outcome(PRETTY))
    assert v.status is ExecutionStatus.SUCCEEDED
    assert v.message == "执行成功" and v.data == {"rows": [1, 2, 3]}
    assert v.result["metadata"] == {"script_name": "x"}


def test_a_script_printing_no_json_succeeds_with_its_text_kept():
    v = interpret(outcome("just text\n"))
    assert v.status is ExecutionStatus.SUCCEEDED and v.data is None and v.result is None


def test_the_seeds_error_output_is_a_failure_with_its_message_and_type():
    v = interpret(
        outcome(
            '{"status": "error", "message": "bad input", "error_type": "ValueError"}', exit_code=1
        )
    )
    assert (v.status, v.error_type, v.message) == (
        ExecutionStatus.FAILED,
        "ValueError",
        "bad input",
    )


def test_status_error_with_exit_code_zero_is_still_a_failure():
    v = interpret(outcome('{"status": "error", "message": "nope"}', exit_code=0))
    assert v.status is ExecutionStatus.FAILED and v.message == "nope"
    assert v.error_type == "ScriptError"


def test_an_uncaught_exception_gives_type_message_and_traceback():
    stderr = (
        'some log\nTraceback (most recent call last):\n  File "x.py", line 3, in <module>\n'
        "    main()\njson.decoder.JSONDecodeError: Expecting value: line 1 column 1\n"
    )
    v = interpret(outcome("", stderr, exit_code=1))
    assert v.status is ExecutionStatus.FAILED
    assert v.error_type == "JSONDecodeError"
    assert v.message == "Expecting value: line 1 column 1"
    assert v.traceback.startswith("Traceback") and "main()" in v.traceback


def test_a_plain_nonzero_exit_keeps_the_last_stderr_line():
    v = interpret(outcome("", "warning\nfatal: disk full\n", exit_code=3))
    assert v.error_type == "ExitCode" and v.message == "fatal: disk full (exit code 3)"
    v = interpret(outcome("", "", exit_code=3))
    assert v.message == "exited with code 3"


def test_death_by_signal_is_named():
    v = interpret(outcome("", "", exit_code=-9))
    assert (v.error_type, v.message) == ("Signal", "killed by SIGKILL")


def test_timeouts_and_cancels_have_their_own_status():
    assert interpret(outcome(exit_code=-9, timed_out=True), 5).status is ExecutionStatus.TIMED_OUT
    assert interpret(outcome(exit_code=-15, cancelled=True)).status is ExecutionStatus.CANCELLED


def test_exit_75_or_retryable_true_asks_for_a_retry():
    assert interpret(outcome("", "", exit_code=75)).retryable
    assert interpret(outcome('{"status": "error", "retryable": true}', exit_code=1)).retryable
    assert not interpret(outcome("", "", exit_code=1)).retryable


def test_the_environment_holds_the_contract_and_no_secrets():
    worker_env = {
        "PATH": "/usr/bin",
        "HOME": "/home/w",
        "LC_CTYPE": "C.UTF-8",
        "SCRIPTRUN_DATABASE_URL": "postgresql://u:pw@db/x",
        "SCRIPTRUN_BROKER_URL": "redis://:pw@r:6379/0",
        "AWS_SECRET_ACCESS_KEY": "s",
        "GITHUB_TOKEN": "t",
        "DATABASE_URL": "x",
        "MY_SETTING": "ok",
    }
    env = script_env(
        worker_env,
        defaults.ENV_ALLOW,
        parameters='{"a":1}',
        page_context="nb.ipynb",
        script_name="s",
        execution_id="e1",
    )
    assert env["SCRIPT_PARAMETERS"] == '{"a":1}'
    assert (env["PAGE_CONTEXT"], env["SCRIPT_NAME"], env["EXECUTION_ID"]) == ("nb.ipynb", "s", "e1")
    assert env["PATH"] == "/usr/bin" and env["LC_CTYPE"] == "C.UTF-8"
    for secret in (
        "SCRIPTRUN_DATABASE_URL",
        "SCRIPTRUN_BROKER_URL",
        "AWS_SECRET_ACCESS_KEY",
        "GITHUB_TOKEN",
        "DATABASE_URL",
        "MY_SETTING",
    ):
        assert secret not in env
    allowed = script_env(
        worker_env,
        (*defaults.ENV_ALLOW, "MY_*"),
        parameters="{}",
        page_context="",
        script_name="s",
        execution_id="e",
    )
    assert allowed["MY_SETTING"] == "ok"


def test_parameters_are_encoded_as_compact_utf8_json():
    assert encode_parameters("s", {"msg": "你好", "n": [1, 2]}) == '{"msg":"你好","n":[1,2]}'


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"x": float("nan")}, "not valid JSON"),
        ({"x": object()}, "not valid JSON"),
        ({"x": "y" * (defaults.MAX_PARAMETERS_BYTES + 1)}, "the limit is"),
    ],
)
def test_parameters_that_cannot_travel_are_refused(params, problem):
    with pytest.raises(InvalidParameters, match=problem):
        encode_parameters("s", params)


def test_deeply_nested_parameters_are_refused_clearly():
    deep: dict = {}
    node = deep
    for _ in range(100_000):
        node["x"] = {}
        node = node["x"]
    with pytest.raises(InvalidParameters, match="nested too deeply"):
        encode_parameters("s", deep)


def test_parameters_may_nest_64_levels_and_no_more():
    def nested(levels: int) -> dict:
        value: object = 1
        for _ in range(levels - 1):
            value = [value]
        return {"a": value}

    encode_parameters("s", nested(64))  # the object and 63 arrays in it
    with pytest.raises(InvalidParameters, match="nest 65 levels deep; the limit is 64"):
        encode_parameters("s", nested(65))
