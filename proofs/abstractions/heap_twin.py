"""Python twins of the KernelHeap spec's steps, evaluated on concrete states.

spec/kernel_heap.py stays the source of truth: each function below restates
one step (its guard ``ok``, its ``assume`` and its successor) over a
:class:`TwinHeap`, the same fields as :class:`~spec.state.HeapState` with
plain values, and tests/test_heap_twin.py checks with hypothesis that twin and
z3 step agree on states abstracted from valid and from deliberately corrupted
snapshots (guard, assume, and every field of the successor where the harness
compares it). What makes a twin exact rather than a sample: every map of the
abstraction is a default with finitely many stored keys (:class:`Table`),
and every update of a step is a store, a shift of the stored keys (the
index's Lambdas), a pointwise function of every value (``pos``) or a range
of pages (``map_pages``), each of which keeps that form; ``owner_of``, a
ghost the harness never compares, is a Python function read at points.
ADDR and PAGE are z3 integers: ``%`` and ``//`` by the page size are
Python's (z3's Int mod and div agree with them for a positive divisor).

Why: the oracle's spec mode judged each heap call by building the steps as
z3 terms and comparing them with the reported state, 10-60 ms a call and
most of the kernel family's search time (issue 16); the twin takes a
fraction of a millisecond, and a call it does not accept is judged by the
z3 steps as before (proofs/machines/kernel_heap.py).
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from proofs.abstractions.kernel_heap import HeapSnapshot
from spec.abi import HEAP_MAGIC, MIN_BLOCK, PAGE_SIZE

MAGIC, MIN = HEAP_MAGIC, MIN_BLOCK
ENTRY_MASK, FRAME_MASK = (1 << 32) - 1, (1 << 20) - 1
#: The most pages a map_pages or unmap_pages range may cover here (past it the
#: twin gives up and z3 judges): the 32-bit space has 2**20 pages.
MAX_PAGES = 1 << 20


class UnsupportedError(Exception):
    """The twin does not evaluate this state or step (z3 judges it)."""


class Table:
    """A total map: ``default`` everywhere but the ``stored`` keys (a z3 Store
    chain on a constant array)."""

    __slots__ = ("default", "stored")

    def __init__(self, default: Any, stored: dict[int, Any] | None = None) -> None:
        self.default, self.stored = default, {} if stored is None else stored

    def __getitem__(self, key: int) -> Any:
        return self.stored.get(key, self.default)

    def store(self, key: int, value: Any) -> Table:
        return Table(self.default, {**self.stored, key: value})

    def same(self, other: Table) -> bool:
        """Extensional equality (every key of either, and the defaults)."""
        return (same_value(self.default, other.default)
                and all(same_value(self[k], other[k]) for k in self.stored.keys() | other.stored))

    def __repr__(self) -> str:
        return f"Table({self.default!r}, {self.stored!r})"


def same_value(x: Any, y: Any) -> bool:
    """Equal values of one sort (a bool is never an int here)."""
    return type(x) is type(y) and x == y


@dataclass(frozen=True)
class TwinHeap:
    """:class:`~spec.state.HeapState` with values: scalars as int or bool, maps
    as :class:`Table`, ``owner_of`` as a function."""

    created: bool
    start: int
    end: int
    max: int
    data_start: int
    floor: int
    capacity: int
    supervisor: bool
    readonly: bool
    block: Table
    size: Table
    hole: Table
    aligned: Table
    magic: Table
    fmagic: Table
    back: Table
    index: Table
    count: int
    pte: Table
    key: Table
    pos: Table
    owner_of: Callable[[int], int]

    def but(self, **changes: Any) -> TwinHeap:
        return dataclasses.replace(self, **changes)


def _owner(headers: list[int]) -> Callable[[int], int]:
    """to_heap_state's owner_of: the last header (in walk order) at or below a,
    else a itself; by bisection when the walk is in increasing order."""
    if all(x < y for x, y in zip(headers, headers[1:], strict=False)):
        def sorted_owner(a: int) -> int:
            i = bisect.bisect_right(headers, a)
            return headers[i - 1] if i else a
        return sorted_owner
    backwards = headers[::-1]
    return lambda a: next((h for h in backwards if a >= h), a)


def _flags(headers: Iterable[int]) -> Table:
    return Table(False, dict.fromkeys(headers, True))


def to_twin(snap: HeapSnapshot) -> TwinHeap:
    """:func:`~proofs.abstractions.kernel_heap.to_heap_state` with values."""
    blocks = snap.blocks
    return TwinHeap(
        created=bool(snap.created), start=snap.start, end=snap.end, max=snap.max,
        data_start=snap.data_start, floor=snap.floor, capacity=snap.capacity,
        supervisor=bool(snap.supervisor), readonly=bool(snap.readonly),
        block=_flags(b.header for b in blocks),
        size=Table(0, {b.header: b.size for b in blocks}),
        hole=_flags(b.header for b in blocks if b.hole),
        aligned=_flags(sorted(snap.aligned)),
        magic=Table(0, {b.header: b.magic for b in blocks}),
        fmagic=Table(0, {b.header: b.fmagic for b in blocks}),
        back=Table(0, {b.header: b.back for b in blocks}),
        index=Table(0, {i: header for i, (_, header) in enumerate(snap.index)}),
        count=len(snap.index),
        pte=Table(0, {page: entry & ENTRY_MASK for page, entry in snap.ptes}),
        key=Table(0, {i: size for i, (size, _) in enumerate(snap.index)}),
        pos=Table(-1, {header: i for i, (_, header) in enumerate(snap.index)}),
        owner_of=_owner([b.header for b in blocks]))


# -- helpers (spec/kernel_heap.py's) ---------------------------------------------

def after(s: TwinHeap, h: int) -> int:
    return int(h + s.size[h])


def left_is_hole(s: TwinHeap, h: int) -> bool:
    return h != s.data_start and bool(s.hole[s.owner_of(h - 1)])


def right_is_hole(s: TwinHeap, h: int) -> bool:
    return after(s, h) != s.end and bool(s.hole[after(s, h)])


def last_block(s: TwinHeap) -> int:
    return s.owner_of(s.end - 1)


def live(s: TwinHeap, h: int) -> bool:
    return s.created and bool(s.block[h]) and not s.hole[h]


def a_hole(s: TwinHeap, h: int) -> bool:
    return s.created and bool(s.block[h]) and bool(s.hole[h])


def room(s: TwinHeap) -> bool:
    return s.count < s.capacity


def stamp(s: TwinHeap, h: int, size: int, hole: bool) -> TwinHeap:
    return s.but(block=s.block.store(h, True), size=s.size.store(h, size),
                 hole=s.hole.store(h, hole), magic=s.magic.store(h, MAGIC),
                 fmagic=s.fmagic.store(h, MAGIC), back=s.back.store(h, h))


def _shifted(t: Table, at: int, by: int) -> dict[int, Any]:
    """The stored keys of t below ``at`` kept, the others moved by ``by``."""
    return {(k if k < at else k + by): v for k, v in t.stored.items()
            if k < at or k + by >= at}


def unindex(s: TwinHeap, h: int) -> TwinHeap:
    p = s.pos[h]
    return s.but(index=Table(s.index.default, _shifted(s.index, p, -1)),
                 key=Table(s.key.default, _shifted(s.key, p, -1)),
                 pos=_pointwise(s.pos, lambda v: v - 1 if p < v else v),
                 count=s.count - 1)


def reindex(s: TwinHeap, h: int, q: int) -> TwinHeap:
    index = _shifted(s.index, q, 1)
    index[q] = h
    key = _shifted(s.key, q, 1)
    key[q] = s.size[h]
    pos = _pointwise(s.pos, lambda v: v + 1 if q <= v else v)
    return s.but(index=Table(s.index.default, index), key=Table(s.key.default, key),
                 pos=pos.store(h, q), count=s.count + 1)


def _pointwise(t: Table, f: Callable[[int], int]) -> Table:
    return Table(f(t.default), {k: f(v) for k, v in t.stored.items()})


def sorted_at(s: TwinHeap, h: int, q: int) -> bool:
    return (0 <= q <= s.count and (q == 0 or s.key[q - 1] < s.size[h])
            and (q == s.count or s.size[h] <= s.key[q]))


def move_owner(s: TwinHeap, old: int, new: int, lo: int | None = None) -> Callable[[int], int]:
    owner = s.owner_of

    def moved(a: int) -> int:
        o = owner(a)
        return new if o == old and (lo is None or lo <= a) else o
    return moved


def give_range(s: TwinHeap, owner: int, lo: int, hi: int) -> Callable[[int], int]:
    before = s.owner_of
    return lambda a: owner if lo <= a < hi else before(a)


def make_entry(frame: int, writable: bool, user: bool) -> int:
    """spec.state.make_entry: present, R/W and U/S as given, A and D clear."""
    return ((frame & FRAME_MASK) << 12) | 1 | (2 if writable else 0) | (4 if user else 0)


def _pages(lo: int, hi: int) -> range:
    pages = range(lo // PAGE_SIZE, hi // PAGE_SIZE)
    if len(pages) > MAX_PAGES:
        raise UnsupportedError(f"{len(pages)} pages")
    return pages


def map_pages(s: TwinHeap, lo: int, hi: int, frames: Table) -> Table:
    entries = {p: make_entry(frames[p], not s.readonly, not s.supervisor)
               for p in _pages(lo, hi)}
    return Table(s.pte.default, {**s.pte.stored, **entries})


def unmap_pages(s: TwinHeap, lo: int, hi: int) -> Table:
    return Table(s.pte.default, {**s.pte.stored, **dict.fromkeys(_pages(lo, hi), 0)})


# -- the steps: (ok, assume, successor) ---------------------------------------------------

@dataclass(frozen=True)
class Outcome:
    """A step's guard (``ok``), its ``assume`` and the successor when ok."""

    ok: bool
    assume: bool
    post: TwinHeap


