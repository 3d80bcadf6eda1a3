"""Runs one command in an isolated child process: capture, limits, metrics, clean kill.

Knows nothing of Celery, the store or the script contract; it takes an argv and an
environment and reports what happened.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import resource
import selectors
import shutil
import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from jupyter_scriptrun.defaults import TICK_S
from jupyter_scriptrun.execution import proc, subreaper
from jupyter_scriptrun.execution.capture import CappedBuffer

log = logging.getLogger(__name__)

SETPRIV = shutil.which("setpriv")
"""util-linux's setpriv, to give scripts a parent-death signal (None where absent)."""

READ_CHUNK = 64 * 1024
# Peak memory is sampled at these delays after start, then every SAMPLE_EVERY_S: dense at
# first because most scripts are short, sparse later because VmHWM keeps each process's
# own high-water mark, so a sample never misses what a live process already reached.
SAMPLE_AT_S = (0.0, 0.01, 0.03, 0.07, 0.15, 0.3)
SAMPLE_EVERY_S = 0.5
LEFTOVER_WAIT_S = 1.0


@dataclass
class RunSpec:
    """What to run and under which limits."""

    argv: list[str]
    env: dict[str, str]
    cwd: str | None = None
    timeout_s: float | None = None
    kill_grace_s: float = 5.0
    max_output_bytes: int = 2 * 1024 * 1024
    memory_limit_mb: float | None = None
    """Address-space limit (RLIMIT_AS) of the process; its children inherit it."""
    channel_env: str | None = None
    """When set, the child gets one more pipe to write to (inherited by its own children),
    its descriptor's number in this environment variable; what it writes goes to
    ``run``'s ``on_channel``, apart from its output."""


@dataclass
class RunOutcome:
    """What happened: exit, captured output and measurements."""

    pid: int
    exit_code: int | None
    """The exit status, or minus the signal number that ended the process."""
    stdout: str
    stderr: str
    stdout_bytes: int
    stderr_bytes: int
    stdout_truncated: bool
    stderr_truncated: bool
    started_at: datetime
    finished_at: datetime
    duration_s: float
    cpu_user_s: float
    cpu_system_s: float
    peak_rss_mb: float | None
    timed_out: bool = False
    cancelled: bool = False
    spawn_error: str | None = None
    runner_error: str | None = None
    """Set when the process that started the child died before reporting its end."""

    @property
    def signal_name(self) -> str | None:
        """Name of the signal that ended the process, if one did."""
        if self.exit_code is not None and self.exit_code < 0:
            try:
                return signal.Signals(-self.exit_code).name
            except ValueError:
                return f"signal {-self.exit_code}"
        return None


class TreeSampler:
    """Follows a process and its descendants: peak memory and the pids to kill."""

    def __init__(self, pid: int) -> None:
        self.root = pid
        self.known: dict[int, proc.Identity] = {}  # pid -> start time, against pid reuse
        self.peak_kb = 0
        self.seen = 0
        """How many samples found the script's own image (its first can be its exec's few
        KiB: one sample alone says nothing of its peak)."""

    def sample(self) -> None:
        """Read the tree's high-water marks once; remember every pid seen."""
        total = 0
        for pid in self._tree():
            # setpriv's own few hundred KiB before it execs the script are not the
            # script's: a run that ends before the next sample has no peak rather than a
            # wrong one (its ru_maxrss carries the worker's mark, see _outcome).
            hwm = proc.vm_hwm_kb(pid, b"setpriv" if pid == self.root and SETPRIV else None)
            if hwm is not None:
                total += hwm
                self.seen += pid == self.root and proc.past_its_loader(pid)
        self.peak_kb = max(self.peak_kb, total)

    def _tree(self) -> list[int]:
        seen: list[int] = []
        todo = [self.root]
        while todo and len(seen) < 10_000:
            pid = todo.pop()
            seen.append(pid)
            # The root needs no identity: it is our own child, its pid cannot be reused
            # before we reap it (and reading one costs psutil a read of /proc/stat).
            if pid != self.root and pid not in self.known:
                started = proc.identity(pid)
                if started is None:
                    continue
                self.known[pid] = started
            todo.extend(proc.children(pid))
        return seen

    def signal_all(self, sig: int) -> None:
        """Signal every still-living process seen in the tree (even ones that left its
        process group with setsid)."""
        for pid, started in list(self.known.items()):
            if pid != self.root and not proc.send(pid, started, sig):
                self.known.pop(pid, None)  # gone, or the pid was reused

    def adopt(self, pids: list[int]) -> None:
        """Track more pids (members of the process group found after the exit)."""
        for pid in pids:
            started = proc.identity(pid)
            if started is not None:
                self.known.setdefault(pid, started)

    def any_alive(self) -> bool:
        """True while a descendant seen earlier still runs (zombies do not count)."""
        return any(
            proc.alive(pid, started)
            for pid, started in list(self.known.items())
            if pid != self.root
        )


