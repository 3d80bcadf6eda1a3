"""Parameters as people type them: a JSON object, then ``key=value`` words, and a history
limit (the CLI and the magics share this)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from jupyter_scriptrun import defaults


def parse_assignments(items: Sequence[str]) -> dict[str, Any]:
    """``key=value`` words to a dict; values are JSON where they parse, else strings.

    Raises:
        ValueError: a word without ``=``, an empty or repeated key.
    """
    params: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"{item!r}: parameters are written key=value")
        if key in params:
            raise ValueError(f"parameter {key!r} given twice")
        try:
            params[key] = json.loads(raw)
        except ValueError:
            params[key] = raw
    return params


def build_params(json_text: str | None, assignments: Sequence[str], option: str) -> dict[str, Any]:
    """Parameters from a JSON object option, overridden by ``key=value`` words."""
    params: dict[str, Any] = {}
    if json_text:
        try:
            params = json.loads(json_text)
        except ValueError as exc:
            raise ValueError(f"{option} is not valid JSON: {exc}") from None
        if not isinstance(params, dict):
            raise ValueError(f"{option} must be a JSON object")
    params.update(parse_assignments(assignments))
    return params


def nesting(value: object, limit: int | None = None) -> int:
    """How deeply ``value`` nests objects and arrays, without recursion (a value deeper
    than ``limit`` is not walked further: ``limit + 1`` is returned)."""
    limit = defaults.MAX_PARAMETERS_DEPTH if limit is None else limit
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Mapping | list | tuple):
            deepest = max(deepest, depth)
            if depth > limit:
                return depth
            children = item.values() if isinstance(item, Mapping) else item
            stack.extend((child, depth + 1) for child in children)
    return deepest


INT64 = range(-(2**63), 2**63)
"""The integers parameters may hold: what every JSON reader of the history (pandas, a
database, a browser's BigInt-free JSON aside) can read back whole."""


def huge_integer(value: object) -> int | None:
    """The first integer in ``value`` (walked without recursion) outside INT64, if any."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, int) and not isinstance(item, bool) and item not in INT64:
            return item
        if isinstance(item, Mapping):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return None


def history_limit(value: int | str | None) -> int | None:
    """A history limit as given in Python or typed: a whole number of runs (0: none), or
    None / ``"all"`` for every run.

    Raises:
        ValueError: a negative number, or text that is neither a number nor ``all``.
    """
    if value is None or value == "all":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"limit: {value!r} is not a number of runs or 'all'")
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            raise ValueError(f"limit: {value!r} is not a number of runs or 'all'") from None
    if value < 0:
        raise ValueError(f"limit: {value} is negative; give a number of runs, or 'all'")
    return value


def limit_argument(text: str) -> int | None:
    """``--limit`` as an argparse type (the CLI's and the magics'): a number or ``all``."""
    from argparse import ArgumentTypeError

    try:
        return history_limit(text)
    except ValueError as exc:
        raise ArgumentTypeError(str(exc).removeprefix("limit: ")) from None
