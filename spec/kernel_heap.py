"""KernelHeap (seed section 3): invariants HEAP-1..6 and the heap's transitions.

The heap is the tutorial design the seed follows (JamesM's kernel heap):
blocks tile [data_start, end), each a 12-byte header {magic, is_hole, size}
and an 8-byte footer {magic, header}; the holes are indexed by size. The
model's rules (and the tutorial's bugs it avoids) are in model/kernel_heap.py.

An allocation or a free touches up to three blocks and the index, so the
spec writes each public call as a short sequence of steps that each keep
every invariant (as the VMM's AllocPage = LinkTable then PlaceFrame):

- Alloc = Take (a hole becomes the block) [, CarveHead (a page-aligned
  block leaves the gap before it as a hole)] [, CarveTail (the remainder
  after the block becomes a hole when it can hold a header and a footer)];
  when no hole fits, ExpandHole or ExpandNewHole first.
- Free = [AbsorbRight (the block swallows a hole after it)], then
  AbsorbLeft (the hole before it swallows the block) or Release (the block
  becomes a hole); then, if the hole ends the heap, ShrinkHole or DropHole.
- Expand = ExpandHole or ExpandNewHole; Contract = ShrinkHole or DropHole.

Where an implementation chooses (which hole; where in the index a new entry
goes among equal sizes is fixed: before them), the choice is an argument
and ``assume`` states what makes it valid: the spec allows any hole that
fits, the model takes the first in index order (FindSmallestHole).
"""

from __future__ import annotations

import z3

from spec.abi import HEAP_MAGIC, HEAP_TOP, MIN_BLOCK, PAGE_SIZE, ErrorCode
from spec.state import (
    ADDR,
    ENTRY,
    PAGE,
    HeapState,
    Ref,
    bv,
    ite_heap,
    make_entry,
    present,
    user,
    writable,
)
from spec.step import Transition, guarded, status

E = ErrorCode
HeapStep = Transition[HeapState]
MAGIC = z3.IntVal(HEAP_MAGIC)
MIN = z3.IntVal(MIN_BLOCK)
#: The highest page-aligned 32-bit address: nothing of the heap wraps past it.
TOP = z3.IntVal(HEAP_TOP)


# -- helpers -------------------------------------------------------------------

def low12(address: Ref) -> Ref:
    return address % PAGE_SIZE


def page_of(address: Ref) -> Ref:
    return address / PAGE_SIZE


def within(h: Ref, a: Ref, size: Ref) -> Ref:
    """h <= a < h + size, without wrapping."""
    return z3.And(h <= a, a - h < size)


def in_heap(s: HeapState, a: Ref) -> Ref:
    return z3.And(s.data_start <= a, a < s.end)


def after(s: HeapState, h: Ref) -> Ref:
    """The address just past block h: the next header, or the end."""
    return h + s.size[h]


def left_is_hole(s: HeapState, h: Ref) -> Ref:
    return z3.And(h != s.data_start, s.hole[s.owner_of[h - 1]])


def right_is_hole(s: HeapState, h: Ref) -> Ref:
    return z3.And(after(s, h) != s.end, s.hole[after(s, h)])


def last_block(s: HeapState) -> Ref:
    return s.owner_of[s.end - 1]


def live(s: HeapState, h: Ref) -> Ref:
    return z3.And(s.created, s.block[h], z3.Not(s.hole[h]))


def a_hole(s: HeapState, h: Ref) -> Ref:
    return z3.And(s.created, s.block[h], s.hole[h])


# -- invariants ----------------------------------------------------------------

def heap_1(s: HeapState) -> Ref:
    """HEAP-1: the hole index is ordered by size (non-decreasing): each key is
    at most the next (which orders them all), and HEAP-3 makes each key the
    size of the hole at its position."""
    i = z3.Const("i", ADDR)
    return z3.Implies(s.created, z3.ForAll([i], z3.Implies(
        z3.And(0 <= i, i + 1 < s.count), s.key[i] <= s.key[i + 1])))