def _own_peak_rss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


class FreshChild:
    """A run's process started by this process (``subprocess``): the default."""

    def __init__(self, spec: RunSpec, stdin: int | None = None) -> None:
        argv = list(spec.argv)
        if SETPRIV is not None and shutil.which(argv[0], path=spec.env.get("PATH")) is None:
            # What Popen would raise: reported as a spawn error, not as setpriv's exit 127.
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), argv[0])
        if SETPRIV is not None:
            # The script dies with the worker thread that started it (a worker killed with
            # SIGKILL cannot end it otherwise); setpriv sets the parent-death signal and
            # execs the script in the same process, costing about a millisecond.
            argv = [SETPRIV, "--pdeathsig", "KILL", "--", *argv]
        # Plain pipes of our own: the runner reads and closes the raw descriptors.
        self.stdout, out_w = os.pipe()
        self.stderr, err_w = os.pipe()
        self.channel: int | None = None
        self.channel_number: int | None = None
        """The channel's descriptor in the child (the number its environment names)."""
        writers = [out_w, err_w]
        env = spec.env
        if spec.channel_env:
            self.channel, channel_w = os.pipe()
            writers.append(channel_w)
            env = {**env, spec.channel_env: str(channel_w)}
            self.channel_number = channel_w
        try:
            with subreaper.starting() as mine:
                self.proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL if stdin is None else stdin,
                    stdout=out_w,
                    stderr=err_w,
                    env=env,
                    cwd=spec.cwd,
                    start_new_session=True,
                    close_fds=True,
                    pass_fds=writers[2:],  # the channel keeps its number in the child
                )
                mine(self.proc.pid)
        except BaseException:
            for fd in (self.stdout, self.stderr, self.channel):
                if fd is not None:
                    os.close(fd)
            raise
        finally:
            for fd in writers:
                os.close(fd)
        self.pid = self.proc.pid
        # Set from here right after the start: microseconds before the script can
        # allocate anything (a preexec_fn would be unsafe in a threaded worker).
        self.limit_memory(spec.memory_limit_mb)
        self.exit_fd = _pidfd_open(self.pid)
        # Daemons the script leaves (double fork, setsid) come back to a worker process.
        self.adopter = os.getpid() if subreaper.active() else None

    def limit_memory(self, megabytes: float | None) -> None:
        """Limit the process's address space (RLIMIT_AS; its children inherit it)."""
        if megabytes:
            limit = int(megabytes * 2**20)
            with contextlib.suppress(ProcessLookupError):
                resource.prlimit(self.pid, resource.RLIMIT_AS, (limit, limit))

    def reap(self) -> tuple[int | None, float, float, int, str | None] | None:
        """``(waitstatus, utime, stime, maxrss_kb, error)`` once it ended, else None."""
        pid, status, usage = os.wait4(self.pid, os.WNOHANG)
        if pid != self.pid:
            return None
        subreaper.ended(pid)
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        return status, usage.ru_utime, usage.ru_stime, usage.ru_maxrss, None

    def parent_peak_kb(self) -> int:
        """This process's memory high-water mark (a forked child's ru_maxrss starts there)."""
        return _own_peak_rss_kb()

    def close(self) -> None:
        """Release the exit descriptor."""
        if self.exit_fd is not None:
            os.close(self.exit_fd)
            self.exit_fd = None


class Child(Protocol):
    """What the supervisor needs of a run's process (fresh, or forked by a warm parent)."""

    pid: int
    stdout: int
    stderr: int
    channel: int | None
    """The read end of the side channel (``RunSpec.channel_env``), if asked for."""
    exit_fd: int | None
    """Readable once the process ended (a pidfd, or the warm parent's connection)."""
    adopter: int | None
    """The child subreaper its orphans go to (this process, or the warm parent)."""

    def reap(self) -> tuple[int | None, float, float, int, str | None] | None: ...

    def parent_peak_kb(self) -> int: ...

    def close(self) -> None: ...


