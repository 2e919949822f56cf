"""PageManager: physical frames (seed section 1).

State: the frame bitset (``frames``), ``nframes``, who owns each allocated
frame (``owner``), the reserved range below ``mem_start`` and the contents of
physical memory (a sparse map frame -> 4096 bytes; a frame with no entry reads
as zeros).

Decisions where the seed is silent (docs/semantics.md):

- ``InitializePhysicalMemory(mem_start, mem_end)``: memory is
  [0, mem_end); the frames below ``mem_start`` (real-mode area, kernel image,
  boot data) are *reserved* and are identity-mapped by InitializePaging, so
  ``mem_start`` may not exceed the 4 MB identity region. ``mem_end`` may be
  2**32 (a full 4 GiB: 1,048,576 frames). Start rounds up, end rounds down to
  whole frames.
- Every allocated frame has exactly one owner (FRM-3): reserved, a page
  directory, a page table, the one PTE that maps it, or the caller of
  RequestFrame ("held"). The bitset bit is set exactly for owned frames.
- Allocation takes the lowest free frame (``FirstFreeFrame``), as the tutorial
  kernel's ``first_frame`` does; the spec allows any free frame.
- A newly allocated frame reads as zeros: Windows and Linux hand out zeroed
  pages (VirtualAlloc: "memory allocated by this function is automatically
  initialized to zero"; mmap(2): anonymous mappings are zero-initialized).
- ``AllocFrame(pd, va, ...)`` needs the page tables, so the
  VirtualMemoryManager attached to this PageManager carries it out; it is the
  same operation as ``VirtualMemoryManager.AllocPage``.
- ``FreeFrame(frame_addr)`` frees a frame obtained with ``RequestFrame``;
  mapped frames are freed by unmapping them (FreePage/UnmapVirtualAddress).
- ``UnreservePage(va)`` returns a reserved, identity-mapped frame to the free
  pool (as Linux's free_initmem / free_reserved_area reclaim boot memory),
  removing its identity mapping.
- ``CopyPage(src, dst)`` copies one physical frame to another (the tutorial's
  copy_page_physical); both must be data frames, and dst may not be reserved.

Failures return False / 0xFFFFFFFF and set ``last_error`` (model/errors.py);
they never change the state and never raise.
"""

from __future__ import annotations

from typing import Protocol, TypeVar

from model.frame_bitmap import FrameBitmap
from model.page_tables import PageDirectory
from model.x86_paging import align_down, align_up, is_page_aligned, is_u32, page_pieces
from spec.abi import (
    ADDRESS_LIMIT,
    IDENTITY_LIMIT,
    NO_FRAME,
    PAGE_SHIFT,
    PAGE_SIZE,
    ErrorCode,
    FrameOwner,
)


class Paging(Protocol):
    """The VirtualMemoryManager as the PageManager sees it: attached to it, it
    carries out AllocFrame, which needs the page tables (same as its AllocPage),
    and drops the identity mapping of a frame UnreservePage frees."""

    last_error: ErrorCode

    def AllocPage(self, dir: PageDirectory, virtual_addr: int, is_kernel: bool,
                  is_writeable: bool) -> bool:
        """Back the page at virtual_addr in dir with a free frame."""

    def drop_identity_mapping(self, frame: int) -> None:
        """Clear the identity PTE of a reserved frame."""


_T = TypeVar("_T")




DATA_OWNERS = (FrameOwner.RESERVED, FrameOwner.MAPPED, FrameOwner.HELD)

# Hot-path copies: an enum member lookup costs as much as the bit twiddling.
_HELD = int(FrameOwner.HELD)
_SUCCESS = ErrorCode.ERROR_SUCCESS


