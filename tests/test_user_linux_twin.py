"""The Linux steps', the process heap's page steps' and the Access step's Python
twins accept a call exactly where the z3 step does.

Hypothesis builds model processes through their own calls (those of
tests/test_user_twin.py, with HeapAlloc, HeapFree and mprotect), then makes one
more call of a kind with a twin (proofs/abstractions/user_linux_twin.py): brk
up or down from the break (within a page, across pages, past heap_max, below
heap_start), munmap of the first or second page of an allocation or of one
whole (mmap areas, brk, VirtualAlloc reservations, the image, the stack,
nothing), mprotect of allocations of every origin (success, ENOMEM at a hole,
EACCES at the process heap), mmap(MAP_FIXED) over allocations in use or free
pages, HeapAlloc / HeapReAlloc / HeapFree / HeapSize that grow, shrink or keep
the process heap; or a read, write or execute of a page of any protection. The
z3 verdict is the user harness's own (``UserChecks.expected`` and
``transition``, with the post-state compared on success and on mprotect's
partial results as ``UserChecks.call`` does; ``UserChecks.access_failing``
for an access), the twin the oracle's judge's (``TwinFirst.twin_accepts``;
``access_accepts``). On the model's own views both accept; on reports with
one edit (of a page the call changed or of the break, half of the time;
else ``corrupted`` of tests/test_user_twin.py on the view before or after),
another code or another reply, or an access reported with one field of its
page changed or the opposite outcome, the twin accepts only what the z3 step
accepts, and exactly that where the call is one the twin evaluates (a
success, mprotect's ENOMEM / EACCES, any access). The default run makes 30,
60 and 60 examples (model calls, edited reports, accesses), MEMSPEC_SLOW=1
150, 400 and 300 (tests/budget.py); the cases by hand below make each kind
of call happen.

Teeth (mutants of the twins tried by hand, each failing the default run,
then reverted): brk's new pages taking the PTE bits reported; munmap not
rebasing the piece of an allocation above the range; unmappable ignoring a
reservation that goes on past the range; mprotect's ENOMEM and EACCES
swapped; an access allowed without the PTE's U/S bit; ProcessHeapShrink
keeping the frames; MAP_FIXED keeping the old pages' frames owned; a brk
page always based at the break.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from proofs.abstractions.user_linux_twin import access_accepts
from proofs.abstractions.user_space import View
from proofs.machines.runner import CheckedMachine
from proofs.machines.user_space import KIND, UserHarness
from proofs.oracle.families.user_twins import TwinFirst
from spec import user_space as us
from spec.abi import (
    EACCES,
    ENOMEM,
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_PRIVATE,
    MEM_COMMIT,
    MEM_FREE,
    MEM_RESERVE,
    ORIGIN_BRK,
    ORIGIN_MMAP,
    ORIGIN_PROCESS_HEAP,
    ORIGIN_VIRTUAL_ALLOC,
    PAGE_READWRITE,
    PAGE_SIZE,
)
from tests.budget import examples
from tests.test_user_twin import ADDRESSES, CALLS, PROTECTIONS, corrupted

SETTINGS = settings(max_examples=examples(30, 150), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
NO_FD = 0xFFFFFFFF
FIXED = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED
#: The calls before the last one: tests/test_user_twin.py's, the process heap's, mprotect.
BEFORE = st.one_of(
    CALLS,
    st.tuples(st.just("HeapAlloc"), st.sampled_from((24, 0x3000, 0x20000))),
    st.tuples(st.just("HeapFree"), st.integers(0, 3)),
    st.tuples(st.just("SyscallBrk"), st.sampled_from((0x1800, 0x3000, 0x5001))),
    st.tuples(st.just("SyscallMprotect"), st.sampled_from(ADDRESSES),
              st.sampled_from((0x1000, 0x3000)), st.sampled_from((0, 1, 3, 4))))
#: The last call's kinds.
KINDS = ("brk", "brk", "munmap", "mprotect", "mmap fixed", "heap")
Report = tuple[str, tuple[Any, ...], View, View, Any, int]


def make(name: str, args: tuple[Any, ...], h: UserHarness) -> tuple[str, tuple[Any, ...]]:
    """The call as the model takes it: brk relative to the heap's start, the
    process heap's calls with its handle and the i-th live block."""
    calls = h.calls
    space = calls.current
    if space is None:
        return name, args
    heap = calls.heaps[space.pid].start_address
    blocks = sorted(calls.heap_sizes[space.pid])
    block = blocks[args[0] % len(blocks)] if blocks and name.startswith("Heap") \
        and name != "HeapAlloc" else 0
    if name == "SyscallBrk":
        return name, (space.heap_start + args[0],)
    if name == "HeapAlloc":
        return "SyscallHeapAlloc", (heap, 0, args[0])
    if name == "HeapFree":
        return "SyscallHeapFree", (heap, 0, block)
    if name == "HeapReAlloc":
        return "SyscallHeapReAlloc", (heap, 0, block, args[1])
    if name == "HeapSize":
        return "SyscallHeapSize", (heap, 0, block)
    return name, args


