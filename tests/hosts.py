"""Separate hosts on one machine, for the fleet tests: Linux network namespaces joined by a
private bridge. Each host has its own network stack and address, and each process started on
it its own hostname (a UTS namespace), HOME and folders. Nothing is added to the machine's
own network: the bridge lives in a namespace of its own, so traffic never leaves the
namespaces made here.

A link cut takes the host's port on the bridge down: packets are dropped silently and TCP
connections survive to retransmit once the link is back, as when a cable or a switch fails.
A power cut is a link cut followed by SIGKILL to every process of the host, so that no FIN
ever reaches its peers.

Needs root (CAP_SYS_ADMIN) and iproute2; :func:`unavailable` says why not where it cannot.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

SUBNET = "10.77.0"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


def unavailable() -> str | None:
    """Why network namespaces cannot be made here, or None when they can."""
    if shutil.which("ip") is None or shutil.which("unshare") is None:
        return "iproute2 (ip) and util-linux (unshare) are needed to make test hosts"
    if os.geteuid() != 0:
        return "making network namespaces needs root (CI runs as root)"
    probe = f"srprobe{os.getpid()}"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"cannot make a network namespace here: {made.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


class Lan:
    """A bridge in a namespace of its own, and the hosts attached to it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        # Namespace names are machine-wide: unique per test session.
        self.prefix = f"sr{os.getpid()}{uuid.uuid4().hex[:4]}"
        self.ns = f"{self.prefix}-lan"
        self.hosts: list[Host] = []
        _ip("netns", "add", self.ns)
        _ip("-n", self.ns, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.ns, "link", "set", "br0", "up")

    def host(self, name: str) -> Host:
        """A new host called ``name`` at the next address, with its own HOME."""
        host = Host(self, name, len(self.hosts) + 1)
        self.hosts.append(host)
        return host

    def close(self) -> None:
        """Power every host off, then remove the namespaces."""
        for host in self.hosts:
            host.remove()
        _ip("netns", "del", self.ns, check=False)


class Host:
    """One machine: a namespace with ``eth0`` at ``10.77.0.N`` on the bridge, and ``lo``."""

    def __init__(self, lan: Lan, name: str, number: int) -> None:
        self.lan, self.name = lan, name
        self.ns = f"{lan.prefix}-{number}"
        self.address = f"{SUBNET}.{number}"
        self.port_on_bridge = f"v{number}"
        self.home = lan.root / f"{name}-{number}"
        self.home.mkdir(parents=True, exist_ok=True)
        _ip("netns", "add", self.ns)
        _ip("-n", lan.ns, "link", "add", self.port_on_bridge, "type", "veth",
            "peer", "name", "eth0", "netns", self.ns)  # fmt: skip
        _ip("-n", lan.ns, "link", "set", self.port_on_bridge, "master", "br0")
        _ip("-n", lan.ns, "link", "set", self.port_on_bridge, "up")
        _ip("-n", self.ns, "addr", "add", f"{self.address}/24", "dev", "eth0")
        _ip("-n", self.ns, "link", "set", "eth0", "up")
        _ip("-n", self.ns, "link", "set", "lo", "up")

    def __repr__(self) -> str:
        return f"Host({self.name!r}, {self.address})"

    def argv(self, argv: list[str]) -> list[str]:
        """``argv`` as run on this host: in its namespace, under its own hostname. The
        wrappers exec, so the pid returned by Popen is the program's own."""
        set_name = 'hostname "$0" && exec "$@"'
        return ["ip", "netns", "exec", self.ns, "unshare", "--uts", "--",
                "sh", "-c", set_name, self.name, *argv]  # fmt: skip

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """A clean environment for this host: the machine's PATH, this host's HOME, no
        SCRIPTRUN_* from the test process, plus ``extra``."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("SCRIPTRUN_")}
        env["HOME"] = str(self.home)
        env.update(extra or {})
        return env

    def popen(
        self, argv: list[str], env: dict[str, str], log: Path, **kw: Any
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` here, its output to ``log``, in a process group of its own."""
        with open(log, "ab") as out:
            return subprocess.Popen(
                self.argv(argv),
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                **kw,
            )

    def run(
        self, argv: list[str], env: dict[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` here to its end."""
        return subprocess.run(
            self.argv(argv), env=env or self.env(), capture_output=True, text=True,
            timeout=timeout,
        )  # fmt: skip

    def python(self, code: str, env: dict[str, str], timeout: float = 300) -> Any:
        """Run ``code`` in a Python process here; it prints one JSON document last, which
        is returned. A failure raises with the process's stderr."""
        done = self.run([sys.executable, "-c", code], env=env, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"python on {self.name} exited {done.returncode}:\n{done.stderr}")
        return json.loads(done.stdout.strip().splitlines()[-1])

    def reaches(self, address: str, port: int) -> bool:
        """Whether a TCP connection from this host to ``address:port`` is accepted."""
        code = (
            "import socket,sys\n"
            f"try: socket.create_connection(({address!r}, {port}), timeout=1).close()\n"
            "except OSError: sys.exit(1)\n"
        )
        return self.run([sys.executable, "-S", "-c", code], timeout=10).returncode == 0

    def sysctl(self, name: str, value: str) -> None:
        """Set a kernel setting of this host's own network stack (``net.*``)."""
        done = self.run(["sysctl", "-q", "-w", f"{name}={value}"], timeout=10)
        if done.returncode != 0:
            raise RuntimeError(f"sysctl {name} on {self.name}: {done.stderr}")

    def cut(self) -> None:
        """Unplug the host: its packets are dropped silently until :meth:`heal`."""
        _ip("-n", self.lan.ns, "link", "set", self.port_on_bridge, "down")

    def heal(self) -> None:
        """Plug the host back in."""
        _ip("-n", self.lan.ns, "link", "set", self.port_on_bridge, "up")

    def pids(self) -> list[int]:
        """Every process running on this host."""
        out = _ip("netns", "pids", self.ns, check=False).stdout
        return [int(p) for p in out.split()]

    def kill_all(self) -> None:
        """SIGKILL every process of the host (all started by the test)."""
        for _ in range(20):
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)

    def remove(self) -> None:
        """Power off and take the host away (its namespace and bridge port)."""
        self.kill_all()
        _ip("netns", "del", self.ns, check=False)
        _ip("-n", self.lan.ns, "link", "del", self.port_on_bridge, check=False)

    def power_off(self) -> None:
        """The host dies at once: unplugged first, so its peers never hear a goodbye."""
        self.cut()
        self.kill_all()