def run(
    spec: RunSpec,
    poll: Callable[[], bool | signal.Signals] | None = None,
    on_output: Callable[[str, bytes], None] | None = None,
    spawn: Callable[[RunSpec], Child] | None = None,
    on_start: Callable[[int], None] | None = None,
    on_channel: Callable[[bytes], None] | None = None,
) -> RunOutcome:
    """Run ``spec.argv`` to completion and report.

    Args:
        spec: the command, its environment and its limits.
        poll: called every tick while the run lasts; returning True cancels the run (its
            whole process tree is terminated), returning a signal cancels it with that
            signal sent first (SIGKILL at once; another, then SIGKILL after the grace).
        on_output: called with ("stdout" | "stderr", chunk) as output arrives.
        spawn: starts the process (default: a fresh one; see ``warm`` for the other).
        on_start: called with the child's pid (its session id) once it runs.
        on_channel: called with what the child writes to its side channel (see
            ``RunSpec.channel_env``), as it arrives and, last, what was left unread.

    The child gets its own session and process group, no stdin, and never a shell. On
    timeout or cancel the group gets SIGTERM, then SIGKILL after the grace period; the
    same happens to processes it left behind when it exits.
    """
    started_at = datetime.now(UTC)
    t0 = time.monotonic()
    try:
        child = (spawn or FreshChild)(spec)
    except (OSError, ValueError) as exc:  # ValueError: a NUL in an argument or variable
        now = datetime.now(UTC)
        return RunOutcome(
            pid=0,
            exit_code=None,
            stdout="",
            stderr=str(exc),
            stdout_bytes=0,
            stderr_bytes=0,
            stdout_truncated=False,
            stderr_truncated=False,
            started_at=started_at,
            finished_at=now,
            duration_s=time.monotonic() - t0,
            cpu_user_s=0.0,
            cpu_system_s=0.0,
            peak_rss_mb=None,
            spawn_error=f"{type(exc).__name__}: {exc}",
        )
    if on_start is not None:
        on_start(child.pid)
    return _Supervisor(child, spec, poll, on_output, t0, started_at, on_channel).supervise()


