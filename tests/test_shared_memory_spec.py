"""Shared memory and mapped files in z3 (spec/shared_memory.py,
proofs/shared_memory.py): the obligations, a few proved steps, the steps'
verdicts on concrete states, the concrete-state builder on valid and
corrupted data, and the broken variants caught by name."""

from __future__ import annotations

import dataclasses

import pytest
import z3

from proofs.broken_variants import VARIANTS, BrokenVariant, applied
from proofs.inductive import layered
from proofs.obligation import Kind
from proofs.shared_memory import FULL_ONLY, LAYER, obligations, shared_states
from spec import shared_memory as sm
from spec.abi import (
    PAGE_EXECUTE,
    PAGE_EXECUTE_READ,
    PAGE_NOACCESS,
    PAGE_READONLY,
    PAGE_READWRITE,
    ErrorCode,
)
from spec.shared_memory import (
    FILE,
    SHM,
    BlockView,
    CacheView,
    FileView,
    PteView,
    SharedState,
    ViewRecord,
    concrete_shared,
    violated,
)
from spec.state import Ref

E = ErrorCode
CLAIMS = ["VMM-1", "SHM-1", "SHM-2", "SHM-3", "MMF-1", "MMF-2"]
STEP_CLAIMS = {"SHM-2D", "SHM-2U", "MMF-1S", "MMF-1U", "MMF-2W", "SHM-2M", "MMF-1M"}
SHARED_VARIANTS = [v for v in VARIANTS if v.layer == "shared_memory"]
NO, YES = z3.BoolVal(False), z3.BoolVal(True)
RW, RO = z3.IntVal(PAGE_READWRITE), z3.IntVal(PAGE_READONLY)


def valid(claim: Ref) -> bool:
    solver = z3.Solver()
    solver.add(z3.Not(claim))
    return bool(solver.check() == z3.unsat)


def i(value: int) -> Ref:
    return z3.IntVal(value)


def frames(first_frame: int) -> tuple[Ref, Ref]:
    k = z3.Int("k")
    return z3.Lambda([k], k + first_frame), z3.Lambda([k], k - first_frame)


@pytest.fixture(scope="module")
def mapped() -> SharedState:
    """Block 1 (2 pages, RW) at 0x500 of pid 1 (RW) and 0x600 of pid 2 (RO),
    page 1 written (7); block 2 (RO) at 0x510 of pid 1; file 1 (3 pages) at
    0x700 of pid 1 (RW, page 2 written: 9) and its pages 1..2 at 0x700 of
    pid 2 (RO); file 2 (read-only) at 0x710 of pid 2."""
    return shared_states()[0][1]


@pytest.fixture(scope="module")
def destroyed() -> SharedState:
    return shared_states()[1][1]


def status_is(step: sm.SharedStep, code: int) -> bool:
    return valid(z3.Implies(step.assume, step.status == code))


def unchanged(step: sm.SharedStep, pre: SharedState) -> bool:
    """A refused step's successor is the pre-state, field by field."""
    return valid(z3.Implies(z3.And(step.assume, z3.Not(step.ok)), z3.And(
        [getattr(step.post, f.name) == getattr(pre, f.name)
         for f in dataclasses.fields(pre)])))


def refused(step: sm.SharedStep, pre: SharedState, code: int) -> bool:
    return status_is(step, code) and unchanged(step, pre)


# -- obligations ---------------------------------------------------------------------------

def test_obligations_one_per_call_and_claim() -> None:
    ids = [o.id for o in obligations()]
    public = [op.name for op in LAYER.operations if not op.internal]
    expected = {f"shared_memory.{name}.{claim}" for name in public for claim in CLAIMS}
    expected |= {f"shared_memory.{op}.{claim}" for claim, (op, _) in sm.STEP_CLAIMS.items()}
    expected |= {f"shared_memory.{name}.NON-VACUOUS" for name in public}
    assert set(ids) == expected
    # 15 calls x 6 invariants, 7 claims, and each call's non-vacuity
    assert len(ids) == len(set(ids)) == 15 * 6 + 7 + 15
    assert FULL_ONLY <= set(ids)
    assert set(sm.INVARIANTS) == set(CLAIMS) and set(sm.STEP_CLAIMS) == STEP_CLAIMS


@pytest.mark.parametrize(("operation", "claim"), [
    ("UnmapSharedMemoryFromProcess", "SHM-1"), ("DestroySharedMemory", "SHM-2"),
    ("DestroySharedMemory", "SHM-2D"), ("SyncMappedFile", "MMF-1S"),
    ("UnmapFileFromMemory", "MMF-1U"), ("Write", "MMF-2W"), ("Write", "MMF-1"),
    ("UnmapFileFromMemory", "VMM-1")])
