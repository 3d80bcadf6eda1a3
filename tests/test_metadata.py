"""The `# /// scriptrun` block: parsing, checking, and validating parameters with it."""

from __future__ import annotations

import pytest

from jupyter_scriptrun.contract.metadata import parse_metadata
from jupyter_scriptrun.exceptions import InvalidParameters, ScriptMetadataError

SCRIPT = """\
import os
# /// scriptrun
# description = "Multiplies a message"
# timeout = 60            # seconds
# retries = 2
# [parameters.message]
# type = "string"
# default = "Hello"
# [parameters.multiplier]
# type = "integer"
# minimum = 1
# required = true
# [parameters.mode]
# type = "string"
# enum = ["a", "b"]
# ///
print("hi")
"""


def test_the_design_example_block_parses_with_inline_comments():
    meta = parse_metadata(SCRIPT)
    assert meta.description == "Multiplies a message"
    assert meta.timeout == 60
    assert meta.retries == 2
    assert meta.retry_on == ("lost",)
    assert set(meta.parameters) == {"message", "multiplier", "mode"}
    assert meta.schema["required"] == ["multiplier"]
    assert meta.schema["additionalProperties"] is False


def test_validation_fills_defaults():
    meta = parse_metadata(SCRIPT)
    assert meta.validate("s", {"multiplier": 3}) == {"message": "Hello", "multiplier": 3}


def test_validation_reports_every_problem_at_once():
    meta = parse_metadata(SCRIPT)
    with pytest.raises(InvalidParameters) as info:
        meta.validate("s", {"multiplier": 0, "mode": "c", "colour": "red", "message": 5})
    problems = info.value.problems
    assert len(problems) == 4, problems
    text = str(info.value)
    assert "multiplier: 0 is less than the minimum of 1" in text
    assert "colour: unknown parameter (known: message, mode, multiplier)" in text
    assert "mode:" in text and "message:" in text
    # Each problem names its parameter, for a form to show it beside the field.
    assert sorted(p.field for p in problems) == ["colour", "message", "mode", "multiplier"]


def test_missing_required_parameter_is_named():
    with pytest.raises(InvalidParameters, match="multiplier: required") as info:
        parse_metadata(SCRIPT).validate("s", {})
    assert [p.field for p in info.value.problems] == ["multiplier"]


@pytest.mark.parametrize("params", [[1, 2], "text", 3])
def test_parameters_must_be_an_object(params):
    with pytest.raises(InvalidParameters, match="must be a JSON object"):
        parse_metadata(SCRIPT).validate("s", params)


def test_a_script_without_a_block_takes_free_form_parameters():
    meta = parse_metadata("print('hello')\n")
    assert meta.parameters == {}
    assert meta.validate("s", {"anything": [1, {"x": None}]}) == {"anything": [1, {"x": None}]}


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ("# timeout = -1", "timeout must be a positive number"),
        ("# colour = 'red'", "unknown key 'colour'"),
        ("# retries = 'many'", "retries must be an integer"),
        ("# retry_on = ['sometimes']", "retry_on must be a list"),
        ("# [parameters.n]\n# type = 'integr'", "unknown type 'integr'"),
        ("# [parameters.n]\n# type = 'integer'\n# default = 'x'", "default 'x' is not of type"),
        ("# [parameters.n]\n# kind = 'integer'", "unknown key 'kind'"),
        ("# this is = not toml", "block"),
    ],
)
def test_a_malformed_block_is_a_clear_error_naming_the_file(block, message):
    text = f"# /// scriptrun\n{block}\n# ///\n"
    with pytest.raises(ScriptMetadataError, match=message) as info:
        parse_metadata(text, source="bad.py")
    assert "bad.py" in str(info.value)


def test_two_blocks_are_refused():
    text = "# /// scriptrun\n# ///\n# /// scriptrun\n# ///\n"
    with pytest.raises(ScriptMetadataError, match="more than one"):
        parse_metadata(text)


def test_the_block_schema_covers_every_field_a_script_can_set():
    """The one JSON Schema of the block names every key ScriptMeta reads, and is itself a
    valid schema (it doubles as the documentation of the keys)."""
    from dataclasses import fields

    from jupyter_scriptrun.contract.metadata import BLOCK_SCHEMA, ScriptMeta
    from jupyter_scriptrun.schemas import load_jsonschema

    load_jsonschema().Draft202012Validator.check_schema(BLOCK_SCHEMA)
    assert set(BLOCK_SCHEMA["properties"]) == {f.name for f in fields(ScriptMeta)}