#: The index position of a step's new hole h, from h and its new size (the
#: spec takes it as the argument q; the harness computes it from the state).
Place = Callable[[int, int], int]


def _placed(ok: bool, mid: TwinHeap, h: int, place: Place) -> Outcome:
    q = place(h, mid.size[h])
    return Outcome(ok, sorted_at(mid, h, q), reindex(mid, h, q))


def Take(s: TwinHeap, h: int, page_align: bool) -> Outcome:
    ok = a_hole(s, h) and (not page_align or (h + 12) % PAGE_SIZE == 0)
    post = unindex(s, h)
    post = post.but(hole=s.hole.store(h, False), aligned=s.aligned.store(h, page_align))
    return Outcome(ok, True, post)


def CarveHead(s: TwinHeap, h: int, x: int, place: Place) -> Outcome:
    gap = x - h
    ok = (live(s, h) and h < x and gap >= MIN and gap < s.size[h] and s.size[h] - gap >= MIN
          and (x + 12) % PAGE_SIZE == 0 and not left_is_hole(s, h) and room(s))
    post = stamp(s, x, s.size[h] - gap, False)
    post = stamp(post, h, gap, True)
    post = post.but(aligned=s.aligned.store(h, False).store(x, True),
                    owner_of=move_owner(s, h, x, lo=x))
    return _placed(ok, post, h, place)


