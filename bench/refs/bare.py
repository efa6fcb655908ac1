"""Reference (a): the floor. A Starlette route that returns a constant JSON document.

Same route shape as the real endpoint (a path parameter), same uvicorn, no I/O:
what uvicorn + Starlette cost per request on this machine.
"""

from __future__ import annotations

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

# About the size of a real queued answer, so that bytes on the wire are comparable.
_BODY = orjson.dumps(
    {
        "success": True,
        "data": {
            "completed": False,
            "status": "PENDING",
            "message": "Profile is pending",
            "attempts": 0,
            "priority": "MEDIUM",
            "request_id": "bench-1",
            "timestamp": "2026-01-01T00:00:00Z",
            "last_attempt": None,
            "error_message": None,
            "processing_duration_seconds": None,
            "processing_stage": "queued",
            "progress_percentage": 0,
            "queue_position": 1234,
            "ahead_count": 1233,
            "total_queue_size": 85000,
            "estimated_time_remaining": "about 2 hours",
            "estimated_seconds_remaining": 7200,
            "is_retry_eligible": False,
            "next_retry_time": None,
            "recommended_polling_interval": "30 seconds",
            "recommended_polling_seconds": 30,
            "can_be_cancelled": True,
            "next_action": "wait_for_processing",
        },
    }
)


async def status(request: Request) -> Response:
    """The constant document."""
    return Response(_BODY, media_type="application/json")


app = Starlette(routes=[Route("/api/profile/{username}/status", status, methods=["GET"])])
