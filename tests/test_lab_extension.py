"""The JupyterLab extension, driven in Debian's Chromium as a person uses it, with no code
typed: a script run from the file browser's context menu (a parameter refused, then a
good run), the run's tab, the sidebar and the status bar following a run, cancel and
re-run, an ad-hoc file, a schedule made from the file browser, the launcher's catalogue;
and the sidebar at 400 px in the dark theme without overlapping controls or console
errors. Screenshots are kept in the test's folder."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from conftest import JupyterLabProcess
from test_browser import CHROMIUM, CHROMIUM_ARGS, set_theme

from jupyter_scriptrun.config import Settings, examples_dir
from jupyter_scriptrun.fleet.local import LocalWorker

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (apt install chromium)"
)

ADHOC = 'import json\nprint(json.dumps({"status": "success", "data": {"adhoc": True}}))\n'


@pytest.fixture
def lab(settings: Settings, tmp_path: Path):
    """A lab whose root holds a scripts folder (its registered scripts) and a file that
    is not in the scripts path."""
    root = tmp_path / "lab"
    scripts = root / "scripts"
    scripts.mkdir(parents=True)
    for name in ("example_script.py", "slow_script.py"):
        shutil.copy(examples_dir() / name, scripts / name)
    (root / "adhoc.py").write_text(ADHOC)
    (root / "notes.txt").write_text("not a script\n")
    settings = settings.with_(scripts_path=(scripts,))
    server = JupyterLabProcess(settings, root)
    yield server
    server.stop()
    LocalWorker(settings).stop()


def quiet_news(lab: JupyterLabProcess) -> None:
    """JupyterLab asks on first start whether to fetch its news: answered "no" through its
    settings API, so the prompt covers none of the screenshots."""
    import json
    import urllib.request

    url = f"{lab.url}lab/api/settings/@jupyterlab/apputils-extension:notification"
    body = json.dumps({"raw": json.dumps({"fetchNews": "false", "checkForUpdates": False})})
    request = urllib.request.Request(url, data=body.encode(), method="PUT")
    request.add_header("Authorization", f"token {lab.token}")
    request.add_header("Content-Type", "application/json")
    urllib.request.urlopen(request, timeout=30).close()


def open_lab(p, lab: JupyterLabProcess, width: int = 1400, dark: bool = False, theme: str = ""):
    theme = theme or ("JupyterLab Dark" if dark else "JupyterLab Light")
    dark = "Dark" in theme
    set_theme(lab, theme)
    quiet_news(lab)
    browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    page = browser.new_page(viewport={"width": width, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{lab.url}lab?token={lab.token}")
    page.locator("#jp-main-dock-panel").wait_for(timeout=60_000)
    page.locator(f"body[data-jp-theme-light='{str(not dark).lower()}']").wait_for(
        state="attached", timeout=20_000
    )
    return browser, page, errors


def show(page, panel: str) -> None:
    """Open a left-area panel by its tab, as a person does: click its tab unless it is
    open (a click on the open one closes it), and look again, since JupyterLab may still
    be restoring its layout when the page first shows."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    tab = page.locator(f".jp-SideBar [data-id='{panel}']")
    tab.wait_for(timeout=30_000)
    for _ in range(5):
        if page.locator(f"#{panel}").is_visible():
            return
        if "lm-mod-current" not in (tab.get_attribute("class") or ""):
            tab.click()
        try:
            page.locator(f"#{panel}").wait_for(state="visible", timeout=3_000)
            return
        except PlaywrightTimeout:
            continue
    raise AssertionError(f"the {panel} panel does not open")


def context_menu(page, *path: str, item: str) -> None:
    """Open ``path`` folders in the file browser, right-click the file, choose ``item``."""
    show(page, "filebrowser")
    page.locator(".jp-BreadCrumbs-home").first.click()
    listing = page.locator(".jp-DirListing-content")
    for folder in path[:-1]:
        listing.locator(".jp-DirListing-item", has_text=folder).first.dblclick()
    entry = listing.locator(".jp-DirListing-item", has_text=path[-1]).first
    entry.click()
    entry.click(button="right")
    page.locator(".lm-Menu-item", has_text=item).click()


