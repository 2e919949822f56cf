"""MemorySubsystem (seed section 9): boot, kernel stacks, statistics, SYS-1..3.

A boot from kernel_end 0x100000 on the default 16 MB (4096 frames) reserves
frames 0..0x13F (the first MB and the 256 KB placement arena), then takes frame
0x140 for the kernel directory, 0x141 for the identity table, 0x142 for the
heap's table and 0x143..0x242 for the heap's 256 pages: 579 frames used.
``check_system`` checks SYS-1 (frame_owners names exactly the allocated frames),
SYS-2 (total = used + free) and SYS-3 (the first MB reserved) after every test.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from model.memory_subsystem import MemorySubsystem
from model.page_tables import PageDirectory, PageFault
from spec.abi import (
    FAULT_PROTECTION,
    FAULT_USER,
    FAULT_WRITE,
    INVALID_PHYSICAL_ADDRESS,
    KERNEL_STACK_AREA_START,
    KERNEL_STACK_SIZE,
    KHEAP_INITIAL_SIZE,
    KHEAP_MAX,
    KHEAP_START,
    PTE_PRESENT,
    PTE_USER,
    PTE_WRITABLE,
    STACK_SLOTS,
    ErrorCode,
    FrameOwner,
)

E = ErrorCode
MB = 0x100000
BOOT_USED = 579
HOSTILE = [None, -1, 2**32, "x", 1.5, True]
FIRST_TOP = KERNEL_STACK_AREA_START + 0x3000


def booted(kernel_end: int = MB, memory_size: int = 0x1000000) -> MemorySubsystem:
    sub = MemorySubsystem(memory_size)
    assert sub.InitializeMemorySubsystem(kernel_end) and sub.last_error == E.ERROR_SUCCESS
    return sub


def kernel(sub: MemorySubsystem) -> PageDirectory:
    assert sub.virmem.kernel_directory is not None
    return sub.virmem.kernel_directory


def allocated_frames(sub: MemorySubsystem) -> set[int]:
    pm = sub.pageman
    return {frame for frame in range(pm.nframes) if pm.owner[frame] != FrameOwner.FREE}


def check_system(sub: MemorySubsystem) -> None:
    assert set(sub.frame_owners()) == allocated_frames(sub)  # SYS-1
    if sub.pageman.initialized:
        total = sub.GetTotalMemory()
        assert total == sub.GetUsedMemory() + sub.GetAvailableMemory()  # SYS-2
        assert all(sub.pageman.owner[frame] == FrameOwner.RESERVED for frame in range(256))


def state(sub: MemorySubsystem) -> tuple[Any, ...]:
    """Every piece of state (the search hints apart), as plain values."""
    pm, vmm, heap, kernel_memory = sub.pageman, sub.virmem, sub.kheap, sub.kernel
    return (
        pm.initialized, pm.nframes, pm.reserved_end, bytes(pm.owner), list(pm.frames.words),
        {frame: bytes(page) for frame, page in pm.memory.items()},
        None if vmm.kernel_directory is None else vmm.kernel_directory.physical_addr,
        None if vmm.current_directory is None else vmm.current_directory.physical_addr,
        {address: (list(d.tables_physical), [None if t is None else list(t.entries)
                                             for t in d.tables])
         for address, d in vmm.directories.items()},
        None if heap is None else (heap.created, heap.start_address, heap.end_address,
                                   heap.max_address, heap.walk(), heap.holes(),
                                   dict(heap.allocated)),
        kernel_memory.kernel_end, kernel_memory.placement_address, kernel_memory.placement_end,
        kernel_memory.heap is heap, sub.paging_enabled, sub.frame_bitmap_address,
        set(sub.stacks), set(sub.pages), set(sub.mapped), sub.dosmem,
    )


def refused(sub: MemorySubsystem, call: Any, expected: Any, code: ErrorCode) -> None:
    before = state(sub)
    assert call() == expected
    assert sub.last_error == code
    assert state(sub) == before


# -- boot --------------------------------------------------------------------------

def test_fresh_subsystem() -> None:
    sub = MemorySubsystem()
    assert (sub.kheap, sub.dosmem, sub.paging_enabled, sub.stacks) == (None, None, False, set())
    for call in (sub.GetAvailableMemory, sub.GetUsedMemory, sub.GetTotalMemory):
        refused(sub, call, 0, E.ERROR_NOT_READY)
    assert sub.frame_owners() == {}


def test_boot_exact() -> None:
    sub = booted()
    pm, vmm, heap = sub.pageman, sub.virmem, sub.kheap
    assert (pm.nframes, pm.reserved_end) == (4096, 0x140)
    assert sub.kernel.kernel_end == sub.frame_bitmap_address == MB
    assert (sub.kernel.placement_address, sub.kernel.placement_end) == (MB + 512, 0x140000)
    assert vmm.kernel_directory is vmm.current_directory is not None
    assert vmm.kernel_directory.physical_addr == 0x140000 and sub.paging_enabled
    assert heap is not None and heap is sub.kernel.heap
    assert (heap.start_address, heap.end_address, heap.max_address) == (
        KHEAP_START, KHEAP_START + KHEAP_INITIAL_SIZE, KHEAP_MAX)
    assert (heap.supervisor, heap.readonly, heap.directory) == (True, False, vmm.kernel_directory)
    assert sub.GetUsedMemory() == BOOT_USED * 4096
    assert sub.GetAvailableMemory() == (4096 - BOOT_USED) * 4096
    assert sub.GetTotalMemory() == 0x1000000 and sub.last_error == E.ERROR_SUCCESS
    assert Counter(sub.frame_owners().values()) == {
        "reserved": 0x140, "directory": 1, "table": 2, "heap": 256}
    # Everything below the arena's end is identity mapped, nothing above it.
    directory = kernel(sub)
    assert vmm.VirtualToPhysical(directory, 0x13FFFF) == 0x13FFFF
    assert vmm.VirtualToPhysical(directory, 0x140000) == INVALID_PHYSICAL_ADDRESS
    check_system(sub)


def test_boot_unaligned_kernel_end() -> None:
    sub = booted(0x123456)
    assert sub.kernel.placement_end == 0x164000 and sub.pageman.reserved_end == 0x164
    assert sub.kernel.placement_address == 0x123456 + 512
    check_system(sub)


@pytest.mark.parametrize("kernel_end", [0xFFFFF, 0, 0x3C0001, *HOSTILE])
def test_boot_rejects_kernel_end(kernel_end: Any) -> None:
    sub = MemorySubsystem()
    refused(sub, lambda: sub.InitializeMemorySubsystem(kernel_end), False,
            E.ERROR_INVALID_PARAMETER)


@pytest.mark.parametrize(("memory_size", "code"), [
    (0x140000, E.ERROR_INVALID_PARAMETER),   # nothing above the arena
    (0x140FFF, E.ERROR_INVALID_PARAMETER),   # not one whole frame above it
    (2**32 + 4096, E.ERROR_INVALID_PARAMETER), ("16M", E.ERROR_INVALID_PARAMETER),
    (None, E.ERROR_INVALID_PARAMETER),
    (0x200000, E.ERROR_NOT_ENOUGH_MEMORY),    # 192 free frames: no room for the heap
])
def test_boot_all_or_nothing(memory_size: Any, code: ErrorCode) -> None:
    sub = MemorySubsystem(memory_size)
    before = state(sub)
    assert sub.InitializeMemorySubsystem(MB) is False and sub.last_error == code
    assert state(sub) == before
    assert booted(MB).GetTotalMemory() == 0x1000000  # and a good size boots


def test_boot_twice() -> None:
    sub = booted()
    refused(sub, lambda: sub.InitializeMemorySubsystem(MB), False, E.ERROR_ALREADY_INITIALIZED)
    refused(sub, lambda: sub.initialize_physical(MB), False, E.ERROR_ALREADY_INITIALIZED)
    refused(sub, sub.CreateKernelPageDirectory, None, E.ERROR_ALREADY_INITIALIZED)
    refused(sub, sub.EnablePaging, False, E.ERROR_ALREADY_INITIALIZED)
    refused(sub, lambda: sub.CreateKernelHeap(KHEAP_START, KHEAP_START + 0x100000, KHEAP_MAX),
            None, E.ERROR_ALREADY_INITIALIZED)


def test_boot_keeps_its_managers() -> None:
    sub = MemorySubsystem()
    managers = (sub.pageman, sub.virmem, sub.kernel)
    assert sub.InitializeMemorySubsystem(MB)
    assert all(now is then for now, then in zip((sub.pageman, sub.virmem, sub.kernel), managers,
                                                 strict=True))
    started = MemorySubsystem()
    assert started.pageman.InitializePhysicalMemory(MB, 0x1000000)  # booted by hand
    refused(started, lambda: started.InitializeMemorySubsystem(MB), False,
            E.ERROR_ALREADY_INITIALIZED)


def test_steps_alone_in_order() -> None:
    sub = MemorySubsystem()
    refused(sub, sub.CreateKernelPageDirectory, None, E.ERROR_NOT_READY)
    refused(sub, sub.EnablePaging, False, E.ERROR_NOT_READY)
    refused(sub, lambda: sub.CreateKernelHeap(0xC0000000, 0xC0010000, 0xC0100000), None,
            E.ERROR_NOT_READY)
    refused(sub, sub.AllocateKernelStack, 0, E.ERROR_NOT_READY)
    assert sub.initialize_physical(MB) and sub.pageman.initialized
    assert sub.GetTotalMemory() == 0x1000000
    refused(sub, sub.EnablePaging, False, E.ERROR_NOT_READY)
    directory = sub.CreateKernelPageDirectory()
    assert directory is sub.virmem.kernel_directory is not None
    assert sub.last_error == E.ERROR_SUCCESS and not sub.paging_enabled
    refused(sub, lambda: sub.CreateKernelHeap(0xC0000000, 0xC0010000, 0xC0100000), None,
            E.ERROR_NOT_READY)
    refused(sub, sub.AllocateKernelStack, 0, E.ERROR_NOT_READY)
    assert sub.EnablePaging() and sub.paging_enabled
    assert sub.kernel.AllocateKernelMemory(8) == MB + 512  # still the placement arena
    heap = sub.CreateKernelHeap(0xC0000000, 0xC0090000, 0xC0200000)
    assert heap is sub.kheap is sub.kernel.heap is not None
    assert heap.end_address == 0xC0090000 and sub.last_error == E.ERROR_SUCCESS
    assert sub.kernel.AllocateKernelMemory(8) > 0xC0000000  # now the heap
    refused(sub, lambda: sub.InitializeMemorySubsystem(MB), False, E.ERROR_ALREADY_INITIALIZED)
    check_system(sub)


@pytest.mark.parametrize("args", [
    (0xB0000000, 0xB0100000, 0xB1000000),       # below kernel space
    (0xC0000000, 0xC0100000, 0xD0001000),       # max in the stack area
    (0xC0000001, 0xC0100000, KHEAP_MAX),        # the heap's own refusal
    (0xC0100000, 0xC0000000, KHEAP_MAX),
    (0xC0000000, 0xC0010000, KHEAP_MAX),        # no room after the 512 KB index
    *[(bad, 0xC0100000, KHEAP_MAX) for bad in HOSTILE],
    *[(0xC0000000, bad, KHEAP_MAX) for bad in HOSTILE],
    *[(0xC0000000, 0xC0100000, bad) for bad in HOSTILE],
])
def test_create_kernel_heap_rejects(args: tuple[Any, Any, Any]) -> None:
    sub = MemorySubsystem()
    assert sub.initialize_physical(MB) and sub.CreateKernelPageDirectory() and sub.EnablePaging()
    refused(sub, lambda: sub.CreateKernelHeap(*args), None, E.ERROR_INVALID_PARAMETER)


def test_four_gib_saturates_the_total() -> None:
    sub = booted(MB, 2**32)
    assert sub.pageman.nframes == 2**20
    assert sub.GetTotalMemory() == 0xFFFFFFFF and sub.last_error == E.ERROR_SUCCESS
    assert sub.GetUsedMemory() == BOOT_USED * 4096
    assert sub.GetAvailableMemory() == (2**20 - BOOT_USED) * 4096
    assert sub.kernel.placement_address == MB + 2**20 // 8  # a 128 KB frame bitmap


# -- kernel stacks -----------------------------------------------------------------

def test_stack_layout_and_guard_page() -> None:
    sub = booted()
    vmm, directory = sub.virmem, kernel(sub)
    top = sub.AllocateKernelStack()
    assert top == FIRST_TOP and sub.last_error == E.ERROR_SUCCESS and sub.stacks == {top}
    assert sub.GetUsedMemory() == (BOOT_USED + 3) * 4096  # two pages and the area's table
    for page in (top - 0x2000, top - 0x1000):
        table = directory.tables[page >> 22]
        assert table is not None
        assert table.entries[(page >> 12) & 0x3FF] & (PTE_PRESENT | PTE_WRITABLE | PTE_USER) \
            == PTE_PRESENT | PTE_WRITABLE
    assert vmm.VirtualToPhysical(directory, top - KERNEL_STACK_SIZE - 1) == \
        INVALID_PHYSICAL_ADDRESS
    # The whole stack is writable by the kernel, and reads back.
    assert vmm.WriteVirtualMemory(directory, top - 0x2000, b"\xab" * 0x2000, False) is True
    assert vmm.ReadVirtualMemory(directory, top - 0x2000, 0x2000, False) == b"\xab" * 0x2000
    # One byte below the stack is the guard page: an overflow faults.
    assert vmm.WriteVirtualMemory(directory, top - 0x2001, b"x", False) == \
        PageFault(FAULT_WRITE, top - 0x2001)
    assert vmm.WriteVirtualMemory(directory, top - 0x2002, b"push", False) == \
        PageFault(FAULT_WRITE, top - 0x2002)
    # User mode never reaches it.
    assert vmm.WriteVirtualMemory(directory, top - 4, b"x", True) == \
        PageFault(FAULT_PROTECTION | FAULT_WRITE | FAULT_USER, top - 4)
    assert sub.AllocateKernelStack() == FIRST_TOP + 0x3000
    check_system(sub)


def test_stack_slots_reused_lowest_first() -> None:
    sub = booted()
    tops = [sub.AllocateKernelStack() for _ in range(4)]
    assert tops == [FIRST_TOP + i * 0x3000 for i in range(4)]
    free = sub.GetAvailableMemory()
    assert sub.FreeKernelStack(tops[2]) and sub.FreeKernelStack(tops[1])
    assert sub.GetAvailableMemory() == free + 4 * 4096
    assert sub.AllocateKernelStack() == tops[1]
    assert sub.AllocateKernelStack() == tops[2]
    assert sub.AllocateKernelStack() == tops[3] + 0x3000
    check_system(sub)


def test_free_kernel_stack_errors() -> None:
    sub = booted()
    top = sub.AllocateKernelStack()
    for bad in HOSTILE:
        refused(sub, lambda bad=bad: sub.FreeKernelStack(bad), False, E.ERROR_INVALID_PARAMETER)
    for wrong in (top - 1, top + 1, top - 0x2000, top + 0x3000, KERNEL_STACK_AREA_START, 0):
        refused(sub, lambda wrong=wrong: sub.FreeKernelStack(wrong), False,
                E.ERROR_INVALID_ADDRESS)
    assert sub.FreeKernelStack(top) and sub.last_error == E.ERROR_SUCCESS
    refused(sub, lambda: sub.FreeKernelStack(top), False, E.ERROR_INVALID_ADDRESS)
    check_system(sub)


def test_stack_out_of_frames_maps_nothing() -> None:
    sub = booted()
    pm = sub.pageman
    held = [pm.RequestFrame(True, True) for _ in range(pm.GetFreeFrameCount() - 2)]
    assert held[0] == 0x243000 and pm.GetFreeFrameCount() == 2
    # Two free frames: the pages fit, the area's page table does not.
    refused(sub, sub.AllocateKernelStack, 0, E.ERROR_NOT_ENOUGH_MEMORY)
    assert pm.FreeFrame(held[0])
    top = sub.AllocateKernelStack()
    assert top == FIRST_TOP and pm.GetFreeFrameCount() == 0
    assert sub.FreeKernelStack(top)
    assert pm.RequestFrame(True, True) != 0xFFFFFFFF
    # The table exists now; one free frame is one page short.
    refused(sub, sub.AllocateKernelStack, 0, E.ERROR_NOT_ENOUGH_MEMORY)
    check_system(sub)


def test_stack_area_exhaustion() -> None:
    sub = booted(MB, 0x10000000)  # 256 MB: frames for every slot
    tops = [sub.AllocateKernelStack() for _ in range(STACK_SLOTS)]
    assert tops[-1] == KERNEL_STACK_AREA_START + STACK_SLOTS * 0x3000 <= 0xE0000000
    refused(sub, sub.AllocateKernelStack, 0, E.ERROR_NOT_ENOUGH_MEMORY)
    assert sub.FreeKernelStack(tops[100]) and sub.AllocateKernelStack() == tops[100]


# -- the done-when test ------------------------------------------------------

def test_heap_expands_and_contracts_back_exactly() -> None:
    sub = booted(0x180000)
    heap = sub.kheap
    assert heap is not None
    boot_end = heap.end_address
    free_frames = sub.pageman.GetFreeFrameCount()
    pointers: list[int] = []
    while heap.end_address == boot_end or len(pointers) % 16:
        pointer = sub.kernel.AllocateKernelMemory(4000)
        assert pointer and sub.kernel.last_error == E.ERROR_SUCCESS
        assert sub.virmem.WriteVirtualMemory(kernel(sub), pointer, pointer.to_bytes(4, "little")
                                             * 1000, False) is True
        pointers.append(pointer)
    assert heap.end_address > boot_end
    assert sub.pageman.GetFreeFrameCount() < free_frames
    check_system(sub)
    for pointer in pointers:
        data = sub.virmem.ReadVirtualMemory(kernel(sub), pointer, 4000, False)
        assert data == pointer.to_bytes(4, "little") * 1000
    for pointer in pointers:
        assert sub.kernel.FreeKernelMemory(pointer)
    assert heap.end_address == boot_end
    assert sub.pageman.GetFreeFrameCount() == free_frames
    assert heap.allocated == {} and len(heap.holes()) == 1
    check_system(sub)


# -- random runs ---------------------------------------------------------------------

class SubsystemMachine(RuleBasedStateMachine):
    """Heap allocations (aligned or not, large enough to expand), frees, writes and
    kernel stacks interleaved; contents and SYS-1/SYS-2 checked after every step."""

    def __init__(self) -> None:
        super().__init__()
        self.sub = booted()
        self.blocks: dict[int, bytes] = {}
        self.stacks: list[int] = []

    @rule(size=st.integers(0, 0x30000), align=st.booleans(), fill=st.integers(0, 255))
    def alloc(self, size: int, align: bool, fill: int) -> None:
        kernel_memory = self.sub.kernel
        pointer = (kernel_memory.AllocateKernelMemoryAligned(size) if align
                   else kernel_memory.AllocateKernelMemory(size))
        assert pointer and kernel_memory.last_error == E.ERROR_SUCCESS
        assert not align or pointer % 4096 == 0
        data = bytes([fill]) * size
        assert self.sub.virmem.WriteVirtualMemory(kernel(self.sub), pointer, data, False) is True
        self.blocks[pointer] = data

    @precondition(lambda self: self.blocks)
    @rule(data=st.data())
    def free(self, data: st.DataObject) -> None:
        pointer = data.draw(st.sampled_from(sorted(self.blocks)))
        assert self.sub.kernel.FreeKernelMemory(pointer)
        del self.blocks[pointer]

    @rule()
    def stack(self) -> None:
        top = self.sub.AllocateKernelStack()
        assert top and top not in self.stacks
        self.stacks.append(top)

    @precondition(lambda self: self.stacks)
    @rule(data=st.data())
    def free_stack(self, data: st.DataObject) -> None:
        top = data.draw(st.sampled_from(self.stacks))
        assert self.sub.FreeKernelStack(top)
        self.stacks.remove(top)

    @invariant()
    def intact(self) -> None:
        check_system(self.sub)
        vmm, directory = self.sub.virmem, kernel(self.sub)
        for pointer, data in self.blocks.items():
            assert vmm.ReadVirtualMemory(directory, pointer, len(data), False) == data


TestSubsystemMachine = SubsystemMachine.TestCase
TestSubsystemMachine.settings = settings(max_examples=15, stateful_step_count=25, deadline=None,
                                         suppress_health_check=[HealthCheck.too_slow])


def test_processes_frames_are_owned_and_all_come_back() -> None:
    """SYS-1 covers the user spaces: committed pages (mapped, or held while
    PAGE_NOACCESS), the process heaps, directories and tables; destroying every
    process gives every frame back."""
    from spec.abi import MEM_COMMIT, MEM_RESERVE, PAGE_NOACCESS, PAGE_READWRITE

    sub = booted()
    calls = sub.syscalls
    free = sub.GetAvailableMemory()
    pids = [calls.CreateProcess(), calls.CreateProcess()]
    assert all(pids) and calls.SwitchProcess(pids[0])
    base = calls.SyscallVirtualAlloc(0, 0x5000, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE)
    assert base and calls.SyscallVirtualAlloc(base, 0x2000, MEM_COMMIT, PAGE_NOACCESS) == base
    assert calls.SyscallHeapAlloc(calls.SyscallGetProcessHeap(), 0, 100)
    assert calls.SwitchProcess(pids[1])
    assert calls.SyscallMmap(0, 0x3000, 3, 0x22, 0xFFFFFFFF, 0) > 0
    owners = sub.frame_owners()
    check_system(sub)
    assert Counter(owners.values())["user"] >= 5 + 3
    assert sub.GetAvailableMemory() < free
    assert all(calls.DestroyProcess(pid) for pid in pids)
    check_system(sub)
    assert sub.GetAvailableMemory() == free


@pytest.mark.parametrize("frames", [4096, 4097, 4127, 4128, 32769])
def test_the_frame_bitmap_takes_one_bit_per_frame_in_whole_words(frames: int) -> None:
    """The bitmap's placement allocation is ceil(frames / 32) 32-bit words, so the
    next placement starts right after its last word (a mutation run found a
    rounding of (frames + 30) // 32 unnoticed: one word short when frames % 32 is 1)."""
    sub = MemorySubsystem(frames * 0x1000)
    assert sub.InitializeMemorySubsystem(MB)
    words = -(-frames // 32)
    assert sub.kernel.placement_address == sub.frame_bitmap_address + 4 * words


def test_frame_owners_name_xms_and_ems_frames_dos() -> None:
    """SYS-1 (spec/memory_subsystem.py): each frame is claimed by exactly one
    owner, and the DOS layer's frames, the XMS pool and every EMS page's frames
    alike, are claimed "dos" (a mutation run found the union of the two
    unchecked: a frame named "held" instead passed the frame-set check)."""
    sub = booted()
    dos = sub.InitializeDosMemory()
    assert dos is not None
    assert dos.ems.EmsAllocate(2)
    xms, ems = dos.xms.frames(), dos.ems.frames()
    assert xms and ems and not xms & ems
    owners = sub.frame_owners()
    assert {frame: owners[frame] for frame in xms | ems} == dict.fromkeys(xms | ems, "dos")
    check_system(sub)


def test_initialize_dos_memory_twice_is_already_initialized() -> None:
    """InitializeDosMemory creates ``dosmem`` once (model/memory_subsystem.py: done
    twice, ERROR_ALREADY_INITIALIZED): the manager it returns is the subsystem's
    dosmem, a second call changes nothing, and SYS-1 names the DOS layer's frames
    "dos" (a mutation run found the assignment of dosmem unchecked)."""
    sub = booted()
    dos = sub.InitializeDosMemory()
    assert dos is not None and sub.last_error == E.ERROR_SUCCESS and sub.dosmem is dos
    refused(sub, sub.InitializeDosMemory, None, E.ERROR_ALREADY_INITIALIZED)
    assert sub.dosmem is dos
    assert dos.xms.frames() and set(sub.frame_owners().values()) >= {"dos"}
    check_system(sub)
