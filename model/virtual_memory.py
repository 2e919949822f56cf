"""VirtualMemoryManager: two-level x86 paging (seed section 2).

A PageDirectory and each PageTable occupy one physical frame (owned as
DIRECTORY / TABLE in the PageManager) and hold 1024 encoded entries: frame
number in bits 31..12, then P, R/W, U/S, A, D (model/x86_paging.py). The
seed's ``PageDirectory`` fields are kept: ``tables`` (the PageTable objects),
``tables_physical`` (the PDEs) and ``physical_addr``. Entries live in the
objects, not in the bytes of their frames.

Decisions where the seed is silent (docs/semantics.md):

- Kernel space is directory slot 0 (the identity-mapped first 4 MB) and slots
  768..1023 (0xC0000000 and up). Their page tables are *kernel tables*: one
  table per slot, linked into every directory (VMM-4). A kernel table created
  after directories exist is linked into all of them at once, as the kernel
  must do when it has no shared top-level table (Linux i386 vmalloc_sync_all).
- Kernel PDEs are supervisor (U/S clear), so user mode never reaches kernel
  space (PROT-3); user PDEs have P|R/W|U/S and the PTE decides permissions, as
  Linux and Windows set their user PDEs.
- A page is owned by the one PTE that maps it: AllocPage/AllocFrame take a
  free frame, MapVirtualAddress takes a frame the caller holds
  (RequestFrame), and UnmapVirtualAddress/FreePage free the frame. Reserved
  frames are identity-mapped at boot and released only by UnreservePage.
- A shared frame (FrameOwner.SHARED: a shared-memory block's or a file page
  cache's frame, issue 5) is owned by its manager, not by a PTE:
  MapSharedPage maps it at a user address without changing its owner, any
  number of times (VMM-1: frames mapped more than once are exactly the shared
  ones), and UnmapSharedPage clears the PTE and returns the old entry (its D
  bit tells the file manager the page was written), leaving the frame held.
- A user page (``is_kernel`` false) may not be placed in kernel space
  (ERROR_ACCESS_DENIED): that would give user mode a way into the kernel.
- The kernel directory maps kernel space only (as Linux's swapper_pg_dir):
  placing a page at a user address in it is ERROR_ACCESS_DENIED, and a new
  directory starts as a copy of it (Linux's pgd_alloc copies the kernel
  entries verbatim).
- ClonePageDirectory links the kernel tables and copies every user page into
  a fresh frame, contents and P/R/W/U flags included (the tutorial's
  clone_directory / clone_table), in (slot, index) order; a user table with
  no present entry is not copied. The copies' A and D bits start clear, as
  Linux's copy_present_pte marks a child's PTEs old. It is all or nothing:
  when memory cannot hold the copy, nothing is allocated.
- DestroyPageDirectory frees the directory, its user tables and the pages they
  map; kernel tables stay. The kernel directory and the current directory
  cannot be destroyed.
- Accesses (ReadVirtualMemory, WriteVirtualMemory, ExecuteVirtualMemory) walk
  the tables like the MMU with CR0.WP=1 and no NX (an instruction fetch is a
  read); a successful access sets A in the PDE and PTE, a write also D
  (SDM Vol. 3A, 4.8). An access spanning pages is checked on every page
  before any byte moves; a fault reports the error code and the first
  faulting address (CR2).

Failures return False/None/0xFFFFFFFF and set ``last_error``; they never
change the state and never raise.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypeVar

from model.page_manager import PageManager
from model.page_tables import PageDirectory, PageFault, PageTable
from model.x86_paging import (
    access_fault,
    encode_entry,
    is_kernel_address,
    is_kernel_slot,
    is_page_aligned,
    is_u32,
    page_pieces,
)
from spec.abi import (
    ADDRESS_LIMIT,
    CLONED_BITS,
    ENTRIES_PER_TABLE,
    INVALID_PHYSICAL_ADDRESS,
    KERNEL_PDE_FLAGS,
    PAGE_SHIFT,
    PTE_ACCESSED,
    PTE_DIRTY,
    PTE_PRESENT,
    USER_PDE_FLAGS,
    ErrorCode,
    FrameOwner,
)

_T = TypeVar("_T")


class VirtualMemoryManager:
    """Page directories and tables over a PageManager, with the seed's operations.

    Over 300 lines because it is the seed's VirtualMemoryManager: its ten
    operations and the accesses share the directories, the kernel tables linked
    into each (VMM-4) and the PageManager's ownership map, and an implementer
    looks for each of them on this class. The structures are model/page_tables.py's,
    the entry encoding model/x86_paging.py's."""

    def __init__(self, pageman: PageManager) -> None:
        self.pageman = pageman
        pageman.paging = self
        self.kernel_directory: PageDirectory | None = None
        self.current_directory: PageDirectory | None = None
        self.placement_address = 0
        self.directories: dict[int, PageDirectory] = {}
        self.kernel_tables: dict[int, PageTable] = {}
        self.last_error = ErrorCode.ERROR_SUCCESS

    # -- seed operations -------------------------------------------------

    def InitializePaging(self) -> bool:
        """Create the kernel directory, identity-map the reserved frames, switch to it."""
        if self.kernel_directory is not None:
            return self._fail(ErrorCode.ERROR_ALREADY_INITIALIZED)
        if not self.pageman.initialized:
            return self._fail(ErrorCode.ERROR_NOT_READY)
        if self.pageman.free_count() < 2:
            return self._fail(ErrorCode.ERROR_NOT_ENOUGH_MEMORY)
        directory = self._new_directory()
        self.kernel_directory = directory
        identity = self._new_table(directory, 0)
        for frame in range(self.pageman.reserved_end):
            if self.pageman.owner[frame] == FrameOwner.RESERVED:
                identity.entries[frame] = encode_entry(frame, True, True, False)
        self.placement_address = self.pageman.reserved_end << PAGE_SHIFT
        self.current_directory = directory
        return self._ok(True)

    def CreatePageDirectory(self) -> PageDirectory | None:
        """A new directory with the kernel tables linked and no user mappings."""
        if self.kernel_directory is None:
            self.last_error = ErrorCode.ERROR_NOT_READY
            return None
        if self.pageman.free_count() < 1:
            self.last_error = ErrorCode.ERROR_NOT_ENOUGH_MEMORY
            return None
        return self._ok(self._new_directory())

    def DestroyPageDirectory(self, dir: PageDirectory) -> bool:
        """Free a directory with its user tables and pages."""
        if not self._is_live(dir):
            return self._fail(ErrorCode.ERROR_INVALID_HANDLE)
        if dir is self.kernel_directory:
            return self._fail(ErrorCode.ERROR_ACCESS_DENIED)
        if dir is self.current_directory:
            return self._fail(ErrorCode.ERROR_BUSY)
        for slot, table in self._user_tables(dir):
            for index, entry in enumerate(table.entries):
                if entry & PTE_PRESENT:
                    self.pageman.release_frame(entry >> PAGE_SHIFT)
                    table.entries[index] = 0
            dir.tables[slot] = None
            dir.tables_physical[slot] = 0
            self.pageman.release_frame(table.physical_addr >> PAGE_SHIFT)
        del self.directories[dir.physical_addr]
        self.pageman.release_frame(dir.physical_addr >> PAGE_SHIFT)
        return self._ok(True)

    def ClonePageDirectory(self, src: PageDirectory) -> PageDirectory | None:
        """Link kernel tables, copy user tables and pages (contents and flags) into new frames."""
        if not self._is_live(src):
            self.last_error = ErrorCode.ERROR_INVALID_HANDLE
            return None
        user_tables = [(slot, table) for slot, table in self._user_tables(src)
                       if any(entry & PTE_PRESENT for entry in table.entries)]
        needed = 1 + sum(1 + sum(entry & PTE_PRESENT for entry in table.entries)
                         for _, table in user_tables)
        if self.pageman.free_count() < needed:
            self.last_error = ErrorCode.ERROR_NOT_ENOUGH_MEMORY
            return None
        clone = self._new_directory()
        for slot, table in user_tables:
            copy = self._new_table(clone, slot)
            for index, entry in enumerate(table.entries):
                if entry & PTE_PRESENT:
                    frame = self.pageman.take_frame(FrameOwner.MAPPED)
                    self.pageman.copy_frame(entry >> PAGE_SHIFT, frame)
                    copy.entries[index] = (frame << PAGE_SHIFT) | (entry & CLONED_BITS)
        return self._ok(clone)

    def SwitchPageDirectory(self, new_dir: PageDirectory) -> bool:
        """Make new_dir the current directory (load CR3)."""
        if not self._is_live(new_dir):
            return self._fail(ErrorCode.ERROR_INVALID_HANDLE)
        self.current_directory = new_dir
        return self._ok(True)

    def MapVirtualAddress(self, dir: PageDirectory, virtual_addr: int, physical_addr: int,
                          is_kernel: bool, is_writeable: bool) -> bool:
        """Map a frame the caller holds (RequestFrame) at virtual_addr; the PTE then owns it."""
        if not self._page_request_ok(dir, virtual_addr, is_kernel, is_writeable):
            return False
        if not is_u32(physical_addr) or not is_page_aligned(physical_addr):
            return self._fail(ErrorCode.ERROR_INVALID_PARAMETER)
        frame = physical_addr >> PAGE_SHIFT
        if frame >= self.pageman.nframes or self.pageman.owner[frame] == FrameOwner.FREE:
            return self._fail(ErrorCode.ERROR_INVALID_ADDRESS)
        if self.pageman.owner[frame] != FrameOwner.HELD:
            return self._fail(ErrorCode.ERROR_BUSY)
        if not self._has_frames(dir, virtual_addr, 0):
            return self._fail(ErrorCode.ERROR_NOT_ENOUGH_MEMORY)
        self.pageman.owner[frame] = FrameOwner.MAPPED
        self._set_entry(dir, virtual_addr, encode_entry(frame, True, is_writeable, not is_kernel))
        return self._ok(True)

    def UnmapVirtualAddress(self, dir: PageDirectory, virtual_addr: int) -> bool:
        """Remove the mapping at virtual_addr and free the frame it owned."""
        table = self._mapped_table(dir, virtual_addr)
        if table is None:
            return False
        index = (virtual_addr >> PAGE_SHIFT) & 0x3FF
        frame = table.entries[index] >> PAGE_SHIFT
        if self.pageman.owner[frame] != FrameOwner.MAPPED:
            return self._fail(ErrorCode.ERROR_ACCESS_DENIED)
        table.entries[index] = 0
        self.pageman.release_frame(frame)
        return self._ok(True)

    def MapSharedPage(self, dir: PageDirectory, virtual_addr: int, frame: int,
                      is_writeable: bool) -> bool:
        """Map the SHARED frame at the user address virtual_addr; its owner stays SHARED."""
        if not self._page_request_ok(dir, virtual_addr, False, is_writeable):
            return False
        if type(frame) is not int or not 0 <= frame < self.pageman.nframes:
            return self._fail(ErrorCode.ERROR_INVALID_PARAMETER)
        if self.pageman.owner[frame] == FrameOwner.FREE:
            return self._fail(ErrorCode.ERROR_INVALID_ADDRESS)
        if self.pageman.owner[frame] != FrameOwner.SHARED:
            return self._fail(ErrorCode.ERROR_BUSY)
        if not self._has_frames(dir, virtual_addr, 0):
            return self._fail(ErrorCode.ERROR_NOT_ENOUGH_MEMORY)
        self._set_entry(dir, virtual_addr, encode_entry(frame, True, is_writeable, True))
        return self._ok(True)

    def UnmapSharedPage(self, dir: PageDirectory, virtual_addr: int) -> int:
        """Clear the PTE of a SHARED frame at virtual_addr: the old entry (0 on failure);
        the frame stays with its manager."""
        table = self._mapped_table(dir, virtual_addr)
        if table is None:
            return 0
        index = (virtual_addr >> PAGE_SHIFT) & 0x3FF
        entry = table.entries[index]
        if self.pageman.owner[entry >> PAGE_SHIFT] != FrameOwner.SHARED:
            self.last_error = ErrorCode.ERROR_ACCESS_DENIED
            return 0
        table.entries[index] = 0
        return self._ok(entry)

    def VirtualToPhysical(self, dir: PageDirectory, virtual_addr: int) -> int:
        """The physical address virtual_addr translates to in dir, or INVALID_PHYSICAL_ADDRESS."""
        if not self._is_live(dir):
            return self._fail_address(ErrorCode.ERROR_INVALID_HANDLE)
        if not is_u32(virtual_addr):
            return self._fail_address(ErrorCode.ERROR_INVALID_PARAMETER)
        entry = self._entry(dir, virtual_addr)
        if not entry & PTE_PRESENT:
            return self._fail_address(ErrorCode.ERROR_INVALID_ADDRESS)
        return self._ok((entry & 0xFFFFF000) | (virtual_addr & 0xFFF))

    def AllocPage(self, dir: PageDirectory, virtual_addr: int, is_kernel: bool,
                  is_writeable: bool) -> bool:
        """Map the first free frame (zero-filled) at virtual_addr."""
        if not self._page_request_ok(dir, virtual_addr, is_kernel, is_writeable):
            return False
        if not self._has_frames(dir, virtual_addr, 1):
            return self._fail(ErrorCode.ERROR_NOT_ENOUGH_MEMORY)
        table = self._table_for(dir, virtual_addr)
        frame = self.pageman.take_frame(FrameOwner.MAPPED)
        table.entries[(virtual_addr >> PAGE_SHIFT) & 0x3FF] = encode_entry(
            frame, True, is_writeable, not is_kernel)
        return self._ok(True)

    def FreePage(self, dir: PageDirectory, virtual_addr: int) -> bool:
        """The seed's free-page call: unmap the page and free its frame."""
        return self.UnmapVirtualAddress(dir, virtual_addr)

    # -- memory accesses through the page tables ------------------------

    def ReadVirtualMemory(self, dir: PageDirectory, virtual_addr: int, length: int,
                          user_mode: bool) -> bytes | PageFault | None:
        """Read length bytes as the CPU would; a PageFault when the walk refuses."""
        spans = self._access(dir, virtual_addr, length, user_mode, False)
        if spans is None or isinstance(spans, PageFault):
            return spans
        return self._ok(self.pageman.read_span(spans))

    def ExecuteVirtualMemory(self, dir: PageDirectory, virtual_addr: int,
                             user_mode: bool) -> bytes | PageFault | None:
        """Fetch one instruction byte: without NX a fetch is checked as a read."""
        return self.ReadVirtualMemory(dir, virtual_addr, 1, user_mode)

    def WriteVirtualMemory(self, dir: PageDirectory, virtual_addr: int, data: bytes,
                           user_mode: bool) -> PageFault | bool:
        """Write data as the CPU would: True, a PageFault, or False on bad arguments."""
        if not isinstance(data, bytes | bytearray):
            return self._fail(ErrorCode.ERROR_INVALID_PARAMETER)
        spans = self._access(dir, virtual_addr, len(data), user_mode, True)
        if spans is None or isinstance(spans, PageFault):
            return False if spans is None else spans
        self.pageman.write_span(spans, bytes(data))
        return self._ok(True)

    # -- helpers for the PageManager --------------------------------------

    def drop_identity_mapping(self, frame: int) -> None:
        """Clear the identity PTE of a reserved frame (UnreservePage)."""
        identity = self.kernel_tables.get(0)
        if identity is not None and frame < ENTRIES_PER_TABLE:
            identity.entries[frame] = 0

    # -- private -----------------------------------------------------------

    def _is_live(self, dir: object) -> bool:
        return (isinstance(dir, PageDirectory) and type(dir.physical_addr) is int
                and self.directories.get(dir.physical_addr) is dir)

    def _page_request_ok(self, dir: PageDirectory, virtual_addr: int, is_kernel: bool,
                         is_writeable: bool) -> bool:
        """Validate a request to place a page; sets last_error when it fails."""
        if not self._is_live(dir):
            return self._fail(ErrorCode.ERROR_INVALID_HANDLE)
        if not (is_u32(virtual_addr) and is_page_aligned(virtual_addr)
                and type(is_kernel) is bool and type(is_writeable) is bool):
            return self._fail(ErrorCode.ERROR_INVALID_PARAMETER)
        if not is_kernel and is_kernel_address(virtual_addr):
            return self._fail(ErrorCode.ERROR_ACCESS_DENIED)
        if dir is self.kernel_directory and not is_kernel_address(virtual_addr):
            return self._fail(ErrorCode.ERROR_ACCESS_DENIED)
        if self._entry(dir, virtual_addr) & PTE_PRESENT:
            return self._fail(ErrorCode.ERROR_ALREADY_EXISTS)
        return True

    def _has_frames(self, dir: PageDirectory, virtual_addr: int, pages: int) -> bool:
        """Whether the free frames cover pages new pages plus a missing page table."""
        missing_table = dir.tables[virtual_addr >> 22] is None
        return self.pageman.free_count() >= pages + missing_table

    def _mapped_table(self, dir: PageDirectory, virtual_addr: int) -> PageTable | None:
        """The table holding a present PTE for virtual_addr; None after failing."""
        if not self._is_live(dir):
            self.last_error = ErrorCode.ERROR_INVALID_HANDLE
            return None
        if not is_u32(virtual_addr) or not is_page_aligned(virtual_addr):
            self.last_error = ErrorCode.ERROR_INVALID_PARAMETER
            return None
        table = dir.tables[virtual_addr >> 22]
        if table is None or not table.entries[(virtual_addr >> PAGE_SHIFT) & 0x3FF] & PTE_PRESENT:
            self.last_error = ErrorCode.ERROR_INVALID_ADDRESS
            return None
        return table

    def _entry(self, dir: PageDirectory, virtual_addr: int) -> int:
        """The PTE for virtual_addr (0 when its table is absent)."""
        table = dir.tables[virtual_addr >> 22]
        return 0 if table is None else table.entries[(virtual_addr >> PAGE_SHIFT) & 0x3FF]

    def _set_entry(self, dir: PageDirectory, virtual_addr: int, entry: int) -> None:
        self._table_for(dir, virtual_addr).entries[(virtual_addr >> PAGE_SHIFT) & 0x3FF] = entry

    def _table_for(self, dir: PageDirectory, virtual_addr: int) -> PageTable:
        """The table for virtual_addr's slot, created (and linked) when missing."""
        slot = virtual_addr >> 22
        table = dir.tables[slot]
        return table if table is not None else self._new_table(dir, slot)

    def _new_directory(self) -> PageDirectory:
        frame = self.pageman.take_frame(FrameOwner.DIRECTORY)
        directory = PageDirectory(frame << PAGE_SHIFT)
        if self.kernel_directory is not None:
            # The kernel directory maps kernel space only: copy it whole, as
            # Linux's pgd_alloc copies swapper_pg_dir's kernel entries.
            directory.tables[:] = self.kernel_directory.tables
            directory.tables_physical[:] = self.kernel_directory.tables_physical
        self.directories[directory.physical_addr] = directory
        return directory

    def _new_table(self, dir: PageDirectory, slot: int) -> PageTable:
        """A new table at slot: private to dir in user space, linked everywhere in kernel space."""
        table = PageTable(self.pageman.take_frame(FrameOwner.TABLE) << PAGE_SHIFT)
        if is_kernel_slot(slot):
            self.kernel_tables[slot] = table
            owners: Iterator[PageDirectory] = iter(self.directories.values())
            flags = KERNEL_PDE_FLAGS
        else:
            owners = iter((dir,))
            flags = USER_PDE_FLAGS
        for directory in owners:
            directory.tables[slot] = table
            directory.tables_physical[slot] = table.physical_addr | flags
        return table

    def _user_tables(self, dir: PageDirectory) -> Iterator[tuple[int, PageTable]]:
        for slot, table in enumerate(dir.tables):
            if table is not None and not is_kernel_slot(slot):
                yield slot, table

    def _access(self, dir: PageDirectory, virtual_addr: int, length: int, user_mode: bool,
                write: bool) -> list[tuple[int, int, int]] | PageFault | None:
        """Walk every page of [virtual_addr, +length); spans of frames, a fault, or None."""
        if not self._is_live(dir):
            self.last_error = ErrorCode.ERROR_INVALID_HANDLE
            return None
        if not (is_u32(virtual_addr) and type(length) is int and 0 <= length
                and virtual_addr + length <= ADDRESS_LIMIT and type(user_mode) is bool):
            self.last_error = ErrorCode.ERROR_INVALID_PARAMETER
            return None
        spans: list[tuple[int, int, int]] = []
        walked: list[tuple[int, PageTable, int]] = []
        for page, offset, stop in page_pieces(virtual_addr, length):
            slot, index = page >> 10, page & 0x3FF
            table = dir.tables[slot]
            pte = 0 if table is None else table.entries[index]
            fault = access_fault(dir.tables_physical[slot], pte, user_mode, write)
            if fault >= 0:
                self.last_error = ErrorCode.ERROR_NOACCESS
                return PageFault(fault, (page << PAGE_SHIFT) + offset)
            assert table is not None
            spans.append((pte >> PAGE_SHIFT, offset, stop))
            walked.append((slot, table, index))
        for slot, table, index in walked:
            dir.tables_physical[slot] |= PTE_ACCESSED
            table.entries[index] |= PTE_ACCESSED | (PTE_DIRTY if write else 0)
        return spans

    def _ok(self, value: _T) -> _T:
        self.last_error = ErrorCode.ERROR_SUCCESS
        return value

    def _fail(self, code: ErrorCode) -> bool:
        self.last_error = code
        return False

    def _fail_address(self, code: ErrorCode) -> int:
        self.last_error = code
        return INVALID_PHYSICAL_ADDRESS

