"""A script's ``# /// scriptrun`` block: its description, limits and parameter schema."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from jupyter_scriptrun import defaults
from jupyter_scriptrun.exceptions import InvalidParameters, Problem, ScriptMetadataError
from jupyter_scriptrun.queues import queue_problem
from jupyter_scriptrun.schemas import load_jsonschema

# PEP 723's regular expression, for our block type only.
BLOCK_RE = re.compile(r"(?m)^# /// scriptrun\s*$\s(?P<content>(^#(| .*)$\s)*?)^# ///\s*$")

PARAMETER_KEYS = {
    "type",
    "default",
    "enum",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "pattern",
    "format",
    "items",
    "minItems",
    "maxItems",
    "description",
    "title",
    "required",
}


JSON_TYPES = {"string", "integer", "number", "boolean", "array", "object", "null"}
RETRYABLE = {"failed", "timed_out", "lost"}


@dataclass(frozen=True)
class ScriptMeta:
    """What a script says about itself; every field has a sensible default."""

    description: str = ""
    timeout: float | None = None
    retries: int = 0
    retry_on: tuple[str, ...] = ("lost",)
    queue: str | None = None
    interpreter: tuple[str, ...] | None = None
    parameters: dict[str, dict[str, Any]] = field(default_factory=dict)
    additional_parameters: bool | None = None
    runner: str | None = None
    tags: tuple[str, ...] = ()
    memory_limit_mb: float | None = None

    @property
    def declares_parameters(self) -> bool:
        """True when the script lists its parameters (then unknown ones are rejected)."""
        return bool(self.parameters)

    @cached_property
    def schema(self) -> dict[str, Any]:
        """The JSON Schema (draft 2020-12) of the parameters object."""
        properties: dict[str, Any] = {}
        required: list[str] = []
        for name, spec in self.parameters.items():
            prop = {k: v for k, v in spec.items() if k != "required"}
            properties[name] = prop
            if spec.get("required"):
                required.append(name)
        additional = self.additional_parameters
        if additional is None:
            additional = not self.declares_parameters
        schema: dict[str, Any] = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": properties,
            "additionalProperties": additional,
        }
        if required:
            schema["required"] = required
        return schema

    @cached_property
    def _validator(self) -> Any:
        return load_jsonschema().Draft202012Validator(self.schema)

    def defaults(self) -> dict[str, Any]:
        """Declared defaults, by parameter name."""
        return {n: s["default"] for n, s in self.parameters.items() if "default" in s}

    def validate(self, script: str, params: Any) -> dict[str, Any]:
        """Return ``params`` with defaults filled in, or raise listing every problem."""
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise InvalidParameters(
                script, [f"parameters must be a JSON object, not {type(params).__name__}"]
            )
        merged = {**self.defaults(), **params}
        problems: list[str] = []
        for error in sorted(self._validator.iter_errors(merged), key=lambda e: list(e.path)):
            where = ".".join(str(p) for p in error.path)
            if error.validator == "additionalProperties" and not where:
                unknown = sorted(set(merged) - set(self.parameters))
                known = ", ".join(sorted(self.parameters)) or "none"
                for name in unknown:
                    problems.append(Problem(f"{name}: unknown parameter (known: {known})", name))
                continue
            if error.validator == "required":
                name = error.message.split(" is ")[0].strip(chr(39))
                problems.append(Problem(f"{name}: required", name))
                continue
            field = str(error.path[0]) if error.path else None
            problems.append(Problem(f"{where or '(parameters)'}: {error.message}", field))
        if problems:
            raise InvalidParameters(script, problems)
        return merged

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (for listings, the panel and the REST API)."""
        return {
            "description": self.description,
            "timeout": self.timeout,
            "retries": self.retries,
            "retry_on": list(self.retry_on),
            "queue": self.queue,
            "runner": self.runner,
            "tags": list(self.tags),
            "memory_limit_mb": self.memory_limit_mb,
            "parameters": self.schema,
        }


def extract_block(text: str) -> str | None:
    """The TOML inside the ``# /// scriptrun`` block, or None when there is none."""
    matches = list(BLOCK_RE.finditer(text))
    if len(matches) > 1:
        raise ScriptMetadataError("more than one '# /// scriptrun' block")
    if not matches:
        return None
    content = matches[0].group("content")
    return "".join(
        line[2:] if line.startswith("# ") else line[1:]
        for line in content.splitlines(keepends=True)
    )


