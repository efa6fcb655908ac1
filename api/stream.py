"""Server-Sent Events instead of polling: one username, or up to 50 over one connection.

`GET /api/profile/{username}/status/stream` and `GET /api/status/stream?usernames=a,b,c`
send one `status` event per username at once, then one whenever what a poll
would answer changes: a committed change (pushed by the projector through
Redis pub/sub), a stage boundary the clock crosses, or, for an active job, a
moved queue position (checked every few seconds). A stream ends once every
username it follows is terminal. A store outage ends it with a `status_error`
event: never `error` or `open`, which EventSource fires for its own reasons.

Resuming with `Last-Event-ID`: a username whose current version the client
holds is not sent again, unless the clock has moved that version's stage since
it was projected. The client may have received it before that crossing, and
the id (the version, by contract) cannot say which, so it gets the current
answer: at worst a repeat of an event it has, never a stage it missed. A
reconnect that holds the current version of every username, all terminal,
gets 204, which tells EventSource to stop reconnecting.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import anyio
import orjson
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from api import cursor, metrics
from api.changes import Wake
from api.limits import StreamSlots
from api.responses import NO_STORE, error, too_many, unavailable, unavailable_body
from api.status import DatabaseUnavailable, Status, StoreUnavailable, current_status, etag
from shared.model.render import clock_moved_since, is_terminal, next_clock_change
from shared.model.usernames import InvalidUsername, normalize_username, normalize_usernames

log = logging.getLogger(__name__)
# An active job's position moves with other users' jobs, which publish nothing for it.
ACTIVE_RECHECK_S = 5.0
IDLE_RECHECK_S = 30.0
PING_S = 15
SHUTDOWN_GRACE_S = 1.0
STATUS_ERROR = "status_error"
CAUGHT_UP = "caught up"


@dataclass(slots=True)
class _Followed:
    """One username of a stream, and what its client holds of it."""

    username: str
    version: int | None  # the version the client holds (from Last-Event-ID until we send one)
    resuming: bool  # `version` came from Last-Event-ID and is not checked yet
    tag: str | None = None  # ETag of the answer the client holds, once known
    terminal: bool = False
    due: float = 0.0  # monotonic time of the next re-read without a change message

    def update(self, status: Status, now: datetime) -> bool:
        """Take a fresh reading; True when the client must be sent it."""
        tag, doc = etag(status.data), status.document
        self.terminal = is_terminal(status.data)
        if self.resuming:
            self.resuming = False
            if _holds(self.version, status, now):
                self.tag = tag
                return False
        changed = tag != self.tag
        # An equal answer under a newer version (a refresh) is what the client holds, too.
        self.tag, self.version = tag, doc.version
        return changed


@dataclass(frozen=True, slots=True)
class _Format:
    """How a stream writes its events: the id, and the data of one username's answer."""

    event_id: Callable[[Sequence[_Followed]], str]
    data: Callable[[str, dict[str, Any]], dict[str, Any]]


_SINGLE = _Format(
    event_id=lambda follows: str(follows[0].version),
    data=lambda username, body: body,
)


def _multiplexed(names: Sequence[str]) -> _Format:
    return _Format(
        event_id=lambda follows: cursor.encode(names, [f.version for f in follows]),
        data=lambda username, body: {"username": username, **body},
    )


async def stream_status(request: Request) -> Response:
    """Push the status of one username until it is terminal or the client leaves."""
    try:
        username = normalize_username(request.path_params["username"])
    except InvalidUsername as exc:
        return error(400, str(exc))
    held = cursor.parse_version(request.headers.get("last-event-id"))
    return await _open(request, [username], [held], _SINGLE)


async def stream_statuses(request: Request) -> Response:
    """Push the status of up to 50 usernames over one connection, while any of them is not terminal."""
    entries = [e for value in request.query_params.getlist("usernames") for e in value.split(",")]
    try:
        names = normalize_usernames(entries)
    except InvalidUsername as exc:
        return error(400, str(exc))
    held = cursor.decode(request.headers.get("last-event-id"), names)
    return await _open(request, names, held, _multiplexed(names))


