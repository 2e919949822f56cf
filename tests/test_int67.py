"""Int67h (model/int67.py) beyond the conformance cases: what a saved mapping, a
shrink and a deallocation do to the frames and the page frame's bytes."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from model.dos_physical import read_physical, write_physical
from model.ems import slot_address
from model.ems_move import EmsMoveRegion
from model.registers import Registers
from spec.abi import (
    EMM_ACCESS_DENIED,
    EMM_BAD_MEMORY_TYPE,
    EMM_CORRUPT_MAP,
    EMM_INVALID_SUBFUNCTION,
    EMM_NO_ALTERNATE_SETS,
    EMM_SAVED_CONTEXT,
    EMS_INVALID_HANDLE,
    EMS_INVALID_PHYSICAL,
    EMS_PAGE_SIZE,
    EMS_TOO_MANY_PAGES,
)
from tests.dos_world import make_dos, snapshot


def int67(dos: object, ah: int, al: int = 0, **regs: int) -> Registers:
    return dos.Int67h(Registers(eax=(ah << 8) | al, **regs))  # type: ignore[attr-defined, no-any-return]


def test_restore_after_the_saved_page_is_gone() -> None:
    """48h maps what 47h kept; a page freed since leaves its physical page unmapped."""
    dos = make_dos()
    assert int67(dos, 0x43, ebx=2).dx == 1 and int67(dos, 0x43, ebx=1).dx == 2
    int67(dos, 0x44, 0, ebx=0, edx=1)
    int67(dos, 0x44, 1, ebx=0, edx=2)
    write_physical(dos.pageman, slot_address(0), b"first")
    assert int67(dos, 0x47, edx=1).ah == 0
    int67(dos, 0x44, 0, ebx=1, edx=1)
    assert int67(dos, 0x45, edx=2).ah == 0  # handle 2 gone: slot 1 cannot come back
    assert int67(dos, 0x45, edx=1).ah == EMM_SAVED_CONTEXT
    assert int67(dos, 0x48, edx=1).ah == 0
    assert dos.ems.slots == [(1, 0), None, None, None]
    assert read_physical(dos.pageman, slot_address(0), 5) == b"first"
    assert int67(dos, 0x45, edx=1).ah == 0


def test_reallocate_shrink_returns_frames_and_unmaps() -> None:
    dos = make_dos()
    free = dos.pageman.free_count()
    int67(dos, 0x43, ebx=3)
    int67(dos, 0x44, 3, ebx=2, edx=1)
    write_physical(dos.pageman, slot_address(3), b"x" * 16)
    assert int67(dos, 0x51, ebx=1, edx=1).ah == 0
    assert dos.ems.slots[3] is None and len(dos.ems.handles[1]) == 1
    assert read_physical(dos.pageman, slot_address(3), EMS_PAGE_SIZE) == bytes(EMS_PAGE_SIZE)
    assert dos.pageman.free_count() == free - 4
    assert int67(dos, 0x51, ebx=0, edx=1).ah == 0 and dos.pageman.free_count() == free


def test_hostile_python_arguments_change_nothing() -> None:
    """The manager's own methods refuse what no register could carry."""
    dos = make_dos()
    int67(dos, 0x43, ebx=1)
    before = snapshot(dos)
    ems = dos.ems
    assert not ems.EmsSetName(1, "NAME") and ems.last_status == EMM_INVALID_SUBFUNCTION  # type: ignore[arg-type]
    assert not ems.EmsSetName(1, b"SHORT") and ems.last_status == EMM_INVALID_SUBFUNCTION
    assert not ems.EmsReallocate(1, -1) and ems.last_status == EMS_TOO_MANY_PAGES
    assert not ems.EmsReallocate(None, 1) and ems.last_status == EMS_INVALID_HANDLE  # type: ignore[arg-type]
    assert not ems.EmsSaveMap("1") and ems.last_status == EMS_INVALID_HANDLE  # type: ignore[arg-type]
    assert not ems.EmsRestoreMap(1.0) and ems.last_status == EMS_INVALID_HANDLE  # type: ignore[arg-type]
    assert ems.EmsFindName(None) == 0 and ems.last_status == 0xA0  # type: ignore[arg-type]
    assert snapshot(dos) == before


def test_move_region_refuses_what_no_register_could_point_at() -> None:
    dos = make_dos()
    int67(dos, 0x43, ebx=1)
    before = snapshot(dos)
    assert EmsMoveRegion(dos.ems, False, b"short") == EMM_BAD_MEMORY_TYPE
    assert EmsMoveRegion(dos.ems, True, None) == EMM_BAD_MEMORY_TYPE  # type: ignore[arg-type]
    assert snapshot(dos) == before


EMS_OPS = st.lists(st.one_of(
    st.tuples(st.sampled_from([0x43, 0x5A]), st.sampled_from([0, 1, 3, 32, 33, 0x1_0001])),
    st.tuples(st.just(0x44), st.integers(0, 3), st.sampled_from([0, 1, 2, 0xFFFF]),
              st.integers(0, 5)),
    st.tuples(st.sampled_from([0x45, 0x47, 0x48, 0x4C]), st.integers(0, 3)),
    st.tuples(st.just(0x51), st.integers(0, 3), st.sampled_from([0, 1, 5, 33]))),
    max_size=25)


