"""The limits uvicorn lacks: how long and how much a client may take to send a request head, and its connections.

uvicorn (httptools) starts no timer when a connection opens and cancels its
keep-alive timer on any byte, so a client that connects and sends nothing, or
one header line every few seconds (slowloris), holds its connection for ever;
and it buffers a request head of any size (measured: 256 MiB of one header
line took 260 MB of memory). `GuardedHttpToolsProtocol` closes a connection
whose head is not complete within `PROFILE_STATUS_HEADER_TIMEOUT_S` (408) or
grows beyond `PROFILE_STATUS_MAX_HEADER_BYTES` (431), refuses a client address beyond
`PROFILE_STATUS_MAX_CONNECTIONS_PER_CLIENT` connections (429), and closes a
connection whose request body is still arriving when the answer is sent (our
routes read none: measured, a 100 MB Content-Length trickled at a byte a second
held its connection open after the 405).
Connections from proxies trusted with `--forwarded-allow-ips` are not counted
per address (they carry many clients); the stream limits then see the real
client address.

uvicorn builds the protocol with the lifespan's state; the limits and the
per-address counts live there (`ConnectionGuard`), one per process.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from api import metrics
from shared.settings import Settings

log = logging.getLogger(__name__)
GUARD_STATE_KEY = "connection_guard"


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """What one connection, and one client address, may take of an API process."""

    head_timeout_s: float
    max_head_bytes: int
    per_client: int  # 0: no limit

    @classmethod
    def from_settings(cls, settings: Settings) -> ConnectionLimits:
        """The limits the settings ask for."""
        return cls(settings.header_timeout_s, settings.max_header_bytes, settings.max_connections_per_client)


class ConnectionGuard:
    """Counts open connections per client address for one process."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self._by_client: Counter[str] = Counter()

    def admit(self, client: str) -> bool:
        """Count a new connection of `client`, unless it already holds its share."""
        if self.limits.per_client and self._by_client[client] >= self.limits.per_client:
            return False
        self._by_client[client] += 1
        return True

    def release(self, client: str) -> None:
        """Forget one connection of `client`."""
        self._by_client[client] -= 1
        if self._by_client[client] <= 0:
            del self._by_client[client]


def _trusted(config: Any, host: str) -> bool:
    """Whether `host` is a proxy uvicorn trusts for X-Forwarded-For (only with proxy headers on)."""
    if not config.proxy_headers:
        return False
    allowed = config.forwarded_allow_ips
    entries = [e.strip() for e in (allowed.split(",") if isinstance(allowed, str) else allowed) if e.strip()]
    if "*" in entries:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host in entries
    for entry in entries:
        try:
            if address in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


_REFUSALS = {
    408: b"HTTP/1.1 408 Request Timeout\r\n",
    429: b"HTTP/1.1 429 Too Many Requests\r\nretry-after: 30\r\n",
    431: b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
}


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline and a size limit on request heads, and connections per address."""

    _guard: ConnectionGuard | None = None
    _counted: str | None = None
    _head_timer: asyncio.TimerHandle | None = None
    _head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._guard = self.app_state.get(GUARD_STATE_KEY)
        if self._guard is None:  # no lifespan state (the app did not start): uvicorn's own behaviour
            return
        host = self.client[0] if self.client else ""
        if not _trusted(self.config, host):
            if not self._guard.admit(host):
                self._refuse(429, "connection limit per client reached")
                return
            self._counted = host
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        if self._guard is not None and self._counted is not None:
            self._guard.release(self._counted)
            self._counted = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._head_timer is not None and self._guard is not None:
            # Bytes before the head is complete (a GET has no body worth the name).
            self._head_bytes += len(data)
            if self._head_bytes > self._guard.limits.max_head_bytes:
                self._refuse(431, "request head too large")
                return
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._stop_head_timer()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        pipelined = bool(self.pipeline)  # a next request that arrived whole, which super() now starts
        # A body still arriving after the answer (our routes read none) would hold the
        # connection for as long as the client trickles it: close instead.
        unread_body = self.cycle is not None and self.cycle.more_body
        super().on_response_complete()
        if unread_body and not self.transport.is_closing():
            self.transport.close()
        # The next request on this connection gets its own deadline (uvicorn's keep-alive
        # timer only covers a silent connection).
        if self._guard is not None and not pipelined and not self.transport.is_closing():
            self._await_head()

    def _await_head(self) -> None:
        assert self._guard is not None
        self._stop_head_timer()
        self._head_bytes = 0
        self._head_timer = self.loop.call_later(self._guard.limits.head_timeout_s, self._head_timeout)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        self._refuse(408, "request head not complete in time")

    def _refuse(self, status: int, why: str) -> None:
        """Answer `status` with no body and close; a metric, and a debug line (an attack's volume is no news)."""
        self._stop_head_timer()
        metrics.REFUSED.labels(str(status)).inc()
        log.debug("connection refused: %s", why, extra={"event": "connection_refused", "status": status})
        if not self.transport.is_closing():
            self.transport.write(_REFUSALS[status] + b"content-length: 0\r\nconnection: close\r\n\r\n")
            self.transport.close()
