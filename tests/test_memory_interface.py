"""The unified interface (seed section 10) over a booted subsystem.

Booted from kernel_end 0x100000 on 16 MB: the heap's first block has its
payload at 0xC008000C; frames 0x243 and up are free (test_memory_subsystem.py
explains the layout). Every test ends with SYS-1: frame_owners names exactly
the allocated frames, so each page or mapping made here has one owner.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from model.memory_interface import MemoryInterface
from model.memory_subsystem import MemorySubsystem
from model.page_tables import PageDirectory, PageFault
from spec.abi import (
    FAULT_PROTECTION,
    FAULT_WRITE,
    PAGE_AREA_END,
    PAGE_AREA_START,
    PTE_PRESENT,
    PTE_USER,
    PTE_WRITABLE,
    ErrorCode,
    FrameOwner,
)

E = ErrorCode
FIRST = 0xC008000C
FREE_FRAME = 0x800000
FREE_VIRTUAL = 0xF0000000
HOSTILE = [None, -1, 2**32, "x", 1.5, True]


def booted() -> MemoryInterface:
    sub = MemorySubsystem()
    assert sub.InitializeMemorySubsystem(0x100000)
    return MemoryInterface(sub)


def kernel(api: MemoryInterface) -> PageDirectory:
    assert api.subsystem.virmem.kernel_directory is not None
    return api.subsystem.virmem.kernel_directory


def pte(directory: PageDirectory, page: int) -> int:
    table = directory.tables[page >> 22]
    return 0 if table is None else table.entries[(page >> 12) & 0x3FF]


def check_sys1(api: MemoryInterface) -> None:
    pm = api.subsystem.pageman
    assert set(api.subsystem.frame_owners()) == {
        frame for frame in range(pm.nframes) if pm.owner[frame] != FrameOwner.FREE}


def state(api: MemoryInterface) -> tuple[Any, ...]:
    sub = api.subsystem
    pm, vmm, heap = sub.pageman, sub.virmem, sub.kheap
    return (
        bytes(pm.owner), list(pm.frames.words),
        {frame: bytes(page) for frame, page in pm.memory.items()},
        {address: [None if t is None else list(t.entries) for t in d.tables]
         for address, d in vmm.directories.items()},
        None if vmm.current_directory is None else vmm.current_directory.physical_addr,
        None if heap is None else (heap.end_address, heap.walk(), heap.holes(),
                                   dict(heap.allocated)),
        set(sub.pages), set(sub.mapped), set(sub.stacks), dict(api.aligned), dict(api.inner),
    )


def refused(api: MemoryInterface, call: Any, expected: Any, code: ErrorCode) -> None:
    before = state(api)
    assert call() == expected
    assert api.last_error == code
    assert state(api) == before


def write(api: MemoryInterface, address: int, data: bytes) -> None:
    assert api.subsystem.virmem.WriteVirtualMemory(kernel(api), address, data, False) is True


def read(api: MemoryInterface, address: int, length: int) -> bytes:
    data = api.subsystem.virmem.ReadVirtualMemory(kernel(api), address, length, False)
    assert isinstance(data, bytes)
    return data


# -- before boot -------------------------------------------------------------------

def test_not_ready_before_boot() -> None:
    api = MemoryInterface(MemorySubsystem())
    for call, failure in ((lambda: api.AllocateMemory(8), 0),
                          (lambda: api.AllocateAlignedMemory(8, 16), 0),
                          (lambda: api.FreeMemory(FIRST), False),
                          (lambda: api.GetMemorySize(FIRST), 0),
                          (api.GetTotalPhysicalMemory, 0), (api.GetFreePhysicalMemory, 0),
                          (api.GetUsedPhysicalMemory, 0), (api.GetFreePage, 0),
                          (lambda: api.ReleasePage(PAGE_AREA_START), False),
                          (lambda: api.MapPage(FREE_VIRTUAL, FREE_FRAME, True, True), False),
                          (lambda: api.UnmapPage(FREE_VIRTUAL), False)):
        refused(api, call, failure, E.ERROR_NOT_READY)


# -- heap allocation ---------------------------------------------------------------

def test_allocate_size_free() -> None:
    api = booted()
    assert api.AllocateMemory(100) == FIRST and api.last_error == E.ERROR_SUCCESS
    assert api.GetMemorySize(FIRST) == 100 and api.last_error == E.ERROR_SUCCESS
    empty = api.AllocateMemory(0)
    assert api.GetMemorySize(empty) == 0 and api.last_error == E.ERROR_SUCCESS
    assert api.FreeMemory(FIRST) and api.last_error == E.ERROR_SUCCESS
    refused(api, lambda: api.FreeMemory(FIRST), False, E.ERROR_INVALID_BLOCK)
    refused(api, lambda: api.FreeMemory(empty + 1), False, E.ERROR_INVALID_ADDRESS)
    refused(api, lambda: api.GetMemorySize(FIRST), 0, E.ERROR_INVALID_ADDRESS)
    refused(api, lambda: api.AllocateMemory(0x20000000), 0, E.ERROR_NOT_ENOUGH_MEMORY)
    check_sys1(api)


@pytest.mark.parametrize("alignment", [1, 2, 4, 8, 16, 64, 1024, 4096, 8192, 0x10000])
def test_aligned_allocation(alignment: int) -> None:
    api = booted()
    heap = api.subsystem.kheap
    assert heap is not None
    pointers = [api.AllocateAlignedMemory(size, alignment) for size in (1, 100, 5000)]
    for pointer, size in zip(pointers, (1, 100, 5000), strict=True):
        assert pointer and pointer % alignment == 0
        assert api.GetMemorySize(pointer) == size and api.last_error == E.ERROR_SUCCESS
        write(api, pointer, bytes([size % 251]) * size)
    for pointer, size in zip(pointers, (1, 100, 5000), strict=True):
        assert read(api, pointer, size) == bytes([size % 251]) * size
    check_sys1(api)
    for pointer in pointers:
        assert api.FreeMemory(pointer) and api.last_error == E.ERROR_SUCCESS
    assert heap.allocated == {} and api.aligned == {} and api.inner == {}


def test_aligned_pointer_hides_its_block() -> None:
    api = booted()
    pointer = api.AllocateAlignedMemory(32, 16)
    assert pointer == 0xC0080010 and api.aligned == {pointer: (FIRST, 32)}
    # The block's own payload was never handed out.
    refused(api, lambda: api.FreeMemory(FIRST), False, E.ERROR_INVALID_ADDRESS)
    refused(api, lambda: api.GetMemorySize(FIRST), 0, E.ERROR_INVALID_ADDRESS)
    assert api.FreeMemory(pointer)
    refused(api, lambda: api.FreeMemory(pointer), False, E.ERROR_INVALID_ADDRESS)


def test_page_alignment_uses_page_align() -> None:
    api = booted()
    pointer = api.AllocateAlignedMemory(10, 4096)
    heap = api.subsystem.kheap
    assert heap is not None and pointer == 0xC0081000
    assert heap.allocated[pointer - 12].page_align and api.aligned == {}


@pytest.mark.parametrize("alignment", [0, 3, 6, 4097, 0x30000, *HOSTILE])
def test_aligned_rejects_alignment(alignment: Any) -> None:
    api = booted()
    refused(api, lambda: api.AllocateAlignedMemory(8, alignment), 0, E.ERROR_INVALID_PARAMETER)


def test_aligned_huge() -> None:
    api = booted()
    refused(api, lambda: api.AllocateAlignedMemory(0xFFFFFFF0, 64), 0, E.ERROR_INVALID_PARAMETER)
    refused(api, lambda: api.AllocateAlignedMemory(8, 2**31), 0, E.ERROR_NOT_ENOUGH_MEMORY)


@pytest.mark.parametrize("bad", HOSTILE)
def test_hostile_pointers_and_sizes(bad: Any) -> None:
    api = booted()
    api.AllocateMemory(8)
    refused(api, lambda: api.AllocateMemory(bad), 0, E.ERROR_INVALID_PARAMETER)
    refused(api, lambda: api.AllocateAlignedMemory(bad, 16), 0, E.ERROR_INVALID_PARAMETER)
    refused(api, lambda: api.FreeMemory(bad), False, E.ERROR_INVALID_PARAMETER)
    refused(api, lambda: api.GetMemorySize(bad), 0, E.ERROR_INVALID_PARAMETER)
    refused(api, lambda: api.ReleasePage(bad), False, E.ERROR_INVALID_PARAMETER)
    refused(api, lambda: api.UnmapPage(bad), False, E.ERROR_INVALID_PARAMETER)
    for position in range(4 if bad is not True else 2):  # True is a good flag
        args: list[Any] = [FREE_VIRTUAL, FREE_FRAME, True, True]
        args[position] = bad
        refused(api, lambda args=args: api.MapPage(*args), False, E.ERROR_INVALID_PARAMETER)


# -- statistics -------------------------------------------------------------------

def test_statistics() -> None:
    api = booted()
    assert api.GetTotalPhysicalMemory() == 0x1000000 and api.last_error == E.ERROR_SUCCESS
    assert api.GetUsedPhysicalMemory() == 579 * 4096
    assert api.GetFreePhysicalMemory() == (4096 - 579) * 4096
    api.GetFreePage()  # a page and the page area's table
    assert api.GetUsedPhysicalMemory() == 581 * 4096
    assert api.GetFreePhysicalMemory() + api.GetUsedPhysicalMemory() == 0x1000000


# -- pages ------------------------------------------------------------------------

def test_free_pages_lowest_first_zeroed() -> None:
    api = booted()
    first, second = api.GetFreePage(), api.GetFreePage()
    assert (first, second) == (PAGE_AREA_START, PAGE_AREA_START + 0x1000)
    assert api.last_error == E.ERROR_SUCCESS and api.subsystem.pages == {first, second}
    assert pte(kernel(api), first) & (PTE_PRESENT | PTE_WRITABLE | PTE_USER) == \
        PTE_PRESENT | PTE_WRITABLE
    write(api, first, b"\xee" * 4096)
    assert api.ReleasePage(first) and api.last_error == E.ERROR_SUCCESS
    assert api.GetFreePage() == first  # the lowest again, on a zeroed frame
    assert read(api, first, 4096) == bytes(4096)
    assert api.GetFreePage() == PAGE_AREA_START + 0x2000
    check_sys1(api)
    assert {name for name in api.subsystem.frame_owners().values()} >= {"page"}


def test_release_page_errors() -> None:
    api = booted()
    page = api.GetFreePage()
    stack = api.subsystem.AllocateKernelStack()
    for wrong in (page + 1, page + 0x1000, PAGE_AREA_END, FIRST, stack - 0x1000, 0):
        refused(api, lambda wrong=wrong: api.ReleasePage(wrong), False, E.ERROR_INVALID_ADDRESS)
    assert api.ReleasePage(page)
    refused(api, lambda: api.ReleasePage(page), False, E.ERROR_INVALID_ADDRESS)
    check_sys1(api)


def test_free_page_out_of_frames() -> None:
    api = booted()
    pm = api.subsystem.pageman
    for _ in range(pm.GetFreeFrameCount() - 1):
        pm.RequestFrame(True, True)
    refused(api, api.GetFreePage, 0, E.ERROR_NOT_ENOUGH_MEMORY)  # page + table > 1 frame
    check_sys1(api)


def test_map_free_frame() -> None:
    api = booted()
    vmm, pm = api.subsystem.virmem, api.subsystem.pageman
    assert api.MapPage(FREE_VIRTUAL, FREE_FRAME, True, True) and api.last_error == E.ERROR_SUCCESS
    assert vmm.VirtualToPhysical(kernel(api), FREE_VIRTUAL + 5) == FREE_FRAME + 5
    assert pm.owner[FREE_FRAME >> 12] == FrameOwner.MAPPED
    assert api.subsystem.frame_owners()[FREE_FRAME >> 12] == "mapped"
    write(api, FREE_VIRTUAL, b"data")
    assert pm.ReadPhysicalMemory(FREE_FRAME, 4) == b"data"
    check_sys1(api)
    free = pm.GetFreeFrameCount()
    assert api.UnmapPage(FREE_VIRTUAL) and api.last_error == E.ERROR_SUCCESS
    assert pm.owner[FREE_FRAME >> 12] == FrameOwner.FREE and pm.GetFreeFrameCount() == free + 1
    refused(api, lambda: api.UnmapPage(FREE_VIRTUAL), False, E.ERROR_INVALID_ADDRESS)
    check_sys1(api)


def test_map_held_frame_readonly() -> None:
    api = booted()
    vmm, pm = api.subsystem.virmem, api.subsystem.pageman
    held = pm.RequestFrame(True, True)
    assert api.MapPage(0xCFFFF000, held, True, False)  # between the heap's max and the stacks
    assert pte(kernel(api), 0xCFFFF000) & (PTE_WRITABLE | PTE_USER) == 0
    assert vmm.WriteVirtualMemory(kernel(api), 0xCFFFF000, b"x", False) == \
        PageFault(FAULT_PROTECTION | FAULT_WRITE, 0xCFFFF000)
    check_sys1(api)


def test_map_page_refusals() -> None:
    api = booted()
    sub = api.subsystem
    assert api.MapPage(FREE_VIRTUAL, FREE_FRAME, True, True)
    heap_frame = sub.virmem.VirtualToPhysical(kernel(api), 0xC0000000)
    stack = sub.AllocateKernelStack()
    for busy in (0, 0xFF000, heap_frame, 0x140000, 0x141000, FREE_FRAME):
        refused(api, lambda busy=busy: api.MapPage(0xF0001000, busy, True, True), False,
                E.ERROR_BUSY)
    refused(api, lambda: api.MapPage(0xF0001000, 0x1000000, True, True), False,
            E.ERROR_INVALID_ADDRESS)
    for owned in (0, 0x3FF000, 0xC0000000, 0xC0100000, 0xCFFFE000, stack, stack - 0x3000,
                  PAGE_AREA_START, PAGE_AREA_END - 0x1000, 0x400000, 0xBFFFF000):
        refused(api, lambda owned=owned: api.MapPage(owned, 0x900000, True, True), False,
                E.ERROR_ACCESS_DENIED)
    refused(api, lambda: api.MapPage(0xF0001000, 0x900000, False, True), False,
            E.ERROR_ACCESS_DENIED)  # a user page in kernel space
    refused(api, lambda: api.MapPage(FREE_VIRTUAL, 0x900000, True, True), False,
            E.ERROR_ALREADY_EXISTS)
    for unaligned in ((0xF0001001, 0x900000), (0xF0001000, 0x900001)):
        refused(api, lambda unaligned=unaligned: api.MapPage(*unaligned, True, True), False,
                E.ERROR_INVALID_PARAMETER)
    for other in (0xC0000000, stack - 0x1000, 0xF0001000):
        refused(api, lambda other=other: api.UnmapPage(other), False, E.ERROR_INVALID_ADDRESS)
    check_sys1(api)


def test_map_page_needs_a_table_frame() -> None:
    api = booted()
    pm = api.subsystem.pageman
    held = [pm.RequestFrame(True, True) for _ in range(pm.GetFreeFrameCount() - 1)]
    last_free = pm.FirstFreeFrame()
    # A free frame and a missing table: two frames, one free.
    refused(api, lambda: api.MapPage(FREE_VIRTUAL, last_free, True, True), False,
            E.ERROR_NOT_ENOUGH_MEMORY)
    assert api.MapPage(FREE_VIRTUAL, held[0], True, True)  # the table takes the last frame
    assert pm.GetFreeFrameCount() == 0
    assert api.MapPage(FREE_VIRTUAL + 0x1000, held[1], True, True)  # same table: no frame
    check_sys1(api)


def test_map_in_a_user_directory() -> None:
    api = booted()
    vmm, pm = api.subsystem.virmem, api.subsystem.pageman
    user = vmm.CreatePageDirectory()
    assert user is not None and vmm.SwitchPageDirectory(user)
    assert api.MapPage(0x400000, FREE_FRAME, False, True)
    assert api.subsystem.mapped == {(user.physical_addr, 0x400000)}
    assert vmm.WriteVirtualMemory(user, 0x400000, b"user", True) is True
    check_sys1(api)
    assert vmm.SwitchPageDirectory(kernel(api))
    refused(api, lambda: api.UnmapPage(0x400000), False, E.ERROR_INVALID_ADDRESS)
    assert vmm.SwitchPageDirectory(user) and api.UnmapPage(0x400000)
    assert pm.owner[FREE_FRAME >> 12] == FrameOwner.FREE
    check_sys1(api)


def test_frame_owners_detects_an_unrecorded_mapping() -> None:
    api = booted()
    vmm = api.subsystem.virmem
    assert vmm.AllocPage(kernel(api), 0xF0000000, True, True)  # behind the interface's back
    frame = vmm.VirtualToPhysical(kernel(api), 0xF0000000) >> 12
    assert frame not in api.subsystem.frame_owners()
    api.subsystem.mapped.add((kernel(api).physical_addr, 0xF0000000))
    api.subsystem.pages.add(0xF0000000)  # two claims on one frame
    assert frame not in api.subsystem.frame_owners()


# -- random runs ----------------------------------------------------------------------

class InterfaceMachine(RuleBasedStateMachine):
    """Allocations of every alignment (large enough to expand and contract the heap),
    frees, pages and mappings interleaved; contents and SYS-1 after every step."""

    def __init__(self) -> None:
        super().__init__()
        self.api = booted()
        self.blocks: dict[int, bytes] = {}
        self.pages: dict[int, bytes] = {}
        self.mapped: list[int] = []

    @rule(size=st.integers(0, 0x28000), shift=st.integers(0, 16), fill=st.integers(0, 255))
    def alloc(self, size: int, shift: int, fill: int) -> None:
        pointer = self.api.AllocateAlignedMemory(size, 1 << shift)
        assert pointer and pointer % (1 << shift) == 0
        assert self.api.GetMemorySize(pointer) == size
        data = bytes([fill]) * size
        write(self.api, pointer, data)
        self.blocks[pointer] = data

    @precondition(lambda self: self.blocks)
    @rule(data=st.data())
    def free(self, data: st.DataObject) -> None:
        pointer = data.draw(st.sampled_from(sorted(self.blocks)))
        assert self.api.FreeMemory(pointer)
        del self.blocks[pointer]

    @rule(fill=st.integers(1, 255))
    def page(self, fill: int) -> None:
        page = self.api.GetFreePage()
        assert page and read(self.api, page, 4096) == bytes(4096)
        write(self.api, page, bytes([fill]) * 16)
        self.pages[page] = bytes([fill]) * 16

    @precondition(lambda self: self.pages)
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        page = data.draw(st.sampled_from(sorted(self.pages)))
        assert self.api.ReleasePage(page)
        del self.pages[page]

    @rule(slot=st.integers(0, 7))
    def map(self, slot: int) -> None:
        virtual = FREE_VIRTUAL + slot * 0x1000
        pm = self.api.subsystem.pageman
        result = self.api.MapPage(virtual, pm.FirstFreeFrame(), True, True)
        assert result == (virtual not in self.mapped)
        if result:
            self.mapped.append(virtual)

    @precondition(lambda self: self.mapped)
    @rule(data=st.data())
    def unmap(self, data: st.DataObject) -> None:
        virtual = data.draw(st.sampled_from(self.mapped))
        assert self.api.UnmapPage(virtual)
        self.mapped.remove(virtual)

    @invariant()
    def intact(self) -> None:
        check_sys1(self.api)
        for pointer, data in self.blocks.items():
            assert read(self.api, pointer, len(data)) == data
        for page, data in self.pages.items():
            assert read(self.api, page, 16) == data


TestInterfaceMachine = InterfaceMachine.TestCase
TestInterfaceMachine.settings = settings(max_examples=15, stateful_step_count=25, deadline=None,
                                         suppress_health_check=[HealthCheck.too_slow])
