"""XmsDriver: extended memory blocks with XMS 3.0 semantics (seed section 6).

The HMA and the A20 line are ``self.hma`` (model/xms_hma.py, functions
01h-07h); the register-level entry point is model/xms_call.py. The pool is
[xms_start, xms_end), xms_start at or above XMS_BASE = 0x110000,
after the HMA (0x100000-0x10FFEF, whose owner is ``self.hma``); the memory subsystem
puts it at the top of physical memory, above the kernel. Its frames are
claimed from the PageManager at initialisation (owner HELD); a frame that is
not free (the kernel's, reserved ones included) makes the pool unusable, so
XMS never hands out memory someone else owns. ``frames()`` lists them.
``handles`` maps a handle (1..handle_count) to an XmsBlock (address, size_kb,
lock_count); blocks are KB aligned and disjoint.

Rules (XMS 3.0 = "eXtended Memory Specification Version 3.0", Microsoft et al.
1991, functions 08h-0Fh and its error codes; RBIL INT 2Fh AX=4310h):

- Sizes in KB. 08h query free returns (largest free KB, total free KB); when
  nothing is free it also reports A0h ("all extended memory is allocated").
- 09h allocate: lowest free address that fits (first fit, HIMEM's practice);
  0 KB is legal (a zero-length EMB, XMS 3.0); A0h no room, A1h no free handle
  (the handle table holds ``handle_count`` handles, HIMEM's default 32). The
  lowest free handle is used. Contents are not cleared (XMS 3.0 says nothing;
  HIMEM does not clear).
- 0Ah free: A2h unknown handle, ABh the block is locked.
- 0Bh move (length, src_handle, src_offset, dst_handle, dst_offset): handle 0
  means a real-mode address with offset = segment:offset (segment in the high
  word), linear segment * 16 + offset, so FFFF:0010-FFFF:FFFF reach the HMA
  (model/hma_memory.py keeps its bytes); a handle-0 range must end at or below
  10FFF0h (the HMA's end), else A7h (DOSBox-staging src/ints/xms.cpp lines
  340-347, 363-370, "Microsoft TEST.C considers it an error..."; HimemX.asm
  xms_get_move_addr lines 1164-1182: cmp edx,10fff0h). Neither driver asks
  for A20 or the HMA's owner (01h): the driver turns A20 on for the copy and
  restores it (xms.cpp lines 376-390; HimemX.asm lines 1230-1236), so the
  move leaves the A20 count and the owner as they were. A7h odd length (checked
  first) or a range past the block; A3h/A5h bad source/destination handle;
  A4h/A6h a block offset beyond the block (a seg:off never is: at most
  10FFEFh).
  Overlapping moves are done as memmove (XMS 3.0 guarantees only some overlaps
  and allows A8h; the model never needs it). Length 0 succeeds.
- The HMA's bytes live in 16 frames the driver takes (HELD) with its pool
  (``frames()`` lists them too); the pool's claim fails when there are not
  16 more free frames.
- 0Ch lock: returns the 32-bit physical address (linear = physical below the
  paging layer); the lock count is a byte: the 256th lock fails with ACh.
  0Dh unlock: AAh when not locked. Both A2h on an unknown handle.
- 0Eh handle info: (lock count, free handles, size KB).
- 0Fh reallocate: ABh when locked; shrink in place, grow in place when the
  following space is free, else move to the lowest fitting place (contents
  copied); A0h when nothing fits.
- Bad Python arguments take the nearest XMS code (sizes A0h, handles A2h,
  offsets A4h/A6h, lengths A7h). Failures change nothing; nothing raises.
"""

from __future__ import annotations

from typing import NamedTuple, TypeVar

from model.dos_physical import read_physical, write_physical
from model.hma_memory import HMA_FRAMES, HmaMemory
from model.page_manager import PageManager
from model.xms_hma import HMA_MIN_LIMIT, XmsHma
from spec.abi import (
    HMA_END,
    KB,
    MAX_LOCKS,
    PAGE_SHIFT,
    PAGE_SIZE,
    XMS_BASE,
    XMS_INVALID_DEST_HANDLE,
    XMS_INVALID_DEST_OFFSET,
    XMS_INVALID_HANDLE,
    XMS_INVALID_LENGTH,
    XMS_INVALID_SOURCE_HANDLE,
    XMS_INVALID_SOURCE_OFFSET,
    XMS_LOCK_OVERFLOW,
    XMS_LOCKED,
    XMS_NOT_LOCKED,
    XMS_OUT_OF_HANDLES,
    XMS_OUT_OF_MEMORY,
    XMS_SUCCESS,
    FrameOwner,
)

