"""How records look in a notebook (HTML) and a terminal (text)."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

# Glyphs that ordinary text fonts have (DejaVu, Liberation, the system UI fonts): an
# emoji such as the hourglass rendered as an empty box in a browser without emoji fonts.
MARKS = {
    "succeeded": "✔",
    "failed": "✘",
    "timed_out": "◷",
    "cancelled": "⊘",
    "lost": "?",
    "running": "▶",
    "queued": "…",
    "retrying": "↻",
}
COLOURS = {
    "succeeded": "#1a7f37",
    "failed": "#cf222e",
    "timed_out": "#bf8700",
    "cancelled": "#6e7781",
    "lost": "#8250df",
}


def json_default(value: Any) -> Any:
    """For ``json.dumps``: timestamps as ISO 8601 with microseconds and the UTC offset (the
    history exports' form), anything else unknown as text."""
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return aware.astimezone(UTC).isoformat(timespec="microseconds")
    return str(value)


def summary_line(rec: Mapping[str, Any], elapsed_s: float | None = None) -> str:
    """One line: mark, script, short id, status, duration, peak memory (and the error)."""
    status = rec["status"]
    parts = [f"{MARKS.get(status, '•')} {rec['script']} [{rec['id'][:8]}] {status}"]
    if rec.get("duration_s") is not None:
        parts.append(f"in {rec['duration_s']:.3f} s")
    elif elapsed_s is not None:
        parts.append(f"{elapsed_s:.1f} s")
    if rec.get("peak_rss_mb") is not None:
        parts.append(f"peak {rec['peak_rss_mb']:.1f} MiB")
    if (rec.get("attempt") or 0) > 1:
        parts.append(f"attempt {rec['attempt']}")
    line = " · ".join(parts)
    if status not in ("succeeded", "queued", "running") and (
        rec.get("error_type") or rec.get("message")
    ):
        line += f" — {rec.get('error_type') or 'Error'}: {rec.get('message') or ''}"
    return line


OUTPUT_TAIL_CHARS = 4000
OUTPUT_ALL_CHARS = 200_000
"""What "show all" shows at most: the store keeps up to SCRIPTRUN_MAX_OUTPUT_BYTES."""


def execution_html(
    rec: Mapping[str, Any],
    data: Any,
    frame: Any = None,
    stdout: str = "",
    stderr: str = "",
    *,
    expanded: bool = False,
) -> str:
    """An execution as a compact card: a status chip, the script, a short id (the whole
    one on hover), duration and peak memory on one line; the error, if any; the data,
    once; then the output and the details folded (``expanded``: unfolded)."""
    status = rec["status"]
    colour = COLOURS.get(status, "#0969da")
    facts = [
        f"<b>{html.escape(rec['script'])}</b>",
        f"<code title='{html.escape(rec['id'])}'>{html.escape(rec['id'][:8])}</code>",
    ]
    if rec.get("duration_s") is not None:
        facts.append(f"{rec['duration_s']:.3f} s")
    if rec.get("peak_rss_mb") is not None:
        facts.append(f"peak {rec['peak_rss_mb']:.1f} MiB")
    if (rec.get("attempt") or 0) > 1:
        facts.append(f"attempt {rec['attempt']}")
    head = (
        f"<div><span style='background:{colour};color:white;border-radius:8px;"
        f"padding:0 7px'>{MARKS.get(status, '•')} {html.escape(status)}</span> "
        + " · ".join(facts)
        + "</div>"
    )
    if status != "succeeded" and (rec.get("error_type") or rec.get("message")):
        what = f"{rec.get('error_type') or 'Error'}: {rec.get('message') or ''}"
        head += f"<div style='color:{COLOURS['failed']}'>{html.escape(what)}</div>"
    opened = " open" if expanded else ""
    return (
        head
        + _data_html(data, frame)
        + _output_html(stdout, stderr, opened)
        + (
            f"<details{opened}><summary>details</summary><table>{_detail_rows(rec)}</table></details>"
        )
    )


def _data_html(data: Any, frame: Any) -> str:
    """The run's data, shown once: a table when tabular, else its JSON."""
    if frame is not None:
        shown = frame.head(50).to_html(index=False, border=0, max_cols=20)
        more = f" (the first 50 of {len(frame)})" if len(frame) > 50 else ""
        return f"<details open><summary>data ({len(frame)} rows){more}</summary>{shown}</details>"
    if data is not None:
        text = json.dumps(data, ensure_ascii=False, indent=2, default=str)
        return (
            f"<details open><summary>data</summary><pre>{html.escape(text[:20000])}</pre></details>"
        )
    return ""


def _output_html(stdout: str, stderr: str, opened: str) -> str:
    """Each non-empty stream, folded; a long one shows its end, and all of it one more
    click away."""
    out = ""
    for name, text in (("output", stdout), ("stderr", stderr)):
        if not text.strip():
            continue
        lines = text.count("\n") + (not text.endswith("\n"))
        tail = text[-OUTPUT_TAIL_CHARS:]
        body = f"<pre>{html.escape(tail)}</pre>"
        if len(text) > OUTPUT_TAIL_CHARS:
            whole = text[-OUTPUT_ALL_CHARS:]
            body = (
                f"<pre>…{html.escape(tail)}</pre><details><summary>show all</summary>"
                f"<pre>{html.escape(whole)}</pre></details>"
            )
        count = f"{lines} line{'s' if lines != 1 else ''}"
        out += f"<details{opened}><summary>{name} ({count})</summary>{body}</details>"
    return out


def _detail_rows(rec: Mapping[str, Any]) -> str:
    rows = [
        ("id", rec["id"]),
        ("parameters", json.dumps(rec.get("parameters"), ensure_ascii=False)),
        ("queued / started", f"{rec.get('queued_at')} / {rec.get('started_at')}"),
        ("duration", _num(rec.get("duration_s"), "s")),
        (
            "cpu user / system",
            f"{_num(rec.get('cpu_user_s'), 's')} / {_num(rec.get('cpu_system_s'), 's')}",
        ),
        ("peak memory", _num(rec.get("peak_rss_mb"), "MiB")),
        ("exit code", rec.get("exit_code")),
        ("worker", rec.get("worker")),
    ]
    if rec.get("message"):
        rows.append(("message", rec["message"]))
    if rec.get("error_type"):
        rows.append(("error", rec["error_type"]))
    return "".join(
        f"<tr><th style='text-align:left;padding-right:1em'>{html.escape(k)}</th>"
        f"<td style='text-align:left'>{html.escape(str(v if v is not None else '—'))}</td></tr>"
        for k, v in rows
    )


def _num(value: Any, unit: str) -> str:
    return "—" if value is None else f"{value:.3f} {unit}"


def human_seconds(value: float | None) -> str:
    """A duration for people: ``850 ms``, ``4.2 s``, ``3m05s``, ``2h14m``, ``—`` for none."""
    if value is None:
        return "—"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 60:
        return f"{value:.1f} s"
    minutes, seconds = divmod(int(value), 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def human_bytes(value: float | None) -> str:
    """Memory for people: ``96 MiB``, ``1.4 GiB``, ``—`` for none."""
    if value is None:
        return "—"
    mib = value / 2**20
    return f"{mib / 1024:.1f} GiB" if mib >= 1024 else f"{mib:.0f} MiB"
