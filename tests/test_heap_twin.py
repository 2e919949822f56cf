"""The KernelHeap steps' Python twins agree with their z3 forms (the source of truth).

Hypothesis builds small model heaps (the heap machine's: 2 pages of a 32-page
range, 16 index entries) through their own calls (Alloc, page-aligned too,
Free, Expand, Contract), takes their snapshot and then corrupts it by a few
edits of its own drawing (a block's size, hole flag, magic or footer, the
walk's order, an index entry's size, order or presence, the end, the
capacity, the aligned set, a PTE); on every snapshot each step of
spec/kernel_heap.py is applied, with arguments drawn around the state's own
headers, sizes and ends, both as z3 terms (on
:func:`~proofs.abstractions.kernel_heap.to_heap_state`) and as its twin
(on :func:`~proofs.abstractions.heap_twin.to_twin`): the guard, the assume
and the successor must agree, the successor's ``block`` and ``pte`` as whole
maps (z3 decides the equality with the twin's maps as Store chains), every
other map at each point either side stores plus the arguments' points, the
index maps at every position from -2 to past the count, ``owner_of`` at the
points the steps read. Last, the twin composite accepts every call of a clean
model heap (the harness's z3 composite accepts them too: the heap machine).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
import z3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proofs.abstractions import heap_twin as tw
from proofs.abstractions.heap_walk import RawBlock
from proofs.abstractions.kernel_heap import HeapSnapshot, heap_snapshot, to_heap_state
from proofs.machines.kernel_heap import lit, make_heap, value
from proofs.machines.kernel_heap_twin import _placer, accepts, judged
from spec import kernel_heap as kh
from spec.abi import HEAP_MAGIC, MIN_BLOCK, PAGE_SIZE
from spec.state import ADDR, ENTRY, FRAME, PAGE, HeapState, bv

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
MAPS = ("size", "hole", "aligned", "magic", "fmagic", "back", "pos")
SCALARS = ("created", "start", "end", "max", "data_start", "floor", "capacity", "supervisor",
           "readonly", "count")


@st.composite
def model_heaps(draw: Any) -> HeapSnapshot:
    """A valid heap of the model, reached through its own calls (``fill``: an
    Alloc the size of the hole that ends the heap, so that a live block ends
    it; ``free_all``: back to one hole)."""
    heap = make_heap()
    live: list[int] = []
    for _ in range(draw(st.integers(0, 12))):
        kind = draw(st.sampled_from(("alloc", "alloc", "aligned", "free", "expand", "contract",
                                     "fill", "free_all")))
        size = draw(st.integers(0, 0x3000) | st.sampled_from((0x1000 - MIN_BLOCK, 64)))
        if kind == "fill":
            kind, size = "alloc", max((s for s, h in heap.holes() if h + s == heap.end_address),
                                      default=MIN_BLOCK) - MIN_BLOCK
        if kind in ("alloc", "aligned"):
            p = heap.Alloc(size, kind == "aligned")
            if p:
                live.append(p)
        elif kind in ("free", "free_all") and live:
            for _ in range(len(live) if kind == "free_all" else 1):
                heap.Free(live.pop(draw(st.integers(0, len(live) - 1))))
        elif kind == "expand":
            heap.Expand(heap.end_address - heap.start_address + draw(st.integers(1, 0x4000)))
        elif kind == "contract":
            heap.Contract(heap.end_address - heap.start_address - draw(st.integers(0, 0x3000)))
    return heap_snapshot(heap)


@st.composite
def corrupted(draw: Any, snap: HeapSnapshot) -> HeapSnapshot:
    """The snapshot with up to three edits of the drawn kinds."""
    for _ in range(draw(st.integers(0, 3))):
        blocks, index = list(snap.blocks), list(snap.index)
        kind = draw(st.sampled_from(("size", "hole", "magic", "back", "order", "key", "swap",
                                     "drop", "end", "capacity", "aligned", "pte")))
        if kind in ("size", "hole", "magic", "back") and blocks:
            i = draw(st.integers(0, len(blocks) - 1))
            b = blocks[i]
            blocks[i] = (dataclasses.replace(b, size=b.size + draw(st.integers(-24, 24)))
                         if kind == "size" else
                         dataclasses.replace(b, hole=not b.hole) if kind == "hole" else
                         dataclasses.replace(b, magic=b.magic ^ 1) if kind == "magic" else
                         dataclasses.replace(b, back=b.back + 4))
        elif kind == "order" and len(blocks) > 1:
            blocks.reverse()
        elif kind == "key" and index:
            i = draw(st.integers(0, len(index) - 1))
            index[i] = (index[i][0] + draw(st.integers(-40, 40)), index[i][1])
        elif kind == "swap" and len(index) > 1:
            index[0], index[-1] = index[-1], index[0]
        elif kind == "drop" and index:
            index.pop(draw(st.integers(0, len(index) - 1)))
        if kind == "end":
            snap = dataclasses.replace(snap, end=snap.end + PAGE_SIZE * draw(st.integers(-1, 1)))
        elif kind == "capacity":
            snap = dataclasses.replace(snap, capacity=len(snap.index))
        elif kind == "aligned":
            flip = {draw(st.sampled_from([b.header for b in blocks] or [snap.data_start]))}
            snap = dataclasses.replace(snap, aligned=snap.aligned ^ flip)
        elif kind == "pte" and snap.ptes:
            snap = dataclasses.replace(snap, ptes=snap.ptes[:-1])
        snap = dataclasses.replace(snap, blocks=tuple(blocks), index=tuple(index))
    return snap


@st.composite
def edge_heaps(draw: Any) -> HeapSnapshot:
    """Three blocks (each live or a hole) whose boundaries lie a few bytes
    around page boundaries: where the steps' bounds (MIN_BLOCK, page-aligned
    payloads and ends) are met exactly."""
    start = 0xC0000000
    data_start = start + PAGE_SIZE
    near = st.sampled_from((-MIN_BLOCK - 12, -MIN_BLOCK - 1, -MIN_BLOCK, -MIN_BLOCK + 1, -12,
                            0, 4))
    cut = data_start + PAGE_SIZE * draw(st.integers(1, 2)) + draw(near)
    cut2 = cut + PAGE_SIZE * draw(st.integers(1, 2)) + draw(near) + MIN_BLOCK
    end = -(-(cut2 + MIN_BLOCK) // PAGE_SIZE) * PAGE_SIZE + PAGE_SIZE * draw(st.integers(0, 1))
    edges = (data_start, cut, cut2, end)
    holes = draw(st.sampled_from(((False, False, True), (False, True, False),
                                  (True, False, True), (False, False, False))))
    blocks = tuple(RawBlock(h, HEAP_MAGIC, hole, nxt - h, HEAP_MAGIC, h)
                   for h, nxt, hole in zip(edges, edges[1:], holes, strict=False))
    index = tuple(sorted(((b.size, b.header) for b in blocks if b.hole), key=lambda e: e[0]))
    ptes = tuple((page, (0x100 + i) << 12 | 3)
                 for i, page in enumerate(range(start >> 12, end >> 12)))
    return HeapSnapshot(True, start, end, start + 0x20000, data_start,
                        draw(st.sampled_from((0x1000, 0x2000))), 16, True, False, blocks,
                        frozenset(), index, ptes)


def heaps() -> st.SearchStrategy[HeapSnapshot]:
    return st.one_of(model_heaps().flatmap(lambda snap: st.one_of(st.just(snap),
                                                                  corrupted(snap))),
                     edge_heaps())


def _term(table: tw.Table, key_sort: Any, value_of: Callable[[Any], Any]) -> Any:
    array = z3.K(key_sort, value_of(table.default))
    for key, stored in table.stored.items():
        array = z3.Store(array, lit(key, key_sort), value_of(stored))
    return array


def _word(v: Any) -> Any:
    return z3.BoolVal(v) if isinstance(v, bool) else z3.IntVal(v)


def _whole(mine: Any, table: tw.Table, key_sort: Any, value_of: Callable[[Any], Any]) -> bool:
    """z3 decides that the z3 map equals the twin's (as a Store chain)."""
    solver = z3.Solver()
    solver.add(mine != _term(table, key_sort, value_of))
    result = solver.check()
    assert result != z3.unknown
    return bool(result == z3.unsat)


