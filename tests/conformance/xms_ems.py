"""What HIMEM.SYS and an EMS driver answer, as data, run against the model's register
entry points DosMemoryManager.XmsCall and DosMemoryManager.Int67h.

Sources, cited per case:

- ``xms.cpp`` / ``ems.cpp``: DOSBox-staging src/ints/xms.cpp and src/ints/ems.cpp
  (dosbox-staging/dosbox-staging), line numbers of the handler that answers.
- ``HimemX.asm``: FreeDOS's HimemX (Baron-von-Riedesel/HimemX), a HIMEM
  clone whose ?HINF_MSCOMP and ?ALLOCDX0 options reproduce Microsoft HIMEM.
- ``XMS 3.0`` / ``LIM 4.0``: the specifications' function descriptions, where
  the drivers are silent or differ (the model's docstrings say which).

Microsoft's HIMEM source is not in microsoft/MS-DOS (v4.0 predates HIMEM;
its XMA2EMS is an IBM XMA card driver). Each case: the world (UMBs or not,
memory size, HIMEM's /HMAMIN), bytes written to conventional memory, set-up
calls through the same entry points, the registers in, the registers out
that the case names, state read back, bytes read back, and whether the whole
state must be unchanged (the snapshot of tests/dos_world.py).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any, NamedTuple

import pytest

from model.dos_memory import DosMemoryManager
from model.dos_physical import read_physical, write_physical
from model.page_manager import PageManager
from model.registers import Registers
from spec.abi import A20_MAX_COUNT, KB, XMS_BASE
from tests.dos_world import snapshot


class Case(NamedTuple):
    name: str
    regs: dict[str, int]  # the registers in (ah is folded into eax by ``call``)
    out: dict[str, int]  # registers (Registers' names) expected after
    source: str
    setup: tuple[dict[str, int], ...] = ()  # earlier calls through the same entry
    memory: tuple[tuple[int, bytes], ...] = ()  # bytes written before the call
    state: tuple[tuple[str, Any, Any], ...] = ()  # (reader, argument, expected)
    read: tuple[tuple[int, bytes], ...] = ()  # bytes expected after the call
    unchanged: bool = False  # the whole state equal before and after
    world: tuple[tuple[str, Any], ...] = ()  # "umbs": False, "memory_mb", "hmamin_kb"
    ems: bool = False  # INT 67h instead of the XMS entry


def x(name: str, regs: dict[str, int], out: dict[str, int], source: str,
      **more: Any) -> Case:
    return Case(name, regs, out, source, **more)


def e(name: str, regs: dict[str, int], out: dict[str, int], source: str,
      **more: Any) -> Case:
    return Case(name, regs, out, source, ems=True, **more)


def move(length: int, src: int, src_offset: int, dst: int, dst_offset: int) -> bytes:
    return (length.to_bytes(4, "little") + src.to_bytes(2, "little")
            + src_offset.to_bytes(4, "little") + dst.to_bytes(2, "little")
            + dst_offset.to_bytes(4, "little"))


def region(length: int, src: tuple[int, int, int, int], dst: tuple[int, int, int, int]) -> bytes:
    """A LIM 57h region: length, then (type, handle, offset, segment or page) twice."""
    return struct.pack("<IBHHHBHHH", length, *src, *dst)


POOL_KB = (0x200000 - XMS_BASE) // KB  # 960: the default pool [110000h, 200000h)
BIG_KB = (0x4400000 - XMS_BASE) // KB  # 68544 KB: a 68 MB machine's pool
ALLOC1 = ({"ah": 0x09, "edx": 1},)  # handle 1, 1 KB, at 110000h
ALLOC4_LOCKED = ({"ah": 0x09, "edx": 4}, {"ah": 0x0C, "edx": 1})
FULL = ({"ah": 0x09, "edx": POOL_KB},)
NO_UMBS = (("umbs", False),)
BIG = (("memory_mb", 68), ("xms_end", 0x4400000))
BIG_BLOCK = ({"ah": 0x89, "edx": BIG_KB},)
MOVE_AT = 0x500  # the move structure / LIM arrays at 0050:0000
DATA_AT = 0x6000  # conventional bytes at 0600:0000
SEG_0600 = 0x0600_0000  # seg:off of DATA_AT as a move offset
HMA_PTR = 0xFFFF_0010  # FFFF:0010, the HMA's first byte (linear 100000h)
EMS3 = ({"ah": 0x43, "ebx": 3},)  # handle 1 with 3 pages
MAPPED = EMS3 + ({"ah": 0x44, "eax": 0x4400, "ebx": 0, "edx": 1},)  # page 0 at physical 0
NAMED = EMS3 + ({"ah": 0x53, "eax": 0x5301, "edx": 1, "ds": 0x50, "esi": 0},)
NAME = ((MOVE_AT, b"TESTNAME"),)

XMS_CASES = [
    # -- 00h-07h: version, HMA, A20 ----------------------------------------
    x("00h version", {"ah": 0x00}, {"ax": 0x0300, "bx": 0x0301, "dx": 1},
      "src/ints/xms.cpp: lines 508-512 (XmsVersion 0300h, XmsDriverVersion 0301h)",
      unchanged=True),
    x("01h request HMA", {"ah": 0x01, "edx": 0xFFFF}, {"ax": 1, "bl": 0},
      "HimemX.asm: xms_request_hma, lines 648-661", state=(("hma_owned", None, True),)),
    x("01h HMA in use", {"ah": 0x01, "edx": 0xFFFF}, {"ax": 0, "bl": 0x91},
      "src/ints/xms.cpp: line 518-520", setup=({"ah": 0x01, "edx": 0xFFFF},),
      unchanged=True),
    x("01h DX below HMAMIN", {"ah": 0x01, "edx": 0x3FF}, {"ax": 0, "bl": 0x92},
      "HimemX.asm: line 653 (cmp dx,[_hma_min]; jb) and line 3202 (KB * 1024)",
      world=(("hmamin_kb", 1),), unchanged=True),
    x("01h DX equal to HMAMIN", {"ah": 0x01, "edx": 0x400}, {"ax": 1},
      "HimemX.asm: line 653 (jb: equal is enough)", world=(("hmamin_kb", 1),),
      state=(("hma_owned", None, True),)),
    x("02h release HMA not held", {"ah": 0x02}, {"ax": 0, "bl": 0x93},
      "src/ints/xms.cpp: lines 544-547; HimemX.asm: lines 673-683", unchanged=True),
    x("02h release HMA", {"ah": 0x02}, {"ax": 1, "bl": 0},
      "src/ints/xms.cpp: lines 540-543", setup=({"ah": 0x01, "edx": 0xFFFF},),
      state=(("hma_owned", None, False),)),
    x("03h global enable", {"ah": 0x03}, {"ax": 1, "bl": 0},
      "src/ints/xms.cpp: lines 549-558",
      state=(("a20_global", None, True), ("a20_local", None, 1), ("a20", None, True))),
    x("03h twice counts once", {"ah": 0x03}, {"ax": 1, "bl": 0},
      "src/ints/xms.cpp: line 551 (only when the global flag is clear)",
      setup=({"ah": 0x03},), unchanged=True),
    x("04h without 03h", {"ah": 0x04}, {"ax": 1, "bl": 0},
      "src/ints/xms.cpp: line 561 (only when the global flag is set)", unchanged=True),
    x("04h after 03h", {"ah": 0x04}, {"ax": 1, "bl": 0}, "src/ints/xms.cpp: lines 559-568",
      setup=({"ah": 0x03},),
      state=(("a20_global", None, False), ("a20_local", None, 0), ("a20", None, False))),
    x("04h with a local enable outstanding", {"ah": 0x04}, {"ax": 0, "bl": 0x94},
      "src/ints/xms.cpp: lines 218-219 through 562",
      setup=({"ah": 0x03}, {"ah": 0x05}),
      state=(("a20_global", None, True), ("a20_local", None, 1), ("a20", None, True))),
    x("05h local enable", {"ah": 0x05}, {"ax": 1, "bl": 0},
      "src/ints/xms.cpp: lines 202-206", state=(("a20_local", None, 1), ("a20", None, True))),
    x("05h at the count limit", {"ah": 0x05}, {"ax": 0, "bl": 0x82},
      "src/ints/xms.cpp: lines 190-199", world=(("a20_local", A20_MAX_COUNT),),
      unchanged=True),
    x("06h with count 0", {"ah": 0x06}, {"ax": 0, "bl": 0x82},
      "src/ints/xms.cpp: lines 214-215 (HIMEM.SYS behavior); HimemX.asm: line 767",
      unchanged=True),
    x("06h still enabled", {"ah": 0x06}, {"ax": 0, "bl": 0x94},
      "src/ints/xms.cpp: lines 218-219; HimemX.asm: lines 769-770",
      setup=({"ah": 0x05}, {"ah": 0x05}), state=(("a20_local", None, 1), ("a20", None, True))),
    x("06h last disable", {"ah": 0x06}, {"ax": 1, "bl": 0}, "src/ints/xms.cpp: lines 222-223",
      setup=({"ah": 0x05},), state=(("a20_local", None, 0), ("a20", None, False))),
    x("07h query off", {"ah": 0x07, "ebx": 0x1234}, {"ax": 0, "bx": 0x1200},
      "src/ints/xms.cpp: lines 575-578", unchanged=True),
    x("07h query on", {"ah": 0x07}, {"ax": 1, "bl": 0}, "HimemX.asm: lines 783-789",
      setup=({"ah": 0x05},)),
    # -- 08h-0Fh --------------------------------------------------------------
    x("08h query free", {"ah": 0x08}, {"ax": POOL_KB, "dx": POOL_KB, "bl": 0},
      "src/ints/xms.cpp: lines 579-585", unchanged=True),
    x("08h nothing free", {"ah": 0x08}, {"ax": 0, "dx": 0, "bl": 0xA0},
      "src/ints/xms.cpp: line 242", setup=FULL, unchanged=True),
    x("08h over 64 MB clamps", {"ah": 0x08, "eax": 0xABCD_0000, "edx": 0x1234_0000},
      {"eax": 0xABCD_FFFF, "edx": 0x1234_FFFF, "bl": 0},
      "src/ints/xms.cpp: lines 582-584 (clamp_to_uint16); HimemX.asm: lines 938-956 "
      "(min, high words kept)", world=BIG, unchanged=True),
    x("09h allocate", {"ah": 0x09, "edx": 0x0001_0010}, {"ax": 1, "bl": 0, "edx": 0x0001_0001},
      "src/ints/xms.cpp: lines 586-591; HimemX.asm: line 976 (movzx edx,dx)",
      state=(("xms_size", 1, 0x10), ("xms_address", 1, XMS_BASE))),
    x("09h zero KB", {"ah": 0x09, "edx": 0}, {"ax": 1, "dx": 1},
      "src/ints/xms.cpp: lines 265-270 (0 KB allowed)", state=(("xms_size", 1, 0),)),
    x("09h too big", {"ah": 0x09, "edx": POOL_KB + 1}, {"ax": 0, "dx": 0, "bl": 0xA0},
      "HimemX.asm: lines 1008-1016 (?ALLOCDX0)", unchanged=True),
    x("09h out of handles", {"ah": 0x09, "edx": 0}, {"ax": 0, "dx": 0, "bl": 0xA1},
      "src/ints/xms.cpp: lines 249-253", setup=({"ah": 0x09, "edx": 0},) * 32,
      unchanged=True),
    x("0Ah free", {"ah": 0x0A, "edx": 1}, {"ax": 1, "bl": 0}, "src/ints/xms.cpp: lines 282-295",
      setup=ALLOC1, state=(("xms_handles", None, 0),)),
    x("0Ah unknown handle", {"ah": 0x0A, "edx": 5}, {"ax": 0, "bl": 0xA2},
      "src/ints/xms.cpp: lines 284-285", setup=ALLOC1, unchanged=True),
    x("0Ah handle 0", {"ah": 0x0A, "edx": 0}, {"ax": 0, "bl": 0xA2},
      "src/ints/xms.cpp: line 232 (handle 0 is never valid)", unchanged=True),
    x("0Ah locked", {"ah": 0x0A, "edx": 1}, {"ax": 0, "bl": 0xAB},
      "src/ints/xms.cpp: lines 287-288", setup=ALLOC4_LOCKED, unchanged=True),
    x("0Bh conventional to block", {"ah": 0x0B, "ds": 0x50, "esi": 0}, {"ax": 1},
      "src/ints/xms.cpp: lines 297-392", setup=ALLOC1,
      memory=((MOVE_AT, move(4, 0, SEG_0600, 1, 0)), (DATA_AT, b"ABCD")),
      state=(("xms_bytes", (1, 0, 4), b"ABCD"),)),
    x("0Bh block to conventional", {"ah": 0x0B, "ds": 0x50, "esi": 0}, {"ax": 1},
      "src/ints/xms.cpp: lines 327-371",
      setup=ALLOC1 + ({"ah": 0x0B, "ds": 0x50, "esi": 0x10},),
      memory=((MOVE_AT + 0x10, move(4, 0, SEG_0600, 1, 2)), (DATA_AT, b"WXYZ"),
              (MOVE_AT, move(6, 1, 0, 0, 0x0700_0000))),
      read=((0x7000, b"\0\0WXYZ"),)),
    x("0Bh odd length", {"ah": 0x0B, "ds": 0x50, "esi": 0}, {"ax": 0, "bl": 0xA7},
      "HimemX.asm: lines 1243-1245 (test cl,1: A7h); XMS 3.0 function 0Bh", setup=ALLOC1,
      memory=((MOVE_AT, move(3, 0, SEG_0600, 1, 0)),), unchanged=True),
    x("0Bh bad source handle", {"ah": 0x0B, "ds": 0x50, "esi": 0}, {"ax": 0, "bl": 0xA3},
      "src/ints/xms.cpp: lines 328-330", setup=ALLOC1,
      memory=((MOVE_AT, move(2, 7, 0, 1, 0)),), unchanged=True),
    x("0Bh source offset past the block", {"ah": 0x0B, "ds": 0x50, "esi": 0},
      {"ax": 0, "bl": 0xA4}, "src/ints/xms.cpp: lines 331-333", setup=ALLOC1,
      memory=((MOVE_AT, move(0, 1, 2048, 0, SEG_0600)),), unchanged=True),
    x("0Bh source length past the block", {"ah": 0x0B, "ds": 0x50, "esi": 0},
      {"ax": 0, "bl": 0xA7}, "src/ints/xms.cpp: lines 334-336", setup=ALLOC1,
      memory=((MOVE_AT, move(1026, 1, 0, 0, SEG_0600)),), unchanged=True),
    x("0Bh bad destination handle", {"ah": 0x0B, "ds": 0x50, "esi": 0},
      {"ax": 0, "bl": 0xA5}, "src/ints/xms.cpp: lines 351-353", setup=ALLOC1,
      memory=((MOVE_AT, move(2, 1, 0, 9, 0)),), unchanged=True),
    x("0Bh destination offset past the block", {"ah": 0x0B, "ds": 0x50, "esi": 0},
      {"ax": 0, "bl": 0xA6}, "src/ints/xms.cpp: lines 354-356", setup=ALLOC1,
      memory=((MOVE_AT, move(0, 0, SEG_0600, 1, 4096)),), unchanged=True),
    x("0Bh destination length past the block", {"ah": 0x0B, "ds": 0x50, "esi": 0},
      {"ax": 0, "bl": 0xA7}, "src/ints/xms.cpp: lines 357-359", setup=ALLOC1,
      memory=((MOVE_AT, move(4, 0, SEG_0600, 1, 1022)),), unchanged=True),
    # -- 0Bh with handle 0 in the HMA: FFFF:0010-FFFF:FFFF = 100000h-10FFEFh ----
    x("0Bh conventional to the HMA", {"ah": 0x0B, "ds": 0x50, "esi": 0}, {"ax": 1},
      "src/ints/xms.cpp: lines 362-370 (RealToPhysical; only destpt + length > 10FFF0h "
      "fails)", memory=((MOVE_AT, move(4, 0, SEG_0600, 0, HMA_PTR)), (DATA_AT, b"ABCD")),
      state=(("hma_bytes", (0x100000, 4), b"ABCD"),)),
    x("0Bh HMA to conventional", {"ah": 0x0B, "ds": 0x50, "esi": 0}, {"ax": 1},
      "HimemX.asm: lines 1170-1182 (xms_get_move_addr: 16 * segment + offset, <= 10fff0h)",
      setup=({"ah": 0x0B, "ds": 0x50, "esi": 0x10},),
      memory=((MOVE_AT + 0x10, move(4, 0, SEG_0600, 0, HMA_PTR + 2)), (DATA_AT, b"WXYZ"),
              (MOVE_AT, move(6, 0, HMA_PTR, 0, 0x0700_0000))),
      read=((0x7000, b"\0\0WXYZ"),)),
    x("0Bh HMA to a block", {"ah": 0x0B, "ds": 0x50, "esi": 0}, {"ax": 1},
      "src/ints/xms.cpp: lines 339-347 (a handle-0 source is RealToPhysical)",
      setup=ALLOC1 + ({"ah": 0x0B, "ds": 0x50, "esi": 0x10},),
      memory=((MOVE_AT + 0x10, move(4, 0, SEG_0600, 0, HMA_PTR)), (DATA_AT, b"HIGH"),
              (MOVE_AT, move(4, 0, HMA_PTR, 1, 0))),
      state=(("xms_bytes", (1, 0, 4), b"HIGH"),)),
    x("0Bh ending at 10FFF0h exactly", {"ah": 0x0B, "ds": 0x50, "esi": 0}, {"ax": 1},
      "src/ints/xms.cpp: line 368 ((destpt + length) > 0x10FFF0u: equal is allowed)",
      memory=((MOVE_AT, move(16, 0, SEG_0600, 0, 0xFFFF_FFF0)), (DATA_AT, b"0123456789abcdef")),
      state=(("hma_bytes", (0x10FFE0, 16), b"0123456789abcdef"),)),
    x("0Bh destination 2 bytes past 10FFF0h", {"ah": 0x0B, "ds": 0x50, "esi": 0},
      {"ax": 0, "bl": 0xA7}, "src/ints/xms.cpp: lines 368-370 (XmsInvalidLength)",
      memory=((MOVE_AT, move(18, 0, SEG_0600, 0, 0xFFFF_FFF0)),), unchanged=True),
    x("0Bh source FFFF:FFFF plus 2", {"ah": 0x0B, "ds": 0x50, "esi": 0},
      {"ax": 0, "bl": 0xA7}, "src/ints/xms.cpp: lines 345-347 (srcpt + length > 0x10FFF0u)",
      memory=((MOVE_AT, move(2, 0, 0xFFFF_FFFF, 0, SEG_0600)),), unchanged=True),
    x("0Bh destination past 10FFF0h", {"ah": 0x0B, "ds": 0x50, "esi": 0},
      {"ax": 0, "bl": 0xA7}, "HimemX.asm: lines 1179-1180 (cmp edx,10fff0h; ja @@wrong_size)",
      memory=((MOVE_AT, move(0x10002, 0, SEG_0600, 0, 0xFFFF_0000)),), unchanged=True),
    x("0Bh length carrying past 4 GB", {"ah": 0x0B, "ds": 0x50, "esi": 0},
      {"ax": 0, "bl": 0xA7}, "HimemX.asm: lines 1177-1178 (add edx,ecx; jc @@wrong_size)",
      memory=((MOVE_AT, move(0xFFFF_FFFE, 0, SEG_0600, 0, HMA_PTR)),), unchanged=True),
    x("0Bh odd length into the HMA", {"ah": 0x0B, "ds": 0x50, "esi": 0},
      {"ax": 0, "bl": 0xA7}, "HimemX.asm: lines 1243-1245 (test cl,1 before either address)",
      memory=((MOVE_AT, move(5, 0, SEG_0600, 0, HMA_PTR)),), unchanged=True),
    x("0Bh straddling 1 MB", {"ah": 0x0B, "ds": 0x50, "esi": 0}, {"ax": 1},
      "src/ints/xms.cpp: lines 362-363 (one linear range, copied across 100000h)",
      memory=((MOVE_AT, move(16, 0, SEG_0600, 0, 0xF000_FFF8)),
              (DATA_AT, b"lowlowlohighhigh")),
      read=((0xFFFF8, b"lowlowlo"),), state=(("hma_bytes", (0x100000, 8), b"highhigh"),)),
    x("0Bh length 0 at FFFF:FFFF", {"ah": 0x0B, "ds": 0x50, "esi": 0}, {"ax": 1},
      "src/ints/xms.cpp: line 378 (if (length != 0): nothing copied)",
      memory=((MOVE_AT, move(0, 0, 0xFFFF_FFFF, 0, 0xFFFF_FFFF)),), unchanged=True),
    x("0Bh with A20 off and the HMA not requested", {"ah": 0x0B, "ds": 0x50, "esi": 0},
      {"ax": 1}, "src/ints/xms.cpp: lines 379-390 (A20 enabled for the copy, then "
      "disabled again when it was off)",
      memory=((MOVE_AT, move(2, 0, SEG_0600, 0, HMA_PTR)),),
      state=(("a20_local", None, 0), ("a20", None, False), ("hma_owned", None, False))),
    x("0Bh with A20 on leaves it on", {"ah": 0x0B, "ds": 0x50, "esi": 0}, {"ax": 1},
      "HimemX.asm: lines 1230-1236 (A20 enabled only if it was off, disabled on exit)",
      world=(("a20_local", 1),), memory=((MOVE_AT, move(2, 0, HMA_PTR, 0, SEG_0600)),),
      state=(("a20_local", None, 1), ("a20", None, True))),
    x("0Ch lock", {"ah": 0x0C, "edx": 1}, {"ax": 1, "dx": 0x0011, "bx": 0x0000},
      "src/ints/xms.cpp: lines 599-609 (DX:BX the address)", setup=ALLOC1,
      state=(("xms_locks", 1, 1),)),
    x("0Ch unknown handle", {"ah": 0x0C, "edx": 2}, {"ax": 0, "bl": 0xA2},
      "src/ints/xms.cpp: lines 397-399", setup=ALLOC1, unchanged=True),
    x("0Ch lock count overflow", {"ah": 0x0C, "edx": 1}, {"ax": 0, "bl": 0xAC},
      "src/ints/xms.cpp: lines 401-403", setup=ALLOC1 + ({"ah": 0x0C, "edx": 1},) * 255,
      unchanged=True),
    x("0Dh unlock", {"ah": 0x0D, "edx": 1}, {"ax": 1, "bl": 0},
      "src/ints/xms.cpp: lines 416-419", setup=ALLOC4_LOCKED, state=(("xms_locks", 1, 0),)),
    x("0Dh not locked", {"ah": 0x0D, "edx": 1}, {"ax": 0, "bl": 0xAA},
      "src/ints/xms.cpp: line 421", setup=ALLOC1, unchanged=True),
    x("0Dh unknown handle", {"ah": 0x0D, "edx": 3}, {"ax": 0, "bl": 0xA2},
      "src/ints/xms.cpp: lines 412-414", unchanged=True),
    x("0Eh handle info", {"ah": 0x0E, "edx": 1}, {"ax": 1, "bx": 0x011F, "dx": 4},
      "src/ints/xms.cpp: lines 424-445, 613-617 (BH locks, BL free handles, DX KB)",
      setup=ALLOC4_LOCKED, unchanged=True),
    x("0Eh unknown handle", {"ah": 0x0E, "edx": 2}, {"ax": 0, "bl": 0xA2},
      "src/ints/xms.cpp: lines 427-429", unchanged=True),
    x("0Eh block over 64 MB", {"ah": 0x0E, "edx": 1}, {"ax": 0, "bl": 0xA2},
      "HimemX.asm: lines 1693-1703 (?HINF_MSCOMP: as MS HIMEM)", world=BIG,
      setup=BIG_BLOCK, unchanged=True),
    x("0Fh grow", {"ah": 0x0F, "ebx": 0x0001_0008, "edx": 1}, {"ax": 1, "bl": 0},
      "src/ints/xms.cpp: lines 447-468; HimemX.asm: lines 1892-1903 (BX zero-extended)",
      setup=ALLOC1, state=(("xms_size", 1, 8),)),
    x("0Fh locked", {"ah": 0x0F, "ebx": 8, "edx": 1}, {"ax": 0, "bl": 0xAB},
      "src/ints/xms.cpp: lines 455-457", setup=ALLOC4_LOCKED, unchanged=True),
    x("0Fh too big", {"ah": 0x0F, "ebx": POOL_KB + 1, "edx": 1}, {"ax": 0, "bl": 0xA0},
      "src/ints/xms.cpp: line 467", setup=ALLOC1, unchanged=True),
    x("0Fh unknown handle", {"ah": 0x0F, "ebx": 8, "edx": 4}, {"ax": 0, "bl": 0xA2},
      "src/ints/xms.cpp: lines 449-451", unchanged=True),
    # -- 10h-12h: UMBs -----------------------------------------------------
    x("10h without a UMB provider", {"ah": 0x10, "edx": 0x100}, {"ax": 0, "bl": 0x80},
      "src/ints/xms.cpp: lines 622-624; HimemX.asm: lines 1992-1999", world=NO_UMBS,
      unchanged=True),
    x("10h UMBs all DOS's", {"ah": 0x10, "edx": 0x100}, {"ax": 0, "bl": 0xB1, "dx": 0},
      "XMS 3.0 function 10h (B1h no UMBs available, DX largest)", unchanged=True),
    x("11h without a UMB provider", {"ah": 0x11, "edx": 0xC800}, {"ax": 0, "bl": 0x80},
      "src/ints/xms.cpp: lines 663-666", world=NO_UMBS, unchanged=True),
    x("11h a segment XMS never gave", {"ah": 0x11, "edx": 0xC800}, {"ax": 0, "bl": 0xB2},
      "XMS 3.0 function 11h (B2h UMB segment number is invalid)", unchanged=True),
    x("12h without a UMB provider", {"ah": 0x12, "edx": 0xC800}, {"ax": 0, "bl": 0x80},
      "src/ints/xms.cpp: lines 675-679", world=NO_UMBS, unchanged=True),
    x("12h a segment XMS never gave", {"ah": 0x12, "ebx": 1, "edx": 0xC800},
      {"ax": 0, "bl": 0xB2}, "XMS 3.0 function 12h (B2h)", unchanged=True),
    # -- 88h-8Fh -------------------------------------------------------------
    x("88h query any free", {"ah": 0x88},
      {"eax": POOL_KB, "edx": POOL_KB, "ecx": 0x1FFFFF, "bl": 0},
      "src/ints/xms.cpp: lines 680-685; HimemX.asm: lines 881-912, 909 and 3305-3310 "
      "(ECX the end of the highest XMS memory - 1)",
      unchanged=True),
    x("88h over 64 MB", {"ah": 0x88}, {"eax": BIG_KB, "edx": BIG_KB, "ecx": 0x43FFFFF},
      "HimemX.asm: lines 881-912 (32-bit EAX/EDX)", world=BIG, unchanged=True),
    x("88h nothing free", {"ah": 0x88}, {"eax": 0, "edx": 0, "bl": 0xA0},
      "HimemX.asm: lines 903-907", setup=FULL, unchanged=True),
    x("89h allocate EDX KB", {"ah": 0x89, "edx": BIG_KB}, {"ax": 1, "dx": 1},
      "src/ints/xms.cpp: lines 686-691", world=BIG, state=(("xms_size", 1, BIG_KB),)),
    x("89h too big", {"ah": 0x89, "edx": 0x10000}, {"ax": 0, "dx": 0, "bl": 0xA0},
      "HimemX.asm: xms_ext_alloc_emb, lines 981-1016", unchanged=True),
    x("8Eh handle info", {"ah": 0x8E, "edx": 1, "ebx": 0x55},
      {"ax": 1, "bx": 0x0155, "cx": 31, "edx": 4},
      "src/ints/xms.cpp: lines 692-700 (BL unchanged); HimemX.asm: lines 1637-1656",
      setup=ALLOC4_LOCKED, unchanged=True),
    x("8Eh block over 64 MB", {"ah": 0x8E, "edx": 1}, {"ax": 1, "edx": BIG_KB},
      "HimemX.asm: line 1653 (EDX the 32-bit size)", world=BIG, setup=BIG_BLOCK,
      unchanged=True),
    x("8Eh unknown handle", {"ah": 0x8E, "edx": 1}, {"ax": 0, "bl": 0xA2},
      "HimemX.asm: lines 833-868", unchanged=True),
    x("8Fh EBX KB", {"ah": 0x8F, "ebx": 0x0000_0010, "edx": 1}, {"ax": 1, "bl": 0},
      "src/ints/xms.cpp: lines 701-703", setup=ALLOC1, state=(("xms_size", 1, 16),)),
    x("8Fh 64 MB", {"ah": 0x8F, "ebx": 0x0001_0000, "edx": 1}, {"ax": 0, "bl": 0xA0},
      "HimemX.asm: lines 1734-1883 (EBX whole)", setup=ALLOC1, unchanged=True),
    # -- undefined ---------------------------------------------------------------
    *[x(f"{ah:02X}h undefined", {"ah": ah, "edx": 1}, {"ax": 0, "bl": 0x80},
        "src/ints/xms.cpp: lines 704-706; HimemX.asm: lines 1992-1999", setup=ALLOC1,
        unchanged=True) for ah in (0x13, 0x80, 0x87, 0x8A, 0x8D, 0x90, 0xFF)],
]

EMS_CASES = [
    e("40h status", {"ah": 0x40}, {"ah": 0}, "src/ints/ems.cpp: lines 782-784",
      unchanged=True),
    e("41h page frame", {"ah": 0x41}, {"ah": 0, "bx": 0xE000},
      "src/ints/ems.cpp: lines 785-788", unchanged=True),
    e("42h page counts", {"ah": 0x42}, {"ah": 0, "bx": 29, "dx": 32},
      "src/ints/ems.cpp: lines 789-793 (BX free, DX total)", setup=EMS3, unchanged=True),
    e("43h allocate", {"ah": 0x43, "ebx": 3}, {"ah": 0, "dx": 1},
      "src/ints/ems.cpp: lines 794-796, 264-288", state=(("ems_pages", 1, 3),)),
    e("43h zero pages", {"ah": 0x43, "ebx": 0, "edx": 0x77}, {"ah": 0x89, "dx": 0x77},
      "src/ints/ems.cpp: lines 266-268", unchanged=True),
    e("43h more than free", {"ah": 0x43, "ebx": 30}, {"ah": 0x88},
      "src/ints/ems.cpp: lines 270-272", setup=EMS3, unchanged=True),
    e("43h more than exist", {"ah": 0x43, "ebx": 33}, {"ah": 0x87},
      "LIM 4.0 function 4 (87h: more pages than the system has)", unchanged=True),
    e("43h out of handles", {"ah": 0x43, "ebx": 1}, {"ah": 0x85},
      "src/ints/ems.cpp: lines 274-277 (64-handle table here)",
      setup=({"ah": 0x5A, "ebx": 0},) * 63, unchanged=True),
    e("44h map", {"ah": 0x44, "al": 2, "ebx": 1, "edx": 1}, {"ah": 0},
      "src/ints/ems.cpp: lines 797-799, 342-352", setup=EMS3,
      state=(("ems_slot", 2, (1, 1)),)),
    e("44h physical page 4", {"ah": 0x44, "al": 4, "ebx": 0, "edx": 1}, {"ah": 0x8B},
      "src/ints/ems.cpp: line 326", setup=EMS3, unchanged=True),
    e("44h logical page past the handle", {"ah": 0x44, "al": 0, "ebx": 3, "edx": 1},
      {"ah": 0x8A}, "src/ints/ems.cpp: lines 353-356", setup=EMS3, unchanged=True),
    e("44h unknown handle", {"ah": 0x44, "al": 0, "ebx": 0, "edx": 5}, {"ah": 0x83},
      "src/ints/ems.cpp: line 339", unchanged=True),
    e("44h unmap", {"ah": 0x44, "al": 0, "ebx": 0xFFFF, "edx": 1}, {"ah": 0},
      "src/ints/ems.cpp: lines 328-336", setup=MAPPED, state=(("ems_slot", 0, None),)),
    e("45h deallocate", {"ah": 0x45, "edx": 1}, {"ah": 0, "dx": 1},
      "src/ints/ems.cpp: lines 425-446", setup=NAMED, state=(("ems_open", 1, False),)),
    e("45h unknown handle", {"ah": 0x45, "edx": 1}, {"ah": 0x83},
      "src/ints/ems.cpp: line 427", unchanged=True),
    e("45h with a saved mapping", {"ah": 0x45, "edx": 1}, {"ah": 0x86},
      "LIM 4.0 function 6 (86h: a mapping context is saved; ems.cpp line 431 leaves "
      "the check out)", setup=EMS3 + ({"ah": 0x47, "edx": 1},), unchanged=True),
    e("46h version", {"ah": 0x46}, {"ah": 0, "al": 0x40}, "src/ints/ems.cpp: lines 803-806",
      unchanged=True),
    e("47h save", {"ah": 0x47, "edx": 1}, {"ah": 0}, "src/ints/ems.cpp: lines 448-462",
      setup=MAPPED, state=(("ems_saved", 1, True),)),
    e("47h saved twice", {"ah": 0x47, "edx": 1}, {"ah": 0x8D},
      "src/ints/ems.cpp: line 454", setup=MAPPED + ({"ah": 0x47, "edx": 1},), unchanged=True),
    e("47h unknown handle", {"ah": 0x47, "edx": 9}, {"ah": 0x83},
      "src/ints/ems.cpp: lines 450-452", unchanged=True),
    e("48h restore", {"ah": 0x48, "edx": 1}, {"ah": 0}, "src/ints/ems.cpp: lines 477-491",
      setup=MAPPED + ({"ah": 0x47, "edx": 1}, {"ah": 0x44, "eax": 0x4400, "ebx": 2,
                                                "edx": 1}),
      state=(("ems_slot", 0, (1, 0)), ("ems_saved", 1, False))),
    e("48h nothing saved", {"ah": 0x48, "edx": 1}, {"ah": 0x8E},
      "src/ints/ems.cpp: line 483", setup=MAPPED, unchanged=True),
    e("4Bh handle count", {"ah": 0x4B}, {"ah": 0, "bx": 2}, "src/ints/ems.cpp: lines 813-817",
      setup=EMS3, unchanged=True),
    e("4Ch handle pages", {"ah": 0x4C, "edx": 1}, {"ah": 0, "bx": 3},
      "src/ints/ems.cpp: lines 818-822", setup=EMS3, unchanged=True),
    e("4Ch unknown handle", {"ah": 0x4C, "edx": 2, "ebx": 7}, {"ah": 0x83, "bx": 7},
      "src/ints/ems.cpp: line 819", unchanged=True),
    e("4Dh all handle pages", {"ah": 0x4D, "es": 0x50, "edi": 0}, {"ah": 0, "bx": 2},
      "src/ints/ems.cpp: lines 493-504, 823-825", setup=EMS3,
      read=((MOVE_AT, bytes([0, 0, 0, 0, 1, 0, 3, 0])),)),
    e("4Eh/00h get page map", {"ah": 0x4E, "al": 0, "es": 0x60, "edi": 0}, {"ah": 0},
      "src/ints/ems.cpp: lines 828-831 (the emm_mappings array)", setup=MAPPED,
      read=((0x600, bytes([1, 0, 0, 0]) + b"\xff" * 12),)),
    e("4Eh/01h set page map", {"ah": 0x4E, "al": 1, "ds": 0x50, "esi": 0}, {"ah": 0},
      "src/ints/ems.cpp: lines 832-835", setup=MAPPED,
      memory=((MOVE_AT, b"\xff" * 12 + bytes([1, 0, 2, 0])),),
      state=(("ems_slot", 0, None), ("ems_slot", 3, (1, 2)))),
    e("4Eh/01h a handle that does not exist", {"ah": 0x4E, "al": 1, "ds": 0x50, "esi": 0},
      {"ah": 0xA3}, "LIM 4.0 function 15 (A3h: the source array is corrupted)",
      setup=MAPPED, memory=((MOVE_AT, bytes([5, 0, 0, 0]) + b"\xff" * 12),), unchanged=True),
    e("4Eh/01h one page twice", {"ah": 0x4E, "al": 1, "ds": 0x50, "esi": 0}, {"ah": 0xA3},
      "LIM 4.0 function 15 (A3h); DOS-5 (a page in one slot)", setup=MAPPED,
      memory=((MOVE_AT, bytes([1, 0, 1, 0, 1, 0, 1, 0]) + b"\xff" * 8),), unchanged=True),
    e("4Eh/02h get and set", {"ah": 0x4E, "al": 2, "ds": 0x50, "esi": 0, "es": 0x60,
                              "edi": 0}, {"ah": 0}, "src/ints/ems.cpp: lines 836-840",
      setup=MAPPED, memory=((MOVE_AT, b"\xff" * 4 + bytes([1, 0, 1, 0]) + b"\xff" * 8),),
      read=((0x600, bytes([1, 0, 0, 0]) + b"\xff" * 12),),
      state=(("ems_slot", 0, None), ("ems_slot", 1, (1, 1)))),
    e("4Eh/03h size", {"ah": 0x4E, "al": 3}, {"ah": 0, "al": 16},
      "src/ints/ems.cpp: lines 841-844", unchanged=True),
    e("4Eh/04h", {"ah": 0x4E, "al": 4}, {"ah": 0x8F}, "src/ints/ems.cpp: lines 845-849",
      unchanged=True),
    e("4Fh/00h get partial page map", {"ah": 0x4F, "al": 0, "ds": 0x50, "esi": 0,
                                        "es": 0x60, "edi": 0}, {"ah": 0},
      "src/ints/ems.cpp: lines 512-527 (count word, then page, handle, logical page)",
      setup=MAPPED, memory=((MOVE_AT, bytes([2, 0, 0x00, 0xE0, 0x00, 0xE4])),),
      read=((0x600, bytes([2, 0, 0, 1, 0, 0, 1, 0xFF, 0xFF, 0xFF])),)),
    e("4Fh/00h a segment that is no frame page", {"ah": 0x4F, "al": 0, "ds": 0x50,
                                                 "esi": 0, "es": 0x60, "edi": 0},
      {"ah": 0x8B}, "src/ints/ems.cpp: lines 539-541 (EMM_ILL_PHYS)", setup=MAPPED,
      memory=((MOVE_AT, bytes([2, 0, 0x00, 0xE0, 0x00, 0xD0])),), unchanged=True),
    e("4Fh/00h more segments than mappable pages", {"ah": 0x4F, "al": 0, "ds": 0x50,
                                                   "esi": 0, "es": 0x60, "edi": 0},
      {"ah": 0xA3}, "LIM 4.0 function 16 (A3h: the count exceeds the mappable pages; "
      "RBIL INT 67h AH=4Fh)", setup=MAPPED, memory=((MOVE_AT, bytes([5, 0])),),
      unchanged=True),
    e("4Fh/01h set partial page map", {"ah": 0x4F, "al": 1, "ds": 0x50, "esi": 0},
      {"ah": 0}, "src/ints/ems.cpp: lines 546-567", setup=MAPPED,
      memory=((MOVE_AT, bytes([2, 0, 0, 0xFF, 0xFF, 0xFF, 3, 1, 2, 0])),),
      state=(("ems_slot", 0, None), ("ems_slot", 3, (1, 2)))),
    e("4Fh/01h a page past the frame", {"ah": 0x4F, "al": 1, "ds": 0x50, "esi": 0},
      {"ah": 0x8B}, "src/ints/ems.cpp: lines 560-562 (EMM_ILL_PHYS)", setup=MAPPED,
      memory=((MOVE_AT, bytes([1, 0, 0x40, 1, 0, 0])),), unchanged=True),
    e("4Fh/01h a handle that does not exist", {"ah": 0x4F, "al": 1, "ds": 0x50, "esi": 0},
      {"ah": 0xA3}, "LIM 4.0 function 16 (A3h: the partial page map is corrupted)",
      setup=MAPPED, memory=((MOVE_AT, bytes([1, 0, 1, 7, 0, 0])),), unchanged=True),
    e("4Fh/02h size", {"ah": 0x4F, "al": 2, "ebx": 3}, {"ah": 0, "al": 14},
      "src/ints/ems.cpp: lines 569-571", unchanged=True),
    e("4Fh/02h more pages than physical", {"ah": 0x4F, "al": 2, "ebx": 5}, {"ah": 0x8B},
      "LIM 4.0 function 16 subfunction 2 (8Bh; ems.cpp does not check)", unchanged=True),
    e("4Fh/03h", {"ah": 0x4F, "al": 3}, {"ah": 0x8F}, "src/ints/ems.cpp: lines 572-575",
      unchanged=True),
    e("5Bh/00h no save area set", {"ah": 0x5B, "al": 0, "ebx": 7, "es": 0x60, "edi": 4},
      {"ah": 0, "bl": 0, "es": 0, "di": 0},
      "LIM 4.0 function 28 subfunction 0 (no earlier 01h: the address is zero)",
      setup=MAPPED),
    e("5Bh/01h set the save area", {"ah": 0x5B, "al": 1, "ebx": 0, "es": 0x50, "edi": 0},
      {"ah": 0}, "LIM 4.0 function 28 subfunction 1 (BL = 0: the context at ES:DI)",
      setup=MAPPED, memory=((MOVE_AT, b"\xff" * 12 + bytes([1, 0, 2, 0])),),
      state=(("ems_slot", 0, None), ("ems_slot", 3, (1, 2)),
             ("ems_alternate", None, (0x50, 0)))),
    e("5Bh/00h saves into the area 01h set", {"ah": 0x5B, "al": 0}, {"ah": 0, "bl": 0,
                                                                     "es": 0x50, "di": 0},
      "LIM 4.0 function 28 subfunction 0 (the current map saved at the area)",
      setup=MAPPED + ({"ah": 0x5B, "al": 1, "ebx": 0, "es": 0x50, "edi": 0},
                      {"ah": 0x44, "eax": 0x4401, "ebx": 1, "edx": 1}),
      memory=((MOVE_AT, bytes([1, 0, 0, 0]) + b"\xff" * 12),),
      read=((MOVE_AT, bytes([1, 0, 0, 0, 1, 0, 1, 0]) + b"\xff" * 8),)),
    e("5Bh/01h a corrupt context", {"ah": 0x5B, "al": 1, "ebx": 0, "es": 0x50, "edi": 0},
      {"ah": 0xA3}, "LIM 4.0 function 28 (A3h: source array corrupted)", setup=MAPPED,
      memory=((MOVE_AT, bytes([9, 0, 0, 0]) + b"\xff" * 12),), unchanged=True),
    e("5Bh/01h a register set", {"ah": 0x5B, "al": 1, "ebx": 1}, {"ah": 0x9C},
      "LIM 4.0 function 28 (9Ch: no alternate map register sets, BL != 0)",
      unchanged=True),
    e("5Bh/02h save area size", {"ah": 0x5B, "al": 2}, {"ah": 0, "dx": 16},
      "LIM 4.0 function 28 subfunction 2 (the 4Eh context's size)", unchanged=True),
    e("5Bh/03h allocate a register set", {"ah": 0x5B, "al": 3, "ebx": 5},
      {"ah": 0, "bl": 0}, "LIM 4.0 function 28 subfunction 3 (BL = 0: none available)",
      unchanged=True),
    e("5Bh/04h deallocate set 0", {"ah": 0x5B, "al": 4, "ebx": 0}, {"ah": 0},
      "LIM 4.0 function 28 subfunction 4", unchanged=True),
    e("5Bh/04h deallocate set 1", {"ah": 0x5B, "al": 4, "ebx": 1}, {"ah": 0x9C},
      "LIM 4.0 function 28 subfunction 4 (9Ch)", unchanged=True),
    e("5Bh/05h allocate a DMA register set", {"ah": 0x5B, "al": 5, "ebx": 5},
      {"ah": 0, "bl": 0}, "LIM 4.0 function 28 subfunction 5 (BL = 0: none)",
      unchanged=True),
    e("5Bh/06h enable DMA on set 1", {"ah": 0x5B, "al": 6, "ebx": 1, "edx": 1},
      {"ah": 0x9C}, "LIM 4.0 function 28 subfunction 6 (9Ch)", unchanged=True),
    e("5Bh/09h", {"ah": 0x5B, "al": 9}, {"ah": 0x8F}, "LIM 4.0 function 28 (8Fh)",
      unchanged=True),
    e("5Dh/01h first call returns the key", {"ah": 0x5D, "al": 1}, {"ah": 0, "bx": 0x4F53,
                                                                    "cx": 1},
      "LIM 4.0 function 30 (the first call returns the access key in BX:CX)",
      state=(("ems_os_enabled", None, False),)),
    e("5Dh/00h a wrong key", {"ah": 0x5D, "al": 0, "ebx": 0, "ecx": 0}, {"ah": 0xA4},
      "LIM 4.0 function 30 (A4h: access denied)", setup=({"ah": 0x5D, "al": 1},),
      unchanged=True),
    e("5Dh/00h the key enables", {"ah": 0x5D, "al": 0, "ebx": 0x4F53, "ecx": 1},
      {"ah": 0}, "LIM 4.0 function 30", setup=({"ah": 0x5D, "al": 1},),
      state=(("ems_os_enabled", None, True),)),
    e("59h while disabled", {"ah": 0x59, "al": 1}, {"ah": 0xA4},
      "LIM 4.0 function 30 (59h is an OS/E function)", setup=({"ah": 0x5D, "al": 1},),
      unchanged=True),
    e("5Bh while disabled", {"ah": 0x5B, "al": 2}, {"ah": 0xA4},
      "LIM 4.0 function 30 (5Bh is an OS/E function)", setup=({"ah": 0x5D, "al": 1},),
      unchanged=True),
    e("5Dh/02h returns the key", {"ah": 0x5D, "al": 2, "ebx": 0x4F53, "ecx": 1},
      {"ah": 0}, "LIM 4.0 function 30 subfunction 2 (enabled, the key forgotten)",
      setup=({"ah": 0x5D, "al": 1},),
      state=(("ems_os_enabled", None, True), ("ems_key", None, None))),
    e("5Dh/03h", {"ah": 0x5D, "al": 3}, {"ah": 0x8F}, "LIM 4.0 function 30 (8Fh)",
      unchanged=True),
    e("5Ch prepare for warm boot", {"ah": 0x5C}, {"ah": 0},
      "LIM 4.0 function 29 (ems.cpp has no 5Ch)", setup=MAPPED, unchanged=True),
    e("50h/00h map multiple", {"ah": 0x50, "al": 0, "edx": 1, "ecx": 2, "ds": 0x50,
                               "esi": 0}, {"ah": 0}, "src/ints/ems.cpp: lines 857-865",
      setup=EMS3, memory=((MOVE_AT, bytes([2, 0, 0, 0, 1, 0, 3, 0])),),
      state=(("ems_slot", 0, (1, 2)), ("ems_slot", 3, (1, 1)))),
    e("50h/01h map by segment", {"ah": 0x50, "al": 1, "edx": 1, "ecx": 1, "ds": 0x50,
                                 "esi": 0}, {"ah": 0}, "src/ints/ems.cpp: lines 866-873",
      setup=EMS3, memory=((MOVE_AT, bytes([2, 0, 0x00, 0xE8])),),
      state=(("ems_slot", 2, (1, 2)),)),
    e("50h bad physical page maps nothing", {"ah": 0x50, "al": 0, "edx": 1, "ecx": 2,
                                             "ds": 0x50, "esi": 0}, {"ah": 0x8B},
      "src/ints/ems.cpp: line 326 (per entry); LIM 4.0 function 17", setup=EMS3,
      memory=((MOVE_AT, bytes([0, 0, 0, 0, 1, 0, 4, 0])),), unchanged=True),
    e("50h bad logical page maps nothing", {"ah": 0x50, "al": 1, "edx": 1, "ecx": 2,
                                            "ds": 0x50, "esi": 0}, {"ah": 0x8A},
      "src/ints/ems.cpp: lines 353-356 (per entry)", setup=EMS3,
      memory=((MOVE_AT, bytes([0, 0, 0, 0xE0, 3, 0, 0, 0xE4])),), unchanged=True),
    e("50h unknown handle", {"ah": 0x50, "al": 0, "edx": 4, "ecx": 1, "ds": 0x50},
      {"ah": 0x83}, "src/ints/ems.cpp: line 339", memory=((MOVE_AT, bytes(4)),),
      unchanged=True),
    e("50h/02h", {"ah": 0x50, "al": 2, "edx": 1}, {"ah": 0x8F},
      "src/ints/ems.cpp: lines 875-879", setup=EMS3, unchanged=True),
    e("51h grow", {"ah": 0x51, "edx": 1, "ebx": 5}, {"ah": 0, "bx": 5},
      "src/ints/ems.cpp: lines 307-321, 881-883", setup=EMS3,
      state=(("ems_pages", 1, 5), ("ems_free", None, 27))),
    e("51h to zero", {"ah": 0x51, "edx": 1, "ebx": 0}, {"ah": 0},
      "src/ints/ems.cpp: lines 307-321", setup=MAPPED,
      state=(("ems_pages", 1, 0), ("ems_open", 1, True), ("ems_slot", 0, None))),
    e("51h more than free", {"ah": 0x51, "edx": 1, "ebx": 31}, {"ah": 0x88},
      "src/ints/ems.cpp: line 312", setup=EMS3 + ({"ah": 0x43, "ebx": 3},), unchanged=True),
    e("51h unknown handle", {"ah": 0x51, "edx": 3, "ebx": 1}, {"ah": 0x83},
      "src/ints/ems.cpp: line 309", unchanged=True),
    e("52h/00h volatile", {"ah": 0x52, "al": 0, "edx": 1}, {"ah": 0, "al": 0},
      "src/ints/ems.cpp: lines 637-640", setup=EMS3, unchanged=True),
    e("52h/00h unknown handle", {"ah": 0x52, "al": 0, "edx": 2}, {"ah": 0x83},
      "src/ints/ems.cpp: line 638", setup=EMS3, unchanged=True),
    e("52h/01h volatile", {"ah": 0x52, "al": 1, "edx": 1, "ebx": 0}, {"ah": 0},
      "src/ints/ems.cpp: lines 641-645", setup=EMS3, unchanged=True),
    e("52h/01h non-volatile", {"ah": 0x52, "al": 1, "edx": 1, "ebx": 1}, {"ah": 0x91},
      "src/ints/ems.cpp: lines 646-647", setup=EMS3, unchanged=True),
    e("52h/01h undefined attribute", {"ah": 0x52, "al": 1, "edx": 1, "ebx": 2}, {"ah": 0x90},
      "src/ints/ems.cpp: lines 648-649", setup=EMS3, unchanged=True),
    e("52h/02h capability", {"ah": 0x52, "al": 2}, {"ah": 0, "al": 0},
      "src/ints/ems.cpp: lines 652-654", unchanged=True),
    e("52h/03h", {"ah": 0x52, "al": 3}, {"ah": 0x8F}, "src/ints/ems.cpp: lines 655-657",
      unchanged=True),
    e("53h/01h set name", {"ah": 0x53, "al": 1, "edx": 1, "ds": 0x50, "esi": 0}, {"ah": 0},
      "src/ints/ems.cpp: lines 623-626", setup=EMS3, memory=NAME,
      state=(("ems_name", 1, b"TESTNAME"),)),
    e("53h/00h get name", {"ah": 0x53, "al": 0, "edx": 1, "es": 0x60, "edi": 0}, {"ah": 0},
      "src/ints/ems.cpp: lines 619-622", setup=NAMED, memory=NAME,
      read=((0x600, b"TESTNAME"),)),
    e("53h/01h a name another handle has", {"ah": 0x53, "al": 1, "edx": 2, "ds": 0x50,
                                            "esi": 0}, {"ah": 0xA1},
      "LIM 4.0 function 20 (A1h: a handle with this name exists)",
      setup=NAMED + ({"ah": 0x43, "ebx": 1},), memory=NAME, unchanged=True),
    e("53h unknown handle", {"ah": 0x53, "al": 0, "edx": 7}, {"ah": 0x83},
      "src/ints/ems.cpp: line 620", unchanged=True),
    e("53h/02h", {"ah": 0x53, "al": 2, "edx": 0}, {"ah": 0x8F},
      "src/ints/ems.cpp: lines 627-630", unchanged=True),
    e("54h/00h directory", {"ah": 0x54, "al": 0, "es": 0x60, "edi": 0}, {"ah": 0, "al": 2},
      "src/ints/ems.cpp: lines 583-593", setup=NAMED, memory=NAME,
      read=((0x600, bytes(10) + b"\x01\x00TESTNAME"),)),
    e("54h/01h search", {"ah": 0x54, "al": 1, "ds": 0x50, "esi": 0}, {"ah": 0, "dx": 1},
      "src/ints/ems.cpp: lines 594-605", setup=NAMED, memory=NAME, unchanged=True),
    e("54h/01h not found", {"ah": 0x54, "al": 1, "ds": 0x50, "esi": 0}, {"ah": 0xA0},
      "src/ints/ems.cpp: line 604", setup=EMS3, memory=NAME, unchanged=True),
    e("54h/01h null name", {"ah": 0x54, "al": 1, "ds": 0x50, "esi": 0}, {"ah": 0xA1},
      "LIM 4.0 function 21 (A1h: the name is null)", setup=EMS3,
      memory=((MOVE_AT, bytes(8)),), unchanged=True),
    e("54h/02h total handles", {"ah": 0x54, "al": 2}, {"ah": 0, "bx": 64},
      "src/ints/ems.cpp: lines 606-608", unchanged=True),
    e("54h/03h", {"ah": 0x54, "al": 3}, {"ah": 0x8F}, "src/ints/ems.cpp: lines 609-611",
      unchanged=True),
    e("57h/00h conventional to expanded", {"ah": 0x57, "al": 0, "ds": 0x50, "esi": 0},
      {"ah": 0}, "src/ints/ems.cpp: lines 676-777 (the move)", setup=EMS3,
      memory=((MOVE_AT, region(6, (0, 0, 0, 0x600), (1, 1, 0x10, 1))), (DATA_AT, b"HELLO!")),
      state=(("ems_bytes", (1, 1, 0x10, 6), b"HELLO!"),)),
    e("57h/00h across a logical page", {"ah": 0x57, "al": 0, "ds": 0x50, "esi": 0},
      {"ah": 0}, "src/ints/ems.cpp: lines 715-776 (the region runs on into the next page)",
      setup=EMS3,
      memory=((MOVE_AT, region(6, (0, 0, 0, 0x600), (1, 1, 0x3FFE, 0))), (DATA_AT, b"HELLO!")),
      state=(("ems_bytes", (1, 0, 0x3FFE, 2), b"HE"), ("ems_bytes", (1, 1, 0, 4), b"LLO!"))),
    e("57h/00h expanded to conventional while mapped", {"ah": 0x57, "al": 0, "ds": 0x50,
                                                         "esi": 0}, {"ah": 0},
      "src/ints/ems.cpp: lines 719-729 (the source read where the page lives)",
      setup=EMS3 + ({"ah": 0x57, "eax": 0x5700, "ds": 0x50, "esi": 0x20},
                    {"ah": 0x44, "eax": 0x4400, "ebx": 0, "edx": 1}),
      memory=((MOVE_AT, region(4, (1, 1, 0, 0), (0, 0, 0, 0x700))), (DATA_AT, b"WXYZ"),
              (MOVE_AT + 0x20, region(4, (0, 0, 0, 0x600), (1, 1, 0, 0)))),
      read=((0x7000, b"WXYZ"),)),
    e("57h/01h exchange", {"ah": 0x57, "al": 1, "ds": 0x50, "esi": 0}, {"ah": 0},
      "src/ints/ems.cpp: lines 731-756 (the exchange)",
      setup=EMS3 + ({"ah": 0x57, "eax": 0x5700, "ds": 0x50, "esi": 0x20},),
      memory=((MOVE_AT, region(4, (0, 0, 0, 0x600), (1, 1, 0, 2))), (DATA_AT, b"ABCD"),
              (DATA_AT + 0x100, b"WXYZ"),
              (MOVE_AT + 0x20, region(4, (0, 0, 0x100, 0x600), (1, 1, 0, 2)))),
      read=((DATA_AT, b"WXYZ"),), state=(("ems_bytes", (1, 2, 0, 4), b"ABCD"),)),
    e("57h/02h", {"ah": 0x57, "al": 2, "ds": 0x50, "esi": 0}, {"ah": 0x8F},
      "LIM 4.0 function 24 (8Fh; ems.cpp lines 680-683 answer 84h)", unchanged=True),
    e("57h unknown handle", {"ah": 0x57, "al": 0, "ds": 0x50, "esi": 0}, {"ah": 0x83},
      "src/ints/ems.cpp: line 703", setup=EMS3,
      memory=((MOVE_AT, region(4, (0, 0, 0, 0x600), (1, 9, 0, 0))),), unchanged=True),
    e("57h logical page past the handle", {"ah": 0x57, "al": 0, "ds": 0x50, "esi": 0},
      {"ah": 0x8A}, "src/ints/ems.cpp: line 704", setup=EMS3,
      memory=((MOVE_AT, region(1, (0, 0, 0, 0x600), (1, 1, 0, 3))),), unchanged=True),
    e("57h region past the handle's pages", {"ah": 0x57, "al": 0, "ds": 0x50, "esi": 0},
      {"ah": 0x93}, "LIM 4.0 function 24 (93h; ems.cpp line 704 answers 8Ah)", setup=EMS3,
      memory=((MOVE_AT, region(2, (1, 1, 0x3FFF, 2), (0, 0, 0, 0x600))),), unchanged=True),
    e("57h offset past a page", {"ah": 0x57, "al": 0, "ds": 0x50, "esi": 0}, {"ah": 0x95},
      "LIM 4.0 function 24 (95h)", setup=EMS3,
      memory=((MOVE_AT, region(1, (0, 0, 0, 0x600), (1, 1, 0x4000, 0))),), unchanged=True),
    e("57h longer than 1 MB", {"ah": 0x57, "al": 0, "ds": 0x50, "esi": 0}, {"ah": 0x96},
      "LIM 4.0 function 24 (96h)", setup=EMS3,
      memory=((MOVE_AT, region(0x100001, (0, 0, 0, 0), (1, 1, 0, 0))),), unchanged=True),
    e("57h memory type 2", {"ah": 0x57, "al": 0, "ds": 0x50, "esi": 0}, {"ah": 0x98},
      "LIM 4.0 function 24 (98h)", setup=EMS3,
      memory=((MOVE_AT, region(1, (2, 0, 0, 0x600), (1, 1, 0, 0))),), unchanged=True),
    e("57h conventional past 1 MB", {"ah": 0x57, "al": 0, "ds": 0x50, "esi": 0},
      {"ah": 0xA2}, "LIM 4.0 function 24 (A2h)", setup=EMS3,
      memory=((MOVE_AT, region(0x20, (0, 0, 0x10, 0xFFFF), (1, 1, 0, 0))),), unchanged=True),
    e("57h/00h overlapping move", {"ah": 0x57, "al": 0, "ds": 0x50, "esi": 0}, {"ah": 0x92},
      "LIM 4.0 function 24 (92h: done, the regions overlap)",
      setup=EMS3 + ({"ah": 0x57, "eax": 0x5700, "ds": 0x50, "esi": 0x20},),
      memory=((MOVE_AT, region(8, (1, 1, 0, 0), (1, 1, 4, 0))), (DATA_AT, b"ABCDEFGH"),
              (MOVE_AT + 0x20, region(8, (0, 0, 0, 0x600), (1, 1, 0, 0)))),
      state=(("ems_bytes", (1, 0, 0, 12), b"ABCDABCDEFGH"),)),
    e("57h/01h overlapping exchange", {"ah": 0x57, "al": 1, "ds": 0x50, "esi": 0},
      {"ah": 0x97}, "LIM 4.0 function 24 (97h)", setup=EMS3,
      memory=((MOVE_AT, region(8, (1, 1, 0, 0), (1, 1, 4, 0))),), unchanged=True),
    e("57h length 0", {"ah": 0x57, "al": 0, "ds": 0x50, "esi": 0}, {"ah": 0},
      "src/ints/ems.cpp: line 715 (no bytes, nothing done)", setup=EMS3,
      memory=((MOVE_AT, region(0, (0, 0, 0, 0x600), (1, 1, 0, 0))),), unchanged=True),
    e("58h/00h mappable array", {"ah": 0x58, "al": 0, "es": 0x60, "edi": 0},
      {"ah": 0, "cx": 4}, "src/ints/ems.cpp: lines 897-909",
      read=((0x600, bytes([0, 0xE0, 0, 0, 0, 0xE4, 1, 0, 0, 0xE8, 2, 0, 0, 0xEC, 3, 0])),)),
    e("58h/01h count", {"ah": 0x58, "al": 1}, {"ah": 0, "cx": 4},
      "src/ints/ems.cpp: lines 906-908", unchanged=True),
    e("58h/02h", {"ah": 0x58, "al": 2, "ecx": 9}, {"ah": 0x8F, "cx": 9},
      "LIM 4.0 function 25 (8Fh undefined subfunction; ems.cpp answers CX=4)",
      unchanged=True),
    e("59h/00h hardware info", {"ah": 0x59, "al": 0, "es": 0x60, "edi": 0}, {"ah": 0},
      "src/ints/ems.cpp: lines 913-922",
      read=((0x600, bytes([0, 4, 0, 0, 16, 0, 0, 0, 0, 0])),)),
    e("59h/01h raw pages", {"ah": 0x59, "al": 1}, {"ah": 0, "bx": 29, "dx": 32},
      "src/ints/ems.cpp: lines 923-926", setup=EMS3, unchanged=True),
    e("59h/02h", {"ah": 0x59, "al": 2}, {"ah": 0x8F}, "src/ints/ems.cpp: lines 927-930",
      unchanged=True),
    e("5Ah/00h zero pages", {"ah": 0x5A, "al": 0, "ebx": 0}, {"ah": 0, "dx": 1},
      "src/ints/ems.cpp: lines 933-936 (can allocate 0 pages)",
      state=(("ems_pages", 1, 0), ("ems_open", 1, True))),
    e("5Ah/01h raw pages", {"ah": 0x5A, "al": 1, "ebx": 2}, {"ah": 0, "dx": 1},
      "src/ints/ems.cpp: lines 933-936", state=(("ems_pages", 1, 2),)),
    e("5Ah/02h", {"ah": 0x5A, "al": 2, "ebx": 2}, {"ah": 0x8F},
      "src/ints/ems.cpp: lines 937-939", unchanged=True),
    *[e(f"{ah:02X}h undefined", {"ah": ah, "edx": 1}, {"ah": 0x84},
        "src/ints/ems.cpp: lines 1116-1119 (and 941-945, VCPI off)", setup=EMS3,
        unchanged=True) for ah in (0x3F, 0x55, 0x56, 0x5E, 0x60, 0xDE, 0xFF)],
]

CASES = XMS_CASES + EMS_CASES


def world(case: Case) -> DosMemoryManager:
    options = dict(case.world)
    pm = PageManager()
    assert pm.InitializePhysicalMemory(0x100000, options.get("memory_mb", 4) << 20)
    config: dict[str, int] = {"xms_end": options.get("xms_end", 0x200000)}
    if not options.get("umbs", True):
        config |= {"umb_start": 0, "umb_end": 0}
    dos = DosMemoryManager(pm, **config)
    assert dos.ready
    dos.xms.hma.hma_min = options.get("hmamin_kb", 0) * KB
    dos.xms.hma.a20_local = options.get("a20_local", 0)
    return dos


def call(dos: DosMemoryManager, regs: dict[str, int], ems: bool) -> Registers:
    registers = Registers().set(**{name: value for name, value in regs.items()
                                   if name not in ("ah", "al")})
    registers = registers.set(**{name: regs[name] for name in ("ah", "al") if name in regs})
    return dos.Int67h(registers) if ems else dos.XmsCall(registers)


READERS: dict[str, Callable[[DosMemoryManager, Any], Any]] = {
    "hma_owned": lambda dos, _: dos.xms.hma.hma_owned,
    "a20_global": lambda dos, _: dos.xms.hma.a20_global,
    "a20_local": lambda dos, _: dos.xms.hma.a20_local,
    "a20": lambda dos, _: dos.xms.hma.a20_enabled,
    "xms_handles": lambda dos, _: len(dos.xms.handles),
    "xms_size": lambda dos, h: dos.xms.handles[h].size_kb,
    "xms_address": lambda dos, h: dos.xms.handles[h].address,
    "xms_locks": lambda dos, h: dos.xms.handles[h].lock_count,
    "xms_bytes": lambda dos, a: read_physical(dos.pageman, dos.xms.handles[a[0]].address
                                              + a[1], a[2]),
    "hma_bytes": lambda dos, a: dos.xms.hma_memory.read(a[0], a[1]),
    "ems_pages": lambda dos, h: len(dos.ems.handles[h]),
    "ems_open": lambda dos, h: h in dos.ems.handles,
    "ems_free": lambda dos, _: dos.ems.EmsGetPageCounts()[0],
    "ems_slot": lambda dos, p: dos.ems.slots[p],
    "ems_saved": lambda dos, h: h in dos.ems.saved,
    "ems_name": lambda dos, h: dos.ems.names.get(h),
    "ems_alternate": lambda dos, _: dos.ems.alternate_area,
    "ems_os_enabled": lambda dos, _: dos.ems.os_enabled,
    "ems_key": lambda dos, _: dos.ems.access_key,
    "ems_bytes": lambda dos, a: dos.ems.read_logical(a[0], a[1])[a[2]:a[2] + a[3]],
}


@pytest.mark.parametrize("case", CASES, ids=[("ems " if c.ems else "xms ") + c.name
                                             for c in CASES])
def test_xms_ems(case: Case) -> None:
    dos = world(case)
    for address, data in case.memory:
        write_physical(dos.pageman, address, data)
    for regs in case.setup:
        call(dos, regs, case.ems)
    before = snapshot(dos)
    answer = call(dos, case.regs, case.ems)
    for name, value in case.out.items():
        assert getattr(answer, name) == value, (name, hex(getattr(answer, name)), case.source)
    for reader, argument, expected in case.state:
        assert READERS[reader](dos, argument) == expected, (reader, case.source)
    for address, data in case.read:
        assert read_physical(dos.pageman, address, len(data)) == data, case.source
    if case.unchanged:
        assert snapshot(dos) == before, case.source


@pytest.mark.parametrize("ems", [False, True])
def test_registers_no_register_holds_are_refused_unchanged(ems: bool) -> None:
    """A record with a value no register holds: 80h / 84h, nothing read or changed."""
    dos = world(CASES[0])
    call(dos, {"ah": 0x43 if ems else 0x09, "ebx": 3, "edx": 3}, ems)
    before = snapshot(dos)
    for bad in (Registers(eax=0x0900, edx=-1), Registers(eax=0x4300, ebx=1 << 32),
                Registers(eax=0x0900, ds=0x10000), Registers(eax=0x4300, carry=1)):  # type: ignore[arg-type]
        regs = dos.Int67h(bad) if ems else dos.XmsCall(bad)
        assert regs == (Registers(eax=0x8400) if ems else Registers(ebx=0x80))
        assert snapshot(dos) == before