class PageManager:
    """Physical frame allocator with the seed's operations."""

    def __init__(self) -> None:
        self.frames = FrameBitmap(0)
        self.nframes = 0
        self.owner = bytearray()
        self.reserved_end = 0  # first frame above the reserved range
        self.memory: dict[int, bytearray] = {}
        self.paging: Paging | None = None
        self.initialized = False
        self.last_error = ErrorCode.ERROR_SUCCESS

    # -- seed operations -------------------------------------------------

    def InitializePhysicalMemory(self, mem_start: int, mem_end: int) -> bool:
        """Manage [0, mem_end); reserve the frames below mem_start."""
        if self.initialized:
            return self._fail(ErrorCode.ERROR_ALREADY_INITIALIZED)
        if not (is_u32(mem_start) and type(mem_end) is int
                and 0 < mem_end <= ADDRESS_LIMIT and mem_start <= IDENTITY_LIMIT
                and align_up(mem_start) < align_down(mem_end)):
            return self._fail(ErrorCode.ERROR_INVALID_PARAMETER)
        self.nframes = mem_end >> PAGE_SHIFT
        self.frames = FrameBitmap(self.nframes)
        self.owner = bytearray(self.nframes)
        self.reserved_end = align_up(mem_start) >> PAGE_SHIFT
        self.frames.set_range(0, self.reserved_end)
        self.owner[:self.reserved_end] = bytes((FrameOwner.RESERVED,)) * self.reserved_end
        self.initialized = True
        return self._ok(True)

    def AllocFrame(self, pd: PageDirectory, virtual_address: int, is_kernel: bool,
                   is_writeable: bool) -> bool:
        """Back the page at virtual_address in pd with the first free frame."""
        if self.paging is None:
            return self._fail(ErrorCode.ERROR_NOT_READY)
        result = self.paging.AllocPage(pd, virtual_address, is_kernel, is_writeable)
        self.last_error = self.paging.last_error
        return result

    def FreeFrame(self, frame_addr: int) -> bool:
        """Free a frame obtained with RequestFrame."""
        frame = self._frame_of(frame_addr)
        if frame < 0:
            return False
        if self.owner[frame] != _HELD:
            return self._fail(ErrorCode.ERROR_INVALID_BLOCK
                              if self.owner[frame] == FrameOwner.FREE else ErrorCode.ERROR_BUSY)
        self.release_frame(frame)
        return self._ok(True)

    def FirstFreeFrame(self) -> int:
        """Physical address of the lowest free frame, or NO_FRAME."""
        if not self.initialized:
            return self._fail_frame(ErrorCode.ERROR_NOT_READY)
        frame = self.frames.first_clear()
        if frame < 0:
            return self._fail_frame(ErrorCode.ERROR_NOT_ENOUGH_MEMORY)
        return self._ok(frame << PAGE_SHIFT)

    def RequestFrame(self, is_kernel: bool, is_writeable: bool) -> int:
        """Allocate the first free frame to the caller, unmapped; its address or NO_FRAME.

        The flags say how the caller means to map the frame; an unmapped frame
        has no permissions, so the model validates and otherwise ignores them.
        """
        if type(is_kernel) is not bool or type(is_writeable) is not bool:
            return self._fail_frame(ErrorCode.ERROR_INVALID_PARAMETER)
        if not self.initialized:
            return self._fail_frame(ErrorCode.ERROR_NOT_READY)
        frame = self.take_frame(_HELD)
        if frame < 0:
            return self._fail_frame(ErrorCode.ERROR_NOT_ENOUGH_MEMORY)
        return self._ok(frame << PAGE_SHIFT)

    def UnreservePage(self, virtual_address: int) -> bool:
        """Return the reserved, identity-mapped frame at virtual_address to the free pool."""
        frame = self._frame_of(virtual_address)
        if frame < 0:
            return False
        if self.owner[frame] != FrameOwner.RESERVED:
            return self._fail(ErrorCode.ERROR_INVALID_BLOCK)
        if self.paging is not None:
            self.paging.drop_identity_mapping(frame)
        self.release_frame(frame)
        return self._ok(True)

    def CopyPage(self, src: int, dst: int) -> bool:
        """Copy the 4096 bytes of physical frame src into physical frame dst."""
        src_frame = self._frame_of(src)
        if src_frame < 0:
            return False
        dst_frame = self._frame_of(dst)
        if dst_frame < 0:
            return False
        for frame, allowed in ((src_frame, DATA_OWNERS), (dst_frame, DATA_OWNERS[1:])):
            if self.owner[frame] == FrameOwner.FREE:
                return self._fail(ErrorCode.ERROR_INVALID_ADDRESS)
            if self.owner[frame] not in allowed:
                return self._fail(ErrorCode.ERROR_ACCESS_DENIED)
        self.copy_frame(src_frame, dst_frame)
        return self._ok(True)

    def GetFrameCount(self) -> int:
        """Number of physical frames managed (nframes)."""
        return self._ok(self.nframes)

    # -- statistics and physical access (used by later sections) ----------

    def GetFreeFrameCount(self) -> int:
        return self._ok(self.nframes - self.frames.used)

    def GetUsedFrameCount(self) -> int:
        return self._ok(self.frames.used)

    def ReadPhysicalMemory(self, address: int, length: int) -> bytes | None:
        """Bytes of physical memory in allocated data frames; None on failure."""
        frames = self._data_span(address, length, DATA_OWNERS)
        if frames is None:
            return None
        return self._ok(self.read_span(frames))

    def WritePhysicalMemory(self, address: int, data: bytes) -> bool:
        """Write bytes into allocated, non-reserved data frames."""
        if not isinstance(data, bytes | bytearray):
            return self._fail(ErrorCode.ERROR_INVALID_PARAMETER)
        frames = self._data_span(address, len(data), DATA_OWNERS[1:])
        if frames is None:
            return False
        self.write_span(frames, data)
        return self._ok(True)

    # -- helpers for the VirtualMemoryManager (same package) --------------

    def free_count(self) -> int:
        return self.nframes - self.frames.used

    def used_frames(self) -> tuple[int, ...]:
        """The frames whose bitmap bit is set, ascending (an observation)."""
        used = []
        for word_index, word in enumerate(self.frames.words):
            base = word_index * 32
            # One pass per set bit: bounded even for a corrupt negative word
            # (FRM-1 allows uint32 only), whose ones never run out in Python.
            for _ in range(word.bit_count()):
                low = word & -word
                used.append(base + low.bit_length() - 1)
                word ^= low
        return tuple(used)

    def take_frame(self, owner: int) -> int:
        """Allocate the lowest free frame to owner; -1 when none is free.

        The fast path of FrameBitmap.take_first is inlined here (a call less per
        frame, about 5% of allocating all of 4 GiB): when the hint word has a
        free frame, take its lowest one; otherwise take_first itself descends
        the summary tree.
        """
        bitmap = self.frames
        index = bitmap.hint
        words = bitmap.words
        mask = bitmap.hint_mask
        try:
            word = words[index]
        except IndexError:  # memory was full
            word = mask
        free = word ^ mask
        if free:
            bit = free & -free
            word |= bit
            words[index] = word
            bitmap.used += 1
            if word == mask:
                bitmap.summary_clear(index)
            frame = (index << 5) + bit.bit_length() - 1
            self.owner[frame] = owner
            return frame
        frame = bitmap.take_first()
        if frame >= 0:
            self.owner[frame] = owner
        return frame

    def claim_frame(self, frame: int, owner: int) -> None:
        """Allocate one specific frame to owner (pre: 0 <= frame < nframes, frame free).

        For the unified interface's MapPage, which maps a caller-named free frame.
        """
        self.frames.set(frame)
        self.owner[frame] = owner

    def release_frame(self, frame: int) -> None:
        """Free an owned frame; its contents are forgotten (zero when reused).

        FrameBitmap.clear inlined (see take_frame).
        """
        bitmap = self.frames
        index = frame >> 5
        words = bitmap.words
        before = words[index]
        words[index] = before & ~(1 << (frame & 31))
        bitmap.used -= 1
        if before == 0xFFFFFFFF or before == bitmap.tail_mask or index < bitmap.hint:
            bitmap.after_clear(index, before)
        self.owner[frame] = 0  # FrameOwner.FREE, without an enum lookup on the hot path
        if self.memory:
            self.memory.pop(frame, None)

    def copy_frame(self, src_frame: int, dst_frame: int) -> None:
        page = self.memory.get(src_frame)
        if page is None:
            self.memory.pop(dst_frame, None)
        else:
            self.memory[dst_frame] = bytearray(page)

    def read_span(self, frames: list[tuple[int, int, int]]) -> bytes:
        out = bytearray()
        for frame, start, end in frames:
            page = self.memory.get(frame)
            out += page[start:end] if page is not None else bytes(end - start)
        return bytes(out)

    def write_span(self, frames: list[tuple[int, int, int]], data: bytes) -> None:
        cursor = 0
        for frame, start, end in frames:
            page = self.memory.get(frame)
            if page is None:
                page = self.memory[frame] = bytearray(PAGE_SIZE)
            page[start:end] = data[cursor:cursor + end - start]
            cursor += end - start

    # -- private -----------------------------------------------------------

    def _frame_of(self, address: int) -> int:
        """Frame number of a page-aligned physical address in memory; -1 after failing."""
        if not is_u32(address) or not is_page_aligned(address):
            code = ErrorCode.ERROR_INVALID_PARAMETER
        elif not self.initialized:
            code = ErrorCode.ERROR_NOT_READY
        elif address >> PAGE_SHIFT >= self.nframes:
            code = ErrorCode.ERROR_INVALID_ADDRESS
        else:
            return address >> PAGE_SHIFT
        self.last_error = code
        return -1

    def _data_span(self, address: int, length: int,
                   allowed: tuple[FrameOwner, ...]) -> list[tuple[int, int, int]] | None:
        if not (is_u32(address) and type(length) is int and 0 <= length
                and address + length <= ADDRESS_LIMIT):
            self.last_error = ErrorCode.ERROR_INVALID_PARAMETER
            return None
        if not self.initialized:
            self.last_error = ErrorCode.ERROR_NOT_READY
            return None
        spans: list[tuple[int, int, int]] = []
        for frame, start, end in page_pieces(address, length):
            if frame >= self.nframes or self.owner[frame] == FrameOwner.FREE:
                self.last_error = ErrorCode.ERROR_INVALID_ADDRESS
                return None
            if self.owner[frame] not in allowed:
                self.last_error = ErrorCode.ERROR_ACCESS_DENIED
                return None
            spans.append((frame, start, end))
        return spans

    def _ok(self, value: _T) -> _T:
        self.last_error = _SUCCESS
        return value

    def _fail(self, code: ErrorCode) -> bool:
        self.last_error = code
        return False

    def _fail_frame(self, code: ErrorCode) -> int:
        self.last_error = code
        return NO_FRAME
