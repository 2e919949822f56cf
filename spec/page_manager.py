"""PageManager: invariants FRM-1..3 and the transitions of seed section 1.

The spec allows any free frame where the model takes the lowest one
(DESIGN.md: the spec may be nondeterministic); the chosen frame is an
argument whose validity is the step's ``assume``.
"""

from __future__ import annotations

import z3

from spec.abi import IDENTITY_LIMIT, NO_FRAME, PAGE_SHIFT, ErrorCode
from spec.state import (
    FRAME,
    FRAME_LIMIT,
    FREE,
    HELD,
    MAPPED,
    OFFSET,
    RESERVED,
    SLOT,
    TABLE,
    WORD,
    Ref,
    State,
    bv,
    frame_number,
    frame_of,
    in_memory,
    is_directory,
    is_table,
    page_aligned,
    page_owner,
    present,
    translate,
)
from spec.step import Step, status, step

E = ErrorCode
#: The owners whose frames FreeFrame gives back: only the caller's own.
FREEABLE = (HELD,)


# -- invariants --------------------------------------------------------------

def frm_1(s: State) -> Ref:
    """FRM-1: no frame at or beyond nframes is used or owned; nframes <= 2**20."""
    f = z3.Const("f", FRAME)
    return z3.And(z3.ULE(s.nframes, FRAME_LIMIT),
                  z3.ForAll([f], z3.Implies(z3.Not(in_memory(s, f)),
                                            z3.And(z3.Not(s.used[f]), s.owner[f] == FREE))))


def frm_2(s: State) -> Ref:
    """FRM-2: the used count equals the number of set bits.

    Counted without bounds by a ghost bijection between the used frames and
    [0, used_count): rank maps each used frame into the range, unrank back.
    """
    f = z3.Const("f", FRAME)
    i = z3.Const("i", WORD)
    return z3.And(
        z3.ULE(s.used_count, s.nframes),
        z3.ForAll([f], z3.Implies(s.used[f], z3.And(z3.ULT(s.rank[f], s.used_count),
                                                     s.unrank[s.rank[f]] == f))),
        z3.ForAll([i], z3.Implies(z3.ULT(i, s.used_count),
                                  z3.And(s.used[s.unrank[i]], s.rank[s.unrank[i]] == i))))


def frm_3(s: State) -> Ref:
    """FRM-3: a frame is used exactly when it has an owner, and its owner holds it.

    A mapped page is held by the PTE its ghost back-pointer names, a page
    table by the directory slot that links it; reserved frames lie in the
    identity region and, once paging is on, are mapped there by the identity
    table at their own index. Nothing allocated is left without its owner.
    """
    f = z3.Const("f", FRAME)
    entry = s.pte[s.map_table[f]][s.map_index[f]]
    link = s.pde[s.table_dir[f]][s.table_slot[f]]
    identity_table = frame_of(s.pde[s.kernel_dir][bv(0, SLOT)])
    return z3.And(
        z3.ForAll([f], z3.And(s.used[f] == (s.owner[f] != FREE), z3.ULE(s.owner[f], HELD))),
        z3.ForAll([f], z3.Implies(page_owner(s, f), z3.And(
            is_table(s, s.map_table[f]), present(entry), frame_of(entry) == f))),
        z3.ForAll([f], z3.Implies(s.owner[f] == TABLE, z3.And(
            is_directory(s, s.table_dir[f]), present(link), frame_of(link) == f))),
        z3.ForAll([f], z3.Implies(s.owner[f] == RESERVED, z3.And(
            z3.ULT(f, IDENTITY_LIMIT >> PAGE_SHIFT),
            z3.Implies(s.paging, z3.And(s.map_table[f] == identity_table,
                                        s.map_index[f] == z3.Extract(9, 0, f)))))))


INVARIANTS = {"FRM-1": frm_1, "FRM-2": frm_2, "FRM-3": frm_3}


# -- allocation primitives -----------------------------------------------------

