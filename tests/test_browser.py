"""End to end in a real browser: JupyterLab started here, Debian's Chromium driven by
Playwright, the panel displayed in a notebook, a script run by clicking Run."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest
from conftest import TEST_SCRIPTS, JupyterLabProcess

from jupyter_scriptrun.config import Settings, examples_dir
from jupyter_scriptrun.fleet.local import LocalWorker
from jupyter_scriptrun.service.client import Client

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (apt install chromium)"
)
# Flags for a sandboxed root session on a closed network (no background connections).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


@pytest.fixture
def lab(settings: Settings, tmp_path: Path):
    settings = settings.with_(scripts_path=(examples_dir(), TEST_SCRIPTS))
    root = tmp_path / "lab"
    root.mkdir()
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell("import jupyter_scriptrun as sr\nsr.panel()")],
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
    )
    nbformat.write(nb, root / "panel_e2e.ipynb")
    server = JupyterLabProcess(settings, root)
    yield server
    server.stop()
    LocalWorker(settings).stop()


def open_and_run(page, lab: JupyterLabProcess, notebook: str, shown: str) -> None:
    """Open ``notebook`` in the lab, wait for its kernel, and run its first cell as a user
    would (click, Shift+Enter; again if a kernel that had just said "idle" was still
    connecting) until ``shown`` (a selector) is visible."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import expect

    page.goto(f"{lab.url}lab/tree/{notebook}?token={lab.token}")
    cell = page.locator(".jp-Notebook .jp-Cell").first
    expect(cell).to_be_visible(timeout=60_000)
    expect(page.get_by_text("Python 3 (ipykernel) | Idle")).to_be_visible(timeout=90_000)
    for _ in range(3):
        cell.locator(".jp-InputArea-editor").click()
        page.keyboard.press("Shift+Enter")
        try:
            page.locator(shown).first.wait_for(state="visible", timeout=30_000)
            return
        except PlaywrightTimeout:
            continue


