"""The real projector and the real API, run in background threads of the test process."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar, TypeVar

import httpx
import uvicorn
from starlette.types import ASGIApp

from api.app import create_app
from demo.embedded import free_port, tie_to_parent
from projector.daemon import Projector
from shared.settings import Settings
from shared.wiring import open_store

T = TypeVar("T")


def eventually(check: Callable[[], T], timeout: float = 10.0, interval: float = 0.02) -> T:
    """Poll `check` until it returns a truthy value or stops raising AssertionError; deadline `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if result:
                return result
            failure: Exception = AssertionError(f"still falsy: {result!r}")
        except AssertionError as exc:
            failure = exc
        if time.monotonic() >= deadline:
            raise failure
        time.sleep(interval)


class ProjectorThread:
    """`profile-status projector`, in a thread with its own event loop."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._thread = threading.Thread(target=self._main, name="projector", daemon=True)
        self.error: BaseException | None = None
        self.projector: Projector | None = None

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._run())
        except BaseException as exc:  # surfaced by stop()
            self.error = exc
        finally:
            self._loop.close()

    async def _run(self) -> None:
        async with open_store(self.settings) as store:
            self.projector = Projector(self.settings, store)
            await self.projector.run(self._stop)

    def start(self) -> ProjectorThread:
        """Start following changes."""
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Ask it to stop, as SIGTERM does, and wait."""
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(timeout)
        assert not self._thread.is_alive(), "projector did not stop"
        if self.error:
            raise self.error


class ApiThread:
    """The API under a real uvicorn server on a free port (`wrap` puts an ASGI app around it)."""

    def __init__(self, settings: Settings, wrap: Callable[[ASGIApp], ASGIApp] | None = None) -> None:
        self.port = free_port()
        app: ASGIApp = create_app(settings)
        config = uvicorn.Config(
            wrap(app) if wrap else app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="on",
            ws="none",  # as the `api` command
            timeout_graceful_shutdown=2,  # as the `api` command: open streams must not hold a stop
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, name="api", daemon=True)
        self.base_url = f"http://127.0.0.1:{self.port}"

    def start(self) -> ApiThread:
        """Serve, and return once the server accepts requests."""
        self._thread.start()
        eventually(lambda: self.server.started, timeout=10)
        return self

    def stop(self) -> None:
        """Shut the server down."""
        self.server.should_exit = True
        self._thread.join(10)
        assert not self._thread.is_alive(), "api did not stop"

    def client(self) -> httpx.Client:
        """An HTTP client for this server."""
        return httpx.Client(base_url=self.base_url, timeout=10)


class ProjectorProcess:
    """`profile-status projector` as a child process, to be killed the hard way."""

    # Every child started and not yet reaped: a test that fails before its stop() leaves its
    # child to `reap_leftovers`, not running into the next test.
    started: ClassVar[list[ProjectorProcess]] = []

    @classmethod
    def reap_leftovers(cls) -> None:
        """SIGKILL and reap every child a test left running."""
        for child in cls.started:
            if child.alive():
                child.kill9()
            elif child.proc is not None:
                child.proc.wait()
        cls.started.clear()

    def __init__(self, settings: Settings, **env: str) -> None:
        self.settings = settings
        self.extra_env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.peak_rss_kib = 0

    def start(self) -> ProjectorProcess:
        """Launch it."""
        env = {
            **os.environ,
            "DATABASE_URL": self.settings.database_url,
            "REDIS_URL": self.settings.redis_url,
            "PROFILE_STATUS_KEY_PREFIX": self.settings.key_prefix,
            "PROFILE_STATUS_REDIS_CLUSTER": str(self.settings.redis_cluster).lower(),
            "PROFILE_STATUS_QUEUE_SHARDS": str(self.settings.queue_shards),
            "PROFILE_STATUS_HEARTBEAT_INTERVAL_S": "0.2",
            "PROFILE_STATUS_SAFETY_POLL_S": "1",
            "PROFILE_STATUS_RETRY_MAX_DELAY_S": "1",
            **self.extra_env,
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "profile_status.cli", "projector"],
            # Dies with the test run, however it ends (a projector never gives up on its own).
            preexec_fn=functools.partial(tie_to_parent, os.getpid()),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        ProjectorProcess.started.append(self)
        return self

    @property
    def pid(self) -> int:
        """The child's pid."""
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        """Still running."""
        return self.proc is not None and self.proc.poll() is None

    def sample_rss(self) -> int:
        """Record the peak resident memory the kernel reports (VmHWM), in KiB."""
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    self.peak_rss_kib = max(self.peak_rss_kib, int(line.split()[1]))
        except FileNotFoundError:
            pass
        return self.peak_rss_kib

    def kill9(self) -> None:
        """SIGKILL, as a crash would."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(10)


def count_tasks(server: ApiThread) -> int:
    """Asyncio tasks alive in the API server's event loop (to find leaks)."""
    loop = server.server.servers[0].get_loop()

    async def count() -> int:
        return len(asyncio.all_tasks())

    return asyncio.run_coroutine_threadsafe(count(), loop).result(5)
