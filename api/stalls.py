"""How long the event loop is kept from running: every request waiting at that moment waits that long too.

A task asks to wake up every few milliseconds and measures how late it does:
the lateness is a stall (a long garbage collection, a slow render, a blocking
call). Counted in a histogram, and the worst since the last `/metrics` scrape
is a gauge, so that an alert or a benchmark sees the single worst one.
"""

from __future__ import annotations

import asyncio

from api import metrics

TICK_S = 0.005


async def watch_stalls(tick_s: float = TICK_S) -> None:
    """Measure the loop's lateness for the life of the process."""
    loop = asyncio.get_running_loop()
    while True:
        asked = loop.time()
        await asyncio.sleep(tick_s)
        late = loop.time() - asked - tick_s
        if late > 0.001:
            metrics.STALLS.observe(late)
            metrics.note_stall(late)
