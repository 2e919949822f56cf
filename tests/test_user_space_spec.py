"""User address spaces in z3 (spec/user_space.py, proofs/user_space.py): the
obligations, a few proved steps, the steps' verdicts on concrete states, the
concrete-state builder, and the broken variants caught by name."""

from __future__ import annotations

import dataclasses

import pytest
import z3

from proofs.broken_variants import VARIANTS
from proofs.inductive.layered import prove
from proofs.obligation import Kind
from proofs.user_space import FULL_ONLY, LAYER, obligations, user_states
from spec import user_space as us
from spec.abi import (
    EACCES,
    EINVAL,
    ENOMEM,
    MEM_COMMIT,
    MEM_FREE,
    MEM_RESERVE,
    ORIGIN_BRK,
    ORIGIN_MMAP,
    ORIGIN_PROCESS_HEAP,
    ORIGIN_STACK,
    ORIGIN_VIRTUAL_ALLOC,
    PAGE_NOACCESS,
    PAGE_READONLY,
    PAGE_READWRITE,
    ErrorCode,
)
from spec.state import Ref
from spec.user_space import PageView, SpaceView, concrete_user, violated

E = ErrorCode
CLAIMS = ["USR-1", "USR-2", "USR-3", "USR-4", "PROT-2", "PROT-3"]
USER_VARIANTS = [v for v in VARIANTS if v.layer == "user_space"]


def valid(claim: Ref) -> bool:
    solver = z3.Solver()
    solver.add(z3.Not(claim))
    return bool(solver.check() == z3.unsat)


def i(value: int) -> Ref:
    return z3.IntVal(value)


@pytest.fixture(scope="module")
def one() -> us.UserState:
    return user_states()[0][1]


def test_obligations_one_per_call_and_claim() -> None:
    ids = [o.id for o in obligations()]
    public = [op.name for op in LAYER.operations if not op.internal]
    expected = {f"user_space.{name}.{claim}" for name in public for claim in CLAIMS}
    non_vacuous = {f"user_space.{name}.NON-VACUOUS" for name in public}
    assert set(ids) == expected | {"user_space.Access.PROT-1"} | non_vacuous
    # 28 public calls x 6 invariants, PROT-1, and each call's non-vacuity
    assert len(ids) == len(set(ids)) == 28 * 6 + 1 + 28
    assert FULL_ONLY <= set(ids)
    assert {"BrkGrow", "BrkShrink"} <= {op.name for op in LAYER.operations if op.internal}


@pytest.mark.parametrize(("operation", "claim"), [
    ("VirtualAllocReserve", "USR-3"), ("Munmap", "USR-2"), ("BrkShrink", "USR-4"),
    ("MmapFixed", "PROT-2"), ("VirtualProtect", "PROT-3"), ("Access", "PROT-1"),
    ("DestroyProcess", "USR-1")])
def test_step_proved(operation: str, claim: str) -> None:
    verdict = prove(LAYER, LAYER.operation(operation), claim, "quick")
    assert verdict.kind is Kind.PROVED, verdict.detail


def test_reachable_states_satisfy_every_invariant() -> None:
    for name, state in user_states():
        assert violated(state) == [], name


def status_is(step: us.UserStep, code: int) -> bool:
    return valid(z3.Implies(step.assume, step.status == code))


def test_reserve_unaligned_refused_and_state_unchanged(one: us.UserState) -> None:
    step = us.VirtualAllocReserve(one, i(1), i(0x481), i(2), i(PAGE_READWRITE))
    assert status_is(step, E.ERROR_INVALID_ADDRESS)
    assert step.post is not one and valid(step.post.state == one.state)
    ok = us.VirtualAllocReserve(one, i(1), i(0x480), i(2), i(PAGE_READWRITE))
    assert status_is(ok, 0) and valid(ok.post.state[1, 0x481] == MEM_RESERVE)
    assert status_is(us.VirtualAllocReserve(one, i(1), i(0x440), i(1), i(PAGE_READWRITE)),
                     E.ERROR_INVALID_ADDRESS)  # already reserved
    assert status_is(us.VirtualAllocReserve(one, i(1), i(0x480), i(1), i(0x3)),
                     E.ERROR_INVALID_PARAMETER)


