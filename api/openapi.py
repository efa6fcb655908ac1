"""`GET /openapi.json`, generated from the response models in `api.schemas` and the stored document model."""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import Response

from api import schemas
from api.responses import JSON
from shared.document import StatusDocument

_MODELS: tuple[type[BaseModel], ...] = (
    schemas.StatusResponse,
    schemas.ErrorResponse,
    schemas.UnavailableResponse,
    schemas.QueueStatusResponse,
    schemas.RecentResponse,
    schemas.Readiness,
    StatusDocument,
)
_USERNAME = {
    "name": "username",
    "in": "path",
    "required": True,
    "description": "Instagram username; one leading @ is removed, case-insensitive, at most 30 of [A-Za-z0-9._]",
    "schema": {"type": "string"},
}


def _ref(model: type[BaseModel]) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json(model: type[BaseModel], description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": _ref(model)}}}
    if headers:
        out["headers"] = headers
    return out


_RETRY_AFTER = {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait"}}
_POLL_HEADERS = {
    "ETag": {"schema": {"type": "string"}, "description": "Weak validator; send it back in If-None-Match"},
    "Cache-Control": {"schema": {"type": "string"}, "description": "max-age no longer than the polling advice"},
}


@cache
def document() -> dict[str, Any]:
    """The OpenAPI 3.1 description of the API."""
    _, defs = models_json_schema([(m, "serialization") for m in _MODELS], ref_template="#/components/schemas/{model}")
    errors = {
        "400": _json(schemas.ErrorResponse, "Invalid username"),
        "500": _json(schemas.ErrorResponse, "Unexpected failure (never a traceback)"),
        "503": _json(schemas.UnavailableResponse, "Redis (or Postgres, on a miss) unreachable", _RETRY_AFTER),
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "profile-status",
            "version": "1.0.0",
            "description": "Profile processing status, served from precomputed Redis documents.",
        },
        "paths": {
            "/api/profile/{username}/status": {
                "get": {
                    "summary": "Status of a username's profile processing",
                    "operationId": "getStatus",
                    "parameters": [
                        _USERNAME,
                        {"name": "If-None-Match", "in": "header", "required": False, "schema": {"type": "string"}},
                    ],
                    "responses": {
                        "200": _json(schemas.StatusResponse, "The status", _POLL_HEADERS),
                        "304": {"description": "Unchanged since the ETag sent in If-None-Match"},
                        **errors,
                    },
                }
            },
            "/api/profile/{username}/status/stream": {
                "get": {
                    "summary": "Server-Sent Events: `event: status`, `id:` the document version, `data:` the GET's body",
                    "operationId": "streamStatus",
                    "parameters": [
                        _USERNAME,
                        {"name": "Last-Event-ID", "in": "header", "required": False, "schema": {"type": "string"}},
                    ],
                    "responses": {
                        "200": {"description": "An event stream", "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                        **errors,
                    },
                }
            },
            "/api/queue/status": {
                "get": {
                    "summary": "Active queue overview",
                    "operationId": "getQueueStatus",
                    "responses": {"200": _json(schemas.QueueStatusResponse, "The overview"), "503": errors["503"]},
                }
            },
            "/api/queue/recent": {
                "get": {
                    "summary": "Recently changed usernames",
                    "operationId": "getRecentUsernames",
                    "parameters": [
                        {"name": "limit", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1, "maximum": 200}}
                    ],
                    "responses": {
                        "200": _json(schemas.RecentResponse, "Newest first"),
                        "400": errors["400"],
                        "503": errors["503"],
                    },
                }
            },
            "/healthz": {"get": {"summary": "Liveness", "operationId": "healthz", "responses": {"200": {"description": "The process runs"}}}},
            "/readyz": {
                "get": {
                    "summary": "Readiness: Redis answers and the projector's heartbeat is recent",
                    "operationId": "readyz",
                    "responses": {
                        "200": _json(schemas.Readiness, "Ready"),
                        "503": _json(schemas.Readiness, "Not ready, with the reason", _RETRY_AFTER),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "operationId": "metrics",
                    "responses": {"200": {"description": "Text exposition format", "content": {"text/plain": {"schema": {"type": "string"}}}}},
                }
            },
        },
        "components": {"schemas": defs["$defs"]},
    }


async def openapi(request: Request) -> Response:
    """Serve the document."""
    return JSON(document())
