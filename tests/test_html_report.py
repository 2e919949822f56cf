"""The HTML reports, looked at as a person would: rendered for a known check
run and a known divergence, opened in headless Chromium, screenshotted, and
their DOM (after the page's script ran) asserted on.

The check run: the memory pool's quick obligations, which pass, and two
broken spec variants (proofs/broken_variants), which fail with their
counterexamples: the failing ones must be listed first, each counterexample
drawn as its state. The divergence: tests/oracle_traces/BUG_STALE_FOOTER.json
replayed on the C fixture built with that bug switch (tests/oracle_impls.py):
the Free that leaves a stale footer must be the marked step, and the heap
drawn before it (4 blocks, 2 holes) and after it (3 blocks, 2 holes, one with
its footer pointing at the wrong header). A verdict on a concurrent history
(proofs/concurrency) is drawn as one lane per thread. ``MEMSPEC_SCREENSHOTS=DIR`` keeps
the screenshots there (how docs/images/ were made).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from proofs.check import main as check_main
from proofs.concurrency.__main__ import main as concurrency_main
from proofs.concurrency.history import Call, History, to_json
from proofs.concurrency.world import Op, World
from proofs.report import main as report_main
from proofs.report import render
from spec.abi import PAGE_SIZE
from tests.browser import look
from tests.oracle_impls import ROOT, build_c

REGISTRY = textwrap.dedent('''
    from proofs import memory_pool
    from proofs.broken_variants import VARIANTS, catch
    from proofs.obligation import Obligation

    def _caught(name):
        variant = next(v for v in VARIANTS if v.name == name)
        return lambda profile: catch(variant)

    def obligations():
        yield from memory_pool.obligations()
        yield Obligation("broken.AbsorbRight.HEAP-2", "kernel_heap", "AbsorbRight", "HEAP-2",
                         _caught("stale-footer-after-unify"))
        yield Obligation("broken.FreeFrame.FRM-2", "page_manager", "FreeFrame", "FRM-2",
                         _caught("free-keeps-count"))
''')
FAILING = {"broken.AbsorbRight.HEAP-2", "broken.FreeFrame.FRM-2"}


def _keep(screenshot: Path, name: str) -> None:
    folder = os.environ.get("MEMSPEC_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(screenshot, Path(folder) / name)


@pytest.fixture(scope="module")
def check_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The JSON and HTML reports of the check run (exit 1: two failures)."""
    folder = tmp_path_factory.mktemp("check_html")
    (folder / "html_registry").mkdir()
    (folder / "html_registry" / "__init__.py").write_text("")
    (folder / "html_registry" / "subset.py").write_text(REGISTRY)
    sys.path.insert(0, str(folder))
    try:
        code = check_main(["--registry", "html_registry", "--in-process", "--no-cache",
                           "--profile", "quick", "--json", str(folder / "check.json"),
                           "--html", str(folder / "check.html")])
    finally:
        sys.path.remove(str(folder))
    assert code == 1
    return folder / "check.json", folder / "check.html"


def test_the_check_report_lists_failures_first_and_draws_counterexamples(
        check_run: tuple[Path, Path], tmp_path: Path) -> None:
    data = json.loads(check_run[0].read_text())
    counterexample = next(o["counterexample"] for o in data["obligations"]
                          if o["id"] == "broken.AbsorbRight.HEAP-2")
    dom = look(check_run[1], tmp_path / "check.png")
    _keep(tmp_path / "check.png", "html-check.png")
    rows = dom.first("table").first("tbody").all("tr", "obligation")
    assert len(rows) == len(data["obligations"]) > len(FAILING)
    ids = [row.first("td").content() for row in rows]
    assert set(ids[:len(FAILING)]) == FAILING, ids[:4]
    assert all("failing" in row.classes for row in rows[:len(FAILING)])
    assert not any("failing" in row.classes for row in rows[len(FAILING):])
    heap = rows[ids.index("broken.AbsorbRight.HEAP-2")].first("svg", "heap")
    assert len(heap.all("g", "block")) == len(counterexample["heap"]["blocks"]) == 9
    assert len(heap.all("g", "hole")) == 4 and len(heap.all("g", "index-entry")) == 4
    frames = rows[ids.index("broken.FreeFrame.FRM-2")].first("table", "frames")
    assert "HELD → FREE" in frames.content()
    managers = {g.attrs["data-label"] for g in dom.first("svg", "chart").all("g", "bar")}
    assert managers == {"memory_pool", "kernel_heap", "page_manager"}
    assert dom.first("form", "filters").first("output").content() == f"{len(rows)} shown"


