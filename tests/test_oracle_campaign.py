"""Campaigns (docs/oracle.md, "Campaigns"): every distinct bug, each in its
bucket with its own delta-debugged trace; z3's unknown as exit 3.

The acceptance test of issue 16: one campaign over a C fixture built with
several bug switches reports each bug as its own bucket, each bucket's saved
trace is 1-minimal, at most 6 operations after the set-up, replays to that
bucket on the multi-bug build and diverges on exactly one single-switch build
(its bug's) while the clean build passes it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from proofs.machines.checks import SolverUnknownError
from proofs.oracle.__main__ import EXIT_DIVERGED, EXIT_UNKNOWN, main
from proofs.oracle.buckets import bucket_of
from proofs.oracle.families import family_named
from proofs.oracle.minimize import run_steps
from proofs.oracle.run import load_trace, replay, search, session_factory
from proofs.oracle.session import Coverage
from proofs.oracle.spec_session import SpecSession
from tests.oracle_impls import build_c, model_impl

#: Bug switches whose code paths do not meet (each breaks its own operation).
SWITCHES = ("BUG_FRAME_TWICE", "BUG_ALIGN", "BUG_CONTRACT_LIVE")
MAX_OPERATIONS = 6
KERNEL = ["PageManager", "VirtualMemoryManager", "KernelHeap"]


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("oracle_campaign")


def test_one_campaign_reports_each_bug_in_its_own_bucket(build_dir: Path, tmp_path: Path
                                                         ) -> None:
    binary = build_c(build_dir, *SWITCHES)
    out = tmp_path / "trace.json"
    report = tmp_path / "report.json"
    code = main(["--impl", binary, "--family", "kernel", "--mode", "spec", "--time", "35",
                 "--seed", "1", "--steps", "12", "--shrink-time", "20", "--quiet",
                 "--request-timeout", "30",
                 "--trace-out", str(out), "--json", str(report)])
    assert code == EXIT_DIVERGED
    run = json.loads(report.read_text())["modes"][0]
    assert run["stopped"] == "time"  # no other limit ended it
    bugs = run["divergences"]
    assert len({(b["operation"], b["invariant"], b["clause"]) for b in bugs}) == len(bugs)
    singles = {bug: build_c(build_dir, bug) for bug in SWITCHES}
    explained: dict[str, list[str]] = {bug: [] for bug in SWITCHES}
    for bug in bugs:
        trace = load_trace(Path(bug["trace"]))
        assert trace["bucket"]["operation"] == bug["operation"]
        steps = trace["operations"]
        assert len(steps) == bug["operations"] <= MAX_OPERATIONS, bug
        assert bug["minimal"], bug
        again = replay(binary, "spec", steps)
        assert again.divergence is not None
        bucket = bucket_of(again.divergence, "kernel")
        assert tuple(bucket) == ("kernel", bug["operation"], bug["invariant"], bug["clause"])
        assert replay(build_c(build_dir), "spec", steps).passed
        caught_by = [s for s, single in singles.items()
                     if replay(single, "spec", steps).divergence is not None]
        assert len(caught_by) == 1, (bug, caught_by)
        explained[caught_by[0]].append(bug["operation"])
        for n in range(len(steps)):  # 1-minimal: no single step can go
            fewer = replay(binary, "spec", steps[:n] + steps[n + 1:])
            assert fewer.divergence is None \
                or bucket_of(fewer.divergence, "kernel") != bucket, (bug, n)
    assert all(explained.values()), explained  # every switch found, as a bucket of its own


def test_a_trace_names_earlier_results_by_what_the_replay_returned() -> None:
    """Minimization replays a step that frees an earlier allocation with the
    pointer the candidate's own replay returned: without the first Alloc, the
    second lands where the first did, and the Free must follow it."""
    new = session_factory(model_impl(), "strict", 5.0, Coverage(), None,
                          family_named("kernel"))
    steps: list[dict[str, Any]] = [
        {"manager": "KernelHeap", "op": "Alloc", "args": {"size": 64, "page_align": False}},
        {"manager": "KernelHeap", "op": "Alloc", "args": {"size": 64, "page_align": False}},
    ]
    raised, results, _ = run_steps(new, steps, None)
    assert raised is None and results[0] != results[1]
    free = {"manager": "KernelHeap", "op": "Free", "args": {"p": results[1]}}
    raised, again, renamed = run_steps(new, [steps[1], free], [results[1], None])
    assert raised is None and renamed and again == [results[0], True]
    raised, literal, _ = run_steps(new, [steps[1], free], None)
    assert raised is None and literal[1] is not True  # the stored pointer is no block now


def test_max_examples_ending_a_search_is_reported(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--impl", model_impl(), "--family", "kernel", "--mode", "strict",
                 "--max-examples", "3", "--steps", "5", "--quiet", "--time", "60"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "(ended by --max-examples 3)" in out


def test_z3_unknown_mid_search_is_exit_3_with_report_and_trace(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """z3 answering unknown on a step (here on every heap Free) ends the search
    with exit 3, the report saying so and the trace saved: no traceback, no
    hypothesis error."""
    invoke = SpecSession.invoke

    def undecided(self: SpecSession, manager: str, op: str, args: Any) -> Any:
        reply = invoke(self, manager, op, args)
        if op == "Free":  # the judge's query on what the Free did
            raise SolverUnknownError("z3 answered unknown (test)", ["HEAP-1"])
        return reply

    monkeypatch.setattr(SpecSession, "invoke", undecided)
    out = tmp_path / "t.json"
    code = main(["--impl", model_impl(), "--family", "kernel", "--mode", "spec",
                 "--time", "60", "--steps", "10", "--seed", "3", "--shrink-time", "5",
                 "--quiet", "--trace-out", str(out), "--junit", str(tmp_path / "j.xml")])
    text = capsys.readouterr()
    assert code == EXIT_UNKNOWN, text.out
    assert "UNKNOWN: z3 could not decide a step" in text.out
    assert "Traceback" not in text.out + text.err
    trace = load_trace(out)
    assert trace["violated"] == ["unknown"]
    assert trace["operations"][-1]["op"] == "Free"
    assert 'type="unknown"' in (tmp_path / "j.xml").read_text()


def test_the_search_api_stops_at_the_first_divergence_unless_asked(build_dir: Path) -> None:
    binary = build_c(build_dir, "BUG_FRAME_TWICE", "BUG_ALIGN")
    first = search(binary, "spec", max_examples=None, time_limit=30, seed=1, steps=8,
                   shrink_seconds=10)
    assert first.stopped == "the first divergence" and len(first.findings) == 1
    assert first.divergence is first.findings[0].divergence