def test_step_proved(operation: str, claim: str) -> None:
    verdict = layered.prove(LAYER, LAYER.operation(operation), claim, "quick")
    assert verdict.kind is Kind.PROVED, verdict.detail


def test_reachable_states_satisfy_every_invariant() -> None:
    assert violated(concrete_shared({}, {}, {}, {}, {}, {}, 8)) == []
    for name, state in shared_states():
        assert violated(state) == [], name


# -- shared memory on concrete states -----------------------------------------------------

def test_create_takes_zeroed_frames(mapped: SharedState) -> None:
    pick, pinv = frames(30)
    step = sm.CreateSharedMemory(mapped, i(4097), RW, i(3), pick, pinv, NO)
    post = step.changed
    assert valid(z3.And(step.ok, step.assume, step.result == 3, post.bpages[3] == 2,
                        post.bsize[3] == 4097, post.kind[30] == SHM, post.idx[31] == 1,
                        post.mdata[31] == sm.ZERO, post.brefs[3] == 0, post.kind[32] == 0))
    # an id whose block holds frames is not a choice the spec allows
    assert valid(z3.Not(sm.CreateSharedMemory(mapped, i(4096), RW, i(1), pick, pinv,
                                              NO).assume))


@pytest.mark.parametrize(("size", "permissions", "oom", "code"), [
    (0, PAGE_READWRITE, False, E.ERROR_INVALID_PARAMETER),
    (1 << 32, PAGE_READWRITE, False, E.ERROR_INVALID_PARAMETER),
    (4096, PAGE_NOACCESS, False, E.ERROR_INVALID_PARAMETER),
    (4096, PAGE_EXECUTE, False, E.ERROR_INVALID_PARAMETER),
    (4096, PAGE_READONLY, True, E.ERROR_NOT_ENOUGH_MEMORY)])
def test_create_refused(mapped: SharedState, size: int, permissions: int, oom: bool,
                        code: int) -> None:
    step = sm.CreateSharedMemory(mapped, i(size), i(permissions), i(3), *frames(30),
                                 z3.BoolVal(oom))
    assert refused(step, mapped, code)
    assert valid(step.result == 0)


@pytest.mark.parametrize(("space", "shm_id", "base", "protect", "placed", "occupied", "oom",
                          "code"), [
    (6, 1, 0x800, PAGE_READONLY, False, False, False, 6),
    (21, 1, 0x800, PAGE_READONLY, False, False, False, 21),
    (0, 9, 0x800, PAGE_READONLY, False, False, False, E.ERROR_INVALID_HANDLE),
    (0, 1, 0x800, PAGE_NOACCESS, False, False, False, E.ERROR_INVALID_PARAMETER),
    (0, 2, 0x800, PAGE_READWRITE, False, False, False, E.ERROR_ACCESS_DENIED),
    (0, 2, 0x800, PAGE_EXECUTE_READ, False, False, False, E.ERROR_ACCESS_DENIED),
    (0, 1, 0x801, PAGE_READONLY, False, False, False, E.ERROR_MAPPED_ALIGNMENT),
    (0, 1, 0x700, PAGE_READONLY, False, False, False, E.ERROR_INVALID_ADDRESS),
    (0, 1, 0x10, PAGE_READONLY, False, False, False, E.ERROR_INVALID_ADDRESS),
    (0, 1, 0x800, PAGE_READONLY, False, True, False, E.ERROR_INVALID_ADDRESS),
    (0, 1, 0x800, PAGE_READONLY, True, True, False, E.ERROR_NOT_ENOUGH_MEMORY),
    (0, 1, 0x800, PAGE_READONLY, False, False, True, E.ERROR_NOT_ENOUGH_MEMORY),
    (0, 1, 0x800, PAGE_READONLY, False, False, False, 0),
    (0, 2, 0x800, PAGE_READONLY, True, False, False, 0)])
def test_map_shared_memory(mapped: SharedState, space: int, shm_id: int, base: int,
                           protect: int, placed: bool, occupied: bool, oom: bool,
                           code: int) -> None:
    # pid 2 has views at 0x600, 0x700 and 0x710
    step = sm.MapSharedMemoryToProcess(mapped, i(2), i(space), i(shm_id), i(base), i(protect),
                                       z3.BoolVal(placed), z3.BoolVal(occupied),
                                       z3.BoolVal(oom))
    if code:
        assert refused(step, mapped, code)
        return
    post = step.changed
    assert status_is(step, 0) and valid(z3.And(
        step.result == base * 4096, post.brefs[shm_id] == mapped.brefs[shm_id] + 1,
        post.vframe[2, base] == mapped.bframe[shm_id, 0], post.vkind[2, base] == SHM,
        post.refs[mapped.bframe[shm_id, 0]] == mapped.refs[mapped.bframe[shm_id, 0]] + 1,
        z3.Not(post.pte_writable[2, base])))
    assert violated(post) == []


