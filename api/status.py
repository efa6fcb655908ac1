"""`GET /api/profile/{username}/status`: one Redis round trip, rendered at the moment of the response."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg
from psycopg_pool import PoolTimeout
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from api import metrics
from api.cache import LocalCache
from api.kept_answers import KeptAnswers
from api.read_through import ReadThrough, Unprojectable
from api.responses import error, unavailable
from shared.errors import one_line
from shared.model.document import StatusDocument
from shared.model.estimates import Estimates
from shared.model.render import duration_field, duration_only_until, render, unchanged_until
from shared.model.rules import QueuePosition
from shared.model.usernames import InvalidUsername, normalize_username
from shared.redis_store.connect import STORE_ERRORS
from shared.redis_store.reader import Reading, StatusReader
from shared.redis_store.tick_batch import Overloaded

log = logging.getLogger(__name__)

# Fields that move every second; leaving them out of the ETag lets a poll get 304
# until something a user would notice changes.
_VOLATILE = ("processing_duration_seconds", "profile_age_hours")
_MAX_AGE = {"exists": 300, "NOT_FOUND": 5, "COMPLETED": 30, "FAILED": 30}


class StoreUnavailable(Exception):
    """Redis did not answer (the message is the driver's, for the log)."""

    # What the client is told instead: (detail, error_type, message) of the 503.
    answer = ("Status store unavailable", "redis_unavailable", "Status temporarily unavailable, retry shortly")


class DatabaseUnavailable(Exception):
    """Postgres did not answer on the miss path (the message is the driver's, for the log)."""

    answer = ("Status source unavailable", "database_unavailable", "Status temporarily unavailable, retry shortly")


@dataclass(frozen=True, slots=True)
class Resolved:
    """What a username's status is rendered from."""

    document: StatusDocument
    position: QueuePosition | None
    estimates: Estimates
    # The Redis reading (or the process cache's copy), when it alone made the answer (not the miss path).
    reading: Reading | None


@dataclass(frozen=True, slots=True)
class Status:
    """A username's rendered status, what it was rendered from, and when."""

    document: StatusDocument
    data: dict[str, Any]
    now: datetime
    estimates: Estimates
    reading: Reading | None


async def current_status(
    reader: StatusReader, fallback: ReadThrough, username: str, cache: LocalCache | None = None
) -> Status:
    """Read (or on a miss, resolve) and render the status of a normalized username."""
    resolved = await resolve_status(reader, fallback, username, cache)
    now = datetime.now(UTC)
    data = render(resolved.document, now, resolved.position, resolved.estimates)
    return Status(resolved.document, data, now, resolved.estimates, resolved.reading)


async def resolve_status(
    reader: StatusReader, fallback: ReadThrough, username: str, cache: LocalCache | None = None
) -> Resolved:
    """The document and position of a normalized username: from the process cache, Redis, or on a miss Postgres."""
    try:
        reading = cache.get(username) if cache else None
        if reading is None:
            token = cache.token() if cache else None
            reading = await reader.read(username)
            if cache and token:
                cache.put(username, reading, token)
        estimates = await reader.estimates()
    except STORE_ERRORS as exc:
        raise StoreUnavailable(one_line(exc)) from exc
    doc, position = reading.document, reading.position
    from_redis = doc is not None and not reading.needs_position
    if not from_redis:
        try:
            async with asyncio.timeout(fallback.timeout_s):
                if doc is None:
                    metrics.MISSES.inc()
                    doc = await fallback.document(username)
                position = await fallback.position(doc)
        except TimeoutError as exc:
            raise DatabaseUnavailable("Postgres did not answer in time") from exc
        except (psycopg.Error, PoolTimeout, OSError, Unprojectable, Overloaded) as exc:
            raise DatabaseUnavailable(one_line(exc)) from exc
        except STORE_ERRORS as exc:  # the write-back of the answer
            raise StoreUnavailable(one_line(exc)) from exc
    assert doc is not None
    return Resolved(doc, position, estimates, reading if from_redis else None)


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


def _matches(if_none_match: bytes | None, tag: bytes) -> bool:
    if not if_none_match:
        return False
    candidates = {t.strip() for t in if_none_match.split(b",")}
    return b"*" in candidates or tag in candidates or tag[2:] in candidates


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


@dataclass(frozen=True, slots=True)
class Answer:
    """A rendered 200 of the status endpoint, down to its header and body bytes."""

    tag: bytes
    # Tuples: kept answers are many and long-lived, and a tuple of bytes is no work for the collector.
    not_modified_headers: tuple[tuple[bytes, bytes], ...]
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes

    @classmethod
    def of(cls, data: dict[str, Any]) -> Answer:
        """Render `data` once: validator, caching headers, body."""
        tag = etag(data).encode()
        common = ((b"etag", tag), (b"cache-control", b"max-age=%d" % max_age(data)))
        body = orjson.dumps({"success": True, "data": data})
        length = ((b"content-type", b"application/json"), (b"content-length", b"%d" % len(body)))
        return cls(tag, common, common + length, body)

    def response(self, if_none_match: bytes | None, now: datetime) -> _Raw:
        """304 when the client holds this version, else the 200 (header lists copied: middleware may add to them)."""
        if _matches(if_none_match, self.tag):
            return _Raw(304, list(self.not_modified_headers), b"")
        return _Raw(200, list(self.headers), self.body)


_DURATION_FIELD = b'"processing_duration_seconds":'


@dataclass(frozen=True, slots=True)
class RunningAnswer:
    """A running job's rendered 200, but for its duration, which is put in at each response.

    Valid while `shared.model.render.duration_only_until` holds: the ETag leaves the
    duration out, so it stays; the body is the bytes around the number.
    """

    tag: bytes
    not_modified_headers: tuple[tuple[bytes, bytes], ...]
    head: bytes
    tail: bytes
    started: datetime

    @classmethod
    def of(cls, data: dict[str, Any], started: datetime) -> RunningAnswer:
        """Render `data` once and cut its body around the duration (a number or null: it ends at the next comma)."""
        answer = Answer.of(data)
        start = answer.body.index(_DURATION_FIELD) + len(_DURATION_FIELD)
        end = answer.body.index(b",", start)
        return cls(answer.tag, answer.not_modified_headers, answer.body[:start], answer.body[end:], started)

    def response(self, if_none_match: bytes | None, now: datetime) -> _Raw:
        """304 when the client holds this version, else the 200 with the duration at `now`, as render has it."""
        if _matches(if_none_match, self.tag):
            return _Raw(304, list(self.not_modified_headers), b"")
        # As render has it: a start ahead of the clock is a duration of 0, sent as null.
        duration = duration_field(max(0.0, (now - self.started).total_seconds()))
        body = self.head + orjson.dumps(duration) + self.tail
        headers = [*self.not_modified_headers, (b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        return _Raw(200, headers, body)


class StatusEndpoint:
    """The contract's status endpoint, as a plain ASGI app.

    The hot path of the whole service: it skips Starlette's Request/Response
    objects and writes pre-built header lists; a 304 renders no body, and a
    poll whose reading rendered an answer still standing renders nothing at all
    (`api.kept_answers`).
    """

    def __init__(self) -> None:
        self.answers: KeptAnswers[Answer | RunningAnswer] = KeptAnswers()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.response(scope)
        await response(scope, receive, send)

    async def response(self, scope: Scope) -> Response | _Raw:
        """The answer to one request (its `status_code` is known before it is sent)."""
        try:
            return await self._answer(scope)
        except Exception:
            # The endpoint may be served past Starlette's exception handlers (api.app.HotPath).
            log.exception("unexpected error on the status endpoint", extra={"event": "unexpected_error"})
            return error(500, "Failed to check profile status")

    async def _answer(self, scope: Scope) -> Response | _Raw:
        try:
            username = normalize_username(scope["path_params"]["username"])
        except InvalidUsername as exc:
            return error(400, str(exc))
        state = scope["state"]
        reader: StatusReader = state["reader"]
        cache: LocalCache | None = state["changes"].cache
        if_none_match = _header(scope, b"if-none-match")
        try:
            resolved = await resolve_status(reader, state["read_through"], username, cache)
        except StoreUnavailable as exc:
            metrics.REDIS_ERRORS.inc()
            log.warning("redis unavailable: %s", exc, extra={"event": "redis_unavailable"})
            return unavailable(*exc.answer)
        except DatabaseUnavailable as exc:
            metrics.POSTGRES_ERRORS.inc()
            log.warning("postgres unavailable on a miss: %s", exc, extra={"event": "postgres_unavailable"})
            return unavailable(*exc.answer)
        now = datetime.now(UTC)
        reading, doc, estimates = resolved.reading, resolved.document, resolved.estimates
        if reading is not None:
            kept = self.answers.get(username, reading, now, estimates)
            if kept is not None:
                return kept.response(if_none_match, now)
        data = render(doc, now, resolved.position, estimates)
        answer: Answer | RunningAnswer = Answer.of(data)
        if reading is not None:
            until = unchanged_until(doc, now, estimates)
            if until is None and (until := duration_only_until(doc, now, estimates)) is not None:
                assert doc.queue is not None and doc.queue.last_attempt is not None  # a running job's, then
                answer = RunningAnswer.of(data, doc.queue.last_attempt)
            self.answers.keep(username, reading, answer, until, estimates)
        return answer.response(if_none_match, now)


class _Raw:
    """A response whose headers are already bytes: nothing left to build."""

    __slots__ = ("body", "headers", "status_code")

    def __init__(self, status_code: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.status_code, self.headers, self.body = status_code, headers, body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.headers})
        await send({"type": "http.response.body", "body": self.body})
