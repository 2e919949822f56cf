"""DOS memory (seed section 6): DOS-1..5 and every INT 21h / XMS / EMS call.

The state is over integers (segments, paragraphs, byte addresses), as the
heap's. Conventional memory and the upper memory blocks are one set of
arrays over segments: ``is_mcb[m]`` marks an MCB, with its ``typ`` ('M' or
'Z'), ``owner`` (0 = free) and ``size`` in paragraphs; the block's data is
[m + 1, m + size], the next MCB at m + size + 1. Two *areas* are tiled:
[first, top) and [umb_start, umb_end) (no UMBs when they are equal). With
UMBs, MS-DOS 5+'s layout: top = 9FFFh, where a DOS-owned MCB (the "UMB
head", fixed, outside both areas) locks out [A000h, umb_start); without UMBs
top = A000h. The
ghost ``mcb_of[a]`` names the MCB whose block (MCB paragraph included)
holds segment a, as the heap's ``owner_of``: tiling, the left neighbour
(``mcb_of[m - 1]``) and disjointness follow without induction over the
chain's length, so every proof is unbounded.

Spec-level decisions (the model follows them or the lead reconciles):

- Free blocks join lazily, as MS-DOS's own source does (microsoft/MS-DOS
  v4.0/src/DOS/ALLOC.ASM): AH=49h only writes owner 0 (lines 349-356), so two
  adjacent free blocks are a state the chain can be in (DOS-2 does not forbid
  them). ``Coalesce`` (ALLOC.ASM lines 123-139) joins the run of free blocks
  that follows a block into it. AH=48h is Coalesce on every free block of the
  areas it scans, in chain order (lines 207-208: the scan joins as it goes,
  to the 'Z', and a failure keeps the joins), then ``AllocateDosMemory`` on
  the joined chain; AH=4Ah is Coalesce on the block (lines 324-325), then
  ``ResizeDosMemory``. The state machine (proofs/machines/dos_memory.py)
  composes them so; each part is proved on its own, so the composition keeps
  every invariant.
- AH=48h: the block is a free choice constrained by the strategy's rule
  (RBIL AX=5801h): first fit = the lowest block that fits, best fit = the
  smallest (lowest on ties), last fit = the highest, allocated from its end
  (the new block sits at the top of the free block). A block larger than the
  request is split; the remainder may have 0 paragraphs. Strategy bits 7-6
  (0x40 high only, 0x80 high then the whole chain) act only while the UMB
  link is on; with the link on the low strategies (0x00-0x02) search the
  whole chain, conventional memory first (MS-DOS's scan runs to the 'Z',
  ALLOC.ASM lines 183-185, and the link moves the 'Z' to the UMBs' end;
  FreeDOS kernel/memmgr.c lines 122-190, DOSBox src/dos/dos_memory.cpp lines
  164-170); with the link off every strategy searches conventional memory.
  A request outside [0, 0xFFFF] paragraphs is error 8.
- AH=49h on a segment that is not a block's data: error 9; otherwise owner
  0, nothing else (a free block too: ALLOC.ASM lines 352-354 check only the
  signature). AH=4Ah on a segment that is not a block's data: error 7
  (lines 317-321: a bad signature is "arena trashed"); on any block, free
  ones included (no owner check), after Coalesce: at most its size, the
  block gets the request and the caller's PSP as owner, the rest splits off
  free (lines 266-286); more: error 8 with the (joined) size as the result,
  the join kept (lines 327-331, 200-205: "made as large as possible").
- Error 7 for a corrupted chain is the model's: no state of the spec has one
  (DOS-2); AH=4Ah's bad segment is the one step that returns 7.
- The UMB link (AX=5803h) turns the last conventional MCB's 'Z' into 'M'
  (the chain continues at the UMB head);
  linking without UMBs is error 1. AX=5801h accepts 0-2, 0x40-0x42,
  0x80-0x82; anything else is error 1.
- XMS 3.0: a handle's block [address, address + 1024 * size_kb) lies in the
  pool [0x110000, xms_end), apart from every other block; lock counts in
  [0, 255]. Running out of handles (0xA1) or of memory (0xA0) is a free
  choice here (this layer does not count free space), all or nothing. Free
  or reallocate of a locked block: 0xAB; unlock of an unlocked one: 0xAA;
  lock past 255: 0xAC. XmsMove changes no bookkeeping (contents are the
  model's state machine's): checks in order length (0xA7, odd or not 32-bit),
  source handle (0xA3), source offset (0xA4), destination (0xA5, 0xA6);
  handle 0's offset is a real-mode seg:off whose range must end at or below
  10FFF0h, the HMA's end (0xA7; DOSBox-staging src/ints/xms.cpp lines
  340-347, HimemX.asm lines 1164-1182).
- EMS LIM 4.0: ``pstore[h, l]`` is the storage page holding handle h's
  logical page l, ``sowner``/``spage`` its ghost inverse (-1 = free storage),
  so each storage page belongs to exactly one (handle, logical page). Slots
  0-3 show ``(slot_h, slot_l)`` when ``slot_used``; the ghost ``mapped_at[h,
  l]`` is the slot showing page (h, l) or -1: a slot shows one page and a
  page shows in at most one slot (no aliasing, DESIGN.md DOS-5). Mapping a
  page shown in another slot moves it there (the old slot shows nothing).
  Handle 0 is the OS handle: always live, its deallocation frees its pages
  and keeps the handle. Deallocation unmaps the handle's pages. Allocating
  more pages than the total (or fewer than 0) is 0x87, then 0 pages 0x89;
  out of pages (0x88) or handles (0x85) is a free choice. Reallocate (51h)
  keeps the first pages, frees and unmaps the rest or adds fresh storage
  pages. Map: invalid
  handle 0x83, physical page not 0-3 0x8B, logical page out of range 0x8A;
  logical 0xFFFF unmaps.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import z3

from spec.abi import (
    CONVENTIONAL_TOP,
    EMM_MAP_ALREADY_SAVED,
    EMM_NO_SAVED_MAP,
    EMM_SAVED_CONTEXT,
    EMS_FRAME_SEGMENT,
    EMS_INVALID_HANDLE,
    EMS_INVALID_LOGICAL,
    EMS_INVALID_PHYSICAL,
    EMS_NO_HANDLES,
    EMS_NOT_ENOUGH_PAGES,
    EMS_PAGE_SIZE,
    EMS_TOO_MANY_PAGES,
    EMS_ZERO_PAGES,
    HMA_END,
    KB,
    MAX_LOCKS,
    MCB_M,
    MCB_Z,
    PARAGRAPH,
    PHYSICAL_PAGES,
    STRATEGIES,
    UMB_HEAD,
    UPPER_END,
    XMS_BASE,
    XMS_INVALID_DEST_HANDLE,
    XMS_INVALID_DEST_OFFSET,
    XMS_INVALID_HANDLE,
    XMS_INVALID_LENGTH,
    XMS_INVALID_SOURCE_HANDLE,
    XMS_INVALID_SOURCE_OFFSET,
    XMS_LOCK_OVERFLOW,
    XMS_LOCKED,
    XMS_NOT_LOCKED,
    XMS_OUT_OF_HANDLES,
    XMS_OUT_OF_MEMORY,
    DosError,
)
from spec.state import Ref, fresh_fields, ite_fields, refuted
from spec.step import Transition, guarded

INT, BOOL = z3.IntSort(), z3.BoolSort()

#: The segment past the EMS page frame's four 16 KB pages.
EMS_FRAME_END = EMS_FRAME_SEGMENT + PHYSICAL_PAGES * EMS_PAGE_SIZE // PARAGRAPH
FIRST_FIT, BEST_FIT, LAST_FIT = 0, 1, 2
LOW_ONLY, HIGH_ONLY, HIGH_FIRST = 0, 1, 2  # strategy bits 7-6


@dataclass(frozen=True)
class DosState:
    """The MCB chains, the strategy and link, XMS handles, EMS handles and slots."""

    first: Ref  # Int: the first MCB of conventional memory
    umb_start: Ref  # Int: the UMB area [umb_start, umb_end) (empty: no UMBs)
    umb_end: Ref
    linked: Ref  # Bool: the UMB link
    strategy: Ref  # Int: AX=5801h value
    is_mcb: Ref  # seg -> Bool
    typ: Ref  # seg -> 'M' | 'Z'
    owner: Ref  # seg -> PSP (0 free)
    size: Ref  # seg -> paragraphs
    xlive: Ref  # handle -> Bool
    xaddr: Ref  # handle -> byte address
    xsize: Ref  # handle -> KB
    xlock: Ref  # handle -> lock count
    xms_end: Ref  # Int: the pool's end address
    elive: Ref  # handle -> Bool
    epages: Ref  # handle -> logical pages
    pstore: Ref  # (handle, logical) -> storage page
    etotal: Ref  # Int: storage pages
    slot_used: Ref  # slot -> Bool
    slot_h: Ref  # slot -> handle
    slot_l: Ref  # slot -> logical page
    esaved: Ref  # handle -> Bool: 47h saved a mapping context in its save area
    # ghost witnesses
    mcb_of: Ref  # seg -> the MCB whose block holds it
    sowner: Ref  # storage page -> handle (-1 free)
    spage: Ref  # storage page -> logical page
    mapped_at: Ref  # (handle, logical) -> slot (-1 none)

    def but(self, **changes: Ref) -> DosState:
        return dataclasses.replace(self, **changes)


DOS_GHOST_FIELDS = ("mcb_of", "sowner", "spage", "mapped_at")
_I2I = z3.ArraySort(INT, INT)
_I2B = z3.ArraySort(INT, BOOL)
_II2I = z3.ArraySort(INT, INT, INT)
_SORTS: dict[str, Ref] = {
    **{name: INT for name in ("first", "umb_start", "umb_end", "strategy", "xms_end",
                              "etotal")},
    "linked": BOOL,
    **{name: _I2B for name in ("is_mcb", "xlive", "elive", "slot_used", "esaved")},
    **{name: _I2I for name in ("typ", "owner", "size", "mcb_of", "xaddr", "xsize", "xlock",
                               "epages", "sowner", "spage", "slot_h", "slot_l")},
    **{name: _II2I for name in ("pstore", "mapped_at")},
}
def symbolic_dos(prefix: str = "d") -> DosState:
    """A DOS state whose every field is a fresh z3 constant."""
    return fresh_fields(DosState, _SORTS, prefix)


def ite_dos(cond: Ref, then: DosState, other: DosState) -> DosState:
    return ite_fields(DosState, cond, then, other)


def dos_step(pre: DosState, code: Ref, post: DosState, result: Ref | None = None,
             failure: Ref | None = None, assume: Ref | None = None) -> DosStep:
    return guarded(pre, code, post, ite_dos, result, failure, assume)


def status(*checks: tuple[Ref, int]) -> Ref:
    """The code of the first failing check (condition true = failure), else 0."""
    code: Ref = z3.IntVal(0)
    for failed, error in reversed(checks):
        code = z3.If(failed, z3.IntVal(error), code)
    return code


# -- the chains ----------------------------------------------------------------------

def nxt(s: DosState, m: Ref) -> Ref:
    """The segment after block m: the next MCB or its area's end."""
    return m + s.size[m] + 1


