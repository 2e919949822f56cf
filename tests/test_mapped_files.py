"""MemoryMappedFiles and the file nodes (issue 5): views, page cache, write-back.

Runs on a booted MemorySubsystem like test_shared_memory.py, whose
``check_world`` (SYS-1, VMM-1, refcounts = mappings) runs after every test and
whose ``world_snapshot`` proves that failures change nothing. The calls act on
the current process (``syscalls.current``): tests switch with ``use``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from model.file_node import DiskFileNode, FileNode, MemoryFileNode
from model.linux_mm import SyscallMunmap
from model.mapped_files import FileView, MemoryMappedFiles
from model.memory_subsystem import MemorySubsystem
from model.page_tables import PageFault
from model.process_memory import ProcessMemorySpace
from model.virtual_alloc import VirtualAllocProcessMemory, VirtualProtectProcessMemory
from spec.abi import (
    FAULT_PROTECTION,
    FAULT_USER,
    FAULT_WRITE,
    MEM_MAPPED,
    MEM_RESERVE,
    ORIGIN_MAPPED_FILE,
    PAGE_EXECUTE,
    PAGE_EXECUTE_READ,
    PAGE_EXECUTE_READWRITE,
    PAGE_NOACCESS,
    PAGE_READONLY,
    PAGE_READWRITE,
    PAGE_SIZE,
    PTE_DIRTY,
    ErrorCode,
    FrameOwner,
)
from tests.test_memory_subsystem import booted
from tests.test_shared_memory import (
    FIRST_VIEW,
    PAGE_WRITECOPY,
    check_world,
    new_process,
    unmap_range,
    world_snapshot,
)

E = ErrorCode
DATA = bytes(range(251)) * 40  # 10040 bytes: two whole pages and a partial one


class CountingNode(MemoryFileNode):
    """A MemoryFileNode that records every write (offset, length)."""

    def __init__(self, data: bytes = b"", writable: bool = True) -> None:
        super().__init__(data, writable)
        self.writes: list[tuple[int, int]] = []

    def write(self, offset: int, data: bytes) -> int:
        self.writes.append((offset, len(data)))
        return super().write(offset, data)


def use(sub: MemorySubsystem, space: ProcessMemorySpace) -> ProcessMemorySpace:
    assert sub.syscalls.SwitchProcess(space.pid)
    return space


def state(sub: MemorySubsystem, *nodes: MemoryFileNode) -> Any:
    return world_snapshot(sub), [bytes(node.data) for node in nodes]


@pytest.fixture
def space(sub: MemorySubsystem) -> ProcessMemorySpace:
    return use(sub, new_process(sub))


# -- the file nodes ----------------------------------------------------------------------------


def test_memory_file_node_reads_short_and_never_grows() -> None:
    node = MemoryFileNode(b"abcdef")
    assert isinstance(node, FileNode) and node.length() == 6
    assert node.read(4, 10) == b"ef" and node.read(6, 1) == b"" and node.read(-1, 2) == b""
    # a negative offset reads nothing, even where Python's slice would wrap around
    assert node.read(-1, 7) == b"" and node.read(-6, 6) == b""
    assert node.read(0, 2) == b"ab" and node.read(0, 0) == b""
    assert node.read(5, 1) == b"f" and node.read(3, -1) == b""
    assert node.write(4, b"XYZ") == 2 and bytes(node.data) == b"abcdXY"
    assert node.write(6, b"Q") == 0 and node.write(-1, b"Q") == 0 and node.length() == 6
    read_only = MemoryFileNode(b"abc", writable=False)
    assert read_only.write(0, b"X") == 0 and bytes(read_only.data) == b"abc"


def test_disk_file_node_reads_and_writes_the_real_file(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"0123456789")
    node = DiskFileNode(path)
    assert isinstance(node, FileNode) and node.length() == 10
    assert node.read(8, 5) == b"89" and node.read(10, 5) == b""
    assert node.read(0, 3) == b"012" and node.read(9, 1) == b"9"
    assert node.read(0, 0) == node.read(0, -1) == node.read(-1, 3) == b""
    assert node.write(7, b"abcdef") == 3 and path.read_bytes() == b"0123456abc"
    # at or past the end a write stores nothing: a file node never grows
    assert node.write(10, b"xy") == 0 and node.write(11, b"xyz") == 0
    assert path.read_bytes() == b"0123456abc"
    assert DiskFileNode(path, writable=False).write(0, b"x") == 0
    assert path.read_bytes() == b"0123456abc"
    missing = DiskFileNode(tmp_path / "none")
    assert (missing.length(), missing.read(0, 4), missing.write(0, b"x")) == (0, b"", 0)
    assert not (tmp_path / "none").exists()


# -- MapFileToMemory --------------------------------------------------------------------------


def test_map_loads_the_file_and_zeroes_past_its_end(sub: MemorySubsystem,
                                                    space: ProcessMemorySpace) -> None:
    mmf, pm = sub.mapped_files, sub.pageman
    node = MemoryFileNode(DATA)
    free = pm.free_count()
    base = mmf.MapFileToMemory(node, 0, 0, PAGE_READWRITE)
    assert (base, mmf.last_error) == (FIRST_VIEW, E.ERROR_SUCCESS)
    assert pm.free_count() == free - 3
    assert space.ReadUserMemory(base, 3 * PAGE_SIZE) == DATA + bytes(3 * PAGE_SIZE - len(DATA))
    allocation = space.allocations[base]
    assert (allocation.size, allocation.allocation_protect, allocation.origin,
            allocation.type) == (3 * PAGE_SIZE, PAGE_READWRITE, ORIGIN_MAPPED_FILE, MEM_MAPPED)
    assert mmf.files == {1: node} and mmf.views == {
        (space.pid, base): FileView(1, 0, 3, PAGE_READWRITE)}
    assert sorted(mmf.cache) == [(1, 0), (1, 1), (1, 2)]
    for index in range(3):
        page = mmf.cache[(1, index)]
        assert page.mappers == {(space, base // PAGE_SIZE + index)} and not page.dirty
        assert pm.owner[page.frame] == FrameOwner.SHARED
        assert sub.frame_owners()[page.frame] == "file"
    assert not any(mmf.is_dirty(page) for page in mmf.cache.values())


def test_offset_and_size_choose_the_pages(sub: MemorySubsystem,
                                          space: ProcessMemorySpace) -> None:
    mmf = sub.mapped_files
    node = MemoryFileNode(DATA)
    one = mmf.MapFileToMemory(node, PAGE_SIZE, 100, PAGE_READONLY)
    assert mmf.views[(space.pid, one)] == FileView(1, 1, 1, PAGE_READONLY)
    assert space.ReadUserMemory(one, PAGE_SIZE) == DATA[PAGE_SIZE:2 * PAGE_SIZE]
    tail = mmf.MapFileToMemory(node, 2 * PAGE_SIZE, 0, PAGE_EXECUTE_READ)
    assert tail == one + 0x10000
    assert mmf.views[(space.pid, tail)] == FileView(1, 2, 1, PAGE_EXECUTE_READ)
    assert space.ReadUserMemory(tail, PAGE_SIZE) == DATA[2 * PAGE_SIZE:].ljust(PAGE_SIZE, b"\0")
    exact = mmf.MapFileToMemory(node, 0, len(DATA), PAGE_READONLY)
    assert mmf.views[(space.pid, exact)] == FileView(1, 0, 3, PAGE_READONLY)
    assert mmf.files == {1: node}  # one id per node
    other = MemoryFileNode(b"x")
    assert mmf.MapFileToMemory(other, 0, 0, PAGE_READONLY) and mmf.files == {1: node, 2: other}


def test_map_errors_in_order_change_nothing(sub: MemorySubsystem,
                                            space: ProcessMemorySpace) -> None:
    mmf = sub.mapped_files
    node = MemoryFileNode(DATA)
    read_only = MemoryFileNode(DATA, writable=False)
    empty = MemoryFileNode(b"")
    two_pages = MemoryFileNode(bytes(2 * PAGE_SIZE))
    cases: list[tuple[Any, Any, Any, Any, ErrorCode]] = [
        (None, 0, 0, PAGE_READWRITE, E.ERROR_INVALID_HANDLE),
        ("x", 0, 0, PAGE_READWRITE, E.ERROR_INVALID_HANDLE),
        (b"abc", 0, 0, PAGE_READWRITE, E.ERROR_INVALID_HANDLE),
        (None, -1, 0, 0, E.ERROR_INVALID_HANDLE),  # the file before the arguments
        (node, -1, 0, PAGE_READWRITE, E.ERROR_INVALID_PARAMETER),
        (node, 2**32, 0, PAGE_READWRITE, E.ERROR_INVALID_PARAMETER),
        (node, "x", 0, PAGE_READWRITE, E.ERROR_INVALID_PARAMETER),
        (node, 0, -1, PAGE_READWRITE, E.ERROR_INVALID_PARAMETER),
        (node, 0, 1.5, PAGE_READWRITE, E.ERROR_INVALID_PARAMETER),
        (node, 0, 0, PAGE_NOACCESS, E.ERROR_INVALID_PARAMETER),
        (node, 0, 0, PAGE_EXECUTE, E.ERROR_INVALID_PARAMETER),
        (node, 0, 0, PAGE_WRITECOPY, E.ERROR_INVALID_PARAMETER),
        (node, 0, 0, True, E.ERROR_INVALID_PARAMETER),
        (read_only, 0, 0, PAGE_READWRITE, E.ERROR_ACCESS_DENIED),
        (read_only, 0, 0, PAGE_EXECUTE_READWRITE, E.ERROR_ACCESS_DENIED),
        (read_only, 100, 0, PAGE_READWRITE, E.ERROR_ACCESS_DENIED),  # before the alignment
        (empty, 0, 0, PAGE_READONLY, E.ERROR_FILE_INVALID),
        (empty, 100, 0, PAGE_READONLY, E.ERROR_FILE_INVALID),  # before the alignment
        (node, 100, 0, PAGE_READONLY, E.ERROR_MAPPED_ALIGNMENT),
        (node, PAGE_SIZE + 1, 10, PAGE_READONLY, E.ERROR_MAPPED_ALIGNMENT),
        (node, 0, len(DATA) + 1, PAGE_READONLY, E.ERROR_ACCESS_DENIED),
        (node, 2 * PAGE_SIZE, len(DATA) - 2 * PAGE_SIZE + 1, PAGE_READONLY,
         E.ERROR_ACCESS_DENIED),
        (node, 3 * PAGE_SIZE, 0, PAGE_READONLY, E.ERROR_ACCESS_DENIED),
        (node, 3 * PAGE_SIZE, 1, PAGE_READONLY, E.ERROR_ACCESS_DENIED),
        (two_pages, 2 * PAGE_SIZE, 0, PAGE_READONLY, E.ERROR_ACCESS_DENIED),  # empty view
    ]
    for file, offset, size, protection, code in cases:
        before = state(sub, node, read_only, empty, two_pages)
        assert mmf.MapFileToMemory(file, offset, size, protection) == 0
        assert mmf.last_error == code, (offset, size, protection)
        assert state(sub, node, read_only, empty, two_pages) == before
    assert mmf.files == {} and mmf.file_ids == {}  # no id for a failed map
    assert mmf.MapFileToMemory(read_only, 0, 0, PAGE_READONLY)  # read-only views are fine


def test_map_needs_a_current_live_process(sub: MemorySubsystem) -> None:
    node = MemoryFileNode(DATA)
    nobody = MemoryMappedFiles(sub.virmem, lambda: None)
    before = state(sub, node)
    assert nobody.MapFileToMemory(node, 0, 0, PAGE_READONLY) == 0
    assert nobody.last_error == E.ERROR_NOT_READY and state(sub, node) == before
    assert sub.mapped_files.MapFileToMemory(node, 0, 0, PAGE_READONLY) == 0  # none current yet
    assert sub.mapped_files.last_error == E.ERROR_NOT_READY and state(sub, node) == before
    dead = new_process(sub)
    assert sub.syscalls.DestroyProcess(dead.pid)
    before = state(sub, node)
    ghost = MemoryMappedFiles(sub.virmem, lambda: dead)
    assert ghost.MapFileToMemory(node, 0, 0, PAGE_READONLY) == 0
    assert ghost.last_error == E.ERROR_INVALID_HANDLE and state(sub, node) == before


def test_map_without_frames_or_room_changes_nothing(sub: MemorySubsystem,
                                                    space: ProcessMemorySpace) -> None:
    mmf, shm = sub.mapped_files, sub.shared_memory
    node = MemoryFileNode(DATA)
    assert mmf.MapFileToMemory(node, 0, PAGE_SIZE, PAGE_READONLY) == FIRST_VIEW  # page 0 cached
    assert shm.CreateSharedMemory(sub.pageman.free_count() * PAGE_SIZE, PAGE_READWRITE)
    before = state(sub, node)
    assert mmf.MapFileToMemory(node, 0, 2 * PAGE_SIZE, PAGE_READONLY) == 0  # page 1 is new
    assert mmf.last_error == E.ERROR_NOT_ENOUGH_MEMORY and state(sub, node) == before
    assert mmf.MapFileToMemory(node, 0, 1, PAGE_READONLY) == FIRST_VIEW + 0x10000  # cached
    for size in (0x10000000, 0x100000, 0x10000):  # reserve the whole address space
        while VirtualAllocProcessMemory(space, 0, size, MEM_RESERVE, PAGE_READWRITE):
            pass
    before = state(sub, node)
    assert mmf.MapFileToMemory(node, 0, 1, PAGE_READONLY) == 0
    assert mmf.last_error == E.ERROR_NOT_ENOUGH_MEMORY and state(sub, node) == before


# -- sync, unmap, invalidate ------------------------------------------------------------------


def test_writes_reach_the_file_on_sync_only_for_dirty_pages(sub: MemorySubsystem,
                                                            space: ProcessMemorySpace) -> None:
    mmf = sub.mapped_files
    node = CountingNode(DATA)
    base = mmf.MapFileToMemory(node, 0, 0, PAGE_READWRITE)
    assert space.WriteUserMemory(base + PAGE_SIZE + 10, b"hello") is True
    assert bytes(node.data) == DATA and node.writes == []
    assert mmf.is_dirty(mmf.cache[(1, 1)]) and not mmf.is_dirty(mmf.cache[(1, 0)])
    assert mmf.SyncMappedFile(base) is True and mmf.last_error == E.ERROR_SUCCESS
    assert node.writes == [(PAGE_SIZE, PAGE_SIZE)]
    expected = bytearray(DATA)
    expected[PAGE_SIZE + 10:PAGE_SIZE + 15] = b"hello"
    assert bytes(node.data) == bytes(expected)
    assert not space.pte(base // PAGE_SIZE + 1) & PTE_DIRTY
    assert not any(mmf.is_dirty(page) for page in mmf.cache.values())
    assert mmf.SyncMappedFile(base) is True and len(node.writes) == 1  # nothing dirty now


def test_the_last_partial_page_writes_only_bytes_below_eof(sub: MemorySubsystem,
                                                           space: ProcessMemorySpace,
                                                           tmp_path: Path) -> None:
    mmf = sub.mapped_files
    path = tmp_path / "short.bin"
    path.write_bytes(b"a" * 5000)
    base = mmf.MapFileToMemory(DiskFileNode(path), 0, 0, PAGE_READWRITE)
    assert space.WriteUserMemory(base + PAGE_SIZE, b"\xAA" * PAGE_SIZE) is True
    assert mmf.SyncMappedFile(base)
    assert path.read_bytes() == b"a" * PAGE_SIZE + b"\xAA" * (5000 - PAGE_SIZE)
    node = CountingNode(b"b" * 5000)
    base = mmf.MapFileToMemory(node, 0, 0, PAGE_READWRITE)
    assert space.WriteUserMemory(base + 2 * PAGE_SIZE - 1, b"!") is True  # past EOF only
    assert mmf.UnmapFileFromMemory(base)
    assert node.writes == [(PAGE_SIZE, 5000 - PAGE_SIZE)] and bytes(node.data) == b"b" * 5000


def test_unmap_writes_back_and_frees_the_cache(sub: MemorySubsystem,
                                               space: ProcessMemorySpace) -> None:
    mmf = sub.mapped_files
    node = MemoryFileNode(DATA)
    free = sub.pageman.free_count()
    base = mmf.MapFileToMemory(node, 0, 0, PAGE_READWRITE)
    assert space.WriteUserMemory(base + 3, b"xyz") is True
    assert mmf.UnmapFileFromMemory(base) is True and mmf.last_error == E.ERROR_SUCCESS
    assert bytes(node.data) == DATA[:3] + b"xyz" + DATA[6:]
    assert mmf.cache == {} and mmf.views == {} and space.views == {}
    assert base not in space.allocations and space.pte(base // PAGE_SIZE) == 0
    assert sub.pageman.free_count() == free


def test_invalidate_reloads_what_was_written_to_the_node(sub: MemorySubsystem,
                                                         space: ProcessMemorySpace) -> None:
    mmf = sub.mapped_files
    node = MemoryFileNode(DATA)
    base = mmf.MapFileToMemory(node, 0, 0, PAGE_READWRITE)
    assert node.write(100, b"direct") == 6
    assert space.ReadUserMemory(base + 100, 6) == DATA[100:106]  # the cache is stale
    assert mmf.SyncMappedFile(base) and space.ReadUserMemory(base + 100, 6) == DATA[100:106]
    assert mmf.SyncMappedFile(base, True) and space.ReadUserMemory(base + 100, 6) == b"direct"
    # a dirty page is written back first: its bytes win over the direct write
    assert space.WriteUserMemory(base + PAGE_SIZE, b"view") is True
    assert node.write(PAGE_SIZE + 50, b"lost") == 4
    assert mmf.SyncMappedFile(base, invalidate=True)
    assert bytes(node.data[PAGE_SIZE:PAGE_SIZE + 4]) == b"view"
    assert bytes(node.data[PAGE_SIZE + 50:PAGE_SIZE + 54]) == DATA[PAGE_SIZE + 50:PAGE_SIZE + 54]
    assert space.ReadUserMemory(base, 3 * PAGE_SIZE) == bytes(node.data).ljust(3 * PAGE_SIZE,
                                                                               b"\0")


def test_invalidate_reloads_a_page_the_file_now_holds_as_zeros(
        sub: MemorySubsystem, space: ProcessMemorySpace) -> None:
    """SyncMappedFile(invalidate=True) reloads every clean page from the file
    (msync(MS_INVALIDATE), model/mapped_files.py), a page of zeros too: the frame
    then reads as zeros, not as the bytes it held before (a mutation run found the
    all-zero reload unchecked)."""
    mmf = sub.mapped_files
    node = MemoryFileNode(DATA)
    base = mmf.MapFileToMemory(node, 0, 0, PAGE_READWRITE)
    assert space.ReadUserMemory(base, 8) == DATA[:8] and DATA[:PAGE_SIZE].strip(b"\0")
    assert node.write(0, bytes(PAGE_SIZE)) == PAGE_SIZE
    assert mmf.SyncMappedFile(base, invalidate=True)
    assert space.ReadUserMemory(base, PAGE_SIZE) == bytes(PAGE_SIZE)
    assert space.ReadUserMemory(base, 3 * PAGE_SIZE) == bytes(node.data).ljust(3 * PAGE_SIZE,
                                                                               b"\0")


def test_a_read_only_view_refuses_writes(sub: MemorySubsystem, space: ProcessMemorySpace) -> None:
    mmf = sub.mapped_files
    node = MemoryFileNode(DATA)
    base = mmf.MapFileToMemory(node, 0, 0, PAGE_READONLY)
    before = state(sub, node)
    fault = space.WriteUserMemory(base + 5, b"no")
    assert fault == PageFault(FAULT_PROTECTION | FAULT_WRITE | FAULT_USER, base + 5)
    assert state(sub, node) == before
    assert mmf.UnmapFileFromMemory(base) and bytes(node.data) == DATA


def test_a_dirty_page_made_noaccess_is_still_written_back(
        sub: MemorySubsystem, space: ProcessMemorySpace) -> None:
    """VirtualProtect(PAGE_NOACCESS) clears the PTE of a written file page: its D bit
    goes to the cache page first, so sync and unmap still write it back; a file view's
    pages may not become wider than the view (ERROR_INVALID_PARAMETER)."""
    mmf = sub.mapped_files
    node = MemoryFileNode(DATA)
    base = mmf.MapFileToMemory(node, 0, 0, PAGE_READWRITE)
    assert space.WriteUserMemory(base + 1, b"NEW") is True
    assert VirtualProtectProcessMemory(space, base, 1, PAGE_EXECUTE_READWRITE) == (False, 0)
    assert space.last_error == ErrorCode.ERROR_INVALID_PARAMETER
    assert VirtualProtectProcessMemory(space, base, 1, PAGE_NOACCESS) == (True, PAGE_READWRITE)
    page = mmf.cache[(1, 0)]
    assert page.dirty and MemoryMappedFiles.is_dirty(page)
    assert mmf.SyncMappedFile(base) and bytes(node.data[:4]) == DATA[:1] + b"NEW"
    assert not page.dirty
    assert VirtualProtectProcessMemory(space, base, 1, PAGE_READWRITE) == (True, PAGE_NOACCESS)
    assert space.WriteUserMemory(base, b"Z") is True
    assert VirtualProtectProcessMemory(space, base, 1, PAGE_NOACCESS)[0]
    assert mmf.UnmapFileFromMemory(base) and bytes(node.data[:1]) == b"Z"
    assert not mmf.cache


def test_munmap_of_a_whole_file_view_writes_it_back(
        sub: MemorySubsystem, space: ProcessMemorySpace) -> None:
    """munmap(2) of a whole shared file mapping keeps its writes (the page cache writes
    them back; here at the unmap); part of a view: tests/test_shared_memory_pieces.py."""
    mmf = sub.mapped_files
    node = MemoryFileNode(DATA)
    base = mmf.MapFileToMemory(node, 0, 0, PAGE_READWRITE)
    assert space.WriteUserMemory(base + 2 * PAGE_SIZE, b"END") is True
    assert SyscallMunmap(space, base, 3 * PAGE_SIZE) == 0
    assert bytes(node.data[2 * PAGE_SIZE:2 * PAGE_SIZE + 3]) == b"END"
    assert not mmf.views and not mmf.cache and base not in space.allocations


def test_sync_and_unmap_errors_change_nothing(sub: MemorySubsystem,
                                              space: ProcessMemorySpace) -> None:
    mmf, shm = sub.mapped_files, sub.shared_memory
    node = MemoryFileNode(DATA)
    other = new_process(sub)
    use(sub, other)
    assert mmf.MapFileToMemory(node, 0, 0, PAGE_READWRITE) == FIRST_VIEW
    use(sub, space)
    mine = mmf.MapFileToMemory(node, 0, 0, PAGE_READWRITE)
    block = shm.MapSharedMemoryToProcess(space, shm.CreateSharedMemory(1, PAGE_READWRITE), 0)
    assert space.WriteUserMemory(mine, b"dirty") is True
    elsewhere = 0x30000000  # the other process's address space only
    use(sub, other)
    assert mmf.MapFileToMemory(node, PAGE_SIZE, 0, PAGE_READONLY) == FIRST_VIEW + 0x10000
    other_view = FIRST_VIEW + 0x10000
    use(sub, space)
    cases: list[tuple[Any, Any, ErrorCode]] = [
        (mine + PAGE_SIZE, False, E.ERROR_INVALID_ADDRESS),
        (block, False, E.ERROR_INVALID_ADDRESS),  # a shared-memory view
        (other_view, False, E.ERROR_INVALID_ADDRESS),  # the other process's view
        (elsewhere, False, E.ERROR_INVALID_ADDRESS), (0x00400000, False, E.ERROR_INVALID_ADDRESS),
        (-1, False, E.ERROR_INVALID_PARAMETER), ("x", False, E.ERROR_INVALID_PARAMETER),
        (mine, 1, E.ERROR_INVALID_PARAMETER), (mine, None, E.ERROR_INVALID_PARAMETER),
    ]
    for address, invalidate, code in cases:
        before = state(sub, node)
        assert mmf.SyncMappedFile(address, invalidate) is False
        assert mmf.last_error == code, address
        if invalidate is False and address != mine + PAGE_SIZE:  # inside: unmaps (below)
            assert mmf.UnmapFileFromMemory(address) is False
            assert mmf.last_error == code, address
        assert state(sub, node) == before
    before = state(sub, node)
    assert shm.UnmapSharedMemoryFromProcess(space, mine) is False  # a file view
    assert shm.last_error == E.ERROR_INVALID_ADDRESS and state(sub, node) == before
    nobody = MemoryMappedFiles(sub.virmem, lambda: None)
    assert nobody.SyncMappedFile(mine) is False and nobody.last_error == E.ERROR_NOT_READY
    assert nobody.UnmapFileFromMemory(mine) is False and nobody.last_error == E.ERROR_NOT_READY
    assert state(sub, node) == before
    assert mmf.UnmapFileFromMemory(mine)
    before = state(sub, node)
    assert mmf.UnmapFileFromMemory(mine) is False and mmf.last_error == E.ERROR_INVALID_ADDRESS
    assert state(sub, node) == before


@pytest.mark.parametrize("offset", [100, PAGE_SIZE, PAGE_SIZE + 100])
def test_unmap_at_an_address_inside_the_view_writes_back_and_unmaps_it(
        sub: MemorySubsystem, space: ProcessMemorySpace, offset: int) -> None:
    """UnmapViewOfFile of a file view at ptr + 100, ptr + 4096, ptr + 4096 + 100
    (Wine dlls/kernel32/tests/virtual.c test_MapViewOfFile): the whole view is
    written back and unmapped, its cache pages freed; SyncMappedFile still takes
    the base (ERROR_INVALID_ADDRESS inside)."""
    mmf = sub.mapped_files
    node = MemoryFileNode(DATA)
    base = mmf.MapFileToMemory(node, 0, 0, PAGE_READWRITE)
    assert space.WriteUserMemory(base + 2 * PAGE_SIZE, b"END") is True
    before = state(sub, node)
    assert mmf.SyncMappedFile(base + offset) is False
    assert mmf.last_error == E.ERROR_INVALID_ADDRESS and state(sub, node) == before
    assert mmf.UnmapFileFromMemory(base + offset) is True
    assert mmf.last_error == E.ERROR_SUCCESS
    assert bytes(node.data[2 * PAGE_SIZE:2 * PAGE_SIZE + 3]) == b"END"
    assert not mmf.views and not mmf.cache and base not in space.allocations


# -- several processes -----------------------------------------------------------------------


def test_views_in_two_processes_share_cache_pages(sub: MemorySubsystem) -> None:
    mmf = sub.mapped_files
    one, two = new_process(sub), new_process(sub)
    node = MemoryFileNode(DATA)
    use(sub, one)
    at_one = mmf.MapFileToMemory(node, 0, 0, PAGE_READWRITE)
    use(sub, two)
    at_two = mmf.MapFileToMemory(node, PAGE_SIZE, 0, PAGE_READWRITE)
    assert [len(mmf.cache[(1, index)].mappers) for index in range(3)] == [1, 2, 2]
    assert one.pte(at_one // PAGE_SIZE + 1) >> 12 == two.pte(at_two // PAGE_SIZE) >> 12
    assert one.WriteUserMemory(at_one + 5000, b"from one") is True
    assert two.ReadUserMemory(at_two + 5000 - PAGE_SIZE, 8) == b"from one"
    assert two.WriteUserMemory(at_two + PAGE_SIZE - 4, b"from two") is True  # 2 pages
    assert one.ReadUserMemory(at_one + 2 * PAGE_SIZE - 4, 8) == b"from two"
    use(sub, one)
    assert mmf.UnmapFileFromMemory(at_one)
    assert sorted(mmf.cache) == [(1, 1), (1, 2)]  # page 0 had one mapper
    assert bytes(node.data[5000:5008]) == b"from one"
    assert bytes(node.data[2 * PAGE_SIZE - 4:2 * PAGE_SIZE + 4]) == b"from two"
    assert not any(mmf.is_dirty(page) for page in mmf.cache.values())  # two's D bits too


@pytest.mark.parametrize("space_first", [False, True], ids=["DestroyProcess", "DestroyUserSpace"])
def test_process_exit_writes_back(sub: MemorySubsystem, space_first: bool) -> None:
    """Exit writes dirty file pages back; so does DestroyUserSpace called on its own
    (not through DestroyProcess, which detaches first): a mutation run found the
    space's own detach unchecked."""
    mmf = sub.mapped_files
    start = sub.pageman.free_count()
    space = use(sub, new_process(sub))
    node = MemoryFileNode(DATA)
    base = mmf.MapFileToMemory(node, 0, 0, PAGE_EXECUTE_READWRITE)
    assert space.WriteUserMemory(base + 10040 - 3, b"end") is True
    if space_first:
        assert space.DestroyUserSpace()
        assert bytes(node.data) == DATA[:-3] + b"end"
        assert mmf.cache == {} and mmf.views == {}
    assert sub.syscalls.DestroyProcess(space.pid)
    assert bytes(node.data) == DATA[:-3] + b"end"
    assert mmf.cache == {} and mmf.views == {} and sub.pageman.free_count() == start


