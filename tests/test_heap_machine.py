"""proofs/machines/kernel_heap.py: the KernelHeap refinement machine passes on the model,
checks each call against the spec's composite of steps, and catches broken
models by name."""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest

from model.kernel_heap import KernelHeap
from proofs.abstractions.kernel_heap import heap_snapshot
from proofs.machines.checks import CheckError
from proofs.machines.kernel_heap import (
    CONTENTS,
    END,
    HEAP_MODEL_VARIANTS,
    START,
    TRANSITION,
    UNCHANGED,
    HeapHarness,
    Invariants,
    obligations,
    run_heap_machine,
)
from proofs.obligation import Kind
from spec.abi import HEADER_SIZE, MIN_BLOCK, ErrorCode

E = ErrorCode
DATA = START + 0x1000  # 16 index entries round up to one page
_ALLOC, _FREE, _CONTRACT = KernelHeap.Alloc, KernelHeap.Free, KernelHeap.Contract


@pytest.fixture(scope="module")
def checker() -> Invariants:
    return Invariants()


@pytest.fixture
def h(checker: Invariants) -> HeapHarness:
    return HeapHarness(checker)


def steps(h: HeapHarness) -> list[str]:
    return [step.split("(")[0] for step in h.trace]


def test_alloc_free_expand_contract_are_the_specs_steps(h: HeapHarness) -> None:
    a = h.call("Alloc", 10, False)
    assert (a, steps(h)) == (DATA + HEADER_SIZE, ["Take", "CarveTail"])
    b = h.call("Alloc", 100, True)  # the gap before the page becomes a hole
    assert (b, steps(h)) == (START + 0x2000, ["ExpandHole", "Take", "CarveHead", "CarveTail"])
    c = h.call("Alloc", 0, False)  # taken from the gap: the first fit in the index
    assert (c, steps(h)) == (a + 10 + MIN_BLOCK, ["Take", "CarveTail"])
    h.write(a, 3, b"\x01\x02\x03")
    assert h.written[a] == {a + 3: 1, a + 4: 2, a + 5: 3}
    assert h.call("Free", c) is True  # the rest of the gap follows it
    assert steps(h) == ["AbsorbRight", "Release"]
    assert h.call("Free", b) is True  # the gap before it, the hole after it, the end
    assert steps(h) == ["AbsorbRight", "AbsorbLeft", "ShrinkHole"]
    assert h.snap.end == END
    assert h.call("Expand", 0x5001) is True
    assert (h.snap.end, steps(h)) == (START + 0x6000, ["ExpandHole"])
    assert h.call("Contract", 0) == 0x2000
    assert (h.snap.end, steps(h)) == (END, ["ShrinkHole"])
    assert h.call("FindSmallestHole", 64, False) == 0
    assert h.call("FindSmallestHole", 0x1000, False) == -1
    assert h.call("Free", a) is True
    assert steps(h) == ["AbsorbRight", "Release"]
    assert h.live == {} and h.freed == [c, b, a]


def test_growth_after_a_live_last_block_is_a_new_hole(h: HeapHarness) -> None:
    p = h.call("Alloc", 0x1000 - MIN_BLOCK, False)  # the whole data page
    assert steps(h) == ["Take"]
    assert h.call("Expand", 0x3000) is True
    assert steps(h) == ["ExpandNewHole"]
    assert h.call("Contract", 0) == 0x2000
    assert steps(h) == ["DropHole"]
    h.call("Alloc", 0, False)
    assert steps(h) == ["ExpandNewHole", "Take", "CarveTail"]
    assert h.call("Free", p) is True
    assert steps(h) == ["Release"]


def test_failed_calls_are_checked_unchanged(h: HeapHarness) -> None:
    p = h.call("Alloc", 5, False)
    before = heap_snapshot(h.heap)
    for name, args, code in [("Free", (p + 1,), E.ERROR_INVALID_ADDRESS),
                             ("Free", (DATA + 0x100,), E.ERROR_INVALID_ADDRESS),
                             ("Alloc", (-1, False), E.ERROR_INVALID_PARAMETER),
                             ("Alloc", (0x20000, False), E.ERROR_NOT_ENOUGH_MEMORY),
                             ("Expand", (0x21000,), E.ERROR_INVALID_PARAMETER),
                             ("Contract", (0x3000,), E.ERROR_INVALID_PARAMETER),
                             ("FindSmallestHole", (-1, False), E.ERROR_INVALID_PARAMETER)]:
        h.call(name, *args)
        assert h.heap.last_error == code, name
    assert h.call("Free", p) is True
    assert h.call("Free", p) is False  # a double free: a hole's payload
    assert h.heap.last_error == E.ERROR_INVALID_BLOCK
    assert heap_snapshot(h.heap) != before and h.live == {}


