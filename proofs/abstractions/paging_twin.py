"""Python twins of the paging invariants, evaluated on a concrete :class:`Snapshot`.

The z3 forms in spec/page_manager.py, spec/virtual_memory.py and
spec/protection.py stay the source of truth: each twin below restates its
invariant clause by clause, over the same fields of :func:`to_state`'s
abstraction (the snapshot and its ghost witnesses, :func:`ghosts`), and
tests/test_paging_twin.py checks with hypothesis (and CrossHair on small
states) that twin and z3 form agree on valid and on deliberately corrupted
states. What makes a twin exact rather than a sample: every map of the
abstraction is a default (K) with finitely many stores, so a quantifier over
frames is decided by the frames some map stores plus one fresh frame inside
memory and one outside (every other frame reads the defaults everywhere, as
that fresh one does); a quantifier over slots or indices of one entry map by
its stored keys (an absent key reads 0: not present); VMM-4's kernel slots
are enumerated (257 of them).

Why: the oracle's spec mode checks the paging invariants on reported states;
z3 over a state of 4096 frames with a 1 MB heap mapped took minutes and
answered unknown (issue 16), the twin takes milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import z3

from proofs.abstractions.paging import Snapshot, ghosts
from spec.abi import (
    FIRST_KERNEL_HIGH_SLOT,
    FRAME_LIMIT,
    IDENTITY_LIMIT,
    PAGE_SHIFT,
    PDE_LINK_MASK,
    PTE_PRESENT,
    PTE_USER,
    FrameOwner,
)
from spec.state import Ref

FREE, RESERVED, DIRECTORY, TABLE, MAPPED, HELD = (
    FrameOwner.FREE, FrameOwner.RESERVED, FrameOwner.DIRECTORY, FrameOwner.TABLE,
    FrameOwner.MAPPED, FrameOwner.HELD)
SLOTS = 1024
KERNEL_SLOTS = (0, *range(FIRST_KERNEL_HIGH_SLOT, SLOTS))
FRAME_MASK = FRAME_LIMIT - 1


def kernel_slot(slot: int) -> bool:
    return slot == 0 or slot >= FIRST_KERNEL_HIGH_SLOT


def present(entry: int) -> bool:
    return bool(entry & PTE_PRESENT)


def user(entry: int) -> bool:
    return bool(entry & PTE_USER)


def frame_of(entry: int) -> int:
    return (entry >> PAGE_SHIFT) & FRAME_MASK


class View:
    """The abstraction's maps as Python lookups with their defaults."""

    def __init__(self, snap: Snapshot) -> None:
        g = ghosts(snap)
        self.snap = snap
        self.nframes, self.used_count = snap.nframes & 0xFFFFFFFF, snap.used_count & 0xFFFFFFFF
        self.used = frozenset(f & FRAME_MASK for f in snap.used)
        self.owner = {f & FRAME_MASK: o for f, o in snap.owner.items()}
        self.rank, self.unrank = g["rank"], g["unrank"]
        self.map_table, self.map_index = g["map_table"], g["map_index"]
        self.table_dir, self.table_slot = g["table_dir"], g["table_slot"]
        self.kernel_dir, self.current_dir = snap.kernel_dir, snap.current_dir
        self.paging = snap.paging

    def own(self, f: int) -> int:
        return self.owner.get(f, FREE)

    def pde(self, d: int, i: int) -> int:
        return self.snap.pde.get(d, {}).get(i, 0)

    def pte(self, t: int, j: int) -> int:
        return self.snap.pte.get(t, {}).get(j, 0)

    def in_memory(self, f: int) -> bool:
        return f < self.nframes

    def page_owner(self, f: int) -> bool:
        return self.own(f) == MAPPED or (self.own(f) == RESERVED and self.paging)

    def frames(self) -> Iterator[int]:
        """Every frame some map stores, then a fresh one in memory and one past it."""
        s = self.snap
        support = (self.used | self.owner.keys() | s.pde.keys() | s.pte.keys()
                   | self.rank.keys() | self.map_table.keys() | self.map_index.keys()
                   | self.table_dir.keys() | self.table_slot.keys()
                   | set(self.unrank.values()) | {self.kernel_dir, self.current_dir})
        yield from sorted(f & FRAME_MASK for f in support)
        for low, high in ((0, min(self.nframes, FRAME_LIMIT)), (self.nframes, FRAME_LIMIT)):
            fresh = next((f for f in range(low, min(high, low + len(support) + 1))
                          if f not in support), None)
            if fresh is not None:
                yield fresh

    def entries(self, maps: dict[int, dict[int, int]], f: int) -> Iterator[tuple[int, int]]:
        """(key, entry) of the stored nonzero entries of one entry map (the
        others read 0: not present)."""
        yield from ((k, e) for k, e in sorted(maps.get(f, {}).items()) if e)


def frm_1(v: View) -> bool:
    return v.nframes <= FRAME_LIMIT and all(
        f not in v.used and v.own(f) == FREE for f in v.frames() if not v.in_memory(f))


