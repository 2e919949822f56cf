"""The DOS memory machines (proofs/machines/dos_memory.py): the abstraction, single checks, the
quick run, and the broken models caught by name."""

from __future__ import annotations

from collections import Counter
from unittest import mock

import pytest

from model.dos_memory import DosMemoryManager
from model.dos_physical import write_physical
from proofs.machines.checks import TRANSITION, UNCHANGED, CheckError
from proofs.machines.dos_memory import (
    CORRUPTION,
    DOS_MODEL_VARIANTS,
    VARIANT_MACHINES,
    DosHarness,
    dos_view,
    obligations,
    run_dos_machine,
    to_dos_state,
)
from proofs.machines.runner import CheckedMachine, ModelVariant
from proofs.obligation import Kind
from spec.abi import HMA_START
from spec.dos_memory import violated


def harness(umbs: bool = True) -> DosHarness:
    return DosHarness(type("M", (CheckedMachine,), {"cache": {}, "outcomes": Counter()}), umbs)


def busy() -> DosHarness:
    """Blocks low and high, XMS blocks (one locked), EMS pages mapped and written."""
    h = harness()
    first = h.call("AllocateDosMemory", 0x100)
    h.call("AllocateDosMemory", 0x20)
    assert h.call("FreeDosMemory", first)
    assert h.call("SetUmbLink", True) and h.call("SetAllocationStrategy", 0x80)
    assert h.call("AllocateDosMemory", 0x40) > 0xC800
    assert h.call("XmsAllocate", 4) == 1 and h.call("XmsAllocate", 8) == 2
    assert h.call("XmsLock", 2)
    assert h.call("EmsAllocate", 2) == 1
    assert h.call("EmsMap", 1, 1, 0)
    return h


def test_the_abstraction_of_a_busy_model_keeps_every_invariant() -> None:
    h = busy()
    assert violated(to_dos_state(dos_view(h.dos))) == []


def test_a_damaged_chain_reaches_the_invariants() -> None:
    """The abstraction reads MCBs from memory: a block past A000h is DOS-1."""
    h = harness(umbs=False)
    segment = h.call("AllocateDosMemory", 0x10)
    write_physical(h.dos.pageman, (segment - 1) * 16 + 3, (0xA000 - 0x800).to_bytes(2, "little"))
    assert "DOS-1" in violated(to_dos_state(dos_view(h.dos)))


def test_grow_failure_is_checked_against_the_spec() -> None:
    """AH=4Ah too big: error 8, largest_available is the spec's result, the block grown."""
    h = harness()
    a = h.call("AllocateDosMemory", 0x10)
    b = h.call("AllocateDosMemory", 0x10)
    h.call("AllocateDosMemory", 0x10)
    assert h.call("FreeDosMemory", b)
    assert not h.call("ResizeDosMemory", a, 0x30)
    assert h.dos.largest_available == 0x21
    assert dos_view(h.dos)[0][0].size == 0x21


def test_contents_through_ems_remapping_and_xms_moves() -> None:
    h = busy()
    h.poke(0xE0000 + 0x10, b"expanded")
    h.ems[(1, 1)] = (0x10, b"expanded")
    h.call("EmsMap", 1, 1, 3)  # the page moves to slot 3 with its bytes
    h.call("EmsMap", 1, 0, 3)
    h.call("EmsMap", 1, 1, 2)
    assert h.dos.ems.slots == [None, None, (1, 1), (1, 0)]
    assert h.call("XmsMove", 8, 0, 0xE800 << 16 | 0x10, 1, 6)  # from the frame into XMS
    assert bytes(h.xms[1][6:14]) == b"expanded"
    assert h.call("XmsMove", 8, 1, 6, 2, 0)  # XMS to XMS: the shadow follows
    assert bytes(h.xms[2][:8]) == b"expanded"


def test_hma_moves_are_checked_against_the_spec_and_read_back() -> None:
    """XMS 0Bh handle 0 into the HMA (FFFF:0010) and out again, through the
    harness: the spec's step agrees, the bytes come back; 2 bytes past 10FFF0h
    is A7h with nothing changed."""
    h = busy()
    h.poke(0xE0000, b"hmabytes")
    h.ems[(1, 1)] = (0, b"hmabytes")
    assert h.call("XmsMove", 8, 0, 0xE000 << 16, 0, 0xFFFF_0010)
    assert h.dos.xms.hma_memory.read(HMA_START, 8) == b"hmabytes"
    assert h.call("XmsMove", 8, 0, 0xFFFF_0010, 1, 0)
    assert bytes(h.xms[1][:8]) == h.dos.xms.hma_memory.read(HMA_START, 8)
    assert not h.call("XmsMove", 18, 1, 0, 0, 0xFFFF_FFF0)


def test_a_failed_call_that_changes_the_world_is_reported() -> None:
    h = harness()
    segment = h.call("AllocateDosMemory", 4)

    def scribble(self: DosMemoryManager, segment: int) -> bool:
        write_physical(self.pageman, segment * 16, b"x")
        self.last_error = 9
        return False

    with mock.patch.object(DosMemoryManager, "FreeDosMemory", scribble), \
            pytest.raises(CheckError) as failure:
        h.call("FreeDosMemory", segment)
    assert {UNCHANGED, TRANSITION} <= set(failure.value.violated)


def test_corruption_is_error_7_and_restored() -> None:
    h = harness()
    segment = h.call("AllocateDosMemory", 4)
    before = dos_view(h.dos)
    for name, args in (("AllocateDosMemory", (1,)), ("FreeDosMemory", (segment,)),
                       ("ResizeDosMemory", (segment, 1)), ("SetUmbLink", (True,))):
        h.corrupt(0x800, 0x00, name, *args)
    assert dos_view(h.dos) == before
    with mock.patch.object(DosMemoryManager, "walk", next(
            v for v in DOS_MODEL_VARIANTS if v.name == "walk_follows_bad_type"
    ).patches["DosMemoryManager.walk"]), pytest.raises(CheckError) as failure:
        h.corrupt(0x800, 0x00, "AllocateDosMemory", 1)
    assert failure.value.violated == (CORRUPTION,)


def test_the_model_refines_the_spec() -> None:
    verdict = run_dos_machine("quick", max_examples=5)
    assert verdict.kind == Kind.NO_COUNTEREXAMPLE, verdict.detail
    assert verdict.examples is not None and verdict.examples >= 6


@pytest.mark.parametrize("variant", DOS_MODEL_VARIANTS, ids=lambda v: v.name)
def test_broken_models_are_caught_by_name(variant: ModelVariant) -> None:
    verdict = run_dos_machine("teeth", variant.patches, shrink_seconds=2,
                              machines=VARIANT_MACHINES[variant.name])
    assert verdict.kind == Kind.COUNTEREXAMPLE, verdict.summary
    assert set(variant.catches) & set(verdict.violated), verdict.detail


def test_the_obligation_is_registered() -> None:
    (obligation,) = obligations()
    assert (obligation.id, obligation.manager, obligation.invariant) == (
        "dos_memory.machine.refinement", "dos_memory", "refinement")
