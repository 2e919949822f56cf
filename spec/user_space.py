"""User address spaces (seed sections 4, 7, 8): USR-1..4, PROT-1..3 and every call.

The state is every process's pages, per (pid, vpn), as 2-argument integer
arrays (one process dimension; integers, as the heap's state: bit-vector
orderings time out), the frames those pages hold (``owner[frame]`` = pid, 0 =
not a user frame, and the ghost reverse map ``rmap[frame]`` = vpn:
Hyperkernel's trick, so "a private frame is mapped once" and isolation
follow from owner/rmap agreeing with ``frame[pid, vpn]``, never from
counting), and per pid the brk heap and the stack, in pages.

Spec-level decisions (the model follows them or the lead reconciles):

- Pages, not bytes: a range is (first vpn, page count); the byte-level
  rounding (64 KB down for a reservation's base, pages up for its size) is
  the caller's, and the spec checks its outcome (USR-3).
- Frames: a commit takes, for each page it newly commits, the frame
  ``pick[vpn]``; ``pinv`` (a ghost inverse) makes ``pick`` injective, and
  each picked frame is in memory with owner 0. Sound because the
  PageManager layer proves its own bookkeeping (AllocFrame returns a free
  frame, FRM-3/SYS-1: a free frame has no owner), and a user frame's owner
  here is its pid, so a frame the allocator hands out has owner 0.
- Out of memory is a free choice (``oom``): this layer does not count free
  frames; a call that fails for it changes nothing (all or nothing).
- Errors: Windows calls report ErrorCode values (last_error), Linux calls the
  errno (the call returns -errno), as ``status``; 0 is success.
- Committed pages hold a frame eagerly (Windows commit charge); a committed
  PAGE_NOACCESS page holds its frame with no present PTE.
- MEM_RESET and MEM_RESET_UNDO change no page's state, protection or frame
  (model.virtual_alloc); whether reset data survives is not part of this
  state (the user machine stops expecting bytes written before a reset).
- Heap and stack stay within their bounds (USR-4): brk pages inside
  [heap_start, heap_end), stack pages inside the 1 MB reservation below
  stack_top (model.process_memory.STACK_RESERVE). Their pages may change
  protection (VirtualProtect, mprotect) and brk pages may be unmapped, as
  Linux allows; VirtualFree refuses image, stack and brk allocations
  (ERROR_INVALID_PARAMETER, model.virtual_alloc).
- The process heap (ORIGIN_PROCESS_HEAP, made by the model's CreateProcess,
  not by this spec's) belongs to the heap manager: VirtualAlloc(commit) and
  VirtualProtect -> ERROR_ACCESS_DENIED, VirtualFree -> ERROR_INVALID_PARAMETER,
  mprotect -> EACCES, munmap/MAP_FIXED -> EINVAL.
- munmap, MAP_FIXED and a shrinking brk remove mmap and brk pages anywhere and
  a VirtualAlloc reservation only whole; part of one, or image, stack or
  process-heap pages -> EINVAL (model.linux_mm). An allocation is split: the
  piece above the hole becomes an allocation based at the hole's end.
- mprotect applies allocation by allocation up to the first page not
  committed (ENOMEM) or of the process heap (EACCES), leaving the part before
  it changed (Linux's do_mprotect_pkey): the step's ``stop`` is that page.
- brk grows the brk allocation ending at the old break, else makes a new one
  based there; it needs a free guard page above the new end (Linux's
  vm_start_gap check). Shrinking needs a non-free page in the range.
- Out of scope: the frames page tables take (mprotect / VirtualProtect making
  a page present may need one; the model can fail with ENOMEM there).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

import z3

from spec.abi import (
    ALLOCATION_GRANULARITY,
    EACCES,
    EINVAL,
    ENOMEM,
    MEM_COMMIT,
    MEM_FREE,
    MEM_RESERVE,
    ORIGIN_BRK,
    ORIGIN_IMAGE,
    ORIGIN_MMAP,
    ORIGIN_PROCESS_HEAP,
    ORIGIN_STACK,
    ORIGIN_VIRTUAL_ALLOC,
    PAGE_EXECUTE,
    PAGE_EXECUTE_READ,
    PAGE_EXECUTE_READWRITE,
    PAGE_NOACCESS,
    PAGE_READONLY,
    PAGE_READWRITE,
    PAGE_SIZE,
    STACK_RESERVE,
    USER_END_VPN,
    USER_FIRST_VPN,
    VALID_PROTECTIONS,
    ErrorCode,
)
from spec.state import Ref, fresh_fields, ite_fields, refuted
from spec.step import Transition, guarded

E = ErrorCode
INT, BOOL = z3.IntSort(), z3.BoolSort()
#: Pages of the 64 KB allocation granularity.
GRANULE_PAGES = ALLOCATION_GRANULARITY // PAGE_SIZE
#: Pages of the stack's reservation below stack_top.
STACK_RESERVE_PAGES = STACK_RESERVE // PAGE_SIZE
#: Access kinds of the Access step.
READ, WRITE, EXECUTE = 0, 1, 2


@dataclass(frozen=True)
class UserState:
    """Every process's user pages, the frames they hold, heaps and stacks."""

    live: Ref  # pid -> Bool: the process exists
    state: Ref  # (pid, vpn) -> MEM_FREE | MEM_RESERVE | MEM_COMMIT
    protect: Ref  # (pid, vpn) -> PAGE_* of a committed page
    base: Ref  # (pid, vpn) -> vpn: the allocation base of a non-free page
    origin: Ref  # (pid, vpn) -> ORIGIN_*
    frame: Ref  # (pid, vpn) -> frame of a committed page
    pte_present: Ref  # (pid, vpn) -> Bool
    pte_writable: Ref  # (pid, vpn) -> Bool
    pte_user: Ref  # (pid, vpn) -> Bool
    heap_start: Ref  # pid -> vpn
    heap_end: Ref  # pid -> vpn: the break, rounded up to a page
    heap_max: Ref  # pid -> vpn
    stack_top: Ref  # pid -> vpn: the first page above the stack
    stack_size: Ref  # pid -> pages committed below stack_top
    owner: Ref  # frame -> pid (0 = not a user frame)
    nframes: Ref  # Int
    # ghost witness
    rmap: Ref  # frame -> vpn: the page holding an owned frame

    def but(self, **changes: Ref) -> UserState:
        return dataclasses.replace(self, **changes)


