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
import itertools
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

# Called once with one value per key, in order, or with the exception that failed them all.
Done = Callable[[Sequence[V] | BaseException], None]
Send = Callable[[Sequence[K], Done[V]], None]


class Overloaded(Exception):
    """More keys are waiting for a call than the batcher holds (`max_waiting`)."""


class TickBatcher(Generic[K, V]):
    """Collects the keys asked for during one tick and sends them as one call.

    With `max_in_flight`, at most that many calls run at once: keys asked for
    meanwhile wait, and the next call takes all of them (up to `max_keys`), so a
    busier sender makes bigger calls rather than a longer queue of small ones.
    `max_waiting` bounds the keys waiting so; one more raises `Overloaded`.
    A caller that is cancelled (its client went away) leaves the batch to the others.
    """

    def __init__(
        self, send: Send[K, V], max_keys: int = 256, *, max_in_flight: int | None = None, max_waiting: int | None = None
    ) -> None:
        self._send = send
        self.max_keys = max_keys
        self.max_in_flight = max_in_flight
        self.max_waiting = max_waiting
        self._waiting: dict[K, list[asyncio.Future[V]]] = {}
        self._in_flight = 0
        self._scheduled = False

    async def get(self, key: K) -> V:
        """The value of `key`, fetched with every other key asked for in this tick."""
        if key not in self._waiting and self.max_waiting is not None and len(self._waiting) >= self.max_waiting:
            raise Overloaded(f"{len(self._waiting)} keys already wait for a call")
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, []).append(future)
        if len(self._waiting) >= self.max_keys:
            self._flush()
        self._flush_soon()
        return await future

    def _flush_soon(self) -> None:
        """Flush once the loop has run every callback ready now (the rest of this tick's polls)."""
        if self._waiting and not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        self._scheduled = False
        self._flush()

    def _flush(self) -> None:
        if not self._waiting or (self.max_in_flight is not None and self._in_flight >= self.max_in_flight):
            return  # a call ending flushes what waits
        keys = list(itertools.islice(self._waiting, self.max_keys))
        waiting = {key: self._waiting.pop(key) for key in keys}
        self._in_flight += 1

        def done(values: Sequence[V] | BaseException) -> None:
            self._in_flight -= 1
            if not isinstance(values, BaseException) and len(values) != len(keys):
                values = ValueError(f"{len(values)} values for {len(keys)} keys")
            if isinstance(values, BaseException):  # handed to every caller: none is lost
                for futures in waiting.values():
                    for future in futures:
                        if not future.done():
                            future.set_exception(values)
            else:
                for key, value in zip(keys, values, strict=True):
                    for future in waiting[key]:
                        if not future.done():
                            future.set_result(value)
            self._flush_soon()

        self._send(keys, done)
        self._flush_soon()  # more than `max_keys` waited: the rest goes in another call


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
