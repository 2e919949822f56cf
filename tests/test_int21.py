"""DosMemoryManager.Int21h (model/int21.py): INT 21h AH=48h/49h/4Ah/58h at the
register level, as MS-DOS 4.0's dispatcher returns registers (microsoft/MS-DOS
v4.0/src/DOS/ALLOC.ASM, DISP.ASM, MS_CODE.ASM); DOS 5's 58h AL=02h/03h as
FreeDOS and DOSBox-staging. Whole state compared before/after where nothing
may change."""

from __future__ import annotations

import pytest

from model.dos_memory import DosMemoryManager
from model.dos_physical import write_physical
from model.registers import Registers
from spec.abi import DEFAULT_PSP, MCB_M, MCB_Z, DosError
from tests.dos_world import make_dos, snapshot

FIRST = 0x0800
TOTAL = 0x9FFF - FIRST - 1
#: High words and untouched registers a call must keep (MS-DOS 4 is 8086 code:
#: restore_world brings back every register but AX and, for error 8, BX).
HIGH = 0xDEAD_0000


def state(dos: DosMemoryManager) -> tuple[object, ...]:
    return (*snapshot(dos), dos.psp)


def call(ax: int, **regs: int | bool) -> Registers:
    base = Registers(eax=HIGH | ax, ebx=HIGH, ecx=HIGH | 0x1111, edx=HIGH | 0x2222,
                     esi=HIGH | 0x3333, edi=HIGH | 0x4444, ds=0x5555, es=0x6666)
    return base.set(**regs)


def test_48h_success_returns_the_segment_in_ax_and_keeps_the_rest() -> None:
    dos = make_dos()
    regs = call(0x4800, bx=0x10, carry=True)
    out = dos.Int21h(regs)
    assert out == regs.set(ax=FIRST + 1, carry=False)  # ALLOC.ASM:287-291
    assert out.eax == HIGH | (FIRST + 1)
    block = dos.walk(FIRST)
    assert block is not None and (block[0].owner, block[0].size) == (DEFAULT_PSP, 0x10)


def test_48h_failure_is_8_with_the_largest_in_bx() -> None:
    dos = make_dos()
    before = dos.walk(FIRST)
    regs = call(0x4800, bx=0xFFFF)
    out = dos.Int21h(regs)
    assert out == regs.set(ax=DosError.NOT_ENOUGH_MEMORY, bx=TOTAL, carry=True)  # ALLOC.ASM:200-205
    assert dos.walk(FIRST) == before


def test_48h_on_a_trashed_arena_is_7_and_bx_unchanged() -> None:
    dos = make_dos()
    write_physical(dos.pageman, FIRST * 16, b"X")
    regs = call(0x4800, bx=1)
    assert dos.Int21h(regs) == regs.set(ax=DosError.ARENA_TRASHED, carry=True)  # ALLOC.ASM:192-194


def test_49h_success_leaves_ax_at_the_mcb_segment() -> None:
    dos = make_dos()
    segment = dos.AllocateDosMemory(0x10)
    regs = call(0x4900, es=segment, carry=True)
    assert dos.Int21h(regs) == regs.set(ax=segment - 1, carry=False)  # ALLOC.ASM:350-356
    chain = dos.walk(FIRST)
    assert chain is not None and chain[0].owner == 0


def test_49h_on_a_non_block_is_9_and_changes_nothing() -> None:
    dos = make_dos()
    dos.AllocateDosMemory(0x10)
    before = snapshot(dos)
    regs = call(0x4900, es=FIRST + 5)
    assert dos.Int21h(regs) == regs.set(ax=DosError.INVALID_BLOCK, carry=True)  # ALLOC.ASM:358-360
    assert snapshot(dos) == before


def test_4ah_success_returns_es_in_ax() -> None:
    dos = make_dos()
    segment = dos.AllocateDosMemory(0x10)
    regs = call(0x4A00, es=segment, bx=0x08)
    assert dos.Int21h(regs) == regs.set(ax=segment, carry=False)  # ALLOC.ASM:287-288
    chain = dos.walk(FIRST)
    assert chain is not None
    assert [(b.type, b.size) for b in chain[:2]] == [(MCB_M, 8), (MCB_Z, TOTAL - 9)]


def test_4ah_too_big_is_8_with_the_maximum_in_bx() -> None:
    dos = make_dos()
    segment = dos.AllocateDosMemory(0x10)
    dos.AllocateDosMemory(0x10)
    regs = call(0x4A00, es=segment, bx=0x20)
    out = dos.Int21h(regs)
    assert out == regs.set(ax=DosError.NOT_ENOUGH_MEMORY, bx=0x10, carry=True)  # ALLOC.ASM:327-331


