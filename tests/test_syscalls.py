"""SystemCalls: processes, the process heap and the syscall dispatcher (issue 4)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model.page_tables import PageFault
from model.syscalls import SystemCalls
from spec.abi import (
    EACCES,
    EFAULT,
    EINVAL,
    ENOSYS,
    ESRCH,
    HEAP_ZERO_MEMORY,
    MAP_ANONYMOUS,
    MAP_PRIVATE,
    MEM_COMMIT,
    MEM_PRIVATE,
    MEM_RELEASE,
    MEM_RESERVE,
    ORIGIN_PROCESS_HEAP,
    PAGE_EXECUTE,
    PAGE_READONLY,
    PAGE_READWRITE,
    PROCESS_HEAP_INITIAL,
    PROCESS_HEAP_MAX,
    PROT_READ,
    PROT_WRITE,
    SYS_BRK,
    SYS_GET_PROCESS_HEAP,
    SYS_HEAP_ALLOC,
    SYS_HEAP_FREE,
    SYS_MMAP,
    SYS_MMAP2,
    SYS_MPROTECT,
    SYS_MUNMAP,
    SYS_VIRTUAL_ALLOC,
    SYS_VIRTUAL_FREE,
    SYS_VIRTUAL_PROTECT,
    SYS_VIRTUAL_QUERY,
    ErrorCode,
)
from tests.test_process_memory import check_space, snapshot, world

ANON = MAP_PRIVATE | MAP_ANONYMOUS
RW = PROT_READ | PROT_WRITE
HEAP = 0x1410000  # the first Windows-style address: above the brk area


@pytest.fixture
def system() -> SystemCalls:
    _, vm = world()
    result = SystemCalls(vm)
    pid = result.CreateProcess()
    assert pid == 1 and result.SwitchProcess(pid)
    yield result
    for space in result.processes.values():
        check_space(space)


def test_create_process_layout_and_heap(system: SystemCalls) -> None:
    space = system.current
    assert space is not None and system.processes == {1: space}
    assert system.SyscallGetProcessHeap() == HEAP
    heap = space.allocations[HEAP]
    assert (heap.size, heap.origin, heap.type) == (PROCESS_HEAP_MAX, ORIGIN_PROCESS_HEAP,
                                                   MEM_PRIVATE)
    committed = [vpn for vpn in range(HEAP >> 12, (HEAP + PROCESS_HEAP_MAX) >> 12)
                 if space.pages[vpn].state == MEM_COMMIT]
    assert len(committed) * 4096 == PROCESS_HEAP_INITIAL
    assert system.vmm.current_directory is space.page_dir


def test_destroy_process_returns_every_frame() -> None:
    pm, vm = world()
    system = SystemCalls(vm)
    start = pm.free_count()
    pid = system.CreateProcess()
    assert system.SwitchProcess(pid)
    heap = system.SyscallGetProcessHeap()
    for size in (10, 70000, 300000):
        assert system.SyscallHeapAlloc(heap, 0, size)
    assert system.SyscallVirtualAlloc(0, 0x5000, MEM_COMMIT, PAGE_READWRITE)
    assert system.SyscallMmap(0, 0x3000, 0, ANON, -1, 0) > 0
    assert system.SyscallBrk(0x413000) == 0x413000
    assert system.DestroyProcess(pid)
    assert pm.free_count() == start
    assert system.current is None and vm.current_directory is vm.kernel_directory
    assert not system.DestroyProcess(pid)
    assert system.last_error == ErrorCode.ERROR_INVALID_HANDLE


def test_create_process_all_or_nothing() -> None:
    pm, vm = world(0x126000)  # 38 free frames: the space fits, the heap does not
    system = SystemCalls(vm)
    before = (pm.free_count(), bytes(pm.owner), set(vm.directories))
    assert system.CreateProcess() == 0
    assert system.last_error == ErrorCode.ERROR_NOT_ENOUGH_MEMORY
    assert (pm.free_count(), bytes(pm.owner), set(vm.directories)) == before
    assert system.next_pid == 1
    assert system.CreateProcess(stack_size=0x200000) == 0
    assert system.last_error == ErrorCode.ERROR_INVALID_PARAMETER


def test_processes_are_isolated(system: SystemCalls) -> None:
    second = system.CreateProcess()
    assert second == 2
    a = system.SyscallMmap(0, 4096, RW, ANON, -1, 0)
    assert system.current is not None and system.current.WriteUserMemory(a, b"mine") is True
    assert system.SwitchProcess(second)
    assert system.current is system.processes[2]
    assert system.current.ReadUserMemory(a, 4) == PageFault(0x4, a)
    assert system.SyscallMmap(0, 4096, RW, ANON, -1, 0) == a
    assert system.current.ReadUserMemory(a, 4) == b"\0" * 4
    heap2 = system.SyscallGetProcessHeap()
    block = system.SyscallHeapAlloc(heap2, 0, 16)
    assert system.SwitchProcess(1)
    assert system.SyscallGetProcessHeap() == heap2  # same address, another heap
    assert system.SyscallHeapFree(heap2, 0, block) == 0  # no such block in this one
    assert system.last_error == ErrorCode.ERROR_INVALID_PARAMETER
    assert system.SwitchProcess(2) and system.SyscallHeapFree(heap2, 0, block) == 1


def test_heap_zero_memory_zero_fills_reused_blocks(system: SystemCalls) -> None:
    heap = system.SyscallGetProcessHeap()
    space = system.current
    assert space is not None
    block = system.SyscallHeapAlloc(heap, 0, 64)
    assert space.WriteUserMemory(block, b"\xff" * 64) is True
    assert system.SyscallHeapFree(heap, 0, block) == 1
    again = system.SyscallHeapAlloc(heap, 0, 64)
    assert again == block and space.ReadUserMemory(block, 4) == b"\xff" * 4
    assert system.SyscallHeapFree(heap, 0, again) == 1
    zeroed = system.SyscallHeapAlloc(heap, HEAP_ZERO_MEMORY, 64)
    assert zeroed == block and space.ReadUserMemory(block, 64) == bytes(64)


def test_heap_free_rules(system: SystemCalls) -> None:
    heap = system.SyscallGetProcessHeap()
    block = system.SyscallHeapAlloc(heap, 0, 100)
    assert system.SyscallHeapFree(heap, 0, 0) == 1
    assert system.SyscallHeapFree(heap, 0, block + 4) == 0
    assert system.last_error == ErrorCode.ERROR_INVALID_PARAMETER
    space = system.current
    assert space is not None and space.last_error == ErrorCode.ERROR_INVALID_PARAMETER
    assert system.SyscallHeapFree(heap, 0, block) == 1
    before = snapshot(space)
    assert system.SyscallHeapFree(heap, 0, block) == 0  # double free
    assert system.last_error == ErrorCode.ERROR_INVALID_PARAMETER
    assert snapshot(space) == before
    assert system.SyscallHeapFree(heap + 4096, 0, block) == 0
    assert system.last_error == ErrorCode.ERROR_INVALID_HANDLE
    # flag bits HeapAlloc does not know are ignored, as Windows ignores them (Wine
    # dlls/kernel32/tests/heap.c test_block_layout: 0xc00 | HEAP_ADD_USER_INFO succeeds)
    odd = system.SyscallHeapAlloc(heap, 0xD00, 8)
    assert odd and system.last_error == ErrorCode.ERROR_SUCCESS
    assert system.SyscallHeapSize(heap, 0, odd) == 8


def test_heap_grows_and_shrinks_in_step_with_the_records(system: SystemCalls) -> None:
    heap = system.SyscallGetProcessHeap()
    space = system.current
    assert space is not None
    big = system.SyscallHeapAlloc(heap, 0, 200000)
    assert big
    kheap = system.heaps[1]
    assert kheap.end_address > HEAP + PROCESS_HEAP_INITIAL
    check_space(space)
    assert all(space.pages[vpn].state == MEM_COMMIT
               for vpn in range(HEAP >> 12, kheap.end_address >> 12))
    assert system.SyscallHeapFree(heap, 0, big) == 1
    assert kheap.end_address == HEAP + PROCESS_HEAP_INITIAL
    check_space(space)
    assert system.SyscallHeapAlloc(heap, 0, PROCESS_HEAP_MAX) == 0
    assert system.last_error == ErrorCode.ERROR_NOT_ENOUGH_MEMORY


def test_heap_pages_belong_to_the_heap(system: SystemCalls) -> None:
    space = system.current
    assert space is not None
    before = snapshot(space)
    assert system.SyscallVirtualFree(HEAP, 0, MEM_RELEASE) == 0
    assert system.last_error == ErrorCode.ERROR_INVALID_PARAMETER
    assert system.SyscallVirtualAlloc(HEAP + 0x20000, 4096, MEM_COMMIT, PAGE_READWRITE) == 0
    assert system.last_error == ErrorCode.ERROR_ACCESS_DENIED
    assert system.SyscallMunmap(HEAP, 4096) == -EINVAL
    assert system.SyscallMprotect(HEAP, 4096, PROT_READ) == -EACCES
    assert snapshot(space) == before


def test_virtual_query_writes_the_32_bit_structure(system: SystemCalls) -> None:
    space = system.current
    assert space is not None
    buffer = system.SyscallVirtualAlloc(0, 4096, MEM_COMMIT, PAGE_READWRITE)
    assert system.SyscallVirtualQuery(0x400000, buffer, 28) == 28
    assert struct.unpack("<7I", space.ReadUserMemory(buffer, 28)) == (
        0x400000, 0x400000, 0x20, 0x10000, MEM_COMMIT, 0x20, 0x1000000)
    assert system.SyscallVirtualQuery(0x400000, buffer, 27) == 0
    assert system.last_error == ErrorCode.ERROR_BAD_LENGTH
    assert system.SyscallVirtualQuery(0x400000, 0x400000, 28) == 0  # image: read-only
    assert system.last_error == ErrorCode.ERROR_NOACCESS
    assert system.SyscallVirtualQuery(0xC0000000, buffer, 28) == 0
    assert system.last_error == ErrorCode.ERROR_INVALID_PARAMETER


def test_virtual_protect_writes_the_old_protection(system: SystemCalls) -> None:
    space = system.current
    assert space is not None
    base = system.SyscallVirtualAlloc(0, 0x2000, MEM_COMMIT, PAGE_READWRITE)
    assert system.SyscallVirtualProtect(base, 4096, PAGE_READONLY, base + 0x1000) == 1
    assert space.ReadUserMemory(base + 0x1000, 4) == b"\x04\0\0\0"
    before = snapshot(space)
    assert system.SyscallVirtualProtect(base + 0x1000, 4096, PAGE_READONLY, base + 0x1000) == 0
    assert system.last_error == ErrorCode.ERROR_NOACCESS  # would no longer be writable
    assert system.SyscallVirtualProtect(base + 0x1000, 4096, PAGE_READONLY, 0) == 0
    assert system.last_error == ErrorCode.ERROR_NOACCESS
    assert system.SyscallVirtualProtect(base + 0x1000, 4096, PAGE_READONLY, None) == 0
    assert system.last_error == ErrorCode.ERROR_INVALID_PARAMETER
    # One byte protects its whole page: a pointer elsewhere in that page would not
    # be writable either (found by the oracle's user family against the model).
    assert system.SyscallVirtualProtect(base + 0x1000, 1, PAGE_EXECUTE, base + 0x1FFC) == 0
    assert system.last_error == ErrorCode.ERROR_NOACCESS
    assert snapshot(space) == before


def test_dispatcher_numbers(system: SystemCalls) -> None:
    space = system.current
    assert space is not None
    assert system.Syscall(SYS_BRK, 0) == 0x410000
    assert system.Syscall(SYS_BRK, 0x411000) == 0x411000
    assert system.Syscall(SYS_MMAP2, 0x40000000, 4096, RW, ANON, 0xFFFFFFFF, 0) == 0x40000000
    assert system.Syscall(SYS_MPROTECT, 0x40000000, 4096, PROT_READ) == 0
    assert system.Syscall(SYS_MUNMAP, 0x40000000, 4096) == 0
    assert system.Syscall(SYS_GET_PROCESS_HEAP) == HEAP
    block = system.Syscall(SYS_HEAP_ALLOC, HEAP, 0, 10)
    assert block > HEAP and system.Syscall(SYS_HEAP_FREE, HEAP, 0, block) == 1
    base = system.Syscall(SYS_VIRTUAL_ALLOC, 0, 4096, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE)
    assert base == 0x1510000
    assert system.Syscall(SYS_VIRTUAL_QUERY, base, base + 16, 28) == 28
    assert system.Syscall(SYS_VIRTUAL_PROTECT, base, 16, PAGE_READONLY, base) == 0
    assert system.Syscall(SYS_VIRTUAL_FREE, base, 0, MEM_RELEASE) == 1


def test_old_mmap_reads_its_arguments_from_user_memory(system: SystemCalls) -> None:
    space = system.current
    assert space is not None
    block = system.SyscallVirtualAlloc(0, 4096, MEM_COMMIT, PAGE_READWRITE)
    args = struct.pack("<6I", 0x40000000, 8192, RW, ANON, 0xFFFFFFFF, 0)
    assert space.WriteUserMemory(block, args) is True
    assert system.Syscall(SYS_MMAP, block) == 0x40000000
    assert space.allocations[0x40000000].size == 8192
    assert system.Syscall(SYS_MMAP, 0x50000000) == -EFAULT
    assert system.Syscall(SYS_MMAP, block + 4090) == -EFAULT  # runs past the page
    assert space.WriteUserMemory(block, struct.pack("<6I", 0, 4096, RW, ANON, 0, 5)) is True
    assert system.Syscall(SYS_MMAP, block) == -EINVAL


def test_dispatcher_errors(system: SystemCalls) -> None:
    assert system.Syscall(999) == -ENOSYS
    assert system.Syscall(0x1000) == -ENOSYS
    assert system.Syscall("45") == -ENOSYS  # type: ignore[arg-type]
    assert system.Syscall(SYS_BRK) == -EINVAL
    assert system.Syscall(SYS_MUNMAP, 1, 2, 3) == -EINVAL
    assert system.Syscall(SYS_BRK, -1) == -EINVAL
    assert system.Syscall(SYS_BRK, 1 << 32) == -EINVAL
    alone = SystemCalls(system.vmm)
    assert alone.Syscall(SYS_BRK, 0) == -ESRCH
    assert alone.SyscallMmap(0, 4096, RW, ANON, -1, 0) == -ESRCH
    assert alone.SyscallVirtualAlloc(0, 4096, MEM_COMMIT, PAGE_READWRITE) == 0
    assert alone.last_error == ErrorCode.ERROR_INVALID_HANDLE
    assert not alone.SwitchProcess(1) and not alone.DestroyProcess("1")  # type: ignore[arg-type]


def test_dispatcher_sets_last_error_with_every_result(system: SystemCalls) -> None:
    space = system.current
    assert space is not None
    before = snapshot(space)
    for number, args, result, code in (
            (999, (), -ENOSYS, ErrorCode.ERROR_INVALID_FUNCTION),
            (0x1000, (0,), -ENOSYS, ErrorCode.ERROR_INVALID_FUNCTION),
            ("45", (0,), -ENOSYS, ErrorCode.ERROR_INVALID_FUNCTION),
            (SYS_BRK, (), -EINVAL, ErrorCode.ERROR_INVALID_PARAMETER),
            (SYS_MUNMAP, (1, 2, 3), -EINVAL, ErrorCode.ERROR_INVALID_PARAMETER),
            (SYS_BRK, (-1,), -EINVAL, ErrorCode.ERROR_INVALID_PARAMETER),
            (SYS_VIRTUAL_ALLOC, (0, 1 << 32, MEM_COMMIT, PAGE_READWRITE), -EINVAL,
             ErrorCode.ERROR_INVALID_PARAMETER)):
        assert system.Syscall(SYS_BRK, 0) > 0 and system.last_error == ErrorCode.ERROR_SUCCESS
        assert system.Syscall(number, *args) == result  # type: ignore[arg-type]
        assert system.last_error == code, (number, args)
        assert snapshot(space) == before
    alone = SystemCalls(system.vmm)  # no current process
    assert alone.Syscall(SYS_BRK, 0) == -ESRCH
    assert alone.last_error == ErrorCode.ERROR_INVALID_HANDLE
    assert alone.Syscall(SYS_GET_PROCESS_HEAP) == -ESRCH
    assert alone.last_error == ErrorCode.ERROR_INVALID_HANDLE
    assert space.DestroyUserSpace()  # the current process's space destroyed under it
    for number, args, result, code in (
            (SYS_BRK, (0,), -ESRCH, ErrorCode.ERROR_INVALID_HANDLE),
            (SYS_GET_PROCESS_HEAP, (), -ESRCH, ErrorCode.ERROR_INVALID_HANDLE),
            (999, (), -ENOSYS, ErrorCode.ERROR_INVALID_FUNCTION),  # the number comes first
            (SYS_BRK, (), -EINVAL, ErrorCode.ERROR_INVALID_PARAMETER)):
        assert system.Syscall(number, *args) == result
        assert system.last_error == code, (number, args)
    assert system.DestroyProcess(1) and system.processes == {}


NUMBERS = st.sampled_from([SYS_BRK, SYS_MMAP, SYS_MUNMAP, SYS_MPROTECT, SYS_MMAP2,
                           SYS_VIRTUAL_ALLOC, SYS_VIRTUAL_FREE, SYS_GET_PROCESS_HEAP,
                           SYS_HEAP_ALLOC, SYS_HEAP_FREE, SYS_VIRTUAL_QUERY,
                           SYS_VIRTUAL_PROTECT, 7, 0x1008])
VALUES = st.one_of(st.sampled_from([0, 1, 0x1000, HEAP, HEAP + 12, 0x410000, 0x40000000,
                                    0xFFFFFFFF, 0xBFFFF000, MEM_COMMIT, MEM_RESERVE | MEM_COMMIT,
                                    MEM_RELEASE, PAGE_READWRITE, ANON, RW]),
                   st.integers(-2, (1 << 32) + 1), st.none(), st.text(max_size=1))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(NUMBERS, st.lists(VALUES, max_size=7)), max_size=12))
def test_dispatcher_never_raises_and_keeps_the_contract(
        calls: list[tuple[int, list[object]]]) -> None:
    _, vm = world()
    system = SystemCalls(vm)
    assert system.SwitchProcess(system.CreateProcess())
    for number, args in calls:
        result = system.Syscall(number, *args)  # type: ignore[arg-type]
        assert type(result) is int
        space = system.current
        assert space is not None
        check_space(space)


def test_hostile_arguments_change_nothing(system: SystemCalls) -> None:
    space = system.current
    assert space is not None
    heap = system.SyscallGetProcessHeap()
    block = system.SyscallHeapAlloc(heap, 0, 32)
    for value in (None, -1, 1 << 32, 2.5, "x", 0xFFFFFFFF, 0xFFFFF000):
        for call in (
            lambda v=value: system.SyscallHeapAlloc(v, 0, 8),
            lambda v=value: system.SyscallHeapAlloc(heap, v, 8),
            lambda v=value: system.SyscallHeapAlloc(heap, 0, v),
            lambda v=value: system.SyscallHeapFree(v, 0, block),
            lambda v=value: system.SyscallHeapFree(heap, v, block),
            lambda v=value: system.SyscallHeapFree(heap, 0, v),
            lambda v=value: system.SyscallVirtualQuery(v, HEAP, 28),
            lambda v=value: system.SyscallVirtualQuery(0x400000, v, 28),
            lambda v=value: system.SyscallVirtualQuery(0x400000, HEAP, v),
            lambda v=value: system.SyscallVirtualProtect(v, 1, PAGE_READONLY, HEAP),
            lambda v=value: system.SyscallVirtualProtect(0x400000, 1, PAGE_READONLY, v),
            lambda v=value: system.SwitchProcess(v),
            lambda v=value: system.DestroyProcess(v),
        ):
            before = snapshot(space)
            call()
            if system.last_error != ErrorCode.ERROR_SUCCESS:
                assert snapshot(space) == before, call
    assert system.processes == {1: space}


def test_heap_alloc_of_more_than_the_heap_can_ever_hold_is_not_enough_memory() -> None:
    """HeapAlloc reports ERROR_NOT_ENOUGH_MEMORY for any size the process heap cannot
    give, including one the kernel heap refuses as a parameter (Windows' HeapAlloc
    has no invalid size: it fails for want of memory); only a damaged heap says
    ERROR_ARENA_TRASHED (a mutation run found this mapping unchecked)."""
    pm, vm = world()
    system = SystemCalls(vm)
    pid = system.CreateProcess()
    assert system.SwitchProcess(pid)
    heap = system.SyscallGetProcessHeap()
    for size in (0xFFFFFFFF, 0xFFFFFFF0, 0x7FFFFFFF):
        assert system.SyscallHeapAlloc(heap, 0, size) == 0
        assert system.last_error == ErrorCode.ERROR_NOT_ENOUGH_MEMORY, hex(size)
