"""Browser requests (cookie-authenticated) must carry jupyter-server's XSRF token; a
forged cross-site POST is refused. Token-authenticated API clients need none."""

from __future__ import annotations

import http.cookiejar
import json
import urllib.error
import urllib.request
from pathlib import Path

from conftest import JupyterLabProcess

from jupyter_scriptrun.config import Settings


def test_cookie_sessions_need_the_xsrf_token(settings: Settings, tmp_path: Path):
    lab = JupyterLabProcess(settings, tmp_path)
    try:
        jar = http.cookiejar.CookieJar()
        browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        browser.open(f"{lab.url}lab?token={lab.token}").read()  # logs in: session cookie
        cookies = {c.name: c.value for c in jar}
        assert "_xsrf" in cookies

        def post(headers: dict[str, str]) -> int:
            request = urllib.request.Request(
                f"{lab.url}scriptrun/api/executions",
                data=json.dumps({"script": "example_script"}).encode(),
                headers={"Content-Type": "application/json", **headers},
                method="POST",
            )
            try:
                with browser.open(request) as response:
                    return response.status
            except urllib.error.HTTPError as exc:
                return exc.code

        assert post({}) == 403  # a forged cross-site form: cookie, no XSRF token
        assert post({"X-XSRFToken": "forged"}) == 403
        assert post({"X-XSRFToken": cookies["_xsrf"]}) == 202  # the page's own request
    finally:
        lab.stop()