def heap_2(s: HeapState) -> Ref:
    """HEAP-2: the blocks tile [data_start, end) exactly, and every header and
    footer holds the magic and the footer points back at its header.

    Tiling without bounds: each block starts where the previous one ends (or
    at data_start) and ends at the next header or the end; every address of
    the data area belongs to the block ``owner_of`` names, and to no other.
    """
    h, a, g = z3.Consts("h a g", ADDR)
    return z3.Implies(s.created, z3.And(
        (s.data_start < s.end), s.block[s.data_start],
        z3.ForAll([h], z3.Implies(s.block[h], z3.And(
            in_heap(s, h), s.size[h] >= MIN, s.size[h] <= s.end - h,
            s.owner_of[h] == h,
            z3.Or(after(s, h) == s.end, s.block[after(s, h)]),
            s.magic[h] == MAGIC, s.fmagic[h] == MAGIC, s.back[h] == h))),
        z3.ForAll([a], z3.Implies(in_heap(s, a), z3.And(
            s.block[s.owner_of[a]], within(s.owner_of[a], a, s.size[s.owner_of[a]])))),
        z3.ForAll([g, a], z3.Implies(z3.And(s.block[g], within(g, a, s.size[g])),
                                     s.owner_of[a] == g))))


def heap_3(s: HeapState) -> Ref:
    """HEAP-3: the index holds exactly the holes, each once (``pos`` is the
    inverse of the index on them), and no more entries than its capacity."""
    i, h = z3.Consts("i h", ADDR)
    return z3.Implies(s.created, z3.And(
        0 <= s.count, s.count <= s.capacity,
        z3.ForAll([i], z3.Implies(z3.And(0 <= i, i < s.count), z3.And(
            s.block[s.index[i]], s.hole[s.index[i]], s.pos[s.index[i]] == i,
            s.key[i] == s.size[s.index[i]]))),
        z3.ForAll([h], z3.Implies(z3.And(s.block[h], s.hole[h]), z3.And(
            0 <= s.pos[h], s.pos[h] < s.count, s.index[s.pos[h]] == h)))))


def heap_4(s: HeapState) -> Ref:
    """HEAP-4: no two holes are adjacent (Free unifies left and right)."""
    h = z3.Const("h", ADDR)
    return z3.Implies(s.created, z3.ForAll([h], z3.Implies(
        z3.And(s.block[h], s.hole[h], after(s, h) != s.end), z3.Not(s.hole[after(s, h)]))))


def heap_5(s: HeapState) -> Ref:
    """HEAP-5: start <= end <= max, all page aligned; the floor the heap never
    contracts below covers the index and one block; [start, end) is
    mapped with the heap's flags (U/S = not supervisor, R/W = not readonly)
    and [end, max) is not mapped."""
    p = z3.Const("p", PAGE)
    pte = s.pte[p]
    return z3.Implies(s.created, z3.And(
        0 <= s.start, low12(s.start) == 0, low12(s.end) == 0, low12(s.max) == 0,
        (s.start <= s.data_start), s.end <= s.max, s.max <= TOP,
        (s.data_start - s.start + MIN <= s.floor),
        z3.ForAll([p], z3.Implies(
            z3.And(page_of(s.start) <= p, p < page_of(s.end)),
            z3.And(present(pte), user(pte) == z3.Not(s.supervisor),
                   writable(pte) == z3.Not(s.readonly)))),
        z3.ForAll([p], z3.Implies(
            z3.And(page_of(s.end) <= p, p < page_of(s.max)),
            z3.Not(present(pte))))))


def heap_6(s: HeapState) -> Ref:
    """HEAP-6: blocks are disjoint, and a block allocated with page_align has
    a page-aligned payload (header + 12)."""
    g, h = z3.Consts("g h", ADDR)
    return z3.Implies(s.created, z3.And(
        z3.ForAll([h], z3.Implies(z3.And(s.block[h], z3.Not(s.hole[h]), s.aligned[h]),
                                  low12(h + 12) == 0)),
        z3.ForAll([g, h], z3.Implies(z3.And(s.block[g], s.block[h], g < h),
                                     (s.size[g] <= h - g)))))


