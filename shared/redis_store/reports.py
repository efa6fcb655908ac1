"""The reads and writes besides documents: the queue overview, the heartbeat, readiness, recent names.

The API, the projector, the demo and the compose healthcheck reach these records
only through here, so that key names and the raw client stay inside the store.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any

from shared.model.estimates import Estimates
from shared.model.queue_entry import PENDING, RANK_NAMES, RUNNING
from shared.redis_store.keys import Keys
from shared.redis_store.records import Heartbeat
from shared.redis_store.store import StatusStore

THROUGHPUT_WINDOW_MIN = 5
COMPLETIONS_TTL_S = 2 * 3600  # well beyond the throughput window
# How the overview names an entry's state letter.
STATE_NAMES = {PENDING: "PENDING", RUNNING: "PROCESSING"}


@dataclass(frozen=True, slots=True)
class QueueOverview:
    """The queue at one moment: what `GET /api/queue/status` reports."""

    # {rank name: {"PENDING": n, "PROCESSING": n}} for every rank, zeros included.
    by_priority: dict[str, dict[str, int]]
    oldest_pending_us: int | None  # µs since the epoch; None when nothing pending has a time
    completions: int  # over the throughput window
    window_minutes: float  # the span `completions` covers
    heartbeat: Heartbeat | None


async def queue_overview(store: StatusStore, now: float | None = None) -> QueueOverview:
    """Counts per priority and state, oldest pending job, recent completions and the heartbeat, in one round trip."""
    now = time.time() if now is None else now
    k = store.keys
    minute = int(now // 60)
    pipe = store.redis.pipeline(transaction=False)
    store.read_counts(pipe)
    # The current, partial minute and the whole ones before it (one GET each: on a
    # cluster they live on different slots).
    for i in range(THROUGHPUT_WINDOW_MIN):
        pipe.get(k.completions(minute - i))
    pipe.get(k.heartbeat)
    replies = await pipe.execute()
    count_replies = replies[: -THROUGHPUT_WINDOW_MIN - 1]
    completions, beat = replies[-THROUGHPUT_WINDOW_MIN - 1 : -1], replies[-1]
    by_priority = {name: dict.fromkeys(STATE_NAMES.values(), 0) for name in RANK_NAMES}
    counts, oldest_us = store.parse_counts(count_replies)
    for field, count in counts.items():
        by_priority[RANK_NAMES[int(field[0])]][STATE_NAMES[field[1]]] = count
    return QueueOverview(
        by_priority=by_priority,
        oldest_pending_us=oldest_us,
        completions=sum(int(c or 0) for c in completions),
        window_minutes=_window_minutes(now),
        heartbeat=Heartbeat.parse(beat),
    )


def _window_minutes(now: float) -> float:
    """The span the completion buckets cover: whole minutes plus the current one so far."""
    return THROUGHPUT_WINDOW_MIN - 1 + max(now % 60, 1.0) / 60


async def heartbeat(store: StatusStore) -> Heartbeat | None:
    """The active projector's last beat (None: none, or unreadable)."""
    return Heartbeat.parse(await store.redis.get(store.keys.heartbeat))


async def readiness(store: StatusStore) -> tuple[Heartbeat | None, bool]:
    """(the active projector's beat, whether a complete projection exists) in one round trip."""
    beat, complete = await store.run([("GET", store.keys.heartbeat), ("EXISTS", store.keys.generation)])
    return Heartbeat.parse(beat), bool(complete)


async def beat(store: StatusStore, record: Heartbeat, *, leader: bool, ttl_s: int) -> None:
    """Write a projector's beat: the leader's under the heartbeat key, any other's beside it
    (suffixed with its pid), each expiring after `ttl_s` so that it vanishes when they stop."""
    key = store.keys.heartbeat if leader else f"{store.keys.heartbeat}:{record.pid}"
    await store.redis.set(key, record.model_dump_json(), ex=ttl_s)


def has_heartbeat(client: Any, keys: Keys) -> bool:
    """Whether a synchronous client sees a readable beat of the active projector (the compose healthcheck)."""
    return Heartbeat.parse(client.get(keys.heartbeat)) is not None


async def estimates(store: StatusStore) -> Estimates:
    """The moving averages the projector last published."""
    return Estimates.from_hash(await store.redis.hgetall(store.keys.estimates))


async def save_estimates(store: StatusStore, averages: Estimates) -> None:
    """Publish the moving averages for the API."""
    await store.redis.hset(store.keys.estimates, mapping=averages.to_hash())  # type: ignore[arg-type]


async def count_completions(store: StatusStore, count: int, now: float | None = None) -> None:
    """Add `count` completed jobs to this minute's bucket (read by `queue_overview`)."""
    if not count:
        return
    key = store.keys.completions(int((time.time() if now is None else now) // 60))
    await store.run([("INCRBY", key, count), ("EXPIRE", key, COMPLETIONS_TTL_S)])


async def subscribe_changes(store: StatusStore) -> Any:
    """A pub/sub connection subscribed to the changes channel (messages: `records.parse_changes`)."""
    # A cluster client learns the slot map here; subscribing before that fails.
    await store.redis.initialize()
    pubsub = store.redis.pubsub(ignore_subscribe_messages=True)
    try:
        await pubsub.subscribe(store.keys.changes_channel)
    except BaseException:
        with contextlib.suppress(Exception):  # the subscribe's own error is the one to report
            await pubsub.aclose()
        raise
    return pubsub


async def recent_usernames(store: StatusStore, limit: int) -> list[str]:
    """The usernames written most recently, newest first, at most `limit`."""
    names = await store.redis.zrevrange(store.keys.recent, 0, limit - 1)
    return [n.decode() for n in names]
