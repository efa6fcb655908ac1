"""The API's collector policy: survivors frozen, cyclic garbage among them still freed by the full collection."""

from __future__ import annotations

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