INVARIANTS = {"HEAP-1": heap_1, "HEAP-2": heap_2, "HEAP-3": heap_3, "HEAP-4": heap_4,
              "HEAP-5": heap_5, "HEAP-6": heap_6}


# -- state updates -------------------------------------------------------------

def stamp(s: HeapState, h: Ref, size: Ref, hole: Ref) -> HeapState:
    """Write block h's header (magic, hole flag, size) and a fresh footer."""
    return s.but(block=z3.Store(s.block, h, True), size=z3.Store(s.size, h, size),
                 hole=z3.Store(s.hole, h, hole), magic=z3.Store(s.magic, h, MAGIC),
                 fmagic=z3.Store(s.fmagic, h, MAGIC), back=z3.Store(s.back, h, h))


def unindex(s: HeapState, h: Ref) -> HeapState:
    """Remove hole h from the index: the entries after it move up one."""
    i, g = z3.Consts("i g", ADDR)
    p = s.pos[h]
    return s.but(index=z3.Lambda([i], z3.If(i < p, s.index[i], s.index[i + 1])),
                 key=z3.Lambda([i], z3.If(i < p, s.key[i], s.key[i + 1])),
                 pos=z3.Lambda([g], z3.If(p < s.pos[g], s.pos[g] - 1, s.pos[g])),
                 count=s.count - 1)


def reindex(s: HeapState, h: Ref, q: Ref) -> HeapState:
    """Insert hole h (its size already written) at position q."""
    i, g = z3.Consts("i g", ADDR)
    return s.but(
        index=z3.Lambda([i], z3.If(i < q, s.index[i],
                                   z3.If(i == q, h, s.index[i - 1]))),
        key=z3.Lambda([i], z3.If(i < q, s.key[i],
                                 z3.If(i == q, s.size[h], s.key[i - 1]))),
        pos=z3.Lambda([g], z3.If(g == h, q, z3.If(q <= s.pos[g], s.pos[g] + 1,
                                                  s.pos[g]))),
        count=s.count + 1)


def sorted_at(s: HeapState, h: Ref, q: Ref) -> Ref:
    """q is where hole h goes: after every smaller entry, before the entries of
    its own size and larger (the tutorial's insert_ordered_array)."""
    return z3.And(0 <= q, q <= s.count,
                  z3.Or(q == 0, s.key[q - 1] < s.size[h]),
                  z3.Or(q == s.count, s.size[h] <= s.key[q]))


def room(s: HeapState) -> Ref:
    return s.count < s.capacity


def give_range(s: HeapState, owner: Ref, lo: Ref, hi: Ref) -> Ref:
    """owner_of with [lo, hi) given to owner."""
    a = z3.Const("a", ADDR)
    return z3.Lambda([a], z3.If(z3.And(lo <= a, a < hi), owner, s.owner_of[a]))


def move_owner(s: HeapState, old: Ref, new: Ref, lo: Ref | None = None) -> Ref:
    """owner_of with the addresses of block old (from lo on) given to new."""
    a = z3.Const("a", ADDR)
    cond = s.owner_of[a] == old
    if lo is not None:
        cond = z3.And(cond, lo <= a)
    return z3.Lambda([a], z3.If(cond, new, s.owner_of[a]))


def map_pages(s: HeapState, lo: Ref, hi: Ref, frames: Ref) -> Ref:
    """pte with the pages of [lo, hi) mapped to frames[p] with the heap's flags."""
    p = z3.Const("p", PAGE)
    entry = make_entry(frames[p], z3.Not(s.readonly), z3.Not(s.supervisor))
    return z3.Lambda([p], z3.If(z3.And(page_of(lo) <= p, p < page_of(hi)),
                                entry, s.pte[p]))


