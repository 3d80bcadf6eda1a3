"""How records look in a notebook (HTML) and a terminal (text)."""

from __future__ import annotations

import base64
import csv
import html
import itertools
import json
import shlex
from collections.abc import Mapping, Sequence
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
# Text and lines follow JupyterLab's theme (light or dark) through its CSS variables; the
# light values are the fallbacks where none are defined (classic Notebook, exported HTML).
# Status chips keep their own colours: white text on a saturated background reads on both.
MUTED = "var(--jp-ui-font-color2,#57606a)"
FAINT = "var(--jp-ui-font-color3,#8c959f)"
ERROR = "var(--jp-error-color1,#cf222e)"
BORDER = "var(--jp-border-color2,#d0d7de)"
ACCENT = "var(--jp-brand-color1,#0969da)"
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


def eta_s(progress: Mapping[str, Any]) -> float | None:
    """Seconds left at the latest update, at the pace so far (``t``: seconds from the
    script's start to that update, on the worker's clock, so no clock skew enters)."""
    done, total = progress.get("done") or 0, progress.get("total") or 0
    at: float = progress.get("t") or 0.0
    if not total or done <= 0 or not at or done >= total:
        return None
    return (total - done) * at / done


def progress_text(progress: Mapping[str, Any]) -> str:
    """``3/10 (30%) · loading · about 7.0 s left``."""
    done, total = progress.get("done") or 0, progress.get("total")
    text = f"{_count(done)}/{_count(total)} ({100 * done / total:.0f}%)" if total else _count(done)
    if progress.get("message"):
        text += f" · {progress['message']}"
    left = eta_s(progress)
    if left is not None:
        text += f" · about {human_seconds(left)} left"
    return text


def _count(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def progress_html(progress: Mapping[str, Any] | None, elapsed_s: float | None) -> str:
    """A progress bar with its numbers and the time left (a moving stripe when the total is
    unknown); for a run without progress, only its elapsed time."""
    clock = f"<span>{human_seconds(elapsed_s)}</span>" if elapsed_s is not None else ""
    if not progress:
        return f"<div class='sr-progress'>{clock}</div>"
    total = progress.get("total")
    share = min(max(progress["done"] / total, 0.0), 1.0) if total else None
    fill = f"width:{share * 100:.1f}%" if share is not None else "width:100%;opacity:.35"
    bar = (
        f"<div style='flex:1 1 120px;max-width:360px;height:8px;background:{BORDER};"
        "border-radius:4px;overflow:hidden' role='progressbar' "
        f"aria-valuenow='{progress['done']}' aria-valuemax='{total or ''}'>"
        f"<div style='{fill};height:100%;background:{ACCENT}'></div></div>"
    )
    words = html.escape(progress_text(progress))
    return (
        "<div class='sr-progress' style='display:flex;gap:8px;align-items:center;"
        f"flex-wrap:wrap;margin:2px 0'>{bar}<span>{words}</span>{clock}</div>"
    )


def running_for(rec: Mapping[str, Any]) -> float | None:
    """Seconds since the run started (None before it has)."""
    started = rec.get("started_at")
    return (datetime.now(UTC) - started).total_seconds() if started else None


def status_html(rec: Mapping[str, Any], elapsed_s: float | None = None) -> str:
    """A run in one line while it goes (chip, script, short id) and its progress bar; once
    it ended, the line alone."""
    status = rec["status"]
    line = (
        f"<div>{_chip(status)} <b>{html.escape(rec['script'])}</b> "
        f"<code title='{html.escape(rec['id'])}'>{html.escape(rec['id'][:8])}</code></div>"
    )
    if status in ("queued", "running", "retrying"):
        return line + progress_html(rec.get("progress"), elapsed_s)
    return f"<div>{html.escape(summary_line(rec))}</div>"


LIVE_TAIL_CHARS = 4000


def live_html(rec: Mapping[str, Any], elapsed_s: float | None, output: str) -> str:
    """A run while it goes, as one view updated in place: its status line (and progress
    bar) and the end of its output so far. Once the run ends the view becomes its card."""
    if not output:
        return status_html(rec, elapsed_s)
    tail = output[-LIVE_TAIL_CHARS:]
    more = "…" if len(output) > LIVE_TAIL_CHARS else ""
    return (
        status_html(rec, elapsed_s)
        + f"<pre style='max-height:24em;overflow:auto;margin:4px 0'>{more}{ansi_html(tail)}</pre>"
    )


def _chip(status: str) -> str:
    colour = COLOURS.get(status, "#0969da")
    return (
        f"<span style='background:{colour};color:white;border-radius:8px;"
        f"padding:0 7px;white-space:nowrap'>{MARKS.get(status, '•')} {html.escape(status)}</span>"
    )


def summary_line(rec: Mapping[str, Any], elapsed_s: float | None = None) -> str:
    """One line: mark, script, short id, status, duration, peak memory (and the error);
    while it runs, the elapsed time and its progress."""
    status = rec["status"]
    parts = [f"{MARKS.get(status, '•')} {rec['script']} [{rec['id'][:8]}] {status}"]
    if rec.get("duration_s") is not None:
        parts.append(f"in {rec['duration_s']:.3f} s")
    elif elapsed_s is not None:
        parts.append(f"{elapsed_s:.1f} s")
    elif rec.get("finished_at") is not None and rec.get("started_at") is None:
        parts.append("never started")
    if status == "running" and rec.get("progress"):
        parts.append(progress_text(rec["progress"]))
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
    files: Sequence[Mapping[str, Any]] = (),
) -> str:
    """An execution as a compact card: a status chip, the script, a short id (the whole
    one on hover), duration and peak memory on one line; the error, if any; the data,
    once; the files it wrote (``files``: see :func:`files_html`); then the output and the
    details folded (``expanded``: unfolded)."""
    status = rec["status"]
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
    head = f"<div>{_chip(status)} " + " · ".join(facts) + "</div>"
    if status != "succeeded" and (rec.get("error_type") or rec.get("message")):
        what = f"{rec.get('error_type') or 'Error'}: {rec.get('message') or ''}"
        head += f"<div style='color:{ERROR}'>{html.escape(what)}</div>"
    opened = " open" if expanded else ""
    return (
        head
        + _data_html(data, frame)
        + files_html(files, rec["id"])
        + _output_html(stdout, stderr, opened)
        + (
            f"<details{opened}><summary>details</summary><table>{_detail_rows(rec)}</table></details>"
        )
    )