def test_frame_owners_claim_each_cache_page_once(sub: MemorySubsystem) -> None:
    mmf = sub.mapped_files
    node = MemoryFileNode(DATA)
    for _ in range(3):
        use(sub, new_process(sub))
        assert mmf.MapFileToMemory(node, 0, 0, PAGE_READONLY)
        assert mmf.MapFileToMemory(node, PAGE_SIZE, 0, PAGE_READONLY)
    owners = sub.frame_owners()
    assert sorted(frame for frame, name in owners.items() if name == "file") == sorted(
        page.frame for page in mmf.cache.values())
    check_world(sub)


def test_real_file_two_processes_unmap_without_sync(sub: MemorySubsystem,
                                                    tmp_path: Path) -> None:
    """The issue's done-when test: nothing written through a view is lost."""
    mmf = sub.mapped_files
    path = tmp_path / "shared.bin"
    original = os.urandom(5 * PAGE_SIZE + 1234)
    path.write_bytes(original)
    expected = bytearray(original)
    node = DiskFileNode(path)  # one node per file, as the VFS has one fs_node per file
    one, two = new_process(sub), new_process(sub)
    use(sub, one)
    at_one = mmf.MapFileToMemory(node, 0, 0, PAGE_READWRITE)
    use(sub, two)
    at_two = mmf.MapFileToMemory(node, 2 * PAGE_SIZE, 0, PAGE_READWRITE)
    assert at_one and at_two
    writes = [  # (process, file offset, bytes): different pages, overlapping pages, the tail
        (one, 10, b"one wrote page zero"),
        (two, 5 * PAGE_SIZE + 1000, b"two wrote the partial last page"),
        (one, 3 * PAGE_SIZE - 6, b"one spans pages two and three"),
        (two, 3 * PAGE_SIZE - 2, b"two overwrites part of that"),
        (one, PAGE_SIZE, bytes(range(256)) * 16),  # a whole page only one maps
        (two, 4 * PAGE_SIZE + 7, b"two"),
        (one, 4 * PAGE_SIZE + 7, b"ONE"),  # the last write to those bytes wins
    ]
    for space, offset, data in writes:
        address = at_one + offset if space is one else at_two + offset - 2 * PAGE_SIZE
        assert space.WriteUserMemory(address, data) is True
        expected[offset:offset + len(data)] = data
    assert path.read_bytes() == original  # nothing synced yet
    use(sub, one)
    assert mmf.UnmapFileFromMemory(at_one)
    assert sub.syscalls.DestroyProcess(two.pid)
    with open(path, "rb") as file:
        assert file.read() == bytes(expected)
    assert mmf.cache == {} and mmf.views == {}


