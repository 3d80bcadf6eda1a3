"""Notebook runs on a kernel that is already up: a standby child per worker slot.

A notebook's fresh run pays for a new Python, papermill's imports and a kernel's start
(about a second here) before its first cell. The warm runner keeps a standby instead: a
``python -m jupyter_scriptrun.execution.notebook --standby`` child started ahead, which
imports papermill, starts a ``python3`` kernel, connects to it and waits for its run on
stdin. A run takes a standby (the one ready, or a new one if none is), and a new standby
is started behind it on this module's own thread, so the pool grows to as many as ran at
once. Each standby and its kernel serve one run and end with it: nothing of one run
reaches the next.

The standby is a fresh child in every way the supervisor sees (``FreshChild``'s pipes,
pidfd, session, parent-death signal, wait), only started earlier; its run's environment,
folder and memory limit arrive with the request.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading

from jupyter_scriptrun.contract.registry import NOTEBOOK_RUNNER
from jupyter_scriptrun.execution import subreaper
from jupyter_scriptrun.execution.child import FreshChild, RunSpec

STANDBY_ARGV = [sys.executable, *NOTEBOOK_RUNNER, "--standby"]
STOP_WAIT_S = 5.0


class Standby(FreshChild):
    """A notebook child started before its run: ``hand`` gives it the run."""

    def __init__(self, env: dict[str, str], channel_env: str) -> None:
        requests, self._request_w = os.pipe()
        try:
            super().__init__(RunSpec(STANDBY_ARGV, env, channel_env=channel_env), stdin=requests)
        except BaseException:
            os.close(self._request_w)
            raise
        finally:
            os.close(requests)

    def alive(self) -> bool:
        """Still waiting (a standby whose kernel died while it waited has exited)."""
        return self.proc.poll() is None

    def hand(self, spec: RunSpec) -> None:
        """Send the run (its argv, environment, folder and memory limit) to the child."""
        env = dict(spec.env)
        if spec.channel_env and self.channel_number is not None:
            # The channel was made with the standby: its number in the child stands.
            env[spec.channel_env] = str(self.channel_number)
        request = {
            "argv": spec.argv,
            "env": env,
            "cwd": spec.cwd or os.getcwd(),
            "memory_limit_mb": spec.memory_limit_mb,
        }
        self.limit_memory(spec.memory_limit_mb)
        fd, self._request_w = self._request_w, -1
        if fd < 0:
            raise RuntimeError("a standby serves one run")
        try:
            os.write(fd, (json.dumps(request) + "\n").encode())
        except BrokenPipeError:
            pass  # it died getting ready: its exit and stderr say why
        finally:
            os.close(fd)

    def let_go(self) -> None:
        """End an unused standby (the worker stops): it ends its kernel and exits."""
        if self._request_w >= 0:
            os.close(self._request_w)  # end of input: it exits without a run
            self._request_w = -1
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)
        try:
            self.proc.wait(STOP_WAIT_S)
        except Exception:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            self.proc.wait()
        subreaper.ended(self.pid)
        self.close()
        for fd in (self.stdout, self.stderr, self.channel):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)


class StandbyPool:
    """Standbys ready for notebook runs; started on the pool's own thread, which lives as
    long as the pool (a child's parent-death signal follows the thread that started it)."""

    def __init__(self, env: dict[str, str], channel_env: str) -> None:
        self.env = env
        self.channel_env = channel_env
        self._ready: list[Standby] = []
        self._wanted = 0
        self._closed = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._keep, name="scriptrun-standby", daemon=True)
        self._thread.start()

    def spawn(self, spec: RunSpec) -> Standby:
        """A standby given ``spec``'s run (the one ready, else one started now), and
        another one started behind it."""
        with self._cond:
            standby = None
            while self._ready and standby is None:
                standby = self._ready.pop(0)
                if not standby.alive():
                    standby.let_go()  # collected; its kernel died while it waited
                    standby = None
            self._wanted += 1
            self._cond.notify()
        if standby is None:
            standby = self._start()
        standby.hand(spec)
        return standby

    def _start(self) -> Standby:
        return Standby(self.env, self.channel_env)

    def _keep(self) -> None:
        while True:
            with self._cond:
                while not self._wanted and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                self._wanted -= 1
            standby = self._start()
            with self._cond:
                if self._closed:
                    standby.let_go()
                    return
                self._ready.append(standby)

    def close(self) -> None:
        """Let every waiting standby go, and stop starting new ones."""
        with self._cond:
            self._closed = True
            waiting, self._ready = self._ready, []
            self._cond.notify()
        for standby in waiting:
            standby.let_go()
        self._thread.join(STOP_WAIT_S)
