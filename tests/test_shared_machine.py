"""The shared-memory machine (proofs/machines/shared_memory.py) and its abstraction."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from unittest import mock

import pytest
import z3

from model.file_node import DiskFileNode, MemoryFileNode
from model.memory_subsystem import MemorySubsystem
from model.process_memory import ProcessMemorySpace
from proofs.abstractions.shared_memory import (
    SharedSnapshot,
    Tokens,
    concrete_state,
    shared_snapshot,
    to_shared_state,
)
from proofs.machines.checks import CheckError
from proofs.machines.shared_memory import (
    SHARED_MODEL_VARIANTS,
    SharedMachine,
    obligations,
    run_shared_machine,
)
from proofs.machines.shared_memory_harness import make_subsystem
from proofs.obligation import Kind
from spec.abi import (
    PAGE_EXECUTE_READ,
    PAGE_READONLY,
    PAGE_READWRITE,
    PAGE_SIZE,
    PROT_READ,
    PROT_WRITE,
    ErrorCode,
)
from spec.shared_memory import FILE, ZERO, SharedState, violated

ROOT = Path(__file__).resolve().parent.parent

E = ErrorCode
DATA = bytes(range(1, 252)) * 40  # 10040 bytes: two pages and a partial one


def busy() -> tuple[MemorySubsystem, MemoryFileNode, dict[str, int]]:
    """Three processes; a read-write block mapped in all (read-only in one) and
    written; a read-only block; a destroyed block still mapped; a file mapped whole
    read-write by one process (its last page written past the end of the file)
    and its pages 1.. read-only by another; the read-only node mapped too."""
    sub = make_subsystem()
    calls, shm, mmf = sub.syscalls, sub.shared_memory, sub.mapped_files
    pids = [calls.CreateProcess() for _ in range(3)]
    spaces = [calls.processes[pid] for pid in pids]
    rw = shm.CreateSharedMemory(9000, PAGE_READWRITE)
    ro = shm.CreateSharedMemory(100, PAGE_READONLY)
    gone = shm.CreateSharedMemory(PAGE_SIZE, PAGE_READWRITE)
    views = {f"rw{i}": shm.MapSharedMemoryToProcess(space, rw, 0, PAGE_READONLY if i else None)
             for i, space in enumerate(spaces)}
    views["ro"] = shm.MapSharedMemoryToProcess(spaces[0], ro, 0)
    views["gone"] = shm.MapSharedMemoryToProcess(spaces[1], gone, 0)
    assert shm.DestroySharedMemory(gone)
    node, readonly = MemoryFileNode(DATA), MemoryFileNode(b"r" * 300, writable=False)
    assert calls.SwitchProcess(pids[0])
    views["file"] = mmf.MapFileToMemory(node, 0, 0, PAGE_READWRITE)
    assert calls.SwitchProcess(pids[1])
    views["tail"] = mmf.MapFileToMemory(node, PAGE_SIZE, 0, PAGE_READONLY)
    views["readonly"] = mmf.MapFileToMemory(readonly, 0, 0, PAGE_EXECUTE_READ)
    assert all(views.values()), views
    assert spaces[0].WriteUserMemory(views["rw0"] + 5, b"shared") is True
    assert spaces[0].WriteUserMemory(views["file"] + 2 * PAGE_SIZE + 3000, b"past") is True
    assert spaces[0].WriteUserMemory(views["file"] + 7, b"dirty") is True
    return sub, node, views


def snapshot_of(sub: MemorySubsystem) -> SharedSnapshot:
    return shared_snapshot(sub, Tokens())


def test_the_run_encoding_equals_concrete_shared() -> None:
    """The twin: piecewise lambdas over runs equal concrete_shared's Stores, field by field."""
    sub, _, _ = busy()
    snap = snapshot_of(sub)
    fast, slow = to_shared_state(snap), concrete_state(snap)
    a, b = z3.Ints("a b")
    for field in dataclasses.fields(SharedState):
        x, y = getattr(fast, field.name), getattr(slow, field.name)
        if field.name == "nframes":
            assert z3.is_true(z3.simplify(x == y))
            continue
        point = (a, b) if z3.Z3_get_array_arity(x.ctx_ref(), x.sort().ast) == 2 else (a,)
        solver = z3.Solver()
        solver.add(x[point] != y[point])
        assert solver.check() == z3.unsat, field.name


