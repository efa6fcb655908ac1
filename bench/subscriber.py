"""Timestamping the projector's change notifications, in a process of its own.

Every write is announced on `{prefix}@changes` (one line per username, see
`shared.redis_store.records`). `python -m bench.subscriber REDIS_URL CHANNEL`
prints `READY` once subscribed, then `<unix time> <username> <version>` per
username announced.
A separate process, so that the arrival times are not delayed by the writer.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from typing import Self

import redis

from bench.config import PROJECT_ROOT
from bench.procs import child_env, python
from shared.redis_store.keys import token
from shared.redis_store.records import parse_changes

READY_TIMEOUT_S = 10.0


def main(argv: list[str]) -> int:
    """The child: subscribe, then one line per message, flushed at once."""
    redis_url, channel = argv
    client = redis.Redis.from_url(redis_url)
    pubsub = client.pubsub()  # type: ignore[no-untyped-call]
    pubsub.subscribe(channel)
    # READY only once Redis confirmed: every later PUBLISH reaches us.
    deadline = time.monotonic() + READY_TIMEOUT_S
    while (message := pubsub.get_message(timeout=1.0)) is None or message["type"] != "subscribe":
        if time.monotonic() > deadline:
            return 1
    out = sys.stdout
    out.write("READY\n")
    out.flush()
    for message in pubsub.listen():
        if message["type"] == "message":
            at = f"{time.time():.6f}"
            changes = [c for c in parse_changes(message["data"]) if c.username is not None]  # not a rebuild's sweep
            out.write("".join(f"{at} {token(c.username)} {c.version}\n" for c in changes))
            out.flush()
    return 0


class Subscription:
    """The subscriber child, and the arrivals it reports, read by a thread into a queue."""

    def __init__(self, redis_url: str, channel: str) -> None:
        self.proc = subprocess.Popen(
            python("-m", "bench.subscriber", redis_url, channel),
            env=child_env({}),
            cwd=PROJECT_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, name="subscriber-reader", daemon=True)
        self._reader.start()
        if not self._ready.wait(READY_TIMEOUT_S):
            self.close()
            raise TimeoutError("the change subscriber did not start")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("READY"):
                self._ready.set()
            else:
                self._lines.put(line)
        self._lines.put(None)

    def drain(self) -> None:
        """Forget arrivals so far (after a warm-up or a previous step)."""
        with contextlib.suppress(queue.Empty):
            while True:
                self._lines.get_nowait()

    def arrivals(self, usernames: Iterable[str], timeout_s: float) -> dict[str, float]:
        """First arrival time of each of `usernames`; returns when all arrived or at the deadline."""
        waiting = set(usernames)
        seen: dict[str, float] = {}
        deadline = time.monotonic() + timeout_s
        while waiting and (left := deadline - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            if line is None:
                raise RuntimeError("the change subscriber exited")
            at, name, _version = line.split()
            if name in waiting:
                waiting.discard(name)
                seen[name] = float(at)
        return seen

    def close(self) -> None:
        """End the child."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
