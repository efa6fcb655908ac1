"""The Redis layout under the version rule, on a single Redis (4 shards) and on a cluster (16 shards).

Each write is two scripts on two slots (the document, the username's queue
shard); these tests drive `StatusStore` directly to show that late, repeated
and out-of-order writes still leave the newest state, and that positions
summed over shards equal positions in one global order.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
from redis.asyncio import Redis, RedisCluster

from shared.keys import Keys
from shared.rows import QueueRow
from shared.rules import active_members, position_among, project
from shared.store import Projection, StatusStore

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["single", "cluster"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[StatusStore]:
    """A store under a fresh prefix; its keys are deleted afterwards."""
    prefix = f"t{uuid.uuid4().hex[:10]}:"
    if request.param == "single":
        client: Redis | RedisCluster = Redis.from_url(request.getfixturevalue("redis_server_url"))
        keys = Keys(prefix, shards=4)
    else:
        client = RedisCluster.from_url(request.getfixturevalue("redis_cluster_url"))
        keys = Keys(prefix, shards=16)
    yield StatusStore(client, keys)
    async for key in client.scan_iter(match=f"{prefix}*", count=1000):
        await client.delete(key)
    await client.aclose()


def _row(name: str, status: str = "PENDING", priority: str = "MEDIUM", minutes_ago: float = 1.0) -> QueueRow:
    ts = NOW - timedelta(minutes=minutes_ago)
    return QueueRow(uuid4(), name, status, priority, ts, None, 0, None, None, ts)


def _projection(name: str, rows: list[QueueRow], version: int) -> Projection:
    doc = project(name, [], rows, version=version, projected_at=NOW)
    return Projection(doc, active_members(rows, name))


async def _entries(store: StatusStore) -> list[bytes]:
    k = store.keys
    out: list[bytes] = []
    for shard in k.all_shards:
        for key in k.queue_sets(shard):
            out += await store.redis.zrange(key, 0, -1)
    return sorted(out)


async def test_a_late_older_write_cannot_bring_entries_back(store: StatusStore) -> None:
    pending = [_row("zombie_case")]
    done = [_row("zombie_case", status="COMPLETED")]
    await store.write([_projection("zombie_case", done, version=200)])
    # A projector that read the row while it was pending wakes up and writes late.
    outcome = await store.write([_projection("zombie_case", pending, version=100)])
    assert outcome.stale == 1
    assert await _entries(store) == []
    raw = await store.read("zombie_case")
    assert raw.document is not None and b'"COMPLETED"' in raw.document


async def test_a_username_with_no_rows_is_forgotten(store: StatusStore) -> None:
    k = store.keys
    name = "gone_user"
    await store.write([_projection(name, [_row(name)], version=100)])
    await store.write([_projection(name, [], version=200)])
    assert await store.redis.hget(k.active_members(k.shard_of(name)), name) is None
    assert await _entries(store) == []


async def test_replays_in_any_order_converge_on_the_newest(store: StatusStore) -> None:
    name = "replayed"
    versions = [
        _projection(name, [_row(name, priority="LOW")], version=100),
        _projection(name, [_row(name, status="PROCESSING", priority="HIGH")], version=200),
        _projection(name, [_row(name, status="FAILED")], version=300),
        _projection(name, [_row(name, priority="HIGH"), _row(name, priority="LOW", minutes_ago=5)], version=400),
    ]
    rng = random.Random(7)
    for _ in range(3):
        shuffled = versions[:]
        rng.shuffle(shuffled)
        for p in shuffled:
            await store.write([p])
    newest = versions[-1]
    raw = await store.read(name)
    assert raw.document is not None and f'"digest":"{newest.document.digest}"'.encode() in raw.document
    assert await _entries(store) == sorted(m.encode() for m in newest.active_members)


async def test_positions_over_shards_equal_one_global_order(store: StatusStore) -> None:
    rng = random.Random(11)
    rows = {
        f"user_{i}": [_row(f"user_{i}", rng.choice(["PENDING", "PROCESSING"]), rng.choice(["HIGH", "MEDIUM", "LOW"]),
                           minutes_ago=rng.uniform(0, 60))]
        for i in range(60)
    }
    await store.write([_projection(name, r, version=100) for name, r in rows.items()])
    everyone = [m for name, r in rows.items() for m in active_members(r, name)]
    shards_used = {store.keys.shard_of(name) for name in rows}
    assert len(shards_used) > 1
    for name, r in rows.items():
        raw = await store.read(name)
        expected = position_among(active_members(r, name)[0], everyone)
        assert (raw.rank, raw.queue_size) == (expected.ahead, expected.total), name
    counts = await store.active_counts()
    assert sum(counts.values()) == len(everyone)
    assert await store.queue_sizes() == (len(everyone), sum(m.endswith(":P") for m in everyone))


async def test_scripts_are_loaded_again_after_a_script_flush(store: StatusStore) -> None:
    await store.redis.script_flush()
    outcome = await store.write([_projection("after_flush", [_row("after_flush")], version=100)])
    assert outcome.written == 1
    assert (await store.read("after_flush")).rank == 0