def is_free(s: State, f: Ref) -> Ref:
    """A frame the allocator may hand out: in memory, not used, owned by nobody
    (the last is implied by FRM-3; stating it keeps the proofs' queries small)."""
    return z3.And(in_memory(s, f), z3.Not(s.used[f]), s.owner[f] == FREE)


def no_free_frame(s: State) -> Ref:
    """Every frame is used (by FRM-2, the count says so)."""
    return s.used_count == s.nframes


def allocate(s: State, f: Ref, owner: Ref) -> State:
    """Mark free frame f used by owner, zero its contents, extend the enumeration."""
    return s.but(used=z3.Store(s.used, f, True), owner=z3.Store(s.owner, f, owner),
                 used_count=s.used_count + 1,
                 rank=z3.Store(s.rank, f, s.used_count),
                 unrank=z3.Store(s.unrank, s.used_count, f),
                 mem=z3.Store(s.mem, f, z3.K(OFFSET, bv(0, z3.BitVecSort(8)))))


def release(s: State, f: Ref) -> State:
    """Free used frame f: the last frame of the enumeration takes its rank. The
    frame's contents are forgotten (a data frame reads as zeros again)."""
    last = s.unrank[s.used_count - 1]
    return s.but(used=z3.Store(s.used, f, False), owner=z3.Store(s.owner, f, FREE),
                 used_count=s.used_count - 1,
                 rank=z3.Store(s.rank, last, s.rank[f]),
                 unrank=z3.Store(s.unrank, s.rank[f], last),
                 mem=z3.Store(s.mem, f, z3.K(OFFSET, bv(0, z3.BitVecSort(8)))))


def frame_checks(s: State, address: Ref) -> list[tuple[Ref, ErrorCode]]:
    """The checks on a physical frame address, in the model's order."""
    return [(z3.Not(page_aligned(address)), E.ERROR_INVALID_PARAMETER),
            (s.nframes == 0, E.ERROR_NOT_READY),
            (z3.Not(in_memory(s, frame_number(address))), E.ERROR_INVALID_ADDRESS)]


# -- operations ------------------------------------------------------------------

def InitializePhysicalMemory(s: State, mem_start: Ref, mem_end: Ref) -> Step:
    """Frames [0, mem_end/4096); frames below align_up(mem_start) reserved.

    mem_end is 33 bits wide: 2**32 (a full 4 GiB) is a valid end.
    """
    start_frames = z3.Extract(32, 12, z3.ZeroExt(1, mem_start) + 0xFFF)
    end_frames = z3.Extract(32, 12, mem_end)
    code = status(
        (s.nframes != 0, E.ERROR_ALREADY_INITIALIZED),
        (z3.Not(z3.And(mem_end != 0, z3.ULE(mem_end, 1 << 32),
                       z3.ULE(mem_start, IDENTITY_LIMIT),
                       z3.ULT(start_frames, end_frames))), E.ERROR_INVALID_PARAMETER))
    reserved = z3.Extract(19, 0, start_frames)
    f = z3.Const("f", FRAME)
    i = z3.Const("i", WORD)
    below = z3.ULT(f, reserved)
    post = s.but(
        nframes=z3.ZeroExt(11, end_frames),
        used=z3.Lambda([f], z3.Or(below, s.used[f])),
        owner=z3.Lambda([f], z3.If(below, RESERVED, s.owner[f])),
        used_count=z3.ZeroExt(12, reserved),
        rank=z3.Lambda([f], z3.If(below, z3.ZeroExt(12, f), s.rank[f])),
        unrank=z3.Lambda([i], z3.If(z3.ULT(i, z3.ZeroExt(12, reserved)),
                                    z3.Extract(19, 0, i), s.unrank[i])))
    return step(s, code, post, z3.BoolVal(True), z3.BoolVal(False))


