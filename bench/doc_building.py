"""Micro-benchmark: the CPU cost per username of building status documents, as `resync` pays it.

    python -m bench.doc_building [--usernames 100000] [--runs 3] [--serializer auto]

Synthetic rows (the types of `shared.rows`, timestamps in the `Etc/UTC` zone as
psycopg hands them out) go through exactly what a rebuild runs per chunk:
`shared.truth.Snapshot(...).projections(now)`, then, per document, its JSON
(what `shared.store` writes) and its digest. Row generation is not timed.

The mix: 70% one active row (PENDING or PROCESSING), 20% a completed profile
(profile row plus its COMPLETED queue row), 10% a FAILED row; one username in
ten also has older queue rows (or a second profile spelling).
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from uuid import UUID
from zoneinfo import ZoneInfo

from shared.document import StatusDocument
from shared.rows import ProfileRow, QueueRow
from shared.truth import STREAM_CHUNK_ROWS, Snapshot, UsernameRows

PG_UTC = ZoneInfo("Etc/UTC")  # what psycopg returns with the server's default TimeZone
NOW = datetime(2026, 1, 15, 14, 30, 0, 123456, tzinfo=PG_UTC)
PRIORITIES = ("HIGH", "MEDIUM", "LOW", "LOW")


def _ts(rng: random.Random, hours: float) -> datetime:
    return NOW - timedelta(microseconds=rng.randrange(int(hours * 3600e6)))


def _queue_row(rng: random.Random, name: str, i: int, status: str) -> QueueRow:
    ts = _ts(rng, 2)
    return QueueRow(
        id=UUID(int=rng.getrandbits(128)),
        username=name,
        status=status,
        priority=rng.choice(PRIORITIES),
        timestamp=ts,
        last_attempt=None if status == "PENDING" else ts + timedelta(seconds=rng.randrange(1, 600)),
        attempts=0 if status == "PENDING" else 1 + i % 3,
        error_message="Profile not accessible" if status == "FAILED" else None,
        request_id=f"bench-{i}",
        created_at=ts,
    )


def _profile_row(rng: random.Random, name: str) -> ProfileRow:
    created = _ts(rng, 72)
    return ProfileRow(
        id=UUID(int=rng.getrandbits(128)),
        username=name,
        created_at=created,
        updated_at=created,
        last_scraped_at=created,
        followers_count=rng.randrange(1_000_000),
        posts_count=rng.randrange(5000),
    )


def synthetic_rows(usernames: int, seed: int = 1) -> dict[str, UsernameRows]:
    """`usernames` normalized names with their rows, in the mix the module docstring describes."""
    rng = random.Random(seed)
    out: dict[str, UsernameRows] = {}
    for i in range(usernames):
        key = f"user_{i:07d}"
        name = key.capitalize() if i % 7 == 0 else key
        rows = UsernameRows()
        kind = i % 10
        if kind < 7:
            rows.queue.append(_queue_row(rng, name, i, "PENDING" if kind < 5 else "PROCESSING"))
        elif kind < 9:
            rows.profiles.append(_profile_row(rng, name))
            rows.queue.append(_queue_row(rng, name, i, "COMPLETED"))
        else:
            rows.queue.append(_queue_row(rng, name, i, "FAILED"))
        if i % 10 == 3:  # older history: a FAILED and a COMPLETED row
            rows.queue.append(_queue_row(rng, name, i + 1, "FAILED"))
            rows.queue.append(_queue_row(rng, name, i + 2, "COMPLETED"))
        if i % 50 == 7:  # a second spelling of a completed profile
            rows.profiles.append(_profile_row(rng, name.upper()))
        out[key] = rows
    return out


def chunks(rows: dict[str, UsernameRows], size: int = STREAM_CHUNK_ROWS) -> list[Snapshot]:
    """The rows as `stream_all` yields them: snapshots of `size` usernames."""
    items = list(rows.items())
    return [Snapshot(123456789 << 16, dict(items[i : i + size])) for i in range(0, len(items), size)]


def serializer(name: str) -> Callable[[StatusDocument], str | bytes]:
    """The document's JSON as the store writes it: `to_json` when the model has it, else `model_dump_json`."""
    if name == "auto":
        name = "to_json" if hasattr(StatusDocument, "to_json") else "model_dump_json"
    return getattr(StatusDocument, name)


def run_once(snapshots: list[Snapshot], dump: Callable[[StatusDocument], str | bytes]) -> float:
    """Seconds to build, serialize and digest every document of `snapshots`."""
    gc.collect()
    start = time.perf_counter()
    for snap in snapshots:
        for p in snap.projections(NOW):
            doc = p.document
            dump(doc)
            doc.digest  # noqa: B018 - the store reads it per document
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--usernames", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--serializer", default="auto", help="auto, to_json or model_dump_json")
    args = parser.parse_args()
    snapshots = chunks(synthetic_rows(args.usernames))
    dump = serializer(args.serializer)
    per_user = []
    for run in range(args.runs):
        seconds = run_once(snapshots, dump)
        per_user.append(seconds / args.usernames * 1e6)
        print(f"run {run + 1}: {seconds:.3f} s, {per_user[-1]:.2f} µs/username")
    print(f"median: {statistics.median(per_user):.2f} µs/username ({dump.__name__}, {args.usernames} usernames)")


if __name__ == "__main__":
    main()
