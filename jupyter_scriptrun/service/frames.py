"""DataFrames of the history and of run data, their columns typed here once for every front end."""

from __future__ import annotations

import json
import logging
import os
from typing import TYPE_CHECKING, Any

import pandas as pd

from jupyter_scriptrun.models import (
    FLOAT_COLUMNS,
    HISTORY_COLUMNS,
    INTEGER_COLUMNS,
    ISO_FORMAT,
    TIME_COLUMNS,
)
from jupyter_scriptrun.status import ALL
from jupyter_scriptrun.store import columnar

if TYPE_CHECKING:
    from jupyter_scriptrun.store import Store

log = logging.getLogger(__name__)

# More slices than cores: the child reads the next ones while this process converts.
SLICES_PER_CPU = 4

# Text columns with few distinct values: one Python string per value, not per row.
REPEATED_COLUMNS = ("script", "status", "page_context", "worker", "error_type")
STATUS_DTYPE = pd.CategoricalDtype(categories=list(ALL))


def history(
    store: Store, *, columnar_from: int = columnar.COLUMNAR_FROM_ROWS, **filters: Any
) -> pd.DataFrame:
    """The history DataFrame of ``store`` (filters as ``Store.history_query``).

    With at least ``columnar_from`` matching runs in a SQLite file or in PostgreSQL, read
    as Arrow slices by ADBC's driver (``columnar``; SQLite's in a child process): a million
    runs in about 3 s instead of 20. Otherwise (smaller, no ADBC driver, or the driver
    failed) through SQLAlchemy.
    """
    read = columnar.reader(store.url)
    if read is not None:
        rows = store.history_count(**filters)
        if rows >= columnar_from:
            slices = store.history_slices(SLICES_PER_CPU * (os.cpu_count() or 1), rows, **filters)
            try:
                parts = read(slices, rows, _arrow_frame)
            except columnar.ColumnarError as exc:
                log.warning("columnar history read failed, reading it plainly: %s", exc)
            else:
                if len(parts) == 1:
                    return parts[0]
                if parts:
                    return pd.concat(parts, ignore_index=True)
    return history_frame(store.history_columns(**filters))


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
    return _typed(frame)


def _arrow_frame(table: Any) -> pd.DataFrame:
    """``history_frame`` of an Arrow table already in the history's types
    (``columnar._typed``): each column converted in C, a Python object only per string
    (one per distinct value where values repeat) and per parameters dict."""
    data: dict[str, Any] = {}
    for name in HISTORY_COLUMNS:
        column = table[name]
        if name in TIME_COLUMNS:
            data[name] = pd.Series(column.to_pandas(), copy=False)
        elif name in FLOAT_COLUMNS:
            data[name] = column.to_numpy()
        elif name in REPEATED_COLUMNS:
            data[name] = pd.Series(_repeated_strings(column), dtype=object, copy=False)
        else:
            text = column.to_numpy(zero_copy_only=False)
            data[name] = pd.Series(text, dtype=object, copy=False)
    data["status"] = pd.Categorical(data["status"], dtype=STATUS_DTYPE)
    data["parameters"] = _loads_arrow(table["parameters"])
    return pd.DataFrame(data, columns=list(HISTORY_COLUMNS))


def _repeated_strings(column: Any) -> Any:
    """A text column of few distinct values as an object array holding one Python string
    per distinct value (dictionary-encoded in Arrow, then indexed in NumPy)."""
    import numpy as np
    import pyarrow.compute as pc

    encoded = pc.dictionary_encode(column.combine_chunks())
    values = np.array([*encoded.dictionary.to_pylist(), None], dtype=object)
    codes = encoded.indices.fill_null(len(encoded.dictionary)).to_numpy()
    return values[codes]


def _loads_arrow(column: Any) -> list[Any]:
    """Parse a text column with one ``json.loads``: the array's text is joined in Arrow."""
    import pyarrow as pa
    import pyarrow.compute as pc

    texts = column.combine_chunks()
    if len(texts) and texts.null_count == 0:
        whole = pa.ListArray.from_arrays(pa.array([0, len(texts)], pa.int32()), texts)
        try:
            parsed = json.loads("[" + pc.binary_join(whole, ",")[0].as_py() + "]")
            if len(parsed) == len(texts):
                return parsed
        except ValueError:
            pass
    return _loads_all(texts.to_pylist())


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    for col in TIME_COLUMNS:
        # Microseconds always: pandas would otherwise pick the unit from the values.
        frame[col] = pd.to_datetime(frame[col], utc=True, format="ISO8601").dt.as_unit("us")
    for col in FLOAT_COLUMNS:
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("float64")
    frame["status"] = frame["status"].astype(STATUS_DTYPE)
    frame["parameters"] = _loads_all(frame["parameters"].tolist())
    for col in ("id", "script", "page_context", "worker", "error_type", "message"):
        frame[col] = frame[col].astype("object")
    return frame


def export_frame(frame: pd.DataFrame, *, parameters_as_json: bool) -> pd.DataFrame:
    """The history prepared for text: timestamps as ISO strings (microseconds, +00:00),
    whole-number columns as nullable integers, measures to the microsecond, and (for CSV)
    parameters as JSON text."""
    out = frame.copy()
    for name in TIME_COLUMNS:
        if name in out:
            text = out[name].dt.tz_convert("UTC").dt.strftime(ISO_FORMAT)
            out[name] = text.astype(object).where(out[name].notna(), None)
    for name in INTEGER_COLUMNS:
        if name in out:
            out[name] = out[name].astype("Int64")
    for name in FLOAT_COLUMNS:
        if name in out:
            # Microseconds (and bytes of a MiB) are what is measured: 0.003902, not the
            # binary noise of a subtraction (0.0039019999999999997).
            out[name] = out[name].round(6)
    if "status" in out:
        out["status"] = out["status"].astype(str)
    if parameters_as_json and "parameters" in out:
        out["parameters"] = [json.dumps(p, ensure_ascii=False) for p in out["parameters"]]
    return out


def history_csv(frame: pd.DataFrame) -> str:
    """The history as CSV: one representation with the JSON export and the REST API."""
    return export_frame(frame, parameters_as_json=True).to_csv(index=False)


def history_json(frame: pd.DataFrame) -> str:
    """The history as a JSON array of records (parameters as objects, nulls as null)."""
    out = export_frame(frame, parameters_as_json=False).astype(object)
    records = out.where(out.notna(), None).to_dict(orient="records")
    return json.dumps(records, ensure_ascii=False, allow_nan=False)


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


FILE_READERS = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".json": "json"}


def file_frame(name: str, content: bytes) -> pd.DataFrame:
    """A run's file as a DataFrame, read by its suffix (CSV, TSV, Parquet, JSON records);
    ValueError naming the kinds read for any other."""
    import io

    kind = FILE_READERS.get(os.path.splitext(name)[1].lower())
    if kind is None:
        raise ValueError(
            f"{name!r} is not a table this reads ({', '.join(FILE_READERS)}); "
            "read_file() gives its bytes"
        )
    if kind in ("csv", "tsv"):
        return pd.read_csv(io.BytesIO(content), sep="," if kind == "csv" else "\t")
    if kind == "parquet":
        return pd.read_parquet(io.BytesIO(content))
    return pd.read_json(io.BytesIO(content))


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