def test_commit_only_inside_one_reservation(one: us.UserState) -> None:
    pick, pinv, no = z3.Array("pick", z3.IntSort(), z3.IntSort()), z3.Array(
        "pinv", z3.IntSort(), z3.IntSort()), z3.BoolVal(False)
    outside = us.VirtualAllocCommit(one, i(1), i(0x470), i(1), i(PAGE_READWRITE), pick, pinv, no)
    assert status_is(outside, E.ERROR_INVALID_ADDRESS)
    across = us.VirtualAllocCommit(one, i(1), i(0x443), i(2), i(PAGE_READWRITE), pick, pinv, no)
    assert status_is(across, E.ERROR_INVALID_ADDRESS)  # 0x444 is past the reservation
    inside = us.VirtualAllocCommit(one, i(1), i(0x442), i(2), i(PAGE_READWRITE), pick, pinv, no)
    assert status_is(inside, 0)


def test_reset_inside_one_allocation_changes_nothing(one: us.UserState) -> None:
    """MEM_RESET / MEM_RESET_UNDO (Wine test_VirtualAlloc): reserved or committed pages
    of one allocation, the state unchanged; past its end or free: 487; protection
    checked (87)."""
    inside = us.VirtualAllocReset(one, i(1), i(0x440), i(4), i(PAGE_NOACCESS))
    assert status_is(inside, 0)
    assert all(valid(getattr(inside.post, f.name) == getattr(one, f.name))
               for f in dataclasses.fields(one))
    assert status_is(us.VirtualAllocReset(one, i(1), i(0x443), i(2), i(PAGE_NOACCESS)),
                     E.ERROR_INVALID_ADDRESS)  # 0x444 is past the reservation
    assert status_is(us.VirtualAllocReset(one, i(1), i(0x470), i(1), i(PAGE_NOACCESS)),
                     E.ERROR_INVALID_ADDRESS)  # free
    assert status_is(us.VirtualAllocReset(one, i(1), i(0x440), i(1), i(0)),
                     E.ERROR_INVALID_PARAMETER)


def test_munmap_takes_brk_mmap_and_whole_reservations(one: us.UserState) -> None:
    assert status_is(us.Munmap(one, i(1), i(0x440), i(1)), EINVAL)  # part of a reservation
    assert status_is(us.Munmap(one, i(1), i(0x43F), i(4)), EINVAL)
    assert status_is(us.Munmap(one, i(1), i(0x440), i(4)), 0)  # the whole reservation
    assert status_is(us.Munmap(one, i(1), i(0x400), i(1)), EINVAL)  # the image
    assert status_is(us.Munmap(one, i(1), i(0x4FF), i(1)), EINVAL)  # the stack
    assert status_is(us.Munmap(one, i(1), i(0x411), i(1)), 0)  # a brk page
    assert status_is(us.Munmap(one, i(1), i(0x600), i(4)), 0)  # unmapped range: success
    assert status_is(us.Munmap(one, i(1), i(0x460), i(0)), EINVAL)


def test_mprotect_stops_at_the_first_hole(one: us.UserState) -> None:
    ro = i(PAGE_READONLY)
    assert status_is(us.Mprotect(one, i(1), i(0x410), i(1), ro), 0)  # brk pages allowed
    assert status_is(us.Mprotect(one, i(1), i(0x4FF), i(1), ro), 0)  # stack pages allowed
    assert status_is(us.Mprotect(one, i(1), i(0x442), i(1), ro), ENOMEM)
    assert status_is(us.Mprotect(one, i(1), i(0x460), i(0), ro), 0)
    partial = us.Mprotect(one, i(1), i(0x440), i(3), ro, i(0x442))
    assert status_is(partial, ENOMEM)
    assert valid(z3.And(partial.post.protect[1, 0x441] == PAGE_READONLY,
                        partial.post.state[1, 0x442] == MEM_RESERVE))
    # the stop is the first hole, nothing else
    assert valid(z3.Not(us.Mprotect(one, i(1), i(0x440), i(3), ro, i(0x441)).assume))
    assert valid(z3.Not(us.Mprotect(one, i(1), i(0x440), i(3), ro, i(0x443)).assume))