USER_GHOST_FIELDS = ("rmap",)
PAGE_INT = z3.ArraySort(INT, INT, INT)
PAGE_BOOL = z3.ArraySort(INT, INT, BOOL)
_USER_SORTS: dict[str, Ref] = {
    "live": z3.ArraySort(INT, BOOL),
    **{name: PAGE_INT for name in ("state", "protect", "base", "origin", "frame")},
    **{name: PAGE_BOOL for name in ("pte_present", "pte_writable", "pte_user")},
    **{name: z3.ArraySort(INT, INT) for name in (
        "heap_start", "heap_end", "heap_max", "stack_top", "stack_size", "owner", "rmap")},
    "nframes": INT,
}
def symbolic_user(prefix: str = "u") -> UserState:
    """A user state whose every field is a fresh z3 constant."""
    return fresh_fields(UserState, _USER_SORTS, prefix)


def ite_user(cond: Ref, then: UserState, other: UserState) -> UserState:
    return ite_fields(UserState, cond, then, other)


def empty_user(nframes: int, prefix: str = "empty") -> UserState:
    """No process, every page free, no user frame."""
    s = symbolic_user(prefix)
    k = z3.K
    return s.but(live=k(INT, z3.BoolVal(False)), state=_const_pages(MEM_FREE),
                 protect=_const_pages(0), base=_const_pages(0),
                 origin=_const_pages(0), frame=_const_pages(0),
                 pte_present=_const_flags(), pte_writable=_const_flags(), pte_user=_const_flags(),
                 heap_start=k(INT, z3.IntVal(0)), heap_end=k(INT, z3.IntVal(0)),
                 heap_max=k(INT, z3.IntVal(0)), stack_top=k(INT, z3.IntVal(0)),
                 stack_size=k(INT, z3.IntVal(0)), owner=k(INT, z3.IntVal(0)),
                 rmap=k(INT, z3.IntVal(0)), nframes=z3.IntVal(nframes))


def _const_pages(value: int) -> Ref:
    q, w = z3.Ints("_q _w")
    return z3.Lambda([q, w], z3.IntVal(value))


def _const_flags() -> Ref:
    q, w = z3.Ints("_q _w")
    return z3.Lambda([q, w], z3.BoolVal(False))


# -- predicates ------------------------------------------------------------------

def user_vpn(v: Ref) -> Ref:
    return z3.And(USER_FIRST_VPN <= v, v < USER_END_VPN)


def within(v: Ref, first: Ref, count: Ref) -> Ref:
    return z3.And(first <= v, v < first + count)


def user_range(first: Ref, count: Ref) -> Ref:
    return z3.And(0 < count, USER_FIRST_VPN <= first, first + count <= USER_END_VPN)


def nonfree(s: UserState, p: Ref, v: Ref) -> Ref:
    return s.state[p, v] != MEM_FREE


def committed(s: UserState, p: Ref, v: Ref) -> Ref:
    return s.state[p, v] == MEM_COMMIT


def valid_protect(protect: Ref) -> Ref:
    return z3.Or([protect == value for value in sorted(VALID_PROTECTIONS)])


def allows(protect: Ref, kind: Ref) -> Ref:
    """Microsoft's table: which access kinds each PAGE_* value allows."""
    return z3.Or(
        z3.And(kind == READ, z3.Or([protect == x for x in (
            PAGE_READONLY, PAGE_READWRITE, PAGE_EXECUTE_READ, PAGE_EXECUTE_READWRITE)])),
        z3.And(kind == WRITE, z3.Or(protect == PAGE_READWRITE,
                                    protect == PAGE_EXECUTE_READWRITE)),
        z3.And(kind == EXECUTE, z3.Or([protect == x for x in (
            PAGE_EXECUTE, PAGE_EXECUTE_READ, PAGE_EXECUTE_READWRITE)])))


def pte_bits(protect: Ref) -> tuple[Ref, Ref]:
    """(present, writable) of a committed page's PTE, as model.user_layout.pte_bits:
    present iff not PAGE_NOACCESS, writable iff READWRITE or EXECUTE_READWRITE."""
    return (protect != PAGE_NOACCESS,
            z3.Or(protect == PAGE_READWRITE, protect == PAGE_EXECUTE_READWRITE))


def _pv() -> tuple[Ref, Ref]:
    p, v = z3.Ints("p v")
    return p, v


# -- invariants ------------------------------------------------------------------

def forall(bound: list[Ref], body: Ref, *trigger: Ref) -> Ref:
    """ForAll with the multi-pattern ``trigger`` when its arrays are plain
    constants (a symbolic pre-state): e-matching then instantiates only at
    those terms, where z3's own choice for three variables loops."""
    if all(z3.is_const(term.arg(0)) for term in trigger):
        return z3.ForAll(bound, body, patterns=[z3.MultiPattern(*trigger)])
    return z3.ForAll(bound, body)


def usr_1(s: UserState) -> Ref:
    """USR-1: pids are positive; non-free pages belong to live processes and lie
    in user space; allocations are contiguous and disjoint: every page from a
    page's base up to it is non-free with the same base and origin."""
    p, v = _pv()
    w = z3.Int("w")
    inside = z3.And(nonfree(s, p, v), s.base[p, v] <= w, w <= v)
    return z3.And(
        z3.ForAll([p], z3.Implies(s.live[p], p > 0)),
        z3.ForAll([p, v], z3.Or(s.state[p, v] == MEM_FREE, s.state[p, v] == MEM_RESERVE,
                                s.state[p, v] == MEM_COMMIT)),
        z3.ForAll([p, v], z3.Implies(nonfree(s, p, v), s.live[p])),
        z3.ForAll([p, v], z3.Implies(nonfree(s, p, v), user_vpn(v))),
        z3.ForAll([p, v], z3.Implies(nonfree(s, p, v), s.base[p, v] <= v)),
        forall([p, v, w], z3.Implies(inside, nonfree(s, p, w)), s.state[p, v],
               s.state[p, w]),
        forall([p, v, w], z3.Implies(inside, s.base[p, w] == s.base[p, v]), s.state[p, v],
               s.base[p, w]),
        forall([p, v, w], z3.Implies(inside, s.origin[p, w] == s.origin[p, v]),
               s.state[p, v], s.origin[p, w]))