def unmap_pages(s: HeapState, lo: Ref, hi: Ref) -> Ref:
    p = z3.Const("p", PAGE)
    return z3.Lambda([p], z3.If(z3.And(page_of(lo) <= p, p < page_of(hi)),
                                bv(0, ENTRY), s.pte[p]))


def heap_step(pre: HeapState, code: Ref, post: HeapState, result: Ref | None = None,
              failure: Ref | None = None, assume: Ref | None = None) -> HeapStep:
    return guarded(pre, code, post, ite_heap, result, failure, assume)


def failed(condition: Ref) -> list[tuple[Ref, ErrorCode]]:
    """The guard of an internal step: it applies only when condition holds."""
    return [(z3.Not(condition), E.ERROR_INVALID_PARAMETER)]


# -- steps of Alloc --------------------------------------------------------------

def Take(s: HeapState, h: Ref, page_align: Ref) -> HeapStep:
    """Hole h becomes an allocated block (out of the index)."""
    ok = z3.And(a_hole(s, h), z3.Implies(page_align, low12(h + 12) == 0))
    post = unindex(s, h)
    post = post.but(hole=z3.Store(s.hole, h, False), aligned=z3.Store(s.aligned, h, page_align))
    return heap_step(s, status(*failed(ok)), post)


def CarveHead(s: HeapState, h: Ref, x: Ref, q: Ref) -> HeapStep:
    """Block h moves up to header x (a page-aligned payload) and leaves the gap
    [h, x) as a hole; the gap can hold a header and a footer, and its left
    neighbour is no hole."""
    gap = x - h
    ok = z3.And(live(s, h), h < x, gap >= MIN, gap < s.size[h],
                (s.size[h] - gap >= MIN), low12(x + 12) == 0,
                z3.Not(left_is_hole(s, h)), room(s))
    post = stamp(s, x, s.size[h] - gap, z3.BoolVal(False))
    post = stamp(post, h, gap, z3.BoolVal(True))
    post = post.but(aligned=z3.Store(z3.Store(s.aligned, h, False), x, True),
                    owner_of=move_owner(s, h, x, lo=x))
    return heap_step(s, status(*failed(ok)), reindex(post, h, q),
                     assume=sorted_at(post, h, q))


def CarveTail(s: HeapState, h: Ref, size: Ref, q: Ref) -> HeapStep:
    """Block h keeps its first size bytes; the rest becomes a hole, which can
    hold a header and a footer, and whose right neighbour is no hole."""
    r = h + size
    ok = z3.And(live(s, h), size >= MIN, size < s.size[h],
                (s.size[h] - size >= MIN), z3.Not(right_is_hole(s, h)), room(s))
    post = stamp(s, r, s.size[h] - size, z3.BoolVal(True))
    post = stamp(post, h, size, z3.BoolVal(False))
    post = post.but(aligned=z3.Store(post.aligned, r, False),
                    owner_of=move_owner(s, h, r, lo=r))
    return heap_step(s, status(*failed(ok)), reindex(post, r, q),
                     assume=sorted_at(post, r, q))


# -- steps of Free ---------------------------------------------------------------

def AbsorbRight(s: HeapState, h: Ref) -> HeapStep:
    """Block h swallows the hole after it (unify right)."""
    r = after(s, h)
    ok = z3.And(live(s, h), right_is_hole(s, h))
    post = unindex(s, r)
    post = stamp(post, h, s.size[h] + s.size[r], z3.BoolVal(False))
    post = post.but(block=z3.Store(post.block, r, False), owner_of=move_owner(s, r, h))
    return heap_step(s, status(*failed(ok)), post)


def AbsorbLeft(s: HeapState, h: Ref, q: Ref) -> HeapStep:
    """The hole before block h swallows it (unify left); the hole's index
    entry moves to its new place. Its right neighbour is no hole."""
    left = s.owner_of[h - 1]
    ok = z3.And(live(s, h), left_is_hole(s, h), z3.Not(right_is_hole(s, h)))
    post = unindex(s, left)
    post = stamp(post, left, s.size[left] + s.size[h], z3.BoolVal(True))
    post = post.but(block=z3.Store(post.block, h, False), owner_of=move_owner(s, h, left))
    return heap_step(s, status(*failed(ok)), reindex(post, left, q),
                     assume=sorted_at(post, left, q))


