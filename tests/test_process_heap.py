"""The process heap's Win32 calls: HeapAlloc, HeapFree, HeapSize, HeapReAlloc (issue 15).

The rules are model/process_heap.py's; Wine's asserts of them are
tests/conformance/windows_heap.py. These tests pin what the conformance data
cannot see: the state after a failure, the pages, the dispatcher, ``raised``.
"""

from __future__ import annotations

from typing import Any

import pytest

from model.process_heap import POINTER_OFFSET, block_request
from model.syscalls import SystemCalls
from spec.abi import (
    HEADER_SIZE,
    HEAP_GENERATE_EXCEPTIONS,
    HEAP_NO_SERIALIZE,
    HEAP_REALLOC_IN_PLACE_ONLY,
    HEAP_SIZE_FAILED,
    HEAP_ZERO_MEMORY,
    MEMORY_ALLOCATION_ALIGNMENT,
    PROCESS_HEAP_INITIAL,
    PROCESS_HEAP_MAX,
    STATUS_ACCESS_VIOLATION,
    STATUS_INVALID_HANDLE,
    STATUS_INVALID_PARAMETER,
    STATUS_NO_MEMORY,
    SYS_HEAP_REALLOC,
    SYS_HEAP_SIZE,
    ErrorCode,
)
from tests.test_process_memory import check_space, snapshot, world

E = ErrorCode


@pytest.fixture
def system() -> Any:
    _, vm = world()
    result = SystemCalls(vm)
    pid = result.CreateProcess()
    assert pid == 1 and result.SwitchProcess(pid)
    yield result
    for space in result.processes.values():
        check_space(space)
    for pid, heap in result.heaps.items():
        assert set(result.heap_sizes[pid]) == {
            header + HEADER_SIZE + POINTER_OFFSET for header in heap.allocated}


def state(system: SystemCalls) -> Any:
    """Everything a failed heap call must leave as it was."""
    space = system.current
    assert space is not None
    heap = system.heaps[space.pid]
    pm = system.vmm.pageman
    return (snapshot(space), dict(heap.allocated), heap.holes(), heap.end_address,
            dict(system.heap_sizes[space.pid]),
            {frame: bytes(page) for frame, page in pm.memory.items()})


def write(system: SystemCalls, address: int, data: bytes) -> None:
    space = system.current
    assert space is not None and space.WriteUserMemory(address, data) is True


def read(system: SystemCalls, address: int, length: int) -> bytes:
    space = system.current
    assert space is not None
    data = space.ReadUserMemory(address, length)
    assert isinstance(data, bytes)
    return data


def test_block_request_keeps_blocks_multiples_of_8() -> None:
    for size in (0, 1, 7, 8, 9, 100, 0xFFFFFFFF):
        request = block_request(size)
        assert request % 8 == 4 and size + 4 <= request < size + 12
        assert (request + 20) % 8 == 0  # header 12 + footer 8


def test_pointers_are_8_aligned_sizes_as_asked(system: SystemCalls) -> None:
    heap = system.SyscallGetProcessHeap()
    pointers = {}
    for size in (0, 0, 1, 3, 8, 13, 17, 100, 4095, 4097, 0x3000):
        pointer = system.SyscallHeapAlloc(heap, 0, size)
        assert pointer and pointer % MEMORY_ALLOCATION_ALIGNMENT == 0
        assert pointer not in pointers  # size 0 too: a unique pointer
        pointers[pointer] = size
    assert any(pointer % 16 == 8 for pointer in pointers)  # 8, not 16 (Wine, 32-bit)
    spans = sorted((p, p + max(size, 1)) for p, size in pointers.items())
    assert all(end <= start for (_, end), (start, _) in zip(spans, spans[1:], strict=False))
    for pointer, size in pointers.items():
        assert system.SyscallHeapSize(heap, 0, pointer) == size
        assert system.last_error == E.ERROR_SUCCESS
    for pointer in pointers:
        assert system.SyscallHeapFree(heap, HEAP_NO_SERIALIZE, pointer) == 1


def test_heap_size_failures_are_size_t_minus_one(system: SystemCalls) -> None:
    heap = system.SyscallGetProcessHeap()
    block = system.SyscallHeapAlloc(heap, 0, 40)
    before = state(system)
    for h, p in ((heap, 0), (heap, block + 8), (heap, block - 4), (heap + 4096, block),
                 (0, block), (heap, 0xDEADBE00)):
        assert system.SyscallHeapSize(h, 0, p) == HEAP_SIZE_FAILED == 0xFFFFFFFF
        assert system.last_error == E.ERROR_INVALID_PARAMETER
    assert system.SyscallHeapFree(heap, 0, block) == 1
    assert system.SyscallHeapSize(heap, 0, block) == HEAP_SIZE_FAILED  # freed
    assert system.last_error == E.ERROR_INVALID_PARAMETER
    assert before != state(system)


