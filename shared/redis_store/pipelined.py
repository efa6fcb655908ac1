"""A Redis connection whose replies reach their callers in the turn of the event loop that reads them.

redis-py's asyncio client reads a reply in the task that sent the command,
through a stream: the bytes arrive in one turn of the loop, the task resumes in
a later one, and taking a connection from the pool costs turns of its own. On a
busy API a turn is every ready request of every connection (a few ms), and a
poll that read Redis waited nine of them (BENCHMARKS.md, "Where the time goes").
This connection is an asyncio Protocol: a command is written when it is sent,
any number are in flight (Redis answers in order), and hiredis parses each reply
in `data_received`, where its callback runs at once: a read costs the round trip
and the turn that hears it.

It does only what the API's hot path needs: commands in, replies (or errors) out
through callbacks. It connects as the redis-py client it is made from would
(address, TLS, user and password, database, client name) when first used and
again after a failure; replies slower than the deadline fail with
`redis.exceptions.TimeoutError` and close the connection (what follows a missing
reply cannot be matched to its command).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import hiredis
from redis.asyncio import Redis
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.exceptions import (
    AuthenticationError,
    ConnectionError,
    InvalidResponse,
    RedisError,
    ResponseError,
    TimeoutError,
)

log = logging.getLogger(__name__)

# A reply, or the RedisError that stands for it (an error reply, a lost connection, a deadline).
OnReply = Callable[[Any], None]
Arg = bytes | str | int


def pack(args: Sequence[Arg]) -> bytes:
    """One command in RESP: an array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts += (b"$%d\r\n" % len(data), data, b"\r\n")
    return b"".join(parts)


@dataclass(frozen=True)
class Endpoint:
    """Where a redis-py client connects and how it introduces itself, read off its settings."""

    host: str
    port: int
    path: str | None
    tls: ssl.SSLContext | None
    username: str | None
    password: str | None
    db: int
    client_name: str | None
    connect_timeout_s: float | None

    @classmethod
    def of(cls, redis: Redis) -> Endpoint | None:
        """The endpoint of `redis`'s connections; None for anything but a plain, TLS or Unix socket
        connection with a fixed password (a test double, a credential provider). This connection
        speaks RESP2 whatever the client speaks: its replies are parsed here, not by redis-py."""
        pool = redis.connection_pool
        if pool.connection_class not in (Connection, SSLConnection, UnixDomainSocketConnection):
            return None
        # Made, not connected: its settings are redis-py's own reading of the URL and options.
        conn = pool.connection_class(**pool.connection_kwargs)
        if conn.credential_provider is not None:
            return None
        return cls(
            host=getattr(conn, "host", ""),
            port=int(getattr(conn, "port", 0)),
            path=getattr(conn, "path", None) or None,
            tls=conn.ssl_context.get() if isinstance(conn, SSLConnection) else None,
            username=conn.username,
            password=conn.password,
            db=int(conn.db or 0),
            client_name=conn.client_name,
            connect_timeout_s=conn.socket_connect_timeout,
        )

    def introduction(self) -> list[tuple[Arg, ...]]:
        """What redis-py sends on a new connection, in its order."""
        commands: list[tuple[Arg, ...]] = []
        if self.password is not None:
            commands.append(("AUTH", self.username, self.password) if self.username else ("AUTH", self.password))
        if self.client_name:
            commands.append(("CLIENT", "SETNAME", self.client_name))
        if self.db:
            commands.append(("SELECT", self.db))
        return commands

    def describe(self) -> str:
        """host:port or the socket's path, for errors."""
        return self.path or f"{self.host}:{self.port}"


