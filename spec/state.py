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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import z3

from spec.abi import FIRST_KERNEL_HIGH_SLOT, PDE_LINK_MASK, FrameOwner

FRAME = z3.BitVecSort(20)
SLOT = z3.BitVecSort(10)
ENTRY = z3.BitVecSort(32)
WORD = z3.BitVecSort(32)
OWNER = z3.BitVecSort(3)
OFFSET = z3.BitVecSort(12)
BYTE = z3.BitVecSort(8)

FREE, RESERVED, DIRECTORY, TABLE, MAPPED, HELD = (
    z3.BitVecVal(int(owner), OWNER) for owner in (
        FrameOwner.FREE, FrameOwner.RESERVED, FrameOwner.DIRECTORY, FrameOwner.TABLE,
        FrameOwner.MAPPED, FrameOwner.HELD))

#: PDE bits compared by VMM-4: the hardware sets A (and D) per directory.
LINK_MASK = z3.BitVecVal(PDE_LINK_MASK, ENTRY)
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


_D = TypeVar("_D")


def fresh_fields(cls: type[_D], sorts: Mapping[str, Ref], prefix: str) -> _D:
    """A state of dataclass ``cls`` whose every field is a fresh z3 constant of
    its sort in ``sorts`` (the layers' symbolic_* constructors)."""
    tag = next(_fresh)
    return cls(**{name: z3.Const(f"{prefix}{tag}.{name}", sort) for name, sort in sorts.items()})


def refuted(invariants: Mapping[str, Callable[[_D], Ref]], s: _D,
            timeout_ms: int = 10000) -> list[str]:
    """The invariants a concrete state breaks: z3 does not answer unsat to the
    negation (an undecided one counts as broken)."""
    broken = []
    for name, holds in invariants.items():
        solver = z3.Solver()
        solver.set("timeout", timeout_ms)
        solver.add(z3.Not(holds(s)))
        if solver.check() != z3.unsat:
            broken.append(name)
    return broken


def ite_fields(cls: type[_D], cond: Ref, then: _D, other: _D) -> _D:
    """Field-wise If over dataclass states (shared fields stay as they are)."""
    return cls(**{f.name: _ite_field(cond, getattr(then, f.name), getattr(other, f.name))
                  for f in dataclasses.fields(cls)})  # type: ignore[arg-type]


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


# -- the kernel heap (seed section 3) ------------------------------------------

#: The heap's addresses, sizes and index positions are integers (bounded to
#: 32 bits by HEAP-5): the heap's arithmetic is linear, and z3 decides linear
#: integer orderings in milliseconds where the same bit-vector queries
#: (sums and comparisons of 32-bit words) took seconds to minutes.
ADDR = z3.IntSort()
PAGE = z3.IntSort()  # a virtual page number (address // 4096)


@dataclass(frozen=True)
class HeapState:
    """A KernelHeap: its range, its blocks as their headers and footers say,
    its hole index, and the PTEs of its virtual pages in its directory.

    ``size``, ``hole``, ``magic``, ``fmagic`` and ``back`` are what the header
    (magic, is_hole, size) and the footer (magic, header pointer) of the block
    at each header address hold in memory: the abstraction reads them from the
    modelled bytes, so a stale footer or a damaged header is a state that
    breaks HEAP-2. ``key``, ``pos`` and ``owner_of`` are ghosts: the size
    at each index position (HEAP-1 orders the keys, HEAP-3 ties them to the
    holes' sizes), the index position of a hole, the header of the block
    containing an address.
    """

    created: Ref  # Bool
    start: Ref  # ADDR: start_address
    end: Ref  # ADDR: end_address
    max: Ref  # ADDR: max_address
    data_start: Ref  # ADDR: the first block's header (after the index array)
    floor: Ref  # ADDR: the length the heap never contracts below
    capacity: Ref  # ADDR: entries the index can hold
    supervisor: Ref  # Bool
    readonly: Ref  # Bool
    block: Ref  # ADDR -> Bool: a block header starts here
    size: Ref  # ADDR -> ADDR: the header's size (header + payload + footer)
    hole: Ref  # ADDR -> Bool: the header's is_hole flag
    aligned: Ref  # ADDR -> Bool: allocated with page_align
    magic: Ref  # ADDR -> ADDR: the header's magic
    fmagic: Ref  # ADDR -> ADDR: the footer's magic
    back: Ref  # ADDR -> ADDR: the footer's header pointer
    index: Ref  # ADDR -> ADDR: position -> hole header
    count: Ref  # ADDR: entries in the index
    pte: Ref  # PAGE -> ENTRY: the heap directory's PTE for each virtual page
    # ghost witnesses
    key: Ref  # ADDR -> ADDR: the size of the hole at each index position
    pos: Ref  # ADDR -> ADDR: the index position of each hole
    owner_of: Ref  # ADDR -> ADDR: the header of the block containing each address

    def but(self, **changes: Ref) -> HeapState:
        return dataclasses.replace(self, **changes)


HEAP_GHOST_FIELDS = ("key", "pos", "owner_of")