def test_a_script_runs_from_the_file_browser_with_its_form_checked_first(
    lab: JupyterLabProcess, tmp_path: Path
):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser, page, errors = open_lab(p, lab)
        try:
            # A file that is no script has no run command.
            show(page, "filebrowser")
            page.locator(".jp-DirListing-item", has_text="notes.txt").click(button="right")
            expect(page.locator(".lm-Menu-item", has_text="Rename")).to_be_visible()
            expect(page.locator(".lm-Menu-item", has_text="Run with scriptrun")).to_be_hidden()
            page.keyboard.press("Escape")

            context_menu(page, "scripts", "example_script.py", item="Run with scriptrun…")
            dialog = page.locator(".jp-Dialog")
            expect(dialog.get_by_text("Repeats a message")).to_be_visible()
            multiplier = dialog.get_by_label("multiplier")
            expect(multiplier).to_have_value("2")  # the default, filled in
            multiplier.fill("0")
            dialog.get_by_label("message").fill("hi")
            page.screenshot(path=str(tmp_path / "1-run-dialog.png"))
            dialog.get_by_role("button", name="Run").click()
            # Refused by the server, nothing queued: the dialog is back, the problem beside
            # its field, what was typed kept.
            dialog = page.locator(".jp-Dialog")
            row = dialog.locator(".jp-scriptrun-form-row", has=page.locator("[name=multiplier]"))
            expect(row.locator(".jp-scriptrun-form-error")).to_have_text(
                "multiplier: 0 is less than the minimum of 1"
            )
            expect(dialog.locator(".jp-scriptrun-form-error:not(:empty)")).to_have_count(1)
            expect(dialog.get_by_label("multiplier")).to_have_attribute("aria-invalid", "true")
            expect(dialog.get_by_label("message")).to_have_value("hi")
            page.screenshot(path=str(tmp_path / "2-refused.png"))
            dialog.get_by_label("multiplier").fill("3")
            # The run's own options (time limit, queue, notifications) under More options.
            dialog.get_by_text("More options").click()
            dialog.get_by_label("timeout").fill("30")
            dialog.get_by_role("button", name="Run").click()

            view = page.locator(".jp-scriptrun-runview:visible")
            expect(view.locator(".jp-scriptrun-chip")).to_have_text("succeeded", timeout=90_000)
            expect(view.locator("h2")).to_have_text("example_script")
            run_id = view.locator("code").first.inner_text()
            assert api(lab, f"executions/{run_id}")["timeout_s"] == 30
            page.screenshot(path=str(tmp_path / "3-run-view.png"))
            expect(view.locator("pre").first).to_contain_text('"multiplied_message": "hi hi hi"')

            # The sidebar lists it, newest first; a toast said it ended.
            show(page, "scriptrun-runs")
            sidebar = page.locator("#scriptrun-runs")
            first = sidebar.locator(".jp-scriptrun-item").first
            expect(first).to_contain_text("example_script", timeout=20_000)
            expect(first.locator(".jp-scriptrun-chip")).to_have_text("succeeded")
            expect(
                page.locator(".jp-toast-message", has_text="example_script succeeded")
            ).to_have_count(1)

            # An ad-hoc file says so, and runs.
            context_menu(page, "adhoc.py", item="Run with scriptrun…")
            dialog = page.locator(".jp-Dialog")
            expect(dialog.get_by_text("is not in the scripts path")).to_be_visible()
            dialog.get_by_role("button", name="Run").click()
            view = page.locator(".jp-scriptrun-runview:visible")
            expect(view.locator(".jp-scriptrun-chip")).to_have_text("succeeded", timeout=90_000)
            expect(view.locator("h2")).to_have_text("adhoc")
            # The editor's toolbar runs the open file the same way.
            show(page, "filebrowser")
            page.locator(".jp-BreadCrumbs-home").first.click()
            page.locator(".jp-DirListing-item", has_text="adhoc.py").first.dblclick()
            editor = page.locator(".jp-FileEditor:visible")
            editor.wait_for(timeout=30_000)
            page.locator(".jp-scriptrun-toolbar-button:visible").click()
            dialog = page.locator(".jp-Dialog")
            expect(dialog.get_by_text("adhoc.py is not in the scripts path")).to_be_visible()
            dialog.get_by_role("button", name="Cancel").click()
            expect(dialog).to_have_count(0)
            # Its Schedule button says why a file outside the scripts path cannot be.
            page.locator(".jp-scriptrun-toolbar-schedule:visible").click()
            dialog = page.locator(".jp-Dialog")
            expect(dialog.get_by_text("Only registered scripts can be scheduled")).to_be_visible()
            dialog.get_by_role("button", name="Ok").click()
            expect(dialog).to_have_count(0)

            # The one refused request is the browser's only complaint.
            refused = [e for e in errors if "status of 400 (Bad Request)" in e]
            assert len(refused) == 1 and len(errors) == 1, errors
        finally:
            browser.close()


