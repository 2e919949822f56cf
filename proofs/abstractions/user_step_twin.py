"""Python twins of the user-space spec's process steps, judged on concrete views.

spec/user_space.py stays the source of truth. The user judge checks a call by
the spec's step (``UserChecks.expected`` and ``transition`` in
proofs/machines/user_space.py): the step's assumption on the frames the
implementation picked, its status against the reported code and, on
success, every observable field of its successor against the reported
post-state (``observable``: liveness, every page's state and PTE bits, the
base, origin and protection of non-free pages, the frame of committed ones,
the layout of live processes, every frame's owner). The functions below
decide the same claims for the two process steps on plain data, read the
way ``to_user_state`` abstracts a view (proofs/abstractions/user_twin.py):

- ``DestroyProcess`` (status 6 unless the pid is live; every page of the pid
  freed with its PTE bits cleared, the frames it owned given back, the pid
  no longer live);
- ``CreateProcess`` then ``ProcessHeapCreate``, the step the judge chains
  for SystemCalls.CreateProcess: the image committed EXECUTE_READ, the stack
  reserved with its top pages committed READWRITE, the brk heap empty, then
  the process heap's 64 KB-aligned reservation with its first pages
  committed READWRITE; every newly committed page takes the frame the
  implementation reports for it, which must have been free (owner 0, not
  taken by the step's own earlier commits), below the frame count and held
  by no other page of the process (the steps' assumption on ``pick``);
- ``VirtualAllocReserveCommit`` and ``Mmap`` (without MAP_FIXED), which
  reserve a free range as one allocation and commit every page of it.

A twin only ever accepts: ``accepts`` is True when every claim holds, and
False when one does not or the case is one the twin does not evaluate (then
the z3 step judges the call as before and gives the verdict and its words),
so a twin can only make a passing call cheaper. tests/test_user_step_twin.py
checks, on model processes and on corrupted reports, that the twin accepts
exactly where the z3 step does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from proofs.abstractions.user_space import View
from proofs.abstractions.user_twin import NO_LAYOUT, ByIdentity, Pages, frame_of, pages_of
from spec.abi import (
    MEM_COMMIT,
    MEM_FREE,
    MEM_RESERVE,
    ORIGIN_IMAGE,
    ORIGIN_PROCESS_HEAP,
    ORIGIN_STACK,
    ORIGIN_VIRTUAL_ALLOC,
    PAGE_EXECUTE_READ,
    PAGE_EXECUTE_READWRITE,
    PAGE_NOACCESS,
    PAGE_READWRITE,
    USER_END_VPN,
    USER_FIRST_VPN,
    VALID_PROTECTIONS,
)
from spec.user_space import GRANULE_PAGES, STACK_RESERVE_PAGES, PageView, SpaceView

#: What a page shows to the comparison: state, PTE bits, then base, origin and
#: protection (0 on a free page) and frame (0 unless committed).
Observed = tuple[int, bool, bool, bool, int, int, int, int]
FREE_PAGE: Observed = (MEM_FREE, False, False, False, 0, 0, 0, 0)


#: id(a view's pages of one pid) -> (those pages, what they show): a reported
#: view is never changed, and most calls leave most processes' pages as they
#: were (the same objects: proofs/oracle/families/user.py's view_of), so what
#: they show is worked out once. Only :func:`of_view` adds to it.
_SHOWN: ByIdentity[Mapping[int, PageView], dict[int, Observed]] = ByIdentity(256)


def shown(pages: Mapping[int, PageView], remember: bool = False) -> dict[int, Observed]:
    """What each page that is not plain free shows; remembered for a view's pages."""
    known = _SHOWN.get(pages)
    if known is not None:
        return known
    out: dict[int, Observed] = {}
    for vpn, (state, protect, base, origin, frame, present, writable, user) in pages.items():
        if state == MEM_FREE:  # observed(page), unrolled: this walks every page of a view
            if present or writable or user:
                out[vpn] = (state, present, writable, user, 0, 0, 0, 0)
        else:
            out[vpn] = (state, present, writable, user, base, origin, protect,
                        (frame or 0) if state == MEM_COMMIT else 0)
    return _SHOWN.put(pages, out) if remember else out


