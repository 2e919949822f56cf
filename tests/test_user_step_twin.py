"""The process steps' Python twins accept a call exactly where the z3 step does.

Hypothesis builds model processes through their own calls (those of
tests/test_user_twin.py), then makes one more CreateProcess or
DestroyProcess (of a live pid, a destroyed one or one never made) and takes
the views before and after it; or one VirtualAlloc(MEM_RESERVE |
MEM_COMMIT) or mmap without MAP_FIXED (at NULL, on the 64 KB granule, off
it, over pages in use; valid and invalid protections). The z3 verdict is the user harness's own
(``UserChecks.expected`` and ``transition``, proofs/machines/user_space.py):
the step, its assumption on the frames picked, its status against the code
and, on success, the observable fields of its successor against the view
after. The twin (proofs/abstractions/user_step_twin.py), chosen as the
oracle's judge chooses it, must accept only what the z3 step accepts, and
exactly that for a successful call (a failure it leaves to z3): on the
model's own views (where both accept a successful call) and on reports
corrupted by one edit of the view after (the edits of
tests/test_user_twin.py: a page's field, a page dropped or copied, a layout
field at a bound, a layout dropped) or of the code. The default run makes
25 and 50 examples, MEMSPEC_SLOW=1 60 and 120 (tests/budget.py).
"""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proofs.abstractions.user_space import View
from proofs.abstractions.user_step_twin import FREE_PAGE, observed, shown
from proofs.machines.runner import CheckedMachine
from proofs.machines.user_space import UserHarness
from proofs.oracle.families.user_twins import TwinFirst
from spec.abi import (
    MAP_ANONYMOUS,
    MAP_PRIVATE,
    MEM_COMMIT,
    MEM_FREE,
    MEM_RESERVE,
    PAGE_EXECUTE_READ,
    PAGE_NOACCESS,
    PAGE_READWRITE,
)
from spec.user_space import PageView
from tests.budget import examples
from tests.test_user_twin import CALLS, corrupted

