"""The status rules, part one: Postgres rows in, a status document out. Pure.

These functions decide which row answers for a username and how active queue
rows are ordered (`shared.model.queue_entry`). `shared.model.render` turns a
document into the API's `data`. Any value the rows hold is data: times a
document cannot carry (`shared.model.instants`) become null in it, and still
order rows exactly.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from shared.model.document import (
    SCHEMA_VERSION,
    ProfileFacts,
    QueueFacts,
    State,
    StatusDocument,
    facts_json,
    trusted,
)
from shared.model.instants import Instant, epoch_us, expressible
from shared.model.queue_entry import encode, owner_tag, priority_rank, time_key
from shared.model.rows import ProfileRow, QueueRow

ACTIVE_STATUSES = frozenset({"PENDING", "PROCESSING"})


def queue_member(row: QueueRow, owner: str | None = None) -> str:
    """The row's place in the queue order as a string that sorts like the order.

    Priority, then earlier `timestamp`, then smaller `id`: the sorted-set rank of
    this member is the number of active rows ahead of it. The tail names the
    username the row is filed under (`owner`, default its own, lower-cased), so
    that while a rename is applied the old and the new name each add and remove
    only their own entry, and whether it is pending (P) or running (R), for counts.
    """
    owner = row.username.lower() if owner is None else owner
    return _member(row, str(row.id), owner_tag(owner), row.timestamp)


def _member(row: QueueRow, row_id: str, tag: str, timestamp: Instant | None) -> str:
    """`queue_member` from parts already at hand: the row's id as text, the owner's tag,
    and the row's `timestamp` (the same instant, in any time zone)."""
    return encode(priority_rank(row.priority), time_key(timestamp), row_id, tag, row.status != "PENDING")


@dataclass(frozen=True, slots=True)
class Projection:
    """What the projector writes for one username: its document and its active queue rows."""

    document: StatusDocument
    active_members: Sequence[str]


@dataclass(frozen=True, slots=True)
class QueuePosition:
    """Where a job stands among all active rows: `ahead` of it, `total` active."""

    ahead: int
    total: int


def position_among(member: str, active: Iterable[str]) -> QueuePosition:
    """The position of `member` among every active member (what ZRANK and ZCARD answer in Redis)."""
    members = list(active)
    return QueuePosition(ahead=sum(1 for m in members if m < member), total=len(members))


def is_active(row: QueueRow) -> bool:
    """PENDING and PROCESSING rows hold a place in the queue."""
    return row.status in ACTIVE_STATUSES


def _when(ts: Instant | None) -> tuple[bool, int | float]:
    """Orders times as Postgres does, NULL before every time (infinities and BC dates included)."""
    return (False, 0) if ts is None else (True, epoch_us(ts))


def _recency(row: QueueRow) -> tuple[tuple[bool, int | float], tuple[bool, int | float], int]:
    return _when(row.timestamp), _when(row.created_at), row.id.int


def latest_queue_row(rows: Iterable[QueueRow]) -> QueueRow | None:
    """The most recent entry: greatest timestamp (NULL oldest), then created_at, then id."""
    return max(rows, key=_recency, default=None)


def answering_profile(rows: Iterable[ProfileRow]) -> ProfileRow | None:
    """Of profiles whose names differ only in case, the most recently updated one answers."""
    return max(rows, key=lambda r: (_when(r.updated_at), _when(r.created_at), r.id.int), default=None)


# The digest hashes b"{username}\0{state}\0{the facts' JSON}" (no facts: nothing after the
# second NUL); the facts' JSON is what their model_dump_json() writes, byte for byte.
_EXISTS_INFIX = b"\0" + State.EXISTS.value.encode() + b"\0"
_QUEUED_INFIX = b"\0" + State.QUEUED.value.encode() + b"\0"
_NOT_FOUND_INFIX = b"\0" + State.NOT_FOUND.value.encode() + b"\0"
_EXISTS, _QUEUED, _NOT_FOUND = State.EXISTS, State.QUEUED, State.NOT_FOUND


def _digest(username: str, infix: bytes, facts: bytes) -> str:
    return hashlib.blake2b(username.encode() + infix + facts, digest_size=8).hexdigest()