# -- hostile arguments ---------------------------------------------------------------------------

ANY = st.one_of(st.none(), st.booleans(), st.integers(-2, 2**32 + 1), st.floats(),
                st.text(max_size=2), st.binary(max_size=3), st.lists(st.integers(), max_size=1),
                st.sampled_from([0, 1, 2, 99, FIRST_VIEW, FIRST_VIEW + 0x10000, 0x30000000,
                                 PAGE_SIZE, 2 * PAGE_SIZE, PAGE_READONLY, PAGE_READWRITE,
                                 PAGE_EXECUTE_READ, PAGE_EXECUTE_READWRITE]))


@settings(max_examples=60, deadline=None)
@given(calls=st.lists(st.tuples(st.integers(0, 7), st.integers(0, 5), ANY, ANY, ANY, ANY),
                      min_size=1, max_size=12))
def test_hostile_calls_never_raise_and_failures_change_nothing(
        calls: list[tuple[int, int, Any, Any, Any, Any]]) -> None:
    sub = booted()
    shm, mmf = sub.shared_memory, sub.mapped_files
    space = use(sub, new_process(sub))
    nodes = [MemoryFileNode(DATA), MemoryFileNode(DATA, writable=False), MemoryFileNode()]
    targets: list[Any] = [space, ProcessMemorySpace(sub.virmem, 99), None, *nodes[:2], "x"]
    assert shm.CreateSharedMemory(5000, PAGE_READWRITE) == 1
    operations: list[tuple[Any, Any, Any]] = [  # (manager, call, failure value)
        (shm, lambda t, a, b, c, d: shm.CreateSharedMemory(a, b), 0),
        (shm, lambda t, a, b, c, d: shm.MapSharedMemoryToProcess(t, a, b, c), 0),
        (shm, lambda t, a, b, c, d: shm.UnmapSharedMemoryFromProcess(t, a), False),
        (shm, lambda t, a, b, c, d: shm.DestroySharedMemory(a), False),
        (shm, lambda t, a, b, c, d: shm.GetSharedMemorySize(a), 0),
        (mmf, lambda t, a, b, c, d: mmf.MapFileToMemory(t, a, b, c), 0),
        (mmf, lambda t, a, b, c, d: mmf.UnmapFileFromMemory(a), False),
        (mmf, lambda t, a, b, c, d: mmf.SyncMappedFile(a, b), False),
    ]
    for which, target, *args in calls:
        manager, call, failure = operations[which]
        before = state(sub, *nodes)
        result = call(targets[target], *args)
        if result == failure and type(result) is type(failure):
            assert manager.last_error != E.ERROR_SUCCESS
            assert state(sub, *nodes) == before
        else:
            assert manager.last_error == E.ERROR_SUCCESS
        check_world(sub)


