"""MemoryMappedFiles: file views over a page cache (seed section 5, issue 5).

State: ``files`` (file id -> FileNode: a small id given to each node the first
time a view of it is made; the node is kept), ``cache`` ((file id, page
index) -> CachePage: frame, dirty flag, ``mappers`` = the (space, vpn) of
every PTE mapping it) and ``views`` ((pid, base) -> FileView). The seed's
MapFileToMemory has no process argument: every call acts on the CURRENT
process (``current()``, SystemCalls.current), as a system call does. Rules
(shm_common.md), each with its source:

- MapFileToMemory(file, offset, size, protection) -> base or 0. Checks in
  order: no current process -> ERROR_NOT_READY (a space that is not live: its
  status() code); file not a FileNode -> ERROR_INVALID_HANDLE; offset / size
  not u32 or protection not a view protection (model/views.py) ->
  ERROR_INVALID_PARAMETER; a writable protection on a node that is not
  writable -> ERROR_ACCESS_DENIED (CreateFileMapping(PAGE_READWRITE) on a
  read-only handle); length 0 -> ERROR_FILE_INVALID (CreateFileMapping
  rejects empty files); offset not page aligned -> ERROR_MAPPED_ALIGNMENT
  (mmap(2) requires a page-aligned offset); size 0 = to the end of the file
  (MapViewOfFile's dwNumberOfBytesToMap 0); an empty view or offset + size past
  the end -> ERROR_ACCESS_DENIED (STATUS_INVALID_VIEW_SIZE, which Win32
  reports so); placement always by the system (64 KB, bottom-up:
  model/views.py), none -> ERROR_NOT_ENOUGH_MEMORY; frames for the new cache
  pages and missing page tables short -> ERROR_NOT_ENOUGH_MEMORY. The view
  covers page_ceil(size) bytes: an ORIGIN_MAPPED_FILE, MEM_MAPPED allocation.
- Page cache: one frame per (file, page index), owner FrameOwner.SHARED,
  shared by every view of that page in any process (Linux's page cache; a
  Windows section's pages are shared by all its views), so views of one file
  region stay coherent. Filled from the file when the first view maps it
  (bytes past the end of the file read as zero: mmap(2), "the remaining bytes
  in the partial page at the end of the mapping are zeroed"); its refcount is
  len(mappers); freed when that drops to 0, after write-back.
- Dirty: a page's flag or the x86 D bit of any PTE mapping it (the model's
  accesses set A/D, SDM Vol. 3A 4.8), as Linux folds pte_dirty into the page.
  Write-back stores only the bytes below the file's length (a mapping never
  extends its file), then clears the flag and the D bit of every mapping PTE.
- SyncMappedFile(addr, invalidate=False) -> bool: addr the base of a file view
  of the current process, else ERROR_INVALID_ADDRESS. Writes back every dirty
  page of the view (msync(MS_SYNC), FlushViewOfFile); invalidate=True then
  reloads every page of the view from the file (msync(MS_INVALIDATE): picks up
  writes made to the node directly): a clean page rereads the node, a page just
  written back holds what the file now holds (its bytes below the end of the
  file, zeros past it), without asking the node again.
- UnmapFileFromMemory(addr) -> bool: any address inside a file view of the
  current process unmaps that view (UnmapViewOfFile: Wine
  dlls/kernel32/tests/virtual.c test_MapViewOfFile maps 12288 bytes of a file
  and unmaps at ptr + 100, ptr + 4096, ptr + 4096 + 100; model/views.py
  view_holding), else ERROR_INVALID_ADDRESS. Clears the view's PTEs (their D bits
  fold into the pages' flags), writes the view's dirty pages back (nothing is
  lost: munmap of a MAP_SHARED file mapping keeps its writes), each page's
  refcount - 1, frees the pages that reach 0.
- Pieces (Linux, issue 15): munmap or MAP_FIXED over part of a view
  (model/linux_mm.py) writes the dirty pages of the range back, then unmaps
  exactly those pages (each cache page's refcount - 1); what is left is one or
  two views (FileView), each with its first page in the file (the vma's
  vm_pgoff: mm/mmap.c __split_vma; LTP munmap01/02: the rest stays
  accessible, the unmapped part faults). Each piece is a view for the calls
  here: UnmapFileFromMemory at an address in a piece unmaps that piece,
  SyncMappedFile takes a piece's base.
- Writes through a read-only view are refused by the access path (the PTE's
  R/W bit is clear: ProcessMemorySpace.WriteUserMemory returns the PageFault),
  MMF-2. Process exit detaches every view through ``detach`` (write-back
  included): nothing is lost without an explicit unmap.
- A non-u32 addr, or an invalidate that is not a bool: ERROR_INVALID_PARAMETER.
  Processes are told apart by pid. The status is this manager's ``last_error``.
- The node is the caller's, untrusted (model/file_node.py's node_* guards): a
  ``writable`` that is not a bool -> ERROR_INVALID_HANDLE; a length() that
  raises or is not an int in [0, 2**32) -> ERROR_FILE_INVALID; a read() that
  raises or gives more bytes than asked or not bytes -> ERROR_READ_FAULT (the
  Win32 code of a device that cannot be read); a write() that raises or does not
  answer an int -> ERROR_WRITE_FAULT. MapFileToMemory reads every byte its new
  cache pages need before it changes anything; SyncMappedFile reads what
  ``invalidate`` reloads, then writes back, and changes the cache (clean flags,
  D bits, reloaded bytes) only when both succeeded; UnmapFileFromMemory writes
  back first and keeps the view when the node refuses. Bytes the node stored
  before it failed are the node's: they cannot be taken back. Process exit
  cannot fail: a write-back the node refuses there is dropped (Linux drops a
  page whose writeback fails and keeps the error for the next fsync).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from model.address_space import AddressSpace
from model.errors import ReportsStatus
from model.file_node import FileNode, NodeError, node_length, node_read, node_writable, node_write
from model.process_memory import ProcessMemorySpace
from model.user_layout import page_ceil, protect_allows
from model.views import is_view_protect, place_view, view_error, view_holding
from model.virtual_memory import VirtualMemoryManager
from model.x86_paging import is_u32
from spec.abi import ORIGIN_MAPPED_FILE, PAGE_SHIFT, PAGE_SIZE, PTE_DIRTY, ErrorCode, FrameOwner


@dataclass(slots=True)
class CachePage:
    """The frame holding one page of a file, shared by every PTE in ``mappers``."""

    frame: int
    dirty: bool = False
    mappers: set[tuple[ProcessMemorySpace, int]] = field(default_factory=set)  # (space, vpn)


@dataclass(frozen=True, slots=True)
class FileView:
    """One view: pages [first, first + count) of file ``file``, mapped with protect."""

    file: int
    first: int
    count: int
    protect: int


class MemoryMappedFiles(ReportsStatus):
    """File views of the current process over one page cache, with the seed's operations."""

    def __init__(self, vmm: VirtualMemoryManager,
                 current: Callable[[], ProcessMemorySpace | None]) -> None:
        self.vmm = vmm
        self.current = current
        self.files: dict[int, FileNode] = {}
        self.file_ids: dict[int, int] = {}  # id(node) -> file id (the node is in files)
        self.cache: dict[tuple[int, int], CachePage] = {}
        self.views: dict[tuple[int, int], FileView] = {}  # (pid, base) -> view
        self.last_error = ErrorCode.ERROR_SUCCESS

    # -- seed operations -------------------------------------------------------

    def MapFileToMemory(self, file: FileNode, offset: int, size: int, protection: int) -> int:
        """Map [offset, offset + size) of file into the current process: the base, or 0."""
        space = self.current()
        if space is None:
            return self._fail(ErrorCode.ERROR_NOT_READY, 0)
        code = space.status()
        if code != ErrorCode.ERROR_SUCCESS:
            return self._fail(code, 0)
        if not isinstance(file, FileNode):
            return self._fail(ErrorCode.ERROR_INVALID_HANDLE, 0)
        if not (is_u32(offset) and is_u32(size) and is_view_protect(protection)):
            return self._fail(ErrorCode.ERROR_INVALID_PARAMETER, 0)
        try:
            writable = node_writable(file)
        except NodeError:
            return self._fail(ErrorCode.ERROR_INVALID_HANDLE, 0)
        if protect_allows(protection, "write") and not writable:
            return self._fail(ErrorCode.ERROR_ACCESS_DENIED, 0)
        try:
            length = node_length(file)
        except NodeError:
            return self._fail(ErrorCode.ERROR_FILE_INVALID, 0)
        if length == 0:
            return self._fail(ErrorCode.ERROR_FILE_INVALID, 0)
        if offset % PAGE_SIZE:
            return self._fail(ErrorCode.ERROR_MAPPED_ALIGNMENT, 0)
        if size == 0:
            size = length - offset
        if size <= 0 or offset + size > length:
            return self._fail(ErrorCode.ERROR_ACCESS_DENIED, 0)
        view_size = page_ceil(size)
        base, code = place_view(space, 0, view_size)
        if code != ErrorCode.ERROR_SUCCESS:
            return self._fail(code, 0)
        file_id = self.file_ids.get(id(file))
        first, count = offset >> PAGE_SHIFT, view_size >> PAGE_SHIFT
        pages = range(first, first + count)
        new = [index for index in pages if file_id is None or (file_id, index) not in self.cache]
        if len(new) + space.missing_tables(base, base + view_size) > space.free_frames():
            return self._fail(ErrorCode.ERROR_NOT_ENOUGH_MEMORY, 0)
        try:  # every byte the new cache pages need, before anything changes
            loaded = {index: node_read(file, index * PAGE_SIZE, PAGE_SIZE) for index in new}
        except NodeError:
            return self._fail(ErrorCode.ERROR_READ_FAULT, 0)
        if file_id is None:
            file_id = self.file_ids[id(file)] = len(self.files) + 1
            self.files[file_id] = file
        for index, data in loaded.items():
            frame = self.vmm.pageman.take_frame(FrameOwner.SHARED)
            assert frame >= 0
            self._fill(frame, data)
            self.cache[(file_id, index)] = CachePage(frame)
        cached = [self.cache[(file_id, index)] for index in pages]
        space.map_view(base, [page.frame for page in cached], protection, ORIGIN_MAPPED_FILE,
                       self)
        for vpn, page in enumerate(cached, base >> PAGE_SHIFT):
            page.mappers.add((space, vpn))
        self.views[(space.pid, base)] = FileView(file_id, first, count, protection)
        return self._ok(base)

    def UnmapFileFromMemory(self, addr: int) -> bool:
        """Write back and unmap the current process's view holding addr; True, or False
        (ERROR_WRITE_FAULT when the file's node refuses the write-back: the view stays)."""
        space = self.current()
        if space is None:
            return self._fail(ErrorCode.ERROR_NOT_READY, False)
        base, code = view_holding(space, addr, self, self.views)
        if code != ErrorCode.ERROR_SUCCESS:
            return self._fail(code, False)
        view = self.views[(space.pid, base)]
        try:
            self._store(view, self._dirty(view))
        except NodeError:
            return self._fail(ErrorCode.ERROR_WRITE_FAULT, False)
        self.detach(space, base)
        return self._ok(True)

    def SyncMappedFile(self, addr: int, invalidate: bool = False) -> bool:
        """Write back the dirty pages of the view at addr (then reload them: invalidate).
        All or nothing for the model: ERROR_READ_FAULT when the node cannot give the
        pages to reload, ERROR_WRITE_FAULT when it refuses the write-back (its own
        bytes written before it failed cannot be taken back)."""
        if type(invalidate) is not bool:
            return self._fail(ErrorCode.ERROR_INVALID_PARAMETER, False)
        space = self._space_with_view(addr)
        if space is None:
            return False
        view = self.views[(space.pid, addr)]
        node = self.files[view.file]
        dirty = self._dirty(view)
        try:
            fresh = {index: node_read(node, index * PAGE_SIZE, PAGE_SIZE)
                     for index in range(view.first, view.first + view.count)
                     if invalidate and index not in dirty}
        except NodeError:
            return self._fail(ErrorCode.ERROR_READ_FAULT, False)
        try:
            stored = self._store(view, dirty)
        except NodeError:
            return self._fail(ErrorCode.ERROR_WRITE_FAULT, False)
        for index, data in fresh.items():
            self._fill(self.cache[(view.file, index)].frame, data)
        if invalidate:  # a page just written back reloads as what the file now holds
            for index in dirty:
                page = self.cache[(view.file, index)]
                self._fill(page.frame, self.vmm.pageman.read_span(
                    [(page.frame, 0, stored[index])]))
        return self._ok(True)

    # -- ViewOwner ---------------------------------------------------------------

    def detach(self, space: AddressSpace, base: int) -> None:
        """Unmap the view based at base from space, writing its dirty pages back
        (pre: it is one of this manager's views). At process exit nobody is told of
        a write-back the node refuses: those pages' bytes are dropped, as Linux
        drops a page whose writeback fails and keeps the error for a later fsync."""
        view = self.views.pop((space.pid, base))
        try:
            self._store(view, self._dirty(view))
        except NodeError:
            self._clean(view, self._dirty(view))
        self._release(space, view, base, space.unmap_view(base))

    def _release(self, space: AddressSpace, view: FileView, base: int,
                 entries: list[int]) -> None:
        """The pages of view, mapped from base in space, are unmapped (their old PTEs
        entries, written back): each cache page's refcount - 1, freed at 0."""
        for vpn, (index, entry) in enumerate(zip(range(view.first, view.first + view.count),
                                                 entries, strict=True), base >> PAGE_SHIFT):
            key = (view.file, index)
            page = self.cache[key]
            page.mappers.discard((space, vpn))
            assert not entry & PTE_DIRTY  # written back (or dropped) above
            if not page.mappers:
                self.vmm.pageman.release_frame(page.frame)
                del self.cache[key]

    def unmap_pages(self, space: AddressSpace, base: int, start: int, end: int) -> None:
        """Unmap the pages [start, end) of the piece based at base, a strict part of it
        (pre: one of this manager's pieces), writing their dirty pages back first (a
        write-back the node refuses dropped, as at exit: munmap cannot fail there);
        what is left is one or two pieces, each a FileView with its first page in
        the file (the vma's vm_pgoff: mm/mmap.c __split_vma)."""
        key = (space.pid, base)
        view = self.views.pop(key)
        low = (start - base) >> PAGE_SHIFT
        high = (end - base) >> PAGE_SHIFT
        part = FileView(view.file, view.first + low, high - low, view.protect)
        try:
            self._store(part, self._dirty(part))
        except NodeError:
            self._clean(part, self._dirty(part))
        entries, right = space.split_view(base, start, end)
        self._release(space, part, start, entries)
        if start > base:
            self.views[key] = FileView(view.file, view.first, low, view.protect)
        if right is not None:
            self.views[(space.pid, right)] = FileView(
                view.file, view.first + high, view.count - high, view.protect)

    def fold_dirty(self, space: AddressSpace, base: int, vpn: int) -> None:
        """The D bit of a PTE about to be cleared (the page made PAGE_NOACCESS) goes
        into its cache page's flag, as Linux folds pte_dirty into the page when a
        PTE is changed (pre: base is one of space's file views, vpn a page of it)."""
        view = self.views[(space.pid, base)]
        self.cache[(view.file, view.first + vpn - (base >> PAGE_SHIFT))].dirty = True

    def may_write(self, space: AddressSpace, base: int) -> bool:
        """Whether the view's node takes writes (a shared mapping of a file open for
        writing has VM_MAYWRITE, whatever prot it was mapped with: LTP mprotect02);
        a node whose ``writable`` is not a bool does not."""
        view = self.views.get((space.pid, base))
        if view is None:
            return False
        try:
            return node_writable(self.files[view.file])
        except NodeError:
            return False

    # -- observation ---------------------------------------------------------------

    def frames(self) -> list[int]:
        """Every page-cache frame (SYS-1's "file" claims)."""
        return [page.frame for page in self.cache.values()]

    @staticmethod
    def is_dirty(page: CachePage) -> bool:
        """Whether page is dirty: its flag or a mapping PTE's D bit (nothing is cleared)."""
        return page.dirty or any(space.pte(vpn) & PTE_DIRTY for space, vpn in page.mappers)

    # -- private -------------------------------------------------------------------

    def _space_with_view(self, addr: int) -> ProcessMemorySpace | None:
        """The current process when addr is the base of one of its file views; else fails."""
        space = self.current()
        if space is None:
            return self._fail(ErrorCode.ERROR_NOT_READY, None)
        code = view_error(space, addr, self, self.views)
        if code != ErrorCode.ERROR_SUCCESS:
            return self._fail(code, None)
        return space

    def _fill(self, frame: int, data: bytes) -> None:
        """Frame's bytes: data, then zeros (past the end of the file)."""
        memory = self.vmm.pageman.memory
        if data.strip(b"\0"):
            memory[frame] = bytearray(data.ljust(PAGE_SIZE, b"\0"))
        else:
            memory.pop(frame, None)

    def _dirty(self, view: FileView) -> list[int]:
        """The page indexes of view whose cache page is dirty (flag or a mapping
        PTE's D bit; nothing is cleared)."""
        return [index for index in range(view.first, view.first + view.count)
                if self.is_dirty(self.cache[(view.file, index)])]

    def _store(self, view: FileView, indexes: list[int]) -> dict[int, int]:
        """Write the bytes of view's pages at indexes below the end of the file into
        its node, then mark them clean: {index: bytes stored}. A NodeError from the
        node leaves every page as it was (dirty)."""
        if not indexes:
            return {}
        node = self.files[view.file]
        length = node_length(node)
        stored = {}
        for index in indexes:
            count = max(0, min(PAGE_SIZE, length - index * PAGE_SIZE))
            if count:
                frame = self.cache[(view.file, index)].frame
                node_write(node, index * PAGE_SIZE,
                           self.vmm.pageman.read_span([(frame, 0, count)]))
            stored[index] = count
        self._clean(view, indexes)
        return stored

    def _clean(self, view: FileView, indexes: list[int]) -> None:
        """Clear the dirty flag, and the D bit of every PTE mapping them, of view's
        pages at indexes."""
        for index in indexes:
            page = self.cache[(view.file, index)]
            for space, vpn in page.mappers:
                space.take_dirty(vpn)
            page.dirty = False


__all__ = ["CachePage", "FileView", "MemoryMappedFiles"]
