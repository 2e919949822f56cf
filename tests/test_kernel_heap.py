"""Behaviour of the KernelHeap's seed operations (seed section 3).

A small world: 16 MB of physical memory (the first MB reserved), paging on, and
a heap at 0xC0000000 of 0x8000 bytes growing to 0x40000, with an index of 64
entries (data_start 0xC0001000: one page for the index array) and min_size
0x2000 (the floor is then the initial 0x8000). Every test ends with
``check_heap``: the walk of the headers and footers in memory tiles
[data_start, end), the index holds exactly the holes, sorted by size, the
record of live blocks matches the walk, no two holes are adjacent, page_align
is honoured, and exactly [start, end) of [start, max) is mapped with the
heap's flags. Failures are checked against a ``snapshot`` of everything.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from model.kernel_heap import AllocatedBlock, HeapBlock, KernelHeap, footer_bytes, header_bytes
from model.page_manager import PageManager
from model.page_tables import PageDirectory, PageFault
from model.virtual_memory import VirtualMemoryManager
from spec.abi import HEAP_MAGIC, PAGE_SIZE, PTE_PRESENT, PTE_USER, PTE_WRITABLE, ErrorCode

E = ErrorCode
S = 0xC0000000
END = S + 0x8000
MAX = S + 0x40000
DATA = S + 0x1000  # data_start: 64 index entries round up to one page
INITIAL_HOLE = END - DATA  # 0x7000
HOSTILE: list[Any] = [None, -1, 2**32, "16", 1.5, True, b"\x10"]


def make_world(mem_end: int = 16 << 20) -> tuple[PageManager, VirtualMemoryManager]:
    pm = PageManager()
    assert pm.InitializePhysicalMemory(0x100000, mem_end)
    vm = VirtualMemoryManager(pm)
    assert vm.InitializePaging()
    return pm, vm


def make_heap(mem_end: int = 16 << 20, *, readonly: bool = False, index_size: int = 64,
              min_size: int = 0x2000) -> KernelHeap:
    _, vm = make_world(mem_end)
    heap = KernelHeap(vm)
    assert heap.Create(S, END, MAX, True, readonly, index_size=index_size,
                       min_size=min_size) is heap
    assert heap.last_error == E.ERROR_SUCCESS
    return heap


@pytest.fixture
def heap() -> KernelHeap:
    return make_heap()


def pm_of(heap: KernelHeap) -> PageManager:
    return heap.vmm.pageman


def pte(heap: KernelHeap, page: int) -> int:
    directory = heap.directory or heap.vmm.kernel_directory
    assert directory is not None
    table = directory.tables[page >> 22]
    return 0 if table is None else table.entries[(page >> 12) & 0x3FF]


def check_heap(heap: KernelHeap) -> None:
    """HEAP-1..6 from the raw state (the walk reads the modelled memory)."""
    assert heap.created
    blocks = heap.walk()
    assert blocks is not None, "headers or footers damaged"
    at = heap.data_start
    for block in blocks:
        assert block.header == at
        at += block.size
    assert at == heap.end_address and blocks  # HEAP-2
    holes = heap.holes()
    sizes = [size for size, _ in holes]
    assert sizes == sorted(sizes)  # HEAP-1
    assert sorted((b.header, b.size) for b in blocks if b.is_hole) == sorted(
        (header, size) for size, header in holes)  # HEAP-3
    assert len(holes) <= heap.index_size
    assert {b.header: b.size for b in blocks if not b.is_hole} == {
        header: record.size for header, record in heap.allocated.items()}
    for left, right in zip(blocks, blocks[1:], strict=False):
        assert not (left.is_hole and right.is_hole)  # HEAP-4
    for header, record in heap.allocated.items():  # HEAP-6
        assert record.size >= record.requested + 20
        assert not record.page_align or (header + 12) % PAGE_SIZE == 0
    assert heap.end_address % PAGE_SIZE == 0 and heap.end_address <= heap.max_address
    for page in range(heap.start_address, heap.max_address, PAGE_SIZE):  # HEAP-5
        entry = pte(heap, page)
        if page < heap.end_address:
            assert entry & PTE_PRESENT
            assert bool(entry & PTE_USER) is not heap.supervisor
            assert bool(entry & PTE_WRITABLE) is not heap.readonly
        else:
            assert not entry & PTE_PRESENT


def snapshot(heap: KernelHeap) -> dict[str, Any]:
    pm = pm_of(heap)
    return {
        "walk": heap.walk(), "holes": heap.holes(), "allocated": dict(heap.allocated),
        "fields": (heap.created, heap.start_address, heap.end_address, heap.max_address,
                   heap.data_start, heap.index_size, heap.min_size, heap.supervisor,
                   heap.readonly, heap.directory),
        "free": pm.free_count(), "owner": bytes(pm.owner),
        "memory": {frame: bytes(page) for frame, page in pm.memory.items()},
        "ptes": [pte(heap, page) for page in range(S, MAX, PAGE_SIZE)],
    }


def layout(heap: KernelHeap) -> list[tuple[int, int, bool]]:
    """The walk as (offset from start, size, is_hole)."""
    blocks = heap.walk()
    assert blocks is not None
    return [(b.header - S, b.size, b.is_hole) for b in blocks]


def write(heap: KernelHeap, address: int, data: bytes) -> None:
    assert heap.directory is not None
    assert heap.vmm.WriteVirtualMemory(heap.directory, address, data, False) is True


def read(heap: KernelHeap, address: int, length: int) -> bytes:
    assert heap.directory is not None
    data = heap.vmm.ReadVirtualMemory(heap.directory, address, length, False)
    assert isinstance(data, bytes)
    return data


def expect_failure(heap: KernelHeap, call: Any, value: Any, code: ErrorCode) -> None:
    before = snapshot(heap)
    assert call() == value
    assert heap.last_error == code
    assert snapshot(heap) == before


# -- Create -----------------------------------------------------------------------

def test_create_maps_the_range_and_makes_one_hole() -> None:
    pm, vm = make_world()
    free = pm.free_count()
    heap = KernelHeap(vm)
    assert heap.Create(S, END, MAX, True, False, index_size=64, min_size=0x2000) is heap
    assert heap.last_error == E.ERROR_SUCCESS
    assert (heap.start_address, heap.end_address, heap.max_address) == (S, END, MAX)
    assert (heap.data_start, heap.index_size, heap.min_size) == (DATA, 64, 0x8000)
    assert heap.directory is vm.kernel_directory and heap.supervisor and not heap.readonly
    assert free - pm.free_count() == 8 + 1  # 8 pages and the page table of slot 768
    assert heap.walk() == [HeapBlock(DATA, INITIAL_HOLE, True)]
    assert heap.holes() == [(INITIAL_HOLE, DATA)] and heap.allocated == {}
    assert read(heap, DATA, 12) == header_bytes(INITIAL_HOLE, True)
    assert read(heap, END - 8, 8) == footer_bytes(DATA)
    assert read(heap, DATA, 4) == HEAP_MAGIC.to_bytes(4, "little")
    check_heap(heap)


@pytest.mark.parametrize(("index_size", "min_size", "data_start", "floor"), [
    (1, 0, S + 0x1000, 0x8000),
    (1024, 0x10000, S + 0x1000, 0x10000),  # the floor is the larger of the two
    (1025, 0x8000, S + 0x2000, 0x8000),
    (0x1C00, 0, S + 0x7000, 0x8000),  # the index fills 7 pages: one page of blocks
])
def test_create_data_start_and_floor(index_size: int, min_size: int, data_start: int,
                                     floor: int) -> None:
    _, vm = make_world()
    heap = KernelHeap(vm)
    assert heap.Create(S, END, MAX, True, False, index_size=index_size, min_size=min_size)
    assert (heap.data_start, heap.min_size) == (data_start, floor)
    assert heap.holes() == [(END - data_start, data_start)]


def test_create_readonly_user_heap_in_a_user_directory() -> None:
    _, vm = make_world()
    directory = vm.CreatePageDirectory()
    assert directory is not None
    heap = KernelHeap(vm, directory)
    base = 0x00400000
    assert heap.Create(base, base + 0x4000, base + 0x10000, False, True, index_size=16,
                       min_size=0)
    assert heap.directory is directory
    entry = pte(heap, base)
    assert entry & PTE_USER and not entry & PTE_WRITABLE
    p = heap.Alloc(40)  # metadata is written although the pages are read-only
    assert p == base + 0x1000 + 12 and heap.Free(p)
    fault = vm.WriteVirtualMemory(directory, p, b"x", False)
    assert isinstance(fault, PageFault) and fault.address == p
    check_heap(heap)


BAD_CREATE: list[tuple[Any, ...]] = [
    (S + 1, END, MAX, True, False),
    (S, END + 0x10, MAX, True, False),
    (S, END, MAX + 1, True, False),
    (S, S, MAX, True, False),  # empty heap
    (END, S, MAX, True, False),
    (S, END, END - PAGE_SIZE, True, False),  # max < end
    (S, END, 0xFFFFF000 + PAGE_SIZE, True, False),
    (None, END, MAX, True, False),
    (S, "end", MAX, True, False),
    (S, END, 2**32, True, False),
    (-PAGE_SIZE, END, MAX, True, False),
    (S, END, MAX, 1, False),
    (S, END, MAX, True, None),
]


@pytest.mark.parametrize("args", BAD_CREATE)
def test_create_rejects_bad_arguments(args: tuple[Any, ...]) -> None:
    pm, vm = make_world()
    heap = KernelHeap(vm)
    free = pm.free_count()
    assert heap.Create(*args, index_size=64, min_size=0) is None
    assert heap.last_error == E.ERROR_INVALID_PARAMETER
    assert not heap.created and pm.free_count() == free


@pytest.mark.parametrize(("index_size", "min_size"), [
    (0, 0), (-1, 0), (None, 0), (True, 0), ("64", 0),
    (0x1C01, 0),  # the index array reaches the end: no room for a block
    (64, -1), (64, 2**32), (64, None), (64, 1.0),
])
def test_create_rejects_bad_index_and_floor(index_size: Any, min_size: Any) -> None:
    pm, vm = make_world()
    heap = KernelHeap(vm)
    free = pm.free_count()
    assert heap.Create(S, END, MAX, True, False, index_size=index_size,
                       min_size=min_size) is None
    assert heap.last_error == E.ERROR_INVALID_PARAMETER
    assert not heap.created and pm.free_count() == free


def test_create_twice(heap: KernelHeap) -> None:
    expect_failure(heap, lambda: heap.Create(S, END, MAX, True, False), None,
                   E.ERROR_ALREADY_INITIALIZED)


def test_create_before_paging() -> None:
    pm = PageManager()
    assert pm.InitializePhysicalMemory(0x100000, 16 << 20)
    heap = KernelHeap(VirtualMemoryManager(pm))
    assert heap.Create(S, END, MAX, True, False, index_size=64) is None
    assert heap.last_error == E.ERROR_NOT_READY


def test_create_in_a_destroyed_directory() -> None:
    _, vm = make_world()
    directory = vm.CreatePageDirectory()
    assert directory is not None and vm.DestroyPageDirectory(directory)
    heap = KernelHeap(vm, directory)
    assert heap.Create(0x400000, 0x408000, 0x410000, True, False, index_size=64) is None
    assert heap.last_error == E.ERROR_INVALID_HANDLE


@pytest.mark.parametrize("page", [S, END - PAGE_SIZE, END, MAX - PAGE_SIZE])
def test_create_refuses_mapped_pages_up_to_max(page: int) -> None:
    pm, vm = make_world()
    assert vm.kernel_directory is not None
    assert vm.AllocPage(vm.kernel_directory, page, True, True)
    free = pm.free_count()
    heap = KernelHeap(vm)
    assert heap.Create(S, END, MAX, True, False, index_size=64) is None
    assert heap.last_error == E.ERROR_ALREADY_EXISTS
    assert pm.free_count() == free and pte(heap, page) & PTE_PRESENT
    assert all(not pte(heap, p) & PTE_PRESENT for p in range(S, MAX, PAGE_SIZE) if p != page)


def test_create_user_pages_in_kernel_space_are_refused() -> None:
    pm, vm = make_world()
    free = pm.free_count()
    heap = KernelHeap(vm)
    assert heap.Create(S, END, MAX, False, False, index_size=64) is None
    assert heap.last_error == E.ERROR_ACCESS_DENIED and pm.free_count() == free


def test_create_without_enough_frames_maps_nothing() -> None:
    pm, vm = make_world(0x100000 + 10 * PAGE_SIZE)  # 8 frames left after paging
    assert pm.free_count() == 8
    heap = KernelHeap(vm)
    assert heap.Create(S, END, MAX, True, False, index_size=64) is None  # needs 8 + table
    assert heap.last_error == E.ERROR_NOT_ENOUGH_MEMORY
    assert pm.free_count() == 8 and vm.kernel_tables.keys() == {0}


# -- Alloc: split, absorb, sizes ----------------------------------------------------

def test_alloc_splits_the_first_hole(heap: KernelHeap) -> None:
    p = heap.Alloc(100)
    assert p == DATA + 12 and heap.last_error == E.ERROR_SUCCESS
    assert heap.allocated == {DATA: AllocatedBlock(120, 100, False)}
    assert layout(heap) == [(0x1000, 120, False), (0x1078, INITIAL_HOLE - 120, True)]
    assert heap.holes() == [(INITIAL_HOLE - 120, DATA + 120)]
    assert read(heap, DATA, 12) == header_bytes(120, False)
    assert read(heap, DATA + 112, 8) == footer_bytes(DATA)
    assert heap.GetBlockSize(p) == 100 and heap.last_error == E.ERROR_SUCCESS
    check_heap(heap)


def test_alloc_of_zero_bytes_is_a_bare_header_and_footer(heap: KernelHeap) -> None:
    p = heap.Alloc(0)
    assert p == DATA + 12 and heap.allocated[DATA] == AllocatedBlock(20, 0, False)
    assert heap.GetBlockSize(p) == 0 and heap.last_error == E.ERROR_SUCCESS
    check_heap(heap)


@pytest.mark.parametrize(("size", "block", "holes"), [
    (INITIAL_HOLE - 20, INITIAL_HOLE, []),  # exact fit
    (INITIAL_HOLE - 39, INITIAL_HOLE, []),  # remainder of 19 bytes: absorbed
    (INITIAL_HOLE - 40, INITIAL_HOLE - 20, [(20, END - 20)]),  # remainder of 20: a hole
])
def test_alloc_absorbs_a_remainder_too_small_for_a_hole(
        heap: KernelHeap, size: int, block: int, holes: list[tuple[int, int]]) -> None:
    assert heap.Alloc(size) == DATA + 12
    assert heap.allocated[DATA] == AllocatedBlock(block, size, False)
    assert heap.holes() == holes
    check_heap(heap)


def carve(heap: KernelHeap, *sizes: int) -> list[int]:
    """Allocate blocks of the given total sizes (payload + 20) in a row."""
    pointers = [heap.Alloc(size - 20) for size in sizes]
    assert 0 not in pointers
    return pointers


def test_index_equal_sizes_newest_first_and_smallest_fit(heap: KernelHeap) -> None:
    a, b, c, d, e, f, g = carve(heap, 40, 60, 40, 60, 40, 60, 40)
    for p in (b, f, d):
        assert heap.Free(p)
    tail = (INITIAL_HOLE - 340, DATA + 340)
    assert heap.holes() == [(60, d - 12), (60, f - 12), (60, b - 12), tail]
    assert heap.FindSmallestHole(40, False) == 0 and heap.last_error == E.ERROR_SUCCESS
    assert heap.FindSmallestHole(41, False) == 3
    assert heap.FindSmallestHole(INITIAL_HOLE, False) == -1
    assert heap.last_error == E.ERROR_SUCCESS  # not finding is an answer
    assert heap.Alloc(30) == d  # smallest fit, newest of its size: d's hole (absorbs 10)
    assert heap.allocated[d - 12] == AllocatedBlock(60, 30, False)
    assert heap.holes() == [(60, f - 12), (60, b - 12), tail]
    check_heap(heap)


# -- page_align ----------------------------------------------------------------------

def test_page_aligned_alloc_leaves_the_gap_as_a_hole(heap: KernelHeap) -> None:
    p = heap.Alloc(100, True)
    assert p == S + 0x2000 and p % PAGE_SIZE == 0
    assert heap.allocated[p - 12] == AllocatedBlock(120, 100, True)
    assert layout(heap) == [(0x1000, 0xFF4, True), (0x1FF4, 120, False),
                            (0x206C, 0x8000 - 0x206C, True)]
    assert heap.holes() == [(0xFF4, DATA), (0x8000 - 0x206C, S + 0x206C)]
    check_heap(heap)


@pytest.mark.parametrize(("first", "header", "gap"), [
    (0xFE0, S + 0x1FF4, 0xFE0 + 0x14 - 0xFE0),  # hole at +0x1FE0: gap of exactly 20 bytes
    (0xFEA, S + 0x2FF4, 0x100A),  # hole at +0x1FEA: gap of 10 bytes, so the next page
    (0xFF3, S + 0x2FF4, 0x1001),  # gap of 1 byte
    (0xFF4, S + 0x1FF4, 0),  # the hole is already aligned: no gap
])
def test_page_align_gap_is_zero_or_a_hole(heap: KernelHeap, first: int, header: int,
                                          gap: int) -> None:
    carve(heap, first)
    hole = DATA + first
    p = heap.Alloc(8, True)
    assert p == header + 12
    expected = [(0x1000, first, False)]
    if gap:
        expected.append((hole - S, gap, True))
    expected += [(header - S, 28, False), (header + 28 - S, END - header - 28, True)]
    assert layout(heap) == expected
    check_heap(heap)


def test_page_align_scans_past_holes_that_fit_only_unaligned(heap: KernelHeap) -> None:
    a, b, c = carve(heap, 0x200, 0x300, 0x40)
    assert heap.Free(b)  # a hole of 0x300 at +0x1200: no aligned 0x100-byte block fits
    assert heap.holes()[0] == (0x300, b - 12)
    assert heap.FindSmallestHole(0x100, True) == 1
    assert heap.FindSmallestHole(0x100, False) == 0
    p = heap.Alloc(0x100, True)
    assert p == S + 0x2000 and heap.holes()[0] == (0x300, b - 12)
    check_heap(heap)


# -- Free: unify ----------------------------------------------------------------------

def test_free_without_neighbouring_holes(heap: KernelHeap) -> None:
    a, b, c = carve(heap, 40, 60, 40)
    assert heap.Free(b) and heap.last_error == E.ERROR_SUCCESS
    assert layout(heap)[:3] == [(0x1000, 40, False), (0x1028, 60, True), (0x1064, 40, False)]
    assert b - 12 not in heap.allocated
    check_heap(heap)


def test_free_unifies_right(heap: KernelHeap) -> None:
    a, b, c = carve(heap, 40, 60, 40)
    assert heap.Free(b) and heap.Free(a)
    assert layout(heap)[:2] == [(0x1000, 100, True), (0x1064, 40, False)]
    assert read(heap, DATA + 100 - 8, 8) == footer_bytes(DATA)  # fresh footer
    assert heap.holes()[0] == (100, DATA)
    check_heap(heap)


def test_free_unifies_left_and_resorts(heap: KernelHeap) -> None:
    a, b, c, d, e = carve(heap, 40, 60, 40, 80, 40)
    assert heap.Free(a) and heap.Free(d)
    assert heap.holes()[:2] == [(40, DATA), (80, d - 12)]
    assert heap.Free(b)  # a's hole absorbs b: 100 bytes, now after d's 80
    assert heap.holes()[:2] == [(80, d - 12), (100, DATA)]
    assert read(heap, DATA, 12) == header_bytes(100, True)
    assert read(heap, DATA + 92, 8) == footer_bytes(DATA)
    check_heap(heap)


def test_free_unifies_both_sides(heap: KernelHeap) -> None:
    a, b, c, d = carve(heap, 40, 60, 40, 40)
    assert heap.Free(a) and heap.Free(c) and heap.Free(b)
    assert layout(heap)[:2] == [(0x1000, 140, True), (0x108C, 40, False)]
    assert heap.holes()[0] == (140, DATA)
    assert read(heap, DATA + 132, 8) == footer_bytes(DATA)
    check_heap(heap)


def test_free_last_block_merges_with_the_tail_hole(heap: KernelHeap) -> None:
    a, b = carve(heap, 40, 60)
    assert heap.Free(b) and heap.Free(a)
    assert heap.walk() == [HeapBlock(DATA, INITIAL_HOLE, True)]
    assert heap.end_address == END  # the floor: no contraction below 0x8000
    check_heap(heap)


# -- Free: refusals --------------------------------------------------------------------

def test_double_free_is_invalid_block(heap: KernelHeap) -> None:
    a, b, c = carve(heap, 40, 60, 40)
    assert heap.Free(b)
    expect_failure(heap, lambda: heap.Free(b), False, E.ERROR_INVALID_BLOCK)


@pytest.mark.parametrize("offset", [0, 1, -1, 12, -12, 0x10000, 20])
def test_free_of_a_foreign_or_misaligned_pointer(heap: KernelHeap, offset: int) -> None:
    a, b = carve(heap, 40, 60)
    expect_failure(heap, lambda: heap.Free(a + 40 + offset if offset == 20 else a + offset)
                   if offset else heap.Free(S), False, E.ERROR_INVALID_ADDRESS)


@pytest.mark.parametrize("value", HOSTILE)
def test_free_of_hostile_values(heap: KernelHeap, value: Any) -> None:
    carve(heap, 40)
    expect_failure(heap, lambda: heap.Free(value), False, E.ERROR_INVALID_ADDRESS)


def test_write_past_the_end_is_detected_not_absorbed(heap: KernelHeap) -> None:
    a, b, c = carve(heap, 40, 60, 40)
    write(heap, a, b"A" * 21)  # one byte into the footer
    expect_failure(heap, lambda: heap.Free(a), False, E.ERROR_ARENA_TRASHED)
    assert heap.walk() is None
    assert a - 12 in heap.allocated


def test_damaged_right_header_is_detected(heap: KernelHeap) -> None:
    a, b, c = carve(heap, 40, 60, 40)
    assert heap.Free(b)
    # a's payload, its footer rewritten intact, then one byte into b's header
    write(heap, a, b"A" * 20 + footer_bytes(a - 12) + b"\xff")
    expect_failure(heap, lambda: heap.Free(a), False, E.ERROR_ARENA_TRASHED)
    expect_failure(heap, lambda: heap.Alloc(30), 0, E.ERROR_ARENA_TRASHED)


def test_damaged_left_footer_is_detected(heap: KernelHeap) -> None:
    a, b, c = carve(heap, 40, 60, 40)
    write(heap, a + 20, footer_bytes(0x1234))  # a's back-pointer
    expect_failure(heap, lambda: heap.Free(b), False, E.ERROR_ARENA_TRASHED)


def test_damaged_hole_footer_stops_alloc_and_expand(heap: KernelHeap) -> None:
    carve(heap, 40)
    write(heap, END - 4, b"\0\0\0\0")  # the tail hole's back-pointer
    expect_failure(heap, lambda: heap.Alloc(8), 0, E.ERROR_ARENA_TRASHED)
    expect_failure(heap, lambda: heap.Expand(0x9000), False, E.ERROR_ARENA_TRASHED)
    expect_failure(heap, lambda: heap.Alloc(0x9000), 0, E.ERROR_ARENA_TRASHED)


def test_damaged_tail_hole_stops_contract(heap: KernelHeap) -> None:
    hole = grown(heap, 0x3000)
    write(heap, hole, b"\0")  # the magic of the trailing hole's header
    expect_failure(heap, lambda: heap.Contract(0), 0, E.ERROR_ARENA_TRASHED)
    assert heap.walk() is None


def test_pages_unmapped_behind_the_heaps_back_read_as_damage(heap: KernelHeap) -> None:
    a, b = carve(heap, 40, 0x2000)
    assert heap.directory is not None
    assert heap.vmm.UnmapVirtualAddress(heap.directory, S + 0x3000)  # b's footer page
    expect_failure(heap, lambda: heap.Free(b), False, E.ERROR_ARENA_TRASHED)
    assert heap.walk() is None


# -- Expand ---------------------------------------------------------------------------

def test_alloc_expands_the_tail_hole(heap: KernelHeap) -> None:
    pm = pm_of(heap)
    free = pm.free_count()
    p = heap.Alloc(0x9000)  # needs 0x9014: length 0x8000 + 0x9014 -> 0x12000
    assert p == DATA + 12 and heap.end_address == S + 0x12000
    assert free - pm.free_count() == 10
    assert layout(heap) == [(0x1000, 0x9014, False), (0xA014, 0x12000 - 0xA014, True)]
    check_heap(heap)
    assert heap.Free(p)  # the merged hole ends the heap: contract to the floor
    assert heap.end_address == END and pm.free_count() == free
    assert heap.walk() == [HeapBlock(DATA, INITIAL_HOLE, True)]
    check_heap(heap)


def test_alloc_expands_with_a_new_hole_after_a_live_block(heap: KernelHeap) -> None:
    carve(heap, INITIAL_HOLE)
    pm = pm_of(heap)
    free = pm.free_count()
    p = heap.Alloc(100)
    assert p == END + 12 and heap.end_address == END + PAGE_SIZE
    assert free - pm.free_count() == 1
    assert layout(heap)[1:] == [(0x8000, 120, False), (0x8078, PAGE_SIZE - 120, True)]
    check_heap(heap)


def test_page_aligned_alloc_expands_by_an_extra_page(heap: KernelHeap) -> None:
    carve(heap, INITIAL_HOLE)
    p = heap.Alloc(0x1000, True)  # 0x8000 + 0x1014 + 0x1000 -> 0xB000
    assert heap.end_address == S + 0xB000 and p == S + 0x9000
    assert layout(heap)[1:] == [(0x8000, 0xFF4, True), (0x8FF4, 0x1014, False),
                                (0xA008, 0xB000 - 0xA008, True)]
    check_heap(heap)


def test_alloc_beyond_max_changes_nothing(heap: KernelHeap) -> None:
    carve(heap, 40)
    expect_failure(heap, lambda: heap.Alloc(0x40000), 0, E.ERROR_NOT_ENOUGH_MEMORY)
    expect_failure(heap, lambda: heap.Alloc(0x3F000 - 20), 0, E.ERROR_NOT_ENOUGH_MEMORY)
    p = heap.Alloc(0x3F000 - 20 - 40)  # exactly everything up to max
    assert p and heap.end_address == MAX and heap.holes() == []
    check_heap(heap)
    expect_failure(heap, lambda: heap.Alloc(0), 0, E.ERROR_NOT_ENOUGH_MEMORY)


def test_alloc_without_frames_to_expand_changes_nothing() -> None:
    heap = make_heap(0x100000 + 19 * PAGE_SIZE)  # 8 frames left after the heap
    assert pm_of(heap).free_count() == 8
    # growth is by the whole request (the tutorial's rule): 0x8000 + 0x8014 -> 9 pages
    expect_failure(heap, lambda: heap.Alloc(0x8000), 0, E.ERROR_NOT_ENOUGH_MEMORY)
    assert heap.Alloc(0x7000) == DATA + 12  # 0x8000 + 0x7014 -> 8 pages
    assert heap.end_address == S + 0x10000 and pm_of(heap).free_count() == 0
    check_heap(heap)


def test_expand_grows_and_resorts_the_tail_hole(heap: KernelHeap) -> None:
    a, b, c, d = carve(heap, 0x2000, 0x3000, 0x800, 0x1000)
    assert heap.Free(b)  # holes: tail 0x800 at +0x6800, b 0x3000
    assert heap.holes() == [(0x800, S + 0x7800), (0x3000, b - 12)]
    assert heap.Expand(0xA001) and heap.last_error == E.ERROR_SUCCESS
    assert heap.end_address == S + 0xB000
    assert heap.holes() == [(0x3000, b - 12), (0x3800, S + 0x7800)]
    assert read(heap, S + 0xB000 - 8, 8) == footer_bytes(S + 0x7800)
    check_heap(heap)


def test_expand_after_a_live_block_adds_a_hole(heap: KernelHeap) -> None:
    carve(heap, INITIAL_HOLE)
    assert heap.Expand(0xA000)
    assert heap.holes() == [(0x2000, END)]
    check_heap(heap)


def test_expand_to_the_current_length_changes_nothing(heap: KernelHeap) -> None:
    before = snapshot(heap)
    assert heap.Expand(0x8000) is True and heap.last_error == E.ERROR_SUCCESS
    assert snapshot(heap) == before


@pytest.mark.parametrize("size", [0x7FFF, 0x40001, 0x41000, *HOSTILE])
def test_expand_refuses_bad_sizes(heap: KernelHeap, size: Any) -> None:
    expect_failure(heap, lambda: heap.Expand(size), False, E.ERROR_INVALID_PARAMETER)


def test_expand_over_a_page_someone_mapped(heap: KernelHeap) -> None:
    directory = heap.directory
    assert directory is not None and heap.vmm.AllocPage(directory, S + 0x9000, True, True)
    expect_failure(heap, lambda: heap.Expand(0xA000), False, E.ERROR_ALREADY_EXISTS)
    assert heap.Expand(0x9000)


def test_expand_without_frames() -> None:
    heap = make_heap(0x100000 + 12 * PAGE_SIZE)  # 1 frame left
    expect_failure(heap, lambda: heap.Expand(0xA000), False, E.ERROR_NOT_ENOUGH_MEMORY)
    assert heap.Expand(0x9000) and pm_of(heap).free_count() == 0


# -- Contract -----------------------------------------------------------------------

def grown(heap: KernelHeap, live: int) -> int:
    """Live blocks covering [data_start, data_start + live), then the heap expanded to
    0x12000 with one trailing hole; returns the hole's header."""
    carve(heap, live)
    assert heap.Expand(0x12000)
    hole = DATA + live
    assert heap.holes()[-1] == (S + 0x12000 - hole, hole)
    return hole


