"""Fixtures running the real projector and API against this test's database and key prefix."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from shared.settings import Settings
from tests.integration.stack import ApiThread, ProjectorThread


@pytest.fixture
def settings(database_url: str, redis_server_url: str, key_prefix: str) -> Settings:
    """Settings pointing at this test's database and prefix, with quick timings."""
    return Settings(
        database_url=database_url,
        redis_url=redis_server_url,
        key_prefix=key_prefix,
        heartbeat_interval_s=0.2,
        safety_poll_s=1.0,
        startup_timeout_s=5.0,
    )


@pytest.fixture
def projector(settings: Settings) -> Iterator[ProjectorThread]:
    """A running projector."""
    thread = ProjectorThread(settings).start()
    yield thread
    thread.stop()


@pytest.fixture
def api(settings: Settings) -> Iterator[ApiThread]:
    """A running API server."""
    server = ApiThread(settings).start()
    yield server
    server.stop()


@pytest.fixture
def http(api: ApiThread) -> Iterator[httpx.Client]:
    """A client of the running API."""
    with api.client() as client:
        yield client