def test_the_sidebar_and_status_bar_follow_a_run_that_is_cancelled_then_re_run(
    lab: JupyterLabProcess, tmp_path: Path
):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser, page, errors = open_lab(p, lab)
        try:
            # From the launcher's Scripts card: the catalogue, a Run button per script.
            page.locator(".jp-LauncherCard", has_text="Scripts").click()
            page.get_by_role("button", name="Run slow_script").click()
            dialog = page.locator(".jp-Dialog")
            dialog.get_by_label("seconds").fill("120")
            dialog.get_by_role("button", name="Run").click()

            view = page.locator(".jp-scriptrun-runview:visible")
            expect(view.locator(".jp-scriptrun-chip")).to_have_text("running", timeout=90_000)
            status = page.locator(".jp-scriptrun-status")
            expect(status).to_have_text("▶ 1 running", timeout=20_000)
            show(page, "scriptrun-runs")
            item = page.locator("#scriptrun-runs .jp-scriptrun-item").first
            expect(item.locator(".jp-scriptrun-chip")).to_have_text("running")
            expect(item.locator(".jp-scriptrun-progress")).to_be_visible(timeout=20_000)
            page.screenshot(path=str(tmp_path / "4-running.png"))

            view.get_by_role("button", name="Cancel").click()
            expect(view.locator(".jp-scriptrun-chip")).to_have_text("cancelled", timeout=60_000)
            expect(status).to_be_hidden(timeout=20_000)
            expect(item.locator(".jp-scriptrun-chip")).to_have_text("cancelled", timeout=20_000)

            # Re-run: the form comes back with the run's parameters.
            view.get_by_role("button", name="Re-run…").click()
            dialog = page.locator(".jp-Dialog")
            expect(dialog.get_by_label("seconds")).to_have_value("120")
            dialog.get_by_label("seconds").fill("0.5")
            dialog.get_by_role("button", name="Run").click()
            view = page.locator(".jp-scriptrun-runview:visible")
            expect(view.locator(".jp-scriptrun-chip")).to_have_text("succeeded", timeout=90_000)
            tabs = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text="slow_script")
            expect(tabs).to_have_count(2)

            # A schedule made from the file browser shows in the Schedules tab. Its more
            # options come from the server's declaration; a bad one is refused beside its
            # field with what was typed kept.
            context_menu(page, "scripts", "example_script.py", item="Schedule with scriptrun…")
            dialog = page.locator(".jp-Dialog")
            dialog.get_by_label("when").fill("0 7 * * 1-5")
            dialog.get_by_label("repeat").select_option("cron")
            dialog.get_by_label("timezone").fill("Europe/Berlin")
            dialog.get_by_label("name", exact=True).fill("weekday-mornings")
            dialog.get_by_text("More options").click()
            dialog.get_by_label("jitter").fill("99999")
            dialog.get_by_label("catchup").select_option("none")
            dialog.get_by_role("button", name="Schedule").click()
            dialog = page.locator(".jp-Dialog")
            row = dialog.locator(".jp-scriptrun-form-row", has=page.locator("[name=jitter]"))
            expect(row.locator(".jp-scriptrun-form-error")).to_contain_text("jitter")
            expect(dialog.get_by_label("when")).to_have_value("0 7 * * 1-5")
            page.screenshot(path=str(tmp_path / "5-schedule-refused.png"))
            dialog.get_by_label("jitter").fill("30")
            dialog.get_by_role("button", name="Schedule").click()
            schedules = page.locator("#scriptrun-schedules")
            expect(schedules.get_by_text("weekday-mornings")).to_be_visible(timeout=20_000)
            expect(schedules.get_by_text("0 7 * * 1-5")).to_be_visible()
            made = api(lab, "schedules/weekday-mornings")
            assert (made["catchup"], made["jitter_s"], made["timezone"]) == (
                "none",
                30,
                "Europe/Berlin",
            )
            page.screenshot(path=str(tmp_path / "5-schedules.png"))
            # Edited in place: the dialog starts from the schedule, sends what changed, and
            # an option emptied goes back to its default.
            schedules.get_by_role("button", name="Edit weekday-mornings").click()
            dialog = page.locator(".jp-Dialog")
            expect(dialog.get_by_label("when")).to_have_value("0 7 * * 1-5")
            expect(dialog.get_by_label("jitter")).to_have_value("30")
            expect(dialog.get_by_label("catchup")).to_have_value("none")
            dialog.get_by_label("repeat").select_option("every")
            dialog.get_by_label("when").fill("2h")
            dialog.get_by_label("jitter").fill("")
            page.screenshot(path=str(tmp_path / "5-schedule-edit.png"))
            dialog.get_by_role("button", name="Save").click()
            expect(schedules.get_by_text("every 7200 s")).to_be_visible(timeout=20_000)
            edited = api(lab, "schedules/weekday-mornings")
            assert (edited["cron"], edited["every_s"], edited["jitter_s"]) == (None, 7200, None)
            assert (edited["catchup"], edited["timezone"]) == ("none", "Europe/Berlin")
            schedules.get_by_role("button", name="Pause weekday-mornings").click()
            expect(schedules.locator("td", has_text="paused")).to_be_visible(timeout=20_000)
            schedules.get_by_role("button", name="Run now weekday-mornings").click()
            view = page.locator(".jp-scriptrun-runview:visible")
            expect(view.locator("h2")).to_have_text("example_script", timeout=20_000)
            expect(view.locator(".jp-scriptrun-chip")).to_have_text("succeeded", timeout=90_000)
            page.locator(".lm-TabBar-tab", has_text="Schedules").click()
            schedules.get_by_role("button", name="Delete weekday-mornings").click()
            expect(schedules.get_by_text("No schedules.")).to_be_visible(timeout=20_000)

            # The fleet: the worker, figures per script, recent failures.
            show(page, "scriptrun-runs")
            page.locator("#scriptrun-runs").get_by_role("button", name="Fleet").click()
            fleet = page.locator("#scriptrun-fleet")
            expect(fleet.get_by_text("Workers (1)")).to_be_visible(timeout=20_000)
            figures = fleet.locator("tr", has_text="slow_script")
            expect(figures).to_contain_text("2")  # two runs, one cancelled
            page.screenshot(path=str(tmp_path / "6-fleet.png"))
            # The one refused schedule is the browser's only complaint.
            assert errors == [
                "Failed to load resource: the server responded with a status of 400 (Bad Request)"
            ], errors
        finally:
            browser.close()