def CarveTail(s: TwinHeap, h: int, size: int, place: Place) -> Outcome:
    r = h + size
    ok = (live(s, h) and size >= MIN and size < s.size[h] and s.size[h] - size >= MIN
          and not right_is_hole(s, h) and room(s))
    post = stamp(s, r, s.size[h] - size, True)
    post = stamp(post, h, size, False)
    post = post.but(aligned=post.aligned.store(r, False), owner_of=move_owner(s, h, r, lo=r))
    return _placed(ok, post, r, place)


def AbsorbRight(s: TwinHeap, h: int) -> Outcome:
    r = after(s, h)
    ok = live(s, h) and right_is_hole(s, h)
    post = unindex(s, r)
    post = stamp(post, h, s.size[h] + s.size[r], False)
    post = post.but(block=post.block.store(r, False), owner_of=move_owner(s, r, h))
    return Outcome(ok, True, post)


def AbsorbLeft(s: TwinHeap, h: int, place: Place) -> Outcome:
    left = s.owner_of(h - 1)
    ok = live(s, h) and left_is_hole(s, h) and not right_is_hole(s, h)
    post = unindex(s, left)
    post = stamp(post, left, s.size[left] + s.size[h], True)
    post = post.but(block=post.block.store(h, False), owner_of=move_owner(s, h, left))
    return _placed(ok, post, left, place)


