"""Opening connections to PostgreSQL with a start-up deadline and our own error."""

from __future__ import annotations

import asyncio
import time

import psycopg
from psycopg import AsyncConnection

from shared.errors import PostgresUnavailable, one_line, redacted
from shared.postgres.types import register_loaders, session_options

RETRY_EVERY_S = 0.25
# A Postgres that stops answering (a cut network, a frozen host) is given up on after about this long.
DEAD_PEER_S = 10


def connection_options(url: str) -> dict[str, str | int]:
    """libpq parameters every session of ours uses: session settings, and dead-peer detection."""
    return {
        "options": session_options(url),
        "keepalives": 1,
        "keepalives_idle": 5,
        "keepalives_interval": 2,
        "keepalives_count": 3,
        "tcp_user_timeout": DEAD_PEER_S * 1000,
    }


async def connect_postgres(
    url: str, timeout_s: float, *, autocommit: bool = False, application_name: str = "profile-status"
) -> AsyncConnection:
    """Connect, retrying until `timeout_s`; raise `PostgresUnavailable` with the last reason.

    `application_name` shows in pg_stat_activity, so operators can tell our sessions apart.
    The session reads every timestamp a table may hold (`shared.postgres.types`), and
    notices a peer that vanished without closing within `DEAD_PEER_S` (TCP keepalives
    and a user timeout): a blocked network fails a query instead of hanging it.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        remaining = deadline - time.monotonic()
        try:
            conn = await AsyncConnection.connect(
                url,
                autocommit=autocommit,
                connect_timeout=max(1, int(remaining)),
                application_name=application_name,
                **connection_options(url),
            )
            register_loaders(conn)
            return conn
        except psycopg.Error as exc:
            if time.monotonic() + RETRY_EVERY_S >= deadline:
                raise PostgresUnavailable(
                    f"cannot reach PostgreSQL at {redacted(url)} within {timeout_s:g} s: {one_line(exc)}"
                ) from exc
            await asyncio.sleep(RETRY_EVERY_S)
