"""The status rules, part one: Postgres rows in, a status document out. Pure.

These functions decide which row answers for a username and how active queue
rows are ordered. `shared.render` turns a document into the API's `data`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from shared.document import ProfileFacts, QueueFacts, State, StatusDocument
from shared.rows import ProfileRow, QueueRow

ACTIVE_STATUSES = frozenset({"PENDING", "PROCESSING"})
_PRIORITY_RANK = {"HIGH": 0, "MEDIUM": 1}
_LOWEST_PRIORITY_RANK = 2  # LOW, and anything else, as the seed's COUNT queries rank it
# Timestamps become fixed-width microsecond counts so that members sort as strings.
_EPOCH_OFFSET_US = 10**17
_TS_WIDTH = 20
_NULL_TS_KEY = "0" * _TS_WIDTH
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_ORDINAL = _EPOCH.toordinal()


def _ts_key(ts: datetime | None) -> str:
    if ts is None:
        return _NULL_TS_KEY  # NULL timestamps are the oldest
    # Integer field arithmetic: exact in every year, and several times faster than
    # datetime subtraction, which a rebuild pays on every row.
    offset = ts.utcoffset()
    seconds = (ts.toordinal() - _EPOCH_ORDINAL) * 86400 + ts.hour * 3600 + ts.minute * 60 + ts.second
    if offset:
        seconds -= offset.days * 86400 + offset.seconds
    micros = seconds * 1_000_000 + ts.microsecond + _EPOCH_OFFSET_US
    return str(max(1, micros)).zfill(_TS_WIDTH)


def priority_rank(priority: str | None) -> int:
    """HIGH before MEDIUM before everything else."""
    return _PRIORITY_RANK.get(priority or "", _LOWEST_PRIORITY_RANK)


def queue_member(row: QueueRow, owner: str | None = None) -> str:
    """The row's place in the queue order as a string that sorts like the order.

    Priority, then earlier `timestamp`, then smaller `id`: the sorted-set rank of
    this member is the number of active rows ahead of it. The tail names the
    username the row is filed under (`owner`, default its own, lower-cased), so
    that while a rename is applied the old and the new name each add and remove
    only their own entry, and whether it is pending (P) or running (R), for counts.
    """
    owner = row.username.lower() if owner is None else owner
    tag = hashlib.blake2b(owner.encode(), digest_size=4).hexdigest()
    state = "P" if row.status == "PENDING" else "R"
    return f"{priority_rank(row.priority)}:{_ts_key(row.timestamp)}:{row.id}:{tag}:{state}"


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


def _recency(row: QueueRow) -> tuple[bool, datetime, bool, datetime, int]:
    return (
        row.timestamp is not None,
        row.timestamp or _EPOCH,
        row.created_at is not None,
        row.created_at or _EPOCH,
        row.id.int,
    )


def latest_queue_row(rows: Iterable[QueueRow]) -> QueueRow | None:
    """The most recent entry: greatest timestamp (NULL oldest), then created_at, then id."""
    return max(rows, key=_recency, default=None)


def answering_profile(rows: Iterable[ProfileRow]) -> ProfileRow | None:
    """Of profiles whose names differ only in case, the most recently updated one answers."""
    return max(
        rows,
        key=lambda r: (
            r.updated_at is not None,
            r.updated_at or _EPOCH,
            r.created_at is not None,
            r.created_at or _EPOCH,
            r.id.int,
        ),
        default=None,
    )


def _utc(ts: datetime | None) -> datetime | None:
    """Instants in UTC, so equal facts read in any session time zone hash and render alike."""
    return ts.astimezone(UTC) if ts is not None else None


def _digest(username: str, state: State, facts: ProfileFacts | QueueFacts | None) -> str:
    payload = b"\0".join((username.encode(), state.value.encode(), facts.model_dump_json().encode() if facts else b""))
    return hashlib.blake2b(payload, digest_size=8).hexdigest()


def project(
    username: str,
    profiles: Sequence[ProfileRow],
    queue_rows: Sequence[QueueRow],
    *,
    version: int,
    projected_at: datetime,
) -> StatusDocument:
    """Build the document for `username` (normalized) from all its rows, any case."""
    # model_construct: the values come typed from our own rows, and a rebuild builds
    # a million of these; validation would triple the cost for nothing.
    profile = answering_profile(profiles)
    if profile is not None:
        facts = ProfileFacts.model_construct(
            created_at=_utc(profile.created_at),
            last_scraped_at=_utc(profile.last_scraped_at),
            followers_count=profile.followers_count,
            posts_count=profile.posts_count,
        )
        return StatusDocument.model_construct(
            username=username,
            version=version,
            projected_at=projected_at,
            digest=_digest(username, State.EXISTS, facts),
            state=State.EXISTS,
            profile=facts,
            queue=None,
        )
    latest = latest_queue_row(queue_rows)
    if latest is not None:
        entry = QueueFacts.model_construct(
            id=str(latest.id),
            status=latest.status,
            priority=latest.priority,
            attempts=latest.attempts or 0,
            request_id=latest.request_id,
            timestamp=_utc(latest.timestamp),
            last_attempt=_utc(latest.last_attempt),
            error_message=latest.error_message,
            queue_member=queue_member(latest, username) if is_active(latest) else None,
        )
        return StatusDocument.model_construct(
            username=username,
            version=version,
            projected_at=projected_at,
            digest=_digest(username, State.QUEUED, entry),
            state=State.QUEUED,
            profile=None,
            queue=entry,
        )
    return StatusDocument.model_construct(
        username=username,
        version=version,
        projected_at=projected_at,
        digest=_digest(username, State.NOT_FOUND, None),
        state=State.NOT_FOUND,
        profile=None,
        queue=None,
    )


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
