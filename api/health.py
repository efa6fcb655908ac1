"""`/healthz` (the process runs) and `/readyz` (Redis answers and the projector is alive)."""

from __future__ import annotations

import time

import orjson
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response

from api.responses import JSON, NO_STORE
from shared.errors import one_line


async def healthz(request: Request) -> Response:
    """200 while the process runs."""
    return JSON({"status": "ok"}, headers=NO_STORE)


async def readyz(request: Request) -> Response:
    """200 when Redis answers and the projector's heartbeat is recent; else 503 saying why."""
    state = request.state
    try:
        beat = await state.store.redis.get(state.store.keys.heartbeat)
        complete = await state.store.redis.exists(state.store.keys.generation)
    except (RedisError, OSError) as exc:
        return _not_ready(f"redis unreachable: {one_line(exc)}")
    if beat is None:
        return _not_ready("no projector heartbeat")
    heartbeat = orjson.loads(beat)
    age = time.time() - float(heartbeat["at"])
    limit = state.settings.heartbeat_max_age_s
    if age > limit:
        return _not_ready(f"projector heartbeat is {age:.1f} s old (limit {limit:g} s)")
    body = {
        "ready": True,
        "heartbeat_age_s": round(age, 3),
        "projector": {k: heartbeat.get(k) for k in ("pid", "host", "backlog", "backlog_age_s", "rebuilding")},
        "projection_complete": bool(complete),
    }
    return JSON(body, headers=NO_STORE)


def _not_ready(reason: str) -> Response:
    return JSON({"ready": False, "reason": reason}, status_code=503, headers={**NO_STORE, "Retry-After": "5"})