def conventional(m: Ref) -> Ref:
    return m < CONVENTIONAL_TOP


def conv_top(s: DosState) -> Ref:
    """Where the conventional chain ends: A000h, or 9FFFh (the UMB head) with UMBs."""
    return z3.If(has_umbs(s), z3.IntVal(UMB_HEAD), z3.IntVal(CONVENTIONAL_TOP))


def end_of(s: DosState, m: Ref) -> Ref:
    return z3.If(conventional(m), conv_top(s), s.umb_end)


def start_of(s: DosState, m: Ref) -> Ref:
    return z3.If(conventional(m), s.first, s.umb_start)


def in_area(s: DosState, a: Ref) -> Ref:
    return z3.Or(z3.And(s.first <= a, a < conv_top(s)),
                 z3.And(s.umb_start <= a, a < s.umb_end))


def terminal(s: DosState, m: Ref) -> Ref:
    """Block m is its chain's last: 'Z' (the conventional one is 'M' while linked)."""
    return z3.And(nxt(s, m) == end_of(s, m), z3.Not(z3.And(conventional(m), s.linked)))


def free_block(s: DosState, m: Ref) -> Ref:
    return z3.And(s.is_mcb[m], s.owner[m] == 0)


def has_umbs(s: DosState) -> Ref:
    return s.umb_start < s.umb_end