INLINE_IMAGES = ("image/png", "image/jpeg", "image/gif", "image/webp")
"""Shown as pictures (SVG is not: a picture that can carry script is offered as a file)."""


def files_html(files: Sequence[Mapping[str, Any]], execution_id: str) -> str:
    """The files a run wrote, where people look: images inline, CSV as a table, others as
    download links, each from its ``content`` when it was small enough to carry (a
    notebook saved with the card keeps them); bigger ones say how to get them, and those
    not kept say why."""
    if not files:
        return ""
    items = [_file_html(f, execution_id) for f in files]
    kept = sum(1 for f in files if f.get("note") is None)
    return (
        f"<details open><summary>files ({kept} kept)</summary>{DATA_CSS}"
        f"<div class='sr-data'>{''.join(items)}</div></details>"
    )


def _file_html(entry: Mapping[str, Any], execution_id: str) -> str:
    name, media = html.escape(entry["name"]), entry["media_type"]
    if entry.get("note") is not None:
        return f"<div style='color:{MUTED}'>{name}: not kept ({html.escape(entry['note'])})</div>"
    size = f"<span style='color:{MUTED}'>{file_size(entry['size'])}</span>"
    content = entry.get("content")
    if content is None:
        how = f"scriptrun files {execution_id[:8]} --get {shlex.quote(entry['name'])}"
        return f"<div>{name} {size} <code style='color:{MUTED}'>{html.escape(how)}</code></div>"
    encoded = base64.b64encode(content).decode()
    link = (
        f"<a download='{html.escape(entry['name'].rpartition('/')[2])}' "
        f"href='data:{html.escape(media)};base64,{encoded}'>{name}</a> {size}"
    )
    if media in INLINE_IMAGES:
        return (
            f"<div>{link}<br><img src='data:{media};base64,{encoded}' alt='{name}' "
            "style='max-width:100%;max-height:360px'></div>"
        )
    if media == "text/csv":
        return f"<div>{link}{_csv_table(content)}</div>"
    if entry.get("html"):  # an executed notebook, rendered in a sandboxed frame
        return f"<details><summary>{link}</summary>{entry['html']}</details>"
    return f"<div>{link}</div>"