def test_process_heap_pages_belong_to_the_heap_manager() -> None:
    pages = {0x440: page(MEM_COMMIT, PAGE_READWRITE, 0x440, ORIGIN_PROCESS_HEAP, 3, True, True),
             0x441: page(MEM_RESERVE, 0, 0x440, ORIGIN_PROCESS_HEAP, None)}
    s = concrete_user({1: pages}, LAYOUT, 16)
    pick, pinv = z3.Array("pick", z3.IntSort(), z3.IntSort()), z3.Array(
        "pinv", z3.IntSort(), z3.IntSort())
    ro = i(PAGE_READONLY)
    assert status_is(us.Mprotect(s, i(1), i(0x440), i(1), ro), EACCES)
    assert status_is(us.VirtualProtect(s, i(1), i(0x440), i(1), ro), E.ERROR_ACCESS_DENIED)
    assert status_is(us.VirtualAllocCommit(s, i(1), i(0x441), i(1), ro, pick, pinv,
                                           z3.BoolVal(False)), E.ERROR_ACCESS_DENIED)
    assert status_is(us.VirtualFreeRelease(s, i(1), i(0x440)), E.ERROR_INVALID_PARAMETER)
    assert status_is(us.Munmap(s, i(1), i(0x440), i(2)), EINVAL)


def test_windows_calls_on_brk_and_stack(one: us.UserState) -> None:
    ro = i(PAGE_READONLY)
    assert status_is(us.VirtualProtect(one, i(1), i(0x410), i(2), ro), 0)
    assert status_is(us.VirtualFreeRelease(one, i(1), i(0x410)), E.ERROR_INVALID_PARAMETER)
    assert status_is(us.VirtualFreeDecommit(one, i(1), i(0x4FF), i(1)),
                     E.ERROR_INVALID_PARAMETER)


def test_brk_grow_extends_the_brk_allocation_at_the_break(one: us.UserState) -> None:
    pick, pinv, no = z3.Array("pick", z3.IntSort(), z3.IntSort()), z3.Array(
        "pinv", z3.IntSort(), z3.IntSort()), z3.BoolVal(False)
    grown = us.BrkGrow(one, i(1), i(0x413), pick, pinv, no)
    assert status_is(grown, 0) and valid(z3.Implies(grown.assume, z3.And(
        grown.post.base[1, 0x412] == 0x410, grown.post.origin[1, 0x412] == ORIGIN_BRK)))
    holed = us.Munmap(one, i(1), i(0x411), i(1)).changed
    fresh = us.BrkGrow(holed, i(1), i(0x413), pick, pinv, no)
    assert status_is(fresh, 0) and valid(z3.Implies(fresh.assume,
                                                    fresh.post.base[1, 0x412] == 0x412))
    # the guard page above the new end must be free
    assert status_is(us.BrkGrow(one, i(1), i(0x43F), pick, pinv, no), ENOMEM)


@pytest.mark.parametrize(("vpn", "kind", "code"), [
    (0x440, us.READ, 0), (0x440, us.WRITE, E.ERROR_NOACCESS),
    (0x441, us.READ, E.ERROR_NOACCESS), (0x450, us.EXECUTE, 0),
    (0x450, us.READ, E.ERROR_NOACCESS), (0x460, us.WRITE, 0),
    (0x470, us.READ, E.ERROR_NOACCESS), (0x10, us.READ, E.ERROR_NOACCESS),
    (0x460, 3, E.ERROR_INVALID_PARAMETER)])
def test_access(one: us.UserState, vpn: int, kind: int, code: int) -> None:
    assert status_is(us.Access(one, i(1), i(vpn), i(kind)), code)


