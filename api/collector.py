"""How an API process uses Python's garbage collector: no long pause while it serves.

A full (generation 2) collection walks every tracked object the process holds,
and every request in flight waits for it. Measured under the benchmark's load
(100,000-row mix, one pinned worker): with some 170,000 tracked objects in the
oldest generation (kept answers, decoded documents, connections), full
collections stalled the loop for 35-200 ms, the worst stalls of the run.

What survives a generation-1 collection lives long by then (kept answers,
cache entries, open connections), so it is frozen (`gc.freeze`): no automatic
collection walks it again, and they stay short. Frozen objects that later
become cyclic garbage (a closed connection's objects) would never be freed that
way, so every `FULL_EVERY_S` the frozen objects are thawed and collected once:
the one long pause left, logged with its duration and counted as a stall.

The young generations are also collected every `YOUNG_EVERY_S`, whatever the
allocation count says. The count is allocations less deallocations of any
generation, so while frozen objects die as fast as new ones are made (kept
answers replaced on a moving queue) it stays near zero, the young generation
grows unseen, and the collection that finally comes walks 50,000-80,000
objects: measured, 35-70 ms stalls. On a timer each one walks what a quarter
of a second made.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from typing import Any

from api import metrics

log = logging.getLogger(__name__)
FULL_EVERY_S = 600.0
YOUNG_EVERY_S = 0.25
_installed = 0  # API apps running in this process (tests run several): the policy is the process's


def install() -> None:
    """Freeze what start-up made, and from now on what survives a generation-1 collection."""
    global _installed
    _installed += 1
    if _installed == 1:
        gc.collect()
        gc.freeze()
        gc.callbacks.append(_freeze_survivors)


def uninstall() -> None:
    """Back to the collector's defaults once the last app of the process stops."""
    global _installed
    _installed -= 1
    if _installed == 0:
        gc.callbacks.remove(_freeze_survivors)
        gc.unfreeze()


def _freeze_survivors(phase: str, info: dict[str, Any]) -> None:
    if phase == "stop" and info["generation"] >= 1:
        gc.freeze()


def collect_fully() -> float:
    """Collect everything, the frozen objects included, then freeze the survivors; returns the seconds it took."""
    started = time.perf_counter()
    gc.unfreeze()
    found = gc.collect()
    gc.freeze()
    took = time.perf_counter() - started
    metrics.STALLS.observe(took)
    metrics.note_stall(took)
    log.info("full garbage collection: %d objects freed in %.0f ms", found, took * 1000,
             extra={"event": "full_collection", "freed": found, "ms": round(took * 1000, 1)})
    return took


async def collect_fully_every(seconds: float = FULL_EVERY_S) -> None:
    """`collect_fully` every `seconds`, for the life of the process."""
    while True:
        await asyncio.sleep(seconds)
        collect_fully()


async def collect_young_every(seconds: float = YOUNG_EVERY_S) -> None:
    """A generation-1 collection (survivors then frozen) every `seconds`, for the life of the process."""
    while True:
        await asyncio.sleep(seconds)
        gc.collect(1)
