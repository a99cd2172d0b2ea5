"""Run ``serve run`` the way a process supervisor expects: stop on SIGTERM, drain, leave nothing behind.

``serve run`` shuts Serve down cleanly only on SIGINT (KeyboardInterrupt: ``serve.shutdown()``, which
lets each replica finish its requests within ``graceful_shutdown_timeout_s``). On SIGTERM, what
systemd, ``docker stop`` and Kubernetes send, it exits at once: in-flight requests are dropped and
HAProxy, which Serve starts outside Ray's process tree, keeps port 8000 open and answers 500s.
And a shell that starts it in the background makes it ignore SIGINT altogether.

And ``serve.shutdown()`` itself kills the HTTP proxy at once, so even SIGINT drops the requests that
are inside it.

So ``make run`` (``lensgraph run``) starts ``serve run`` as a child in its own session with SIGINT
restored. On the first SIGTERM/SIGINT/SIGHUP it drains the front door first: SIGUSR1 to Serve's
HAProxy, its soft stop, which closes the listening socket (new connections are refused, so a load
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
    def __init__(self, command: list[str], stop_timeout_s: float = 60.0, env: dict[str, str] | None = None):
        self.command = command
        self.stop_timeout_s = stop_timeout_s
        self.env = env
        self.seen: dict[int, str] = {}  # pid -> start time, of everything the child started
        self.stopping = threading.Event()
        self.stop_signalled_at = 0.0
        self.forced = threading.Event()
        self.process: subprocess.Popen | None = None
        self.proxies: list[int] = []
        self.interrupted = False

    def _track(self) -> None:
        if self.process is None:
            return
        for pid in descendants([self.process.pid]):
            if pid not in self.seen and (started := _start_time(pid)) is not None:
                self.seen[pid] = started

    def _on_signal(self, signum: int, _frame) -> None:
        if self.stopping.is_set():
            if time.monotonic() - self.stop_signalled_at < 1.0:
                return  # the same stop, delivered twice (the group's signal, and make's forward of it)
            self.forced.set()
            print(f"lensgraph run: {signal.Signals(signum).name} again: stopping now", file=sys.stderr, flush=True)
            return
        self.stopping.set()
        self.stop_signalled_at = time.monotonic()
        print(f"lensgraph run: {signal.Signals(signum).name}: draining (up to {self.stop_timeout_s:g} s)",
              file=sys.stderr, flush=True)
        self._track()
        self.proxies = [pid for pid in self.leftovers() if "haproxy" in _name(pid)]
        for pid in self.proxies:
            try:
                os.kill(pid, signal.SIGUSR1)  # HAProxy's soft stop: stop listening, finish, exit
            except ProcessLookupError:
                pass

    def leftovers(self) -> list[int]:
        """Processes the child started that are still alive (the same processes, not reused pids)."""
        return sorted(pid for pid, started in self.seen.items() if _alive(pid, started))

    def run(self) -> int:
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._on_signal)
        self.process = subprocess.Popen(self.command, env=self.env, start_new_session=True,
                                        preexec_fn=_restore_sigint)
        stop_deadline = None
        while self.process.poll() is None:
            self._track()
            if self.stopping.is_set() and stop_deadline is None:
                stop_deadline = time.monotonic() + self.stop_timeout_s
            if self.stopping.is_set() and not self.interrupted and (
                    self.forced.is_set() or not any(_alive(p, self.seen[p]) for p in self.proxies)
                    or time.monotonic() > stop_deadline - self.stop_timeout_s / 2):
                self.interrupted = True  # the proxy has drained (or half the time is gone): stop Serve
                self.process.send_signal(signal.SIGINT)
            if self.forced.is_set() or (stop_deadline is not None and time.monotonic() > stop_deadline):
                break
            time.sleep(0.5)
        self._track()
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
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
