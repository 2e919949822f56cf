"""model/registers.py: the 16-bit names are views of the 32-bit registers, and
writing one keeps the high word (Intel SDM vol. 1, 3.4.1)."""

from __future__ import annotations

import pytest

from model.registers import Registers, join_dword, split_dword


def test_sixteen_bit_names_read_the_low_word() -> None:
    regs = Registers(eax=0x1234_4A01, ebx=0xFFFF_00A0, ecx=0x1_0002, edx=3, esi=4, edi=5)
    assert (regs.ax, regs.ah, regs.al) == (0x4A01, 0x4A, 0x01)
    assert (regs.bx, regs.bl, regs.cx, regs.dx, regs.si, regs.di) == (0xA0, 0xA0, 2, 3, 4, 5)


def test_writing_a_word_or_byte_keeps_the_rest() -> None:
    regs = Registers(eax=0x1234_5678, ebx=0xABCD_EF01)
    assert regs.set(ax=0x0008).eax == 0x1234_0008
    assert regs.set(ah=0x09, al=0x0A).eax == 0x1234_090A
    assert regs.set(bl=0xA2).ebx == 0xABCD_EFA2
    assert regs.set(carry=True, es=0x0800) == Registers(eax=0x1234_5678, ebx=0xABCD_EF01,
                                                          es=0x0800, carry=True)


@pytest.mark.parametrize("regs", [Registers(eax=-1), Registers(ebx=1 << 32), Registers(ds=0x10000),
                                  Registers(es=-1), Registers(carry=1)])  # type: ignore[arg-type]
def test_values_no_register_holds_are_invalid(regs: Registers) -> None:
    assert not regs.valid()


def test_register_pairs() -> None:
    assert split_dword(0x0012_3456) == (0x0012, 0x3456)
    assert join_dword(0x0012, 0x3456) == 0x0012_3456
