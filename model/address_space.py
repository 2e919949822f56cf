"""One process's address space as records, and the primitives every user interface
builds on (issue 4; the rules are model/process_memory.py's docstring).

State: ``pages`` (vpn -> PageRecord, one record per non-free user page),
``allocations`` (base -> Allocation, disjoint) with their sorted ``bases``,
``views`` (view base -> the manager that owns its frames), the seed's fields
``page_dir, heap_start, heap_end, heap_max, stack_start, stack_size,
image_base`` and ``brk`` (the exact program break). Every page of an allocation
has a record, and every record lies in its allocation.

:class:`AddressSpace` holds the state, the observations and the range
primitives (placement searches, reserve, commit, decommit, release, cut, views,
the access check). The seed's operations are :class:`ProcessMemorySpace`'s
(model/process_memory.py); the Windows calls (model/virtual_alloc.py) and the
Linux calls (model/linux_mm.py) are functions over an AddressSpace. Callers
validate arguments; the primitives keep the records' invariants and check
frames only through the ``*_cost`` functions, which callers consult first.
"""


from __future__ import annotations

import bisect
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple, ParamSpec, Protocol, TypeVar

from model.errors import ReportsStatus
from model.page_tables import PageDirectory, PageFault
from model.user_layout import page_ceil, protect_allows, pte_bits
from model.virtual_memory import VirtualMemoryManager
from model.x86_paging import access_fault, is_u32, page_pieces
from spec.abi import (
    ALLOCATION_GRANULARITY,
    DEFAULT_HEAP_MAX_SIZE,
    DEFAULT_IMAGE_SIZE,
    DEFAULT_STACK_SIZE,
    IMAGE_BASE,
    MEM_COMMIT,
    MEM_MAPPED,
    MEM_RESERVE,
    MMAP_BASE,
    PAGE_NOACCESS,
    PAGE_SHIFT,
    PAGE_SIZE,
    PTE_DIRTY,
    PTE_PRESENT,
    PTE_WRITABLE,
    STACK_RESERVE,
    TASK_UNMAPPED_BASE,
    USER_BASE,
    USER_TOP,
    ErrorCode,
    FrameOwner,
)

_R = TypeVar("_R")
_P = ParamSpec("_P")


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

    def detach(self, space: AddressSpace, base: int) -> None:
        """Unmap the view based at base from space (write back first where needed)."""

    def unmap_pages(self, space: AddressSpace, base: int, start: int, end: int) -> None:
        """Unmap the pages [start, end) of the view piece based at base, a strict part
        of it (munmap / MAP_FIXED over part of a view): the rest stays mapped as one
        or two pieces (write back first where needed)."""

    def fold_dirty(self, space: AddressSpace, base: int, vpn: int) -> None:
        """The PTE of page vpn of the view based at base, dirty (D set), is about to be
        cleared (the page made PAGE_NOACCESS): keep that the page was written."""

    def may_write(self, space: AddressSpace, base: int) -> bool:
        """Whether the source of the view based at base may be written through it
        (Linux's VM_MAYWRITE: the mapping's file open for writing)."""