@pytest.mark.parametrize(("live", "new_size", "length", "hole_size"), [
    (0x3000, 0, 0x8000, 0x4000),  # to the floor
    (0x3000, 0x9001, 0xA000, 0x6000),  # rounded up to a page
    (0x7FF0, 0, 0xA000, 0x1010),  # remainder 16 bytes: one page more
    (0x7FEC, 0, 0x9000, 20),  # remainder exactly 20 bytes
    (0x8000, 0, 0x9000, 0),  # the whole hole goes
    (0x8000, 0x12000, 0x12000, 0x9000),  # nothing to cut
])
def test_contract(heap: KernelHeap, live: int, new_size: int, length: int,
                  hole_size: int) -> None:
    pm = pm_of(heap)
    hole = grown(heap, live)
    free = pm.free_count()
    assert heap.Contract(new_size) == length and heap.last_error == E.ERROR_SUCCESS
    assert heap.end_address == S + length
    assert pm.free_count() - free == (0x12000 - length) // PAGE_SIZE
    if hole_size:
        assert heap.holes()[-1] == (hole_size, hole)
    else:
        assert hole not in heap.index and layout(heap)[-1] == (0x1000, live, False)
    check_heap(heap)


def test_contract_keeps_the_last_live_block(heap: KernelHeap) -> None:
    carve(heap, INITIAL_HOLE)
    assert heap.Expand(0xA000)
    carve(heap, 0x2000)
    before = snapshot(heap)
    assert heap.Contract(0) == 0xA000 and heap.last_error == E.ERROR_SUCCESS
    assert snapshot(heap) == before


