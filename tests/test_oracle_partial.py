"""Partial managers and unsupported operations (PROTOCOL.md, "Partial managers"):
a hello may declare part of a manager and single operations unsupported; an
operation answered "unsupported" at run time is skipped and counted, never a
pass nor a divergence."""

from __future__ import annotations

from pathlib import Path

import pytest

from proofs.oracle.report import describe
from proofs.oracle.run import replay, search
from proofs.oracle.world import OPERATIONS
from proofs.oracle.worlds.dos import CONVENTIONAL_OPS, EMS_OPS, MANAGER_PARTS, XMS_OPS
from proofs.oracle.worlds.dos import NAME as DOS
from tests.oracle_impls import model_impl, python_impl

#: An implementation of DOS conventional memory alone (an emulator's INT 21h
#: memory calls): no PageManager, no XMS, no EMS; its physical memory is its own.
#: argv[1]: a DOS model variant to serve broken, or "-".
CONVENTIONAL_ONLY = r'''
import json, sys
from proofs.oracle.model_shim import variant
from proofs.oracle.world import ModelWorld
from proofs.oracle.worlds.dos import CONVENTIONAL_OPS
print(json.dumps({"protocol": 1, "implementation": "DOS conventional memory only",
                  "managers": ["DosMemoryManager"], "parts": ["DosMemoryManager.conventional"],
                  "observations": ["McbChain", "ReadPhysical"]}), flush=True)
with variant(None if sys.argv[1] == "-" else sys.argv[1]):
    world = ModelWorld()
    world.call("PageManager", "InitializePhysicalMemory", {"mem_start": 0x100000,
                                                           "mem_end": 0x400000})
    for line in sys.stdin:
        request = json.loads(line)
        if "op" in request and (request["manager"] != "DosMemoryManager"
                                or request["op"] not in CONVENTIONAL_OPS):
            print(json.dumps({"id": request["id"], "unsupported": True}), flush=True)
            continue
        print(json.dumps(world.handle(request)), flush=True)
'''


def conventional_only(tmp_path: Path, broken: str = "-") -> str:
    script = tmp_path / "conventional.py"
    script.write_text(CONVENTIONAL_ONLY)
    return python_impl(str(script), broken)


def test_the_dos_parts_cover_every_operation_once() -> None:
    parts = [ops for ops, _ in MANAGER_PARTS.values()]
    assert set().union(*parts) == set(OPERATIONS[DOS])
    assert sum(map(len, parts)) == len(OPERATIONS[DOS])
    assert "Int21h" in CONVENTIONAL_OPS and "XmsCall" in XMS_OPS and "Int67h" in EMS_OPS


@pytest.mark.parametrize("mode", ["spec", "strict"])
def test_conventional_memory_alone_is_judged_on_what_it_declares(tmp_path: Path,
                                                                  mode: str) -> None:
    """No PageManager, no XMS or EMS calls nor observations: the dos family runs
    (InitializePhysicalMemory is the model's own), sends only conventional calls
    and asks only McbChain and ReadPhysical; the report lists what it left out."""
    outcome = search(conventional_only(tmp_path), mode, max_examples=6, steps=12, seed=2,
                     time_limit=90, shrink_seconds=2)
    assert outcome.passed, describe(outcome)
    sent = {op for manager, op in outcome.coverage.operations}
    assert {manager for manager, _ in outcome.coverage.operations} == {DOS}
    assert sent <= CONVENTIONAL_OPS and {"AllocateDosMemory", "Initialize"} <= sent, sent
    assert set(outcome.coverage.observations) <= {"McbChain", "ReadPhysical"}
    assert not outcome.coverage.unsupported, "nothing it does not serve was sent"
    assert f"part {DOS}.xms (not declared: its operations are unsupported)" in outcome.skipped
    assert not [s for s in outcome.skipped if s.startswith("operation")], outcome.skipped
    assert "manager PageManager" in outcome.skipped


def test_a_conventional_bug_is_still_caught_without_xms_and_ems(tmp_path: Path) -> None:
    ops = [{"manager": DOS, "op": "AllocateDosMemory", "args": {"paragraphs": 0x10}},
           {"manager": DOS, "op": "AllocateDosMemory", "args": {"paragraphs": 0x10}},
           {"manager": DOS, "op": "FreeDosMemory", "args": {"segment": 0x812}}]
    outcome = replay(conventional_only(tmp_path, "dos:free_merges_neighbours"), "spec", ops,
                     family="dos")
    assert outcome.divergence is not None, describe(outcome)
    assert {"DOS-2", "transition"} & set(outcome.divergence.violated)
    assert replay(conventional_only(tmp_path), "spec", ops, family="dos").passed


