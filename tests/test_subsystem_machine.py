"""proofs/machines/memory_subsystem.py: the abstraction, the per-step checks, and the
machine, which passes on the model and catches each broken model by name."""

from __future__ import annotations

import dataclasses
from typing import Any
from unittest import mock

import pytest
import z3

from model.memory_interface import MemoryInterface
from model.memory_subsystem import MemorySubsystem
from proofs.machines.checks import CheckError
from proofs.machines.memory_subsystem import (
    BOOT,
    KIND,
    SYSTEM_MODEL_VARIANTS,
    SystemHarness,
    SystemSnapshot,
    abstract_system,
    obligations,
    run_subsystem_machine,
    runs,
    system_snapshot,
)
from proofs.machines.runner import CheckedMachine, ModelVariant
from proofs.obligation import Kind
from spec import memory_subsystem as sp
from spec.abi import KERNEL_STACK_AREA_START, NO_FRAME, PAGE_AREA_START, ErrorCode

E = ErrorCode


def error(obj: Any) -> ErrorCode:
    """last_error, read through a call (no narrowing between asserts)."""
    code: ErrorCode = obj.last_error
    return code
PAGE = 0x1000


def value(term: Any) -> Any:
    simple = z3.simplify(term)
    return simple.as_long() if z3.is_int_value(simple) else z3.is_true(simple)


#: One verdict cache for the module: every boot from 1 MB is checked once.
MACHINE: type[CheckedMachine] = type("M", (CheckedMachine,), {"cache": {}})


def harness(boot: bool = True) -> SystemHarness:
    h = SystemHarness(MACHINE)
    if boot:
        assert h.call(BOOT, 0x100000) is True
    return h


def test_runs() -> None:
    assert runs(((0, 1), (1, 1), (2, 3), (4, 3), (5, 3))) == [(0, 2, 1), (2, 3, 3), (4, 6, 3)]
    assert runs(()) == []


def test_abstraction_after_boot() -> None:
    h = harness()
    snap = system_snapshot(h.ms)
    heap_frame = next(f for f, k in snap.owners if k == KIND["heap"])
    assert (snap.booted, snap.nframes, snap.total) == (True, 2048, 2048)
    assert snap.used_count == len(snap.used) == h.ms.pageman.frames.used == 2048 - snap.free_count
    assert [f for f, _ in snap.owners] == list(snap.used)
    s = abstract_system(h.ms)
    assert [value(s.owner[f]) for f in (0, 0xFF, 0x13F, heap_frame, 2047, 5000, -1)] == [
        sp.RESERVED] * 3 + [KIND["heap"], sp.NONE, sp.NONE, sp.NONE]
    assert [value(s.used[f]) for f in (0, heap_frame, 2047)] == [True, True, False]
    assert (value(s.unrank[value(s.rank[heap_frame])]), value(s.low_end)) == (heap_frame, 256)
    assert error(h.ms) == E.ERROR_SUCCESS  # the observation keeps last_error


def test_boot_refusals() -> None:
    h = harness(boot=False)
    assert h.call(BOOT, 0x80000) is False and error(h.ms) == E.ERROR_INVALID_PARAMETER
    assert h.call(BOOT, None) is False and error(h.ms) == E.ERROR_INVALID_PARAMETER
    assert h.call(BOOT, 0x3D0000) is False  # the arena passes the identity region
    assert h.call("AllocateKernelStack") == 0 and error(h.ms) == E.ERROR_NOT_READY
    assert h.call("GetTotalMemory") == 0 and error(h.ms) == E.ERROR_NOT_READY
    assert h.call(BOOT, 0x1F0123) is True
    assert h.call(BOOT, 0x1F0123) is False and error(h.ms) == E.ERROR_ALREADY_INITIALIZED
    assert h.call(BOOT, "x") is False and error(h.ms) == E.ERROR_ALREADY_INITIALIZED


def test_every_call_is_checked_against_the_frame_steps() -> None:
    h = harness()
    iface = h.iface
    stack = h.call("AllocateKernelStack")
    assert stack == KERNEL_STACK_AREA_START + 3 * PAGE
    h.write(0, 30, b"\x01\x02\x03")
    assert h.call("FreeKernelStack", stack) is True and h.regions == {}
    assert h.call("FreeKernelStack", stack) is False
    assert error(h.ms) == E.ERROR_INVALID_ADDRESS
    p = h.call("AllocateAlignedMemory", 40, 64)
    assert p % 64 == 0 and h.call("AllocateMemory", 0) != 0
    h.write(0, 5, b"abc")
    page = h.call("GetFreePage")
    assert page == PAGE_AREA_START
    held = h.call("RequestFrame", True, True)
    assert held != NO_FRAME
    assert h.call("MapPage", 0xF0000000, held, True, True) is True  # handed over
    assert h.call("MapPage", 0xF0001000, 0x7FF000, True, False) is True  # a free frame
    assert h.call("MapPage", 0xF0002000, 0x10000, True, True) is False
    assert error(iface) == E.ERROR_BUSY
    assert h.call("MapPage", 0xF0002000, 0x900000, True, True) is False
    assert error(iface) == E.ERROR_INVALID_ADDRESS
    assert h.call("MapPage", 0xC0001000, 0x7FE000, True, True) is False
    assert error(iface) == E.ERROR_ACCESS_DENIED
    assert h.call("MapPage", 0xF0000000, 0x7FE000, True, True) is False
    assert error(iface) == E.ERROR_ALREADY_EXISTS
    assert h.call("UnmapPage", 0xF0000000) is True and h.mapped == [0xF0001000]
    assert h.call("ReleasePage", page) is True
    assert h.call("FreeMemory", p) is True
    assert h.call("FreeMemory", p) is False
    freed = h.call("RequestFrame", True, True)
    assert h.call("FreeFrame", freed) is True and h.held == []
    assert h.call("GetUsedPhysicalMemory") == h.ms.pageman.frames.used * PAGE
    assert h.machine.outcomes["MapPage SUCCESS"] == 2