_T = TypeVar("_T")


class XmsBlock(NamedTuple):
    """An extended memory block: physical byte address, size in KB, lock count."""

    address: int
    size_kb: int
    lock_count: int


def _is_int(value: object, top: int) -> bool:
    return type(value) is int and 0 <= value <= top


class XmsDriver:
    """The XMS 3.0 extended memory functions over a pool of PageManager frames."""

    def __init__(self, pageman: PageManager, xms_end: int, *, handle_count: int = 32,
                 xms_start: int = XMS_BASE, hma_min: int = 0) -> None:
        self.pageman = pageman
        self.handle_count = handle_count
        self.handles: dict[int, XmsBlock] = {}
        self.last_error = XMS_SUCCESS
        self.pool_start = xms_start
        self.pool_end = xms_end
        self.ready = (type(xms_end) is int and type(xms_start) is int
                      and type(handle_count) is int
                      and type(hma_min) is int and 0 <= hma_min <= HMA_MIN_LIMIT
                      and 1 <= handle_count <= 0xFFFF and pageman.initialized
                      and XMS_BASE <= xms_start and xms_start % PAGE_SIZE == 0
                      and xms_start + PAGE_SIZE <= xms_end <= pageman.nframes * PAGE_SIZE
                      and xms_end % PAGE_SIZE == 0)
        self._claimed: set[int] = set()
        self.hma = XmsHma(hma_min)
        self.hma_memory = HmaMemory(pageman)

    def claim_pool(self) -> bool:
        """Claim the pool's frames (HELD); False (nothing claimed) if one is not free."""
        if not self.ready:
            return False
        pool = range(self.pool_start >> PAGE_SHIFT, self.pool_end >> PAGE_SHIFT)
        owner = self.pageman.owner
        if any(owner[f] != FrameOwner.FREE for f in pool):
            self.ready = False
            return False
        if self.pageman.free_count() < len(pool) + HMA_FRAMES:
            self.ready = False
            return False
        for frame in pool:
            self.pageman.claim_frame(frame, FrameOwner.HELD)
            self._claimed.add(frame)
        return self.hma_memory.claim()

    def frames(self) -> set[int]:
        return self._claimed | set(self.hma_memory.frames)

    @property
    def pool_kb(self) -> int:
        return (self.pool_end - self.pool_start) // KB

    # -- XMS functions ---------------------------------------------------

    def XmsQueryFree(self) -> tuple[int, int]:
        """08h: (largest free block KB, total free KB)."""
        gaps = [size for _, size in self._gaps(None)]
        largest, total = max(gaps, default=0), sum(gaps)
        return self._set((largest, total), XMS_SUCCESS if total else XMS_OUT_OF_MEMORY)

    def XmsAllocate(self, kb: int) -> int:
        """09h: a new block of kb KB; its handle, 0 on failure."""
        if not _is_int(kb, 0xFFFFFFFF):
            return self._set(0, XMS_OUT_OF_MEMORY)
        handle = self._free_handle()
        if handle == 0:
            return self._set(0, XMS_OUT_OF_HANDLES)
        address = self._place(kb, None)
        if address < 0:
            return self._set(0, XMS_OUT_OF_MEMORY)
        self.handles[handle] = XmsBlock(address, kb, 0)
        return self._set(handle)

    def AllocateBytes(self, size: int) -> int:
        """The seed's AllocateXmsMemory(bytes): XmsAllocate(ceil(bytes / 1024))."""
        if not _is_int(size, 0xFFFFFFFF):
            return self._set(0, XMS_OUT_OF_MEMORY)
        return self.XmsAllocate(-(-size // KB))

    def XmsFree(self, handle: int) -> bool:
        """0Ah."""
        block = self._block(handle, XMS_INVALID_HANDLE)
        if block is None:
            return False
        if block.lock_count:
            return self._set(False, XMS_LOCKED)
        del self.handles[handle]
        return self._set(True)

    def XmsMove(self, length: int, src_handle: int, src_offset: int, dst_handle: int,
                dst_offset: int) -> bool:
        """0Bh: copy length bytes (even) between blocks and conventional memory."""
        if not _is_int(length, 0xFFFFFFFF) or length % 2:
            return self._set(False, XMS_INVALID_LENGTH)
        src = self._endpoint(src_handle, src_offset, length, XMS_INVALID_SOURCE_HANDLE,
                             XMS_INVALID_SOURCE_OFFSET)
        if src < 0:
            return False
        dst = self._endpoint(dst_handle, dst_offset, length, XMS_INVALID_DEST_HANDLE,
                             XMS_INVALID_DEST_OFFSET)
        if dst < 0:
            return False
        self.hma_memory.write(dst, self.hma_memory.read(src, length))
        return self._set(True)

    def XmsLock(self, handle: int) -> int:
        """0Ch: the block's 32-bit physical address; 0 on failure."""
        block = self._block(handle, XMS_INVALID_HANDLE)
        if block is None:
            return 0
        if block.lock_count >= MAX_LOCKS:
            return self._set(0, XMS_LOCK_OVERFLOW)
        self.handles[handle] = block._replace(lock_count=block.lock_count + 1)
        return self._set(block.address)

    def XmsUnlock(self, handle: int) -> bool:
        """0Dh."""
        block = self._block(handle, XMS_INVALID_HANDLE)
        if block is None:
            return False
        if not block.lock_count:
            return self._set(False, XMS_NOT_LOCKED)
        self.handles[handle] = block._replace(lock_count=block.lock_count - 1)
        return self._set(True)

    def XmsGetHandleInfo(self, handle: int) -> tuple[int, int, int] | None:
        """0Eh: (lock count, free handles, size KB)."""
        block = self._block(handle, XMS_INVALID_HANDLE)
        if block is None:
            return None
        free = self.handle_count - len(self.handles)
        return self._set((block.lock_count, free, block.size_kb))

    def XmsReallocate(self, handle: int, kb: int) -> bool:
        """0Fh: resize an unlocked block, moving it (with its bytes) when it must."""
        block = self._block(handle, XMS_INVALID_HANDLE)
        if block is None:
            return False
        if not _is_int(kb, 0xFFFFFFFF):
            return self._set(False, XMS_OUT_OF_MEMORY)
        if block.lock_count:
            return self._set(False, XMS_LOCKED)
        address = block.address
        if not any(start <= address and address + kb * KB <= start + size * KB
                   for start, size in self._gaps(handle)):
            address = self._place(kb, handle)
            if address < 0:
                return self._set(False, XMS_OUT_OF_MEMORY)
            keep = min(kb, block.size_kb) * KB
            write_physical(self.pageman, address,
                           read_physical(self.pageman, block.address, keep))
        self.handles[handle] = XmsBlock(address, kb, 0)
        return self._set(True)

    # -- private -----------------------------------------------------------

    def _gaps(self, ignore: int | None) -> list[tuple[int, int]]:
        """Free runs (address, KB) of the pool, ignoring one handle's block."""
        cursor, gaps = self.pool_start, []
        for block in sorted(b for h, b in self.handles.items() if h != ignore):
            if block.address > cursor:
                gaps.append((cursor, (block.address - cursor) // KB))
            cursor = max(cursor, block.address + block.size_kb * KB)
        if self.pool_end > cursor:
            gaps.append((cursor, (self.pool_end - cursor) // KB))
        return gaps

    def _place(self, kb: int, ignore: int | None) -> int:
        """Lowest address with kb free KB (ignoring one block); -1 when none."""
        for address, size in self._gaps(ignore):
            if size >= kb:
                return address
        return self.pool_end if kb == 0 else -1

    def _free_handle(self) -> int:
        for handle in range(1, self.handle_count + 1):
            if handle not in self.handles:
                return handle
        return 0

    def _block(self, handle: object, code: int) -> XmsBlock | None:
        block = self.handles.get(handle) if type(handle) is int else None
        if block is None:
            self.last_error = code
        return block

    def _endpoint(self, handle: int, offset: int, length: int, handle_code: int,
                  offset_code: int) -> int:
        """Physical address of a move's source or destination; -1 after failing."""
        if not _is_int(offset, 0xFFFFFFFF):
            return self._set(-1, offset_code)
        if handle == 0 and type(handle) is int:
            start = (offset >> 16) * 16 + (offset & 0xFFFF)
            limit = HMA_END
        else:
            block = self._block(handle, handle_code)
            if block is None:
                return -1
            start, limit = block.address + offset, block.address + block.size_kb * KB
        if start > limit:
            return self._set(-1, offset_code)
        if start + length > limit:
            return self._set(-1, XMS_INVALID_LENGTH)
        return start

    def _set(self, value: _T, code: int = XMS_SUCCESS) -> _T:
        self.last_error = code
        return value
