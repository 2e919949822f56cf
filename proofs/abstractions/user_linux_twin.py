"""Python twins of the user-space spec's Linux steps, the process heap's page
steps and the Access step, judged on concrete views.

spec/user_space.py stays the source of truth; the twins read a view the way
``to_user_state`` abstracts it and decide the claims the user judge
(``UserChecks.expected`` and ``transition``, ``UserChecks.access_failing``,
proofs/machines/user_space.py) asks of the z3 step, as the process steps'
twins do (proofs/abstractions/user_step_twin.py, whose ``Observation``,
``_pick`` and ``_commit`` they share): the step's assumption on the frames
picked, its status against the reported code and every observable field of
its successor against the reported post-state. The steps:

- ``BrkGrow``: [heap_end, new_end] free (new_end is the guard page) and
  new_end up to heap_max; the pages are reserved as brk pages, based at the
  base of the brk allocation ending at the break (else at the break), and
  committed READWRITE in the frames reported; heap_end becomes new_end;
- ``BrkShrink`` and ``Munmap``: ``unmap_range`` (the range's pages freed,
  the frames whose first holder lies in it given back, and every non-free
  page above the range based below its end rebased at its end) when
  ``unmappable`` holds (each non-free page an mmap or brk page, or a
  VirtualAlloc page based at or above the range's start whose allocation
  does not go on past the range's end); brk below the break needs a non-free
  page in the range and new_end from heap_start on, munmap a user range;
- ``MmapFixed``: the same unmap, then the range reserved as one mmap
  allocation and every page committed anew (a page that was committed takes
  the frame reported for it, its own frame again or another);
- ``Mprotect`` with the judge's ``stop`` (``mprotect_stop``): the pages
  before stop take the protection and its PTE bits; the status is 0 at the
  range's end, EACCES at a committed (process heap) page, ENOMEM at a hole;
  the partial results are compared on the post-state as the success is;
- ``ProcessHeapGrow`` / ``ProcessHeapShrink`` over the judge's pages
  (``heap_changes``): one allocation of the process heap, committed
  READWRITE (committed pages keep their frames) or decommitted (frames given
  back); ``ProcessHeapSize``: nothing changes;
- ``Access``: ``ok`` (the process live, a valid kind, a committed user page
  whose protection allows the kind, its PTE present and user, writable for
  a write) equals whether the access was allowed; PROT-1 (an allowed access
  meets the same conditions) then holds.

A twin only ever accepts: True when every claim holds, False when one does
not, the call failed (but for mprotect's partial results) or the case is one
the twin does not evaluate; then the z3 step judges the call as before and
gives the verdict and its words. Loops run over the view's pages or over at
most ``MAX_PAGES`` pages. tests/test_user_linux_twin.py checks, on model
processes and on corrupted reports, that the twins accept only where the z3
step accepts, and every successful call.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from model.user_layout import page_ceil, protect_from_prot
from proofs.abstractions.user_space import View
from proofs.abstractions.user_step_twin import (
    MAX_PAGES,
    Observation,
    _commit,
    _pick,
    of_view,
    owners,
)
from proofs.abstractions.user_twin import Pages, in_user, pages_of
from proofs.machines.user_space import UserChecks, heap_changes, mprotect_stop
from spec.abi import (
    EACCES,
    ENOMEM,
    MAP_FIXED,
    MEM_COMMIT,
    MEM_FREE,
    MEM_RESERVE,
    ORIGIN_BRK,
    ORIGIN_MMAP,
    ORIGIN_PROCESS_HEAP,
    ORIGIN_VIRTUAL_ALLOC,
    PAGE_EXECUTE,
    PAGE_EXECUTE_READ,
    PAGE_EXECUTE_READWRITE,
    PAGE_NOACCESS,
    PAGE_READONLY,
    PAGE_READWRITE,
    PAGE_SHIFT,
    USER_END_VPN,
    USER_FIRST_VPN,
    VALID_PROTECTIONS,
)
from spec.user_space import EXECUTE, READ, WRITE, PageView

Space = dict[int, PageView]
FREE = PageView(MEM_FREE, 0, 0, 0, None, False, False, False)
#: spec.user_space.allows: Microsoft's table of the kinds each protection allows.
ALLOWS = {READ: frozenset({PAGE_READONLY, PAGE_READWRITE, PAGE_EXECUTE_READ,
                           PAGE_EXECUTE_READWRITE}),
          WRITE: frozenset({PAGE_READWRITE, PAGE_EXECUTE_READWRITE}),
          EXECUTE: frozenset({PAGE_EXECUTE, PAGE_EXECUTE_READ, PAGE_EXECUTE_READWRITE})}
#: The heap calls whose page changes are ProcessHeapGrow / ProcessHeapShrink.
HEAP_CALLS = ("SyscallHeapAlloc", "SyscallHeapFree", "SyscallHeapReAlloc")


def linux_accepts(checks: UserChecks, name: str, args: tuple[Any, ...], pid: int,
                  pre_view: View, post_view: View, reply: Any, code: int) -> bool:
    """Whether the twin of the step ``checks.expected`` builds for the call (the
    same choice of step and arguments) accepts it: brk up or down, munmap,
    mprotect, mmap with MAP_FIXED, the process heap's page steps. False for
    every other call."""
    if pid == 0 or any(type(a) is not int for a in args):
        return False
    nframes = checks.nframes()
    live = pid in post_view[1]
    if name in HEAP_CALLS and live:
        return heap_accepts(pid, pre_view, post_view, code, nframes)
    if name == "SyscallHeapSize" and live and code == 0:
        return heap_size_accepts(pid, pre_view, post_view, nframes)
    if type(reply) is not int:
        return False
    if name == "SyscallBrk" and live and reply == args[0] and pid in pre_view[1]:
        old_end, new_end = pre_view[1][pid].heap_end, post_view[1][pid].heap_end
        if new_end > old_end:
            return brk_grow_accepts(pid, new_end, pre_view, post_view, code, nframes)
        if new_end < old_end:
            return brk_shrink_accepts(pid, new_end, pre_view, post_view, code, nframes)
        return False
    if name == "SyscallMunmap" and reply == 0 and len(args) == 2:
        address, length = args
        return munmap_accepts(pid, address >> PAGE_SHIFT, page_ceil(length) >> PAGE_SHIFT,
                              pre_view, post_view, code, nframes)
    if name == "SyscallMprotect" and len(args) == 3 and args[1] \
            and reply in (0, -ENOMEM, -EACCES) and pid in pre_view[0]:
        address, length, prot = args
        first, end = address >> PAGE_SHIFT, page_ceil(address + length) >> PAGE_SHIFT
        stop = mprotect_stop(pre_view[0][pid], first, end)
        return mprotect_accepts(pid, first, end - first, protect_from_prot(prot), stop,
                                pre_view, post_view, code, nframes)
    if name == "SyscallMmap" and reply >= 0 and live and len(args) >= 4 \
            and args[3] & MAP_FIXED:
        return mmap_fixed_accepts(pid, reply >> PAGE_SHIFT, page_ceil(args[1]) >> PAGE_SHIFT,
                                  protect_from_prot(args[2]), pre_view, post_view, code,
                                  nframes)
    return False


# -- the spec's predicates and state changes on one process's pages ------------------

def _inside(own: Mapping[int, PageView], first: int, count: int) -> list[int]:
    """The pages of own in [first, first + count), in order."""
    return sorted(vpn for vpn in own if first <= vpn < first + count)


def all_free(own: Mapping[int, PageView], first: int, count: int) -> bool:
    return all(own[vpn].state == MEM_FREE for vpn in _inside(own, first, count))


def user_range(first: int, count: int) -> bool:
    return 0 < count and USER_FIRST_VPN <= first and first + count <= USER_END_VPN


def one_allocation(own: Mapping[int, PageView], first: int, count: int) -> bool:
    """Every page of the range non-free, in the allocation of its first page
    (the first page non-free whatever the count)."""
    head = own.get(first, FREE)
    if head.state == MEM_FREE or count > len(own):
        return False
    return all(own.get(vpn, FREE).state != MEM_FREE and own[vpn].base_vpn == head.base_vpn
               for vpn in range(first, first + count))


def unmappable(own: Mapping[int, PageView], first: int, count: int) -> bool:
    """munmap may remove the range (spec.user_space.unmappable)."""
    end = first + count
    after = own.get(end, FREE)
    for vpn in _inside(own, first, count):
        page = own[vpn]
        if page.state == MEM_FREE or page.origin in (ORIGIN_MMAP, ORIGIN_BRK):
            continue
        if not (page.origin == ORIGIN_VIRTUAL_ALLOC and first <= page.base_vpn
                and not (after.state != MEM_FREE and after.base_vpn == page.base_vpn)):
            return False
    return True


def release_frames(owner: dict[int, int], pre: Pages, pid: int, first: int,
                   count: int) -> None:
    """The frames of pid whose first holder lies in the range become owner 0."""
    for frame, (holder, vpn) in pre.owners.items():
        if holder == pid and first <= vpn < first + count:
            owner.pop(frame, None)


def unmap_range(pages: Space, owner: dict[int, int], pre: Pages, pid: int, first: int,
                count: int) -> None:
    """spec.user_space.unmap_range on pid's pages (pages read before the call)."""
    end = first + count
    for vpn in _inside(pages, first, count):
        del pages[vpn]
    release_frames(owner, pre, pid, first, count)
    for vpn, page in list(pages.items()):
        if vpn >= end and page.state != MEM_FREE and page.base_vpn < end:
            pages[vpn] = page._replace(base_vpn=end)