@pytest.mark.parametrize("size", [-1, 0x8001, 2**32, None, "0", 1.0, False])
def test_contract_refuses_bad_sizes(heap: KernelHeap, size: Any) -> None:
    expect_failure(heap, lambda: heap.Contract(size), 0, E.ERROR_INVALID_PARAMETER)


def test_free_contracts_to_the_freed_hole(heap: KernelHeap) -> None:
    pm = pm_of(heap)
    free = pm.free_count()
    a, b = carve(heap, 0x3000, 0x11014)  # b: 0x8000 + 0x11014 -> 0x1A000
    assert heap.end_address == S + 0x1A000 and free - pm.free_count() == 18
    assert heap.Free(b)  # merged hole at +0x4000: cut at max(0x4000, floor 0x8000)
    assert heap.end_address == END and heap.holes() == [(0x4000, S + 0x4000)]
    assert pm.free_count() == free
    check_heap(heap)


# -- index capacity --------------------------------------------------------------------

def test_full_index_refuses_what_needs_another_entry() -> None:
    heap = make_heap(index_size=1)
    a, b = carve(heap, 40, 40)
    expect_failure(heap, lambda: heap.Free(a), False, E.ERROR_NOT_ENOUGH_MEMORY)
    expect_failure(heap, lambda: heap.Alloc(8, True), 0, E.ERROR_NOT_ENOUGH_MEMORY)
    assert heap.Free(b) and heap.Free(a)  # each merges with a hole: no new entry
    assert heap.holes() == [(INITIAL_HOLE, DATA)]
    first, _ = carve(heap, 0x6000, 0x1000)
    assert heap.holes() == [] and heap.Free(first)
    assert heap.holes() == [(0x6000, DATA)]  # the last block is live: growth needs an entry
    expect_failure(heap, lambda: heap.Expand(0x9000), False, E.ERROR_NOT_ENOUGH_MEMORY)
    expect_failure(heap, lambda: heap.Alloc(0x7000), 0, E.ERROR_NOT_ENOUGH_MEMORY)
    check_heap(heap)