class Observation:
    """The observable part of a state: spaces (pages by pid), the live pids'
    layouts, the owner of every owned frame."""

    def __init__(self, spaces: Mapping[int, Mapping[int, PageView]], live: set[int],
                 layouts: Mapping[int, SpaceView], owner: Mapping[int, int],
                 remember: bool = False) -> None:
        #: pid -> what its pages show (a pid with none shown: left out)
        self.pages = {pid: seen for pid, pages in spaces.items()
                      if (seen := shown(pages, remember))}
        self.live = frozenset(live)
        self.layouts = {pid: layouts.get(pid, NO_LAYOUT) for pid in live}
        self.owner = {frame: pid for frame, pid in owner.items() if pid != 0}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Observation) and (
            self.live, self.pages, self.layouts, self.owner) == (
            other.live, other.pages, other.layouts, other.owner)

    __hash__ = None  # type: ignore[assignment]


def observed(page: PageView) -> Observed:
    free = page.state == MEM_FREE
    return (page.state, page.pte_present, page.pte_writable, page.pte_user,
            0 if free else page.base_vpn, 0 if free else page.origin,
            0 if free else page.protect, frame_of(page) if page.state == MEM_COMMIT else 0)


def owners(s: Pages) -> dict[int, int]:
    return {frame: pid for frame, (pid, _) in s.owners.items()}


def of_view(view: View, nframes: int) -> Observation:
    s = pages_of(view, nframes)
    return Observation(s.spaces, s.live, s.layouts, owners(s), remember=True)


def destroy_accepts(pid: int, pre_view: View, post_view: View, code: int, nframes: int) -> bool:
    """DestroyProcess(pid) with the reported code and post-state passes the spec's step."""
    pre = pages_of(pre_view, nframes)
    status = 0 if pid in pre.live else 6  # ERROR_INVALID_HANDLE
    if status != code:
        return False
    if code != 0:
        return True  # a failure: only the status is compared
    spaces = {q: pages for q, pages in pre.spaces.items() if q != pid}
    owner = {f: q for f, q in owners(pre).items() if q != pid}
    expected = Observation(spaces, pre.live - {pid}, pre.layouts, owner)
    return expected == of_view(post_view, nframes)


def _pick(pid: int, post_view: View) -> tuple[dict[int, int], dict[int, int]]:
    """UserChecks.picked as dicts: pick[vpn] (the frame of every committed page
    of pid after the call) and pinv[frame] (the last vpn holding it)."""
    pick: dict[int, int] = {}
    pinv: dict[int, int] = {}
    for vpn, page in sorted(post_view[0].get(pid, {}).items()):
        if page.state == MEM_COMMIT and page.frame is not None:
            pick[vpn] = page.frame
            pinv[page.frame] = vpn
    return pick, pinv


def create_accepts(pid: int, image: int, image_pages: int, heap_base: int, heap_pages: int,
                   heap_count: int, pre_view: View, post_view: View, code: int,
                   nframes: int) -> bool:
    """SystemCalls.CreateProcess returning pid (the judge's chain of CreateProcess
    and ProcessHeapCreate, the layout read from the report) passes the spec's step."""
    pre = pages_of(pre_view, nframes)
    layout = post_view[1].get(pid)
    if code != 0 or layout is None or pid <= 0 or pid in pre.live:
        return False
    heap_start, heap_max, top, size = (layout.heap_start, layout.heap_max, layout.stack_top,
                                       layout.stack_size)
    reserve = STACK_RESERVE_PAGES
    stack_base = top - reserve
    if not (USER_FIRST_VPN <= image and image % GRANULE_PAGES == 0 and 0 < image_pages
            and image + image_pages <= heap_start <= heap_max <= stack_base
            and 0 < size <= reserve and USER_FIRST_VPN <= top - STACK_RESERVE_PAGES
            and top <= USER_END_VPN):
        return False  # CreateProcess' status is not 0
    pages: dict[int, PageView] = {}
    for vpn in range(image, image + image_pages):
        pages[vpn] = PageView(MEM_RESERVE, 0, image, ORIGIN_IMAGE, None, False, False, False)
    for vpn in range(stack_base, top):
        pages[vpn] = PageView(MEM_RESERVE, 0, stack_base, ORIGIN_STACK, None, False, False,
                              False)
    if not (heap_base % GRANULE_PAGES == 0 and 0 < heap_count and USER_FIRST_VPN <= heap_base
            and heap_base + heap_count <= USER_END_VPN and 0 < heap_pages <= heap_count
            and all(vpn not in pages for vpn in range(heap_base, heap_base + heap_count))):
        return False  # ProcessHeapCreate's status is not 0
    pick, pinv = _pick(pid, post_view)
    owner = owners(pre)
    first_commit = [*range(image, image + image_pages), *range(top - size, top)]
    if not _commit(pages, pid, first_commit, pick, pinv, owner, nframes,
                   lambda vpn: PAGE_EXECUTE_READ if vpn < image + image_pages
                   else PAGE_READWRITE):
        return False
    for vpn in range(heap_base, heap_base + heap_count):
        pages[vpn] = PageView(MEM_RESERVE, 0, heap_base, ORIGIN_PROCESS_HEAP, None, False,
                              False, False)
    if not _commit(pages, pid, list(range(heap_base, heap_base + heap_pages)), pick, pinv,
                   owner, nframes, lambda vpn: PAGE_READWRITE):
        return False
    spaces = {**pre.spaces, pid: pages}
    layouts = {**pre.layouts, pid: SpaceView(heap_start, heap_start, heap_max, top, size)}
    expected = Observation(spaces, pre.live | {pid}, layouts, owner)
    return expected == of_view(post_view, nframes)


