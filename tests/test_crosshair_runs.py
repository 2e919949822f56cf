"""The CrossHair runner reports each kind of result honestly, and has teeth.

The functions under test live in tests/broken_helpers.py; each has a known
verdict. Budgets are CPU seconds per postcondition and only bound the run;
no assertion depends on timing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from proofs.contracts.crosshair import (
    CONTRACT_MODULES,
    check_function,
    contract_functions,
    crosshair_obligation,
    obligations,
)
from proofs.obligation import Kind

HELPERS = "broken_helpers"


@pytest.fixture(autouse=True)
def _helpers_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parent))


def test_wrong_postcondition_is_a_counterexample() -> None:
    verdict = crosshair_obligation(HELPERS, "align_up_wrong", "helpers").run("quick")
    assert verdict.kind is Kind.COUNTEREXAMPLE
    assert "align_up_wrong(0)" in verdict.detail
    assert "__return__ > value" in verdict.detail
    assert verdict.violated == ("contract",)


def test_exception_in_the_body_is_a_counterexample() -> None:
    verdict = check_function(HELPERS, "pages_raising", 1.0)
    assert verdict.kind is Kind.COUNTEREXAMPLE
    assert "ZeroDivisionError" in verdict.detail


def test_exhausted_paths_are_confirmed() -> None:
    verdict = check_function(HELPERS, "align_down_right", 5.0)
    assert verdict.kind is Kind.CONFIRMED
    assert verdict.summary.startswith("confirmed over all paths")


def test_budget_running_out_is_never_confirmed() -> None:
    verdict = check_function(HELPERS, "set_low_bit", 0.3)
    assert verdict.kind is Kind.NO_COUNTEREXAMPLE
    assert verdict.examples is not None and verdict.examples > 0
    assert verdict.summary == (f"no counterexample in {verdict.examples} paths "
                               "(CrossHair, not exhaustive; 0/1 postconditions confirmed)")


def test_object_parameter_is_not_confirmed() -> None:
    verdict = check_function(HELPERS, "is_small", 1.0)
    assert verdict.kind is Kind.UNKNOWN
    assert "value" in verdict.summary


def test_unsatisfiable_precondition_is_unknown() -> None:
    verdict = check_function(HELPERS, "impossible", 1.0)
    assert verdict.kind is Kind.UNKNOWN
    assert "precondition" in verdict.detail


def test_missing_function_is_an_error() -> None:
    assert check_function(HELPERS, "no_such_function", 1.0).kind is Kind.ERROR


def test_discovery_takes_exactly_the_contract_functions() -> None:
    assert contract_functions(HELPERS) == [
        "align_up_wrong", "align_down_right", "pages_raising", "set_low_bit", "is_small",
        "impossible"]


def test_contract_obligations_are_named_after_their_module_and_function() -> None:
    found = list(obligations())
    managers = {manager for _, manager in CONTRACT_MODULES}
    assert {o.manager for o in found} == managers, "every contract module has contracts"
    for obligation in found:
        assert obligation.id == f"{obligation.manager}.{obligation.operation}.contract"
        assert obligation.invariant == "contract"
    ids = {o.id for o in found}
    assert {"x86_paging.split_address.contract", "heap_layout.split_block.contract"} <= ids
