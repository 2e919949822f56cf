"""Proof hints (proofs/inductive/hints.py): an order of tries, never an assumption."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from proofs.inductive import hints, paging
from proofs.obligation import Kind
from spec.catalogue import OPERATIONS_BY_NAME

DETAIL = ("paging.LinkUserTable.VMM-1: conjuncts decided by 0: seed 0 support (0.3 s); "
          "1: seed 2 instances+all (61.0 s)\n"
          "paging.PlaceUserFrame.VMM-1: conjuncts decided by 0: all, from the cache")


def test_the_hinted_try_comes_first_and_nothing_is_lost() -> None:
    attempts = [(seed, (label,)) for seed in (0, 1) for label in ("support", "all", "inst")]
    assert hints.first(None, attempts) == attempts
    moved = hints.first((1, "all"), attempts)
    assert moved[0] == (1, ("all",)) and sorted(moved) == sorted(attempts)
    assert hints.first((7, "all"), attempts) == attempts  # a seed this profile lacks


def test_hints_are_read_from_a_report() -> None:
    assert hints.record([DETAIL, "proved", ""]) == {
        "paging.LinkUserTable.VMM-1": {"0": [0, "support", 0.3], "1": [2, "instances+all", 61.0]},
        "paging.PlaceUserFrame.VMM-1": {"0": [0, "all", None]}}


def test_a_step_shared_by_two_obligations_keeps_its_timed_winner() -> None:
    # AllocFrame and AllocPage share PlaceKernelFrame: the second obligation
    # finds its answer in the cache, which says nothing about its speed
    first = "paging.PlaceKernelFrame.VMM-1: conjuncts decided by 0: seed 0 instances (2.7 s)"
    again = "paging.PlaceKernelFrame.VMM-1: conjuncts decided by 0: support, from the cache"
    expected = {"paging.PlaceKernelFrame.VMM-1": {"0": [0, "instances", 2.7]}}
    assert hints.record([first, again]) == expected
    assert hints.record([again, first]) == expected


def test_the_faster_winner_is_kept() -> None:
    old = {"s.A.X": {"0": [0, "support", 30.0], "1": [0, "all", 1.0]}}
    new = {"s.A.X": {"0": [0, "instances", 2.0], "1": [0, "support", None]},
           "s.B.X": {"0": [1, "all", 5.0]}}
    assert hints.merge(old, new) == {"s.A.X": {"0": [0, "instances", 2.0],
                                               "1": [0, "all", 1.0]},
                                     "s.B.X": {"0": [1, "all", 5.0]}}


def test_the_recorder_merges_into_the_file(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "hints.json"
    target.write_text(json.dumps({"paging.Old.X": {"0": [0, "all"]}}))
    monkeypatch.setattr(hints, "HINTS_FILE", target)
    report = tmp_path / "full.json"
    report.write_text(json.dumps({"profile": "full", "obligations": [{"detail": DETAIL}]}))
    assert hints.main([str(report)]) == 0
    table = json.loads(target.read_text())
    assert set(table) == {"paging.Old.X", "paging.LinkUserTable.VMM-1",
                          "paging.PlaceUserFrame.VMM-1"}
    (tmp_path / "bad.json").write_text("[]")
    with pytest.raises(SystemExit):
        hints.main([str(tmp_path / "bad.json")])


def test_the_shipped_hints_name_real_steps() -> None:
    for name, conjuncts in hints._table().items():
        family, step, claim = name.split(".")
        assert family and step and claim, name
        for seed, label in conjuncts.values():
            assert seed >= 0 and label in ("support", "all", "instances", "instances+all")


def test_a_wrong_hint_costs_a_try_never_the_verdict(monkeypatch: pytest.MonkeyPatch) -> None:
    """FreeFrame x FRM-2 is decided from all of Inv; a hint that its support (or
    a premise set it does not even have) decides it changes nothing but the order."""
    op = OPERATIONS_BY_NAME["FreeFrame"]
    honest = paging.prove(op, "FRM-2", "quick")
    assert honest.kind is Kind.PROVED
    for wrong in ((0, "support"), (3, "instances+all"), (0, "nonsense")):
        monkeypatch.setattr(hints, "_table",
                            lambda wrong=wrong: {"paging.FreeFrame.FRM-2": {0: wrong, 1: wrong}})
        verdict = paging.prove(op, "FRM-2", "quick")
        assert verdict.kind is Kind.PROVED, wrong