def test_run_a_script_from_the_panel_in_jupyterlab(lab: JupyterLabProcess, tmp_path: Path):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            open_and_run(page, lab, "panel_e2e.ipynb", ".widget-dropdown select")

            script = page.locator(".widget-dropdown select").first
            expect(script).to_be_visible(timeout=60_000)
            script.select_option(label="table_script")
            # The kernel rebuilds the form for the chosen script: wait for it.
            expect(page.get_by_text("Returns a table of squares")).to_be_visible()
            rows = page.get_by_role("textbox", name="rows", exact=True)
            rows.fill("3")
            rows.press("Tab")
            expect(page.locator("button.jupyter-button", has_text="Run").first).to_be_enabled()
            page.locator("button.jupyter-button", has_text="Run").first.click()

            # The result card: the data as a table (3 rows), then the status line.
            expect(page.get_by_text("data (3 rows)")).to_be_visible(timeout=90_000)
            expect(page.locator(".widget-html", has_text="succeeded").first).to_be_visible()
            # The details (parameters, times, worker) are folded under the card: one click.
            page.locator("summary", has_text="details").last.click()
            expect(page.get_by_text('{"rows": 3}')).to_be_visible()
            expect(page.locator("select option", has_text="table_script [")).to_have_count(1)
            page.screenshot(path=str(tmp_path / "panel-1400.png"), full_page=True)
            fit = overflow(page, ".scriptrun-panel")
            assert fit["past_right"] <= 1 and fit["scrolls"] <= 1, (1400, fit)

            # A script that reports progress, started with Enter in a field: a bar that
            # moves forward while it runs.
            script.select_option(label="stepper")
            expect(page.get_by_text("Counts steps, reporting progress")).to_be_visible()
            page.get_by_role("textbox", name="pause", exact=True).fill("0.6")
            steps = page.get_by_role("textbox", name="steps", exact=True)
            steps.fill("8")
            steps.press("Enter")
            bar = page.locator(".scriptrun-panel [role=progressbar]")
            expect(bar).to_be_visible(timeout=60_000)
            page.screenshot(path=str(tmp_path / "panel-running.png"), full_page=True)
            # Read in one step in the page: the bar goes the moment the run ends, and a
            # count() then get_attribute() pair waited 30 s for a bar that had just gone.
            read_bar = (
                "() => { const b = document.querySelector("
                "'.scriptrun-panel [role=progressbar]');"
                " return b ? Number(b.getAttribute('aria-valuenow') || 0) : null }"
            )
            values = []
            while (value := page.evaluate(read_bar)) is not None and len(values) < 200:
                values.append(value)
                page.wait_for_timeout(100)
            assert len(set(values)) >= 2 and values == sorted(values), values
            expect(page.get_by_text("data")).not_to_have_count(0)
            page.screenshot(path=str(tmp_path / "panel-progress.png"), full_page=True)

            # The history: a row opens its run.
            page.locator(".lm-TabBar-tab", has_text="History").click()
            first_row = page.locator(".scriptrun-panel .widget-hbox button.jupyter-button")
            first_row = first_row.filter(has_text=__import__("re").compile(r"^[0-9a-f]{8}$"))
            expect(first_row.first).to_be_visible(timeout=30_000)
            first_row.first.click()
            expect(page.get_by_text("attempts (1)")).to_be_visible(timeout=30_000)
            expect(page.get_by_role("button", name="Re-run")).to_be_visible()
            page.screenshot(path=str(tmp_path / "history-open.png"), full_page=True)
            page.get_by_role("button", name="Back to the list").click()

            # Narrow: the panel about 600 px wide (the file browser folded away), nothing
            # past the cell's right edge, on either tab.
            page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current").click()
            page.set_viewport_size({"width": 760, "height": 1000})
            page.wait_for_timeout(500)
            width = page.locator(".scriptrun-panel").bounding_box()["width"]
            assert 540 <= width <= 660, width
            fit = overflow(page, ".scriptrun-panel")
            assert fit["past_right"] <= 1 and fit["scrolls"] <= 1, (600, "history", fit)
            page.screenshot(path=str(tmp_path / "history-600.png"), full_page=True)
            page.locator(".lm-TabBar-tab", has_text="Run").click()
            page.wait_for_timeout(300)
            fit = overflow(page, ".scriptrun-panel")
            assert fit["past_right"] <= 1 and fit["scrolls"] <= 1, (600, "run", fit)
            page.screenshot(path=str(tmp_path / "panel-600.png"), full_page=True)

            # A schedule made in the browser, from the Run tab's form, is in sr.schedules().
            page.locator(".lm-TabBar-tab", has_text="Schedules").click()
            expect(page.get_by_text("New schedule")).to_be_visible(timeout=30_000)
            page.get_by_role("textbox", name="name", exact=True).fill("browser-made")
            page.get_by_role("button", name="Create schedule").click()
            expect(page.locator("select option", has_text="browser-made")).to_have_count(
                1, timeout=30_000
            )
            page.screenshot(path=str(tmp_path / "schedules-600.png"), full_page=True)
            listed = Client(lab.settings).schedules().set_index("name")
            assert listed.loc["browser-made", "script"] == "stepper"
            assert listed.loc["browser-made", "spec"] == "every 1h"
        finally:
            page.screenshot(path=str(tmp_path / "panel.png"), full_page=True)
            browser.close()


