"""`GET /openapi.json`, generated from the answer models in `shared.model.answers` and the stored document model.

`python -m api.openapi > docs/openapi.json` writes the copy kept in the repository
(a unit test fails while it is stale).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import Response

from api.responses import JSON
from shared.model import answers as schemas
from shared.model.document import StatusDocument

_MODELS: tuple[type[BaseModel], ...] = (
    schemas.StatusResponse,
    schemas.StreamStatusEvent,
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


_LAST_EVENT_ID = {
    "name": "Last-Event-ID",
    "in": "header",
    "required": False,
    "description": "The `id:` of the last event received (EventSource sends it when it reconnects)",
    "schema": {"type": "string"},
}
_EVENT_STREAM = {"text/event-stream": {"schema": {"type": "string"}}}
_NO_MORE = {"description": "Resumed with the current version of every username, all terminal: nothing more will come"}
_RETRY_AFTER = {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait"}}
_POLL_HEADERS = {
    "ETag": {"schema": {"type": "string"}, "description": "Weak validator; send it back in If-None-Match"},
    "Cache-Control": {"schema": {"type": "string"}, "description": "max-age no longer than the polling advice"},
}


_STREAM_TEXT = (
    "`event: status` with `data:` the GET's body: one at once, then one on every committed change, "
    "stage boundary crossed by the clock, and moved queue position, until the job is terminal. "
    "A store outage ends the stream with `event: status_error` (data: an ErrorResponse). "
    "With `Last-Event-ID`, what the client holds is not sent again, unless the clock has moved "
    "that version's stage since it was projected; when the client holds the current version "
    "and the job is terminal, the answer is 204. A `: caught up` comment follows the first events."
)
_MULTIPLEXED_TEXT = (
    "\n\nOne stream for many usernames: `data:` is a StreamStatusEvent (the GET's body plus "
    "`username`); it stays open while any of them is not terminal. `id:` is a cursor of the "
    "versions the client holds: `{list}.{base}.{d1}.{d2}...`, `list` 6 hex digits naming the "
    "username list, `base` the smallest version (base 36), `dN` the N-th username's version "
    "less `base` (base 36, empty while none was sent)."
)


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
                    "description": _STREAM_TEXT,
                    "operationId": "streamStatus",
                    "parameters": [_USERNAME, _LAST_EVENT_ID],
                    "responses": {
                        "200": {"description": "An event stream of StatusResponse bodies", "content": _EVENT_STREAM},
                        "204": _NO_MORE,
                        "429": _json(schemas.ErrorResponse, "Too many open streams from this client", _RETRY_AFTER),
                        **errors,
                    },
                }
            },
            "/api/status/stream": {
                "get": {
                    "summary": "Server-Sent Events for up to 50 usernames over one connection",
                    "description": _STREAM_TEXT + _MULTIPLEXED_TEXT,
                    "operationId": "streamStatuses",
                    "parameters": [
                        {
                            "name": "usernames",
                            "in": "query",
                            "required": True,
                            "description": "Comma-separated usernames, normalized as in the path of the GET; "
                            "duplicates after normalization count once; at most 50",
                            "schema": {"type": "string"},
                            "example": "mike_1,Travel_48213,@anna",
                        },
                        _LAST_EVENT_ID,
                    ],
                    "responses": {
                        "200": {"description": "An event stream of StreamStatusEvent bodies", "content": _EVENT_STREAM},
                        "204": _NO_MORE,
                        "400": _json(schemas.ErrorResponse, "An invalid username, or more than 50, naming the entry"),
                        "500": errors["500"],
                        "429": _json(schemas.ErrorResponse, "Too many open streams from this client", _RETRY_AFTER),
                        "503": _json(schemas.UnavailableResponse, "Too many open streams, or the store unreachable", _RETRY_AFTER),
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
                    "summary": "Recently changed usernames (404 unless PROFILE_STATUS_PUBLIC_RECENT_USERNAMES is on)",
                    "operationId": "getRecentUsernames",
                    "parameters": [
                        {"name": "limit", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1, "maximum": 200}}
                    ],
                    "responses": {
                        "200": _json(schemas.RecentResponse, "Newest first"),
                        "400": errors["400"],
                        "404": _json(schemas.ErrorResponse, "Not published by this deployment"),
                        "503": errors["503"],
                    },
                }
            },
            "/healthz": {"get": {"summary": "Liveness", "operationId": "healthz", "responses": {"200": {"description": "The process runs"}}}},
            "/readyz": {
                "get": {
                    "summary": "Readiness: this process can serve (Redis answers); the projector's health is in the body",
                    "operationId": "readyz",
                    "responses": {
                        "200": _json(schemas.Readiness, "Ready"),
                        "503": _json(schemas.Readiness, "Redis does not answer", _RETRY_AFTER),
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


if __name__ == "__main__":
    import json

    print(json.dumps(document(), indent=2, sort_keys=True))
