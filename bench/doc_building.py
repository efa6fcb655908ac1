"""Micro-benchmark: the CPU cost per username of building status documents, as `resync` pays it.

    python -m bench.doc_building [--usernames 100000] [--runs 3] [--serializer auto]

Synthetic rows (the types of `shared.model.rows`, timestamps in the `Etc/UTC` zone as
psycopg hands them out) go through exactly what a rebuild runs per chunk:
`shared.postgres.snapshots.Snapshot(...).projections(now)`, then, per document, its JSON
(what `shared.redis_store.store` writes) and its digest. Row generation is not timed.

As in a rebuild, which streams, only one chunk's rows are alive at a time: each
chunk is generated just before it is timed, so the garbage collector scans a
heap the size of a rebuild's, not one holding every row (that alone would
double the figure). `--gc off` runs with the collector off, to show its share;
`--gc freeze` freezes what is loaded at start, as the projector daemon does.

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
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from uuid import UUID
from zoneinfo import ZoneInfo

from shared.model.document import StatusDocument
from shared.model.rows import ProfileRow, QueueRow
from shared.postgres.snapshots import STREAM_CHUNK_ROWS, Snapshot, UsernameRows

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


def synthetic_rows(usernames: int, seed: int = 1, first: int = 0) -> dict[str, UsernameRows]:
    """`usernames` normalized names (numbered from `first`) with their rows, in the mix the module docstring describes."""
    rng = random.Random(seed * 1_000_003 + first)
    out: dict[str, UsernameRows] = {}
    for i in range(first, first + usernames):
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


def chunks(usernames: int, size: int = STREAM_CHUNK_ROWS, seed: int = 1) -> Iterator[Snapshot]:
    """The rows as `stream_all` yields them: snapshots of `size` usernames, each generated when asked for."""
    for first in range(0, usernames, size):
        yield Snapshot(123456789 << 16, synthetic_rows(min(size, usernames - first), seed, first))


def serializer(name: str) -> Callable[[StatusDocument], str | bytes]:
    """The document's JSON as the store writes it: `to_json` when the model has it, else `model_dump_json`."""
    if name == "auto":
        name = "to_json" if hasattr(StatusDocument, "to_json") else "model_dump_json"
    return getattr(StatusDocument, name)


def run_once(usernames: int, dump: Callable[[StatusDocument], str | bytes]) -> float:
    """CPU seconds to build, serialize and digest the documents of `usernames` usernames (generation excluded).

    CPU time of this process, not wall time: other work on the machine then
    disturbs the figure less. As in a rebuild, a chunk's projections and their
    JSON stay alive while the next chunk is projected (Redis is writing them).
    """
    gc.collect()
    seconds = 0.0
    writing: object = None
    for snap in chunks(usernames):
        start = time.process_time()
        projections = snap.projections(NOW)
        values = []
        for p in projections:
            doc = p.document
            values.append((doc.digest, dump(doc)))
        writing = (projections, values)
        seconds += time.process_time() - start
    del writing
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--usernames", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--serializer", default="auto", help="auto, to_json or model_dump_json")
    parser.add_argument(
        "--gc",
        choices=("on", "off", "freeze"),
        default="on",
        help="the collector as resync runs it (on), disabled, or with everything loaded at start frozen",
    )
    args = parser.parse_args()
    dump = serializer(args.serializer)
    if args.gc == "off":
        gc.disable()
    elif args.gc == "freeze":
        gc.collect()
        gc.freeze()
    per_user = []
    for run in range(args.runs):
        seconds = run_once(args.usernames, dump)
        per_user.append(seconds / args.usernames * 1e6)
        print(f"run {run + 1}: {seconds:.3f} s CPU, {per_user[-1]:.2f} µs/username")
    median = statistics.median(per_user)
    print(f"median: {median:.2f} µs/username ({dump.__name__}, {args.usernames} usernames, gc {args.gc})")


if __name__ == "__main__":
    main()
