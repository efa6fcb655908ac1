"""Writing seed rows the way outside writers do, and the expected answer computed from Postgres."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import psycopg

from shared.model.render import render
from shared.model.rows import ProfileRow, QueueRow
from shared.model.rules import active_members, position_among, project, queue_member
from shared.postgres.snapshots import PROFILE_COLUMNS, QUEUE_COLUMNS


def add_job(
    db: psycopg.Connection,
    username: str,
    *,
    status: str = "PENDING",
    priority: str = "HIGH",
    timestamp: datetime | str | None = "now",
    last_attempt: datetime | None = None,
    attempts: int | None = 0,
    error_message: str | None = None,
) -> str:
    """Insert a queue row; returns its id."""
    row_id = str(uuid.uuid4())
    db.execute(
        "INSERT INTO queue (id, username, source, priority, status, timestamp, last_attempt,"
        " attempts, error_message, request_id)"
        " VALUES (%s, %s, 'test', %s, %s, CASE WHEN %s::text = 'now' THEN clock_timestamp()"
        " ELSE %s::timestamptz END, %s, %s, %s, %s)",
        (
            row_id,
            username,
            priority,
            status,
            timestamp if isinstance(timestamp, str) else None,
            None if isinstance(timestamp, str) else timestamp,
            last_attempt,
            attempts,
            error_message,
            f"req-{row_id[:13]}",
        ),
    )
    return row_id


def add_profile(
    db: psycopg.Connection,
    username: str,
    *,
    followers: int | None = 1000,
    posts: int | None = 10,
    created_at: datetime | None = None,
) -> None:
    """Insert a primary_profiles row."""
    db.execute(
        "INSERT INTO primary_profiles (username, followers_count, posts_count, created_at,"
        " last_scraped_at) VALUES (%s, %s, %s, COALESCE(%s, now()), now())",
        (username, followers, posts, created_at),
    )


def expected_data(db: psycopg.Connection, username: str, now: datetime) -> dict[str, Any]:
    """What the endpoint must answer for `username` at `now`, computed from Postgres by the shared rules."""
    with db.transaction():
        profiles = [
            ProfileRow(*r)
            for r in db.execute(
                f"SELECT {PROFILE_COLUMNS} FROM primary_profiles WHERE lower(username) = %s", (username,)
            )
        ]
        queue = [
            QueueRow(*r)
            for r in db.execute(f"SELECT {QUEUE_COLUMNS} FROM queue WHERE lower(username) = %s", (username,))
        ]
        everyone = [
            QueueRow(*r)
            for r in db.execute(f"SELECT {QUEUE_COLUMNS} FROM queue WHERE status IN ('PENDING', 'PROCESSING')")
        ]
    doc = project(username, profiles, queue, version=0, projected_at=now)
    position = None
    if doc.queue is not None and doc.queue.queue_member is not None:
        position = position_among(doc.queue.queue_member, active_members(everyone))
    return render(doc, now, position)


__all__ = ["add_job", "add_profile", "expected_data", "queue_member"]
