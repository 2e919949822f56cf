"""XMS 0Bh with handle 0 reaches the HMA (model/xms.py, model/hma_memory.py):
FFFF:0010-FFFF:FFFF are linear 100000h-10FFEFh; a handle-0 range must end at or
below 10FFF0h (A7h otherwise: DOSBox-staging src/ints/xms.cpp lines 340-347,
363-370; HimemX.asm lines 1164-1182), with neither A20 nor the HMA's owner
asked for; every failure leaves the whole state as it was."""

from __future__ import annotations

import pytest

from model.dos_memory import DosMemoryManager
from model.dos_physical import read_physical, write_physical
from model.hma_memory import HMA_FRAMES
from model.page_manager import PageManager
from spec.abi import (
    HMA_END,
    HMA_START,
    XMS_BASE,
    XMS_INVALID_LENGTH,
    XMS_INVALID_SOURCE_OFFSET,
    FrameOwner,
)
from tests.dos_world import make_dos, snapshot

CONV = 0x0600_0000  # 0600:0000, linear 6000h
HMA = 0xFFFF_0010  # FFFF:0010, linear 100000h


def seg_off(linear: int) -> int:
    """A seg:off move offset for a linear address of the first MB + 64 KB."""
    segment = 0xFFFF if linear >= 0xFFFF0 else linear >> 4
    return segment << 16 | (linear - segment * 16)


def test_move_into_the_hma_and_back() -> None:
    dos = make_dos()
    xms, pm = dos.xms, dos.pageman
    write_physical(pm, 0x6000, b"high memory!")
    assert xms.XmsMove(12, 0, CONV, 0, HMA) and xms.last_error == 0
    assert xms.hma_memory.read(HMA_START, 12) == b"high memory!"
    assert xms.XmsMove(12, 0, HMA, 0, 0x0700_0000)
    assert read_physical(pm, 0x7000, 12) == b"high memory!"


def test_hma_bytes_are_frames_the_driver_holds() -> None:
    """Not the identity frames above 1 MB (the kernel's in the memory subsystem,
    here taken before DOS memory starts): 16 HELD frames listed by frames(); a
    write to the HMA leaves 100000h alone."""
    pm = PageManager()
    assert pm.InitializePhysicalMemory(0x100000, 0x400000)
    kernel = [pm.take_frame(FrameOwner.HELD) for _ in range(16)]
    assert kernel == list(range(0x100, 0x110))
    dos = DosMemoryManager(pm, xms_start=0x200000, xms_end=0x300000)
    assert dos.ready
    xms = dos.xms
    frames = xms.hma_memory.frames
    assert len(frames) == HMA_FRAMES == 16 and len(set(frames)) == 16
    assert set(frames) <= xms.frames()
    assert all(pm.owner[f] == FrameOwner.HELD for f in frames)
    write_physical(pm, 0x6000, b"\xAA" * 16)
    before = read_physical(pm, HMA_START, 16)
    assert xms.XmsMove(16, 0, CONV, 0, HMA)
    assert read_physical(pm, HMA_START, 16) == before
    assert pm.read_span([(frames[0], 0, 16)]) == b"\xAA" * 16


def test_the_hma_is_apart_from_xms_blocks() -> None:
    dos = make_dos()
    xms, pm = dos.xms, dos.pageman
    h = xms.XmsAllocate(1)
    write_physical(pm, XMS_BASE, b"block!")
    assert xms.XmsMove(6, h, 0, 0, HMA)
    assert xms.XmsMove(2, 0, CONV, h, 0)
    assert xms.hma_memory.read(HMA_START, 6) == b"block!"
    assert read_physical(pm, XMS_BASE, 6) == bytes(2) + b"ock!"


def test_a_range_straddling_1_mb() -> None:
    """F000:FFF8 + 16 bytes: 8 below 1 MB, 8 in the HMA."""
    dos = make_dos()
    xms, pm = dos.xms, dos.pageman
    write_physical(pm, 0x6000, bytes(range(16)))
    assert xms.XmsMove(16, 0, CONV, 0, 0xF000_FFF8)
    assert read_physical(pm, 0xFFFF8, 8) == bytes(range(8))
    assert xms.hma_memory.read(HMA_START, 8) == bytes(range(8, 16))
    assert xms.XmsMove(16, 0, 0xF000_FFF8, 0, 0x0700_0000)
    assert read_physical(pm, 0x7000, 16) == bytes(range(16))