def test_a_write_through_one_view_is_read_through_every_other(mapped: SharedState) -> None:
    assert valid(sm.Read(mapped, i(2), i(0x601)).result == 7)
    wrote = sm.Write(mapped, i(1), i(0x500), i(42)).changed
    assert valid(z3.And(sm.Read(wrote, i(2), i(0x600)).result == 42,
                        sm.Read(wrote, i(2), i(0x601)).result == 7))
    assert refused(sm.Write(mapped, i(2), i(0x600), i(42)), mapped, E.ERROR_NOACCESS)
    assert refused(sm.Write(mapped, i(1), i(0x900), i(42)), mapped, E.ERROR_NOACCESS)
    assert refused(sm.Read(mapped, i(1), i(0x900)), mapped, E.ERROR_NOACCESS)


def test_unmap_and_destroy(mapped: SharedState, destroyed: SharedState) -> None:
    for base in (0x700, 0x900):  # a file view, nothing
        assert refused(sm.UnmapSharedMemoryFromProcess(mapped, i(1), i(base)), mapped,
                       E.ERROR_INVALID_ADDRESS)
    assert refused(sm.UnmapSharedMemoryFromProcess(mapped, i(1), i(0x500), i(6)), mapped, 6)
    once = sm.UnmapSharedMemoryFromProcess(mapped, i(1), i(0x500)).changed
    assert valid(z3.And(once.brefs[1] == 1, once.bheld[1], once.vkind[1, 0x501] == 0,
                        once.refs[once.bframe[1, 0]] == 1))
    # a page inside the view unmaps the whole view (UnmapViewOfFile at ptr + 4096)
    inside = sm.UnmapSharedMemoryFromProcess(mapped, i(1), i(0x501))
    assert status_is(inside, 0) and valid(z3.And(
        inside.changed.brefs[1] == 1, inside.changed.vkind[1, 0x500] == 0,
        inside.changed.vkind[1, 0x501] == 0))
    assert violated(inside.changed) == []
    # destroyed while mapped: the id is invalid at once, the frames stay until the last unmap
    assert valid(z3.And(z3.Not(destroyed.blive[1]), destroyed.bheld[1],
                        destroyed.kind[destroyed.bframe[1, 1]] == SHM))
    for step in (sm.DestroySharedMemory(destroyed, i(1)), sm.DestroySharedMemory(destroyed, i(9)),
                 sm.GetSharedMemorySize(destroyed, i(1))):
        assert refused(step, destroyed, E.ERROR_INVALID_HANDLE)
    assert status_is(sm.MapSharedMemoryToProcess(destroyed, i(3), i(0), i(1), i(0x800), RO,
                                                 NO, NO, NO), E.ERROR_INVALID_HANDLE)
    s = sm.UnmapSharedMemoryFromProcess(destroyed, i(2), i(0x600)).changed
    assert valid(z3.And(s.bheld[1], s.brefs[1] == 1))
    s = sm.UnmapSharedMemoryFromProcess(s, i(1), i(0x500)).changed
    frame = destroyed.bframe[1, 0]
    assert valid(z3.And(z3.Not(s.bheld[1]), s.kind[frame] == 0, s.refs[frame] == 0))
    assert violated(s) == []
    # a block destroyed without a view releases its frames now
    alone = sm.UnmapSharedMemoryFromProcess(mapped, i(1), i(0x510)).changed
    gone = sm.DestroySharedMemory(alone, i(2)).changed
    assert valid(z3.And(gone.blive[1], z3.Not(gone.bheld[2]),
                        gone.kind[mapped.bframe[2, 0]] == 0))
    assert violated(gone) == []


def test_get_shared_memory_size(mapped: SharedState) -> None:
    assert valid(z3.And(sm.GetSharedMemorySize(mapped, i(1)).result == 8192,
                        sm.GetSharedMemorySize(mapped, i(2)).result == 100))
    step = sm.GetSharedMemorySize(mapped, i(3))
    assert refused(step, mapped, E.ERROR_INVALID_HANDLE) and valid(step.result == 0)


# -- mapped files on concrete states --------------------------------------------------------