# -- contents ---------------------------------------------------------------------------

def test_payloads_survive_neighbours_changing(heap: KernelHeap) -> None:
    a, b, c = carve(heap, 60, 80, 100)
    for p, size in ((a, 40), (b, 60), (c, 80)):
        write(heap, p, bytes([p & 0xFF]) * size)
    assert heap.Free(b)
    big = heap.Alloc(0x9000)  # expansion
    assert heap.Free(big)  # contraction
    d = heap.Alloc(50)  # reuses b's hole
    assert d == b
    assert read(heap, a, 40) == bytes([a & 0xFF]) * 40
    assert read(heap, c, 80) == bytes([c & 0xFF]) * 80
    check_heap(heap)


# -- not created, hostile arguments -------------------------------------------------------

OPERATIONS: list[tuple[str, Any, Any]] = [
    ("Alloc", lambda h, v: h.Alloc(v), 0),
    ("Alloc aligned", lambda h, v: h.Alloc(8, v), 0),
    ("Free", lambda h, v: h.Free(v), False),
    ("FindSmallestHole", lambda h, v: h.FindSmallestHole(v, False), -1),
    ("FindSmallestHole aligned", lambda h, v: h.FindSmallestHole(8, v), -1),
    ("Expand", lambda h, v: h.Expand(v), False),
    ("Contract", lambda h, v: h.Contract(v), 0),
    ("GetBlockSize", lambda h, v: h.GetBlockSize(v), 0),
]


