"""jsonschema, imported once and quickly (the metadata block, parameters and REST bodies
are all checked with it)."""

from __future__ import annotations

import threading
from typing import Any

_IMPORT_LOCK = threading.RLock()


def load_jsonschema() -> Any:
    """``import jsonschema`` without its ``iri`` format checker.

    jsonschema imports every optional format library it finds at its own import;
    rfc3987-syntax (which jupyterlab installs) builds a grammar there and takes seconds,
    on every worker, CLI and kernel start. We never check formats, so it is kept out of
    that one import (and stays importable for anyone else afterwards); the only effect is
    that ``FormatChecker`` in this process does not check ``iri`` / ``iri-reference``.
    """
    import sys

    # One import at a time: a thread warming the imports in the background (``%load_ext``)
    # leaves a partly initialised module in sys.modules while it runs, which a second
    # thread must not take for the finished one.
    with _IMPORT_LOCK:
        if "jsonschema" in sys.modules or "rfc3987_syntax" in sys.modules:
            return sys.modules.get("jsonschema") or __import__("jsonschema")
        sys.modules["rfc3987_syntax"] = None  # type: ignore[assignment]
        try:
            import jsonschema
        finally:
            del sys.modules["rfc3987_syntax"]
        return jsonschema