def test_the_last_bytes_of_the_hma() -> None:
    """FFFF:FFF0 + 16 ends at 10FFF0h exactly: allowed; the HMA's last byte is
    FFFF:FFFF; a length-0 move there succeeds and moves nothing."""
    dos = make_dos()
    xms, pm = dos.xms, dos.pageman
    write_physical(pm, 0x6000, b"0123456789abcdef")
    assert xms.XmsMove(16, 0, CONV, 0, 0xFFFF_FFF0)
    assert xms.hma_memory.read(HMA_END - 16, 16) == b"0123456789abcdef"
    before = snapshot(dos)
    assert xms.XmsMove(0, 0, 0xFFFF_FFFF, 0, 0xFFFF_FFFF) and xms.last_error == 0
    assert snapshot(dos) == before


def test_overlapping_hma_move_is_memmove() -> None:
    dos = make_dos()
    xms, pm = dos.xms, dos.pageman
    write_physical(pm, 0x6000, bytes(range(16)))
    assert xms.XmsMove(16, 0, CONV, 0, HMA)
    assert xms.XmsMove(12, 0, HMA, 0, HMA + 4)
    assert xms.hma_memory.read(HMA_START, 16) == bytes([0, 1, 2, 3, *range(12)])


@pytest.mark.parametrize(("args", "code"), [
    ((2, 0, 0xFFFF_FFFF, 0, CONV), XMS_INVALID_LENGTH),  # FFFF:FFFF + 2: no wrap to 0
    ((2, 0, CONV, 0, 0xFFFF_FFFF), XMS_INVALID_LENGTH),
    ((18, 0, CONV, 0, 0xFFFF_FFF0), XMS_INVALID_LENGTH),  # 2 bytes past 10FFF0h
    ((0x10002, 0, 0xFFFF_0000, 0, CONV), XMS_INVALID_LENGTH),  # FFFF:0000 + 64 KB + 2
    ((3, 0, CONV, 0, HMA), XMS_INVALID_LENGTH),  # odd, checked first
    ((0xFFFF_FFFE, 0, 0, 0, HMA), XMS_INVALID_LENGTH),  # HimemX's carry case
    ((2, 0, -1, 0, HMA), XMS_INVALID_SOURCE_OFFSET),
    ((0x20000, 0, 0, 0, HMA), XMS_INVALID_LENGTH),  # a whole 128 KB
], ids=["src-wrap", "dst-wrap", "dst-straddles-end", "src-past-end", "odd", "huge",
        "negative-offset", "128k"])
def test_hostile_hma_moves_change_nothing(args: tuple[int, ...], code: int) -> None:
    dos = make_dos()
    xms = dos.xms
    write_physical(dos.pageman, 0x6000, b"x" * 32)
    assert xms.XmsMove(16, 0, CONV, 0, HMA)
    before = snapshot(dos)
    assert not xms.XmsMove(*args)
    assert xms.last_error == code
    assert snapshot(dos) == before


def test_no_a20_or_hma_request_needed_and_both_unchanged() -> None:
    """The driver turns A20 on for the copy itself (xms.cpp lines 376-390,
    HimemX.asm lines 1230-1236): A20 off and the HMA not requested before, and
    after."""
    dos = make_dos()
    hma = dos.xms.hma
    assert (hma.a20_local, hma.a20_global, hma.hma_owned) == (0, False, False)
    assert dos.xms.XmsMove(2, 0, CONV, 0, HMA)
    assert (hma.a20_local, hma.a20_global, hma.hma_owned) == (0, False, False)


def test_not_ready_without_16_frames_for_the_hma() -> None:
    """A pool that leaves fewer than 16 other free frames: the driver (and DOS
    memory) is not ready and claims nothing."""
    pm = PageManager()
    assert pm.InitializePhysicalMemory(0x100000, 0x200000)
    assert pm.take_frame(FrameOwner.HELD) == 0x100  # 15 free frames left below the pool
    owners = bytes(pm.owner)
    dos = DosMemoryManager(pm, xms_end=0x200000)
    assert not dos.ready and bytes(pm.owner) == owners
    pm = PageManager()
    assert pm.InitializePhysicalMemory(0x100000, 0x200000)
    assert DosMemoryManager(pm, xms_end=0x200000).ready
