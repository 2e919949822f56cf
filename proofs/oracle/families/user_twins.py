"""The user judge's fast paths: Python twins first, z3 terms built once per state.

:class:`proofs.machines.user_space.UserChecks` builds the z3 abstraction of a
view (``to_user_state``: a piecewise lambda per field over the view's runs)
for the pre-state of every call and again for its post-state, and the
``pick``/``pinv`` arrays (a Store per committed page) of the post-state; the
post-state of one call is the pre-state of the next, and every sequence of a
search starts from the same few states. The judge asks each observation once
per reported state (:mod:`proofs.oracle.families.user`: the same Processes
reply object, the same view object), so the terms are remembered per view, in
the search's judge caches (which outlive a sequence): by the view object (no
rebuilding inside a sequence) and by the view's text (the states every
sequence reaches again). The terms are functions of
the view and the frame count alone, so a remembered term is the one that
would be built again: the verdicts are unchanged (z3 hash-conses terms, and
``proofs.machines.checks.decide`` already remembers the claims it proved by
term).

A reported state on which the twins of USR-1..4, PROT-2 and PROT-3
(:mod:`proofs.abstractions.user_twin`, property-tested against the z3 forms
in tests/test_user_twin.py) all hold passes without z3; on any other, z3
decides every invariant as before and gives the verdict and its words, so a
twin can only make a passing state cheaper. The same holds for the calls
whose spec step has a twin (:mod:`proofs.abstractions.user_step_twin`,
tests/test_user_step_twin.py): CreateProcess and DestroyProcess, a third
and more of the calls the search judges by a z3 step (every sequence ends by
destroying its processes), VirtualAlloc(MEM_RESERVE | MEM_COMMIT) and mmap
without MAP_FIXED; the Windows calls (:mod:`proofs.abstractions.user_windows_twin`,
tests/test_user_windows_twin.py, through ``windows_accepts``):
VirtualAlloc(MEM_COMMIT) into a reservation, VirtualAlloc(MEM_RESERVE),
MEM_RESET and MEM_RESET_UNDO, VirtualFree release and decommit,
VirtualProtect, and the status of every failed call the judge gives to
``refused`` (VirtualProtect, VirtualFree, VirtualAlloc(MEM_COMMIT, MEM_RESET,
MEM_RESET_UNDO), munmap); and the Linux and heap calls of
:mod:`proofs.abstractions.user_linux_twin` (tests/test_user_linux_twin.py,
through ``linux_accepts``): brk up and down (BrkGrow, BrkShrink), a
successful munmap, mprotect's success and its partial results ENOMEM and
EACCES (Mprotect), mmap with MAP_FIXED (MmapFixed), a heap call that commits
or decommits pages of the process heap (ProcessHeapGrow, ProcessHeapShrink)
and a successful HeapSize (ProcessHeapSize). A call a twin accepts needs no
z3 step, any other is judged by the z3 step as before; so is a user-mode
access: when the Access step's twin accepts it (the step's ok is the outcome
reported, so PROT-1 holds), ``access_failing`` asks z3 nothing. Every step
the judge checks has a twin now; z3 judges what a twin does not accept (a
divergence, or a case past a twin's bounds such as a range over 4096 pages).
"""

from __future__ import annotations

from typing import Any

from model.user_layout import page_ceil, protect_from_prot
from proofs.abstractions.user_linux_twin import access_accepts, linux_accepts
from proofs.abstractions.user_space import View
from proofs.abstractions.user_step_twin import (
    create_accepts,
    destroy_accepts,
    reserve_commit_accepts,
)
from proofs.abstractions.user_twin import ByIdentity, holding
from proofs.abstractions.user_windows_twin import windows_accepts
from proofs.machines.user_space import KIND, RESET_TYPES, UserChecks
from spec import user_space as us
from spec.abi import (
    MAP_FIXED,
    MEM_COMMIT,
    MEM_RESERVE,
    ORIGIN_MMAP,
    ORIGIN_VIRTUAL_ALLOC,
    PAGE_SHIFT,
)
from spec.user_space import UserState

#: Entries kept per table (a table is emptied when it reaches this): about
#: 20 states a sequence, each a few hundred z3 terms.
LIMIT = 2_000