def test_an_old_check_report_renders_the_same(check_run: tuple[Path, Path],
                                              tmp_path: Path) -> None:
    """``memspec report FILE.json --html OUT`` renders the JSON the run wrote into
    the page the run wrote."""
    out = tmp_path / "again.html"
    assert report_main([str(check_run[0]), "--html", str(out)]) == 0
    assert out.read_text() == check_run[1].read_text()
    with pytest.raises(ValueError):
        render({"neither": "kind"})


def test_the_oracle_report_marks_the_step_and_draws_the_heap(tmp_path: Path) -> None:
    binary = build_c(tmp_path, "BUG_STALE_FOOTER")
    trace = ROOT / "tests" / "oracle_traces" / "BUG_STALE_FOOTER.json"
    done = subprocess.run(
        [sys.executable, "-m", "proofs.oracle", "replay", str(trace), "--impl", binary,
         "--mode", "spec", "--json", str(tmp_path / "oracle.json"),
         "--html", str(tmp_path / "oracle.html")],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    data = json.loads((tmp_path / "oracle.json").read_text())
    (divergence,) = data["modes"][0]["divergences"]
    assert divergence["violated"] == ["HEAP-2"]
    dom = look(tmp_path / "oracle.html", tmp_path / "oracle.png")
    _keep(tmp_path / "oracle.png", "html-oracle.png")
    marked = [row for row in dom.all("tr") if row.attrs.get("data-marked") == "true"]
    assert len(marked) == 1 and "marked" in marked[0].classes
    assert marked[0].attrs["id"] == f"step-{divergence['marked']}"
    assert "KernelHeap.Free(" in marked[0].content()
    (heaps,) = [s for s in dom.all("section", "state-part") if s.attrs["data-part"] == "heap"]
    before = heaps.first("div", "before").first("svg", "heap")
    after = heaps.first("div", "after").first("svg", "heap")
    assert (len(before.all("g", "block")), len(before.all("g", "hole"))) == (4, 2)
    assert (len(after.all("g", "block")), len(after.all("g", "hole"))) == (3, 2)
    assert len(after.all("g", "damaged")) == 1 and not before.all("g", "damaged")
    model = heaps.first("div", "model-after").first("svg", "heap")
    assert not model.all("g", "damaged")
    shown = dom.first("form", "filters").first("output").content()
    operations = sum(1 for s in divergence["steps"] if "op" in s["request"])
    assert shown == f"{operations} shown"  # the script ran: observations filtered out


def test_a_concurrent_history_is_drawn_as_lanes(tmp_path: Path) -> None:
    """Two RequestFrame calls answering one frame while a third thread's FreeFrame
    is pending: one lane per thread, a box per call (the pending one open), the
    call that could not come next marked in red and in the table."""
    f0 = World().pm.FirstFreeFrame()
    request = Op("PageManager", "RequestFrame", (True, True))
    history = History((Call(1, request, 0.0, 3.0, (f0, 0)), Call(2, request, 1.0, 4.0, (f0, 0)),
                       Call(3, Op("PageManager", "FreeFrame", (f0 + PAGE_SIZE,)), 2.0)))
    (tmp_path / "history.json").write_text(json.dumps(to_json(history)))
    assert concurrency_main([str(tmp_path / "history.json"), "--json",
                             str(tmp_path / "verdict.json"), "--html",
                             str(tmp_path / "verdict.html")]) == 1
    again = tmp_path / "again.html"
    assert report_main([str(tmp_path / "verdict.json"), "--html", str(again)]) == 0
    assert again.read_text() == (tmp_path / "verdict.html").read_text()
    dom = look(tmp_path / "verdict.html", tmp_path / "lanes.png")
    _keep(tmp_path / "lanes.png", "html-lanes.png")
    drawing = dom.first("svg", "lanes")
    assert [g.attrs["data-thread"] for g in drawing.all("g", "lane")] == ["1", "2", "3"]
    boxes = drawing.all("g", "call")
    assert [g.attrs["data-call"] for g in boxes] == ["0", "1", "2"]
    assert [g.attrs["data-call"] for g in drawing.all("g", "blocked")] == ["1"]
    assert [g.attrs["data-call"] for g in drawing.all("g", "pending")] == ["2"]
    marked = dom.first("table").first("tbody").all("tr", "marked")
    assert [row.attrs["data-call"] for row in marked] == ["1"]
    assert hex(f0 + PAGE_SIZE) in marked[0].content()  # the model's answer there
    assert "not linearizable" in dom.first("span", "badge").content()