# -- invariants ----------------------------------------------------------------------

def dos_1(s: DosState) -> Ref:
    """DOS-1: every conventional block lies in [first, 0xA000): below 640 KB
    (below the UMB head at 9FFFh when there are UMBs)."""
    m = z3.Int("m")
    return z3.ForAll([m], z3.Implies(z3.And(s.is_mcb[m], conventional(m)), z3.And(
        s.first <= m, nxt(s, m) <= conv_top(s))))


def dos_2(s: DosState) -> Ref:
    """DOS-2: each chain is well formed and tiles its area exactly: it starts at
    the area's start, each MCB's next is seg + size + 1, the next MCB or the
    area's end; 'Z' exactly on the last (the conventional last is 'M' while
    linked); every segment of the area belongs to one block (``mcb_of``).
    Adjacent free blocks are allowed: MS-DOS joins them only while it scans
    (ALLOC.ASM lines 207-208, 324-325)."""
    m, a, g = z3.Ints("m a g")
    mcb, following = s.is_mcb[m], nxt(s, m)

    def each(body: Ref) -> Ref:
        return z3.ForAll([m], z3.Implies(mcb, body))

    holder = s.mcb_of[a]
    return z3.And(
        0 < s.first, s.first < conv_top(s), s.is_mcb[s.first],
        each(in_area(s, m)), each(s.mcb_of[m] == m), each(0 <= s.size[m]),
        each(z3.And(0 <= s.owner[m], s.owner[m] <= 0xFFFF)),
        each(following <= end_of(s, m)),
        each(z3.Or(following == end_of(s, m), s.is_mcb[following])),
        each(s.typ[m] == z3.If(terminal(s, m), MCB_Z, MCB_M)),
        z3.ForAll([a], z3.Implies(in_area(s, a), s.is_mcb[holder])),
        z3.ForAll([a], z3.Implies(in_area(s, a), z3.And(
            holder <= a, a <= holder + s.size[holder]))),
        z3.ForAll([g, a], z3.Implies(z3.And(s.is_mcb[g], g <= a, a <= g + s.size[g]),
                                     s.mcb_of[a] == g)))


def dos_3(s: DosState) -> Ref:
    """DOS-3: the UMB area lies in upper memory [0xA000, 0x10000), apart from the
    EMS page frame; its chain starts at umb_start and every UMB stays inside
    it; the link is on only when UMBs exist; the strategy is a valid value."""
    m = z3.Int("m")
    return z3.And(
        CONVENTIONAL_TOP <= s.umb_start, s.umb_start <= s.umb_end, s.umb_end <= UPPER_END,
        z3.Or(s.umb_start == s.umb_end, s.umb_end <= EMS_FRAME_SEGMENT,
              EMS_FRAME_END <= s.umb_start),
        z3.Implies(has_umbs(s), s.is_mcb[s.umb_start]),
        z3.Implies(s.linked, has_umbs(s)),
        z3.Or([s.strategy == value for value in sorted(STRATEGIES)]),
        z3.ForAll([m], z3.Implies(z3.And(s.is_mcb[m], z3.Not(conventional(m))), z3.And(
            s.umb_start <= m, nxt(s, m) <= s.umb_end))))


def xms_end_of(s: DosState, h: Ref) -> Ref:
    return s.xaddr[h] + KB * s.xsize[h]


def dos_4(s: DosState) -> Ref:
    """DOS-4: XMS blocks lie in [0x110000, xms_end) (above 1 MB and the HMA),
    pairwise disjoint, with lock counts in [0, 255]; handles are positive."""
    g, h = z3.Ints("g h")
    return z3.And(
        XMS_BASE <= s.xms_end,
        z3.ForAll([h], z3.Implies(s.xlive[h], z3.And(
            0 < h, XMS_BASE <= s.xaddr[h], 0 <= s.xsize[h], xms_end_of(s, h) <= s.xms_end,
            0 <= s.xlock[h], s.xlock[h] <= MAX_LOCKS))),
        z3.ForAll([g, h], z3.Implies(z3.And(s.xlive[g], s.xlive[h], g != h), z3.Or(
            xms_end_of(s, g) <= s.xaddr[h], xms_end_of(s, h) <= s.xaddr[g]))))


def dos_5(s: DosState) -> Ref:
    """DOS-5: each logical page of a live handle is held in its own storage page
    (``sowner``/``spage`` invert ``pstore``: owned by exactly one handle); a
    handle with a saved mapping context (47h) is live (LIM 4.0 function 6: 45h
    answers 86h while one is saved);
    a used slot shows one logical page of a live handle, and ``mapped_at``
    inverts the slots: a logical page shows in at most one slot."""
    h, k, i, p = z3.Ints("h k i p")
    page = z3.And(s.elive[h], 0 <= k, k < s.epages[h])
    held = s.pstore[h, k]
    owner, logical = s.sowner[i], s.spage[i]
    sh, sl = s.slot_h[p], s.slot_l[p]
    at = s.mapped_at[h, k]
    return z3.And(
        0 <= s.etotal, s.elive[0],
        z3.ForAll([h], z3.Implies(s.esaved[h], s.elive[h])),
        z3.ForAll([h], z3.Implies(s.elive[h], z3.And(0 <= h, 0 <= s.epages[h]))),
        z3.ForAll([h, k], z3.Implies(page, z3.And(
            0 <= held, held < s.etotal, s.sowner[held] == h, s.spage[held] == k))),
        z3.ForAll([i], z3.Implies(owner != -1, z3.And(
            0 <= i, i < s.etotal, s.elive[owner], 0 <= logical, logical < s.epages[owner],
            s.pstore[owner, logical] == i))),
        z3.ForAll([p], z3.Implies(s.slot_used[p], z3.And(
            0 <= p, p < PHYSICAL_PAGES, s.elive[sh], 0 <= sl, sl < s.epages[sh],
            s.mapped_at[sh, sl] == p))),
        z3.ForAll([h, k], z3.Implies(at != -1, z3.And(
            s.slot_used[at], s.slot_h[at] == h, s.slot_l[at] == k))))


