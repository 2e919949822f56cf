"""KernelHeap: the kernel's dynamic allocator (seed section 3).

Built as the tutorial design the seed follows builds it (JamesM's kernel
heap, "10. The Heap"), with its known bugs fixed. A block is a 12-byte header
{magic u32 @0, is_hole u8 @4, three zero pad bytes, size u32 @8}, the
payload, and an 8-byte footer {magic u32, header address u32}, little
endian; ``size`` counts all three. Blocks tile [data_start, end_address);
a hole is a free block. Headers and footers live in the modelled memory (the
heap's frames), as in the real heap: a write past the end of a payload
damages the footer and the next header, and Free detects that.

Rules (decisions where the seed is silent, with their source):

- Index: holes ordered by size, non-decreasing; a new entry goes before the
  entries of equal size (the tutorial's insert_ordered_array); found by
  bisection (model/hole_index.py). At most ``index_size`` entries: the
  tutorial's array lives at [start, start + 4 * index_size), a range this
  model maps and keeps for the heap but whose bytes it does not write (the
  entries are kept in Python). An Alloc, Free or Expand that would need more
  entries fails with ERROR_NOT_ENOUGH_MEMORY (the tutorial overflows the array).
- FindSmallestHole: the first hole in index order that fits size + MIN_BLOCK
  bytes; with page_align the header goes at heap_layout.aligned_header (the
  payload page aligned, the gap before it 0 or >= MIN_BLOCK bytes: the
  tutorial's gap test has an operator-precedence bug and allows gaps of 1..19
  bytes). -1 when none fits (with ERROR_SUCCESS: not finding is an answer).
- Alloc: a size of 0 is allowed, a block with an empty payload (Microsoft
  Learn, IMalloc::Alloc: "If cb is zero, Alloc allocates a zero-length item and
  returns a valid pointer"; MSVC's malloc(0) likewise). The hole's header and
  footer are checked in memory first (ERROR_ARENA_TRASHED).
  A page-align gap becomes a hole, inserted first; the remainder after the
  block becomes a hole, inserted next, when it is >= MIN_BLOCK bytes, else the
  block absorbs it (heap_layout.split_block: the tutorial's split underflows).
  When no hole fits, the heap expands (heap_layout.expansion_length, the
  tutorial's rule) if the grown hole will then fit; otherwise, or when it
  cannot expand, ERROR_NOT_ENOUGH_MEMORY and nothing changes.
- Free: a live block's payload address only; a hole's payload address is a
  double free (ERROR_INVALID_BLOCK), anything else ERROR_INVALID_ADDRESS
  (HeapFree's ERROR_INVALID_PARAMETER is less precise). The block's header and
  footer and the neighbours' header (right) and footer (left) are checked in
  memory first: a write past a block's end is reported (ERROR_ARENA_TRASHED),
  never absorbed. Unify right, then left, write one fresh header and footer
  (the tutorial leaves stale footers), insert the merged hole; when it ends the
  heap, contract to (its header - start) with Contract's clamps (the tutorial).
- Contract: heap_layout.contraction_length: whole pages, never below min_size,
  only the trailing hole is cut, to 0 bytes (removed) or >= MIN_BLOCK bytes
  (re-sorted in the index; the tutorial forgets). min_size is max(min_size,
  end - start) of Create: Windows' HeapCreate commits dwInitialSize bytes
  ("the initial amount of memory that is committed for the heap", Microsoft
  Learn, HeapCreate), and this heap never releases them.
- Expand: whole pages up to max; the trailing hole grows (re-sorted in the
  index; the tutorial forgets) or a new hole covers the new pages.
- Expand, Contract and an expanding Alloc check the trailing hole's header and
  footer in memory before they rewrite it (ERROR_ARENA_TRASHED).
- Pages are mapped with vmm.AllocPage(is_kernel=supervisor, is_writeable=not
  readonly), all or nothing: every failure (pages already mapped, flags the
  VMM refuses, too few frames for the pages and their page tables) is found
  before the first page is mapped. Contract and Destroy unmap with
  vmm.UnmapVirtualAddress, so frames return to the PageManager; page tables
  the heap needed stay, as the VMM keeps every kernel table.
- A heap in a user directory that is destroyed (DestroyPageDirectory frees its
  user pages) refuses Alloc, Free, Expand and Contract (ERROR_INVALID_HANDLE);
  Destroy still unmaps what is left, the pages in kernel space.
- Headers and footers are written to and read from the frames directly (the
  directory's tables translate, PageManager.write_span writes): the heap
  manager writes its own bookkeeping even in a readonly heap, as a kernel
  writes its metadata through its own mapping. Callers write payloads through
  vmm.WriteVirtualMemory, which checks protection. Payload bytes are never
  moved or written by the heap.

Checks run in this order: created (ERROR_NOT_READY; Create:
ERROR_ALREADY_INITIALIZED), the directory alive, the arguments
(ERROR_INVALID_PARAMETER), then the operation's own. Failures return the seed
type's failure value (None, 0, False, -1) and set ``last_error``; they never
change the state and never raise.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from model.errors import ReportsStatus
from model.heap_layout import block_header, contraction_length, expansion_length, fits, split_block
from model.hole_index import HoleIndex
from model.page_tables import PageDirectory
from model.virtual_memory import VirtualMemoryManager
from model.x86_paging import align_up, is_kernel_address, is_page_aligned, is_u32, page_pieces
from spec.abi import (
    FOOTER_SIZE,
    HEADER_SIZE,
    HEAP_INDEX_SIZE,
    HEAP_MAGIC,
    HEAP_MIN_SIZE,
    HEAP_TOP,
    MIN_BLOCK,
    NULL,
    PAGE_SHIFT,
    PAGE_SIZE,
    PTE_PRESENT,
    U32_MAX,
    ErrorCode,
)

__all__ = ["AllocatedBlock", "HeapBlock", "KernelHeap", "footer_bytes", "header_bytes"]

_HEADER = struct.Struct("<IB3xI")
_FOOTER = struct.Struct("<II")
_SUCCESS = ErrorCode.ERROR_SUCCESS


class AllocatedBlock(NamedTuple):
    """The heap's record of a live block: its size, the size asked for, page_align."""

    size: int
    requested: int
    page_align: bool


