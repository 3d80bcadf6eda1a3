"""The test's handle on images and compose stacks made with podman (tests/test_container.py):
build-image, the stand-in Redis/PostgreSQL image, a stack's life, REST calls into it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.servers import free_port

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy" / "container"
SERVICES_BASE = "localhost/scriptrun-test-services-base:bookworm-2"
"""Debian's redis-server, postgresql-15 and prometheus, made with mmdebstrap once and kept
(a cache, as build-image keeps localhost/scriptrun-base:bookworm)."""

SLEEPER = """\
# /// scriptrun
# description = "Sleeps, then succeeds (a run to restart a worker under)"
# retries = 2
# [parameters.seconds]
# type = "number"
# ///
import json
import os
import time

time.sleep(json.loads(os.environ["SCRIPT_PARAMETERS"])["seconds"])
print(json.dumps({"status": "success", "data": {"slept": True}}))
"""


def missing_tools() -> str | None:
    """Why the container tests cannot run here, or None."""
    for tool in ("podman", "podman-compose", "mmdebstrap"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (.ci/run installs podman, runc and mmdebstrap)"
    return None


def engine_env() -> dict[str, str]:
    """This process's environment, with podman told to use runc where its default runtime
    cannot start a container here (deploy/container/podman-containers.conf says why)."""
    env = dict(os.environ)
    probe = subprocess.run(
        ["podman", "run", "--rm", "--network", "none", SERVICES_BASE, "true"],
        capture_output=True,
        env=env,
    )
    if probe.returncode != 0 and "CONTAINERS_CONF" not in env:
        env["CONTAINERS_CONF"] = str(DEPLOY / "podman-containers.conf")
    return env


def podman(*args: str, env: dict[str, str], check: bool = True, timeout: float = 600) -> str:
    done = subprocess.run(
        ["podman", *args], capture_output=True, text=True, env=env, timeout=timeout
    )
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)}: {done.stderr[-3000:]}")
    return done.stdout


def services_base(env: dict[str, str], work: Path) -> None:
    """The stand-in services' base image, made once per machine."""
    if subprocess.run(["podman", "image", "exists", SERVICES_BASE], env=env).returncode == 0:
        return
    tar = work / "services.tar"
    subprocess.run(
        [
            "mmdebstrap",
            "--quiet",
            "--variant=minbase",
            "--include=redis-server,postgresql-15,prometheus",
            "bookworm",
            str(tar),
        ],
        check=True,
        timeout=900,
    )
    podman("import", str(tar), SERVICES_BASE, env=env)
    tar.unlink()


def build_services(env: dict[str, str], tag: str) -> None:
    """The stand-in Redis/PostgreSQL image (tests/container/)."""
    podman(
        "build",
        "-q",
        "--build-arg",
        f"BASE={SERVICES_BASE}",
        "-t",
        tag,
        str(REPO / "tests" / "container"),
        env=env,
    )


def build_image(env: dict[str, str], tag: str, ref: str | None = None) -> float:
    """The product's image by deploy/container/build-image (of ``ref``, or the working
    tree); its last line must be the image's name. Seconds it took."""
    t0 = time.monotonic()
    argv = [str(DEPLOY / "build-image"), "--tag", tag] + (["--ref", ref] if ref else [])
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=1800)
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout.strip().splitlines()[-1] == tag, done.stdout
    return time.monotonic() - t0


class ApiError(AssertionError):
    """The server answered the API with an error: what was asked and what it said."""


