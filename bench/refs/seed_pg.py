"""Reference (c): the seed's approach. Every poll asks Postgres, 1-4 queries through a connection pool.

The seed's `check_profile_status`: the profile by username; else the latest queue
row; then its position with the COUNT queries of `estimateQueuePosition` (HIGH:
one count; MEDIUM and LOW: two). The queries are the seed's, written so they can
use the indexes `profile-status migrate` adds (lower(username), the active queue
order): this is the seed at its best, not a straw man. Reads `DATABASE_URL`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import orjson
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

POOL_SIZE = 10
_ACTIVE = "status IN ('PENDING', 'PROCESSING')"
_RANK = "(CASE priority WHEN 'HIGH' THEN 0 WHEN 'MEDIUM' THEN 1 ELSE 2 END)"
_BEFORE = "COALESCE(timestamp, '-infinity'::timestamptz) < %s"
_COUNT_SAME_RANK_BEFORE = f"SELECT count(*) FROM queue WHERE {_ACTIVE} AND {_RANK} = %s AND {_BEFORE}"
_COUNT_HIGHER_RANKS = f"SELECT count(*) FROM queue WHERE {_ACTIVE} AND {_RANK} < %s"


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[dict[str, AsyncConnectionPool]]:
    pool = AsyncConnectionPool(
        os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        min_size=POOL_SIZE,
        max_size=POOL_SIZE,
        open=False,
        kwargs={"autocommit": True},
    )
    await pool.open(wait=True)
    try:
        yield {"pool": pool}
    finally:
        await pool.close()


async def _count(conn: AsyncConnection, query: str, params: tuple[Any, ...]) -> int:
    cur = await conn.execute(query, params)
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def _position(conn: AsyncConnection, priority: str, timestamp: datetime) -> int:
    """estimateQueuePosition: rows of higher priority, plus rows of the same priority submitted earlier."""
    rank = {"HIGH": 0, "MEDIUM": 1}.get(priority, 2)
    ahead = await _count(conn, _COUNT_SAME_RANK_BEFORE, (rank, timestamp))
    if rank > 0:
        ahead += await _count(conn, _COUNT_HIGHER_RANKS, (rank,))
    return max(1, ahead + 1)


def _stage(status: str, duration: float | None) -> str:
    if status != "PROCESSING":
        return {"PENDING": "queued", "COMPLETED": "completed", "FAILED": "failed"}.get(status, "unknown")
    if not duration:
        return "starting"
    for limit, stage in ((60, "initializing"), (120, "fetching_profile_data"), (180, "analyzing_content")):
        if duration < limit:
            return stage
    return "processing_insights" if duration < 240 else "finalizing"


def _iso(ts: datetime | None) -> str | None:
    return ts.isoformat() if ts else None


async def _check(conn: AsyncConnection, username: str) -> dict[str, Any]:
    now = datetime.now(UTC)
    cur = await conn.execute(
        "SELECT created_at, followers_count, posts_count, last_scraped_at FROM primary_profiles"
        " WHERE lower(username) = %s",
        (username,),
    )
    profile = await cur.fetchone()
    if profile:
        created, followers, posts, scraped = profile
        age = (now - created).total_seconds() / 3600 if created else None
        return {
            "completed": True, "message": "Profile processing completed", "created_at": _iso(created),
            "last_scraped_at": _iso(scraped), "followers_count": followers, "posts_count": posts,
            "profile_age_hours": round(age, 2) if age is not None else None,
            "data_freshness": "fresh" if age is not None and age < 24 else "standard", "status": "exists",
            "availability": "ready", "next_action": "view_profile",
        }
    cur = await conn.execute(
        "SELECT status, priority, attempts, timestamp, last_attempt, error_message, request_id FROM queue"
        " WHERE lower(username) = %s ORDER BY timestamp DESC LIMIT 1",
        (username,),
    )
    row = await cur.fetchone()
    if not row:
        return {
            "completed": False, "status": "NOT_FOUND", "message": "Profile not found in queue or database",
            "recommendation": "Submit processing request first", "next_action": "request_processing",
        }
    status, priority, attempts, timestamp, last_attempt, error_message, request_id = row
    duration = (now - last_attempt).total_seconds() if status == "PROCESSING" and last_attempt else None
    position = await _position(conn, priority, timestamp) if timestamp else None
    return {
        "completed": False, "status": status, "message": f"Profile is {status.lower()}", "attempts": attempts,
        "priority": priority, "request_id": request_id, "timestamp": _iso(timestamp),
        "last_attempt": _iso(last_attempt), "error_message": error_message,
        "processing_duration_seconds": round(duration, 2) if duration else None,
        "processing_stage": _stage(status, duration), "queue_position": position,
        "recommended_polling_interval": "30 seconds" if status in ("PENDING", "PROCESSING") else "stop",
        "can_be_cancelled": status in ("PENDING", "PROCESSING"),
    }


async def status(request: Request) -> Response:
    """The seed's answer, computed from Postgres on every poll."""
    username = request.path_params["username"].lstrip("@").lower()
    async with request.state.pool.connection() as conn:
        data = await _check(conn, username)
    return Response(orjson.dumps({"success": True, "data": data}), media_type="application/json")


app = Starlette(routes=[Route("/api/profile/{username}/status", status, methods=["GET"])], lifespan=lifespan)
