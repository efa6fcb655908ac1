"""The pipelined connection's wire format and reply handling, on a transport that records what it is given."""

from __future__ import annotations

import asyncio
from typing import Any

import hiredis
import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError, InvalidResponse, ResponseError

from shared.redis_store.connect import redis_client
from shared.redis_store.pipelined import Endpoint, _Socket, pack
from shared.redis_store.tick_batch import TickBatcher


class _Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def abort(self) -> None:
        self.aborted = True

    def get_extra_info(self, name: str) -> Any:
        return None


def _socket() -> tuple[_Socket, _Transport, list[_Socket]]:
    lost: list[_Socket] = []
    sock = _Socket(lost.append)
    transport = _Transport()
    sock.connection_made(transport)  # type: ignore[arg-type]
    return sock, transport, lost


def _two_waiting() -> tuple[_Socket, _Transport, list[_Socket], list[Any]]:
    """A connection with two commands waiting, whose replies (or errors) land in the list returned."""
    sock, transport, lost = _socket()
    got: list[Any] = []
    sock.write(b"", got.append, 0.0)
    sock.write(b"", got.append, 0.0)
    return sock, transport, lost, got


@pytest.mark.parametrize(
    "args",
    [
        ("GET", "plain"),
        ("SET", "ünïcode ключ", b"\x00\r\n\xff binary"),
        ("EVALSHA", "0" * 40, 2, "k1", "k2", -7, 0),
        ("ECHO", ""),
        ("ECHO", "$3\r\nnot a header\r\n"),
    ],
)
def test_a_command_is_an_array_of_bulk_strings_redis_would_read_back(args: tuple[Any, ...]) -> None:
    # hiredis reads RESP both ways: what we write must parse back to exactly the arguments.
    reader = hiredis.Reader()
    reader.feed(pack(args))
    expected = [a if isinstance(a, bytes) else str(a).encode() for a in args]
    assert reader.gets() == expected
    assert reader.gets() is False  # nothing left over


def test_replies_reach_their_callbacks_in_order_inside_data_received() -> None:
    sock, transport, _ = _socket()
    got: list[Any] = []
    for i in range(3):
        sock.write(pack(("GET", f"k{i}")), lambda reply, i=i: got.append((i, reply)), 0.0)
    assert len(transport.written) == 3  # written at once, not at a later turn of the loop
    wire = b"$2\r\nv0\r\n:42\r\n*2\r\n$1\r\na\r\n$-1\r\n"
    # Split anywhere: a reply cut across reads is delivered when it is whole.
    sock.data_received(wire[:5])
    assert got == []
    sock.data_received(wire[5:10])
    assert got == [(0, b"v0")]
    sock.data_received(wire[10:])
    assert got == [(0, b"v0"), (1, 42), (2, [b"a", None])]
    assert not sock.pending


def test_an_error_reply_is_a_response_error_for_its_own_command_only() -> None:
    sock, _, _, got = _two_waiting()
    sock.data_received(b"-NOSCRIPT No matching script\r\n+OK\r\n")
    assert isinstance(got[0], ResponseError) and str(got[0]).startswith("NOSCRIPT")
    assert got[1] == b"OK"


def test_a_failing_callback_does_not_keep_the_next_reply_from_its_own() -> None:
    sock, _, _ = _socket()
    got: list[Any] = []

    def boom(reply: Any) -> None:
        raise RuntimeError("a bug in one caller")

    sock.write(b"", boom, 0.0)
    sock.write(b"", got.append, 0.0)
    sock.data_received(b":1\r\n:2\r\n")
    assert got == [2]


def test_garbage_from_the_server_fails_every_waiting_command_and_ends_the_connection() -> None:
    sock, transport, lost, got = _two_waiting()
    sock.data_received(b"?not resp\r\n")
    assert len(got) == 2 and all(isinstance(r, InvalidResponse) for r in got)
    assert transport.aborted and not sock.open and lost == [sock]


def test_a_lost_connection_fails_every_waiting_command_once() -> None:
    sock, _, lost, got = _two_waiting()
    sock.connection_lost(OSError("reset by peer"))
    sock.connection_lost(None)  # the transport's own report, after ours
    assert len(got) == 2 and all(isinstance(r, ConnectionError) for r in got)
    assert "reset by peer" in str(got[0])
    assert lost == [sock]


async def test_a_sender_that_answers_synchronously_resolves_the_polls_without_another_turn() -> None:
    """The point of the pipelined connection: the reply's callback sets every waiting poll's result."""
    sock, _, _ = _socket()
    batches: list[list[str]] = []

    def send(keys: list[str], done: Any) -> None:
        batches.append(list(keys))
        sock.write(pack(("MGET", *keys)), done, 0.0)

    batcher: TickBatcher[str, Any] = TickBatcher(send)  # type: ignore[arg-type]
    polls = [asyncio.ensure_future(batcher.get(k)) for k in ("a", "b", "a")]
    while not batches:
        await asyncio.sleep(0)
    sock.data_received(b"*2\r\n$2\r\nva\r\n$2\r\nvb\r\n")
    # The reply's callback set every poll's result: one turn of the loop later, each poll is answered.
    await asyncio.sleep(0)
    assert all(p.done() for p in polls)
    assert [p.result() for p in polls] == [b"va", b"vb", b"va"]
    assert batches == [["a", "b"]]


async def test_a_reply_of_the_wrong_length_fails_the_batch_rather_than_leaving_it_waiting() -> None:
    def send(keys: list[str], done: Any) -> None:
        done(["only one"])

    batcher: TickBatcher[str, Any] = TickBatcher(send)  # type: ignore[arg-type]
    results = await asyncio.gather(batcher.get("a"), batcher.get("b"), return_exceptions=True)
    assert all(isinstance(r, ValueError) for r in results)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1:6379/0", ("127.0.0.1", 6379, None, False, None, None, 0)),
        ("redis://:pw@cache:7000/3", ("cache", 7000, None, False, None, "pw", 3)),
        ("rediss://reader:p%40ss%3Aw@cache:6380/1", ("cache", 6380, None, True, "reader", "p@ss:w", 1)),
        ("unix:///run/redis.sock?db=2", ("", 0, "/run/redis.sock", False, None, None, 2)),
    ],
)
def test_it_connects_where_and_as_the_client_it_is_made_from(url: str, expected: tuple[Any, ...]) -> None:
    endpoint = Endpoint.of(redis_client(url, name="reader-test"))  # type: ignore[arg-type]
    assert endpoint is not None
    got = (endpoint.host, endpoint.port, endpoint.path, endpoint.tls is not None, endpoint.username, endpoint.password, endpoint.db)
    assert got == expected
    assert endpoint.client_name == "reader-test"
    introduction = endpoint.introduction()
    assert introduction[-1] == ("SELECT", expected[-1]) if expected[-1] else all(c[0] != "SELECT" for c in introduction)
    if expected[5] is not None:
        assert introduction[0] == ("AUTH", *([expected[4]] if expected[4] else []), expected[5])


def test_a_client_it_cannot_connect_alike_is_left_to_redis_py() -> None:
    from fakeredis import FakeAsyncRedis
    from redis.credentials import UsernamePasswordCredentialProvider

    assert Endpoint.of(FakeAsyncRedis()) is None
    assert Endpoint.of(Redis(credential_provider=UsernamePasswordCredentialProvider("u", "p"))) is None
