"""The Linux i386 calls mmap, mmap2, munmap, mprotect, brk and linux_maps (issue 4).

One test per rule of model/linux_mm.py with exact results and errno values; the
kernel behaviours were checked on this machine's kernel (see the module
docstring); a hostile-argument test compares full snapshots around failures.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model.linux_mm import (
    SyscallBrk,
    SyscallMmap,
    SyscallMmap2,
    SyscallMprotect,
    SyscallMunmap,
    linux_maps,
)
from model.page_tables import PageFault
from model.process_memory import ProcessMemorySpace
from model.virtual_alloc import VirtualAllocProcessMemory, VirtualQueryProcessMemory
from spec.abi import (
    EACCES,
    EBADF,
    EEXIST,
    EINVAL,
    ENOMEM,
    EPERM,
    IMAGE_BASE,
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_FIXED_NOREPLACE,
    MAP_PRIVATE,
    MAP_SHARED,
    MEM_COMMIT,
    MEM_FREE,
    MEM_MAPPED,
    MEM_RESERVE,
    MMAP_BASE,
    ORIGIN_BRK,
    ORIGIN_MMAP,
    ORIGIN_PROCESS_HEAP,
    PAGE_EXECUTE_READ,
    PAGE_NOACCESS,
    PAGE_READONLY,
    PAGE_READWRITE,
    PAGE_SIZE,
    PROT_EXEC,
    PROT_GROWSDOWN,
    PROT_GROWSUP,
    PROT_NONE,
    PROT_READ,
    PROT_SEM,
    PROT_WRITE,
    TASK_SIZE,
    ErrorCode,
)
from tests.test_process_memory import check_space, new_space, snapshot, world

ANON = MAP_PRIVATE | MAP_ANONYMOUS
RW = PROT_READ | PROT_WRITE
P = PAGE_SIZE
W = 0x40000000  # a free window


@pytest.fixture
def space() -> ProcessMemorySpace:
    _, vm = world()
    result = new_space(vm)
    yield result
    check_space(result)


def mmap(space: ProcessMemorySpace, addr: int, length: int, prot: int = RW,
         flags: int = ANON) -> int:
    return SyscallMmap(space, addr, length, prot, flags, 0xFFFFFFFF, 0)


def window_maps(space: ProcessMemorySpace) -> list[tuple[int, int, str]]:
    return [(s - W, e - W, p) for s, e, p in linux_maps(space) if W <= s < W + 0x100000]


# -- mmap -------------------------------------------------------------------------


def test_mmap_length_zero_is_einval(space: ProcessMemorySpace) -> None:
    assert mmap(space, 0, 0) == -EINVAL
    assert space.last_error == ErrorCode.ERROR_INVALID_PARAMETER


def test_mmap_without_anonymous_is_ebadf_after_the_offset_check(
        space: ProcessMemorySpace) -> None:
    assert SyscallMmap(space, 0, 0, RW, MAP_PRIVATE, 3, 0) == -EBADF
    assert SyscallMmap(space, 0, P, RW, MAP_PRIVATE, 3, 5) == -EINVAL
    assert SyscallMmap(space, 0, P, RW, ANON, -1, 5) == -EINVAL
    assert SyscallMmap2(space, 0, P, RW, ANON, -1, 5) == MMAP_BASE - P


def test_mmap_top_down_below_mmap_base(space: ProcessMemorySpace) -> None:
    assert mmap(space, 0, 1) == 0xB7FFF000
    assert mmap(space, 0, 0x2000) == 0xB7FFD000
    assert space.allocations[0xB7FFD000].origin == ORIGIN_MMAP
    assert space.ReadUserMemory(0xB7FFD000, 2) == b"\0\0"


def test_mmap_hint_used_when_free_and_rounded_down(space: ProcessMemorySpace) -> None:
    assert mmap(space, W + 5, P) == W
    assert mmap(space, W + 5, P) == MMAP_BASE - P  # occupied: not the hint
    assert mmap(space, 0x1000, P) == MMAP_BASE - 2 * P  # raised to 0x400000: the image
    assert mmap(space, 0xBFFFF000, P) == MMAP_BASE - 3 * P  # the stack is there


def test_mmap_without_a_free_range_is_enomem(space: ProcessMemorySpace) -> None:
    # Reserve (no frames taken) all of user space that is free: VirtualAlloc's NULL
    # ranges above the brk area, then each free region left, at its base.
    size = 0x40000000
    while size >= P:
        if not VirtualAllocProcessMemory(space, 0, size, MEM_RESERVE, PAGE_NOACCESS):
            size //= 2
    address = IMAGE_BASE
    while address < TASK_SIZE:
        region = VirtualQueryProcessMemory(space, address)[1]
        assert region is not None
        if region.State == MEM_FREE:
            assert VirtualAllocProcessMemory(space, address, region.RegionSize, MEM_RESERVE,
                                             PAGE_NOACCESS) == address
        address += region.RegionSize
    before = snapshot(space)
    for addr, flags in ((0, ANON), (W, ANON), (W, MAP_SHARED | MAP_ANONYMOUS)):
        # top-down below MMAP_BASE, then bottom-up from TASK_UNMAPPED_BASE: nowhere
        assert mmap(space, addr, P, flags=flags) == -ENOMEM
        assert space.last_error == ErrorCode.ERROR_NOT_ENOUGH_MEMORY
        assert snapshot(space) == before
    assert space.free_frames() > 0  # the address space ran out, not the frames


def test_mmap_fixed_checks(space: ProcessMemorySpace) -> None:
    assert mmap(space, W + 1, P, flags=ANON | MAP_FIXED) == -EINVAL
    assert mmap(space, 0x1000, P, flags=ANON | MAP_FIXED) == -EPERM
    assert space.last_error == ErrorCode.ERROR_ACCESS_DENIED
    assert mmap(space, 0xBFFFF000, 2 * P, flags=ANON | MAP_FIXED) == -ENOMEM
    assert mmap(space, 0, 0xC0000000, flags=ANON) == -ENOMEM
    assert mmap(space, 0, 0xFFFFF001, flags=ANON) == -ENOMEM


def test_mmap_fixed_noreplace_is_eexist(space: ProcessMemorySpace) -> None:
    assert mmap(space, W, P, flags=ANON | MAP_FIXED_NOREPLACE) == W
    assert mmap(space, W, P, flags=ANON | MAP_FIXED_NOREPLACE) == -EEXIST
    assert mmap(space, W, P, flags=MAP_ANONYMOUS | MAP_FIXED_NOREPLACE) == -EEXIST


@pytest.mark.parametrize("kind", [0, MAP_SHARED | MAP_PRIVATE, 0x4, 0xF])
def test_mmap_type_must_be_shared_or_private(space: ProcessMemorySpace, kind: int) -> None:
    before = snapshot(space)
    assert mmap(space, 0, P, flags=MAP_ANONYMOUS | kind) == -EINVAL
    assert snapshot(space) == before


def test_mmap_unknown_prot_bits_ignored_and_shared_listed(space: ProcessMemorySpace) -> None:
    assert mmap(space, W, P, prot=PROT_READ | 0x10) == W
    assert mmap(space, W + P, P, flags=MAP_SHARED | MAP_ANONYMOUS) == W + P
    assert space.allocations[W + P].type == MEM_MAPPED
    assert window_maps(space) == [(0, P, "r--p"), (P, 2 * P, "rw-s")]


def test_mmap_fixed_replaces_what_is_there(space: ProcessMemorySpace) -> None:
    assert mmap(space, W, 4 * P) == W
    assert space.WriteUserMemory(W + P, b"old") is True
    assert mmap(space, W + P, 2 * P, prot=PROT_READ, flags=ANON | MAP_FIXED) == W + P
    assert space.ReadUserMemory(W + P, 3) == b"\0\0\0"
    assert sorted(b for b in space.allocations if W <= b < W + 4 * P) == [W, W + P, W + 3 * P]
    assert window_maps(space) == [(0, P, "rw-p"), (P, 3 * P, "r--p"), (3 * P, 4 * P, "rw-p")]


def test_mmap_fixed_all_or_nothing_when_frames_run_out() -> None:
    pm, vm = world(0x180000)
    space = new_space(vm)
    assert mmap(space, W, 2 * P) == W
    free = pm.free_count()
    before = snapshot(space)
    assert mmap(space, W, (free + 3) * P, flags=ANON | MAP_FIXED) == -ENOMEM
    assert snapshot(space) == before
    assert mmap(space, W, (free + 2) * P, prot=PROT_NONE, flags=ANON | MAP_FIXED) == W
    check_space(space)


def test_mmap_fixed_over_windows_reservation(space: ProcessMemorySpace) -> None:
    base = VirtualAllocProcessMemory(space, W, 0x10000, MEM_RESERVE, PAGE_READWRITE)
    assert mmap(space, W, P, flags=ANON | MAP_FIXED) == -EINVAL
    assert mmap(space, W, 0x10000, flags=ANON | MAP_FIXED) == W
    assert space.allocations[base].origin == ORIGIN_MMAP
    assert mmap(space, IMAGE_BASE, P, flags=ANON | MAP_FIXED) == -EINVAL


# -- munmap ---------------------------------------------------------------------------


def test_munmap_splits_mappings(space: ProcessMemorySpace) -> None:
    assert mmap(space, W, 5 * P) == W
    assert SyscallMunmap(space, W + P, 2 * P - 1) == 0
    assert (space.allocations[W].size, space.allocations[W + 3 * P].size) == (P, 2 * P)
    assert space.pages[(W >> 12) + 4].allocation_base == W + 3 * P
    assert window_maps(space) == [(0, P, "rw-p"), (3 * P, 5 * P, "rw-p")]


def test_munmap_argument_rules(space: ProcessMemorySpace) -> None:
    assert SyscallMunmap(space, W, 0) == -EINVAL
    assert SyscallMunmap(space, W + 1, P) == -EINVAL
    assert SyscallMunmap(space, 0xBFFFF000, 0x2000) == -EINVAL
    assert SyscallMunmap(space, W, P) == 0  # nothing mapped: success
    assert SyscallMunmap(space, 0, P) == 0


def test_munmap_of_windows_reservations_only_whole(space: ProcessMemorySpace) -> None:
    base = VirtualAllocProcessMemory(space, W, 0x2000, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE)
    before = snapshot(space)
    assert SyscallMunmap(space, base, P) == -EINVAL
    assert snapshot(space) == before
    assert SyscallMunmap(space, IMAGE_BASE, P) == -EINVAL
    assert SyscallMunmap(space, 0xBFFFF000, P) == -EINVAL
    assert SyscallMunmap(space, base - P, 0x4000) == 0
    assert base not in space.allocations


def test_munmap_returns_frames() -> None:
    pm, vm = world()
    space = new_space(vm)
    start = pm.free_count()
    assert mmap(space, W, 8 * P, prot=PROT_NONE) == W
    assert mmap(space, W + 8 * P, 8 * P) == W + 8 * P
    assert SyscallMunmap(space, W, 16 * P) == 0
    assert pm.free_count() == start - 1  # the page table stays with the directory


# -- mprotect ---------------------------------------------------------------------------


def test_mprotect_length_zero_succeeds_before_prot_check(space: ProcessMemorySpace) -> None:
    assert SyscallMprotect(space, W, 0, 0x40) == 0
    assert SyscallMprotect(space, W + 1, 0, PROT_READ) == -EINVAL


def test_mprotect_argument_rules(space: ProcessMemorySpace) -> None:
    assert mmap(space, W, P) == W
    assert SyscallMprotect(space, W, P, 0x10) == -EINVAL
    assert SyscallMprotect(space, W, P, PROT_READ | PROT_SEM) == 0
    assert SyscallMprotect(space, W, P, PROT_GROWSDOWN | PROT_GROWSUP | 1) == -EINVAL
    assert SyscallMprotect(space, W, P, PROT_GROWSDOWN | 1) == -EINVAL
    assert SyscallMprotect(space, W, P, PROT_GROWSUP | 1) == -EINVAL
    assert SyscallMprotect(space, W + 5 * P, P, PROT_GROWSDOWN | 1) == -ENOMEM
    assert SyscallMprotect(space, W + 5 * P, P, PROT_GROWSUP | 1) == -ENOMEM
    assert SyscallMprotect(space, 0xFFFFF000, P, PROT_READ) == -ENOMEM
    assert SyscallMprotect(space, W + 5 * P, P, PROT_READ) == -ENOMEM


def test_mprotect_applies_up_to_a_hole_then_enomem(space: ProcessMemorySpace) -> None:
    assert mmap(space, W, 5 * P, prot=PROT_NONE) == W
    assert SyscallMunmap(space, W + 3 * P, P) == 0
    assert SyscallMprotect(space, W, 5 * P, PROT_READ) == -ENOMEM
    assert window_maps(space) == [(0, 3 * P, "r--p"), (4 * P, 5 * P, "---p")]
    assert space.pages[W >> 12].protect == PAGE_READONLY


def test_mprotect_on_windows_pages_and_reserved_holes(space: ProcessMemorySpace) -> None:
    base = VirtualAllocProcessMemory(space, W, 0x2000, MEM_RESERVE, PAGE_READWRITE)
    VirtualAllocProcessMemory(space, base, P, MEM_COMMIT, PAGE_READWRITE)
    assert SyscallMprotect(space, base, P, PROT_READ | PROT_EXEC) == 0
    assert space.pages[base >> 12].protect == PAGE_EXECUTE_READ
    assert SyscallMprotect(space, base, 2 * P, PROT_READ) == -ENOMEM
    assert space.pages[(base >> 12) + 1].state == MEM_RESERVE
    assert window_maps(space) == [(0, P, "r--p")]


def test_mprotect_none_keeps_contents(space: ProcessMemorySpace) -> None:
    assert mmap(space, W, P) == W
    assert space.WriteUserMemory(W, b"abc") is True
    assert SyscallMprotect(space, W, P, PROT_NONE) == 0
    assert space.ReadUserMemory(W, 1) == PageFault(0x4, W)
    assert space.pages[W >> 12].protect == PAGE_NOACCESS
    assert SyscallMprotect(space, W, P, PROT_EXEC) == 0
    assert space.ExecuteUserMemory(W) == b"a"
    assert window_maps(space) == [(0, P, "--xp")]


# -- brk -------------------------------------------------------------------------------


def test_brk_query_and_below_start(space: ProcessMemorySpace) -> None:
    assert SyscallBrk(space, 0) == 0x410000
    assert SyscallBrk(space, 0x40FFFF) == 0x410000
    assert space.last_error == ErrorCode.ERROR_INVALID_PARAMETER


def test_brk_returns_the_exact_value_and_commits_pages(space: ProcessMemorySpace) -> None:
    assert SyscallBrk(space, 0x410001) == 0x410001
    assert space.heap_end == 0x411000 and space.pages[0x410].state == MEM_COMMIT
    assert SyscallBrk(space, 0x410FFF) == 0x410FFF  # same page: nothing changes
    assert SyscallBrk(space, 0x413000) == 0x413000
    allocation = space.allocations[0x410000]
    assert (allocation.size, allocation.origin) == (0x3000, ORIGIN_BRK)
    assert linux_maps(space)[1] == (0x410000, 0x413000, "rw-p")


def test_brk_shrink_unmaps(space: ProcessMemorySpace) -> None:
    assert SyscallBrk(space, 0x414000) == 0x414000
    assert SyscallBrk(space, 0x411800) == 0x411800
    assert (space.heap_end, space.allocations[0x410000].size) == (0x412000, 0x2000)
    assert 0x412 not in space.pages


def test_brk_past_heap_max_fails() -> None:
    _, vm = world()
    space = new_space(vm, heap_max_size=0x4000)
    assert SyscallBrk(space, 0x414001) == 0x410000
    assert space.last_error == ErrorCode.ERROR_NOT_ENOUGH_MEMORY
    assert SyscallBrk(space, 0x414000) == space.heap_max == 0x414000
    check_space(space)


def test_brk_needs_a_guard_page_before_a_mapping(space: ProcessMemorySpace) -> None:
    assert mmap(space, 0x414000, P, flags=ANON | MAP_FIXED) == 0x414000
    assert SyscallBrk(space, 0x413001) == 0x410000
    assert space.last_error == ErrorCode.ERROR_ALREADY_EXISTS
    assert SyscallBrk(space, 0x413000) == 0x413000


def test_brk_shrink_over_nothing_mapped_keeps_the_break(space: ProcessMemorySpace) -> None:
    assert SyscallBrk(space, 0x412000) == 0x412000
    assert SyscallMunmap(space, 0x410000, 0x2000) == 0
    assert SyscallBrk(space, 0x410000) == 0x412000
    assert SyscallBrk(space, 0x412800) == 0x412800  # grows again from the old end


def test_brk_regrows_after_mprotect_in_a_new_piece(space: ProcessMemorySpace) -> None:
    assert SyscallBrk(space, 0x411000) == 0x411000
    assert SyscallMprotect(space, 0x410000, P, PROT_READ) == 0
    assert SyscallBrk(space, 0x412000) == 0x412000
    assert linux_maps(space)[1:3] == [(0x410000, 0x411000, "r--p"),
                                      (0x411000, 0x412000, "rw-p")]


def test_brk_fails_without_frames() -> None:
    pm, vm = world(0x180000)
    space = new_space(vm)
    before = snapshot(space)
    assert SyscallBrk(space, 0x410000 + (pm.free_count() + 1) * P) == 0x410000
    assert space.last_error == ErrorCode.ERROR_NOT_ENOUGH_MEMORY
    assert snapshot(space) == before


def test_mprotect_on_process_heap_is_eacces(space: ProcessMemorySpace) -> None:
    space.reserve(W, 2 * P, PAGE_READWRITE, ORIGIN_PROCESS_HEAP, 0x20000)
    space.commit(W, W + 2 * P, PAGE_READWRITE)
    assert mmap(space, W - P, P) == W - P
    assert SyscallMprotect(space, W - P, 3 * P, PROT_READ) == -EACCES
    assert space.pages[(W >> 12) - 1].protect == PAGE_READONLY  # applied before the heap
    assert space.pages[W >> 12].protect == PAGE_READWRITE
    assert SyscallMunmap(space, W, P) == -EINVAL


# -- random sequences and hostile arguments ---------------------------------------------------


OPS = st.tuples(st.sampled_from(["mmap", "fixed", "munmap", "mprotect", "brk"]),
                st.integers(0, 24), st.integers(0, 6), st.integers(0, 7))


@settings(max_examples=60, deadline=None)
@given(st.lists(OPS, max_size=30))
def test_random_sequences_keep_the_contract(ops: list[tuple[str, int, int, int]]) -> None:
    _, vm = world()
    space = new_space(vm)
    for name, page, pages, prot in ops:
        address, length = W + page * P, pages * P
        before = snapshot(space)
        if name == "mmap":
            result = mmap(space, address, length, prot)
        elif name == "fixed":
            result = mmap(space, address, length, prot, ANON | MAP_FIXED)
        elif name == "munmap":
            result = SyscallMunmap(space, address, length)
        elif name == "mprotect":
            result = SyscallMprotect(space, address, length, prot)
        else:
            result = SyscallBrk(space, 0x410000 + page * 0x800)
            assert result in (0x410000 + page * 0x800, before[-1][3])
        if result < 0 and name != "mprotect":
            assert snapshot(space) == before
        check_space(space)
        maps = linux_maps(space)
        assert all(e1 <= s2 for (_, e1, _), (s2, _, _) in zip(maps, maps[1:], strict=False))


HOSTILE = [None, -1, 1 << 32, 2.5, "x", True, 0xFFFFFFFF, 0xFFFFF000, 0x3FF000]


def test_hostile_arguments_change_nothing(space: ProcessMemorySpace) -> None:
    assert mmap(space, W, 4 * P) == W
    assert SyscallBrk(space, 0x412000) == 0x412000
    for value in HOSTILE:
        for call in (
            lambda v=value: SyscallMmap(space, v, P, RW, ANON | MAP_FIXED, -1, 0),
            lambda v=value: SyscallMmap(space, 0, v, RW, ANON, -1, 0),
            lambda v=value: SyscallMmap(space, W, P, v, ANON | MAP_FIXED_NOREPLACE, -1, 0),
            lambda v=value: SyscallMmap(space, 0, P, RW, v, -1, 0),
            lambda v=value: SyscallMmap(space, 0, P, RW, ANON, v, 0),
            lambda v=value: SyscallMmap(space, 0, P, RW, ANON, -1, v),
            lambda v=value: SyscallMmap2(space, 0, v, RW, ANON, -1, 0),
            lambda v=value: SyscallMunmap(space, v, P),
            lambda v=value: SyscallMunmap(space, W, v),
            lambda v=value: SyscallMprotect(space, v, P, PROT_READ),
            lambda v=value: SyscallMprotect(space, W, P, v),
            lambda v=value: SyscallBrk(space, v),
        ):
            before = snapshot(space)
            call()
            if space.last_error != ErrorCode.ERROR_SUCCESS:
                assert snapshot(space) == before
    check_space(space)
    assert space.pages[0x410].protect == PAGE_READWRITE
