"""proofs/conformance.py: the conformance suites as obligations of the check
(both profiles): they pass on the model, count every case, keep strict xfails
strict, and catch a model that departs from a real system by name."""

from __future__ import annotations

import importlib

import pytest

from model.xms import XmsDriver
from proofs.conformance import SUITES, _cases, _judge, obligations
from proofs.obligation import Kind


def test_one_obligation_per_suite_in_both_profiles() -> None:
    found = list(obligations())
    assert [o.operation for o in found] == list(SUITES)
    assert all(o.profiles == frozenset({"quick", "full"}) for o in found)


@pytest.mark.parametrize("suite", SUITES)
def test_every_suite_agrees_with_the_model(suite: str) -> None:
    module = importlib.import_module(f"tests.conformance.{suite}")
    verdict = _judge(suite)
    assert verdict.kind is Kind.NO_COUNTEREXAMPLE, verdict.detail
    assert verdict.examples == len(list(_cases(module))) > 0


def test_the_deliberate_deviations_stay_expected_failures() -> None:
    module = importlib.import_module("tests.conformance.msdos_alloc")
    expected = [case for case, _, _, xfail in _cases(module) if xfail]
    assert len(expected) == sum(1 for case in module.CASES if case.differs) >= 1


def test_a_model_that_departs_is_a_counterexample(monkeypatch: pytest.MonkeyPatch) -> None:
    """XMS 08h answering "nothing free" on a fresh pool disagrees with DOSBox-staging's
    and HimemX's recorded answers."""
    monkeypatch.setattr(XmsDriver, "XmsQueryFree", lambda self: (0, 0))
    verdict = _judge("xms_ems")
    assert verdict.kind is Kind.COUNTEREXAMPLE
    assert verdict.violated == ("CONFORMANCE",)
    assert "test_xms_ems[" in verdict.summary
