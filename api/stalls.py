"""How long the event loop is kept from running: every request waiting at that moment waits that long too.

A task asks to wake up every few milliseconds and measures how late it does:
the lateness is a stall (a long garbage collection, a slow render, a blocking
call, or a core taken by other processes). Counted in a histogram, and the
worst since the last `/metrics` scrape is a gauge, so that an alert or a
benchmark sees the single worst one; beside it, the worst counting only the
time this process ran meanwhile, which tells its own work from waiting for a core.
"""

from __future__ import annotations

import asyncio
import time

from api import metrics

TICK_S = 0.005


def on_cpu_share(late_s: float, tick_s: float, cpu_s: float) -> float:
    """Of a stall of `late_s` after a sleep of `tick_s`, the part this process ran: it used
    `cpu_s` of CPU meanwhile, and was off a core for the rest of the interval."""
    off_cpu = max(0.0, tick_s + late_s - cpu_s)
    return max(0.0, late_s - off_cpu)


async def watch_stalls(tick_s: float = TICK_S) -> None:
    """Measure the loop's lateness for the life of the process."""
    loop = asyncio.get_running_loop()
    while True:
        asked, cpu = loop.time(), time.process_time()
        await asyncio.sleep(tick_s)
        late = loop.time() - asked - tick_s
        if late > 0.001:
            metrics.STALLS.observe(late)
            metrics.note_stall(late, on_cpu_share(late, tick_s, time.process_time() - cpu))
