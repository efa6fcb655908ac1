"""The reads asked for in one event-loop tick go out as one call."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from shared.redis_store.tick_batch import Overloaded, TaskSender, TickBatcher


class _Fetch:
    def __init__(self, fail: BaseException | None = None) -> None:
        self.calls: list[list[str]] = []
        self.fail = fail
        self.release = asyncio.Event()
        self.release.set()

    async def __call__(self, keys: Sequence[str]) -> list[str]:
        self.calls.append(list(keys))
        await self.release.wait()
        if self.fail is not None:
            raise self.fail
        return [k.upper() for k in keys]


async def test_one_tick_is_one_call_with_each_key_once() -> None:
    fetch = _Fetch()
    batcher = TickBatcher(TaskSender(fetch))
    got = await asyncio.gather(*(batcher.get(k) for k in ["a", "b", "a", "c"]))
    assert got == ["A", "B", "A", "C"]
    assert fetch.calls == [["a", "b", "c"]]
    assert await batcher.get("d") == "D" and fetch.calls[-1] == ["d"]  # a later tick, a call of its own


async def test_a_full_batch_goes_at_once_and_the_rest_follows() -> None:
    fetch = _Fetch()
    batcher = TickBatcher(TaskSender(fetch), max_keys=3)
    got = await asyncio.gather(*(batcher.get(str(i)) for i in range(7)))
    assert got == [str(i) for i in range(7)]
    assert [len(c) for c in fetch.calls] == [3, 3, 1]


async def test_a_failure_reaches_every_caller_of_its_batch() -> None:
    batcher = TickBatcher(TaskSender(_Fetch(fail=ConnectionError("gone"))))
    results = await asyncio.gather(batcher.get("a"), batcher.get("b"), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)


async def test_a_caller_that_goes_away_leaves_the_batch_to_the_others() -> None:
    fetch = _Fetch()
    fetch.release.clear()
    batcher = TickBatcher(TaskSender(fetch))
    leaving = asyncio.create_task(batcher.get("a"))
    staying = asyncio.create_task(batcher.get("a"))
    await asyncio.sleep(0.01)
    leaving.cancel()
    fetch.release.set()
    assert await staying == "A"
    with pytest.raises(asyncio.CancelledError):
        await leaving


async def test_closing_the_sender_ends_its_calls_and_their_callers_hear_of_it() -> None:
    fetch = _Fetch()
    fetch.release.clear()
    sender = TaskSender(fetch)
    batcher = TickBatcher(sender)
    caller = asyncio.create_task(batcher.get("a"))
    await asyncio.sleep(0.01)
    assert fetch.calls == [["a"]]
    await sender.aclose()
    with pytest.raises(asyncio.CancelledError):
        await caller


async def _until(condition: Any) -> None:
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("never happened")


async def _busy(**limits: int) -> tuple[_Fetch, TickBatcher[str, str], asyncio.Future[str]]:
    """A batcher allowed one call at a time, that call ("a") sent and held until `fetch.release` is set."""
    fetch = _Fetch()
    fetch.release.clear()
    batcher = TickBatcher(TaskSender(fetch), max_in_flight=1, **limits)
    first = asyncio.ensure_future(batcher.get("a"))
    await _until(lambda: fetch.calls == [["a"]])
    return fetch, batcher, first


async def test_while_every_call_is_busy_keys_wait_and_go_in_bigger_calls() -> None:
    fetch, batcher, first = await _busy(max_keys=2)
    later = []
    for key in ("b", "c", "d", "b", "e"):  # each in a tick of its own, while "a" is read
        later.append(asyncio.ensure_future(batcher.get(key)))
        await asyncio.sleep(0)
    assert fetch.calls == [["a"]]  # nothing more sent while the one call runs
    fetch.release.set()
    assert await asyncio.gather(first, *later) == ["A", "B", "C", "D", "B", "E"]
    assert fetch.calls == [["a"], ["b", "c"], ["d", "e"]]  # what waited, `max_keys` a call


async def test_beyond_max_waiting_a_new_key_is_refused_at_once() -> None:
    fetch, batcher, first = await _busy(max_waiting=2)
    waiting = [asyncio.ensure_future(batcher.get(k)) for k in ("b", "c", "b")]  # "b" again waits with the first
    await asyncio.sleep(0)
    with pytest.raises(Overloaded):
        await batcher.get("d")
    fetch.release.set()
    assert await asyncio.gather(first, *waiting) == ["A", "B", "C", "B"]