def Release(s: TwinHeap, h: int, place: Place) -> Outcome:
    ok = live(s, h) and not left_is_hole(s, h) and not right_is_hole(s, h) and room(s)
    post = stamp(s, h, s.size[h], True)
    post = post.but(aligned=s.aligned.store(h, False))
    return _placed(ok, post, h, place)


def growth_ok(s: TwinHeap, new_end: int) -> bool:
    return s.created and new_end % PAGE_SIZE == 0 and s.end < new_end <= s.max


def ExpandHole(s: TwinHeap, new_end: int, frames: Table, place: Place) -> Outcome:
    tail = last_block(s)
    ok = growth_ok(s, new_end) and bool(s.hole[tail])
    post = unindex(s, tail)
    post = stamp(post, tail, new_end - tail, True)
    post = post.but(end=new_end, pte=map_pages(s, s.end, new_end, frames),
                    owner_of=give_range(s, tail, s.end, new_end))
    return _placed(ok, post, tail, place)


def ExpandNewHole(s: TwinHeap, new_end: int, frames: Table, place: Place) -> Outcome:
    ok = growth_ok(s, new_end) and not s.hole[last_block(s)] and room(s)
    post = stamp(s, s.end, new_end - s.end, True)
    post = post.but(end=new_end, pte=map_pages(s, s.end, new_end, frames),
                    aligned=s.aligned.store(s.end, False),
                    owner_of=give_range(s, s.end, s.end, new_end))
    return _placed(ok, post, s.end, place)


def shrink_ok(s: TwinHeap, new_end: int) -> bool:
    return (s.created and new_end % PAGE_SIZE == 0 and new_end < s.end
            and s.floor <= new_end - s.start and bool(s.hole[last_block(s)]))


def ShrinkHole(s: TwinHeap, new_end: int, place: Place) -> Outcome:
    tail = last_block(s)
    ok = shrink_ok(s, new_end) and tail < new_end and new_end - tail >= MIN
    post = unindex(s, tail)
    post = stamp(post, tail, new_end - tail, True)
    post = post.but(end=new_end, pte=unmap_pages(s, new_end, s.end))
    return _placed(ok, post, tail, place)


def DropHole(s: TwinHeap, new_end: int) -> Outcome:
    tail = last_block(s)
    ok = shrink_ok(s, new_end) and tail == new_end
    post = unindex(s, tail)
    post = post.but(block=s.block.store(tail, False), end=new_end,
                    pte=unmap_pages(s, new_end, s.end))
    return Outcome(ok, True, post)


def fits_somewhere(s: TwinHeap, h: int, size: int, page_align: bool) -> bool:
    """Some header x makes spec.kernel_heap.fits(s, h, size, page_align, x)
    true: the lowest allowed x is the best (every other bound falls as x
    grows), h itself, or (page_align) the first x >= h + MIN with a
    page-aligned payload when h has none."""
    if page_align and (h + 12) % PAGE_SIZE != 0:
        x = h + MIN + (-(h + MIN + 12)) % PAGE_SIZE
    else:
        x = h
    return fits(s, h, size, page_align, x)


def fits(s: TwinHeap, h: int, size: int, page_align: bool, x: int) -> bool:
    need = size + MIN
    if page_align:
        placed = (x + 12) % PAGE_SIZE == 0 and (x == h or (x > h and x - h >= MIN))
    else:
        placed = x == h
    return (placed and h <= x and x - h <= s.size[h] and need <= s.size[h] - (x - h)
            and need >= MIN)


def FindSmallestHole(s: TwinHeap, size: int, page_align: bool, result: int,
                     x: int) -> Outcome:
    """ok: the heap exists; assume: result is the first fitting position
    (header x), or -1 and none fits."""
    def none_fits(below: int) -> bool:
        return not any(fits_somewhere(s, s.index[j], size, page_align)
                       for j in range(max(below, 0)))
    if result == -1:
        answer = none_fits(s.count)
    else:
        answer = (0 <= result < s.count and fits(s, s.index[result], size, page_align, x)
                  and none_fits(result))
    return Outcome(s.created, answer, s)