def test_a_runs_files_show_in_the_panels_card(lab: JupyterLabProcess, tmp_path: Path):
    """A notebook run from the panel: its card shows the plot it wrote as a picture, its
    CSV as a table, and the executed notebook rendered in a sandboxed frame."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1200})
        try:
            open_and_run(page, lab, "panel_e2e.ipynb", ".widget-dropdown select")
            script = page.locator(".widget-dropdown select").first
            script.select_option(label="notebook_report")
            expect(page.get_by_text("A notebook report")).to_be_visible()
            rows = page.get_by_role("textbox", name="rows", exact=True)
            rows.fill("4")
            rows.press("Tab")
            page.locator("button.jupyter-button", has_text="Run").first.click()
            expect(page.get_by_text("files (3 kept)")).to_be_visible(timeout=120_000)
            picture = page.locator(".scriptrun-panel img[alt='plot.png']")
            expect(picture).to_be_visible()
            assert picture.evaluate("i => i.naturalWidth") > 100  # a real, decoded image
            expect(page.locator(".scriptrun-panel th", has_text="square").first).to_be_visible()
            page.locator("summary", has_text="notebook_report.ipynb").click()
            frame = page.locator(".scriptrun-panel iframe[sandbox]")
            expect(frame).to_be_visible()
            inner = page.frame_locator(".scriptrun-panel iframe[sandbox]")
            expect(inner.get_by_text("A notebook report").first).to_be_visible()
            page.screenshot(path=str(tmp_path / "panel-files.png"), full_page=True)
        finally:
            page.screenshot(path=str(tmp_path / "panel-files-end.png"), full_page=True)
            browser.close()


@pytest.fixture
def dashboard_lab(settings: Settings, tmp_path: Path):
    settings = settings.with_(scripts_path=(examples_dir(),))
    root = tmp_path / "lab"
    root.mkdir()
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell("import jupyter_scriptrun as sr\nsr.dashboard(refresh_s=1)")
        ],
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
    )
    nbformat.write(nb, root / "dashboard_e2e.ipynb")
    server = JupyterLabProcess(settings, root)
    yield server, settings
    server.stop()
    LocalWorker(settings).stop()


def overflow(page, selector: str) -> dict:
    """How far an element reaches past its cell's output area, and whether it scrolls
    sideways (what "clipped at the right edge" means)."""
    return page.evaluate(
        """(selector) => {
            const el = document.querySelector(selector);
            const area = el.closest('.jp-OutputArea-output') || el.parentElement;
            const a = area.getBoundingClientRect(), e = el.getBoundingClientRect();
            const wide = [...el.querySelectorAll('*')]
                .filter(c => c.getBoundingClientRect().right > e.right + 1)
                .slice(0, 3).map(c => c.className + ' ' + c.tagName);
            return {past_right: e.right - a.right, scrolls: el.scrollWidth - el.clientWidth,
                    width: e.width, wide: wide};
        }""",
        selector,
    )


def test_the_dashboard_renders_updates_and_fits_in_jupyterlab(dashboard_lab, tmp_path: Path):
    from playwright.sync_api import expect, sync_playwright

    from jupyter_scriptrun.service.client import Client

    lab, settings = dashboard_lab
    client = Client(settings)
    client.run("example_script", wait_timeout=60)  # the local worker is up, one run ended
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        console: list[str] = []
        page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
        try:
            open_and_run(page, lab, "dashboard_e2e.ipynb", ".scriptrun-dashboard")
            board = page.locator(".scriptrun-dashboard")
            # It renders: the worker, the scripts' table and bqplot's two charts.
            expect(board.get_by_text("example_script").first).to_be_visible(timeout=60_000)
            expect(board.locator("td", has_text="local-")).to_be_visible(timeout=30_000)
            expect(board.locator(".bqplot svg").first).to_be_visible()
            assert board.locator(".bqplot").count() == 2
            # It updates while runs go: a run appears on its worker, then a failure.
            slow = client.submit("slow_script", {"seconds": 8})
            expect(board.get_by_text("slow_script").first).to_be_visible(timeout=30_000)
            client.run("failing_script", wait_timeout=60)
            expect(board.get_by_text("invalid input").first).to_be_visible(timeout=30_000)
            board.locator("button", has_text="Logs").first.click()
            # The run's card opens below: its record, error and output.
            expect(board.get_by_text("exit code").first).to_be_visible(timeout=30_000)
            expect(board.get_by_text('"error_type": "ValueError"').first).to_be_visible()
            page.set_viewport_size({"width": 1400, "height": 2000})  # all of it in view
            board.scroll_into_view_if_needed()
            board.screenshot(path=str(tmp_path / "dashboard-1400.png"))
            # Nothing is clipped at the right edge, wide or narrow.
            for width in (1400, 760):
                page.set_viewport_size({"width": width, "height": 1000})
                page.wait_for_timeout(1500)
                fit = overflow(page, ".scriptrun-dashboard")
                assert fit["past_right"] <= 1 and fit["scrolls"] <= 1, (width, fit)
            board.screenshot(path=str(tmp_path / "dashboard-760.png"))
            # A figure keeps its unit on its line ("871 ms", never "871" over "ms").
            wrapped = page.evaluate(
                """() => [...document.querySelectorAll('.scriptrun-dashboard td')]
                    .filter(td => /\\d (ms|s|MiB|GiB)$/.test(td.textContent.trim()))
                    .filter(td => {
                        const range = document.createRange();
                        range.selectNodeContents(td);
                        const tops = [...range.getClientRects()].map(r => Math.round(r.top));
                        return new Set(tops).size > 1;  // its text on more than one line
                    })
                    .map(td => td.textContent)"""
            )
            assert wrapped == [], wrapped
            slow.wait(60)
            # One time format on the axes (24-hour, no "PM" mixed in), and a clean console.
            ticks = board.locator(".bqplot .axis text").all_text_contents()
            assert ticks and not [t for t in ticks if "AM" in t or "PM" in t], ticks
            assert console == [], console  # (a marker at NaN logged 47 errors a render)
        finally:
            page.screenshot(path=str(tmp_path / "dashboard-last.png"), full_page=True)
            browser.close()


OVERLAPS = """(selector) => {
    // Every visible control of the panel: two that cover each other, or one past the
    // panel's right edge, is what a user sees as broken.
    const panel = document.querySelector(selector);
    const p = panel.getBoundingClientRect();
    const controls = [...panel.querySelectorAll(
        'select, input, textarea, button, .widget-label, .widget-html-content, .lm-TabBar-tab'
    )].filter(e => {
        const r = e.getBoundingClientRect();
        return r.width > 0 && r.height > 0 && getComputedStyle(e).visibility !== 'hidden'
            && e.closest('.jp-OutputArea-output') && !e.closest('[style*="display: none"]');
    });
    const name = e => (e.tagName + ' ' + (e.textContent || e.value || '').trim()).slice(0, 40);
    const out = {overlaps: [], past_right: [], squashed: []};
    for (const e of controls) {  // a field too short to read or click
        if (/^(SELECT|INPUT)$/.test(e.tagName) && e.type !== 'checkbox'
            && e.getBoundingClientRect().height < 22) out.squashed.push(name(e));
    }
    // Inside a box that scrolls sideways (the history table's), a control past the edge
    // is reachable: only one past the panel's edge with nothing to scroll is cut off.
    const scrolls = e => {
        for (let a = e.parentElement; a && a !== panel; a = a.parentElement) {
            const x = getComputedStyle(a).overflowX;
            if ((x === 'auto' || x === 'scroll') && a.scrollWidth > a.clientWidth) return true;
        }
        return false;
    };
    for (const e of controls) {
        const r = e.getBoundingClientRect();
        if (r.right > p.right + 1 && !scrolls(e)) out.past_right.push(name(e));
    }
    for (let i = 0; i < controls.length; i++) {
        for (let j = i + 1; j < controls.length; j++) {
            const a = controls[i], b = controls[j];
            if (a.contains(b) || b.contains(a)) continue;
            const r = a.getBoundingClientRect(), s = b.getBoundingClientRect();
            const w = Math.min(r.right, s.right) - Math.max(r.left, s.left);
            const h = Math.min(r.bottom, s.bottom) - Math.max(r.top, s.top);
            if (w > 2 && h > 2) out.overlaps.push([name(a), name(b)]);
        }
    }
    return out;
}"""


def set_theme(lab: JupyterLabProcess, theme: str) -> None:
    """JupyterLab's theme, through its settings API (as the Settings menu stores it; in the
    lab's own user-settings folder, see JupyterLabProcess)."""
    import json
    import urllib.request

    url = f"{lab.url}lab/api/settings/@jupyterlab/apputils-extension:themes"
    body = json.dumps({"raw": json.dumps({"theme": theme})}).encode()
    request = urllib.request.Request(url, data=body, method="PUT")
    request.add_header("Authorization", f"token {lab.token}")
    request.add_header("Content-Type", "application/json")
    urllib.request.urlopen(request, timeout=30).close()


