"""The kernel allocation functions (seed section 3): placement arena, then the heap.

Exact addresses: a placement arena from kernel_end, the tutorial's kmalloc_int;
after boot (kernel_end 0x100000, 16 MB) the heap's first block has its header
at data_start 0xC0080000, and its page 128 is frame 0x1C3 (frames 0..0x13F
reserved, 0x140 the directory, 0x141 the identity table, 0x142 the heap's
table, 0x143.. the heap's pages).
"""

from __future__ import annotations

from typing import Any

import pytest

from model.kernel_memory import KernelMemory, placement_limit
from model.memory_subsystem import MemorySubsystem
from model.page_manager import PageManager
from model.virtual_memory import VirtualMemoryManager
from spec.abi import LOW_MEMORY_END, PLACEMENT_ARENA_SIZE, ErrorCode

E = ErrorCode
HOSTILE = [None, -1, 2**32, "16", 1.5, True, b"\x10"]
HEAP_PAYLOAD = 0xC008000C
HEAP_PHYSICAL = 0x1C300C


def fresh(kernel_end: int | None = 0x123456) -> KernelMemory:
    kernel = KernelMemory(VirtualMemoryManager(PageManager()))
    if kernel_end is not None:
        assert kernel.initialize_placement(kernel_end) and kernel.last_error == E.ERROR_SUCCESS
    return kernel


def booted() -> MemorySubsystem:
    sub = MemorySubsystem()
    assert sub.InitializeMemorySubsystem(0x100000)
    return sub


def state(kernel: KernelMemory) -> tuple[Any, ...]:
    heap = kernel.heap
    pm = kernel.vmm.pageman
    heap_state = None if heap is None else (
        heap.walk(), heap.holes(), dict(heap.allocated), heap.end_address)
    return (kernel.kernel_end, kernel.placement_address, kernel.placement_end, heap_state,
            bytes(pm.owner), list(pm.frames.words),
            {frame: bytes(page) for frame, page in pm.memory.items()})


def refused(kernel: KernelMemory, call: Any, expected: Any, code: ErrorCode) -> None:
    before = state(kernel)
    assert call() == expected
    assert kernel.last_error == code
    assert state(kernel) == before


# -- placement arena -------------------------------------------------------------

def test_placement_arena_bounds() -> None:
    kernel = fresh()
    assert kernel.kernel_end == kernel.placement_address == 0x123456
    assert kernel.placement_end == 0x164000 == placement_limit(0x123456)
    assert fresh(LOW_MEMORY_END).placement_end == 0x100000 + PLACEMENT_ARENA_SIZE
    assert fresh(0x3C0000).placement_end == 0x400000  # ends exactly at the identity limit


@pytest.mark.parametrize("kernel_end", [0xFFFFF, 0, 0x3C0001, 0x3FF000, *HOSTILE])
def test_initialize_placement_rejects(kernel_end: Any) -> None:
    kernel = fresh(None)
    refused(kernel, lambda: kernel.initialize_placement(kernel_end), False,
            E.ERROR_INVALID_PARAMETER)


def test_initialize_placement_twice() -> None:
    kernel = fresh()
    refused(kernel, lambda: kernel.initialize_placement(0x200000), False,
            E.ERROR_ALREADY_INITIALIZED)


def test_not_ready_before_kernel_end() -> None:
    kernel = fresh(None)
    refused(kernel, lambda: kernel.AllocateKernelMemory(8), 0, E.ERROR_NOT_READY)
    refused(kernel, lambda: kernel.AllocateKernelMemoryAligned(8), 0, E.ERROR_NOT_READY)
    refused(kernel, lambda: kernel.AllocateKernelPhysicalMemory(8), (0, 0), E.ERROR_NOT_READY)
    refused(kernel, lambda: kernel.AllocateKernelAlignedPhysical(8), (0, 0), E.ERROR_NOT_READY)
    refused(kernel, lambda: kernel.FreeKernelMemory(0x100000), False, E.ERROR_NOT_READY)


def test_placement_bump_and_align() -> None:
    kernel = fresh()
    assert kernel.AllocateKernelMemory(10) == 0x123456
    assert kernel.placement_address == 0x123460
    assert kernel.AllocateKernelPhysicalMemory(0) == (0x123460, 0x123460)  # kmalloc_int(0)
    assert kernel.placement_address == 0x123460
    assert kernel.AllocateKernelMemoryAligned(0x1000) == 0x124000
    assert kernel.placement_address == 0x125000
    # Already aligned: not moved a page further (the tutorial's mask test would).
    assert kernel.AllocateKernelAlignedPhysical(8) == (0x125000, 0x125000)
    assert kernel.placement_address == 0x125008
    assert kernel.last_error == E.ERROR_SUCCESS


