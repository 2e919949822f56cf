"""Non-vacuity (proofs/inductive/vacuity.py): every inductive step's hypotheses
have a model, and a step without one fails the check."""

from __future__ import annotations

import functools
from typing import Any

import pytest
import z3

from proofs.inductive import vacuity
from proofs.obligation import PROFILES, Kind
from proofs.runner.discovery import collect
from spec.catalogue import Operation
from spec.step import Transition

X = z3.Int("x")


@functools.cache
def _obligations() -> dict[str, Any]:
    return {obligation.id: obligation for obligation in collect()}


def test_every_inductive_operation_has_a_non_vacuity_check_in_both_profiles() -> None:
    obligations = _obligations()
    inductive = {(o.manager, o.operation) for o in obligations.values()
                 if o.operation not in ("Boot", "all") and o.invariant not in (
                     "refinement", "contract", vacuity.CLAIM)
                 and not o.id.startswith(("x86_paging.", "heap_layout.", "conformance."))}
    assert len(inductive) > 100
    for manager, operation in inductive:
        check = obligations.get(f"{manager}.{operation}.{vacuity.CLAIM}")
        assert check is not None, (manager, operation)
        assert check.profiles == frozenset(PROFILES)


@pytest.mark.parametrize("ident", ["virtual_memory.DestroyPageDirectory.NON-VACUOUS",
                                   "user_space.SyscallHeapAlloc.NON-VACUOUS",
                                   "shared_memory.MapSharedMemoryToProcess.NON-VACUOUS"])
def test_steps_that_need_a_state_of_their_own_are_witnessed(ident: str) -> None:
    # FreeTable needs an emptied table (its arguments pinned), FreeDirectory a
    # fresh directory, the process heap's steps a process heap
    verdict = _obligations()[ident].run("quick")
    assert verdict.kind is Kind.PROVED, verdict
    assert "the reached state" in verdict.detail


def _step(guard: Any) -> Operation:
    def transition(s: Any, x: z3.ArithRef) -> Transition[Any]:
        return Transition(z3.IntVal(0), s, s, assume=guard(s, x))
    return Operation("Step", "test", transition, (("x", z3.IntSort()),))


def _family(op: Operation, holds: Any, reached: Any = tuple) -> vacuity.Family:
    return vacuity.Family("test", {"INV": holds}, lambda prefix: z3.Int(f"{prefix}.s"),
                          {op.name: op}, reached)


def test_a_satisfiable_step_is_witnessed_by_z3() -> None:
    op = _step(lambda s, x: x > s)
    verdict = vacuity.prove(_family(op, lambda s: s >= 0), "Step", "quick")
    assert verdict.kind is Kind.PROVED and "z3: a model" in verdict.detail


def test_a_step_whose_hypotheses_contradict_is_vacuous() -> None:
    op = _step(lambda s, x: z3.And(x > s, x < 0))
    verdict = vacuity.prove(_family(op, lambda s: s >= 0), "Step", "quick")
    assert verdict.kind is Kind.COUNTEREXAMPLE and verdict.violated == (vacuity.CLAIM,)


def test_a_reached_state_breaking_the_invariants_is_no_witness() -> None:
    # the guard holds at the reached state -1, but the invariant s >= 0 does not there,
    # and with the invariant the guard x < s < 0 has no model
    op = _step(lambda s, x: z3.And(x < s, s < 0))
    family = _family(op, lambda s: s >= 0, lambda: (("minus one", z3.IntVal(-1)),))
    verdict = vacuity.prove(family, "Step", "quick")
    assert verdict.kind is Kind.COUNTEREXAMPLE, verdict
    assert family.holding == {"minus one": False}


def test_no_witness_within_the_budget_is_a_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    class Undecided:
        def __init__(self, formulas: list[Any], seed: int, timeout: int) -> None:
            self.answer = z3.unknown
            self.solver = z3.Solver()

    monkeypatch.setattr(vacuity, "Asked", Undecided)
    op = _step(lambda s, x: x > s)
    verdict = vacuity.prove(_family(op, lambda s: s >= 0), "Step", "quick")
    assert verdict.kind is Kind.UNKNOWN and "no witness" in verdict.summary
