"""The user-space machine (proofs/machines/user_space.py) and its abstraction."""

from __future__ import annotations

import dataclasses

import pytest
import z3

from model.syscalls import SystemCalls
from proofs.abstractions.user_space import runs, to_user_state, user_view
from proofs.machines.checks import CheckError
from proofs.machines.user_space import (
    USER_MODEL_VARIANTS,
    CheckedMachine,
    UserHarness,
    make_calls,
    obligations,
    run_user_machine,
)
from proofs.obligation import Kind
from spec.abi import (
    MAP_ANONYMOUS,
    MAP_PRIVATE,
    MEM_COMMIT,
    MEM_DECOMMIT,
    MEM_RESERVE,
    MEM_RESET,
    PAGE_NOACCESS,
    PAGE_READONLY,
    PAGE_READWRITE,
)
from spec.user_space import UserState, concrete_user, violated


def busy_calls() -> SystemCalls:
    """Two processes with reserved, committed, NOACCESS, mmap and brk pages."""
    calls = make_calls()
    first, second = calls.CreateProcess(), calls.CreateProcess()
    assert first and second and calls.SwitchProcess(first)
    base = calls.SyscallVirtualAlloc(0, 0x5000, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE)
    assert base and calls.SyscallVirtualAlloc(base, 0x2000, MEM_COMMIT, PAGE_NOACCESS) == base
    assert calls.SyscallVirtualAlloc(0, 0x20000, MEM_RESERVE, PAGE_READONLY)
    assert calls.SyscallMmap(0, 0x3000, 1, MAP_PRIVATE | MAP_ANONYMOUS, 0xFFFFFFFF, 0) > 0
    space = calls.current
    assert space is not None and calls.SyscallBrk(space.brk + 0x2001) == space.heap_start + 0x2001
    return calls


def test_the_run_encoding_equals_a_store_per_page() -> None:
    """The twin: piecewise lambdas over runs equal concrete_user's Store chains, field by field."""
    calls = busy_calls()
    spaces, layouts = user_view(calls)
    assert len(runs(spaces)) < sum(len(pages) for pages in spaces.values()) // 10
    nframes = calls.vmm.pageman.nframes
    fast, slow = to_user_state((spaces, layouts), nframes), concrete_user(spaces, layouts,
                                                                         nframes)
    q, w = z3.Ints("q w")
    for field in dataclasses.fields(UserState):
        a, b = getattr(fast, field.name), getattr(slow, field.name)
        if field.name == "nframes":
            assert z3.simplify(a == b)
            continue
        point = (q, w) if z3.Z3_get_array_arity(a.ctx_ref(), a.sort().ast) == 2 else (q,)
        solver = z3.Solver()
        solver.add(a[point] != b[point])
        assert solver.check() == z3.unsat, field.name


def test_the_abstraction_of_a_busy_model_keeps_every_invariant() -> None:
    calls = busy_calls()
    assert violated(to_user_state(user_view(calls), calls.vmm.pageman.nframes)) == []


def test_a_corrupt_abstraction_is_refuted() -> None:
    calls = busy_calls()
    spaces, layouts = user_view(calls)
    pid = min(spaces)
    vpn, page = next((v, p) for v, p in sorted(spaces[pid].items()) if p.protect == PAGE_READONLY
                     or p.protect == PAGE_NOACCESS)
    spaces[pid][vpn] = page._replace(pte_present=True, pte_writable=True, pte_user=True)
    assert "PROT-2" in violated(to_user_state((spaces, layouts), calls.vmm.pageman.nframes))


