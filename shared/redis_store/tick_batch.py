"""One call for every key asked for in the same event-loop tick.

Polls that arrive together (the requests uvicorn read from the sockets in one
turn of the loop) each ask for one username; `TickBatcher` answers all of them
with one call of `fetch`, made once the loop has run every callback that was
ready when the first key came in. On a single Redis that turns N requests'
round trips, script calls and reply parses into one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class TickBatcher(Generic[K, V]):
    """Collects the keys asked for during one tick and fetches them with one call.

    `fetch` gets distinct keys and returns one value per key, in order; if it
    raises, every caller of that batch gets the exception. A caller that is
    cancelled (its client went away) leaves the batch to the others.
    """

    def __init__(self, fetch: Callable[[Sequence[K]], Awaitable[Sequence[V]]], max_keys: int = 256) -> None:
        self._fetch = fetch
        self.max_keys = max_keys
        self._waiting: dict[K, list[asyncio.Future[V]]] | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # held: the loop keeps only weak references

    async def get(self, key: K) -> V:
        """The value of `key`, fetched with every other key asked for in this tick."""
        loop = asyncio.get_running_loop()
        if self._waiting is None:
            self._waiting = {}
            loop.call_soon(self._flush)
        future: asyncio.Future[V] = loop.create_future()
        self._waiting.setdefault(key, []).append(future)
        if len(self._waiting) >= self.max_keys:
            self._flush()
        return await future

    def _flush(self) -> None:
        waiting, self._waiting = self._waiting, None
        if not waiting:
            return
        task = asyncio.get_running_loop().create_task(self._run(waiting))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, waiting: dict[K, list[asyncio.Future[V]]]) -> None:
        keys = list(waiting)
        try:
            values = await self._fetch(keys)
        except BaseException as exc:  # handed to every caller: none is lost
            for futures in waiting.values():
                for future in futures:
                    if not future.done():
                        future.set_exception(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        for key, value in zip(keys, values, strict=True):
            for future in waiting[key]:
                if not future.done():
                    future.set_result(value)
