"""ProcessMemorySpace: layout, seed operations, accesses, primitives (issue 4).

``check_space`` checks the contract of user_common.md from the raw state after
every test (records vs allocations vs PTEs vs frame owners); ``snapshot``
captures everything a failing call must leave unchanged. Other test modules of
issue 4 import both, and ``world``.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model.address_space import AccessViolation
from model.page_manager import PageManager
from model.page_tables import PageFault
from model.process_memory import ProcessMemorySpace
from model.user_layout import pte_bits
from model.virtual_alloc import VirtualProtectProcessMemory
from model.virtual_memory import VirtualMemoryManager
from model.x86_paging import is_kernel_slot
from spec.abi import (
    IMAGE_BASE,
    MEM_COMMIT,
    MEM_IMAGE,
    MEM_PRIVATE,
    MEM_RESERVE,
    MMAP_BASE,
    ORIGIN_IMAGE,
    ORIGIN_MMAP,
    ORIGIN_STACK,
    ORIGIN_VIRTUAL_ALLOC,
    PAGE_EXECUTE,
    PAGE_EXECUTE_READ,
    PAGE_EXECUTE_READWRITE,
    PAGE_NOACCESS,
    PAGE_READONLY,
    PAGE_READWRITE,
    PAGE_SIZE,
    PTE_PRESENT,
    PTE_USER,
    PTE_WRITABLE,
    STACK_RESERVE,
    USER_END_VPN,
    USER_FIRST_VPN,
    USER_TOP,
    ErrorCode,
    FrameOwner,
)

MEM_END = 0x1000000
SUCCESS = ErrorCode.ERROR_SUCCESS


def world(mem_end: int = MEM_END) -> tuple[PageManager, VirtualMemoryManager]:
    pm = PageManager()
    assert pm.InitializePhysicalMemory(0x100000, mem_end)
    vm = VirtualMemoryManager(pm)
    assert vm.InitializePaging()
    return pm, vm


def new_space(vm: VirtualMemoryManager, pid: int = 1, **layout: int) -> ProcessMemorySpace:
    space = ProcessMemorySpace(vm, pid, **layout)
    assert space.InitializeUserSpace(), space.last_error
    return space


def snapshot(space: ProcessMemorySpace) -> Any:
    """Everything a failing call must leave unchanged (last_error aside)."""
    pm = space.vmm.pageman
    tables = []
    if space.page_dir is not None:
        for slot, table in enumerate(space.page_dir.tables):
            if table is not None and not is_kernel_slot(slot):
                tables.append((slot, tuple(table.entries)))
    return (
        {vpn: (r.state, r.protect, r.allocation_base, r.frame, r.prot, r.shared)
         for vpn, r in space.pages.items()},
        {base: (a.base, a.size, a.allocation_protect, a.origin, a.type)
         for base, a in space.allocations.items()},
        tuple(space.bases), tuple(tables), pm.free_count(), bytes(pm.owner),
        {frame: bytes(page) for frame, page in pm.memory.items()},
        (space.heap_start, space.heap_end, space.heap_max, space.brk, space.stack_size,
         space.page_dir is None, space.destroyed),
    )


def check_space(space: ProcessMemorySpace) -> None:
    """The data contract of issue 4 (user_common.md) from the raw state."""
    pm = space.vmm.pageman
    assert space.bases == sorted(space.allocations)
    end = 0
    for base in space.bases:
        allocation = space.allocations[base]
        assert allocation.base == base and allocation.size > 0
        assert base % PAGE_SIZE == 0 and allocation.size % PAGE_SIZE == 0
        assert base >= end, "allocations overlap"
        end = allocation.end
        if allocation.origin == ORIGIN_VIRTUAL_ALLOC:
            assert base % 0x10000 == 0
        for vpn in range(base // PAGE_SIZE, allocation.end // PAGE_SIZE):
            assert space.pages[vpn].allocation_base == base
    assert end <= USER_TOP
    assert sum(a.size for a in space.allocations.values()) // PAGE_SIZE == len(space.pages)
    frames: set[int] = set()
    for vpn, record in space.pages.items():
        assert USER_FIRST_VPN <= vpn < USER_END_VPN
        pte = space.pte(vpn)
        if record.state == MEM_COMMIT:
            assert record.frame is not None and record.frame not in frames
            frames.add(record.frame)
            present, writable = pte_bits(record.protect)
            if present:
                assert pte & PTE_PRESENT and pte >> 12 == record.frame and pte & PTE_USER
                assert bool(pte & PTE_WRITABLE) == writable
                assert pm.owner[record.frame] == FrameOwner.MAPPED
            else:
                assert not pte & PTE_PRESENT
                assert pm.owner[record.frame] == FrameOwner.HELD
        else:
            assert record.state == MEM_RESERVE
            assert record.frame is None and record.protect == 0 and not pte & PTE_PRESENT
    if space.page_dir is not None:
        for slot, table in enumerate(space.page_dir.tables):
            if table is None or is_kernel_slot(slot):
                continue
            for index, entry in enumerate(table.entries):
                if entry & PTE_PRESENT:
                    record = space.pages.get(slot * 1024 + index)
                    assert record is not None and record.state == MEM_COMMIT
    assert set(space.frames()) == frames
    assert space.heap_start <= space.heap_end <= space.heap_max


@pytest.fixture
def space() -> ProcessMemorySpace:
    _, vm = world()
    result = new_space(vm)
    yield result
    check_space(result)


# -- layout ---------------------------------------------------------------------


def test_initial_layout_image_stack_and_break(space: ProcessMemorySpace) -> None:
    image = space.allocations[IMAGE_BASE]
    assert (image.size, image.allocation_protect, image.origin, image.type) == (
        0x10000, PAGE_EXECUTE_READ, ORIGIN_IMAGE, MEM_IMAGE)
    stack = space.allocations[USER_TOP - STACK_RESERVE]
    assert (stack.base, stack.size, stack.origin, stack.type) == (
        0xBFF00000, 0x100000, ORIGIN_STACK, MEM_PRIVATE)
    assert space.pages[0xBFFEF].state == MEM_RESERVE
    assert space.pages[0xBFFF0].state == MEM_COMMIT
    assert space.pages[0xBFFF0].protect == PAGE_READWRITE
    assert (space.heap_start, space.heap_end, space.brk, space.heap_max) == (
        0x410000, 0x410000, 0x410000, 0x1410000)
    assert (space.stack_start, space.GetUserStackSize(), space.GetUserHeapSize()) == (
        0xC0000000, 0x10000, 0)
    assert space.image_base == 0x400000


def test_layout_arguments_and_frames() -> None:
    pm, vm = world()
    odd = ProcessMemorySpace(vm, 1, image_size=0x1234, heap_max_size=0x2000, stack_size=0x1001)
    assert odd.InitializeUserSpace()
    assert (odd.heap_start, odd.heap_max, odd.stack_size) == (0x402000, 0x404000, 0x2000)
    bad = ProcessMemorySpace(vm, 2, stack_size=STACK_RESERVE + 1)
    before = pm.free_count()
    assert not bad.InitializeUserSpace() and bad.last_error == ErrorCode.ERROR_INVALID_PARAMETER
    assert pm.free_count() == before
    check_space(odd)


def test_initialize_twice_and_lifecycle_errors() -> None:
    pm, vm = world()
    fresh = ProcessMemorySpace(vm, 1)
    assert fresh.AllocUserMemory(10) == 0 and fresh.last_error == ErrorCode.ERROR_NOT_READY
    assert fresh.InitializeUserSpace()
    assert not fresh.InitializeUserSpace()
    assert fresh.last_error == ErrorCode.ERROR_ALREADY_INITIALIZED
    assert fresh.DestroyUserSpace()
    assert not fresh.DestroyUserSpace() and fresh.last_error == ErrorCode.ERROR_INVALID_HANDLE
    assert fresh.ReadUserMemory(0xBFFFF000, 1) is None
    assert fresh.last_error == ErrorCode.ERROR_INVALID_HANDLE
    assert not fresh.InitializeUserSpace()


def test_initialize_without_frames_changes_nothing() -> None:
    pm, vm = world(0x110000)  # 16 free frames: the image alone needs 16 + tables
    space = ProcessMemorySpace(vm, 1)
    before = (pm.free_count(), bytes(pm.owner), dict(vm.directories))
    assert not space.InitializeUserSpace()
    assert space.last_error == ErrorCode.ERROR_NOT_ENOUGH_MEMORY
    assert (pm.free_count(), bytes(pm.owner), dict(vm.directories)) == before


def test_destroy_returns_every_frame() -> None:
    pm, vm = world()
    start = pm.free_count()
    space = new_space(vm)
    vm.SwitchPageDirectory(space.page_dir)  # the current directory may be destroyed too
    assert space.AllocUserMemory(0x5000)
    assert space.MapUserMemory(0, 0x3000, PAGE_NOACCESS)
    assert space.ResizeUserHeap(0x3000)
    assert space.DestroyUserSpace() and pm.free_count() == start
    assert vm.current_directory is vm.kernel_directory
    assert space.pages == {} and space.allocations == {}


# -- seed operations ---------------------------------------------------------------


def test_alloc_user_memory_is_64k_aligned_bottom_up_above_brk_area(
        space: ProcessMemorySpace) -> None:
    first = space.AllocUserMemory(1)
    second = space.AllocUserMemory(0x10001)
    assert (first, second) == (0x1410000, 0x1420000)
    assert space.allocations[second].size == 0x11000
    assert space.AllocUserMemory(0x1000) == 0x1440000
    assert space.ReadUserMemory(second, 4) == b"\0\0\0\0"
    assert space.AllocUserMemory(0) == 0 and space.last_error == ErrorCode.ERROR_INVALID_PARAMETER


def test_free_user_memory_rules(space: ProcessMemorySpace) -> None:
    base = space.AllocUserMemory(0x1800)
    assert not space.FreeUserMemory(base, 0x3000)
    assert space.last_error == ErrorCode.ERROR_INVALID_PARAMETER
    assert not space.FreeUserMemory(base + PAGE_SIZE, 0)
    assert space.last_error == ErrorCode.ERROR_INVALID_ADDRESS
    assert not space.FreeUserMemory(IMAGE_BASE, 0)
    assert space.last_error == ErrorCode.ERROR_INVALID_ADDRESS
    assert space.FreeUserMemory(base, 0x1001) and base not in space.allocations
    other = space.AllocUserMemory(10)
    assert space.FreeUserMemory(other, 0)


def test_map_user_memory_places_like_mmap_and_never_replaces(space: ProcessMemorySpace) -> None:
    top = space.MapUserMemory(0, 0x2000, PAGE_READONLY)
    assert top == MMAP_BASE - 0x2000
    allocation = space.allocations[top]
    assert (allocation.origin, allocation.allocation_protect) == (ORIGIN_MMAP, PAGE_READONLY)
    assert space.MapUserMemory(0x20000000, 0x1000, PAGE_EXECUTE) == 0x20000000
    assert space.MapUserMemory(0x20000000, 0x1000, PAGE_READWRITE) == 0
    assert space.last_error == ErrorCode.ERROR_INVALID_ADDRESS
    assert space.MapUserMemory(0x20000800, 0x1000, PAGE_READWRITE) == 0
    assert space.last_error == ErrorCode.ERROR_INVALID_PARAMETER
    assert space.MapUserMemory(0x20001000, 0x1000, 0x80) == 0
    assert space.last_error == ErrorCode.ERROR_INVALID_PARAMETER
    assert space.UnmapUserMemory(top + PAGE_SIZE, PAGE_SIZE)
    assert sorted(space.allocations)[-2] == top and space.allocations[top].size == PAGE_SIZE
    assert not space.UnmapUserMemory(IMAGE_BASE, PAGE_SIZE)


def test_resize_user_heap_moves_the_break(space: ProcessMemorySpace) -> None:
    assert space.ResizeUserHeap(0x1801)
    assert (space.GetUserHeapSize(), space.heap_end) == (0x1801, 0x412000)
    assert space.WriteUserMemory(0x411FFF, b"x") is True
    assert space.ResizeUserHeap(0)
    assert (space.heap_end, 0x410000 >> 12 in space.pages) == (0x410000, False)
    assert not space.ResizeUserHeap(0x1000001)
    assert space.last_error == ErrorCode.ERROR_INVALID_PARAMETER
    assert space.MapUserMemory(0x412000, 0x1000, PAGE_READWRITE)
    assert not space.ResizeUserHeap(0x2000)  # the guard page before a mapping
    assert space.GetUserHeapSize() == 0


# -- accesses ------------------------------------------------------------------------


def test_protection_table_of_accesses(space: ProcessMemorySpace) -> None:
    expected = {
        PAGE_NOACCESS: (False, False, False), PAGE_READONLY: (True, False, False),
        PAGE_READWRITE: (True, True, False), PAGE_EXECUTE: (False, False, True),
        PAGE_EXECUTE_READ: (True, False, True), PAGE_EXECUTE_READWRITE: (True, True, True),
    }
    for protect, (read, write, execute) in expected.items():
        base = space.MapUserMemory(0, PAGE_SIZE, protect)
        assert isinstance(space.ReadUserMemory(base, 1), bytes) == read
        assert (space.WriteUserMemory(base, b"a") is True) == write
        assert isinstance(space.ExecuteUserMemory(base), bytes) == execute


def test_fault_kinds_and_addresses(space: ProcessMemorySpace) -> None:
    no_access = space.MapUserMemory(0x30000000, 0x2000, PAGE_NOACCESS)
    assert space.ReadUserMemory(no_access + 5, 1) == PageFault(0x4, no_access + 5)
    assert space.last_error == ErrorCode.ERROR_NOACCESS
    read_only = space.MapUserMemory(0x30002000, PAGE_SIZE, PAGE_READONLY)
    assert space.WriteUserMemory(read_only + 0xFFE, b"abcd") == PageFault(0x7, read_only + 0xFFE)
    execute = space.MapUserMemory(0x30004000, PAGE_SIZE, PAGE_EXECUTE)
    assert space.ReadUserMemory(execute, 1) == AccessViolation(execute, "read")
    assert space.ExecuteUserMemory(IMAGE_BASE) == b"\0"
    assert space.ExecuteUserMemory(0xBFFFF000) == AccessViolation(0xBFFFF000, "execute")
    assert space.ReadUserMemory(0x1000, 1) == PageFault(0x5, 0x1000)  # kernel, supervisor
    assert space.ReadUserMemory(0x50000000, 1) == PageFault(0x4, 0x50000000)
    assert space.ReadUserMemory(0xFFFFFFFF, 2) is None
    assert space.last_error == ErrorCode.ERROR_INVALID_PARAMETER
    assert space.WriteUserMemory(0xBFFFF000, "text") is False  # type: ignore[arg-type]


def test_write_across_pages_checks_every_page_first(space: ProcessMemorySpace) -> None:
    base = space.MapUserMemory(0x30000000, 0x2000, PAGE_READWRITE)
    VirtualProtectProcessMemory(space, base + PAGE_SIZE, 1, PAGE_READONLY)
    assert space.WriteUserMemory(base + 0xFFF, b"xy") == PageFault(0x7, base + PAGE_SIZE)
    assert space.ReadUserMemory(base + 0xFFF, 1) == b"\0"


def test_contents_survive_noaccess_and_back(space: ProcessMemorySpace) -> None:
    base = space.MapUserMemory(0, PAGE_SIZE, PAGE_READWRITE)
    assert space.WriteUserMemory(base, b"kept") is True
    assert VirtualProtectProcessMemory(space, base, 1, PAGE_NOACCESS) == (True, PAGE_READWRITE)
    frame = space.pages[base >> 12].frame
    assert frame is not None and space.vmm.pageman.owner[frame] == FrameOwner.HELD
    assert VirtualProtectProcessMemory(space, base, 1, PAGE_READONLY) == (True, PAGE_NOACCESS)
    assert space.ReadUserMemory(base, 4) == b"kept"


def test_two_processes_are_isolated() -> None:
    _, vm = world()
    first, second = new_space(vm, 1), new_space(vm, 2)
    assert first.page_dir is not second.page_dir
    a = first.MapUserMemory(0x30000000, PAGE_SIZE, PAGE_READWRITE)
    assert first.WriteUserMemory(a, b"secret") is True
    assert second.ReadUserMemory(a, 6) == PageFault(0x4, a)
    assert second.MapUserMemory(0x30000000, PAGE_SIZE, PAGE_READWRITE) == a
    assert second.ReadUserMemory(a, 6) == b"\0" * 6
    assert not set(first.frames()) & set(second.frames())
    check_space(first)
    check_space(second)


# -- primitives: the searches against brute force ---------------------------------


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0x400, 0xBFF), st.integers(1, 64)), max_size=12),
       st.integers(1, 0x40), st.sampled_from([PAGE_SIZE, 0x10000]))
def test_searches_match_brute_force(blocks: list[tuple[int, int]], pages: int,
                                    align: int) -> None:
    _, vm = world()
    space = ProcessMemorySpace(vm, 1)
    for slot, count in blocks:  # raw records: the searches read only allocations
        base = (slot << 16) + (count % 3) * PAGE_SIZE  # 64 KB aligned or not
        if space.is_free(base, base + count * PAGE_SIZE):
            space.reserve(base, count * PAGE_SIZE, PAGE_READWRITE, ORIGIN_MMAP, MEM_PRIVATE)
    size = pages * PAGE_SIZE
    low, high = 0x4000000, 0xC000000

    def free(base: int) -> bool:
        return all(a.end <= base or base + size <= a.base for a in space.allocations.values())

    stops = sorted({low} | {a.end for a in space.allocations.values()})
    candidates = [(s + align - 1) & ~(align - 1) for s in stops]
    bottom = min((c for c in candidates if c + size <= high and free(c)), default=-1)
    assert space.find_bottom_up(size, low, high, align) == bottom
    tops = sorted({high} | {a.base for a in space.allocations.values()})
    candidates = [(t - size) & ~(align - 1) for t in tops if t - size >= low]
    top = max((c for c in candidates if c >= low and free(c)), default=-1)
    assert space.find_top_down(size, low, high, align) == top


# -- hostile arguments ------------------------------------------------------------------


HOSTILE = [None, -1, 1 << 32, 2.5, "1", True, b"\0", 0xFFFFFFFF, 0xFFFFF000, 0x3FF000]


def test_hostile_arguments_change_nothing(space: ProcessMemorySpace) -> None:
    base = space.AllocUserMemory(0x3000)
    assert space.ResizeUserHeap(0x1000)
    calls = []
    for value in HOSTILE:
        calls += [
            lambda v=value: space.AllocUserMemory(v),
            lambda v=value: space.FreeUserMemory(v, 0),
            lambda v=value: space.FreeUserMemory(base, v),
            lambda v=value: space.MapUserMemory(v, PAGE_SIZE, PAGE_READWRITE),
            lambda v=value: space.MapUserMemory(0x30000000, v, PAGE_READWRITE),
            lambda v=value: space.MapUserMemory(0x30000000, PAGE_SIZE, v),
            lambda v=value: space.UnmapUserMemory(v, PAGE_SIZE),
            lambda v=value: space.UnmapUserMemory(IMAGE_BASE, v),
            lambda v=value: space.ResizeUserHeap(v),
            lambda v=value: space.ReadUserMemory(v, 1),
            lambda v=value: space.WriteUserMemory(v, b"x"),
            lambda v=value: space.ExecuteUserMemory(v),
        ]
    for call in calls:
        before = snapshot(space)
        result = call()
        if space.last_error != SUCCESS:
            assert snapshot(space) == before, call
        assert result is not None or space.last_error != SUCCESS
    check_space(space)


@pytest.mark.parametrize("sizes", [{"stack_size": 0x1000 + 0.5}, {"image_size": "0x1000"},
                                   {"heap_max_size": -1, "stack_size": 0x1000},
                                   {"image_size": 1 << 32}])
def test_a_layout_with_any_size_no_u32_is_refused(sizes: dict[str, object]) -> None:
    """A space whose image, heap or stack size is not a 32-bit integer has no layout:
    InitializeUserSpace fails with ERROR_INVALID_PARAMETER and raises nothing, even
    when the other sizes are fine (a mutation run found the check's conjunction
    unexamined: a float stack size passed)."""
    _, vm = world()
    space = ProcessMemorySpace(vm, 1, **sizes)  # type: ignore[arg-type]
    assert space.heap_start == 0
    assert not space.InitializeUserSpace()
    assert space.last_error == ErrorCode.ERROR_INVALID_PARAMETER