def truth(claim: Any) -> bool:
    """A closed claim's truth value (quantifiers too: z3 decides)."""
    simple = z3.simplify(claim)
    if z3.is_true(simple) or z3.is_false(simple):
        return z3.is_true(simple)
    solver = z3.Solver()
    solver.add(z3.Not(claim))
    result = solver.check()
    assert result != z3.unknown
    return bool(result == z3.unsat)


def agree(z: HeapState, t: tw.TwinHeap, points: set[int]) -> None:
    """The successors agree field by field (see the module docstring)."""
    for name in SCALARS:
        assert tw.same_value(value(getattr(z, name)), getattr(t, name)), name
    assert _whole(z.block, t.block, ADDR, _word), "block"
    assert _whole(z.pte, t.pte, PAGE, lambda v: bv(v, ENTRY)), "pte"
    for name in MAPS:
        table = getattr(t, name)
        for point in points | set(table.stored):
            assert tw.same_value(value(getattr(z, name)[lit(point)]), table[point]), (name, point)
    for name in ("index", "key"):
        for i in range(-2, max(t.count, value(z.count)) + 3):
            assert value(getattr(z, name)[lit(i)]) == getattr(t, name)[i], (name, i)
    for point in points:
        assert value(z.owner_of[lit(point)]) == t.owner_of(point), ("owner_of", point)