_WORD_MAP = lambda: z3.ArraySort(WORD, WORD)  # noqa: E731
_HEAP_SORTS: dict[str, Callable[[], Ref]] = {
    **{name: z3.BoolSort for name in ("created", "supervisor", "readonly")},
    **{name: (lambda: ADDR) for name in ("start", "end", "max", "data_start", "floor",
                                         "capacity", "count")},
    **{name: (lambda: z3.ArraySort(ADDR, z3.BoolSort())) for name in ("block", "hole",
                                                                       "aligned")},
    **{name: (lambda: z3.ArraySort(ADDR, ADDR)) for name in (
        "size", "magic", "fmagic", "back", "index", "key", "pos", "owner_of")},
    "pte": lambda: z3.ArraySort(PAGE, ENTRY),
}


def symbolic_heap(prefix: str = "h") -> HeapState:
    """A heap state whose every field is a fresh z3 constant."""
    return fresh_fields(HeapState, {f.name: _HEAP_SORTS[f.name]()
                                    for f in dataclasses.fields(HeapState)}, prefix)


def ite_heap(cond: Ref, then: HeapState, other: HeapState) -> HeapState:
    return ite_fields(HeapState, cond, then, other)


# -- the memory pool (seed section 3) -------------------------------------------

@dataclass(frozen=True)
class PoolState:
    """A MemoryPool: its arena, which carved blocks are live, and its free list.

    Blocks are named by their index in the arena (address = arena + index *
    stride). The free list is a stack: ``free[fcount - 1]`` is the head the
    next AllocBlock pops (the model threads it through the free blocks'
    first words; the abstraction reads it from memory). ``fpos`` (the stack
    position of each free block) and ``lrank``/``lunrank`` (an enumeration
    of the live blocks, which counts them as FRM-2 counts frames) are ghosts.
    """

    created: Ref  # Bool
    arena: Ref  # WORD: the payload address of the arena
    stride: Ref  # WORD: block_size rounded up to a word
    max_blocks: Ref  # WORD
    current: Ref  # WORD: current_blocks, the blocks carved so far
    live: Ref  # WORD -> Bool: carved block allocated
    free: Ref  # WORD -> WORD: stack position -> block index
    fcount: Ref  # WORD: blocks on the free list
    nlive: Ref  # WORD: blocks allocated (current_blocks minus the free list)
    # ghost witnesses
    fpos: Ref  # WORD -> WORD: the stack position of each free block
    lrank: Ref  # WORD -> WORD: position of a live block in an enumeration of them
    lunrank: Ref  # WORD -> WORD: the enumeration of the live blocks

    def but(self, **changes: Ref) -> PoolState:
        return dataclasses.replace(self, **changes)


POOL_GHOST_FIELDS = ("fpos", "lrank", "lunrank")
SYSTEM_GHOST_FIELDS = ("rank", "unrank")
_POOL_SORTS: dict[str, Callable[[], Ref]] = {
    "created": z3.BoolSort, "live": lambda: z3.ArraySort(WORD, z3.BoolSort()),
    **{name: (lambda: WORD) for name in ("arena", "stride", "max_blocks", "current",
                                         "fcount", "nlive")},
    **{name: _WORD_MAP for name in ("free", "fpos", "lrank", "lunrank")},
}


def symbolic_pool(prefix: str = "p") -> PoolState:
    return fresh_fields(PoolState, {f.name: _POOL_SORTS[f.name]()
                                    for f in dataclasses.fields(PoolState)}, prefix)


def ite_pool(cond: Ref, then: PoolState, other: PoolState) -> PoolState:
    return ite_fields(PoolState, cond, then, other)


# -- the memory subsystem (seed section 9) ---------------------------------------

@dataclass(frozen=True)
class SystemState:
    """The subsystem's frames: which are used and which manager owns each.

    ``owner`` names the owner kind (spec.memory_subsystem.OWNER_KINDS: the
    claim MemorySubsystem.frame_owners() reports for the frame, NONE when no
    manager claims it); ``total``, ``used_count`` and ``free_count`` are what
    GetTotalMemory, GetUsedMemory and GetAvailableMemory report, in frames.
    Integers, as the heap's state.
    """

    booted: Ref  # Bool: InitializeMemorySubsystem has run
    nframes: Ref  # ADDR
    low_end: Ref  # ADDR: the frames of the first MB (real mode, DOS, BIOS)
    used: Ref  # ADDR -> Bool: the PageManager's bit per frame
    owner: Ref  # ADDR -> ADDR: the owner kind of each frame
    total: Ref  # ADDR
    used_count: Ref  # ADDR
    free_count: Ref  # ADDR
    # ghost witnesses: an enumeration of the used frames (counts them, as FRM-2)
    rank: Ref  # ADDR -> ADDR
    unrank: Ref  # ADDR -> ADDR

    def but(self, **changes: Ref) -> SystemState:
        return dataclasses.replace(self, **changes)


_SYSTEM_SORTS: dict[str, Callable[[], Ref]] = {
    "booted": z3.BoolSort, "used": lambda: z3.ArraySort(ADDR, z3.BoolSort()),
    **{name: (lambda: z3.ArraySort(ADDR, ADDR)) for name in ("owner", "rank", "unrank")},
    **{name: (lambda: ADDR) for name in ("nframes", "low_end", "total", "used_count",
                                         "free_count")},
}


def symbolic_system(prefix: str = "y") -> SystemState:
    return fresh_fields(SystemState, {f.name: _SYSTEM_SORTS[f.name]()
                                      for f in dataclasses.fields(SystemState)}, prefix)


def ite_system(cond: Ref, then: SystemState, other: SystemState) -> SystemState:
    return ite_fields(SystemState, cond, then, other)