def test_realloc_in_place_keeps_the_pointer_and_the_contents(system: SystemCalls) -> None:
    heap = system.SyscallGetProcessHeap()
    block = system.SyscallHeapAlloc(heap, 0, 100)
    write(system, block, bytes(range(100)))
    assert system.SyscallHeapReAlloc(heap, HEAP_REALLOC_IN_PLACE_ONLY, block, 10) == block
    assert system.SyscallHeapSize(heap, 0, block) == 10
    assert system.SyscallHeapReAlloc(heap, HEAP_REALLOC_IN_PLACE_ONLY, block, 100) == block
    assert read(system, block, 100) == bytes(range(100))  # no zeroing without the flag
    assert system.SyscallHeapReAlloc(heap, 0, block, 0) == block
    assert system.SyscallHeapSize(heap, 0, block) == 0
    assert system.SyscallHeapReAlloc(heap, HEAP_ZERO_MEMORY, block, 60) == block
    assert read(system, block, 60) == bytes(60)  # the new tail zeroed


def test_realloc_growing_moves_and_copies(system: SystemCalls) -> None:
    heap = system.SyscallGetProcessHeap()
    block = system.SyscallHeapAlloc(heap, 0, 24)
    fence = system.SyscallHeapAlloc(heap, 0, 24)  # the block cannot grow in place
    write(system, block, b"0123456789abcdefghijklmn")
    before = state(system)
    assert system.SyscallHeapReAlloc(heap, HEAP_REALLOC_IN_PLACE_ONLY, block, 200) == 0
    assert system.last_error == E.ERROR_NOT_ENOUGH_MEMORY
    assert state(system) == before
    moved = system.SyscallHeapReAlloc(heap, HEAP_ZERO_MEMORY, block, 200)
    assert moved not in (0, block) and moved % 8 == 0
    assert read(system, moved, 200) == b"0123456789abcdefghijklmn" + bytes(176)
    assert system.SyscallHeapSize(heap, 0, moved) == 200
    assert system.SyscallHeapSize(heap, 0, block) == HEAP_SIZE_FAILED  # the old one is gone
    assert system.SyscallHeapFree(heap, 0, block) == 0
    assert system.SyscallHeapFree(heap, 0, moved) == 1
    assert system.SyscallHeapFree(heap, 0, fence) == 1


def test_realloc_grows_and_shrinks_the_heap_with_its_records(system: SystemCalls) -> None:
    heap = system.SyscallGetProcessHeap()
    kheap = system.heaps[1]
    small = system.SyscallHeapAlloc(heap, 0, 16)
    big = system.SyscallHeapReAlloc(heap, 0, small, 200000)
    assert big and kheap.end_address > heap + PROCESS_HEAP_INITIAL
    space = system.current
    assert space is not None
    assert all(space.pages[vpn].frame is not None
               for vpn in range(heap >> 12, kheap.end_address >> 12))
    again = system.SyscallHeapReAlloc(heap, 0, big, 300000)
    assert again  # moved: a new block at the end, the old one freed
    assert system.SyscallHeapFree(heap, 0, again) == 1
    assert kheap.end_address == heap + PROCESS_HEAP_INITIAL


def test_realloc_failures_change_nothing(system: SystemCalls) -> None:
    heap = system.SyscallGetProcessHeap()
    block = system.SyscallHeapAlloc(heap, 0, 64)
    write(system, block, b"\x77" * 64)
    before = state(system)
    cases = [(heap, 0, block, PROCESS_HEAP_MAX, E.ERROR_NOT_ENOUGH_MEMORY),
             (heap, 0, block, 0xFFFFFFF8, E.ERROR_NOT_ENOUGH_MEMORY),
             (heap, 0, block, 0xFFFFFFFF, E.ERROR_NOT_ENOUGH_MEMORY),
             (heap, 0, block + 8, 8, E.ERROR_INVALID_PARAMETER),
             (heap, 0, 0xDEADBE00, 8, E.ERROR_INVALID_PARAMETER),
             (heap + 1, 0, block, 8, E.ERROR_INVALID_HANDLE),
             (heap, 0, block, -1, E.ERROR_INVALID_PARAMETER),
             (heap, 0, block, 1 << 32, E.ERROR_INVALID_PARAMETER)]
    for h, flags, p, size, code in cases:
        assert system.SyscallHeapReAlloc(h, flags, p, size) == 0
        assert system.last_error == code, (h, p, size)
        assert state(system) == before
    assert system.SyscallHeapReAlloc(heap, 0, 0, 10) == 0  # NULL: Windows leaves NO_ERROR
    assert system.last_error == E.ERROR_SUCCESS
    assert state(system) == before


