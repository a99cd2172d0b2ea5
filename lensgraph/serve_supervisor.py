"""Run ``serve run`` the way a process supervisor expects: stop on SIGTERM, drain, leave nothing behind.

``serve run`` shuts Serve down cleanly only on SIGINT (KeyboardInterrupt: ``serve.shutdown()``, which
lets each replica finish its requests within ``graceful_shutdown_timeout_s``). On SIGTERM, what
systemd, ``docker stop`` and Kubernetes send, it exits at once: in-flight requests are dropped and
HAProxy, which Serve starts outside Ray's process tree, keeps port 8000 open and answers 500s.
And a shell that starts it in the background makes it ignore SIGINT altogether.

And ``serve.shutdown()`` itself kills the HTTP proxy at once, so even SIGINT drops the requests that
are inside it.

So ``make run`` (``lensgraph run``) starts ``serve run`` as a child in its own session with SIGINT
restored, and the front door (lensgraph/front_door.py) beside it. On the first SIGTERM/SIGINT/SIGHUP
it drains from the outside in: SIGUSR1 to the front door's HAProxy, then to Serve's, their soft stop, which closes the listening socket (new connections are refused, so a load
balancer moves on), answers every request it holds with ``Connection: close`` and then exits. Only then
does ``serve run`` get its SIGINT. It waits ``stop_timeout_s`` in all, and then kills every process the child ever started (tracked while it runs, so processes that left the
tree are found too; each checked by start time, so a reused pid is never hit). A second signal skips
the wait, unless it comes within a second of the first: a signal to the process group reaches this
process twice, once directly and once forwarded by `make`. No Ray import: only processes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from lensgraph.devcluster import descendants

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks (field 22 of /proc/pid/stat), None when it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(pid: int, started: str) -> bool:
    """The process that had ``started`` still runs (not a reused pid, not a zombie)."""
    try:
        return _start_time(pid) == started and "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


def _name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return ""


def _restore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # a background shell's SIG_IGN would be inherited


class Supervisor:
    """``command`` (serve run) and, optionally, ``front_command`` (the front door's HAProxy,
    lensgraph/front_door.py), stopped in order: the front door drains, then Serve's HAProxy, then Serve."""

    def __init__(self, command: list[str], stop_timeout_s: float = 60.0, env: dict[str, str] | None = None,
                 front_command: list[str] | None = None):
        self.command = command
        self.front_command = front_command
        self.stop_timeout_s = stop_timeout_s
        self.env = env
        self.seen: dict[int, str] = {}  # pid -> start time, of everything the children started
        self.stopping = threading.Event()
        self.stop_signalled_at = 0.0
        self.forced = threading.Event()
        self.process: subprocess.Popen | None = None
        self.front: subprocess.Popen | None = None
        self.stages: list[list[int]] = []  # proxies soft-stopped, in order; Serve is interrupted after the last

    def _track(self) -> None:
        roots = [p.pid for p in (self.process, self.front) if p is not None]
        for pid in descendants(roots) | set(roots):
            if pid not in self.seen and (started := _start_time(pid)) is not None:
                self.seen[pid] = started

    def _on_signal(self, signum: int, _frame) -> None:
        if self.stopping.is_set():
            if time.monotonic() - self.stop_signalled_at < 1.0:
                return  # the same stop, delivered twice (the group's signal, and make's forward of it)
            self.forced.set()
            print(f"lensgraph run: {signal.Signals(signum).name} again: stopping now", file=sys.stderr, flush=True)
            return
        # The time first: a second delivery of the same signal can run this handler again between any two
        # lines (CI saw it while the front door's limit thread ran), and must find it set.
        self.stop_signalled_at = time.monotonic()
        self.stopping.set()
        print(f"lensgraph run: {signal.Signals(signum).name}: draining (up to {self.stop_timeout_s:g} s)",
              file=sys.stderr, flush=True)

    def leftovers(self) -> list[int]:
        """Processes the children started that are still alive (the same processes, not reused pids)."""
        return sorted(pid for pid, started in self.seen.items() if _alive(pid, started))

    def _soft_stop(self, pids: list[int]) -> None:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGUSR1)  # HAProxy's soft stop: stop listening, finish, exit
            except ProcessLookupError:
                pass
        self.stages.append(pids)

    def _drain_step(self, deadline: float) -> None:
        """One step of the ordered stop; called every tick while stopping."""
        if self.stages and any(_alive(p, self.seen[p]) for p in self.stages[-1]) and not self.forced.is_set() \
                and time.monotonic() < deadline - self.stop_timeout_s / 2:
            return  # the last proxy told to stop is still answering what it holds
        self._track()
        front = [self.front.pid] if self.front is not None and self.front.poll() is None else []
        inner = [p for p in self.leftovers() if "haproxy" in _name(p) and p not in front]
        if not self.stages and front:
            self._soft_stop(front)
        elif len(self.stages) <= (1 if self.front is not None else 0) and inner:
            self._soft_stop(inner)
        else:
            self.stages.append([])
            self.process.send_signal(signal.SIGINT)  # the proxies have drained: stop Serve
            self.interrupted = True

    def _start_front(self) -> subprocess.Popen:
        return subprocess.Popen(self.front_command, start_new_session=True, preexec_fn=_restore_sigint)

    def run(self) -> int:
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._on_signal)
        self.process = subprocess.Popen(self.command, env=self.env, start_new_session=True,
                                        preexec_fn=_restore_sigint)
        if self.front_command:
            self.front = self._start_front()
        self.interrupted = False
        stop_deadline = None
        while self.process.poll() is None:
            self._track()
            if self.stopping.is_set():
                if stop_deadline is None:
                    stop_deadline = time.monotonic() + self.stop_timeout_s
                if not self.interrupted:
                    self._drain_step(stop_deadline)
                if self.forced.is_set() or time.monotonic() > stop_deadline:
                    break
            elif self.front is not None and self.front.poll() is not None:
                print(f"lensgraph run: the front door exited ({self.front.returncode}); starting it again",
                      file=sys.stderr, flush=True)
                time.sleep(1)
                self.front = self._start_front()
            time.sleep(0.25)
        self._track()
        for child in (self.process, self.front):
            if child is not None and child.poll() is None:
                child.kill()
                child.wait()
        left = self.leftovers()
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if left:
            print(f"lensgraph run: killed {len(left)} process(es) left behind", file=sys.stderr, flush=True)
        code = self.process.returncode
        return 0 if self.stopping.is_set() and not self.forced.is_set() else (code if code >= 0 else 128 - code)