INVARIANTS: dict[str, Callable[[DosState], Ref]] = {
    "DOS-1": dos_1, "DOS-2": dos_2, "DOS-3": dos_3, "DOS-4": dos_4, "DOS-5": dos_5}


DosStep = Transition[DosState]


def dos_4f(pre: DosState, result: DosStep, args: Mapping[str, Ref]) -> Ref:
    """DOS-4F (a claim on XmsFree): a free that succeeds frees a live, unlocked
    block (XMS 3.0 function 0Ah: a locked block is error 0xAB)."""
    handle = args["handle"]
    return z3.Implies(result.ok, z3.And(pre.xlive[handle], pre.xlock[handle] == 0))


STEP_CLAIMS = {"DOS-4F": ("XmsFree", dos_4f)}


# -- conventional memory and UMBs: state changes --------------------------------------

def make_block(s: DosState, start: Ref, stop: Ref, owner: Ref, typ: Ref) -> DosState:
    """One block covering [start, stop): its MCB at start, every MCB inside gone."""
    a = z3.Int("a")
    return s.but(
        is_mcb=z3.Lambda([a], z3.If(a == start, True,
                                    z3.If(z3.And(start < a, a < stop), False, s.is_mcb[a]))),
        mcb_of=z3.Lambda([a], z3.If(z3.And(start <= a, a < stop), start, s.mcb_of[a])),
        size=z3.Store(s.size, start, stop - start - 1), owner=z3.Store(s.owner, start, owner),
        typ=z3.Store(s.typ, start, typ))


def split(s: DosState, m: Ref, k: Ref, low_owner: Ref, high_owner: Ref) -> DosState:
    """Block m cut after k paragraphs: [m, m+k] stays at m ('M'), the rest becomes
    a block at m + k + 1 with m's type."""
    cut = m + k + 1
    low = make_block(s, m, cut, low_owner, z3.IntVal(MCB_M))
    return make_block(low, cut, nxt(s, m), high_owner, s.typ[m])


def fits(s: DosState, m: Ref, n: Ref) -> Ref:
    return z3.And(free_block(s, m), n <= s.size[m])


Area = Callable[[Ref], Ref]


def best(s: DosState, fit: Ref, b: Ref, m: Ref) -> Ref:
    """Block b is at least as good as block m for the fit rule ``fit``."""
    return z3.If(fit == FIRST_FIT, b <= m, z3.If(
        fit == BEST_FIT, z3.Or(s.size[b] < s.size[m], z3.And(s.size[b] == s.size[m], b <= m)),
        m <= b))


def rule(s: DosState, area: Area, b: Ref, n: Ref) -> Ref:
    """b fits in the area and the strategy's fit rule picks it there."""
    m = z3.Int("m")
    fit = s.strategy % 0x40
    return z3.And(area(b), fits(s, b, n), z3.ForAll([m], z3.Implies(
        z3.And(area(m), fits(s, m, n)), best(s, fit, b, m))))


def none_fits(s: DosState, area: Area, n: Ref) -> Ref:
    m = z3.Int("m")
    return z3.ForAll([m], z3.Implies(area(m), z3.Not(fits(s, m, n))))


def _upper(m: Ref) -> Ref:
    return z3.Not(conventional(m))


def _anywhere(m: Ref) -> Ref:
    return z3.BoolVal(True)


def chosen(s: DosState, b: Ref, n: Ref) -> Ref:
    """The strategy picks block b (RBIL AX=5801h; high bits only while linked;
    linked, the scan covers the whole chain, high first the UMBs before it)."""
    mode = s.strategy / 0x40
    return z3.If(z3.Not(s.linked), rule(s, conventional, b, n),
                 z3.If(mode == LOW_ONLY, rule(s, _anywhere, b, n),
                       z3.If(mode == HIGH_ONLY, rule(s, _upper, b, n),
                             z3.Or(rule(s, _upper, b, n),
                                   z3.And(rule(s, _anywhere, b, n),
                                          none_fits(s, _upper, n))))))


def searched(s: DosState) -> Area:
    """The blocks the strategy may take from."""
    mode = s.strategy / 0x40
    return lambda m: z3.If(z3.Not(s.linked), conventional(m),
                           z3.If(mode == HIGH_ONLY, _upper(m), z3.BoolVal(True)))


def AllocateDosMemory(s: DosState, paragraphs: Ref, block: Ref, psp: Ref) -> DosStep:
    """INT 21h AH=48h on the chain Coalesce has joined (ALLOC.ASM lines 207-208):
    the strategy's block (a free choice, ``assume``) takes the request; the
    rest of it, if any, stays free (after it, or before it for last fit:
    lines 242-252). Returns the data segment; 0 with error 8 when nothing
    fits (lines 200-205; the joins stay)."""
    n, b, size = paragraphs, block, s.size[block]
    top = s.strategy % 0x40 == LAST_FIT
    code = status((z3.Or(n < 0, n > 0xFFFF), DosError.NOT_ENOUGH_MEMORY),
                  (none_fits(s, searched(s), n), DosError.NOT_ENOUGH_MEMORY))
    whole = s.but(owner=z3.Store(s.owner, b, psp))
    cut = split(s, b, z3.If(top, size - n - 1, n), z3.If(top, z3.IntVal(0), psp),
                z3.If(top, psp, z3.IntVal(0)))
    exact = size == n
    post = ite_dos(exact, whole, cut)
    at = z3.If(z3.Or(exact, z3.Not(top)), b, b + size - n)
    return dos_step(s, code, post, at + 1, z3.IntVal(0),
                    z3.And(chosen(s, b, n), 0 < psp, psp <= 0xFFFF))


def allocated(s: DosState, m: Ref) -> Ref:
    return z3.And(s.is_mcb[m], s.owner[m] != 0)


