"""What open JupyterLab tabs cost the Jupyter server (the extension polls), in CPU.

    python tests/bench_lab_tabs.py [TABS] [SECONDS] [--users] [--without-extension]

Starts a private JupyterLab on the embedded default (as the tests do), opens TABS tabs of
it in Debian's Chromium (one browser, so they share one poller; ``--users``: a browser
context each, as many people would), and prints the server process's CPU per second with
no tab, with the tabs open and idle, and with a run going. ``--without-extension``
disables the JupyterLab extension: JupyterLab's own cost, for comparison.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import psutil
from conftest import JupyterLabProcess
from test_browser import CHROMIUM, CHROMIUM_ARGS

from jupyter_scriptrun.config import Settings, examples_dir
from jupyter_scriptrun.fleet.local import LocalWorker
from jupyter_scriptrun.service.client import Client


def main(argv: list[str]) -> None:
    numbers = [a for a in argv if not a.startswith("--")]
    tabs = int(numbers[0]) if numbers else 20
    seconds = float(numbers[1]) if len(numbers) > 1 else 30.0
    tmp = Path(tempfile.mkdtemp(prefix="bench-lab-tabs-"))
    if "--without-extension" in argv:
        config = tmp / "config" / "labconfig"
        config.mkdir(parents=True)
        disabled = {"disabledExtensions": {"jupyter-scriptrun": True}}
        (config / "page_config.json").write_text(json.dumps(disabled))
        os.environ["JUPYTER_CONFIG_DIR"] = str(config.parent)
    settings = Settings(
        data_dir=tmp / "data",
        scripts_path=(examples_dir(),),
        queue=f"tabs-{uuid.uuid4().hex[:6]}",
    )
    (tmp / "lab").mkdir()
    lab = JupyterLabProcess(settings, tmp / "lab")
    client = Client(settings)
    for _ in range(60):  # a history to list
        client.submit("example_script", {})
    client.run("example_script", {})
    server = psutil.Process(lab.proc.pid)

    def window(label: str) -> None:
        t = server.cpu_times()
        c0, t0 = t.user + t.system, time.monotonic()
        time.sleep(seconds)
        t = server.cpu_times()
        per_s = (t.user + t.system - c0) / (time.monotonic() - t0)
        print(f"{label:<32} server CPU {1000 * per_s:6.1f} ms/s ({100 * per_s:.1f}% of a core)")

    from playwright.sync_api import sync_playwright

    try:
        window("no tab")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            shared = browser.new_context(viewport={"width": 1200, "height": 800})
            for _ in range(tabs):
                page = (
                    browser.new_page(viewport={"width": 1200, "height": 800})
                    if "--users" in argv
                    else shared.new_page()
                )
                page.goto(f"{lab.url}lab?token={lab.token}")
                page.locator("#jp-main-dock-panel").wait_for(timeout=120_000)
            time.sleep(10)
            window(f"{tabs} tabs, nothing running")
            run = client.submit("slow_script", {"seconds": seconds + 30})
            time.sleep(5)
            window(f"{tabs} tabs, one run going")
            run.cancel()
            browser.close()
    finally:
        lab.stop()
        LocalWorker(settings).stop()


if __name__ == "__main__":
    main(sys.argv[1:])
