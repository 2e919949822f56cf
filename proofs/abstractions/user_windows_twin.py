"""Python twins of the user-space spec's Windows steps and failure statuses.

spec/user_space.py stays the source of truth. The user judge checks a call by
the spec's step (``UserChecks.expected``, ``transition`` and ``refused`` in
proofs/machines/user_space.py); :func:`windows_accepts` decides the same
claims on plain data, the step chosen as ``expected`` chooses it and every
page read the way ``to_user_state`` abstracts a view (a page outside the
view free with every field 0; proofs/abstractions/user_twin.py):

- a successful VirtualAlloc(MEM_COMMIT) at an address (``VirtualAllocCommit``:
  one allocation, not the process heap's; pages not yet committed take the
  frame reported for them under the assumption on ``pick``, pages already
  committed keep theirs; all take the protection), VirtualAlloc(MEM_RESERVE)
  (``VirtualAllocReserve``: a free range on the 64 KB granule), MEM_RESET and
  MEM_RESET_UNDO (``VirtualAllocReset``: one allocation, nothing changes);
- VirtualFree: release (``VirtualFreeRelease``: the allocation based at the
  address, a VirtualAlloc or mmap one, freed with its frames) and decommit
  (``VirtualFreeDecommit``: the range's committed pages reserved, their frames
  given back);
- VirtualProtect, as ``SyscallVirtualProtect`` and as the harness's
  ``protect`` (``VirtualProtect``: committed pages of one allocation, not the
  process heap's, take the protection and its PTE bits);
- a failed call the judge gives to ``refused`` (VirtualProtect, VirtualFree,
  VirtualAlloc(MEM_COMMIT, MEM_RESET, MEM_RESET_UNDO), munmap): only the
  step's status is compared with the code (its assumption is taken true), so
  the twin computes the status alone (VirtualAllocCommit's ``oom`` is the
  code being ERROR_NOT_ENOUGH_MEMORY, as there; every check of munmap's
  status gives EINVAL).

A status is the code of the first failing check in the spec's order, else 0.
On success (code 0) every observable field is compared as
proofs/abstractions/user_step_twin.py does (``Observation``). A twin only
ever accepts: True when the status is the code and, on success, the
assumption and every field hold; False when a claim fails or the case is one
it does not evaluate (a reply or argument of another type, a view without
the page or process the judge's own step reads, more than ``MAX_PAGES``
pages reserved), and then the z3 step judges the call as before.
tests/test_user_windows_twin.py checks on model processes and on corrupted
reports and codes that the twin accepts exactly where the z3 step does.

Why (issue 16): in a 20 s spec-mode search of the user family these steps
took about 65 ms of z3 each (building the step and its transition: 3.3 s for
the 67 successful VirtualAlloc, VirtualFree and VirtualProtect calls of 18
sequences); the twins take about 1 ms.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from model.user_layout import page_ceil, page_floor
from model.x86_paging import is_u32
from proofs.abstractions.user_space import View
from proofs.abstractions.user_step_twin import (
    MAX_PAGES,
    Observation,
    _commit,
    _pick,
    of_view,
    owners,
)
from proofs.abstractions.user_twin import Pages, pages_of
from proofs.machines.user_space import REFUSED, RESET_TYPES, UserChecks
from spec.abi import (
    EINVAL,
    MEM_COMMIT,
    MEM_DECOMMIT,
    MEM_FREE,
    MEM_RELEASE,
    MEM_RESERVE,
    ORIGIN_BRK,
    ORIGIN_MMAP,
    ORIGIN_PROCESS_HEAP,
    ORIGIN_VIRTUAL_ALLOC,
    PAGE_EXECUTE_READWRITE,
    PAGE_NOACCESS,
    PAGE_READWRITE,
    PAGE_SHIFT,
    PAGE_SIZE,
    USER_END_VPN,
    USER_FIRST_VPN,
    USER_TOP,
    VALID_PROTECTIONS,
    ErrorCode,
)
from spec.user_space import GRANULE_PAGES, PageView

E = ErrorCode
Own = Mapping[int, PageView]
PROTECT_NAMES = ("protect", "SyscallVirtualProtect")
#: The calls windows_accepts judges (munmap: its failures).
NAMES = frozenset({"SyscallVirtualAlloc", "SyscallVirtualFree", "SyscallMunmap",
                   *PROTECT_NAMES})


class Step(NamedTuple):
    """A step's status, and on success the observation it leaves (None when
    its assumption on the frames picked fails or the twin does not build it)."""

    status: int
    after: Callable[[], Observation | None]


def _nothing() -> Observation | None:
    return None


# -- guards (spec/user_space.py's, on one process's pages) ------------------------------

def nonfree(own: Own, vpn: int) -> bool:
    page = own.get(vpn)
    return page is not None and page.state != MEM_FREE


def origin(own: Own, vpn: int) -> int:
    page = own.get(vpn)
    return 0 if page is None else page.origin


def one_allocation(own: Own, first: int, count: int) -> bool:
    """Every page of the range non-free with the base of page first (a page
    outside the view is free: the loop stops there, at most one past the view)."""
    if not nonfree(own, first):
        return False
    base = own[first].base_vpn
    for vpn in range(first, first + count):
        page = own.get(vpn)
        if page is None or page.state == MEM_FREE or page.base_vpn != base:
            return False
    return True


def all_committed(own: Own, first: int, count: int) -> bool:
    for vpn in range(first, first + count):
        page = own.get(vpn)
        if page is None or page.state != MEM_COMMIT:
            return False
    return True


def all_free(own: Own, first: int, count: int) -> bool:
    return not any(first <= vpn < first + count and page.state != MEM_FREE
                   for vpn, page in own.items())


def user_range(first: int, count: int) -> bool:
    return 0 < count and USER_FIRST_VPN <= first and first + count <= USER_END_VPN


def unmappable(own: Own, first: int, count: int) -> bool:
    """munmap may remove the range: its non-free pages are mmap or brk pages, or
    pages of a VirtualAlloc reservation based at or above first that page
    first + count is not in."""
    end = first + count
    for vpn, page in own.items():
        if not first <= vpn < end or page.state == MEM_FREE:
            continue
        if page.origin in (ORIGIN_MMAP, ORIGIN_BRK):
            continue
        if page.origin == ORIGIN_VIRTUAL_ALLOC and first <= page.base_vpn and not (
                nonfree(own, end) and own[end].base_vpn == page.base_vpn):
            continue
        return False
    return True


def with_protection(page: PageView, protect: int) -> PageView:
    """spec.user_space.protect_pages on one page (its PTE bits: pte_bits)."""
    present = protect != PAGE_NOACCESS
    writable = present and protect in (PAGE_READWRITE, PAGE_EXECUTE_READWRITE)
    return page._replace(protect=protect, pte_present=present, pte_writable=writable,
                         pte_user=present)


# -- the steps ---------------------------------------------------------------------------

def _after(pre: Pages, pid: int, pages: dict[int, PageView],
           owner: Mapping[int, int]) -> Observation:
    return Observation({**pre.spaces, pid: pages}, pre.live, pre.layouts, owner)


def virtual_protect(pre: Pages, pid: int, first: int, count: int, protect: int) -> Step:
    own = pre.spaces.get(pid, {})
    status: int
    if pid not in pre.live:
        status = E.ERROR_INVALID_HANDLE
    elif protect not in VALID_PROTECTIONS or count <= 0:
        status = E.ERROR_INVALID_PARAMETER
    elif not one_allocation(own, first, count) or not all_committed(own, first, count):
        status = E.ERROR_INVALID_ADDRESS
    elif origin(own, first) == ORIGIN_PROCESS_HEAP:
        status = E.ERROR_ACCESS_DENIED
    else:
        status = 0

    def after() -> Observation:
        pages = dict(own)
        for vpn in range(first, first + count):
            pages[vpn] = with_protection(own[vpn], protect)
        return _after(pre, pid, pages, owners(pre))
    return Step(status, after)


def virtual_free_release(pre: Pages, pid: int, base: int) -> Step:
    own = pre.spaces.get(pid, {})
    status: int
    if pid not in pre.live:
        status = E.ERROR_INVALID_HANDLE
    elif not (nonfree(own, base) and own[base].base_vpn == base):
        status = E.ERROR_INVALID_ADDRESS
    elif origin(own, base) not in (ORIGIN_VIRTUAL_ALLOC, ORIGIN_MMAP):
        status = E.ERROR_INVALID_PARAMETER
    else:
        status = 0

    def released(vpn: int) -> bool:
        return nonfree(own, vpn) and own[vpn].base_vpn == base

    def after() -> Observation:
        pages = {vpn: page for vpn, page in own.items() if not released(vpn)}
        owner = {frame: q for frame, (q, vpn) in pre.owners.items()
                 if not (q == pid and released(vpn))}
        return _after(pre, pid, pages, owner)
    return Step(status, after)


def virtual_free_decommit(pre: Pages, pid: int, first: int, count: int) -> Step:
    own = pre.spaces.get(pid, {})
    status: int
    if pid not in pre.live:
        status = E.ERROR_INVALID_HANDLE
    elif count <= 0:
        status = E.ERROR_INVALID_PARAMETER
    elif not one_allocation(own, first, count):
        status = E.ERROR_INVALID_ADDRESS
    elif origin(own, first) not in (ORIGIN_VIRTUAL_ALLOC, ORIGIN_MMAP):
        status = E.ERROR_INVALID_PARAMETER
    else:
        status = 0

    def after() -> Observation:
        pages = dict(own)
        for vpn, page in own.items():
            if first <= vpn < first + count and page.state == MEM_COMMIT:
                pages[vpn] = page._replace(state=MEM_RESERVE, protect=0, pte_present=False,
                                           pte_writable=False, pte_user=False)
        owner = {frame: q for frame, (q, vpn) in pre.owners.items()
                 if not (q == pid and first <= vpn < first + count)}
        return _after(pre, pid, pages, owner)
    return Step(status, after)


def virtual_alloc_reserve(pre: Pages, pid: int, first: int, count: int, protect: int) -> Step:
    own = pre.spaces.get(pid, {})
    status: int
    if pid not in pre.live:
        status = E.ERROR_INVALID_HANDLE
    elif protect not in VALID_PROTECTIONS:
        status = E.ERROR_INVALID_PARAMETER
    elif first % GRANULE_PAGES or not user_range(first, count) or not all_free(
            own, first, count):
        status = E.ERROR_INVALID_ADDRESS
    else:
        status = 0

    def after() -> Observation | None:
        if count > MAX_PAGES:
            return None
        pages = dict(own)
        for vpn in range(first, first + count):
            pages[vpn] = PageView(MEM_RESERVE, 0, first, ORIGIN_VIRTUAL_ALLOC, None, False,
                                  False, False)
        return _after(pre, pid, pages, owners(pre))
    return Step(status, after)


def _reset_status(pre: Pages, pid: int, first: int, count: int, protect: int) -> int:
    own = pre.spaces.get(pid, {})
    if pid not in pre.live:
        return E.ERROR_INVALID_HANDLE
    if protect not in VALID_PROTECTIONS or count <= 0:
        return E.ERROR_INVALID_PARAMETER
    if not one_allocation(own, first, count):
        return E.ERROR_INVALID_ADDRESS
    return 0


def virtual_alloc_reset(pre: Pages, pid: int, first: int, count: int, protect: int) -> Step:
    """MEM_RESET and MEM_RESET_UNDO: no page changes."""
    return Step(_reset_status(pre, pid, first, count, protect),
                lambda: Observation(pre.spaces, pre.live, pre.layouts, owners(pre)))


def virtual_alloc_commit(pre: Pages, pid: int, first: int, count: int, protect: int,
                         oom: bool, post_view: View | None = None) -> Step:
    """VirtualAllocCommit; post_view gives pick and pinv (None: a failure's status)."""
    own = pre.spaces.get(pid, {})
    status = _reset_status(pre, pid, first, count, protect)
    if status == 0 and origin(own, first) == ORIGIN_PROCESS_HEAP:
        status = E.ERROR_ACCESS_DENIED
    elif status == 0 and oom:
        status = E.ERROR_NOT_ENOUGH_MEMORY

    def after() -> Observation | None:
        if post_view is None:
            return None
        vpns = range(first, first + count)
        pick, pinv = _pick(pid, post_view)
        owner = owners(pre)
        pages = dict(own)
        fresh = [vpn for vpn in vpns if own[vpn].state != MEM_COMMIT]
        if not _commit(pages, pid, fresh, pick, pinv, owner, pre.nframes, lambda vpn: protect):
            return None
        for vpn in vpns:
            if own[vpn].state == MEM_COMMIT:
                pages[vpn] = with_protection(own[vpn], protect)
        return _after(pre, pid, pages, owner)
    return Step(status, after)


def munmap_status(pre: Pages, pid: int, first: int, count: int) -> int:
    """Munmap's status: every failing check gives EINVAL."""
    own = pre.spaces.get(pid, {})
    if pid in pre.live and count > 0 and user_range(first, count) and unmappable(
            own, first, count):
        return 0
    return EINVAL


# -- the judge's choice of step ---------------------------------------------------------------

def succeeded(checks: UserChecks, name: str, args: tuple[Any, ...], pid: int, pre: Pages,
              pre_view: View, post_view: View, reply: int) -> Step | None:
    """The step ``UserChecks.expected`` builds for a call with a non-zero reply
    (None: a step this module has no twin of, or one it cannot build)."""
    if name == "SyscallVirtualAlloc" and len(args) == 4:
        address, size, kind, protect = args
        first = reply >> PAGE_SHIFT
        if kind in RESET_TYPES:
            count = (page_ceil(address + size) >> PAGE_SHIFT) - first
            return virtual_alloc_reset(pre, pid, first, count, protect)
        if kind & MEM_RESERVE or address == 0:
            if kind & MEM_COMMIT or pid not in post_view[0]:
                return None  # VirtualAllocReserveCommit (user_step_twin), or no pages
            count = checks.allocation_pages(post_view, pid, first)
            return virtual_alloc_reserve(pre, pid, first, count, protect)
        count = (page_ceil(address + size) - page_floor(address)) >> PAGE_SHIFT
        return virtual_alloc_commit(pre, pid, first, count, protect, False, post_view)
    if name == "SyscallVirtualFree" and len(args) == 3:
        address, size, kind = args
        first = page_floor(address) >> PAGE_SHIFT
        if kind == MEM_RELEASE:
            return virtual_free_release(pre, pid, first)
        page = pre_view[0].get(pid, {}).get(first)
        if page is None:
            return None
        base = page.base_vpn
        end = (base + checks.allocation_pages(pre_view, pid, base) if size == 0
               else page_ceil(address + size) >> PAGE_SHIFT)
        return virtual_free_decommit(pre, pid, first, end - first)
    if name in PROTECT_NAMES and len(args) >= 3:
        address, size, protect = args[:3]
        first = page_floor(address) >> PAGE_SHIFT
        count = (page_ceil(address + size) >> PAGE_SHIFT) - first
        return virtual_protect(pre, pid, first, count, protect)
    return None


def refused_status(name: str, args: tuple[Any, ...], pre: Pages, pid: int,
                   code: int) -> int | None:
    """The status of the step ``refused`` builds (None where it builds none)."""
    if code == 0 or name not in REFUSED or len(args) < 2 or not all(
            is_u32(a) for a in args[:2]):
        return None
    address, size = args[:2]
    first = address >> PAGE_SHIFT
    count = (page_ceil(address + size) >> PAGE_SHIFT) - first
    in_user = 0 < size and page_ceil(address + size) <= USER_TOP
    if name in PROTECT_NAMES and len(args) >= 3 and in_user and code not in (
            E.ERROR_NOT_ENOUGH_MEMORY, E.ERROR_NOACCESS):
        return virtual_protect(pre, pid, first, count, args[2]).status
    if name == "SyscallVirtualFree" and len(args) == 3 and address % PAGE_SIZE == 0:
        if args[2] == MEM_RELEASE and size == 0:
            return virtual_free_release(pre, pid, first).status
        if args[2] == MEM_DECOMMIT and in_user:
            return virtual_free_decommit(pre, pid, first, count).status
        return None
    if name == "SyscallVirtualAlloc" and len(args) == 4 and args[2] in RESET_TYPES and in_user:
        return _reset_status(pre, pid, first, count, args[3])
    if name == "SyscallVirtualAlloc" and len(args) == 4 and args[2] == MEM_COMMIT and address \
            and in_user:
        oom = code == E.ERROR_NOT_ENOUGH_MEMORY
        return virtual_alloc_commit(pre, pid, first, count, args[3], oom).status
    if name == "SyscallMunmap" and address % PAGE_SIZE == 0:
        return munmap_status(pre, pid, first, page_ceil(size) >> PAGE_SHIFT)
    return None


def windows_accepts(checks: UserChecks, name: str, args: tuple[Any, ...], pid: int,
                    pre_view: View, post_view: View, reply: Any, code: int) -> bool:
    """The z3 step ``checks.expected`` builds for the call accepts it (pid: the
    current process), decided by the twins above; False also where none applies."""
    if pid == 0 or name not in NAMES or any(type(a) is not int for a in args):
        return False
    if name == "protect":  # the harness's VirtualProtect: (ok, old protection)
        if type(reply) is not tuple or not reply or type(reply[0]) is not bool:
            return False
        ok = reply[0]
    elif type(reply) is int:
        ok = reply == 0 if name == "SyscallMunmap" else reply != 0
    else:
        return False
    if ok and name == "SyscallMunmap":
        return False  # Munmap's success step: not a Windows twin
    pre = pages_of(pre_view, checks.nframes())
    if ok:
        step = succeeded(checks, name, args, pid, pre, pre_view, post_view,
                         0 if name == "protect" else reply)
        if step is None or step.status != code:
            return False
        if code != 0:
            return True  # a failure: only the status is compared
        expected = step.after()
        return expected is not None and expected == of_view(post_view, pre.nframes)
    if pid not in post_view[1]:
        return False  # no step: the judge's ``refused`` is asked for live processes only
    return refused_status(name, args, pre, pid, code) == code != 0
