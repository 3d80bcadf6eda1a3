"""A notebook as a script: its ``# /// scriptrun`` block and its parameters' defaults,
both read from its first code cell tagged ``parameters`` (papermill's convention).

The block declares parameters as for any script; a parameter the block leaves without a
default takes the cell's value, and a cell assignment the block does not name is a
parameter too, typed by its value. Only the standard library reads this (``json``,
``ast``): listing scripts starts no kernel and imports no Jupyter package.
"""

from __future__ import annotations

import ast
import dataclasses
import json
from typing import Any

from jupyter_scriptrun.contract.metadata import ScriptMeta, parse_metadata
from jupyter_scriptrun.exceptions import ScriptMetadataError

SUFFIX = ".ipynb"
TYPES = {bool: "boolean", int: "number", float: "number", str: "string", list: "array"}
"""A cell value's JSON type (a whole number's default takes any number, as in Python)."""


def parameters_cell(notebook: dict[str, Any]) -> str | None:
    """The source of the first code cell tagged ``parameters`` (None: it has none)."""
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        tags = cell.get("metadata", {}).get("tags", [])
        if "parameters" in tags:
            source = cell.get("source", "")
            return "".join(source) if isinstance(source, list) else str(source)
    return None


def cell_defaults(source: str) -> dict[str, Any]:
    """The cell's ``name = literal`` assignments (JSON values only: what a caller can
    give); anything else in it is code, run as written."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    found: dict[str, Any] = {}
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        if isinstance(node, ast.AnnAssign) and node.value is not None:
            targets = [node.target]
        value_node = getattr(node, "value", None)
        for target in targets:
            if not isinstance(target, ast.Name) or value_node is None:
                continue
            try:
                value = ast.literal_eval(value_node)
                json.dumps(value, allow_nan=False)
            except (ValueError, TypeError, SyntaxError):
                continue
            found[target.id] = value
    return found


def notebook_meta(data: bytes, source: str) -> ScriptMeta:
    """A notebook's description, parameters and limits; ScriptMetadataError for a file
    that is no notebook or a block that is wrong."""
    try:
        notebook = json.loads(data)
    except ValueError as exc:
        raise ScriptMetadataError(f"{source}: not a notebook (not JSON: {exc})") from None
    if not isinstance(notebook, dict) or not isinstance(notebook.get("cells"), list):
        raise ScriptMetadataError(f"{source}: not a notebook (no cells)")
    cell = parameters_cell(notebook)
    if cell is None:
        return ScriptMeta(parameters={}, additional_parameters=False)
    meta = parse_metadata(cell, source=source)
    parameters = {name: dict(spec) for name, spec in meta.parameters.items()}
    for name, value in cell_defaults(cell).items():
        spec = parameters.setdefault(name, {})
        spec.setdefault("default", value)
        kind = TYPES.get(type(value), "object" if isinstance(value, dict) else None)
        if kind and "type" not in spec:
            spec["type"] = kind
    additional = meta.additional_parameters
    return dataclasses.replace(
        meta,
        parameters=parameters,
        additional_parameters=False if additional is None else additional,
    )
