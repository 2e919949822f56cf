"""proofs.inductive.paging.decide: which answers are proofs, which are
counterexamples, and in what order the premise sets are tried."""

from __future__ import annotations

import pytest
import z3

from proofs.inductive import layered, paging
from proofs.obligation import Kind, Verdict

X = z3.Int("x")
Y = z3.Int("y")


def _asked(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of assertions of every query decide asks, in order."""
    sizes: list[int] = []
    check = z3.Solver.check

    def recorded(solver: z3.Solver, *assumptions: z3.ExprRef) -> z3.CheckSatResult:
        sizes.append(len(solver.assertions()))
        return check(solver, *assumptions)

    monkeypatch.setattr(z3.Solver, "check", recorded)
    return sizes


def test_a_sat_answer_from_fewer_premises_is_never_a_counterexample() -> None:
    # support (y > 0) allows x = 0; all the hypotheses (x > 5) do not
    verdict = paging.decide([X > 5, Y > 0], X > 0, "C", "quick", lambda model: "",
                            support=[Y > 0])
    assert verdict.kind is Kind.PROVED, verdict
    assert "seed 0 all" in verdict.detail


def test_after_a_sat_answer_from_fewer_premises_all_of_them_come_next(
        monkeypatch: pytest.MonkeyPatch) -> None:
    sizes = _asked(monkeypatch)
    verdict = paging.decide([X > 5, Y > 0], X > 0, "C", "quick", lambda model: "",
                            support=[Y > 0],
                            ground=lambda witness: [Y > 1], ground_first=True)
    assert verdict.kind is Kind.PROVED
    # the instances alone (y > 1, y > 0 and the negated goal) allow a model:
    # every hypothesis is asked next, ahead of the support (2 assertions)
    assert sizes == [3, 3]
    assert "0: seed 0 all" in verdict.detail


def test_a_sat_answer_from_every_hypothesis_and_instances_is_a_counterexample(
        monkeypatch: pytest.MonkeyPatch) -> None:
    check = z3.Solver.check

    def only_the_largest(solver: z3.Solver, *assumptions: z3.ExprRef) -> z3.CheckSatResult:
        # every query but instances+all (4 assertions) times out
        if len(solver.assertions()) < 4:
            return z3.unknown
        return check(solver, *assumptions)

    monkeypatch.setattr(z3.Solver, "check", only_the_largest)
    verdict = paging.decide([X > 0, Y > 0], X > 1, "C", "quick",
                            lambda model: f"x = {model.eval(X)}",
                            ground=lambda witness: [Y > 1], ground_first=True)
    assert verdict.kind is Kind.COUNTEREXAMPLE and verdict.violated == ("C",)
    assert verdict.detail == "x = 1"


def test_the_teeth_profile_searches_reachable_states_first(
        monkeypatch: pytest.MonkeyPatch) -> None:
    searched: list[str] = []
    monkeypatch.setattr(paging, "search_reachable",
                        lambda op, claim, profile: searched.append(profile))
    monkeypatch.setattr(paging, "decide",
                        lambda *args, **kwargs: Verdict(Kind.UNKNOWN, "unknown", ""))
    op = paging.OPERATIONS_BY_NAME["FreeFrame"]
    assert paging.prove(op, "FRM-1", "teeth").kind is Kind.UNKNOWN
    assert paging.prove(op, "FRM-1", "quick").kind is Kind.UNKNOWN
    assert searched == ["teeth", "quick"]  # once each: before, or after the unknown
    assert layered.REACHABLE_FIRST == paging.REACHABLE_FIRST == "teeth"
