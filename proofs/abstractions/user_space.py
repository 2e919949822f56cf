"""The abstraction of the model's processes into the user-space spec state.

``user_view`` reads the model's records (ProcessMemorySpace.pages, its
allocations and PTEs, and every present PTE of the user tables, so a PTE
left on a page without a record shows as a present PTE on a free page) as
plain data: per pid the non-free pages as
spec.user_space.PageView and the heap/stack layout as SpaceView, in pages.
``to_user_state`` encodes a view as a UserState whose arrays are piecewise
lambdas over *runs*: maximal stretches of consecutive pages with equal
fields whose frames are consecutive too. A process holds ~550 records (the
1 MB stack and process-heap reservations) but a few dozen runs, and z3 decides
an invariant over a few dozen If-cases in milliseconds where a Store per page
takes seconds (the subsystem machine measured the same effect). The encoding
equals ``spec.user_space.concrete_user`` (a Store per page) as arrays; a test
checks the two agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import z3

from model.syscalls import SystemCalls
from model.user_layout import page_ceil
from spec.abi import (
    MEM_COMMIT,
    MEM_FREE,
    PAGE_SHIFT,
    PTE_PRESENT,
    PTE_USER,
    PTE_WRITABLE,
    USER_END_VPN,
    USER_FIRST_VPN,
)
from spec.state import Ref
from spec.user_space import PageView, SpaceView, UserState, empty_user

View = tuple[dict[int, dict[int, PageView]], dict[int, SpaceView]]


class Run(NamedTuple):
    """Pages [first, first + length) of pid with equal fields; frame = vpn + delta."""

    pid: int
    first: int
    length: int
    page: PageView
    delta: int | None


def user_view(calls: SystemCalls) -> View:
    """The live processes' non-free pages and layouts, in pages."""
    spaces: dict[int, dict[int, PageView]] = {}
    layouts: dict[int, SpaceView] = {}
    for pid, space in calls.processes.items():
        pages: dict[int, PageView] = {}
        for vpn, record in space.pages.items():
            entry = space.pte(vpn)
            allocation = space.allocations[record.allocation_base]
            pages[vpn] = PageView(record.state, record.protect,
                                  record.allocation_base >> PAGE_SHIFT, allocation.origin,
                                  record.frame, bool(entry & PTE_PRESENT),
                                  bool(entry & PTE_WRITABLE), bool(entry & PTE_USER))
        directory = space.page_dir
        if directory is not None:  # present PTEs on pages without a record
            for slot in range(USER_FIRST_VPN >> 10, USER_END_VPN >> 10):
                table = directory.tables[slot]
                if table is None:
                    continue
                for index, entry in enumerate(table.entries):
                    vpn = (slot << 10) | index
                    if entry & PTE_PRESENT and vpn not in pages:
                        pages[vpn] = PageView(MEM_FREE, 0, 0, 0, None, True,
                                              bool(entry & PTE_WRITABLE), bool(entry & PTE_USER))
        spaces[pid] = pages
        layouts[pid] = SpaceView(space.heap_start >> PAGE_SHIFT,
                                 page_ceil(space.brk) >> PAGE_SHIFT,
                                 space.heap_max >> PAGE_SHIFT, space.stack_start >> PAGE_SHIFT,
                                 page_ceil(space.stack_size) >> PAGE_SHIFT)
    return spaces, layouts


def runs(spaces: Mapping[int, Mapping[int, PageView]]) -> list[Run]:
    """The maximal runs of every process's pages."""
    out: list[Run] = []
    for pid in sorted(spaces):
        current: Run | None = None
        for vpn in sorted(spaces[pid]):
            page = spaces[pid][vpn]
            delta = None if page.frame is None else page.frame - vpn
            key = page._replace(frame=None)
            if (current is not None and current.first + current.length == vpn
                    and current.page == key and current.delta == delta):
                current = current._replace(length=current.length + 1)
                continue
            if current is not None:
                out.append(current)
            current = Run(pid, vpn, 1, key, delta)
        if current is not None:
            out.append(current)
    return out


def to_user_state(view: View, nframes: int) -> UserState:
    """The UserState of a view, as piecewise lambdas over its runs."""
    spaces, layouts = view
    s = empty_user(nframes, "view")
    q, w, f = z3.Ints("_rq _rw _rf")
    fields: dict[str, Ref] = {name: getattr(s, name)[q, w] for name in (
        "state", "protect", "base", "origin", "frame", "pte_present", "pte_writable",
        "pte_user")}
    owner, rmap = s.owner[f], s.rmap[f]
    for run in reversed(runs(spaces)):
        inside = z3.And(q == run.pid, run.first <= w, w < run.first + run.length)
        page = run.page
        values: dict[str, Ref | int | bool] = {
            "state": page.state, "protect": page.protect, "base": page.base_vpn,
            "origin": page.origin, "pte_present": page.pte_present,
            "pte_writable": page.pte_writable, "pte_user": page.pte_user}
        if run.delta is not None:
            values["frame"] = w + run.delta
            if page.state == MEM_COMMIT:
                low = run.first + run.delta
                held = z3.And(low <= f, f < low + run.length)
                owner = z3.If(held, z3.IntVal(run.pid), owner)
                rmap = z3.If(held, f - run.delta, rmap)
        for name, value in values.items():
            fields[name] = z3.If(inside, value, fields[name])
    live, per_pid = s.live, {name: getattr(s, name) for name in SpaceView._fields}
    for pid in sorted(set(spaces) | set(layouts)):
        live = z3.Store(live, pid, True)
        layout = layouts.get(pid)
        if layout is not None:
            for name in per_pid:
                per_pid[name] = z3.Store(per_pid[name], pid, getattr(layout, name))
    return s.but(live=live, owner=z3.Lambda([f], owner), rmap=z3.Lambda([f], rmap),
                 **{name: z3.Lambda([q, w], value) for name, value in fields.items()},
                 **per_pid)
