"""Fixtures running the real projector and API against this test's database and key prefix."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shared.settings import Settings
from tests.integration.browser import npm_packages, vite_build
from tests.integration.stack import ApiThread, ProjectorProcess, ProjectorThread


@pytest.fixture(autouse=True)
def _no_projector_outlives_its_test() -> Iterator[None]:
    yield
    ProjectorProcess.reap_leftovers()


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


@pytest.fixture(scope="session")
def npm_modules() -> Path:
    """`tests/browser/node_modules` (axe-core, Vite, React), from the npm registry through its lock; once a session."""
    return npm_packages()


@pytest.fixture(scope="session")
def axe_source(npm_modules: Path) -> str:
    """axe-core, to inject into a page under test (never fetched by the page itself)."""
    return (npm_modules / "axe-core" / "axe.min.js").read_text()


@pytest.fixture(scope="session")
def seed_component_site(npm_modules: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The seed's React component in its harness, built by Vite; once a session."""
    return vite_build(npm_modules, tmp_path_factory.mktemp("seed-component"))