def test_the_snapshot_reads_the_model() -> None:
    sub, node, views = busy()
    snap = snapshot_of(sub)
    blocks = dict(snap.blocks)
    assert [(b, v.live, v.size, v.protect, len(v.frames)) for b, v in blocks.items()] == [
        (1, True, 9000, PAGE_READWRITE, 3), (2, True, 100, PAGE_READONLY, 1),
        (3, False, PAGE_SIZE, PAGE_READWRITE, 1)]
    assert [(f, pages, writable) for f, pages, writable, _ in snap.files] == [
        (1, 3, True), (2, 1, False)]
    cache = dict(snap.cache)
    assert [page.dirty for page in cache.values()] == [True, False, True, False]
    tokens = dict(snap.memory)
    file_tokens = snap.files[0][3]
    # the bytes written past the end of the file are not the file's: the last page's
    # token is still the file's; page 0 (written below the end) is not
    assert tokens[cache[(1, 2)].frame] == file_tokens[2]
    assert tokens[cache[(1, 0)].frame] != file_tokens[0]
    assert tokens[blocks[1].frames[1]] == ZERO != tokens[blocks[1].frames[0]]
    kinds = Counter(view.kind for _, view in snap.views)
    assert kinds[FILE] == 3 and len(snap.views) == 8
    assert len(snap.ptes) == sum(view.count for _, view in snap.views)
    assert snap == snapshot_of(sub) and node.data == DATA


def test_the_abstraction_of_a_busy_model_keeps_every_invariant() -> None:
    sub, _, _ = busy()
    assert violated(to_shared_state(snapshot_of(sub))) == []


@pytest.mark.parametrize(("corrupt", "expected"), [
    ("view_wider_than_block", "SHM-3"),
    ("writable_pte_on_readonly_view", "MMF-2"),
    ("clean_page_differs_from_file", "MMF-1"),
    ("destroyed_block_unmapped", "SHM-2"),
    ("pte_on_the_wrong_frame", "VMM-1"),
    ("a_view_page_without_its_pte", "VMM-1"),
    ("block_counts_a_view_too_few", "SHM-1"),
])
def test_a_corrupt_abstraction_is_refuted(corrupt: str, expected: str) -> None:
    sub, _, views = busy()
    snap = snapshot_of(sub)
    ptes, cache, blocks = dict(snap.ptes), dict(snap.cache), dict(snap.blocks)
    view_list = dict(snap.views)
    rw1 = (2, views["rw1"] >> 12)
    if corrupt == "view_wider_than_block":
        view_list[rw1] = view_list[rw1]._replace(protect=PAGE_READWRITE)
        view_list[(1, views["ro"] >> 12)] = view_list[(1, views["ro"] >> 12)]._replace(
            protect=PAGE_READWRITE)
    elif corrupt == "writable_pte_on_readonly_view":
        ptes[rw1] = ptes[rw1]._replace(writable=True)
    elif corrupt == "clean_page_differs_from_file":
        cache[(1, 0)] = cache[(1, 0)]._replace(dirty=False)
    elif corrupt == "destroyed_block_unmapped":  # and its refcount 0: frames still held
        gone = view_list.pop((2, views["gone"] >> 12))
        del ptes[(2, views["gone"] >> 12)]
        blocks[gone.source] = blocks[gone.source]._replace(refs=0)
    elif corrupt == "pte_on_the_wrong_frame":
        ptes[rw1] = ptes[rw1]._replace(frame=blocks[2].frames[0])
    elif corrupt == "block_counts_a_view_too_few":
        block = blocks[view_list[rw1].source]
        blocks[view_list[rw1].source] = block._replace(refs=(block.refs or 0) - 1)
    else:
        del ptes[rw1]
    bad = snap._replace(ptes=tuple(sorted(ptes.items())), cache=tuple(sorted(cache.items())),
                        views=tuple(sorted(view_list.items())),
                        blocks=tuple(sorted(blocks.items())))
    assert expected in violated(to_shared_state(bad))
    assert expected in violated(concrete_state(bad))


