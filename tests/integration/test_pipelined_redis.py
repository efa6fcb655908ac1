"""The reader's pipelined connection against a real Redis: order, scripts, failures and recovery."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import AuthenticationError, ConnectionError, RedisError, ResponseError, TimeoutError

from shared.redis_store.connect import redis_client
from shared.redis_store.pipelined import PipelinedConnection


@pytest.fixture
async def client(redis_server_url: str) -> AsyncIterator[Redis]:
    redis = redis_client(redis_server_url, name=f"pipelined-{uuid.uuid4().hex[:8]}")
    assert isinstance(redis, Redis)
    yield redis
    await redis.aclose()


@pytest.fixture
async def connection(client: Redis) -> AsyncIterator[PipelinedConnection]:
    conn = PipelinedConnection.of(client, reply_timeout_s=5.0)
    assert conn is not None
    yield conn
    await conn.aclose()


def call(conn: PipelinedConnection, *args: Any) -> asyncio.Future[Any]:
    """The reply (or the error) of one command, as a future."""
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    conn.send(args, future.set_result)
    return future


async def test_many_commands_in_flight_each_get_their_own_reply(connection: PipelinedConnection, key_prefix: str) -> None:
    key = f"{key_prefix}counter"
    # Sent before the connection exists, then while it is busy: every reply in its command's place.
    replies = await asyncio.gather(*(call(connection, "INCR", key) for _ in range(2_000)))
    assert replies == list(range(1, 2_001))
    values = [f"v{i}".encode() * (i % 50) for i in range(300)]  # empty to long, split across reads
    await asyncio.gather(*(call(connection, "SET", f"{key_prefix}k{i}", v) for i, v in enumerate(values)))
    assert await asyncio.gather(*(call(connection, "GET", f"{key_prefix}k{i}") for i in range(300))) == values


async def test_it_introduces_itself_by_the_clients_name(connection: PipelinedConnection, client: Redis) -> None:
    assert await call(connection, "CLIENT", "GETNAME") == connection.endpoint.client_name.encode()  # type: ignore[union-attr]


async def test_a_script_redis_does_not_hold_is_loaded_and_run(connection: PipelinedConnection, client: Redis) -> None:
    # A source no other test loads: Redis answers NOSCRIPT first, as after a restart or SCRIPT FLUSH.
    source = f"-- {uuid.uuid4().hex}\nreturn {{ARGV[1], #KEYS}}"
    import hashlib

    sha = hashlib.sha1(source.encode()).hexdigest()
    assert (await client.script_exists(sha)) == [False]
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    connection.send_script(("EVALSHA", sha, 2, "k1", "k2", "hello"), source, future.set_result)
    assert await future == [b"hello", 2]
    assert (await client.script_exists(sha)) == [True]
    # A script that cannot be loaded: the caller gets Redis' error, once.
    broken = f"-- {uuid.uuid4().hex}\nthis is not lua"
    future = asyncio.get_running_loop().create_future()
    connection.send_script(("EVALSHA", hashlib.sha1(broken.encode()).hexdigest(), 0), broken, future.set_result)
    reply = await future
    assert isinstance(reply, ResponseError) and "NOSCRIPT" in str(reply)


async def test_an_error_reply_fails_its_own_command_only(connection: PipelinedConnection, key_prefix: str) -> None:
    await call(connection, "SET", f"{key_prefix}s", "text")
    wrong, right = await asyncio.gather(call(connection, "INCR", f"{key_prefix}s"), call(connection, "GET", f"{key_prefix}s"))
    assert isinstance(wrong, ResponseError)
    assert right == b"text"


async def test_a_killed_connection_fails_what_waits_and_the_next_command_reconnects(
    connection: PipelinedConnection, client: Redis
) -> None:
    await call(connection, "PING")
    client_id = await call(connection, "CLIENT", "ID")
    # Blocked on the server when the connection is cut: it and everything behind it fail.
    blocked = call(connection, "BLPOP", f"never-{uuid.uuid4().hex}", 10)
    behind = call(connection, "PING")
    await asyncio.sleep(0.1)
    assert await client.client_kill_filter(_id=client_id) == 1
    for reply in await asyncio.gather(blocked, behind):
        assert isinstance(reply, ConnectionError)
    assert await connection.call("PING") == b"PONG"
    assert await connection.call("CLIENT", "ID") != client_id


async def test_a_reply_later_than_the_deadline_fails_and_the_connection_starts_again(client: Redis) -> None:
    conn = PipelinedConnection.of(client, reply_timeout_s=0.3)
    assert conn is not None
    try:
        first_id = await call(conn, "CLIENT", "ID")
        # The reply that never comes in time: what follows it cannot be matched to its command either.
        slow = call(conn, "BLPOP", f"never-{uuid.uuid4().hex}", 5)
        behind = call(conn, "PING")
        loop = asyncio.get_running_loop()
        started = loop.time()
        slow_reply, behind_reply = await asyncio.gather(slow, behind)
        assert isinstance(slow_reply, TimeoutError) and isinstance(behind_reply, TimeoutError)
        assert loop.time() - started < 4  # the deadline ended it, not BLPOP's own 5 s
        assert await call(conn, "PING") == b"PONG"
        assert await call(conn, "CLIENT", "ID") != first_id
        # The abandoned connection is gone from the server too.
        listing = (await client.execute_command("CLIENT", "LIST", "ID", first_id)).strip()
        assert not listing
    finally:
        await conn.aclose()


async def test_nothing_listening_is_a_connection_error_for_every_command_sent_meanwhile() -> None:
    from demo.embedded import free_port

    redis = redis_client(f"redis://127.0.0.1:{free_port()}/0", timeout_s=1.0)
    assert isinstance(redis, Redis)
    conn = PipelinedConnection.of(redis, reply_timeout_s=1.0)
    assert conn is not None
    try:
        replies = await asyncio.gather(*(call(conn, "PING") for _ in range(3)))
        assert all(isinstance(r, ConnectionError) for r in replies), replies
        assert "127.0.0.1" in str(replies[0])
    finally:
        await conn.aclose()
        await redis.aclose()


async def test_a_wrong_password_is_an_authentication_error(redis_server_url: str, client: Redis) -> None:
    user = f"pipelined_{uuid.uuid4().hex[:8]}"
    await client.acl_setuser(user, enabled=True, passwords=["+right"], commands=["+ping", "+client|setname"])
    try:
        host_port = redis_server_url.split("://", 1)[1].split("/", 1)[0].rsplit("@", 1)[-1]
        for password, expected in (("wrong", AuthenticationError), ("right", None)):
            redis = redis_client(f"redis://{user}:{password}@{host_port}/0")
            assert isinstance(redis, Redis)
            conn = PipelinedConnection.of(redis)
            assert conn is not None
            try:
                reply = await call(conn, "PING")
                if expected is None:
                    assert reply == b"PONG"
                    # Only what the user may do: the connection does not ask for more (no SELECT on db 0).
                    assert isinstance(await call(conn, "GET", "anything"), ResponseError)
                else:
                    assert isinstance(reply, expected), reply
            finally:
                await conn.aclose()
                await redis.aclose()
    finally:
        await client.acl_deluser(user)


async def test_a_closed_connection_refuses_at_once_and_fails_what_was_waiting(connection: PipelinedConnection) -> None:
    await call(connection, "PING")
    waiting = call(connection, "BLPOP", f"never-{uuid.uuid4().hex}", 5)
    await asyncio.sleep(0.05)
    await connection.aclose()
    assert isinstance(await waiting, ConnectionError)
    after = await call(connection, "PING")
    assert isinstance(after, RedisError) and "closed" in str(after)


async def test_the_reader_reads_estimates_and_documents_over_its_own_connection(client: Redis, key_prefix: str) -> None:
    from shared.model.estimates import Estimates, MovingAverage
    from shared.redis_store.keys import Keys
    from shared.redis_store.reader import StatusReader

    keys = Keys(key_prefix)
    measured = Estimates(processing=MovingAverage(200.0, 30))
    await client.hset(keys.estimates, mapping=measured.to_hash())
    async with StatusReader(client, keys, deadline_s=5.0) as reader:
        assert await reader.estimates() == measured
        assert (await reader.read("nobody_at_all")).document is None
    # A value Redis cannot answer for is an error of the poll (a 503), not a wrong answer.
    await client.delete(keys.estimates)
    await client.set(keys.estimates, "not a hash")
    async with StatusReader(client, keys, deadline_s=5.0) as reader:
        with pytest.raises(ResponseError, match="WRONGTYPE"):
            await reader.estimates()
