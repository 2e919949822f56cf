"""The implementation is untrusted: every fault is a divergence, never an oracle crash."""

from __future__ import annotations

from pathlib import Path

import pytest

from proofs.oracle.__main__ import EXIT_DIVERGED, main
from proofs.oracle.report import describe
from proofs.oracle.run import replay, search
from tests.oracle_impls import misbehaving_impl, python_impl

#: A short sequence after the set-up calls (the set-up is requests 1..3 in
#: spec mode plus its observations; in strict mode each call is followed by
#: its observations).
OPS = [{"manager": "PageManager", "op": "RequestFrame",
        "args": {"is_kernel": True, "is_writeable": True}},
       {"manager": "KernelHeap", "op": "Alloc", "args": {"size": 40, "page_align": False}},
       {"manager": "PageManager", "op": "GetFreeFrameCount", "args": {}}]

FAULTS = [("crash", "crash", "signal SIGABRT"), ("exit", "crash", "exit status 3"),
          ("hang", "hang", "no reply within 1.5 s"), ("garbage", "protocol", "not JSON"),
          ("shape", "protocol", "does not validate"), ("id", "protocol", "reply id"),
          ("bool", "protocol", "returns a")]


@pytest.mark.parametrize("mode", ["strict", "spec"])
@pytest.mark.parametrize(("how", "kind", "says"), FAULTS)
def test_fault_mid_sequence(tmp_path: Path, mode: str, how: str, kind: str, says: str) -> None:
    timeout = 1.5 if how == "hang" else 20.0  # room for a loaded CI machine
    outcome = replay(misbehaving_impl(tmp_path, how, 9), mode, OPS, timeout=timeout)
    assert outcome.divergence is not None, how
    assert outcome.divergence.kind == kind
    assert says in outcome.divergence.reason
    assert outcome.divergence.exchanges, "the trace that caused it"
    assert not outcome.passed


@pytest.mark.parametrize(("how", "says"), [("no-hello", "closed its output"),
                                           ("bad-hello", "hello: not JSON")])
def test_fault_before_hello(tmp_path: Path, how: str, says: str) -> None:
    outcome = replay(misbehaving_impl(tmp_path, how, 0), "strict", OPS, timeout=20.0)
    assert outcome.divergence is not None
    assert says in outcome.divergence.reason


def test_command_not_found() -> None:
    outcome = replay("/nonexistent/implementation", "strict", OPS, timeout=1.0)
    assert outcome.divergence is not None and outcome.divergence.kind == "crash"
    assert "exit status 127" in outcome.divergence.reason


def test_cli_exit_status_and_junit(tmp_path: Path) -> None:
    junit = tmp_path / "oracle.xml"
    code = main(["--impl", misbehaving_impl(tmp_path, "crash", 20), "--mode", "strict",
                 "--max-examples", "3", "--quiet", "--trace-out", str(tmp_path / "t.json"),
                 "--junit", str(junit), "--request-timeout", "20", "--shrink-time", "5"])
    assert code == EXIT_DIVERGED
    text = junit.read_text()
    assert "<failure" in text and 'type="crash"' in text
    assert (tmp_path / "t.json").exists()


PARTIAL = '''
import json, sys
from proofs.oracle.world import ModelWorld
print(json.dumps({"protocol": 1, "implementation": "DOS only",
                  "managers": ["PageManager", "DosMemoryManager"],
                  "observations": ["FrameCounts", "McbChain", "XmsHandles", "EmsMappings",
                                   "ReadPhysical"]}), flush=True)
world = ModelWorld()
for line in sys.stdin:
    print(json.dumps(world.handle(json.loads(line))), flush=True)
'''


def test_only_what_is_declared_runs(tmp_path: Path) -> None:
    """An implementation of the DOS manager alone, without FrameBitmap: spec mode
    runs the dos family only (the kernel family needs FrameBitmap, the others
    undeclared managers) and says what it skipped; a kernel trace is skipped."""
    script = tmp_path / "partial.py"
    script.write_text(PARTIAL)
    impl = python_impl(str(script))
    outcome = search(impl, "spec", max_examples=3, steps=6, seed=1, time_limit=60,
                     shrink_seconds=2)
    assert outcome.passed, describe(outcome)
    assert {manager for manager, _ in outcome.coverage.operations} \
        == {"PageManager", "DosMemoryManager"}
    assert "family kernel (spec mode needs the observations FrameBitmap)" in outcome.skipped
    assert "manager SystemCalls" in outcome.skipped
    kernel = replay(impl, "spec", OPS)
    assert not kernel.passed and kernel.divergence is None and kernel.examples == 0
    assert any(s.startswith("family kernel") for s in kernel.skipped)
