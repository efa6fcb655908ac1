"""Projector figures: commit-to-Redis lag at a fixed rate, drain throughput, per-change cost.

The projector runs as `profile-status projector` (a child process). A change is
"applied" when its document's notification arrives on `{prefix}@changes`
(bench.subscriber); times are measured from the moment the writer's COMMIT
returned.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import redis

from bench import profiling, writer
from bench.procs import Child, cpu_seconds, python
from bench.subscriber import Subscription
from shared.redis_store.keys import Keys
from shared.redis_store.records import Heartbeat

READY_TIMEOUT_S = 600.0
APPLY_TIMEOUT_S = 120.0


class ProjectorProcess:
    """`profile-status projector` on the bench database and prefix."""

    def __init__(
        self, database_url: str, redis_url: str, prefix: str, log_dir: Path, *, partitions: int = 1, name: str = "projector"
    ) -> None:
        self.redis_url = redis_url
        self.prefix = prefix
        env = {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "PROFILE_STATUS_KEY_PREFIX": prefix,
            "PROFILE_STATUS_PARTITIONS": str(partitions),
        }
        self.child = Child(name, python("-m", "profile_status.cli", "projector"), env, log_dir)

    @property
    def pid(self) -> int:
        """The daemon's pid."""
        return self.child.pid

    @property
    def channel(self) -> str:
        """Where it announces changed documents (README: "the pub/sub channel `status:@changes`")."""
        return Keys(self.prefix).changes_channel

    def wait_projected(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Wait for its heartbeat and the marker of a complete projection (README's `@heartbeat`, `@generation`)."""
        client = redis.Redis.from_url(self.redis_url)
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                if not self.child.alive():
                    raise RuntimeError(f"the projector exited:\n{self.child.log_tail()}")
                keys = Keys(self.prefix)
                if client.exists(keys.heartbeat) and client.exists(keys.generation):
                    return
                time.sleep(0.1)
        finally:
            client.close()
        raise TimeoutError(f"the projector did not finish its projection within {timeout_s:g} s")

    def pin(self, cores: set[int] | None) -> None:
        """Restrict it to `cores` (None: every core this process may use)."""
        os.sched_setaffinity(self.pid, cores or os.sched_getaffinity(0))

    def stop(self) -> None:
        """SIGTERM, as an operator would."""
        self.child.stop()


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


@dataclass(frozen=True)
class Lag:
    """Commit-to-notification lag of updates written at a fixed rate."""

    updates: int
    achieved_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    missing: int


def lag(url: str, sub: Subscription, usernames: Sequence[str], rate: float, seconds: float) -> Lag:
    """Write `rate` updates a second for `seconds`, one per username, and time each one's arrival."""
    sub.drain()
    written = writer.paced(url, usernames, rate, seconds)
    arrived = sub.arrivals(written.commits, timeout_s=APPLY_TIMEOUT_S)
    lags = [(arrived[n] - t) * 1000 for n, t in written.commits.items() if n in arrived]
    return Lag(
        updates=len(written.commits),
        achieved_per_s=written.achieved_per_s,
        p50_ms=percentile(lags, 50),
        p99_ms=percentile(lags, 99),
        max_ms=max(lags, default=math.nan),
        missing=len(written.commits) - len(arrived),
    )


@dataclass(frozen=True)
class Applied:
    """Updates committed together and how long the projector took to publish all of them."""

    changes: int
    seconds: float
    cpu_seconds: float

    @property
    def per_s(self) -> float:
        """Changes applied per second."""
        return self.changes / self.seconds

    @property
    def us_per_change(self) -> float:
        """Wall time per change, in microseconds."""
        return self.seconds / self.changes * 1e6

    @property
    def cpu_us_per_change(self) -> float:
        """The projector process's own CPU time per change, in microseconds."""
        return self.cpu_seconds / self.changes * 1e6


def apply_rounds(url: str, sub: Subscription, projector: ProjectorProcess, rounds: Sequence[Sequence[str]]) -> Applied:
    """For each round: commit one update per username together, wait until all are published.

    Only the time from each COMMIT to its round's last notification counts, so
    the writer's own time does not; the projector's CPU time is summed over the same windows.
    """
    total_s = total_cpu = 0.0
    changes = 0
    for names in rounds:
        sub.drain()
        cpu_before = cpu_seconds(projector.pid)
        committed = writer.committed_together(url, names)
        arrived = sub.arrivals(names, timeout_s=APPLY_TIMEOUT_S)
        total_cpu += cpu_seconds(projector.pid) - cpu_before
        if len(arrived) < len(set(names)):
            raise RuntimeError(f"only {len(arrived)} of {len(set(names))} changes were published")
        total_s += max(arrived.values()) - committed
        changes += len(names)
    return Applied(changes, total_s, total_cpu)


def profile_drain(
    url: str, sub: Subscription, projector: ProjectorProcess, usernames: Sequence[str], out: Path
) -> profiling.Summary:
    """A drain like `apply_rounds` (one round) with py-spy attached: where the projector's time goes."""
    recorder = profiling.record(projector.pid, int(APPLY_TIMEOUT_S), out)
    try:
        time.sleep(1.0)  # py-spy attaches
        apply_rounds(url, sub, projector, [usernames])
    finally:
        recorder.send_signal(2)  # SIGINT: py-spy stops and writes what it has
        profiling.finish(recorder, 30.0)
    return profiling.summarize(out)


def partitions_held(redis_url: str, prefix: str, pids: Sequence[int]) -> dict[int, set[int]]:
    """The partitions each projector says it holds (the leader in the main heartbeat, the others in their own)."""
    keys = Keys(prefix)
    client = redis.Redis.from_url(redis_url)
    try:
        held: dict[int, set[int]] = {}
        main = Heartbeat.parse(client.get(keys.heartbeat))
        for pid in pids:
            beat = main if main and main.pid == pid else Heartbeat.parse(client.get(f"{keys.heartbeat}:{pid}"))
            held[pid] = set(beat.partitions) if beat else set()
        return held
    finally:
        client.close()


def wait_balanced(redis_url: str, prefix: str, projectors: Sequence[ProjectorProcess], partitions: int) -> None:
    """Wait until the projectors share every partition, none holding more than its fair share."""
    share = math.ceil(partitions / len(projectors))
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        held = partitions_held(redis_url, prefix, [p.pid for p in projectors])
        if set().union(*held.values()) == set(range(partitions)) and all(len(h) <= share for h in held.values()):
            return
        time.sleep(0.1)
    raise TimeoutError(f"{len(projectors)} projectors did not share {partitions} partitions")