def usr_2(s: UserState) -> Ref:
    """USR-2: a committed page (inside an allocation by USR-1) has a valid
    protection and owns its frame: in memory, owner = pid, rmap = vpn; every
    owned frame is held by the committed page rmap names (no leak); pages
    that are not committed have no present PTE."""
    p, v = _pv()
    f = z3.Int("f")
    held = committed(s, p, v)
    frame = s.frame[p, v]
    return z3.And(
        s.nframes >= 0,
        z3.ForAll([p, v], z3.Implies(held, z3.And(0 <= frame, frame < s.nframes))),
        z3.ForAll([p, v], z3.Implies(held, s.owner[frame] == p)),
        z3.ForAll([p, v], z3.Implies(held, s.rmap[frame] == v)),
        z3.ForAll([p, v], z3.Implies(held, valid_protect(s.protect[p, v]))),
        z3.ForAll([p, v], z3.Implies(z3.Not(held), z3.Not(s.pte_present[p, v]))),
        z3.ForAll([f], z3.Implies(s.owner[f] != 0, committed(s, s.owner[f], s.rmap[f]))),
        z3.ForAll([f], z3.Implies(s.owner[f] != 0, s.frame[s.owner[f], s.rmap[f]] == f)))


def usr_3(s: UserState) -> Ref:
    """USR-3: VirtualAlloc reservations start on the 64 KB granularity."""
    p, v = _pv()
    return z3.ForAll([p, v], z3.Implies(
        z3.And(nonfree(s, p, v), s.origin[p, v] == ORIGIN_VIRTUAL_ALLOC),
        s.base[p, v] % GRANULE_PAGES == 0))


def usr_4(s: UserState) -> Ref:
    """USR-4: heap and stack within their bounds: USER_FIRST_VPN <= heap_start
    <= heap_end <= heap_max <= USER_END_VPN; every brk page lies in
    [heap_start, heap_end); the stack's reservation of STACK_RESERVE_PAGES
    below stack_top lies in user space and every stack page inside it."""
    p, v = _pv()
    live = s.live[p]
    low = s.stack_top[p] - STACK_RESERVE_PAGES
    return z3.And(
        z3.ForAll([p], z3.Implies(live, z3.And(
            USER_FIRST_VPN <= s.heap_start[p], s.heap_start[p] <= s.heap_end[p],
            s.heap_end[p] <= s.heap_max[p], s.heap_max[p] <= USER_END_VPN))),
        z3.ForAll([p], z3.Implies(live, z3.And(
            0 <= s.stack_size[p], s.stack_size[p] <= STACK_RESERVE_PAGES,
            USER_FIRST_VPN <= low, s.stack_top[p] <= USER_END_VPN))),
        z3.ForAll([p, v], z3.Implies(
            z3.And(live, nonfree(s, p, v), s.origin[p, v] == ORIGIN_BRK),
            z3.And(s.heap_start[p] <= v, v < s.heap_end[p]))),
        z3.ForAll([p, v], z3.Implies(
            z3.And(live, nonfree(s, p, v), s.origin[p, v] == ORIGIN_STACK),
            z3.And(low <= v, v < s.stack_top[p]))))


def prot_2(s: UserState) -> Ref:
    """PROT-2: PTE bits never more permissive than the page's protection: a
    present PTE only on a committed page whose protection allows some access
    (not NOACCESS), writable only where the protection allows writes."""
    p, v = _pv()
    return z3.And(
        z3.ForAll([p, v], z3.Implies(s.pte_present[p, v], committed(s, p, v))),
        z3.ForAll([p, v], z3.Implies(s.pte_present[p, v], z3.Or(
            [allows(s.protect[p, v], kind) for kind in (READ, WRITE, EXECUTE)]))),
        z3.ForAll([p, v], z3.Implies(s.pte_writable[p, v], s.pte_present[p, v])),
        z3.ForAll([p, v], z3.Implies(s.pte_writable[p, v], allows(s.protect[p, v], WRITE))))


def prot_3(s: UserState) -> Ref:
    """PROT-3: the U/S bit is set only on pages of live processes in user
    space: user mode never reaches a supervisor page through these PTEs."""
    p, v = _pv()
    return z3.And(
        z3.ForAll([p, v], z3.Implies(s.pte_user[p, v], user_vpn(v))),
        z3.ForAll([p, v], z3.Implies(s.pte_user[p, v], s.live[p])))


INVARIANTS: dict[str, Callable[[UserState], Ref]] = {
    "USR-1": usr_1, "USR-2": usr_2, "USR-3": usr_3, "USR-4": usr_4,
    "PROT-2": prot_2, "PROT-3": prot_3}

UserStep = Transition[UserState]


def prot_1(pre: UserState, result: UserStep, args: Mapping[str, Ref]) -> Ref:
    """PROT-1 (a claim on Access): an access the step allows is allowed by the
    page's protection and by its PTE (present, U/S, R/W for a write), on a
    committed user page."""
    p, v, kind = args["pid"], args["vpn"], args["kind"]
    return z3.Implies(result.ok, z3.And(
        user_vpn(v), committed(pre, p, v), allows(pre.protect[p, v], kind),
        pre.pte_present[p, v], pre.pte_user[p, v],
        z3.Implies(kind == WRITE, pre.pte_writable[p, v])))


STEP_CLAIMS = {"PROT-1": ("Access", prot_1)}


# -- state changes ----------------------------------------------------------------

Selector = Callable[[Ref], Ref]


def status(*checks: tuple[Ref, int]) -> Ref:
    """The code of the first failing check (condition true = failure), else 0."""
    code: Ref = z3.IntVal(0)
    for failed, error in reversed(checks):
        code = z3.If(failed, z3.IntVal(int(error)), code)
    return code


def user_step(pre: UserState, code: Ref, post: UserState, result: Ref | None = None,
              failure: Ref | None = None, assume: Ref | None = None) -> UserStep:
    return guarded(pre, code, post, ite_user, result, failure, assume)