def check(z: kh.HeapStep, t: tw.Outcome, points: set[int]) -> None:
    ok = bool(value(z3.simplify(z.status == 0)))
    assert ok == t.ok
    assert truth(z.assume) == (not ok or t.assume)
    if ok:
        agree(z.changed, t.post, points)


@st.composite
def arguments(draw: Any, snap: HeapSnapshot, step: str) -> dict[str, Any]:
    """Arguments around the state's own blocks, most of them ones the step's
    guard allows: a hole for Take, a live block otherwise, a size or header
    inside it, an end at the tail hole's header or page multiples around the
    end, the harness's index position or one around it."""
    holes = [b.header for b in snap.blocks if b.hole]
    used = [b.header for b in snap.blocks if not b.hole]
    pick = holes if step in ("Take", "FindSmallestHole") else used
    h = draw(st.sampled_from(pick or [snap.data_start])) + draw(
        st.sampled_from((0, 0, 0, 0, 4, -MIN_BLOCK)))
    room = tw.to_twin(snap).size[h]
    edges = st.sampled_from((MIN_BLOCK, MIN_BLOCK - 1, 0, room, room - MIN_BLOCK,
                             room - MIN_BLOCK + 1))
    size = draw(edges | edges | st.integers(MIN_BLOCK, max(MIN_BLOCK, room - MIN_BLOCK))
                | st.integers(0, 0x1800))
    x = -(-(h + MIN_BLOCK + 12) // PAGE_SIZE) * PAGE_SIZE - 12 + draw(
        st.sampled_from((0, 0, 0, PAGE_SIZE, -PAGE_SIZE, 4)))
    if draw(st.booleans()):  # x where the remainder is exactly MIN_BLOCK, or a byte less
        x = h + room - MIN_BLOCK + draw(st.sampled_from((0, 1)))
    tail = snap.blocks[-1].header if snap.blocks else snap.end
    new_end = draw(st.sampled_from((tail, -(-tail // PAGE_SIZE) * PAGE_SIZE,
                                    -(-(tail + MIN_BLOCK) // PAGE_SIZE) * PAGE_SIZE))
                   | st.integers(-3, 3).map(lambda k: snap.end + k * PAGE_SIZE)
                   | st.just(snap.end + 8))
    return {"h": h, "size": size, "x": x, "new_end": new_end,
            "q": draw(st.none() | st.integers(-1, len(snap.index) + 1)),
            "page_align": draw(st.booleans()),
            "frames": {p: draw(st.integers(0, 0x300)) for p in range(
                snap.end // PAGE_SIZE, snap.end // PAGE_SIZE + 3)},
            "result": draw(st.integers(-1, len(snap.index)))}


STEPS = ("Take", "CarveHead", "CarveTail", "AbsorbRight", "AbsorbLeft", "Release",
         "ExpandHole", "ExpandNewHole", "ShrinkHole", "DropHole", "FindSmallestHole")


def steps(s: HeapState, t: tw.TwinHeap, a: dict[str, Any], step: str) -> tuple[Any, Any]:
    """The step as z3 terms and as its twin, on the same arguments; q is the
    drawn position, or (None) the harness's rule on the twin."""
    h, size, x, new_end, align = a["h"], a["size"], a["x"], a["new_end"], a["page_align"]
    q = a["q"]
    if q is None:
        q = _harness_position(t, step, a)
    place = lambda _h, _size: q  # noqa: E731
    frames_t = tw.Table(0, dict(a["frames"]))
    frames_z = _term(frames_t, PAGE, lambda v: bv(v, FRAME))
    table: dict[str, Callable[[], tuple[Any, Any]]] = {
        "Take": lambda: (kh.Take(s, lit(h), z3.BoolVal(align)), tw.Take(t, h, align)),
        "CarveHead": lambda: (kh.CarveHead(s, lit(h), lit(x), lit(q)),
                              tw.CarveHead(t, h, x, place)),
        "CarveTail": lambda: (kh.CarveTail(s, lit(h), lit(size), lit(q)),
                              tw.CarveTail(t, h, size, place)),
        "AbsorbRight": lambda: (kh.AbsorbRight(s, lit(h)), tw.AbsorbRight(t, h)),
        "AbsorbLeft": lambda: (kh.AbsorbLeft(s, lit(h), lit(q)), tw.AbsorbLeft(t, h, place)),
        "Release": lambda: (kh.Release(s, lit(h), lit(q)), tw.Release(t, h, place)),
        "ExpandHole": lambda: (kh.ExpandHole(s, lit(new_end), frames_z, lit(q)),
                               tw.ExpandHole(t, new_end, frames_t, place)),
        "ExpandNewHole": lambda: (kh.ExpandNewHole(s, lit(new_end), frames_z, lit(q)),
                                  tw.ExpandNewHole(t, new_end, frames_t, place)),
        "ShrinkHole": lambda: (kh.ShrinkHole(s, lit(new_end), lit(q)),
                               tw.ShrinkHole(t, new_end, place)),
        "DropHole": lambda: (kh.DropHole(s, lit(new_end)), tw.DropHole(t, new_end)),
    }
    return table[step]()


def _harness_position(t: tw.TwinHeap, step: str, a: dict[str, Any]) -> int:
    """The index position the harness gives the step's new hole (-1: none)."""
    h, new_end = a["h"], a["new_end"]
    tail, left = tw.last_block(t), t.owner_of(h - 1)
    new = {"CarveHead": (h, a["x"] - h), "CarveTail": (h + a["size"], t.size[h] - a["size"]),
           "AbsorbLeft": (left, t.size[left] + t.size[h]), "Release": (h, t.size[h]),
           "ExpandHole": (tail, new_end - tail), "ExpandNewHole": (t.end, new_end - t.end),
           "ShrinkHole": (tail, new_end - tail)}.get(step)
    return -1 if new is None else _placer(t)(*new)


#: Which (step, ok, assume) outcomes the runs of the test below reached.
REACHED: set[tuple[str, bool, bool]] = set()


@pytest.mark.parametrize("step", STEPS)
@settings(max_examples=100, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_every_step_agrees_with_its_z3_form(step: str, data: Any) -> None:
    snap = data.draw(heaps())
    a = data.draw(arguments(snap, step))
    s, t = to_heap_state(snap), tw.to_twin(snap)
    if step == "FindSmallestHole":
        size, align, result = a["size"], a["page_align"], a["result"]
        if data.draw(st.booleans()):  # the answer the twin says is right
            result = next((j for j in range(t.count)
                           if tw.fits_somewhere(t, t.index[j], size, align)), -1)
        z = kh.FindSmallestHole(s, lit(size), z3.BoolVal(align), lit(result), lit(a["x"]))
        twin = tw.FindSmallestHole(t, size, align, result, a["x"])
        assert bool(value(z3.simplify(z.status == 0))) == twin.ok
        assert truth(z.assume) == (not twin.ok or twin.assume)
        REACHED.add((step, twin.ok, twin.assume))
        return
    h = a["h"]
    points = {h, h - 1, h + a["size"], a["x"], snap.end, snap.end - 1, a["new_end"],
              a["new_end"] - 1, snap.data_start, *(b.header for b in snap.blocks)}
    z, twin = steps(s, t, a, step)
    REACHED.add((step, twin.ok, twin.assume))
    check(z, twin, points)


@SETTINGS
@given(data=st.data())
def test_fits_somewhere_is_the_spec_s_exists(data: Any) -> None:
    """fits_somewhere(h) holds exactly when some header x fits (z3's exists)."""
    snap = data.draw(heaps())
    a = data.draw(arguments(snap, "FindSmallestHole"))
    s, t = to_heap_state(snap), tw.to_twin(snap)
    y = z3.Const("y", ADDR)
    exists = z3.Exists([y], kh.fits(s, lit(a["h"]), lit(a["size"]),
                                    z3.BoolVal(a["page_align"]), y))
    assert truth(exists) == tw.fits_somewhere(t, a["h"], a["size"], a["page_align"])


def test_a_corrupted_block_reads_as_the_abstraction_does() -> None:
    """A walk out of order and a header given twice read as to_heap_state's Store
    chains and If chain do (the later entry wins)."""
    blocks = (RawBlock(0x1100, HEAP_MAGIC, True, 0x100, HEAP_MAGIC, 0x1100),
              RawBlock(0x1000, HEAP_MAGIC, False, 0x100, HEAP_MAGIC, 0x1000),
              RawBlock(0x1100, HEAP_MAGIC, False, 0x80, HEAP_MAGIC, 0x1100))
    snap = HeapSnapshot(True, 0x1000, 0x2000, 0x4000, 0x1000, 0x1000, 4, True, False,
                        blocks, frozenset(), ((0x100, 0x1100),), ())
    s, t = to_heap_state(snap), tw.to_twin(snap)
    for point in (0xFFF, 0x1000, 0x10FF, 0x1100, 0x1180, 0x1FFF):
        assert value(s.owner_of[lit(point)]) == t.owner_of(point)
    for name in ("size", "hole"):
        assert value(getattr(s, name)[lit(0x1100)]) == getattr(t, name)[0x1100]


def _z3_args(args: tuple[Any, ...]) -> list[Any]:
    return [z3.BoolVal(v) if isinstance(v, bool) else lit(v) if isinstance(v, int)
            else _term(v, PAGE, lambda f: bv(f, FRAME)) for v in args]


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(calls=st.lists(st.tuples(st.sampled_from(("Alloc", "Alloc", "Free", "Free", "Expand",
                                                 "Contract", "FindSmallestHole")),
                                st.integers(0, 0x2400) | st.sampled_from((0xFEC, 0x1FEC, 8)),
                                st.booleans()), max_size=14))
def test_the_twin_composite_takes_the_z3_steps_on_the_model(
        calls: list[tuple[str, int, bool]]) -> None:
    """Every successful call of a clean model heap is accepted by the twin
    composite (the model refines the spec: the heap machine's obligation),
    and each step it took, replayed as z3 terms from the same state with the
    same arguments, agrees with the twin's (guard, assume, successor)."""
    heap = make_heap()
    live: dict[int, int] = {}
    for name, n, flag in calls:
        pre = heap_snapshot(heap)
        length = heap.end_address - heap.start_address
        args: tuple[Any, ...] = {
            "Alloc": (n, flag), "FindSmallestHole": (n, flag),
            "Free": (sorted(live)[n % len(live)] if live else 0x10,),
            "Expand": (length + n,), "Contract": (length - n,)}[name]
        result = getattr(heap, name)(*args)
        if heap.last_error != 0:
            continue
        accepted, taken = judged(name, pre, heap_snapshot(heap), args, result, live)
        assert accepted, (name, args)
        z, t = to_heap_state(pre), tw.to_twin(pre)
        points = {pre.end, pre.end - 1, heap.end_address, *(b.header for b in pre.blocks),
                  *(b.header for b in heap_snapshot(heap).blocks)}
        for step, step_args, q in taken:
            z_step = getattr(kh, step.__name__)(z, *_z3_args(step_args),
                                                *([] if q is None else [lit(q)]))
            t_step = step(t, *step_args, *([] if q is None else [lambda _h, _s, q=q: q]))
            REACHED.add((step.__name__, t_step.ok, t_step.assume))
            check(z_step, t_step, points | {a for a in step_args if type(a) is int})
            z, t = z_step.changed, t_step.post
        if name == "Alloc":
            live[result] = n
        elif name == "Free":
            del live[args[0]]


def edge_heap(near: int, near2: int, holes: tuple[bool, bool, bool]) -> HeapSnapshot:
    """edge_heaps' heap with the given offsets from page boundaries."""
    start = 0xC0000000
    data_start = start + PAGE_SIZE
    cut = data_start + PAGE_SIZE + near
    cut2 = cut + PAGE_SIZE + near2 + MIN_BLOCK
    end = -(-(cut2 + MIN_BLOCK) // PAGE_SIZE) * PAGE_SIZE + PAGE_SIZE
    edges = (data_start, cut, cut2, end)
    blocks = tuple(RawBlock(h, HEAP_MAGIC, hole, nxt - h, HEAP_MAGIC, h)
                   for h, nxt, hole in zip(edges, edges[1:], holes, strict=False))
    index = tuple(sorted(((b.size, b.header) for b in blocks if b.hole), key=lambda e: e[0]))
    ptes = tuple((page, (0x100 + i) << 12 | 3)
                 for i, page in enumerate(range(start >> 12, end >> 12)))
    return HeapSnapshot(True, start, end, start + 0x20000, data_start, 0x1000, 16, True, False,
                        blocks, frozenset(), index, ptes)


NEAR = (-MIN_BLOCK - 12, -MIN_BLOCK - 1, -MIN_BLOCK, -12, 0)


@pytest.mark.parametrize("holes", [(False, False, True), (False, True, False),
                                   (True, False, True)])
def test_steps_agree_on_the_edges(holes: tuple[bool, bool, bool]) -> None:
    """Every step at every block of heaps whose boundaries sit at the steps'
    bounds (a remainder or gap of exactly MIN_BLOCK bytes or one less, a
    payload at a page boundary, an end at a hole's header): twin and z3 agree."""
    for near in NEAR:
        for near2 in NEAR:
            snap = edge_heap(near, near2, holes)
            s, t = to_heap_state(snap), tw.to_twin(snap)
            for b in snap.blocks:
                h = b.header
                tail = snap.blocks[-1].header
                x = -(-(h + MIN_BLOCK + 12) // PAGE_SIZE) * PAGE_SIZE - 12
                ends = {tail, -(-(tail + MIN_BLOCK) // PAGE_SIZE) * PAGE_SIZE,
                        snap.end - PAGE_SIZE, snap.end + PAGE_SIZE}
                trials = [("CarveHead", {"x": x}), ("CarveTail", {"size": b.size - MIN_BLOCK}),
                          ("CarveTail", {"size": b.size - MIN_BLOCK + 1}),
                          ("Take", {"page_align": True}), ("AbsorbRight", {}),
                          ("AbsorbLeft", {}), ("Release", {}),
                          *((step, {"new_end": e}) for e in ends
                            for step in ("ShrinkHole", "DropHole", "ExpandHole",
                                         "ExpandNewHole"))]
                for step, extra in trials:
                    a = {"h": h, "size": 0, "x": x, "new_end": snap.end, "q": None,
                         "page_align": False, "frames": {}, **extra}
                    z, twin = steps(s, t, a, step)
                    REACHED.add((step, twin.ok, twin.assume))
                    check(z, twin, {h, h - 1, x, snap.end, snap.end - 1, a["new_end"],
                                    *(c.header for c in snap.blocks)})


def test_the_runs_above_reached_every_step_s_success() -> None:
    """Each step was applied (ok, assume true) at least once by the tests
    above: their agreement is not only of refusals (run after them, in file
    order; alone, there is nothing to look at)."""
    if not REACHED:
        return
    missing = [step for step in STEPS if (step, True, True) not in REACHED]
    assert not missing


def test_the_twin_composite_refuses_a_wrong_post_state() -> None:
    """An Alloc whose reported post-state lost a byte of the block's size, or kept
    the hole in the index, is not accepted (z3 then judges it)."""
    heap = make_heap()
    pre = heap_snapshot(heap)
    p = heap.Alloc(64, False)
    post = heap_snapshot(heap)
    assert accepts("Alloc", pre, post, (64, False), p, {})
    shrunk = tuple(dataclasses.replace(b, size=b.size - 1) if b.header == p - 12 else b
                   for b in post.blocks)
    assert not accepts("Alloc", pre, dataclasses.replace(post, blocks=shrunk), (64, False),
                       p, {})
    assert not accepts("Alloc", pre, dataclasses.replace(post, index=pre.index), (64, False),
                       p, {})
    assert not accepts("Alloc", pre, post, (64, True), p, {})
