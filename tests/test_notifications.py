"""Notifications: a run (or a schedule's runs) tells apprise URLs how it ended, sent by the
worker that ended it, retried, never holding up the run, the outcome kept on the run.

Real parts: a private SMTP server (aiosmtpd) and a webhook receiver on loopback, a real
worker on the private Redis.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller

from jupyter_scriptrun.config import Settings
from jupyter_scriptrun.exceptions import InvalidParameters, InvalidSchedule
from jupyter_scriptrun.service.client import Client
from jupyter_scriptrun.status import ExecutionStatus
from tests.conftest import scriptrun_cli


class Mailbox:
    def __init__(self) -> None:
        self.messages: list = []

    async def handle_DATA(self, server, session, envelope) -> str:
        self.messages.append(envelope)
        return "250 OK"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def smtp() -> Iterator[tuple[str, Mailbox]]:
    """A private SMTP server; the apprise URL that mails ops@example.org through it."""
    mailbox, port = Mailbox(), free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield (
            f"mailto://127.0.0.1:{port}?from=scriptrun@example.org&to=ops@example.org",
            mailbox,
        )
    finally:
        controller.stop()


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict]]]:
    """A webhook receiver; the apprise URL that posts JSON to it."""
    received: list[dict] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            received.append(json.loads(self.rfile.read(length)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"json://127.0.0.1:{server.server_address[1]}/hook", received
    finally:
        server.shutdown()
        server.server_close()


def notified(client: Client, run_id: str, timeout: float = 30) -> dict:
    """The run's notification outcome, once recorded."""
    deadline = time.monotonic() + timeout
    while (outcome := client.get(run_id).record()["notified"]) is None:
        assert time.monotonic() < deadline, "no notification was recorded"
        time.sleep(0.1)
    return outcome


def test_a_failed_run_mails_and_posts_and_keeps_how_it_went(
    redis_settings: Settings, start_worker, smtp, webhook
):
    start_worker(redis_settings)
    client = Client(redis_settings)
    (mail_url, mailbox), (hook_url, posts) = smtp, webhook
    run = client.run("failing_script", notify=[mail_url, hook_url], wait_timeout=60)
    assert run.status is ExecutionStatus.FAILED
    outcome = notified(client, run.id)
    assert outcome["status"] == "failed"
    assert [t["ok"] for t in outcome["targets"]] == [True, True], outcome
    assert outcome["targets"][0]["target"].startswith("mailto://127.0.0.1")
    (mail,) = mailbox.messages
    assert mail.rcpt_tos == ["ops@example.org"]
    text = mail.content.decode()
    assert "failing_script failed" in text and run.id in text and "ValueError" in text
    (post,) = posts
    assert post["title"] == "scriptrun: failing_script failed" and run.id in post["message"]

    ok = client.run("example_script", notify=[hook_url], wait_timeout=60)  # default: failures
    assert ok.status is ExecutionStatus.SUCCEEDED
    told = client.run("example_script", notify=[hook_url], notify_on=["succeeded"], wait_timeout=60)
    assert notified(client, told.id)["status"] == "succeeded"
    assert ok.record()["notified"] is None and len(posts) == 2


def test_a_target_that_cannot_be_reached_is_retried_without_holding_up_the_run(
    redis_settings: Settings, start_worker
):
    start_worker(redis_settings)
    client = Client(redis_settings)
    closed = f"json://127.0.0.1:{free_port()}/nobody"
    run = client.run("failing_script", notify=[closed])
    assert run.wait(60).status is ExecutionStatus.FAILED
    outcome = notified(client, run.id)
    (target,) = outcome["targets"]
    assert not target["ok"] and target["attempts"] == 3 and "127.0.0.1" in target["error"]
    finished = run.record()["finished_at"]
    assert (datetime.fromisoformat(outcome["at"]) - finished).total_seconds() >= 0
    # Three tries, 1 s and 2 s apart, all after the run had ended.
    run2 = client.run("example_script", wait_timeout=60)
    assert run2.status is ExecutionStatus.SUCCEEDED, "the worker is free meanwhile"


def test_a_schedules_runs_carry_its_notifications(redis_settings: Settings, start_worker, webhook):
    start_worker(redis_settings)
    client = Client(redis_settings)
    hook_url, posts = webhook
    schedule = client.schedule(
        "failing_script",
        cron="0 9 * * *",
        name="told",
        notify=[hook_url],
        notify_on=["failed"],
    )
    assert schedule.row["notify"] == [hook_url] and schedule.row["notify_on"] == ["failed"]
    run = schedule.run_now()
    assert run.wait(60).status is ExecutionStatus.FAILED
    assert notified(client, run.id)["targets"][0]["ok"]
    assert posts[0]["title"] == "scriptrun: failing_script failed"
    schedule.delete()


def test_bad_notification_settings_are_refused_naming_each(settings: Settings):
    client = Client(settings)
    with pytest.raises(InvalidParameters) as caught:
        client.submit("example_script", notify="mailto://one@example.org")
    assert "notify must be a list of apprise URLs" in str(caught.value)
    with pytest.raises(InvalidSchedule) as caught:
        client.schedule(
            "example_script", every=60, notify=["not a url", "json://ok"], notify_on=["rain"]
        )
    problems = caught.value.problems
    assert len(problems) == 2, problems
    assert "'not a url' is not an apprise URL" in problems[0]
    assert "notify_on: 'rain' is not one of succeeded, failed" in problems[1]


def test_the_command_line_asks_for_notifications_too(
    redis_settings: Settings, start_worker, webhook
):
    start_worker(redis_settings)
    hook_url, posts = webhook
    failed = scriptrun_cli(redis_settings, "run", "failing_script", "--notify", hook_url)
    assert failed.returncode == 1, failed.stderr
    deadline = time.monotonic() + 30
    while not posts:
        assert time.monotonic() < deadline, "nothing was posted"
        time.sleep(0.1)
    assert posts[0]["title"] == "scriptrun: failing_script failed"
    bad = scriptrun_cli(
        redis_settings, "run", "example_script", "--notify", "nope", "--notify-on", "rain"
    )
    assert bad.returncode == 2 and "'nope' is not an apprise URL" in bad.stderr, bad.stderr
    assert "notify_on: 'rain'" in bad.stderr
