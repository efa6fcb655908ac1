"""`GET /api/queue/status` and `GET /api/queue/recent`: the queue at a glance, from Redis in one round trip."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import Response

from api import metrics
from api.responses import JSON, error, unavailable
from shared.redis_store import reports
from shared.redis_store.connect import STORE_ERRORS, within

RECENT_DEFAULT, RECENT_MAX = 20, 200


async def queue_status(request: Request) -> Response:
    """Active jobs by priority and status, oldest pending age, throughput and projector health."""
    now = time.time()
    try:
        deadline_s = request.state.settings.redis_timeout_s
        overview = await within(deadline_s, reports.queue_overview(request.state.store, now))
    except STORE_ERRORS:
        metrics.REDIS_ERRORS.inc()
        return unavailable("Status store unavailable", "redis_unavailable", "Queue status temporarily unavailable")
    by_priority = overview.by_priority
    by_status = {s: sum(p[s] for p in by_priority.values()) for s in reports.STATE_NAMES.values()}
    oldest_us = overview.oldest_pending_us
    oldest_age = None if oldest_us is None else round(max(0.0, now - oldest_us / 1e6), 3)
    projector: dict[str, float | int | None] = {"heartbeat_age_seconds": None, "backlog": None, "backlog_age_seconds": None}
    if (heartbeat := overview.heartbeat) is not None:
        projector = {
            "heartbeat_age_seconds": round(heartbeat.age_s(now), 3),
            "backlog": heartbeat.backlog,
            "backlog_age_seconds": heartbeat.backlog_age_s,
        }
    data = {
        "total_active": sum(by_status.values()),
        "by_priority": by_priority,
        "by_status": by_status,
        "oldest_pending_age_seconds": oldest_age,
        "completions_per_minute": round(overview.completions / overview.window_minutes, 2),
        "projector": projector,
        "generated_at": datetime.now(UTC).isoformat(),
    }
    return JSON({"success": True, "data": data}, headers={"Cache-Control": "max-age=1"})


async def recent_usernames(request: Request) -> Response:
    """The usernames whose status changed most recently, newest first; 404 unless the deployment publishes them."""
    if not request.state.settings.public_recent_usernames:
        return error(404, "Not Found")
    try:
        limit = int(request.query_params.get("limit", RECENT_DEFAULT))
    except ValueError:
        return error(400, "limit must be a whole number")
    limit = max(1, min(limit, RECENT_MAX))
    try:
        deadline_s = request.state.settings.redis_timeout_s
        names = await within(deadline_s, reports.recent_usernames(request.state.store, limit))
    except STORE_ERRORS:
        metrics.REDIS_ERRORS.inc()
        return unavailable("Status store unavailable", "redis_unavailable", "Temporarily unavailable")
    return JSON({"success": True, "data": {"usernames": names}}, headers={"Cache-Control": "max-age=1"})