def harness(calls_made: list[tuple[Any, ...]]) -> UserHarness:
    machine = type("LinuxTwinCheck", (CheckedMachine,), {"cache": {}, "outcomes": Counter()})
    h = UserHarness(machine)
    for name, *args in [("CreateProcess",), ("SwitchProcess", 1), *calls_made]:
        name, made = make(name, tuple(args), h)
        if hasattr(h.calls, name):  # not a heap call without a current process
            getattr(h.calls, name)(*made)
    if h.calls.current is None:  # the last call is made in a process
        h.calls.SwitchProcess(h.calls.CreateProcess())
    return h


def targets(h: UserHarness) -> list[int]:
    """Where the last call aims: the first, second and last page and the end of
    every allocation of the current process, the break, the fixed area."""
    space = h.calls.current
    assert space is not None
    found = [space.brk, 0x40000000, 0x40001000]
    for allocation in space.allocations.values():
        found += [allocation.base, allocation.base + PAGE_SIZE, allocation.end - PAGE_SIZE,
                  allocation.end]
    return sorted(set(found))


def sizes(h: UserHarness, address: int) -> list[int]:
    """Lengths from address: a page, two, three, 64 KB, up to its allocation's end."""
    space = h.calls.current
    assert space is not None
    out = [0x1000, 0x2000, 0x3000, 0x10000]
    out += [a.end - address for a in space.allocations.values() if a.base <= address < a.end]
    return out


@st.composite
def last_call(draw: st.DrawFn, h: UserHarness) -> tuple[str, tuple[Any, ...]]:
    """The last call of one kind, aimed by the process's state."""
    kind = draw(st.sampled_from(KINDS))
    space = h.calls.current
    assert space is not None
    address = draw(st.sampled_from(targets(h)))
    if kind == "brk":  # from the break, perhaps moved up first (the call before)
        lift = draw(st.sampled_from((0, 0x3000, 0x5800)))
        if lift:
            h.calls.SyscallBrk(space.brk + lift)
        delta = draw(st.sampled_from((-0x5000, -0x1000, -0x10, 0x10, 0x1000, 0x2001,
                                      0x5000, 0x2000000, -0x1000000)))
        return "SyscallBrk", (max(0, space.brk + delta),)
    if kind == "munmap":
        return "SyscallMunmap", (address, draw(st.sampled_from(sizes(h, address))))
    if kind == "mprotect":
        return "SyscallMprotect", (address, draw(st.sampled_from(sizes(h, address))),
                                   draw(st.sampled_from((0, 1, 3, 4, 5, 7))))
    if kind == "mmap fixed":
        return "SyscallMmap", (address, draw(st.sampled_from(sizes(h, address))),
                               draw(st.integers(0, 7)), FIXED, NO_FD, 0)
    if kind == "heap":
        name = draw(st.sampled_from(("HeapAlloc", "HeapAlloc", "HeapFree", "HeapFree",
                                     "HeapReAlloc", "HeapSize")))
        size = draw(st.sampled_from((24, 0x3000, 0x20000)))
        return make(name, (draw(st.integers(0, 3)) if name != "HeapAlloc" else size, size), h)
    raise AssertionError(kind)


