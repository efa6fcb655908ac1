"""JSON responses in the contract's envelope, serialized with orjson."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

NO_STORE = {"Cache-Control": "no-store"}
RETRY_AFTER_S = 30


class JSON(Response):
    """application/json via orjson (several times faster than the stdlib on our documents)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error(status_code: int, detail: str) -> JSON:
    """`{"success": false, "detail": ...}`, never cached."""
    return JSON({"success": False, "detail": detail}, status_code=status_code, headers=NO_STORE)


def too_many(detail: str) -> JSON:
    """429 for a client over its share: it should close something or retry later."""
    body = {"success": False, "detail": detail}
    return JSON(body, status_code=429, headers={**NO_STORE, "Retry-After": str(RETRY_AFTER_S)})


def unavailable(detail: str, error_type: str, message: str) -> JSON:
    """503 for a dependency we cannot reach: the client should retry later."""
    body = unavailable_body(detail, error_type, message)
    return JSON(body, status_code=503, headers={**NO_STORE, "Retry-After": str(RETRY_AFTER_S)})


def unavailable_body(detail: str, error_type: str, message: str) -> dict[str, Any]:
    """The contract's body for a dependency we cannot reach, in our words (never a driver's)."""
    return {
        "success": False,
        "detail": detail,
        "data": {
            "completed": False,
            "status": "ERROR",
            "message": message,
            "error_type": error_type,
            "retry_recommended": True,
            "retry_delay": f"{RETRY_AFTER_S} seconds",
            "next_action": "retry_status_check",
            # What a polling frontend reads from every answer (the seed's component, issue 16).
            "recommended_polling_interval": f"{RETRY_AFTER_S} seconds",
            "recommended_polling_seconds": RETRY_AFTER_S,
        },
    }
