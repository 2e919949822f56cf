"""The paging harness's memory of allowed calls (``HarnessCore.passed``, the
oracle's ObservedPaging) passes again only the same call from the same state
with the same outcome; any other outcome is judged by z3 anew."""

from __future__ import annotations

import pytest

from proofs.machines.checks import CheckError
from proofs.machines.paging_harness import Harness
from proofs.machines.paging_queries import Stats


def _harness(passed: set[bytes]) -> Harness:
    harness = Harness(Stats())
    harness.passed = passed
    harness.post_invariants = False  # as the oracle's (ObservedPaging)
    assert harness.InitializePhysicalMemory(0x100000, 0x120000) is True
    return harness


def test_the_same_call_and_outcome_passes_without_z3() -> None:
    passed: set[bytes] = set()
    first = _harness(passed)
    first.RequestFrame(True, True)
    assert len(passed) == 2
    second = _harness(passed)
    queries = second.stats.transition_queries
    second.RequestFrame(True, True)
    assert second.stats.transition_queries == queries == 0


def test_another_outcome_from_the_same_state_is_judged_anew() -> None:
    """A frame handed out that the bitmap does not mark used (same call, same
    pre-state, another post-state) is caught although the call passed before."""
    passed: set[bytes] = set()
    _harness(passed).RequestFrame(True, True)
    wrong = _harness(passed)
    wrong.pm.RequestFrame = lambda *args: 0x100000  # type: ignore[method-assign]
    with pytest.raises(CheckError):
        wrong.RequestFrame(True, True)
