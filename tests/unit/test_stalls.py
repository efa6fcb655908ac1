"""The event-loop stall monitor: how late the loop ran, and how much of that the process itself was running."""

from __future__ import annotations

import asyncio
import time

import pytest

from api import metrics
from api.stalls import on_cpu_share, watch_stalls

TICK = 0.005


@pytest.mark.parametrize(
    ("late", "cpu", "on_cpu"),
    [
        (0.040, 0.045, 0.040),  # running the whole interval: all of the stall is the process's own work
        (0.040, 0.005, 0.0),  # ran only its tick's worth: the stall was a core held by others
        (0.040, 0.025, 0.020),  # half and half
        (0.040, 0.0, 0.0),
        (0.040, 0.100, 0.040),  # other threads' CPU cannot make a stall longer than it was
    ],
)
def test_the_on_cpu_share_of_a_stall(late: float, cpu: float, on_cpu: float) -> None:
    assert on_cpu_share(late, TICK, cpu) == pytest.approx(on_cpu)


async def _worst_after(block: object) -> tuple[float, float]:
    """(worst stall, its worst on-CPU part) seen by the monitor around one blocking call."""
    metrics.exposition()  # a fresh window
    watcher = asyncio.create_task(watch_stalls(TICK))
    try:
        await asyncio.sleep(TICK * 3)
        block()  # type: ignore[operator]
        await asyncio.sleep(TICK * 3)
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
    return metrics._worst_stall, metrics._worst_on_cpu


def _spin_cpu(seconds: float) -> None:
    started = time.process_time()
    while time.process_time() - started < seconds:
        pass


async def test_a_loop_kept_busy_is_a_stall_on_cpu() -> None:
    stall, on_cpu = await _worst_after(lambda: _spin_cpu(0.03))
    # 30 ms of CPU spent in one turn: the timer is at least 25 ms late, all of it running.
    assert stall >= 0.025
    assert on_cpu >= 0.025


async def test_a_loop_kept_off_the_cpu_is_a_stall_mostly_off_cpu() -> None:
    stall, on_cpu = await _worst_after(lambda: time.sleep(0.03))  # stands for a core taken by another process
    assert stall >= 0.025
    assert on_cpu <= stall / 2
