"""`GET /api/profile/{username}/status`: one Redis round trip, rendered at the moment of the response."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg
from psycopg_pool import PoolTimeout
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response

from api import metrics
from api.cache import LocalCache
from api.read_through import ReadThrough
from api.responses import JSON, error, unavailable
from shared.document import StatusDocument
from shared.errors import one_line
from shared.reader import StatusReader
from shared.render import render
from shared.usernames import InvalidUsername, normalize_username

log = logging.getLogger(__name__)

# Fields that move every second; leaving them out of the ETag lets a poll get 304
# until something a user would notice changes.
_VOLATILE = ("processing_duration_seconds", "profile_age_hours")
_MAX_AGE = {"exists": 300, "NOT_FOUND": 5, "COMPLETED": 30, "FAILED": 30}


class StoreUnavailable(Exception):
    """Redis did not answer."""


class DatabaseUnavailable(Exception):
    """Postgres did not answer on the miss path."""


@dataclass(frozen=True, slots=True)
class Status:
    """A username's rendered status and the document it came from."""

    document: StatusDocument
    data: dict[str, Any]


async def current_status(
    reader: StatusReader, fallback: ReadThrough, username: str, cache: LocalCache | None = None
) -> Status:
    """Read (or on a miss, resolve) and render the status of a normalized username."""
    try:
        reading = cache.get(username) if cache else None
        if reading is None:
            epoch = cache.epoch if cache else 0
            reading = await reader.read(username)
            if cache:
                cache.put(username, reading, epoch)
        estimates = await reader.estimates()
    except (RedisError, OSError) as exc:
        raise StoreUnavailable(one_line(exc)) from exc
    try:
        doc, position = reading.document, reading.position
        if doc is None:
            metrics.MISSES.inc()
            doc = await fallback.document(username)
            position = await fallback.position(doc)
        elif reading.needs_position:
            position = await fallback.position(doc)
    except (psycopg.Error, PoolTimeout, OSError) as exc:
        raise DatabaseUnavailable(one_line(exc)) from exc
    except RedisError as exc:
        raise StoreUnavailable(one_line(exc)) from exc
    return Status(doc, render(doc, datetime.now(UTC), position, estimates))


def etag(data: dict[str, Any]) -> str:
    """A weak validator over every field but the ever-moving durations."""
    stable = {k: v for k, v in data.items() if k not in _VOLATILE}
    return 'W/"' + hashlib.blake2b(orjson.dumps(stable), digest_size=12).hexdigest() + '"'


def max_age(data: dict[str, Any]) -> int:
    """How long a client may reuse the answer: never beyond its recommended polling interval."""
    status = data["status"]
    if status in _MAX_AGE:
        return _MAX_AGE[status]
    return max(1, int(data.get("recommended_polling_seconds") or 5))


def _matches(if_none_match: str | None, tag: str) -> bool:
    if not if_none_match:
        return False
    candidates = {t.strip() for t in if_none_match.split(",")}
    return "*" in candidates or tag in candidates or tag[2:] in candidates


async def get_status(request: Request) -> Response:
    """The contract's status endpoint."""
    try:
        username = normalize_username(request.path_params["username"])
    except InvalidUsername as exc:
        return error(400, str(exc))
    state = request.state
    try:
        status = await current_status(state.reader, state.read_through, username, state.changes.cache)
    except StoreUnavailable as exc:
        metrics.REDIS_ERRORS.inc()
        log.warning("redis unavailable: %s", exc, extra={"event": "redis_unavailable"})
        return unavailable(
            "Status store unavailable", "redis_unavailable", "Status temporarily unavailable, retry shortly"
        )
    except DatabaseUnavailable as exc:
        metrics.POSTGRES_ERRORS.inc()
        log.warning("postgres unavailable on a miss: %s", exc, extra={"event": "postgres_unavailable"})
        return unavailable(
            "Status source unavailable", "database_unavailable", "Status temporarily unavailable, retry shortly"
        )
    tag = etag(status.data)
    headers = {"ETag": tag, "Cache-Control": f"max-age={max_age(status.data)}"}
    if _matches(request.headers.get("if-none-match"), tag):
        return Response(status_code=304, headers=headers)
    return JSON({"success": True, "data": status.data}, headers=headers)