def test_placement_exhaustion_exact() -> None:
    kernel = fresh()
    rest = kernel.placement_end - kernel.placement_address
    refused(kernel, lambda: kernel.AllocateKernelMemory(rest + 1), 0, E.ERROR_NOT_ENOUGH_MEMORY)
    # An aligned request that would fit unaligned does not fit once aligned.
    refused(kernel, lambda: kernel.AllocateKernelAlignedPhysical(rest - 0x100), (0, 0),
            E.ERROR_NOT_ENOUGH_MEMORY)
    assert kernel.AllocateKernelMemory(rest) == 0x123456
    assert kernel.placement_address == kernel.placement_end == 0x164000
    refused(kernel, lambda: kernel.AllocateKernelMemory(1), 0, E.ERROR_NOT_ENOUGH_MEMORY)
    assert kernel.AllocateKernelMemory(0) == 0x164000


@pytest.mark.parametrize("size", HOSTILE)
def test_hostile_sizes(size: Any) -> None:
    for kernel in (fresh(), booted().kernel):
        for call, failure in ((kernel.AllocateKernelMemory, 0),
                              (kernel.AllocateKernelMemoryAligned, 0),
                              (kernel.AllocateKernelPhysicalMemory, (0, 0)),
                              (kernel.AllocateKernelAlignedPhysical, (0, 0))):
            refused(kernel, lambda call=call: call(size), failure, E.ERROR_INVALID_PARAMETER)
        refused(kernel, lambda kernel=kernel: kernel.FreeKernelMemory(size), False,
                E.ERROR_INVALID_PARAMETER)


def test_placement_memory_is_permanent() -> None:
    kernel = fresh()
    address = kernel.AllocateKernelMemory(16)
    refused(kernel, lambda: kernel.FreeKernelMemory(address), False, E.ERROR_INVALID_ADDRESS)
    refused(kernel, lambda: kernel.FreeKernelMemory(0x200000), False, E.ERROR_INVALID_ADDRESS)


# -- after boot: the heap ------------------------------------------------------

def test_boot_took_the_frame_bitmap_from_the_arena() -> None:
    sub = booted()
    assert sub.frame_bitmap_address == 0x100000
    assert sub.kernel.placement_address == 0x100000 + 4096 // 8
    assert sub.kernel.heap is sub.kheap


def test_heap_allocation_and_physical_address() -> None:
    sub = booted()
    kernel = sub.kernel
    assert kernel.AllocateKernelPhysicalMemory(100) == (HEAP_PAYLOAD, HEAP_PHYSICAL)
    assert kernel.last_error == E.ERROR_SUCCESS
    virtual, physical = kernel.AllocateKernelAlignedPhysical(100)
    assert (virtual, physical) == (0xC0081000, 0x1C4000)
    assert sub.kheap is not None and sub.kheap.allocated[virtual - 12].page_align
    assert kernel.AllocateKernelMemoryAligned(8) == 0xC0082000
    assert kernel.AllocateKernelMemory(0) != 0
    # Contiguous within a page only: the physical address is the translation.
    assert sub.virmem.kernel_directory is not None
    assert sub.virmem.VirtualToPhysical(sub.virmem.kernel_directory, virtual) == physical


def test_heap_free_and_its_errors() -> None:
    sub = booted()
    kernel = sub.kernel
    pointer = kernel.AllocateKernelMemory(64)
    other = kernel.AllocateKernelMemory(64)
    assert kernel.FreeKernelMemory(pointer) and kernel.last_error == E.ERROR_SUCCESS
    refused(kernel, lambda: kernel.FreeKernelMemory(pointer), False, E.ERROR_INVALID_BLOCK)
    refused(kernel, lambda: kernel.FreeKernelMemory(other + 4), False, E.ERROR_INVALID_ADDRESS)
    refused(kernel, lambda: kernel.FreeKernelMemory(sub.frame_bitmap_address), False,
            E.ERROR_INVALID_ADDRESS)
    assert kernel.FreeKernelMemory(other)
    assert sub.kheap is not None and sub.kheap.allocated == {}


def test_heap_refusal_is_the_heaps() -> None:
    kernel = booted().kernel
    refused(kernel, lambda: kernel.AllocateKernelMemory(0x10000000), 0,
            E.ERROR_NOT_ENOUGH_MEMORY)
    refused(kernel, lambda: kernel.AllocateKernelPhysicalMemory(0xFFFFFFFF), (0, 0),
            E.ERROR_INVALID_PARAMETER)
