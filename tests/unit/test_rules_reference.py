"""The fast projection against the reference one it replaced, over many random usernames.

`shared.model.rules.project_with_members` builds documents from trusted dicts, serializes
the facts with orjson and computes each row's member once. The reference below is
the plain pydantic projection it replaced (model_construct, the facts'
model_dump_json() hashed): every document, its JSON, its digest and the active
members must come out the same, byte for byte. Equal digests matter beyond
equality of content: Redis compares them with the digests of documents already
stored, so a changed formula would rewrite (and announce) every document once.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from uuid import UUID
from zoneinfo import ZoneInfo

import pytest

from shared.model.document import ProfileFacts, QueueFacts, State, StatusDocument
from shared.model.rows import ProfileRow, QueueRow
from shared.model.rules import (
    active_members,
    answering_profile,
    is_active,
    latest_queue_row,
    priority_rank,
    project,
    project_with_members,
    queue_member,
)
from shared.postgres.snapshots import Snapshot, UsernameRows

# --------------------------------------------------------------------------- the reference

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ref_ts_key(ts: datetime | None) -> str:
    if ts is None:
        return "0" * 20
    offset = ts.utcoffset()
    seconds = (ts.toordinal() - _EPOCH.toordinal()) * 86400 + ts.hour * 3600 + ts.minute * 60 + ts.second
    if offset:
        seconds -= offset.days * 86400 + offset.seconds
    micros = seconds * 1_000_000 + ts.microsecond + 10**18
    return str(micros).zfill(20)


def ref_queue_member(row: QueueRow, owner: str | None = None) -> str:
    owner = row.username.lower() if owner is None else owner
    tag = hashlib.blake2b(owner.encode(), digest_size=4).hexdigest()
    state = "P" if row.status == "PENDING" else "R"
    return f"{priority_rank(row.priority)}:{ref_ts_key(row.timestamp)}:{row.id}:{tag}:{state}"


def _utc(ts: datetime | None) -> datetime | None:
    return ts.astimezone(UTC) if ts is not None else None


def _digest(username: str, state: State, facts: ProfileFacts | QueueFacts | None) -> str:
    payload = b"\0".join((username.encode(), state.value.encode(), facts.model_dump_json().encode() if facts else b""))
    return hashlib.blake2b(payload, digest_size=8).hexdigest()


def ref_project(
    username: str, profiles: Sequence[ProfileRow], queue_rows: Sequence[QueueRow], *, version: int, projected_at: datetime
) -> StatusDocument:
    profile = answering_profile(profiles)
    if profile is not None:
        facts = ProfileFacts.model_construct(
            created_at=_utc(profile.created_at),
            last_scraped_at=_utc(profile.last_scraped_at),
            followers_count=profile.followers_count,
            posts_count=profile.posts_count,
        )
        return StatusDocument.model_construct(
            username=username, version=version, projected_at=projected_at,
            digest=_digest(username, State.EXISTS, facts), state=State.EXISTS, profile=facts, queue=None,
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
            queue_member=ref_queue_member(latest, username) if is_active(latest) else None,
        )
        return StatusDocument.model_construct(
            username=username, version=version, projected_at=projected_at,
            digest=_digest(username, State.QUEUED, entry), state=State.QUEUED, profile=None, queue=entry,
        )
    return StatusDocument.model_construct(
        username=username, version=version, projected_at=projected_at,
        digest=_digest(username, State.NOT_FOUND, None), state=State.NOT_FOUND, profile=None, queue=None,
    )


def ref_active_members(queue_rows: Sequence[QueueRow], owner: str | None = None) -> list[str]:
    return sorted(ref_queue_member(r, owner) for r in queue_rows if is_active(r))


# --------------------------------------------------------------------------- random rows

ZONES = [
    UTC,
    ZoneInfo("Etc/UTC"),  # what psycopg hands out on a server in UTC
    ZoneInfo("America/New_York"),
    ZoneInfo("Asia/Kathmandu"),
    timezone(timedelta(hours=5, minutes=30)),
    timezone(timedelta(hours=-8)),
    timezone(timedelta(hours=-3, seconds=-7)),
]
TEXTS = [
    None,
    "",
    "Profile not accessible",
    'Ünïcödé 💥 "quoted" \\ back\nslash\t\x00\x1f\x7f',
    "\u2028\u2029\ufeff",
    "a" * 300,
]
STATUSES = ["PENDING", "PROCESSING", "COMPLETED", "FAILED", "CANCELLED", "pending", "Weird", None]
PRIORITIES = ["HIGH", "MEDIUM", "LOW", "low", "URGENT", "", None]


def _instant(rng: random.Random, base: datetime, naive: bool = False) -> datetime | None:
    pick = rng.random()
    if pick < 0.08:
        return None
    if pick < 0.12:  # a far year, either side of the epoch
        ts = datetime(rng.choice([2, 1066, 1969, 1970, 2106, 9998]), rng.randint(1, 12), rng.randint(1, 28),
                      rng.randrange(24), rng.randrange(60), rng.randrange(60), rng.randrange(10**6), tzinfo=UTC)
    else:  # near the base, often equal to it (ties), microseconds often zero
        step = rng.choice([0, 0, 1, 10**6, 3600 * 10**6, rng.randrange(10**11)])
        ts = base + timedelta(microseconds=rng.choice([-1, 1]) * step)
    if naive:  # never from Postgres (timestamptz), but handled alike; naive and aware do not compare
        return ts.replace(tzinfo=None)
    return ts.astimezone(rng.choice(ZONES))


def random_rows(rng: random.Random, username: str, base: datetime) -> UsernameRows:
    rows = UsernameRows()
    naive = rng.random() < 0.03
    spellings = [username, username.upper(), username.capitalize()]
    ids = [UUID(int=rng.getrandbits(128)) for _ in range(3)] + [UUID(int=1), UUID(int=2**128 - 1)]
    for _ in range(rng.choice([0, 0, 0, 1, 1, 2])):
        rows.profiles.append(ProfileRow(
            id=rng.choice(ids),
            username=rng.choice(spellings),
            created_at=_instant(rng, base, naive),
            updated_at=_instant(rng, base, naive),
            last_scraped_at=_instant(rng, base, naive),
            followers_count=rng.choice([None, 0, 7, 2**31 - 1, 2**62]),
            posts_count=rng.choice([None, 0, 12345]),
        ))
    for _ in range(rng.choice([0, 1, 1, 1, 2, 3, 5])):
        rows.queue.append(QueueRow(
            id=rng.choice(ids),
            username=rng.choice(spellings),
            status=rng.choice(STATUSES),
            priority=rng.choice(PRIORITIES),
            timestamp=_instant(rng, base, naive),
            last_attempt=_instant(rng, base, naive),
            attempts=rng.choice([None, 0, 1, 3, 2**40]),
            error_message=rng.choice(TEXTS),
            request_id=rng.choice(TEXTS),
            created_at=_instant(rng, base, naive),
        ))
    return rows


def random_usernames(seed: int, count: int) -> list[tuple[str, UsernameRows]]:
    rng = random.Random(seed)
    base = datetime(2026, 1, 15, 14, 30, tzinfo=UTC)
    names = ["mike_1", "ünï_cödé", "a" * 30, "x"]
    return [(f"{rng.choice(names)}{i}", random_rows(rng, f"user_{i}", base)) for i in range(count)]


VERSIONS = [0, 1, 8090864123904, 2**63 - 1, 2**64 + 5]  # the last is beyond orjson: the pydantic fallback
PROJECTED_AT = [
    datetime(2026, 1, 15, 15, 0, tzinfo=UTC),
    datetime(2026, 1, 15, 15, 0, 0, 123456, tzinfo=ZoneInfo("Etc/UTC")),
    datetime(2026, 1, 15, 20, 30, 0, 1, tzinfo=timezone(timedelta(hours=5, minutes=30))),
]

# --------------------------------------------------------------------------- equivalence


@pytest.mark.parametrize("seed", range(4))
def test_documents_json_digest_and_members_equal_the_reference(seed: int) -> None:
    rng = random.Random(seed)
    for name, rows in random_usernames(seed, 1500):
        version, at = rng.choice(VERSIONS), rng.choice(PROJECTED_AT)
        expected = ref_project(name, rows.profiles, rows.queue, version=version, projected_at=at)
        doc, members = project_with_members(name, rows.profiles, rows.queue, version=version, projected_at=at)
        assert doc == expected
        assert doc.digest == expected.digest
        assert doc.model_dump_json() == expected.model_dump_json()
        assert doc.to_json() == expected.model_dump_json().encode()
        assert members == ref_active_members(rows.queue, name)
        assert project(name, rows.profiles, rows.queue, version=version, projected_at=at) == expected


def test_members_equal_the_reference_for_every_owner() -> None:
    for name, rows in random_usernames(9, 1500):
        for row in rows.queue:
            assert queue_member(row) == ref_queue_member(row)
            assert queue_member(row, name) == ref_queue_member(row, name)
        assert active_members(rows.queue) == ref_active_members(rows.queue)


def test_snapshot_projections_are_the_documents_and_members_of_each_username() -> None:
    usernames = random_usernames(11, 500)
    at = PROJECTED_AT[1]
    projections = Snapshot(42, dict(usernames)).projections(at)
    assert len(projections) == len(usernames)
    for (name, rows), p in zip(usernames, projections, strict=True):
        assert p.document == ref_project(name, rows.profiles, rows.queue, version=42, projected_at=at)
        assert p.document.to_json() == p.document.model_dump_json().encode()
        assert list(p.active_members) == ref_active_members(rows.queue, name)
