"""`profile-status demo` as a subprocess on free ports, and the process-tree helpers its tests need."""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx
import psycopg

from profile_status.embedded import free_port

ROOT = Path(__file__).resolve().parents[2]
PR_SET_CHILD_SUBREAPER = 36
READY_TIMEOUT_S = 60.0


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of a process, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the command may contain spaces and parentheses
    return fields[0], int(fields[1])


def descendants(pid: int) -> list[int]:
    """Every live process below `pid`, found by walking the parent pids in /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (st := _stat(int(entry.name))) is not None:
            children.setdefault(st[1], []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def command_line(pid: int) -> str:
    """The process's command line, or "" when it is gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    st = _stat(pid)
    return st is not None and st[0] != "Z"


def wait_gone(pids: list[int], timeout_s: float) -> list[int]:
    """Poll until none of `pids` is alive (reaping those re-parented to us); return the survivors."""
    deadline = time.monotonic() + timeout_s
    while True:
        for pid in pids:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
        left = [p for p in pids if alive(p)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


@contextlib.contextmanager
def subreaper() -> Iterator[None]:
    """Become the subreaper, so orphans of a SIGKILLed child are ours to reap (a container's
    PID 1 may never reap them, and zombies would look alive to kill(pid, 0))."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1)
    try:
        yield
    finally:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 0)


def _command() -> list[str]:
    # The console script the contract names, when it sits beside this interpreter (a venv).
    script = Path(sys.executable).with_name("profile-status")
    return [str(script)] if script.exists() else [sys.executable, "-m", "profile_status.cli"]


def shared_tmp_dir(prefix: str) -> Path:
    """A temp dir the embedded servers can reach when, as root, they run as nobody."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


class Demo:
    """`profile-status demo` with the given flags, on free ports, its output in a log file."""

    def __init__(self, *flags: str, data_dir: Path | None = None) -> None:
        self.port, self.pg_port, self.redis_port = free_port(), free_port(), free_port()
        self.flags = list(flags)
        self.data_dir = data_dir
        self._out_dir = Path(tempfile.mkdtemp(prefix="demo-test-"))
        self.output = self._out_dir / "demo.out"
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    @property
    def base_url(self) -> str:
        """The API and page."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def database_url(self) -> str:
        """The demo's embedded PostgreSQL."""
        return f"postgresql://postgres@127.0.0.1:{self.pg_port}/postgres"

    @property
    def pid(self) -> int:
        """The demo process."""
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> Self:
        """Launch it (returns at once; see `wait_ready`)."""
        args = [*_command(), "demo", "--port", str(self.port), "--pg-port", str(self.pg_port),
                "--redis-port", str(self.redis_port), *self.flags]
        if self.data_dir is not None:
            args += ["--data-dir", str(self.data_dir)]
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
        with open(self.output, "wb") as out:
            self.started_at = time.monotonic()
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         env=env, cwd=ROOT)
        return self

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> float:
        """Wait until the page and the queue API answer 200; return seconds since start."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout_s
        with httpx.Client(base_url=self.base_url, timeout=2) as client:
            while True:
                if self.proc.poll() is not None:
                    raise AssertionError(f"demo exited with {self.proc.returncode}:\n{self.tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if client.get("/").status_code == 200 and client.get("/api/queue/status").status_code == 200:
                        return time.monotonic() - self.started_at
                if time.monotonic() > deadline:
                    raise AssertionError(f"demo not ready within {timeout_s:g} s:\n{self.tail()}")
                time.sleep(0.05)

    def client(self) -> httpx.Client:
        """An HTTP client of the demo's API."""
        return httpx.Client(base_url=self.base_url, timeout=10)

    def connect(self) -> psycopg.Connection:
        """An autocommit connection to the demo's database."""
        return psycopg.connect(self.database_url, autocommit=True)

    def tail(self, lines: int = 15) -> str:
        """The end of the demo's output, for failure messages."""
        try:
            return "\n".join(self.output.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout_s: float = 10.0) -> int:
        """Send `sig` and wait for the demo to exit; returns its exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout_s)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        if self.proc is not None and self.proc.poll() is None:
            kids = descendants(self.proc.pid)
            try:
                self.stop(signal.SIGTERM)  # lets it remove its temp dirs
            except subprocess.TimeoutExpired:
                self.proc.kill()  # the children die with it (PR_SET_PDEATHSIG)
                self.proc.wait(10)
            wait_gone(kids, 10)
        shutil.rmtree(self._out_dir, ignore_errors=True)
