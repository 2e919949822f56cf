"""DosMemoryManager: conventional memory, upper memory blocks (seed section 6).

Conventional memory is an MCB chain in physical memory (PageManager frames of
the reserved first MB): the MCB at segment m is one paragraph, byte 0 type 'M'
(0x4D) or 'Z' (0x5A, last), word 1 owner (0 free, 8 DOS), word 3 size in
paragraphs, bytes 8..15 name; the block's data is [m + 1, m + 1 + size), the
next MCB at m + size + 1 (RBIL table 01628, "Format of DOS memory control
block"). XMS is ``self.xms`` (model/xms.py), EMS ``self.ems`` (model/ems.py).

Rules. The arbiter is MS-DOS's own source (microsoft/MS-DOS, cited "ALLOC.ASM:N" =
v4.0/src/DOS/ALLOC.ASM line N; v2.0's is the same routine); where it is silent
(UMBs, DOS 5) RBIL = Ralf Brown's Interrupt List, FreeDOS (FDOS/kernel) and
DOSBox-staging:

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
  corrupt chain is never followed. Deviation: MS-DOS checks only type bytes
  (ALLOC.ASM:103-115) and 49h never walks; bounds are the model's, so a
  chain running past its area is refused rather than followed.
- Strategy (AX=5800h/5801h, RBIL table 01679): 00h first fit, 01h best fit,
  02h last fit (see AH=48h); 40h-42h high only, 80h-82h high then low. Other
  values: error 1, as FreeDOS (kernel/inthndlr.c:1216-1218) and DOSBox
  (dos_memory.cpp:150-158). Deviation: MS-DOS 4 stores any BL
  (ALLOC.ASM:386-388); the model keeps DOS 5's UMB bits meaningful. High bits take effect
  only while the UMB link is on ("setting an allocation strategy involving high
  memory does not automatically link in the UMB chain ... in order to actually
  allocate high memory", RBIL AH=58h). With the link on a low strategy scans
  the whole chain, conventional then UMBs ("low memory first": the chain
  runs on past 9FFFh to the 'Z', as FreeDOS and DOSBox scan it); high first
  falls back to the whole chain (see _scans).
- Joining (ALLOC.ASM:123-139, Coalesce) is lazy: a free block absorbs the free
  blocks after it (its size grows, it takes the last one's type; the absorbed
  MCBs' bytes stay in memory as data). AH=48h joins every free block of each
  area it scans, to the area's end, before it picks (ALLOC.ASM:176-237: the
  scan runs to the 'Z' even after a fit), and keeps the joins when it fails;
  AH=4Ah joins the free blocks after its block; AH=49h joins nothing, so a
  program that walks the chain after 49h sees two adjacent free MCBs.
- AH=48h: paragraphs 0..FFFFh; 0 is allowed (a block of size 0: split like
  any request, ALLOC.ASM:219). First fit = the lowest block that fits, best
  fit the smallest (the first on ties: JBE, ALLOC.ASM:230-232), last fit the
  highest, carved from its end (ALLOC.ASM:242-252); sizes are the joined
  ones. A larger block is split: only type, owner and size of the MCBs are
  written (ALLOC.ASM:275-286), so a new MCB's name bytes are what memory
  held. The block is owned by ``psp`` (CurrentPDB). No fit: error 8 and
  ``largest_available`` = the largest joined free block in the areas scanned
  (ALLOC.ASM:200-216; GetDosLargestBlock returns that number without
  writing the joins).
- AH=49h: owner 0, nothing else (ALLOC.ASM:349-356), a free block included
  (double free succeeds). Deviation: MS-DOS checks only that segment - 1
  has an 'M'/'Z' byte (ALLOC.ASM:352) and writes owner 0 into any such
  paragraph; the model requires a block of either chain, not the UMB head,
  else error 9 and nothing changes (ALLOC.ASM:358-360's code), rather than
  writing into a program's data that happens to start with 4Dh/5Ah.
- AH=4Ah (ALLOC.ASM:311-331): segment - 1 not a block: error 7 (the bad
  signature goes to alloc_trashed, ALLOC.ASM:317-321; same deviation as
  49h). Any block, a free one included (no owner check), first absorbs the
  free blocks after it; then at most its size: split (the rest free, typed as
  the joined block) and the block's owner becomes ``psp`` (alloc_set_owner,
  ALLOC.ASM:283-286), also at the same size; more: error 8 with
  ``largest_available`` = the joined size, the join kept and the owner
  unchanged ("made as large as possible", ALLOC.ASM:327-331 -> 200-205).
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
from model.int21 import int21h
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
_HEADER = struct.Struct("<BHH")




class Mcb(NamedTuple):
    """One memory control block as walk() reads it."""

    segment: int
    type: int
    owner: int
    size: int
    name: bytes


def _joined(area: list[Mcb]) -> list[Mcb]:
    """The area's blocks with each run of free blocks counted as one (no write)."""
    out: list[Mcb] = []
    for block in area:
        if out and block.owner == OWNER_FREE and out[-1].owner == OWNER_FREE:
            out[-1] = out[-1]._replace(size=block.segment + block.size - out[-1].segment,
                                       type=block.type)
        else:
            out.append(block)
    return out


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
        fit = self.strategy & 0x0F
        joined: dict[int, list[Mcb]] = {}
        for group in self._scans():
            for area in group:
                if area not in joined:
                    joined[area] = self._coalesce_area(chains[area])
            block = self._choose([b for area in group for b in joined[area]], paragraphs, fit)
            if block is not None:
                return self._set(self._carve(block, paragraphs, fit == LAST_FIT))
        self.largest_available = self._largest(list(joined.values()))
        return self._set(0, DosError.NOT_ENOUGH_MEMORY)

    def FreeDosMemory(self, segment: int) -> bool:
        """INT 21h AH=49h: owner 0, nothing else (no join: ALLOC.ASM:354)."""
        if not self._check(_is_u16(segment)):
            return False
        found = self._find(segment)
        if found is None:
            return False
        area, index = found
        self._write_owner(area[index].segment, OWNER_FREE)
        return self._set(True)

    def ResizeDosMemory(self, segment: int, paragraphs: int) -> bool:
        """INT 21h AH=4Ah: join the free blocks after it, then split or fail with 8."""
        if not self._check(_is_u16(segment) and _is_u16(paragraphs)):
            return False
        found = self._find(segment)
        if found is None:
            self.last_error = DosError.ARENA_TRASHED
            return False
        area, index = found
        block = self._coalesce(area, index)
        if paragraphs > block.size:
            self.largest_available = block.size
            return self._set(False, DosError.NOT_ENOUGH_MEMORY)
        if paragraphs < block.size:
            self._write_header(block.segment + paragraphs + 1, block.type, OWNER_FREE,
                               block.size - paragraphs - 1)
            self._write_header(block.segment, MCB_M, block.owner, paragraphs)
        self._write_owner(block.segment, self.psp)
        return self._set(True)

    def GetDosMemorySize(self) -> int:
        """Conventional memory in paragraphs (0xA000: 640 KB)."""
        if not self._check(True):
            return 0
        return self._set(CONVENTIONAL_TOP)

    def GetDosLargestBlock(self) -> int:
        """The largest block AH=48h could allocate now (the BX=FFFFh probe's BX:
        free runs counted joined; unlike the probe, nothing is written)."""
        if not self._check(True):
            return 0
        chains = self._chains()
        if chains is None:
            return 0
        areas = {area for group in self._scans() for area in group}
        return self._set(self._largest([_joined(chains[area]) for area in areas]))

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

    def Int21h(self, regs: Registers) -> Registers:
        """INT 21h AH=48h/49h/4Ah/58h at the register level (model/int21.py)."""
        return int21h(self, regs)

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
        # so no chain has more than 0x10000 blocks, and each next segment lies
        # above the last: a bound and a check, should it ever fail to move forward.
        previous = -1
        for _ in range(0x10000):
            if segment <= previous:
                return None
            previous = segment
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

    def _scans(self) -> list[tuple[int, ...]]:
        """The scans AH=48h makes, each over areas (0 conventional, 1 UMBs) in
        chain order: with the link on the chain runs on into the UMBs, so a
        low strategy scans both (MS-DOS scans to the 'Z', ALLOC.ASM:183-185;
        FreeDOS memmgr.c:122-190, DOSBox dos_memory.cpp:164-170); high first
        falls back to the whole chain (memmgr.c:195-202, dos_memory.cpp:225-229)."""
        if not self.umb_linked:
            return [(0,)]
        if self.strategy & HIGH_ONLY:
            return [(1,)]
        if self.strategy & HIGH_FIRST:
            return [(1,), (0, 1)]
        return [(0, 1)]

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
        """Allocate paragraphs from the free block; the new block's data segment.
        Only type, owner and size are written (ALLOC.ASM:276-286): a new MCB's
        other bytes stay as memory held them."""
        if paragraphs == block.size:
            self._write_owner(block.segment, self.psp)
            return block.segment + 1
        rest = block.size - paragraphs - 1
        if from_end:
            new = block.segment + rest + 1
            self._write_header(new, block.type, self.psp, paragraphs)
            self._write_header(block.segment, MCB_M, OWNER_FREE, rest)
            return new + 1
        self._write_header(block.segment + paragraphs + 1, block.type, OWNER_FREE, rest)
        self._write_header(block.segment, MCB_M, self.psp, paragraphs)
        return block.segment + 1

    def _coalesce(self, area: list[Mcb], index: int) -> Mcb:
        """ALLOC.ASM's Coalesce (123-139): block ``index`` absorbs the free blocks
        after it; its size and type change, its owner does not."""
        block, stop = area[index], index + 1
        while stop < len(area) and area[stop].owner == OWNER_FREE:
            stop += 1
        if stop == index + 1:
            return block
        last = area[stop - 1]
        joined = block._replace(type=last.type, size=last.segment + last.size - block.segment)
        self._write_header(block.segment, joined.type, block.owner, joined.size)
        return joined

    def _coalesce_area(self, area: list[Mcb]) -> list[Mcb]:
        """AH=48h's scan (ALLOC.ASM:176-237): every free block joined with the free
        blocks after it, to the area's end; the area's blocks afterwards."""
        out: list[Mcb] = []
        index = 0
        while index < len(area):
            block = area[index]
            index += 1
            if block.owner == OWNER_FREE:
                block = self._coalesce(area, index - 1)
                while index < len(area) and area[index].segment <= block.segment + block.size:
                    index += 1
            out.append(block)
        return out

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

    def _write_header(self, segment: int, typ: int, owner: int, size: int) -> None:
        """Type, owner and size (bytes 0-4) only, as MS-DOS writes an MCB."""
        write_physical(self.pageman, segment * PARAGRAPH, _HEADER.pack(typ, owner, size))

    def _write_owner(self, segment: int, owner: int) -> None:
        write_physical(self.pageman, segment * PARAGRAPH + 1, owner.to_bytes(2, "little"))

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
        """The XMS driver's far-call entry (AH = function; AX = 1 / 0, BL = error).
        ``last_error``: BL when AX = 0 (every failure; 07h's "A20 off" and 08h/88h
        with nothing free say BL = 0 / A0h there), else success."""
        out = xms_call(self.xms, self.has_umbs, regs, installed=self.ready)
        self.last_error = out.bl if out.ax == 0 else DosError.SUCCESS
        return out

    def Int67h(self, regs: Registers) -> Registers:
        """INT 67h, the expanded memory manager (AH = function, AH = status on return,
        also left in ``last_error``)."""
        out = int67h(self.ems, regs, installed=self.ready)
        self.last_error = out.ah
        return out
