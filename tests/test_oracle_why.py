"""The "why" of a spec-mode divergence names the invariant's text, the false clause
and the concrete objects (proofs/machines/witness.py): which block or index entry,
which field, its value and what it should be, addresses in hex."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from proofs.abstractions.kernel_heap import heap_snapshot, to_heap_state
from proofs.machines.kernel_heap import make_heap
from proofs.machines.witness import explain
from proofs.oracle.report import describe
from proofs.oracle.run import load_trace, replay
from spec import kernel_heap as kh
from tests.oracle_impls import build_c, python_impl
from tests.test_oracle_dos import BREAKING

TRACES = Path(__file__).resolve().parent / "oracle_traces"


def three_blocks() -> tuple[object, tuple[object, ...]]:
    """A heap with a hole, a live block and a hole, as its snapshot and blocks."""
    heap = make_heap()
    first = heap.Alloc(20, False)
    heap.Alloc(20, False)
    heap.Alloc(20, False)
    heap.Free(first)
    snap = heap_snapshot(heap)
    return snap, snap.blocks


def test_an_unsorted_index_names_the_entries() -> None:
    snap, _ = three_blocks()
    bad = dataclasses.replace(snap, index=tuple(reversed(snap.index)))
    lines = explain(kh.heap_1, to_heap_state(bad))
    assert lines[0].startswith("HEAP-1: the hole index is ordered by size")
    assert "for i = 0" in lines and "false: key[i] <= key[i + 1]" in lines
    big, small = bad.index[0][0], bad.index[1][0]
    assert lines[-1] == f"where key[i] = {big}, key[i + 1] = {small}, i = 0"


@pytest.mark.parametrize(("field", "value", "clause", "shown"), [
    ("back", 0xC0001000, "false: back[h] == h", "back[h] = 0xc0001000"),
    ("size", 12, "false: 20 <= size[h]", "size[h] = 12"),
    ("magic", 0xDEADBEEF, "false: 0x123890ab == magic[h]", "magic[h] = 0xdeadbeef"),
])
def test_a_damaged_block_is_named_by_its_header(field: str, value: int, clause: str,
                                                shown: str) -> None:
    snap, blocks = three_blocks()
    victim = blocks[1]
    damaged = (blocks[0], dataclasses.replace(victim, **{field: value}), *blocks[2:])
    lines = explain(kh.heap_2, to_heap_state(dataclasses.replace(snap, blocks=damaged)))
    assert f"for h = {victim.header:#x}" in lines, lines
    assert clause in lines, lines
    assert shown in lines[-1] and f"h = {victim.header:#x}" in lines[-1], lines


#: Each bug switch's saved trace, and what the why must say (the trace is fixed,
#: so the objects are too).
WHY = {
    "BUG_INDEX_UNSORTED": ["HEAP-1: the hole index is ordered by size", "for i = 0",
                           "false: key[i] <= key[i + 1]",
                           "where key[i] = 4024, key[i + 1] = 36, i = 0"],
    "BUG_STALE_FOOTER": ["HEAP-2: the blocks tile", "for h = 0xc0001000",
                         "false: back[h] == h", "where back[h] = 0xc0001ff4, h = 0xc0001000"],
    "BUG_CONTRACT_LIVE": ["for h = 0xc0001000", "false: size[h] <= end - h",
                          "where size[h] = 0x1014, end = 0xc0002000, h = 0xc0001000"],
    "BUG_ALIGN": ["HEAP-6:", "for h = 0xc0001000", "false: (h + 12)%0x1000 == 0"],
    "BUG_SPLIT_UNDERFLOW": ["for h = 0xc0001ff0", "false: size[h] <= end - h",
                            "false: key[i] == size[index[i]]"],
}


@pytest.mark.parametrize("bug", sorted(WHY))
def test_each_bug_switch_is_explained_by_its_objects(tmp_path: Path, bug: str) -> None:
    trace = load_trace(TRACES / f"{bug}.json")["operations"]
    outcome = replay(build_c(tmp_path, bug), "spec", trace)
    assert outcome.divergence is not None, describe(outcome)
    lines = [line.strip() for line in outcome.divergence.reason.splitlines()]
    for wanted in WHY[bug]:
        assert any(line.startswith(wanted) for line in lines), (wanted, lines)
    assert "why:" in describe(outcome) and WHY[bug][-1] in describe(outcome)


def test_a_dos_invariant_is_explained_too() -> None:
    variant = "ems_map_keeps_old_slot"
    impl = python_impl("-m", "proofs.oracle.model_shim", "--variant", f"dos:{variant}")
    outcome = replay(impl, "spec", BREAKING[variant], family="dos")
    assert outcome.divergence is not None and "DOS-5" in outcome.divergence.violated
    lines = [line.strip() for line in outcome.divergence.reason.splitlines()]
    assert any(line.startswith("DOS-5: each logical page of a live handle") for line in lines)
    assert any(line.startswith("false: ") and "mapped_at" in line for line in lines), lines
    assert any(line.startswith("where ") and "p = 0" in line for line in lines), lines


def test_a_dos_transition_names_the_mcb_and_field_that_differ() -> None:
    """A free that joins its neighbour at once: the why names the MCB (by segment)
    and the fields where the reported chain differs from the spec's post-state."""
    variant = "free_merges_neighbours"
    impl = python_impl("-m", "proofs.oracle.model_shim", "--variant", f"dos:{variant}")
    outcome = replay(impl, "spec", BREAKING[variant], family="dos")
    assert outcome.divergence is not None
    why = outcome.divergence.reason
    assert "transition: " in why and "post-state term" not in why, why
    assert "[m] for m = " in why and "the spec's " in why and ", reported " in why, why


def test_a_paging_invariant_is_explained_too() -> None:
    """A used count one more than the frames marked used: FRM-2, with the first
    position past the marked frames as z3's counterexample."""
    from model.page_manager import PageManager
    from model.virtual_memory import VirtualMemoryManager
    from proofs.abstractions.paging import snapshot, to_state
    from spec.catalogue import INVARIANTS

    pm = PageManager()
    pm.InitializePhysicalMemory(0x8000, 0x30000)
    vmm = VirtualMemoryManager(pm)
    vmm.InitializePaging()
    snap = snapshot(pm, vmm)
    state = to_state(dataclasses.replace(snap, used_count=snap.used_count + 1))
    frm_2 = next(inv.holds for inv in INVARIANTS if inv.id == "FRM-2")
    lines = explain(frm_2, state)
    assert lines[0] == "FRM-2: the used count equals the number of set bits."
    assert f"for i = {snap.used_count}" in lines, lines


def test_a_search_explains_the_sequence_it_shrank(tmp_path: Path) -> None:
    """The search looks for no counterexamples while it shrinks (every failing
    candidate raises); the shrunk sequence is replayed once and its why is whole."""
    from proofs.oracle.run import search

    outcome = search(build_c(tmp_path, "BUG_INDEX_UNSORTED"), "spec", max_examples=300,
                     steps=12, seed=1, time_limit=90, shrink_seconds=10)
    assert outcome.divergence is not None, describe(outcome)
    assert "false: key[i] <= key[i + 1]" in outcome.divergence.reason, outcome.divergence.reason