def test_realloc_of_a_damaged_block_changes_nothing(system: SystemCalls) -> None:
    heap = system.SyscallGetProcessHeap()
    block = system.SyscallHeapAlloc(heap, 0, 16)
    fence = system.SyscallHeapAlloc(heap, 0, 16)
    write(system, block + 16, b"\xcc" * 8)  # past the end: the block's footer
    before = state(system)
    assert system.SyscallHeapReAlloc(heap, 0, block, 4096) == 0
    assert system.last_error == E.ERROR_ARENA_TRASHED
    assert state(system) == before
    assert fence


def test_generate_exceptions_notes_the_status_raised(system: SystemCalls) -> None:
    heap = system.SyscallGetProcessHeap()
    exc = HEAP_GENERATE_EXCEPTIONS
    assert system.SyscallHeapAlloc(heap, exc, PROCESS_HEAP_MAX) == 0
    assert system.raised == STATUS_NO_MEMORY == 0xC0000017
    assert system.last_error == E.ERROR_NOT_ENOUGH_MEMORY
    assert system.SyscallHeapAlloc(heap, 0, PROCESS_HEAP_MAX) == 0
    assert system.raised == 0  # without the flag nothing is raised
    block = system.SyscallHeapAlloc(heap, exc, 8)
    assert block and system.raised == 0
    assert system.SyscallHeapFree(heap, exc, block + 8) == 0
    assert (system.raised, system.last_error) == (STATUS_INVALID_PARAMETER,
                                                  E.ERROR_INVALID_PARAMETER)
    assert system.SyscallHeapReAlloc(heap + 8, exc, block, 8) == 0
    assert (system.raised, system.last_error) == (STATUS_INVALID_HANDLE,
                                                  E.ERROR_INVALID_HANDLE)
    assert system.SyscallHeapSize(heap, exc, block + 8) == HEAP_SIZE_FAILED
    assert system.raised == STATUS_INVALID_PARAMETER
    fence = system.SyscallHeapAlloc(heap, 0, 8)
    write(system, block + 8, b"\xcc" * 8)
    assert system.SyscallHeapFree(heap, exc, block) == 0
    assert (system.raised, system.last_error) == (STATUS_ACCESS_VIOLATION,
                                                  E.ERROR_ARENA_TRASHED)
    assert fence


def test_other_processes_pointers_are_refused(system: SystemCalls) -> None:
    heap = system.SyscallGetProcessHeap()
    block = system.SyscallHeapAlloc(heap, 0, 16)
    assert system.CreateProcess() == 2 and system.SwitchProcess(2)
    heap2 = system.SyscallGetProcessHeap()
    assert heap2 == heap  # the same address, another heap
    assert system.SyscallHeapSize(heap2, 0, block) == HEAP_SIZE_FAILED
    assert system.SyscallHeapReAlloc(heap2, 0, block, 8) == 0
    assert system.last_error == E.ERROR_INVALID_PARAMETER
    assert system.SwitchProcess(1) and system.SyscallHeapSize(heap, 0, block) == 16
    assert system.DestroyProcess(2) and 2 not in system.heap_sizes


def test_dispatcher_serves_heap_size_and_realloc(system: SystemCalls) -> None:
    heap = system.SyscallGetProcessHeap()
    block = system.SyscallHeapAlloc(heap, 0, 10)
    assert system.Syscall(SYS_HEAP_SIZE, heap, 0, block) == 10
    moved = system.Syscall(SYS_HEAP_REALLOC, heap, 0, block, 5000)
    assert moved and system.Syscall(SYS_HEAP_SIZE, heap, 0, moved) == 5000
    assert system.Syscall(SYS_HEAP_SIZE, heap, 0) < 0  # two arguments: -EINVAL


def test_no_current_process(system: SystemCalls) -> None:
    assert system.DestroyProcess(1)
    assert system.SyscallHeapSize(0, 0, 8) == HEAP_SIZE_FAILED
    assert system.last_error == E.ERROR_INVALID_HANDLE
    assert system.SyscallHeapReAlloc(0, 0, 8, 8) == 0
    assert system.last_error == E.ERROR_INVALID_HANDLE


def test_alloc_from_a_damaged_hole_is_arena_trashed(system: SystemCalls) -> None:
    """HeapAlloc passes the kernel heap's ERROR_ARENA_TRASHED on (a hole whose header
    was overwritten) and says ERROR_NOT_ENOUGH_MEMORY for every other refusal
    (model/process_heap.py ``_take``; a mutation run found the mapping unchecked)."""
    heap = system.SyscallGetProcessHeap()
    block = system.SyscallHeapAlloc(heap, 0, 64)
    fence = system.SyscallHeapAlloc(heap, 0, 64)
    assert block and fence and system.SyscallHeapFree(heap, 0, block)
    write(system, block - 4 - 12, b"\xcc" * 4)  # the hole's header magic
    before = state(system)
    assert system.SyscallHeapAlloc(heap, 0, 16) == 0
    assert system.last_error == E.ERROR_ARENA_TRASHED
    assert state(system) == before
