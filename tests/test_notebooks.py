"""The notebooks in notebooks/ run top to bottom on a fresh embedded default, with the
outputs a reader expects (executed by nbclient in a real kernel)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from conftest import JupyterLabProcess
from nbclient import NotebookClient

from jupyter_scriptrun.config import Settings
from jupyter_scriptrun.fleet.local import LocalWorker

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


@pytest.fixture
def embedded(settings: Settings, monkeypatch: pytest.MonkeyPatch):
    """The kernel's environment: the embedded default in a private data folder."""
    for key, value in settings.to_env().items():
        monkeypatch.setenv(key, value)
    yield settings
    LocalWorker(settings).stop()


def execute(name: str, cwd: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    ).execute()
    return nb


def texts(nb: nbformat.NotebookNode) -> list[str]:
    """Every cell's outputs as text (streams, plain and HTML results, errors)."""
    out = []
    for cell in nb.cells:
        chunks = []
        for o in cell.get("outputs", []):
            if o.output_type == "stream":
                chunks.append(o.text)
            elif o.output_type in ("execute_result", "display_data"):
                chunks.append(o.data.get("text/plain", "") + o.data.get("text/html", ""))
            elif o.output_type == "error":
                chunks.append("\n".join(o.traceback))
        out.append("\n".join(chunks))
    return out


def output_of(nb: nbformat.NotebookNode, source: str) -> str:
    """The outputs, as text, of the one cell whose source starts with ``source``: cells
    are found by what they say, so moving or adding cells breaks no assertion."""
    outputs = texts(nb)
    found = [i for i, cell in enumerate(nb.cells) if cell.source.startswith(source)]
    assert len(found) == 1, f"{len(found)} cells start with {source!r}"
    return outputs[found[0]]


def errors(nb: nbformat.NotebookNode) -> list[str]:
    """Python errors raised by cells (a script's own traceback on stderr is not one)."""
    return [
        f"{o.ename}: {o.evalue}"
        for c in nb.cells
        for o in c.get("outputs", [])
        if o.output_type == "error"
    ]


def images(nb: nbformat.NotebookNode) -> int:
    return sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))


def test_quickstart(embedded: Settings, tmp_path: Path):
    nb = execute("quickstart.ipynb", tmp_path)
    out = texts(nb)
    whole = "\n".join(out)
    assert errors(nb) == []
    assert "object>" not in whole  # every display has a readable text form
    assert "example_script" in output_of(nb, "%scriptrun list")
    assert "hello from the notebook hello from the notebook" in whole
    assert "'original_message': 'hello from the notebook'" in output_of(nb, "first.data")
    assert "from a variable" in output_of(nb, 'msg = "from a variable"')
    assert "KeyError" in whole  # the deliberate crash, reported as one line
    assert "computing 4 rows" in whole and "square" in whole
    python_run = output_of(nb, 'run = sr.run("example_script", {"message": "from Python"})')
    assert "('succeeded', 'from Python from Python')" in python_run
    assert "succeeded" in whole and "failed" in whole


def test_panel(embedded: Settings, tmp_path: Path):
    nb = execute("panel.ipynb", tmp_path)
    views = [
        o
        for c in nb.cells
        for o in c.get("outputs", [])
        if "application/vnd.jupyter.widget-view+json" in o.get("data", {})
    ]
    assert views, "the panel did not display as a widget"
    assert "'succeeded'" in output_of(nb, 'panel.script.value = "table_script"')
    assert len(views) == 2, "the dashboard did not display as a widget"