def set_pages(s: UserState, p: Ref, sel: Selector, **fields: Callable[[Ref], Ref]) -> UserState:
    """Set fields of the pages w of p where sel(w), each to its function of w."""
    q, w = z3.Ints("_q _w")
    return s.but(**{name: z3.Lambda([q, w], z3.If(z3.And(q == p, sel(w)), value(w),
                                                    getattr(s, name)[q, w]))
                    for name, value in fields.items()})


def _const(value: Ref | int | bool) -> Callable[[Ref], Ref]:
    return lambda w: value


def release_frames(s: UserState, p: Ref, sel: Selector) -> UserState:
    """Give back the frames of p's pages where sel holds (owner 0)."""
    f = z3.Int("_f")
    return s.but(owner=z3.Lambda([f], z3.If(z3.And(s.owner[f] == p, sel(s.rmap[f])),
                                            0, s.owner[f])))


def release_pages(s: UserState, p: Ref, sel: Selector) -> UserState:
    """Free p's pages where sel holds (sel is read in s), frames given back."""
    return set_pages(release_frames(s, p, sel), p, sel, state=_const(MEM_FREE),
                     protect=_const(0), pte_present=_const(False),
                     pte_writable=_const(False), pte_user=_const(False))


def decommit_pages(s: UserState, p: Ref, sel: Selector) -> UserState:
    """Committed pages of p where sel holds become reserved, frames given back."""
    held: Selector = lambda w: z3.And(sel(w), committed(s, p, w))  # noqa: E731
    return set_pages(release_frames(s, p, sel), p, held, state=_const(MEM_RESERVE),
                     protect=_const(0), pte_present=_const(False),
                     pte_writable=_const(False), pte_user=_const(False))


def reserve_pages(s: UserState, p: Ref, first: Ref, count: Ref, origin: Ref | int,
                  base: Ref | None = None) -> UserState:
    """Reserve [first, first+count) of p as one allocation based at base (first)."""
    return set_pages(s, p, lambda w: within(w, first, count), state=_const(MEM_RESERVE),
                     base=_const(first if base is None else base), origin=_const(origin),
                     protect=_const(0), pte_present=_const(False),
                     pte_writable=_const(False), pte_user=_const(False))


def commit_pages(s: UserState, p: Ref, sel: Selector, protect_of: Callable[[Ref], Ref],
                 pick: Ref, pinv: Ref) -> tuple[UserState, Ref]:
    """Commit p's pages where sel holds with protection protect_of(w): a page
    not yet committed takes the frame pick[w]; committed ones keep theirs.
    Returns the successor and the assumption on pick (fresh, distinct,
    in memory, owner 0)."""
    new: Selector = lambda w: z3.And(sel(w), z3.Not(committed(s, p, w)))  # noqa: E731
    f, w = z3.Ints("_f _w")
    fresh = z3.And(new(pinv[f]), pick[pinv[f]] == f)
    changed = set_pages(
        s.but(owner=z3.Lambda([f], z3.If(fresh, p, s.owner[f])),
              rmap=z3.Lambda([f], z3.If(fresh, pinv[f], s.rmap[f]))),
        p, sel, state=_const(MEM_COMMIT), protect=protect_of,
        frame=lambda v: z3.If(new(v), pick[v], s.frame[p, v]),
        pte_present=lambda v: pte_bits(protect_of(v))[0],
        pte_writable=lambda v: z3.And(*pte_bits(protect_of(v))),
        pte_user=lambda v: pte_bits(protect_of(v))[0])
    assume = z3.ForAll([w], z3.Implies(new(w), z3.And(
        0 <= pick[w], pick[w] < s.nframes, s.owner[pick[w]] == 0, pinv[pick[w]] == w)))
    return changed, assume


def protect_pages(s: UserState, p: Ref, first: Ref, count: Ref, protect: Ref) -> UserState:
    """Change the protection (and PTE bits) of committed pages in the range."""
    present, writable = pte_bits(protect)
    return set_pages(s, p, lambda w: within(w, first, count), protect=_const(protect),
                     pte_present=_const(present), pte_writable=_const(z3.And(present, writable)),
                     pte_user=_const(present))


def unmap_range(s: UserState, p: Ref, first: Ref, count: Ref) -> UserState:
    """munmap: free the range; the piece of an allocation above it becomes an
    allocation based at the range's end."""
    end = first + count
    t = release_pages(s, p, lambda w: within(w, first, count))
    q, w = z3.Ints("_q _w")
    above = z3.And(q == p, w >= end, nonfree(s, p, w), s.base[p, w] < end)
    return t.but(base=z3.Lambda([q, w], z3.If(above, end, t.base[q, w])))


# -- guards ------------------------------------------------------------------------

def all_pages(first: Ref, count: Ref, holds: Selector) -> Ref:
    w = z3.Int("w")
    return z3.ForAll([w], z3.Implies(within(w, first, count), holds(w)))


def all_free(s: UserState, p: Ref, first: Ref, count: Ref) -> Ref:
    return all_pages(first, count, lambda w: z3.Not(nonfree(s, p, w)))


def heap_page(s: UserState, p: Ref, v: Ref) -> Ref:
    """A page of the process heap (the heap manager's)."""
    return s.origin[p, v] == ORIGIN_PROCESS_HEAP


def windows_owned(s: UserState, p: Ref, v: Ref) -> Ref:
    """VirtualFree takes VirtualAlloc and mmap allocations only."""
    return z3.Or(s.origin[p, v] == ORIGIN_VIRTUAL_ALLOC, s.origin[p, v] == ORIGIN_MMAP)


def one_allocation(s: UserState, p: Ref, first: Ref, count: Ref) -> Ref:
    """Every page of the range is non-free, in the allocation of its first page."""
    return z3.And(nonfree(s, p, first), all_pages(first, count, lambda w: z3.And(
        nonfree(s, p, w), s.base[p, w] == s.base[p, first])))


def unmappable(s: UserState, p: Ref, first: Ref, count: Ref) -> Ref:
    """munmap may remove the range: its non-free pages are mmap or brk pages,
    or pages of a VirtualAlloc reservation lying whole inside it (based at or
    above first, and page first+count not in it: allocations are contiguous)."""
    end = first + count
    return all_pages(first, count, lambda w: z3.Or(
        z3.Not(nonfree(s, p, w)), s.origin[p, w] == ORIGIN_MMAP, s.origin[p, w] == ORIGIN_BRK,
        z3.And(s.origin[p, w] == ORIGIN_VIRTUAL_ALLOC, first <= s.base[p, w],
               z3.Not(z3.And(nonfree(s, p, end), s.base[p, end] == s.base[p, w])))))