def test_4ah_on_a_non_block_is_7_and_changes_nothing() -> None:
    dos = make_dos()
    before = snapshot(dos)
    regs = call(0x4A00, es=0x1234, bx=1)
    assert dos.Int21h(regs) == regs.set(ax=DosError.ARENA_TRASHED, carry=True)  # ALLOC.ASM:320
    assert snapshot(dos) == before


def test_58h_get_and_set_strategy() -> None:
    dos = make_dos()
    regs = call(0x5801, ebx=HIGH | 0x1F02)  # BH ignored: ALLOC.ASM:387 stores BL
    assert dos.Int21h(regs) == regs.set(carry=False)  # AX kept: 5801h
    assert dos.strategy == 0x02
    regs = call(0x5800, carry=True)
    assert dos.Int21h(regs) == regs.set(ax=0x0002, carry=False)  # ALLOC.ASM:383-385


@pytest.mark.parametrize("value", [0x03, 0x3F, 0x43, 0x83, 0xC0, 0xFF])
def test_58h_01_rejects_strategies_outside_the_dos5_set(value: int) -> None:
    dos = make_dos()
    before = snapshot(dos)
    regs = call(0x5801, bx=value)
    assert dos.Int21h(regs) == regs.set(ax=DosError.INVALID_FUNCTION, carry=True)
    assert snapshot(dos) == before


def test_58h_umb_link_get_and_set() -> None:
    dos = make_dos()
    regs = call(0x5802, carry=True)
    assert dos.Int21h(regs) == regs.set(al=0, carry=False)  # AH kept (FreeDOS, DOSBox)
    regs = call(0x5803, bx=1)
    assert dos.Int21h(regs) == regs.set(carry=False) and dos.umb_linked
    chain = dos.walk(FIRST)
    assert chain is not None and chain[0].type == MCB_M
    assert dos.Int21h(call(0x5802)) == call(0x5802).set(al=1)
    assert dos.Int21h(call(0x5803, bx=0)) == call(0x5803, bx=0) and not dos.umb_linked
    chain = dos.walk(FIRST)
    assert chain is not None and chain[0].type == MCB_Z


def test_58h_03_without_umbs_is_error_1() -> None:
    dos = make_dos(umb_start=0, umb_end=0)
    regs = call(0x5803, bx=1)
    assert dos.Int21h(regs) == regs.set(ax=DosError.INVALID_FUNCTION, carry=True)


@pytest.mark.parametrize("ax,bx", [(0x5803, 2), (0x5803, 0xFFFF), (0x5804, 0),
                                   (0x5805, 1), (0x5880, 0), (0x58FF, 0)])
def test_58h_undefined_subfunctions_are_error_1_and_change_nothing(ax: int, bx: int) -> None:
    dos = make_dos()
    before = state(dos)
    regs = call(ax, bx=bx)
    assert dos.Int21h(regs) == regs.set(ax=DosError.INVALID_FUNCTION, carry=True)
    assert state(dos) == before and dos.last_error == DosError.INVALID_FUNCTION


@pytest.mark.parametrize("ah", [0x6D, 0x6E, 0x80, 0xF8, 0xFF, 0x18, 0x1D, 0x1E, 0x20, 0x61,
                                0x3D, 0x4B])
@pytest.mark.parametrize("carry", [False, True])
def test_functions_past_the_table_and_no_ops_set_al_0_only(ah: int, carry: bool) -> None:
    """DISP.ASM:197-200 (AL = 0, IRET: CF as it was), MS_CODE.ASM:313-315."""
    dos = make_dos()
    before = state(dos)
    regs = call(ah << 8 | 0x77, bx=0x10, es=0x0801, carry=carry)
    assert dos.Int21h(regs) == regs.set(al=0)
    assert state(dos) == before and dos.last_error == 0


@pytest.mark.parametrize("regs", [
    Registers(eax=-1), Registers(eax=1 << 32), Registers(eax=0x4800, ebx=-5),
    Registers(eax=0x4900, es=0x10000), Registers(eax=0x4A00, es=-1),
    Registers(eax=0x4800, ds=1 << 20), Registers(eax=0x4800, carry=1),  # type: ignore[arg-type]
    Registers(eax=18432.0, ebx=1),  # type: ignore[arg-type]
    None, (0x4800, 1)])
def test_hostile_registers_are_refused_before_any_manager(regs: object) -> None:
    dos = make_dos()
    dos.AllocateDosMemory(0x10)
    before = state(dos)
    out = dos.Int21h(regs)  # type: ignore[arg-type]
    assert out == Registers(eax=DosError.INVALID_PARAMETER, carry=True)
    assert state(dos) == before and dos.last_error == DosError.INVALID_PARAMETER


def test_not_ready_manager_answers_21() -> None:
    dos = make_dos()
    dos.ready = False
    regs = call(0x4800, bx=1)
    assert dos.Int21h(regs) == regs.set(ax=DosError.NOT_READY, carry=True)
