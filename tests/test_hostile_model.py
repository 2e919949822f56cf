"""Issue 17's model defects, one regression test each: an exception escaped, or a
failed call changed state (each failed before its fix)."""

from __future__ import annotations

import struct
from typing import Any

import pytest

from model.file_node import MemoryFileNode
from model.memory_subsystem import MemorySubsystem
from proofs.machines.user_space import world
from spec.abi import (
    EBADF,
    MAP_PRIVATE,
    PAGE_READONLY,
    PAGE_READWRITE,
    PAGE_SHIFT,
    PROT_READ,
    PTE_ACCESSED,
    USER_TOP,
    ErrorCode,
)

E = ErrorCode
KERNEL_END = 0x100000


def booted(size: int = 0x800000) -> MemorySubsystem:
    sub = MemorySubsystem(size)
    assert sub.InitializeMemorySubsystem(KERNEL_END)
    return sub


def with_process(sub: MemorySubsystem) -> int:
    pid = sub.syscalls.CreateProcess()
    assert pid and sub.syscalls.SwitchProcess(pid)
    return pid


def test_1_a_process_whose_space_was_destroyed_is_reaped_not_crashed() -> None:
    sub = booted()
    free = sub.pageman.free_count()
    calls = sub.syscalls
    pid = with_process(sub)
    assert calls.processes[pid].DestroyUserSpace()
    assert calls.SyscallGetProcessHeap() == 0 and calls.last_error == E.ERROR_INVALID_HANDLE
    assert calls.SyscallHeapAlloc(0, 0, 16) == 0 and calls.last_error == E.ERROR_INVALID_HANDLE
    assert calls.Syscall(45, 0) < 0 and calls.SyscallBrk(0) < 0
    assert calls.DestroyProcess(pid) is True and pid not in calls.processes
    assert calls.DestroyProcess(pid) is False and calls.last_error == E.ERROR_INVALID_HANDLE
    assert sub.pageman.free_count() == free


def test_2_a_space_of_another_subsystem_is_not_a_handle() -> None:
    ours, theirs = booted(), booted()
    with_process(theirs)
    space = theirs.syscalls.current
    assert space is not None
    shm = ours.shared_memory
    block = shm.CreateSharedMemory(0x2000, PAGE_READWRITE)
    before = (dict(space.allocations), dict(space.pages), ours.pageman.free_count(),
              theirs.pageman.free_count())
    assert shm.MapSharedMemoryToProcess(space, block, 0) == 0
    assert shm.last_error == E.ERROR_INVALID_HANDLE
    assert shm.UnmapSharedMemoryFromProcess(space, 0x40000000) is False
    assert shm.last_error == E.ERROR_INVALID_HANDLE
    assert (dict(space.allocations), dict(space.pages), ours.pageman.free_count(),
            theirs.pageman.free_count()) == before
    assert shm.blocks[block].mappings == set() and shm.views == {}


class Node:
    """A caller's node that misbehaves in one way."""

    writable: Any = True

    def __init__(self, how: str) -> None:
        self.how = how
        self.written: list[tuple[int, bytes]] = []

    def length(self) -> Any:
        if self.how == "length raises":
            raise RuntimeError("no length")
        return {"length is a string": "5000", "length is negative": -1,
                "length past 4 GiB": 1 << 32}.get(self.how, 5000)

    def read(self, offset: int, size: int) -> Any:
        if self.how == "read raises":
            raise OSError("the disk is gone")
        if self.how == "read returns an int":
            return 7
        if self.how == "read returns too much":
            return b"x" * (size + 1)
        return b"x" * max(0, min(size, 5000 - offset))

    def write(self, offset: int, data: bytes) -> Any:
        if self.how == "write raises":
            raise OSError("read-only filesystem")
        self.written.append((offset, data))
        return len(data)


@pytest.mark.parametrize(("how", "code"), [
    ("length raises", E.ERROR_FILE_INVALID), ("length is a string", E.ERROR_FILE_INVALID),
    ("length is negative", E.ERROR_FILE_INVALID), ("length past 4 GiB", E.ERROR_FILE_INVALID),
    ("read raises", E.ERROR_READ_FAULT), ("read returns an int", E.ERROR_READ_FAULT),
    ("read returns too much", E.ERROR_READ_FAULT)])
def test_3_a_misbehaving_node_fails_the_map_cleanly(how: str, code: ErrorCode) -> None:
    sub = booted()
    with_process(sub)
    free, mmf = sub.pageman.free_count(), sub.mapped_files
    assert mmf.MapFileToMemory(Node(how), 0, 0, PAGE_READWRITE) == 0
    assert mmf.last_error == code
    assert sub.pageman.free_count() == free and mmf.files == {} and mmf.cache == {}


