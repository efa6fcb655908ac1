"""One call for every key asked for in the same event-loop tick.

Polls that arrive together (the requests uvicorn read from the sockets in one
turn of the loop) each ask for one username; `TickBatcher` answers all of them
with one call, sent once the loop has run every callback that was ready when
the first key came in. On a single Redis that turns N requests' round trips,
script calls and reply parses into one.

The call is made through `send(keys, done)`, which need not be a coroutine: a
sender that writes to its socket at once and calls `done` from the callback that
reads the reply (`shared.redis_store.pipelined`) costs its callers no turn of the
loop beyond the one that hears the reply. `TaskSender` runs a coroutine instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

# Called once with one value per key, in order, or with the exception that failed them all.
Done = Callable[[Sequence[V] | BaseException], None]
Send = Callable[[Sequence[K], Done[V]], None]


class TickBatcher(Generic[K, V]):
    """Collects the keys asked for during one tick and sends them as one call.

    A caller that is cancelled (its client went away) leaves the batch to the others.
    """

    def __init__(self, send: Send[K, V], max_keys: int = 256) -> None:
        self._send = send
        self.max_keys = max_keys
        self._waiting: dict[K, list[asyncio.Future[V]]] | None = None

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
        keys = list(waiting)

        def done(values: Sequence[V] | BaseException) -> None:
            if not isinstance(values, BaseException) and len(values) != len(keys):
                values = ValueError(f"{len(values)} values for {len(keys)} keys")
            if isinstance(values, BaseException):  # handed to every caller: none is lost
                for futures in waiting.values():
                    for future in futures:
                        if not future.done():
                            future.set_exception(values)
                return
            for key, value in zip(keys, values, strict=True):
                for future in waiting[key]:
                    if not future.done():
                        future.set_result(value)

        self._send(keys, done)


class TaskSender(Generic[K, V]):
    """A sender that runs `fetch` in a task of its own per call and hands on what it returns or raises."""

    def __init__(self, fetch: Callable[[Sequence[K]], Awaitable[Sequence[V]]]) -> None:
        self._fetch = fetch
        self._tasks: set[asyncio.Task[None]] = set()  # held: the loop keeps only weak references

    def __call__(self, keys: Sequence[K], done: Done[V]) -> None:
        task = asyncio.get_running_loop().create_task(self._run(keys, done))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, keys: Sequence[K], done: Done[V]) -> None:
        try:
            values = await self._fetch(keys)
        except BaseException as exc:
            done(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        done(values)

    async def aclose(self) -> None:
        """Cancel the calls still running (their callers get the cancellation) and wait for them to end."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
