"""What one client can tie up of `profile-status api` is bounded (docs/security.md, "Abuse limits").

The real command runs as a child process, with small limits so that each is
reached with a handful of sockets. Other clients are other loopback addresses
(127.0.0.2, 127.0.0.3, ...: all of 127/8 reaches a server on 127.0.0.1).
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

import httpx
import psycopg
import pytest

from demo.embedded import free_port
from shared.settings import Settings
from tests.integration.cli_helpers import CLI, cli_env
from tests.integration.rows import add_job
from tests.integration.stack import eventually

LIMITS = {
    "PROFILE_STATUS_HEADER_TIMEOUT_S": "1",
    "PROFILE_STATUS_MAX_HEADER_BYTES": "4096",
    "PROFILE_STATUS_MAX_CONNECTIONS_PER_CLIENT": "3",
    "PROFILE_STATUS_SSE_MAX_STREAMS_PER_CLIENT": "2",
    "PROFILE_STATUS_MAX_CONNECTIONS": "8",
    "PROFILE_STATUS_KEEP_ALIVE_S": "30",
}
HANG_GUARD_S = 15.0  # a socket the server should close; not a measure of anything


class Api:
    """`profile-status api` in a child process."""

    def __init__(self, settings: Settings, *flags: str, **env: str) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [*CLI, "api", "--port", str(self.port), *flags],
            env=cli_env(settings, **{**LIMITS, **env}),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        eventually(self._serving, timeout=20)

    def _serving(self) -> bool:
        assert self.proc.poll() is None, "profile-status api exited"
        try:
            return self.get("/healthz", "127.0.0.9").status_code == 200
        except httpx.TransportError:
            return False

    def connect(self, source: str) -> socket.socket:
        """A raw connection from `source`."""
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=HANG_GUARD_S, source_address=(source, 0))
        return sock

    def get(self, path: str, source: str, headers: dict[str, str] | None = None) -> httpx.Response:
        """One request on a fresh connection from `source`."""
        transport = httpx.HTTPTransport(local_address=source)
        with httpx.Client(base_url=f"http://127.0.0.1:{self.port}", transport=transport, timeout=HANG_GUARD_S) as c:
            return c.get(path, headers=headers)

    def stop(self) -> None:
        """SIGTERM and wait."""
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture
def api(settings: Settings) -> Iterator[Api]:
    """The API with small limits."""
    server = Api(settings)
    yield server
    server.stop()


def answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def one_response(sock: socket.socket) -> bytes:
    """One whole response (head and Content-Length body) from a kept-alive connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def status_of(reply: bytes) -> int:
    """The status code of the first response in `reply`."""
    return int(reply.split(b" ", 2)[1])