def as_address(vpn: Ref) -> Ref:
    return vpn * PAGE_SIZE


# -- processes ---------------------------------------------------------------------

def CreateProcess(s: UserState, pid: Ref, image_base: Ref, image_pages: Ref,
                  image_protect: Ref, heap_start: Ref, heap_max: Ref, stack_top: Ref,
                  stack_reserve: Ref, stack_size: Ref, pick: Ref, pinv: Ref,
                  oom: Ref) -> UserStep:
    """CreateProcess + InitializeUserSpace: a new live pid with the image
    committed at image_base, an empty brk heap at heap_start, and the stack
    reserved below stack_top with its top stack_size pages committed
    READWRITE. Layout: image < heap <= heap_max <= stack reservation."""
    stack_base = stack_top - stack_reserve
    layout = z3.And(USER_FIRST_VPN <= image_base, image_base % GRANULE_PAGES == 0,
                    0 < image_pages, image_base + image_pages <= heap_start,
                    heap_start <= heap_max, heap_max <= stack_base,
                    0 < stack_size, stack_size <= stack_reserve,
                    stack_reserve <= STACK_RESERVE_PAGES,
                    USER_FIRST_VPN <= stack_top - STACK_RESERVE_PAGES, stack_top <= USER_END_VPN)
    code = status((pid <= 0, E.ERROR_INVALID_PARAMETER),
                  (s.live[pid], E.ERROR_ALREADY_EXISTS),
                  (z3.Not(valid_protect(image_protect)), E.ERROR_INVALID_PARAMETER),
                  (z3.Not(layout), E.ERROR_INVALID_PARAMETER),
                  (oom, E.ERROR_NOT_ENOUGH_MEMORY))
    spaced = s.but(live=z3.Store(s.live, pid, True),
                   heap_start=z3.Store(s.heap_start, pid, heap_start),
                   heap_end=z3.Store(s.heap_end, pid, heap_start),
                   heap_max=z3.Store(s.heap_max, pid, heap_max),
                   stack_top=z3.Store(s.stack_top, pid, stack_top),
                   stack_size=z3.Store(s.stack_size, pid, stack_size))
    reserved = reserve_pages(reserve_pages(spaced, pid, image_base, image_pages, ORIGIN_IMAGE),
                             pid, stack_base, stack_reserve, ORIGIN_STACK)
    in_image: Selector = lambda w: within(w, image_base, image_pages)  # noqa: E731
    post, assume = commit_pages(
        reserved, pid, lambda w: z3.Or(in_image(w), within(w, stack_top - stack_size,
                                                            stack_size)),
        lambda w: z3.If(in_image(w), image_protect, z3.IntVal(PAGE_READWRITE)), pick, pinv)
    return user_step(s, code, post, pid, z3.IntVal(0), assume)


def DestroyProcess(s: UserState, pid: Ref) -> UserStep:
    """DestroyUserSpace / DestroyProcess: every page freed, every frame given back."""
    code = status((z3.Not(s.live[pid]), E.ERROR_INVALID_HANDLE))
    post = release_pages(s, pid, lambda w: z3.BoolVal(True))
    return user_step(s, code, post.but(live=z3.Store(s.live, pid, False)))


# -- Windows: VirtualAlloc, VirtualFree, VirtualProtect, VirtualQuery ----------------

def _windows_checks(s: UserState, pid: Ref, protect: Ref | None = None
                    ) -> list[tuple[Ref, int]]:
    checks: list[tuple[Ref, int]] = [(z3.Not(s.live[pid]), E.ERROR_INVALID_HANDLE)]
    if protect is not None:
        checks.append((z3.Not(valid_protect(protect)), E.ERROR_INVALID_PARAMETER))
    return checks


def reservation_ok(first: Ref, count: Ref) -> Ref:
    """A reservation's base is on the 64 KB granularity, its pages in user space."""
    return z3.And(first % GRANULE_PAGES == 0, user_range(first, count))


def VirtualAllocReserve(s: UserState, pid: Ref, first: Ref, count: Ref,
                        protect: Ref) -> UserStep:
    """VirtualAlloc(MEM_RESERVE): [first, first+count) free becomes one reservation."""
    code = status(*_windows_checks(s, pid, protect),
                  (z3.Not(reservation_ok(first, count)), E.ERROR_INVALID_ADDRESS),
                  (z3.Not(all_free(s, pid, first, count)), E.ERROR_INVALID_ADDRESS))
    post = reserve_pages(s, pid, first, count, ORIGIN_VIRTUAL_ALLOC)
    return user_step(s, code, post, as_address(first), z3.IntVal(0))


def VirtualAllocCommit(s: UserState, pid: Ref, first: Ref, count: Ref, protect: Ref,
                       pick: Ref, pinv: Ref, oom: Ref) -> UserStep:
    """VirtualAlloc(MEM_COMMIT) inside one reservation: page-granular; pages
    already committed keep their frame and take the new protection."""
    code = status(*_windows_checks(s, pid, protect),
                  (count <= 0, E.ERROR_INVALID_PARAMETER),
                  (z3.Not(one_allocation(s, pid, first, count)), E.ERROR_INVALID_ADDRESS),
                  (heap_page(s, pid, first), E.ERROR_ACCESS_DENIED),
                  (oom, E.ERROR_NOT_ENOUGH_MEMORY))
    post, assume = commit_pages(s, pid, lambda w: within(w, first, count), _const(protect),
                                pick, pinv)
    return user_step(s, code, post, as_address(first), z3.IntVal(0), assume)


