"""ProcessMemorySpace: one process's user address space (seed section 4, issue 4).

State (the contract of issue 4, user_common): ``pages`` (vpn -> PageRecord, one
record per non-free user page), ``allocations`` (base -> Allocation, disjoint),
the seed's fields ``page_dir, heap_start, heap_end, heap_max, stack_start,
stack_size, image_base`` and ``brk`` (the exact program break). Every page of
an allocation has a record, and every record lies in its allocation.

Rules, each with its source:

- Own directory per process: ``vmm.CreatePageDirectory`` links the kernel
  tables and nothing else, so one process never reaches another's private
  pages (issue 4; Linux's pgd_alloc).
- Committed page = a zero-filled frame taken at commit time (eager commit:
  Windows' commit charge; VirtualAlloc "memory ... is automatically
  initialized to zero"; mmap(2) anonymous pages read as zeros). A page that is
  not PAGE_NOACCESS has a present user PTE, writable iff READWRITE or
  EXECUTE_READWRITE (user_layout.pte_bits); a NOACCESS page keeps its frame
  HELD with no PTE, so contents survive protection changes (Windows keeps the
  data of a page made PAGE_NOACCESS). Not enough frames: ERROR_NOT_ENOUGH_MEMORY
  and nothing changes. Page tables stay until the directory is destroyed (the
  VMM's rule).
- Layout (decisions): the image at image_base 0x00400000 (MEM_IMAGE, committed
  PAGE_EXECUTE_READ; 0x00400000 is Windows' default image base, DESIGN.md);
  start_brk = heap_start just after the image, page aligned (Linux's ELF loader
  puts the break after bss); heap_max = heap_start + heap_max_size plays
  RLIMIT_DATA for brk (mm/mmap.c check_data_rlimit); the stack reserves 1 MB
  below 0xC0000000 and commits stack_size bytes at its top READWRITE (Windows'
  default stack reserve, /STACK linker option); ``stack_start`` is 0xC0000000,
  where the stack starts growing down.
- Automatic placement: Windows-style (VirtualAlloc, AllocUserMemory, the
  process heap) bottom-up at the lowest 64 KB-aligned free range from the
  64 KB boundary at or above heap_max (the brk area is left for brk, as Linux
  leaves room between the break and mmap_base), MEM_TOP_DOWN from 0xC0000000
  down; Linux-style (mmap, MapUserMemory) top-down, page aligned, below
  MMAP_BASE = 0xC0000000 - 128 MB (Linux mmap_base(): the stack gap is clamped
  to MIN_GAP 128 MB; no randomisation), then bottom-up from TASK_UNMAPPED_BASE
  0x40000000 (arch_get_unmapped_area_topdown's fallback). Searches bisect the
  sorted allocation bases (one step per allocation passed, never per page).
- Accesses (ReadUserMemory, WriteUserMemory, ExecuteUserMemory) are user-mode
  accesses checked page by page before any byte moves: first the page tables
  (a PageFault with the x86 error code, CR2 = the first faulting byte), then
  the page's PAGE_* value (Microsoft's table, user_layout.protect_allows): an
  access the PTE allows but the protection refuses (reading a PAGE_EXECUTE page,
  executing a READWRITE page: no NX bit here) is an AccessViolation(address,
  kind). Both set ERROR_NOACCESS (998).
- The seed's calls: AllocUserMemory(size) = VirtualAlloc(NULL, size,
  MEM_RESERVE|MEM_COMMIT, PAGE_READWRITE); FreeUserMemory(addr, size) releases
  the VirtualAlloc allocation based at addr (size 0 or its size rounded to
  pages, else ERROR_INVALID_PARAMETER); MapUserMemory(va, size, flags) maps
  fresh committed pages with protection ``flags`` (a PAGE_* value) at the page
  aligned va (0: placed as mmap places), never replacing (ERROR_INVALID_ADDRESS
  when any page is in use): an ORIGIN_MMAP allocation; UnmapUserMemory(va, size)
  is munmap of whole pages (linux_mm rules); ResizeUserHeap(new_size) sets the
  break to heap_start + new_size by brk's rules, True iff it moved there;
  GetUserHeapSize() = brk - heap_start; GetUserStackSize() = stack_size.
- Views (issue 5, shm_common): a shared-memory or file view is an allocation
  (ORIGIN_SHARED_MEMORY / ORIGIN_MAPPED_FILE, type MEM_MAPPED as
  MEMORY_BASIC_INFORMATION reports views) whose committed pages map frames
  owned by their manager (FrameOwner.SHARED, VirtualMemoryManager.MapSharedPage);
  ``views`` maps its base to that manager (a ViewOwner). The space never frees
  those frames: releasing a view (DestroyUserSpace, which detaches every view
  first; munmap and MAP_FIXED over a whole view, AddressSpace.cut) asks its
  owner to detach it, and ``frames()`` leaves them out (the
  manager claims each shared frame once, however many spaces map it). Mapping
  a view costs only its missing page tables.
- DestroyUserSpace frees every page frame, then the directory with its page
  tables (VMM DestroyPageDirectory); the kernel directory becomes current first
  if this one was. Afterwards every call fails with ERROR_INVALID_HANDLE.

Checks run in this order: space live (ERROR_NOT_READY before
InitializeUserSpace, ERROR_INVALID_HANDLE after DestroyUserSpace), arguments
(ERROR_INVALID_PARAMETER), then the operation's own. Failures never change the
state and never raise.
"""