def _commit(pages: dict[int, PageView], pid: int, vpns: list[int], pick: Mapping[int, int],
            pinv: Mapping[int, int], owner: dict[int, int], nframes: int,
            protect_of: Callable[[int], int]) -> bool:
    """spec.user_space.commit_pages over reserved pages (every one new): the
    assumption on pick (in memory, owner 0, pinv its inverse), then each page
    committed in its frame, with its PTE bits, and the frames owned by pid."""
    fresh: dict[int, int] = {}
    for vpn in vpns:
        frame = pick.get(vpn, -1)
        if not (0 <= frame < nframes and owner.get(frame, 0) == 0 and pinv.get(frame) == vpn):
            return False
        protect = protect_of(vpn)
        present = protect != PAGE_NOACCESS  # spec.user_space.pte_bits
        writable = present and protect in (PAGE_READWRITE, PAGE_EXECUTE_READWRITE)
        page = pages[vpn]
        pages[vpn] = page._replace(state=MEM_COMMIT, protect=protect, frame=frame,
                                   pte_present=present, pte_writable=writable,
                                   pte_user=present)
        fresh[frame] = pid
    owner.update(fresh)
    return True


#: The most pages a twin commits (past it z3 judges): the search's calls ask
#: for a few pages.
MAX_PAGES = 4096


def reserve_commit_accepts(pid: int, first: int, count: int, protect: int, origin: int,
                           pre_view: View, post_view: View, code: int, nframes: int) -> bool:
    """A successful VirtualAlloc(MEM_RESERVE | MEM_COMMIT) (origin VirtualAlloc:
    VirtualAllocReserveCommit) or mmap without MAP_FIXED (origin mmap: Mmap)
    at first, count pages, passes the spec's step: the process live, the
    protection valid, the range in user space (a VirtualAlloc one on the 64 KB
    granule) and free, then reserved as one allocation based at first and
    every page committed with protect in the frame reported for it."""
    pre = pages_of(pre_view, nframes)
    if code != 0 or pid not in pre.live or protect not in VALID_PROTECTIONS:
        return False
    if not (0 < count <= MAX_PAGES and USER_FIRST_VPN <= first
            and first + count <= USER_END_VPN):
        return False  # user_range (and the twin's own bound)
    if origin == ORIGIN_VIRTUAL_ALLOC and first % GRANULE_PAGES:
        return False  # reservation_ok
    own = pre.spaces.get(pid, {})
    vpns = range(first, first + count)
    if any(vpn in own and own[vpn].state != MEM_FREE for vpn in vpns):
        return False  # all_free
    pages = dict(own)
    for vpn in vpns:
        pages[vpn] = PageView(MEM_RESERVE, 0, first, origin, None, False, False, False)
    pick, pinv = _pick(pid, post_view)
    owner = owners(pre)
    if not _commit(pages, pid, list(vpns), pick, pinv, owner, nframes, lambda vpn: protect):
        return False
    expected = Observation({**pre.spaces, pid: pages}, pre.live, pre.layouts, owner)
    return expected == of_view(post_view, nframes)
