"""The EMM's OS state in z3 (spec/ems_os.py): the steps' statuses on concrete
states, the invariants on the model's states, and the machine
(proofs/machines/ems_os.py) with its broken models."""

from __future__ import annotations

import z3

from model.dos_memory import DosMemoryManager
from model.dos_physical import write_physical
from model.page_manager import PageManager
from model.registers import Registers
from proofs.dos_memory import ems_os_states
from proofs.obligation import Kind
from spec import ems_os as eo
from spec.abi import (
    EMM_ACCESS_DENIED,
    EMM_CORRUPT_MAP,
    EMM_INVALID_SUBFUNCTION,
    EMM_NO_ALTERNATE_SETS,
)
from spec.state import Ref


def i(value: int) -> Ref:
    return z3.IntVal(value)


def holds(claim: Ref) -> bool:
    solver = z3.Solver()
    solver.add(z3.Not(claim))
    return solver.check() == z3.unsat


def status_is(step: eo.EmsOsStep, code: int) -> bool:
    return holds(z3.Implies(step.assume, step.status == code))


NO = z3.BoolVal(False)


def test_os_function_set_answers_as_lim_4() -> None:
    """LIM 4.0 function 30: a first 00h/01h issues the key; later calls need it
    (A4h); 02h enables and forgets it; 02h with none changes nothing; AL > 2 8Fh."""
    loaded, held, returned = (state for _, state in ems_os_states())
    key = 0x4F53_0001
    assert status_is(eo.OsFunctionSet(loaded, i(3), i(0), i(key)), EMM_INVALID_SUBFUNCTION)
    first = eo.OsFunctionSet(loaded, i(1), i(0), i(key))
    assert status_is(first, 0) and holds(first.result == key)
    assert holds(z3.And(first.post.key_held, z3.Not(first.post.os_enabled)))
    assert status_is(eo.OsFunctionSet(held, i(0), i(key + 1), i(key)), EMM_ACCESS_DENIED)
    back = eo.OsFunctionSet(held, i(2), i(key), i(key))
    assert status_is(back, 0)
    assert holds(z3.And(back.post.os_enabled, z3.Not(back.post.key_held)))
    nothing = eo.OsFunctionSet(returned, i(2), i(7), i(key))
    assert status_is(nothing, 0) and holds(nothing.post.keys_issued == returned.keys_issued)


def test_alternate_map_register_set_answers_as_lim_4() -> None:
    """LIM 4.0 function 28 with no alternate sets: A4h while disabled, 9Ch for a set
    other than 0, A3h for a corrupt context, 8Fh past 08h; 01h keeps ES:DI, 00h
    returns it."""
    loaded, held, returned = (state for _, state in ems_os_states())
    assert status_is(eo.AlternateMapRegisterSet(held, i(0), i(0), i(0), i(0), NO),
                     EMM_ACCESS_DENIED)
    assert status_is(eo.AlternateMapRegisterSet(loaded, i(9), i(0), i(0), i(0), NO),
                     EMM_INVALID_SUBFUNCTION)
    assert status_is(eo.AlternateMapRegisterSet(loaded, i(1), i(1), i(0), i(0), NO),
                     EMM_NO_ALTERNATE_SETS)
    assert status_is(eo.AlternateMapRegisterSet(loaded, i(1), i(0), i(0), i(0),
                                                z3.BoolVal(True)), EMM_CORRUPT_MAP)
    assert status_is(eo.AlternateMapRegisterSet(loaded, i(3), i(1), i(0), i(0), NO), 0)
    assert holds(eo.AlternateMapRegisterSet(loaded, i(0), i(0), i(0), i(0), NO).result == 0)
    area = eo.AlternateMapRegisterSet(returned, i(0), i(0), i(0), i(0), NO)
    assert holds(area.result == 0x2000 * 0x10000 + 0x10)


def test_invariants_refute_bad_states() -> None:
    """DOS-7: disabled with no key, a key past 32 bits; DOS-8: a save area that is
    no far pointer."""
    loaded = eo.initial_ems_os()
    assert eo.violated(loaded) == []
    assert eo.violated(loaded.but(os_enabled=NO)) == ["DOS-7"]
    key = eo.concrete_ems_os(os_enabled=True, access_key=0x1_0000_0000, keys_issued=1,
                             alternate_area=None)
    assert eo.violated(key) == ["DOS-7"]
    assert eo.violated(key.but(access_key=i(5), keys_issued=i(0))) == ["DOS-7"]
    far = eo.concrete_ems_os(os_enabled=True, access_key=None, keys_issued=0,
                             alternate_area=(0x10000, 0))
    assert eo.violated(far) == ["DOS-8"]


def test_model_states_satisfy_the_invariants() -> None:
    """The model's fields after 5Dh/5Bh calls are states the invariants admit."""
    pm = PageManager()
    assert pm.InitializePhysicalMemory(0x100000, 0x400000)
    dos = DosMemoryManager(pm, xms_end=0x200000, ems_pages=8)
    out = dos.Int67h(Registers(eax=0x5D01))
    key = (out.bx << 16) | out.cx
    ems = dos.ems
    states = [(ems.os_enabled, ems.access_key, ems.keys_issued, ems.alternate_area)]
    dos.Int67h(Registers(eax=0x5D00, ebx=key >> 16, ecx=key & 0xFFFF))
    write_physical(pm, 0x20010, b"\xff" * 16)  # a context with every page unmapped
    assert dos.Int67h(Registers(eax=0x5B01, es=0x2000, edi=0x10)).ah == 0
    dos.Int67h(Registers(eax=0x5D02, ebx=key >> 16, ecx=key & 0xFFFF))
    states.append((ems.os_enabled, ems.access_key, ems.keys_issued, ems.alternate_area))
    assert states == [(False, key, 1, None), (True, None, 1, (0x2000, 0x10))]
    for enabled, held, issued, area in states:
        assert eo.violated(eo.concrete_ems_os(os_enabled=enabled, access_key=held,
                                              keys_issued=issued, alternate_area=area)) == []


def test_ems_os_machine_and_its_broken_models() -> None:
    """The machine passes on the model and names DOS-7 / DOS-7D on the broken ones."""
    from proofs.machines.dos_memory import run_dos_machine
    from proofs.machines.ems_os import EMS_OS_MODEL_VARIANTS, EmsOsMachine

    verdict = run_dos_machine("teeth", machines=(EmsOsMachine,))
    assert verdict.kind is Kind.NO_COUNTEREXAMPLE, verdict.detail
    for variant in EMS_OS_MODEL_VARIANTS:
        broken = run_dos_machine("teeth", variant.patches, machines=(EmsOsMachine,))
        assert broken.kind is Kind.COUNTEREXAMPLE
        assert set(variant.catches) & set(broken.violated), broken.detail
