"""Kernel allocation functions (seed section 3): the placement allocator, then the heap.

The seed's free functions are methods of ``KernelMemory``, names exact. Decisions:

- The physical-address out parameter of AllocateKernelPhysicalMemory and
  AllocateKernelAlignedPhysical is returned: ``(virtual, physical)``, ``(0, 0)`` on
  failure (NULL, as the seed's uint32 return).
- Before the heap exists, allocations bump ``placement_address`` through a
  placement arena, the tutorial's kmalloc_int: the arena is
  [kernel_end, placement_end) with placement_end = align_up(kernel_end +
  PLACEMENT_ARENA_SIZE), reserved and identity mapped at boot (it lies below
  InitializePhysicalMemory's mem_start), so physical == virtual. The tutorial
  lets placement_address run on until paging reserves what it reached; a fixed
  arena reserved up front fixes the reserved range before the frame bitmap exists.
- The aligned variants move placement_address up to a page boundary only when it
  is not on one (the tutorial's ``placement_address & 0xFFFFF000`` test aligns an
  aligned address once more).
- Size 0 is allowed: the placement allocator returns the current address without
  moving (kmalloc_int(0)); the heap gives a block with an empty payload
  (HeapAlloc(0)). A placement request past the arena: ERROR_NOT_ENOUGH_MEMORY.
- Placement memory is permanent: FreeKernelMemory of an arena address is
  ERROR_INVALID_ADDRESS (the tutorial's kfree frees heap memory only; Linux's
  bootmem stays until free_initmem).
- Before ``initialize_placement`` (InitializeMemorySubsystem sets kernel_end):
  ERROR_NOT_READY.
- Once ``heap`` is set (CreateKernelHeap) they call heap.Alloc(size, page_align)
  and heap.Free; the physical address is VirtualToPhysical of the returned
  address in the heap's directory. Heap pages take the PageManager's lowest free
  frames page by page, so a heap block is physically contiguous only within a
  page, as with the tutorial's kmalloc_ap: a caller needing a contiguous buffer
  (DMA) must keep it within one page (AllocateKernelAlignedPhysical, size <= 4096).
- Argument checks come first (not an int in [0, 2**32): ERROR_INVALID_PARAMETER),
  then readiness; failures change nothing and never raise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from model.errors import ReportsStatus
from model.x86_paging import align_up, is_u32
from spec.abi import (
    IDENTITY_LIMIT,
    LOW_MEMORY_END,
    PLACEMENT_ARENA_SIZE,
    ErrorCode,
)

if TYPE_CHECKING:
    from model.kernel_heap import KernelHeap
    from model.virtual_memory import VirtualMemoryManager

NO_ALLOCATION = (0, 0)



def placement_limit(kernel_end: int) -> int:
    """End of the placement arena that starts at kernel_end (a page boundary)."""
    return align_up(kernel_end + PLACEMENT_ARENA_SIZE)


def valid_kernel_end(kernel_end: int) -> bool:
    """At or above the first MB, with an arena that ends inside the identity region."""
    return (is_u32(kernel_end) and kernel_end >= LOW_MEMORY_END
            and placement_limit(kernel_end) <= IDENTITY_LIMIT)


class KernelMemory(ReportsStatus):
    """AllocateKernelMemory and friends over the placement arena, then the kernel heap."""

    def __init__(self, vmm: VirtualMemoryManager) -> None:
        self.vmm = vmm
        self.kernel_end = 0  # 0 until initialize_placement
        self.placement_address = 0
        self.placement_end = 0
        self.heap: KernelHeap | None = None
        self.last_error = ErrorCode.ERROR_SUCCESS

    def initialize_placement(self, kernel_end: int) -> bool:
        """Start the placement arena at kernel_end (the first step of the boot)."""
        if self.kernel_end:
            return self._fail(ErrorCode.ERROR_ALREADY_INITIALIZED, False)
        if not valid_kernel_end(kernel_end):
            return self._fail(ErrorCode.ERROR_INVALID_PARAMETER, False)
        self.kernel_end = self.placement_address = kernel_end
        self.placement_end = placement_limit(kernel_end)
        return self._ok(True)

    # -- seed operations -------------------------------------------------

    def AllocateKernelMemory(self, size: int) -> int:
        return self._allocate(size, False)[0]

    def AllocateKernelMemoryAligned(self, size: int) -> int:
        return self._allocate(size, True)[0]

    def AllocateKernelPhysicalMemory(self, size: int) -> tuple[int, int]:
        return self._allocate(size, False)

    def AllocateKernelAlignedPhysical(self, size: int) -> tuple[int, int]:
        return self._allocate(size, True)

    def FreeKernelMemory(self, addr: int) -> bool:
        """Free heap memory; placement memory is permanent."""
        if not is_u32(addr):
            return self._fail(ErrorCode.ERROR_INVALID_PARAMETER, False)
        if not self.kernel_end:
            return self._fail(ErrorCode.ERROR_NOT_READY, False)
        if self.heap is None or self.kernel_end <= addr < self.placement_end:
            return self._fail(ErrorCode.ERROR_INVALID_ADDRESS, False)
        result = self.heap.Free(addr)
        self.last_error = self.heap.last_error
        return result

    # -- private -----------------------------------------------------------

    def _allocate(self, size: int, page_align: bool) -> tuple[int, int]:
        if not is_u32(size):
            self.last_error = ErrorCode.ERROR_INVALID_PARAMETER
            return NO_ALLOCATION
        if not self.kernel_end:
            self.last_error = ErrorCode.ERROR_NOT_READY
            return NO_ALLOCATION
        heap = self.heap
        if heap is not None:
            virtual = heap.Alloc(size, page_align)
            if virtual == 0 or heap.directory is None:
                self.last_error = heap.last_error
                return NO_ALLOCATION
            return self._ok((virtual, self.vmm.VirtualToPhysical(heap.directory, virtual)))
        start = align_up(self.placement_address) if page_align else self.placement_address
        if start + size > self.placement_end:
            self.last_error = ErrorCode.ERROR_NOT_ENOUGH_MEMORY
            return NO_ALLOCATION
        self.placement_address = start + size
        return self._ok((start, start))

