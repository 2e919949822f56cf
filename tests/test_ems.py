"""EmsManager: LIM EMS 4.0 functions 40h-4Ch, status codes and page-frame contents.

World: tests/dos_world.py with 32 EMS pages (128 storage frames) and 64 handles.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from model.dos_physical import read_physical, write_physical
from model.ems import slot_address
from spec.abi import (
    EMS_INVALID_HANDLE,
    EMS_INVALID_LOGICAL,
    EMS_INVALID_PHYSICAL,
    EMS_NO_HANDLES,
    EMS_NOT_ENOUGH_PAGES,
    EMS_PAGE_SIZE,
    EMS_TOO_MANY_PAGES,
    EMS_ZERO_PAGES,
    UNMAP,
    FrameOwner,
)
from tests.dos_world import make_dos, snapshot


def test_status_frame_version_counts() -> None:
    ems = make_dos().ems
    assert ems.EmsGetStatus() == 0 and ems.EmsGetPageFrame() == 0xE000
    assert ems.EmsGetVersion() == 0x40 and ems.EmsGetPageCounts() == (32, 32)
    assert ems.EmsGetHandleCount() == 1 and ems.handles == {0: []}  # the OS handle
    assert ems.EmsGetHandlePages(0) == 0 and ems.last_status == 0


def test_allocate_takes_frames_and_deallocate_returns_them() -> None:
    dos = make_dos()
    ems, pm = dos.ems, dos.pageman
    used = pm.frames.used
    h = ems.EmsAllocate(3)
    assert h == 1 and ems.handles[1] == [0, 1, 2] and pm.frames.used == used + 12
    assert all(pm.owner[f] == FrameOwner.HELD for f in ems.frames())
    assert ems.frames() <= dos.frames()
    assert ems.EmsGetPageCounts() == (29, 32) and ems.EmsGetHandlePages(h) == 3
    assert ems.EmsGetHandleCount() == 2
    assert ems.EmsDeallocate(h) and pm.frames.used == used and ems.frames() == set()


def test_allocate_status_codes_exact() -> None:
    dos = make_dos(ems_handles=3)
    ems = dos.ems
    before = snapshot(dos)
    for pages, code in ((0, EMS_ZERO_PAGES), (33, EMS_TOO_MANY_PAGES), (-1, EMS_TOO_MANY_PAGES),
                        ("2", EMS_TOO_MANY_PAGES)):
        assert ems.EmsAllocate(pages) == 0 and ems.last_status == code  # type: ignore[arg-type]
    assert snapshot(dos) == before
    assert ems.EmsAllocate(30) == 1
    assert ems.EmsAllocate(3) == 0 and ems.last_status == EMS_NOT_ENOUGH_PAGES
    assert ems.EmsAllocate(1) == 2
    assert ems.EmsAllocate(1) == 0 and ems.last_status == EMS_NO_HANDLES


def test_map_status_codes_exact() -> None:
    dos = make_dos()
    ems = dos.ems
    h = ems.EmsAllocate(2)
    before = snapshot(dos)
    for args, code in (((9, 0, 0), EMS_INVALID_HANDLE), ((h, 0, 4), EMS_INVALID_PHYSICAL),
                       ((h, 2, 0), EMS_INVALID_LOGICAL), ((h, -1, 0), EMS_INVALID_LOGICAL),
                       ((h, 0, -1), EMS_INVALID_PHYSICAL), ((None, 0, 0), EMS_INVALID_HANDLE)):
        assert not ems.EmsMap(*args) and ems.last_status == code
    assert not ems.EmsDeallocate(9) and ems.last_status == EMS_INVALID_HANDLE
    assert ems.EmsGetHandlePages(9) == 0 and ems.last_status == EMS_INVALID_HANDLE
    assert snapshot(dos) == before


def test_bytes_survive_remapping() -> None:
    dos = make_dos()
    ems, pm = dos.ems, dos.pageman
    h = ems.EmsAllocate(2)
    assert ems.EmsMap(h, 0, 0)
    write_physical(pm, slot_address(0) + 100, b"page zero")
    assert ems.EmsMap(h, 1, 0)  # replaces logical 0: saved
    assert read_physical(pm, slot_address(0) + 100, 9) == bytes(9)
    write_physical(pm, slot_address(0), b"page one")
    assert ems.EmsMap(h, 0, 3)
    assert read_physical(pm, slot_address(3) + 100, 9) == b"page zero"
    assert ems.EmsMap(h, UNMAP, 0) and ems.slots[0] is None
    assert read_physical(pm, slot_address(0), EMS_PAGE_SIZE) == bytes(EMS_PAGE_SIZE)
    assert ems.read_logical(h, 1)[:8] == b"page one"
    assert ems.EmsMap(h, 1, 2) and read_physical(pm, slot_address(2), 8) == b"page one"


def test_mapping_a_mapped_page_elsewhere_moves_it() -> None:
    dos = make_dos()
    ems, pm = dos.ems, dos.pageman
    h = ems.EmsAllocate(1)
    assert ems.EmsMap(h, 0, 1)
    write_physical(pm, slot_address(1), b"moving")
    assert ems.EmsMap(h, 0, 2)
    assert ems.slots == [None, None, (h, 0), None]
    assert read_physical(pm, slot_address(2), 6) == b"moving"
    assert read_physical(pm, slot_address(1), 6) == bytes(6)


def test_deallocate_with_pages_mapped_unmaps_them() -> None:
    dos = make_dos()
    ems, pm = dos.ems, dos.pageman
    h, g = ems.EmsAllocate(1), ems.EmsAllocate(1)
    assert ems.EmsMap(h, 0, 0) and ems.EmsMap(g, 0, 1)
    write_physical(pm, slot_address(0), b"gone")
    assert ems.EmsDeallocate(h)
    assert ems.slots == [None, (g, 0), None, None] and h not in ems.handles
    assert read_physical(pm, slot_address(0), 4) == bytes(4)
    before = snapshot(dos)
    assert not ems.EmsDeallocate(h) and ems.last_status == EMS_INVALID_HANDLE  # gone: unknown
    assert snapshot(dos) == before


def test_os_handle_keeps_existing() -> None:
    ems = make_dos().ems
    assert ems.EmsDeallocate(0) and ems.handles == {0: []}


def test_seed_map_by_page_id_and_segment() -> None:
    dos = make_dos()
    ems = dos.ems
    h = dos.AllocateEmsPages(2)
    assert h == 1 and dos.last_error == 0
    assert dos.MapEmsPageToPhysical(1, 0xE800) and ems.slots[2] == (h, 1)
    before = snapshot(dos)
    assert not dos.MapEmsPageToPhysical(5, 0xE000) and dos.last_error == EMS_INVALID_LOGICAL
    for segment in (0xE100, 0xF000, 0xD000, -1):
        assert not dos.MapEmsPageToPhysical(0, segment)
        assert dos.last_error == EMS_INVALID_PHYSICAL
    assert snapshot(dos) == before
    assert dos.FreeEmsPages(h) and not dos.FreeEmsPages(h)
    assert dos.last_error == EMS_INVALID_HANDLE


class EmsMachine(RuleBasedStateMachine):
    """Random allocations, maps, unmaps, writes through the frame, deallocations: DOS-5
    (each slot one page, each page in at most one slot and one handle) and every logical
    page's bytes as a shadow predicts."""

    def __init__(self) -> None:
        super().__init__()
        self.dos = make_dos(ems_pages=8, ems_handles=4)
        self.ems, self.pm = self.dos.ems, self.dos.pageman
        self.shadow: dict[tuple[int, int], bytes] = {}

    @rule(pages=st.integers(0, 4))
    def allocate(self, pages: int) -> None:
        h = self.ems.EmsAllocate(pages)
        if h:
            for logical in range(pages):
                self.shadow[(h, logical)] = self.ems.read_logical(h, logical)

    @rule(h=st.integers(0, 4), logical=st.sampled_from([0, 1, 2, 3, UNMAP]),
          physical=st.integers(0, 3))
    def map(self, h: int, logical: int, physical: int) -> None:
        ok = self.ems.EmsMap(h, logical, physical)
        valid = h in self.ems.handles and (logical == UNMAP
                                          or logical < len(self.ems.handles[h]))
        assert ok == valid

    @rule(physical=st.integers(0, 3), data=st.binary(min_size=1, max_size=8),
          offset=st.integers(0, EMS_PAGE_SIZE - 8))
    def write(self, physical: int, data: bytes, offset: int) -> None:
        mapped = self.ems.slots[physical]
        if mapped is not None:
            write_physical(self.pm, slot_address(physical) + offset, data)
            page = bytearray(self.shadow[mapped])
            page[offset:offset + len(data)] = data
            self.shadow[mapped] = bytes(page)

    @rule(h=st.integers(1, 4))
    def deallocate(self, h: int) -> None:
        if self.ems.EmsDeallocate(h):
            self.shadow = {k: v for k, v in self.shadow.items() if k[0] != h}

    @invariant()
    def pages_and_bytes(self) -> None:
        mapped = [s for s in self.ems.slots if s is not None]
        assert len(mapped) == len(set(mapped))
        ids = [page for pages in self.ems.handles.values() for page in pages]
        assert len(ids) == len(set(ids)) and set(ids) == set(self.ems.storage)
        assert len(self.ems.frames()) == 4 * len(ids)
        for (h, logical), data in self.shadow.items():
            assert self.ems.read_logical(h, logical) == data


TestEmsMachine = EmsMachine.TestCase
TestEmsMachine.settings = settings(max_examples=30, stateful_step_count=25, deadline=None,
                                   suppress_health_check=[HealthCheck.too_slow])
