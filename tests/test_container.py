"""The deployment kit, run for real with podman: the image build-image makes, the compose
stack (Redis, PostgreSQL, the migration job, two workers, JupyterLab) driven over REST from
outside, a worker restarted mid-run, the stack taken down and up again, and an upgrade
from the previous schema's release with workers replaced one at a time.

Skipped where podman, podman-compose or mmdebstrap is missing (.ci/run installs them).
Redis and PostgreSQL run from a stand-in image built from Debian's packages
(tests/container/), since no registry is reachable on the test machines.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.container_stack import (
    REPO,
    Stack,
    build_image,
    build_services,
    engine_env,
    missing_tools,
    podman,
    services_base,
)

pytestmark = [
    pytest.mark.skipif(missing_tools() is not None, reason=str(missing_tools())),
    pytest.mark.timeout(2400),
    # One xdist worker builds the images once for the three tests (--dist loadgroup).
    pytest.mark.xdist_group("container"),
]


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """The product's image of this tree and the stand-in services' image (removed after)."""
    work = tmp_path_factory.mktemp("images")
    services_base(dict(os.environ), work)  # mmdebstrap and import need no runtime
    env = engine_env()
    tag = f"localhost/scriptrun-test:{os.getpid()}"
    services = f"localhost/scriptrun-test-services:{os.getpid()}"
    build_services(env, services)
    seconds = build_image(env, tag)
    try:
        yield {"env": env, "image": tag, "services": services, "build_s": seconds}
    finally:
        podman("rmi", "-f", tag, services, env=env, check=False)


def test_the_image_runs_as_a_user_does_the_demo_and_is_healthy_with_a_worker(
    images: dict[str, object],
):
    env, image = images["env"], str(images["image"])
    assert isinstance(env, dict)
    config = json.loads(podman("image", "inspect", image, env=env))[0]
    size_mb = config["Size"] / 1e6
    print(f"\nimage {image}: {size_mb:.0f} MB, built in {images['build_s']:.0f} s")
    assert config["Config"]["User"] == "scriptrun"
    healthcheck = config.get("Healthcheck") or config["Config"]["Healthcheck"]  # podman, docker
    assert healthcheck["Test"][-3:] == ["scriptrun", "health", "--this-host"]
    assert not [e for e in config["Config"]["Env"] if "PASSWORD" in e or "TOKEN" in e]

    demo = subprocess.run(
        ["podman", "run", "--rm", image, "scriptrun", "demo"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert demo.returncode == 0, demo.stderr[-3000:]
    assert "all good" in demo.stdout
    whoami = podman("run", "--rm", image, "id", "-u", env=env).strip()
    assert whoami == "10001"


def test_the_compose_stack_serves_runs_survives_a_worker_restart_and_keeps_its_history(
    images: dict[str, object], tmp_path: Path
):
    env = images["env"]
    assert isinstance(env, dict)
    stack = Stack(tmp_path, env, str(images["image"]), str(images["services"]))
    try:
        t0 = time.monotonic()
        stack.compose("up", "-d")
        ready = stack.wait_api()
        up_s = time.monotonic() - t0
        print(f"\nstack up: the API answered {up_s:.1f} s after up ({ready:.1f} s waiting)")
        assert "schema migrated from none (empty) to" in stack.logs("migrate")
        stack.wait_workers("worker-1", "worker-2")
        print(f"both workers healthy {time.monotonic() - t0:.1f} s after up")

        # Eight runs at once over REST: four slots on two workers, all used.
        ids = [stack.submit("example_script", message=f"m{i}", delay=1) for i in range(8)]
        records = stack.wait_final(ids)
        assert {r["status"] for r in records.values()} == {"succeeded"}
        assert {r["worker"].split("@")[0] for r in records.values()} == {"worker-1", "worker-2"}
        frame = stack.history_frame()
        assert len(frame) == 8 and set(frame["status"].astype(str)) == {"succeeded"}
        assert frame["duration_s"].dtype == "float64" and frame["duration_s"].gt(1).all()

        # Prometheus (--profile metrics) scrapes the server's fleet metrics with the token
        # from its secret, and both workers' own.
        targets = stack.prometheus_targets()
        assert len(targets) == 3 and set(targets.values()) == {"up"}, targets

        # What a worker prints of its settings names the store without its password.
        shown = stack.exec("worker-1", "scriptrun", "settings")
        password = (stack.secrets / "db_password").read_text()
        assert "postgres:5432/scriptrun" in shown.stdout and password not in shown.stdout
        assert password not in stack.logs("worker-1") + stack.logs("migrate")

        # A worker restarted under a run: the run ends (retried elsewhere or lost), never
        # stays running.
        run = stack.submit("sleeper", seconds=20)
        deadline = time.monotonic() + 60
        while (record := stack.api(f"executions/{run}"))["status"] != "running":
            assert time.monotonic() < deadline, record
            time.sleep(0.3)
        holder = record["worker"].split("@")[0]
        podman("restart", "-t", "3", stack.container(holder), env=env)
        after = stack.wait_final([run], timeout=240)[run]
        attempts = stack.api(f"executions/{run}/attempts")
        print(
            f"restarted {holder} under run {run[:8]}: {after['status']}, attempts "
            + ", ".join(f"{a['attempt']} {a['status']} on {a['worker']}" for a in attempts)
        )
        # Its script allows retries: the cut-off attempt is lost, the next one succeeds.
        assert after["status"] == "succeeded", after
        assert [a["status"] for a in attempts] == ["lost", "succeeded"], attempts
        assert attempts[0]["worker"].startswith(f"{holder}@"), attempts

        # Down and up again: the history is on the volumes.
        stack.compose("down")
        stack.compose("up", "-d")
        stack.wait_api()
        again = stack.history_frame()
        assert {*ids, run} <= set(again["id"]), "runs lost across down/up"
    finally:
        stack.remove()


def test_an_upgrade_migrates_once_while_old_workers_run_and_loses_or_repeats_no_run(
    images: dict[str, object], tmp_path: Path
):
    """The previous schema's release (the commit before the newest migration) runs the
    stack; the new image's migration job migrates while old workers serve; then workers and
    the server are replaced one at a time. Runs go in all along."""
    env = images["env"]
    assert isinstance(env, dict)
    newest = sorted((REPO / "jupyter_scriptrun/store/migrations/versions").glob("0*.py"))[-1]
    added = subprocess.run(
        ["git", "-C", str(REPO), "log", "--diff-filter=A", "--format=%H", "--", str(newest)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    if not added:
        pytest.skip("this checkout has no history of its migrations (a shallow clone)")
    previous = f"{added[-1]}^"
    old = f"localhost/scriptrun-test-old:{os.getpid()}"
    build_image(env, old, ref=previous)
    stack = Stack(tmp_path, env, old, str(images["services"]))
    new = str(images["image"])
    try:
        # The old release migrates itself (it has no migration job), and reads the store's
        # URL only from SCRIPTRUN_DATABASE_URL (it has no _FILE settings).
        stack.settings["SCRIPTRUN_DATABASE_URL"] = (stack.secrets / "database_url").read_text()
        stack.compose("up", "-d", "redis", "postgres", "worker-1", "worker-2", "jupyter")
        stack.wait_api()
        first = stack.submit("example_script", message="before")
        assert stack.wait_final([first])[first]["status"] == "succeeded"
        del stack.settings["SCRIPTRUN_DATABASE_URL"]  # the new image reads the secret's file
        submitted: list[str] = []
        problems: list[str] = []
        stop = threading.Event()

        def keep_submitting() -> None:
            while not stop.is_set():
                try:
                    submitted.append(stack.submit("example_script", message="u", delay=0.5))
                except Exception as exc:  # the server is being replaced: say so, go on
                    problems.append(f"{type(exc).__name__}: {exc}")
                time.sleep(0.3)

        feeder = threading.Thread(target=keep_submitting, daemon=True)
        feeder.start()
        time.sleep(5)
        stack.compose("up", "-d", "--no-deps", "migrate", image=new)
        deadline = time.monotonic() + 120
        while "schema migrated from" not in stack.logs("migrate"):
            assert time.monotonic() < deadline, stack.logs("migrate")
            time.sleep(1)
        time.sleep(5)  # old workers serve on the migrated schema
        for service in ("worker-1", "worker-2", "jupyter"):
            stack.compose("up", "-d", "--no-deps", "--force-recreate", service, image=new)
            if service == "jupyter":
                stack.wait_api()
            time.sleep(8)
        stop.set()
        feeder.join(30)
        submitted.insert(0, first)
        records = stack.wait_final(submitted, timeout=240)
        statuses = {r["status"] for r in records.values()}
        twice = [
            run
            for run in submitted
            if sum(a["status"] == "succeeded" for a in stack.api(f"executions/{run}/attempts")) > 1
        ]
        print(
            f"\nupgrade {previous[:8]} -> this tree: {len(submitted)} runs submitted during it, "
            f"{statuses}, submit errors while the server was replaced: {len(problems)}"
        )
        assert statuses == {"succeeded"}, {r: x["status"] for r, x in records.items()}
        assert not twice, twice
        migrated = stack.logs("migrate")
        assert migrated.count("schema migrated from") == 1, migrated
        assert len(submitted) > 20
    finally:
        stack.remove()
        podman("rmi", "-f", old, env=env, check=False)