@given(EMS_OPS)
def test_int67h_is_the_manager_in_registers(ops: list[tuple[int, ...]]) -> None:
    """Twin managers: one called through Int67h, one through EmsManager's methods;
    every status and the state agree (ems.cpp lines 779-940's registers: BX pages,
    DX handle, AL physical page, 16-bit views)."""
    regs_side, api_side = make_dos(), make_dos()
    api = api_side.ems
    for op in ops:
        ah = op[0]
        if ah in (0x43, 0x5A):
            out = int67(regs_side, ah, ebx=op[1])
            handle = api.EmsAllocate(op[1] & 0xFFFF, zero_ok=ah == 0x5A)
            assert out.ah == api.last_status and (not handle or out.dx == handle)
        elif ah == 0x44:
            out = int67(regs_side, ah, op[3], ebx=op[2], edx=op[1])
            api.EmsMap(op[1], op[2], op[3])
            assert out.ah == api.last_status
        elif ah == 0x51:
            out = int67(regs_side, ah, ebx=op[2], edx=op[1])
            api.EmsReallocate(op[1], op[2])
            assert out.ah == api.last_status
        else:
            out = int67(regs_side, ah, edx=op[1])
            result = {0x45: api.EmsDeallocate, 0x47: api.EmsSaveMap, 0x48: api.EmsRestoreMap,
                      0x4C: api.EmsGetHandlePages}[ah](op[1])
            assert out.ah == api.last_status
            if ah == 0x4C and not out.ah:
                assert out.bx == result
        assert regs_side.ems.handles == api.handles and regs_side.ems.slots == api.slots
    assert snapshot(regs_side) == snapshot(api_side)


def test_partial_page_map_round_trip() -> None:
    """4Fh/00h saves two frame pages' mappings, 01h puts them back over later
    changes and leaves the other pages alone (LIM 4.0 function 16; the layout
    of ems.cpp lines 506-567: count word, then page, handle byte, logical word)."""
    dos = make_dos()
    int67(dos, 0x43, ebx=4)
    int67(dos, 0x44, 0, ebx=0, edx=1)
    int67(dos, 0x44, 3, ebx=3, edx=1)
    write_physical(dos.pageman, 0x500, struct.pack("<3H", 2, 0xE000, 0xE400))
    assert int67(dos, 0x4F, 0, ds=0x50, esi=0, es=0x60, edi=0).ah == 0
    saved = read_physical(dos.pageman, 0x600, 10)
    assert saved == struct.pack("<HBBHBBH", 2, 0, 1, 0, 1, 0xFF, 0xFFFF)
    int67(dos, 0x44, 0, ebx=1, edx=1)
    int67(dos, 0x44, 1, ebx=2, edx=1)
    int67(dos, 0x44, 3, ebx=0xFFFF, edx=1)
    assert int67(dos, 0x4F, 1, ds=0x60, esi=0).ah == 0
    assert dos.ems.slots == [(1, 0), None, None, None]
    assert int67(dos, 0x4F, 2, ebx=2).al == len(saved)


@pytest.mark.parametrize("al, context, status", [
    (1, struct.pack("<HBBH", 1, 0, 1, 4), EMM_CORRUPT_MAP),
    (1, struct.pack("<HBBHBBH", 2, 0, 1, 0, 1, 1, 0), EMM_CORRUPT_MAP),  # a page twice
    (1, struct.pack("<HBBH", 1, 0, 0xFF, 0), EMM_CORRUPT_MAP),  # no handle, a page
    (1, struct.pack("<HBBH", 1, 4, 1, 0), EMS_INVALID_PHYSICAL),
    (1, struct.pack("<H", 5), EMM_CORRUPT_MAP),
    (0, struct.pack("<2H", 1, 0xE001), EMS_INVALID_PHYSICAL),  # inside a page, not its start
    (0, struct.pack("<2H", 1, 0xF000), EMS_INVALID_PHYSICAL),
    (0, struct.pack("<H", 0xFFFF), EMM_CORRUPT_MAP),
    (4, b"", EMM_INVALID_SUBFUNCTION),
    (0xFF, b"", EMM_INVALID_SUBFUNCTION),
])
def test_partial_page_map_failures_change_nothing(al: int, context: bytes, status: int) -> None:
    """Every refused 4Fh call leaves the whole state, the ES:DI buffer included, as it was."""
    dos = make_dos()
    int67(dos, 0x43, ebx=4)
    int67(dos, 0x44, 0, ebx=0, edx=1)
    write_physical(dos.pageman, 0x500, context)
    before = snapshot(dos)
    out = int67(dos, 0x4F, al, ds=0x50, esi=0, es=0x60, edi=0)
    assert out.ah == status and out.al == al
    assert snapshot(dos) == before
    assert read_physical(dos.pageman, 0x600, 16) == bytes(16)