def one_call(h: UserHarness, name: str, args: tuple[Any, ...]) -> Report:
    pre = h.view()
    reply = getattr(h.calls, name)(*args)
    return name, args, pre, h.view(), reply, h.code(name, args, reply)


def compared(name: str, code: int) -> bool:
    """UserChecks.call compares the post-state: a success, mprotect's partial results."""
    return code == 0 or name == "SyscallMprotect" and code in (ENOMEM, EACCES)


def verdicts(h: UserHarness, report: Report) -> tuple[bool, bool, us.UserStep | None]:
    """(the twin accepts, the z3 step accepts, the z3 step) the call as reported."""
    name, args, pre, post, reply, code = report
    pid = h.current_pid()
    twin = TwinFirst.twin_accepts(h, name, args, pid, pre, post, reply, code)  # type: ignore[arg-type]
    step = h.expected(name, args, pid, pre, post, reply, code)
    z3_ok = step is None or not h.transition(step, code, post, compare=compared(name, code))
    return twin, z3_ok, step


def evaluated(name: str, step: us.UserStep | None, code: int) -> bool:
    """The twin evaluates the call (the judge's step is one of its steps, the
    code one it compares)."""
    return step is not None and name != "SyscallVirtualAlloc" and compared(name, code)


def access_verdicts(h: UserHarness, kind: str, address: int, allowed: bool,
                    pre: View) -> tuple[bool, bool]:
    pid = h.current_pid()
    twin = access_accepts(pid, address >> 12, KIND[kind], allowed, pre)
    return twin, not h.access_failing(pid, kind, address, allowed, pre)


@SETTINGS
@given(st.lists(BEFORE, max_size=8), st.data())
def test_twins_agree_on_model_calls(calls_made: list[tuple[Any, ...]],
                                    data: st.DataObject) -> None:
    h = harness(calls_made)
    done = one_call(h, *data.draw(last_call(h)))
    twin, z3_ok, step = verdicts(h, done)
    event(f"{done[0]} code {done[5]}: twin {twin}, z3 {z3_ok}")
    assert z3_ok  # the model keeps the spec (the user machine's claim)
    if evaluated(done[0], step, done[5]):
        assert twin  # a success or a partial mprotect: the twin decides it


@st.composite
def changed_edit(draw: st.DrawFn, pre: View, post: View, nframes: int) -> View:
    """The view after with one edit of a page the call changed (the page as it
    was, dropped, or one of its fields), or of the break."""
    spaces = {pid: dict(pages) for pid, pages in post[0].items()}
    changed = sorted({(pid, vpn) for pid in set(pre[0]) | set(post[0])
                      for vpn in set(pre[0].get(pid, {})) | set(post[0].get(pid, {}))
                      if pre[0].get(pid, {}).get(vpn) != post[0].get(pid, {}).get(vpn)})
    layouts = dict(post[1])
    if not changed or draw(st.integers(0, 5)) == 0:
        pid = draw(st.sampled_from(sorted(layouts)))
        end = layouts[pid].heap_end + draw(st.sampled_from((-1, 1)))
        return spaces, {**layouts, pid: layouts[pid]._replace(heap_end=end)}
    pid, vpn = draw(st.sampled_from(changed))
    page = spaces.get(pid, {}).get(vpn)
    old = pre[0].get(pid, {}).get(vpn)
    field = draw(st.sampled_from(("old", "drop", "state", "protect", "base_vpn", "origin",
                                  "frame", "frame", "pte_present", "pte_writable",
                                  "pte_user")))
    if page is None or field in ("old", "drop"):
        if old is None or field == "drop" and page is not None:
            spaces[pid].pop(vpn, None)
        else:
            spaces.setdefault(pid, {})[vpn] = old
        return spaces, layouts
    frames = sorted({p.frame for q in spaces.values() for p in q.values()
                     if p.frame is not None})
    values: dict[str, tuple[Any, ...]] = {
        "state": (MEM_FREE, MEM_RESERVE, MEM_COMMIT), "protect": PROTECTIONS,
        "base_vpn": (page.base_vpn - 1, page.base_vpn + 1, vpn),
        "origin": (ORIGIN_MMAP, ORIGIN_BRK, ORIGIN_VIRTUAL_ALLOC, ORIGIN_PROCESS_HEAP),
        "frame": (None, -1, nframes, *frames[:3], *frames[-3:],
                  *(() if old is None or old.frame is None else (old.frame,)))}
    if field.startswith("pte"):
        value: Any = not getattr(page, field)
    else:
        value = draw(st.sampled_from([v for v in values[field] if v != getattr(page, field)]))
    spaces[pid][vpn] = page._replace(**{field: value})
    return spaces, layouts


