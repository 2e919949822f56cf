"""The page manager's step twins agree with their z3 forms (the source of truth).

Hypothesis builds states from the model (a PageManager, paging on or off,
held and mapped frames, some physical contents) and corrupts them
(:func:`tests.test_paging_twin.corrupted`'s edits, plus extreme counts,
nframes 0, owners past HELD, stored bytes), then, for every twinned step of
spec/page_manager.py and arguments at its bounds:

- the step's status, result, guarded ``assume`` and every real field of its
  successor are the twin's (:mod:`proofs.abstractions.page_manager_twin`);
- the harness's verdict on a reported call (the model's own call, or one
  answered with a wrong status, a wrong reply or a wrong post-state) is
  :func:`proofs.machines.paging_harness_twin.accepts`'s: the twin accepts
  exactly the calls the z3 step allows.

The step test makes 60 examples, 120 with MEMSPEC_SLOW=1 (tests/budget.py).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import z3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model.page_manager import PageManager
from model.virtual_memory import VirtualMemoryManager
from proofs.abstractions import page_manager_twin as tw
from proofs.abstractions.paging import Snapshot, snapshot, to_state
from proofs.machines.checks import CheckError, decide
from proofs.machines.paging_expect import spec_step
from proofs.machines.paging_harness import Harness
from proofs.machines.paging_harness_twin import accepts
from proofs.machines.paging_queries import InvariantChecker, Stats
from spec import page_manager as spec_pm
from spec.abi import IDENTITY_LIMIT, NO_FRAME, PAGE_SIZE, ErrorCode
from spec.state import REAL_FIELDS
from tests.budget import SLOW, examples
from tests.test_paging_twin import corrupted

CHECKER = InvariantChecker(Stats())
OPS = ("InitializePhysicalMemory", "RequestFrame", "FreeFrame", "FirstFreeFrame",
       "GetFrameCount", "GetFreeFrameCount", "GetUsedFrameCount")
CODES = (0, *(int(c) for c in (ErrorCode.ERROR_NOT_READY, ErrorCode.ERROR_NOT_ENOUGH_MEMORY,
                               ErrorCode.ERROR_INVALID_BLOCK, ErrorCode.ERROR_BUSY,
                               ErrorCode.ERROR_INVALID_PARAMETER,
                               ErrorCode.ERROR_INVALID_ADDRESS)))


@st.composite
def models(draw: Any) -> tuple[PageManager, VirtualMemoryManager]:
    """A model reached through its own calls (or not initialized at all)."""
    pm = PageManager()
    vm = VirtualMemoryManager(pm)
    if draw(st.integers(0, 9)) == 0:
        return pm, vm
    nframes = draw(st.integers(4, 40))
    assert pm.InitializePhysicalMemory(draw(st.sampled_from((0, 0x1000, 0x2001))),
                                       nframes * PAGE_SIZE)
    if draw(st.booleans()) and vm.InitializePaging() and vm.kernel_directory is not None:
        for page in draw(st.lists(st.integers(0, 4), max_size=3)):
            vm.AllocPage(vm.kernel_directory, 0xC0000000 + page * PAGE_SIZE, True, True)
    for _ in range(draw(st.integers(0, 40))):
        if pm.RequestFrame(True, True) == NO_FRAME:
            break
    return pm, vm


@st.composite
def states(draw: Any, snap: Snapshot) -> Snapshot:
    """snap, perhaps corrupted: the paging twins' edits and the page manager's own."""
    if draw(st.booleans()):
        return snap
    snap = draw(corrupted(snap))
    kind = draw(st.sampled_from(("count", "nframes", "owner", "mem", "none")))
    frames = st.integers(0, snap.nframes + 2)
    if kind == "count":
        count = draw(st.sampled_from((0, 1, 0xFFFFFFFF, snap.nframes, snap.nframes - 1)))
        snap = dataclasses.replace(snap, used_count=count & 0xFFFFFFFF)
    elif kind == "nframes":
        snap = dataclasses.replace(snap, nframes=draw(st.sampled_from((0, 1, snap.used_count))))
    elif kind == "owner":
        snap = dataclasses.replace(snap, owner={**snap.owner, draw(frames): draw(
            st.integers(1, 7))})
    elif kind == "mem":
        snap = dataclasses.replace(snap, mem={**snap.mem, draw(frames): {
            draw(st.integers(0, 4095)): draw(st.integers(1, 255))}})
    return snap


def arguments(draw: Any, op: str, snap: Snapshot) -> tuple[int, ...]:
    """The spec step's arguments, at its bounds."""
    frames = st.integers(0, snap.nframes + 2) | st.sampled_from((0xFFFFF,))
    if op == "InitializePhysicalMemory":
        start = st.sampled_from((0, 1, 0xFFF, 0x1000, 0x8000, 0x8001, IDENTITY_LIMIT,
                                 IDENTITY_LIMIT + 1, 0xFFFFFFFF)) | st.integers(0, (1 << 32) - 1)
        end = st.sampled_from((0, 0x1000, 0x8000, 0x30000, 0x1000000, 1 << 32, (1 << 32) + 0x1000,
                               (1 << 33) - 1)) | st.integers(0, (1 << 33) - 1)
        return draw(start), draw(end)
    if op == "FreeFrame":
        return (draw(frames) << 12 | draw(st.sampled_from((0, 0, 1, 0x800))),)
    if op in ("RequestFrame", "FirstFreeFrame"):
        return (draw(frames),)
    return ()


