"""Reference (b): the simplest Redis-backed endpoint. One GET of `{prefix}{username}`, bytes returned as is.

No validation, no rendering, no ETag: the cost of one Redis round trip on top of (a).
Reads `REDIS_URL` and `PROFILE_STATUS_KEY_PREFIX` like the project's commands.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

_PREFIX = os.environ.get("PROFILE_STATUS_KEY_PREFIX", "status:")


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Redis]]:
    redis = Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    try:
        yield {"redis": redis}
    finally:
        await redis.aclose()


async def status(request: Request) -> Response:
    """The stored document, or 404."""
    doc = await request.state.redis.get(_PREFIX + request.path_params["username"].lower())
    if doc is None:
        return Response(b'{"success":false}', status_code=404, media_type="application/json")
    return Response(doc, media_type="application/json")


app = Starlette(routes=[Route("/api/profile/{username}/status", status, methods=["GET"])], lifespan=lifespan)
