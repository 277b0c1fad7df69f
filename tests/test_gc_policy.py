"""The API's garbage-collection policy: survivors of a full pass are frozen, and cycles among
frozen objects are still reclaimed by the periodic complete pass."""

from __future__ import annotations

import asyncio
import gc
import weakref

from backend.gc_policy import FrozenHeap


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def cycle() -> weakref.ref[Node]:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def in_generations(objects: list[object]) -> int:
    """How many of ``objects`` the collector's generations hold (not frozen)."""
    ids = {id(o) for o in objects}
    return sum(1 for o in gc.get_objects() if id(o) in ids)


async def test_survivors_of_a_full_collection_are_frozen() -> None:
    heap = FrozenHeap(full_seconds=3600)
    heap.start()
    try:
        assert gc.get_freeze_count() > 0
        kept = [Node() for _ in range(1000)]
        # The collector's generations list every tracked object but the frozen ones. (The
        # freeze count alone cannot tell: frozen objects freed meanwhile lower it.)
        assert in_generations(kept) == len(kept)
        gc.collect()  # a full pass, as the collector would run one
        await asyncio.sleep(0)  # the freeze comes on the loop's next turn
        assert in_generations(kept) == 0
    finally:
        await heap.close()
    assert gc.get_freeze_count() == 0
    assert heap._on_collection not in gc.callbacks


async def test_cycles_among_frozen_objects_are_reclaimed_by_the_periodic_pass() -> None:
    heap = FrozenHeap(full_seconds=0.2)
    heap.start()
    try:
        ref = cycle()
        gc.freeze()  # as if it had survived a full pass while in use
        gc.collect()
        assert ref() is not None, "a frozen cycle is not collected by an ordinary pass"
        for _ in range(50):
            await asyncio.sleep(0.05)
            if ref() is None:
                break
        assert ref() is None
    finally:
        await heap.close()