def test_a_failed_call_that_changes_the_heap_is_named_unchanged(h: HeapHarness) -> None:
    def contract(self: KernelHeap, new_size: int) -> int:
        _ALLOC(self, 0, False)
        return self._fail(E.ERROR_INVALID_PARAMETER, 0)

    with mock.patch.object(KernelHeap, "Contract", contract), \
            pytest.raises(CheckError) as caught:
        h.call("Contract", 0)
    assert caught.value.violated == (UNCHANGED,)


def test_a_wrong_result_or_state_is_named_transition(h: HeapHarness) -> None:
    def contract(self: KernelHeap, new_size: int) -> int:
        return _CONTRACT(self, new_size) + 0x1000  # the length is wrong

    with mock.patch.object(KernelHeap, "Contract", contract), \
            pytest.raises(CheckError) as caught:
        h.call("Contract", 0)
    assert caught.value.violated == (TRANSITION,)

    def alloc(self: KernelHeap, size: int, page_align: bool = False) -> int:
        p = _ALLOC(self, size, page_align)
        self.allocated[p - HEADER_SIZE] = self.allocated[p - HEADER_SIZE]._replace(
            page_align=False)  # a page-aligned block recorded as not: HEAP-6 still holds
        return p

    with mock.patch.object(KernelHeap, "Alloc", alloc), pytest.raises(CheckError) as caught:
        h.call("Alloc", 0, True)
    assert caught.value.violated == (TRANSITION,)
    assert "on ['aligned']" in str(caught.value)


def test_lost_payload_bytes_are_named_contents(h: HeapHarness) -> None:
    p = h.call("Alloc", 8, False)
    q = h.call("Alloc", 8, False)
    h.write(p, 0, b"\x07")

    def free(self: KernelHeap, pointer: int) -> bool:
        self._write(p, b"\x00")
        return _FREE(self, pointer)

    with mock.patch.object(KernelHeap, "Free", free), pytest.raises(CheckError) as caught:
        h.call("Free", q)
    assert caught.value.violated == (CONTENTS,)


def test_the_unpatched_model_passes() -> None:
    verdict = run_heap_machine("quick", max_examples=10)
    assert verdict.kind is Kind.NO_COUNTEREXAMPLE, verdict.detail
    assert verdict.summary == f"no counterexample in {verdict.examples} examples"
    assert verdict.examples is not None and verdict.examples >= 10
    assert verdict.violated == ()


@pytest.mark.parametrize("variant", HEAP_MODEL_VARIANTS, ids=lambda v: v.name)
def test_broken_models_are_caught_by_name(variant: Any) -> None:
    verdict = run_heap_machine("quick", variant.patches, max_examples=20, shrink=False)
    assert verdict.kind is Kind.COUNTEREXAMPLE, verdict.summary
    assert set(variant.catches) & set(verdict.violated), verdict.detail
    assert "state = HeapMachine()" in verdict.detail
    assert KernelHeap.Free is _FREE and KernelHeap.Alloc is _ALLOC  # restored


def test_a_crash_of_the_harness_is_an_error_not_a_verdict() -> None:
    def alloc(self: KernelHeap, size: int, page_align: bool = False) -> int:
        raise RuntimeError("boom")

    verdict = run_heap_machine("quick", {"KernelHeap.Alloc": alloc}, shrink=False)
    assert verdict.kind is Kind.ERROR and "boom" in verdict.detail


def test_one_obligation() -> None:
    [obligation] = obligations()
    assert (obligation.id, obligation.manager, obligation.operation, obligation.invariant) == (
        "kernel_heap.machine.refinement", "kernel_heap", "all", "refinement")
