"""DosMemoryManager: conventional memory, upper memory blocks (seed section 6).

Conventional memory is an MCB chain in physical memory (PageManager frames of
the reserved first MB): the MCB at segment m is one paragraph, byte 0 type 'M'
(0x4D) or 'Z' (0x5A, last), word 1 owner (0 free, 8 DOS), word 3 size in
paragraphs, bytes 8..15 name; the block's data is [m + 1, m + 1 + size), the
next MCB at m + size + 1 (RBIL table 01628, "Format of DOS memory control
block"). XMS is ``self.xms`` (model/xms.py), EMS ``self.ems`` (model/ems.py).

Rules (RBIL = Ralf Brown's Interrupt List, INT 21h AH=48h/49h/4Ah/58h):

- Layout. Without UMBs the chain tiles [first_segment, 0xA000), the last block
  'Z'. With UMBs (umb_start < umb_end) MS-DOS 5+'s layout: the conventional
  blocks tile [first_segment, 0x9FFF); the MCB at 9FFFh (UMB_HEAD) is owned by
  DOS (8, name "SC") and spans [0xA000, umb_start), locking out video memory;
  the UMB blocks tile [umb_start, umb_end), the last 'Z' (RBIL, SYSVARS offset
  66h: "first UMB MCB usually at 9FFFh, locking out video memory with a
  DOS-owned memory block"; table 01628: "SC" = system code / locked-out
  memory). The UMB link (AX=5803h) makes the last conventional block 'M'
  (chain continues at 9FFFh) or 'Z' (chain ends at 9FFFh).
- walk(start) follows type bytes and sizes and returns None (callers: error 7,
  ERROR_ARENA_TRASHED) on a type byte other than M/Z, a block running past its
  area (conventional: conv_end; the UMB head: exactly umb_start; UMBs:
  umb_end), a 'Z' that does not end its area or stands on the UMB head (the
  UMB blocks always follow it), or an 'M' with no area after it.
  Every operation walks both chains first and fails with 7 on corruption,
  also when the conventional chain's end disagrees with the link flag; a
  corrupt chain is never followed.
- Strategy (AX=5800h/5801h, RBIL table 01679): 00h first fit = the lowest free
  block that fits; 01h best fit = the smallest that fits, lowest on ties; 02h
  last fit = the highest block that fits, the new block carved from its END
  (MS-DOS's last fit). 40h-42h high only, 80h-82h high then low. Other values:
  error 1 (DOS 5+ checks; RBIL: DOS 3-4 accepted any). High bits take effect
  only while the UMB link is on ("setting an allocation strategy involving high
  memory does not automatically link in the UMB chain ... in order to actually
  allocate high memory", RBIL AH=58h); the low strategies search conventional
  memory only (the table calls them "low memory").
- AH=48h: paragraphs 0..FFFFh; 0 is allowed (a block of size 0: MS-DOS splits
  like any other request). A block larger than asked is split: the rest gets a
  new MCB (name zeroed). No fit: error 8 and ``largest_available`` = the
  largest free block in the areas the strategy searches (the BX=FFFFh probe;
  GetDosLargestBlock returns the same number). New blocks are owned by ``psp``.
- Merging: MS-DOS coalesces free blocks while AH=48h scans (RBIL AH=48h) and
  AH=4Ah coalesces the blocks following the block; this model merges on free
  instead (AH=49h merges the freed block with free neighbours in its area, a
  shrink's remainder with a free successor), so the chain never holds two
  adjacent free blocks. Every allocation result equals MS-DOS's (its scan sees
  the same coalesced blocks) and DOS-2 can state "no two adjacent free blocks".
- AH=49h: the segment's MCB (segment - 1) must be a block of either chain,
  not the UMB head; else error 9 and nothing changes (RBIL AH=49h: 09h
  invalid memory block address). Freeing a free block succeeds and changes
  nothing (MS-DOS only checks the signature and writes owner 0).
- AH=4Ah: error 9 as AH=49h and for a free block. Shrink splits (the rest
  merges with a free successor); grow takes the following free block,
  splitting what is left over. Too big: the block is made as large as
  possible (it absorbs the whole following free block, if any), then error
  8 with ``largest_available`` = that maximum (RBIL AH=4Ah: "under DOS
  2.1-6.0, if there is insufficient memory to expand the block as much as
  requested, the block will be made as large as possible", BX = the
  maximum). The one failure that changes state, as MS-DOS does.
- GetDosMemorySize: conventional memory in paragraphs (0xA000 = 640 KB, INT
  12h's figure in paragraphs).

Failures return 0 / False and set ``last_error`` (DosError); bad Python
arguments give 87 (DOS "invalid parameter"); a manager built with a bad
configuration fails every call with 21 (not ready). Never raises.
"""

