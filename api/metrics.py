"""The API's Prometheus metrics and the ASGI middleware that records them.

With several uvicorn workers, set PROMETHEUS_MULTIPROC_DIR (the `api` command
does it for you) so that /metrics adds up every worker.
"""

from __future__ import annotations

import os
import time
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUESTS = Counter("profile_status_api_requests", "HTTP requests", ["route", "code"])
LATENCY = Histogram(
    "profile_status_api_request_seconds",
    "Time to the response's first byte, by route",
    ["route"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
NOT_MODIFIED = Counter("profile_status_api_not_modified", "Polls answered 304 Not Modified")
SSE_CLIENTS = Gauge("profile_status_api_sse_clients", "Open event streams", multiprocess_mode="livesum")
REDIS_ERRORS = Counter("profile_status_api_redis_errors", "Requests that found Redis unreachable")
POSTGRES_ERRORS = Counter("profile_status_api_postgres_errors", "Misses that found Postgres unreachable")
BAD_MESSAGES = Counter("profile_status_api_bad_change_messages", "Change messages that could not be read (ignored)")
CACHE_RESETS = Counter(
    "profile_status_api_cache_resets", "Times the process cache was emptied because a change message was lost"
)
POSITIONS_SHIFTED = Counter(
    "profile_status_api_positions_shifted",
    "Held queue positions moved by the change messages' queue moves instead of being read from Redis again",
)
STALLS = Histogram(
    "profile_status_api_event_loop_stall_seconds",
    "How late the event loop ran a timer (longer than 1 ms): a stall every waiting request shares",
    buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1),
)
STALL_MAX = Gauge(
    "profile_status_api_event_loop_stall_max_seconds",
    "The longest event-loop stall since the previous scrape of /metrics",
    multiprocess_mode="max",
)
STALL_MAX_ON_CPU = Gauge(
    "profile_status_api_event_loop_stall_max_on_cpu_seconds",
    "The longest event-loop stall since the previous scrape, counting only the time this process ran meanwhile"
    " (the rest of a stall is waiting for a core that other processes held)",
    multiprocess_mode="max",
)
MISSES = Counter("profile_status_api_misses", "Polls that found no document and read through to Postgres")
REFUSED = Counter(
    "profile_status_api_refused",
    "Connections and streams refused by the abuse limits, by status (408 slow head, 429 per client, 431 large head)",
    ["status"],
)
HEARTBEAT_AGE = Gauge(
    "profile_status_api_projector_heartbeat_age_seconds",
    "Age of the projector's heartbeat as this API sees it (-1: none)",
    multiprocess_mode="max",
)


_worst_stall = 0.0
_worst_on_cpu = 0.0


def note_stall(seconds: float, on_cpu: float | None = None) -> None:
    """A stall of `seconds`, `on_cpu` of them running (all, when not told): the gauges keep
    the worst until the next scrape."""
    global _worst_stall, _worst_on_cpu
    on_cpu = seconds if on_cpu is None else on_cpu
    if seconds > _worst_stall:
        _worst_stall = seconds
        STALL_MAX.set(seconds)
    if on_cpu > _worst_on_cpu:
        _worst_on_cpu = on_cpu
        STALL_MAX_ON_CPU.set(on_cpu)


def exposition() -> tuple[bytes, str]:
    """The metrics text, summed over workers when running multi-process; starts the next stall window."""
    global _worst_stall, _worst_on_cpu
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        out = generate_latest(registry), CONTENT_TYPE_LATEST
    else:
        out = generate_latest(), CONTENT_TYPE_LATEST
    _worst_stall = _worst_on_cpu = 0.0
    STALL_MAX.set(0.0)
    STALL_MAX_ON_CPU.set(0.0)
    return out


class RouteMetrics:
    """Recording one route's requests without a middleware (for `api.app.HotPath`)."""

    def __init__(self, route: str) -> None:
        self.route = route
        # Label lookups take a lock each: the children are looked up once.
        self._latency = LATENCY.labels(route)
        self._requests: dict[int, Any] = {}

    def record(self, code: int, started: float) -> None:
        """One request answered with `code`, whose answer was ready now (`started`: its perf_counter at arrival)."""
        self._latency.observe(time.perf_counter() - started)
        counter = self._requests.get(code) or self._requests.setdefault(code, REQUESTS.labels(self.route, str(code)))
        counter.inc()
        if code == 304:
            NOT_MODIFIED.inc()


class MetricsMiddleware:
    """Counts requests and their latency by route (the endpoint's name) and status code."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # Label lookups take a lock each; the few (route, code) pairs are kept here instead.
        self._requests: dict[tuple[str, int], Any] = {}
        self._latency: dict[str, Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        code = 500

        async def send_and_measure(message: Message) -> None:
            nonlocal code
            if message["type"] == "http.response.start":
                code = message["status"]
                # The router has filled in the endpoint by now.
                route = _route(scope)
                latency = self._latency.get(route) or self._latency.setdefault(route, LATENCY.labels(route))
                latency.observe(time.perf_counter() - started)
                if code == 304:
                    NOT_MODIFIED.inc()
            await send(message)

        try:
            await self.app(scope, receive, send_and_measure)
        finally:
            key = (_route(scope), code)
            counter = self._requests.get(key) or self._requests.setdefault(key, REQUESTS.labels(key[0], str(code)))
            counter.inc()


def _route(scope: Scope) -> str:
    endpoint = scope.get("endpoint")
    return "unmatched" if endpoint is None else route_name(endpoint)


def route_name(endpoint: Any) -> str:
    """The `route` label of an endpoint: its function's name, or the one its class stands for."""
    return getattr(endpoint, "__name__", None) or _ROUTE_NAMES.get(type(endpoint).__name__, type(endpoint).__name__)


# Class-based endpoints are labelled like the function they stand for.
_ROUTE_NAMES = {"StatusEndpoint": "get_status", "StaticFiles": "static"}