@pytest.mark.parametrize(("pid", "file", "first", "count", "protect", "base", "occupied",
                          "space", "code"), [
    (0, 1, 0, 1, PAGE_READONLY, 0x800, False, 0, E.ERROR_NOT_READY),
    (3, 1, 0, 1, PAGE_READONLY, 0x800, False, 6, 6),
    (3, 0, 0, 1, PAGE_READONLY, 0x800, False, 0, E.ERROR_INVALID_HANDLE),
    (3, 1, 0, 1, PAGE_NOACCESS, 0x800, False, 0, E.ERROR_INVALID_PARAMETER),
    (3, 2, 0, 1, PAGE_READWRITE, 0x800, False, 0, E.ERROR_ACCESS_DENIED),
    (3, 3, 0, 1, PAGE_READONLY, 0x800, False, 0, E.ERROR_FILE_INVALID),
    (3, 1, 2, 2, PAGE_READONLY, 0x800, False, 0, E.ERROR_ACCESS_DENIED),
    (3, 1, 0, 0, PAGE_READONLY, 0x800, False, 0, E.ERROR_ACCESS_DENIED),
    (3, 1, 0, 1, PAGE_READONLY, 0x800, True, 0, E.ERROR_NOT_ENOUGH_MEMORY),
    (1, 1, 0, 1, PAGE_READONLY, 0x700, False, 0, E.ERROR_NOT_ENOUGH_MEMORY),
    (1, 1, 0, 1, PAGE_READONLY, 0x808, False, 0, E.ERROR_NOT_ENOUGH_MEMORY)])
def test_map_file_refused(mapped: SharedState, pid: int, file: int, first: int, count: int,
                          protect: int, base: int, occupied: bool, space: int,
                          code: int) -> None:
    step = sm.MapFileToMemory(mapped, i(pid), i(file), i(first), i(count), i(protect),
                              i(base), z3.BoolVal(occupied), *frames(30), NO, i(space))
    assert refused(step, mapped, code)


def test_views_of_one_file_share_its_cache(mapped: SharedState) -> None:
    # pid 2's view of pages 1..2 sees pid 1's write to page 2, and the file page is dirty
    assert valid(z3.And(sm.Read(mapped, i(2), i(0x701)).result == 9,
                        mapped.vframe[2, 0x701] == mapped.vframe[1, 0x702],
                        mapped.dirty[1, 2], mapped.fdata[1, 2] == 13,
                        mapped.refs[mapped.cframe[1, 2]] == 2))
    step = sm.MapFileToMemory(mapped, i(3), i(1), i(2), i(1), RO, i(0x800), NO, *frames(30),
                              NO)
    post = step.changed
    assert status_is(step, 0) and valid(z3.And(
        step.assume, post.vframe[3, 0x800] == mapped.cframe[1, 2], post.kind[30] == 0,
        post.refs[mapped.cframe[1, 2]] == 3, sm.Read(post, i(3), i(0x800)).result == 9))


def test_sync_writes_back_and_invalidate_reloads(mapped: SharedState) -> None:
    for base in (0x701, 0x500, 0x900):
        assert refused(sm.SyncMappedFile(mapped, i(1), i(base), NO), mapped,
                       E.ERROR_INVALID_ADDRESS)
    assert refused(sm.SyncMappedFile(mapped, i(0), i(0x700), NO), mapped, E.ERROR_NOT_READY)
    for invalidate in (NO, YES):
        post = sm.SyncMappedFile(mapped, i(2), i(0x700), invalidate).changed
        assert valid(z3.And(post.fdata[1, 2] == 9, z3.Not(post.dirty[1, 2]),
                            post.fdata[1, 0] == 11, post.mdata[post.cframe[1, 2]] == 9))


def test_unmap_file_writes_back_and_releases_unmapped_pages(mapped: SharedState) -> None:
    assert refused(sm.UnmapFileFromMemory(mapped, i(1), i(0x500)), mapped,
                   E.ERROR_INVALID_ADDRESS)
    # a page inside the view unmaps all of it, written back (UnmapViewOfFile at ptr + 4096)
    inside = sm.UnmapFileFromMemory(mapped, i(2), i(0x701)).changed
    assert valid(z3.And(inside.fdata[1, 2] == 9, inside.vkind[2, 0x700] == 0,
                        inside.vkind[2, 0x701] == 0))
    post = sm.UnmapFileFromMemory(mapped, i(1), i(0x700)).changed
    frame0 = mapped.cframe[1, 0]
    assert valid(z3.And(post.fdata[1, 2] == 9, z3.Not(post.cached[1, 0]), post.kind[frame0] == 0,
                        post.cached[1, 2], post.refs[post.cframe[1, 2]] == 1,
                        post.vkind[1, 0x702] == 0))
    assert violated(post) == []
    last = sm.UnmapFileFromMemory(post, i(2), i(0x700)).changed
    assert valid(z3.And(z3.Not(last.cached[1, 2]), last.fdata[1, 2] == 9))