def parse_metadata(text: str, source: str = "<script>") -> ScriptMeta:
    """Parse and check the metadata block of a script's text.

    Raises:
        ScriptMetadataError: the block is not valid TOML or not a valid description.
    """
    try:
        block = extract_block(text)
    except ScriptMetadataError as exc:
        raise ScriptMetadataError(f"{source}: {exc}") from None
    if block is None:
        return ScriptMeta()
    try:
        data = tomllib.loads(block)
    except tomllib.TOMLDecodeError as exc:
        raise ScriptMetadataError(f"{source}: '# /// scriptrun' block: {exc}") from None
    problems = _check(data)
    if problems:
        raise ScriptMetadataError(f"{source}: '# /// scriptrun' block: " + "; ".join(problems))
    interpreter = data.get("interpreter")
    if isinstance(interpreter, str):
        import shlex

        interpreter = shlex.split(interpreter)
    return ScriptMeta(
        description=str(data.get("description", "")).strip(),
        timeout=float(data["timeout"]) if "timeout" in data else None,
        retries=int(data.get("retries", 0)),
        retry_on=tuple(data.get("retry_on", ("lost",))),
        queue=data.get("queue"),
        interpreter=tuple(interpreter) if interpreter else None,
        parameters={k: dict(v) for k, v in data.get("parameters", {}).items()},
        additional_parameters=data.get("additional_parameters"),
        runner=data.get("runner"),
        tags=tuple(data.get("tags", ())),
        memory_limit_mb=float(data["memory_limit_mb"]) if "memory_limit_mb" in data else None,
    )


_STRINGS = {"type": "array", "items": {"type": "string"}}
BLOCK_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "The # /// scriptrun block of a script",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "description": {"type": "string"},
        "timeout": {"type": "number", "exclusiveMinimum": 0},
        "retries": {"type": "integer", "minimum": 0, "maximum": 100},
        "retry_on": {"type": "array", "items": {"enum": sorted(RETRYABLE)}},
        "queue": {"type": "string"},
        "interpreter": {"anyOf": [{"type": "string"}, _STRINGS]},
        "additional_parameters": {"type": "boolean"},
        "runner": {"type": "string", "description": "fresh, warm, or a plug-in's name"},
        "tags": _STRINGS,
        "memory_limit_mb": {"type": "number", "minimum": 16},
        "parameters": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "propertyNames": {"enum": sorted(PARAMETER_KEYS)},
                "properties": {
                    "type": {
                        "anyOf": [
                            {"enum": sorted(JSON_TYPES)},
                            {"type": "array", "items": {"enum": sorted(JSON_TYPES)}},
                        ]
                    }
                },
            },
        },
    },
}
"""What a block may hold: one JSON Schema, also the documentation of the keys."""

_SENTENCES = {
    "timeout": "timeout must be a positive number of seconds, not {value!r}",
    "retries": "retries must be an integer from 0 to 100, not {value!r}",
    "retry_on": f"retry_on must be a list drawn from {sorted(RETRYABLE)}",
    "memory_limit_mb": "memory_limit_mb must be a number of MiB (16 or more), not {value!r}",
    "runner": "runner must be a runner's name, not {value!r}",
    "parameters": "parameters must be a table of tables",
}
"""How a problem with a top-level key is told (what the key's value must be)."""


def _check(data: dict[str, Any]) -> list[str]:
    """Every problem with a parsed block, as readable sentences."""
    validator = load_jsonschema().Draft202012Validator(BLOCK_SCHEMA)
    problems: list[str] = []
    for error in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.path))):
        sentence = _sentence(error, data)
        if sentence not in problems:
            problems.append(sentence)
    if isinstance(data.get("queue"), str) and (problem := queue_problem(data["queue"])):
        problems.append(problem)
    runner = data.get("runner")
    if isinstance(runner, str) and runner not in defaults.runner_names():
        problems.append("runner must be " + " or ".join(map(repr, defaults.runner_names())))
    params = data.get("parameters", {})
    if not problems and params:
        problems += _parameter_schema_problems(params)
    return problems


def _sentence(error: Any, data: dict[str, Any]) -> str:
    """One schema error as the sentence a script's author reads."""
    path = [str(p) for p in error.path]
    if not path:  # the block itself: keys it may not hold
        unknown = sorted(set(data) - set(BLOCK_SCHEMA["properties"]))
        return "; ".join(f"unknown key {k!r}" for k in unknown) or error.message
    key = path[0]
    if key == "parameters" and len(path) >= 2:
        where = f"parameters.{path[1]}"
        if len(path) == 2 and error.validator == "type":
            return f"{where} must be a table"
        if "propertyNames" in error.schema_path:
            return f"{where}: unknown key {error.instance!r}"
        if path[2:3] == ["type"]:
            return f"{where}: unknown type {error.instance!r}"
        return f"{where}: {error.message}"
    template = _SENTENCES.get(key, f"{key}: {{message}}")
    return template.format(value=data.get(key), message=error.message)


def _parameter_schema_problems(params: dict[str, Any]) -> list[str]:
    """The parameters as a JSON Schema: valid, and each default valid against its own."""
    jsonschema = load_jsonschema()
    Draft202012Validator = jsonschema.Draft202012Validator
    properties = {n: {k: v for k, v in s.items() if k != "required"} for n, s in params.items()}
    schema = {"type": "object", "properties": properties}
    try:
        Draft202012Validator.check_schema(schema)
    except jsonschema.exceptions.SchemaError as exc:
        return [f"parameters: {exc.message}"]
    problems = []
    validator = Draft202012Validator(schema)
    for name, spec in params.items():
        if "default" in spec:
            for err in validator.evolve(schema=properties[name]).iter_errors(spec["default"]):
                problems.append(f"parameters.{name}: default {err.message}")
    return problems