@pytest.mark.parametrize(("name", "call", "failure"), OPERATIONS)
@pytest.mark.parametrize("value", [*HOSTILE, 2**32 - 19, -(2**40)])
def test_hostile_arguments_change_nothing(heap: KernelHeap, name: str, call: Any,
                                          failure: Any, value: Any) -> None:
    carve(heap, 40, 60)
    before = snapshot(heap)
    result = call(heap, value)
    if heap.last_error == E.ERROR_SUCCESS:  # a hostile value that is also valid (True)
        assert name.endswith("aligned") and value is True
        return
    assert result == failure and type(result) is type(failure)
    assert heap.last_error in (E.ERROR_INVALID_PARAMETER, E.ERROR_INVALID_ADDRESS)
    assert snapshot(heap) == before


@pytest.mark.parametrize(("name", "call", "failure"), OPERATIONS)
def test_operations_before_create(name: str, call: Any, failure: Any) -> None:
    _, vm = make_world()
    heap = KernelHeap(vm)
    assert call(heap, 8) == failure and heap.last_error == E.ERROR_NOT_READY
    assert heap.walk() == [] and heap.holes() == []


# -- Destroy ----------------------------------------------------------------------------

def test_destroy_returns_every_page_frame() -> None:
    pm, vm = make_world()
    before = pm.free_count()
    heap = KernelHeap(vm)
    assert heap.Create(S, END, MAX, True, False, index_size=64, min_size=0x2000)
    carve(heap, 100, 0x9000)
    assert heap.Destroy() and heap.last_error == E.ERROR_SUCCESS
    # every heap page is back; the page table of slot 768 stays, as every kernel table
    assert pm.free_count() == before - 1 and 768 in vm.kernel_tables
    assert not heap.created and heap.allocated == {} and heap.holes() == []
    assert (heap.start_address, heap.end_address, heap.data_start) == (0, 0, 0)
    assert all(not pte(heap, page) & PTE_PRESENT for page in range(S, MAX, PAGE_SIZE))
    assert (heap.Destroy(), heap.last_error) == (False, E.ERROR_NOT_READY)
    after_first = pm.free_count()
    assert heap.Create(S, END, MAX, True, False, index_size=64) is heap  # again
    assert heap.Destroy() and pm.free_count() == after_first