class _Socket(asyncio.Protocol):
    """One connection: its commands awaiting replies, in order, each with when it was sent."""

    def __init__(self, on_lost: Callable[[_Socket], None]) -> None:
        self.transport: asyncio.Transport | None = None
        self.pending: deque[tuple[float, OnReply]] = deque()
        self.open = False
        self._on_lost = on_lost
        self._reader = hiredis.Reader(replyError=ResponseError)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are no asyncio.Transport instances, but have its methods.
        self.transport, self.open = cast(asyncio.Transport, transport), True
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def write(self, packed: bytes, on_reply: OnReply, now: float) -> None:
        assert self.transport is not None
        self.pending.append((now, on_reply))
        self.transport.write(packed)

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        while self.pending:
            try:
                reply = self._reader.gets()
            except hiredis.ProtocolError as exc:
                self.close(InvalidResponse(f"Redis sent what is not RESP: {exc}"))
                return
            if reply is False:
                return
            _deliver(self.pending.popleft()[1], reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.close(ConnectionError(f"Connection to Redis lost{': ' + str(exc) if exc else ''}"))

    def close(self, error: RedisError) -> None:
        """End the connection: every command still waiting gets `error`."""
        was_open, self.open = self.open, False
        while self.pending:
            _deliver(self.pending.popleft()[1], error)
        if self.transport is not None:
            self.transport.abort()
        if was_open:
            self._on_lost(self)


def _deliver(on_reply: OnReply, reply: Any) -> None:
    # A callback's failure is its own; the replies behind it still go to theirs.
    try:
        on_reply(reply)
    except Exception:
        log.exception("a Redis reply's callback failed", extra={"event": "reply_callback_failed"})


class PipelinedConnection:
    """Commands written as they are sent, replies handed to callbacks as they are read (see the module)."""

    def __init__(self, endpoint: Endpoint, reply_timeout_s: float | None = None) -> None:
        self.endpoint = endpoint
        self.reply_timeout_s = reply_timeout_s
        self._socket: _Socket | None = None
        self._queued: list[tuple[bytes, OnReply]] = []  # sent while there was no connection
        self._opening: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False

    @classmethod
    def of(cls, redis: Redis, reply_timeout_s: float | None = None) -> PipelinedConnection | None:
        """A connection like `redis`'s, or None if it cannot be made alike (see `Endpoint.of`)."""
        endpoint = Endpoint.of(redis)
        return cls(endpoint, reply_timeout_s) if endpoint is not None else None

    def send(self, args: Sequence[Arg], on_reply: OnReply) -> None:
        """Write one command now (or once connected); `on_reply` gets its reply or a RedisError, once."""
        if self._closed:
            on_reply(ConnectionError("the Redis connection is closed"))
            return
        packed = pack(args)
        sock = self._socket
        if sock is None or not sock.open:
            self._queued.append((packed, on_reply))
            if self._opening is None:
                self._opening = asyncio.get_running_loop().create_task(self._open())
            return
        self._write(sock, packed, on_reply)

    def call(self, *args: Arg) -> asyncio.Future[Any]:
        """One command's reply as a future (failed with the RedisError that stands for it)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def settle(reply: Any) -> None:
            if future.done():  # its caller went away
                return
            if isinstance(reply, RedisError):
                future.set_exception(reply)
            else:
                future.set_result(reply)

        self.send(args, settle)
        return future

    def send_script(self, command: Sequence[Arg], source: str, on_reply: OnReply) -> None:
        """An EVALSHA `command`; if Redis lacks the script (restarted, flushed), load `source` and send it once more."""

        def loaded_or_not(reply: Any) -> None:
            if isinstance(reply, ResponseError) and str(reply).startswith("NOSCRIPT"):
                self.send(("SCRIPT", "LOAD", source), _log_failure)
                self.send(command, on_reply)
            else:
                on_reply(reply)

        self.send(command, loaded_or_not)

    async def aclose(self) -> None:
        """Close the connection; commands still waiting fail with ConnectionError."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._opening is not None:
            self._opening.cancel()
            await asyncio.gather(self._opening, return_exceptions=True)
        if self._socket is not None:
            self._socket.close(ConnectionError("the Redis connection was closed"))
        self._fail_queued(ConnectionError("the Redis connection was closed"))

    def _write(self, sock: _Socket, packed: bytes, on_reply: OnReply) -> None:
        loop = asyncio.get_running_loop()
        sock.write(packed, on_reply, loop.time())
        if self._timer is None and self.reply_timeout_s is not None:
            self._timer = loop.call_at(sock.pending[0][0] + self.reply_timeout_s, self._check_deadline)

    def _check_deadline(self) -> None:
        self._timer = None
        sock, timeout = self._socket, self.reply_timeout_s
        if sock is None or not sock.pending or timeout is None:
            return
        loop = asyncio.get_running_loop()
        oldest = sock.pending[0][0]
        if loop.time() - oldest >= timeout:
            sock.close(TimeoutError(f"Redis did not answer within {timeout:g} s"))
        else:
            self._timer = loop.call_at(oldest + timeout, self._check_deadline)

    def _lost(self, sock: _Socket) -> None:
        if sock is self._socket:
            self._socket = None

    async def _open(self) -> None:
        try:
            sock = await self._connect()
        except (RedisError, OSError) as exc:
            error = exc if isinstance(exc, RedisError) else ConnectionError(f"Error connecting to {self.endpoint.describe()}: {exc}")
            self._fail_queued(error)
            return
        except asyncio.CancelledError:
            self._fail_queued(ConnectionError("the Redis connection was closed"))
            raise
        finally:
            self._opening = None
        self._socket = sock
        queued, self._queued = self._queued, []
        for packed, on_reply in queued:
            if not sock.open:
                _deliver(on_reply, ConnectionError("Connection to Redis lost"))
                continue
            self._write(sock, packed, on_reply)

    async def _connect(self) -> _Socket:
        ep = self.endpoint
        loop = asyncio.get_running_loop()
        sock: _Socket | None = None

        def protocol() -> _Socket:
            nonlocal sock
            sock = _Socket(self._lost)
            return sock

        try:
            async with asyncio.timeout(ep.connect_timeout_s):
                if ep.path:
                    await loop.create_unix_connection(protocol, ep.path)
                else:
                    await loop.create_connection(protocol, ep.host, ep.port, ssl=ep.tls)
                assert sock is not None
                replies = await asyncio.gather(*(_call(sock, loop, command) for command in ep.introduction()))
        except TimeoutError as exc:
            if sock is not None:
                sock.close(TimeoutError("Timeout connecting to Redis"))
            raise TimeoutError(f"Timeout connecting to {ep.describe()}") from exc
        except BaseException:
            if sock is not None:
                sock.close(ConnectionError("the Redis connection was closed"))
            raise
        for command, reply in zip(ep.introduction(), replies, strict=True):
            if isinstance(reply, RedisError):
                sock.close(ConnectionError("Redis refused the connection's introduction"))
                if command[0] == "AUTH":
                    raise AuthenticationError(str(reply))
                raise reply
        return sock

    def _fail_queued(self, error: RedisError) -> None:
        queued, self._queued = self._queued, []
        for _, on_reply in queued:
            _deliver(on_reply, error)


def _call(sock: _Socket, loop: asyncio.AbstractEventLoop, command: Sequence[Arg]) -> asyncio.Future[Any]:
    future: asyncio.Future[Any] = loop.create_future()
    sock.write(pack(command), lambda reply: future.done() or future.set_result(reply), loop.time())
    return future


def _log_failure(reply: Any) -> None:
    if isinstance(reply, RedisError):
        log.warning("loading a script failed: %s", reply, extra={"event": "script_load_failed"})