class TwinFirst(UserChecks):
    """UserChecks with the invariants' and the process steps' twins first, and
    ``state``, ``picked`` and the invariants' twins' verdict remembered per view."""

    #: The oracle's session (its judges' caches outlive a sequence).
    session: Any
    #: Each view's text (:meth:`describe`): about a sequence's views.
    _texts: ByIdentity[View, str]

    def _text(self, view: View) -> str:
        texts: ByIdentity[View, str] = self.__dict__.setdefault("_texts", ByIdentity(64))
        known = texts.get(view)
        return known if known is not None else texts.put(view, self.describe(view))

    def describe(self, view: View) -> str:
        """A text that determines the view (the key of the judge's tables)."""
        return repr(view)

    def _table(self, name: str) -> dict[Any, Any]:
        caches: dict[str, Any] = self.session.judges.caches
        table: dict[Any, Any] = caches.setdefault(f"user {name}", {})
        if len(table) >= LIMIT:
            table.clear()
        return table

    def state(self, view: View) -> UserState:
        table = self._table("state")
        key = (self._text(view), self.nframes())
        built = table.get(key)
        if built is None:
            built = table[key] = super().state(view)
        return built

    def invariant_problems(self, view: View) -> dict[str, str]:
        table = self._table("holding")
        key = (self._text(view), self.nframes())
        holds = table.get(key)
        if holds is None:
            holds = table[key] = all(holding(view, key[1]).values())
        return {} if holds else super().invariant_problems(view)

    def expected(self, name: str, args: tuple[Any, ...], pid: int, pre_view: View,
                 post_view: View, reply: Any, code: int = 0) -> us.UserStep | None:
        """None (no z3 step left to check) when the step's twin accepts the call."""
        if self.twin_accepts(name, args, pid, pre_view, post_view, reply, code):
            return None
        return super().expected(name, args, pid, pre_view, post_view, reply, code)

    def twin_accepts(self, name: str, args: tuple[Any, ...], pid: int, pre_view: View,
                     post_view: View, reply: Any, code: int) -> bool:
        """Whether the twin of the step ``expected`` would build accepts the call
        (pid: the current process; the same choice of step as there)."""
        if any(type(a) is not int for a in args):
            return False
        if linux_accepts(self, name, args, pid, pre_view, post_view, reply, code) \
                or windows_accepts(self, name, args, pid, pre_view, post_view, reply, code):
            return True
        if name == "DestroyProcess":
            return destroy_accepts(args[0], pre_view, post_view, code, self.nframes())
        if type(reply) is not int:
            return False
        if name == "SyscallVirtualAlloc" and pid and reply and args[2] not in RESET_TYPES \
                and (args[2] & MEM_RESERVE or args[0] == 0) and args[2] & MEM_COMMIT:
            first = reply >> PAGE_SHIFT
            count = self.allocation_pages(post_view, pid, first)
            return reserve_commit_accepts(pid, first, count, args[3], ORIGIN_VIRTUAL_ALLOC,
                                          pre_view, post_view, code, self.nframes())
        if name == "SyscallMmap" and pid and reply >= 0 and pid in post_view[1] \
                and not args[3] & MAP_FIXED:
            count = page_ceil(args[1]) >> PAGE_SHIFT
            return reserve_commit_accepts(pid, reply >> PAGE_SHIFT, count,
                                          protect_from_prot(args[2]), ORIGIN_MMAP, pre_view,
                                          post_view, code, self.nframes())
        if name == "CreateProcess" and reply > 0:
            try:
                image, image_pages, base, heap_pages = self.process_layout(reply, post_view)
            except (KeyError, StopIteration):
                return False
            count = self.allocation_pages(post_view, reply, base)
            return create_accepts(reply, image, image_pages, base, heap_pages, count, pre_view,
                                  post_view, code, self.nframes())
        return False

    def access_failing(self, pid: int, kind: str, address: int, allowed: bool,
                       pre_view: View) -> list[str]:
        """None of the Access step's claims fails when its twin accepts the access."""
        if type(address) is int and access_accepts(pid, address >> PAGE_SHIFT, KIND[kind],
                                                   allowed, pre_view):
            return []
        return super().access_failing(pid, kind, address, allowed, pre_view)

    def picked(self, pid: int, post_view: View) -> tuple[Any, Any, Any]:  # type: ignore[override]
        table = self._table("picked")
        key = (pid, self._text(post_view))
        built = table.get(key)
        if built is None:
            built = table[key] = UserChecks.picked(pid, post_view)
        return built
