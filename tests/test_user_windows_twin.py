"""The Windows steps' and failure statuses' Python twins accept a call exactly where z3 does.

Hypothesis builds model processes through their own calls (those of
tests/test_user_twin.py, after a reservation with one page committed and,
half of the time, a 4 MB reservation that no commit of it fits in memory),
then makes one more VirtualAlloc (MEM_COMMIT at an address, MEM_RESERVE,
MEM_RESET, MEM_RESET_UNDO; reserve and commit too), VirtualFree (release,
decommit, another type), VirtualProtect (the system call and the harness's
``protect``) or munmap, aimed at the process's allocations (their base, the
next page, an unaligned address, the last page), at free pages, across
allocations and outside user space, with valid and invalid protections and
sizes from 0 to 4 MB (out of memory). The z3 verdict is the user harness's
own (``UserChecks.expected``, ``refused`` and ``transition``,
proofs/machines/user_space.py): the step, its assumption, its status
against the code and, on success, the observable fields of its successor
against the view after. The twin (``windows_accepts``,
proofs/abstractions/user_windows_twin.py) must accept only what the z3 step
accepts, and exactly that where the judge's step is one it twins: on the
model's own views (where z3 accepts every call) and on reports with one
thing changed: the view after or before (the edits of ``corrupted`` in
tests/test_user_twin.py), the code, or the reply. Fixed cases add a commit
that keeps a committed page's frame and changes its protection, out of
memory, munmap of part of a reservation, a decommit giving frames back, the
process heap, a range across two allocations, and release or decommit of the
image and the heap. Each of these mutants of the twins was caught (tried by
hand): the protection ignored, release of any origin, oom ignored, munmap's
unmappable ignored, the post-state not compared, committed pages taking a
new frame, decommit keeping the frames' owner, one_allocation ignoring the
base, VirtualProtect of the process heap allowed. The default run makes 30
and 40 examples, MEMSPEC_SLOW=1 150 and 400 (tests/budget.py).
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proofs.abstractions.user_space import View
from proofs.abstractions.user_windows_twin import windows_accepts
from proofs.machines.user_space import UserHarness
from spec.abi import (
    EINVAL,
    MEM_COMMIT,
    MEM_DECOMMIT,
    MEM_RELEASE,
    MEM_RESERVE,
    MEM_RESET,
    MEM_RESET_UNDO,
    PAGE_EXECUTE_READ,
    PAGE_EXECUTE_READWRITE,
    PAGE_NOACCESS,
    PAGE_READONLY,
    PAGE_READWRITE,
    PAGE_SIZE,
    USER_BASE,
    USER_TOP,
)
from tests.budget import examples
from tests.test_user_step_twin import harness
from tests.test_user_twin import CALLS, corrupted

SETTINGS = settings(max_examples=examples(30, 150), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
RESERVATION = 0x10000000
BIG = 0x20000000
#: Free pages on the 64 KB granule.
FREE = 0x30000000
#: A reservation with its second page committed, and next to it one committed whole;
#: a 4 MB one (more pages than frames).
SETUP = [("SyscallVirtualAlloc", RESERVATION, 0x10000, MEM_RESERVE, PAGE_READWRITE),
         ("SyscallVirtualAlloc", RESERVATION + PAGE_SIZE, 1, MEM_COMMIT, PAGE_READONLY),
         ("SyscallVirtualAlloc", RESERVATION + 0x10000, 0x2000, MEM_RESERVE | MEM_COMMIT,
          PAGE_READWRITE)]
#: The first reservation's last page: two pages from it reach into the next one.
ACROSS = RESERVATION + 0xF000
BIG_SETUP = [("SyscallVirtualAlloc", BIG, 0x400000, MEM_RESERVE, PAGE_READWRITE)]
#: (Valid values first: hypothesis starts from the first of a sampled list.)
PROTECTIONS = (PAGE_READWRITE, PAGE_READONLY, PAGE_NOACCESS, PAGE_EXECUTE_READ,
               PAGE_EXECUTE_READWRITE, 0x41, 0x3)
SIZES = (0x2000, 1, 0x1000, 0x2345, 0x3000, 0x10000, 0x400000, 0)
#: Addresses besides the allocations': free pages, the reservations, user space's top.
FIXED = (0, 0x1000, RESERVATION, RESERVATION + 2 * PAGE_SIZE, BIG, 0x40000000,
         USER_TOP - PAGE_SIZE, USER_TOP)
#: (call, allocation or free type) drawn: every kind of twin's step twice, the others once.
KINDS = (("SyscallVirtualAlloc", MEM_COMMIT), ("SyscallVirtualAlloc", MEM_COMMIT),
         ("SyscallVirtualAlloc", MEM_RESERVE), ("SyscallVirtualAlloc", MEM_RESERVE),
         ("SyscallVirtualAlloc", MEM_RESET), ("SyscallVirtualAlloc", MEM_RESET_UNDO),
         ("SyscallVirtualAlloc", MEM_RESERVE | MEM_COMMIT),
         ("SyscallVirtualFree", MEM_DECOMMIT), ("SyscallVirtualFree", MEM_DECOMMIT),
         ("SyscallVirtualFree", MEM_RELEASE), ("SyscallVirtualFree", MEM_RELEASE),
         ("SyscallVirtualFree", 0x3), ("SyscallVirtualProtect", 0),
         ("SyscallVirtualProtect", 0), ("protect", 0), ("protect", 0), ("SyscallMunmap", 0),
         ("SyscallMunmap", 0))
CODES = (0, 5, 6, 8, 87, 487, 998, EINVAL)


def targets(h: UserHarness) -> tuple[list[int], list[int]]:
    """Where a call aims: (every allocation's base and next page, and ACROSS;
    those, each base + 1 and last page, and FIXED)."""
    space = h.calls.current
    aimed: list[int] = []
    anywhere = [*FIXED, ACROSS]
    if space is not None:
        for allocation in sorted(space.allocations.values(), key=lambda a: a.base):
            pages = [allocation.base, allocation.base + PAGE_SIZE]
            aimed += pages
            anywhere += [*pages, allocation.base + 1, allocation.end - PAGE_SIZE]
    return [*aimed, ACROSS], anywhere


@st.composite
def windows_call(draw: st.DrawFn, h: UserHarness) -> tuple[str, tuple[int, ...]]:
    """One call, aimed half of the time at an allocation's first or second page
    or across two (a reservation: at NULL or at free pages), else anywhere."""
    aimed, anywhere = targets(h)
    size = draw(st.sampled_from(SIZES))
    protect = draw(st.sampled_from(PROTECTIONS))
    name, kind = draw(st.sampled_from(KINDS))
    if name == "protect" and h.calls.current is None:
        name = "SyscallVirtualProtect"  # the harness's protect needs a current process
    if kind == MEM_RESERVE:
        aimed = [0, FREE, FREE + PAGE_SIZE]
    address = draw(st.sampled_from(aimed) | st.sampled_from(anywhere))
    if name == "SyscallVirtualAlloc":
        return name, (address, size, kind, protect)
    if name == "SyscallVirtualFree":
        return name, (address, draw(st.sampled_from((0, 0x2000, 0, 0x1000, 1))), kind)
    if name == "SyscallVirtualProtect":
        return name, (address, size, protect, USER_TOP - 4)
    if name == "protect":
        return name, (address, size, protect)
    # munmap below user space succeeds in the model (Linux: nothing mapped there)
    # and fails in the spec (user_range): not a step of this twin, left out here
    return name, (max(address & ~(PAGE_SIZE - 1), USER_BASE), size)


def made(calls_made: list[tuple[Any, ...]], big: bool) -> UserHarness:
    """The model after the calls; a new process made current if none is."""
    h = harness([*SETUP, *(BIG_SETUP if big else []), *calls_made])
    if h.calls.current is None:
        h.calls.SwitchProcess(h.calls.CreateProcess())
    return h


def one_call(h: UserHarness, name: str, args: tuple[int, ...]
             ) -> tuple[View, View, Any, int]:
    pre = h.view()
    reply, code = h.invoke(name, args)
    return pre, h.view(), reply, code


def verdicts(h: UserHarness, name: str, args: tuple[int, ...], pre: View, post: View,
             reply: Any, code: int) -> tuple[bool, bool | None]:
    """(the twin accepts, the z3 step accepts; None: the judge builds no step)."""
    pid = h.current_pid()
    twin = windows_accepts(h, name, args, pid, pre, post, reply, code)
    step = h.expected(name, args, pid, pre, post, reply, code)
    if step is None:
        return twin, None
    return twin, not h.transition(step, code, post, compare=code == 0)


def twinned(name: str, args: tuple[int, ...], reply: Any) -> bool:
    """The judge's step for the call is one windows_accepts twins: every one of
    these calls but a successful VirtualAlloc(MEM_RESERVE | MEM_COMMIT) or
    VirtualAlloc(NULL, MEM_COMMIT) (user_step_twin's) and a successful munmap."""
    if name == "SyscallMunmap":
        return bool(reply)
    if name == "SyscallVirtualAlloc" and reply and args[2] not in (MEM_RESET, MEM_RESET_UNDO):
        return not (args[2] & MEM_COMMIT and (args[2] & MEM_RESERVE or args[0] == 0))
    return True


def agree(twin: bool, z3_ok: bool | None, name: str, args: tuple[int, ...],
          reply: Any) -> None:
    assert not twin or z3_ok  # a twin only accepts what the z3 step accepts
    if z3_ok is not None and twinned(name, args, reply):
        assert twin == z3_ok


@SETTINGS
@given(st.lists(CALLS, max_size=6), st.booleans(), st.data())
def test_twins_agree_on_model_calls(calls_made: list[tuple[Any, ...]], big: bool,
                                    data: st.DataObject) -> None:
    h = made(calls_made, big)
    name, args = data.draw(windows_call(h))
    pre, post, reply, code = one_call(h, name, args)
    twin, z3_ok = verdicts(h, name, args, pre, post, reply, code)
    assert z3_ok is not False  # the model keeps the spec (the user machine's claim)
    agree(twin, z3_ok, name, args, reply)


def changed_reply(data: st.DataObject, name: str, args: tuple[int, ...], reply: Any,
                  code: int) -> tuple[Any, int]:
    """A success reported as a failure (a code, munmap's EINVAL), a failure as a
    success, or a VirtualAlloc success at another page."""
    if name == "protect":
        return (not reply[0], reply[1]), 0 if code else data.draw(st.sampled_from(CODES[1:]))
    if name == "SyscallMunmap":
        return (-EINVAL, EINVAL) if code == 0 else (0, 0)
    if code:
        return data.draw(st.sampled_from((args[0], FREE, 1))), 0
    changed: list[tuple[int, int]] = [(0, data.draw(st.sampled_from(CODES[1:]))),
                                      (reply + PAGE_SIZE, 0), (reply - PAGE_SIZE, 0)]
    return data.draw(st.sampled_from(changed))


@settings(SETTINGS, max_examples=examples(40, 400))
@given(st.lists(CALLS, max_size=5), st.booleans(), st.data())
def test_twins_agree_on_corrupted_reports(calls_made: list[tuple[Any, ...]], big: bool,
                                          data: st.DataObject) -> None:
    h = made(calls_made, big)
    name, args = data.draw(windows_call(h))
    pre, post, reply, code = one_call(h, name, args)
    edit = data.draw(st.sampled_from(("after", "after", "before", "code", "reply")))
    if edit == "after":
        post, _ = data.draw(corrupted(post, h.nframes()))
    elif edit == "before":
        pre, _ = data.draw(corrupted(pre, h.nframes()))
    elif edit == "code":
        code = data.draw(st.sampled_from(CODES))
    else:
        reply, code = changed_reply(data, name, args, reply, code)
    try:
        twin, z3_ok = verdicts(h, name, args, pre, post, reply, code)
    except KeyError:  # a view without the process or page the judge reads
        return
    agree(twin, z3_ok, name, args, reply)


def commit_second_pages() -> tuple[UserHarness, tuple[int, ...], View, View, Any, int]:
    """MEM_COMMIT of the reservation's first three pages, the second committed before."""
    h = made([], False)
    args = (RESERVATION, 0x3000, MEM_COMMIT, PAGE_EXECUTE_READWRITE)
    pre, post, reply, code = one_call(h, "SyscallVirtualAlloc", args)
    assert code == 0 and reply == RESERVATION
    assert verdicts(h, "SyscallVirtualAlloc", args, pre, post, reply, code) == (True, True)
    return h, args, pre, post, reply, code


def test_a_committed_page_keeps_its_frame() -> None:
    """The page committed before reported in another free frame: the spec keeps
    its frame (commit_pages reads pick only at pages it commits anew)."""
    h, args, pre, post, reply, code = commit_second_pages()
    pid, second = h.current_pid(), (RESERVATION >> 12) + 1
    used = {p.frame for pages in post[0].values() for p in pages.values()}
    free = next(f for f in range(h.nframes()) if f not in used)
    moved = {**post[0][pid], second: post[0][pid][second]._replace(frame=free)}
    post = ({**post[0], pid: moved}, post[1])
    assert verdicts(h, "SyscallVirtualAlloc", args, pre, post, reply, code) == (False, False)


def test_the_protection_is_the_new_one() -> None:
    """The page committed before reported with its old protection."""
    h, args, pre, post, reply, code = commit_second_pages()
    pid, second = h.current_pid(), (RESERVATION >> 12) + 1
    old = pre[0][pid][second]
    kept = {**post[0][pid], second: post[0][pid][second]._replace(
        protect=old.protect, pte_writable=old.pte_writable)}
    post = ({**post[0], pid: kept}, post[1])
    assert verdicts(h, "SyscallVirtualAlloc", args, pre, post, reply, code) == (False, False)


def test_out_of_memory_is_the_commits_status() -> None:
    """Committing all of a 4 MB reservation fails with ERROR_NOT_ENOUGH_MEMORY
    (the spec's free choice oom); any other code is refused."""
    h = made([], True)
    args = (BIG, 0x400000, MEM_COMMIT, PAGE_READWRITE)
    pre, post, reply, code = one_call(h, "SyscallVirtualAlloc", args)
    assert (reply, code) == (0, 8)
    assert verdicts(h, "SyscallVirtualAlloc", args, pre, post, reply, code) == (True, True)
    for other in (87, 487, 5):
        assert verdicts(h, "SyscallVirtualAlloc", args, pre, post, reply, other) == (
            False, False)


def test_munmap_of_part_of_a_reservation_is_einval() -> None:
    """munmap of one page of a VirtualAlloc reservation: EINVAL (unmappable);
    another errno is refused."""
    h = made([], False)
    args = (RESERVATION + PAGE_SIZE, PAGE_SIZE)
    pre, post, reply, code = one_call(h, "SyscallMunmap", args)
    assert code == EINVAL
    assert verdicts(h, "SyscallMunmap", args, pre, post, reply, code) == (True, True)
    assert verdicts(h, "SyscallMunmap", args, pre, post, reply, 12) == (False, False)


def test_decommit_gives_the_frames_back() -> None:
    """VirtualFree(MEM_DECOMMIT) of the reservation's first two pages (the second
    committed): accepted; reported with the page still committed, refused."""
    h = made([], False)
    args = (RESERVATION, 0x2000, MEM_DECOMMIT)
    pre, post, reply, code = one_call(h, "SyscallVirtualFree", args)
    assert (reply, code) == (1, 0)
    assert verdicts(h, "SyscallVirtualFree", args, pre, post, reply, code) == (True, True)
    assert verdicts(h, "SyscallVirtualFree", args, pre, pre, reply, code) == (False, False)


def test_the_process_heap_is_refused() -> None:
    """VirtualProtect and VirtualAlloc(MEM_COMMIT) of the process heap's first
    page: ERROR_ACCESS_DENIED; reported as ERROR_INVALID_ADDRESS, refused."""
    h = made([], False)
    heap = h.calls.heaps[h.current_pid()].start_address
    for name, args in (("protect", (heap, 1, PAGE_READONLY)),
                       ("SyscallVirtualAlloc", (heap, 1, MEM_COMMIT, PAGE_READONLY))):
        pre, post, reply, code = one_call(h, name, args)
        assert code == 5
        assert verdicts(h, name, args, pre, post, reply, code) == (True, True)
        assert verdicts(h, name, args, pre, post, reply, 487) == (False, False)


def test_a_range_across_two_allocations_is_refused() -> None:
    """MEM_COMMIT, MEM_RESET and MEM_DECOMMIT of the first reservation's last
    page and the next one's first: ERROR_INVALID_ADDRESS (one_allocation);
    reported as a success at that page, refused."""
    h = made([], False)
    for name, args in (("SyscallVirtualAlloc", (ACROSS, 0x2000, MEM_COMMIT, PAGE_READWRITE)),
                       ("SyscallVirtualAlloc", (ACROSS, 0x2000, MEM_RESET, PAGE_READWRITE)),
                       ("SyscallVirtualFree", (ACROSS, 0x2000, MEM_DECOMMIT))):
        pre, post, reply, code = one_call(h, name, args)
        assert (reply, code) == (0, 487)
        assert verdicts(h, name, args, pre, post, reply, code) == (True, True)
        assert verdicts(h, name, args, pre, post, ACROSS if len(args) == 4 else 1, 0) == (
            False, False)


def test_only_virtual_alloc_and_mmap_allocations_are_released() -> None:
    """VirtualFree(MEM_RELEASE) and MEM_DECOMMIT of the image and of the process
    heap: ERROR_INVALID_PARAMETER (windows_owned); reported as
    ERROR_INVALID_ADDRESS, refused."""
    h = made([], False)
    space = h.calls.current
    assert space is not None
    for base in (space.image_base, h.calls.heaps[space.pid].start_address):
        for args in ((base, 0, MEM_RELEASE), (base, PAGE_SIZE, MEM_DECOMMIT)):
            pre, post, reply, code = one_call(h, "SyscallVirtualFree", args)
            assert (reply, code) == (0, 87)
            assert verdicts(h, "SyscallVirtualFree", args, pre, post, reply, code) == (
                True, True)
            assert verdicts(h, "SyscallVirtualFree", args, pre, post, reply, 487) == (
                False, False)