async def _open(request: Request, names: list[str], held: list[int | None], fmt: _Format) -> Response:
    state = request.state
    slots: StreamSlots = state.stream_slots
    client = request.client.host if request.client else ""
    if slots.full():
        # A client over the cap polls instead (or retries the stream later).
        return unavailable("Too many open streams", "stream_limit", "Too many open streams; poll instead or retry later")
    if slots.client_full(client):
        metrics.REFUSED.labels("429").inc()
        return too_many("Too many open streams from this client; poll instead or close one")
    release = slots.take(client)  # before any await: a burst of requests cannot pass the checks together
    try:
        # Read once before answering: an unreachable store is a 503 like a poll's, and a client
        # that holds every final answer gets 204. (The stream reads again once it follows the
        # names: a change in between is not missed.)
        statuses = await _read(request, names)
    except (StoreUnavailable, DatabaseUnavailable) as exc:
        release()
        log.warning("stream refused: %s", exc, extra={"event": "stream_dependency_unavailable"})
        return unavailable(*exc.answer)
    except BaseException:
        release()
        raise
    now = datetime.now(UTC)
    if all(is_terminal(s.data) and _holds(v, s, now) for v, s in zip(held, statuses, strict=True)):
        release()
        return Response(status_code=204, headers=NO_STORE)
    follows = [_Followed(name, version, resuming=version is not None) for name, version in zip(names, held, strict=True)]
    shutdown = anyio.Event()
    return _HeldStream(
        _events(request, follows, fmt, shutdown),
        release=release,
        ping=PING_S,
        headers={**NO_STORE, "X-Accel-Buffering": "no"},
        send_timeout=30,
        # On server shutdown the stream is told first and ends itself, so the
        # client sees a complete response rather than a cut connection.
        shutdown_event=shutdown,
        shutdown_grace_period=SHUTDOWN_GRACE_S,
    )


class _HeldStream(EventSourceResponse):
    """An event stream that gives its slot back when it ends, however it ends."""

    def __init__(self, *args: Any, release: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()


def _holds(version: int | None, status: Status, now: datetime) -> bool:
    """Whether a client holding `version` has the answer `status` gives (see the module's docstring)."""
    doc = status.document
    if version != doc.version:
        return False
    return is_terminal(status.data) or not clock_moved_since(doc, doc.projected_at, now)


async def _read(request: Request, names: Sequence[str]) -> list[Status]:
    """The current status of each name, read concurrently; the first failure is raised."""
    state = request.state
    results = await asyncio.gather(
        *(current_status(state.reader, state.read_through, n, state.changes.cache) for n in names),
        return_exceptions=True,
    )
    statuses: list[Status] = []
    for result in results:
        if isinstance(result, BaseException):
            raise result
        statuses.append(result)
    return statuses


def _recheck_after(status: Status, now: datetime) -> float:
    """Seconds until this answer may change without a change message: a moved position or the clock."""
    wait_s = ACTIVE_RECHECK_S if status.data.get("can_be_cancelled") else IDLE_RECHECK_S
    boundary = next_clock_change(status.document, now)
    if boundary is not None:
        wait_s = min(wait_s, (boundary - now).total_seconds() + 0.01)
    return wait_s


async def _until(wake: Wake, shutdown: anyio.Event, timeout_s: float) -> None:
    """Return on a wake-up, on shutdown, or after `timeout_s`, whichever comes first."""
    waiters = {asyncio.ensure_future(wake.wait()), asyncio.ensure_future(shutdown.wait())}
    try:
        await asyncio.wait(waiters, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)


async def _events(
    request: Request, follows: list[_Followed], fmt: _Format, shutdown: anyio.Event
) -> AsyncIterator[ServerSentEvent]:
    state = request.state
    lifetime_ends = time.monotonic() + state.settings.sse_max_lifetime_s
    # Registered before the first read, so that no change can fall between the two.
    with state.changes.follow(f.username for f in follows) as wake:
        metrics.SSE_CLIENTS.inc()
        try:
            stale, caught_up = follows, False
            while True:
                if stale:
                    try:
                        statuses = await _read(request, [f.username for f in stale])
                    except (StoreUnavailable, DatabaseUnavailable) as exc:
                        log.warning("stream ended: %s", exc, extra={"event": "stream_dependency_unavailable"})
                        body = unavailable_body(*exc.answer)
                        yield ServerSentEvent(event=STATUS_ERROR, data=orjson.dumps(body).decode())
                        return
                    now = datetime.now(UTC)
                    for followed, status in zip(stale, statuses, strict=True):
                        followed.due = time.monotonic() + _recheck_after(status, now)
                        if followed.update(status, now):
                            data = fmt.data(followed.username, {"success": True, "data": status.data})
                            yield ServerSentEvent(event="status", id=fmt.event_id(follows), data=orjson.dumps(data).decode())
                    if all(f.terminal for f in follows):
                        return
                if not caught_up:
                    # A comment (clients ignore it): the stream is live even when a resumed
                    # client was sent nothing, rather than silent until the first ping.
                    yield ServerSentEvent(comment=CAUGHT_UP)
                    caught_up = True
                wait_s = min(min(f.due for f in follows), lifetime_ends) - time.monotonic()
                if time.monotonic() >= lifetime_ends:
                    return  # lifetime cap: the client reconnects, with Last-Event-ID
                await _until(wake, shutdown, max(0.0, wait_s))
                if shutdown.is_set():
                    return
                changed, now_s = wake.take(), time.monotonic()
                stale = [f for f in follows if f.username in changed or f.due <= now_s]
        finally:
            metrics.SSE_CLIENTS.dec()