class HeapBlock(NamedTuple):
    """One block as walk() reads it from memory."""

    header: int
    size: int
    is_hole: bool


def header_bytes(size: int, is_hole: bool) -> bytes:
    """The 12 bytes of a block header."""
    return _HEADER.pack(HEAP_MAGIC, is_hole, size)


def footer_bytes(header: int) -> bytes:
    """The 8 bytes of a block footer."""
    return _FOOTER.pack(HEAP_MAGIC, header)


class KernelHeap(ReportsStatus):
    """A kernel heap in one page directory, with the seed's operations.

    Over 300 lines because it is the seed's KernelHeap: Alloc, Free, Expand,
    Contract, FindSmallestHole and Create share the heap's blocks, index and
    headers in memory, and an implementer looks for each of them on this class.
    What needs no heap state is elsewhere: the block arithmetic in
    model/heap_layout.py, the ordered index in model/hole_index.py."""

    def __init__(self, vmm: VirtualMemoryManager, directory: PageDirectory | None = None) -> None:
        self.vmm = vmm
        self._directory_given = directory
        self.last_error = _SUCCESS
        self._reset()

    def _reset(self) -> None:
        self.created = False
        self.start_address = self.end_address = self.max_address = 0
        self.supervisor = self.readonly = False
        self.data_start = self.index_size = self.min_size = 0
        self.directory: PageDirectory | None = self._directory_given
        self.allocated: dict[int, AllocatedBlock] = {}
        self.index = HoleIndex()
        # end address -> header of the block ending there: the footers' twin.
        self._ends: dict[int, int] = {}

    # -- seed operations -------------------------------------------------

    def Create(self, start: int, end: int, max: int, supervisor: bool, readonly: bool, *,
               index_size: int = HEAP_INDEX_SIZE,
               min_size: int = HEAP_MIN_SIZE) -> KernelHeap | None:
        """Map [start, end) and make [data_start, end) one hole; returns self."""
        if self.created:
            return self._fail(ErrorCode.ERROR_ALREADY_INITIALIZED, None)
        if not (is_u32(start) and is_u32(end) and is_u32(max) and is_page_aligned(start)
                and is_page_aligned(end) and is_page_aligned(max)
                and start < end <= max <= HEAP_TOP
                and type(supervisor) is bool and type(readonly) is bool
                and type(index_size) is int and index_size >= 1 and is_u32(min_size)
                and align_up(start + 4 * index_size) + MIN_BLOCK <= end):
            return self._fail(ErrorCode.ERROR_INVALID_PARAMETER, None)
        directory = self._directory_given or self.vmm.kernel_directory
        if directory is None:
            return self._fail(ErrorCode.ERROR_NOT_READY, None)
        if self.vmm.directories.get(directory.physical_addr) is not directory:
            return self._fail(ErrorCode.ERROR_INVALID_HANDLE, None)
        code = self._placement_error(directory, start, max, supervisor)
        if code == _SUCCESS and self._frames_needed(directory, start, end) > \
                self.vmm.pageman.free_count():
            code = ErrorCode.ERROR_NOT_ENOUGH_MEMORY
        if code != _SUCCESS:
            return self._fail(code, None)
        self._map(directory, start, end, supervisor, not readonly)
        self.created = True
        self.directory = directory
        self.start_address, self.end_address, self.max_address = start, end, max
        self.supervisor, self.readonly = supervisor, readonly
        self.index_size = index_size
        self.data_start = align_up(start + 4 * index_size)
        self.min_size = min_size if min_size > end - start else end - start
        self._new_hole(self.data_start, end - self.data_start)
        return self._ok(self)

    def Alloc(self, size: int, page_align: bool = False) -> int:
        """A block with a payload of ``size`` bytes: its payload address, or NULL."""
        code = self._usable()
        if code != _SUCCESS:
            return self._fail(code, NULL)
        if not (type(size) is int and 0 <= size <= U32_MAX - MIN_BLOCK
                and type(page_align) is bool):
            return self._fail(ErrorCode.ERROR_INVALID_PARAMETER, NULL)
        index = self.index
        position = self._find(size, page_align)
        new_end = 0
        new_hole = False
        if position >= 0:
            hole_size, hole = index[position]
            if not self._intact(hole, hole_size, True):
                return self._fail(ErrorCode.ERROR_ARENA_TRASHED, NULL)
        else:
            start, end = self.start_address, self.end_address
            new_end = start + expansion_length(end - start, size + MIN_BLOCK, page_align,
                                               self.max_address - start)
            tail = self._ends[end]
            new_hole = tail not in index
            hole = end if new_hole else tail
            hole_size = new_end - hole
            if new_end == end or not fits(hole, hole_size, size, page_align):
                return self._fail(ErrorCode.ERROR_NOT_ENOUGH_MEMORY, NULL)
            code = self._growth_error(new_end)
            if code != _SUCCESS:
                return self._fail(code if code == ErrorCode.ERROR_ARENA_TRASHED
                                  else ErrorCode.ERROR_NOT_ENOUGH_MEMORY, NULL)
        header = block_header(hole, page_align)
        gap = header - hole
        block_size, rest = split_block(hole_size, gap, size + MIN_BLOCK)
        if len(index) + new_hole - 1 + (gap > 0) + (rest > 0) > self.index_size:
            return self._fail(ErrorCode.ERROR_NOT_ENOUGH_MEMORY, NULL)
        if new_end:
            self._grow(new_end)
        index.remove(hole)
        ends = self._ends
        del ends[hole + hole_size]
        if gap:
            self._new_hole(hole, gap)
        self._stamp(header, block_size, False)
        ends[header + block_size] = header
        if rest:
            self._new_hole(header + block_size, rest)
        self.allocated[header] = AllocatedBlock(block_size, size, page_align)
        self.last_error = _SUCCESS
        return header + HEADER_SIZE

    def Free(self, p: int) -> bool:
        """Free the live block whose payload is at p, unifying it with neighbouring holes."""
        code = self.free_error(p)
        if code != _SUCCESS:
            return self._fail(code, False)
        header = p - HEADER_SIZE
        size = self.allocated[header].size
        right = header + size
        index = self.index
        right_hole = right in index
        left = self._ends.get(header, -1)
        left_hole = left in index
        ends = self._ends
        del self.allocated[header]
        del ends[right]
        merged, merged_size = header, size
        if right_hole:
            merged_size += index.remove(right)
            del ends[right + merged_size - size]
        if left_hole:
            merged = left
            merged_size += index.remove(left)
            del ends[header]
        self._new_hole(merged, merged_size)
        if merged + merged_size == self.end_address:
            start = self.start_address
            least = merged - start if merged - start > self.min_size else self.min_size
            length = self._cut_length(least)
            if length < self.end_address - start:
                self._cut(length)
        return self._ok(True)

    def free_error(self, p: int) -> ErrorCode:
        """Why Free(p) would fail now (ERROR_SUCCESS when it would not); changes
        nothing. Free's checks, in its order."""
        code = self._usable()
        if code != _SUCCESS:
            return code
        header = p - HEADER_SIZE if type(p) is int else -1
        block = self.allocated.get(header)
        index = self.index
        if block is None:
            if header in index and self._read(header, HEADER_SIZE) == header_bytes(
                    index.size_of(header), True):
                return ErrorCode.ERROR_INVALID_BLOCK
            return ErrorCode.ERROR_INVALID_ADDRESS
        size = block.size
        right = header + size
        right_hole = right in index
        left = self._ends.get(header, -1)
        left_hole = left in index
        if not (self._intact(header, size, False)
                and (right == self.end_address or self._read(right, HEADER_SIZE) == header_bytes(
                    index.size_of(right) if right_hole else self.allocated[right].size,
                    right_hole))
                and (left < 0 or self._read(header - FOOTER_SIZE, FOOTER_SIZE)
                     == footer_bytes(left))):
            return ErrorCode.ERROR_ARENA_TRASHED
        if not (right_hole or left_hole) and len(index) >= self.index_size:
            return ErrorCode.ERROR_NOT_ENOUGH_MEMORY
        return _SUCCESS

    def FindSmallestHole(self, size: int, page_align: bool) -> int:
        """The index position of the first hole that fits the request, or -1."""
        if not self.created:
            return self._fail(ErrorCode.ERROR_NOT_READY, -1)
        if not (type(size) is int and 0 <= size <= U32_MAX - MIN_BLOCK
                and type(page_align) is bool):
            return self._fail(ErrorCode.ERROR_INVALID_PARAMETER, -1)
        return self._ok(self._find(size, page_align))

    def Expand(self, new_size: int) -> bool:
        """Grow the heap to new_size bytes (end - start), rounded up to a page."""
        code = self._usable()
        if code != _SUCCESS:
            return self._fail(code, False)
        start = self.start_address
        if not (type(new_size) is int and new_size >= self.end_address - start
                and align_up(new_size) <= self.max_address - start):
            return self._fail(ErrorCode.ERROR_INVALID_PARAMETER, False)
        new_end = start + align_up(new_size)
        if new_end == self.end_address:
            return self._ok(True)
        code = self._growth_error(new_end)
        if code != _SUCCESS:
            return self._fail(code, False)
        self._grow(new_end)
        return self._ok(True)

    def Contract(self, new_size: int) -> int:
        """Shrink the heap towards new_size bytes; the resulting length, or 0."""
        code = self._usable()
        if code != _SUCCESS:
            return self._fail(code, 0)
        length = self.end_address - self.start_address
        if not (type(new_size) is int and 0 <= new_size <= length):
            return self._fail(ErrorCode.ERROR_INVALID_PARAMETER, 0)
        target = self._cut_length(new_size if new_size > self.min_size else self.min_size)
        if target < length:
            tail = self._ends[self.end_address]
            if not self._intact(tail, self.index.size_of(tail), True):
                return self._fail(ErrorCode.ERROR_ARENA_TRASHED, 0)
            self._cut(target)
        return self._ok(target)

    def Destroy(self) -> bool:
        """~KernelHeap: unmap every page of [start, end), returning its frame."""
        if not self.created:
            return self._fail(ErrorCode.ERROR_NOT_READY, False)
        directory = self._dir()
        if self._usable() != _SUCCESS and self.vmm.kernel_directory is not None:
            # The directory was destroyed with its user pages; pages in kernel
            # space stay mapped in the kernel tables, shared by every directory.
            directory = self.vmm.kernel_directory
        for page in range(self.start_address, self.end_address, PAGE_SIZE):
            if self._pte(directory, page) & PTE_PRESENT:
                self.vmm.UnmapVirtualAddress(directory, page)
        self._reset()
        return self._ok(True)

    def GetBlockSize(self, p: int) -> int:
        """The requested size of the live block whose payload is at p; 0 if none."""
        if not self.created:
            return self._fail(ErrorCode.ERROR_NOT_READY, 0)
        block = self.allocated.get(p - HEADER_SIZE) if type(p) is int else None
        if block is None:
            return self._fail(ErrorCode.ERROR_INVALID_ADDRESS, 0)
        return self._ok(block.requested)

    # -- observations -------------------------------------------------------

    def walk(self) -> list[HeapBlock] | None:
        """The blocks as their headers and footers in memory say; None when corrupt."""
        if not self.created:
            return []
        blocks: list[HeapBlock] = []
        at, end = self.data_start, self.end_address
        # Every block holds a header and a footer: no more blocks than that many
        # bytes fit, a bound should ``at`` ever fail to move forward.
        for _ in range((end - at) // (HEADER_SIZE + FOOTER_SIZE)):
            if at >= end:
                break
            raw = self._read(at, HEADER_SIZE) if at + HEADER_SIZE <= end else None
            if raw is None:
                return None
            magic, is_hole, size = _HEADER.unpack(raw)
            if (magic != HEAP_MAGIC or is_hole > 1 or raw[5:8] != b"\0\0\0"
                    or size < MIN_BLOCK or at + size > end
                    or self._read(at + size - FOOTER_SIZE, FOOTER_SIZE) != footer_bytes(at)):
                return None
            blocks.append(HeapBlock(at, size, is_hole == 1))
            at += size
        return blocks if at >= end else None

    def holes(self) -> list[tuple[int, int]]:
        """The index in order: (size, header)."""
        return list(self.index)

    # -- private: structure -------------------------------------------------

    def _usable(self) -> ErrorCode:
        """ERROR_NOT_READY before Create; ERROR_INVALID_HANDLE once the heap's
        directory has been destroyed (its pages went with it)."""
        if not self.created:
            return ErrorCode.ERROR_NOT_READY
        directory = self.directory
        if directory is None or self.vmm.directories.get(directory.physical_addr) is not directory:
            return ErrorCode.ERROR_INVALID_HANDLE
        return _SUCCESS

    def _find(self, size: int, page_align: bool) -> int:
        index = self.index
        position = index.first_at_least(size + MIN_BLOCK)
        if not page_align:
            return position if position < len(index) else -1
        for found, hole_size, hole in index.entries_from(position):
            if fits(hole, hole_size, size, True):
                return found
        return -1

    def _new_hole(self, header: int, size: int) -> None:
        """Write a hole's header and footer and index it."""
        self._stamp(header, size, True)
        self.index.insert(size, header)
        self._ends[header + size] = header

    def _growth_error(self, new_end: int) -> ErrorCode:
        """Why the heap cannot grow to new_end (ERROR_SUCCESS when it can)."""
        tail = self._ends[self.end_address]
        if tail in self.index:
            if not self._intact(tail, self.index.size_of(tail), True):
                return ErrorCode.ERROR_ARENA_TRASHED
        elif len(self.index) >= self.index_size:
            return ErrorCode.ERROR_NOT_ENOUGH_MEMORY
        directory = self._dir()
        code = self._placement_error(directory, self.end_address, new_end, self.supervisor)
        if code == _SUCCESS and self._frames_needed(directory, self.end_address, new_end) > \
                self.vmm.pageman.free_count():
            code = ErrorCode.ERROR_NOT_ENOUGH_MEMORY
        return code

    def _grow(self, new_end: int) -> None:
        """Map [end, new_end) and extend the trailing hole or add one over it."""
        old_end = self.end_address
        self._map(self._dir(), old_end, new_end, self.supervisor, not self.readonly)
        self.end_address = new_end
        tail = self._ends[old_end]
        if tail in self.index:
            self.index.remove(tail)
            del self._ends[old_end]
            self._new_hole(tail, new_end - tail)
        else:
            self._new_hole(old_end, new_end - old_end)

    def _cut_length(self, least: int) -> int:
        """The length contraction leaves, given the least length wanted."""
        start, end = self.start_address, self.end_address
        tail = self._ends[end]
        return contraction_length(least, end - start,
                                  tail - start if tail in self.index else end - start)

    def _cut(self, length: int) -> None:
        """Cut the trailing hole so the heap is length bytes long; unmap the pages past it."""
        new_end = self.start_address + length
        old_end = self.end_address
        tail = self._ends.pop(old_end)
        self.index.remove(tail)
        if new_end > tail:
            self._new_hole(tail, new_end - tail)
        directory = self._dir()
        for page in range(new_end, old_end, PAGE_SIZE):
            self.vmm.UnmapVirtualAddress(directory, page)
        self.end_address = new_end

    # -- private: pages and memory ------------------------------------------

    def _dir(self) -> PageDirectory:
        assert self.directory is not None
        return self.directory

    @staticmethod
    def _pte(directory: PageDirectory, page: int) -> int:
        table = directory.tables[page >> 22]
        return 0 if table is None else table.entries[(page >> PAGE_SHIFT) & 0x3FF]

    def _placement_error(self, directory: PageDirectory, low: int, high: int,
                         supervisor: bool) -> ErrorCode:
        """Whether AllocPage would refuse a page of [low, high): VMM's checks, in its order."""
        kernel_directory = directory is self.vmm.kernel_directory
        for page in range(low, high, PAGE_SIZE):
            kernel = is_kernel_address(page)
            if (kernel and not supervisor) or (kernel_directory and not kernel):
                return ErrorCode.ERROR_ACCESS_DENIED
            if self._pte(directory, page) & PTE_PRESENT:
                return ErrorCode.ERROR_ALREADY_EXISTS
        return _SUCCESS

    @staticmethod
    def _frames_needed(directory: PageDirectory, low: int, high: int) -> int:
        """Frames to map [low, high): one per page and one per missing page table."""
        slots = range(low >> 22, ((high - 1) >> 22) + 1)
        return (high - low) // PAGE_SIZE + sum(directory.tables[slot] is None for slot in slots)

    def _map(self, directory: PageDirectory, low: int, high: int, is_kernel: bool,
             is_writeable: bool) -> None:
        """Map [low, high); the caller checked that AllocPage will succeed."""
        for page in range(low, high, PAGE_SIZE):
            mapped = self.vmm.AllocPage(directory, page, is_kernel, is_writeable)
            assert mapped, self.vmm.last_error

    def _spans(self, address: int, length: int) -> list[tuple[int, int, int]] | None:
        """(frame, start, end) pieces of [address, +length) in the heap's directory."""
        spans = []
        for page, offset, stop in page_pieces(address, length):
            frame = self._frame(page << PAGE_SHIFT)
            if frame is None:
                return None
            spans.append((frame, offset, stop))
        return spans

    def _frame(self, address: int) -> int | None:
        """The frame mapped at address in the heap's directory; None when none is."""
        table = self._dir().tables[address >> 22]
        entry = 0 if table is None else table.entries[(address >> PAGE_SHIFT) & 0x3FF]
        return entry >> PAGE_SHIFT if entry & PTE_PRESENT else None

    def _read(self, address: int, length: int) -> bytes | None:
        offset = address & 0xFFF
        if offset + length <= PAGE_SIZE:  # one page (a header, a footer): no span list
            frame = self._frame(address)
            if frame is None:
                return None
            page = self.vmm.pageman.memory.get(frame)
            return bytes(length) if page is None else bytes(page[offset:offset + length])
        spans = self._spans(address, length)
        return None if spans is None else self.vmm.pageman.read_span(spans)

    def _write(self, address: int, data: bytes) -> None:
        offset = address & 0xFFF
        if offset + len(data) <= PAGE_SIZE:
            frame = self._frame(address)
            assert frame is not None
            self.vmm.pageman.write_span([(frame, offset, offset + len(data))], data)
            return
        spans = self._spans(address, len(data))
        assert spans is not None
        self.vmm.pageman.write_span(spans, data)

    def _stamp(self, header: int, size: int, is_hole: bool) -> None:
        """Write a block's header and footer."""
        self._write(header, _HEADER.pack(HEAP_MAGIC, is_hole, size))
        self._write(header + size - FOOTER_SIZE, _FOOTER.pack(HEAP_MAGIC, header))

    def _intact(self, header: int, size: int, is_hole: bool) -> bool:
        """Whether the block's header and footer in memory are what the heap recorded."""
        return (self._read(header, HEADER_SIZE) == _HEADER.pack(HEAP_MAGIC, is_hole, size)
                and self._read(header + size - FOOTER_SIZE, FOOTER_SIZE)
                == _FOOTER.pack(HEAP_MAGIC, header))