# -- munmap over part of a view ---------------------------------------------------------------

def test_munmap_cuts_a_view_into_pieces(mapped: SharedState) -> None:
    """munmap of a view's first page, last page, or a middle page: the pages go, what
    is left keeps (left) or takes (right) its base, each page its source page."""
    front = sm.SyscallMunmap(mapped, i(1), i(0x500), i(1))
    post = front.changed
    assert status_is(front, 0) and violated(post) == []
    assert valid(z3.And(post.vkind[1, 0x500] == 0, post.vbase[1, 0x501] == 0x501,
                        post.vcount[1, 0x501] == 1, post.vidx[1, 0x501] == 1,
                        post.brefs[1] == 2, post.refs[mapped.bframe[1, 0]] == 1,
                        post.refs[mapped.bframe[1, 1]] == 2, post.bheld[1]))
    end = sm.SyscallMunmap(mapped, i(1), i(0x501), i(1)).changed
    assert violated(end) == []
    assert valid(z3.And(end.vkind[1, 0x501] == 0, end.vbase[1, 0x500] == 0x500,
                        end.vcount[1, 0x500] == 1, end.brefs[1] == 2))
    # the middle page of pid 1's file view: written back, two pieces; the tail's offset
    middle = sm.SyscallMunmap(mapped, i(1), i(0x701), i(1)).changed
    assert violated(middle) == []
    assert valid(z3.And(middle.vkind[1, 0x701] == 0, middle.vcount[1, 0x700] == 1,
                        middle.vbase[1, 0x702] == 0x702, middle.vcount[1, 0x702] == 1,
                        middle.vidx[1, 0x702] == 2, middle.cached[1, 1],
                        middle.refs[mapped.cframe[1, 1]] == 1))
    # a middle page of a three-page block: one piece more, in the block's next slot
    pieces = shared_states()[2][1]
    assert violated(pieces) == []
    assert valid(z3.And(pieces.brefs[3] == 3, pieces.vbase[1, 0x522] == 0x522,
                        pieces.vidx[1, 0x522] == 2, pieces.vcount[1, 0x520] == 1,
                        pieces.vkind[1, 0x521] == 0, pieces.bslot_vpn[3, 2] == 0x522))
    # then the piece that is not at the map's base unmaps alone (UnmapViewOfFile on it)
    alone = sm.UnmapSharedMemoryFromProcess(pieces, i(1), i(0x522)).changed
    assert violated(alone) == []
    assert valid(z3.And(alone.brefs[3] == 2, alone.vkind[1, 0x520] == SHM,
                        alone.vkind[1, 0x522] == 0))


def test_munmap_of_a_page_whose_last_mapping_it_is_releases_it(mapped: SharedState) -> None:
    """pid 1 alone maps file 1's page 0: its munmap writes it back and releases it."""
    post = sm.SyscallMunmap(mapped, i(1), i(0x700), i(1)).changed
    frame = mapped.cframe[1, 0]
    assert valid(z3.And(z3.Not(post.cached[1, 0]), post.kind[frame] == 0,
                        post.fdata[1, 0] == 11, post.vbase[1, 0x701] == 0x701))
    assert violated(post) == []


@pytest.mark.parametrize(("pid", "vpn", "count", "space", "code"), [
    (1, 0x500, 2, None, E.ERROR_INVALID_ADDRESS),  # the whole view: its Unmap step
    (1, 0x501, 2, None, E.ERROR_INVALID_ADDRESS),  # past the view's end
    (1, 0x500, 0, None, E.ERROR_INVALID_ADDRESS),  # nothing
    (1, 0x900, 1, None, E.ERROR_INVALID_ADDRESS),  # no view
    (1, 0x500, 1, 6, 6),  # a space that is not live: its status() code
])
def test_munmap_refused(mapped: SharedState, pid: int, vpn: int, count: int,
                        space: int | None, code: int) -> None:
    step = sm.SyscallMunmap(mapped, i(pid), i(vpn), i(count), None if space is None
                            else i(space))
    assert refused(step, mapped, code)


# -- private protection calls on view pages ---------------------------------------------------