def Release(s: HeapState, h: Ref, q: Ref) -> HeapStep:
    """Block h, with no hole on either side, becomes a hole."""
    ok = z3.And(live(s, h), z3.Not(left_is_hole(s, h)), z3.Not(right_is_hole(s, h)), room(s))
    post = stamp(s, h, s.size[h], z3.BoolVal(True))
    post = post.but(aligned=z3.Store(s.aligned, h, False))
    return heap_step(s, status(*failed(ok)), reindex(post, h, q),
                     assume=sorted_at(post, h, q))


# -- expansion and contraction ------------------------------------------------------

def growth_ok(s: HeapState, new_end: Ref) -> Ref:
    return z3.And(s.created, low12(new_end) == 0, s.end < new_end,
                  (new_end <= s.max))


def ExpandHole(s: HeapState, new_end: Ref, frames: Ref, q: Ref) -> HeapStep:
    """Map [end, new_end); the hole that ends the heap grows to the new end."""
    tail = last_block(s)
    ok = z3.And(growth_ok(s, new_end), s.hole[tail])
    post = unindex(s, tail)
    post = stamp(post, tail, new_end - tail, z3.BoolVal(True))
    post = post.but(end=new_end, pte=map_pages(s, s.end, new_end, frames),
                    owner_of=give_range(s, tail, s.end, new_end))
    return heap_step(s, status(*failed(ok)), reindex(post, tail, q),
                     assume=sorted_at(post, tail, q))


def ExpandNewHole(s: HeapState, new_end: Ref, frames: Ref, q: Ref) -> HeapStep:
    """Map [end, new_end); when the last block is allocated, a new hole covers it."""
    ok = z3.And(growth_ok(s, new_end), z3.Not(s.hole[last_block(s)]), room(s))
    post = stamp(s, s.end, new_end - s.end, z3.BoolVal(True))
    post = post.but(end=new_end, pte=map_pages(s, s.end, new_end, frames),
                    aligned=z3.Store(s.aligned, s.end, False),
                    owner_of=give_range(s, s.end, s.end, new_end))
    return heap_step(s, status(*failed(ok)), reindex(post, s.end, q),
                     assume=sorted_at(post, s.end, q))


def shrink_ok(s: HeapState, new_end: Ref) -> Ref:
    return z3.And(s.created, low12(new_end) == 0, new_end < s.end,
                  (s.floor <= new_end - s.start), s.hole[last_block(s)])


def ShrinkHole(s: HeapState, new_end: Ref, q: Ref) -> HeapStep:
    """Cut the hole that ends the heap at new_end; what is left of it still
    holds a header and a footer. [new_end, end) is unmapped."""
    tail = last_block(s)
    ok = z3.And(shrink_ok(s, new_end), tail < new_end, new_end - tail >= MIN)
    post = unindex(s, tail)
    post = stamp(post, tail, new_end - tail, z3.BoolVal(True))
    post = post.but(end=new_end, pte=unmap_pages(s, new_end, s.end))
    return heap_step(s, status(*failed(ok)), reindex(post, tail, q),
                     assume=sorted_at(post, tail, q))


def DropHole(s: HeapState, new_end: Ref) -> HeapStep:
    """Cut the whole hole that ends the heap (it starts at new_end)."""
    tail = last_block(s)
    ok = z3.And(shrink_ok(s, new_end), tail == new_end)
    post = unindex(s, tail)
    post = post.but(block=z3.Store(s.block, tail, False), end=new_end,
                    pte=unmap_pages(s, new_end, s.end))
    return heap_step(s, status(*failed(ok)), post)


# -- queries, creation, destruction -------------------------------------------------

