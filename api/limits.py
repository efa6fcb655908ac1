"""A bound on request handling time, so one slow dependency cannot pile up requests."""

from __future__ import annotations

import asyncio
import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.responses import unavailable

log = logging.getLogger(__name__)


class TimeoutMiddleware:
    """Answer 503 (Retry-After) when a request has not started its response within `timeout_s`.

    Event streams are exempt: they are long by design and bounded by their own lifetime cap.
    """

    def __init__(self, app: ASGIApp, timeout_s: float) -> None:
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].endswith("/stream"):
            await self.app(scope, receive, send)
            return
        started = False

        async def track(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            async with asyncio.timeout(self.timeout_s):
                await self.app(scope, receive, track)
        except TimeoutError:
            if started:
                raise
            log.warning("request timed out: %s", scope["path"], extra={"event": "request_timeout"})
            response = unavailable("Request timed out", "timeout", "The status check took too long; retry shortly")
            await response(scope, receive, send)
