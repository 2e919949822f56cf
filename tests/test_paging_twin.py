"""The paging invariants' Python twins agree with their z3 forms (the source of truth).

Hypothesis builds small model states (a PageManager and VMM on up to 48
frames, paging on or off, held frames, kernel and user pages, a second
directory), takes their snapshot and then corrupts it by a few edits of its
own drawing (an owner, a bitmap bit, the used count, nframes, a PDE or a PTE
with chosen flags, the directories); on every snapshot the twins
(:func:`proofs.abstractions.paging_twin.violated`) must name exactly the
invariants z3 refutes on :func:`proofs.abstractions.paging.to_state` of it;
and FirstFreeFrame's ``assume`` agrees with its twin
(:func:`proofs.abstractions.page_manager_twin.lowest_free`) at every frame. The
first test makes 30 examples, 60 with MEMSPEC_SLOW=1 (tests/budget.py).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model.page_manager import PageManager
from model.virtual_memory import VirtualMemoryManager
from proofs.abstractions.page_manager_twin import lowest_free
from proofs.abstractions.paging import Snapshot, snapshot, to_state
from proofs.abstractions.paging_twin import guarded, violated
from proofs.machines.checks import decide
from proofs.machines.paging_expect import spec_step
from proofs.machines.paging_queries import InvariantChecker, Stats
from spec.abi import PAGE_SIZE
from tests.budget import examples

CHECKER = InvariantChecker(Stats())
FLAGS = st.sampled_from((0, 1, 3, 5, 7, 0x21, 0x67))


@st.composite
def model_states(draw: Any) -> Snapshot:
    """A valid state of the model, reached through its own calls."""
    nframes = draw(st.integers(16, 48))
    pm = PageManager()
    vm = VirtualMemoryManager(pm)
    assert pm.InitializePhysicalMemory(0x8000, nframes * PAGE_SIZE)
    if draw(st.booleans()):
        vm.InitializePaging()
        directory = vm.kernel_directory
        assert directory is not None
        for page in draw(st.lists(st.integers(0, 6), max_size=4)):
            vm.AllocPage(directory, 0xC0000000 + page * PAGE_SIZE, True, True)
        if draw(st.booleans()):
            other = vm.CreatePageDirectory()
            if other is not None:
                for page in draw(st.lists(st.integers(0, 6), max_size=3)):
                    vm.AllocPage(other, 0x40000000 + page * PAGE_SIZE, False, True)
    for _ in range(draw(st.integers(0, 3))):
        pm.RequestFrame(True, True)
    return snapshot(pm, vm)


@st.composite
def corrupted(draw: Any, snap: Snapshot) -> Snapshot:
    """The snapshot with up to three edits of the drawn kinds."""
    frames = st.integers(0, snap.nframes + 2)
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(("owner", "used", "count", "nframes", "pde", "pte",
                                     "dirs")))
        if kind == "owner":
            owner = dict(snap.owner)
            owner[draw(frames)] = draw(st.integers(0, 6))
            snap = dataclasses.replace(snap, owner={f: o for f, o in owner.items() if o})
        elif kind == "used":
            used = set(snap.used) ^ {draw(frames)}
            snap = dataclasses.replace(snap, used=tuple(sorted(used)))
        elif kind == "count":
            snap = dataclasses.replace(snap, used_count=max(0, snap.used_count
                                                            + draw(st.integers(-1, 1))))
        elif kind == "nframes":
            snap = dataclasses.replace(snap, nframes=draw(st.integers(0, snap.nframes + 4)))
        elif kind in ("pde", "pte"):
            maps = {f: dict(e) for f, e in getattr(snap, kind).items()}
            holder = draw(st.sampled_from(sorted(maps) or [0]) | frames)
            key = draw(st.sampled_from((0, 1, 2, 767, 768, 769, 1023)))
            entry = draw(frames) << 12 | draw(FLAGS)
            maps.setdefault(holder, {})[key] = entry
            snap = dataclasses.replace(snap, **{kind: maps})
        else:
            snap = dataclasses.replace(snap, kernel_dir=draw(frames), current_dir=draw(frames))
    return snap


@settings(max_examples=examples(30, 60), deadline=None,
          suppress_health_check=list(HealthCheck))
@given(st.data())
def test_the_twins_agree_with_z3_on_valid_and_corrupted_states(data: st.DataObject) -> None:
    snap = data.draw(model_states())
    snap = data.draw(corrupted(snap))
    refuted, unknown = CHECKER.violated(to_state(snap))
    assert not unknown
    assert violated(snap) == refuted, snap


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_lowest_free_agrees_with_first_free_frames_assume(data: st.DataObject) -> None:
    """FirstFreeFrame's ``assume`` (spec/page_manager.py) and its twin, for every
    frame of a valid or corrupted state and one past memory."""
    snap = data.draw(model_states())
    snap = data.draw(corrupted(snap))
    state = to_state(snap)
    for frame in range(min(snap.nframes + 1, 1 << 20)):
        _, lowest = guarded(spec_step("FirstFreeFrame", state, result=frame).assume)
        assert lowest_free(snap, frame) == decide(lowest, "assume"), (frame, snap)


def test_a_valid_model_state_breaks_nothing() -> None:
    pm = PageManager()
    vm = VirtualMemoryManager(pm)
    assert pm.InitializePhysicalMemory(0x8000, 0x1000000) and vm.InitializePaging()
    assert vm.kernel_directory is not None
    for page in range(300):  # a 1 MB heap's worth of kernel pages on 4096 frames
        assert vm.AllocPage(vm.kernel_directory, 0xC0000000 + page * PAGE_SIZE, True, True)
    assert violated(snapshot(pm, vm)) == []
