"""SharedMemoryManager (issue 5): blocks, views in several processes, lifetime.

Every test runs on a booted MemorySubsystem (16 MB) with processes made by its
SystemCalls. ``check_world`` checks the raw state after every test: SYS-1
(frame_owners names exactly the allocated frames), VMM-1 for shared frames (the
PTEs mapping a block's frame or a cache page's frame are exactly its recorded
mappings, every private frame is mapped once), SHM-1 (refcount = mappings) and
the view records against the PTEs. ``world_snapshot`` captures everything a
failing call must leave unchanged. test_mapped_files.py imports all three.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from model.file_node import MemoryFileNode
from model.linux_mm import SyscallBrk, SyscallMmap, SyscallMprotect, SyscallMunmap, linux_maps
from model.memory_subsystem import MemorySubsystem
from model.page_tables import PageFault
from model.process_memory import ProcessMemorySpace
from model.user_layout import protect_allows, pte_bits
from model.virtual_alloc import (
    VirtualAllocProcessMemory,
    VirtualFreeProcessMemory,
    VirtualProtectProcessMemory,
    VirtualQueryProcessMemory,
)
from model.x86_paging import is_kernel_slot
from spec.abi import (
    EACCES,
    FAULT_PROTECTION,
    FAULT_USER,
    FAULT_WRITE,
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_PRIVATE,
    MAX_SHM_ID,
    MEM_COMMIT,
    MEM_DECOMMIT,
    MEM_MAPPED,
    MEM_RELEASE,
    ORIGIN_MAPPED_FILE,
    ORIGIN_SHARED_MEMORY,
    PAGE_EXECUTE,
    PAGE_EXECUTE_READ,
    PAGE_EXECUTE_READWRITE,
    PAGE_NOACCESS,
    PAGE_READONLY,
    PAGE_READWRITE,
    PAGE_SIZE,
    PROT_EXEC,
    PROT_READ,
    PROT_WRITE,
    PTE_DIRTY,
    PTE_PRESENT,
    PTE_USER,
    PTE_WRITABLE,
    USER_TOP,
    ErrorCode,
    FrameOwner,
)
from tests.test_memory_subsystem import booted
from tests.test_process_memory import snapshot, world

E = ErrorCode
#: The first Windows-style address after the process heap (0x1410000 + 1 MB).
FIRST_VIEW = 0x1510000
PAGE_WRITECOPY = 0x08
HOSTILE = [None, -1, 2**32, "x", 1.5, True]


# -- helpers shared with test_mapped_files.py ------------------------------------


def world_snapshot(sub: MemorySubsystem) -> Any:
    """Everything a failing call must leave unchanged (last_error aside)."""
    pm, shm, mmf = sub.pageman, sub.shared_memory, sub.mapped_files
    return (
        {pid: (snapshot(space), tuple(space.views)) for pid, space in
         sub.syscalls.processes.items()},
        pm.free_count(), bytes(pm.owner), {frame: bytes(page) for frame, page in pm.memory.items()},
        {shm_id: (b.size, b.permissions, b.frames, b.destroyed, frozenset(b.mappings))
         for shm_id, b in shm.blocks.items()}, shm.next_shm_id, dict(shm.views), dict(shm.firsts),
        {file_id: id(node) for file_id, node in mmf.files.items()}, dict(mmf.file_ids),
        {key: (page.frame, page.dirty, frozenset((space.pid, vpn) for space, vpn in page.mappers))
         for key, page in mmf.cache.items()}, dict(mmf.views),
    )


def check_world(sub: MemorySubsystem) -> None:
    """SYS-1, VMM-1 and SHM-1 from the raw state; view records against PTEs."""
    pm, shm, mmf = sub.pageman, sub.shared_memory, sub.mapped_files
    allocated = {frame for frame in range(pm.nframes) if pm.owner[frame] != FrameOwner.FREE}
    assert set(sub.frame_owners()) == allocated  # SYS-1
    refs: Counter[int] = Counter()  # shared frame -> PTEs mapping it
    private: set[int] = set()
    for pid, space in sub.syscalls.processes.items():
        assert space.pid == pid
        for base, owner in space.views.items():
            allocation = space.allocations[base]
            assert allocation.type == MEM_MAPPED
            if owner is shm:
                assert allocation.origin == ORIGIN_SHARED_MEMORY
                block = shm.blocks[shm.views[(pid, base)]]
                assert (pid, base) in block.mappings
                first = shm.firsts[(pid, base)]  # a piece: its first page in the block
                frames = list(block.frames[first:first + allocation.size // PAGE_SIZE])
            else:
                assert owner is mmf and allocation.origin == ORIGIN_MAPPED_FILE
                view = mmf.views[(pid, base)]
                keys = [(view.file, index) for index in range(view.first, view.first + view.count)]
                frames = [mmf.cache[key].frame for key in keys]
                for vpn, key in enumerate(keys, base // PAGE_SIZE):
                    assert (space, vpn) in mmf.cache[key].mappers
            assert allocation.size == len(frames) * PAGE_SIZE
            for vpn, frame in enumerate(frames, base // PAGE_SIZE):
                record = space.pages[vpn]
                assert (record.state, record.frame, record.shared) == (MEM_COMMIT, frame, True)
                # a page writes only when its source may be written through the view
                assert not protect_allows(record.protect, "write") or owner.may_write(
                    space, base)
                pte = space.pte(vpn)
                if record.protect == PAGE_NOACCESS:
                    assert not pte & PTE_PRESENT
                else:
                    assert pte & PTE_PRESENT and pte & PTE_USER and pte >> 12 == frame
                    assert bool(pte & PTE_WRITABLE) == pte_bits(record.protect)[1]
                assert pm.owner[frame] == FrameOwner.SHARED
                refs[frame] += 1  # a view page maps its frame, PTE or not
        own = {vpn: record for vpn, record in space.pages.items()
               if record.allocation_base not in space.views}
        frames_held = [record.frame for record in own.values() if record.frame is not None]
        assert len(set(frames_held)) == len(frames_held)
        assert set(space.frames()) == set(frames_held)
        for frame in frames_held:
            assert pm.owner[frame] in (FrameOwner.MAPPED, FrameOwner.HELD)
            assert frame not in private  # VMM-1: a private frame is mapped once
            private.add(frame)
        assert space.page_dir is not None
        for slot, table in enumerate(space.page_dir.tables):
            if table is None or is_kernel_slot(slot):
                continue
            for index, entry in enumerate(table.entries):
                if entry & PTE_PRESENT:
                    found = space.pages.get(slot * 1024 + index)
                    assert found is not None and found.frame == entry >> 12
    for key, shm_id in shm.views.items():
        pid, base = key
        assert sub.syscalls.processes[pid].views[base] is shm and key in shm.blocks[shm_id].mappings
    for key in mmf.views:
        pid, base = key
        assert sub.syscalls.processes[pid].views[base] is mmf
    assert set(shm.firsts) == set(shm.views)
    shared: set[int] = set()
    for shm_id, block in shm.blocks.items():
        assert shm_id >= 1 and len(block.frames) == -(-block.size // PAGE_SIZE)
        assert not block.destroyed or block.mappings  # SHM-2: destroyed blocks go at 0
        assert block.mappings == {key for key, value in shm.views.items() if value == shm_id}
        covering: Counter[int] = Counter()  # block page -> the pieces mapping it
        for pid, base in block.mappings:
            first = shm.firsts[(pid, base)]
            size = sub.syscalls.processes[pid].allocations[base].size
            covering.update(range(first, first + size // PAGE_SIZE))
        for index, frame in enumerate(block.frames):
            assert refs[frame] == covering[index]  # SHM-1 per piece, VMM-1
            shared.add(frame)
    for page in mmf.cache.values():
        assert page.mappers and refs[page.frame] == len(page.mappers)
        assert page.frame not in shared
        shared.add(page.frame)
    assert shared == {frame for frame in allocated if pm.owner[frame] == FrameOwner.SHARED}
    assert set(refs) <= shared


def new_process(sub: MemorySubsystem) -> ProcessMemorySpace:
    pid = sub.syscalls.CreateProcess()
    assert pid, sub.syscalls.last_error
    return sub.syscalls.processes[pid]


def all_frames(sub: MemorySubsystem) -> int:
    return sub.pageman.free_count()


@pytest.fixture
def space(sub: MemorySubsystem) -> ProcessMemorySpace:
    return new_process(sub)


# -- CreateSharedMemory / GetSharedMemorySize / DestroySharedMemory ------------------


def test_create_takes_zeroed_shared_frames_and_ids_count_up(sub: MemorySubsystem) -> None:
    shm, pm = sub.shared_memory, sub.pageman
    free = pm.free_count()
    first = shm.CreateSharedMemory(5000, PAGE_READWRITE)
    assert (first, shm.last_error) == (1, E.ERROR_SUCCESS)
    block = shm.blocks[1]
    assert (block.size, block.permissions, len(block.frames), block.destroyed,
            block.mappings) == (5000, PAGE_READWRITE, 2, False, set())
    assert pm.free_count() == free - 2
    assert all(pm.owner[frame] == FrameOwner.SHARED and frame not in pm.memory
               for frame in block.frames)
    assert shm.CreateSharedMemory(1, PAGE_READONLY) == 2 and len(shm.blocks[2].frames) == 1
    assert shm.GetSharedMemorySize(1) == 5000 and shm.GetSharedMemorySize(2) == 1
    assert shm.last_error == E.ERROR_SUCCESS
    assert sub.frame_owners()[block.frames[0]] == "shared"


@pytest.mark.parametrize("size, permissions", [
    (0, PAGE_READWRITE), (2**32, PAGE_READWRITE), (-1, PAGE_READWRITE), ("x", PAGE_READWRITE),
    (True, PAGE_READWRITE), (None, PAGE_READWRITE), (4096, PAGE_NOACCESS),
    (4096, PAGE_EXECUTE), (4096, PAGE_WRITECOPY), (4096, 0), (4096, True), (4096, None),
    (4096, PAGE_READWRITE | PAGE_READONLY)])
def test_create_rejects_bad_arguments(sub: MemorySubsystem, size: Any, permissions: Any) -> None:
    before = world_snapshot(sub)
    assert sub.shared_memory.CreateSharedMemory(size, permissions) == 0
    assert sub.shared_memory.last_error == E.ERROR_INVALID_PARAMETER
    assert world_snapshot(sub) == before


def test_create_without_frames_changes_nothing(sub: MemorySubsystem) -> None:
    shm = sub.shared_memory
    free = sub.pageman.free_count()
    before = world_snapshot(sub)
    assert shm.CreateSharedMemory(free * PAGE_SIZE + 1, PAGE_READWRITE) == 0
    assert shm.last_error == E.ERROR_NOT_ENOUGH_MEMORY and world_snapshot(sub) == before
    assert shm.CreateSharedMemory(free * PAGE_SIZE, PAGE_READWRITE) == 1
    assert sub.pageman.free_count() == 0


@pytest.mark.parametrize("shm_id", [0, 2, 99, -1, "x", None, True, 1.0])
def test_unknown_ids_are_invalid_handles(sub: MemorySubsystem, shm_id: Any) -> None:
    shm = sub.shared_memory
    assert shm.CreateSharedMemory(4096, PAGE_READWRITE) == 1
    before = world_snapshot(sub)
    assert shm.GetSharedMemorySize(shm_id) == 0 and shm.last_error == E.ERROR_INVALID_HANDLE
    assert shm.DestroySharedMemory(shm_id) is False and shm.last_error == E.ERROR_INVALID_HANDLE
    assert world_snapshot(sub) == before


def test_destroy_unmapped_frees_at_once_and_twice_fails(sub: MemorySubsystem) -> None:
    shm = sub.shared_memory
    free = all_frames(sub)
    assert shm.CreateSharedMemory(3 * PAGE_SIZE, PAGE_READWRITE) == 1
    assert (shm.DestroySharedMemory(1), shm.last_error) == (True, E.ERROR_SUCCESS)
    assert shm.blocks == {} and all_frames(sub) == free
    before = world_snapshot(sub)
    assert (shm.DestroySharedMemory(1), shm.last_error) == (False, E.ERROR_INVALID_HANDLE)
    assert world_snapshot(sub) == before
    assert shm.CreateSharedMemory(1, PAGE_READWRITE) == 2  # counts up, even when free


# -- MapSharedMemoryToProcess ------------------------------------------------------------


def test_map_places_a_committed_mapped_view(sub: MemorySubsystem,
                                            space: ProcessMemorySpace) -> None:
    shm = sub.shared_memory
    shm_id = shm.CreateSharedMemory(5000, PAGE_EXECUTE_READWRITE)
    free = all_frames(sub)
    base = shm.MapSharedMemoryToProcess(space, shm_id, 0, PAGE_READONLY)
    assert (base, shm.last_error) == (FIRST_VIEW, E.ERROR_SUCCESS)
    assert all_frames(sub) == free  # the heap's page table covers it: no frame taken
    allocation = space.allocations[base]
    assert (allocation.size, allocation.allocation_protect, allocation.origin,
            allocation.type) == (2 * PAGE_SIZE, PAGE_READONLY, ORIGIN_SHARED_MEMORY, MEM_MAPPED)
    for index, frame in enumerate(shm.blocks[shm_id].frames):
        pte = space.pte(base // PAGE_SIZE + index)
        assert pte >> 12 == frame and pte & PTE_PRESENT and pte & PTE_USER
        assert not pte & PTE_WRITABLE
    assert shm.blocks[shm_id].mappings == {(space.pid, base)}
    assert space.views == {base: shm}
    # the default protection is the block's; the next view goes 64 KB further
    assert shm.MapSharedMemoryToProcess(space, shm_id, 0) == FIRST_VIEW + 0x10000
    assert space.pte(FIRST_VIEW // PAGE_SIZE + 16) & PTE_WRITABLE
    assert VirtualQueryProcessMemory(space, base + 100)[1] == (
        base, base, PAGE_READONLY, 2 * PAGE_SIZE, MEM_COMMIT, PAGE_READONLY, MEM_MAPPED)
    assert (base, base + 2 * PAGE_SIZE, "r--s") in linux_maps(space)


def test_map_at_an_address_costs_only_missing_page_tables(sub: MemorySubsystem,
                                                          space: ProcessMemorySpace) -> None:
    shm = sub.shared_memory
    free = all_frames(sub)
    assert shm.CreateSharedMemory((free - 1) * PAGE_SIZE, PAGE_READWRITE) == 1
    assert shm.CreateSharedMemory(PAGE_SIZE, PAGE_READWRITE) == 2
    assert all_frames(sub) == 0
    before = world_snapshot(sub)
    assert shm.MapSharedMemoryToProcess(space, 2, 0x20000000) == 0  # needs a new table
    assert shm.last_error == E.ERROR_NOT_ENOUGH_MEMORY and world_snapshot(sub) == before
    assert shm.MapSharedMemoryToProcess(space, 2, 0x01600000) == 0x01600000  # table exists
    assert shm.DestroySharedMemory(1)
    assert shm.MapSharedMemoryToProcess(space, 2, 0x20000000) == 0x20000000
    assert all_frames(sub) == free - 1 - 1  # block 2's frame and one page table


def test_map_check_order_and_every_error_changes_nothing(sub: MemorySubsystem,
                                                         space: ProcessMemorySpace) -> None:
    shm = sub.shared_memory
    rw = shm.CreateSharedMemory(2 * PAGE_SIZE, PAGE_READWRITE)
    ro = shm.CreateSharedMemory(PAGE_SIZE, PAGE_READONLY)
    xr = shm.CreateSharedMemory(PAGE_SIZE, PAGE_EXECUTE_READ)
    gone = shm.CreateSharedMemory(PAGE_SIZE, PAGE_READWRITE)
    assert shm.DestroySharedMemory(gone)
    fresh = ProcessMemorySpace(sub.virmem, 99)
    dead = new_process(sub)
    dead_pid = dead.pid
    assert sub.syscalls.DestroyProcess(dead_pid)
    cases: list[tuple[Any, Any, Any, Any, ErrorCode]] = [
        (fresh, rw, 0, None, E.ERROR_NOT_READY),
        (dead, rw, 0, None, E.ERROR_INVALID_HANDLE),
        (None, rw, 0, None, E.ERROR_INVALID_HANDLE),
        (fresh, 99, 1, 0, E.ERROR_NOT_READY),  # the space is checked first
        (space, 99, 0, None, E.ERROR_INVALID_HANDLE),
        (space, gone, 0, None, E.ERROR_INVALID_HANDLE),
        (space, "x", 0, None, E.ERROR_INVALID_HANDLE),
        (space, 0, 1, 0, E.ERROR_INVALID_HANDLE),  # the id before the protection
        (space, rw, 0, PAGE_NOACCESS, E.ERROR_INVALID_PARAMETER),
        (space, rw, 0, PAGE_EXECUTE, E.ERROR_INVALID_PARAMETER),
        (space, rw, 0, PAGE_WRITECOPY, E.ERROR_INVALID_PARAMETER),
        (space, rw, 0, True, E.ERROR_INVALID_PARAMETER),
        (space, rw, 1, "x", E.ERROR_INVALID_PARAMETER),  # the protection before the address
        (space, ro, 0, PAGE_READWRITE, E.ERROR_ACCESS_DENIED),  # SHM-3
        (space, ro, 0, PAGE_EXECUTE_READ, E.ERROR_ACCESS_DENIED),
        (space, rw, 0, PAGE_EXECUTE_READ, E.ERROR_ACCESS_DENIED),
        (space, xr, 0, PAGE_READWRITE, E.ERROR_ACCESS_DENIED),
        (space, ro, 0x1511000, PAGE_READWRITE, E.ERROR_ACCESS_DENIED),  # before the address
        (space, rw, 0x1511000, None, E.ERROR_MAPPED_ALIGNMENT),
        (space, rw, 0x1518000, None, E.ERROR_MAPPED_ALIGNMENT),
        (space, rw, -0x10000, None, E.ERROR_INVALID_PARAMETER),
        (space, rw, 2**32, None, E.ERROR_INVALID_PARAMETER),
        (space, rw, "x", None, E.ERROR_INVALID_PARAMETER),
        (space, rw, 0x10000, None, E.ERROR_INVALID_ADDRESS),  # below user space
        (space, rw, USER_TOP, None, E.ERROR_INVALID_ADDRESS),  # kernel space
        (space, rw, 0x00400000, None, E.ERROR_INVALID_ADDRESS),  # the image
        (space, rw, 0x01410000, None, E.ERROR_INVALID_ADDRESS),  # the process heap
        (space, rw, 0xBFF00000, None, E.ERROR_INVALID_ADDRESS),  # the stack reserve
    ]
    for target, shm_id, address, protect, code in cases:
        before = world_snapshot(sub)
        assert shm.MapSharedMemoryToProcess(target, shm_id, address, protect) == 0, code
        assert shm.last_error == code, (shm_id, address, protect)
        assert world_snapshot(sub) == before
    for protect in (PAGE_READONLY, PAGE_EXECUTE_READ, PAGE_EXECUTE_READWRITE):
        x = shm.CreateSharedMemory(PAGE_SIZE, PAGE_EXECUTE_READWRITE)
        assert shm.MapSharedMemoryToProcess(space, x, 0, protect), protect  # narrowing is fine


def test_a_view_must_fit_below_user_top(sub: MemorySubsystem, space: ProcessMemorySpace) -> None:
    shm = sub.shared_memory
    big = shm.CreateSharedMemory(0x20000, PAGE_READWRITE)
    for address in (0xB0000000 - 0x10000, 0x40000000):
        assert shm.MapSharedMemoryToProcess(space, big, address) == address
    before = world_snapshot(sub)
    # free, 64 KB aligned, but the view ends inside the stack reservation
    assert shm.MapSharedMemoryToProcess(space, big, 0xBFEF0000) == 0
    assert shm.last_error == E.ERROR_INVALID_ADDRESS and world_snapshot(sub) == before


def test_map_without_address_space_is_not_enough_memory(sub: MemorySubsystem,
                                                        space: ProcessMemorySpace) -> None:
    shm = sub.shared_memory
    shm_id = shm.CreateSharedMemory(PAGE_SIZE, PAGE_READWRITE)
    for size in (0x10000000, 0x100000, 0x10000):
        while VirtualAllocProcessMemory(space, 0, size, 0x2000, PAGE_READWRITE):
            pass
    before = world_snapshot(sub)
    assert shm.MapSharedMemoryToProcess(space, shm_id, 0) == 0
    assert shm.last_error == E.ERROR_NOT_ENOUGH_MEMORY and world_snapshot(sub) == before


# -- coherence and protection -------------------------------------------------------------


def test_a_block_in_two_processes_is_coherent(sub: MemorySubsystem) -> None:
    shm = sub.shared_memory
    one, two = new_process(sub), new_process(sub)
    shm_id = shm.CreateSharedMemory(3 * PAGE_SIZE, PAGE_READWRITE)
    at_one = shm.MapSharedMemoryToProcess(one, shm_id, 0x30000000)
    at_two = shm.MapSharedMemoryToProcess(two, shm_id, 0)
    assert (at_one, at_two) == (0x30000000, FIRST_VIEW)
    data = bytes(range(256)) * 15  # crosses a page boundary
    assert one.WriteUserMemory(at_one + 4000, data) is True
    assert two.ReadUserMemory(at_two + 4000, len(data)) == data
    assert two.WriteUserMemory(at_two + 2 * PAGE_SIZE, b"back") is True
    assert one.ReadUserMemory(at_one + 2 * PAGE_SIZE, 4) == b"back"
    assert two.ReadUserMemory(at_two, 8) == bytes(8)  # the rest reads as zeros
    assert one.pte(at_one // PAGE_SIZE + 2) & PTE_DIRTY == 0  # A/D are per PTE
    assert two.pte(at_two // PAGE_SIZE + 2) & PTE_DIRTY


def test_a_read_only_view_refuses_writes(sub: MemorySubsystem) -> None:
    shm = sub.shared_memory
    writer, reader = new_process(sub), new_process(sub)
    shm_id = shm.CreateSharedMemory(5000, PAGE_READWRITE)
    at_writer = shm.MapSharedMemoryToProcess(writer, shm_id, 0)
    at_reader = shm.MapSharedMemoryToProcess(reader, shm_id, 0, PAGE_READONLY)
    assert writer.WriteUserMemory(at_writer + 4096, b"seen") is True
    before = world_snapshot(sub)
    fault = reader.WriteUserMemory(at_reader + 4097, b"no")
    assert fault == PageFault(FAULT_PROTECTION | FAULT_WRITE | FAULT_USER, at_reader + 4097)
    assert reader.last_error == E.ERROR_NOACCESS and world_snapshot(sub) == before
    assert reader.ReadUserMemory(at_reader + 4096, 4) == b"seen"
    # a view covers whole pages of the block and nothing beyond them
    assert reader.ReadUserMemory(at_reader + 2 * PAGE_SIZE, 1) == PageFault(FAULT_USER,
                                                                            at_reader + 8192)


# -- Unmap, Destroy and the lifetime of frames -----------------------------------------------


def test_unmap_keeps_the_frames_and_drops_one_reference(sub: MemorySubsystem) -> None:
    shm = sub.shared_memory
    one, two = new_process(sub), new_process(sub)
    shm_id = shm.CreateSharedMemory(PAGE_SIZE, PAGE_READWRITE)
    block = shm.blocks[shm_id]
    at_one = shm.MapSharedMemoryToProcess(one, shm_id, 0)
    at_two = shm.MapSharedMemoryToProcess(two, shm_id, 0)
    assert one.WriteUserMemory(at_one, b"kept") is True
    assert shm.UnmapSharedMemoryFromProcess(one, at_one) is True
    assert shm.last_error == E.ERROR_SUCCESS
    assert at_one not in one.allocations and at_one // PAGE_SIZE not in one.pages
    assert one.pte(at_one // PAGE_SIZE) == 0 and one.views == {}
    assert block.mappings == {(two.pid, at_two)}
    assert sub.pageman.owner[block.frames[0]] == FrameOwner.SHARED
    assert two.ReadUserMemory(at_two, 4) == b"kept"
    assert shm.MapSharedMemoryToProcess(one, shm_id, 0) == at_one  # the range is free again


def test_unmap_errors_change_nothing(sub: MemorySubsystem) -> None:
    shm = sub.shared_memory
    one, two = new_process(sub), new_process(sub)
    shm_id = shm.CreateSharedMemory(2 * PAGE_SIZE, PAGE_READWRITE)
    at_one = shm.MapSharedMemoryToProcess(one, shm_id, 0)
    at_two = shm.MapSharedMemoryToProcess(two, shm_id, 0x20000000)
    private = one.AllocUserMemory(PAGE_SIZE)
    fresh = ProcessMemorySpace(sub.virmem, 99)
    cases: list[tuple[Any, Any, ErrorCode]] = [
        (fresh, at_one, E.ERROR_NOT_READY), (None, at_one, E.ERROR_INVALID_HANDLE),
        (one, at_one + 2 * PAGE_SIZE, E.ERROR_INVALID_ADDRESS),  # just past the view
        (one, at_one - 1, E.ERROR_INVALID_ADDRESS),  # just before it
        (one, at_two, E.ERROR_INVALID_ADDRESS),  # the other process's view
        (one, private, E.ERROR_INVALID_ADDRESS), (one, 0x00400000, E.ERROR_INVALID_ADDRESS),
        (one, 0, E.ERROR_INVALID_ADDRESS), (one, -1, E.ERROR_INVALID_PARAMETER),
        (one, "x", E.ERROR_INVALID_PARAMETER), (one, [1], E.ERROR_INVALID_PARAMETER),
    ]
    for target, address, code in cases:
        before = world_snapshot(sub)
        assert shm.UnmapSharedMemoryFromProcess(target, address) is False
        assert shm.last_error == code, address
        assert world_snapshot(sub) == before
    assert shm.UnmapSharedMemoryFromProcess(one, at_one)
    before = world_snapshot(sub)
    assert shm.UnmapSharedMemoryFromProcess(one, at_one) is False  # twice
    assert shm.last_error == E.ERROR_INVALID_ADDRESS and world_snapshot(sub) == before


@pytest.mark.parametrize("offset", [100, PAGE_SIZE, PAGE_SIZE + 100, 3 * PAGE_SIZE - 1])
def test_unmap_at_an_address_inside_the_view_unmaps_all_of_it(sub: MemorySubsystem,
                                                             offset: int) -> None:
    """UnmapViewOfFile takes any address inside the view (Wine
    dlls/kernel32/tests/virtual.c test_MapViewOfFile: ptr + 100, ptr + 4096,
    ptr + 4096 + 100): the whole view goes, the block keeps its other views."""
    shm = sub.shared_memory
    one, two = new_process(sub), new_process(sub)
    shm_id = shm.CreateSharedMemory(3 * PAGE_SIZE, PAGE_READWRITE)
    at_one = shm.MapSharedMemoryToProcess(one, shm_id, 0)
    at_two = shm.MapSharedMemoryToProcess(two, shm_id, 0)
    assert one.WriteUserMemory(at_one + 2 * PAGE_SIZE, b"kept") is True
    assert shm.UnmapSharedMemoryFromProcess(one, at_one + offset) is True
    assert shm.last_error == E.ERROR_SUCCESS
    assert at_one not in one.allocations and at_one not in one.views
    assert all(one.pte((at_one >> 12) + k) == 0 for k in range(3))
    assert shm.blocks[shm_id].mappings == {(two.pid, at_two)}
    assert two.ReadUserMemory(at_two + 2 * PAGE_SIZE, 4) == b"kept"
    assert shm.UnmapSharedMemoryFromProcess(one, at_one + offset) is False
    assert shm.last_error == E.ERROR_INVALID_ADDRESS


def test_destroy_while_mapped_defers_the_frames_to_the_last_unmap(sub: MemorySubsystem) -> None:
    shm, pm = sub.shared_memory, sub.pageman
    one, two = new_process(sub), new_process(sub)
    start = pm.free_count()
    shm_id = shm.CreateSharedMemory(2 * PAGE_SIZE, PAGE_READWRITE)
    frames = shm.blocks[shm_id].frames
    at_one = shm.MapSharedMemoryToProcess(one, shm_id, 0)
    at_two = shm.MapSharedMemoryToProcess(two, shm_id, 0)
    assert one.WriteUserMemory(at_one, b"still here") is True
    assert shm.DestroySharedMemory(shm_id) is True
    assert shm.blocks[shm_id].destroyed and pm.free_count() == start - 2
    assert shm.GetSharedMemorySize(shm_id) == 0 and shm.last_error == E.ERROR_INVALID_HANDLE
    before = world_snapshot(sub)
    assert shm.MapSharedMemoryToProcess(one, shm_id, 0) == 0
    assert shm.last_error == E.ERROR_INVALID_HANDLE and world_snapshot(sub) == before
    assert two.ReadUserMemory(at_two, 10) == b"still here"
    new_id = shm.CreateSharedMemory(PAGE_SIZE, PAGE_READWRITE)
    assert new_id == shm_id + 1
    assert shm.UnmapSharedMemoryFromProcess(one, at_one)
    assert all(pm.owner[frame] == FrameOwner.SHARED for frame in frames)
    assert shm.UnmapSharedMemoryFromProcess(two, at_two)
    assert shm_id not in shm.blocks
    assert all(pm.owner[frame] == FrameOwner.FREE and frame not in pm.memory for frame in frames)
    assert shm.DestroySharedMemory(new_id) and pm.free_count() == start


def test_ids_are_never_reused_while_a_mapping_exists(sub: MemorySubsystem,
                                                     space: ProcessMemorySpace) -> None:
    shm = sub.shared_memory
    assert shm.CreateSharedMemory(PAGE_SIZE, PAGE_READWRITE) == 1
    assert shm.MapSharedMemoryToProcess(space, 1, 0)
    assert shm.DestroySharedMemory(1)
    shm.next_shm_id = MAX_SHM_ID  # the counter wraps after 0xFFFFFFFF
    assert shm.CreateSharedMemory(PAGE_SIZE, PAGE_READWRITE) == MAX_SHM_ID
    assert shm.CreateSharedMemory(PAGE_SIZE, PAGE_READWRITE) == 2  # 1 is still mapped
    assert shm.next_shm_id == 3


def test_process_exit_without_unmap_drops_the_references(sub: MemorySubsystem) -> None:
    shm, pm = sub.shared_memory, sub.pageman
    start = pm.free_count()
    one, two = new_process(sub), new_process(sub)
    kept = shm.CreateSharedMemory(PAGE_SIZE, PAGE_READWRITE)
    doomed = shm.CreateSharedMemory(3 * PAGE_SIZE, PAGE_READONLY)
    for space in (one, two):
        assert shm.MapSharedMemoryToProcess(space, kept, 0)
        assert shm.MapSharedMemoryToProcess(space, doomed, 0)
    assert shm.DestroySharedMemory(doomed)
    assert sub.syscalls.DestroyProcess(one.pid)
    assert shm.blocks[kept].mappings == {(two.pid, FIRST_VIEW)}
    assert shm.blocks[doomed].mappings == {(two.pid, FIRST_VIEW + 0x10000)}
    check_world(sub)
    assert sub.syscalls.DestroyProcess(two.pid)
    assert set(shm.blocks) == {kept} and shm.blocks[kept].mappings == set()
    assert shm.views == {}
    assert shm.DestroySharedMemory(kept) and pm.free_count() == start


def test_destroy_user_space_detaches_views(sub: MemorySubsystem) -> None:
    shm = sub.shared_memory
    start = sub.pageman.free_count()
    space = ProcessMemorySpace(sub.virmem, 7)
    assert space.InitializeUserSpace()
    shm_id = shm.CreateSharedMemory(PAGE_SIZE, PAGE_READWRITE)
    assert shm.MapSharedMemoryToProcess(space, shm_id, 0x30000000)
    assert shm.blocks[shm_id].frames[0] not in space.frames()
    assert space.frames() and 0x30000 not in space.frames().values()
    assert space.DestroyUserSpace()
    assert shm.blocks[shm_id].mappings == set() and shm.views == {}
    assert shm.DestroySharedMemory(shm_id)
    assert sub.pageman.free_count() == start


# -- the VMM's shared-page primitives --------------------------------------------------------


def test_map_shared_page_validates_like_map_virtual_address() -> None:
    pm, vm = world()
    directory = vm.CreatePageDirectory()
    assert directory is not None
    shared = pm.take_frame(FrameOwner.SHARED)
    private = pm.take_frame(FrameOwner.MAPPED)
    free_frame = pm.nframes - 1

    def state() -> Any:
        return (bytes(pm.owner), pm.free_count(),
                [tuple(t.entries) if t is not None else None for t in directory.tables])

    assert (vm.MapSharedPage(directory, 0x00400000, shared, False), vm.last_error) == (
        True, E.ERROR_SUCCESS)
    assert vm.MapSharedPage(directory, 0x00401000, shared, True) is True  # twice: fine
    assert pm.owner[shared] == FrameOwner.SHARED
    assert vm.VirtualToPhysical(directory, 0x00401010) == shared * PAGE_SIZE + 0x10
    cases: list[tuple[Any, Any, Any, Any, ErrorCode]] = [
        (object(), 0x00402000, shared, True, E.ERROR_INVALID_HANDLE),
        (directory, 0x00402001, shared, True, E.ERROR_INVALID_PARAMETER),
        (directory, 0x00402000, shared, 1, E.ERROR_INVALID_PARAMETER),
        (directory, 0xC0000000, shared, True, E.ERROR_ACCESS_DENIED),
        (vm.kernel_directory, 0x00402000, shared, True, E.ERROR_ACCESS_DENIED),
        (directory, 0x00400000, shared, True, E.ERROR_ALREADY_EXISTS),
        (directory, 0x00402000, -1, True, E.ERROR_INVALID_PARAMETER),
        (directory, 0x00402000, pm.nframes, True, E.ERROR_INVALID_PARAMETER),
        (directory, 0x00402000, True, True, E.ERROR_INVALID_PARAMETER),
        (directory, 0x00402000, free_frame, True, E.ERROR_INVALID_ADDRESS),
        (directory, 0x00402000, private, True, E.ERROR_BUSY),
    ]
    for target, address, frame, writable, code in cases:
        before = state()
        assert vm.MapSharedPage(target, address, frame, writable) is False
        assert vm.last_error == code and state() == before
    while pm.take_frame(FrameOwner.HELD) >= 0:
        pass
    before = state()
    assert (vm.MapSharedPage(directory, 0x30000000, shared, True), vm.last_error) == (
        False, E.ERROR_NOT_ENOUGH_MEMORY)
    assert state() == before
    assert vm.MapSharedPage(directory, 0x00402000, shared, True) is True  # its table exists


def test_unmap_shared_page_returns_the_entry_and_keeps_the_frame() -> None:
    pm, vm = world()
    directory = vm.CreatePageDirectory()
    assert directory is not None
    shared = pm.take_frame(FrameOwner.SHARED)
    assert vm.MapSharedPage(directory, 0x00400000, shared, True)
    assert vm.AllocPage(directory, 0x00401000, False, True)
    assert vm.WriteVirtualMemory(directory, 0x00400004, b"d", True) is True
    entry = vm.UnmapSharedPage(directory, 0x00400000)
    assert entry >> 12 == shared and entry & PTE_DIRTY and entry & PTE_WRITABLE
    assert vm.last_error == E.ERROR_SUCCESS and pm.owner[shared] == FrameOwner.SHARED
    assert pm.memory[shared][4:5] == b"d"
    table = directory.tables[1]
    assert table is not None
    cases: list[tuple[Any, int, ErrorCode]] = [
        (directory, 0x00400000, E.ERROR_INVALID_ADDRESS),
        (directory, 0x00401000, E.ERROR_ACCESS_DENIED),
        (directory, 0x00400800, E.ERROR_INVALID_PARAMETER),
        (None, 0x00400000, E.ERROR_INVALID_HANDLE)]
    for target, address, code in cases:
        owners, entries = bytes(pm.owner), list(table.entries)
        assert (vm.UnmapSharedPage(target, address), vm.last_error) == (0, code)
        assert bytes(pm.owner) == owners and table.entries == entries


# -- the private-memory calls on a view's pages ----------------------------------------------


def test_private_memory_calls_refuse_view_pages(sub: MemorySubsystem,
                                               space: ProcessMemorySpace) -> None:
    """What no private call does to a view (Wine test_MapViewOfFile, test_mapping; munmap
    and MAP_FIXED over part of a view split it: tests/test_shared_memory_pieces.py),
    each leaving every record as it was: freeing, VirtualFree, and
    VirtualAlloc(MEM_COMMIT) or VirtualProtect beyond the view's
    access (mprotect's bound is Linux's VM_MAY*: test_a_read_only_view_refuses_...)."""
    shm = sub.shared_memory
    shm_id = shm.CreateSharedMemory(2 * PAGE_SIZE, PAGE_EXECUTE_READWRITE)
    base = shm.MapSharedMemoryToProcess(space, shm_id, 0x00420000, PAGE_READWRITE)
    assert base == 0x00420000  # just above the break
    assert sub.syscalls.SwitchProcess(space.pid)
    file_view = sub.mapped_files.MapFileToMemory(MemoryFileNode(bytes(2 * PAGE_SIZE)), 0, 0,
                                                 PAGE_READWRITE)
    assert file_view

    def windows(call: Any, *args: Any) -> tuple[Any, ErrorCode]:
        result = call(space, *args)
        return result, space.last_error

    cases: list[tuple[Any, Any]] = [
        (lambda: windows(VirtualFreeProcessMemory, base, 0, MEM_RELEASE),
         (False, E.ERROR_INVALID_PARAMETER)),
        (lambda: windows(VirtualFreeProcessMemory, base, PAGE_SIZE, MEM_DECOMMIT),
         (False, E.ERROR_INVALID_PARAMETER)),
        # MEM_COMMIT beyond the view's PAGE_READWRITE, past its end, not a protection
        (lambda: windows(VirtualAllocProcessMemory, base, PAGE_SIZE, 0x1000,
                         PAGE_EXECUTE_READ), (0, E.ERROR_INVALID_PARAMETER)),
        (lambda: windows(VirtualAllocProcessMemory, base, PAGE_SIZE, 0x1000, PAGE_EXECUTE),
         (0, E.ERROR_INVALID_PARAMETER)),
        (lambda: windows(VirtualAllocProcessMemory, base, 3 * PAGE_SIZE, 0x1000,
                         PAGE_READONLY), (0, E.ERROR_INVALID_ADDRESS)),
        (lambda: windows(VirtualAllocProcessMemory, base, PAGE_SIZE, 0x1000, PAGE_WRITECOPY),
         (0, E.ERROR_INVALID_PARAMETER)),
        # MEM_COMMIT on a file view: refused whatever the protection (test_mapping's
        # file pass, test_CreateFileMapping_protection)
        (lambda: windows(VirtualAllocProcessMemory, file_view, PAGE_SIZE, 0x1000,
                         PAGE_READWRITE), (0, E.ERROR_ACCESS_DENIED)),
        (lambda: windows(VirtualAllocProcessMemory, file_view + PAGE_SIZE, PAGE_SIZE, 0x1000,
                         PAGE_NOACCESS), (0, E.ERROR_ACCESS_DENIED)),
        # beyond the view's PAGE_READWRITE (the block would allow execution)
        (lambda: windows(VirtualProtectProcessMemory, base, PAGE_SIZE, PAGE_EXECUTE_READ),
         ((False, 0), E.ERROR_INVALID_PARAMETER)),
        (lambda: windows(VirtualProtectProcessMemory, base, PAGE_SIZE, PAGE_EXECUTE),
         ((False, 0), E.ERROR_INVALID_PARAMETER)),
        (lambda: windows(VirtualProtectProcessMemory, base, 2 * PAGE_SIZE,
                         PAGE_EXECUTE_READWRITE), ((False, 0), E.ERROR_INVALID_PARAMETER)),
        (lambda: windows(VirtualProtectProcessMemory, base, PAGE_SIZE, PAGE_WRITECOPY),
         ((False, 0), E.ERROR_INVALID_PARAMETER)),
        # past the view's end: not one allocation
        (lambda: windows(VirtualProtectProcessMemory, base, 3 * PAGE_SIZE, PAGE_READONLY),
         ((False, 0), E.ERROR_INVALID_ADDRESS)),
        (lambda: space.FreeUserMemory(base, 0), False),
        (lambda: SyscallBrk(space, base + PAGE_SIZE), space.brk),  # the break cannot move
    ]
    for call, expected in cases:
        before = world_snapshot(sub)
        assert call() == expected
        assert world_snapshot(sub) == before
    assert space.ReadUserMemory(base, 4) == bytes(4)


def test_munmap_and_map_fixed_over_whole_views_detach_them(sub: MemorySubsystem) -> None:
    """munmap(2) of a whole shm attach (with the free pages after it) is its shmdt:
    the block's refcount - 1, a destroyed block freed at its last view; MAP_FIXED over a
    whole view replaces it with fresh pages."""
    shm, pm = sub.shared_memory, sub.pageman
    one, two = new_process(sub), new_process(sub)
    shm_id = shm.CreateSharedMemory(2 * PAGE_SIZE, PAGE_READWRITE)
    frames = shm.blocks[shm_id].frames
    base = shm.MapSharedMemoryToProcess(one, shm_id, 0)
    other = shm.MapSharedMemoryToProcess(two, shm_id, 0)
    assert one.WriteUserMemory(base, b"kept") is True
    assert shm.DestroySharedMemory(shm_id)
    assert SyscallMunmap(one, base, 0x30000) == 0  # the free pages after it too
    assert base not in one.allocations and base not in one.views
    assert (one.pid, base) not in shm.views and shm.blocks[shm_id].mappings == {
        (two.pid, other)}
    assert two.ReadUserMemory(other, 4) == b"kept"
    check_world(sub)
    fresh = SyscallMmap(two, other, 2 * PAGE_SIZE, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0)
    assert fresh == other and two.ReadUserMemory(other, 4) == bytes(4)
    assert shm_id not in shm.blocks and all(pm.owner[f] != FrameOwner.SHARED for f in frames)
    check_world(sub)


def test_a_read_only_view_refuses_write_protections(sub: MemorySubsystem,
                                                    space: ProcessMemorySpace) -> None:
    """SHM_RDONLY / FILE_MAP_READ: no write access can be given back (LTP mprotect01
    TC[2] EACCES; Wine test_mapping ERROR_INVALID_PARAMETER)."""
    shm = sub.shared_memory
    shm_id = shm.CreateSharedMemory(PAGE_SIZE, PAGE_READWRITE)
    base = shm.MapSharedMemoryToProcess(space, shm_id, 0, PAGE_READONLY)
    before = world_snapshot(sub)
    assert SyscallMprotect(space, base, PAGE_SIZE, PROT_WRITE) == -EACCES
    assert space.last_error == E.ERROR_ACCESS_DENIED
    for protect in (PAGE_READWRITE, PAGE_EXECUTE_READWRITE, PAGE_EXECUTE_READ):
        assert VirtualProtectProcessMemory(space, base, 1, protect) == (False, 0)
        assert space.last_error == E.ERROR_INVALID_PARAMETER
    assert world_snapshot(sub) == before
    assert VirtualProtectProcessMemory(space, base, 1, PAGE_READONLY) == (True, PAGE_READONLY)


def test_commit_re_protects_block_view_pages_within_the_view_access(
        sub: MemorySubsystem) -> None:
    """VirtualAlloc(MEM_COMMIT) on a block view's pages, committed already: they take the
    protection as VirtualProtect gives it, the first page's address returned, VirtualQuery
    then reporting it per page, the data and the frame kept (Wine test_mapping, anonymous
    pass: ptr != NULL, info.Protect == page_prot[k])."""
    shm = sub.shared_memory
    one, two = new_process(sub), new_process(sub)
    shm_id = shm.CreateSharedMemory(2 * PAGE_SIZE, PAGE_EXECUTE_READWRITE)
    base = shm.MapSharedMemoryToProcess(one, shm_id, 0)
    other = shm.MapSharedMemoryToProcess(two, shm_id, 0, PAGE_READONLY)
    frame = shm.blocks[shm_id].frames[1]
    assert one.WriteUserMemory(base + PAGE_SIZE, b"abc") is True
    assert VirtualAllocProcessMemory(one, base + PAGE_SIZE + 5, 1, MEM_COMMIT,
                                     PAGE_EXECUTE_READ) == base + PAGE_SIZE
    assert one.last_error == E.ERROR_SUCCESS
    info = VirtualQueryProcessMemory(one, base + PAGE_SIZE)[1]
    assert info is not None
    assert (info.AllocationBase, info.AllocationProtect, info.RegionSize, info.State,
            info.Protect, info.Type) == (base, PAGE_EXECUTE_READWRITE, PAGE_SIZE, MEM_COMMIT,
                                         PAGE_EXECUTE_READ, MEM_MAPPED)
    fault = one.WriteUserMemory(base + PAGE_SIZE, b"x")
    assert isinstance(fault, PageFault) and fault.address == base + PAGE_SIZE
    assert one.ReadUserMemory(base + PAGE_SIZE, 3) == b"abc"
    assert VirtualAllocProcessMemory(one, base, 2 * PAGE_SIZE, MEM_COMMIT,
                                     PAGE_NOACCESS) == base
    assert not one.pte((base + PAGE_SIZE) >> 12) & PTE_PRESENT
    assert sub.pageman.owner[frame] == FrameOwner.SHARED
    assert VirtualAllocProcessMemory(one, base, 2 * PAGE_SIZE, MEM_COMMIT,
                                     PAGE_READWRITE) == base
    assert one.WriteUserMemory(base + PAGE_SIZE, b"xyz") is True
    assert two.ReadUserMemory(other + PAGE_SIZE, 3) == b"xyz"
    before = world_snapshot(sub)  # the read-only view: nothing writable, not even PAGE_EXECUTE
    for protect in (PAGE_READWRITE, PAGE_EXECUTE, PAGE_EXECUTE_READWRITE):
        assert VirtualAllocProcessMemory(two, other, PAGE_SIZE, MEM_COMMIT, protect) == 0
        assert two.last_error == E.ERROR_INVALID_PARAMETER
    assert world_snapshot(sub) == before
    check_world(sub)


def test_protection_calls_change_view_pages_within_the_view_access(sub: MemorySubsystem) -> None:
    """VirtualProtect / mprotect on a view's pages: per page, this process only, the
    frame kept SHARED (PTE or not), VirtualQuery's Protect per page with
    AllocationProtect and MEM_MAPPED unchanged (Wine test_mapping)."""
    shm = sub.shared_memory
    one, two = new_process(sub), new_process(sub)
    shm_id = shm.CreateSharedMemory(2 * PAGE_SIZE, PAGE_READWRITE)
    base = shm.MapSharedMemoryToProcess(one, shm_id, 0)
    other = shm.MapSharedMemoryToProcess(two, shm_id, 0)
    frame = shm.blocks[shm_id].frames[0]
    assert one.WriteUserMemory(base, b"abc") is True
    assert VirtualProtectProcessMemory(one, base, 1, PAGE_READONLY) == (True, PAGE_READWRITE)
    assert one.last_error == E.ERROR_SUCCESS
    info = VirtualQueryProcessMemory(one, base)[1]
    assert info is not None
    assert (info.BaseAddress, info.AllocationBase, info.AllocationProtect, info.RegionSize,
            info.State, info.Protect, info.Type) == (
        base, base, PAGE_READWRITE, PAGE_SIZE, MEM_COMMIT, PAGE_READONLY, MEM_MAPPED)
    info = VirtualQueryProcessMemory(one, base + PAGE_SIZE)[1]
    assert info is not None and (info.RegionSize, info.Protect) == (PAGE_SIZE, PAGE_READWRITE)
    fault = one.WriteUserMemory(base, b"x")
    assert isinstance(fault, PageFault) and fault.address == base
    assert two.WriteUserMemory(other, b"xyz") is True  # the other view is untouched
    assert one.ReadUserMemory(base, 3) == b"xyz"
    assert VirtualProtectProcessMemory(one, base, 2 * PAGE_SIZE, PAGE_NOACCESS) == (
        True, PAGE_READONLY)
    assert not one.pte(base >> 12) & PTE_PRESENT
    assert sub.pageman.owner[frame] == FrameOwner.SHARED
    check_world(sub)
    assert not isinstance(one.ReadUserMemory(base, 1), bytes)
    assert SyscallMprotect(one, base, PAGE_SIZE, PROT_READ | PROT_WRITE) == 0
    assert [line for line in linux_maps(one) if base <= line[0] < base + 2 * PAGE_SIZE] == [
        (base, base + PAGE_SIZE, "rw-s"),
        (base + PAGE_SIZE, base + 2 * PAGE_SIZE, "---s")]
    assert one.ReadUserMemory(base, 3) == b"xyz"  # the data survived PAGE_NOACCESS
    assert one.WriteUserMemory(base, b"q") is True and two.ReadUserMemory(other, 1) == b"q"
    check_world(sub)
    assert shm.UnmapSharedMemoryFromProcess(one, base)  # a page without a PTE unmaps too
    assert shm.DestroySharedMemory(shm_id) and shm.UnmapSharedMemoryFromProcess(two, other)
    assert sub.pageman.owner[frame] == FrameOwner.FREE


def test_mprotect_bounds_a_view_by_linux_vm_may_bits(sub: MemorySubsystem,
                                                     space: ProcessMemorySpace) -> None:
    """mprotect asks VM_MAYWRITE / VM_MAYEXEC, not the view's protection: a read-write
    view of a block may execute (VM_MAYEXEC), where VirtualProtect refuses it."""
    shm = sub.shared_memory
    shm_id = shm.CreateSharedMemory(PAGE_SIZE, PAGE_READWRITE)
    base = shm.MapSharedMemoryToProcess(space, shm_id, 0)
    before = world_snapshot(sub)
    assert VirtualProtectProcessMemory(space, base, 1, PAGE_EXECUTE_READ) == (False, 0)
    assert world_snapshot(sub) == before
    assert SyscallMprotect(space, base, PAGE_SIZE, PROT_READ | PROT_EXEC) == 0
    info = VirtualQueryProcessMemory(space, base)[1]
    assert info is not None and (info.Protect, info.AllocationProtect, info.Type) == (
        PAGE_EXECUTE_READ, PAGE_READWRITE, MEM_MAPPED)
    assert space.ExecuteUserMemory(base) == b"\0"
    assert VirtualProtectProcessMemory(space, base, 1, PAGE_READWRITE) == (True,
                                                                         PAGE_EXECUTE_READ)


def test_mprotect_stops_at_the_first_page_beyond_a_view_access(sub: MemorySubsystem,
                                                               space: ProcessMemorySpace) -> None:
    """mprotect over a private mapping and then a read-only view: the mapping's pages
    change, the view's first page fails with EACCES (do_mprotect_pkey's loop)."""
    shm = sub.shared_memory
    shm_id = shm.CreateSharedMemory(PAGE_SIZE, PAGE_READONLY)
    base = shm.MapSharedMemoryToProcess(space, shm_id, 0x00430000)
    below = SyscallMmap(space, base - PAGE_SIZE, PAGE_SIZE, PROT_READ,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0)
    assert below == base - PAGE_SIZE
    assert SyscallMprotect(space, below, 2 * PAGE_SIZE, PROT_READ | PROT_WRITE) == -EACCES
    assert space.pages[below >> 12].protect == PAGE_READWRITE
    assert space.pages[base >> 12].protect == PAGE_READONLY


# -- SYS-1 and a random walk ---------------------------------------------------------------------


def test_frame_owners_claim_block_frames_once(sub: MemorySubsystem) -> None:
    shm = sub.shared_memory
    spaces = [new_process(sub) for _ in range(3)]
    shm_id = shm.CreateSharedMemory(4 * PAGE_SIZE, PAGE_READWRITE)
    for space in spaces:
        assert shm.MapSharedMemoryToProcess(space, shm_id, 0)
    owners = sub.frame_owners()
    assert sorted(frame for frame, name in owners.items() if name == "shared") == sorted(
        shm.blocks[shm_id].frames)
    assert all(frame not in space.frames() for space in spaces for frame in owners
               if owners[frame] == "shared")



def unmap_range(space: ProcessMemorySpace, start: int, size: int, fixed: bool) -> None:
    """munmap [start, start + size) (the range then faults), or MAP_FIXED anonymous
    pages over it (the range then reads zeros): part of a view, in the machines."""
    if fixed:
        assert SyscallMmap(space, start, size, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS
                           | MAP_FIXED, -1, 0) == start
        assert space.ReadUserMemory(start, size) == bytes(size)
    else:
        assert SyscallMunmap(space, start, size) == 0
        assert isinstance(space.ReadUserMemory(start, 1), PageFault)

class SharedMemoryMachine(RuleBasedStateMachine):
    """Create, map, write, unmap (whole, or part by munmap / MAP_FIXED: pieces),
    destroy and exit in three processes; the contents every piece shows equal the
    last bytes written to its block's pages, and unmapped pages fault."""

    def __init__(self) -> None:
        super().__init__()
        self.sub = booted()
        self.start = self.sub.pageman.free_count()
        self.spaces = [new_process(self.sub) for _ in range(3)]
        self.contents: dict[int, bytearray] = {}  # live or mapped block -> its bytes
        #: (space, base, id, first page in the block, pages): every piece mapped
        self.mapped: list[tuple[ProcessMemorySpace, int, int, int, int]] = []

    @rule(pages=st.integers(1, 20), rw=st.booleans())
    def create(self, pages: int, rw: bool) -> None:
        shm = self.sub.shared_memory
        shm_id = shm.CreateSharedMemory(pages * PAGE_SIZE - 7, PAGE_READWRITE if rw
                                        else PAGE_READONLY)
        assert shm_id not in self.contents
        if shm_id:
            self.contents[shm_id] = bytearray(pages * PAGE_SIZE)

    @rule(which=st.integers(0, 2), pick=st.integers(0, 50), at=st.sampled_from([0, 0x30000000]))
    def map(self, which: int, pick: int, at: int) -> None:
        shm = self.sub.shared_memory
        live = [i for i in sorted(self.contents) if not shm.blocks[i].destroyed]
        if not live:
            return
        shm_id = live[pick % len(live)]
        space = self.spaces[which]
        base = shm.MapSharedMemoryToProcess(space, shm_id, at)
        if base:
            self.mapped.append((space, base, shm_id, 0, len(self.contents[shm_id]) // PAGE_SIZE))
        else:
            assert at and shm.last_error == E.ERROR_INVALID_ADDRESS

    @rule(pick=st.integers(0, 50), offset=st.integers(0, 20 * PAGE_SIZE),
          data=st.binary(min_size=1, max_size=64))
    def write(self, pick: int, offset: int, data: bytes) -> None:
        if not self.mapped:
            return
        space, base, shm_id, first, pages = self.mapped[pick % len(self.mapped)]
        content = self.contents[shm_id]
        offset %= pages * PAGE_SIZE - len(data) + 1
        result = space.WriteUserMemory(base + offset, data)
        if self.sub.shared_memory.blocks[shm_id].permissions == PAGE_READWRITE:
            assert result is True
            at = first * PAGE_SIZE + offset
            content[at:at + len(data)] = data
        else:
            assert isinstance(result, PageFault)

    @rule(pick=st.integers(0, 50), inside=st.integers(0, 20 * PAGE_SIZE - 1))
    def unmap(self, pick: int, inside: int) -> None:
        """UnmapSharedMemoryFromProcess at any address of a piece: that piece goes."""
        if self.mapped:
            space, base, _, _, pages = self.mapped.pop(pick % len(self.mapped))
            assert self.sub.shared_memory.UnmapSharedMemoryFromProcess(
                space, base + inside % (pages * PAGE_SIZE))
            self._forget()

    @rule(pick=st.integers(0, 50), low=st.integers(0, 19), count=st.integers(1, 20),
          fixed=st.booleans())
    def unmap_part(self, pick: int, low: int, count: int, fixed: bool) -> None:
        """munmap (or MAP_FIXED of fresh pages) over pages [low, low + count) of a piece:
        the pieces left keep their pages of the block, the range faults (or reads 0)."""
        if not self.mapped:
            return
        space, base, shm_id, first, pages = self.mapped.pop(pick % len(self.mapped))
        low %= pages
        count = min(count, pages - low)
        start, size = base + low * PAGE_SIZE, count * PAGE_SIZE
        unmap_range(space, start, size, fixed)
        if low:
            self.mapped.append((space, base, shm_id, first, low))
        if low + count < pages:
            self.mapped.append((space, start + size, shm_id, first + low + count,
                                pages - low - count))
        self._forget()

    @rule(pick=st.integers(0, 50))
    def destroy(self, pick: int) -> None:
        shm = self.sub.shared_memory
        live = [i for i in sorted(self.contents) if not shm.blocks[i].destroyed]
        if live:
            assert shm.DestroySharedMemory(live[pick % len(live)])
            self._forget()

    @rule(which=st.integers(0, 2))
    def exit_and_respawn(self, which: int) -> None:
        space = self.spaces[which]
        assert self.sub.syscalls.DestroyProcess(space.pid)
        self.mapped = [m for m in self.mapped if m[0] is not space]
        self._forget()
        self.spaces[which] = new_process(self.sub)

    def _forget(self) -> None:
        """Drop the record of blocks whose frames were freed."""
        self.contents = {i: c for i, c in self.contents.items()
                         if i in self.sub.shared_memory.blocks}

    @invariant()
    def every_piece_shows_its_pages_of_the_block(self) -> None:
        check_world(self.sub)
        shm = self.sub.shared_memory
        assert sorted((space.pid, base) for space, base, *_ in self.mapped) == sorted(shm.views)
        for space, base, shm_id, first, pages in self.mapped:
            assert shm.firsts[(space.pid, base)] == first
            content = self.contents[shm_id][first * PAGE_SIZE:(first + pages) * PAGE_SIZE]
            assert space.ReadUserMemory(base, len(content)) == bytes(content)

    def teardown(self) -> None:
        for space in self.spaces:
            assert self.sub.syscalls.DestroyProcess(space.pid)
        shm = self.sub.shared_memory
        for shm_id in list(shm.blocks):
            assert shm.DestroySharedMemory(shm_id)
        assert shm.blocks == {} and shm.views == {} and shm.firsts == {}
        assert self.sub.pageman.free_count() == self.start  # every frame came back


TestSharedMemoryMachine = SharedMemoryMachine.TestCase
TestSharedMemoryMachine.settings = settings(max_examples=25, stateful_step_count=25,
                                            deadline=None,
                                            suppress_health_check=[HealthCheck.too_slow])