def VirtualAllocReserveCommit(s: UserState, pid: Ref, first: Ref, count: Ref, protect: Ref,
                              pick: Ref, pinv: Ref, oom: Ref) -> UserStep:
    """VirtualAlloc(MEM_RESERVE | MEM_COMMIT), and VirtualAlloc(NULL, MEM_COMMIT)."""
    code = status(*_windows_checks(s, pid, protect),
                  (z3.Not(reservation_ok(first, count)), E.ERROR_INVALID_ADDRESS),
                  (z3.Not(all_free(s, pid, first, count)), E.ERROR_INVALID_ADDRESS),
                  (oom, E.ERROR_NOT_ENOUGH_MEMORY))
    reserved = reserve_pages(s, pid, first, count, ORIGIN_VIRTUAL_ALLOC)
    post, assume = commit_pages(reserved, pid, lambda w: within(w, first, count),
                                _const(protect), pick, pinv)
    return user_step(s, code, post, as_address(first), z3.IntVal(0), assume)


def VirtualAllocReset(s: UserState, pid: Ref, first: Ref, count: Ref,
                      protect: Ref) -> UserStep:
    """VirtualAlloc(MEM_RESET) and VirtualAlloc(MEM_RESET_UNDO): every page of the
    range in one allocation, committed or reserved, of any origin; a valid
    protection that is then ignored; nothing here changes (the pages' data is
    no longer of interest, and data is not part of this state)."""
    code = status(*_windows_checks(s, pid, protect), (count <= 0, E.ERROR_INVALID_PARAMETER),
                  (z3.Not(one_allocation(s, pid, first, count)), E.ERROR_INVALID_ADDRESS))
    return user_step(s, code, s, as_address(first), z3.IntVal(0))


def VirtualFreeDecommit(s: UserState, pid: Ref, first: Ref, count: Ref) -> UserStep:
    """VirtualFree(MEM_DECOMMIT): the range's committed pages become reserved."""
    code = status(*_windows_checks(s, pid), (count <= 0, E.ERROR_INVALID_PARAMETER),
                  (z3.Not(one_allocation(s, pid, first, count)), E.ERROR_INVALID_ADDRESS),
                  (z3.Not(windows_owned(s, pid, first)), E.ERROR_INVALID_PARAMETER))
    post = decommit_pages(s, pid, lambda w: within(w, first, count))
    return user_step(s, code, post, z3.IntVal(1), z3.IntVal(0))


def VirtualFreeRelease(s: UserState, pid: Ref, base: Ref) -> UserStep:
    """VirtualFree(base, 0, MEM_RELEASE): the whole allocation based at base."""
    code = status(*_windows_checks(s, pid),
                  (z3.Not(z3.And(nonfree(s, pid, base), s.base[pid, base] == base)),
                   E.ERROR_INVALID_ADDRESS),
                  (z3.Not(windows_owned(s, pid, base)), E.ERROR_INVALID_PARAMETER))
    post = release_pages(s, pid, lambda w: z3.And(nonfree(s, pid, w), s.base[pid, w] == base))
    return user_step(s, code, post, z3.IntVal(1), z3.IntVal(0))


def VirtualProtect(s: UserState, pid: Ref, first: Ref, count: Ref, protect: Ref) -> UserStep:
    """VirtualProtect: committed pages of one allocation; returns the old
    protection of the first page."""
    code = status(*_windows_checks(s, pid, protect), (count <= 0, E.ERROR_INVALID_PARAMETER),
                  (z3.Not(one_allocation(s, pid, first, count)), E.ERROR_INVALID_ADDRESS),
                  (z3.Not(all_pages(first, count, lambda w: committed(s, pid, w))),
                   E.ERROR_INVALID_ADDRESS),
                  (heap_page(s, pid, first), E.ERROR_ACCESS_DENIED))
    post = protect_pages(s, pid, first, count, protect)
    return user_step(s, code, post, s.protect[pid, first], z3.IntVal(0))


def VirtualQuery(s: UserState, pid: Ref, vpn: Ref) -> UserStep:
    """VirtualQuery: no change; reports the page's state (MEM_FREE outside
    user space)."""
    code = status(*_windows_checks(s, pid))
    return user_step(s, code, s, s.state[pid, vpn], z3.IntVal(0))


# -- the process heap (SyscallGetProcessHeap, SyscallHeapAlloc, SyscallHeapFree,
#    SyscallHeapReAlloc, SyscallHeapSize) ---------------------------------------------
#
# Pages, not blocks: the heap's blocks are the kernel heap's spec (spec/kernel_heap.py),
# the pointers, sizes and contents its callers see are checked per call by the user
# machine (proofs/machines/user_space.py, HEAP_BLOCKS). A call changes the process's
# pages only at the heap's end: HeapAlloc by ProcessHeapGrow, HeapFree by
# ProcessHeapShrink, HeapReAlloc by one of them (a block that moves is taken before
# the old one is freed: taking it may grow the heap, and then the old block lies below
# the new one and freeing it cannot shrink the heap; a new block taken from a hole
# leaves the heap's length, and freeing the old one may shrink it). HeapSize changes
# nothing (ProcessHeapSize).

def ProcessHeapCreate(s: UserState, pid: Ref, first: Ref, count: Ref, committed_pages: Ref,
                      pick: Ref, pinv: Ref, oom: Ref) -> UserStep:
    """CreateProcess's heap (HeapCreate): a reservation of count pages at a
    64 KB boundary, its first committed_pages committed READWRITE."""
    code = status(*_windows_checks(s, pid),
                  (z3.Not(reservation_ok(first, count)), E.ERROR_INVALID_ADDRESS),
                  (z3.Not(z3.And(0 < committed_pages, committed_pages <= count)),
                   E.ERROR_INVALID_PARAMETER),
                  (z3.Not(all_free(s, pid, first, count)), E.ERROR_INVALID_ADDRESS),
                  (oom, E.ERROR_NOT_ENOUGH_MEMORY))
    reserved = reserve_pages(s, pid, first, count, ORIGIN_PROCESS_HEAP)
    post, assume = commit_pages(reserved, pid, lambda w: within(w, first, committed_pages),
                                _const(PAGE_READWRITE), pick, pinv)
    return user_step(s, code, post, as_address(first), z3.IntVal(0), assume)


