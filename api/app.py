"""The HTTP API: Starlette routes, state opened in the lifespan, errors as JSON, never a traceback."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from api import collector, metrics
from api.cache import LocalCache
from api.changes import ChangeHub
from api.docs import docs_routes
from api.health import healthz, readyz
from api.limits import StreamSlots
from api.metrics import MetricsMiddleware, RouteMetrics, route_name
from api.openapi import openapi
from api.queue import queue_status, recent_usernames
from api.read_through import ReadThrough, make_pool
from api.responses import error
from api.server import GUARD_STATE_KEY, ConnectionGuard, ConnectionLimits
from api.stalls import watch_stalls
from api.status import StatusEndpoint
from api.stream import stream_status, stream_statuses
from shared.redis_store import reports
from shared.redis_store.connect import STORE_ERRORS
from shared.redis_store.reader import StatusReader
from shared.redis_store.store import StatusStore
from shared.settings import Settings
from shared.wiring import redis_from_settings

log = logging.getLogger(__name__)


STATIC_DIR = Path(__file__).parent / "static"


def _routes(status: StatusEndpoint) -> list[BaseRoute]:
    routes: list[BaseRoute] = [
        # The stream's route comes first: the username may contain "/" (to be rejected with a 400).
        Route("/api/profile/{username:path}/status/stream", stream_status, methods=["GET"]),
        Route("/api/profile/{username:path}/status", status, methods=["GET"]),
        Route("/api/status/stream", stream_statuses, methods=["GET"]),
        Route("/api/queue/status", queue_status, methods=["GET"]),
        Route("/api/queue/recent", recent_usernames, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        *docs_routes(),
    ]
    if STATIC_DIR.is_dir():
        routes.append(Mount("/", StaticFiles(directory=STATIC_DIR, html=True), name="page"))
    return routes


async def metrics_endpoint(request: Request) -> Response:
    """Prometheus text format; refreshes the projector's heartbeat age first."""
    state = request.state
    with contextlib.suppress(*STORE_ERRORS):
        beat = await reports.heartbeat(state.store)
        metrics.HEARTBEAT_AGE.set(beat.age_s() if beat is not None else -1)
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error(exc.status_code, exc.detail)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s", request.url.path, extra={"event": "unexpected_error"})
    return error(500, "Failed to check profile status")


def create_app(settings: Settings | None = None, *, own_process: bool = False) -> Starlette | HotPath:
    """The ASGI app; `settings` default to the environment's.

    `own_process`: the app is the process's only job (`profile-status api`), so it may
    set the garbage collector's policy for the whole process (`api.collector`); an app
    embedded in another program (tests run several in one process) leaves it alone.
    """
    settings = settings or Settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        redis = redis_from_settings(settings, name=f"profile-status-api-{os.getpid()}")
        store = StatusStore(redis, settings.keys(), settings.ttl_policy())
        pool = make_pool(settings.database_url, settings.database_pool_size, settings.miss_max_waiting)
        await pool.open(wait=False)
        # A replica may still hold the old document when the change message arrives, and the
        # cache would keep it: reading from replicas replaces the cache rather than joining it.
        cached = settings.local_cache and not (settings.redis_cluster and settings.redis_read_from_replicas)
        hub = ChangeHub(store, LocalCache() if cached else None)
        reader = StatusReader(redis, store.keys, deadline_s=settings.redis_timeout_s)
        read_through = ReadThrough(pool, store, settings.request_timeout_s)
        tasks = [asyncio.create_task(hub.run()), asyncio.create_task(watch_stalls())]
        if own_process:
            collector.install()
            tasks += [asyncio.create_task(collector.collect_fully_every()), asyncio.create_task(collector.collect_young_every())]
        try:
            yield {
                "settings": settings,
                "store": store,
                "reader": reader,
                "read_through": read_through,
                "changes": hub,
                "stream_slots": StreamSlots(settings.sse_max_streams, settings.sse_max_streams_per_client),
                GUARD_STATE_KEY: ConnectionGuard(ConnectionLimits.from_settings(settings)),
            }
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if own_process:
                collector.uninstall()
            await read_through.aclose()
            await pool.close()
            await reader.aclose()
            await redis.aclose()

    origins = [o.strip() for o in settings.cors_origins.split(",") if o.strip()]
    middleware = [Middleware(MetricsMiddleware)]
    if origins:
        middleware.insert(
            0,
            Middleware(
                CORSMiddleware,
                allow_origins=origins,
                allow_methods=["GET"],
                allow_headers=["If-None-Match", "Last-Event-ID"],
                expose_headers=["ETag", "Retry-After"],
            ),
        )
    status = StatusEndpoint()
    app = Starlette(
        routes=_routes(status),
        lifespan=lifespan,
        middleware=middleware,
        exception_handlers={HTTPException: _http_error, Exception: _unexpected},
    )
    # CORS headers come from Starlette's middleware: then every request takes the whole way.
    return app if origins else HotPath(app, status)


class HotPath:
    """Sends `GET /api/profile/{username}/status` straight to its endpoint, past Starlette.

    The status endpoint is most of the traffic and needs nothing of the stack in
    front of it (routing over every route, exception middleware, a metrics
    wrapper around `send`): it answers its own errors, and it is measured here.
    Anything else goes to Starlette, whose route for the same path stays for
    HEAD and for mounts under a root path.
    """

    def __init__(self, app: Starlette, status: StatusEndpoint) -> None:
        self.app = app
        self.status = status
        self.metrics = RouteMetrics(route_name(status))

    @property
    def routes(self) -> list[BaseRoute]:
        """The Starlette app's routes (the status route among them)."""
        return self.app.routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and not scope.get("root_path"):
            path: str = scope["path"]
            # As the route `/api/profile/{username:path}/status` matches it (the stream ends in /stream).
            if path.startswith(_STATUS_PREFIX) and path.endswith(_STATUS_SUFFIX) and len(path) >= _STATUS_MIN:
                started = time.perf_counter()
                scope["path_params"] = {"username": path[len(_STATUS_PREFIX) : -len(_STATUS_SUFFIX)]}
                response = await self.status.response(scope)
                self.metrics.record(response.status_code, started)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


_STATUS_PREFIX, _STATUS_SUFFIX = "/api/profile/", "/status"
_STATUS_MIN = len(_STATUS_PREFIX) + len(_STATUS_SUFFIX)  # "/api/profile//status": an empty name (400), as the route reads it


def create_served_app() -> Starlette | HotPath:
    """The app as `profile-status api` serves it (uvicorn's factory): settings from the environment,
    the process its own."""
    return create_app(own_process=True)
