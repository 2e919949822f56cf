"""MemoryInterface: the unified kernel memory functions (seed section 10).

A thin layer over a booted MemorySubsystem. Decisions:

- AllocateMemory / FreeMemory are the kernel heap's Alloc / Free (its errors).
  Before the heap exists: ERROR_NOT_READY. Size 0 is allowed (HeapAlloc).
- AllocateAlignedMemory(size, alignment): alignment a power of two in u32, else
  ERROR_INVALID_PARAMETER. 1 is a plain allocation; PAGE_SIZE is the heap's
  page_align; a smaller alignment over-allocates size + alignment - 1 bytes, a
  larger one page-aligns size + alignment - PAGE_SIZE bytes, and returns the
  first aligned address inside the block (as _aligned_malloc does). Such a
  pointer is remembered (``aligned``: pointer -> (block payload, size)), so
  FreeMemory and GetMemorySize of it act on its block, and the block's own
  payload, which the caller never saw, is refused (ERROR_INVALID_ADDRESS).
- GetMemorySize(ptr) is the size requested for ptr (HeapSize returns the
  requested size); a pointer it does not know: 0 and ERROR_INVALID_ADDRESS.
- GetTotal/Free/UsedPhysicalMemory are the subsystem's GetTotal/Available/
  UsedMemory (bytes, saturating at 0xFFFFFFFF).
- GetFreePage: a zeroed, supervisor, writable page of kernel memory from
  [PAGE_AREA_START, PAGE_AREA_END), lowest free address first, as Linux's
  __get_free_page hands out a kernel page (a fresh frame reads as zeros).
  ReleasePage takes only pages GetFreePage returned (ERROR_INVALID_ADDRESS).
- MapPage(virtual, physical, kernel, writable) maps one frame at a page in the
  current directory: a free frame is taken for the mapping, a frame the caller
  holds (RequestFrame) is handed over (MapVirtualAddress); a frame someone else
  owns: ERROR_BUSY; beyond physical memory: ERROR_INVALID_ADDRESS. Pages other
  managers own (the identity region, the heap's [start, max), the stack area,
  the page area) and a user page in kernel space or a user address in the
  kernel directory: ERROR_ACCESS_DENIED; already mapped: ERROR_ALREADY_EXISTS.
  UnmapPage takes only what MapPage mapped (in the current directory, or kernel
  space) and frees the frame. Mappings are recorded in the subsystem
  (``mapped``: kernel-space pages under the kernel directory, whose tables every
  directory shares) for frame_owners.
- Wrong types, values outside u32, an unaligned page: ERROR_INVALID_PARAMETER,
  checked before readiness. Failures change nothing and never raise.
"""

from __future__ import annotations

from model.errors import ReportsStatus
from model.kernel_heap import KernelHeap
from model.memory_subsystem import MemorySubsystem
from model.page_tables import PageDirectory
from model.x86_paging import is_kernel_address, is_page_aligned, is_u32
from spec.abi import (
    ADDRESS_LIMIT,
    HEADER_SIZE,
    IDENTITY_LIMIT,
    KERNEL_STACK_AREA_END,
    KERNEL_STACK_AREA_START,
    PAGE_AREA_END,
    PAGE_AREA_START,
    PAGE_SHIFT,
    PAGE_SIZE,
    PTE_PRESENT,
    ErrorCode,
    FrameOwner,
)


