"""Child processes of the benchmark: started in their own process group, pinned, always ended.

Every process is started with `start_new_session=True`, so uvicorn's workers and
anything else a child spawns share its process group, and `stop()` ends them
all with one `killpg` (SIGTERM, then SIGKILL after a grace period).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from bench.config import PROJECT_ROOT

SERVER_CORE = 0
CLIENT_CORE = 1
STOP_GRACE_S = 8.0


def pinning_available() -> bool:
    """Two cores and `taskset`: the server gets core 0, wrk core 1."""
    return shutil.which("taskset") is not None and len(os.sched_getaffinity(0)) >= 2


def pinned(argv: Sequence[str], core: int | None) -> list[str]:
    """`argv` under `taskset -c core` (unchanged when `core` is None or pinning is unavailable)."""
    if core is None or not pinning_available():
        return list(argv)
    return ["taskset", "-c", str(core), *argv]


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env(extra: Mapping[str, str]) -> dict[str, str]:
    """The environment of a child: ours, the project root importable (for `bench.refs`), plus `extra`."""
    env = {**os.environ, **extra}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH")) if p)
    return env


class Child:
    """One child process (and its process group), with its output in a log file."""

    def __init__(self, name: str, argv: Sequence[str], env: Mapping[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                list(argv),
                env=child_env(env),
                cwd=PROJECT_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        """The child's pid (also its process group id)."""
        return self.proc.pid

    def alive(self) -> bool:
        """Still running."""
        return self.proc.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        """The end of its output, for error messages."""
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        """SIGTERM to the whole group, SIGKILL after the grace period; idempotent."""
        for sig, wait_s in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, sig)
            try:
                self.proc.wait(wait_s)
            except subprocess.TimeoutExpired:
                continue
            # The leader is gone; make sure no worker of its group outlives it.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            return


@contextlib.contextmanager
def running(name: str, argv: Sequence[str], env: Mapping[str, str], log_dir: Path) -> Iterator[Child]:
    """A child for the duration of a `with` block, ended however the block ends."""
    child = Child(name, argv, env, log_dir)
    try:
        yield child
    finally:
        child.stop()


def python(*args: str) -> list[str]:
    """argv running this interpreter."""
    return [sys.executable, *args]


def wait_http(child: Child, url: str, timeout_s: float = 30.0, expect: int | None = 200) -> None:
    """Poll `url` until it answers `expect` (None: any HTTP answer); fail early, with the child's output, if it dies."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        if not child.alive():
            raise RuntimeError(f"{child.name} exited with {child.proc.returncode}:\n{child.log_tail()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # loopback only
                if expect in (None, response.status):
                    return
                last = f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
            if expect in (None, exc.code):
                return
        except OSError as exc:
            last = str(exc)
        time.sleep(0.1)
    raise TimeoutError(f"{child.name} not ready at {url} within {timeout_s:g} s ({last}):\n{child.log_tail()}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (from /proc), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return ticks / os.sysconf("SC_CLK_TCK")