def pte_bits(protect: int) -> tuple[bool, bool]:
    """(present, writable) of a committed page's PTE (spec.user_space.pte_bits)."""
    present = protect != PAGE_NOACCESS
    return present, present and protect in (PAGE_READWRITE, PAGE_EXECUTE_READWRITE)


def protected(page: PageView, protect: int) -> PageView:
    present, writable = pte_bits(protect)
    return page._replace(protect=protect, pte_present=present, pte_writable=writable,
                         pte_user=present)


def commit_range(pages: Space, pid: int, first: int, count: int, protect: int,
                 post_view: View, owner: dict[int, int], nframes: int) -> bool:
    """spec.user_space.commit_pages over [first, first + count): committed pages
    keep their frame and take the protection, the others the frame reported
    for them (the assumption on pick, checked by _commit)."""
    if not 0 <= count <= MAX_PAGES:
        return False
    new = []
    for vpn in range(first, first + count):
        page = pages.setdefault(vpn, FREE)
        if page.state == MEM_COMMIT:
            pages[vpn] = protected(page, protect)
        else:
            new.append(vpn)
    pick, pinv = _pick(pid, post_view)
    return _commit(pages, pid, new, pick, pinv, owner, nframes, lambda vpn: protect)


def reserve(pages: Space, first: int, count: int, base: int, origin: int) -> None:
    for vpn in range(first, first + count):
        pages[vpn] = PageView(MEM_RESERVE, 0, base, origin, pages.get(vpn, FREE).frame,
                              False, False, False)


