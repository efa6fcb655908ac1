"""Child processes of ``profile-status demo``: started tied to us, restarted when they crash, stopped in time."""

from __future__ import annotations

import functools
import logging
import os
import signal
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

from demo.embedded import tie_to_parent

log = logging.getLogger(__name__)

CRASH_WINDOW_S = 60.0
MAX_CRASHES_IN_WINDOW = 5


class ChildCrashLoop(RuntimeError):
    """A child keeps exiting right after it is restarted."""


class Child:
    """One ``profile-status <command>`` run as ``python -m profile_status.cli`` with its output in a log file.

    It gets PR_SET_PDEATHSIG=SIGKILL, so even a SIGKILLed demo takes it along;
    start (and restart) it from the main thread, which lives as long as the demo.
    """

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.args = args
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self._crashes: deque[float] = deque()

    @property
    def pid(self) -> int | None:
        """PID of the running process, or None."""
        return self.proc.pid if self.proc is not None else None

    def start(self) -> None:
        """Launch the process (appending to its log)."""
        with open(self.log_path, "ab") as out:
            # Its own session: a terminal's Ctrl-C reaches only the demo, which stops
            # the children in order (API and projector before the servers they use).
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "profile_status.cli", *self.args],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=self.env,
                start_new_session=True, preexec_fn=functools.partial(tie_to_parent, os.getpid()),
            )

    def check(self) -> str | None:
        """Restart the process if it exited; return a line saying so, or None when it runs.

        Raises ChildCrashLoop after MAX_CRASHES_IN_WINDOW exits within CRASH_WINDOW_S.
        """
        if self.proc is None or (code := self.proc.poll()) is None:
            return None
        now = time.monotonic()
        self._crashes.append(now)
        while self._crashes and now - self._crashes[0] > CRASH_WINDOW_S:
            self._crashes.popleft()
        if len(self._crashes) >= MAX_CRASHES_IN_WINDOW:
            raise ChildCrashLoop(f"{self.name} exited {len(self._crashes)} times within a minute; see {self.log_path}")
        log.warning("%s exited with code %s; restarting", self.name, code, extra={"event": "child_restarted"})
        self.start()
        return f"{self.name} exited with code {code}; restarted (log: {self.log_path})"

    def terminate(self) -> None:
        """Ask it to stop (SIGTERM); see ``wait``."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, deadline: float) -> None:
        """Wait until ``deadline`` (monotonic) for it to exit, then SIGKILL it."""
        if self.proc is None:
            return
        try:
            self.proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in time; killing it", self.name, extra={"event": "child_killed"})
            self.proc.kill()
            self.proc.wait()
        self.proc = None