def FreeDosMemory(s: DosState, segment: Ref) -> DosStep:
    """INT 21h AH=49h: owner 0 and nothing else (ALLOC.ASM lines 349-356): no
    join, a free block stays free (success)."""
    m = segment - 1
    code = status((z3.Not(s.is_mcb[m]), DosError.INVALID_BLOCK))
    return dos_step(s, code, s.but(owner=z3.Store(s.owner, m, 0)), z3.BoolVal(True),
                    z3.BoolVal(False))


def joins(s: DosState, m: Ref, stop: Ref) -> Ref:
    """``stop`` ends the run of free blocks right after block m: every MCB in
    [nxt(m), stop) is free, and stop is the area's end or an allocated block
    (so it is unique: the first allocated block after m, or the end)."""
    a = z3.Int("a")
    after = nxt(s, m)
    return z3.And(after <= stop, stop <= end_of(s, m),
                  z3.Or(stop == end_of(s, m), allocated(s, stop)),
                  z3.ForAll([a], z3.Implies(z3.And(after <= a, a < stop, s.is_mcb[a]),
                                            s.owner[a] == 0)))


def Coalesce(s: DosState, mcb: Ref, stop: Ref) -> DosStep:
    """ALLOC.ASM's Coalesce (lines 123-139): block ``mcb`` absorbs the free
    blocks that follow it, up to ``stop`` (a free choice, ``assume``: joins);
    it keeps its owner and takes the last absorbed block's type. Not an MCB:
    error 7 (the caller's bad signature)."""
    typ = s.typ[s.mcb_of[stop - 1]]
    post = make_block(s, mcb, stop, s.owner[mcb], typ)
    code = status((z3.Not(s.is_mcb[mcb]), DosError.ARENA_TRASHED))
    return dos_step(s, code, post, z3.BoolVal(True), z3.BoolVal(False), joins(s, mcb, stop))


def ResizeDosMemory(s: DosState, segment: Ref, paragraphs: Ref, psp: Ref) -> DosStep:
    """INT 21h AH=4Ah after Coalesce on the block (ALLOC.ASM lines 311-331):
    at most its size, the block becomes ``psp``'s with the request and the
    rest splits off free (lines 266-286; the same size: only the owner);
    more: error 8 with the size as the result, nothing changed here (the
    join before it is kept). A segment that is not a block's data: error 7
    (lines 317-321)."""
    m, n = segment - 1, paragraphs
    code = status((z3.Not(s.is_mcb[m]), DosError.ARENA_TRASHED),
                  (z3.Or(n < 0, n > s.size[m]), DosError.NOT_ENOUGH_MEMORY))
    whole = s.but(owner=z3.Store(s.owner, m, psp))
    post = ite_dos(n == s.size[m], whole, split(s, m, n, psp, z3.IntVal(0)))
    return dos_step(s, code, post, z3.IntVal(1), s.size[m], z3.And(0 < psp, psp <= 0xFFFF))


def SetAllocationStrategy(s: DosState, strategy: Ref) -> DosStep:
    """AX=5801h."""
    valid = z3.Or([strategy == value for value in sorted(STRATEGIES)])
    return dos_step(s, status((z3.Not(valid), DosError.INVALID_FUNCTION)), s.but(strategy=strategy),
                    z3.BoolVal(True), z3.BoolVal(False))


def SetUmbLink(s: DosState, link: Ref) -> DosStep:
    """AX=5803h: the last conventional MCB becomes 'M' (linked) or 'Z'."""
    last = s.mcb_of[conv_top(s) - 1]
    # no UMBs: error 1 whichever state is asked for (the model's reading of
    # RBIL AX=5803h, which documents only error 1 for this call)
    code = status((z3.Not(has_umbs(s)), DosError.INVALID_FUNCTION))
    post = s.but(linked=link, typ=z3.Store(s.typ, last, z3.If(link, MCB_M, MCB_Z)))
    return dos_step(s, code, post, z3.BoolVal(True), z3.BoolVal(False))


def Query(s: DosState) -> DosStep:
    """A call that reads and changes nothing (sizes, strategy, link, counts)."""
    return dos_step(s, z3.IntVal(0), s)


# -- XMS ------------------------------------------------------------------------------

def xms_room(s: DosState, h: Ref, address: Ref, kb: Ref) -> Ref:
    """[address, address + 1024 kb) lies in the pool, apart from every other block."""
    g = z3.Int("g")
    end = address + KB * kb
    return z3.And(XMS_BASE <= address, end <= s.xms_end, z3.ForAll([g], z3.Implies(
        z3.And(s.xlive[g], g != h), z3.Or(xms_end_of(s, g) <= address, end <= s.xaddr[g]))))


def XmsAllocate(s: DosState, kb: Ref, handle: Ref, address: Ref, full: Ref,
                oom: Ref) -> DosStep:
    """XMS function 09h: a fresh handle for kb KB at a free address."""
    code = status((full, XMS_OUT_OF_HANDLES), (z3.Or(kb < 0, oom), XMS_OUT_OF_MEMORY))
    post = s.but(xlive=z3.Store(s.xlive, handle, True),
                 xaddr=z3.Store(s.xaddr, handle, address), xsize=z3.Store(s.xsize, handle, kb),
                 xlock=z3.Store(s.xlock, handle, 0))
    return dos_step(s, code, post, handle, z3.IntVal(0), z3.And(
        0 < handle, z3.Not(s.xlive[handle]), xms_room(s, handle, address, kb)))


def XmsFree(s: DosState, handle: Ref) -> DosStep:
    """XMS function 0Ah: a locked block is not freed (0xAB)."""
    code = status((z3.Not(s.xlive[handle]), XMS_INVALID_HANDLE),
                  (s.xlock[handle] > 0, XMS_LOCKED))
    return dos_step(s, code, s.but(xlive=z3.Store(s.xlive, handle, False)), z3.BoolVal(True),
                    z3.BoolVal(False))


def XmsLock(s: DosState, handle: Ref) -> DosStep:
    """XMS function 0Ch: returns the block's 32-bit linear address."""
    code = status((z3.Not(s.xlive[handle]), XMS_INVALID_HANDLE),
                  (s.xlock[handle] >= MAX_LOCKS, XMS_LOCK_OVERFLOW))
    post = s.but(xlock=z3.Store(s.xlock, handle, s.xlock[handle] + 1))
    return dos_step(s, code, post, s.xaddr[handle], z3.IntVal(0))