def machine() -> SharedMachine:
    cls = type("M", (SharedMachine,), {"cache": {}, "outcomes": Counter(), "examples": 0})
    state: SharedMachine = cls()
    state.start()
    return state


def test_a_step_the_spec_forbids_is_reported() -> None:
    """A read-write view of a read-only block is caught on the spot, by name."""
    state = machine()
    h = state.h
    shm_id = h.create(5000, PAGE_READONLY)
    space = h.sub.syscalls.processes[1]
    h.map_block(space, shm_id, 0, PAGE_READWRITE)  # refused: ERROR_ACCESS_DENIED
    assert h.sub.shared_memory.last_error == E.ERROR_ACCESS_DENIED
    variant = next(v for v in SHARED_MODEL_VARIANTS if v.name == "rw_view_of_readonly_block")
    from unittest import mock

    from model.shared_memory import SharedMemoryManager
    with mock.patch.object(SharedMemoryManager, "MapSharedMemoryToProcess",
                           variant.patches["SharedMemoryManager.MapSharedMemoryToProcess"]), \
            pytest.raises(CheckError) as failure:
        h.map_block(space, shm_id, 0, PAGE_READWRITE)
    assert {"SHM-3", "transition"} <= set(failure.value.violated)


def test_a_model_refusing_a_block_view_commit_is_reported() -> None:
    """VirtualAlloc(MEM_COMMIT) of a block view's page within the view's access: the
    model commits it (the spec's step); a model refusing it as it refuses a file
    view's (ERROR_ACCESS_DENIED, before Wine test_mapping's anonymous pass was
    followed) is caught on the spot, by name; so is one committing beyond the view's
    access (may_protect answering yes)."""
    state = machine()
    h = state.h
    shm_id = h.create(2 * PAGE_SIZE, PAGE_READWRITE)
    space = h.sub.syscalls.processes[1]
    h.map_block(space, shm_id, 0, PAGE_READWRITE)
    ((pid, base),) = [key for key in h.views if key[0] == space.pid]
    h.protect(pid, base, 1, 1, PAGE_READONLY, "VirtualAlloc")
    assert space.last_error == E.ERROR_SUCCESS
    assert space.pages[(base >> 12) + 1].protect == PAGE_READONLY

    def refuse(space: ProcessMemorySpace, *_: object) -> int:
        return int(space._fail(E.ERROR_ACCESS_DENIED, 0))

    with mock.patch("model.virtual_alloc._commit_block_view", refuse), \
            pytest.raises(CheckError) as failure:
        h.protect(pid, base, 0, 2, PAGE_READWRITE, "VirtualAlloc")
    assert "transition" in failure.value.violated
    with mock.patch("model.virtual_alloc.may_protect", lambda protect, view: True), \
            pytest.raises(CheckError) as failure:
        h.protect(pid, base, 0, 1, PAGE_EXECUTE_READ, "VirtualAlloc")
    assert {"SHM-3", "transition"} & set(failure.value.violated)


def test_nothing_is_lost_through_process_exit() -> None:
    """Writes through two processes' views of the real file, then every process
    destroyed without an unmap: the file on disk holds every byte (the machine's
    own end-of-example check)."""
    state = machine()
    h = state.h
    for pid in (1, 2):
        h.processes("SwitchProcess", pid)
        h.map_file(0, 0, 0, PAGE_READWRITE)
    for (pid, base), _ in sorted(h.views.items()):
        h.access(pid, base, 2, 8, bytes([pid]) * 4)  # page 2 at 8: below the end
        h.access(pid, base, 0, 4090, b"\xee" * 6)
    h.finish()
    node = h.nodes[0]
    assert isinstance(node, DiskFileNode)
    with open(node.path, "rb") as file:  # the bytes on disk, read without the model
        data = file.read()
    h.directory.cleanup()
    assert data[2 * PAGE_SIZE + 8:2 * PAGE_SIZE + 12] == b"\x02" * 4
    assert data[4090:4096] == b"\xee" * 6 and data == h.expected[0]


