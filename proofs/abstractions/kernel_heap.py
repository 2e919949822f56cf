"""The abstraction of a KernelHeap: the model as a concrete :class:`HeapState`.

The blocks are read from the modelled memory, not from the heap's own
records: starting at data_start, each header's size leads to the next, and
the magic, hole flag, size, footer magic and footer back-pointer are the
bytes found there. A heap whose bookkeeping and memory disagree (a stale
footer, a size never written) therefore abstracts to a state that breaks
HEAP-2 or HEAP-3, and the check reports it by name. The hole index comes
from the model's HoleIndex (its recorded sizes are the keys), ``aligned``
from its record of live blocks, the PTEs from the heap's directory.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import z3

from model.kernel_heap import KernelHeap
from model.page_manager import PageManager
from model.virtual_memory import VirtualMemoryManager
from proofs.abstractions.heap_walk import RawBlock, raw_blocks
from spec.abi import PAGE_SHIFT, PTE_PRESENT
from spec.state import ADDR, ENTRY, HeapState


@dataclass(frozen=True)
class HeapSnapshot:
    """Plain values of everything the abstraction needs (comparable, printable)."""

    created: bool
    start: int
    end: int
    max: int
    data_start: int
    floor: int
    capacity: int
    supervisor: bool
    readonly: bool
    blocks: tuple[RawBlock, ...]
    aligned: frozenset[int]
    index: tuple[tuple[int, int], ...]  # (recorded size, header)
    ptes: tuple[tuple[int, int], ...]  # (virtual page, PTE) for present pages in [start, max)


HEAP_START = 0xC0000000


def small_heap(length: int, max_length: int, index_size: int, min_size: int) -> KernelHeap:
    """A supervisor, writable heap of ``length`` bytes at 0xC0000000 (growing to
    ``max_length``) over 8 MB of memory with the first MB reserved: the small
    world the heap, pool and reachable-state checks run in."""
    pm = PageManager()
    assert pm.InitializePhysicalMemory(0x100000, 0x800000)
    vmm = VirtualMemoryManager(pm)
    assert vmm.InitializePaging()
    heap = KernelHeap(vmm)
    assert heap.Create(HEAP_START, HEAP_START + length, HEAP_START + max_length, True, False,
                       index_size=index_size, min_size=min_size) is heap
    return heap


def _ptes(heap: KernelHeap) -> tuple[tuple[int, int], ...]:
    directory = heap.directory
    if not heap.created or directory is None:
        return ()
    out = []
    for page in range(heap.start_address >> PAGE_SHIFT, heap.max_address >> PAGE_SHIFT):
        table = directory.tables[page >> 10]
        entry = 0 if table is None else table.entries[page & 0x3FF]
        if entry & PTE_PRESENT:
            out.append((page, entry))
    return tuple(out)


def heap_snapshot(heap: KernelHeap) -> HeapSnapshot:
    return HeapSnapshot(
        heap.created, heap.start_address, heap.end_address, heap.max_address,
        heap.data_start, heap.min_size, heap.index_size, heap.supervisor, heap.readonly,
        raw_blocks(heap),
        frozenset(h for h, block in heap.allocated.items() if block.page_align),
        tuple(heap.holes()), _ptes(heap))


def _word(value: int) -> z3.IntNumRef:
    return z3.IntVal(value)


def _stores(default: z3.ArrayRef, items: list[tuple[z3.ExprRef, z3.ExprRef]]) -> z3.ArrayRef:
    array = default
    for key, value in items:
        array = z3.Store(array, key, value)
    return array


def _words(default: int, pairs: list[tuple[int, int]]) -> z3.ArrayRef:
    return _cached_words(default, tuple(pairs))


def _flags(headers: list[int]) -> z3.ArrayRef:
    return _cached_flags(tuple(headers))


# The terms of a field whose values did not change are built once: a 1 MB heap
# maps 256 pages, and a Store chain of them cost 90 ms a state (issue 16); the
# same term (z3 hash-conses) also lets the checks see an unchanged field.
@functools.lru_cache(maxsize=256)
def _cached_words(default: int, pairs: tuple[tuple[int, int], ...]) -> z3.ArrayRef:
    return _stores(z3.K(ADDR, _word(default)), [(_word(k), _word(v)) for k, v in pairs])


@functools.lru_cache(maxsize=256)
def _cached_flags(headers: tuple[int, ...]) -> z3.ArrayRef:
    return _stores(z3.K(ADDR, z3.BoolVal(False)), [(_word(h), z3.BoolVal(True)) for h in headers])


@functools.lru_cache(maxsize=64)
def _pte_array(ptes: tuple[tuple[int, int], ...]) -> z3.ArrayRef:
    return _stores(z3.K(ADDR, z3.BitVecVal(0, ENTRY)),
                   [(z3.IntVal(p), z3.BitVecVal(e, ENTRY)) for p, e in ptes])


def to_heap_state(snap: HeapSnapshot) -> HeapState:
    """The snapshot as concrete z3 terms; ghosts computed from it."""
    a = z3.Const("a", ADDR)
    owner_of: z3.ExprRef = a  # outside the data area: unconstrained, any value does
    for block in snap.blocks:
        owner_of = z3.If(a >= block.header, _word(block.header), owner_of)
    holes = [b.header for b in snap.blocks if b.hole]
    return HeapState(
        created=z3.BoolVal(snap.created), start=_word(snap.start), end=_word(snap.end),
        max=_word(snap.max), data_start=_word(snap.data_start), floor=_word(snap.floor),
        capacity=_word(snap.capacity), supervisor=z3.BoolVal(snap.supervisor),
        readonly=z3.BoolVal(snap.readonly),
        block=_flags([b.header for b in snap.blocks]),
        size=_words(0, [(b.header, b.size) for b in snap.blocks]),
        hole=_flags(holes),
        aligned=_flags(sorted(snap.aligned)),
        magic=_words(0, [(b.header, b.magic) for b in snap.blocks]),
        fmagic=_words(0, [(b.header, b.fmagic) for b in snap.blocks]),
        back=_words(0, [(b.header, b.back) for b in snap.blocks]),
        index=_words(0, [(i, header) for i, (_, header) in enumerate(snap.index)]),
        count=_word(len(snap.index)),
        pte=_pte_array(snap.ptes),
        key=_words(0, [(i, size) for i, (size, _) in enumerate(snap.index)]),
        pos=_words(-1, [(header, i) for i, (_, header) in enumerate(snap.index)]),
        owner_of=z3.Lambda([a], owner_of))


def abstract_heap(heap: KernelHeap) -> HeapState:
    return to_heap_state(heap_snapshot(heap))