def _same(pre: Pages, pid: int, pages: Space, owner: dict[int, int], post_view: View,
          heap_end: int | None = None) -> bool:
    """The successor (pid's pages and the owners changed, perhaps its break)
    equals the reported post-state on every observable field."""
    layouts = dict(pre.layouts)
    if heap_end is not None:
        layouts[pid] = pre.layout(pid)._replace(heap_end=heap_end)
    expected = Observation({**pre.spaces, pid: pages}, pre.live, layouts, owner)
    return expected == of_view(post_view, pre.nframes)


# -- brk ---------------------------------------------------------------------------------

def brk_grow_accepts(pid: int, new_end: int, pre_view: View, post_view: View, code: int,
                     nframes: int) -> bool:
    """A brk moving the break up to new_end passes BrkGrow."""
    pre = pages_of(pre_view, nframes)
    if code != 0 or pid not in pre.live:
        return False
    layout = pre.layout(pid)
    end = layout.heap_end
    count = new_end - end
    own = pre.spaces.get(pid, {})
    if not (end < new_end <= layout.heap_max and count <= MAX_PAGES
            and all_free(own, end, count + 1)):
        return False  # ENOMEM
    last = own.get(end - 1, FREE)
    base = last.base_vpn if last.state != MEM_FREE and last.origin == ORIGIN_BRK else end
    pages = dict(own)
    reserve(pages, end, count, base, ORIGIN_BRK)
    owner = owners(pre)
    if not commit_range(pages, pid, end, count, PAGE_READWRITE, post_view, owner, nframes):
        return False
    return _same(pre, pid, pages, owner, post_view, new_end)


