"""DataFrames of the history and of run data: the only module that imports pandas."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from .status import ALL
from .tables import HISTORY_COLUMNS, TIME_COLUMNS

FLOAT_COLUMNS = (
    "queue_s",
    "duration_s",
    "cpu_user_s",
    "cpu_system_s",
    "peak_rss_mb",
    "exit_code",
    "attempt",
)
STATUS_DTYPE = pd.CategoricalDtype(categories=list(ALL))


def history_frame(rows: list[tuple[Any, ...]] | dict[str, list[Any]]) -> pd.DataFrame:
    """The history DataFrame: one row per execution, typed columns, newest first.

    ``rows`` are tuples in HISTORY_COLUMNS order, or a dict of columns (the fast path:
    ``Store.history_columns``). Timestamps are timezone-aware UTC, ``status`` is
    categorical (every status a category, so counts show zeros too), the numbers are
    floats, ``parameters`` is a dict.
    """
    if isinstance(rows, dict):
        frame = pd.DataFrame({c: pd.Series(rows[c], dtype=object) for c in HISTORY_COLUMNS})
    else:
        frame = pd.DataFrame.from_records([tuple(r) for r in rows], columns=list(HISTORY_COLUMNS))
    for col in TIME_COLUMNS:
        frame[col] = pd.to_datetime(frame[col], utc=True, format="ISO8601")
    for col in FLOAT_COLUMNS:
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("float64")
    frame["status"] = frame["status"].astype(STATUS_DTYPE)
    frame["parameters"] = _loads_all(frame["parameters"].tolist())
    for col in ("id", "script", "page_context", "worker", "error_type", "message"):
        frame[col] = frame[col].astype("object")
    return frame


def data_frame(data: Any) -> pd.DataFrame | None:
    """A run's ``data`` as a DataFrame when it is tabular, else None.

    Tabular means a list of records (dicts), a dict of equal-length columns, or a
    ``{"columns": [...], "data": [[...], ...]}`` split document.
    """
    if isinstance(data, list) and data and all(isinstance(r, dict) for r in data):
        return pd.DataFrame.from_records(data)
    if isinstance(data, dict):
        if isinstance(data.get("columns"), list) and isinstance(data.get("data"), list):
            return pd.DataFrame(data["data"], columns=data["columns"])
        values = list(data.values())
        lists = values and all(isinstance(v, list) for v in values)
        if lists and len({len(v) for v in values}) == 1:
            return pd.DataFrame(data)
    return None


def _loads_all(values: list[Any]) -> list[Any]:
    """Parse a column of JSON texts in one call of the C parser (one call per value costs
    seconds per million rows); value by value only if some value is not JSON."""
    if values and all(isinstance(v, str) for v in values):
        try:
            parsed = json.loads("[" + ",".join(values) + "]")
            if len(parsed) == len(values):
                return parsed
        except ValueError:
            pass
    return [_loads(v) for v in values]


def _loads(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value
