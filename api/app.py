"""The HTTP API: Starlette routes, state opened in the lifespan, errors as JSON, never a traceback."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.health import healthz, readyz
from api.read_through import ReadThrough, make_pool
from api.responses import error
from api.status import get_status
from shared.connections import redis_client
from shared.keys import Keys
from shared.reader import StatusReader
from shared.settings import Settings
from shared.store import StatusStore, TtlPolicy

log = logging.getLogger(__name__)


def _routes() -> list[Route]:
    return [
        Route("/api/profile/{username:path}/status", get_status, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error(exc.status_code, exc.detail)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s", request.url.path, extra={"event": "unexpected_error"})
    return error(500, "Failed to check profile status")


def create_app(settings: Settings | None = None) -> Starlette:
    """The ASGI app; `settings` default to the environment's."""
    settings = settings or Settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        redis = redis_client(settings.redis_url, settings.redis_timeout_s)
        store = StatusStore(
            redis,
            Keys(settings.key_prefix),
            TtlPolicy(settings.document_ttl_s, settings.not_found_ttl_s),
        )
        pool = make_pool(settings.database_url, settings.database_pool_size)
        await pool.open(wait=False)
        try:
            yield {
                "settings": settings,
                "store": store,
                "reader": StatusReader(redis, store.keys),
                "read_through": ReadThrough(pool, store),
            }
        finally:
            await pool.close()
            await redis.aclose()

    return Starlette(
        routes=_routes(),
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error, Exception: _unexpected},
    )