def brk_shrink_accepts(pid: int, new_end: int, pre_view: View, post_view: View, code: int,
                       nframes: int) -> bool:
    """A brk moving the break down to new_end passes BrkShrink."""
    pre = pages_of(pre_view, nframes)
    if code != 0 or pid not in pre.live:
        return False
    layout = pre.layout(pid)
    count = layout.heap_end - new_end
    own = pre.spaces.get(pid, {})
    if not (layout.heap_start <= new_end < layout.heap_end) or all_free(own, new_end, count) \
            or not unmappable(own, new_end, count):
        return False  # ENOMEM, ENOMEM, EINVAL
    pages, owner = dict(own), owners(pre)
    unmap_range(pages, owner, pre, pid, new_end, count)
    return _same(pre, pid, pages, owner, post_view, new_end)


# -- munmap, mmap(MAP_FIXED), mprotect ------------------------------------------------------

def munmap_accepts(pid: int, first: int, count: int, pre_view: View, post_view: View,
                   code: int, nframes: int) -> bool:
    """A successful munmap of count pages at first passes Munmap."""
    pre = pages_of(pre_view, nframes)
    own = pre.spaces.get(pid, {})
    if code != 0 or pid not in pre.live or not user_range(first, count) \
            or not unmappable(own, first, count):
        return False  # EINVAL
    pages, owner = dict(own), owners(pre)
    unmap_range(pages, owner, pre, pid, first, count)
    return _same(pre, pid, pages, owner, post_view)


def mmap_fixed_accepts(pid: int, first: int, count: int, protect: int, pre_view: View,
                       post_view: View, code: int, nframes: int) -> bool:
    """A successful mmap(MAP_FIXED) passes MmapFixed: the range unmapped, then
    reserved as one mmap allocation and committed anew."""
    pre = pages_of(pre_view, nframes)
    own = pre.spaces.get(pid, {})
    if code != 0 or pid not in pre.live or protect not in VALID_PROTECTIONS \
            or not user_range(first, count) or count > MAX_PAGES \
            or not unmappable(own, first, count):
        return False  # EINVAL
    pages, owner = dict(own), owners(pre)
    unmap_range(pages, owner, pre, pid, first, count)
    reserve(pages, first, count, first, ORIGIN_MMAP)
    if not commit_range(pages, pid, first, count, protect, post_view, owner, nframes):
        return False
    return _same(pre, pid, pages, owner, post_view)


def mprotect_accepts(pid: int, first: int, count: int, protect: int, stop: int,
                     pre_view: View, post_view: View, code: int, nframes: int) -> bool:
    """mprotect with the judge's stop passes Mprotect: the assumption on stop,
    the status (0, EACCES or ENOMEM) and, since the pages before stop change
    in all three, the post-state."""
    if code not in (0, ENOMEM, EACCES):
        return False  # an argument check's failure: z3 judges
    pre = pages_of(pre_view, nframes)
    if pid not in pre.live or count < 0 or protect not in VALID_PROTECTIONS:
        return False  # EINVAL
    own = pre.spaces.get(pid, {})
    end = first + count

    def changes(vpn: int) -> bool:
        page = own.get(vpn, FREE)
        return page.state == MEM_COMMIT and page.origin != ORIGIN_PROCESS_HEAP

    if not (first <= stop <= end and stop - first <= min(len(own), MAX_PAGES)
            and all(changes(vpn) for vpn in range(first, stop))
            and (stop == end or not changes(stop))):
        return False  # the assumption on stop
    hole = 0 if stop >= end else EACCES if own.get(stop, FREE).state == MEM_COMMIT else ENOMEM
    if hole != code:
        return False
    pages = dict(own)
    for vpn in range(first, stop):
        pages[vpn] = protected(pages[vpn], protect)
    return _same(pre, pid, pages, owners(pre), post_view)