def _value(term: z3.ExprRef) -> Any:
    simple = z3.simplify(term)
    return simple.as_long() if z3.is_bv_value(simple) else decide(term, "value")


@settings(max_examples=examples(60, 120), deadline=None,
          suppress_health_check=list(HealthCheck))
@given(st.data())
def test_every_step_agrees_with_its_z3_form(data: st.DataObject) -> None:
    pm, vm = data.draw(models())
    snap = data.draw(states(snapshot(pm, vm)))
    blank = dataclasses.replace(snap, nframes=0)  # where InitializePhysicalMemory can succeed
    for op, state in [*((op, snap) for op in OPS), ("InitializePhysicalMemory", blank)]:
        check_step(data, op, state)


def check_step(data: st.DataObject, op: str, snap: Snapshot) -> None:
    """The twin of op and its z3 form, on snap with arguments drawn at the bounds."""
    pre = tw.real(snap)
    assert pre is not None
    state = to_state(snap)
    args = arguments(data.draw, op, snap)
    params = {"InitializePhysicalMemory": ("mem_start", "mem_end"),
              "FreeFrame": ("frame_addr",), "RequestFrame": ("frame",),
              "FirstFreeFrame": ("result",)}.get(op, ())
    step = (getattr(spec_pm, op)(state) if op.startswith("Get")  # outside the catalogue
            else spec_step(op, state, **dict(zip(params, args, strict=True))))
    twin = tw.STEPS[op](pre, *args)
    where = (op, args, snap)
    assert _value(step.status) == twin.status, where
    assert (None if step.result is None else _value(step.result)) == twin.result, where
    assert decide(step.assume, "assume") == twin.assume, where
    post = to_state(twin.post.snapshot())
    for name in REAL_FIELDS:
        assert same(getattr(step.post, name), getattr(post, name)), (name, where)


#: Frames where two FRAME-indexed maps of these steps can differ: every map is
#: a default with stores below frame 1100 (the states' frames, and
#: InitializePhysicalMemory's reserved range, at most IDENTITY_LIMIT's 1024
#: frames), so they agree everywhere when they agree here and at the last frame.
POINTS = (*range(1100), (1 << 20) - 1)


def same(a: z3.ExprRef, b: z3.ExprRef) -> bool:
    """Whether two closed terms are equal: the simplifier or z3 within 2 s decides,
    else (an array it cannot compare whole: InitializePhysicalMemory's Lambdas,
    where z3 ran to the checks' 60 s timeout, twice) the simplifier point by point."""
    simple = z3.simplify(a == b)
    if z3.is_true(simple) or z3.is_false(simple):
        return z3.is_true(simple)
    solver = z3.Solver()
    solver.set("timeout", 2000)
    solver.add(a != b)
    answer = solver.check()
    if answer != z3.unknown:
        return answer == z3.unsat
    return all(z3.is_true(z3.simplify(a[z3.BitVecVal(p, 20)] == b[z3.BitVecVal(p, 20)]))
                   for p in POINTS)


class _Replies:
    """A page manager that answers with a scripted reply and error code."""

    def __init__(self, reply: object, status: int) -> None:
        self.reply, self.last_error = reply, status

    def __getattr__(self, op: str) -> Any:
        return lambda *args: self.reply


