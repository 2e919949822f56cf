"""The implementation's stderr beside the step that produced it (issue 16): in the
text report, in the trace's steps and in the JUnit report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from proofs.oracle.__main__ import EXIT_DIVERGED, main
from proofs.oracle.report import describe
from proofs.oracle.run import replay, trace_of
from tests.oracle_impls import python_impl

#: The model, saying something on stderr at the request whose op is SAY and,
#: at the request whose op is DIE, a panic message then SIGABRT (an assertion).
SAYS = r'''
import json, os, sys
from proofs.oracle.world import MANAGERS, OBSERVATIONS, ModelWorld
say, die = sys.argv[1], sys.argv[2]
print("booting", file=sys.stderr, flush=True)
print(json.dumps({"protocol": 1, "implementation": "says things", "managers": list(MANAGERS),
                  "observations": list(OBSERVATIONS)}), flush=True)
world = ModelWorld()
for line in sys.stdin:
    request = json.loads(line)
    if request.get("op") == say:
        print(f"heap: {say} at request {request['id']}", file=sys.stderr, flush=True)
    if request.get("op") == die:
        sys.stderr.write("PANIC: kheap.c:212: assertion `header->magic == HEAP_MAGIC' failed\n")
        sys.stderr.flush()
        os.abort()
    print(json.dumps(world.handle(request)), flush=True)
'''

OPS = [{"manager": "KernelHeap", "op": "Alloc", "args": {"size": 40, "page_align": False}},
       {"manager": "PageManager", "op": "RequestFrame",
        "args": {"is_kernel": True, "is_writeable": True}},
       {"manager": "KernelHeap", "op": "GetBlockSize", "args": {"p": 0xC0001000}},
       {"manager": "PageManager", "op": "GetFreeFrameCount", "args": {}}]
MANAGERS = ["PageManager", "VirtualMemoryManager", "KernelHeap"]


def impl(tmp_path: Path, say: str, die: str) -> str:
    script = tmp_path / "says.py"
    script.write_text(SAYS)
    return python_impl(str(script), say, die)


def row_of(report: str, op: str) -> int:
    lines = report.splitlines()
    return next(n for n, line in enumerate(lines) if line.lstrip().startswith("#")
                and f".{op}(" in line)


@pytest.mark.parametrize("mode", ["strict", "spec"])
def test_panic_is_shown_beside_the_step_that_crashed(tmp_path: Path, mode: str) -> None:
    outcome = replay(impl(tmp_path, "Alloc", "GetBlockSize"), mode, OPS, timeout=20.0)
    assert outcome.divergence is not None and outcome.divergence.kind == "crash"
    report = describe(outcome, MANAGERS)
    lines = report.splitlines()
    crashed = row_of(report, "GetBlockSize")
    assert "<<" in lines[crashed]
    assert "stderr: PANIC: kheap.c:212: assertion" in lines[crashed + 1], report
    said = row_of(report, "Alloc")  # the earlier step's own line, under its row
    assert lines[said + 1].strip().startswith("stderr: heap: Alloc at request"), report
    assert not any("booting" in line for line in lines[:crashed + 2]), \
        "what it said before its hello belongs to no step"
    steps = trace_of(outcome, MANAGERS)["operations"]
    assert steps[0]["stderr"] == [f"heap: Alloc at request {lines[said].split()[0][1:]}"]
    assert any("PANIC" in line for line in steps[2]["stderr"])
    assert "stderr" not in steps[1]


def test_a_reply_that_diverges_keeps_its_stderr_and_the_junit_has_it(tmp_path: Path) -> None:
    """A step whose stderr comes with a normal reply: the line is that step's; the
    JUnit report and the saved trace carry it."""
    junit, trace = tmp_path / "oracle.xml", tmp_path / "t.json"
    code = main(["--impl", impl(tmp_path, "RequestFrame", "GetFreeFrameCount"), "--mode",
                 "spec", "--max-examples", "20", "--steps", "30", "--quiet", "--trace-out",
                 str(trace), "--junit", str(junit), "--request-timeout", "20",
                 "--shrink-time", "2", "--family", "kernel", "--seed", "3"])
    assert code == EXIT_DIVERGED
    text = junit.read_text()
    assert "stderr: PANIC: kheap.c:212" in text
    steps = json.loads(trace.read_text())["operations"]
    assert any("PANIC" in line for line in steps[-1]["stderr"]), steps
    said = [s for s in steps if s.get("op") == "RequestFrame"]
    assert all(s["stderr"][0].startswith("heap: RequestFrame at request") for s in said)