@dataclass
class _Supervisor:
    """The event loop of one run: pipes, the exit, the clock and the kill sequence.

    Each turn of the loop samples memory when due, enforces the deadline and a cancel,
    sends a due SIGKILL, reaps the exit, then waits for output or the next due time.
    """

    child: Child
    spec: RunSpec
    poll: Callable[[], bool | signal.Signals] | None
    on_output: Callable[[str, bytes], None] | None
    t0: float
    started_at: datetime
    on_channel: Callable[[bytes], None] | None = None
    buffers: dict[int, tuple[str, CappedBuffer]] = field(default_factory=dict)
    sampler: TreeSampler = field(init=False)
    sel: selectors.BaseSelector = field(init=False)
    open_pipes: set[int] = field(init=False)
    channel_open: bool = field(init=False)
    pidfd: int | None = field(init=False)
    deadline: float | None = field(init=False)
    samples: deque[float] = field(init=False)
    next_tick: float = field(init=False)
    timed_out: bool = False
    cancelled: bool = False
    kill_at: float | None = None
    """When SIGKILL follows the SIGTERM already sent."""
    give_up_at: float | None = None
    """When to stop waiting for left-overs' pipes after the last SIGKILL."""
    ended: bool = False
    exited_at: float | None = None
    status: int | None = None
    usage: tuple[float, float, int] | None = None
    child_error: str | None = None

    def __post_init__(self) -> None:
        self.sampler = TreeSampler(self.child.pid)
        self.sel = selectors.DefaultSelector()
        for name, fd in (("stdout", self.child.stdout), ("stderr", self.child.stderr)):
            self.buffers[fd] = (name, CappedBuffer(self.spec.max_output_bytes))
            self.sel.register(fd, selectors.EVENT_READ)
        self.pidfd = self.child.exit_fd
        if self.pidfd is not None:
            self.sel.register(self.pidfd, selectors.EVENT_READ)
        # The side channel is read as it comes but never waited for: the run ends with
        # its output pipes, and what is left in the channel is read once at the end.
        self.channel_open = self.child.channel is not None
        if self.child.channel is not None:
            os.set_blocking(self.child.channel, False)
            self.sel.register(self.child.channel, selectors.EVENT_READ)
        self.open_pipes = set(self.buffers)
        self.deadline = self.t0 + self.spec.timeout_s if self.spec.timeout_s else None
        self.samples = deque(self.t0 + d for d in SAMPLE_AT_S)
        self.next_tick = self.t0 + TICK_S

    def supervise(self) -> RunOutcome:
        """Run the loop until the run and what it left behind are gone."""
        while True:
            now = time.monotonic()
            self._sample_when_due(now)
            if not self.ended:
                self._enforce_limits(now)
            if self.kill_at is not None and now >= self.kill_at:
                proc.killpg(self.child.pid, signal.SIGKILL)
                self.sampler.signal_all(signal.SIGKILL)
                self.kill_at = None
                self.give_up_at = now + LEFTOVER_WAIT_S
            if not self.ended:
                self._reap(now)
            if self.ended and self._finished(now):
                break
            self._wait(now)
        subreaper.collect_zombies()  # orphans of this run (or others) this process adopted
        return self._outcome()

    def _left_behind(self) -> list[int]:
        """What the run's exited process left: its process group, and its daemons."""
        pid = self.child.pid
        left = proc.group_members(pid) if proc.group_alive(pid) else []
        return left + [p for p in self._escaped() if p not in left]

    def _escaped(self) -> list[int]:
        """The run's processes that left its tree for the subreaper (daemons)."""
        execution_id = self.spec.env.get("EXECUTION_ID")
        return subreaper.adopted(self.child.adopter, self.child.pid, execution_id)

    def _sample_when_due(self, now: float) -> None:
        if self.samples and now >= self.samples[0]:
            self.sampler.sample()
            self.samples.popleft()
            if not self.samples:
                self.samples.append(now + SAMPLE_EVERY_S)

    def _enforce_limits(self, now: float) -> None:
        """The deadline, and (each tick) the heartbeat and cancel poll."""
        if self.deadline is not None and now >= self.deadline and self.kill_at is None:
            self.timed_out = True
            self.kill_at = self._terminate(now)
        if now < self.next_tick:
            return
        self.next_tick = now + TICK_S
        # Polled while a kill is under way too: the run is alive (heartbeat) until its
        # tree is gone.
        if self.poll is None:
            return
        try:
            wants_cancel = self.poll()
        except Exception:  # a broken callback must not orphan the child
            log.exception("run %s: poll callback failed", self.child.pid)
            wants_cancel = False
        if wants_cancel and not (self.cancelled or self.timed_out):
            self.cancelled = True
            sig = wants_cancel if isinstance(wants_cancel, signal.Signals) else signal.SIGTERM
            self.kill_at = self._terminate(now, 0.0 if sig is signal.SIGKILL else None, sig)

    def _reap(self, now: float) -> None:
        """Notice the exit; then end what the run left behind."""
        reaped = self.child.reap()
        if reaped is None:
            return
        self.ended = True
        self.status, utime, stime, maxrss, self.child_error = reaped
        self.usage = (utime, stime, maxrss)
        self.exited_at = now
        if self.pidfd is not None:
            self.sel.unregister(self.pidfd)
            self.child.close()
            self.pidfd = None
        pid = self.child.pid
        if self.child_error is not None and self.kill_at is None:
            # The process that could report the exit is gone: end the run's tree.
            self.sampler.adopt(proc.group_members(pid))
            self.kill_at = self._terminate(now, grace=0.0)
            self.give_up_at = self.kill_at + LEFTOVER_WAIT_S
        elif self.kill_at is None and (left := self._left_behind()):
            # Left-overs (background jobs, daemons that left the session) end with the run.
            self.sampler.adopt(left)
            if self.sampler.any_alive():
                self.kill_at = self._terminate(now, grace=min(self.spec.kill_grace_s, 1.0))
                self.give_up_at = self.kill_at + LEFTOVER_WAIT_S

    @property
    def _leftovers(self) -> bool:
        return self.ended and (self.kill_at is not None or self.give_up_at is not None)

    def _finished(self, now: float) -> bool:
        """After the exit: the pipes are closed and nothing it left lives, or time is up."""
        if not self.open_pipes and not (self._leftovers and self.sampler.any_alive()):
            return True
        if self.give_up_at is not None and now >= self.give_up_at:
            log.warning("run %s: processes it left behind could not be ended", self.child.pid)
            return True
        return False

    def _wait(self, now: float) -> None:
        """Read output until the next due time (a sample, a tick, a deadline, a kill)."""
        waits = [self.samples[0] - now] if self.samples else []
        if not self.ended:
            waits.append(self.next_tick - now)
            if self.deadline is not None and self.kill_at is None:
                waits.append(self.deadline - now)
            if self.pidfd is None:
                waits.append(0.02)  # no pidfd: notice the exit by polling
        elif self._leftovers:
            waits.append(0.01)  # watch the left-overs die
        if self.kill_at is not None:
            waits.append(self.kill_at - now)
        if self.give_up_at is not None:
            waits.append(self.give_up_at - now)
        timeout = max(0.0, min(waits)) if waits else None
        if not self.open_pipes and self.pidfd is None:
            time.sleep(timeout if timeout is not None else 0.02)
            return
        for key, _ in self.sel.select(timeout):
            if key.fd == self.child.channel:
                self._read_channel()
            elif key.fd != self.pidfd:  # the exit is handled by reap() at the top
                self._read(key.fd)

    def _read_channel(self) -> None:
        """Hand on what the side channel holds, without blocking; close it at its end."""
        fd = self.child.channel
        while fd is not None and self.channel_open:
            try:
                data = os.read(fd, READ_CHUNK)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self.sel.unregister(fd)
                self.channel_open = False
                return
            if self.on_channel is not None:
                try:
                    self.on_channel(data)
                except Exception:  # a broken callback must not stop the supervision
                    log.exception("run %s: channel callback failed", self.child.pid)

    def _read(self, fd: int) -> None:
        try:
            data = os.read(fd, READ_CHUNK)
        except OSError:
            data = b""
        if not data:
            self.sel.unregister(fd)
            self.open_pipes.discard(fd)
            return
        name, buf = self.buffers[fd]
        buf.add(data)
        if self.on_output is not None:
            self.on_output(name, data)

    def _outcome(self) -> RunOutcome:
        """Close what is left and say what happened."""
        finished = time.monotonic()
        child = self.child
        self._read_channel()  # the last updates, written just before the exit
        self.sel.close()
        child.close()
        for fd in (child.stdout, child.stderr, child.channel):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        stdout = next(b for n, b in self.buffers.values() if n == "stdout")
        stderr = next(b for n, b in self.buffers.values() if n == "stderr")
        peak_kb = self.sampler.peak_kb if self.sampler.seen >= 2 else 0
        usage = self.usage
        if usage is not None and usage[2] > child.parent_peak_kb():
            # ru_maxrss also counts the forking process's high-water mark at the fork (and
            # exec), so it is only the script's own when it exceeds what that process ever
            # held (read now: the mark only grows).
            peak_kb = max(peak_kb, usage[2])
        # A warm child says its own mark as it exits: it may end before the first sample.
        peak_kb = max(peak_kb, getattr(child, "exit_hwm_kb", None) or 0)
        return RunOutcome(
            pid=child.pid,
            exit_code=None if self.status is None else os.waitstatus_to_exitcode(self.status),
            stdout=stdout.text(),
            stderr=stderr.text(),
            stdout_bytes=stdout.total,
            stderr_bytes=stderr.total,
            stdout_truncated=stdout.truncated,
            stderr_truncated=stderr.truncated,
            started_at=self.started_at,
            finished_at=datetime.now(UTC),
            duration_s=(self.exited_at or finished) - self.t0,
            cpu_user_s=usage[0] if usage else 0.0,
            cpu_system_s=usage[1] if usage else 0.0,
            peak_rss_mb=round(peak_kb / 1024, 3) if peak_kb else None,
            timed_out=self.timed_out,
            cancelled=self.cancelled,
            runner_error=self.child_error,
        )

    def _terminate(
        self, now: float, grace: float | None = None, sig: signal.Signals = signal.SIGTERM
    ) -> float:
        """Signal the group and every known descendant (SIGTERM unless ``sig`` says
        otherwise); return when SIGKILL is due."""
        self.sampler.sample()  # learn the newest descendants before signalling
        self.sampler.adopt(self._escaped())  # and those that escaped it
        proc.killpg(self.child.pid, sig)
        self.sampler.signal_all(sig)
        return now + (self.spec.kill_grace_s if grace is None else grace)


def _pidfd_open(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None