def test_destroy_gives_back_every_frame(one: us.UserState) -> None:
    step = us.DestroyProcess(one, i(1))
    f = z3.Int("f")
    assert valid(z3.ForAll([f], step.post.owner[f] == 0))
    assert status_is(us.DestroyProcess(step.post, i(1)), E.ERROR_INVALID_HANDLE)


def page(state: int, protect: int, base: int, origin: int, frame: int | None,
         present: bool = False, writable: bool = False) -> PageView:
    return PageView(state, protect, base, origin, frame, present, writable, present)


LAYOUT = {1: SpaceView(0x410, 0x410, 0x420, 0x500, 0)}


def test_concrete_user_builds_a_valid_state() -> None:
    pages = {0x440: page(MEM_COMMIT, PAGE_READWRITE, 0x440, ORIGIN_VIRTUAL_ALLOC, 3, True, True),
             0x441: page(MEM_RESERVE, 0, 0x440, ORIGIN_VIRTUAL_ALLOC, None),
             0x460: page(MEM_COMMIT, PAGE_NOACCESS, 0x460, ORIGIN_MMAP, 4)}
    s = concrete_user({1: pages}, LAYOUT, 16)
    assert violated(s) == []
    assert valid(z3.And(s.owner[3] == 1, s.rmap[3] == 0x440, s.owner[4] == 1,
                        s.state[1, 0x442] == MEM_FREE, s.state[2, 0x440] == MEM_FREE))


@pytest.mark.parametrize(("pages", "broken"), [
    ({0x441: page(MEM_RESERVE, 0, 0x440, ORIGIN_VIRTUAL_ALLOC, None)}, "USR-1"),
    ({0x300: page(MEM_RESERVE, 0, 0x300, ORIGIN_MMAP, None)}, "USR-1"),
    ({0x440: page(MEM_COMMIT, PAGE_READWRITE, 0x440, ORIGIN_MMAP, 99, True, True)}, "USR-2"),
    ({0x448: page(MEM_RESERVE, 0, 0x448, ORIGIN_VIRTUAL_ALLOC, None)}, "USR-3"),
    ({0x440: page(MEM_COMMIT, PAGE_READONLY, 0x440, ORIGIN_MMAP, 3, True, True)}, "PROT-2"),
    ({0x10: page(MEM_FREE, 0, 0, 0, None)._replace(pte_user=True)}, "PROT-3"),
])
def test_concrete_user_corrupted_states(pages: dict[int, PageView], broken: str) -> None:
    s = concrete_user({1: pages}, LAYOUT, 16)
    assert violated(s) == [broken]


def test_shared_frame_breaks_usr_2() -> None:
    mine = page(MEM_COMMIT, PAGE_READWRITE, 0x440, ORIGIN_MMAP, 3, True, True)
    s = concrete_user({1: {0x440: mine}, 2: {0x440: mine}}, {**LAYOUT, 2: LAYOUT[1]}, 16)
    assert violated(s) == ["USR-2"]


@pytest.mark.parametrize("pages", [
    {0x411: page(MEM_COMMIT, PAGE_READWRITE, 0x411, ORIGIN_BRK, 3, True, True)},
    {0x4F0: page(MEM_RESERVE, 0, 0x4F0, ORIGIN_STACK, None)},
])
def test_heap_or_stack_outside_its_bounds_breaks_usr_4(pages: dict[int, PageView]) -> None:
    s = concrete_user({1: pages}, {1: SpaceView(0x410, 0x411, 0x420, 0x600, 0)}, 16)
    assert violated(s) == ["USR-4"]
    assert violated(concrete_user({}, {1: SpaceView(0x411, 0x410, 0x420, 0x500, 0)}, 16)) \
        == ["USR-4"]


def test_every_claim_has_a_user_space_variant() -> None:
    assert {v.invariant for v in USER_VARIANTS} == {*CLAIMS, "PROT-1"}

    # each is caught by name in tests/test_broken_variants.py, which runs them all