def XmsUnlock(s: DosState, handle: Ref) -> DosStep:
    """XMS function 0Dh."""
    code = status((z3.Not(s.xlive[handle]), XMS_INVALID_HANDLE),
                  (s.xlock[handle] == 0, XMS_NOT_LOCKED))
    post = s.but(xlock=z3.Store(s.xlock, handle, s.xlock[handle] - 1))
    return dos_step(s, code, post, z3.BoolVal(True), z3.BoolVal(False))


def XmsReallocate(s: DosState, handle: Ref, kb: Ref, address: Ref, oom: Ref) -> DosStep:
    """XMS function 0Fh: an unlocked block gets a new size (and maybe address)."""
    code = status((z3.Not(s.xlive[handle]), XMS_INVALID_HANDLE),
                  (s.xlock[handle] > 0, XMS_LOCKED), (z3.Or(kb < 0, oom), XMS_OUT_OF_MEMORY))
    post = s.but(xaddr=z3.Store(s.xaddr, handle, address), xsize=z3.Store(s.xsize, handle, kb))
    return dos_step(s, code, post, z3.BoolVal(True), z3.BoolVal(False),
                    xms_room(s, handle, address, kb))


def XmsMove(s: DosState, length: Ref, src_handle: Ref, src_offset: Ref, dst_handle: Ref,
            dst_offset: Ref) -> DosStep:
    """XMS function 0Bh: bytes move; the bookkeeping does not change."""
    def bad_handle(h: Ref) -> Ref:
        return z3.And(h != 0, z3.Not(s.xlive[h]))

    def bad_offset(h: Ref, offset: Ref) -> Ref:
        return z3.And(h != 0, offset > KB * s.xsize[h])

    def past_end(h: Ref, offset: Ref) -> Ref:
        real = offset / 0x10000 * PARAGRAPH + offset % 0x10000
        return z3.If(h != 0, offset + length > KB * s.xsize[h], real + length > HMA_END)

    def not_u32(offset: Ref) -> Ref:
        return z3.Or(offset < 0, offset > 0xFFFFFFFF)

    # per end, as the model checks it: an offset that is not a 32-bit value, the
    # handle, an offset beyond the block, then a range running past its end (A7h:
    # the length is what is wrong when the start lies inside the block); handle
    # 0's seg:off range must end at or below HMA_END (10FFF0h: xms.cpp lines
    # 340-347, HimemX.asm lines 1164-1182)
    code = status((z3.Or(length < 0, length > 0xFFFFFFFF, length % 2 == 1),
                   XMS_INVALID_LENGTH),
                  (not_u32(src_offset), XMS_INVALID_SOURCE_OFFSET),
                  (bad_handle(src_handle), XMS_INVALID_SOURCE_HANDLE),
                  (bad_offset(src_handle, src_offset), XMS_INVALID_SOURCE_OFFSET),
                  (past_end(src_handle, src_offset), XMS_INVALID_LENGTH),
                  (not_u32(dst_offset), XMS_INVALID_DEST_OFFSET),
                  (bad_handle(dst_handle), XMS_INVALID_DEST_HANDLE),
                  (bad_offset(dst_handle, dst_offset), XMS_INVALID_DEST_OFFSET),
                  (past_end(dst_handle, dst_offset), XMS_INVALID_LENGTH))
    return dos_step(s, code, s, z3.BoolVal(True), z3.BoolVal(False))


# -- EMS ------------------------------------------------------------------------------

def EmsAllocateAny(s: DosState, pages: Ref, handle: Ref, pick: Ref, pinv: Ref, full: Ref,
                   short: Ref) -> DosStep:
    """LIM function 27 (5Ah): 43h that allows 0 pages (DOSBox-staging
    src/ints/ems.cpp lines 264-268, 933-936)."""
    return EmsAllocate(s, pages, handle, pick, pinv, full, short, zero_ok=True)


def EmsAllocate(s: DosState, pages: Ref, handle: Ref, pick: Ref, pinv: Ref, full: Ref,
                short: Ref, *, zero_ok: bool = False) -> DosStep:
    """LIM function 43h: a fresh handle whose logical page l is held in the free
    storage page pick[l] (pinv: the ghost inverse, pick is injective)."""
    k, i = z3.Ints("k i")
    code = status((z3.Or(pages < 0, pages > s.etotal), EMS_TOO_MANY_PAGES),
                  (z3.And(pages == 0, not zero_ok), EMS_ZERO_PAGES), (full, EMS_NO_HANDLES),
                  (short, EMS_NOT_ENOUGH_PAGES))
    taken = z3.And(0 <= pinv[i], pinv[i] < pages, pick[pinv[i]] == i)
    g = z3.Int("g")
    post = s.but(
        elive=z3.Store(s.elive, handle, True), epages=z3.Store(s.epages, handle, pages),
        pstore=z3.Lambda([g, k], z3.If(g == handle, pick[k], s.pstore[g, k])),
        sowner=z3.Lambda([i], z3.If(taken, handle, s.sowner[i])),
        spage=z3.Lambda([i], z3.If(taken, pinv[i], s.spage[i])))
    valid = z3.ForAll([k], z3.Implies(z3.And(0 <= k, k < pages), z3.And(
        0 <= pick[k], pick[k] < s.etotal, s.sowner[pick[k]] == -1, pinv[pick[k]] == k)))
    return dos_step(s, code, post, handle, z3.IntVal(0),
                    z3.And(0 < handle, z3.Not(s.elive[handle]), valid))


def EmsDeallocate(s: DosState, handle: Ref) -> DosStep:
    """LIM function 45h: the handle's pages are freed and unmapped; handle 0
    (the OS handle) stays live with no pages; 86h while a mapping context is
    saved for the handle (LIM 4.0 function 6)."""
    i, p, g, k = z3.Ints("i p g k")
    code = status((z3.Not(s.elive[handle]), EMS_INVALID_HANDLE),
                  (s.esaved[handle], EMM_SAVED_CONTEXT))
    post = s.but(
        elive=z3.Store(s.elive, handle, handle == 0), epages=z3.Store(s.epages, handle, 0),
        sowner=z3.Lambda([i], z3.If(s.sowner[i] == handle, -1, s.sowner[i])),
        slot_used=z3.Lambda([p], z3.And(s.slot_used[p], s.slot_h[p] != handle)),
        mapped_at=z3.Lambda([g, k], z3.If(g == handle, -1, s.mapped_at[g, k])))
    return dos_step(s, code, post, z3.BoolVal(True), z3.BoolVal(False))