def test_analysis_over_rest(embedded: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    server = JupyterLabProcess(embedded, tmp_path)
    try:
        monkeypatch.setenv("SCRIPTRUN_SERVER_URL", server.url)
        monkeypatch.setenv("SCRIPTRUN_SERVER_TOKEN", server.token)
        nb = execute("analysis.ipynb", tmp_path)
    finally:
        server.stop()
    out = texts(nb)
    whole = "\n".join(out)
    assert errors(nb) == []
    assert f"11 runs from the server {server.url}" in whole
    durations = output_of(nb, "by_script = history.groupby")
    assert "example_script" in durations and "failing_script" in durations
    assert images(nb) >= 3
    assert "Text(0.5" not in whole  # no stray return value under a plot
    # the failures table names both deliberate failures
    assert "ValueError" in whole and "KeyError" in whole


def test_benchmark(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The benchmark notebook with no broker configured: it starts its own redis-server."""
    monkeypatch.setenv("SCRIPTRUN_BENCH_RUNS", "8")
    monkeypatch.delenv("SCRIPTRUN_BENCH_BROKER", raising=False)
    monkeypatch.setenv("SCRIPTRUN_BENCH_HISTORY", "5000")
    monkeypatch.setenv("SCRIPTRUN_BENCH_NOTEBOOK_RUNS", "2")
    nb = execute("benchmark.ipynb", tmp_path)
    assert errors(nb) == []
    out = texts(nb)
    whole = "\n".join(out)
    summary = output_of(nb, 'paths = ["bare", "inprocess"')
    for path in ("bare", "inprocess", "product", "warm", "embedded", "embedded_warm"):
        assert path in summary
    assert "speed-up" in whole and "load_s" in whole
    assert "1 slot" in whole and "the store alone:" in whole
    assert "broker: a private redis-server on redis://127.0.0.1:" in whole
    assert "papermill CLI" in whole and "product fresh" in whole  # the notebook section
    assert images(nb) >= 3


def run_cells(sources: list[str], cwd: Path) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    ).execute()
    return nb


def test_a_magic_run_ends_as_one_card_in_the_cell(embedded: Settings, tmp_path: Path):
    """In a real kernel, the live view (status line and output so far) is updated in place
    and becomes the run's card: the cell holds one output, with the data once and the
    output folded once; no stream copy of the output and no second card as the result."""
    nb = run_cells(
        [
            "%load_ext jupyter_scriptrun",
            '%scriptrun example_script message="hello world" multiplier=3',
            "%%scriptrun --name squares rows=2\nimport json, os\n"
            'rows = json.loads(os.environ["SCRIPT_PARAMETERS"])["rows"]\n'
            "print('working')\n"
            'print(json.dumps({"status": "success", "data": [{"n": i} for i in range(rows)]}))',
            "%scriptrun failing_script mode=crash",
            'run = %scriptrun example_script message="kept"',
            "run",
        ],
        tmp_path,
    )
    assert errors(nb) == []
    for cell in nb.cells[1:5]:
        kinds = [o.output_type for o in cell.outputs]
        assert kinds == ["display_data"], (cell.source, kinds)
    card = nb.cells[1].outputs[0].data["text/html"]
    assert "succeeded" in card and card.count("hello world hello world hello world") == 2
    assert "<details><summary>output (" in card  # the output, folded, once
    squares = nb.cells[2].outputs[0].data["text/html"]
    assert "data (2 rows)" in squares and squares.count("working") == 1
    failed = nb.cells[3].outputs[0].data["text/html"]
    assert "failed" in failed and "Traceback" in failed
    # Bound to a name, the handle shows its card in a later cell.
    shown = [o for o in nb.cells[5].outputs if "text/html" in o.get("data", {})]
    assert len(shown) == 1 and "kept" in shown[0].data["text/html"]


def test_a_notebook_run_from_the_magic_shows_its_files_in_the_card(
    embedded: Settings, tmp_path: Path
):
    """``%scriptrun`` runs a notebook (a script like any other) and the card shows what it
    wrote: the plot inline, the CSV as a table, the executed notebook rendered in a
    sandboxed frame."""
    nb = run_cells(
        ["%load_ext jupyter_scriptrun", "%scriptrun notebook_report rows=3 --timeout 120"],
        tmp_path,
    )
    assert errors(nb) == []
    card = nb.cells[1].outputs[0].data["text/html"]
    assert "succeeded" in card and "files (3 kept)" in card
    assert "<img src='data:image/png;base64," in card  # plot.png, inline
    assert "<th>square</th>" in card and "<td>9</td>" in card  # squares.csv, as a table
    assert "<iframe sandbox srcdoc=" in card and "notebook_report.ipynb" in card