def ProcessHeapGrow(s: UserState, pid: Ref, first: Ref, count: Ref, pick: Ref, pinv: Ref,
                    oom: Ref) -> UserStep:
    """HeapAlloc expanding the heap (KernelHeap.Expand): pages of the process
    heap's reservation become committed READWRITE."""
    code = status(*_windows_checks(s, pid), (count <= 0, E.ERROR_INVALID_PARAMETER),
                  (z3.Not(one_allocation(s, pid, first, count)), E.ERROR_INVALID_ADDRESS),
                  (z3.Not(heap_page(s, pid, first)), E.ERROR_INVALID_ADDRESS),
                  (oom, E.ERROR_NOT_ENOUGH_MEMORY))
    post, assume = commit_pages(s, pid, lambda w: within(w, first, count),
                                _const(PAGE_READWRITE), pick, pinv)
    return user_step(s, code, post, as_address(first), z3.IntVal(0), assume)


def ProcessHeapShrink(s: UserState, pid: Ref, first: Ref, count: Ref) -> UserStep:
    """HeapFree contracting the heap (KernelHeap.Contract): committed pages of
    the process heap become reserved, their frames given back."""
    code = status(*_windows_checks(s, pid), (count <= 0, E.ERROR_INVALID_PARAMETER),
                  (z3.Not(one_allocation(s, pid, first, count)), E.ERROR_INVALID_ADDRESS),
                  (z3.Not(heap_page(s, pid, first)), E.ERROR_INVALID_ADDRESS))
    post = decommit_pages(s, pid, lambda w: within(w, first, count))
    return user_step(s, code, post, z3.IntVal(1), z3.IntVal(0))


def ProcessHeapSize(s: UserState, pid: Ref) -> UserStep:
    """HeapSize (and a HeapReAlloc or HeapAlloc that leaves the heap's length):
    no page changes."""
    code = status(*_windows_checks(s, pid))
    return user_step(s, code, s, z3.IntVal(0), z3.IntVal(0))


# -- Linux: mmap, munmap, mprotect, brk -----------------------------------------------

def _linux_checks(s: UserState, pid: Ref, count: Ref, protect: Ref | None = None
                  ) -> list[tuple[Ref, int]]:
    checks: list[tuple[Ref, int]] = [(z3.Not(s.live[pid]), EINVAL), (count < 0, EINVAL)]
    if protect is not None:
        checks.append((z3.Not(valid_protect(protect)), EINVAL))
    return checks


def Mmap(s: UserState, pid: Ref, first: Ref, count: Ref, protect: Ref, pick: Ref, pinv: Ref,
         oom: Ref) -> UserStep:
    """mmap without MAP_FIXED: a fresh private mapping of free pages (the hint
    or the search picked first); protect is protect_from_prot(prot)."""
    code = status(*_linux_checks(s, pid, count, protect), (count == 0, EINVAL),
                  (z3.Not(user_range(first, count)), ENOMEM),
                  (z3.Not(all_free(s, pid, first, count)), ENOMEM), (oom, ENOMEM))
    reserved = reserve_pages(s, pid, first, count, ORIGIN_MMAP)
    post, assume = commit_pages(reserved, pid, lambda w: within(w, first, count),
                                _const(protect), pick, pinv)
    return user_step(s, code, post, as_address(first), -code, assume)


def MmapFixed(s: UserState, pid: Ref, first: Ref, count: Ref, protect: Ref, pick: Ref,
              pinv: Ref, oom: Ref) -> UserStep:
    """mmap(MAP_FIXED): the range is unmapped (munmap's rules) and replaced,
    all or nothing."""
    code = status(*_linux_checks(s, pid, count, protect), (count == 0, EINVAL),
                  (z3.Not(user_range(first, count)), EINVAL),
                  (z3.Not(unmappable(s, pid, first, count)), EINVAL), (oom, ENOMEM))
    cleared = reserve_pages(unmap_range(s, pid, first, count), pid, first, count, ORIGIN_MMAP)
    post, assume = commit_pages(cleared, pid, lambda w: within(w, first, count),
                                _const(protect), pick, pinv)
    return user_step(s, code, post, as_address(first), -code, assume)


def Munmap(s: UserState, pid: Ref, first: Ref, count: Ref) -> UserStep:
    """munmap: frees the range (free pages are fine) when munmap may remove it."""
    code = status(*_linux_checks(s, pid, count), (count == 0, EINVAL),
                  (z3.Not(user_range(first, count)), EINVAL),
                  (z3.Not(unmappable(s, pid, first, count)), EINVAL))
    return user_step(s, code, unmap_range(s, pid, first, count), z3.IntVal(0), -code)


def Mprotect(s: UserState, pid: Ref, first: Ref, count: Ref, protect: Ref,
             stop: Ref | None = None) -> UserStep:
    """mprotect: the pages [first, stop) change, stop being the first page of
    the range not committed (ENOMEM) or of the process heap (EACCES), or its
    end (success); count 0 succeeds and changes nothing. The failure at a
    hole keeps the earlier pages changed, as Linux does. stop defaults to the
    range's end (the caller knows the call succeeded)."""
    checks, changed, assume = _mprotect(s, pid, first, count, protect, stop)
    end = first + count
    at = first + count if stop is None else stop
    hole = z3.If(at < end, z3.If(committed(s, pid, at), EACCES, ENOMEM), 0)
    code = z3.If(status(*checks) == 0, hole, status(*checks))
    applied = status(*checks) == 0
    return Transition(code, ite_user(applied, changed, s), changed, z3.IntVal(0) - code,
                      assume)


def MprotectApplied(s: UserState, pid: Ref, first: Ref, count: Ref, protect: Ref,
                    stop: Ref) -> UserStep:
    """The change of every mprotect that gets past its argument checks, the
    one stopped at a hole included (its status 0 here: the obligations then
    cover the state Linux leaves behind an ENOMEM or EACCES)."""
    checks, changed, assume = _mprotect(s, pid, first, count, protect, stop)
    return user_step(s, status(*checks), changed, z3.IntVal(0), None, assume)


def _mprotect(s: UserState, pid: Ref, first: Ref, count: Ref, protect: Ref,
              stop: Ref | None) -> tuple[list[tuple[Ref, int]], UserState, Ref]:
    """mprotect's argument checks, its change up to stop, and stop's constraint."""
    checks = _linux_checks(s, pid, count, protect)
    end = first + count
    changes: Selector = lambda w: z3.And(committed(s, pid, w),  # noqa: E731
                                         z3.Not(heap_page(s, pid, w)))
    if stop is None:
        stop = end
    assume = z3.And(first <= stop, stop <= end, all_pages(first, stop - first, changes),
                    z3.Or(stop == end, z3.Not(changes(stop))))
    return checks, protect_pages(s, pid, first, stop - first, protect), assume