def test_destroy_in_a_user_directory_keeps_that_directory() -> None:
    _, vm = make_world()
    directory = vm.CreatePageDirectory()
    assert isinstance(directory, PageDirectory)
    heap = KernelHeap(vm, directory)
    assert heap.Create(0x400000, 0x404000, 0x408000, False, False, index_size=4)
    assert heap.Destroy() and heap.directory is directory


@pytest.mark.parametrize(("base", "supervisor"), [(0x400000, False), (S, True)])
def test_heap_in_a_destroyed_directory(base: int, supervisor: bool) -> None:
    pm, vm = make_world()
    directory = vm.CreatePageDirectory()
    assert directory is not None
    heap = KernelHeap(vm, directory)
    assert heap.Create(base, base + 0x4000, base + 0x8000, supervisor, False, index_size=4)
    p = heap.Alloc(40)
    assert vm.kernel_directory is not None and vm.SwitchPageDirectory(vm.kernel_directory)
    assert vm.DestroyPageDirectory(directory)
    calls: list[tuple[Callable[[], object], object]] = [
        (lambda: heap.Alloc(8), 0), (lambda: heap.Free(p), False),
        (lambda: heap.Expand(0x5000), False), (lambda: heap.Contract(0), 0)]
    for call, failure in calls:
        before = pm.free_count()
        assert call() == failure and heap.last_error == E.ERROR_INVALID_HANDLE
        assert pm.free_count() == before
    assert heap.Destroy() and heap.last_error == E.ERROR_SUCCESS
    assert all(not pte(heap, page) & PTE_PRESENT for page in range(S, S + 0x8000, PAGE_SIZE))
    assert sorted(pm.owner[frame] for frame in range(pm.nframes) if pm.owner[frame] > 1) == [
        2] + [3] * len(vm.kernel_tables)  # the kernel directory and the kernel tables


