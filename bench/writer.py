"""Writers that stand in for the workers: single-row updates, paced or committed together.

Every update is what a worker does when it picks a job up or puts it back: the
row flips between PENDING and PROCESSING, `last_attempt` moves, and
`error_message` gets a token unique to the run, so the document always changes
and the projector always publishes it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import psycopg

FLIP = """
UPDATE queue
SET status = CASE WHEN status = 'PENDING' THEN 'PROCESSING' ELSE 'PENDING' END,
    last_attempt = now(), error_message = %s, updated_at = now()
WHERE lower(username) = %s
"""


def token() -> str:
    """A value no document holds yet."""
    return f"bench-{uuid.uuid4().hex[:12]}"


@dataclass(frozen=True)
class Paced:
    """When each update's COMMIT returned (unix time), and the rate actually achieved."""

    commits: dict[str, float]
    achieved_per_s: float


def paced(url: str, usernames: Sequence[str], rate: float, seconds: float) -> Paced:
    """One update per username, each its own transaction, at `rate` per second for at most `seconds`.

    The schedule is absolute (`start + i / rate`), so a slow commit is caught up
    rather than lowering the rate.
    """
    mark = token()
    commits: dict[str, float] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        start = time.perf_counter()
        for i, name in enumerate(usernames):
            due = start + i / rate
            if due - start >= seconds:
                break
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            conn.execute(FLIP, (mark, name))
            commits[name] = time.time()
        elapsed = time.perf_counter() - start
    return Paced(commits, len(commits) / elapsed if elapsed > 0 else 0.0)


def committed_together(url: str, usernames: Sequence[str]) -> float:
    """One single-row UPDATE per username, all in one transaction; returns when COMMIT returned.

    Each statement fires the capture trigger once, so the projector sees one
    change-log entry per update, exactly as from separate transactions, but they
    all become visible at one instant: the start of the projector's work.
    """
    mark = token()
    with psycopg.connect(url) as conn:
        with conn.cursor() as cur:
            cur.executemany(FLIP, [(mark, name) for name in usernames])
        conn.commit()
        return time.time()