def api(lab: JupyterLabProcess, path: str) -> dict:
    """GET one of the REST API's resources, as curl would."""
    import json
    import urllib.request

    request = urllib.request.Request(f"{lab.url}scriptrun/api/{path}")
    request.add_header("Authorization", f"token {lab.token}")
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.load(answer)


def overlapping(page, selector: str) -> list[str]:
    """Pairs of visible controls inside ``selector`` whose boxes overlap."""
    return page.evaluate(
        """(selector) => {
            const root = document.querySelector(selector);
            const els = [...root.querySelectorAll('button, input, select, h2, .jp-scriptrun-chip')]
              .filter(e => e.offsetParent !== null);
            const boxes = els.map(e => [e, e.getBoundingClientRect()]);
            const out = [];
            for (let i = 0; i < boxes.length; i++) {
              for (let j = i + 1; j < boxes.length; j++) {
                const [a, r] = boxes[i], [b, s] = boxes[j];
                if (a.contains(b) || b.contains(a)) continue;
                const x = Math.min(r.right, s.right) - Math.max(r.left, s.left);
                const y = Math.min(r.bottom, s.bottom) - Math.max(r.top, s.top);
                const what = (e) => e.outerHTML.slice(0, 60);
                if (x > 1 && y > 1) out.push(`${what(a)} / ${what(b)}`);
              }
            }
            const edge = root.getBoundingClientRect().right;
            for (const [e, r] of boxes) {
              if (r.right > edge + 1) out.push(`past the edge: ${e.outerHTML.slice(0, 60)}`);
            }
            return out;
        }""",
        selector,
    )