def test_a_request_head_must_arrive_whole_and_in_time(api: Api) -> None:
    # Silent: closed at the deadline.
    with api.connect("127.0.0.2") as silent:
        assert status_of(answer(silent)) == 408
    # Slowloris: each line in time, the head as a whole not.
    with api.connect("127.0.0.2") as slow:
        slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: a\r\n")
        with pytest.raises(OSError):
            for _ in range(int(HANG_GUARD_S / 0.2)):
                slow.sendall(b"X-A: b\r\n")
                time.sleep(0.2)
        # (the server answered 408 and closed; a write after that fails)
    # Too large: cut at the size limit, whatever the rate.
    with api.connect("127.0.0.2") as large:
        large.sendall(b"GET /healthz HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 8192 + b"\r\n\r\n")
        assert status_of(answer(large)) == 431
    # A body nobody reads, trickled: the connection closes once the answer is out.
    with api.connect("127.0.0.2") as trickle:
        trickle.sendall(b"POST /api/profile/x/status HTTP/1.1\r\nHost: a\r\nContent-Length: 100000000\r\n\r\nx")
        assert status_of(answer(trickle)) == 405
    # A keep-alive connection gets a fresh deadline for each request, and time to think between them.
    with api.connect("127.0.0.2") as polite:
        for _ in range(3):
            polite.sendall(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
            assert status_of(one_response(polite)) == 200
            time.sleep(0.6)


def test_connections_are_bounded_per_client_and_per_process(settings: Settings) -> None:
    # Idle sockets stay until the head deadline: make it long enough not to race this test.
    api = Api(settings, PROFILE_STATUS_HEADER_TIMEOUT_S="120")
    with ExitStack() as held:
        held.callback(api.stop)
        mine = [held.enter_context(api.connect("127.0.0.2")) for _ in range(3)]
        with api.connect("127.0.0.2") as one_too_many:
            reply = answer(one_too_many)
            assert status_of(reply) == 429 and b"retry-after" in reply
        assert api.get("/healthz", "127.0.0.3").status_code == 200  # others are not affected
        # A request on the process's 8th connection is answered 503 by uvicorn, from any address.
        for source in ("127.0.0.3", "127.0.0.3", "127.0.0.4", "127.0.0.4"):
            held.enter_context(api.connect(source))
        assert api.get("/healthz", "127.0.0.6").status_code == 503
        mine[0].close()
        eventually(lambda: api.get("/healthz", "127.0.0.6").status_code == 200)
        for sock in mine:
            sock.close()
        # Closed connections are forgotten: the client may connect again.
        eventually(lambda: api.get("/healthz", "127.0.0.2").status_code == 200)


def _stream(api: Api, source: str, name: str, forwarded: str | None = None) -> tuple[ExitStack, int]:
    stack = ExitStack()
    client = stack.enter_context(
        httpx.Client(base_url=f"http://127.0.0.1:{api.port}", transport=httpx.HTTPTransport(local_address=source),
                     timeout=HANG_GUARD_S)
    )
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    response = stack.enter_context(client.stream("GET", f"/api/profile/{name}/status/stream", headers=headers))
    return stack, response.status_code


def test_streams_are_bounded_per_client(api: Api, db: psycopg.Connection) -> None:
    add_job(db, "watched")
    with ExitStack() as held:
        for _ in range(2):
            stack, code = _stream(api, "127.0.0.2", "watched")
            held.enter_context(stack)
            assert code == 200
        stack, code = _stream(api, "127.0.0.2", "watched")
        with stack:
            assert code == 429
        stack, code = _stream(api, "127.0.0.3", "watched")
        with stack:
            assert code == 200


def test_behind_a_trusted_proxy_the_limits_count_forwarded_clients(settings: Settings, db: psycopg.Connection) -> None:
    add_job(db, "watched")
    proxy = Api(settings, "--forwarded-allow-ips", "127.0.0.7")
    try:
        with ExitStack() as held:
            # The proxy's own connections are not counted per address (it carries many clients).
            for client in ("10.0.0.1", "10.0.0.1", "10.0.0.2", "10.0.0.2"):
                stack, code = _stream(proxy, "127.0.0.7", "watched", forwarded=client)
                held.enter_context(stack)
                assert code == 200
            stack, code = _stream(proxy, "127.0.0.7", "watched", forwarded="10.0.0.1")
            with stack:
                assert code == 429  # the forwarded client's third stream
            # An untrusted address cannot claim to be someone else.
            stack, code = _stream(proxy, "127.0.0.8", "watched", forwarded="10.0.0.3")
            held.enter_context(stack)
            stack, code = _stream(proxy, "127.0.0.8", "watched", forwarded="10.0.0.4")
            held.enter_context(stack)
            stack, code = _stream(proxy, "127.0.0.8", "watched", forwarded="10.0.0.5")
            with stack:
                assert code == 429
    finally:
        proxy.stop()


def test_misses_queue_for_few_postgres_sessions_and_no_more(settings: Settings, database_url: str) -> None:
    api = Api(
        settings,
        PROFILE_STATUS_DATABASE_POOL_SIZE="1",
        PROFILE_STATUS_MISS_MAX_WAITING="1",
        PROFILE_STATUS_REQUEST_TIMEOUT_S="30",
        PROFILE_STATUS_MAX_CONNECTIONS_PER_CLIENT="0",
    )
    try:
        with psycopg.connect(database_url) as blocker, ThreadPoolExecutor(3) as pool:
            # Every miss now waits for this lock: the first holds the pool's one session.
            blocker.execute("LOCK TABLE queue IN ACCESS EXCLUSIVE MODE")
            first = pool.submit(api.get, "/api/profile/first_miss/status", "127.0.0.2")
            eventually(lambda: _waiting_on_lock(database_url) == 1)
            # Of two more, one waits for the pool and the other finds its queue full: 503 at once.
            others = [pool.submit(api.get, f"/api/profile/miss_{i}/status", "127.0.0.2") for i in range(2)]
            refused = eventually(lambda: [f for f in others if f.done()])
            assert len(refused) == 1
            assert refused[0].result().status_code == 503
            assert refused[0].result().json()["data"]["error_type"] == "database_unavailable"
            assert _sessions(database_url) == 1
            blocker.rollback()
            waited = next(f for f in others if f is not refused[0])
            assert first.result().status_code == 200
            assert waited.result().status_code == 200
    finally:
        api.stop()


def _waiting_on_lock(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'profile-status-api'"
            " AND wait_event_type = 'Lock' AND datname = current_database()"
        ).fetchone()
    return int(row[0]) if row else 0


def _sessions(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'profile-status-api'"
            " AND datname = current_database()"
        ).fetchone()
    return int(row[0]) if row else 0
