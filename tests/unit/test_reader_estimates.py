"""The reader re-reads the projector's averages every few seconds, and keeps the same object while they stand."""

from __future__ import annotations

from unittest import mock

import fakeredis

from shared.model.estimates import Estimates, MovingAverage
from shared.redis_store.keys import Keys
from shared.redis_store.reader import ESTIMATES_REFRESH_S, StatusReader


async def test_unchanged_averages_keep_their_object_and_changed_ones_replace_it() -> None:
    redis = fakeredis.FakeAsyncRedis()
    keys = Keys("t:")
    measured = Estimates(processing=MovingAverage(200.0, 30))
    await redis.hset(keys.estimates, mapping=measured.to_hash())
    reader = StatusReader(redis, keys)
    clock = [1000.0]
    with mock.patch("shared.redis_store.reader.time.monotonic", side_effect=lambda: clock[0]):
        first = await reader.estimates()
        assert first == measured
        clock[0] += ESTIMATES_REFRESH_S
        assert await reader.estimates() is first  # re-read, same figures: the same object
        await redis.hset(keys.estimates, mapping=Estimates(processing=MovingAverage(210.0, 31)).to_hash())
        assert await reader.estimates() is first  # not re-read yet
        clock[0] += ESTIMATES_REFRESH_S
        changed = await reader.estimates()
        assert changed is not first and changed.processing.samples == 31
    await redis.aclose()
