"""VirtualAlloc / VirtualFree / VirtualQuery / VirtualProtect on a process (issue 4).

One test per documented rule of model/virtual_alloc.py, with exact values and
error codes (the Wine conformance test's sequence first), plus a hostile-argument
test that compares full snapshots around every failing call.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model.linux_mm import SyscallMmap
from model.process_memory import ProcessMemorySpace
from model.virtual_alloc import (
    MemoryBasicInformation,
    VirtualAllocProcessMemory,
    VirtualFreeProcessMemory,
    VirtualProtectProcessMemory,
    VirtualQueryProcessMemory,
)
from spec.abi import (
    IMAGE_BASE,
    MAP_ANONYMOUS,
    MAP_PRIVATE,
    MEM_COMMIT,
    MEM_DECOMMIT,
    MEM_FREE,
    MEM_IMAGE,
    MEM_PRIVATE,
    MEM_RELEASE,
    MEM_RESERVE,
    MEM_RESET,
    MEM_RESET_UNDO,
    MEM_TOP_DOWN,
    PAGE_EXECUTE_READ,
    PAGE_EXECUTE_READWRITE,
    PAGE_NOACCESS,
    PAGE_READONLY,
    PAGE_READWRITE,
    PAGE_SIZE,
    PROT_READ,
    PROT_WRITE,
    USER_TOP,
    ErrorCode,
)
from tests.test_process_memory import check_space, new_space, snapshot, world

INVALID_PARAMETER = ErrorCode.ERROR_INVALID_PARAMETER
INVALID_ADDRESS = ErrorCode.ERROR_INVALID_ADDRESS
RESERVE_COMMIT = MEM_RESERVE | MEM_COMMIT


@pytest.fixture
def space() -> ProcessMemorySpace:
    _, vm = world()
    result = new_space(vm)
    yield result
    check_space(result)


def alloc(space: ProcessMemorySpace, address: int, size: int, kind: int, protect: int) -> int:
    return VirtualAllocProcessMemory(space, address, size, kind, protect)


def query(space: ProcessMemorySpace, address: int) -> MemoryBasicInformation | None:
    return VirtualQueryProcessMemory(space, address)[1]


def test_wine_virtual_alloc_sequence(space: ProcessMemorySpace) -> None:
    assert alloc(space, 0, 0, MEM_RESERVE, PAGE_NOACCESS) == 0
    assert space.last_error == INVALID_PARAMETER
    addr = alloc(space, 0, 0xFFFC, MEM_RESERVE, PAGE_NOACCESS)
    assert VirtualQueryProcessMemory(space, addr) == (28, MemoryBasicInformation(
        addr, addr, PAGE_NOACCESS, 0x10000, MEM_RESERVE, 0, MEM_PRIVATE))
    assert VirtualProtectProcessMemory(space, addr, 0xFFFC, PAGE_READONLY) == (False, 0)
    assert space.last_error == INVALID_ADDRESS
    assert alloc(space, addr, 0x1000, MEM_COMMIT, PAGE_NOACCESS) == addr
    assert query(space, addr) == MemoryBasicInformation(
        addr, addr, PAGE_NOACCESS, 0x1000, MEM_COMMIT, PAGE_NOACCESS, MEM_PRIVATE)
    assert VirtualProtectProcessMemory(space, addr, 0xFFFC, PAGE_READONLY) == (False, 0)
    assert space.last_error == INVALID_ADDRESS
    assert VirtualProtectProcessMemory(space, addr, 0x1000, PAGE_READONLY) == (
        True, PAGE_NOACCESS)
    assert VirtualProtectProcessMemory(space, addr, 0x1000, PAGE_READWRITE) == (
        True, PAGE_READONLY)
    assert not VirtualFreeProcessMemory(space, addr, 0x10000, 0)
    assert space.last_error == INVALID_PARAMETER
    assert VirtualFreeProcessMemory(space, addr, 0x10000, MEM_DECOMMIT)
    assert not VirtualFreeProcessMemory(space, addr, 1, MEM_RELEASE)
    assert space.last_error == INVALID_PARAMETER
    assert VirtualFreeProcessMemory(space, addr, 0, MEM_RELEASE)
    assert query(space, addr) is not None and query(space, addr).State == MEM_FREE


def test_reservation_rounded_down_to_64k_and_up_to_pages(space: ProcessMemorySpace) -> None:
    assert alloc(space, 0x20001234, 0x2000, MEM_RESERVE, PAGE_READWRITE) == 0x20000000
    allocation = space.allocations[0x20000000]
    assert allocation.size == 0x4000  # up to page_ceil(0x20003234)
    assert alloc(space, 0x20004000, 0x1000, MEM_RESERVE, PAGE_READWRITE) == 0
    assert space.last_error == INVALID_ADDRESS  # 0x20000000 is taken


def test_reserve_over_used_range_is_invalid_address(space: ProcessMemorySpace) -> None:
    assert alloc(space, IMAGE_BASE, 0x1000, MEM_RESERVE, PAGE_READWRITE) == 0
    assert space.last_error == INVALID_ADDRESS


def test_commit_is_page_granular_inside_one_reservation(space: ProcessMemorySpace) -> None:
    base = alloc(space, 0x20000000, 0x10000, MEM_RESERVE, PAGE_READWRITE)
    assert alloc(space, base + 0x1800, 0x1000, MEM_COMMIT, PAGE_READONLY) == base + 0x1000
    assert [space.pages[(base >> 12) + i].state for i in range(4)] == [
        MEM_RESERVE, MEM_COMMIT, MEM_COMMIT, MEM_RESERVE]
    assert alloc(space, base + 0xF000, 0x2000, MEM_COMMIT, PAGE_READWRITE) == 0
    assert space.last_error == INVALID_ADDRESS
    assert alloc(space, 0x30000000, 0x1000, MEM_COMMIT, PAGE_READWRITE) == 0
    assert space.last_error == INVALID_ADDRESS


def test_commit_across_two_reservations_is_refused(space: ProcessMemorySpace) -> None:
    assert alloc(space, 0x20000000, 0x10000, MEM_RESERVE, PAGE_READWRITE)
    assert alloc(space, 0x20010000, 0x10000, MEM_RESERVE, PAGE_READWRITE)
    assert alloc(space, 0x2000F000, 0x2000, MEM_COMMIT, PAGE_READWRITE) == 0
    assert space.last_error == INVALID_ADDRESS


def test_commit_of_committed_pages_succeeds_with_new_protection(
        space: ProcessMemorySpace) -> None:
    base = alloc(space, 0, 0x2000, RESERVE_COMMIT, PAGE_READWRITE)
    assert space.WriteUserMemory(base, b"data") is True
    assert alloc(space, base, 0x2000, MEM_COMMIT, PAGE_READONLY) == base
    assert query(space, base) == MemoryBasicInformation(
        base, base, PAGE_READWRITE, 0x2000, MEM_COMMIT, PAGE_READONLY, MEM_PRIVATE)
    assert space.ReadUserMemory(base, 4) == b"data"


def test_commit_with_null_address_reserves_and_commits(space: ProcessMemorySpace) -> None:
    base = alloc(space, 0, 0x1001, MEM_COMMIT, PAGE_EXECUTE_READWRITE)
    assert base == 0x1410000
    assert query(space, base) == MemoryBasicInformation(
        base, base, PAGE_EXECUTE_READWRITE, 0x2000, MEM_COMMIT, PAGE_EXECUTE_READWRITE,
        MEM_PRIVATE)


def test_top_down_takes_the_highest_free_64k_range(space: ProcessMemorySpace) -> None:
    assert alloc(space, 0, 0x1000, MEM_RESERVE | MEM_TOP_DOWN, PAGE_READWRITE) == 0xBFEF0000
    assert alloc(space, 0, 0x1000, MEM_RESERVE | MEM_TOP_DOWN, PAGE_READWRITE) == 0xBFEE0000


def test_null_address_without_a_free_range_is_not_enough_memory(
        space: ProcessMemorySpace) -> None:
    # Reserve (no frames taken) every 64 KB-aligned range left above the brk area.
    # Each reservation must land inside the user range: a failed search (-1) taken
    # for a base would reserve at -1 and succeed forever (the timeout mutant).
    size = 0x40000000
    while size >= PAGE_SIZE:
        base = alloc(space, 0, size, MEM_RESERVE, PAGE_NOACCESS)
        if base:
            assert space.windows_floor() <= base and base + size <= USER_TOP, hex(base)
        else:
            assert space.last_error == ErrorCode.ERROR_NOT_ENOUGH_MEMORY
            size //= 2
    before = snapshot(space)
    for kind in (MEM_RESERVE, MEM_RESERVE | MEM_TOP_DOWN, MEM_COMMIT, RESERVE_COMMIT,
                 RESERVE_COMMIT | MEM_TOP_DOWN):
        assert alloc(space, 0, 1, kind, PAGE_READWRITE) == 0
        assert space.last_error == ErrorCode.ERROR_NOT_ENOUGH_MEMORY, hex(kind)
        assert snapshot(space) == before
    # the seed's AllocUserMemory searches the same way (ProcessMemorySpace)
    assert space.AllocUserMemory(1) == 0
    assert space.last_error == ErrorCode.ERROR_NOT_ENOUGH_MEMORY
    assert snapshot(space) == before
    assert space.free_frames() > 0  # the address space ran out, not the frames


@pytest.mark.parametrize("protect", [0, 0x03, 0x08, 0x80, 0x104, 0x140, 0x204, 0x24, True])
def test_invalid_protections_rejected(space: ProcessMemorySpace, protect: int) -> None:
    before = snapshot(space)
    assert alloc(space, 0, 0x1000, RESERVE_COMMIT, protect) == 0
    assert space.last_error == INVALID_PARAMETER
    base = IMAGE_BASE
    assert VirtualProtectProcessMemory(space, base, 0x1000, protect) == (False, 0)
    assert space.last_error == INVALID_PARAMETER
    assert snapshot(space) == before


@pytest.mark.parametrize("kind", [0, MEM_DECOMMIT, MEM_RELEASE, MEM_TOP_DOWN,
                                  MEM_COMMIT | 0x80000, MEM_RESERVE | MEM_RELEASE])
def test_invalid_allocation_types_rejected(space: ProcessMemorySpace, kind: int) -> None:
    assert alloc(space, 0, 0x1000, kind, PAGE_READWRITE) == 0
    assert space.last_error == INVALID_PARAMETER


def test_ranges_outside_user_space(space: ProcessMemorySpace) -> None:
    assert alloc(space, 0xBFFF0000, 0x20000, MEM_RESERVE, PAGE_READWRITE) == 0
    assert space.last_error == INVALID_PARAMETER
    assert alloc(space, 0xC0000000, 0x1000, MEM_RESERVE, PAGE_READWRITE) == 0
    assert space.last_error == INVALID_PARAMETER
    assert alloc(space, 0xFFFFF000, 0x2000, MEM_RESERVE, PAGE_READWRITE) == 0
    assert space.last_error == INVALID_PARAMETER
    assert alloc(space, 0x10000, 0x1000, MEM_RESERVE, PAGE_READWRITE) == 0
    assert space.last_error == INVALID_ADDRESS


def test_not_enough_memory_changes_nothing() -> None:
    _, vm = world(0x180000)
    space = new_space(vm)
    before = snapshot(space)
    assert alloc(space, 0, 0x100000, RESERVE_COMMIT, PAGE_READWRITE) == 0
    assert space.last_error == ErrorCode.ERROR_NOT_ENOUGH_MEMORY
    assert snapshot(space) == before
    base = alloc(space, 0, 0x100000, MEM_RESERVE, PAGE_READWRITE)
    before = snapshot(space)
    assert alloc(space, base, 0x100000, MEM_COMMIT, PAGE_READWRITE) == 0
    assert snapshot(space) == before
    check_space(space)


def test_release_only_whole_from_the_base(space: ProcessMemorySpace) -> None:
    base = alloc(space, 0, 0x3000, RESERVE_COMMIT, PAGE_READWRITE)
    assert not VirtualFreeProcessMemory(space, base + 0x1000, 0, MEM_RELEASE)
    assert space.last_error == INVALID_ADDRESS
    assert not VirtualFreeProcessMemory(space, 0x30000000, 0, MEM_RELEASE)
    assert space.last_error == INVALID_ADDRESS
    assert not VirtualFreeProcessMemory(space, base, 0x3000, MEM_RELEASE)
    assert space.last_error == INVALID_PARAMETER
    assert not VirtualFreeProcessMemory(space, base, 0, MEM_RELEASE | MEM_DECOMMIT)
    assert space.last_error == INVALID_PARAMETER
    assert VirtualFreeProcessMemory(space, base, 0, MEM_RELEASE)
    assert base not in space.allocations and base >> 12 not in space.pages


def test_free_size_zero_rounds_the_address_to_its_page(space: ProcessMemorySpace) -> None:
    """Wine dlls/ntdll/tests/virtual.c test_NtAllocateVirtualMemory: size 0 takes the
    allocation whose first page holds lpAddress; base + 0x1001 is
    STATUS_FREE_VM_NOT_AT_BASE (ERROR_INVALID_ADDRESS 487)."""
    base = alloc(space, 0, 0x10000, RESERVE_COMMIT, PAGE_EXECUTE_READWRITE)
    assert not VirtualFreeProcessMemory(space, base + 0x1001, 0, MEM_DECOMMIT)
    assert space.last_error == INVALID_ADDRESS
    assert VirtualFreeProcessMemory(space, base + 0xFFE, 0, MEM_DECOMMIT)
    assert {record.state for record in space.pages.values()
            if record.allocation_base == base} == {MEM_RESERVE}
    assert not VirtualFreeProcessMemory(space, base + 0x1001, 0, MEM_RELEASE)
    assert space.last_error == INVALID_ADDRESS
    assert VirtualFreeProcessMemory(space, base + 0xFFF, 0, MEM_RELEASE)
    assert base not in space.allocations


def test_reserve_below_the_lowest_user_address(space: ProcessMemorySpace) -> None:
    """ReactOS NtAllocateVirtualMemory.c START_TEST: a reservation at 0xf000 is
    STATUS_INVALID_PARAMETER_2 (87), at 0x10000 STATUS_CONFLICTING_ADDRESSES (487)."""
    before = snapshot(space)
    assert alloc(space, 0xF000, 0x1000, MEM_RESERVE, PAGE_READWRITE) == 0
    assert space.last_error == ErrorCode.ERROR_INVALID_PARAMETER
    assert alloc(space, 0x10000, 0x1000, MEM_RESERVE, PAGE_READWRITE) == 0
    assert space.last_error == ErrorCode.ERROR_INVALID_ADDRESS
    assert alloc(space, 0xF000, 0x1000, MEM_COMMIT, PAGE_READWRITE) == 0  # not a reservation
    assert space.last_error == ErrorCode.ERROR_INVALID_ADDRESS
    assert snapshot(space) == before


def test_mem_reset_changes_no_page_and_keeps_the_data(space: ProcessMemorySpace) -> None:
    """Wine test_VirtualAlloc: MEM_RESET returns the range's first page, committed and
    reserved pages alike, state and protection unchanged; the data reads back (the
    model keeps it, as Windows does until the page is trimmed)."""
    base = alloc(space, 0, 0xFFFC, MEM_RESERVE, PAGE_NOACCESS)
    assert alloc(space, base, 0x1000, MEM_COMMIT, PAGE_READWRITE) == base
    assert space.WriteUserMemory(base, b"\x55" * 20) is True
    before = snapshot(space)
    assert alloc(space, base + 0x10, 0x10, MEM_RESET, PAGE_NOACCESS) == base
    assert alloc(space, base + 0x1000, 0x1000, MEM_RESET, PAGE_NOACCESS) == base + 0x1000
    assert alloc(space, base, 0x10000, MEM_RESET, PAGE_EXECUTE_READ) == base
    assert snapshot(space) == before
    assert space.ReadUserMemory(base, 4) == b"\x55" * 4
    assert query(space, base) == MemoryBasicInformation(
        base, base, PAGE_NOACCESS, 0x1000, MEM_COMMIT, PAGE_READWRITE, MEM_PRIVATE)
    assert query(space, base + 0x1000) == MemoryBasicInformation(
        base + 0x1000, base, PAGE_NOACCESS, 0xF000, MEM_RESERVE, 0, MEM_PRIVATE)


def test_mem_reset_argument_rules(space: ProcessMemorySpace) -> None:
    """MEM_RESET / MEM_RESET_UNDO: alone ("cannot be used with any other value", 87), a
    valid protection though it is ignored (87), every page in one allocation (Wine:
    past the allocation's end 487; free memory 487), size 0 (87)."""
    base = alloc(space, 0, 0x2000, RESERVE_COMMIT, PAGE_READWRITE)
    before = snapshot(space)
    for kind in (MEM_RESET, MEM_RESET_UNDO):
        for bad in (kind | MEM_COMMIT, kind | MEM_RESERVE, kind | MEM_TOP_DOWN,
                    MEM_RESET | MEM_RESET_UNDO):
            assert alloc(space, base, 0x1000, bad, PAGE_NOACCESS) == 0
            assert space.last_error == ErrorCode.ERROR_INVALID_PARAMETER
        for protect in (0, PAGE_READONLY | PAGE_READWRITE, 0x80):
            assert alloc(space, base, 0x1000, kind, protect) == 0
            assert space.last_error == ErrorCode.ERROR_INVALID_PARAMETER
        assert alloc(space, base, 0, kind, PAGE_NOACCESS) == 0
        assert space.last_error == ErrorCode.ERROR_INVALID_PARAMETER
        assert alloc(space, base + 0x1000, 0x2000, kind, PAGE_NOACCESS) == 0
        assert space.last_error == ErrorCode.ERROR_INVALID_ADDRESS
        assert alloc(space, 0x30000000, 0x1000, kind, PAGE_NOACCESS) == 0
        assert space.last_error == ErrorCode.ERROR_INVALID_ADDRESS
        assert alloc(space, 0, 0x1000, kind, PAGE_NOACCESS) == 0
        assert space.last_error == ErrorCode.ERROR_INVALID_ADDRESS
    assert snapshot(space) == before


def test_mem_reset_undo_finds_the_data_intact(space: ProcessMemorySpace) -> None:
    """MEM_RESET_UNDO after MEM_RESET: "If the function succeeds, that means all data in
    the specified address range is intact" - the model never discards, so it succeeds
    and returns the first page; the image and the stack may be reset too."""
    base = alloc(space, 0, 0x3000, RESERVE_COMMIT, PAGE_READWRITE)
    assert space.WriteUserMemory(base + 0x1FFE, b"\x12\x34\x56\x78") is True
    assert alloc(space, base + 0x1FFE, 4, MEM_RESET, PAGE_NOACCESS) == base + 0x1000
    before = snapshot(space)
    assert alloc(space, base + 0x1FFE, 4, MEM_RESET_UNDO, PAGE_NOACCESS) == base + 0x1000
    assert space.last_error == ErrorCode.ERROR_SUCCESS
    assert snapshot(space) == before
    assert space.ReadUserMemory(base + 0x1FFE, 4) == b"\x12\x34\x56\x78"
    assert alloc(space, IMAGE_BASE, 0x1000, MEM_RESET, PAGE_NOACCESS) == IMAGE_BASE
    assert alloc(space, 0xBFFFF000, 0x1000, MEM_RESET, PAGE_NOACCESS) == 0xBFFFF000


def test_decommit_leaves_pages_reserved(space: ProcessMemorySpace) -> None:
    base = alloc(space, 0, 0x4000, RESERVE_COMMIT, PAGE_READWRITE)
    assert VirtualFreeProcessMemory(space, base + 0x1fff, 2, MEM_DECOMMIT)
    assert [query(space, base + i * 0x1000)[3:5] for i in (0, 1, 3)] == [
        (0x1000, MEM_COMMIT), (0x2000, MEM_RESERVE), (0x1000, MEM_COMMIT)]
    assert alloc(space, base + 0x1000, 0x1000, MEM_COMMIT, PAGE_READONLY) == base + 0x1000
    assert space.ReadUserMemory(base + 0x1000, 1) == b"\0"
    assert VirtualFreeProcessMemory(space, base, 0, MEM_DECOMMIT)
    assert query(space, base)[3:5] == (0x4000, MEM_RESERVE)
    assert not VirtualFreeProcessMemory(space, base + 0x1000, 0, MEM_DECOMMIT)
    assert space.last_error == INVALID_ADDRESS
    assert not VirtualFreeProcessMemory(space, base + 0x3000, 0x2000, MEM_DECOMMIT)
    assert space.last_error == INVALID_ADDRESS


def test_decommit_keeps_no_frames() -> None:
    pm, vm = world()
    space = new_space(vm)
    start = pm.free_count()
    base = alloc(space, 0, 0x4000, RESERVE_COMMIT, PAGE_NOACCESS)
    assert pm.free_count() == start - 4
    assert VirtualFreeProcessMemory(space, base, 0x4000, MEM_DECOMMIT)
    assert pm.free_count() == start


def test_query_runs_and_free_regions(space: ProcessMemorySpace) -> None:
    base = alloc(space, 0x20000000, 0x3000, RESERVE_COMMIT, PAGE_READWRITE)
    VirtualProtectProcessMemory(space, base + 0x2000, 0x1000, PAGE_READONLY)
    assert query(space, base + 0x123) == MemoryBasicInformation(
        base, base, PAGE_READWRITE, 0x2000, MEM_COMMIT, PAGE_READWRITE, MEM_PRIVATE)
    assert query(space, base + 0x1000).RegionSize == 0x1000
    assert query(space, base + 0x3000) == MemoryBasicInformation(
        base + 0x3000, 0, 0, 0xBFF00000 - base - 0x3000, MEM_FREE, PAGE_NOACCESS, 0)
    assert query(space, IMAGE_BASE) == MemoryBasicInformation(
        IMAGE_BASE, IMAGE_BASE, PAGE_EXECUTE_READ, 0x10000, MEM_COMMIT, PAGE_EXECUTE_READ,
        MEM_IMAGE)
    assert VirtualQueryProcessMemory(space, 0xC0000000) == (0, None)
    assert space.last_error == INVALID_PARAMETER
    assert VirtualQueryProcessMemory(space, 0x1000) == (0, None)


def test_protect_needs_committed_pages_of_one_allocation(space: ProcessMemorySpace) -> None:
    first = alloc(space, 0x20000000, 0x10000, RESERVE_COMMIT, PAGE_READWRITE)
    assert alloc(space, 0x20010000, 0x10000, RESERVE_COMMIT, PAGE_READWRITE)
    assert VirtualProtectProcessMemory(space, first + 0xF000, 0x2000, PAGE_READONLY) == (
        False, 0)
    assert space.last_error == INVALID_ADDRESS
    assert VirtualProtectProcessMemory(space, first, 0, PAGE_READONLY) == (False, 0)
    assert space.last_error == INVALID_PARAMETER
    assert VirtualProtectProcessMemory(space, first + 1, 0x1000, PAGE_NOACCESS) == (
        True, PAGE_READWRITE)
    assert query(space, first).RegionSize == 0x2000


def test_kernel_managed_allocations(space: ProcessMemorySpace) -> None:
    for address in (IMAGE_BASE, 0xBFF00000):
        assert not VirtualFreeProcessMemory(space, address, 0, MEM_RELEASE)
        assert space.last_error == INVALID_PARAMETER
    assert not VirtualFreeProcessMemory(space, 0xBFFFF000, 0x1000, MEM_DECOMMIT)
    assert space.last_error == INVALID_PARAMETER
    assert alloc(space, 0xBFF00000, 0x1000, MEM_COMMIT, PAGE_READWRITE) == 0xBFF00000
    assert VirtualProtectProcessMemory(space, IMAGE_BASE, 1, PAGE_READWRITE) == (
        True, PAGE_EXECUTE_READ)


def test_windows_calls_on_mmap_pages(space: ProcessMemorySpace) -> None:
    base = SyscallMmap(space, 0, 0x3000, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                       -1, 0)
    assert query(space, base) == MemoryBasicInformation(
        base, base, PAGE_READWRITE, 0x3000, MEM_COMMIT, PAGE_READWRITE, MEM_PRIVATE)
    assert VirtualProtectProcessMemory(space, base, 0x1000, PAGE_READONLY) == (
        True, PAGE_READWRITE)
    assert space.pages[base >> 12].prot is None
    assert VirtualFreeProcessMemory(space, base + 0x1000, 0x1000, MEM_DECOMMIT)
    assert VirtualFreeProcessMemory(space, base, 0, MEM_RELEASE)
    assert base not in space.allocations


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["alloc", "free", "protect", "query"]),
                          st.integers(0x1400, 0x1480), st.integers(0, 0x30000),
                          st.sampled_from([MEM_RESERVE, MEM_COMMIT, RESERVE_COMMIT,
                                           MEM_DECOMMIT, MEM_RELEASE, MEM_RESET,
                                           MEM_RESET_UNDO, 0x1234]),
                          st.sampled_from([PAGE_NOACCESS, PAGE_READONLY, PAGE_READWRITE,
                                           PAGE_EXECUTE_READ, 0x80])), max_size=25))