from __future__ import annotations

import struct
from typing import NamedTuple, TypeVar

from model.dos_physical import read_physical, write_physical
from model.ems import EmsManager
from model.int67 import int67h
from model.page_manager import PageManager
from model.registers import Registers
from model.xms import XmsDriver
from model.xms_call import xms_call
from spec.abi import (
    CONVENTIONAL_TOP,
    DEFAULT_FIRST_SEGMENT,
    DEFAULT_PSP,
    DEFAULT_UMB_END,
    DEFAULT_UMB_START,
    EMS_FRAME_SEGMENT,
    LOW_MB_FRAMES,
    MCB_M,
    MCB_Z,
    OWNER_DOS,
    OWNER_FREE,
    PARAGRAPH,
    STRATEGIES,
    UMB_HEAD,
    XMS_BASE,
    DosError,
)

FIRST_FIT, BEST_FIT, LAST_FIT = 0, 1, 2
HIGH_ONLY, HIGH_FIRST = 0x40, 0x80

_T = TypeVar("_T")
_MCB = struct.Struct("<BHH3x8s")




class Mcb(NamedTuple):
    """One memory control block as walk() reads it."""

    segment: int
    type: int
    owner: int
    size: int
    name: bytes


def _is_u16(value: object) -> bool:
    return type(value) is int and 0 <= value <= 0xFFFF