def test_an_operation_declared_unsupported_is_never_sent() -> None:
    impl = python_impl("-m", "proofs.oracle.model_shim", "--unsupported", "KernelHeap.Contract",
                       "--unsupported", "KernelHeap.Expand")
    outcome = search(impl, "strict", max_examples=30, steps=20, seed=4, time_limit=60,
                     families=("kernel",))
    assert outcome.passed, describe(outcome)
    assert ("KernelHeap", "Alloc") in outcome.coverage.operations
    assert not {op for _, op in outcome.coverage.operations} & {"Contract", "Expand"}
    assert not outcome.coverage.unsupported
    assert "operation KernelHeap.Contract (declared unsupported)" in outcome.skipped
    trace = [{"manager": "KernelHeap", "op": "Contract", "args": {"new_size": 0x1000}},
             {"manager": "KernelHeap", "op": "Alloc", "args": {"size": 8, "page_align": False}}]
    again = replay(impl, "spec", trace)
    assert again.passed and ("KernelHeap", "Contract") not in again.coverage.operations


@pytest.mark.parametrize("mode", ["spec", "strict"])
def test_an_operation_answered_unsupported_is_skipped_and_counted(mode: str) -> None:
    """SetUmbLink answered "unsupported" at run time: the sequences that reached it
    are dropped (not passes, not divergences), it is counted and not sent again;
    the search goes on with the others and the report says so."""
    impl = python_impl("-m", "proofs.oracle.model_shim", "--answer-unsupported",
                       f"{DOS}.SetUmbLink")
    outcome = search(impl, mode, max_examples=12, steps=10, seed=5, time_limit=90,
                     families=("dos",), shrink_seconds=2)
    assert outcome.divergence is None and outcome.passed, describe(outcome)
    assert outcome.coverage.unsupported == {(DOS, "SetUmbLink"): 1}
    assert f"{DOS}.SetUmbLink 1x" in describe(outcome)
    ops = [{"manager": DOS, "op": "AllocateDosMemory", "args": {"paragraphs": 0x10}},
           {"manager": DOS, "op": "SetUmbLink", "args": {"linked": True}},
           {"manager": DOS, "op": "AllocateDosMemory", "args": {"paragraphs": 0x10}}]
    once = replay(impl, mode, ops, family="dos")
    assert once.divergence is None and not once.passed, describe(once)
    assert any("SetUmbLink (answered unsupported" in s for s in once.skipped)


def test_a_hello_naming_what_the_protocol_lacks_is_refused(tmp_path: Path) -> None:
    for flag, name, says in [("--unsupported", "KernelHeap.Shrink", "not an operation"),
                             ("--parts", "KernelHeap.small", "DosMemoryManager.conventional")]:
        outcome = replay(python_impl("-m", "proofs.oracle.model_shim", flag, name), "spec", [])
        assert outcome.divergence is not None and says in outcome.divergence.reason, name
    assert replay(model_impl(), "spec", []).passed


def test_the_model_shim_serves_parts_of_the_dos_manager() -> None:
    """``--parts``: conventional memory and XMS without EMS. A trace's EMS call is
    skipped (never sent), its XMS call judged; the search sends no EMS call."""
    impl = python_impl("-m", "proofs.oracle.model_shim", "--parts",
                       f"{DOS}.conventional", "--parts", f"{DOS}.xms")
    ops = [{"manager": DOS, "op": "XmsAllocate", "args": {"kb": 4}},
           {"manager": DOS, "op": "EmsAllocate", "args": {"pages": 1}},
           {"manager": DOS, "op": "XmsLock", "args": {"handle": 1}}]
    once = replay(impl, "spec", ops, family="dos")
    assert once.passed, describe(once)
    assert (DOS, "XmsLock") in once.coverage.operations
    assert (DOS, "EmsAllocate") not in once.coverage.operations
    outcome = search(impl, "strict", max_examples=6, steps=10, seed=7, time_limit=60,
                     families=("dos",))
    assert outcome.passed, describe(outcome)
    assert not {op for _, op in outcome.coverage.operations} & EMS_OPS
    assert f"part {DOS}.ems (not declared: its operations are unsupported)" in outcome.skipped


@pytest.mark.parametrize("flag", ["--unsupported", "--answer-unsupported"])
def test_a_set_up_call_left_out_is_a_protocol_divergence(flag: str) -> None:
    impl = python_impl("-m", "proofs.oracle.model_shim", flag, "KernelHeap.Create")
    outcome = replay(impl, "spec", [])
    assert outcome.divergence is not None and outcome.divergence.kind == "protocol"
    assert "the set-up call KernelHeap.Create" in outcome.divergence.reason
    assert "kernel family cannot start" in outcome.divergence.reason
