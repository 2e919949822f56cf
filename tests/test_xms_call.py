"""XmsCall (model/xms_call.py) and the HMA/A20 state (model/xms_hma.py): HIMEM's
counters over call sequences, after DOSBox-staging src/ints/xms.cpp lines
185-224 and 513-578."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from model.registers import Registers
from spec.abi import (
    HIMEM_A20_ERROR,
    HIMEM_A20_STILL_ENABLED,
    HIMEM_HMA_IN_USE,
    HIMEM_HMA_NOT_ALLOCATED,
    HIMEM_HMA_TOO_SMALL,
)
from tests.dos_world import make_dos, snapshot


def xms(dos: object, ah: int, **regs: int) -> Registers:
    return dos.XmsCall(Registers(eax=ah << 8, **regs))  # type: ignore[attr-defined, no-any-return]


def test_hma_request_and_release() -> None:
    dos = make_dos()
    dos.xms.hma.hma_min = 16 * 1024  # /HMAMIN=16
    before = snapshot(dos)
    small = xms(dos, 0x01, edx=0x3FFF)
    assert (small.ax, small.bl) == (0, HIMEM_HMA_TOO_SMALL)
    assert xms(dos, 0x02).bl == HIMEM_HMA_NOT_ALLOCATED and snapshot(dos) == before
    assert xms(dos, 0x01, edx=0xFFFF).ax == 1 and dos.xms.hma.hma_owned
    held = snapshot(dos)
    assert (xms(dos, 0x01, edx=0xFFFF).ax, xms(dos, 0x01).bl) == (0, HIMEM_HMA_IN_USE)
    assert snapshot(dos) == held
    assert xms(dos, 0x02).ax == 1 and not dos.xms.hma.hma_owned


@given(st.lists(st.sampled_from([0x03, 0x04, 0x05, 0x06, 0x07]), max_size=30))
def test_a20_counts(functions: list[int]) -> None:
    """A reference of HIMEM's counters: the model answers and keeps the same."""
    dos = make_dos()
    count, flag = 0, False
    for ah in functions:
        regs = xms(dos, ah)
        expected = 0
        if ah == 0x05 or (ah == 0x03 and not flag):
            count += 1
            flag = flag or ah == 0x03
        elif ah == 0x06 or (ah == 0x04 and flag):
            if count == 0:
                expected = HIMEM_A20_ERROR
            else:
                count -= 1
                expected = HIMEM_A20_STILL_ENABLED if count else 0
                if ah == 0x04 and not count:
                    flag = False
        if ah == 0x07:
            assert (regs.ax, regs.bl) == (int(count > 0), 0)
        else:
            assert (regs.ax, regs.bl) == (int(expected == 0), expected)
        assert (dos.xms.hma.a20_local, dos.xms.hma.a20_global) == (count, flag)
        assert dos.xms.hma.a20_enabled == (count > 0)


def test_himem_machine_and_its_broken_model() -> None:
    """The HIMEM machine (proofs/machines/himem.py) passes on the model and names
    DOS-6 on a 06h without its check at 0."""
    from proofs.machines.dos_memory import run_dos_machine
    from proofs.machines.himem import HIMEM_MODEL_VARIANTS, HimemMachine
    from proofs.obligation import Kind

    verdict = run_dos_machine("teeth", machines=(HimemMachine,))
    assert verdict.kind is Kind.NO_COUNTEREXAMPLE, verdict.detail
    for variant in HIMEM_MODEL_VARIANTS:
        broken = run_dos_machine("teeth", variant.patches, machines=(HimemMachine,))
        assert broken.kind is Kind.COUNTEREXAMPLE
        assert set(variant.catches) & set(broken.violated), broken.detail
