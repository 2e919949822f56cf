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


XMS_OPS = st.lists(st.one_of(
    st.tuples(st.just(0x09), st.sampled_from([0, 1, 4, 64, 959, 960, 961, 0x1_0004])),
    st.tuples(st.just(0x89), st.sampled_from([0, 4, 960, 961, 0x1_0000])),
    st.tuples(st.sampled_from([0x0A, 0x0C, 0x0D, 0x0E, 0x8E]), st.integers(0, 4)),
    st.tuples(st.sampled_from([0x0F, 0x8F]), st.integers(0, 4),
              st.sampled_from([0, 2, 100, 960, 0x1_0002])),
    st.tuples(st.sampled_from([0x08, 0x88]))), max_size=25)


@given(XMS_OPS)
def test_xms_call_is_the_driver_in_registers(ops: list[tuple[int, ...]]) -> None:
    """Twin managers: one called through XmsCall, one through XmsDriver's methods;
    every answer and the state agree (the register marshalling of 08h-0Fh,
    88h-8Fh: xms.cpp lines 579-703)."""
    regs_side, api_side = make_dos(), make_dos()
    api = api_side.xms
    for op in ops:
        ah = op[0]
        regs = Registers(eax=ah << 8, ebx=op[2] if len(op) > 2 else 0,
                         edx=op[1] if len(op) > 1 else 0)
        out = regs_side.XmsCall(regs)
        if ah in (0x08, 0x88):
            largest, total = api.XmsQueryFree()
            if ah == 0x08:
                assert (out.ax, out.dx) == (min(largest, 0xFFFF), min(total, 0xFFFF))
            else:
                assert (out.eax, out.edx, out.ecx) == (largest, total, api.pool_end - 1)
            assert out.bl == api.last_error
            continue
        if ah in (0x09, 0x89):
            handle = api.XmsAllocate(op[1] & 0xFFFF if ah == 0x09 else op[1])
            assert (out.ax, out.dx) == (int(handle != 0), handle)
        elif ah == 0x0C:
            address = api.XmsLock(op[1])
            ok = api.last_error == 0
            assert out.ax == int(ok) and (not ok or (out.dx << 16 | out.bx) == address)
        elif ah in (0x0E, 0x8E):
            info = api.XmsGetHandleInfo(op[1])
            assert out.ax == int(info is not None)
            if info is not None:
                assert out.bx >> 8 == info[0] and (out.dx if ah == 0x0E else out.edx) == info[2]
        else:
            if ah == 0x0A:
                ok = api.XmsFree(op[1])
            elif ah == 0x0D:
                ok = api.XmsUnlock(op[1])
            else:
                ok = api.XmsReallocate(op[1], op[2] & 0xFFFF if ah == 0x0F else op[2])
            assert out.ax == int(ok)
        if out.ax == 0:
            assert out.bl == api.last_error
        assert regs_side.xms.handles == api.handles
    assert snapshot(regs_side) == snapshot(api_side)
