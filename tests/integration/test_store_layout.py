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

from shared.model.document import State, StatusDocument
from shared.model.rows import QueueRow
from shared.model.rules import Projection, active_members, position_among, project
from shared.redis_store.keys import Keys
from shared.redis_store.store import StatusStore

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
    assert await store.redis.hget(k.meta(k.shard_of(name)), name) is None
    assert await _entries(store) == []


async def test_a_late_older_write_cannot_bring_a_deleted_username_back(store: StatusStore) -> None:
    if store.clustered:
        pytest.skip("not yet on a cluster: the meta hash and the document live on different slots")
    name = "deleted_meanwhile"
    await store.write([_projection(name, [_row(name)], version=100)])
    await store.write([_projection(name, [], version=300)])  # deleted: its meta field goes, NOT_FOUND stays for its TTL
    # A projector frozen with a batch read before the deletion wakes up after a standby took over.
    outcome = await store.write([_projection(name, [_row(name)], version=200)])
    assert outcome.stale == 1
    assert await _entries(store) == []
    raw = await store.read(name)
    assert raw.document is not None and StatusDocument.model_validate_json(raw.document).state == State.NOT_FOUND
    assert await store.redis.hget(store.keys.meta(store.keys.shard_of(name)), name) is None


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


async def test_fields_that_mention_version_or_status_do_not_fool_the_scripts(store: StatusStore) -> None:
    # The scripts take version and status as arguments, and write_document.lua reads a held
    # document's version only at its fixed place: text in the other fields cannot pass for them.
    name = "version_status_1"
    bait = '{"version":99999999999999999999,"status":"PENDING","state":"NOT_FOUND"}'
    row = QueueRow(uuid4(), name, "PROCESSING", "HIGH", NOW, NOW, 1, bait, '"version":1', NOW)
    await store.write([_projection(name, [row], version=200)])
    k = store.keys
    meta = await store.redis.hget(k.meta(k.shard_of(name)), name)
    assert meta is not None and meta.split(b" ")[0] == b"200" and meta.split(b" ")[2] == b"R"  # PROCESSING
    # A late, older write is refused; a newer one is taken, whatever the held fields say.
    assert (await store.write([_projection(name, [_row(name, "PENDING")], version=100)])).stale == 1
    newer = await store.write([_projection(name, [_row(name, "COMPLETED")], version=300)])
    assert newer.stale == 0
    raw = await store.read(name)
    assert raw.document is not None and raw.document.startswith(b'{"version":300,')
    held = await store.redis.get(k.prefix + name)
    assert held == raw.document


async def test_write_document_compares_the_held_version_only(store: StatusStore) -> None:
    # The cluster's document script on its own (it runs on any Redis): a stored document whose
    # text elsewhere holds a larger "version" does not make an older write look newer, nor the reverse.
    from shared.model.document import VERSION_PREFIX
    from shared.redis_store.store import _WRITE_DOCUMENT

    key = store.keys.prefix + "doc_probe"
    held = b'{"version":500,"schema_version":1,"username":"\\"version\\":1","x":"{\\"version\\":9999}"}'
    await store.redis.set(key, held)
    older = _WRITE_DOCUMENT.command([key], ["400", b'{"version":400}', 60, "1", VERSION_PREFIX])
    newer = _WRITE_DOCUMENT.command([key], ["600", b'{"version":600}', 60, "1", VERSION_PREFIX])
    assert [int(x) for x in await store.run([older])] == [0]
    assert await store.redis.get(key) == held
    assert [int(x) for x in await store.run([newer])] == [2]
    assert await store.redis.get(key) == b'{"version":600}'


async def test_both_writers_publish_the_change_message_records_py_reads(
    store: StatusStore, request: pytest.FixtureRequest
) -> None:
    # write_batch.lua (single Redis, given records.CHANGE_LINE) and records.change_line (cluster) write alike.
    from shared.redis_store.records import Change, parse_changes

    url = request.getfixturevalue("redis_server_url" if not store.clustered else "redis_cluster_url")
    listener = Redis.from_url(url)  # PUBLISH reaches every node of a cluster: one node will do
    pubsub = listener.pubsub()
    channel = store.keys.changes_channel
    await pubsub.subscribe(channel)
    try:
        await pubsub.get_message(timeout=1)  # the subscribe confirmation
        async def heard() -> Change:
            for _ in range(50):
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
                if message is not None:
                    (change,) = parse_changes(message["data"])
                    return change
            raise AssertionError("no change message")

        name = "change_probe"
        projection = _projection(name, [_row(name)], version=77)
        (member,) = projection.active_members
        await store.write([projection], channel)
        change = await heard()
        # The first field names the change counter: a single Redis has one (0), a cluster one per shard.
        counter = store.keys.shard_of(name) if store.clustered else 0
        assert change == Change(counter, change.seq, name, 77, True, ("+" + member,)) and change.seq >= 1
        # What the sets took, exactly: the entry out again when the job finishes.
        await store.write([_projection(name, [_row(name, status="COMPLETED")], version=78)], channel)
        assert await heard() == Change(counter, change.seq + 1, name, 78, True, ("-" + member,))
        # A rebuild's sweep of entries no row explains: a move not listed, of no username.
        shard = store.keys.shard_of(name)
        await store.run([("ZADD", store.keys.pending(shard), 0, member)])
        assert await store.unlist(shard, store.keys.pending(shard), [member, "not-a-member"]) == 1
        assert await heard() == Change(counter, change.seq + 2, None, 0, True, None)
        assert await store.unlist(shard, store.keys.pending(shard), [member]) == 0  # nothing went: no message
    finally:
        await pubsub.aclose()
        await listener.aclose()


async def test_polls_read_together_fail_alone_and_see_one_instant(store: StatusStore) -> None:
    """Reads of one tick share a call on a single Redis: a document that cannot be decoded fails
    its own poll only, and every reading of the call carries the same change number."""
    import asyncio

    from shared.redis_store.reader import StatusReader

    names = [f"together_{i}" for i in range(5)]
    await store.write([_projection(name, [_row(name, minutes_ago=i)], version=3) for i, name in enumerate(names)])
    await store.redis.set(store.keys.document("broken_doc"), b'{"version": 3, "not": "a document"')
    await store.redis.set(store.keys.generation, 1)  # the projection is complete: ranks are served
    async with StatusReader(store.redis, store.keys, deadline_s=5.0) as reader:
        results = await asyncio.gather(*(reader.read(n) for n in [*names, "broken_doc", "nobody_here"]), return_exceptions=True)
    *readings, broken, nobody = results
    assert isinstance(broken, ValueError)
    assert not isinstance(nobody, BaseException) and nobody.document is None
    assert all(not isinstance(r, BaseException) and r.document is not None for r in readings), readings
    positions = [r.position.ahead for r in readings if not isinstance(r, BaseException) and r.position is not None]
    assert sorted(positions) == list(range(5))  # the oldest first, every entry ranked
    if not store.clustered:
        assert len({r.seq for r in readings if not isinstance(r, BaseException)} | {nobody.seq}) == 1