def test_virtual_protect_within_the_view_access(mapped: SharedState) -> None:
    """pid 1's read-write view of block 1 at 0x500: its page 0x500 may become read-only
    (the old protection returned, the PTE read-only, page 0x501 unchanged) and then
    PAGE_NOACCESS (reads refused, the frame still mapped: SHM-1 holds)."""
    step = sm.VirtualProtect(mapped, i(1), i(0x500), i(1), RO)
    assert status_is(step, 0)
    post = step.changed
    assert valid(z3.And(step.result == PAGE_READWRITE, post.vprotect[1, 0x500] == PAGE_READONLY,
                        z3.Not(post.pte_writable[1, 0x500]), post.vaccess[1, 0x500] == RW,
                        post.vprotect[1, 0x501] == PAGE_READWRITE, post.pte_writable[1, 0x501]))
    assert violated(post) == []
    hidden = sm.VirtualProtect(post, i(1), i(0x500), i(2), i(PAGE_NOACCESS))
    assert status_is(hidden, 0) and violated(hidden.changed) == []
    assert status_is(sm.Read(hidden.changed, i(1), i(0x501)), E.ERROR_NOACCESS)
    assert valid(hidden.changed.refs[hidden.changed.vframe[1, 0x500]] == 2)
    again = sm.SyscallMprotect(hidden.changed, i(1), i(0x500), i(2), RW)
    assert status_is(again, 0) and valid(again.changed.pte_writable[1, 0x501])
    # mprotect: execution always (VM_MAYEXEC); VirtualProtect: within the view only
    assert status_is(sm.SyscallMprotect(mapped, i(1), i(0x500), i(1), i(PAGE_EXECUTE)), 0)
    assert status_is(sm.VirtualProtect(mapped, i(1), i(0x500), i(1), i(PAGE_EXECUTE)),
                     E.ERROR_INVALID_PARAMETER)
    # a read-only view of a writable file: mprotect may make it writable (mprotect02)
    rw = sm.SyscallMprotect(mapped, i(2), i(0x701), i(1), RW)
    assert status_is(rw, 0) and valid(rw.changed.pte_writable[2, 0x701])
    assert violated(rw.changed) == []


def test_virtual_alloc_commit_re_protects_a_block_view(mapped: SharedState) -> None:
    """VirtualAlloc(MEM_COMMIT) on pid 1's read-write view of block 1: page 0x501 takes
    PAGE_READONLY (its PTE read-only, page 0x500 unchanged), the result its address;
    PAGE_NOACCESS keeps the frame mapped (Wine test_mapping, anonymous pass)."""
    step = sm.VirtualAlloc(mapped, i(1), i(0x501), i(1), RO)
    assert status_is(step, 0)
    post = step.changed
    assert valid(z3.And(step.result == 0x501 * 4096, post.vprotect[1, 0x501] == PAGE_READONLY,
                        z3.Not(post.pte_writable[1, 0x501]), post.vaccess[1, 0x501] == RW,
                        post.vprotect[1, 0x500] == PAGE_READWRITE, post.pte_writable[1, 0x500]))
    assert violated(post) == []
    hidden = sm.VirtualAlloc(post, i(1), i(0x500), i(2), i(PAGE_NOACCESS))
    assert status_is(hidden, 0) and violated(hidden.changed) == []
    assert valid(hidden.changed.refs[hidden.changed.vframe[1, 0x500]] == 2)
    back = sm.VirtualAlloc(hidden.changed, i(1), i(0x500), i(2), RW)
    assert status_is(back, 0) and valid(back.changed.pte_writable[1, 0x501])


@pytest.mark.parametrize(("call", "args", "code"), [
    # VirtualAlloc(MEM_COMMIT): beyond a block view's access; any file view (even within)
    ("VirtualAlloc", (2, 0x600, 1, PAGE_READWRITE), E.ERROR_INVALID_PARAMETER),
    ("VirtualAlloc", (1, 0x500, 1, PAGE_EXECUTE), E.ERROR_INVALID_PARAMETER),
    ("VirtualAlloc", (1, 0x700, 1, PAGE_READONLY), E.ERROR_ACCESS_DENIED),
    ("VirtualAlloc", (2, 0x710, 1, PAGE_READWRITE), E.ERROR_ACCESS_DENIED),
    ("VirtualAlloc", (1, 0x500, 1, 0x08), E.ERROR_INVALID_PARAMETER),
    ("VirtualAlloc", (1, 0x501, 2, PAGE_READONLY), E.ERROR_INVALID_ADDRESS),
    # beyond the read-only view of pid 2 at 0x600
    ("VirtualProtect", (2, 0x600, 1, PAGE_READWRITE), E.ERROR_INVALID_PARAMETER),
    ("SyscallMprotect", (2, 0x600, 1, PAGE_READWRITE), E.ERROR_ACCESS_DENIED),
    ("VirtualProtect", (1, 0x500, 2, PAGE_EXECUTE_READ), E.ERROR_INVALID_PARAMETER),
    ("SyscallMprotect", (2, 0x710, 1, PAGE_READWRITE), E.ERROR_ACCESS_DENIED),  # RO file
    # not one of the six protections
    ("VirtualProtect", (1, 0x500, 1, 0x08), E.ERROR_INVALID_PARAMETER),
    # past the view's end, no page, no pages
    ("VirtualProtect", (1, 0x501, 2, PAGE_READONLY), E.ERROR_INVALID_ADDRESS),
    ("VirtualProtect", (1, 0x580, 1, PAGE_READONLY), E.ERROR_INVALID_ADDRESS),
    ("SyscallMprotect", (1, 0x500, 0, PAGE_READONLY), E.ERROR_INVALID_ADDRESS),
])
def test_protection_calls_refused(mapped: SharedState, call: str, args: tuple[int, ...],
                                  code: int) -> None:
    step = getattr(sm, call)(mapped, *(i(a) for a in args))
    assert refused(step, mapped, code)