@st.composite
def accessed_edit(draw: st.DrawFn, pre: View, pid: int, vpn: int) -> View:
    """The view before with one field of the accessed page changed."""
    page = pre[0].get(pid, {}).get(vpn)
    if page is None:
        return pre
    field = draw(st.sampled_from(("state", "protect", "pte_present", "pte_writable",
                                  "pte_user")))
    value: Any = (not getattr(page, field) if field.startswith("pte") else draw(
        st.sampled_from((MEM_FREE, MEM_RESERVE, MEM_COMMIT) if field == "state"
                        else PROTECTIONS)))
    return {**pre[0], pid: {**pre[0][pid], vpn: page._replace(**{field: value})}}, pre[1]


def edited(report: Report, nframes: int, data: st.DataObject) -> Report:
    """The report with one edit: of a page the call changed, of the view before or
    after, the code, the reply."""
    name, args, pre, post, reply, code = report
    what = data.draw(st.sampled_from(("changed", "changed", "changed", "pre", "post",
                                      "code", "reply")))
    if what == "changed":
        post = data.draw(changed_edit(pre, post, nframes))
    elif what == "pre":
        pre, _ = data.draw(corrupted(pre, nframes))
    elif what == "post":
        post, _ = data.draw(corrupted(post, nframes))
    elif what == "code":
        code = data.draw(st.sampled_from((0, ENOMEM, EACCES, 22, 6, 87, 487, 8)))
    elif type(reply) is int:
        reply = data.draw(st.sampled_from((0, -ENOMEM, -EACCES, -22, reply + PAGE_SIZE,
                                           reply - 1)))
    return name, args, pre, post, reply, code


@settings(SETTINGS, max_examples=examples(60, 400))
@given(st.lists(BEFORE, max_size=6), st.data())
def test_twins_agree_on_corrupted_reports(calls_made: list[tuple[Any, ...]],
                                          data: st.DataObject) -> None:
    h = harness(calls_made)
    report = edited(one_call(h, *data.draw(last_call(h))), h.nframes(), data)
    try:
        twin, z3_ok, step = verdicts(h, report)
    except KeyError:  # a view without the process: the judge refutes it elsewhere
        return
    event(f"{report[0]} code {report[5]}: twin {twin}, z3 {z3_ok}")
    assert not twin or z3_ok  # a twin only accepts what the z3 step accepts
    if evaluated(report[0], step, report[5]):
        assert twin == z3_ok