from __future__ import annotations

from model.address_space import AccessViolation, AddressSpace, table_slots
from model.linux_mm import SyscallBrk, SyscallMunmap
from model.page_tables import PageFault
from model.user_layout import is_valid_protect, page_ceil, prot_from_protect
from model.x86_paging import is_u32
from spec.abi import (
    ALLOCATION_GRANULARITY,
    IMAGE_BASE,
    MEM_IMAGE,
    MEM_PRIVATE,
    NULL,
    ORIGIN_IMAGE,
    ORIGIN_MMAP,
    ORIGIN_STACK,
    ORIGIN_VIRTUAL_ALLOC,
    PAGE_EXECUTE_READ,
    PAGE_READWRITE,
    PAGE_SIZE,
    STACK_RESERVE,
    USER_BASE,
    USER_TOP,
    ErrorCode,
)

__all__ = ["ProcessMemorySpace"]


class ProcessMemorySpace(AddressSpace):
    """One process's user address space, with the seed's operations; the records
    and primitives are :class:`~model.address_space.AddressSpace`'s."""

    # -- seed operations ---------------------------------------------------

    def InitializeUserSpace(self) -> bool:
        """Create the directory, the image and the stack; False when that cannot be done."""
        if self.destroyed:
            return self._fail(ErrorCode.ERROR_INVALID_HANDLE, False)
        if self.page_dir is not None:
            return self._fail(ErrorCode.ERROR_ALREADY_INITIALIZED, False)
        if self.heap_start == 0:
            return self._fail(ErrorCode.ERROR_INVALID_PARAMETER, False)
        if self.vmm.kernel_directory is None:
            return self._fail(ErrorCode.ERROR_NOT_READY, False)
        image_end = self.heap_start
        stack_low = USER_TOP - STACK_RESERVE
        stack_commit = USER_TOP - page_ceil(self.stack_size)
        needed = (1 + (image_end - IMAGE_BASE + USER_TOP - stack_commit) // PAGE_SIZE
                  + len(table_slots(IMAGE_BASE, image_end) | table_slots(stack_commit, USER_TOP)))
        if self.vmm.pageman.free_count() < needed:
            return self._fail(ErrorCode.ERROR_NOT_ENOUGH_MEMORY, False)
        directory = self.vmm.CreatePageDirectory()
        assert directory is not None
        self.page_dir = directory
        self.reserve(IMAGE_BASE, image_end - IMAGE_BASE, PAGE_EXECUTE_READ, ORIGIN_IMAGE, MEM_IMAGE)
        self.commit(IMAGE_BASE, image_end, PAGE_EXECUTE_READ)
        self.reserve(stack_low, STACK_RESERVE, PAGE_READWRITE, ORIGIN_STACK, MEM_PRIVATE)
        self.commit(stack_commit, USER_TOP, PAGE_READWRITE)
        self.stack_size = USER_TOP - stack_commit
        return self._ok(True)

    def DestroyUserSpace(self) -> bool:
        """Free every page, page table and the directory."""
        code = self.status()
        if code != ErrorCode.ERROR_SUCCESS:
            return self._fail(code, False)
        directory = self.page_dir
        assert directory is not None
        self.detach_views()
        for allocation in list(self.allocations.values()):
            self.release(allocation)
        vmm = self.vmm
        if vmm.current_directory is directory and vmm.kernel_directory is not None:
            vmm.SwitchPageDirectory(vmm.kernel_directory)
        destroyed = vmm.DestroyPageDirectory(directory)
        assert destroyed, vmm.last_error
        self.page_dir = None
        self.destroyed = True
        self.heap_end = self.brk = self.heap_start
        return self._ok(True)

    def AllocUserMemory(self, size: int) -> int:
        """VirtualAlloc(NULL, size, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE)."""
        code = self.status()
        if code != ErrorCode.ERROR_SUCCESS:
            return self._fail(code, NULL)
        if not (is_u32(size) and size > 0):
            return self._fail(ErrorCode.ERROR_INVALID_PARAMETER, NULL)
        length = page_ceil(size)
        base = self.find_bottom_up(length, self.windows_floor(), USER_TOP, ALLOCATION_GRANULARITY)
        if base < 0 or self.commit_cost(base, base + length, PAGE_READWRITE) > self.free_frames():
            return self._fail(ErrorCode.ERROR_NOT_ENOUGH_MEMORY, NULL)
        self.reserve(base, length, PAGE_READWRITE, ORIGIN_VIRTUAL_ALLOC, MEM_PRIVATE)
        self.commit(base, base + length, PAGE_READWRITE)
        return self._ok(base)

    def FreeUserMemory(self, addr: int, size: int) -> bool:
        """Release the VirtualAlloc allocation based at addr (size 0 or its size)."""
        code = self.status()
        if code != ErrorCode.ERROR_SUCCESS:
            return self._fail(code, False)
        if not (is_u32(addr) and is_u32(size)):
            return self._fail(ErrorCode.ERROR_INVALID_PARAMETER, False)
        allocation = self.allocations.get(addr)
        if allocation is None or allocation.origin != ORIGIN_VIRTUAL_ALLOC:
            return self._fail(ErrorCode.ERROR_INVALID_ADDRESS, False)
        if size != 0 and page_ceil(size) != allocation.size:
            return self._fail(ErrorCode.ERROR_INVALID_PARAMETER, False)
        self.release(allocation)
        return self._ok(True)

    def ResizeUserHeap(self, new_size: int) -> bool:
        """Move the break to heap_start + new_size (brk's rules); True iff it moved there."""
        code = self.status()
        if code != ErrorCode.ERROR_SUCCESS:
            return self._fail(code, False)
        if not (is_u32(new_size) and self.heap_start + new_size <= self.heap_max):
            return self._fail(ErrorCode.ERROR_INVALID_PARAMETER, False)
        target = self.heap_start + new_size
        if SyscallBrk(self, target) != target:
            return self._fail(ErrorCode.ERROR_NOT_ENOUGH_MEMORY, False)
        return self._ok(True)

    def MapUserMemory(self, virtual_addr: int, size: int, flags: int) -> int:
        """Fresh committed pages with protection flags at virtual_addr (0: chosen); or NULL."""
        code = self.status()
        if code != ErrorCode.ERROR_SUCCESS:
            return self._fail(code, NULL)
        if not (is_u32(virtual_addr) and is_u32(size) and size > 0
                and virtual_addr % PAGE_SIZE == 0 and is_valid_protect(flags)):
            return self._fail(ErrorCode.ERROR_INVALID_PARAMETER, NULL)
        length = page_ceil(size)
        if virtual_addr == 0:
            base = self.find_linux_area(length)
            if base < 0:
                return self._fail(ErrorCode.ERROR_NOT_ENOUGH_MEMORY, NULL)
        else:
            base = virtual_addr
            if not (USER_BASE <= base and base + length <= USER_TOP
                    and self.is_free(base, base + length)):
                return self._fail(ErrorCode.ERROR_INVALID_ADDRESS, NULL)
        if self.commit_cost(base, base + length, flags) > self.free_frames():
            return self._fail(ErrorCode.ERROR_NOT_ENOUGH_MEMORY, NULL)
        self.reserve(base, length, flags, ORIGIN_MMAP, MEM_PRIVATE)
        self.commit(base, base + length, flags, prot_from_protect(flags))
        return self._ok(base)

    def UnmapUserMemory(self, virtual_addr: int, size: int) -> bool:
        """munmap(virtual_addr, size) by linux_mm's rules; True on success."""
        code = self.status()
        if code != ErrorCode.ERROR_SUCCESS:
            return self._fail(code, False)
        return SyscallMunmap(self, virtual_addr, size) == 0

    def GetUserHeapSize(self) -> int:
        """Bytes between heap_start and the break."""
        return self._ok(self.brk - self.heap_start)

    def GetUserStackSize(self) -> int:
        """Committed stack bytes."""
        return self._ok(self.stack_size)

    # -- accesses (user mode) ------------------------------------------------

    def ReadUserMemory(self, addr: int, length: int) -> bytes | PageFault | AccessViolation | None:
        """length bytes at addr as user code reads them; a fault result, or None on bad input."""
        refused = self._check_access(addr, length, "read")
        if refused is not None:
            return None if refused is False else refused
        assert self.page_dir is not None
        data = self.vmm.ReadVirtualMemory(self.page_dir, addr, length, True)
        assert isinstance(data, bytes)
        return self._ok(data)

    def WriteUserMemory(self, addr: int, data: bytes) -> bool | PageFault | AccessViolation:
        """Write data at addr as user code does: True, a fault result, or False on bad input."""
        if not isinstance(data, bytes | bytearray):
            return self._fail(ErrorCode.ERROR_INVALID_PARAMETER, False)
        refused = self._check_access(addr, len(data), "write")
        if refused is not None:
            return refused
        assert self.page_dir is not None
        written = self.vmm.WriteVirtualMemory(self.page_dir, addr, bytes(data), True)
        assert written is True
        return self._ok(True)

    def ExecuteUserMemory(self, addr: int) -> bytes | PageFault | AccessViolation | None:
        """Fetch the instruction byte at addr: the byte, a fault result, or None on bad input."""
        refused = self._check_access(addr, 1, "execute")
        if refused is not None:
            return None if refused is False else refused
        assert self.page_dir is not None
        data = self.vmm.ExecuteVirtualMemory(self.page_dir, addr, True)
        assert isinstance(data, bytes)
        return self._ok(data)
