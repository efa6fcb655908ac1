"""The demo's one-line live summary: request and completion rates, queue length, projector lag.

For example ``0.52 req/s · 31.0 done/min · 4.1 failed/min · queue 14 (6 waiting) · lag 0.01 s, backlog 0 · up 2m05s``
where lag is the age of the oldest change the projector has not yet applied.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections import deque
from dataclasses import dataclass
from typing import TextIO

from demo.simulator import WorkloadStats
from shared.redis_store.records import Heartbeat

RATE_WINDOW_S = 60.0
STALE_BEAT_S = 5.0  # the projector beats every second


@dataclass(frozen=True, slots=True)
class _Sample:
    at: float
    requested: int
    completed: int
    failed: int


class Summary:
    """Turns workload counters and the projector heartbeat into one line; redraws it in place on a terminal."""

    def __init__(self, stats: WorkloadStats, out: TextIO | None = None, *, projector: bool = True) -> None:
        self.stats = stats
        self.projector = projector
        self.out = out or sys.stdout
        self.tty = self.out.isatty()
        self._samples: deque[_Sample] = deque()
        self._started = time.monotonic()
        self._drawn = False

    def line(self, heartbeat: Heartbeat | None, now: float | None = None) -> str:
        """The summary as of now, given the projector's heartbeat (None when absent or unreadable)."""
        now = time.monotonic() if now is None else now
        s = self.stats
        self._samples.append(_Sample(now, s.requested, s.completed, s.failed))
        while len(self._samples) > 2 and now - self._samples[0].at > RATE_WINDOW_S:
            self._samples.popleft()
        first = self._samples[0]
        span = max(now - first.at, 1e-9)
        req_s = (s.requested - first.requested) / span if span >= 1 else 0.0
        done_min = (s.completed - first.completed) * 60 / span if span >= 1 else 0.0
        fail_min = (s.failed - first.failed) * 60 / span if span >= 1 else 0.0
        uptime = int(now - self._started)
        parts = [
            f"{req_s:.2f} req/s",
            f"{done_min:.1f} done/min",
            f"{fail_min:.1f} failed/min",
            f"queue {s.pending + s.processing} ({s.pending} waiting)",
        ]
        if self.projector:
            parts.append(_projector(heartbeat))
        return " · ".join([*parts, f"up {uptime // 60}m{uptime % 60:02d}s"])

    def show(self, line: str) -> None:
        """Redraw the line in place on a terminal, else print it as a plain line."""
        if self.tty:
            width = shutil.get_terminal_size((120, 20)).columns
            self.out.write("\r\x1b[2K" + line[: width - 1])
            self._drawn = True
        else:
            self.out.write(line + "\n")
        self.out.flush()

    def note(self, message: str) -> None:
        """Print a line above the live summary (an event worth keeping on screen)."""
        if self._drawn:
            self.out.write("\r\x1b[2K")
            self._drawn = False
        self.out.write(message + "\n")
        self.out.flush()

    def close(self) -> None:
        """Leave the cursor on a fresh line."""
        if self._drawn:
            self.out.write("\n")
            self.out.flush()
            self._drawn = False


def _projector(beat: Heartbeat | None) -> str:
    if beat is None:
        return "projector: no heartbeat"
    age = max(0.0, beat.age_s())
    if age > STALE_BEAT_S:
        return f"projector silent for {age:.0f} s"
    return f"lag {beat.backlog_age_s:.2f} s, backlog {beat.backlog}"