def frm_2(v: View) -> bool:
    indices = [*v.unrank, *([len(v.unrank)] if len(v.unrank) < v.used_count else [])]
    return v.used_count <= v.nframes and all(
        v.rank.get(f, 0) < v.used_count and v.unrank.get(v.rank.get(f, 0), 0) == f
        for f in v.frames() if f in v.used) and all(
        v.unrank.get(i, 0) in v.used and v.rank.get(v.unrank.get(i, 0), 0) == i
        for i in indices if i < v.used_count)


def frm_3(v: View) -> bool:
    identity_table = frame_of(v.pde(v.kernel_dir, 0))
    for f in v.frames():
        owner = v.own(f)
        if (f in v.used) != (owner != FREE) or owner > HELD:
            return False
        table, index = v.map_table.get(f, 0), v.map_index.get(f, 0)
        entry = v.pte(table, index)
        if v.page_owner(f) and not (v.own(table) == TABLE and present(entry)
                                    and frame_of(entry) == f):
            return False
        link = v.pde(v.table_dir.get(f, 0), v.table_slot.get(f, 0))
        if owner == TABLE and not (v.own(v.table_dir.get(f, 0)) == DIRECTORY and present(link)
                                   and frame_of(link) == f):
            return False
        if owner == RESERVED and not (f < IDENTITY_LIMIT >> PAGE_SHIFT and (
                not v.paging or (table == identity_table and index == f & 0x3FF))):
            return False
    return True


def vmm_1(v: View) -> bool:
    for f in v.frames():
        if v.own(f) == TABLE and not all(
                v.map_table.get(frame_of(e), 0) == f and v.map_index.get(frame_of(e), 0) == j
                for j, e in v.entries(v.snap.pte, f) if present(e)):
            return False
        if v.own(f) == DIRECTORY and not all(
                v.table_slot.get(frame_of(e), 0) == i
                and v.table_dir.get(frame_of(e), 0) == (v.kernel_dir if kernel_slot(i) else f)
                for i, e in v.entries(v.snap.pde, f) if present(e)):
            return False
    return True


def vmm_2(v: View) -> bool:
    for f in v.frames():
        if v.own(f) == TABLE and not all(
                v.in_memory(frame_of(e)) and frame_of(e) in v.used and v.page_owner(frame_of(e))
                for _, e in v.entries(v.snap.pte, f) if present(e)):
            return False
        if v.own(f) == DIRECTORY and not all(
                v.own(frame_of(e)) == TABLE for _, e in v.entries(v.snap.pde, f) if present(e)):
            return False
        if not v.paging and v.own(f) in (DIRECTORY, TABLE, MAPPED):
            return False
    return not v.paging or (v.own(v.kernel_dir) == DIRECTORY
                            and v.own(v.current_dir) == DIRECTORY
                            and present(v.pde(v.kernel_dir, 0)))


def vmm_4(v: View) -> bool:
    for d in v.frames():
        if v.own(d) == DIRECTORY and not all(
                v.pde(d, i) & PDE_LINK_MASK == v.pde(v.kernel_dir, i) & PDE_LINK_MASK
                for i in KERNEL_SLOTS):
            return False
    return not v.paging or not any(
        present(e) for i, e in v.entries(v.snap.pde, v.kernel_dir) if not kernel_slot(i))


def prot_1(v: View) -> bool:
    if not v.paging:
        return True
    for d in v.frames():
        if v.own(d) != DIRECTORY:
            continue
        for i, pde in v.entries(v.snap.pde, d):
            if not (present(pde) and user(pde)):
                continue
            for _, pte in v.entries(v.snap.pte, frame_of(pde)):
                if present(pte) and user(pte) and (
                        kernel_slot(i) or v.own(frame_of(pte)) != MAPPED):
                    return False
    return True


def prot_2(v: View) -> bool:
    return all(not (present(e) and user(e))
               for t in v.frames() if v.own(t) == TABLE
               and kernel_slot(v.table_slot.get(t, 0))
               for _, e in v.entries(v.snap.pte, t))


def prot_3(v: View) -> bool:
    return all(not (present(e) and user(e))
               for d in v.frames() if v.own(d) == DIRECTORY
               for i, e in v.entries(v.snap.pde, d) if kernel_slot(i))


#: Each invariant's twin, by the catalogue's id.
TWINS: dict[str, Callable[[View], bool]] = {
    "FRM-1": frm_1, "FRM-2": frm_2, "FRM-3": frm_3, "VMM-1": vmm_1, "VMM-2": vmm_2,
    "VMM-4": vmm_4, "PROT-1": prot_1, "PROT-2": prot_2, "PROT-3": prot_3}


def violated(snap: Snapshot) -> list[str]:
    """The ids of the paging invariants the snapshot's abstraction breaks."""
    view = View(snap)
    return [ident for ident, holds in TWINS.items() if not holds(view)]


def guarded(assume: Ref) -> tuple[Ref, Ref]:
    """(ok, the step's own assume) of a guarded step's ``Implies(ok, assume)``
    (spec/step.py's guarded; an unguarded one: (True, assume))."""
    if z3.is_implies(assume):
        return assume.arg(0), assume.arg(1)
    return z3.BoolVal(True), assume
