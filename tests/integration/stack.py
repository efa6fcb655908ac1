"""The real projector and the real API, run in background threads of the test process."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import httpx
import uvicorn

from api.app import create_app
from profile_status.embedded import free_port
from profile_status.wiring import open_store
from projector.daemon import Projector
from shared.settings import Settings

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
    """The API under a real uvicorn server on a free port."""

    def __init__(self, settings: Settings) -> None:
        self.port = free_port()
        config = uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
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
