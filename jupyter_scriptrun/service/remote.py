"""Reading a remote Jupyter server's scriptrun history into pandas."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from typing import Any

import pandas as pd

from jupyter_scriptrun.exceptions import ScriptrunError
from jupyter_scriptrun.models import HISTORY_COLUMNS
from jupyter_scriptrun.service.frames import history_frame


def remote_history(server: str, token: str | None = None, **filters: Any) -> pd.DataFrame:
    """``GET {server}/scriptrun/api/executions`` as the same typed DataFrame as locally."""
    params: list[tuple[str, str]] = []
    for key, value in filters.items():
        if value is None:
            continue
        values = value if isinstance(value, list | tuple) else [value]
        params.extend((key, v.isoformat() if hasattr(v, "isoformat") else str(v)) for v in values)
    url = f"{server.rstrip('/')}/scriptrun/api/executions?{urllib.parse.urlencode(params)}"
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    if token:
        request.add_header("Authorization", f"token {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            rows = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise ScriptrunError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise ScriptrunError(f"{url}: {exc}") from None
    return history_frame([tuple(r.get(c) for c in HISTORY_COLUMNS) for r in rows])
