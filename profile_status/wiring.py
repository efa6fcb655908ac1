"""Building the objects every command needs from the settings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from shared.connections import redis_from_settings, wait_for_redis
from shared.settings import Settings
from shared.store import StatusStore


@asynccontextmanager
async def open_store(settings: Settings, name: str = "profile-status") -> AsyncIterator[StatusStore]:
    """A status store on a Redis that answered within the start-up timeout."""
    redis = redis_from_settings(settings, name)
    try:
        await wait_for_redis(redis, settings.redis_url, settings.startup_timeout_s)
        yield StatusStore(redis, settings.keys(), settings.ttl_policy())
    finally:
        await redis.aclose()