SETTINGS = settings(max_examples=examples(25, 60), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def harness(calls_made: list[tuple[Any, ...]]) -> UserHarness:
    machine = type("TwinCheck", (CheckedMachine,), {"cache": {}, "outcomes": Counter()})
    h = UserHarness(machine)
    calls = h.calls
    for name, *args in [("CreateProcess",), ("SwitchProcess", 1), *calls_made]:
        if name == "SyscallBrk":
            space = calls.current
            args = [0 if space is None else space.heap_start + args[0]]
        getattr(calls, name)(*args)
    return h


def verdicts(h: UserHarness, name: str, args: tuple[Any, ...], pre: View, post: View,
             reply: Any, code: int) -> tuple[bool, bool]:
    """(the twin accepts, the z3 step accepts) the call as reported; the twin
    chosen as the oracle's judge chooses it (TwinFirst.twin_accepts)."""
    pid = h.current_pid()
    twin = TwinFirst.twin_accepts(h, name, args, pid, pre, post, reply, code)  # type: ignore[arg-type]
    step = h.expected(name, args, pid, pre, post, reply, code)
    z3_ok = step is None or not h.transition(step, code, post, compare=code == 0)
    return twin, z3_ok


def one_call(h: UserHarness, call: int | tuple[Any, ...] | None
             ) -> tuple[str, tuple[Any, ...], View, View, Any, int]:
    """CreateProcess (None), DestroyProcess(pid) (an int) or a call of CALLS."""
    pre = h.view()
    if call is None:
        name, args = "CreateProcess", ()
    elif isinstance(call, int):
        name, args = "DestroyProcess", (call,)
    else:
        name, args = call[0], tuple(call[1:])
    reply = getattr(h.calls, name)(*args)
    return name, args, pre, h.view(), reply, int(h.calls.last_error)


#: The calls with a twin: VirtualAlloc reserving and committing (at NULL,
#: on the granule, off it, in use), mmap without MAP_FIXED (hinted or not).
TWINNED = st.one_of(
    st.tuples(st.just("SyscallVirtualAlloc"),
              st.sampled_from((0, 0x10000000, 0x10001000, 0x400000)),
              st.sampled_from((1, 0x1000, 0x2345, 0x10000)),
              st.sampled_from((MEM_RESERVE | MEM_COMMIT, MEM_COMMIT)),
              st.sampled_from((PAGE_READWRITE, PAGE_EXECUTE_READ, PAGE_NOACCESS, 0x41))),
    st.tuples(st.just("SyscallMmap"), st.sampled_from((0, 0x40000000, 0x400000)),
              st.sampled_from((0x1000, 0x2345)), st.integers(0, 7),
              st.just(MAP_PRIVATE | MAP_ANONYMOUS), st.just(0xFFFFFFFF), st.just(0)))
CALL = st.one_of(st.none(), st.integers(0, 4), TWINNED)


def twinned(name: str, args: tuple[Any, ...], post: View, pid: int) -> bool:
    """The call's step has a twin (VirtualAlloc(MEM_COMMIT) alone at an
    address is VirtualAllocCommit, which has none; an mmap reported with no
    layout for its process has no step: the judge's ``expected``)."""
    if name == "SyscallVirtualAlloc":
        return bool(args[2] & MEM_RESERVE or args[0] == 0)
    if name == "SyscallMmap":
        return pid in post[1]
    return True


@SETTINGS
@given(st.lists(CALLS, max_size=8), CALL)
def test_twins_agree_on_model_calls(calls_made: list[tuple[Any, ...]],
                                    call: int | tuple[Any, ...] | None) -> None:
    h = harness(calls_made)
    name, args, pre, post, reply, code = one_call(h, call)
    twin, z3_ok = verdicts(h, name, args, pre, post, reply, code)
    assert z3_ok  # the model keeps the spec (the user machine's claim)
    if code == 0 and reply and twinned(name, args, post, h.current_pid()):
        assert twin  # a success: the twin decides it


@settings(SETTINGS, max_examples=examples(50, 120))
@given(st.lists(CALLS, max_size=6), CALL, st.data())
def test_twins_agree_on_corrupted_reports(calls_made: list[tuple[Any, ...]],
                                          call: int | tuple[Any, ...] | None,
                                          data: st.DataObject) -> None:
    h = harness(calls_made)
    name, args, pre, post, reply, code = one_call(h, call)
    if data.draw(st.booleans()):
        post, _ = data.draw(corrupted(post, h.nframes()))
    else:
        code = data.draw(st.sampled_from((0, 6, 87, 183, 487, 8)))
    try:
        twin, z3_ok = verdicts(h, name, args, pre, post, reply, code)
    except KeyError:  # a view without the new process: the judge refutes it elsewhere
        return
    assert not twin or z3_ok  # a twin only accepts what the z3 step accepts
    if twinned(name, args, post, h.current_pid()) and (
            code == 0 and reply or name == "DestroyProcess"):
        assert twin == z3_ok


def test_a_frame_another_process_owns_is_refused() -> None:
    """The new process reports a frame a process with a higher pid holds in
    the state before (owner not 0: the steps' assumption on pick fails); the
    view after still gives the frame to the lower pid, so only the assumption
    tells the two apart."""
    h = harness([])
    name, args, pre, post, reply, code = one_call(h, None)
    vpn, page = min((v, p) for v, p in post[0][reply].items() if p.frame is not None)
    other = max(post[0]) + 10
    held = {vpn: page._replace(base_vpn=vpn)}
    pre = ({**pre[0], other: held}, {**pre[1], other: post[1][reply]})
    post = ({**post[0], other: held}, {**post[1], other: post[1][reply]})
    assert verdicts(h, name, args, pre, post, reply, code) == (False, False)


def test_two_pages_in_one_frame_are_refused() -> None:
    """Two of the new process's pages report the same frame (pinv names only
    one of them: the assumption on pick fails for the other)."""
    h = harness([])
    name, args, pre, post, reply, code = one_call(h, None)
    pages = sorted((v, p) for v, p in post[0][reply].items() if p.frame is not None)
    (_, page), (second, twin_page) = pages[0], pages[1]
    doubled = {**post[0][reply], second: twin_page._replace(frame=page.frame)}
    post = ({**post[0], reply: doubled}, post[1])
    assert verdicts(h, name, args, pre, post, reply, code) == (False, False)


def reserved_commit() -> tuple[UserHarness, tuple[Any, ...], View, View, int, int]:
    """A process with a fresh VirtualAlloc(NULL, 2 pages, MEM_RESERVE | MEM_COMMIT)."""
    h = harness([])
    name, args, pre, post, reply, code = one_call(
        h, ("SyscallVirtualAlloc", 0, 0x2000, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE))
    assert code == 0 and reply and verdicts(h, name, args, pre, post, reply, code) == (True, True)
    return h, args, pre, post, reply, code


def test_a_reservation_off_the_granule_is_refused() -> None:
    """The same allocation reported one page higher (reply and pages):
    reservation_ok fails."""
    h, args, pre, post, reply, code = reserved_commit()
    first, pid = reply >> 12, h.current_pid()
    moved = {vpn + 1 if page.base_vpn == first else vpn:
             page._replace(base_vpn=first + 1) if page.base_vpn == first else page
             for vpn, page in post[0][pid].items()}
    post = ({**post[0], pid: moved}, post[1])
    assert verdicts(h, "SyscallVirtualAlloc", args, pre, post, reply + 0x1000,
                    code) == (False, False)


def test_a_range_in_use_is_refused() -> None:
    """The range was not free before the call (a reserved page there)."""
    h, args, pre, post, reply, code = reserved_commit()
    first, pid = reply >> 12, h.current_pid()
    page = post[0][pid][first]._replace(state=MEM_RESERVE, protect=0, frame=None,
                                        pte_present=False, pte_writable=False,
                                        pte_user=False)
    pre = ({**pre[0], pid: {**pre[0][pid], first: page}}, pre[1])
    assert verdicts(h, "SyscallVirtualAlloc", args, pre, post, reply, code) == (False, False)


def test_what_a_views_pages_show_is_observed_page_by_page() -> None:
    """``shown`` (unrolled for speed) gives ``observed`` of every page that is not
    plain free, on every combination of state, frame and PTE bits."""
    pages = {n: PageView(state, 4, 9, 2, frame, *bits) for n, (state, frame, bits) in enumerate(
        itertools.product((MEM_FREE, MEM_RESERVE, MEM_COMMIT, 7), (None, 0, 5),
                          itertools.product((False, True), repeat=3)))}
    assert shown(pages) == {vpn: observed(page) for vpn, page in pages.items()
                            if observed(page) != FREE_PAGE}
    assert shown(pages, remember=True) is shown(pages)
