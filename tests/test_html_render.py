"""The HTML renderers without a browser: what each drawing counts, the VirtualQuery
grouping of a process's pages, escaping of what an implementation sends, a
report that stays whole when an observation cannot be drawn, and the oracle's
``--json``/``--html`` on a search."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from proofs.html import check_report, drawings, kernel_drawings, oracle_report, process_drawings
from proofs.html.process_drawings import regions
from proofs.html.svg import spans
from proofs.oracle.__main__ import EXIT_DIVERGED
from proofs.oracle.__main__ import main as oracle_main
from proofs.oracle.report_data import outcome_data, report_data
from proofs.oracle.run import Outcome
from proofs.oracle.session import Exchange, OracleUnknownError
from proofs.report import render
from spec.abi import HEAP_MAGIC, MEM_COMMIT, MEM_RESERVE, PAGE_READWRITE
from tests.oracle_impls import misbehaving_impl

EVIL = '<script>alert("x")</script>'


def block(header: int, size: int, hole: bool, back: int | None = None) -> dict[str, Any]:
    return {"header": header, "magic": HEAP_MAGIC, "hole": hole, "size": size,
            "footer_magic": HEAP_MAGIC, "footer_header": header if back is None else back}


WALK = {"created": True, "start": 0xC0000000, "end": 0xC0003000, "data_start": 0xC0001000,
        "index_size": 16, "blocks": [block(0xC0001000, 0x100, True),
                                     block(0xC0001100, 0x40, False),
                                     block(0xC0001140, 0x1EC0, True, back=0xC0001100)]}


def count(html: str, css: str) -> int:
    return len(re.findall(rf'<g class="[^"]*\b{css}\b', html))


def test_the_heap_drawing_has_a_box_per_block_and_an_entry_per_hole() -> None:
    html = kernel_drawings.heap(WALK, [[0x100, 0xC0001000], [0x1EC0, 0xC0001140]],
                                focus={0xC000110C})
    assert (count(html, "block"), count(html, "hole"), count(html, "used")) == (3, 2, 1)
    assert count(html, "damaged") == 1  # the footer pointing at another header
    assert count(html, "index-entry") == 2 and "dangling" not in html
    assert count(html, "focus") == 1  # the payload address the step names
    stray = kernel_drawings.heap(WALK, [[0x100, 0xC0000FFF]])
    assert "dangling" in stray


def test_the_frame_bitmap_marks_what_the_step_changed() -> None:
    html = kernel_drawings.frame_bitmap({"used": [[0, 8], [10, 2]]}, {"frames": 48},
                                        {"used": [[0, 8]]})
    assert html.count('class="frame used') == 10 and html.count('class="frame free') == 38
    assert html.count(' changed"') == 2


def test_regions_are_virtualquery_regions() -> None:
    """Adjacent pages of one allocation with the same state and protection are one
    region; a change of state, protection or allocation base starts another."""
    rw = PAGE_READWRITE
    pages = [[0x400, 2, MEM_COMMIT, rw, 0x400, 9], [0x402, 1, MEM_COMMIT, rw, 0x400, 10],
             [0x403, 1, MEM_RESERVE, 0, 0x400, 0], [0x404, 1, MEM_RESERVE, 0, 0x404, 0]]
    assert regions(pages) == [(0x400, 3, MEM_COMMIT, rw, 0x400), (0x403, 1, MEM_RESERVE, 0, 0x400),
                              (0x404, 1, MEM_RESERVE, 0, 0x404)]


def test_the_mcb_chain_draws_both_chains() -> None:
    chain = {"first_segment": 0x800, "umb_start": 0xC800, "umb_end": 0xE000, "linked": False,
             "strategy": 0, "low": [[0x800, 0x4D, 0x100, 0x10], [0x811, 0x5A, 0, 0x97EE]],
             "high": [[0xC800, 0x5A, 0, 0x17FF]]}
    html = process_drawings.mcb_chain(chain)
    assert (count(html, "mcb"), count(html, "free"), count(html, "owned")) == (3, 2, 1)
    assert "PSP 0100h" in html


def test_spans_keep_small_boxes_visible() -> None:
    boxes = spans([20, 16_000], 600, 26.0)
    assert boxes[0][1] >= 26 and abs(sum(w for _, w in boxes) - 600) < 1e-6


def test_what_an_implementation_sends_is_escaped_and_bad_shapes_are_not_fatal() -> None:
    steps = [{"id": 1, "request": {"id": 1, "manager": "KernelHeap", "op": "Free",
                                   "args": {"p": 1}},
              "implementation": {"id": 1, "result": EVIL, "error": 0},
              "model": {"id": 1, "result": False, "error": 87}, "differs": True,
              "stderr": [EVIL]},
             {"id": 2, "request": {"id": 2, "observe": "HeapWalk", "args": {}},
              "implementation": {"id": 2, "observed": {"blocks": [{"header": EVIL}]}},
              "model": {"id": 2, "observed": {"blocks": []}}, "differs": True, "stderr": []}]
    report = {"format": "memspec-oracle-report", "command": "search", "verdict": 1,
              "modes": [{"mode": "spec", "implementation": EVIL, "status": "diverged",
                         "divergences": [{"family": "kernel", "kind": "divergence",
                                          "violated": [EVIL], "reason": EVIL, "marked": 1,
                                          "steps": steps}], "text": EVIL}]}
    html = render(report)
    assert EVIL not in html and "&lt;script&gt;" in html
    assert "could not be drawn" in html
    assert html.count('data-marked="true"') == 1


def test_a_check_report_lists_failures_first() -> None:
    obligations = [{"id": f"ok.{n}", "manager": "m", "kind": "PROVED", "seconds": 5 - n}
                   for n in range(3)]
    obligations.insert(1, {"id": "bad", "manager": EVIL, "kind": "UNKNOWN", "seconds": 0.1,
                           "detail": EVIL, "counterexample": {"heap": "not a heap"}})
    html = check_report.render({"profile": "quick", "obligations": obligations,
                                "totals": {}, "passed": False})
    ids = re.findall(r'<td class="mono">([^<]*)</td>', html)
    assert ids == ["bad", "ok.0", "ok.1", "ok.2"]
    assert EVIL not in html


def test_the_oracle_report_draws_the_state_around_the_marked_step() -> None:
    def observe(ident: int, walk: dict[str, Any]) -> dict[str, Any]:
        reply = {"id": ident, "observed": walk}
        return {"id": ident, "request": {"id": ident, "observe": "HeapWalk", "args": {}},
                "implementation": reply, "model": reply, "differs": False, "stderr": []}
    free = {"id": 2, "request": {"id": 2, "manager": "KernelHeap", "op": "Free",
                                 "args": {"p": 0xC000110C}},
            "implementation": {"id": 2, "result": True, "error": 0},
            "model": {"id": 2, "result": True, "error": 0}, "differs": False, "stderr": []}
    after = {**WALK, "blocks": WALK["blocks"][:1]}
    html = oracle_report.at_step([observe(1, WALK), free, observe(3, after)], 2)
    before_part, after_part, model_part = re.split(r'<div class="state ', html)[1:]
    assert count(before_part, "block") == 3 and count(after_part, "block") == 1
    assert count(model_part, "block") == 1
    assert drawings.parts({}) == []


def test_a_search_writes_its_json_and_html_reports(tmp_path: Path) -> None:
    """``python -m proofs.oracle --json --html`` on a search (not a replay): the
    divergence with its steps and saved trace, and the page rendered from it."""
    trace, data, page = tmp_path / "t.json", tmp_path / "o.json", tmp_path / "o.html"
    code = oracle_main(["--impl", misbehaving_impl(tmp_path, "crash", 20), "--mode", "strict",
                        "--max-examples", "3", "--quiet", "--trace-out", str(trace),
                        "--request-timeout", "20", "--shrink-time", "5",
                        "--json", str(data), "--html", str(page)])
    assert code == EXIT_DIVERGED
    report = json.loads(data.read_text())
    assert report["command"] == "search" and report["verdict"] == EXIT_DIVERGED
    (found,) = report["modes"][0]["divergences"]
    assert found["kind"] == "crash" and found["trace"] == str(trace) and trace.exists()
    assert found["marked"] in [step["id"] for step in found["steps"]]
    assert all(set(step) >= {"request", "implementation", "model", "differs", "stderr"}
               for step in found["steps"])
    assert page.read_text() == render(report)


def test_json_and_html_are_refused_on_a_cluster(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        oracle_main(["--impl", "true", "--scheduler", "tcp://127.0.0.1:1",
                     "--html", str(tmp_path / "o.html")])
    assert stop.value.code == 2 and "--json/--html" in capsys.readouterr().err


def test_a_paging_counterexample_shows_its_entries_decoded() -> None:
    """user-bit-on-kernel-page's counterexample (proofs/broken_variants): the PTE
    its PlaceFrame writes, 0 -> 0x10005, is a user page of frame 0x10."""
    html = check_report.counterexample({
        "step": {"op": "PlaceFrame", "args": {"dir": "0x5", "virtual_addr": "0x10000"}},
        "frames": [{"frame": 16, "owner": ["FREE", "MAPPED"], "used": [False, True],
                    "rank": [0, 11]}],
        "entries": [{"entry": "PDE", "table": 5, "index": 0, "values": [0x4003, 0x4003]},
                    {"entry": "PTE", "table": 4, "index": 16, "values": [0, 0x10005]}]})
    assert "FREE → MAPPED" in html
    assert "0x00010005 (frame 0x10 RU)" in html and "(not present)" in html
    assert html.count('class="entry changed"') == 1


def test_stderr_lines_and_a_campaign_bug_are_shown() -> None:
    """A step's stderr lines stay in view (an observation with some is not
    filtered out); a campaign's bug shows its bucket and what is known of it."""
    look = {"id": 5, "request": {"id": 5, "observe": "FrameCounts", "args": {}},
            "implementation": {"id": 5, "observed": {}}, "model": {"id": 5, "observed": {}},
            "differs": False, "stderr": ["kheap: free 0xc000100c"]}
    found = {"family": "kernel", "operation": "Free", "invariant": "HEAP-2", "clause": "x",
             "found_after": 1.5, "minimal": True, "kind": "divergence", "violated": ["HEAP-2"],
             "marked": 5, "steps": [look]}
    html = oracle_report.divergence(1, {"mode": "spec"}, found)
    assert 'data-step="op"' in html and "stderr: kheap: free 0xc000100c" in html
    assert "bug: Free / HEAP-2 / x" in html and "found after: 1.5; minimal: True" in html


def test_an_undecided_run_shows_its_steps() -> None:
    """z3 unknown is not a pass: the page says so and shows the steps up to it."""
    request = {"id": 1, "manager": "PageManager", "op": "InitializePhysicalMemory",
               "args": {"mem_start": 0x8000, "mem_end": 0x30000}}
    outcome = Outcome("spec", implementation="x", unknown=OracleUnknownError(
        "z3 said unknown", [Exchange(request, {"id": 1, "result": True, "error": 0})]))
    data = outcome_data(outcome)
    assert data["status"] == "unknown" and data["undecided"]["marked"] == 1
    assert data["undecided"]["steps"][0]["model"] == {"id": 1, "result": True, "error": 0}
    html = render(report_data("replay", [data], 3))
    assert "not a pass" in html and html.count('data-marked="true"') == 1