def RequestFrame(s: State, frame: Ref) -> Step:
    """Hand a free frame to the caller (HELD); ``frame`` is the implementation's choice."""
    code = status((s.nframes == 0, E.ERROR_NOT_READY),
                  (no_free_frame(s), E.ERROR_NOT_ENOUGH_MEMORY))
    return step(s, code, allocate(s, frame, HELD), z3.Concat(frame, bv(0, OFFSET)),
                bv(NO_FRAME, WORD), assume=is_free(s, frame))


def FreeFrame(s: State, frame_addr: Ref) -> Step:
    """Free a HELD frame; a free one is a double free, a mapped one is busy."""
    f = frame_number(frame_addr)
    code = status(*frame_checks(s, frame_addr),
                  (s.owner[f] == FREE, E.ERROR_INVALID_BLOCK),
                  (z3.Not(z3.Or([s.owner[f] == o for o in FREEABLE])), E.ERROR_BUSY))
    return step(s, code, release(s, f), z3.BoolVal(True), z3.BoolVal(False))


def UnreservePage(s: State, virtual_address: Ref) -> Step:
    """Free a reserved frame and drop its identity mapping (index = frame)."""
    f = frame_number(virtual_address)
    code = status(*frame_checks(s, virtual_address),
                  (s.owner[f] != RESERVED, E.ERROR_INVALID_BLOCK))
    table = frame_of(s.pde[s.kernel_dir][bv(0, SLOT)])
    index = z3.Extract(9, 0, f)
    unmapped = release(s, f)
    unmapped = unmapped.but(pte=z3.If(
        s.paging, z3.Store(unmapped.pte, table, z3.Store(unmapped.pte[table], index, bv(0, WORD))),
        unmapped.pte))

    def translation(d: Ref, slot: Ref, idx: Ref) -> tuple[Ref, Ref]:
        mapped, target = translate(s, d, slot, idx)
        gone = z3.And(slot == 0, idx == index)
        return z3.And(mapped, z3.Not(gone)), target

    return step(s, code, unmapped, z3.BoolVal(True), z3.BoolVal(False),
                translation=translation)


def CopyPage(s: State, src: Ref, dst: Ref) -> Step:
    """Copy frame src to frame dst: both data frames, dst not reserved."""
    fs, fd = frame_number(src), frame_number(dst)
    data = (RESERVED, MAPPED, HELD)
    code = status(*frame_checks(s, src), *frame_checks(s, dst),
                  (s.owner[fs] == FREE, E.ERROR_INVALID_ADDRESS),
                  (z3.Not(z3.Or([s.owner[fs] == o for o in data])), E.ERROR_ACCESS_DENIED),
                  (s.owner[fd] == FREE, E.ERROR_INVALID_ADDRESS),
                  (z3.Not(z3.Or([s.owner[fd] == o for o in data[1:]])), E.ERROR_ACCESS_DENIED))
    return step(s, code, s.but(mem=z3.Store(s.mem, fd, s.mem[fs])), z3.BoolVal(True),
                z3.BoolVal(False))


def FirstFreeFrame(s: State, result: Ref) -> Step:
    """The lowest free frame's address, or NO_FRAME; no state change.

    ``result`` is the frame the implementation reported; ``assume`` says it is
    free and every frame below it is used.
    """
    g = z3.Const("g", FRAME)
    lowest = z3.And(is_free(s, result),
                    z3.ForAll([g], z3.Implies(z3.ULT(g, result), z3.Not(is_free(s, g)))))
    code = status((s.nframes == 0, E.ERROR_NOT_READY),
                  (no_free_frame(s), E.ERROR_NOT_ENOUGH_MEMORY))
    return step(s, code, s, z3.Concat(result, bv(0, OFFSET)), bv(NO_FRAME, WORD),
                assume=lowest)


def GetFrameCount(s: State) -> Step:
    return step(s, bv(0, WORD), s, s.nframes)


def GetFreeFrameCount(s: State) -> Step:
    return step(s, bv(0, WORD), s, s.nframes - s.used_count)


def GetUsedFrameCount(s: State) -> Step:
    return step(s, bv(0, WORD), s, s.used_count)
