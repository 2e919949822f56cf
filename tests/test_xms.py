"""XmsDriver: XMS 3.0 functions 08h-0Fh with exact error codes (seed section 6).

World: tests/dos_world.py, pool [0x110000, 0x200000) = 960 KB, 32 handles.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from model.dos_physical import read_physical, write_physical
from model.page_manager import PageManager
from model.xms import XmsBlock, XmsDriver
from spec.abi import (
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
)
from tests.dos_world import make_dos, snapshot

POOL_KB = (0x200000 - XMS_BASE) // 1024


def test_query_free_and_allocate_first_fit() -> None:
    xms = make_dos().xms
    assert xms.XmsQueryFree() == (POOL_KB, POOL_KB) and xms.last_error == 0
    a, b = xms.XmsAllocate(4), xms.XmsAllocate(8)
    assert (a, b) == (1, 2)
    assert xms.handles == {1: XmsBlock(XMS_BASE, 4, 0), 2: XmsBlock(XMS_BASE + 4096, 8, 0)}
    assert xms.XmsFree(a)
    assert xms.XmsQueryFree() == (POOL_KB - 12, POOL_KB - 8)
    assert xms.XmsAllocate(2) == 1 and xms.handles[1].address == XMS_BASE


def test_allocate_errors() -> None:
    dos = make_dos(xms_handles=2)
    xms = dos.xms
    before = snapshot(dos)
    assert xms.XmsAllocate(POOL_KB + 1) == 0 and xms.last_error == XMS_OUT_OF_MEMORY
    assert snapshot(dos) == before
    assert xms.XmsAllocate(POOL_KB) == 1 and xms.XmsQueryFree() == (0, 0)
    assert xms.last_error == XMS_OUT_OF_MEMORY
    assert xms.XmsAllocate(0) == 2  # zero-length blocks are legal
    assert xms.XmsAllocate(0) == 0 and xms.last_error == XMS_OUT_OF_HANDLES


def test_seed_allocate_rounds_bytes_up_to_kb() -> None:
    dos = make_dos()
    h = dos.AllocateXmsMemory(1025)
    assert dos.xms.handles[h].size_kb == 2 and dos.last_error == 0
    assert dos.FreeXmsMemory(h) and not dos.FreeXmsMemory(h)
    assert dos.last_error == XMS_INVALID_HANDLE == dos.xms.last_error


def test_lock_unlock_and_free_of_locked_block() -> None:
    dos = make_dos()
    xms = dos.xms
    h = xms.XmsAllocate(4)
    assert xms.XmsLock(h) == XMS_BASE and xms.XmsGetHandleInfo(h) == (1, 31, 4)
    before = snapshot(dos)
    assert not xms.XmsFree(h) and xms.last_error == XMS_LOCKED
    assert not xms.XmsReallocate(h, 8) and xms.last_error == XMS_LOCKED
    assert snapshot(dos) == before
    assert xms.XmsUnlock(h) and not xms.XmsUnlock(h) and xms.last_error == XMS_NOT_LOCKED
    assert xms.XmsFree(h)


def test_lock_count_overflow() -> None:
    xms = make_dos().xms
    h = xms.XmsAllocate(1)
    for _ in range(255):
        assert xms.XmsLock(h) == XMS_BASE
    assert xms.XmsLock(h) == 0 and xms.last_error == XMS_LOCK_OVERFLOW
    assert xms.handles[h].lock_count == 255


def test_unknown_handles_are_a2() -> None:
    dos = make_dos()
    xms = dos.xms
    before = snapshot(dos)
    for bad in (0, 1, 33, -1, None, "1", 1.0):
        assert not xms.XmsFree(bad)  # type: ignore[arg-type]
        assert xms.last_error == XMS_INVALID_HANDLE
        assert xms.XmsLock(bad) == 0 and not xms.XmsUnlock(bad)  # type: ignore[arg-type]
        assert xms.XmsGetHandleInfo(bad) is None  # type: ignore[arg-type]
        assert not xms.XmsReallocate(bad, 1)  # type: ignore[arg-type]
        assert xms.last_error == XMS_INVALID_HANDLE
    assert snapshot(dos) == before


def test_move_between_conventional_memory_and_blocks() -> None:
    dos = make_dos()
    xms, pm = dos.xms, dos.pageman
    h = xms.XmsAllocate(2)
    write_physical(pm, 0x1234 * 16 + 5, b"hello XMS!")
    assert xms.XmsMove(10, 0, (0x1234 << 16) | 5, h, 1000)
    assert read_physical(pm, XMS_BASE + 1000, 10) == b"hello XMS!"
    assert xms.XmsMove(10, h, 1000, 0, 0x20000000)  # 2000:0000
    assert read_physical(pm, 0x20000, 10) == b"hello XMS!"
    assert xms.XmsMove(0, h, 2048, h, 0)  # length 0, offset at the end


def test_move_overlap_is_memmove() -> None:
    dos = make_dos()
    xms, pm = dos.xms, dos.pageman
    h = xms.XmsAllocate(1)
    write_physical(pm, XMS_BASE, bytes(range(16)))
    assert xms.XmsMove(12, h, 0, h, 4)
    assert read_physical(pm, XMS_BASE, 16) == bytes([0, 1, 2, 3, *range(12)])


def test_move_errors_exact_and_unchanged() -> None:
    dos = make_dos()
    xms = dos.xms
    h = xms.XmsAllocate(1)
    before = snapshot(dos)
    cases = [((3, h, 0, h, 8), XMS_INVALID_LENGTH),
             ((2, 9, 0, h, 0), XMS_INVALID_SOURCE_HANDLE),
             ((2, h, 0, 9, 0), XMS_INVALID_DEST_HANDLE),
             ((2, h, 1025, h, 0), XMS_INVALID_SOURCE_OFFSET),
             ((2, h, 0, h, 1025), XMS_INVALID_DEST_OFFSET),
             ((4, h, 1022, h, 0), XMS_INVALID_LENGTH),
             ((4, 0, 0xFFFFFFFE, h, 0), XMS_INVALID_LENGTH),  # FFFF:FFFE + 4 > 10FFF0h
             ((2, 0, 0xFFFFFFFF, h, 0), XMS_INVALID_LENGTH),  # FFFF:FFFF + 2
             ((-2, h, 0, h, 0), XMS_INVALID_LENGTH),
             ((2, h, -1, h, 0), XMS_INVALID_SOURCE_OFFSET),
             ((2, "h", 0, h, 0), XMS_INVALID_SOURCE_HANDLE)]
    for args, code in cases:
        assert not xms.XmsMove(*args), args  # type: ignore[arg-type]
        assert xms.last_error == code, args
    assert snapshot(dos) == before


def test_reallocate_in_place_and_moving_with_contents() -> None:
    dos = make_dos()
    xms, pm = dos.xms, dos.pageman
    a = xms.XmsAllocate(2)
    b = xms.XmsAllocate(1)
    write_physical(pm, XMS_BASE, b"payload")
    assert xms.XmsReallocate(a, 1) and xms.handles[a] == XmsBlock(XMS_BASE, 1, 0)
    assert xms.XmsReallocate(a, 2) and xms.handles[a] == XmsBlock(XMS_BASE, 2, 0)
    assert xms.XmsReallocate(a, 4)  # b is in the way: moves past it
    assert xms.handles[a] == XmsBlock(XMS_BASE + 3 * 1024, 4, 0)
    assert read_physical(pm, XMS_BASE + 3 * 1024, 7) == b"payload"
    assert xms.handles[b] == XmsBlock(XMS_BASE + 2048, 1, 0)
    before = snapshot(dos)
    assert not xms.XmsReallocate(a, POOL_KB) and xms.last_error == XMS_OUT_OF_MEMORY
    assert snapshot(dos) == before


class XmsMachine(RuleBasedStateMachine):
    """Random allocations, frees, locks, reallocations and moves: DOS-4 (blocks in the pool,
    disjoint, lock counts in 0..255) and every block's bytes as a shadow copy predicts."""

    def __init__(self) -> None:
        super().__init__()
        self.dos = make_dos(xms_end=0x118000, xms_handles=6)
        self.xms, self.pm = self.dos.xms, self.dos.pageman
        self.shadow: dict[int, bytearray] = {}

    def pick(self, data: st.DataObject) -> int:
        return data.draw(st.sampled_from([*sorted(self.shadow), 99]))

    @rule(kb=st.integers(0, 12))
    def allocate(self, kb: int) -> None:
        h = self.xms.XmsAllocate(kb)
        if h:
            self.shadow[h] = bytearray(read_physical(self.pm, self.xms.handles[h].address,
                                                     kb * 1024))
        else:
            assert self.xms.last_error in (XMS_OUT_OF_MEMORY, XMS_OUT_OF_HANDLES)
            assert self.xms.XmsQueryFree()[0] < kb or len(self.shadow) == 6

    @rule(data=st.data())
    def free(self, data: st.DataObject) -> None:
        h = self.pick(data)
        locked = h in self.xms.handles and self.xms.handles[h].lock_count > 0
        assert self.xms.XmsFree(h) == (h in self.shadow and not locked)
        if h in self.shadow and not locked:
            del self.shadow[h]

    @rule(data=st.data(), lock=st.booleans())
    def lock(self, data: st.DataObject, lock: bool) -> None:
        h = self.pick(data)
        if lock:
            self.xms.XmsLock(h)
        else:
            self.xms.XmsUnlock(h)

    @rule(data=st.data(), kb=st.integers(0, 12))
    def reallocate(self, data: st.DataObject, kb: int) -> None:
        h = self.pick(data)
        if self.xms.XmsReallocate(h, kb):
            old = self.shadow[h]
            new = bytearray(read_physical(self.pm, self.xms.handles[h].address, kb * 1024))
            keep = min(len(old), len(new))
            assert new[:keep] == old[:keep]
            self.shadow[h] = new

    @rule(data=st.data(), fill=st.binary(min_size=2, max_size=64))
    def move(self, data: st.DataObject, fill: bytes) -> None:
        fill = fill[:len(fill) // 2 * 2]
        write_physical(self.pm, 0x30000, fill)
        h = self.pick(data)
        offset = data.draw(st.integers(0, 12 * 1024))
        ok = self.xms.XmsMove(len(fill), 0, 0x30000000, h, offset)
        fits = h in self.shadow and offset + len(fill) <= len(self.shadow[h])
        assert ok == fits
        if ok:
            self.shadow[h][offset:offset + len(fill)] = fill

    @invariant()
    def blocks_and_bytes(self) -> None:
        blocks = sorted(self.xms.handles.values())
        for block, after in zip(blocks, blocks[1:], strict=False):
            assert block.address + block.size_kb * 1024 <= after.address or not block.size_kb
        for h, block in self.xms.handles.items():
            assert XMS_BASE <= block.address
            assert block.address + block.size_kb * 1024 <= 0x118000
            assert 0 <= block.lock_count <= 255
            assert read_physical(self.pm, block.address, block.size_kb * 1024) == self.shadow[h]


TestXmsMachine = XmsMachine.TestCase
TestXmsMachine.settings = settings(max_examples=40, stateful_step_count=30, deadline=None,
                                   suppress_health_check=[HealthCheck.too_slow])


def test_a_driver_that_is_not_ready_claims_nothing() -> None:
    """XmsDriver.claim_pool on a driver whose configuration was refused: False, and
    no frame changes owner (the DOS manager never asks, but the call is public)."""
    pm = PageManager()
    assert pm.InitializePhysicalMemory(0x100000, 0x400000)
    owners = bytes(pm.owner)
    for driver in (XmsDriver(pm, 0x10000000), XmsDriver(pm, 0x200000, handle_count=0)):
        assert not driver.ready
        assert driver.claim_pool() is False
        assert bytes(pm.owner) == owners


def test_a_move_from_conventional_address_zero() -> None:
    """0Bh with source handle 0 takes a real-mode seg:off, and 0000:0000 (the
    interrupt vector table) is a valid source like any other (a mutation run found
    the bound at 0 unchecked)."""
    dos = make_dos()
    xms = dos.xms
    handle = xms.XmsAllocate(1)
    assert handle
    write_physical(dos.pageman, 0, b"IV")
    assert xms.XmsMove(2, 0, 0, handle, 0) and xms.last_error == 0
    assert read_physical(dos.pageman, xms.handles[handle].address, 2) == b"IV"


def test_a_bad_handle_is_reported_before_the_largest_offset() -> None:
    """0Bh checks the source handle before its offset (A3h, not A4h), also at the
    largest u32 offset 0xFFFFFFFF, which is an int in range and so is taken to the
    handle lookup (model/xms.py: "A3h/A5h bad source/destination handle; A4h/A6h
    offset beyond the block"; a mutation run found the u32 bound unchecked)."""
    dos = make_dos()
    xms = dos.xms
    handle = xms.XmsAllocate(1)
    assert handle
    before = snapshot(dos)
    cases = [((2, 9, 0xFFFFFFFF, handle, 0), XMS_INVALID_SOURCE_HANDLE),
             ((2, handle, 0, 9, 0xFFFFFFFF), XMS_INVALID_DEST_HANDLE),
             ((2, handle, 0xFFFFFFFF, handle, 0), XMS_INVALID_SOURCE_OFFSET),
             ((2, 0, 0xFFFFFFFF, handle, 0), XMS_INVALID_LENGTH),  # FFFF:FFFF + 2
             ((2, handle, 0, handle, 0xFFFFFFFF), XMS_INVALID_DEST_OFFSET)]
    for args, code in cases:
        assert not xms.XmsMove(*args), args
        assert xms.last_error == code, args
    assert snapshot(dos) == before