# -- random sequences ----------------------------------------------------------------------

class HeapMachine(RuleBasedStateMachine):
    """Random Alloc / Free / writes / Expand / Contract, with every payload's
    contents checked and the heap checked after every step."""

    mem_end = 16 << 20
    index_size = 64

    def __init__(self) -> None:
        super().__init__()
        self.heap = make_heap(self.mem_end, index_size=self.index_size, min_size=0x2000)
        self.contents: dict[int, bytes] = {}

    @rule(size=st.integers(0, 0x3000), page_align=st.booleans(), fill=st.binary(max_size=8))
    def alloc(self, size: int, page_align: bool, fill: bytes) -> None:
        before = snapshot(self.heap)
        p = self.heap.Alloc(size, page_align)
        if p == 0:
            assert self.heap.last_error == E.ERROR_NOT_ENOUGH_MEMORY
            assert snapshot(self.heap) == before
            return
        assert not page_align or p % PAGE_SIZE == 0
        data = (fill * size)[:size] if fill else bytes(size)
        write(self.heap, p, data)
        self.contents[p] = data

    @precondition(lambda self: bool(self.contents))
    @rule(data=st.data())
    def free(self, data: st.DataObject) -> None:
        p = data.draw(st.sampled_from(sorted(self.contents)))
        if self.heap.Free(p):
            del self.contents[p]
        else:  # only a full index refuses a free
            assert self.heap.last_error == E.ERROR_NOT_ENOUGH_MEMORY

    @precondition(lambda self: bool(self.contents))
    @rule(data=st.data(), byte=st.integers(0, 255))
    def rewrite(self, data: st.DataObject, byte: int) -> None:
        p = data.draw(st.sampled_from(sorted(self.contents)))
        size = len(self.contents[p])
        self.contents[p] = bytes([byte]) * size
        write(self.heap, p, self.contents[p])

    @rule(pages=st.integers(0, 8))
    def expand(self, pages: int) -> None:
        heap = self.heap
        length = heap.end_address - heap.start_address + pages * PAGE_SIZE
        before = snapshot(heap)
        if not heap.Expand(length):
            assert heap.last_error == (
                E.ERROR_INVALID_PARAMETER if length > heap.max_address - heap.start_address
                else E.ERROR_NOT_ENOUGH_MEMORY)
            assert snapshot(heap) == before

    @rule(size=st.integers(0, 0x40000))
    def contract(self, size: int) -> None:
        heap = self.heap
        length = heap.end_address - heap.start_address
        result = heap.Contract(size)
        assert result == 0 if size > length else (size <= result <= length)

    @invariant()
    def consistent(self) -> None:
        check_heap(self.heap)
        assert set(self.contents) == {h + 12 for h in self.heap.allocated}
        for p, data in self.contents.items():
            assert read(self.heap, p, len(data)) == data
            assert self.heap.GetBlockSize(p) == len(data)


HeapMachine.TestCase.settings = settings(max_examples=25, stateful_step_count=25,
                                         deadline=None,
                                         suppress_health_check=[HealthCheck.too_slow])
test_heap_machine = HeapMachine.TestCase


class TightHeapMachine(HeapMachine):
    """The same with an index of 4 entries and 24 frames for the heap (and its table)."""

    mem_end = 0x100000 + 26 * PAGE_SIZE
    index_size = 4


TightHeapMachine.TestCase.settings = HeapMachine.TestCase.settings
test_tight_heap_machine = TightHeapMachine.TestCase