def _csv_table(content: bytes, rows: int = 20) -> str:
    """The first ``rows`` rows of a CSV file as a table (its header as the head)."""
    lines = content.decode("utf-8", "replace").splitlines()
    parsed = list(itertools.islice(csv.reader(lines), rows + 1))
    if not parsed:
        return ""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in parsed[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in parsed[1:]
    )
    more = (
        f"<div style='color:{MUTED}'>the first {rows} rows</div>" if len(lines) > rows + 1 else ""
    )
    return (
        f"<div style='overflow-x:auto'><table><thead><tr>{head}</tr></thead>"
        f"<tbody>{body}</tbody></table></div>{more}"
    )


def file_size(n: int) -> str:
    """A file's size for people: ``82 B``, ``3.4 KiB``, ``12.0 MiB``."""
    for unit, step in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= step:
            return f"{n / step:.1f} {unit}"
    return f"{n} B"


DATA_CSS = (
    "<style>.sr-data table{border-collapse:collapse;margin:4px 0}"
    ".sr-data th,.sr-data td{padding:2px 12px;text-align:right;border:none}"
    f".sr-data thead th{{border-bottom:1px solid {BORDER}}}"
    ".sr-data tbody tr:nth-child(odd){background:rgba(127,127,127,.08)}</style>"
)
"""A tabular result reads as a table: spaced, numbers right-aligned, rows banded (the
panel's HTML widgets have none of JupyterLab's own table styles)."""


def _data_html(data: Any, frame: Any) -> str:
    """The run's data, shown once: a table when tabular, else its JSON."""
    if frame is not None:
        shown = frame.head(50).to_html(index=False, border=0, max_cols=20)
        more = f" (the first 50 of {len(frame)})" if len(frame) > 50 else ""
        return (
            f"<details open><summary>data ({len(frame)} rows){more}</summary>{DATA_CSS}"
            f"<div class='sr-data' style='overflow-x:auto'>{shown}</div></details>"
        )
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
        body = f"<pre>{ansi_html(tail)}</pre>"
        if len(text) > OUTPUT_TAIL_CHARS:
            whole = text[-OUTPUT_ALL_CHARS:]
            body = (
                f"<pre>…{ansi_html(tail)}</pre><details><summary>show all</summary>"
                f"<pre>{ansi_html(whole)}</pre></details>"
            )
        count = f"{lines} line{'s' if lines != 1 else ''}"
        out += f"<details{opened}><summary>{name} ({count})</summary>{body}</details>"
    return out


def ansi_html(text: str) -> str:
    """Text for a ``<pre>``: escaped, with terminal colours as JupyterLab's ``ansi-*``
    classes (nbconvert's converter, imported only for text that has them)."""
    if "\x1b[" not in text:
        return html.escape(text)
    from nbconvert.filters.ansi import ansi2html

    return str(ansi2html(text))


def attempts_html(attempts: list[Mapping[str, Any]]) -> str:
    """A run's attempts as a small table (when it had more than one, each one's end)."""
    if not attempts:
        return ""
    head = "".join(
        f"<th style='text-align:{a};padding:0 8px'>{t}</th>"
        for t, a in (
            ("attempt", "right"),
            ("status", "left"),
            ("worker", "left"),
            ("duration", "right"),
            ("exit", "right"),
            ("error", "left"),
        )
    )
    rows = "".join(
        "<tr>"
        f"<td style='text-align:right;padding:0 8px'>{a['attempt']}</td>"
        f"<td style='padding:0 8px'>{MARKS.get(a['status'], '•')} {html.escape(a['status'])}</td>"
        f"<td style='padding:0 8px'>{html.escape(str(a.get('worker') or '—'))}</td>"
        f"<td style='text-align:right;padding:0 8px'>{human_seconds(a.get('duration_s'))}</td>"
        f"<td style='text-align:right;padding:0 8px'>"
        f"{'—' if a.get('exit_code') is None else a['exit_code']}</td>"
        f"<td style='padding:0 8px'>"
        f"{html.escape(': '.join(str(x) for x in (a.get('error_type'), a.get('message')) if x))}"
        "</td></tr>"
        for a in attempts
    )
    return (
        f"<details open><summary>attempts ({len(attempts)})</summary>"
        f"<table style='border-collapse:collapse'><tr>{head}</tr>{rows}</table></details>"
    )


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
    """A duration for people: ``850 ms``, ``4.2 s``, ``3m05s``, ``2h14m``, ``—`` for none
    (None, or NaN: a DataFrame's empty cell, as a run that has not ended has)."""
    if value is None or value != value:
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
