"""`profile-status demo` as a subprocess on free ports, and the process-tree helpers its tests need."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx
import psycopg

from demo.embedded import free_port
from tests.integration.processes import descendants, wait_gone

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 60.0


def _command() -> list[str]:
    # The console script the contract names, when it sits beside this interpreter (a venv).
    script = Path(sys.executable).with_name("profile-status")
    return [str(script)] if script.exists() else [sys.executable, "-m", "profile_status.cli"]


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