def project(
    username: str,
    profiles: Sequence[ProfileRow],
    queue_rows: Sequence[QueueRow],
    *,
    version: int,
    projected_at: datetime,
) -> StatusDocument:
    """Build the document for `username` (normalized) from all its rows, any case."""
    return project_with_members(username, profiles, queue_rows, version=version, projected_at=projected_at)[0]


def project_with_members(
    username: str,
    profiles: Sequence[ProfileRow],
    queue_rows: Sequence[QueueRow],
    *,
    version: int,
    projected_at: datetime,
) -> tuple[StatusDocument, list[str]]:
    """`project(...)` and `active_members(queue_rows, username)` in one pass: what a rebuild pays per username.

    A rebuild builds a million of these, so the models are built from trusted
    dicts (our own typed rows: validation would only cost), each row's member
    and id text are computed once, and the facts are serialized once, with
    orjson, for the digest.
    """
    profile = (profiles[0] if len(profiles) == 1 else answering_profile(profiles)) if profiles else None
    latest = None
    if profile is None and queue_rows:
        latest = queue_rows[0] if len(queue_rows) == 1 else latest_queue_row(queue_rows)
    latest_id, latest_ts, key_ts = "", None, None
    if latest is not None:
        latest_id, key_ts = str(latest.id), latest.timestamp
        latest_ts = expressible(key_ts)
        if latest_ts is not None and key_ts.tzinfo is not None:  # type: ignore[union-attr]
            # The same instant, and the cheapest to key. (A naive time keys as UTC, but
            # `expressible` reads it as local time, as the facts always have.)
            key_ts = latest_ts
    latest_member = None
    members: list[str] = []
    tag = ""
    for row in queue_rows:
        if row.status in ACTIVE_STATUSES:
            tag = tag or owner_tag(username)
            if row is latest:
                member = latest_member = _member(row, latest_id, tag, key_ts)
            else:
                member = _member(row, str(row.id), tag, row.timestamp)
            members.append(member)
    if len(members) > 1:
        members.sort()

    if profile is not None:
        fields = {  # instants in UTC, so equal facts read in any session time zone hash and render alike
            "created_at": expressible(profile.created_at),
            "last_scraped_at": expressible(profile.last_scraped_at),
            "followers_count": profile.followers_count,
            "posts_count": profile.posts_count,
        }
        digest = _digest(username, _EXISTS_INFIX, facts_json(fields))
        state, facts, entry = _EXISTS, trusted(ProfileFacts, fields), None
    elif latest is not None:
        fields = {
            "id": latest_id,
            "status": latest.status,
            "priority": latest.priority,
            "attempts": latest.attempts or 0,
            "request_id": latest.request_id,
            "timestamp": latest_ts,
            "last_attempt": expressible(latest.last_attempt),
            "error_message": latest.error_message,
            "queue_member": latest_member,
        }
        digest = _digest(username, _QUEUED_INFIX, facts_json(fields))
        state, facts, entry = _QUEUED, None, trusted(QueueFacts, fields)
    else:
        digest = _digest(username, _NOT_FOUND_INFIX, b"")
        state, facts, entry = _NOT_FOUND, None, None
    document = trusted(
        StatusDocument,
        {
            "version": version,
            "schema_version": SCHEMA_VERSION,
            "username": username,
            "projected_at": projected_at,
            "digest": digest,
            "state": state,
            "profile": facts,
            "queue": entry,
        },
    )
    return document, members


def active_members(queue_rows: Iterable[QueueRow], owner: str | None = None) -> list[str]:
    """Sorted-set members for every active row (all count in positions), filed under `owner`."""
    return sorted(queue_member(r, owner) for r in queue_rows if is_active(r))


def snapshot_version(xmax: int, in_progress: int) -> int:
    """A number that orders Postgres snapshots by what they can see.

    `xmax` (one past the latest completed transaction) never decreases; while it
    stays equal, transactions can only leave the in-progress list. So
    (xmax, fewer in progress) grows with time, and equal values see equal data.
    """
    return (xmax << 16) | (0xFFFF - min(in_progress, 0xFFFF))
