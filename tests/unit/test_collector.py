"""The API's collector policy: survivors frozen, cyclic garbage among them still freed by the full collection."""

from __future__ import annotations

import asyncio
import gc
import weakref

from api import collector


class _Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector frees it


def test_survivors_are_frozen_and_a_full_collection_frees_their_garbage() -> None:
    collector.install()
    try:
        assert gc.get_freeze_count() > 0  # what start-up made
        survivor = _Node()
        gc.collect(1)  # a generation-1 collection: the survivor is frozen with the rest
        assert not any(o is survivor for o in gc.get_objects())  # frozen: in no generation a collection walks
        gone = weakref.ref(survivor)
        del survivor
        gc.collect(2)  # an automatic full collection does not walk frozen objects
        assert gone() is not None
        assert collector.collect_fully() >= 0
        assert gone() is None  # the periodic full collection thaws and frees it
        assert gc.get_freeze_count() > 0  # and freezes what lives
    finally:
        collector.uninstall()
    assert gc.get_freeze_count() == 0 and collector._freeze_survivors not in gc.callbacks


def test_several_apps_in_one_process_share_the_policy() -> None:
    collector.install()
    collector.install()
    collector.uninstall()
    assert collector._freeze_survivors in gc.callbacks
    collector.uninstall()
    assert collector._freeze_survivors not in gc.callbacks and gc.get_freeze_count() == 0


async def test_the_young_generations_are_collected_on_a_timer_whatever_the_allocation_count() -> None:
    # The count is allocations less deallocations of any generation: while frozen objects die as
    # fast as new ones are made it never reaches the threshold. A threshold never reached stands for it.
    collector.install()
    threshold = gc.get_threshold()
    gc.set_threshold(10**9)
    try:
        kept = [_Node() for _ in range(10_000)]
        assert any(o is kept[-1] for o in gc.get_objects(0))  # young, and no collection will come for it
        task = asyncio.create_task(collector.collect_young_every(0.001))
        # Frozen objects are in no generation a collection walks (the freeze count is no measure:
        # it falls as frozen objects die).
        while any(o is kept[-1] for o in gc.get_objects()):
            await asyncio.sleep(0.001)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    finally:
        gc.set_threshold(*threshold)
        collector.uninstall()
