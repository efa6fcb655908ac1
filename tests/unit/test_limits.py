"""The counting behind the abuse limits (api.limits, api.server); the limits themselves are tested against the real server."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from api.limits import StreamSlots
from api.server import ConnectionGuard, ConnectionLimits, _trusted


def test_stream_slots_count_per_process_and_per_client_and_give_back_once() -> None:
    slots = StreamSlots(total=3, per_client=2)
    a1, a2 = slots.take("a"), slots.take("a")
    assert slots.client_full("a") and not slots.client_full("b") and not slots.full()
    b1 = slots.take("b")
    assert slots.full()
    a1()
    a1()  # a second give-back changes nothing
    assert slots.open == 2 and not slots.client_full("a") and not slots.full()
    a2()
    b1()
    assert slots.open == 0 and not slots.client_full("a")


def test_no_per_client_stream_limit_when_zero() -> None:
    slots = StreamSlots(total=100, per_client=0)
    for _ in range(50):
        slots.take("a")
    assert not slots.client_full("a")


def test_connection_guard_admits_a_share_per_address() -> None:
    guard = ConnectionGuard(ConnectionLimits(head_timeout_s=1, max_head_bytes=1024, per_client=2))
    assert guard.admit("a") and guard.admit("a") and not guard.admit("a")
    assert guard.admit("b")
    guard.release("a")
    assert guard.admit("a")
    unlimited = ConnectionGuard(ConnectionLimits(head_timeout_s=1, max_head_bytes=1024, per_client=0))
    assert all(unlimited.admit("a") for _ in range(1000))


@pytest.mark.parametrize(
    ("proxy_headers", "allowed", "host", "trusted"),
    [
        (False, "127.0.0.1", "127.0.0.1", False),  # uvicorn's default list counts only with proxy headers on
        (True, "127.0.0.1,::1", "127.0.0.1", True),
        (True, "127.0.0.1", "127.0.0.2", False),
        (True, "10.0.0.0/8", "10.1.2.3", True),
        (True, ["10.0.0.0/8", "192.168.1.5"], "192.168.1.5", True),
        (True, "*", "203.0.113.9", True),
        (True, "10.0.0.0/8", "not-an-ip", False),
    ],
)
def test_trusted_proxies(proxy_headers: bool, allowed: str | list[str], host: str, trusted: bool) -> None:
    config = SimpleNamespace(proxy_headers=proxy_headers, forwarded_allow_ips=allowed)
    assert _trusted(config, host) is trusted