class MemoryInterface(ReportsStatus):
    """AllocateMemory, GetFreePage, MapPage and the rest over a MemorySubsystem."""

    def __init__(self, subsystem: MemorySubsystem) -> None:
        self.subsystem = subsystem
        #: Aligned pointer -> (payload of its over-allocated block, requested size).
        self.aligned: dict[int, tuple[int, int]] = {}
        self.inner: dict[int, int] = {}  # block payload -> its aligned pointer
        self.last_error = ErrorCode.ERROR_SUCCESS

    # -- allocation --------------------------------------------------------

    def AllocateMemory(self, size: int) -> int:
        if not is_u32(size):
            return self._fail(ErrorCode.ERROR_INVALID_PARAMETER, 0)
        heap = self._heap()
        if heap is None:
            return 0
        return self._alloc(heap, size, False)

    def AllocateAlignedMemory(self, size: int, alignment: int) -> int:
        """size bytes at a multiple of alignment (any power of two)."""
        if not (is_u32(size) and is_u32(alignment) and alignment > 0
                and alignment & (alignment - 1) == 0):
            return self._fail(ErrorCode.ERROR_INVALID_PARAMETER, 0)
        heap = self._heap()
        if heap is None:
            return 0
        if alignment in (1, PAGE_SIZE):
            return self._alloc(heap, size, alignment == PAGE_SIZE)
        page_align = alignment > PAGE_SIZE
        total = size + alignment - (PAGE_SIZE if page_align else 1)
        if total >= ADDRESS_LIMIT:
            return self._fail(ErrorCode.ERROR_INVALID_PARAMETER, 0)
        payload = self._alloc(heap, total, page_align)
        if payload == 0:
            return 0
        pointer = payload + (-payload) % alignment
        self.aligned[pointer] = (payload, size)
        self.inner[payload] = pointer
        return pointer

    def FreeMemory(self, ptr: int) -> bool:
        if not is_u32(ptr):
            return self._fail(ErrorCode.ERROR_INVALID_PARAMETER, False)
        heap = self._heap()
        if heap is None:
            return False
        record = self.aligned.get(ptr)
        if record is None and ptr in self.inner:
            return self._fail(ErrorCode.ERROR_INVALID_ADDRESS, False)
        if not heap.Free(ptr if record is None else record[0]):
            return self._fail(heap.last_error, False)
        if record is not None:
            del self.aligned[ptr], self.inner[record[0]]
        return self._ok(True)

    def GetMemorySize(self, ptr: int) -> int:
        """The size requested for ptr; 0 for a pointer it does not know."""
        if not is_u32(ptr):
            return self._fail(ErrorCode.ERROR_INVALID_PARAMETER, 0)
        heap = self._heap()
        if heap is None:
            return 0
        record = self.aligned.get(ptr)
        if record is not None:
            return self._ok(record[1])
        block = heap.allocated.get(ptr - HEADER_SIZE)
        if block is None or ptr in self.inner:
            return self._fail(ErrorCode.ERROR_INVALID_ADDRESS, 0)
        return self._ok(block.requested)

    # -- statistics --------------------------------------------------------

    def GetTotalPhysicalMemory(self) -> int:
        return self._relay(self.subsystem.GetTotalMemory())

    def GetFreePhysicalMemory(self) -> int:
        return self._relay(self.subsystem.GetAvailableMemory())

    def GetUsedPhysicalMemory(self) -> int:
        return self._relay(self.subsystem.GetUsedMemory())

    # -- pages -------------------------------------------------------------

    def GetFreePage(self) -> int:
        """Map a zeroed supervisor page at the lowest free address of the page area."""
        kernel = self._paging()
        if kernel is None:
            return 0
        pages = self.subsystem.pages
        page = PAGE_AREA_START + self.subsystem.page_hint * PAGE_SIZE
        # The pages passed over are distinct members of pages: at most len(pages).
        for _ in range(len(pages)):
            if page not in pages:
                break
            page += PAGE_SIZE
        self.subsystem.page_hint = (page - PAGE_AREA_START) // PAGE_SIZE
        if page >= PAGE_AREA_END or page in pages:
            return self._fail(ErrorCode.ERROR_NOT_ENOUGH_MEMORY, 0)
        vmm = self.subsystem.virmem
        if not vmm.AllocPage(kernel, page, True, True):
            return self._fail(vmm.last_error, 0)
        pages.add(page)
        return self._ok(page)

    def ReleasePage(self, page: int) -> bool:
        """Unmap a page GetFreePage returned; its frame is freed."""
        if not is_u32(page):
            return self._fail(ErrorCode.ERROR_INVALID_PARAMETER, False)
        kernel = self._paging()
        if kernel is None:
            return False
        if page not in self.subsystem.pages:
            return self._fail(ErrorCode.ERROR_INVALID_ADDRESS, False)
        self.subsystem.virmem.UnmapVirtualAddress(kernel, page)
        self.subsystem.pages.remove(page)
        self.subsystem.page_hint = min(self.subsystem.page_hint,
                                       (page - PAGE_AREA_START) // PAGE_SIZE)
        return self._ok(True)

    def MapPage(self, virtual_addr: int, physical_addr: int, kernel: bool,
                writable: bool) -> bool:
        """Map the frame at physical_addr at virtual_addr in the current directory."""
        if not (is_u32(virtual_addr) and is_page_aligned(virtual_addr)
                and is_u32(physical_addr) and is_page_aligned(physical_addr)
                and type(kernel) is bool and type(writable) is bool):
            return self._fail(ErrorCode.ERROR_INVALID_PARAMETER, False)
        if self._paging() is None:
            return False
        vmm, pm = self.subsystem.virmem, self.subsystem.pageman
        directory = vmm.current_directory
        assert directory is not None  # paging is enabled
        if (self._owned_area(virtual_addr)
                or (not kernel and is_kernel_address(virtual_addr))
                or (directory is vmm.kernel_directory and not is_kernel_address(virtual_addr))):
            return self._fail(ErrorCode.ERROR_ACCESS_DENIED, False)
        table = directory.tables[virtual_addr >> 22]
        if table is not None and table.entries[(virtual_addr >> PAGE_SHIFT) & 0x3FF] & PTE_PRESENT:
            return self._fail(ErrorCode.ERROR_ALREADY_EXISTS, False)
        frame = physical_addr >> PAGE_SHIFT
        if frame >= pm.nframes:
            return self._fail(ErrorCode.ERROR_INVALID_ADDRESS, False)
        take = pm.owner[frame] == FrameOwner.FREE
        if not take and pm.owner[frame] != FrameOwner.HELD:
            return self._fail(ErrorCode.ERROR_BUSY, False)
        if pm.free_count() < take + (table is None):
            return self._fail(ErrorCode.ERROR_NOT_ENOUGH_MEMORY, False)
        if take:
            pm.claim_frame(frame, FrameOwner.HELD)
        if not vmm.MapVirtualAddress(directory, virtual_addr, physical_addr, kernel, writable):
            if take:  # not reached: every refusal of MapVirtualAddress is checked above
                pm.release_frame(frame)
            return self._fail(vmm.last_error, False)
        self.subsystem.mapped.add((self._record_directory(virtual_addr), virtual_addr))
        return self._ok(True)

    def UnmapPage(self, virtual_addr: int) -> bool:
        """Unmap a page MapPage mapped; its frame is freed."""
        if not is_u32(virtual_addr) or not is_page_aligned(virtual_addr):
            return self._fail(ErrorCode.ERROR_INVALID_PARAMETER, False)
        if self._paging() is None:
            return False
        key = (self._record_directory(virtual_addr), virtual_addr)
        directory = self.subsystem.virmem.directories.get(key[0])
        if key not in self.subsystem.mapped or directory is None:
            return self._fail(ErrorCode.ERROR_INVALID_ADDRESS, False)
        self.subsystem.virmem.UnmapVirtualAddress(directory, virtual_addr)
        self.subsystem.mapped.remove(key)
        return self._ok(True)

    # -- private -----------------------------------------------------------

    def _heap(self) -> KernelHeap | None:
        """The created kernel heap; None after failing with ERROR_NOT_READY."""
        heap = self.subsystem.kheap
        if heap is None or not heap.created:
            self.last_error = ErrorCode.ERROR_NOT_READY
            return None
        return heap

    def _paging(self) -> PageDirectory | None:
        """The kernel directory once paging is on; None after failing with ERROR_NOT_READY."""
        kernel = self.subsystem.virmem.kernel_directory
        if not self.subsystem.paging_enabled or kernel is None:
            self.last_error = ErrorCode.ERROR_NOT_READY
            return None
        return kernel

    def _alloc(self, heap: KernelHeap, size: int, page_align: bool) -> int:
        payload = heap.Alloc(size, page_align)
        self.last_error = heap.last_error
        return payload

    def _owned_area(self, page: int) -> bool:
        """Whether page lies in an area another manager owns."""
        heap = self.subsystem.kheap
        return (page < IDENTITY_LIMIT
                or (heap is not None and heap.start_address <= page < heap.max_address)
                or KERNEL_STACK_AREA_START <= page < KERNEL_STACK_AREA_END
                or PAGE_AREA_START <= page < PAGE_AREA_END)

    def _record_directory(self, page: int) -> int:
        """The directory a mapping at page is recorded under (kernel space: the kernel's)."""
        vmm = self.subsystem.virmem
        directory = vmm.kernel_directory if is_kernel_address(page) else vmm.current_directory
        assert directory is not None  # paging is enabled
        return directory.physical_addr

    def _relay(self, value: int) -> int:
        self.last_error = self.subsystem.last_error
        return value