def EmsReallocate(s: DosState, handle: Ref, pages: Ref, pick: Ref, pinv: Ref,
                  short: Ref) -> DosStep:
    """LIM function 18 (51h): the handle keeps its first ``pages`` logical pages
    (0 allowed); the pages past them are freed and leave the slots showing
    them; new logical pages k (old count <= k < pages) are held in the free
    storage pages pick[k] (pinv: the ghost inverse). 83h unknown handle, 87h
    more pages than exist (or negative), 88h (a free choice) not enough free."""
    i, p, g, k = z3.Ints("i p g k")
    old = s.epages[handle]
    code = status((z3.Not(s.elive[handle]), EMS_INVALID_HANDLE),
                  (z3.Or(pages < 0, pages > s.etotal), EMS_TOO_MANY_PAGES),
                  (z3.And(pages > old, short), EMS_NOT_ENOUGH_PAGES))
    dropped = z3.And(s.sowner[i] == handle, s.spage[i] >= pages)
    taken = z3.And(old <= pinv[i], pinv[i] < pages, pick[pinv[i]] == i)
    post = s.but(
        epages=z3.Store(s.epages, handle, pages),
        pstore=z3.Lambda([g, k], z3.If(z3.And(g == handle, k >= old), pick[k],
                                       s.pstore[g, k])),
        sowner=z3.Lambda([i], z3.If(dropped, -1, z3.If(taken, handle, s.sowner[i]))),
        spage=z3.Lambda([i], z3.If(taken, pinv[i], s.spage[i])),
        slot_used=z3.Lambda([p], z3.And(s.slot_used[p], z3.Not(z3.And(
            s.slot_h[p] == handle, s.slot_l[p] >= pages)))),
        mapped_at=z3.Lambda([g, k], z3.If(z3.And(g == handle, k >= pages), -1,
                                          s.mapped_at[g, k])))
    valid = z3.ForAll([k], z3.Implies(z3.And(old <= k, k < pages), z3.And(
        0 <= pick[k], pick[k] < s.etotal, s.sowner[pick[k]] == -1, pinv[pick[k]] == k)))
    return dos_step(s, code, post, z3.BoolVal(True), z3.BoolVal(False), valid)


def EmsSaveMap(s: DosState, handle: Ref) -> DosStep:
    """LIM function 8 (47h): the handle's save area holds the slots' mapping
    (83h unknown handle, 8Dh one is already saved)."""
    code = status((z3.Not(s.elive[handle]), EMS_INVALID_HANDLE),
                  (s.esaved[handle], EMM_MAP_ALREADY_SAVED))
    return dos_step(s, code, s.but(esaved=z3.Store(s.esaved, handle, True)),
                    z3.BoolVal(True), z3.BoolVal(False))


def EmsRestoreMap(s: DosState, handle: Ref) -> DosStep:
    """LIM function 9 (48h), its save-area part: emptied (83h unknown handle, 8Eh
    nothing saved). The slots it sets are LIM 44h steps (EmsMapPage and
    EmsUnmapPage, one per slot), proved on their own."""
    code = status((z3.Not(s.elive[handle]), EMS_INVALID_HANDLE),
                  (z3.Not(s.esaved[handle]), EMM_NO_SAVED_MAP))
    return dos_step(s, code, s.but(esaved=z3.Store(s.esaved, handle, False)),
                    z3.BoolVal(True), z3.BoolVal(False))


def _ems_checks(s: DosState, handle: Ref, physical: Ref) -> list[tuple[Ref, int]]:
    return [(z3.Not(s.elive[handle]), EMS_INVALID_HANDLE),
            (z3.Or(physical < 0, physical >= PHYSICAL_PAGES), EMS_INVALID_PHYSICAL)]


def unmapped(s: DosState, physical: Ref) -> DosState:
    """Slot ``physical`` shows nothing."""
    g, k = z3.Ints("g k")
    shown = z3.And(s.slot_used[physical], g == s.slot_h[physical], k == s.slot_l[physical])
    return s.but(slot_used=z3.Store(s.slot_used, physical, False),
                 mapped_at=z3.Lambda([g, k], z3.If(shown, -1, s.mapped_at[g, k])))


def EmsMapPage(s: DosState, handle: Ref, logical: Ref, physical: Ref) -> DosStep:
    """LIM function 44h: slot ``physical`` shows (handle, logical); the page
    leaves the slot it showed in before, if any."""
    g, k = z3.Ints("g k")
    clear = unmapped(s, physical)
    old = s.mapped_at[handle, logical]
    post = clear.but(
        slot_used=z3.Store(z3.Store(clear.slot_used, old, False), physical, True),
        slot_h=z3.Store(s.slot_h, physical, handle), slot_l=z3.Store(s.slot_l, physical, logical),
        mapped_at=z3.Lambda([g, k], z3.If(z3.And(g == handle, k == logical), physical,
                                          clear.mapped_at[g, k])))
    code = status(*_ems_checks(s, handle, physical),
                  (z3.Or(logical < 0, logical >= s.epages[handle]), EMS_INVALID_LOGICAL))
    return dos_step(s, code, post, z3.BoolVal(True), z3.BoolVal(False))


def EmsUnmapPage(s: DosState, handle: Ref, physical: Ref) -> DosStep:
    """LIM 4.0 function 44h with logical page 0FFFFh: the slot shows nothing."""
    return dos_step(s, status(*_ems_checks(s, handle, physical)), unmapped(s, physical),
                    z3.BoolVal(True), z3.BoolVal(False))


# -- concrete states ------------------------------------------------------------------

class McbLike(Protocol):
    """An MCB as the model's walk() lists it."""

    @property
    def segment(self) -> int: ...
    @property
    def type(self) -> int | str | bytes: ...
    @property
    def owner(self) -> int: ...
    @property
    def size(self) -> int: ...


