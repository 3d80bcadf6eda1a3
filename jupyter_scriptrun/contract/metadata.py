"""A script's ``# /// scriptrun`` block: its description, limits and parameter schema."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from jupyter_scriptrun.exceptions import InvalidParameters, ScriptMetadataError
from jupyter_scriptrun.queues import queue_problem
from jupyter_scriptrun.schemas import load_jsonschema

# PEP 723's regular expression, for our block type only.
BLOCK_RE = re.compile(r"(?m)^# /// scriptrun\s*$\s(?P<content>(^#(| .*)$\s)*?)^# ///\s*$")

TOP_LEVEL_KEYS = {
    "description",
    "timeout",
    "retries",
    "retry_on",
    "queue",
    "interpreter",
    "parameters",
    "additional_parameters",
    "runner",
    "tags",
    "memory_limit_mb",
}
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
        problems = []
        for error in sorted(self._validator.iter_errors(merged), key=lambda e: list(e.path)):
            where = ".".join(str(p) for p in error.path)
            if error.validator == "additionalProperties" and not where:
                unknown = sorted(set(merged) - set(self.parameters))
                known = ", ".join(sorted(self.parameters)) or "none"
                for name in unknown:
                    problems.append(f"{name}: unknown parameter (known: {known})")
                continue
            if error.validator == "required":
                problems.append(f"{error.message.split(' is ')[0].strip(chr(39))}: required")
                continue
            problems.append(f"{where or '(parameters)'}: {error.message}")
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


def _check(data: dict[str, Any]) -> list[str]:
    """Every problem with a parsed block, as readable sentences."""
    problems = [f"unknown key {k!r}" for k in sorted(set(data) - TOP_LEVEL_KEYS)]
    timeout = data.get("timeout")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0
    ):
        problems.append(f"timeout must be a positive number of seconds, not {timeout!r}")
    retries = data.get("retries", 0)
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 100:
        problems.append(f"retries must be an integer from 0 to 100, not {retries!r}")
    retry_on = data.get("retry_on", [])
    if not isinstance(retry_on, list) or not set(retry_on) <= RETRYABLE:
        problems.append(f"retry_on must be a list drawn from {sorted(RETRYABLE)}")
    limit = data.get("memory_limit_mb")
    if limit is not None and (
        isinstance(limit, bool) or not isinstance(limit, int | float) or limit < 16
    ):
        problems.append(f"memory_limit_mb must be a number of MiB (16 or more), not {limit!r}")
    if "runner" in data and data["runner"] not in ("fresh", "warm"):
        problems.append("runner must be 'fresh' or 'warm'")
    if "queue" in data and (problem := queue_problem(data["queue"])):
        problems.append(problem)
    params = data.get("parameters", {})
    if not isinstance(params, dict):
        return [*problems, "parameters must be a table of tables"]
    for name, spec in params.items():
        if not isinstance(spec, dict):
            problems.append(f"parameters.{name} must be a table")
            continue
        for key in sorted(set(spec) - PARAMETER_KEYS):
            problems.append(f"parameters.{name}: unknown key {key!r}")
        kind = spec.get("type")
        kinds = kind if isinstance(kind, list) else [kind]
        if kind is not None and not set(kinds) <= JSON_TYPES:
            problems.append(f"parameters.{name}: unknown type {kind!r}")
    if not problems and params:
        jsonschema = load_jsonschema()
        Draft202012Validator = jsonschema.Draft202012Validator
        SchemaError = jsonschema.exceptions.SchemaError

        meta_schema = {
            "type": "object",
            "properties": {
                n: {k: v for k, v in s.items() if k != "required"} for n, s in params.items()
            },
        }
        try:
            Draft202012Validator.check_schema(meta_schema)
        except SchemaError as exc:
            problems.append(f"parameters: {exc.message}")
        validator = Draft202012Validator(meta_schema)
        for name, spec in params.items():
            if "default" in spec:
                properties: dict[str, Any] = meta_schema["properties"]  # type: ignore[assignment]
                for err in validator.evolve(schema=properties[name]).iter_errors(spec["default"]):
                    problems.append(f"parameters.{name}: default {err.message}")
    return problems