def test_a_step_the_spec_forbids_is_reported() -> None:
    """Decommit that leaves the PTEs is caught on the spot, by the invariant and the transition."""
    harness = UserHarness(type("M", (CheckedMachine,), {"cache": {}}))
    assert harness.call("CreateProcess") and harness.call("SwitchProcess", 1)
    base = harness.call("SyscallVirtualAlloc", 0, 0x2000, MEM_RESERVE | MEM_COMMIT,
                        PAGE_READWRITE)
    variant = next(v for v in USER_MODEL_VARIANTS if v.name == "decommit_keeps_pte")
    from unittest import mock

    from model.process_memory import ProcessMemorySpace
    with mock.patch.object(ProcessMemorySpace, "decommit",
                           variant.patches["ProcessMemorySpace.decommit"]), \
            pytest.raises(CheckError) as failure:
        harness.call("SyscallVirtualFree", base, 0x1000, MEM_DECOMMIT)
    assert {"USR-2", "PROT-2"} & set(failure.value.violated)


@pytest.mark.parametrize("discard", [False, True], ids=["keeps", "discards"])
def test_reset_data_may_be_kept_or_discarded(discard: bool) -> None:
    """MEM_RESET (Wine test_VirtualAlloc: the word reads 0x55555555 or 0 after it): the
    harness stops expecting the bytes written before, so a model that keeps them and
    one that zeroes the pages both pass; a byte written after the reset is expected."""
    harness = UserHarness(type("M", (CheckedMachine,), {"cache": {}}))
    assert harness.call("CreateProcess") and harness.call("SwitchProcess", 1)
    base = harness.call("SyscallVirtualAlloc", 0, 0x2000, MEM_RESERVE | MEM_COMMIT,
                        PAGE_READWRITE)
    harness.access("write", base + 0x1001)
    assert harness.written
    if discard:
        space = harness.calls.current
        assert space is not None
        frame = space.pages[(base + 0x1000) >> 12].frame
        assert frame is not None
        harness.calls.vmm.pageman.memory[frame] = bytearray(4096)
    assert harness.call("SyscallVirtualAlloc", base + 0x1000, 1, MEM_RESET, PAGE_NOACCESS) \
        == base + 0x1000
    assert not harness.written
    harness.access("write", base + 0x1002)
    assert harness.written == {(1, base + 0x1002): b"\x5a"}


def test_a_reset_that_changes_pages_is_reported() -> None:
    """A MEM_RESET that decommits its pages disagrees with the spec's VirtualAllocReset."""
    from unittest import mock

    import model.virtual_alloc as va

    def reset_decommits(space: object, address: int, size: int) -> int:
        start = address & ~0xFFF
        space.decommit(start, start + 0x1000)  # type: ignore[attr-defined]
        return space._ok(start)  # type: ignore[attr-defined,no-any-return]

    harness = UserHarness(type("M", (CheckedMachine,), {"cache": {}}))
    assert harness.call("CreateProcess") and harness.call("SwitchProcess", 1)
    base = harness.call("SyscallVirtualAlloc", 0, 0x2000, MEM_RESERVE | MEM_COMMIT,
                        PAGE_READWRITE)
    with mock.patch.object(va, "_reset", reset_decommits), pytest.raises(CheckError) as failure:
        harness.call("SyscallVirtualAlloc", base, 0x1000, MEM_RESET, PAGE_NOACCESS)
    assert "transition" in failure.value.violated


def test_the_model_refines_the_spec() -> None:
    verdict = run_user_machine("quick", max_examples=5)
    assert verdict.kind == Kind.NO_COUNTEREXAMPLE, verdict.detail
    assert verdict.examples is not None and verdict.examples >= 5


@pytest.mark.parametrize("variant", USER_MODEL_VARIANTS, ids=lambda v: v.name)
def test_broken_models_are_caught_by_name(variant: object) -> None:
    verdict = run_user_machine("teeth", variant.patches, shrink_seconds=3)  # type: ignore[attr-defined]
    assert verdict.kind == Kind.COUNTEREXAMPLE, verdict.summary
    assert set(variant.catches) & set(verdict.violated), verdict.detail  # type: ignore[attr-defined]
    assert "state = UserMachine()" in verdict.detail


def test_the_obligation_is_registered() -> None:
    (obligation,) = obligations()
    assert (obligation.id, obligation.manager, obligation.invariant) == (
        "user_space.machine.refinement", "user_space", "refinement")