class Stack:
    """One compose project of deploy/container/compose.yaml, on free loopback ports, with
    its own secrets and scripts folder."""

    def __init__(self, work: Path, env: dict[str, str], image: str, services: str) -> None:
        self.work = work
        self.project = f"srtest{os.getpid()}"
        self.port = free_port()
        self.prometheus_port = free_port()
        self.secrets = Path(
            subprocess.run(
                [str(DEPLOY / "make-secrets"), str(work / "secrets")],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        )
        self.token = (self.secrets / "jupyter_token").read_text()
        scripts = work / "scripts"
        scripts.mkdir()
        shutil.copy(REPO / "scripts" / "example_script.py", scripts)
        (scripts / "sleeper.py").write_text(SLEEPER)
        self.settings = {
            "SCRIPTRUN_IMAGE": image,
            "SCRIPTRUN_REDIS_IMAGE": services,
            "SCRIPTRUN_POSTGRES_IMAGE": services,
            "SCRIPTRUN_SECRETS": str(self.secrets),
            "SCRIPTRUN_SCRIPTS": str(scripts),
            "SCRIPTRUN_JUPYTER_PORT": str(self.port),
            "SCRIPTRUN_PROMETHEUS_IMAGE": services,
            "SCRIPTRUN_PROMETHEUS_PORT": str(self.prometheus_port),
            # A worker killed mid-run is found out in seconds, not minutes.
            "SCRIPTRUN_HEARTBEAT": "1",
            "SCRIPTRUN_LOST_AFTER": "6",
            "SCRIPTRUN_REAP_EVERY": "2",
            "SCRIPTRUN_STOP_GRACE": "3s",
        }
        self.env = env

    def compose(self, *args: str, image: str | None = None, timeout: float = 300) -> str:
        env = {**self.env, **self.settings, **({"SCRIPTRUN_IMAGE": image} if image else {})}
        done = subprocess.run(
            [
                "podman-compose",
                "-p",
                self.project,
                "-f",
                str(DEPLOY / "compose.yaml"),
                "--profile",
                "metrics",
                *args,
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
        )
        assert done.returncode == 0, (
            f"podman-compose {args}: {done.stdout[-2000:]}{done.stderr[-3000:]}"
        )
        return done.stdout

    def container(self, service: str) -> str:
        return f"{self.project}_{service}_1"

    def logs(self, service: str) -> str:
        return podman("logs", self.container(service), env=self.env, check=False)

    def exec(self, service: str, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["podman", "exec", self.container(service), *argv],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=120,
        )

    # -- the REST API, from outside the containers ------------------------------------

    def api(self, path: str, body: dict[str, Any] | None = None) -> Any:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/scriptrun/api/{path}",
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
            method="GET" if body is None else "POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                text = response.read().decode()
        except urllib.error.HTTPError as exc:
            raise ApiError(f"{request.method} {path}: {exc.code} {exc.read()[:500]!r}") from exc
        return json.loads(text)

    def wait_api(self, timeout: float = 240) -> float:
        """Seconds until the server answers the API with the token."""
        t0 = time.monotonic()
        while True:
            try:
                self.api("executions?limit=1")
                return time.monotonic() - t0
            except (urllib.error.URLError, ConnectionError, OSError, ApiError) as exc:
                if time.monotonic() - t0 > timeout:
                    raise AssertionError(
                        f"the server did not answer:\n{self.logs('jupyter')[-3000:]}"
                    ) from exc
                time.sleep(0.5)

    def wait_workers(self, *services: str, timeout: float = 180) -> None:
        """Until each worker answers its own health check (one started before the migration
        job had migrated exits and is restarted, so the server can answer first)."""
        deadline = time.monotonic() + timeout
        for service in services:
            while (health := self.exec(service, "scriptrun", "health", "--this-host")).returncode:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{service}: {health.stdout}{health.stderr}")
                time.sleep(1)

    def submit(self, script: str, **parameters: Any) -> str:
        return self.api("executions", {"script": script, "parameters": parameters})["id"]

    def wait_final(self, ids: list[str], timeout: float = 180) -> dict[str, dict[str, Any]]:
        """Each run's record once it is over (succeeded, failed, lost, …)."""
        deadline = time.monotonic() + timeout
        final = {"succeeded", "failed", "timed_out", "cancelled", "lost"}
        records: dict[str, dict[str, Any]] = {}
        while len(records) < len(ids):
            for run in ids:
                if run not in records and (r := self.api(f"executions/{run}"))["status"] in final:
                    records[run] = r
            if time.monotonic() > deadline:
                stuck = {i: self.api(f"executions/{i}")["status"] for i in ids if i not in records}
                raise AssertionError(f"runs not over after {timeout} s: {stuck}")
            time.sleep(0.5)
        return records

    def prometheus_targets(self, timeout: float = 120) -> dict[str, str]:
        """Each scrape target's health once all are up, or as they are at ``timeout``."""
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.prometheus_port}/api/v1/targets"
        health: dict[str, str] = {}
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url, timeout=10) as response:
                    active = json.load(response)["data"]["activeTargets"]
                health = {t["scrapeUrl"]: t["health"] for t in active}
                if health and set(health.values()) == {"up"}:
                    break
            except (urllib.error.URLError, OSError, KeyError):
                pass
            time.sleep(1)
        return health

    def history_frame(self) -> Any:
        """The history as a notebook reads a remote server's: the product's own typed
        DataFrame (``jupyter_scriptrun.history(server=…, token=…)``)."""
        import jupyter_scriptrun

        return jupyter_scriptrun.history(
            server=f"http://127.0.0.1:{self.port}/", token=self.token, limit="all"
        )

    def remove(self) -> None:
        """Everything of the project: containers, pod, network, volumes."""
        env = self.env
        ids = podman(
            "ps",
            "-aq",
            "--filter",
            f"label=io.podman.compose.project={self.project}",
            env=env,
            check=False,
        ).split()
        if ids:
            podman("rm", "-f", "-t", "0", *ids, env=env, check=False)
        podman("pod", "rm", "-f", f"pod_{self.project}", env=env, check=False)
        for volume in ("redis", "postgres"):
            podman("volume", "rm", "-f", f"{self.project}_{volume}", env=env, check=False)
        podman("network", "rm", "-f", f"{self.project}_default", env=env, check=False)