@settings(SETTINGS, max_examples=examples(60, 300))
@given(st.lists(BEFORE, max_size=8), st.sampled_from(tuple(KIND)), st.data())
def test_access_twin_agrees(calls_made: list[tuple[Any, ...]], kind: str,
                            data: st.DataObject) -> None:
    """A read, write or execute where the rules aim: both accept it as the model
    reports it; as reported with one edit of the view before (of the accessed
    page half of the time) or the opposite outcome, the twin accepts exactly
    what the z3 step accepts."""
    h = harness(calls_made)
    address = data.draw(st.sampled_from(targets(h)))
    pre = h.view()
    allowed, _ = h.touch(kind, address)
    event(f"{kind} allowed {allowed}")
    assert access_verdicts(h, kind, address, allowed, pre) == (True, True)
    what = data.draw(st.sampled_from(("pre", "page", "page", "outcome")))
    if what == "pre":
        pre, _ = data.draw(corrupted(pre, h.nframes()))
    elif what == "page":
        pre = data.draw(accessed_edit(pre, h.current_pid(), address >> 12))
    else:
        allowed = not allowed
    twin, z3_ok = access_verdicts(h, kind, address, allowed, pre)
    event(f"{kind} edited ({what}): twin {twin}, z3 {z3_ok}")
    assert twin == z3_ok


# -- each kind of call, by hand: the case happens and both accept ---------------------------

def both(h: UserHarness, name: str, *args: Any) -> Report:
    """Make the call; the twin and the z3 step both accept it as reported."""
    report = one_call(h, name, args)
    twin, z3_ok, step = verdicts(h, report)
    assert step is not None and (twin, z3_ok) == (True, True), report[4:]
    return report


def test_brk_up_and_down_across_pages() -> None:
    h = harness([])
    space = h.calls.current
    assert space is not None
    start = space.heap_start
    both(h, "SyscallBrk", start + 0x2800)  # three pages, a new brk allocation
    both(h, "SyscallBrk", start + 0x4001)  # two more in the same allocation
    both(h, "SyscallBrk", start + 0x1800)  # down across pages
    _, _, pre, post, _, _ = both(h, "SyscallBrk", start + 0x10)  # a page
    assert post[1][1].heap_end < pre[1][1].heap_end


def test_munmap_of_parts_and_of_a_whole_reservation() -> None:
    h = harness([])
    area = h.calls.SyscallMmap(0, 0x4000, 3, MAP_PRIVATE | MAP_ANONYMOUS, NO_FD, 0)
    both(h, "SyscallMunmap", area + 0x1000, 0x1000)  # a hole: the rest rebased above it
    both(h, "SyscallMunmap", area, 0x1000)
    reservation = h.calls.SyscallVirtualAlloc(0, 0x3000, MEM_RESERVE | MEM_COMMIT,
                                              PAGE_READWRITE)
    _, _, _, post, _, _ = both(h, "SyscallMunmap", reservation, 0x10000)
    assert (reservation >> 12) not in post[0][1]


def test_map_fixed_over_committed_pages() -> None:
    h = harness([])
    area = h.calls.SyscallMmap(0, 0x3000, 3, MAP_PRIVATE | MAP_ANONYMOUS, NO_FD, 0)
    _, _, pre, post, _, _ = both(h, "SyscallMmap", area + 0x1000, 0x3000, 1, FIXED, NO_FD, 0)
    page = post[0][1][(area >> 12) + 1]
    assert pre[0][1][(area >> 12) + 1].state == MEM_COMMIT
    assert (page.origin, page.base_vpn, page.pte_writable) == (ORIGIN_MMAP, (area >> 12) + 1,
                                                               False)


def test_mprotect_success_and_partial_results() -> None:
    h = harness([])
    space = h.calls.current
    assert space is not None
    area = h.calls.SyscallMmap(0, 0x3000, 3, MAP_PRIVATE | MAP_ANONYMOUS, NO_FD, 0)
    both(h, "SyscallMprotect", area, 0x3000, 1)
    assert h.calls.SyscallMunmap(area + 0x2000, 0x1000) == 0
    assert both(h, "SyscallMprotect", area, 0x3000, 0)[5] == ENOMEM  # stops at the hole
    heap = next(a for a in space.allocations.values() if a.origin == ORIGIN_PROCESS_HEAP)
    assert both(h, "SyscallMprotect", heap.base, 0x1000, 1)[5] == EACCES  # the process heap
    assert h.calls.SyscallBrk(space.heap_start + 0x1000) == space.heap_start + 0x1000
    assert both(h, "SyscallMprotect", space.heap_start, 0x1000, 1)[5] == 0  # a brk page
    image = min(a.base for a in space.allocations.values())
    assert both(h, "SyscallMprotect", image, 0x1000, 7)[5] == 0