def test_random_sequences_keep_the_contract(ops: list[tuple[str, int, int, int, int]]) -> None:
    _, vm = world()
    space = new_space(vm)
    for name, page, size, kind, protect in ops:
        address = page << 12 | (size & 0xFFF)
        before = snapshot(space)
        if name == "alloc":
            ok = bool(alloc(space, address, size, kind, protect))
        elif name == "free":
            ok = VirtualFreeProcessMemory(space, address, size if kind != MEM_RELEASE else 0,
                                          kind)
        elif name == "protect":
            ok = VirtualProtectProcessMemory(space, address, size, protect)[0]
        else:
            ok = VirtualQueryProcessMemory(space, address)[0] == 28
            assert snapshot(space) == before
        assert ok == (space.last_error == ErrorCode.ERROR_SUCCESS)
        if not ok:
            assert snapshot(space) == before
        check_space(space)


HOSTILE = [None, -1, 1 << 32, 2.5, "x", True, 0xFFFFFFFF, 0xFFFFF000, 0xBFFFF001, 0x3FF000]


def test_hostile_arguments_change_nothing(space: ProcessMemorySpace) -> None:
    base = alloc(space, 0, 0x3000, RESERVE_COMMIT, PAGE_READWRITE)
    for value in HOSTILE:
        for call in (
            lambda v=value: alloc(space, v, 0x1000, RESERVE_COMMIT, PAGE_READWRITE),
            lambda v=value: alloc(space, 0, v, RESERVE_COMMIT, PAGE_READWRITE),
            lambda v=value: alloc(space, base, v, MEM_COMMIT, PAGE_READWRITE),
            lambda v=value: alloc(space, 0, 0x1000, v, PAGE_READWRITE),
            lambda v=value: alloc(space, 0, 0x1000, MEM_COMMIT, v),
            lambda v=value: VirtualFreeProcessMemory(space, v, 0, MEM_RELEASE),
            lambda v=value: VirtualFreeProcessMemory(space, base, v, MEM_DECOMMIT),
            lambda v=value: VirtualFreeProcessMemory(space, base, 0, v),
            lambda v=value: VirtualQueryProcessMemory(space, v),
            lambda v=value: VirtualProtectProcessMemory(space, v, 0x1000, PAGE_READONLY),
            lambda v=value: VirtualProtectProcessMemory(space, base, v, PAGE_READONLY),
            lambda v=value: VirtualProtectProcessMemory(space, base, 0x1000, v),
        ):
            before = snapshot(space)
            call()
            if type(value) is not int or not 0 <= value < 1 << 32:
                # not a 32-bit argument: ERROR_INVALID_PARAMETER (87), whatever the call
                assert space.last_error == INVALID_PARAMETER
            if space.last_error != ErrorCode.ERROR_SUCCESS:
                assert snapshot(space) == before
    check_space(space)
