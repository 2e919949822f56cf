"""The user-space invariants' Python twins agree with their z3 forms (the source of truth).

Hypothesis builds model processes through their own calls (CreateProcess,
SwitchProcess, VirtualAlloc reserve / commit / both, VirtualFree decommit /
release, VirtualProtect, mmap, munmap, brk, DestroyProcess) on the user
machine's 4 MB of memory, takes their view
(proofs.abstractions.user_space.user_view) and then corrupts it, mostly by
one edit so that no other clause masks the one it breaks: one field of a
page (half of the time a committed one): its state, protection, base (by
one, by 8 or 16 pages, to itself), origin, frame (none, another page's, the
frame count, negative) or a PTE bit; a page removed, or copied to a
neighbour, below user space or past its end; a layout field moved to a
bound (by one either side of its own value, of its brk and stack pages, of
user space's ends and the stack reservation), also as a new process's
layout without pages; a layout dropped; a process with pid 0 or below; the
frame count; a whole allocation made a VirtualAlloc one off the 64 KB
granule. On every view each twin of proofs/abstractions/user_twin.py must
give the verdict z3 gives its invariant of spec/user_space.py on
``to_user_state`` of the same view. Each of these mutants of the twins was
caught so (tried by hand): a brk page allowed at heap_end, the neighbour's
origin not compared, a frame allowed at the frame count, a PTE's U/S bit
allowed at USER_END_VPN, an 8-page granule, the stack's reservation allowed
one page below user space, a writable PTE allowed without present. The
default run makes 30 and 60 examples and tries every third single edit;
MEMSPEC_SLOW=1 makes 60 and 150 and tries every edit (tests/budget.py).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proofs.abstractions import user_twin
from proofs.abstractions.user_space import View, to_user_state, user_view
from proofs.machines.checks import decide
from proofs.machines.user_space import make_calls
from spec import user_space as us
from spec.abi import (
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_PRIVATE,
    MEM_COMMIT,
    MEM_DECOMMIT,
    MEM_FREE,
    MEM_RELEASE,
    MEM_RESERVE,
    ORIGIN_BRK,
    ORIGIN_PROCESS_HEAP,
    ORIGIN_STACK,
    ORIGIN_VIRTUAL_ALLOC,
    PAGE_EXECUTE,
    PAGE_EXECUTE_READ,
    PAGE_EXECUTE_READWRITE,
    PAGE_NOACCESS,
    PAGE_READONLY,
    PAGE_READWRITE,
    USER_END_VPN,
    USER_FIRST_VPN,
    USER_TOP,
)
from spec.user_space import STACK_RESERVE_PAGES, PageView
from tests.budget import every, examples

PROTECTIONS = (PAGE_NOACCESS, PAGE_READONLY, PAGE_READWRITE, PAGE_EXECUTE,
               PAGE_EXECUTE_READ, PAGE_EXECUTE_READWRITE)
ADDRESSES = (0, 0x10000000, 0x10001000, 0x10010000, 0x20000000, 0x40000000)
SIZES = (1, 0x1000, 0x2345, 0x10000)

CALLS = st.one_of(
    st.just(("CreateProcess",)),
    st.tuples(st.just("SwitchProcess"), st.integers(1, 3)),
    st.tuples(st.just("DestroyProcess"), st.integers(1, 3)),
    st.tuples(st.just("SyscallVirtualAlloc"), st.sampled_from(ADDRESSES), st.sampled_from(SIZES),
              st.sampled_from((MEM_RESERVE, MEM_COMMIT, MEM_RESERVE | MEM_COMMIT)),
              st.sampled_from(PROTECTIONS)),
    st.tuples(st.just("SyscallVirtualFree"), st.sampled_from(ADDRESSES),
              st.sampled_from((0, *SIZES)), st.sampled_from((MEM_DECOMMIT, MEM_RELEASE))),
    st.tuples(st.just("SyscallVirtualProtect"), st.sampled_from(ADDRESSES),
              st.sampled_from(SIZES), st.sampled_from(PROTECTIONS), st.just(USER_TOP - 4)),
    st.tuples(st.just("SyscallMmap"), st.sampled_from((0, 0x40000000)), st.sampled_from(SIZES),
              st.integers(0, 7), st.sampled_from((MAP_PRIVATE | MAP_ANONYMOUS,
                                                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)),
              st.just(0xFFFFFFFF), st.just(0)),
    st.tuples(st.just("SyscallMunmap"), st.sampled_from((0x40000000, 0x40001000)),
              st.sampled_from(SIZES)),
    st.tuples(st.just("SyscallBrk"), st.integers(0, 0x30) .map(lambda n: n * 0x800)))


def model_view(calls_made: list[tuple[Any, ...]]) -> tuple[View, int]:
    """The view of a model after the calls (brk relative to the heap's start)."""
    calls = make_calls()
    for name, *args in calls_made:
        if name == "SyscallBrk":
            space = calls.processes.get(calls.current.pid) if calls.current else None
            args = [0 if space is None else space.heap_start + args[0]]
        getattr(calls, name)(*args)
    return user_view(calls), calls.vmm.pageman.nframes


@st.composite
def corrupted(draw: st.DrawFn, view: View, nframes: int) -> tuple[View, int]:
    """A few edits of the view (and the frame count)."""
    spaces = {pid: dict(pages) for pid, pages in view[0].items()}
    layouts = dict(view[1])
    for _ in range(draw(st.sampled_from((1, 1, 1, 2)))):  # one edit: no other clause masks it
        pids = sorted(spaces)
        kind = draw(st.sampled_from(("page", "page", "page", "drop", "copy", "layout",
                                     "no layout", "pid", "nframes", "misaligned", "misaligned",
                                     "copy", "copy", "bare", "bare")))
        if kind == "nframes":
            nframes = draw(st.sampled_from((-1, 0, 1, nframes - 1, nframes + 1)))
            continue
        if kind == "pid":
            spaces[draw(st.sampled_from((0, -1)))] = dict(spaces[pids[0]]) if pids else {}
            continue
        if kind == "bare" and layouts:  # a layout alone: no page's clause masks it
            layout = layouts[min(layouts)]
            field = draw(st.sampled_from(us.SpaceView._fields))
            value = draw(st.sampled_from(bounds(getattr(layout, field), {})))
            layouts[max(layouts) + 1] = layout._replace(**{field: value})
            continue
        if kind in ("layout", "no layout") and layouts:
            pid = draw(st.sampled_from(sorted(layouts)))
            if kind == "no layout":
                del layouts[pid]
                continue
            field = draw(st.sampled_from(us.SpaceView._fields))
            value = draw(st.sampled_from(bounds(getattr(layouts[pid], field),
                                                spaces.get(pid, {}))))
            layouts[pid] = layouts[pid]._replace(**{field: value})
            continue
        pages = [(pid, vpn) for pid in pids for vpn in spaces[pid]]
        if not pages:
            continue
        held = [(pid, vpn) for pid, vpn in pages if spaces[pid][vpn].state == MEM_COMMIT]
        pid, vpn = draw(st.sampled_from(sorted(held if held and draw(st.booleans())
                                               else pages)))
        page = spaces[pid][vpn]
        if kind == "drop":
            del spaces[pid][vpn]
        elif kind == "misaligned":  # a VirtualAlloc allocation off the granule
            shift = draw(st.sampled_from((1, 8, 16)))
            for at, other in list(spaces[pid].items()):
                if other.base_vpn == page.base_vpn:
                    spaces[pid][at] = other._replace(origin=ORIGIN_VIRTUAL_ALLOC,
                                                      base_vpn=other.base_vpn + shift)
        elif kind == "copy":
            to = draw(st.sampled_from((vpn - 1, vpn + 1, USER_FIRST_VPN - 1, USER_END_VPN,
                                       USER_END_VPN + 1)))
            spaces[pid][to] = page
        else:
            spaces[pid][vpn] = edited(draw, page, vpn, nframes, spaces, spaces[pid])
    return (spaces, layouts), nframes


def bounds(value: int, pages: dict[int, PageView]) -> list[int]:
    """Values of a layout field at the invariants' bounds: by one either side of
    its own, of the brk and stack pages' first and last vpn, of user space's
    ends and of the stack reservation."""
    out = [value - 1, value + 1, -1, 0, STACK_RESERVE_PAGES, STACK_RESERVE_PAGES + 1,
           USER_FIRST_VPN, USER_END_VPN, USER_END_VPN + 1,
           USER_FIRST_VPN + STACK_RESERVE_PAGES - 1, USER_FIRST_VPN + STACK_RESERVE_PAGES]
    for origin in (ORIGIN_BRK, ORIGIN_STACK):
        vpns = [vpn for vpn, page in pages.items() if page.origin == origin]
        if vpns:
            out += [min(vpns), min(vpns) + 1, max(vpns), max(vpns) + 1,
                    max(vpns) + 1 - STACK_RESERVE_PAGES, max(vpns) + 2 - STACK_RESERVE_PAGES]
    return out


def edited(draw: st.DrawFn, page: PageView, vpn: int, nframes: int,
           spaces: dict[int, dict[int, PageView]], own: dict[int, PageView]) -> PageView:
    """One field of a page changed (a frame: also a neighbour's, or the first
    and last of its own process)."""
    field = draw(st.sampled_from(PageView._fields))
    frames = [p.frame for pages in spaces.values() for p in pages.values()
              if p.frame is not None][:3]
    mine = [p.frame for _, p in sorted(own.items()) if p.frame is not None]
    frames += [p.frame for p in (own.get(vpn - 1), own.get(vpn + 1))
               if p is not None and p.frame is not None] + mine[:1] + mine[-1:]
    choices: dict[str, tuple[Any, ...]] = {
        "state": (MEM_FREE, MEM_RESERVE, MEM_COMMIT, 7),
        "protect": (0, *PROTECTIONS, 0x41),
        "base_vpn": (page.base_vpn - 1, page.base_vpn + 1, page.base_vpn + 8,
                     page.base_vpn + 16, vpn, vpn + 1),
        "origin": (ORIGIN_VIRTUAL_ALLOC, ORIGIN_BRK, ORIGIN_STACK, ORIGIN_PROCESS_HEAP, 2, 3),
        "frame": (None, -1, nframes, nframes - 1, *frames),
        "pte_present": (not page.pte_present,),
        "pte_writable": (not page.pte_writable,),
        "pte_user": (not page.pte_user,)}
    return page._replace(**{field: draw(st.sampled_from(choices[field]))})


def z3_holding(view: View, nframes: int) -> dict[str, bool]:
    state = to_user_state(view, nframes)
    return {name: decide(holds(state), name) for name, holds in us.INVARIANTS.items()}


SETTINGS = settings(max_examples=examples(30, 60), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@SETTINGS
@given(st.lists(CALLS, min_size=1, max_size=12))
def test_twins_agree_on_model_views(calls_made: list[tuple[Any, ...]]) -> None:
    view, nframes = model_view([("CreateProcess",), ("SwitchProcess", 1), *calls_made])
    twin = user_twin.holding(view, nframes)
    assert twin == z3_holding(view, nframes)
    assert all(twin.values()), twin  # the model keeps them (the user machine's claim)


@settings(SETTINGS, max_examples=examples(60, 150))
@given(st.lists(CALLS, min_size=0, max_size=8), st.data())
def test_twins_agree_on_corrupted_views(calls_made: list[tuple[Any, ...]],
                                        data: st.DataObject) -> None:
    view, nframes = model_view([("CreateProcess",), ("SwitchProcess", 1), *calls_made])
    bad, frames = data.draw(corrupted(view, nframes))
    assert user_twin.holding(bad, frames) == z3_holding(bad, frames)


#: Model runs whose views every single edit is tried on (test_every_single_edit).
FIXED_RUNS = {
    "mixed": [("SyscallVirtualAlloc", 0, 0x3000, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE),
              ("SyscallVirtualAlloc", 0x20000000, 0x2000, MEM_RESERVE, PAGE_NOACCESS),
              ("SyscallBrk", 0x2800),
              ("SyscallMmap", 0, 0x2000, 3, MAP_PRIVATE | MAP_ANONYMOUS, 0xFFFFFFFF, 0),
              ("SyscallVirtualProtect", 0x10000000, 1, PAGE_EXECUTE_READ, USER_TOP - 4)]}


def single_edits(view: View, nframes: int) -> list[tuple[str, View, int]]:
    """Every edit of the catalogue, one at a time: each field of the first and
    second page of every allocation and of its first committed page, every
    layout field of each process (and as a new process without pages) at each
    bound, the frame count."""
    spaces, layouts = view
    out: list[tuple[str, View, int]] = []

    def page_edit(pid: int, vpn: int, page: PageView) -> None:
        frames = [p.frame for p in spaces[pid].values() if p.frame is not None][:2]
        choices: dict[str, tuple[Any, ...]] = {
            "state": (MEM_FREE, MEM_RESERVE, MEM_COMMIT, 7),
            "protect": (0, *PROTECTIONS, 0x41),
            "base_vpn": (page.base_vpn - 1, page.base_vpn + 1, page.base_vpn + 8,
                         page.base_vpn + 16, vpn + 1),
            "origin": (ORIGIN_VIRTUAL_ALLOC, ORIGIN_BRK, ORIGIN_STACK, ORIGIN_PROCESS_HEAP, 2, 3),
            "frame": (None, -1, nframes, nframes - 1, *frames),
            "pte_present": (not page.pte_present,), "pte_writable": (not page.pte_writable,),
            "pte_user": (not page.pte_user,)}
        for field, values in choices.items():
            for value in values:
                if getattr(page, field) != value:
                    edited_pages = {**spaces[pid], vpn: page._replace(**{field: value})}
                    out.append((f"{pid}:{vpn:#x}.{field}={value}",
                                ({**spaces, pid: edited_pages}, layouts), nframes))

    for pid, pages in spaces.items():
        chosen = {vpn for vpn, page in pages.items() if vpn - page.base_vpn in (0, 1)}
        chosen |= {min((v for v, p in pages.items() if p.base_vpn == base
                        and p.state == MEM_COMMIT), default=base)
                   for base in {p.base_vpn for p in pages.values()}}
        for vpn in sorted(chosen):
            page_edit(pid, vpn, pages[vpn])
        for to in (USER_FIRST_VPN - 1, USER_END_VPN):
            out.append((f"{pid}:copy to {to:#x}", ({**spaces, pid: {
                **pages, to: pages[min(chosen)]}}, layouts), nframes))
    for pid, layout in layouts.items():
        for field in us.SpaceView._fields:
            for value in sorted(set(bounds(getattr(layout, field), spaces.get(pid, {})))):
                moved = layout._replace(**{field: value})
                out.append((f"layout {pid}.{field}={value}",
                            (spaces, {**layouts, pid: moved}), nframes))
                if pid == min(layouts):
                    out.append((f"bare layout {field}={value}",
                                (spaces, {**layouts, max(layouts) + 1: moved}), nframes))
    out += [(f"nframes={n}", view, n) for n in (-1, 0, nframes - 1)]
    return out


@pytest.mark.parametrize("run", sorted(FIXED_RUNS))
def test_every_single_edit(run: str) -> None:
    """Single edits of the catalogue on a fixed model view: twin and z3 agree
    (every third edit; every one with MEMSPEC_SLOW=1, tests/budget.py)."""
    view, nframes = model_view([("CreateProcess",), ("SwitchProcess", 1), *FIXED_RUNS[run]])
    edits = every(single_edits(view, nframes), 3)
    verdicts = [(name, user_twin.holding(v, n), z3_holding(v, n)) for name, v, n in edits]
    wrong = [verdict for verdict in verdicts if verdict[1] != verdict[2]]
    assert not wrong, wrong[:3]
    assert len(edits) > 100


@pytest.mark.parametrize("name", sorted(us.INVARIANTS))
def test_every_invariant_has_a_twin(name: str) -> None:
    assert name in user_twin.INVARIANTS
