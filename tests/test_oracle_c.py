"""The oracle against a C implementation built here (tests/oracle_impl).

The intended algorithm passes both modes; each bug switch is caught in spec
mode within 60 s (the first divergence; hypothesis then shrinks it for up to
35 s more, then delta debugging), by name, with a shrunk trace of at most 6
operations (the calls after the three set-up calls every sequence starts
with: issue 16's bound) that replays to
a divergence on the buggy build and passes on the clean one; an
implementation that legitimately takes the highest free frame passes spec
mode and fails strict mode.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from proofs.oracle.report import describe
from proofs.oracle.run import load_trace, replay, save_trace, search, trace_of
from tests.oracle_impls import build_c

#: Each bug switch and what the spec must name when it catches it.
BUGS = {
    "BUG_FRAME_TWICE": {"FRM-3", "transition"},
    "BUG_INDEX_UNSORTED": {"HEAP-1", "transition"},
    "BUG_SPLIT_UNDERFLOW": {"HEAP-2", "HEAP-3", "transition"},
    "BUG_ALIGN": {"HEAP-6", "transition"},
    "BUG_CONTRACT_LIVE": {"HEAP-2", "transition"},
    "BUG_STALE_FOOTER": {"HEAP-2", "HEAP-3", "transition"},
}
LIMIT_SECONDS = 60.0
TRACES = Path(__file__).resolve().parent / "oracle_traces"
MAX_OPERATIONS = 6


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("oracle_c")


def test_the_intended_algorithm_passes_both_modes(build_dir: Path) -> None:
    binary = build_c(build_dir)
    strict = search(binary, "strict", max_examples=60, steps=25, seed=11, time_limit=120)
    assert strict.passed, describe(strict)
    spec = search(binary, "spec", max_examples=5, steps=15, seed=11, time_limit=120)
    assert spec.passed, describe(spec)
    kernel = ("PageManager", "VirtualMemoryManager", "KernelHeap", "FrameCounts", "HeapWalk")
    for outcome in (strict, spec):  # it implements the kernel's managers: only DOS, processes
        assert outcome.skipped and not [s for s in outcome.skipped
                                        if s.split()[-1] in kernel], outcome.skipped


@pytest.mark.parametrize("bug", sorted(BUGS))
def test_each_bug_is_caught_in_spec_mode(build_dir: Path, tmp_path: Path, bug: str) -> None:
    binary = build_c(build_dir, bug)
    outcome = search(binary, "spec", max_examples=2000, steps=12, seed=0,
                     time_limit=LIMIT_SECONDS - 5, shrink_seconds=35)
    report = describe(outcome, ["PageManager", "VirtualMemoryManager", "KernelHeap"])
    assert outcome.divergence is not None, report
    assert outcome.caught_after is not None and outcome.caught_after < LIMIT_SECONDS, report
    divergence = outcome.divergence
    assert set(divergence.violated) <= BUGS[bug] and divergence.violated, report
    assert "<<" in report and "why:" in report
    path = tmp_path / "trace.json"
    save_trace(path, trace_of(outcome, ["PageManager", "VirtualMemoryManager", "KernelHeap"]))
    assert len(load_trace(path)["operations"]) <= MAX_OPERATIONS, report
    again = replay(binary, "spec", load_trace(path)["operations"])
    assert again.divergence is not None, "the saved trace replays to a divergence"
    assert set(again.divergence.violated) <= BUGS[bug]
    assert replay(build_c(build_dir), "spec", load_trace(path)["operations"]).passed


def test_highest_frame_passes_spec_and_fails_strict(build_dir: Path) -> None:
    binary = build_c(build_dir, "HIGHEST_FRAME")
    spec = search(binary, "spec", max_examples=5, steps=15, seed=2, time_limit=120)
    assert spec.passed, describe(spec)
    strict = search(binary, "strict", max_examples=20, steps=10, seed=2, time_limit=120)
    assert strict.divergence is not None and strict.divergence.violated == ("strict",)
    assert "differs from the model's" in strict.divergence.reason


@pytest.mark.parametrize("bug", sorted(BUGS))
def test_saved_traces_are_regression_tests(build_dir: Path, bug: str) -> None:
    """tests/oracle_traces holds the shortest trace found for each bug switch:
    replayed, it diverges on that build (by name) and passes on the clean one,
    in both modes' sense: spec mode names the invariant, strict mode differs."""
    trace = load_trace(TRACES / f"{bug}.json")["operations"]
    caught = replay(build_c(build_dir, bug), "spec", trace)
    assert caught.divergence is not None and caught.divergence.violated, describe(caught)
    assert set(caught.divergence.violated) <= BUGS[bug], describe(caught)
    assert replay(build_c(build_dir, bug), "strict", trace).divergence is not None
    assert replay(build_c(build_dir), "spec", trace).passed
    assert replay(build_c(build_dir), "strict", trace).passed