# -- the process heap ---------------------------------------------------------------------

def heap_accepts(pid: int, pre_view: View, post_view: View, code: int, nframes: int) -> bool:
    """A heap call that committed pages passes ProcessHeapGrow over them, one
    that decommitted pages ProcessHeapShrink (the judge's choice); False when
    neither (no step) or the pages are not in the views."""
    try:
        grown, shrunk = heap_changes(pid, pre_view, post_view)
    except KeyError:
        return False
    if grown:
        return heap_grow_accepts(pid, min(grown), len(grown), pre_view, post_view, code,
                                 nframes)
    if shrunk:
        return heap_shrink_accepts(pid, min(shrunk), len(shrunk), pre_view, post_view, code,
                                   nframes)
    return False


def _heap_checks(pre: Pages, pid: int, first: int, count: int, code: int) -> bool:
    """The status of ProcessHeapGrow / ProcessHeapShrink is 0 and the code is."""
    own = pre.spaces.get(pid, {})
    return (code == 0 and pid in pre.live and count > 0 and one_allocation(own, first, count)
            and own[first].origin == ORIGIN_PROCESS_HEAP)


def heap_grow_accepts(pid: int, first: int, count: int, pre_view: View, post_view: View,
                      code: int, nframes: int) -> bool:
    pre = pages_of(pre_view, nframes)
    if not _heap_checks(pre, pid, first, count, code):
        return False
    pages, owner = dict(pre.spaces[pid]), owners(pre)
    if not commit_range(pages, pid, first, count, PAGE_READWRITE, post_view, owner, nframes):
        return False
    return _same(pre, pid, pages, owner, post_view)


def heap_shrink_accepts(pid: int, first: int, count: int, pre_view: View, post_view: View,
                        code: int, nframes: int) -> bool:
    pre = pages_of(pre_view, nframes)
    if not _heap_checks(pre, pid, first, count, code):
        return False
    pages, owner = dict(pre.spaces[pid]), owners(pre)
    for vpn in range(first, first + count):  # one_allocation: every one in pages
        if pages[vpn].state == MEM_COMMIT:
            pages[vpn] = pages[vpn]._replace(state=MEM_RESERVE, protect=0, pte_present=False,
                                             pte_writable=False, pte_user=False)
    release_frames(owner, pre, pid, first, count)
    return _same(pre, pid, pages, owner, post_view)


def heap_size_accepts(pid: int, pre_view: View, post_view: View, nframes: int) -> bool:
    """A successful HeapSize passes ProcessHeapSize: pid live, nothing changed."""
    pre = pages_of(pre_view, nframes)
    return pid in pre.live and of_view(pre_view, nframes) == of_view(post_view, nframes)


# -- accesses ------------------------------------------------------------------------------

def access_accepts(pid: int, vpn: int, kind: int, allowed: bool, pre_view: View) -> bool:
    """The Access step's claims on an access of page vpn by pid: its ok is
    ``allowed`` and PROT-1 (ok implies the conditions ok is made of)."""
    spaces, layouts = pre_view
    page = spaces.get(pid, {}).get(vpn, FREE)
    ok = ((pid in spaces or pid in layouts) and kind in ALLOWS and in_user(vpn)
          and page.state == MEM_COMMIT and page.protect in ALLOWS[kind]
          and page.pte_present and page.pte_user and (kind != WRITE or page.pte_writable))
    return ok == allowed