class DosMemoryManager:
    """Conventional memory and UMBs as MCB chains, plus the XMS and EMS managers.

    Over 300 lines because it is the seed's DosMemoryManager with its INT 21h
    calls (48h/49h/4Ah/58h and the seed's wrappers): they all walk and rewrite
    the one MCB chain in modelled memory, and an implementer looks for each of
    them on this class; XMS and EMS are classes of their own (model/xms.py,
    model/ems.py) and the byte access is model/dos_physical.py's."""

    def __init__(self, pageman: PageManager, *, first_segment: int = DEFAULT_FIRST_SEGMENT,
                 umb_start: int = DEFAULT_UMB_START, umb_end: int = DEFAULT_UMB_END,
                 xms_end: int = 0x200000, ems_pages: int = 32, xms_handles: int = 32,
                 ems_handles: int = 64, xms_start: int = XMS_BASE) -> None:
        self.pageman = pageman
        self.first_segment = first_segment
        self.umb_start, self.umb_end = umb_start, umb_end
        self.has_umbs = _is_u16(umb_start) and _is_u16(umb_end) and umb_start < umb_end
        self.conv_end = UMB_HEAD if self.has_umbs else CONVENTIONAL_TOP
        self.strategy = FIRST_FIT
        self.umb_linked = False
        self.psp = DEFAULT_PSP
        self.largest_available = 0
        self.last_error: int = DosError.SUCCESS
        self.xms = XmsDriver(pageman, xms_end, handle_count=xms_handles, xms_start=xms_start)
        self.ems = EmsManager(pageman, ems_pages, handle_count=ems_handles)
        self.ready = self._configuration_ok() and self.xms.ready and self.ems.ready
        if not self.ready:
            self.last_error = DosError.NOT_READY
            return
        if not (self.xms.claim_pool() and self.ems.ready):
            self.ready = False
            self.last_error = DosError.NOT_READY
            return
        self._write_mcb(first_segment, MCB_Z, OWNER_FREE, self.conv_end - first_segment - 1)
        if self.has_umbs:
            self._write_mcb(UMB_HEAD, MCB_M, OWNER_DOS, umb_start - CONVENTIONAL_TOP, b"SC")
            self._write_mcb(umb_start, MCB_Z, OWNER_FREE, umb_end - umb_start - 1)

    def _configuration_ok(self) -> bool:
        pm = self.pageman
        if not (pm.initialized and pm.reserved_end >= LOW_MB_FRAMES and pm.nframes > 0x110):
            return False
        if not (type(self.first_segment) is int and 0x40 <= self.first_segment
                and self.first_segment + 1 < self.conv_end):
            return False
        if not (_is_u16(self.umb_start) and _is_u16(self.umb_end)):
            return False
        if self.has_umbs:
            frame_lo, frame_hi = EMS_FRAME_SEGMENT, EMS_FRAME_SEGMENT + 0x1000
            return (CONVENTIONAL_TOP <= self.umb_start and self.umb_end <= 0x10000
                    and (self.umb_end <= frame_lo or self.umb_start >= frame_hi))
        return self.umb_start == self.umb_end

    # -- seed operations -------------------------------------------------

    def AllocateDosMemory(self, paragraphs: int) -> int:
        """INT 21h AH=48h: the new block's segment (MCB + 1); 0 on failure."""
        if not self._check(_is_u16(paragraphs)):
            return 0
        chains = self._chains()
        if chains is None:
            return 0
        areas = self._areas(*chains)
        fit = self.strategy & 0x0F
        for area in areas:
            block = self._choose(area, paragraphs, fit)
            if block is not None:
                return self._set(self._carve(block, paragraphs, fit == LAST_FIT))
        self.largest_available = self._largest(areas)
        return self._set(0, DosError.NOT_ENOUGH_MEMORY)

    def FreeDosMemory(self, segment: int) -> bool:
        """INT 21h AH=49h: free the block at segment, merging free neighbours."""
        if not self._check(_is_u16(segment)):
            return False
        found = self._find(segment)
        if found is None:
            return False
        area, index = found
        block = area[index]
        if block.owner == OWNER_FREE:
            return self._set(True)
        start, end = index, index
        if index > 0 and area[index - 1].owner == OWNER_FREE:
            start = index - 1
        if index + 1 < len(area) and area[index + 1].owner == OWNER_FREE:
            end = index + 1
        self._merge(area[start:end + 1])
        return self._set(True)

    def ResizeDosMemory(self, segment: int, paragraphs: int) -> bool:
        """INT 21h AH=4Ah: shrink or grow an allocated block in place."""
        if not self._check(_is_u16(segment) and _is_u16(paragraphs)):
            return False
        found = self._find(segment)
        if found is None:
            return False
        area, index = found
        block = area[index]
        if block.owner == OWNER_FREE:
            return self._set(False, DosError.INVALID_BLOCK)
        after = area[index + 1] if index + 1 < len(area) else None
        if paragraphs <= block.size:
            if paragraphs < block.size:
                rest = block.segment + paragraphs + 1
                self._write_mcb(block.segment, MCB_M, block.owner, paragraphs, block.name)
                self._write_mcb(rest, block.type, OWNER_FREE, block.size - paragraphs - 1)
                if after is not None and after.owner == OWNER_FREE:
                    self._write_mcb(rest, after.type, OWNER_FREE,
                                    after.segment + after.size - rest)
            return self._set(True)
        available = block.size
        if after is not None and after.owner == OWNER_FREE:
            available += after.size + 1
        if paragraphs > available:
            if available > block.size:
                assert after is not None
                self._write_mcb(block.segment, after.type, block.owner, available, block.name)
            self.largest_available = available
            return self._set(False, DosError.NOT_ENOUGH_MEMORY)
        assert after is not None
        if paragraphs == available:
            self._write_mcb(block.segment, after.type, block.owner, available, block.name)
        else:
            self._write_mcb(block.segment, MCB_M, block.owner, paragraphs, block.name)
            self._write_mcb(block.segment + paragraphs + 1, after.type, OWNER_FREE,
                            available - paragraphs - 1)
        return self._set(True)

    def GetDosMemorySize(self) -> int:
        """Conventional memory in paragraphs (0xA000: 640 KB)."""
        if not self._check(True):
            return 0
        return self._set(CONVENTIONAL_TOP)

    def GetDosLargestBlock(self) -> int:
        """The largest block AH=48h could allocate now (the BX=FFFFh probe)."""
        if not self._check(True):
            return 0
        chains = self._chains()
        if chains is None:
            return 0
        return self._set(self._largest(self._areas(*chains)))

    def GetAllocationStrategy(self) -> int:
        """AX=5800h."""
        if not self._check(True):
            return 0
        return self._set(self.strategy)

    def SetAllocationStrategy(self, strategy: int) -> bool:
        """AX=5801h; values of RBIL table 01679, else error 1."""
        if not self._check(type(strategy) is int):
            return False
        if strategy not in STRATEGIES:
            return self._set(False, DosError.INVALID_FUNCTION)
        self.strategy = strategy
        return self._set(True)

    def GetUmbLink(self) -> bool:
        """AX=5802h."""
        if not self._check(True):
            return False
        return self._set(self.umb_linked)

    def SetUmbLink(self, linked: bool) -> bool:
        """AX=5803h: rewrite the last conventional MCB's type; error 1 without UMBs."""
        if not self._check(type(linked) is bool):
            return False
        if not self.has_umbs:
            return self._set(False, DosError.INVALID_FUNCTION)
        chains = self._chains()
        if chains is None:
            return False
        last = chains[0][-1]
        self._write_type(last.segment, MCB_M if linked else MCB_Z)
        self.umb_linked = linked
        return self._set(True)

    # -- XMS / EMS seed operations (codes also in xms.last_error / ems.last_status)

    def AllocateXmsMemory(self, bytes: int) -> int:
        """XMS function 09h for ceil(bytes / 1024) KB; the handle, 0 on failure."""
        handle = self.xms.AllocateBytes(bytes)
        self.last_error = self.xms.last_error
        return handle

    def FreeXmsMemory(self, handle: int) -> bool:
        result = self.xms.XmsFree(handle)
        self.last_error = self.xms.last_error
        return result

    def AllocateEmsPages(self, pages: int) -> int:
        """EMS function 43h; the handle, 0 on failure (0 is the OS handle, never returned)."""
        handle = self.ems.EmsAllocate(pages)
        self.last_error = self.ems.last_status
        return handle

    def FreeEmsPages(self, handle: int) -> bool:
        result = self.ems.EmsDeallocate(handle)
        self.last_error = self.ems.last_status
        return result

    def MapEmsPageToPhysical(self, page_num: int, segment: int) -> bool:
        """Map EMS page page_num (a system-wide page id) at a page-frame segment."""
        result = self.ems.MapPageToSegment(page_num, segment)
        self.last_error = self.ems.last_status
        return result

    # -- state the spec reads ----------------------------------------------

    def walk(self, start_segment: int) -> list[Mcb] | None:
        """The MCBs from start_segment to the 'Z'; None when the chain is corrupt."""
        if not (self.ready and _is_u16(start_segment)):
            return None
        blocks: list[Mcb] = []
        segment = start_segment
        # Every MCB takes at least its own paragraph of the 16-bit segment space,
        # so no chain has more than 0x10000 blocks: a bound, should the next
        # segment ever fail to move forward.
        for _ in range(0x10000):
            limit = self._limit(segment)
            if limit < 0:
                return None
            typ, owner, size, name = _MCB.unpack(
                read_physical(self.pageman, segment * PARAGRAPH, PARAGRAPH))
            end = segment + size + 1
            if typ not in (MCB_M, MCB_Z) or end > limit:
                return None
            blocks.append(Mcb(segment, typ, owner, size, name))
            if typ == MCB_Z:
                head = self.has_umbs and segment == UMB_HEAD
                return blocks if end == limit and not head else None
            if end == limit and self._limit(end) < 0:
                return None
            segment = end
        return None

    def umb_chain(self) -> list[Mcb] | None:
        """The UMB chain from UMB_HEAD (the head included); [] without UMBs."""
        return self.walk(UMB_HEAD) if self.has_umbs else []

    def frames(self) -> set[int]:
        """Every frame the DOS areas use: the first MB, the XMS pool, EMS storage."""
        if not self.ready:
            return set()
        return set(range(LOW_MB_FRAMES)) | self.xms.frames() | self.ems.frames()

    # -- private -------------------------------------------------------------

    def _limit(self, segment: int) -> int:
        if self.first_segment <= segment < self.conv_end:
            return self.conv_end
        if self.has_umbs and segment == UMB_HEAD:
            return self.umb_start
        if self.has_umbs and self.umb_start <= segment < self.umb_end:
            return self.umb_end
        return -1

    def _chains(self) -> tuple[list[Mcb], list[Mcb]] | None:
        """(conventional blocks, UMB blocks without the head); error 7 when corrupt."""
        low = self.walk(self.first_segment)
        high = self.umb_chain()
        if low is not None and high is not None:
            if self.has_umbs and high[0].owner != OWNER_DOS:
                high = None
            elif self.umb_linked and self.has_umbs:
                if len(low) <= len(high) or low[-len(high):] != high:
                    high = None
                else:
                    low = low[:-len(high)]
            elif low[-1].segment + low[-1].size + 1 != self.conv_end:
                high = None
        if low is None or high is None:
            self.last_error = DosError.ARENA_TRASHED
            return None
        return low, high[1:]

    def _areas(self, low: list[Mcb], high: list[Mcb]) -> list[list[Mcb]]:
        if self.umb_linked and self.strategy & HIGH_ONLY:
            return [high]
        if self.umb_linked and self.strategy & HIGH_FIRST:
            return [high, low]
        return [low]

    @staticmethod
    def _choose(area: list[Mcb], paragraphs: int, fit: int) -> Mcb | None:
        fitting = [b for b in area if b.owner == OWNER_FREE and b.size >= paragraphs]
        if not fitting:
            return None
        if fit == BEST_FIT:
            return min(fitting, key=lambda b: (b.size, b.segment))
        return fitting[-1] if fit == LAST_FIT else fitting[0]

    @staticmethod
    def _largest(areas: list[list[Mcb]]) -> int:
        return max((b.size for area in areas for b in area if b.owner == OWNER_FREE), default=0)

    def _carve(self, block: Mcb, paragraphs: int, from_end: bool) -> int:
        """Allocate paragraphs from the free block; the new block's data segment."""
        if paragraphs == block.size:
            self._write_mcb(block.segment, block.type, self.psp, block.size, block.name)
            return block.segment + 1
        rest = block.size - paragraphs - 1
        if from_end:
            self._write_mcb(block.segment, MCB_M, OWNER_FREE, rest, block.name)
            new = block.segment + rest + 1
            self._write_mcb(new, block.type, self.psp, paragraphs)
            return new + 1
        self._write_mcb(block.segment, MCB_M, self.psp, paragraphs, block.name)
        self._write_mcb(block.segment + paragraphs + 1, block.type, OWNER_FREE, rest)
        return block.segment + 1

    def _merge(self, blocks: list[Mcb]) -> None:
        """Make consecutive blocks one free block (the first MCB's name kept)."""
        first, last = blocks[0], blocks[-1]
        self._write_mcb(first.segment, last.type, OWNER_FREE,
                        last.segment + last.size - first.segment, first.name)

    def _find(self, segment: int) -> tuple[list[Mcb], int] | None:
        chains = self._chains()
        if chains is None:
            return None
        for area in chains:
            for index, block in enumerate(area):
                if block.segment + 1 == segment:
                    return area, index
        self.last_error = DosError.INVALID_BLOCK
        return None

    def _write_mcb(self, segment: int, typ: int, owner: int, size: int,
                   name: bytes = b"") -> None:
        write_physical(self.pageman, segment * PARAGRAPH,
                       _MCB.pack(typ, owner, size, name.ljust(8, b"\0")[:8]))

    def _write_type(self, segment: int, typ: int) -> None:
        write_physical(self.pageman, segment * PARAGRAPH, bytes((typ,)))

    def _check(self, arguments_ok: bool) -> bool:
        if not self.ready:
            self.last_error = DosError.NOT_READY
            return False
        if not arguments_ok:
            self.last_error = DosError.INVALID_PARAMETER
            return False
        return True

    def _set(self, value: _T, code: DosError = DosError.SUCCESS) -> _T:
        self.last_error = code
        return value

    # -- register-level entry points (issue 15): model/xms_call.py, model/int67.py

    def XmsCall(self, regs: Registers) -> Registers:
        """The XMS driver's far-call entry (AH = function; AX = 1 / 0, BL = error)."""
        return xms_call(self.xms, self.has_umbs, regs, installed=self.ready)

    def Int67h(self, regs: Registers) -> Registers:
        """INT 67h, the expanded memory manager (AH = function, AH = status on return)."""
        return int67h(self.ems, regs, installed=self.ready)