class XmsLike(Protocol):
    """An XMS block as the model's XmsBlock holds it."""

    @property
    def address(self) -> int: ...
    @property
    def size_kb(self) -> int: ...
    @property
    def lock_count(self) -> int: ...


class McbView(NamedTuple):
    """An MCB of plain data (what walk() lists): type 'M'/'Z' as a byte value."""

    segment: int
    type: int
    owner: int
    size: int


class XmsView(NamedTuple):
    address: int
    size_kb: int
    lock_count: int


def _type_byte(value: int | str | bytes) -> int:
    if isinstance(value, int):
        return value
    return ord(value) if isinstance(value, str) else value[0]


def concrete_dos(blocks: Iterable[McbLike], *, first: int, umb_start: int, umb_end: int,
                 linked: bool, strategy: int, xms: Mapping[int, XmsLike], xms_end: int,
                 ems_handles: Mapping[int, Sequence[int]],
                 ems_slots: Sequence[tuple[int, int] | None], ems_total: int,
                 ems_saved: Iterable[int] = ()) -> DosState:
    """The DosState of the model's plain data: the MCBs of both chains (walk()
    lists; a type may be 'M', b'M' or 0x4D), the XMS handles, the EMS handles'
    storage pages, the slots and the handles with a saved mapping (47h); the
    ghosts computed. The UMB head at 9FFFh
    (present with UMBs) is fixed, not a block of either area: it is skipped.
    An empty EMS handle 0 is added when absent (the OS handle)."""
    s = symbolic_dos("concrete")
    k = z3.K
    is_mcb, typ, owner, size, mcb_of = (k(INT, z3.BoolVal(False)), k(INT, z3.IntVal(0)),
                                       k(INT, z3.IntVal(0)), k(INT, z3.IntVal(0)),
                                       k(INT, z3.IntVal(-1)))
    a = z3.Int("a")
    for mcb in blocks:
        m = mcb.segment
        if m == UMB_HEAD and umb_start < umb_end:
            continue
        is_mcb = z3.Store(is_mcb, m, True)
        typ = z3.Store(typ, m, _type_byte(mcb.type))
        owner = z3.Store(owner, m, mcb.owner)
        size = z3.Store(size, m, mcb.size)
        mcb_of = z3.Lambda([a], z3.If(z3.And(m <= a, a <= m + mcb.size), m, mcb_of[a]))
    xlive, xaddr, xsize, xlock = (k(INT, z3.BoolVal(False)), k(INT, z3.IntVal(0)),
                                  k(INT, z3.IntVal(0)), k(INT, z3.IntVal(0)))
    for handle, block in sorted(xms.items()):
        xlive = z3.Store(xlive, handle, True)
        xaddr = z3.Store(xaddr, handle, block.address)
        xsize = z3.Store(xsize, handle, block.size_kb)
        xlock = z3.Store(xlock, handle, block.lock_count)
    g, j = z3.Ints("g j")
    elive, epages = k(INT, z3.BoolVal(False)), k(INT, z3.IntVal(0))
    pstore = z3.Lambda([g, j], z3.IntVal(0))
    sowner, spage = k(INT, z3.IntVal(-1)), k(INT, z3.IntVal(0))
    for handle, stores in sorted({0: [], **ems_handles}.items()):
        elive = z3.Store(elive, handle, True)
        epages = z3.Store(epages, handle, len(stores))
        for logical, store in enumerate(stores):
            pstore = z3.Store(pstore, handle, logical, store)
            sowner = z3.Store(sowner, store, handle)
            spage = z3.Store(spage, store, logical)
    slot_used, slot_h, slot_l = (k(INT, z3.BoolVal(False)), k(INT, z3.IntVal(0)),
                                 k(INT, z3.IntVal(0)))
    mapped_at = z3.Lambda([g, j], z3.IntVal(-1))
    for slot, shown in enumerate(ems_slots):
        if shown is not None:
            slot_used = z3.Store(slot_used, slot, True)
            slot_h = z3.Store(slot_h, slot, shown[0])
            slot_l = z3.Store(slot_l, slot, shown[1])
            mapped_at = z3.Store(mapped_at, shown[0], shown[1], slot)
    esaved = k(INT, z3.BoolVal(False))
    for handle in sorted(ems_saved):
        esaved = z3.Store(esaved, handle, True)
    return s.but(first=z3.IntVal(first), umb_start=z3.IntVal(umb_start),
                 umb_end=z3.IntVal(umb_end), linked=z3.BoolVal(linked),
                 strategy=z3.IntVal(strategy), is_mcb=is_mcb, typ=typ, owner=owner, size=size,
                 mcb_of=mcb_of, xlive=xlive, xaddr=xaddr, xsize=xsize, xlock=xlock,
                 xms_end=z3.IntVal(xms_end), elive=elive, epages=epages, pstore=pstore,
                 etotal=z3.IntVal(ems_total), sowner=sowner, spage=spage,
                 slot_used=slot_used, slot_h=slot_h, slot_l=slot_l, mapped_at=mapped_at,
                 esaved=esaved)


def violated(s: DosState, timeout_ms: int = 10000) -> list[str]:
    """The invariants a concrete state breaks (an undecided one counts as broken)."""
    return refuted(INVARIANTS, s, timeout_ms)


def initial_dos(first: int, umb_start: int, umb_end: int, xms_end: int,
                ems_total: int) -> DosState:
    """One free block over conventional memory and one over the UMB area (if
    any), link off, first fit, no XMS block, EMS handle 0 with no pages."""
    top = UMB_HEAD if umb_start < umb_end else CONVENTIONAL_TOP
    blocks = [McbView(first, MCB_Z, 0, top - first - 1)]
    if umb_start < umb_end:
        blocks.append(McbView(umb_start, MCB_Z, 0, umb_end - umb_start - 1))
    return concrete_dos(blocks, first=first, umb_start=umb_start, umb_end=umb_end,
                        linked=False, strategy=0, xms={}, xms_end=xms_end, ems_handles={},
                        ems_slots=[None] * PHYSICAL_PAGES, ems_total=ems_total)