# -- a random walk over two files and three processes --------------------------------------------


class MappedFilesMachine(RuleBasedStateMachine):
    """Map, write, sync, unmap (whole, or part by munmap / MAP_FIXED: pieces) and
    exit in three processes over a file in memory and one on disk; every view
    shows the last bytes written, and after everything is unmapped each file
    holds them."""

    def __init__(self) -> None:
        super().__init__()
        self.sub = booted()
        self.start = self.sub.pageman.free_count()
        self.spaces = [new_process(self.sub) for _ in range(3)]
        self.folder = tempfile.TemporaryDirectory()
        path = Path(self.folder.name) / "disk.bin"
        path.write_bytes(bytes(range(7)) * 2000)
        self.path = path
        self.nodes: list[FileNode] = [MemoryFileNode(bytes(range(13)) * 1500), DiskFileNode(path)]
        self.expected = [bytearray(bytes(range(13)) * 1500), bytearray(path.read_bytes())]
        self.views: list[tuple[ProcessMemorySpace, int, int, int]] = []  # space, base, file, off

    def _file_bytes(self, which: int) -> bytes:
        node = self.nodes[which]
        return node.read(0, node.length())

    @rule(which=st.integers(0, 2), file=st.integers(0, 1), first=st.integers(0, 3),
          pages=st.integers(0, 4), rw=st.booleans())
    def map(self, which: int, file: int, first: int, pages: int, rw: bool) -> None:
        space = use(self.sub, self.spaces[which])
        base = self.sub.mapped_files.MapFileToMemory(
            self.nodes[file], first * PAGE_SIZE, pages * PAGE_SIZE,
            PAGE_READWRITE if rw else PAGE_READONLY)
        if first * PAGE_SIZE + pages * PAGE_SIZE > len(self.expected[file]):
            assert base == 0 and self.sub.mapped_files.last_error == E.ERROR_ACCESS_DENIED
        else:
            assert base
            self.views.append((space, base, file, first * PAGE_SIZE))

    @rule(pick=st.integers(0, 50), at=st.integers(0, 5 * PAGE_SIZE),
          data=st.binary(min_size=1, max_size=300))
    def write(self, pick: int, at: int, data: bytes) -> None:
        if not self.views:
            return
        space, base, file, offset = self.views[pick % len(self.views)]
        expected = self.expected[file]
        below_eof = min(space.allocations[base].size, len(expected) - offset)
        data = data[:below_eof]
        at = offset + at % (below_eof - len(data) + 1)
        result = space.WriteUserMemory(base + at - offset, data)
        if space.allocations[base].allocation_protect == PAGE_READWRITE:
            assert result is True
            expected[at:at + len(data)] = data
        else:
            assert isinstance(result, PageFault)

    @rule(pick=st.integers(0, 50), invalidate=st.booleans())
    def sync(self, pick: int, invalidate: bool) -> None:
        if self.views:
            space, base, file, offset = self.views[pick % len(self.views)]
            use(self.sub, space)
            assert self.sub.mapped_files.SyncMappedFile(base, invalidate)
            size = space.allocations[base].size
            on_file = self._file_bytes(file)
            assert on_file[offset:offset + size] == bytes(self.expected[file][offset:offset + size])

    @rule(pick=st.integers(0, 50))
    def unmap(self, pick: int) -> None:
        if self.views:
            space, base, _, _ = self.views.pop(pick % len(self.views))
            use(self.sub, space)
            assert self.sub.mapped_files.UnmapFileFromMemory(base)

    @rule(pick=st.integers(0, 50), low=st.integers(0, 4), count=st.integers(1, 5),
          fixed=st.booleans())
    def unmap_part(self, pick: int, low: int, count: int, fixed: bool) -> None:
        """munmap (or MAP_FIXED of fresh pages) over pages [low, low + count) of a view:
        their writes are kept (the teardown reads the files), the pieces left show
        their own pages of the file, the range faults (or reads zeros)."""
        if not self.views:
            return
        space, base, file, offset = self.views.pop(pick % len(self.views))
        pages = space.allocations[base].size // PAGE_SIZE
        low %= pages
        count = min(count, pages - low)
        start, size = base + low * PAGE_SIZE, count * PAGE_SIZE
        unmap_range(space, start, size, fixed)
        if low:
            self.views.append((space, base, file, offset))
        if low + count < pages:
            self.views.append((space, start + size, file, offset + (low + count) * PAGE_SIZE))

    @rule(which=st.integers(0, 2))
    def exit_and_respawn(self, which: int) -> None:
        space = self.spaces[which]
        assert self.sub.syscalls.DestroyProcess(space.pid)
        self.views = [view for view in self.views if view[0] is not space]
        self.spaces[which] = new_process(self.sub)

    @invariant()
    def every_view_shows_the_last_bytes_written(self) -> None:
        check_world(self.sub)
        for space, base, file, offset in self.views:
            size = space.allocations[base].size
            shown = space.ReadUserMemory(base, size)
            assert shown == bytes(self.expected[file][offset:offset + size]).ljust(size, b"\0")

    def teardown(self) -> None:
        try:
            for space in self.spaces:
                assert self.sub.syscalls.DestroyProcess(space.pid)
            for which in range(2):
                assert self._file_bytes(which) == bytes(self.expected[which])
            assert self.sub.mapped_files.cache == {}
            assert self.sub.pageman.free_count() == self.start
        finally:
            self.folder.cleanup()