def test_3_a_node_with_a_strange_writable_is_not_a_handle() -> None:
    sub = booted()
    with_process(sub)
    free, mmf, space = sub.pageman.free_count(), sub.mapped_files, sub.syscalls.current
    assert space is not None
    before = (dict(space.allocations), dict(space.pages))
    for writable in ("yes", 1, None):
        node = Node("fine")
        node.writable = writable
        assert mmf.MapFileToMemory(node, 0, 0, PAGE_READONLY) == 0
        assert mmf.last_error == E.ERROR_INVALID_HANDLE, writable
        assert sub.pageman.free_count() == free and mmf.files == {} and mmf.cache == {}
        assert mmf.views == {} and (dict(space.allocations), dict(space.pages)) == before


def test_3_a_node_that_refuses_the_write_back() -> None:
    sub = booted()
    free = sub.pageman.free_count()
    pid = with_process(sub)
    node, mmf = Node("write raises"), sub.mapped_files
    base = mmf.MapFileToMemory(node, 0, 0, PAGE_READWRITE)
    space = sub.syscalls.current
    assert base and space is not None and space.WriteUserMemory(base, b"hello") is True
    cache = {key: (page.frame, page.dirty) for key, page in mmf.cache.items()}
    assert mmf.SyncMappedFile(base) is False and mmf.last_error == E.ERROR_WRITE_FAULT
    assert mmf.UnmapFileFromMemory(base) is False and mmf.last_error == E.ERROR_WRITE_FAULT
    assert {key: (page.frame, page.dirty) for key, page in mmf.cache.items()} == cache
    assert mmf.is_dirty(mmf.cache[(1, 0)]) and (pid, base) in mmf.views
    assert sub.syscalls.DestroyProcess(pid) is True  # exit drops what the node refuses
    assert mmf.cache == {} and sub.pageman.free_count() == free


def test_3_a_sync_that_cannot_reload_changes_nothing() -> None:
    sub = booted()
    with_process(sub)
    node, mmf = MemoryFileNode(b"a" * 5000), sub.mapped_files
    base = mmf.MapFileToMemory(node, 0, 0, PAGE_READWRITE)
    node.read = lambda offset, size: 1 / 0  # type: ignore[method-assign]
    memory = {frame: bytes(page) for frame, page in sub.pageman.memory.items()}
    assert mmf.SyncMappedFile(base, True) is False and mmf.last_error == E.ERROR_READ_FAULT
    assert {frame: bytes(page) for frame, page in sub.pageman.memory.items()} == memory


def test_4_a_refused_boot_keeps_the_managers() -> None:
    sub = MemorySubsystem(0x800000)
    managers = (sub.pageman, sub.virmem, sub.kernel, sub.syscalls, sub.shared_memory,
                sub.mapped_files)
    assert sub.InitializeMemorySubsystem(-1) is False
    assert sub.last_error == E.ERROR_INVALID_PARAMETER
    assert (sub.pageman, sub.virmem, sub.kernel, sub.syscalls, sub.shared_memory,
            sub.mapped_files) == managers
    small = MemorySubsystem(0x150000)  # physical memory, but no room for the heap
    held = (small.pageman, small.virmem)
    assert small.InitializeMemorySubsystem(KERNEL_END) is False
    assert small.last_error == E.ERROR_NOT_ENOUGH_MEMORY
    assert (small.pageman, small.virmem) == held and not small.pageman.initialized
    assert small.virmem.pageman is small.pageman and small.pageman.paging is small.virmem


def masked(snapshot: tuple[Any, ...], vpns: set[tuple[int, int]]) -> tuple[Any, ...]:
    """The world with the accessed bit of the PTEs of (pid, vpn) in vpns cleared."""
    spaces = {pid: (pages, allocations,
                    {vpn: pte & ~PTE_ACCESSED if (pid, vpn) in vpns else pte
                     for vpn, pte in ptes.items()}, brk)
              for pid, (pages, allocations, ptes, brk) in snapshot[0].items()}
    return (spaces, *snapshot[1:])


def test_5_a_failed_old_mmap_sets_only_the_accessed_bits_of_its_arguments() -> None:
    sub = booted()
    pid = with_process(sub)
    calls = sub.syscalls
    space = calls.current
    assert space is not None and space.page_dir is not None
    block = USER_TOP - 0x100
    arguments = struct.pack("<6I", 0, 0x1000, PROT_READ, MAP_PRIVATE, 3, 0)  # a file: EBADF
    assert space.WriteUserMemory(block, arguments) is True
    table = space.page_dir.tables[block >> 22]
    assert table is not None
    table.entries[(block >> PAGE_SHIFT) & 0x3FF] &= ~PTE_ACCESSED
    before = world(calls)
    assert calls.Syscall(90, block) == -EBADF
    after = world(calls)
    read = {(pid, block >> PAGE_SHIFT)}
    assert after != before, "the argument block was read through the MMU: A is set"
    assert masked(after, read) == masked(before, read)