@given(st.integers(0, 2), st.binary(min_size=0, max_size=24))
def test_partial_page_map_hostile_contexts(al: int, data: bytes) -> None:
    """Any bytes at DS:SI: no exception; a failure changes nothing; a mapping that
    results keeps every logical page in at most one physical page."""
    dos = make_dos()
    int67(dos, 0x43, ebx=2)
    int67(dos, 0x44, 1, ebx=1, edx=1)
    write_physical(dos.pageman, 0x500, data)
    before = snapshot(dos)
    out = int67(dos, 0x4F, al, ds=0x50, esi=0, es=0x60, edi=0, ebx=len(data))
    if out.ah:
        assert snapshot(dos) == before
    shown = [slot for slot in dos.ems.slots if slot is not None]
    assert len(shown) == len(set(shown))


def test_warm_boot_changes_nothing() -> None:
    """5Ch: AH = 0 and the state as it was (LIM 4.0 function 29)."""
    dos = make_dos()
    int67(dos, 0x43, ebx=1)
    int67(dos, 0x44, 2, ebx=0, edx=1)
    before = snapshot(dos)
    assert int67(dos, 0x5C).ah == 0 and snapshot(dos) == before


def test_access_key_protocol() -> None:
    """5Dh (LIM 4.0 function 30): the first call issues the key; later calls need
    it; 02h gives it back and the next call issues a different one; while
    disabled 59h and 5Bh answer A4h, and 5Dh with a wrong key changes nothing."""
    dos = make_dos()
    first = int67(dos, 0x5D, 1)
    key = (first.bx, first.cx)
    assert first.ah == 0 and not dos.ems.os_enabled
    assert int67(dos, 0x59, 0, es=0x60, edi=0).ah == EMM_ACCESS_DENIED
    assert int67(dos, 0x5B, 3).ah == EMM_ACCESS_DENIED
    before = snapshot(dos)
    for al in (0, 1, 2):
        assert int67(dos, 0x5D, al, ebx=key[0], ecx=key[1] ^ 1).ah == EMM_ACCESS_DENIED
    assert snapshot(dos) == before
    assert int67(dos, 0x5D, 0, ebx=key[0], ecx=key[1]).ah == 0 and dos.ems.os_enabled
    assert int67(dos, 0x59, 1).ah == 0 and int67(dos, 0x5B, 3).ah == 0
    assert int67(dos, 0x5D, 2, ebx=key[0], ecx=key[1]).ah == 0
    assert dos.ems.access_key is None and dos.ems.os_enabled
    second = int67(dos, 0x5D, 0)
    assert second.ah == 0 and (second.bx, second.cx) != key
    assert int67(dos, 0x5D, 1, ebx=key[0], ecx=key[1]).ah == EMM_ACCESS_DENIED


def test_alternate_save_area_follows_the_map() -> None:
    """5Bh/01h BL = 0 maps the context at ES:DI and keeps the pointer; 00h writes the
    current context there and returns it (LIM 4.0 function 28); a refused 01h
    keeps the old pointer and the mapping."""
    dos = make_dos()
    int67(dos, 0x43, ebx=2)
    int67(dos, 0x44, 0, ebx=0, edx=1)
    assert int67(dos, 0x4E, 0, es=0x50, edi=0).ah == 0
    assert int67(dos, 0x5B, 1, ebx=0, es=0x50, edi=0).ah == 0
    int67(dos, 0x44, 2, ebx=1, edx=1)
    out = int67(dos, 0x5B, 0)
    assert (out.ah, out.bl, out.es, out.di) == (0, 0, 0x50, 0)
    assert read_physical(dos.pageman, 0x500, 16) == dos.ems.EmsGetPageMap()
    write_physical(dos.pageman, 0x700, struct.pack("<8H", *[0xFFFF] * 6, 1, 2))
    before = snapshot(dos)
    assert int67(dos, 0x5B, 1, ebx=0, es=0x70, edi=0).ah == EMM_CORRUPT_MAP
    assert int67(dos, 0x5B, 1, ebx=2, es=0x50, edi=0).ah == EMM_NO_ALTERNATE_SETS
    assert snapshot(dos) == before and dos.ems.alternate_area == (0x50, 0)


@given(st.integers(0, 0xFF), st.integers(0, 0xFF), st.integers(0, 0xFFFF),
       st.integers(0, 0xFFFF), st.binary(max_size=16))
def test_os_functions_hostile_registers(ah_pick: int, al: int, bx: int, cx: int,
                                        data: bytes) -> None:
    """5Bh / 5Dh with any AL, BX, CX and bytes at ES:DI: no exception, a status, and a
    refused call changes nothing."""
    dos = make_dos()
    int67(dos, 0x43, ebx=2)
    int67(dos, 0x5D, 1)
    write_physical(dos.pageman, 0x500, data)
    before = snapshot(dos)
    out = int67(dos, 0x5B if ah_pick % 2 else 0x5D, al, ebx=bx, ecx=cx, es=0x50, edi=0)
    if out.ah:
        assert snapshot(dos) == before
