"""The one definition of the abstract state of physical and virtual memory.

As Hyperkernel's ``datatypes.py``: the whole state is a handful of typed z3
maps, and nothing else defines state. Frames are 20-bit numbers (4 GiB of
4 KB frames), directory and table slots 10-bit, entries 32-bit x86 PDE/PTE
words. A page directory and a page table are identified by the frame they
occupy, as on the hardware (CR3 and PDEs hold frame addresses).

Fields marked *ghost* are not state of the system: they are witnesses that
make counting and uniqueness expressible without bounds (Hyperkernel's
technique for reference counts). The abstraction of a concrete model
computes them; the refinement check compares only the real fields.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import z3

from model.page_manager import FrameOwner
from model.x86_paging import FIRST_KERNEL_HIGH_SLOT, PTE_ACCESSED, PTE_DIRTY

FRAME = z3.BitVecSort(20)
SLOT = z3.BitVecSort(10)
ENTRY = z3.BitVecSort(32)
WORD = z3.BitVecSort(32)
OWNER = z3.BitVecSort(3)
OFFSET = z3.BitVecSort(12)
BYTE = z3.BitVecSort(8)

FREE, RESERVED, DIRECTORY, TABLE, MAPPED, HELD = (
    z3.BitVecVal(int(owner), OWNER) for owner in FrameOwner)

#: PDE bits compared by VMM-4: the hardware sets A (and D) per directory.
LINK_MASK = z3.BitVecVal(~(PTE_ACCESSED | PTE_DIRTY) & 0xFFFFFFFF, ENTRY)
#: 2**20 frames fill the 32-bit physical address space.
FRAME_LIMIT = z3.BitVecVal(1 << 20, WORD)

Ref = Any  # z3 expression of the field's sort (z3's stubs are untyped)


@dataclass(frozen=True)
class State:
    """Physical frames, ownership, page tables and memory contents."""

    nframes: Ref  # WORD: frames in physical memory
    used: Ref  # FRAME -> Bool: the frame bitset
    used_count: Ref  # WORD: the allocator's count of used frames
    owner: Ref  # FRAME -> OWNER: who owns each frame (FRM-3)
    pde: Ref  # FRAME (directory) -> SLOT -> ENTRY
    pte: Ref  # FRAME (table) -> SLOT -> ENTRY
    kernel_dir: Ref  # FRAME
    current_dir: Ref  # FRAME
    paging: Ref  # Bool: InitializePaging has run
    mem: Ref  # FRAME -> OFFSET -> BYTE: physical memory contents
    # ghost witnesses
    rank: Ref  # FRAME -> WORD: position of a used frame in an enumeration
    unrank: Ref  # WORD -> FRAME: the enumeration of used frames
    map_table: Ref  # FRAME -> FRAME: the table whose PTE maps a page frame
    map_index: Ref  # FRAME -> SLOT: the index of that PTE
    table_dir: Ref  # FRAME -> FRAME: the directory a table is linked from
    table_slot: Ref  # FRAME -> SLOT: the directory slot of a table

    def but(self, **changes: Ref) -> State:
        """A copy with some fields replaced (Hyperkernel's ``new = old.copy()``)."""
        return dataclasses.replace(self, **changes)


GHOST_FIELDS = ("rank", "unrank", "map_table", "map_index", "table_dir", "table_slot")
REAL_FIELDS = tuple(f.name for f in dataclasses.fields(State) if f.name not in GHOST_FIELDS)

_SORTS: dict[str, Callable[[], Ref]] = {
    "nframes": lambda: WORD,
    "used": lambda: z3.ArraySort(FRAME, z3.BoolSort()),
    "used_count": lambda: WORD,
    "owner": lambda: z3.ArraySort(FRAME, OWNER),
    "pde": lambda: z3.ArraySort(FRAME, z3.ArraySort(SLOT, ENTRY)),
    "pte": lambda: z3.ArraySort(FRAME, z3.ArraySort(SLOT, ENTRY)),
    "kernel_dir": lambda: FRAME,
    "current_dir": lambda: FRAME,
    "paging": z3.BoolSort,
    "mem": lambda: z3.ArraySort(FRAME, z3.ArraySort(OFFSET, BYTE)),
    "rank": lambda: z3.ArraySort(FRAME, WORD),
    "unrank": lambda: z3.ArraySort(WORD, FRAME),
    "map_table": lambda: z3.ArraySort(FRAME, FRAME),
    "map_index": lambda: z3.ArraySort(FRAME, SLOT),
    "table_dir": lambda: z3.ArraySort(FRAME, FRAME),
    "table_slot": lambda: z3.ArraySort(FRAME, SLOT),
}

_fresh = itertools.count()


def symbolic(prefix: str = "s") -> State:
    """A state whose every field is a fresh z3 constant."""
    tag = next(_fresh)
    return State(**{name: z3.Const(f"{prefix}{tag}.{name}", sort())
                    for name, sort in _SORTS.items()})


def ite(cond: Ref, then: State, other: State) -> State:
    """Field-wise If: ``then`` when cond holds, else ``other``."""
    return State(**{name: _ite_field(cond, getattr(then, name), getattr(other, name))
                    for name in _SORTS})


def _ite_field(cond: Ref, a: Ref, b: Ref) -> Ref:
    return a if a is b else z3.If(cond, a, b)


# -- entries and slots -----------------------------------------------------

def bv(value: int, sort: Ref) -> Ref:
    return z3.BitVecVal(value, sort)


def present(entry: Ref) -> Ref:
    return z3.Extract(0, 0, entry) == 1


def writable(entry: Ref) -> Ref:
    return z3.Extract(1, 1, entry) == 1


def user(entry: Ref) -> Ref:
    return z3.Extract(2, 2, entry) == 1


def frame_of(entry: Ref) -> Ref:
    return z3.Extract(31, 12, entry)


def make_entry(frame: Ref, is_writable: Ref, is_user: Ref) -> Ref:
    """A present entry for frame with R/W and U/S as given (A and D clear)."""
    return (z3.Concat(frame, bv(0, OFFSET)) | bv(1, ENTRY)
            | z3.If(is_writable, bv(2, ENTRY), bv(0, ENTRY))
            | z3.If(is_user, bv(4, ENTRY), bv(0, ENTRY)))


def kernel_slot(slot: Ref) -> Ref:
    """Directory slots of kernel space: 0 (identity) and 768.. (0xC0000000 up)."""
    return z3.Or(slot == 0, z3.UGE(slot, FIRST_KERNEL_HIGH_SLOT))


def in_memory(s: State, frame: Ref) -> Ref:
    return z3.ULT(z3.ZeroExt(12, frame), s.nframes)


def is_directory(s: State, frame: Ref) -> Ref:
    return s.owner[frame] == DIRECTORY


def is_table(s: State, frame: Ref) -> Ref:
    return s.owner[frame] == TABLE


def page_owner(s: State, frame: Ref) -> Ref:
    """Frames that a PTE maps: MAPPED pages, and RESERVED ones once paging is on."""
    return z3.Or(s.owner[frame] == MAPPED, z3.And(s.owner[frame] == RESERVED, s.paging))


def walk(s: State, directory: Ref, slot: Ref, index: Ref) -> tuple[Ref, Ref, Ref]:
    """(pde, pte, present) of the page (slot, index) in directory."""
    pde = s.pde[directory][slot]
    pte = s.pte[frame_of(pde)][index]
    return pde, pte, z3.And(present(pde), present(pte))


def translate(s: State, directory: Ref, slot: Ref, index: Ref) -> tuple[Ref, Ref]:
    """(mapped, frame) for the page (slot, index) of directory: VirtualToPhysical."""
    _, pte, mapped = walk(s, directory, slot, index)
    return mapped, frame_of(pte)


def address_parts(address: Ref) -> tuple[Ref, Ref, Ref]:
    """(slot, index, offset) of a 32-bit linear address."""
    return z3.Extract(31, 22, address), z3.Extract(21, 12, address), z3.Extract(11, 0, address)


def frame_number(address: Ref) -> Ref:
    return z3.Extract(31, 12, address)


def page_aligned(address: Ref) -> Ref:
    return z3.Extract(11, 0, address) == 0