class AddressSpace(ReportsStatus):
    """One process's user address space: its records, observations and range
    primitives. Over 300 lines because its primitives keep one set of records
    together (pages, allocations, their sorted bases, views), each leaving them
    consistent on its own; splitting them would split that invariant."""

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
        found = []
        for index in range(max(bisect.bisect_right(bases, start) - 1, 0), len(bases)):
            if bases[index] >= end:
                break
            allocation = self.allocations[bases[index]]
            if allocation.end > start:
                found.append(allocation)
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
        # Each pass moves past one allocation, of a higher base than the last
        # one's: one pass per allocation and a last one, a bound should the
        # candidate ever fail to move up (a zero align, a corrupt allocation).
        for _ in range(len(self.bases) + 1):
            if candidate + size > high:
                return -1
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
        # As find_bottom_up, downwards: each pass moves below one allocation.
        for _ in range(len(self.bases) + 1):
            if candidate < low:
                return -1
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
        return sum(directory.tables[slot] is None for slot in table_slots(start, end))

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
        their frames; the pieces left become allocations of their own (munmap). A view
        is its owner's: wholly inside the range it is detached, else its owner unmaps
        the pages of the range (mm/mmap.c do_vmi_munmap splits the vma)."""
        pages = self.pages
        for allocation in self.allocations_between(start, end):
            low, high = max(start, allocation.base), min(end, allocation.end)
            owner = self.views.get(allocation.base)
            if owner is not None:
                if low == allocation.base and high == allocation.end:
                    owner.detach(self, allocation.base)
                else:
                    owner.unmap_pages(self, allocation.base, low, high)
                continue
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
            present = self.pte(vpn) & PTE_PRESENT  # a PAGE_NOACCESS page has no PTE
            entries.append(self.vmm.UnmapSharedPage(self.page_dir, vpn << PAGE_SHIFT)
                           if present else 0)
        self._remove(allocation)
        del self.views[base]
        return entries

    def split_view(self, base: int, start: int, end: int) -> tuple[list[int], int | None]:
        """Remove the pages [start, end) of the view piece based at base (a strict part
        of it): their PTEs are cleared and their old entries returned, page by page;
        what is left before start keeps base, what is left from end on becomes a
        piece of its own based at end (mm/mmap.c __split_vma): (entries, the base of
        that right piece or None)."""
        assert self.page_dir is not None
        allocation, owner = self.allocations[base], self.views[base]
        pages = self.pages
        entries = []
        for vpn in range(start >> PAGE_SHIFT, end >> PAGE_SHIFT):
            del pages[vpn]
            present = self.pte(vpn) & PTE_PRESENT  # a PAGE_NOACCESS page has no PTE
            entries.append(self.vmm.UnmapSharedPage(self.page_dir, vpn << PAGE_SHIFT)
                           if present else 0)
        old_end = allocation.end
        self._remove(allocation)
        del self.views[base]
        if base < start:
            allocation.size = start - base
            self._add(allocation)
            self.views[base] = owner
        right = None
        if end < old_end:
            self._add(Allocation(end, old_end - end, allocation.allocation_protect,
                                 allocation.origin, allocation.type))
            for vpn in range(end >> PAGE_SHIFT, old_end >> PAGE_SHIFT):
                pages[vpn].allocation_base = end
            self.views[end] = owner
            right = end
        return entries, right

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
        """Make the PTE of committed page vpn match protect; the frame is kept. A view
        page's frame stays SHARED (its manager's) with or without a PTE; its D bit
        goes to the manager before a PAGE_NOACCESS change clears the PTE."""
        directory = self.page_dir
        assert directory is not None and record.frame is not None
        present, writable = pte_bits(protect)
        entry = self.pte(vpn)
        owner = self.views.get(record.allocation_base)
        if entry & PTE_PRESENT:
            table = directory.tables[vpn >> 10]
            assert table is not None
            if present:
                table.entries[vpn & 0x3FF] = (entry & ~PTE_WRITABLE) | (
                    PTE_WRITABLE if writable else 0)
            elif owner is not None:
                if entry & PTE_DIRTY:
                    owner.fold_dirty(self, record.allocation_base, vpn)
                table.entries[vpn & 0x3FF] = 0
            else:
                table.entries[vpn & 0x3FF] = 0
                self.vmm.pageman.owner[record.frame] = FrameOwner.HELD
        elif present and owner is not None:
            mapped = self.vmm.MapSharedPage(directory, vpn << PAGE_SHIFT, record.frame,
                                            writable)
            assert mapped, self.vmm.last_error
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
        for vpn, offset, _ in page_pieces(addr, length):
            cursor = (vpn << PAGE_SHIFT) + offset
            fault = access_fault(directory.tables_physical[vpn >> 10], self.pte(vpn), True, write)
            if fault >= 0:
                return self._fail(ErrorCode.ERROR_NOACCESS, PageFault(fault, cursor))
            record = self.pages.get(vpn)
            if record is None or not protect_allows(record.protect, kind):
                return self._fail(ErrorCode.ERROR_NOACCESS, AccessViolation(cursor, kind))
        return None

def on_a_space(failure: _R) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]:
    """A call on a process's address space (the Windows and Linux calls take it
    first, as the seed's ``process_memory_space* space``): given anything but an
    AddressSpace (a caller's bug, a freed or foreign pointer) it returns failure and
    changes nothing; there is no space to leave a status in."""
    def wrap(function: Callable[_P, _R]) -> Callable[_P, _R]:
        @functools.wraps(function)
        def checked(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            if not args or not isinstance(args[0], AddressSpace):
                return failure
            return function(*args, **kwargs)
        return checked
    return wrap


def table_slots(start: int, end: int) -> set[int]:
    """Directory slots of the pages of [start, end)."""
    return set(range(start >> 22, ((end - 1) >> 22) + 1)) if end > start else set()


def _layout_ok(image_size: int, heap_max_size: int, stack_size: int) -> bool:
    """Whether the constructor's sizes give a layout that fits user space."""
    if not (is_u32(image_size) and is_u32(heap_max_size) and is_u32(stack_size)):
        return False
    heap_start = page_ceil(IMAGE_BASE + image_size)
    return (image_size > 0 and 0 < stack_size <= STACK_RESERVE
            and heap_start + heap_max_size <= USER_TOP - STACK_RESERVE)


__all__ = ["AccessViolation", "AddressSpace", "Allocation", "PageRecord", "ViewOwner",
           "table_slots"]