def BrkGrow(s: UserState, pid: Ref, new_end: Ref, pick: Ref, pinv: Ref, oom: Ref) -> UserStep:
    """brk above the break: [heap_end, new_end] free (new_end is the guard
    page), up to heap_max; the pages are committed READWRITE into the brk
    allocation ending at the break, else a new one based at the break. On
    failure brk returns the break."""
    end = s.heap_end[pid]
    count = new_end - end
    last = end - 1
    grows = z3.And(nonfree(s, pid, last), s.origin[pid, last] == ORIGIN_BRK)
    code = status((z3.Not(s.live[pid]), EINVAL),
                  (z3.Not(z3.And(end < new_end, new_end <= s.heap_max[pid])), ENOMEM),
                  (z3.Not(all_free(s, pid, end, count + 1)), ENOMEM), (oom, ENOMEM))
    reserved = reserve_pages(s.but(heap_end=z3.Store(s.heap_end, pid, new_end)), pid, end,
                             count, ORIGIN_BRK, z3.If(grows, s.base[pid, last], end))
    post, assume = commit_pages(reserved, pid, lambda w: within(w, end, count),
                                _const(PAGE_READWRITE), pick, pinv)
    return user_step(s, code, post, as_address(new_end), as_address(end), assume)


def BrkShrink(s: UserState, pid: Ref, new_end: Ref) -> UserStep:
    """brk below the break (not below heap_start): [new_end, heap_end) is
    unmapped by munmap's rules; a range with nothing in it fails (Linux 6.x
    leaves the break)."""
    end = s.heap_end[pid]
    count = end - new_end
    code = status((z3.Not(s.live[pid]), EINVAL),
                  (z3.Not(z3.And(s.heap_start[pid] <= new_end, new_end < end)), ENOMEM),
                  (all_free(s, pid, new_end, count), ENOMEM),
                  (z3.Not(unmappable(s, pid, new_end, count)), EINVAL))
    post = unmap_range(s, pid, new_end, count)
    return user_step(s, code, post.but(heap_end=z3.Store(s.heap_end, pid, new_end)),
                     as_address(new_end), as_address(end))


# -- protection --------------------------------------------------------------------

def Access(s: UserState, pid: Ref, vpn: Ref, kind: Ref) -> UserStep:
    """A user-mode read, write or execute of page vpn: allowed when the page's
    protection and its PTE (present, U/S, R/W for writes) both allow it;
    otherwise a fault (ERROR_NOACCESS), never a silent success."""
    allowed = z3.And(user_vpn(vpn), committed(s, pid, vpn), allows(s.protect[pid, vpn], kind),
                     s.pte_present[pid, vpn], s.pte_user[pid, vpn],
                     z3.Implies(kind == WRITE, s.pte_writable[pid, vpn]))
    code = status(*_windows_checks(s, pid),
                  (z3.Not(z3.And(READ <= kind, kind <= EXECUTE)), E.ERROR_INVALID_PARAMETER),
                  (z3.Not(allowed), E.ERROR_NOACCESS))
    return user_step(s, code, s, z3.IntVal(1), z3.IntVal(0))


# -- concrete states ------------------------------------------------------------------

class PageView(NamedTuple):
    """One non-free page of a process, as the model's PageRecord shows it (vpns)."""

    state: int  # MEM_RESERVE or MEM_COMMIT
    protect: int  # PAGE_* (0 when reserved)
    base_vpn: int
    origin: int  # ORIGIN_*
    frame: int | None
    pte_present: bool
    pte_writable: bool
    pte_user: bool


class SpaceView(NamedTuple):
    """A live process's heap and stack, in pages."""

    heap_start: int
    heap_end: int
    heap_max: int
    stack_top: int
    stack_size: int


def concrete_user(spaces: Mapping[int, Mapping[int, PageView]],
                  layouts: Mapping[int, SpaceView], nframes: int) -> UserState:
    """The UserState of plain data: the non-free pages of each live pid (every
    other page free), their heaps and stacks; owner and rmap computed from the
    committed pages' frames."""
    s = empty_user(nframes, "concrete")
    live, state, protect, base, origin, frame = (s.live, s.state, s.protect, s.base,
                                                 s.origin, s.frame)
    present, writable, user = s.pte_present, s.pte_writable, s.pte_user
    owner, rmap = s.owner, s.rmap
    fields = {name: getattr(s, name) for name in (
        "heap_start", "heap_end", "heap_max", "stack_top", "stack_size")}
    for pid in sorted(set(spaces) | set(layouts)):
        live = z3.Store(live, pid, True)
        layout = layouts.get(pid)
        if layout is not None:
            for name in fields:
                fields[name] = z3.Store(fields[name], pid, getattr(layout, name))
        for vpn, page in sorted(spaces.get(pid, {}).items()):
            state = z3.Store(state, pid, vpn, page.state)
            protect = z3.Store(protect, pid, vpn, page.protect)
            base = z3.Store(base, pid, vpn, page.base_vpn)
            origin = z3.Store(origin, pid, vpn, page.origin)
            present = z3.Store(present, pid, vpn, page.pte_present)
            writable = z3.Store(writable, pid, vpn, page.pte_writable)
            user = z3.Store(user, pid, vpn, page.pte_user)
            if page.frame is not None:
                frame = z3.Store(frame, pid, vpn, page.frame)
                if page.state == MEM_COMMIT:
                    owner = z3.Store(owner, page.frame, pid)
                    rmap = z3.Store(rmap, page.frame, vpn)
    return s.but(live=live, state=state, protect=protect, base=base, origin=origin,
                 frame=frame, pte_present=present, pte_writable=writable, pte_user=user,
                 owner=owner, rmap=rmap, **fields)


def violated(s: UserState, timeout_ms: int = 10000) -> list[str]:
    """The invariants a concrete state breaks (z3 finds a counterexample to one
    of its conjuncts); an undecided conjunct counts as broken."""
    return refuted(INVARIANTS, s, timeout_ms)