TestMappedFilesMachine = MappedFilesMachine.TestCase
TestMappedFilesMachine.settings = settings(max_examples=25, stateful_step_count=25,
                                           deadline=None,
                                           suppress_health_check=[HealthCheck.too_slow])



def test_write_back_stores_nothing_past_a_file_that_shrank(
        sub: MemorySubsystem, space: ProcessMemorySpace) -> None:
    """Write-back stores only the bytes below the file's length, a mapping never
    extends its file, and a page just written back reloads as what the file now
    holds, zeros past its end (model/mapped_files.py, msync(MS_INVALIDATE); the
    node is the caller's and may shrink under a view: mmap(2) leaves that
    unspecified). A dirty page wholly past the new end asks the node for no write
    and reads back as zeros (a mutation run found the 0 of that page's byte count
    unchecked: 1 there writes one byte past the end and keeps it)."""
    mmf = sub.mapped_files
    node = CountingNode(DATA)
    base = mmf.MapFileToMemory(node, 0, 0, PAGE_READWRITE)
    del node.data[2 * PAGE_SIZE:]  # the file ends where the view's third page starts
    assert space.WriteUserMemory(base + 2 * PAGE_SIZE, b"past") is True
    assert mmf.SyncMappedFile(base, invalidate=True)
    assert node.writes == [] and bytes(node.data) == DATA[:2 * PAGE_SIZE]
    assert space.ReadUserMemory(base + 2 * PAGE_SIZE, PAGE_SIZE) == bytes(PAGE_SIZE)
    assert not mmf.is_dirty(mmf.cache[(1, 2)])
    assert mmf.UnmapFileFromMemory(base) and node.writes == []
