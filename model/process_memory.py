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
  first) asks its owner to detach it, and ``frames()`` leaves them out (the
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

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple, Protocol

from model.errors import ErrorCode, ReportsStatus
from model.page_manager import FrameOwner
from model.user_layout import (
    ALLOCATION_GRANULARITY,
    MEM_COMMIT,
    MEM_IMAGE,
    MEM_MAPPED,
    MEM_PRIVATE,
    MEM_RESERVE,
    ORIGIN_IMAGE,
    ORIGIN_MMAP,
    ORIGIN_STACK,
    ORIGIN_VIRTUAL_ALLOC,
    PAGE_EXECUTE_READ,
    PAGE_NOACCESS,
    PAGE_READWRITE,
    PAGE_SHIFT,
    PAGE_SIZE,
    USER_BASE,
    USER_TOP,
    is_valid_protect,
    page_ceil,
    prot_from_protect,
    protect_allows,
    pte_bits,
)
from model.virtual_memory import PageDirectory, PageFault, VirtualMemoryManager
from model.x86_paging import PTE_DIRTY, PTE_PRESENT, PTE_WRITABLE, access_fault, is_u32

IMAGE_BASE = 0x00400000
DEFAULT_IMAGE_SIZE = 0x10000
DEFAULT_HEAP_MAX_SIZE = 0x01000000
STACK_RESERVE = 0x00100000
DEFAULT_STACK_SIZE = 0x10000
#: Linux mmap_base without randomisation: TASK_SIZE - MIN_GAP (128 MB).
MMAP_BASE = USER_TOP - 0x08000000
#: Linux TASK_UNMAPPED_BASE on i386: PAGE_ALIGN(TASK_SIZE / 3).
TASK_UNMAPPED_BASE = 0x40000000
NULL = 0


@dataclass(slots=True)
class PageRecord:
    """One non-free user page."""

    state: int
    protect: int
    allocation_base: int
    frame: int | None
    prot: int | None = None
    shared: bool = False


@dataclass(slots=True)
class Allocation:
    """One reservation (Windows) or mapping piece (Linux): [base, base + size)."""

    base: int
    size: int
    allocation_protect: int
    origin: int
    type: int

    @property
    def end(self) -> int:
        return self.base + self.size


class AccessViolation(NamedTuple):
    """An access the page's PAGE_* protection refuses although the PTE allows it."""

    address: int
    kind: str


class ViewOwner(Protocol):
    """The manager of a view (SharedMemoryManager, MemoryMappedFiles)."""

    def detach(self, space: ProcessMemorySpace, base: int) -> None:
        """Unmap the view based at base from space (write back first where needed)."""


class ProcessMemorySpace(ReportsStatus):
    """One process's user address space, with the seed's operations."""

    def __init__(self, vmm: VirtualMemoryManager, pid: int, *,
                 image_size: int = DEFAULT_IMAGE_SIZE,
                 heap_max_size: int = DEFAULT_HEAP_MAX_SIZE,
                 stack_size: int = DEFAULT_STACK_SIZE) -> None:
        self.vmm = vmm
        self.pid = pid
        self.last_error = ErrorCode.ERROR_SUCCESS
        self.page_dir: PageDirectory | None = None
        self.image_base = IMAGE_BASE
        self.image_size = image_size
        self.heap_max_size = heap_max_size
        self.heap_start = self.heap_end = self.brk = self.heap_max = 0
        self.stack_start = USER_TOP
        self.stack_size = stack_size
        self.pages: dict[int, PageRecord] = {}
        self.allocations: dict[int, Allocation] = {}
        self.bases: list[int] = []  # sorted allocation bases
        self.views: dict[int, ViewOwner] = {}  # view base -> its manager
        self.destroyed = False
        if _layout_ok(image_size, heap_max_size, stack_size):
            self.heap_start = self.heap_end = self.brk = page_ceil(IMAGE_BASE + image_size)
            self.heap_max = self.heap_start + heap_max_size

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
                  + len(_slots(IMAGE_BASE, image_end) | _slots(stack_commit, USER_TOP)))
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
        from model.linux_mm import SyscallBrk

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
        from model.linux_mm import SyscallMunmap

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

    # -- observations -------------------------------------------------------

    def frames(self) -> dict[int, int]:
        """frame -> vpn of every frame this space holds for user pages (mapped or held);
        view pages are left out (their frames belong to their managers)."""
        views = self.views
        return {record.frame: vpn for vpn, record in self.pages.items()
                if record.frame is not None and record.allocation_base not in views}

    def status(self) -> ErrorCode:
        """ERROR_SUCCESS when live; ERROR_NOT_READY before init, ERROR_INVALID_HANDLE after."""
        if self.destroyed:
            return ErrorCode.ERROR_INVALID_HANDLE
        if self.page_dir is None:
            return ErrorCode.ERROR_NOT_READY
        return ErrorCode.ERROR_SUCCESS

    def pte(self, vpn: int) -> int:
        """The PTE of page vpn in this space's directory (0 when absent)."""
        directory = self.page_dir
        if directory is None:
            return 0
        table = directory.tables[vpn >> 10]
        return 0 if table is None else table.entries[vpn & 0x3FF]

    # -- range primitives (callers validate; frames are checked with *_cost) --

    def free_frames(self) -> int:
        return self.vmm.pageman.free_count()

    def windows_floor(self) -> int:
        """Lowest address of Windows-style automatic placement (above the brk area)."""
        return (self.heap_max + ALLOCATION_GRANULARITY - 1) & ~(ALLOCATION_GRANULARITY - 1)

    def allocation_at(self, address: int) -> Allocation | None:
        """The allocation containing address."""
        index = bisect.bisect_right(self.bases, address) - 1
        if index < 0:
            return None
        allocation = self.allocations[self.bases[index]]
        return allocation if address < allocation.end else None

    def allocations_between(self, start: int, end: int) -> list[Allocation]:
        """Allocations intersecting [start, end), by address."""
        bases = self.bases
        index = max(bisect.bisect_right(bases, start) - 1, 0)
        found = []
        while index < len(bases) and bases[index] < end:
            allocation = self.allocations[bases[index]]
            if allocation.end > start:
                found.append(allocation)
            index += 1
        return found

    def is_free(self, start: int, end: int) -> bool:
        """Whether no allocation intersects [start, end)."""
        bases = self.bases
        index = bisect.bisect_left(bases, end) - 1
        return index < 0 or self.allocations[bases[index]].end <= start

    def next_base(self, address: int) -> int:
        """The lowest allocation base >= address, or USER_TOP."""
        index = bisect.bisect_left(self.bases, address)
        return self.bases[index] if index < len(self.bases) else USER_TOP

    def find_bottom_up(self, size: int, low: int, high: int, align: int) -> int:
        """Lowest align-aligned base >= low with [base, base+size) free and <= high; -1."""
        candidate = (low + align - 1) & ~(align - 1)
        while candidate + size <= high:
            index = bisect.bisect_left(self.bases, candidate + size) - 1
            if index < 0:
                return candidate
            blocker = self.allocations[self.bases[index]]
            if blocker.end <= candidate:
                return candidate
            candidate = (blocker.end + align - 1) & ~(align - 1)
        return -1

    def find_top_down(self, size: int, low: int, high: int, align: int) -> int:
        """Highest align-aligned base >= low with [base, base+size) free and <= high; -1."""
        if size > high - low:
            return -1
        candidate = (high - size) & ~(align - 1)
        while candidate >= low:
            index = bisect.bisect_left(self.bases, candidate + size) - 1
            if index < 0:
                return candidate
            blocker = self.allocations[self.bases[index]]
            if blocker.end <= candidate:
                return candidate
            if blocker.base < size:
                return -1
            candidate = (blocker.base - size) & ~(align - 1)
        return -1

    def find_linux_area(self, length: int) -> int:
        """Where mmap puts length bytes without a usable hint: top-down below MMAP_BASE,
        then bottom-up from TASK_UNMAPPED_BASE; -1 when nowhere."""
        base = self.find_top_down(length, USER_BASE, MMAP_BASE, PAGE_SIZE)
        if base < 0:
            base = self.find_bottom_up(length, TASK_UNMAPPED_BASE, USER_TOP, PAGE_SIZE)
        return base

    def missing_tables(self, start: int, end: int) -> int:
        """User page tables absent for [start, end)."""
        directory = self.page_dir
        assert directory is not None
        return sum(directory.tables[slot] is None for slot in _slots(start, end))

    def commit_cost(self, start: int, end: int, protect: int) -> int:
        """Frames committing [start, end) with protect needs (pages + page tables)."""
        pages = self.pages
        new = sum(1 for vpn in range(start >> PAGE_SHIFT, end >> PAGE_SHIFT)
                  if (record := pages.get(vpn)) is None or record.state != MEM_COMMIT)
        if protect == PAGE_NOACCESS:
            return new
        return new + self.missing_tables(start, end)

    def protect_cost(self, start: int, end: int, protect: int) -> int:
        """Frames re-protecting committed pages of [start, end) needs (page tables)."""
        return 0 if protect == PAGE_NOACCESS else self.missing_tables(start, end)

    def reserve(self, base: int, size: int, allocation_protect: int, origin: int,
                kind: int) -> Allocation:
        """A new allocation over the free range [base, base+size), all pages reserved."""
        allocation = Allocation(base, size, allocation_protect, origin, kind)
        self._add(allocation)
        pages = self.pages
        for vpn in range(base >> PAGE_SHIFT, (base + size) >> PAGE_SHIFT):
            pages[vpn] = PageRecord(MEM_RESERVE, 0, base, None)
        return allocation

    def commit(self, start: int, end: int, protect: int, prot: int | None = None,
               shared: bool = False) -> None:
        """Commit the reserved or committed pages of [start, end) with protect."""
        pages = self.pages
        for vpn in range(start >> PAGE_SHIFT, end >> PAGE_SHIFT):
            record = pages[vpn]
            if record.state == MEM_COMMIT:
                self._reprotect(vpn, record, protect)
            else:
                record.state = MEM_COMMIT
                record.frame = self._new_frame(vpn, protect)
            record.protect = protect
            record.prot = prot
            record.shared = shared

    def set_protect(self, start: int, end: int, protect: int, prot: int | None) -> None:
        """Change the protection of the committed pages of [start, end)."""
        pages = self.pages
        for vpn in range(start >> PAGE_SHIFT, end >> PAGE_SHIFT):
            record = pages[vpn]
            if record.state == MEM_COMMIT:
                self._reprotect(vpn, record, protect)
                record.protect = protect
                record.prot = prot

    def decommit(self, start: int, end: int) -> None:
        """Committed pages of [start, end) become reserved; their frames are freed."""
        pages = self.pages
        for vpn in range(start >> PAGE_SHIFT, end >> PAGE_SHIFT):
            record = pages[vpn]
            if record.state == MEM_COMMIT:
                self._drop_frame(vpn, record)
                record.state = MEM_RESERVE
                record.protect = 0
                record.frame = None
                record.prot = None
                record.shared = False

    def release(self, allocation: Allocation) -> None:
        """Free every page of allocation and forget it (a view: its owner detaches it)."""
        owner = self.views.get(allocation.base)
        if owner is not None:
            owner.detach(self, allocation.base)
            return
        pages = self.pages
        for vpn in range(allocation.base >> PAGE_SHIFT, allocation.end >> PAGE_SHIFT):
            record = pages.pop(vpn)
            if record.state == MEM_COMMIT:
                self._drop_frame(vpn, record)
        self._remove(allocation)

    def cut(self, start: int, end: int) -> None:
        """Remove the pages of [start, end) from every allocation they are in, freeing
        their frames; the pieces left become allocations of their own (munmap)."""
        pages = self.pages
        for allocation in self.allocations_between(start, end):
            low, high = max(start, allocation.base), min(end, allocation.end)
            for vpn in range(low >> PAGE_SHIFT, high >> PAGE_SHIFT):
                record = pages.pop(vpn)
                if record.state == MEM_COMMIT:
                    self._drop_frame(vpn, record)
            old_end = allocation.end
            self._remove(allocation)
            if allocation.base < low:
                allocation.size = low - allocation.base
                self._add(allocation)
            if high < old_end:
                right = Allocation(high, old_end - high, allocation.allocation_protect,
                                   allocation.origin, allocation.type)
                self._add(right)
                for vpn in range(high >> PAGE_SHIFT, old_end >> PAGE_SHIFT):
                    pages[vpn].allocation_base = high

    def extend(self, allocation: Allocation, new_end: int) -> None:
        """Grow allocation to end at new_end over free pages (reserved)."""
        pages = self.pages
        for vpn in range(allocation.end >> PAGE_SHIFT, new_end >> PAGE_SHIFT):
            pages[vpn] = PageRecord(MEM_RESERVE, 0, allocation.base, None)
        allocation.size = new_end - allocation.base

    def adopt_mapped(self, start: int, end: int, protect: int) -> None:
        """Record pages of [start, end) that another manager mapped in this directory
        (the process heap) as committed with their PTE's frame."""
        pages = self.pages
        for vpn in range(start >> PAGE_SHIFT, end >> PAGE_SHIFT):
            record = pages[vpn]
            record.state = MEM_COMMIT
            record.protect = protect
            record.frame = self.pte(vpn) >> PAGE_SHIFT

    def disown_unmapped(self, start: int, end: int) -> None:
        """Pages of [start, end) whose frames another manager freed become reserved."""
        pages = self.pages
        for vpn in range(start >> PAGE_SHIFT, end >> PAGE_SHIFT):
            record = pages[vpn]
            record.state = MEM_RESERVE
            record.protect = 0
            record.frame = None

    def map_view(self, base: int, frames: Sequence[int], protect: int, origin: int,
                 owner: ViewOwner) -> Allocation:
        """A view at the free range [base, base + 4096 * len(frames)): page i maps frames[i]
        (SHARED) with protect (not NOACCESS). The caller checked the page tables' frames."""
        assert self.page_dir is not None and base not in self.views
        allocation = self.reserve(base, len(frames) << PAGE_SHIFT, protect, origin, MEM_MAPPED)
        writable = pte_bits(protect)[1]
        pages = self.pages
        for vpn, frame in enumerate(frames, base >> PAGE_SHIFT):
            record = pages[vpn]
            record.state, record.protect, record.frame, record.shared = (
                MEM_COMMIT, protect, frame, True)
            mapped = self.vmm.MapSharedPage(self.page_dir, vpn << PAGE_SHIFT, frame, writable)
            assert mapped, self.vmm.last_error
        self.views[base] = owner
        return allocation

    def unmap_view(self, base: int) -> list[int]:
        """Remove the view based at base: its PTEs are cleared (the frames stay with its
        manager) and their old entries returned, page by page."""
        assert self.page_dir is not None
        allocation = self.allocations[base]
        pages = self.pages
        entries = []
        for vpn in range(base >> PAGE_SHIFT, allocation.end >> PAGE_SHIFT):
            del pages[vpn]
            entries.append(self.vmm.UnmapSharedPage(self.page_dir, vpn << PAGE_SHIFT))
        self._remove(allocation)
        del self.views[base]
        return entries

    def take_dirty(self, vpn: int) -> bool:
        """Whether the PTE of page vpn has D set; clears it (the file manager's sync)."""
        directory = self.page_dir
        table = None if directory is None else directory.tables[vpn >> 10]
        if table is None or not table.entries[vpn & 0x3FF] & PTE_DIRTY:
            return False
        table.entries[vpn & 0x3FF] &= ~PTE_DIRTY
        return True

    def detach_views(self) -> None:
        """Every view's owner detaches it (process exit: file views are written back)."""
        for base in list(self.views):
            self.views[base].detach(self, base)

    # -- private --------------------------------------------------------------

    def _add(self, allocation: Allocation) -> None:
        self.allocations[allocation.base] = allocation
        bisect.insort(self.bases, allocation.base)

    def _remove(self, allocation: Allocation) -> None:
        del self.allocations[allocation.base]
        del self.bases[bisect.bisect_left(self.bases, allocation.base)]

    def _new_frame(self, vpn: int, protect: int) -> int:
        """A zero-filled frame for page vpn: mapped by a PTE, or HELD for NOACCESS."""
        if protect == PAGE_NOACCESS:
            frame = self.vmm.pageman.take_frame(FrameOwner.HELD)
            assert frame >= 0
            return frame
        assert self.page_dir is not None
        mapped = self.vmm.AllocPage(self.page_dir, vpn << PAGE_SHIFT, False, pte_bits(protect)[1])
        assert mapped, self.vmm.last_error
        return self.pte(vpn) >> PAGE_SHIFT

    def _drop_frame(self, vpn: int, record: PageRecord) -> None:
        """Free the frame of a committed page (its PTE too, when present)."""
        assert self.page_dir is not None and record.frame is not None
        if self.pte(vpn) & PTE_PRESENT:
            self.vmm.UnmapVirtualAddress(self.page_dir, vpn << PAGE_SHIFT)
        else:
            self.vmm.pageman.release_frame(record.frame)

    def _reprotect(self, vpn: int, record: PageRecord, protect: int) -> None:
        """Make the PTE of committed page vpn match protect; the frame is kept."""
        directory = self.page_dir
        assert directory is not None and record.frame is not None
        present, writable = pte_bits(protect)
        entry = self.pte(vpn)
        if entry & PTE_PRESENT:
            table = directory.tables[vpn >> 10]
            assert table is not None
            if present:
                table.entries[vpn & 0x3FF] = (entry & ~PTE_WRITABLE) | (
                    PTE_WRITABLE if writable else 0)
            else:
                table.entries[vpn & 0x3FF] = 0
                self.vmm.pageman.owner[record.frame] = FrameOwner.HELD
        elif present:
            mapped = self.vmm.MapVirtualAddress(directory, vpn << PAGE_SHIFT,
                                                record.frame << PAGE_SHIFT, False, writable)
            assert mapped, self.vmm.last_error

    def _check_access(self, addr: int, length: int,
                      kind: str) -> PageFault | AccessViolation | Literal[False] | None:
        """None when every page allows the access; else the fault, or False on bad input."""
        code = self.status()
        if code != ErrorCode.ERROR_SUCCESS:
            return self._fail(code, False)
        if not (is_u32(addr) and type(length) is int and 0 <= length
                and addr + length <= 1 << 32):
            return self._fail(ErrorCode.ERROR_INVALID_PARAMETER, False)
        directory = self.page_dir
        assert directory is not None
        write = kind == "write"
        cursor, end = addr, addr + length
        while cursor < end:
            vpn = cursor >> PAGE_SHIFT
            fault = access_fault(directory.tables_physical[vpn >> 10], self.pte(vpn), True, write)
            if fault >= 0:
                return self._fail(ErrorCode.ERROR_NOACCESS, PageFault(fault, cursor))
            record = self.pages.get(vpn)
            if record is None or not protect_allows(record.protect, kind):
                return self._fail(ErrorCode.ERROR_NOACCESS, AccessViolation(cursor, kind))
            cursor = (vpn + 1) << PAGE_SHIFT
        return None


def _slots(start: int, end: int) -> set[int]:
    """Directory slots of the pages of [start, end)."""
    return set(range(start >> 22, ((end - 1) >> 22) + 1)) if end > start else set()


def _layout_ok(image_size: int, heap_max_size: int, stack_size: int) -> bool:
    """Whether the constructor's sizes give a layout that fits user space."""
    if not (is_u32(image_size) and is_u32(heap_max_size) and is_u32(stack_size)):
        return False
    heap_start = page_ceil(IMAGE_BASE + image_size)
    return (image_size > 0 and 0 < stack_size <= STACK_RESERVE
            and heap_start + heap_max_size <= USER_TOP - STACK_RESERVE)


__all__ = ["DEFAULT_HEAP_MAX_SIZE", "DEFAULT_IMAGE_SIZE", "DEFAULT_STACK_SIZE", "IMAGE_BASE",
           "MMAP_BASE", "NULL", "STACK_RESERVE", "TASK_UNMAPPED_BASE", "AccessViolation",
           "Allocation", "PageRecord", "ProcessMemorySpace", "ViewOwner"]