def test_the_panel_fits_at_every_width_in_light_and_dark(lab: JupyterLabProcess, tmp_path: Path):
    """Each tab at about 1400, 600 and 400 px, in JupyterLab's light and dark themes: no
    control covers another, none is squashed below a usable height, none reaches past the
    panel's right edge, and the browser's console has no error."""
    from playwright.sync_api import expect, sync_playwright

    problems = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for theme in ("JupyterLab Light", "JupyterLab Dark"):
                set_theme(lab, theme)
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.on(
                    "console",
                    lambda m, t=theme: (
                        problems.setdefault((t, "console"), []).append(m.text)
                        if m.type == "error"
                        else None
                    ),
                )
                open_and_run(page, lab, "panel_e2e.ipynb", ".scriptrun-panel")
                expect(page.locator(".widget-dropdown select").first).to_be_visible(timeout=60_000)
                folded = page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current")
                if folded.count():  # the file browser, unless a earlier page folded it
                    folded.click()
                for width, viewport in ((1400, 1480), (600, 760), (400, 560)):
                    page.set_viewport_size({"width": viewport, "height": 1000})
                    for tab in ("Run", "History", "Schedules", "Fleet"):
                        page.locator(".scriptrun-panel .lm-TabBar-tab", has_text=tab).click()
                        page.wait_for_timeout(1500)
                        found = page.evaluate(OVERLAPS, ".scriptrun-panel")
                        short = theme.split()[-1].lower()
                        page.screenshot(
                            path=str(tmp_path / f"{tab}-{width}-{short}.png"), full_page=True
                        )
                        if any(found.values()):
                            problems[(theme, width, tab)] = found
                page.close()
        finally:
            browser.close()
    assert problems == {}, "\n".join(f"{k}: {v}" for k, v in problems.items())
    # The theme was the lab's own setting, not the machine user's.
    assert (lab.root / "user-settings/@jupyterlab/apputils-extension").is_dir()
