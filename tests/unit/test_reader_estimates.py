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


async def test_the_polls_that_find_the_averages_due_share_one_read() -> None:
    import asyncio

    redis = fakeredis.FakeAsyncRedis()
    keys = Keys("t:")
    await redis.hset(keys.estimates, mapping=Estimates(processing=MovingAverage(200.0, 30)).to_hash())
    reader = StatusReader(redis, keys)
    reads = 0
    stored = reader._stored_estimates

    async def counted() -> dict[bytes, bytes]:
        nonlocal reads
        reads += 1
        return await stored()

    with mock.patch.object(reader, "_stored_estimates", counted):
        got = await asyncio.gather(*(reader.estimates() for _ in range(50)))
        assert reads == 1 and all(e is got[0] for e in got)
        # A poll that goes away does not end the read the others wait for.
        reader._estimates_read = float("-inf")
        leaving, staying = asyncio.ensure_future(reader.estimates()), asyncio.ensure_future(reader.estimates())
        await asyncio.sleep(0)
        leaving.cancel()
        assert (await staying).processing.samples == 30 and reads == 2
    await reader.aclose()
    await redis.aclose()
