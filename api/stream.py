"""`GET /api/profile/{username}/status/stream`: Server-Sent Events instead of polling.

One event at once, then one whenever what a poll would answer changes: a
committed change (pushed by the projector through Redis pub/sub), a stage
boundary the clock crosses, or, for an active job, a moved queue position
(checked every few seconds). The stream ends after a terminal state.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import anyio
import orjson
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request
from starlette.responses import Response

from api import metrics
from api.responses import NO_STORE, error, unavailable
from api.status import DatabaseUnavailable, StoreUnavailable, current_status, etag
from shared.render import is_terminal, next_clock_change
from shared.usernames import InvalidUsername, normalize_username

log = logging.getLogger(__name__)
# An active job's position moves with other users' jobs, which publish nothing for it.
ACTIVE_RECHECK_S = 5.0
IDLE_RECHECK_S = 30.0
PING_S = 15
SHUTDOWN_GRACE_S = 1.0


async def stream_status(request: Request) -> Response:
    """Push the status of one username until it is terminal or the client leaves."""
    try:
        username = normalize_username(request.path_params["username"])
    except InvalidUsername as exc:
        return error(400, str(exc))
    state = request.state
    settings = state.settings
    hub = state.changes
    if hub.streams >= settings.sse_max_streams:
        # A client over the cap polls instead (or retries the stream later).
        return unavailable("Too many open streams", "stream_limit", "Too many open streams; poll instead or retry later")
    shutdown = anyio.Event()
    return EventSourceResponse(
        _events(request, username, shutdown),
        ping=PING_S,
        headers={**NO_STORE, "X-Accel-Buffering": "no"},
        send_timeout=30,
        # On server shutdown the stream is told first and ends itself, so the
        # client sees a complete response rather than a cut connection.
        shutdown_event=shutdown,
        shutdown_grace_period=SHUTDOWN_GRACE_S,
    )


async def _until(wake: asyncio.Queue[None], shutdown: anyio.Event, timeout_s: float) -> None:
    """Return on a wake-up, on shutdown, or after `timeout_s`, whichever comes first."""
    waiters = {asyncio.ensure_future(wake.get()), asyncio.ensure_future(shutdown.wait())}
    try:
        await asyncio.wait(waiters, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)


async def _events(request: Request, username: str, shutdown: anyio.Event) -> AsyncIterator[ServerSentEvent]:
    state = request.state
    lifetime_ends = time.monotonic() + state.settings.sse_max_lifetime_s
    last_tag = None
    with state.changes.follow(username) as wake:
        metrics.SSE_CLIENTS.inc()
        try:
            while True:
                try:
                    status = await current_status(state.reader, state.read_through, username, state.changes.cache)
                except (StoreUnavailable, DatabaseUnavailable) as exc:
                    yield ServerSentEvent(event="error", data=orjson.dumps({"success": False, "detail": str(exc)}).decode())
                    return
                tag = etag(status.data)
                if tag != last_tag:
                    last_tag = tag
                    body = {"success": True, "data": status.data}
                    yield ServerSentEvent(event="status", id=str(status.document.version), data=orjson.dumps(body).decode())
                if is_terminal(status.data):
                    return
                now = datetime.now(UTC)
                wait_s = ACTIVE_RECHECK_S if status.data.get("can_be_cancelled") else IDLE_RECHECK_S
                boundary = next_clock_change(status.document, now)
                if boundary is not None:
                    wait_s = min(wait_s, (boundary - now).total_seconds() + 0.01)
                wait_s = min(wait_s, lifetime_ends - time.monotonic())
                if wait_s <= 0:
                    return  # lifetime cap: the client reconnects, with Last-Event-ID
                await _until(wake, shutdown, wait_s)
                if shutdown.is_set():
                    return
        finally:
            metrics.SSE_CLIENTS.dec()