def test_the_model_refines_the_spec() -> None:
    verdict = run_shared_machine("quick", max_examples=3)
    assert verdict.kind == Kind.NO_COUNTEREXAMPLE, verdict.detail
    assert verdict.examples is not None and verdict.examples >= 3


#: One broken model's teeth run, in a fresh interpreter: its verdict as JSON.
TEETH = """
import json, sys
from proofs.machines.shared_memory import SHARED_MODEL_VARIANTS, run_shared_machine
variant = next(v for v in SHARED_MODEL_VARIANTS if v.name == sys.argv[1])
verdict = run_shared_machine("teeth", variant.patches, shrink_seconds=2)
print(json.dumps({"kind": verdict.kind.name, "summary": verdict.summary,
                  "violated": list(verdict.violated), "detail": verdict.detail}))
"""


@pytest.mark.parametrize("variant", SHARED_MODEL_VARIANTS, ids=lambda v: v.name)
def test_broken_models_are_caught_by_name(variant: object) -> None:
    """Each broken model, caught by the teeth run, in an interpreter of its own:
    the derandomized run's draws were seen to depend on what the process had
    imported before (after proofs.report, unmap_drops_dirty went 86 examples
    uncaught; alone, or after any other module, caught within 25; the cause is
    not found: docs/known-gaps.md)."""
    name = variant.name  # type: ignore[attr-defined]
    done = subprocess.run([sys.executable, "-c", TEETH, name], capture_output=True, text=True,
                          timeout=300, check=False, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    verdict = json.loads(done.stdout.strip().splitlines()[-1])
    assert verdict["kind"] == Kind.COUNTEREXAMPLE.name, verdict["summary"]
    assert set(variant.catches) & set(verdict["violated"]), verdict["detail"]  # type: ignore[attr-defined]
    assert "state = SharedMachine()" in verdict["detail"]


def test_a_model_protecting_beyond_the_view_is_caught_by_name() -> None:
    """VirtualProtect, VirtualAlloc(MEM_COMMIT) and mprotect without their bounds
    (model/views.py may_protect and may_mprotect answering yes) are caught on the
    spot, each call driven through the machine's harness: a read-only view's page
    made writable, an execute protection on a read-write view. (The teeth run's
    thirty derandomized examples reach a protection call of a view only a few times,
    so the search no longer finds these since VirtualAlloc shares those calls.)"""
    calls = [(0, PAGE_READWRITE, "VirtualProtect"), (1, PAGE_EXECUTE_READ, "VirtualAlloc"),
             (0, PROT_READ | PROT_WRITE, "SyscallMprotect")]
    for view, value, op in calls:  # each on a fresh machine: a broken state stays broken
        h = machine().h
        shm_id = h.create(2 * PAGE_SIZE, PAGE_READWRITE)
        space = h.sub.syscalls.processes[1]
        h.map_block(space, shm_id, 0, PAGE_READONLY)
        h.map_block(space, shm_id, 0, PAGE_READWRITE)
        keys = sorted(key for key in h.views if key[0] == space.pid)
        assert [h.views[key].writable for key in keys] == [False, True]
        pid, base = keys[view]
        h.protect(pid, base, 0, 1, value, op)  # the real model refuses: no report
        with mock.patch("model.virtual_alloc.may_protect", lambda protect, view: True), \
                mock.patch("model.linux_mm.may_mprotect", lambda protect, may_write: True), \
                pytest.raises(CheckError) as failure:
            h.protect(pid, base, 0, 1, value, op)
        # the step the spec refuses taken (transition), a page writable through a
        # read-only view (SHM-3)
        assert {"SHM-3", "transition"} & set(failure.value.violated), (op, failure.value)


def test_the_obligation_is_registered() -> None:
    (obligation,) = obligations()
    assert (obligation.id, obligation.manager, obligation.invariant) == (
        "shared_memory.machine.refinement", "shared_memory", "refinement")