def test_the_sidebar_fits_at_400_px_in_the_dark_theme(lab: JupyterLabProcess, tmp_path: Path):
    from playwright.sync_api import expect, sync_playwright

    client_settings = lab.settings
    from jupyter_scriptrun.service.client import Client

    Client(client_settings).run("example_script", {"message": "a rather long message"})
    with sync_playwright() as p:
        browser, page, errors = open_lab(p, lab, width=1000, dark=True)
        try:
            show(page, "scriptrun-runs")
            sidebar = page.locator("#scriptrun-runs")
            expect(sidebar.locator(".jp-scriptrun-item").first).to_be_visible(timeout=20_000)
            # Drag the sidebar to 400 px wide, as a person would.
            handle = page.locator(
                "#jp-main-split-panel > .lm-SplitPanel-handle:not(.lm-mod-hidden)"
            ).first
            box = handle.bounding_box()
            width = sidebar.bounding_box()["width"]
            page.mouse.move(box["x"] + 1, box["y"] + 200)
            page.mouse.down()
            page.mouse.move(box["x"] + 1 + (400 - width), box["y"] + 200, steps=5)
            page.mouse.up()
            assert abs(sidebar.bounding_box()["width"] - 400) < 40, sidebar.bounding_box()
            page.screenshot(path=str(tmp_path / "6-sidebar-400-dark.png"))
            assert overlapping(page, "#scriptrun-runs") == []
            expect(sidebar.get_by_role("button", name="Show more")).to_be_hidden()  # one run
            # Keyboard: Tab reaches the filter, then a run opens with Enter.
            sidebar.locator("input[type=search]").focus()
            sidebar.locator(".jp-scriptrun-item-button").first.focus()
            page.keyboard.press("Enter")
            view = page.locator(".jp-scriptrun-runview:visible")
            expect(view.locator(".jp-scriptrun-chip")).to_have_text("succeeded")
            page.screenshot(path=str(tmp_path / "7-run-view-dark.png"))
            assert errors == [], errors
        finally:
            browser.close()


LOW_CONTRAST = "\n".join(
    line
    for line in (Path(__file__).parent / "low_contrast.js").read_text().splitlines()
    if not line.startswith("//")  # Playwright calls the text only when it starts as a function
)
"""A function of CSS selectors: the texts in them below WCAG AA contrast."""


