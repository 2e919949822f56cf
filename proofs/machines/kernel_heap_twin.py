"""HeapHarness's judgement of a successful call, on the Python twins of the steps.

:func:`accepts` is :class:`proofs.machines.kernel_heap.HeapHarness`'s
composite of spec steps (``_Alloc``, ``_Free``, ``_grow``, ``_shrink`` and
the rest: the same choices read from the pre and post snapshots, the same
index position for each new hole) and its ``_compare`` (``block`` and
``pte`` as whole maps, the other header maps at the post-state's headers,
``index`` below its count, the scalars), evaluated on
:mod:`proofs.abstractions.heap_twin`'s concrete states instead of z3 terms.
It only ever accepts: True when every step is ok with its assume true and
the composite's state equals the reported one; False (any doubt, any
refusal) hands the call to the z3 steps, which give the verdict and name
what differs. A verdict therefore never rests on the twin alone being
wrong in the implementation's favour, and tests/test_heap_twin.py checks
the twin steps against the z3 ones.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from model.heap_layout import aligned_header, fits
from proofs.abstractions import heap_twin as tw
from proofs.abstractions.kernel_heap import HeapSnapshot
from spec.abi import HEADER_SIZE, MIN_BLOCK, PAGE_SHIFT

#: The header maps compared at the post-state's headers (as the harness does).
AT_HEADERS = ("size", "hole", "aligned", "magic", "fmagic", "back")
SCALARS = ("created", "start", "end", "max", "data_start", "floor", "capacity", "supervisor",
           "readonly", "count")


class RefusedError(Exception):
    """A step is not ok, its assume is false, or the twin gives up."""


def needless_growth(pre_snap: HeapSnapshot, post_snap: HeapSnapshot, size: int,
                    page_align: bool) -> int | None:
    """The first hole of the index the request fits when an Alloc grew the heap
    anyway (spec/kernel_heap.py: Alloc grows the heap only when no hole fits),
    else None."""
    if post_snap.end <= pre_snap.end:
        return None
    return next((h for n, h in pre_snap.index if fits(h, n, size, page_align)), None)


def _placer(s: tw.TwinHeap) -> tw.Place:
    """The harness's index position of a new hole h of the given size: before
    the first entry of s (h's own old entry left out) whose key is >= it."""
    def place(hole: int, size: int) -> int:
        keys = [s.key[i] for i in range(s.count) if s.index[i] != hole]
        return next((i for i, k in enumerate(keys) if k >= size), len(keys))
    return place


_PLACED = {tw.CarveHead, tw.CarveTail, tw.AbsorbLeft, tw.Release, tw.ExpandHole,
           tw.ExpandNewHole, tw.ShrinkHole}

#: A step the composite took: the step, its arguments, its hole's position.
Taken = tuple[Callable[..., tw.Outcome], tuple[Any, ...], int | None]


class _Composite:
    """The harness's composites (proofs/machines/kernel_heap.py) on twin states."""

    def __init__(self, pre_snap: HeapSnapshot, post_snap: HeapSnapshot,
                 live: Mapping[int, int]) -> None:
        self.pre_snap, self.post_snap, self.live = pre_snap, post_snap, live
        self.taken: list[Taken] = []

    def run(self, s: tw.TwinHeap, step: Callable[..., tw.Outcome], *args: Any) -> tw.TwinHeap:
        """Apply a step (with the harness's position of its new hole); refuse
        unless it is ok and its assume holds."""
        position: list[int] = []

        def place(hole: int, size: int) -> int:
            position.append(_placer(s)(hole, size))
            return position[0]
        outcome = step(s, *args, place) if step in _PLACED else step(s, *args)
        self.taken.append((step, args, position[0] if position else None))
        if not (outcome.ok and outcome.assume):
            raise RefusedError(step.__name__)
        return outcome.post

    def grow(self, s: tw.TwinHeap) -> tw.TwinHeap:
        new_end, old_end = self.post_snap.end, self.pre_snap.end
        if new_end <= old_end:
            return s
        frames = tw.Table(0, {page: (pte >> PAGE_SHIFT) & tw.FRAME_MASK
                              for page, pte in self.post_snap.ptes
                              if old_end >> PAGE_SHIFT <= page < new_end >> PAGE_SHIFT})
        if s.hole[tw.last_block(s)]:
            return self.run(s, tw.ExpandHole, new_end, frames)
        return self.run(s, tw.ExpandNewHole, new_end, frames)

    def shrink(self, s: tw.TwinHeap) -> tw.TwinHeap:
        new_end = self.post_snap.end
        if new_end >= s.end:
            return s
        if tw.last_block(s) == new_end:
            return self.run(s, tw.DropHole, new_end)
        return self.run(s, tw.ShrinkHole, new_end)

    def Alloc(self, pre: tw.TwinHeap, args: tuple[Any, ...], p: Any) -> tw.TwinHeap:
        size, page_align = args
        _ints(size, p)
        _bools(page_align)
        x = p - HEADER_SIZE
        if needless_growth(self.pre_snap, self.post_snap, size, page_align) is not None:
            raise RefusedError("the heap grew while a hole fits")
        s = self.grow(pre)
        candidates = [b.header for b in self.pre_snap.blocks if b.hole] + [self.pre_snap.end]
        h = next((c for c in candidates if tw.a_hole(s, c) and c <= x < c + s.size[c]), x)
        s = self.run(s, tw.Take, h, page_align and x == h)
        if x != h:
            s = self.run(s, tw.CarveHead, h, x)
        block = next((b.size for b in self.post_snap.blocks if b.header == x), None)
        if block != s.size[x]:
            s = self.run(s, tw.CarveTail, x, size + MIN_BLOCK)
        return s

    def Free(self, pre: tw.TwinHeap, args: tuple[Any, ...], result: Any) -> tw.TwinHeap:
        _ints(args[0])
        h = args[0] - HEADER_SIZE
        s = pre
        if tw.right_is_hole(s, h):
            s = self.run(s, tw.AbsorbRight, h)
        s = self.run(s, tw.AbsorbLeft if tw.left_is_hole(s, h) else tw.Release, h)
        return self.shrink(s)

    def Expand(self, pre: tw.TwinHeap, args: tuple[Any, ...], result: Any) -> tw.TwinHeap:
        if result is not True:
            raise RefusedError("a successful Expand returns True")
        return self.grow(pre)

    def Contract(self, pre: tw.TwinHeap, args: tuple[Any, ...], result: Any) -> tw.TwinHeap:
        if result != self.post_snap.end - self.post_snap.start:
            raise RefusedError("Contract returns the heap's new length")
        return self.shrink(pre)

    def FindSmallestHole(self, pre: tw.TwinHeap, args: tuple[Any, ...],
                         result: Any) -> tw.TwinHeap:
        size, page_align = args
        _ints(size, result)
        _bools(page_align)
        x = 0
        if 0 <= result < len(self.pre_snap.index):
            hole = self.pre_snap.index[result][1]
            x = aligned_header(hole) if page_align else hole
        outcome = tw.FindSmallestHole(pre, size, page_align, result, x)
        if not (outcome.ok and outcome.assume):
            raise RefusedError("the spec does not allow this answer")
        return pre

    def GetBlockSize(self, pre: tw.TwinHeap, args: tuple[Any, ...],
                     result: Any) -> tw.TwinHeap:
        if args[0] not in self.live or result != self.live[args[0]]:
            raise RefusedError("not the size the block was allocated with")
        return pre


def _ints(*values: Any) -> None:
    if not all(type(v) is int for v in values):
        raise RefusedError("an argument or result that is no integer")


def _bools(*values: Any) -> None:
    if not all(type(v) is bool for v in values):
        raise RefusedError("a flag that is no bool")


def same(spec: tw.TwinHeap, post: tw.TwinHeap, post_snap: HeapSnapshot) -> bool:
    """The harness's ``_compare`` on twin states: equal on every real field."""
    headers = [b.header for b in post_snap.blocks]
    return (all(tw.same_value(getattr(spec, n), getattr(post, n)) for n in SCALARS)
            and spec.block.same(post.block) and spec.pte.same(post.pte)
            and all(tw.same_value(getattr(spec, n)[h], getattr(post, n)[h])
                    for n in AT_HEADERS for h in headers)
            and all(tw.same_value(spec.index[i], post.index[i])
                    for i in range(len(post_snap.index))))


def judged(name: str, pre_snap: HeapSnapshot, post_snap: HeapSnapshot,
           args: tuple[Any, ...], result: Any,
           live: Mapping[int, int]) -> tuple[bool, list[Taken]]:
    """:func:`accepts`'s verdict, and the steps the composite took."""
    composite = _Composite(pre_snap, post_snap, live)
    try:
        expected = getattr(composite, name)(tw.to_twin(pre_snap), args, result)
        return same(expected, tw.to_twin(post_snap), post_snap), composite.taken
    except (RefusedError, tw.UnsupportedError, TypeError, ValueError, KeyError, IndexError,
            AttributeError):
        return False, composite.taken


def accepts(name: str, pre_snap: HeapSnapshot, post_snap: HeapSnapshot, args: tuple[Any, ...],
            result: Any, live: Mapping[int, int]) -> bool:
    """Whether the successful call ``name(*args) -> result`` from ``pre_snap``
    to ``post_snap`` is the spec's composite (False: let z3 judge it)."""
    return judged(name, pre_snap, post_snap, args, result, live)[0]
