"""The process steps' Python twins accept a call exactly where the z3 step does.

Hypothesis builds model processes through their own calls (those of
tests/test_user_twin.py), then makes one more CreateProcess or
DestroyProcess (of a live pid, a destroyed one or one never made) and takes
the views before and after it. The z3 verdict is the user harness's own
(``UserChecks.expected`` and ``transition``, proofs/machines/user_space.py):
the step, its assumption on the frames picked, its status against the code
and, on success, the observable fields of its successor against the view
after. The twin (proofs/abstractions/user_step_twin.py) must give the same
verdict on the model's own views (where both accept a successful call) and
on reports corrupted by one edit of the view after (the edits of
tests/test_user_twin.py: a page's field, a page dropped or copied, a layout
field at a bound, a layout dropped) or of the code.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proofs.abstractions.user_space import View
from proofs.abstractions.user_step_twin import create_accepts, destroy_accepts
from proofs.machines.runner import CheckedMachine
from proofs.machines.user_space import UserHarness
from tests.test_user_twin import CALLS, corrupted

SETTINGS = settings(max_examples=60, deadline=None,
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
    """(the twin accepts, the z3 step accepts) the call as reported."""
    nframes = h.nframes()
    if name == "DestroyProcess":
        twin = destroy_accepts(args[0], pre, post, code, nframes)
    else:
        image, image_pages, base, heap_pages = h.process_layout(reply, post)
        twin = create_accepts(reply, image, image_pages, base, heap_pages,
                              h.allocation_pages(post, reply, base), pre, post, code, nframes)
    step = h.expected(name, args, h.current_pid(), pre, post, reply, code)
    z3_ok = step is None or not h.transition(step, code, post, compare=code == 0)
    return twin, z3_ok


def one_call(h: UserHarness, destroy: int | None) -> tuple[str, tuple[Any, ...], View, View,
                                                          Any, int]:
    pre = h.view()
    if destroy is None:
        name, args = "CreateProcess", ()
        reply: Any = h.calls.CreateProcess()
    else:
        name, args = "DestroyProcess", (destroy,)
        reply = h.calls.DestroyProcess(destroy)
    return name, args, pre, h.view(), reply, int(h.calls.last_error)


CALL = st.one_of(st.none(), st.integers(0, 4))


@SETTINGS
@given(st.lists(CALLS, max_size=8), CALL)
def test_twins_agree_on_model_calls(calls_made: list[tuple[Any, ...]], destroy: int | None
                                    ) -> None:
    h = harness(calls_made)
    name, args, pre, post, reply, code = one_call(h, destroy)
    if name == "CreateProcess" and not reply:
        return  # no step: the judge has none for a failed CreateProcess
    twin, z3_ok = verdicts(h, name, args, pre, post, reply, code)
    assert z3_ok  # the model keeps the spec (the user machine's claim)
    assert twin == z3_ok


@settings(SETTINGS, max_examples=120)
@given(st.lists(CALLS, max_size=6), CALL, st.data())
def test_twins_agree_on_corrupted_reports(calls_made: list[tuple[Any, ...]],
                                          destroy: int | None, data: st.DataObject) -> None:
    h = harness(calls_made)
    name, args, pre, post, reply, code = one_call(h, destroy)
    if name == "CreateProcess" and not reply:
        return
    if data.draw(st.booleans()):
        post, _ = data.draw(corrupted(post, h.nframes()))
    else:
        code = data.draw(st.sampled_from((0, 6, 87, 183, 487, 8)))
    try:
        twin, z3_ok = verdicts(h, name, args, pre, post, reply, code)
    except KeyError:  # a view without the new process: the judge refutes it elsewhere
        return
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