class Scripted(Harness):
    """The paging harness judging one scripted call by z3 alone (no twin): the
    state before and after, the reply and the error code are given."""

    subject = "implementation"
    post_invariants = False

    def __init__(self, pre: Snapshot, post: Snapshot, reply: object, status: int) -> None:
        self.stats, self.invariants, self.passed = Stats(), CHECKER, None
        self.history: list[str] = []
        self._state = None
        self.snap, self._after = pre, [pre, post]
        self.pm: Any = _Replies(reply, status)

    def _snapshot(self) -> Snapshot:
        return self._after.pop(0) if len(self._after) > 1 else self._after[0]


def z3_allows(op: str, call: tuple[Any, ...], pre: Snapshot, post: Snapshot, reply: object,
              status: int) -> bool:
    try:
        getattr(Scripted(pre, post, reply, status), op)(*call)
    except CheckError:
        return False
    return True


def model_call(pm: PageManager, op: str, call: tuple[Any, ...]) -> object:
    return getattr(pm, op)(*call)


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_the_twin_accepts_exactly_what_z3_allows(data: st.DataObject) -> None:
    """The model's own call (which the spec allows) and calls answered wrongly:
    the twin's acceptance is the z3 harness's verdict."""
    pm, vm = data.draw(models())
    op = data.draw(st.sampled_from(OPS))
    pre = snapshot(pm, vm)
    if op == "RequestFrame":
        call: tuple[Any, ...] = (data.draw(st.sampled_from((True, False, 1))), True)
    elif op in ("InitializePhysicalMemory", "FreeFrame"):
        call = arguments(data.draw, op, pre)
    else:
        call = ()
    reply = model_call(pm, op, call)
    status = int(pm.last_error)
    post = snapshot(pm, vm)
    wrong = data.draw(st.sampled_from(("none", "none", "status", "reply", "post", "pre")))
    if wrong == "status":
        status = data.draw(st.sampled_from(CODES))
    elif wrong == "reply":
        reply = data.draw(st.sampled_from((True, False, 0, NO_FRAME, None, -1, 1 << 32))
                          | st.integers(0, 64 * PAGE_SIZE))
    elif wrong == "post":
        post = data.draw(states(post))
    elif wrong == "pre":
        pre = data.draw(states(pre))
    allowed = z3_allows(op, call, pre, post, reply, status)
    assert accepts(op, dict(zip(_params(op), call, strict=True)), reply, status, pre, post) \
        == allowed, (op, call, reply, status, wrong, pre, post)
    if wrong == "none":
        assert allowed, "the model's own call is allowed"


def _params(op: str) -> tuple[str, ...]:
    return {"InitializePhysicalMemory": ("mem_start", "mem_end"), "FreeFrame": ("frame_addr",),
            "RequestFrame": ("is_kernel", "is_writeable")}.get(op, ())


@pytest.mark.parametrize("op", OPS[1:])
def test_the_twin_accepts_the_models_calls_at_the_real_size(op: str) -> None:
    """4096 frames, a 1 MB heap's pages mapped: the model's calls pass the twin
    and z3 alike (FirstFreeFrame's z3 form only with MEMSPEC_SLOW=1; the
    smaller machines of the tests above compare it with z3 every run)."""
    pm = PageManager()
    vm = VirtualMemoryManager(pm)
    assert pm.InitializePhysicalMemory(0x8000, 0x1000000) and vm.InitializePaging()
    assert vm.kernel_directory is not None
    for page in range(256):
        assert vm.AllocPage(vm.kernel_directory, 0xC0000000 + page * PAGE_SIZE, True, True)
    held = pm.RequestFrame(True, True)
    call: tuple[Any, ...] = {"RequestFrame": (True, True), "FreeFrame": (held,)}.get(op, ())
    pre = snapshot(pm, vm)
    reply = model_call(pm, op, call)
    post = snapshot(pm, vm)
    args = dict(zip(_params(op), call, strict=True))
    assert accepts(op, args, reply, int(pm.last_error), pre, post)
    if op != "FirstFreeFrame" or SLOW:  # its z3 quantifier over 4096 frames: 20-40 s
        assert z3_allows(op, call, pre, post, reply, int(pm.last_error))
    assert not accepts(op, args, reply, int(pm.last_error), pre,
                       dataclasses.replace(post, used_count=post.used_count + 1))