# -- concrete_shared -----------------------------------------------------------------------

BLOCK = BlockView(True, 8192, PAGE_READWRITE, (10, 11))
FILE_1 = FileView(2, True, {0: 5, 1: 6})
VIEWS = {(1, 0x500): ViewRecord(SHM, 1, 0, 2, PAGE_READWRITE),
         (2, 0x600): ViewRecord(SHM, 1, 0, 2, PAGE_READONLY),
         (1, 0x700): ViewRecord(FILE, 1, 0, 2, PAGE_READWRITE)}
PTES = {(1, 0x500): PteView(10, True), (1, 0x501): PteView(11, True),
        (2, 0x600): PteView(10, False), (2, 0x601): PteView(11, False),
        (1, 0x700): PteView(20, True), (1, 0x701): PteView(21, True)}
CACHE = {(1, 0): CacheView(20, False), (1, 1): CacheView(21, True)}
MEMORY = {10: 0, 11: 3, 20: 5, 21: 99}


def build(**changes: object) -> SharedState:
    parts: dict[str, object] = {"blocks": {1: BLOCK}, "files": {1: FILE_1}, "cache": CACHE,
                                "views": VIEWS, "ptes": PTES, "memory": MEMORY,
                                "nframes": 64}
    parts.update(changes)
    return concrete_shared(**parts)  # type: ignore[arg-type]


def test_concrete_shared_builds_a_valid_state() -> None:
    s = build()
    assert violated(s) == []
    assert valid(z3.And(s.brefs[1] == 2, s.refs[10] == 2, s.refs[20] == 1, s.kind[21] == FILE,
                        s.idx[11] == 1, s.src[21] == 1, s.vcount[2, 0x601] == 2,
                        s.vidx[1, 0x701] == 1, s.slot_pid[11, s.vslot[2, 0x601]] == 2))


