"""`GET /api/queue/status` and `GET /api/queue/recent`: the queue at a glance, from Redis in one round trip."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import orjson
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response

from api import metrics
from api.responses import JSON, error, unavailable

THROUGHPUT_WINDOW_MIN = 5
RECENT_DEFAULT, RECENT_MAX = 20, 200
_PRIORITY_NAMES = {"0": "HIGH", "1": "MEDIUM", "2": "LOW"}
_STATUS_NAMES = {"P": "PENDING", "R": "PROCESSING"}


async def queue_status(request: Request) -> Response:
    """Active jobs by priority and status, oldest pending age, throughput and projector health."""
    store = request.state.store
    k = store.keys
    minute = int(time.time() // 60)
    pipe = store.redis.pipeline(transaction=False)
    store.read_counts(pipe)
    # The current, partial minute and the whole ones before it (one GET each: on a
    # cluster they live on different slots).
    for i in range(THROUGHPUT_WINDOW_MIN):
        pipe.get(k.completions(minute - i))
    pipe.get(k.heartbeat)
    try:
        replies = await pipe.execute()
        count_replies = replies[: -THROUGHPUT_WINDOW_MIN - 1]
        completions, beat = replies[-THROUGHPUT_WINDOW_MIN - 1 : -1], replies[-1]
    except (RedisError, OSError):
        metrics.REDIS_ERRORS.inc()
        return unavailable("Status store unavailable", "redis_unavailable", "Queue status temporarily unavailable")
    by_priority = {name: {status: 0 for status in _STATUS_NAMES.values()} for name in _PRIORITY_NAMES.values()}
    counts, oldest_us = store.parse_counts(count_replies)
    for field, count in counts.items():
        by_priority[_PRIORITY_NAMES[field[0]]][_STATUS_NAMES[field[1]]] = count
    by_status = {s: sum(p[s] for p in by_priority.values()) for s in _STATUS_NAMES.values()}
    now = time.time()
    oldest_age = None if oldest_us is None else round(max(0.0, now - oldest_us / 1e6), 3)
    projector = {"heartbeat_age_seconds": None, "backlog": None, "backlog_age_seconds": None}
    if beat:
        heartbeat = orjson.loads(beat)
        projector = {
            "heartbeat_age_seconds": round(now - float(heartbeat["at"]), 3),
            "backlog": heartbeat.get("backlog"),
            "backlog_age_seconds": heartbeat.get("backlog_age_s"),
        }
    data = {
        "total_active": sum(by_status.values()),
        "by_priority": by_priority,
        "by_status": by_status,
        "oldest_pending_age_seconds": oldest_age,
        "completions_per_minute": round(sum(int(c or 0) for c in completions) / _window_minutes(now), 2),
        "projector": projector,
        "generated_at": datetime.now(UTC).isoformat(),
    }
    return JSON({"success": True, "data": data}, headers={"Cache-Control": "max-age=1"})


def _window_minutes(now: float) -> float:
    """The span the completion buckets cover: whole minutes plus the current one so far."""
    return THROUGHPUT_WINDOW_MIN - 1 + max(now % 60, 1.0) / 60


async def recent_usernames(request: Request) -> Response:
    """The usernames whose status changed most recently, newest first."""
    try:
        limit = int(request.query_params.get("limit", RECENT_DEFAULT))
    except ValueError:
        return error(400, "limit must be a whole number")
    limit = max(1, min(limit, RECENT_MAX))
    store = request.state.store
    try:
        names = await store.redis.zrevrange(store.keys.recent, 0, limit - 1)
    except (RedisError, OSError):
        metrics.REDIS_ERRORS.inc()
        return unavailable("Status store unavailable", "redis_unavailable", "Temporarily unavailable")
    return JSON({"success": True, "data": {"usernames": [n.decode() for n in names]}}, headers={"Cache-Control": "max-age=1"})