def fits(s: HeapState, h: Ref, size: Ref, page_align: Ref, x: Ref) -> Ref:
    """A block of size + MIN_BLOCK bytes fits in hole h with its header at x."""
    need = size + MIN
    aligned_x = z3.And(low12(x + 12) == 0,
                       z3.Or(x == h, z3.And(x > h, x - h >= MIN)))
    return z3.And(z3.If(page_align, aligned_x, x == h), h <= x,
                  (x - h <= s.size[h]), need <= s.size[h] - (x - h),
                  (need >= MIN))


def FindSmallestHole(s: HeapState, size: Ref, page_align: Ref, result: Ref,
                     x: Ref) -> HeapStep:
    """The first index position whose hole fits the request (header at x), or
    -1 when none does. Changes nothing."""
    j = z3.Const("j", ADDR)
    y = z3.Const("y", ADDR)
    none_before = z3.ForAll([j, y], z3.Implies(
        z3.And(0 <= j, j < result), z3.Not(fits(s, s.index[j], size, page_align, y))))
    none_at_all = z3.ForAll([j, y], z3.Implies(
        z3.And(0 <= j, j < s.count), z3.Not(fits(s, s.index[j], size, page_align, y))))
    found = z3.And(0 <= result, result < s.count, fits(s, s.index[result], size, page_align, x),
                   none_before)
    answer = z3.If(result == z3.IntVal(-1), none_at_all, found)
    code = status((z3.Not(s.created), E.ERROR_NOT_READY))
    return heap_step(s, code, s, result, z3.IntVal(-1), assume=answer)


def Destroy(s: HeapState) -> HeapStep:
    """~KernelHeap: every page of [start, end) is unmapped; nothing is left."""
    a = z3.Const("a", ADDR)
    post = s.but(created=z3.BoolVal(False), block=z3.K(ADDR, z3.BoolVal(False)),
                 count=z3.IntVal(0), pte=unmap_pages(s, s.start, s.end),
                 owner_of=z3.Lambda([a], a))
    return heap_step(s, status((z3.Not(s.created), E.ERROR_NOT_READY)), post)


def Create(s: HeapState, start: Ref, end: Ref, max: Ref, supervisor: Ref, readonly: Ref,
           capacity: Ref, data_start: Ref, floor: Ref, frames: Ref) -> HeapStep:
    """Map [start, end) with the heap's flags and make [data_start, end) one hole.

    ``data_start`` (start + 4 * capacity, rounded up to a page) and ``floor``
    (max(min_size, end - start)) are computed by the caller; their relations
    to the other arguments are the guard. The pages of [start, max) must be
    unmapped before (ERROR_ALREADY_EXISTS otherwise).
    """
    p = z3.Const("p", PAGE)
    a = z3.Const("a", ADDR)
    args_ok = z3.And(start >= 0, low12(start) == 0, low12(end) == 0, low12(max) == 0,
                     (start < end), end <= max, max <= TOP,
                     (start <= data_start), data_start < end,
                     (end - data_start >= MIN), capacity >= 1,
                     (floor >= end - start))
    unmapped = z3.ForAll([p], z3.Implies(
        z3.And(page_of(start) <= p, p < page_of(max)), z3.Not(present(s.pte[p]))))
    code = status((s.created, E.ERROR_ALREADY_INITIALIZED),
                  (z3.Not(args_ok), E.ERROR_INVALID_PARAMETER),
                  (z3.Not(unmapped), E.ERROR_ALREADY_EXISTS))
    base = s.but(created=z3.BoolVal(True), start=start, end=end, max=max,
                 data_start=data_start, floor=floor, capacity=capacity,
                 supervisor=supervisor, readonly=readonly,
                 block=z3.K(ADDR, z3.BoolVal(False)), count=z3.IntVal(0),
                 owner_of=z3.Lambda([a], data_start))
    base = base.but(pte=map_pages(base, start, end, frames))
    post = stamp(base, data_start, end - data_start, z3.BoolVal(True))
    post = post.but(aligned=z3.Store(post.aligned, data_start, False))
    return heap_step(s, code, reindex(post, data_start, z3.IntVal(0)))