@pytest.mark.parametrize(("changes", "broken"), [
    # a PTE left behind outside any view
    ({"ptes": {**PTES, (3, 0x900): PteView(20, False)}}, ["VMM-1"]),
    # a view not on the 64 KB granularity
    ({"views": {**VIEWS, (3, 0x808): ViewRecord(SHM, 1, 0, 2, PAGE_READONLY)},
      "ptes": {**PTES, (3, 0x808): PteView(10, False), (3, 0x809): PteView(11, False)}},
     ["VMM-1"]),
    # a view page mapping another page's frame (the frames' counts are VMM-1's)
    ({"ptes": {**PTES, (1, 0x501): PteView(10, True)}}, ["VMM-1"]),
    # a view record gone, its PTEs kept, the block's own refcount still counting it
    ({"views": {k: v for k, v in VIEWS.items() if k != (2, 0x600)},
      "blocks": {1: BLOCK._replace(refs=2)}}, ["VMM-1", "SHM-1"]),
    # a view split into two pieces (munmap of nothing: each page its own piece), each
    # counted: valid
    ({"views": {**VIEWS, (1, 0x500): VIEWS[(1, 0x500)]._replace(count=1),
                (1, 0x501): VIEWS[(1, 0x500)]._replace(first=1, count=1)},
      "blocks": {1: BLOCK._replace(refs=3)}}, []),
    # ... the new piece not counted in the block's refcount
    ({"views": {**VIEWS, (1, 0x500): VIEWS[(1, 0x500)]._replace(count=1),
                (1, 0x501): VIEWS[(1, 0x500)]._replace(first=1, count=1)},
      "blocks": {1: BLOCK._replace(refs=2)}}, ["SHM-1"]),
    # ... the tail piece with the page offset of the head (its frame is page 1's)
    ({"views": {**VIEWS, (1, 0x500): VIEWS[(1, 0x500)]._replace(count=1),
                (1, 0x501): VIEWS[(1, 0x500)]._replace(count=1)}}, ["VMM-1"]),
    # a tail piece of a file view keeps its page offset, off the 64 KB granularity: valid
    ({"views": {**VIEWS, (1, 0x700): VIEWS[(1, 0x700)]._replace(count=1),
                (1, 0x701): VIEWS[(1, 0x700)]._replace(first=1, count=1)}}, []),
    # the implementation's own refcount of the block counts a view too many
    ({"blocks": {1: BLOCK._replace(refs=3)}}, ["SHM-1"]),
    # its own refcount matches the views: valid
    ({"blocks": {1: BLOCK._replace(refs=2)}}, []),
    # a destroyed block with no view still holds its frames
    ({"blocks": {1: BLOCK._replace(live=False)}, "views": {(1, 0x700): VIEWS[(1, 0x700)]},
      "ptes": {k: v for k, v in PTES.items() if k[1] >= 0x700}}, ["SHM-2"]),
    # a read-write view of a read-only block
    ({"blocks": {1: BLOCK._replace(protect=PAGE_READONLY)}}, ["SHM-3"]),
    # a clean cached page whose frame does not hold the file's bytes
    ({"memory": {**MEMORY, 20: 77}}, ["MMF-1"]),
    # a cached page nothing maps
    ({"cache": {**CACHE, (1, 1): CacheView(21, False)}, "memory": {**MEMORY, 21: 6},
      "views": {**VIEWS, (1, 0x700): ViewRecord(FILE, 1, 0, 1, PAGE_READWRITE)},
      "ptes": {k: v for k, v in PTES.items() if k != (1, 0x701)}}, ["MMF-1"]),
    # a writable PTE on a read-only view
    ({"ptes": {**PTES, (2, 0x600): PteView(10, True)}}, ["MMF-2"]),
    # a writable file view of a read-only node (its view and its PTEs)
    ({"files": {1: FILE_1._replace(writable=False)}}, ["SHM-3", "MMF-2"]),
    # a page of a read-only view made read-write
    ({"views": {**VIEWS, (2, 0x600): VIEWS[(2, 0x600)]._replace(
        pages=(PAGE_READWRITE, PAGE_READONLY))}}, ["SHM-3"]),
    # a page made PAGE_NOACCESS keeps its mapping (no PTE: not writable): valid
    ({"views": {**VIEWS, (1, 0x500): VIEWS[(1, 0x500)]._replace(
        pages=(PAGE_NOACCESS, PAGE_READWRITE))},
      "ptes": {**PTES, (1, 0x500): PteView(10, False)}}, []),
    # ... but a writable PTE left on it
    ({"views": {**VIEWS, (1, 0x500): VIEWS[(1, 0x500)]._replace(
        pages=(PAGE_NOACCESS, PAGE_READWRITE))}}, ["MMF-2"]),
])
def test_concrete_shared_corrupted_states(changes: dict[str, object], broken: list[str]) -> None:
    assert violated(build(**changes)) == broken


# -- broken variants --------------------------------------------------------------------------

def test_every_claim_has_a_shared_memory_variant() -> None:
    assert {v.invariant for v in SHARED_VARIANTS} == {*CLAIMS, *STEP_CLAIMS}
    names = {v.name for v in SHARED_VARIANTS}
    assert {"refcount-not-decremented", "sync-skips-the-last-page", "unmap-drops-dirty-data",
            "read-write-mapping-of-read-only-block"} <= names


@pytest.mark.parametrize("variant", SHARED_VARIANTS, ids=lambda v: f"{v.invariant}-{v.name}")
def test_variant_has_a_reachable_counterexample(variant: BrokenVariant) -> None:
    """Each bug breaks its claim from a state the spec reaches (the search
    proofs.broken_variants.catch ends with; tests/test_broken_variants.py runs
    catch itself), and the clean step does not."""
    op = LAYER.operation(variant.operation)
    assert layered.search_reachable(LAYER, op, variant.invariant) is None
    assert variant.transition is not None
    broken = dataclasses.replace(op, transition=variant.transition)
    with applied(variant):
        verdict = layered.search_reachable(LAYER, broken, variant.invariant)
    assert verdict is not None and verdict.kind is Kind.COUNTEREXAMPLE
    assert verdict.violated == (variant.invariant,)