def test_heap_grows_shrinks_and_sizes() -> None:
    h = harness([])
    name, args = make("HeapAlloc", (0x20000,), h)
    _, _, pre, post, pointer, _ = both(h, name, *args)
    grown = [v for v, p in post[0][1].items() if p.state == MEM_COMMIT
             and p.origin == ORIGIN_PROCESS_HEAP and pre[0][1][v].state != MEM_COMMIT]
    assert grown
    name, args = make("HeapSize", (0,), h)
    both(h, name, *args)
    name, args = make("HeapFree", (0,), h)
    _, _, pre, post, _, _ = both(h, name, *args)
    assert any(p.state == MEM_COMMIT and post[0][1][v].state == MEM_RESERVE
               for v, p in pre[0][1].items() if p.origin == ORIGIN_PROCESS_HEAP)
    assert pointer


def test_accesses_of_every_kind_on_every_protection() -> None:
    h = harness([])
    seen = set()
    for protect in PROTECTIONS:
        base = h.calls.SyscallVirtualAlloc(0, 0x1000, MEM_RESERVE | MEM_COMMIT, protect)
        for kind in KIND:
            pre = h.view()
            allowed, _ = h.touch(kind, base)
            seen.add(allowed)
            assert access_verdicts(h, kind, base, allowed, pre) == (True, True)
            assert access_verdicts(h, kind, base, not allowed, pre) == (False, False)
    assert seen == {True, False}


def test_an_access_through_a_supervisor_pte_is_refused() -> None:
    """A read of a READWRITE page whose PTE lacks U/S reported allowed: both refuse."""
    h = harness([])
    base = h.calls.SyscallVirtualAlloc(0, 0x1000, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE)
    pre = h.view()
    page = pre[0][1][base >> 12]._replace(pte_user=False)
    pre = ({**pre[0], 1: {**pre[0][1], base >> 12: page}}, pre[1])
    assert access_verdicts(h, "read", base, True, pre) == (False, False)
    assert access_verdicts(h, "read", base, False, pre) == (True, True)


def test_a_brk_page_without_its_pte_is_refused() -> None:
    """brk up reported with a page's PTE not present: both refuse."""
    h = harness([])
    space = h.calls.current
    assert space is not None
    name, args, pre, post, reply, code = one_call(h, "SyscallBrk", (space.heap_start + 0x2000,))
    vpn = max(v for v, p in post[0][1].items() if p.origin == ORIGIN_BRK)
    pages = {**post[0][1], vpn: post[0][1][vpn]._replace(pte_present=False)}
    report = (name, args, pre, ({**post[0], 1: pages}, post[1]), reply, code)
    assert verdicts(h, report)[:2] == (False, False)


def test_a_reservation_cut_in_two_by_munmap_is_refused() -> None:
    """munmap of a VirtualAlloc reservation's first page only: EINVAL (the
    reservation goes on past the range), reported as a success: both refuse."""
    h = harness([])
    base = h.calls.SyscallVirtualAlloc(0, 0x3000, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE)
    pre = h.view()
    pages = {v: p for v, p in pre[0][1].items() if not (base >> 12) <= v < (base >> 12) + 1}
    pages = {v: p._replace(base_vpn=(base >> 12) + 1) if p.base_vpn == base >> 12 else p
             for v, p in pages.items()}
    report = ("SyscallMunmap", (base, 0x1000), pre, ({**pre[0], 1: pages}, pre[1]), 0, 0)
    assert pre[0][1][base >> 12].origin == ORIGIN_VIRTUAL_ALLOC
    assert verdicts(h, report)[:2] == (False, False)