@pytest.mark.parametrize(
    "theme", ["JupyterLab Light", "JupyterLab Dark", "JupyterLab Dark High Contrast"]
)
def test_every_text_keeps_its_contrast_and_a_run_goes_by_keyboard_alone(
    lab: JupyterLabProcess, tmp_path: Path, theme: str
):
    """In each of JupyterLab's themes, light, dark and high contrast: every text of the
    sidebar, the status bar, the run dialog, the run's tab and the Schedules tab has
    WCAG AA contrast (the styles use theme variables only), and a run is started,
    followed and opened with the keyboard alone."""
    from playwright.sync_api import expect, sync_playwright

    from jupyter_scriptrun.service.client import Client

    client = Client(lab.settings)
    client.run("example_script", {"message": "before"})
    client.schedule("example_script", {}, name="nightly", cron="0 2 * * *")
    client.submit_source("raise ValueError('bad x: 7')\n", name="boom").wait(timeout=60)
    slug = theme.lower().replace(" ", "-")
    parts = [
        "#scriptrun-runs",
        ".jp-scriptrun-status",
        ".jp-Dialog",
        ".jp-scriptrun-runview",
        "#scriptrun-schedules",
    ]
    with sync_playwright() as p:
        browser, page, errors = open_lab(p, lab, theme=theme)
        try:
            page.locator(f"body[data-jp-theme-name='{theme}']").wait_for(
                state="attached", timeout=20_000
            )
            show(page, "scriptrun-runs")
            expect(page.locator("#scriptrun-runs .jp-scriptrun-item")).not_to_have_count(0)
            low = {}
            # Keyboard: the command palette opens the catalogue; Enter on a script's Run
            # button opens the dialog with the focus in its first field; Enter runs it.
            page.keyboard.press("Control+Shift+c")
            page.keyboard.type("Scripts")
            page.locator(".lm-CommandPalette-item.lm-mod-active", has_text="Scripts").wait_for()
            page.keyboard.press("Enter")
            run_button = page.get_by_role("button", name="Run slow_script")
            run_button.focus()
            page.keyboard.press("Enter")
            dialog = page.locator(".jp-Dialog")
            expect(dialog.get_by_label("seconds")).to_be_focused()
            page.keyboard.press("Control+a")
            page.keyboard.type("60")
            low["dialog"] = page.evaluate(LOW_CONTRAST, [".jp-Dialog"])
            page.screenshot(path=str(tmp_path / f"{slug}-1-dialog.png"))
            page.keyboard.press("Enter")
            view = page.locator(".jp-scriptrun-runview:visible")
            expect(view.locator(".jp-scriptrun-chip")).to_have_text("running", timeout=90_000)
            status = page.locator(".jp-scriptrun-status")
            expect(status).to_have_text("▶ 1 running", timeout=20_000)
            # The status bar is reached and used by keyboard: Enter opens the sidebar.
            show(page, "filebrowser")
            status.focus()
            page.keyboard.press("Enter")
            expect(page.locator("#scriptrun-runs")).to_be_visible()
            low["running"] = page.evaluate(LOW_CONTRAST, parts)
            page.screenshot(path=str(tmp_path / f"{slug}-2-running.png"))
            view.get_by_role("button", name="Cancel").focus()
            page.keyboard.press("Enter")
            expect(view.locator(".jp-scriptrun-chip")).to_have_text("cancelled", timeout=60_000)
            page.locator("#scriptrun-runs").get_by_role("button", name="Schedules").focus()
            page.keyboard.press("Enter")
            expect(page.locator("#scriptrun-schedules").get_by_text("nightly")).to_be_visible(
                timeout=20_000
            )
            low["schedules"] = page.evaluate(LOW_CONTRAST, parts)
            page.screenshot(path=str(tmp_path / f"{slug}-3-schedules.png"))
            show(page, "scriptrun-runs")
            page.locator("#scriptrun-runs .jp-scriptrun-item-button", has_text="boom").first.focus()
            page.keyboard.press("Enter")
            view = page.locator(".jp-scriptrun-runview:visible")
            expect(view.locator(".jp-scriptrun-chip")).to_have_text("failed", timeout=20_000)
            low["failed"] = page.evaluate(LOW_CONTRAST, parts)
            page.screenshot(path=str(tmp_path / f"{slug}-4-failed.png"))
            assert {k: v for k, v in low.items() if v} == {}
            assert errors == [], errors
        finally:
            browser.close()


def test_a_wheel_built_without_node_carries_the_extension_enabled(tmp_path: Path):
    """``pip install .`` on a machine without Node: the wheel is built from the committed
    assets (npm and node here fail if called), and JupyterLab lists the extension as
    enabled and OK in an environment it is installed into."""
    import os
    import subprocess
    import sys

    fake = tmp_path / "no-node"
    fake.mkdir()
    for tool in ("npm", "node", "jlpm", "yarn"):
        (fake / tool).write_text("#!/bin/sh\necho no node here >&2\nexit 127\n")
        (fake / tool).chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}{os.pathsep}{os.environ['PATH']}"}
    repo = Path(__file__).resolve().parent.parent
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(repo)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    [wheel] = tmp_path.glob("jupyter_scriptrun-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", str(wheel)],
        check=True,
        env=env,
        timeout=300,
    )
    shipped = venv / "share" / "jupyter" / "labextensions" / "jupyter-scriptrun"
    assert (shipped / "package.json").exists() and (shipped / "install.json").exists()
    listed = subprocess.run(
        # (``jupyter labextension`` would run the jupyter found on PATH, not this venv's)
        [python, "-m", "jupyterlab.labextensions", "list"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**env, "JUPYTER_PATH": ""},
    )
    text = re.sub(r"\x1b\[[0-9;]*m", "", listed.stdout + listed.stderr)
    # Listed under the venv's own folder (each folder's extensions follow its line).
    section = text.split(f"{venv}/share/jupyter/labextensions\n", 1)[-1].split("\n/", 1)[0]
    assert "jupyter-scriptrun v0.1.0 enabled OK (python, jupyter_scriptrun)" in section, text