def _snapshot(owners: dict[int, str]) -> SystemSnapshot:
    frames = tuple(sorted(owners))
    return SystemSnapshot(True, 2048, frames, tuple((f, KIND[owners[f]]) for f in frames),
                          2048, len(frames), 2048 - len(frames))


@pytest.mark.parametrize(("name", "pre", "post", "reply", "code", "expected"), [
    ("AllocateMemory", {}, {0x400: "heap"}, 0xC0000010, E.ERROR_SUCCESS, ()),
    ("MapPage", {0x400: "held"}, {0x400: "mapped"}, True, E.ERROR_SUCCESS, ()),
    ("AllocateMemory", {0x400: "held"}, {0x400: "heap"}, 0xC0000010, E.ERROR_SUCCESS,
     ("frame 0x400 changed from held to heap", "AllocateMemory gives back frame 0x400 (held)")),
    ("FreeMemory", {0x400: "stack"}, {}, True, E.ERROR_SUCCESS,
     ("FreeMemory gives back frame 0x400 (stack)",)),
    ("GetFreePage", {}, {0x400: "page"}, 0, E.ERROR_NOT_ENOUGH_MEMORY,
     ("GetFreePage takes frame 0x400 (page)",)),
    ("GetFreePage", {}, {}, 0, E.ERROR_SUCCESS, ("returned 0 with ERROR_SUCCESS",)),
])
def test_transition_of_owner_maps(name: str, pre: dict[int, str], post: dict[int, str],
                                  reply: Any, code: ErrorCode, expected: tuple[str, ...]) -> None:
    wrong = harness(boot=False).transition(name, (0,), _snapshot(pre), _snapshot(post), reply,
                                           code)
    assert wrong == expected


def test_counts_must_follow_the_steps() -> None:
    pre = _snapshot({})
    post = dataclasses.replace(_snapshot({0x400: "heap"}), used_count=0, free_count=2048)
    wrong = harness(boot=False).transition("AllocateMemory", (8,), pre, post, 0xC0000010,
                                           E.ERROR_SUCCESS)
    assert wrong == ("differs from the spec steps on used_count, free_count",)


_ALLOCATE_STACK = MemorySubsystem.AllocateKernelStack


def _stack_fails_after_mapping(self: MemorySubsystem) -> int:
    """Broken: maps a stack, then reports that memory ran out."""
    _ALLOCATE_STACK(self)
    return self._fail(E.ERROR_NOT_ENOUGH_MEMORY, 0)


def test_a_failed_call_that_changes_state_is_caught() -> None:
    h = harness()
    with mock.patch.object(MemorySubsystem, "AllocateKernelStack", _stack_fails_after_mapping), \
            pytest.raises(CheckError) as failure:
        h.call("AllocateKernelStack")
    assert set(failure.value.violated) == {"transition", "unchanged"}


def test_damaged_contents_are_caught() -> None:
    h = harness()
    first, second = h.call("AllocateMemory", 16), h.call("AllocateMemory", 16)
    h.write(1, 0, b"\x55")
    assert bytes(h.regions[second][:1]) == b"\x55"
    free_memory = MemoryInterface.FreeMemory

    def free_scribbling(self: MemoryInterface, ptr: int) -> bool:
        """Broken: frees ptr and writes a byte into the next block's payload."""
        h.ms.virmem.WriteVirtualMemory(h.kernel, second, b"\xee", False)
        return free_memory(self, ptr)

    with mock.patch.object(MemoryInterface, "FreeMemory", free_scribbling), \
            pytest.raises(CheckError) as failure:
        h.call("FreeMemory", first)
    assert failure.value.violated == ("contents",)


def test_unpatched_machine_passes() -> None:
    verdict = run_subsystem_machine("quick")
    assert verdict.kind == Kind.NO_COUNTEREXAMPLE, verdict.detail
    assert verdict.summary == f"no counterexample in {verdict.examples} examples"


@pytest.mark.parametrize("variant", SYSTEM_MODEL_VARIANTS, ids=lambda v: v.name)
def test_broken_models_are_caught_by_name(variant: ModelVariant) -> None:
    verdict = run_subsystem_machine("teeth", variant.patches, shrink_seconds=3)
    assert verdict.kind == Kind.COUNTEREXAMPLE, verdict.summary
    assert set(variant.catches) & set(verdict.violated), verdict.detail
    assert "state = SystemMachine()" in verdict.detail


def test_obligation() -> None:
    (obligation,) = obligations()
    assert (obligation.id, obligation.manager, obligation.operation, obligation.invariant) == (
        "memory_subsystem.machine.refinement", "memory_subsystem", "all", "refinement")
