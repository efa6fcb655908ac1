"""`within`: a deadline over a whole Redis call, the call abandoned (cluster) or cancelled (single Redis)."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.redis_store.connect import within


async def _slow(started: asyncio.Event, ended: list[str]) -> str:
    started.set()
    try:
        await asyncio.sleep(0.2)
    except asyncio.CancelledError:
        ended.append("cancelled")
        raise
    ended.append("finished")
    return "late"


@pytest.mark.parametrize(("abandon", "fate"), [(True, "finished"), (False, "cancelled")])
async def test_a_call_past_its_deadline_is_a_redis_timeout(abandon: bool, fate: str) -> None:
    started, ended = asyncio.Event(), []
    with pytest.raises(RedisTimeoutError):
        await within(0.01, _slow(started, ended), abandon=abandon)
    assert started.is_set()
    await asyncio.sleep(0.3)
    assert ended == [fate]  # abandoned: left to end on its own; otherwise cancelled at once


@pytest.mark.parametrize("abandon", [True, False])
async def test_a_call_in_time_or_unbounded_returns_its_result(abandon: bool) -> None:
    assert await within(1.0, asyncio.sleep(0, "ok"), abandon=abandon) == "ok"
    assert await within(None, asyncio.sleep(0, "ok"), abandon=abandon) == "ok"
