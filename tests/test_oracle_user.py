"""The oracle's user family (proofs/oracle/families/user.py) against the model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from proofs.machines.checks import HEAP_BLOCKS, CheckError
from proofs.oracle.families import family_named
from proofs.oracle.families.user import OLD_PROTECT_PTR, USER, user_setup, view_of
from proofs.oracle.report import describe
from proofs.oracle.run import load_trace, replay, save_trace, search, trace_of
from proofs.oracle.world import ModelWorld
from spec.abi import (
    MAP_ANONYMOUS,
    MAP_PRIVATE,
    MEM_COMMIT,
    MEM_DECOMMIT,
    MEM_RESERVE,
    PAGE_READONLY,
    PAGE_READWRITE,
)
from tests.oracle_impls import python_impl

VALIDATING_MODEL = python_impl("-m", "proofs.oracle.model_shim", "--validate")
RW = PAGE_READWRITE


def variant(name: str) -> str:
    return python_impl("-m", "proofs.oracle.model_shim", "--variant", f"user:{name}")


def op(name: str, **args: Any) -> dict[str, Any]:
    return {"manager": "SystemCalls", "op": name, "args": args}


def set_up() -> ModelWorld:
    world = ModelWorld()
    for manager, name, args in user_setup(()):
        assert world.call(manager, name, args) == ((1, 0) if name == "CreateProcess"
                                                   else (True, 0))
    return world


def call(world: ModelWorld, name: str, **args: Any) -> tuple[Any, int]:
    return world.call("SystemCalls", name, args)


def test_the_family_is_registered() -> None:
    assert family_named("user") is USER
    assert USER.managers == ("PageManager", "VirtualMemoryManager", "SystemCalls")


def test_world_replies_and_observations() -> None:
    """Results and error codes as PROTOCOL.md says; observations change nothing."""
    world = set_up()
    base, error = call(world, "SyscallVirtualAlloc", address=0, size=0x2000,
                       allocation_type=MEM_RESERVE | MEM_COMMIT, protect=RW)
    assert error == 0 and base % 0x10000 == 0
    assert call(world, "SyscallVirtualAlloc", address=0, size=0, allocation_type=MEM_COMMIT,
                protect=RW) == (0, 87)
    assert call(world, "SyscallVirtualAlloc", address="x", size=1, allocation_type=MEM_COMMIT,
                protect=RW) == (0, 87)
    assert call(world, "SyscallMunmap", addr=base + 1, length=0x1000) == (-22, 22)
    assert call(world, "SyscallMmap", addr=0, length=0x1000, prot=3, flags=0x22, fd="x",
                offset=0) == (-22, 22)
    assert call(world, "WriteUserMemory", addr=base, data="5a") == (True, 0)
    assert call(world, "WriteUserMemory", addr=base, data="zz") == (False, 87)
    assert call(world, "SyscallVirtualProtect", address=base, size=0x1000,
                new_protect=PAGE_READONLY, old_protect_ptr=OLD_PROTECT_PTR) == (1, 0)
    assert call(world, "WriteUserMemory", addr=base, data="00") == (False, 998)
    assert call(world, "ReadUserMemory", addr=base) == (True, 0)
    assert call(world, "ExecuteUserMemory", addr=base) == (False, 998)
    assert call(world, "SwitchProcess", pid=7) == (False, 6)
    before = world.observe("Processes", {})
    query = world.observe("VirtualQuery", {"pid": 1, "address": base + 0x1800})
    assert query == {"result": 28, "error": 0, "base_address": base + 0x1000,
                     "allocation_base": base, "allocation_protect": RW, "region_size": 0x1000,
                     "state": MEM_COMMIT, "protect": RW, "type": 0x20000}
    assert world.observe("VirtualQuery", {"pid": 9, "address": base})["error"] == 6
    assert world.observe("ProcessBytes", {"pid": 1, "virtual_addr": base, "length": 2}) == {
        "data": "5a00"}
    assert world.observe("ProcessBytes", {"pid": 1, "virtual_addr": 0x400000 - 1,
                                          "length": 2}) == {"data": None}
    assert world.observe("Processes", {}) == before
    (process,) = before["processes"]
    assert before["current"] == 1 and process["heap"] == call(world, "SyscallGetProcessHeap")[0]
    spaces, layouts = view_of(before)
    assert spaces[1][base >> 12].protect == PAGE_READONLY
    assert spaces[1][base >> 12].pte_present and not spaces[1][base >> 12].pte_writable


def test_a_view_with_a_pte_on_another_frame_is_refuted() -> None:
    world = set_up()
    processes = world.observe("Processes", {})
    pte = processes["processes"][0]["ptes"][0]
    pte[2] += 1
    with pytest.raises(CheckError) as failure:
        view_of(processes)
    assert tuple(failure.value.violated) == ("USR-2",)


@pytest.mark.parametrize(("mode", "examples"), [("strict", 6), ("spec", 2)])
def test_the_model_passes_both_modes(mode: str, examples: int) -> None:
    """Only the user family runs (the others have their own tests); every message validates."""
    outcome = search(VALIDATING_MODEL, mode, max_examples=examples, steps=10, seed=2,
                     time_limit=120, families=("user",))
    assert outcome.passed, describe(outcome)
    assert outcome.family == "user" and outcome.examples >= examples
    ops = {name for manager, name in outcome.coverage.operations if manager == "SystemCalls"}
    assert {"CreateProcess", "SwitchProcess", "DestroyProcess", "SyscallBrk"} <= ops


def alloc_then(*then: dict[str, Any]) -> list[dict[str, Any]]:
    """A VirtualAlloc of two committed pages at its deterministic base, then the steps."""
    world = set_up()
    base, _ = call(world, "SyscallVirtualAlloc", address=0, size=0x2000,
                   allocation_type=MEM_RESERVE | MEM_COMMIT, protect=RW)
    steps = [op("SyscallVirtualAlloc", address=0, size=0x2000,
                allocation_type=MEM_RESERVE | MEM_COMMIT, protect=RW)]
    return steps + [json.loads(json.dumps(s).replace('"BASE"', str(base))) for s in then]


def heap_move() -> list[dict[str, Any]]:
    """HeapAlloc(24), its first bytes written (as the family's front fills every
    block), then HeapReAlloc to 0x3000 bytes: the block moves."""
    world = set_up()
    heap, _ = call(world, "SyscallGetProcessHeap")
    pointer, _ = call(world, "SyscallHeapAlloc", heap=heap, flags=0, size=24)
    return [op("SyscallHeapAlloc", heap=heap, flags=0, size=24),
            op("WriteUserMemory", addr=pointer, data="0102030405"),
            op("SyscallHeapReAlloc", heap=heap, flags=0, ptr=pointer, size=0x3000),
            op("SyscallHeapSize", heap=heap, flags=0, ptr=pointer)]


def test_the_model_passes_the_heap_steps() -> None:
    assert replay(VALIDATING_MODEL, "spec", heap_move(), family="user").passed


@pytest.mark.parametrize(("name", "steps", "caught"), [
    ("realloc_forgets_contents", heap_move(), HEAP_BLOCKS),
    ("reprotect_keeps_writable",
     alloc_then(op("SyscallVirtualProtect", address="BASE", size=0x1000,
                   new_protect=PAGE_READONLY, old_protect_ptr=OLD_PROTECT_PTR)), "PROT-2"),
    ("munmap_leaks_frames",
     [op("SyscallMmap", addr=0x40000000, length=0x1000, prot=3,
         flags=MAP_PRIVATE | MAP_ANONYMOUS, fd=0xFFFFFFFF, offset=0),
      op("SyscallMunmap", addr=0x40000000, length=0x1000)], "USR-2"),
])
def test_spec_mode_catches_broken_models_by_name(name: str, steps: list[dict[str, Any]],
                                                  caught: str) -> None:
    """The model shim serving a USER_MODEL_VARIANT diverges in spec mode, by name
    (a fourth variant is the trace test's)."""
    outcome = replay(variant(name), "spec", steps, family="user")
    assert outcome.divergence is not None, describe(outcome)
    assert caught in outcome.divergence.violated, outcome.divergence.reason


def test_strict_mode_catches_a_reply_that_differs() -> None:
    """A variant whose frames stay writable answers a write to a READONLY page
    with success: strict mode names the reply."""
    steps = alloc_then(op("SyscallVirtualProtect", address="BASE", size=0x1000,
                          new_protect=PAGE_READONLY, old_protect_ptr=OLD_PROTECT_PTR))
    outcome = replay(variant("reprotect_keeps_writable"), "strict", steps, family="user")
    assert outcome.divergence is not None and outcome.divergence.violated == ("strict",)
    assert "Processes" in outcome.divergence.reason


def test_a_trace_saves_and_replays(tmp_path: Path) -> None:
    steps = alloc_then(op("SyscallVirtualFree", address="BASE", size=0x1000,
                          free_type=MEM_DECOMMIT))
    outcome = replay(variant("decommit_keeps_pte"), "spec", steps, family="user")
    assert outcome.divergence is not None
    path = tmp_path / "user.json"
    managers = ["PageManager", "VirtualMemoryManager", "SystemCalls"]
    save_trace(path, trace_of(outcome, managers))
    trace = load_trace(path)
    assert trace["family"] == "user" and trace["operations"] == steps
    again = replay(variant("decommit_keeps_pte"), "spec", trace["operations"],
                   family=trace["family"])
    assert again.divergence is not None
    assert set(again.divergence.violated) == set(outcome.divergence.violated)
    assert replay(VALIDATING_MODEL, "spec", trace["operations"], family="user").passed


def test_the_boundary_tour_visits_every_composite() -> None:
    """boundary_tour's stops are every boundary rule, with arguments each accepts."""
    import inspect

    from hypothesis.stateful import RULE_MARKER

    from proofs.oracle.families.user_boundaries import TOUR, UserBoundaryRules
    composites = {name for name, member in vars(UserBoundaryRules).items()
                  if getattr(member, RULE_MARKER, None) is not None} - {"boundary_tour"}
    assert {name for name, _ in TOUR} == composites
    for name, args in TOUR:
        inspect.signature(getattr(UserBoundaryRules, name)).bind(None, *args)
