"""`/healthz` (the process runs) and `/readyz` (this process can serve: Redis answers).

Readiness is what a load balancer asks, so it depends on this process alone.
The projector's health is reported, not enforced: a projector that is down or
draining a long backlog must never take every API replica out of rotation,
since Redis still holds an answer for every poll. `degraded` and the heartbeat's
age say how it is doing (and the same age is a metric to alert on).
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import Response

from api import metrics
from api.responses import JSON, NO_STORE
from shared.errors import one_line
from shared.redis_store import reports
from shared.redis_store.connect import STORE_ERRORS, within

log = logging.getLogger(__name__)


async def healthz(request: Request) -> Response:
    """200 while the process runs."""
    return JSON({"status": "ok"}, headers=NO_STORE)


async def readyz(request: Request) -> Response:
    """200 while Redis answers (with the projector's health in the body); 503 saying why not."""
    state = request.state
    try:
        heartbeat, complete = await within(state.settings.redis_timeout_s, reports.readiness(state.store))
    except STORE_ERRORS as exc:
        # The driver's words name hosts and ports: they go to the log, not to the client.
        log.warning("readiness: redis unreachable: %s", one_line(exc), extra={"event": "redis_unavailable"})
        metrics.REDIS_ERRORS.inc()
        return JSON(
            {"ready": False, "reason": "the status store (Redis) does not answer"},
            status_code=503,
            headers={**NO_STORE, "Retry-After": "5"},
        )
    age = heartbeat.age_s() if heartbeat is not None else None
    metrics.HEARTBEAT_AGE.set(age if age is not None else -1)
    limit = state.settings.heartbeat_max_age_s
    degraded = age is None or age > limit
    body = {
        "ready": True,
        "degraded": degraded,
        "heartbeat_age_s": round(age, 3) if age is not None else None,
        "projector": None if heartbeat is None else {
            "backlog": heartbeat.backlog,
            "backlog_age_s": heartbeat.backlog_age_s,
            "rebuilding": heartbeat.rebuilding,
        },
        "projection_complete": bool(complete),
    }
    if degraded:
        body["reason"] = (
            "no projector heartbeat" if age is None else f"the projector's heartbeat is {age:.1f} s old (limit {limit:g} s)"
        )
    return JSON(body, headers=NO_STORE)
