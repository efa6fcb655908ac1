"""The miss path reads the usernames missed together in one transaction, and fails only what cannot be read."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import psycopg
import pytest

from api.read_through import ReadThrough, Unprojectable, make_pool
from shared.model.document import State
from shared.redis_store.store import StatusStore
from shared.settings import Settings
from shared.wiring import open_store
from tests.integration.faults import rules_fail_for
from tests.integration.rows import add_job, add_profile


@pytest.fixture
async def read_through(settings: Settings) -> AsyncIterator[ReadThrough]:
    pool = make_pool(settings.database_url, 4)
    await pool.open(wait=False)
    async with open_store(settings) as store:
        fallback = ReadThrough(pool, store)
        try:
            yield fallback
        finally:
            await fallback.aclose()
            await pool.close()


async def _documents(store: StatusStore, names: list[str]) -> list[bytes | None]:
    return [await store.redis.get(store.keys.document(n)) for n in names]


async def test_the_misses_of_one_turn_are_one_read_and_one_write(read_through: ReadThrough, db: psycopg.Connection) -> None:
    queued = [f"waiting_{i}" for i in range(8)]
    for name in queued:
        add_job(db, name)
    add_profile(db, "done_before")
    unknown = [f"made_up_{i}" for i in range(12)]
    names = [*queued, "done_before", *unknown]
    before = read_through.pool.get_stats().get("requests_num", 0)
    docs = await asyncio.gather(*(read_through.document(n) for n in [*names, *names[:5]]))  # some asked twice
    assert [d.username for d in docs] == [*names, *names[:5]]
    assert [d.state for d in docs[: len(names)]] == [State.QUEUED] * 8 + [State.EXISTS] + [State.NOT_FOUND] * 12
    assert read_through.pool.get_stats().get("requests_num", 0) - before == 1  # one connection, one transaction
    assert all(await _documents(read_through.store, names))  # every answer written back


async def test_a_value_the_session_cannot_load_fails_only_its_own_username(
    read_through: ReadThrough, db: psycopg.Connection
) -> None:
    # A deployment whose schema drifted: a column of another type, holding a value psycopg refuses.
    db.execute("ALTER TABLE queue ALTER COLUMN error_message TYPE date USING NULL")
    for name in ("plain_1", "plain_2"):
        add_job(db, name)
    drifted = add_job(db, "drifted")
    db.execute("UPDATE queue SET error_message = 'infinity', timestamp = 'infinity' WHERE id = %s", (drifted,))
    docs = await asyncio.gather(*(read_through.document(n) for n in ("plain_1", "drifted", "plain_2", "nobody")))
    assert [d.state for d in docs] == [State.QUEUED, State.QUEUED, State.QUEUED, State.NOT_FOUND]
    drifted_doc = docs[1]
    assert drifted_doc.queue is not None and drifted_doc.queue.timestamp is None  # infinity: no instant a document holds


async def test_rows_that_make_no_document_fail_their_own_poll_only(
    read_through: ReadThrough, db: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    rules_fail_for(monkeypatch, "cursed")
    add_job(db, "cursed")
    add_job(db, "blessed")
    cursed, blessed = await asyncio.gather(
        read_through.document("cursed"), read_through.document("blessed"), return_exceptions=True
    )
    assert isinstance(cursed, Unprojectable) and "a value no rule foresaw" in str(cursed)
    assert not isinstance(blessed, BaseException) and blessed.state is State.QUEUED
    assert await read_through.store.redis.get(read_through.store.keys.document("cursed")) is None


async def test_misses_arriving_while_every_connection_reads_join_the_next_read(
    settings: Settings, database_url: str
) -> None:
    pool = make_pool(settings.database_url, 1)
    await pool.open(wait=False)
    async with open_store(settings) as store:
        fallback = ReadThrough(pool, store)
        blocker = await psycopg.AsyncConnection.connect(database_url)
        try:
            # The first read waits behind a lock; the misses that come meanwhile must not each queue for the pool.
            await blocker.execute("LOCK TABLE queue IN ACCESS EXCLUSIVE MODE")
            first = asyncio.ensure_future(fallback.document("first_one"))
            await asyncio.sleep(0.2)
            later = []
            for i in range(20):
                later.append(asyncio.ensure_future(fallback.document(f"later_{i}")))
                await asyncio.sleep(0.005)  # each in a turn of its own
            await blocker.rollback()
            docs = await asyncio.gather(first, *later)
            assert all(d.state is State.NOT_FOUND for d in docs)
            assert pool.get_stats().get("requests_num", 0) == 2  # the blocked read, then one for the 20
        finally:
            await blocker.close()
            await fallback.aclose()
            await pool.close()
