"""What one client may hold open of an API process: event streams, in total and per client address.

A stream holds a connection, a task and a Redis-backed follower for up to
`PROFILE_STATUS_SSE_MAX_LIFETIME_S`; polls are cheap and bounded by uvicorn's
own limits (see `api.server`). Slots are taken when the request is answered,
before the stream starts, and given back when the response ends however it
ends (`api.stream`), so a burst of requests cannot slip past the count.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable


class StreamSlots:
    """Counts open streams per process and per client address."""

    def __init__(self, total: int, per_client: int) -> None:
        self.total = total
        self.per_client = per_client
        self.open = 0
        self._by_client: Counter[str] = Counter()

    def full(self) -> bool:
        """Whether the process holds as many streams as it may."""
        return self.open >= self.total

    def client_full(self, client: str) -> bool:
        """Whether `client` holds as many streams as one client may (0: no per-client limit)."""
        return self.per_client > 0 and self._by_client[client] >= self.per_client

    def take(self, client: str) -> Callable[[], None]:
        """Count one more stream of `client`; returns the function that gives the slot back (once)."""
        self.open += 1
        self._by_client[client] += 1
        given_back = False

        def give_back() -> None:
            nonlocal given_back
            if given_back:
                return
            given_back = True
            self.open -= 1
            self._by_client[client] -= 1
            if self._by_client[client] <= 0:
                del self._by_client[client]

        return give_back

