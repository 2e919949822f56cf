"""Shared memory and memory-mapped files (seed section 5): SHM-1..3, MMF-1..2,
VMM-1 over shared frames, and every call.

The layer is the view pages of every process, per (pid, vpn), and the frames
behind them (private pages are spec/user_space.py's). Integers everywhere;
page contents are abstract Int tokens (equal tokens = equal 4096 bytes).
A frame of this layer is a block's page (``kind`` 1) or a file page in the
page cache (``kind`` 2); the ghost inverse ``src``/``idx`` names its page.
Reference counts are exact without counting (z3 cannot count), by
Hyperkernel's refcount-by-bijection: ``refs[fr]`` slots hold the mappings
(``slot_pid``, ``slot_vpn``) of fr, and each mapping knows its slot
(``vslot``); an unmap moves the frame's last slot into the freed one. A
block's refcount ``brefs`` is its number of pieces of views the same way:
``brefs[b]`` block slots hold the pieces (``bslot_pid``, ``bslot_vpn``: pid
and first vpn), and each page of a piece knows its piece's slot (``vbslot``).

Spec-level decisions (the contract of /work/briefs/shm_common.md; the model
follows them):

- Blocks: CreateFileMapping(INVALID_HANDLE_VALUE, SEC_COMMIT) + shm lifetime
  rules. All pages are taken at creation and read as zeros (SEC_COMMIT: "the
  initial contents of the pages are 0"): token ``ZERO``. The id is any id >= 1
  whose block holds no frames (the model counts up from 1 and skips held
  ids): an id is never reused while a mapping of the old block exists.
- Permissions and view protections: PAGE_READONLY, PAGE_READWRITE,
  PAGE_EXECUTE_READ, PAGE_EXECUTE_READWRITE (CreateFileMapping's flProtect
  without the WRITECOPY values the seed lacks). A view may only narrow its
  block's permissions (ERROR_ACCESS_DENIED; shmat's SHM_RDONLY, MapViewOfFile's
  dwDesiredAccess: an executable view of a PAGE_READONLY or PAGE_READWRITE
  section is refused, Wine dlls/kernel32/tests/virtual.c test_mapping's
  is_compatible_access, file and anonymous sections alike): SHM-3. For
  protect=None the caller passes the block's.
- A view's protection as mapped is its ``vaccess`` (AllocationProtect, the
  same on every page); each page has its own ``vprotect``, any of the six
  PAGE_* values, allowing writes only when the view's source may be written
  through it (``writable_source``: a block's view whose vaccess allows
  writes, a file view of a writable node): SHM-3. VirtualProtect and
  mprotect change it for pages of one view (model/views.py): VirtualProtect
  within vaccess, else ERROR_INVALID_PARAMETER (Wine
  dlls/kernel32/tests/virtual.c test_mapping); mprotect within
  writable_source (Linux's VM_MAYWRITE; read and execute always), else
  EACCES, which the model's last_error reports as ERROR_ACCESS_DENIED
  (mm/mprotect.c, LTP mprotect01 TC[2], mprotect02); nothing changes then.
  VirtualAlloc(MEM_COMMIT) on a view's pages, already committed, re-protects
  a block view's as VirtualProtect does (within vaccess, else
  ERROR_INVALID_PARAMETER; it returns the first page's address) and refuses a
  file view's (ERROR_ACCESS_DENIED): Wine test_mapping's VirtualAlloc loop,
  the anonymous pass by is_compatible_protection(view[j].prot, ...). A
  range not inside one view: ERROR_INVALID_ADDRESS (VirtualProtect's
  one-allocation rule); mprotect ranges past a view are the user layer's
  (its partial change is not this layer's step). A PAGE_NOACCESS page keeps
  its frame and its mapping (its slot, the refcount), with no writable PTE.
- Destroy (shmctl(IPC_RMID): "destroyed only after the last process
  detaches it"; a section lives while a view exists): the id is invalid at
  once, the frames are released now without a mapping, else at the last
  unmap. Freeing a mapped frame would leave live PTEs on a free frame (VMM-2).
- Views are mapped 64 KB aligned (NtMapViewOfSection: STATUS_MAPPED_ALIGNMENT
  -> ERROR_MAPPED_ALIGNMENT); a map covers a whole block, or pages of a file.
  A view is a set of pieces (below: munmap over part of it); each view page
  records its piece's base and count and the source page it shows
  (``vidx``: the piece's vm_pgoff + its offset in the piece), a piece shows a
  contiguous run of its source's pages, and a block's piece comes from a
  whole-block map: the vpn where the block's page 0 was mapped (v - vidx) is
  64 KB aligned, so the piece at the map's base is. A file piece cut from a
  view's middle or end starts where the cut ended, on no granularity (Linux
  has none beyond pages; Windows never splits a view: UnmapViewOfFile takes
  whole views only, so only munmap makes pieces).
  Placement is the caller's choice (``base``, with ``placed`` when the system
  chose it); ``occupied`` says the range is not free in the user layer; ``oom``
  that page-table frames ran short. Frames are chosen by ``pick``/``pinv`` as
  in spec/user_space.py (fresh, distinct, in memory, kind 0): sound because
  the PageManager layer proves that AllocFrame hands out free frames only.
- Files: the current process (``pid``, 0 = none: ERROR_NOT_READY) maps pages
  [first, first+count) of file ``file`` (0 = not a FileNode:
  ERROR_INVALID_HANDLE). Byte-level checks (u32 arguments, the offset's page
  alignment, size 0 = to the end, bytes past EOF) are the caller's, as the
  user layer leaves its byte rounding to its caller; pages past the file's
  last page: ERROR_ACCESS_DENIED (STATUS_INVALID_VIEW_SIZE as Win32 reports
  it); an empty file: ERROR_FILE_INVALID (CreateFileMapping); a writable
  protection on a read-only node: ERROR_ACCESS_DENIED. No room: always
  ERROR_NOT_ENOUGH_MEMORY (the system places file views).
- Page cache: one frame per (file, page), shared by every view of the page,
  filled from the file at the first map, released when its last mapping goes
  (after write-back). ``dirty`` is the model's flag or any mapping PTE's D bit.
  Sync (msync(MS_SYNC) / FlushViewOfFile) writes the view's dirty pages back
  and cleans them; invalidate (MS_INVALIDATE) then reloads them from the file.
  Unmap writes the view's dirty pages back first: nothing is lost.
- Write / Read are a user write of a token to one view page, and a read: a
  write needs a writable PTE (else the access path's page fault,
  ERROR_NOACCESS: MMF-2); a read needs a view page whose protection allows
  reading (PAGE_NOACCESS and PAGE_EXECUTE refuse it: ERROR_NOACCESS). A file
  page written becomes dirty.
- Process exit is a sequence of unmaps (composite, as the paging spec's
  Destroy), and so is a munmap (the caller's translation: for each piece the
  range touches, in the order the model reaches them, the piece's Unmap when
  the range covers all of it, else SyscallMunmap of the part it covers;
  MAP_FIXED over views unmaps the same way before it maps).
- SyscallMunmap (issue 15) unmaps a strict part [vpn, vpn+count) of one
  piece: its pages' mappings go (a file's dirty pages written back first, a
  cache page whose last mapping this was released: MMF-1M), what is left
  before vpn keeps its base, what is left from vpn+count on becomes a piece
  based there, each page keeping its source page (mm/mmap.c do_vmi_munmap
  splits the vma with __split_vma, the new vma's vm_pgoff advanced by its
  distance). A block piece left on both sides is one mapping more (ipc/shm.c
  shm_open, called for the new vma, increments shm_nattch), in the block's
  next slot; a right piece alone takes the cut piece's slot; a block's frames
  never leave on a split (a piece is left: SHM-2M). LTP
  testcases/kernel/syscalls/munmap: munmap01.c's variant "partially unmapped
  region not accessible" (the older munmap02.c: the last two pages of a
  3-page MAP_SHARED file mapping unmapped, a reference to them faults, the
  first page stays mapped until the cleanup's munmap) is
  tests/conformance/linux_ltp_views.py's; munmap03.c's EINVAL ranges
  (tests/conformance/linux_ltp.py) are the model's argument checks, made
  before any step. Unmap takes any page
  of the view (``base`` is the vpn of the address given: UnmapViewOfFile
  unmaps at ptr + 100 and ptr + 4096, Wine dlls/kernel32/tests/virtual.c
  test_MapViewOfFile; both seed calls are Windows-facing, model/views.py),
  else ERROR_INVALID_ADDRESS; Sync takes the view's base. A call
  on a space that is not live fails first with the space's status() code
  (``space``: None or 0 = live), as the model's ProcessMemorySpace.status()
  reports it.
- Step claims (ids of their own: a claim id names one operation):
  SHM-2D / SHM-2U / SHM-2M (frames leave a block only when it is destroyed
  and unmapped, on Destroy / Unmap / SyscallMunmap), MMF-1S (after a sync
  every page of the view holds the file's bytes, clean), MMF-1U / MMF-1M (an
  unmap writes back every page of the view, a munmap every page it unmaps; a
  released cache page had its data written), MMF-2W (a write succeeds only
  through a writable PTE).
- Out of scope: writes to a file node made directly (not through a view)
  while a page of it is cached; MMF-1 would then need a "stale" page state.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

import z3

from spec.abi import (
    PAGE_SIZE,
    U32_MAX,
    VALID_PROTECTIONS,
    VIEW_PROTECTIONS,
    ErrorCode,
)
from spec.state import Ref, fresh_fields, ite_fields, refuted
from spec.step import Transition, guarded
from spec.user_space import (
    EXECUTE,
    GRANULE_PAGES,
    READ,
    WRITE,
    allows,
    as_address,
    forall,
    user_range,
    user_vpn,
    within,
)

E = ErrorCode
INT, BOOL = z3.IntSort(), z3.BoolSort()
#: Kinds of views and frames (0: not this layer's).
SHM, FILE = 1, 2
#: The token of a page of zeros (a new block's pages).
ZERO = 0
#: The protections of blocks and views (the seed's flags without NOACCESS and EXECUTE).


@dataclass(frozen=True)
class SharedState:
    """Blocks, files and their cache, the frames of both, and every view page."""

    # blocks, by id
    blive: Ref  # b -> Bool: created, not destroyed
    bheld: Ref  # b -> Bool: holds its frames (live, or destroyed but mapped)
    bpages: Ref  # b -> pages
    bsize: Ref  # b -> size in bytes as created
    bprotect: Ref  # b -> PAGE_*
    bframe: Ref  # (b, k) -> frame of page k
    brefs: Ref  # b -> pieces of views of the block (its refcount, shm_nattch)
    # files and the page cache
    fpages: Ref  # f -> pages of the file
    fwritable: Ref  # f -> Bool: the node takes writes
    fdata: Ref  # (f, k) -> token of the file's page k
    cached: Ref  # (f, k) -> Bool: the page has a cache frame
    cframe: Ref  # (f, k) -> its frame
    dirty: Ref  # (f, k) -> Bool: written since the last write-back
    # frames
    kind: Ref  # fr -> 0 | SHM | FILE
    refs: Ref  # fr -> the number of (pid, vpn) mapping fr
    mdata: Ref  # fr -> token
    # view pages, per (pid, vpn)
    vkind: Ref  # 0 (no view) | SHM | FILE
    vsrc: Ref  # block id or file id
    vidx: Ref  # page index in the block or file
    vbase: Ref  # the view's first vpn
    vprotect: Ref  # PAGE_*: the page's own protection
    vaccess: Ref  # PAGE_*: the view's protection as mapped (AllocationProtect)
    vframe: Ref  # the frame the PTE maps
    pte_writable: Ref  # Bool: the PTE's R/W bit
    vcount: Ref  # pages of the view
    nframes: Ref  # Int
    # ghost witnesses
    src: Ref  # fr -> block or file of a frame of this layer
    idx: Ref  # fr -> its page index
    slot_pid: Ref  # (fr, i) -> pid of the i-th mapping of fr, i < refs[fr]
    slot_vpn: Ref  # (fr, i) -> its vpn
    vslot: Ref  # (pid, vpn) -> the slot of this mapping
    bslot_pid: Ref  # (b, j) -> pid of the j-th piece of block b, j < brefs[b]
    bslot_vpn: Ref  # (b, j) -> that piece's first vpn
    vbslot: Ref  # (pid, vpn) -> the block slot of the piece holding a block view page

    def but(self, **changes: Ref) -> SharedState:
        return dataclasses.replace(self, **changes)


SHARED_GHOST_FIELDS = ("src", "idx", "slot_pid", "slot_vpn", "vslot", "bslot_pid",
                       "bslot_vpn", "vbslot")
_I2I, _I2B = z3.ArraySort(INT, INT), z3.ArraySort(INT, BOOL)
_II2I, _II2B = z3.ArraySort(INT, INT, INT), z3.ArraySort(INT, INT, BOOL)
_SORTS: dict[str, Ref] = {
    **{name: _I2B for name in ("blive", "bheld", "fwritable")},
    **{name: _I2I for name in ("bpages", "bsize", "bprotect", "brefs", "fpages", "kind", "refs",
                               "mdata", "src", "idx")},
    **{name: _II2I for name in ("bframe", "fdata", "cframe", "vkind", "vsrc", "vidx", "vbase",
                                "vprotect", "vaccess", "vframe", "vcount", "slot_pid",
                                "slot_vpn", "vslot", "bslot_pid", "bslot_vpn", "vbslot")},
    **{name: _II2B for name in ("cached", "dirty", "pte_writable")},
    "nframes": INT,
}


def symbolic_shared(prefix: str = "sh") -> SharedState:
    """A shared state whose every field is a fresh z3 constant."""
    return fresh_fields(SharedState, _SORTS, prefix)


def ite_shared(cond: Ref, then: SharedState, other: SharedState) -> SharedState:
    return ite_fields(SharedState, cond, then, other)


def empty_shared(nframes: int) -> SharedState:
    """No block, no file, no view: every array 0 / False."""
    fields = {}
    for name, sort in _SORTS.items():
        if name == "nframes":
            continue
        value = z3.BoolVal(False) if sort.range() == BOOL else z3.IntVal(0)
        fields[name] = _const2(value) if sort in (_II2I, _II2B) else z3.K(INT, value)
    return SharedState(**fields, nframes=z3.IntVal(nframes))


def _const2(value: Ref) -> Ref:
    q, w = z3.Ints("_q _w")
    return z3.Lambda([q, w], value)


# -- predicates ----------------------------------------------------------------------

def view_protect(protect: Ref) -> Ref:
    return z3.Or([protect == value for value in sorted(VIEW_PROTECTIONS)])


def page_protect(protect: Ref) -> Ref:
    """One of the six PAGE_* values a page may have (VirtualProtect's)."""
    return z3.Or([protect == value for value in sorted(VALID_PROTECTIONS)])


def narrower(protect: Ref, limit: Ref) -> Ref:
    """protect allows no access (read, write, execute) that limit does not."""
    return z3.And([z3.Implies(allows(protect, kind), allows(limit, kind))
                   for kind in (READ, WRITE, EXECUTE)])


def viewed(s: SharedState, p: Ref, v: Ref) -> Ref:
    return s.vkind[p, v] != 0


def is_base(s: SharedState, p: Ref, v: Ref, kind: int) -> Ref:
    """(p, v) is the first page of a view of this kind."""
    return z3.And(s.vkind[p, v] == kind, s.vbase[p, v] == v)


def held_page(s: SharedState, b: Ref, k: Ref) -> Ref:
    return z3.And(s.bheld[b], 0 <= k, k < s.bpages[b])


def source_frame(s: SharedState, kind: Ref, source: Ref, k: Ref) -> Ref:
    return z3.If(kind == SHM, s.bframe[source, k], s.cframe[source, k])


def in_source(s: SharedState, fr: Ref, kind: Ref, source: Ref, first: Ref, count: Ref) -> Ref:
    """Frame fr holds a page in [first, first+count) of this block or file."""
    return z3.And(s.kind[fr] == kind, s.src[fr] == source, within(s.idx[fr], first, count))


def _pv() -> tuple[Ref, Ref]:
    p, v = z3.Ints("p v")
    return p, v


# -- invariants ----------------------------------------------------------------------

def vmm_1(s: SharedState) -> Ref:
    """VMM-1 over shared frames: a block's held pages and the cached file pages
    have frames of their own (in memory, kind/src/idx naming the page back: no
    two pages share a frame, and kind != 0 only for those frames); every view
    page lies in a contiguous piece (in user space, pid > 0, each page
    recording the piece's base, count, kind, source and vaccess) showing a
    contiguous run of its source's pages, and maps the frame of its source
    page; a block's piece comes from a whole-block map at a 64 KB boundary
    (the vpn v - vidx, where the block's page 0 was mapped, is 64 KB aligned);
    the slots are a bijection between [0, refs[fr]) and the mappings of fr,
    so refs[fr] is their number."""
    p, v = _pv()
    w = z3.Int("w")
    b, f, k, fr, i = z3.Ints("b f k fr i")
    base, count = s.vbase[p, v], s.vcount[p, v]
    frame, slot = s.vframe[p, v], s.vslot[p, v]
    sp, sv = s.slot_pid[fr, i], s.slot_vpn[fr, i]
    kind, source, index = s.vkind[p, v], s.vsrc[p, v], s.vidx[p, v]

    def names(fr: Ref, kind: int, source: Ref, k: Ref) -> Ref:
        return z3.And(0 <= fr, fr < s.nframes, s.kind[fr] == kind, s.src[fr] == source,
                      s.idx[fr] == k)

    return z3.And(
        s.nframes >= 0,
        z3.ForAll([b, k], z3.Implies(held_page(s, b, k), names(s.bframe[b, k], SHM, b, k))),
        z3.ForAll([f, k], z3.Implies(s.cached[f, k], names(s.cframe[f, k], FILE, f, k))),
        z3.ForAll([fr], z3.And(
            z3.Or(s.kind[fr] == 0, s.kind[fr] == SHM, s.kind[fr] == FILE), s.refs[fr] >= 0,
            z3.Implies(s.kind[fr] == 0, s.refs[fr] == 0),
            z3.Implies(s.kind[fr] == SHM, z3.And(held_page(s, s.src[fr], s.idx[fr]),
                                                 s.bframe[s.src[fr], s.idx[fr]] == fr)),
            z3.Implies(s.kind[fr] == FILE, z3.And(s.cached[s.src[fr], s.idx[fr]],
                                                  s.cframe[s.src[fr], s.idx[fr]] == fr)))),
        z3.ForAll([p, v], z3.Implies(viewed(s, p, v), z3.And(
            p > 0, user_vpn(v), z3.Or(kind == SHM, kind == FILE), within(v, base, count),
            frame == source_frame(s, kind, source, index),
            0 <= slot, slot < s.refs[frame], s.slot_pid[frame, slot] == p,
            s.slot_vpn[frame, slot] == v))),
        forall([p, v, w], z3.Implies(z3.And(viewed(s, p, v), within(w, base, count)), z3.And(
            viewed(s, p, w), s.vbase[p, w] == base, s.vcount[p, w] == count,
            s.vkind[p, w] == kind, s.vsrc[p, w] == source,
            s.vaccess[p, w] == s.vaccess[p, v], s.vidx[p, w] == index + w - v)),
            s.vkind[p, v], s.vkind[p, w]),
        z3.ForAll([p, v], z3.Implies(kind == SHM, z3.And(
            held_page(s, source, index), (v - index) % GRANULE_PAGES == 0))),
        z3.ForAll([p, v], z3.Implies(kind == FILE, z3.And(
            s.cached[source, index], v - base <= index))),
        z3.ForAll([fr, i], z3.Implies(z3.And(0 <= i, i < s.refs[fr]), z3.And(
            viewed(s, sp, sv), s.vframe[sp, sv] == fr, s.vslot[sp, sv] == i))))


def shm_1(s: SharedState) -> Ref:
    """SHM-1: a block's refcount is exactly its number of pieces of views (a
    whole view is one piece): the block slots [0, brefs[b]) are a bijection
    with the pieces (pid, first vpn) of b, each page of a piece knowing its
    piece's slot (``vbslot``)."""
    p, v = _pv()
    b, j = z3.Ints("b j")
    source, slot = s.vsrc[p, v], s.vbslot[p, v]
    bp, bv = s.bslot_pid[b, j], s.bslot_vpn[b, j]
    return z3.And(
        z3.ForAll([b], s.brefs[b] >= 0),
        z3.ForAll([p, v], z3.Implies(s.vkind[p, v] == SHM, z3.And(
            0 <= slot, slot < s.brefs[source], s.bslot_pid[source, slot] == p,
            s.bslot_vpn[source, slot] == s.vbase[p, v]))),
        z3.ForAll([b, j], z3.Implies(z3.And(0 <= j, j < s.brefs[b]), z3.And(
            is_base(s, bp, bv, SHM), s.vsrc[bp, bv] == b, s.vbslot[bp, bv] == j))))


def shm_2(s: SharedState) -> Ref:
    """SHM-2: a block holds its frames exactly while it is live or mapped
    (frames freed only when destroyed and unmapped); a held block has an id
    >= 1 and page_ceil(size) pages."""
    b = z3.Int("b")
    return z3.And(
        z3.ForAll([b], s.bheld[b] == z3.Or(s.blive[b], s.brefs[b] > 0)),
        z3.ForAll([b], z3.Implies(s.bheld[b], z3.And(b >= 1, s.bpages[b] > 0))),
        z3.ForAll([b], z3.Implies(s.bheld[b], z3.And(
            (s.bpages[b] - 1) * PAGE_SIZE < s.bsize[b], s.bsize[b] <= s.bpages[b] * PAGE_SIZE))))


def writable_source(s: SharedState, p: Ref, v: Ref) -> Ref:
    """The source of the view page (p, v) may be written through its view: a
    block's view that allows writes, a file view of a writable node."""
    return z3.If(s.vkind[p, v] == SHM, allows(s.vaccess[p, v], WRITE), s.fwritable[s.vsrc[p, v]])


def shm_3(s: SharedState) -> Ref:
    """SHM-3: blocks and views have one of the four protections, a view allows
    nothing its block does not (a file view writes only to a writable node),
    and each page of a view is one
    of the six page protections, allowing writes only when its view's source
    may be written through it."""
    p, v = _pv()
    b = z3.Int("b")
    return z3.And(
        z3.ForAll([b], z3.Implies(s.bheld[b], view_protect(s.bprotect[b]))),
        z3.ForAll([p, v], z3.Implies(viewed(s, p, v), view_protect(s.vaccess[p, v]))),
        z3.ForAll([p, v], z3.Implies(s.vkind[p, v] == SHM, narrower(
            s.vaccess[p, v], s.bprotect[s.vsrc[p, v]]))),
        z3.ForAll([p, v], z3.Implies(z3.And(s.vkind[p, v] == FILE,
                                            allows(s.vaccess[p, v], WRITE)),
                                     s.fwritable[s.vsrc[p, v]])),
        z3.ForAll([p, v], z3.Implies(viewed(s, p, v), z3.And(
            page_protect(s.vprotect[p, v]), z3.Implies(allows(s.vprotect[p, v], WRITE),
                                                       writable_source(s, p, v))))))


def mmf_1(s: SharedState) -> Ref:
    """MMF-1: a cached page that is not dirty holds the file's bytes; only
    cached pages are dirty; a page is cached iff a view maps it (files >= 1,
    pages inside the file)."""
    f, k = z3.Ints("f k")
    cached = s.cached[f, k]
    return z3.And(
        z3.ForAll([f, k], z3.Implies(z3.And(cached, z3.Not(s.dirty[f, k])),
                                     s.mdata[s.cframe[f, k]] == s.fdata[f, k])),
        z3.ForAll([f, k], z3.Implies(s.dirty[f, k], cached)),
        z3.ForAll([f, k], z3.Implies(cached, s.refs[s.cframe[f, k]] > 0)),
        z3.ForAll([f, k], z3.Implies(cached, z3.And(f >= 1, 0 <= k, k < s.fpages[f]))))


def mmf_2(s: SharedState) -> Ref:
    """MMF-2: a PTE is writable only on a view page whose protection allows
    writes, and of a file view only when the file node is writable."""
    p, v = _pv()
    writable = s.pte_writable[p, v]
    return z3.And(
        z3.ForAll([p, v], z3.Implies(writable, viewed(s, p, v))),
        z3.ForAll([p, v], z3.Implies(writable, allows(s.vprotect[p, v], WRITE))),
        z3.ForAll([p, v], z3.Implies(z3.And(writable, s.vkind[p, v] == FILE),
                                     s.fwritable[s.vsrc[p, v]])))


INVARIANTS: dict[str, Callable[[SharedState], Ref]] = {
    "VMM-1": vmm_1, "SHM-1": shm_1, "SHM-2": shm_2, "SHM-3": shm_3, "MMF-1": mmf_1,
    "MMF-2": mmf_2}

SharedStep = Transition[SharedState]


# -- step claims -----------------------------------------------------------------------

def frames_released(pre: SharedState, result: SharedStep, args: Mapping[str, Ref]) -> Ref:
    """SHM-2 as a claim (SHM-2D on Destroy, SHM-2U on Unmap, SHM-2M on a munmap
    over part of a view, which never releases a block's frame): a frame the step
    takes from a block had no mapping left and its block is destroyed."""
    fr = z3.Int("fr")
    post = result.changed
    return z3.Implies(result.ok, z3.ForAll([fr], z3.Implies(
        z3.And(pre.kind[fr] == SHM, post.kind[fr] != SHM),
        z3.And(post.refs[fr] == 0, z3.Not(post.blive[pre.src[fr]])))))


def _view_pages(pre: SharedState, args: Mapping[str, Ref]) -> tuple[Ref, Ref, Ref, Ref]:
    """pid, the base, the source and the page count of the view holding vpn base."""
    pid = args["pid"]
    base = pre.vbase[pid, args["base"]]
    return pid, base, pre.vsrc[pid, base], pre.vcount[pid, base]


def synced(pre: SharedState, result: SharedStep, args: Mapping[str, Ref]) -> Ref:
    """MMF-1S (on SyncMappedFile): after a sync every page of the view holds
    the file's bytes and is clean."""
    pid, base, f, count = _view_pages(pre, args)
    w = z3.Int("w")
    post = result.changed
    k = pre.vidx[pid, w]
    return z3.Implies(result.ok, z3.ForAll([w], z3.Implies(within(w, base, count), z3.And(
        post.fdata[f, k] == post.mdata[pre.vframe[pid, w]], z3.Not(post.dirty[f, k])))))


def pages_written_back(pre: SharedState, result: SharedStep, pid: Ref, base: Ref,
                       count: Ref, f: Ref) -> Ref:
    """A page whose cache frame the step released had its data written back, and
    so had every page [base, base+count) of pid (pages of file f)."""
    g, k, w = z3.Ints("g k w")
    post = result.changed
    kw = pre.vidx[pid, w]
    return z3.Implies(result.ok, z3.And(
        z3.ForAll([g, k], z3.Implies(z3.And(pre.cached[g, k], z3.Not(post.cached[g, k])),
                                     post.fdata[g, k] == pre.mdata[pre.cframe[g, k]])),
        z3.ForAll([w], z3.Implies(within(w, base, count),
                                  post.fdata[f, kw] == pre.mdata[pre.vframe[pid, w]]))))


def written_back(pre: SharedState, result: SharedStep, args: Mapping[str, Ref]) -> Ref:
    """MMF-1U (on UnmapFileFromMemory): a page whose cache frame is released
    had its data written back, and so had every page of the view."""
    pid, base, f, count = _view_pages(pre, args)
    return pages_written_back(pre, result, pid, base, count, f)


def munmap_written_back(pre: SharedState, result: SharedStep, args: Mapping[str, Ref]) -> Ref:
    """MMF-1M (on SyscallMunmap): over part of a file view, a released cache
    page had its data written back, and so had every page unmapped."""
    pid, vpn, count = args["pid"], args["vpn"], args["count"]
    return z3.Implies(pre.vkind[pid, vpn] == FILE, pages_written_back(
        pre, result, pid, vpn, count, pre.vsrc[pid, vpn]))


def write_needs_writable_pte(pre: SharedState, result: SharedStep,
                             args: Mapping[str, Ref]) -> Ref:
    """MMF-2W (on Write): a write succeeds only through a writable PTE."""
    return z3.Implies(result.ok, pre.pte_writable[args["pid"], args["vpn"]])


STEP_CLAIMS = {"SHM-2D": ("DestroySharedMemory", frames_released),
               "SHM-2U": ("UnmapSharedMemoryFromProcess", frames_released),
               "MMF-1S": ("SyncMappedFile", synced),
               "MMF-1U": ("UnmapFileFromMemory", written_back),
               "SHM-2M": ("SyscallMunmap", frames_released),
               "MMF-1M": ("SyscallMunmap", munmap_written_back),
               "MMF-2W": ("Write", write_needs_writable_pte)}


# -- state changes ---------------------------------------------------------------------

def status(*checks: tuple[Ref, Ref | int]) -> Ref:
    """The code of the first failing check (condition true = failure), else 0;
    a code may be a term (the space's own status, a placement's)."""
    code: Ref = z3.IntVal(0)
    for failed, error in reversed(checks):
        value = z3.IntVal(int(error)) if isinstance(error, int) else error
        code = z3.If(failed, value, code)
    return code


def shared_step(pre: SharedState, code: Ref, post: SharedState, result: Ref | None = None,
                failure: Ref | None = None, assume: Ref | None = None) -> SharedStep:
    return guarded(pre, code, post, ite_shared, result, failure, assume)


def set_view_pages(s: SharedState, pid: Ref, base: Ref, count: Ref,
                   **fields: Callable[[Ref], Ref]) -> SharedState:
    """Set fields of pid's pages w in [base, base+count), each to its function of w."""
    q, w = z3.Ints("_q _w")
    inside = z3.And(q == pid, within(w, base, count))
    return s.but(**{name: z3.Lambda([q, w], z3.If(inside, value(w), getattr(s, name)[q, w]))
                    for name, value in fields.items()})


def _const(value: Ref | int | bool) -> Callable[[Ref], Ref]:
    return lambda w: value


def all_unviewed(s: SharedState, pid: Ref, base: Ref, count: Ref) -> Ref:
    w = z3.Int("w")
    return z3.ForAll([w], z3.Implies(within(w, base, count), z3.Not(viewed(s, pid, w))))


def add_view(s: SharedState, pid: Ref, base: Ref, count: Ref, kind: int, source: Ref,
             first: Ref, protect: Ref, writable: Ref, bslot: Ref | int = 0) -> SharedState:
    """A view of pages [first, first+count) of the block or file at [base,
    base+count) of pid (free there): each page maps its source's frame, each
    frame one mapping more, in slot refs[fr]; its pages know the block slot
    bslot (a block's view: one piece more)."""
    def frame_at(w: Ref) -> Ref:
        k = first + w - base
        return s.bframe[source, k] if kind == SHM else s.cframe[source, k]

    fr, i = z3.Ints("_fr _i")
    inview = in_source(s, fr, z3.IntVal(kind), source, first, count)
    new_slot = z3.And(inview, i == s.refs[fr])
    post = set_view_pages(
        s, pid, base, count, vkind=_const(kind), vsrc=_const(source),
        vidx=lambda w: first + w - base, vbase=_const(base), vprotect=_const(protect),
        vaccess=_const(protect),
        vframe=frame_at, pte_writable=_const(writable),
        vcount=_const(count), vbslot=_const(bslot),
        vslot=lambda w: s.refs[frame_at(w)])
    return post.but(
        refs=z3.Lambda([fr], z3.If(inview, s.refs[fr] + 1, s.refs[fr])),
        slot_pid=z3.Lambda([fr, i], z3.If(new_slot, pid, s.slot_pid[fr, i])),
        slot_vpn=z3.Lambda([fr, i], z3.If(new_slot, base + s.idx[fr] - first,
                                          s.slot_vpn[fr, i])))


def remove_view(s: SharedState, pid: Ref, base: Ref) -> SharedState:
    """The view piece based at (pid, base) goes (remove_pages of all its pages)."""
    return remove_pages(s, pid, base, s.vcount[pid, base])


def remove_pages(s: SharedState, pid: Ref, base: Ref, count: Ref) -> SharedState:
    """Pages [base, base+count) of one view piece of pid go: they are cleared,
    each frame one mapping less, the frame's last slot moved into the freed
    one (the pieces' own fields are the caller's)."""
    kind, source, first = s.vkind[pid, base], s.vsrc[pid, base], s.vidx[pid, base]
    fr, i = z3.Ints("_fr _i")
    q, w = z3.Ints("_q _w")

    def inview(f: Ref) -> Ref:
        return in_source(s, f, kind, source, first, count)

    def slot(f: Ref) -> Ref:
        return s.vslot[pid, base + s.idx[f] - first]

    def last(f: Ref) -> Ref:
        return s.refs[f] - 1

    moved = z3.And(inview(fr), i == slot(fr))
    other = s.vframe[q, w]
    cleared = set_view_pages(s, pid, base, count, vkind=_const(0), vsrc=_const(0),
                             vidx=_const(0), vbase=_const(0), vprotect=_const(0),
                             vaccess=_const(0),
                             vframe=_const(0), pte_writable=_const(False), vcount=_const(0),
                             vslot=_const(0), vbslot=_const(0))
    return cleared.but(
        refs=z3.Lambda([fr], z3.If(inview(fr), s.refs[fr] - 1, s.refs[fr])),
        slot_pid=z3.Lambda([fr, i], z3.If(moved, s.slot_pid[fr, last(fr)], s.slot_pid[fr, i])),
        slot_vpn=z3.Lambda([fr, i], z3.If(moved, s.slot_vpn[fr, last(fr)], s.slot_vpn[fr, i])),
        vslot=z3.Lambda([q, w], z3.If(
            z3.And(z3.Not(z3.And(q == pid, within(w, base, count))), inview(other),
                   s.vslot[q, w] == last(other)), slot(other), cleared.vslot[q, w])))


def write_back(s: SharedState, f: Ref, first: Ref, count: Ref,
               when: Ref | bool = True) -> SharedState:
    """The dirty pages [first, first+count) of file f written to the file, clean
    (only when ``when`` holds)."""
    g, k = z3.Ints("_g _k")
    page = z3.And(when, g == f, within(k, first, count))
    return s.but(
        fdata=z3.Lambda([g, k], z3.If(z3.And(page, s.dirty[g, k]), s.mdata[s.cframe[g, k]],
                                      s.fdata[g, k])),
        dirty=z3.Lambda([g, k], z3.If(page, False, s.dirty[g, k])))


def _space_checks(space: Ref | None) -> list[tuple[Ref, Ref | int]]:
    """A space that is not live fails with its status() code (None: live)."""
    return [] if space is None else [(space != 0, space)]


def _current_checks(pid: Ref, space: Ref | None) -> list[tuple[Ref, Ref | int]]:
    """No current process (pid 0) -> ERROR_NOT_READY, then its space's status."""
    return [(pid <= 0, E.ERROR_NOT_READY), *_space_checks(space)]


# -- shared memory ---------------------------------------------------------------------

def CreateSharedMemory(s: SharedState, size: Ref, permissions: Ref, shm_id: Ref, pick: Ref,
                       pinv: Ref, oom: Ref) -> SharedStep:
    """A block of page_ceil(size) zero-filled pages (SEC_COMMIT), frames
    pick[0..pages), under the id shm_id (>= 1, its old block holds no frames)."""
    pages = (size + PAGE_SIZE - 1) / PAGE_SIZE
    code = status((z3.Not(z3.And(0 < size, size <= U32_MAX)), E.ERROR_INVALID_PARAMETER),
                  (z3.Not(view_protect(permissions)), E.ERROR_INVALID_PARAMETER),
                  (oom, E.ERROR_NOT_ENOUGH_MEMORY))
    fr, c, k = z3.Ints("_fr _c _k")
    fresh = z3.And(0 <= pinv[fr], pinv[fr] < pages, pick[pinv[fr]] == fr)
    post = s.but(
        blive=z3.Store(s.blive, shm_id, True), bheld=z3.Store(s.bheld, shm_id, True),
        bpages=z3.Store(s.bpages, shm_id, pages), bsize=z3.Store(s.bsize, shm_id, size),
        bprotect=z3.Store(s.bprotect, shm_id, permissions),
        brefs=z3.Store(s.brefs, shm_id, 0),
        bframe=z3.Lambda([c, k], z3.If(c == shm_id, pick[k], s.bframe[c, k])),
        kind=z3.Lambda([fr], z3.If(fresh, SHM, s.kind[fr])),
        src=z3.Lambda([fr], z3.If(fresh, shm_id, s.src[fr])),
        idx=z3.Lambda([fr], z3.If(fresh, pinv[fr], s.idx[fr])),
        mdata=z3.Lambda([fr], z3.If(fresh, ZERO, s.mdata[fr])))
    assume = z3.And(shm_id >= 1, z3.Not(s.bheld[shm_id]), z3.ForAll([k], z3.Implies(
        z3.And(0 <= k, k < pages), z3.And(0 <= pick[k], pick[k] < s.nframes,
                                          s.kind[pick[k]] == 0, pinv[pick[k]] == k))))
    return shared_step(s, code, post, shm_id, z3.IntVal(0), assume)


def MapSharedMemoryToProcess(s: SharedState, pid: Ref, space: Ref, shm_id: Ref, base: Ref,
                             protect: Ref, placed: Ref, occupied: Ref, oom: Ref) -> SharedStep:
    """A view of the whole block at vpn base of pid (space: the space's
    status() code, 0 = live; placed: virtual_addr was 0 and the system chose
    base; occupied: the range is not free in the user layer)."""
    count = s.bpages[shm_id]
    room = z3.And(base % GRANULE_PAGES == 0, user_range(base, count),
                  all_unviewed(s, pid, base, count), z3.Not(occupied))
    code = status((space != 0, space),
                  (z3.Not(s.blive[shm_id]), E.ERROR_INVALID_HANDLE),
                  (z3.Not(view_protect(protect)), E.ERROR_INVALID_PARAMETER),
                  (z3.Not(narrower(protect, s.bprotect[shm_id])), E.ERROR_ACCESS_DENIED),
                  (z3.And(z3.Not(placed), base % GRANULE_PAGES != 0), E.ERROR_MAPPED_ALIGNMENT),
                  (z3.Not(room), z3.If(placed, z3.IntVal(int(E.ERROR_NOT_ENOUGH_MEMORY)),
                                       z3.IntVal(int(E.ERROR_INVALID_ADDRESS)))),
                  (oom, E.ERROR_NOT_ENOUGH_MEMORY))
    slot = s.brefs[shm_id]
    post = add_view(s, pid, base, count, SHM, shm_id, z3.IntVal(0), protect,
                    allows(protect, WRITE), slot)
    post = post.but(brefs=z3.Store(s.brefs, shm_id, slot + 1),
                    bslot_pid=z3.Store(s.bslot_pid, shm_id, slot, pid),
                    bslot_vpn=z3.Store(s.bslot_vpn, shm_id, slot, base))
    # a live space belongs to a process (pid > 0)
    return shared_step(s, code, post, as_address(base), z3.IntVal(0), pid > 0)


def UnmapSharedMemoryFromProcess(s: SharedState, pid: Ref, base: Ref,
                                 space: Ref | None = None) -> SharedStep:
    """UnmapViewOfFile of the view piece holding vpn base, any page of it (space:
    the space's status() code, None = live): the block's last slot moves into
    the piece's; the last unmap of a destroyed block releases its frames."""
    b, slot = s.vsrc[pid, base], s.vbslot[pid, base]
    code = status(*_space_checks(space),
                  (s.vkind[pid, base] != SHM, E.ERROR_INVALID_ADDRESS))
    release = z3.And(z3.Not(s.blive[b]), s.brefs[b] == 1)
    last = s.brefs[b] - 1
    t = remove_view(s, pid, s.vbase[pid, base])
    fr, q, w = z3.Ints("_fr _q _w")
    moved = z3.And(t.vkind[q, w] == SHM, t.vsrc[q, w] == b, t.vbslot[q, w] == last)
    post = t.but(brefs=z3.Store(s.brefs, b, last),
                 bslot_pid=z3.Store(s.bslot_pid, b, slot, s.bslot_pid[b, last]),
                 bslot_vpn=z3.Store(s.bslot_vpn, b, slot, s.bslot_vpn[b, last]),
                 vbslot=z3.Lambda([q, w], z3.If(moved, slot, t.vbslot[q, w])),
                 bheld=z3.Store(s.bheld, b, z3.Not(release)),
                 kind=z3.Lambda([fr], z3.If(z3.And(release, s.kind[fr] == SHM, s.src[fr] == b),
                                            0, t.kind[fr])))
    return shared_step(s, code, post, z3.BoolVal(True), z3.BoolVal(False))


def DestroySharedMemory(s: SharedState, shm_id: Ref) -> SharedStep:
    """shmctl(IPC_RMID): the id is invalid at once; the frames go now when no
    view exists, else at the last unmap."""
    code = status((z3.Not(s.blive[shm_id]), E.ERROR_INVALID_HANDLE))
    unmapped = s.brefs[shm_id] == 0
    fr = z3.Int("_fr")
    post = s.but(blive=z3.Store(s.blive, shm_id, False),
                 bheld=z3.Store(s.bheld, shm_id, z3.Not(unmapped)),
                 kind=z3.Lambda([fr], z3.If(z3.And(unmapped, s.kind[fr] == SHM,
                                                   s.src[fr] == shm_id), 0, s.kind[fr])))
    return shared_step(s, code, post, z3.BoolVal(True), z3.BoolVal(False))


def GetSharedMemorySize(s: SharedState, shm_id: Ref) -> SharedStep:
    """The size in bytes as created (shm_segsz), or 0."""
    code = status((z3.Not(s.blive[shm_id]), E.ERROR_INVALID_HANDLE))
    return shared_step(s, code, s, s.bsize[shm_id], z3.IntVal(0))


# -- memory-mapped files -----------------------------------------------------------------

def MapFileToMemory(s: SharedState, pid: Ref, file: Ref, first: Ref, count: Ref,
                    protect: Ref, base: Ref, occupied: Ref, pick: Ref, pinv: Ref,
                    oom: Ref, space: Ref | None = None) -> SharedStep:
    """A view of pages [first, first+count) of file in the current process
    pid (0: none; space: its space's status() code, None = live) at base
    (chosen by the system); pages not yet cached take the frames pick[k],
    filled from the file."""
    room = z3.And(base % GRANULE_PAGES == 0, user_range(base, count),
                  all_unviewed(s, pid, base, count), z3.Not(occupied))
    code = status(*_current_checks(pid, space), (file <= 0, E.ERROR_INVALID_HANDLE),
                  (z3.Not(view_protect(protect)), E.ERROR_INVALID_PARAMETER),
                  (z3.And(allows(protect, WRITE), z3.Not(s.fwritable[file])),
                   E.ERROR_ACCESS_DENIED),
                  (s.fpages[file] <= 0, E.ERROR_FILE_INVALID),
                  (z3.Not(z3.And(0 <= first, 0 < count, first + count <= s.fpages[file])),
                   E.ERROR_ACCESS_DENIED),
                  (z3.Not(room), E.ERROR_NOT_ENOUGH_MEMORY), (oom, E.ERROR_NOT_ENOUGH_MEMORY))

    def new(k: Ref) -> Ref:
        return z3.And(within(k, first, count), z3.Not(s.cached[file, k]))

    fr, g, k = z3.Ints("_fr _g _k")
    fresh = z3.And(new(pinv[fr]), pick[pinv[fr]] == fr)
    filled = s.but(
        kind=z3.Lambda([fr], z3.If(fresh, FILE, s.kind[fr])),
        src=z3.Lambda([fr], z3.If(fresh, file, s.src[fr])),
        idx=z3.Lambda([fr], z3.If(fresh, pinv[fr], s.idx[fr])),
        mdata=z3.Lambda([fr], z3.If(fresh, s.fdata[file, pinv[fr]], s.mdata[fr])),
        cached=z3.Lambda([g, k], z3.Or(z3.And(g == file, within(k, first, count)),
                                       s.cached[g, k])),
        cframe=z3.Lambda([g, k], z3.If(z3.And(g == file, new(k)), pick[k], s.cframe[g, k])))
    post = add_view(filled, pid, base, count, FILE, file, first, protect,
                    z3.And(allows(protect, WRITE), s.fwritable[file]))
    assume = z3.ForAll([k], z3.Implies(new(k), z3.And(
        0 <= pick[k], pick[k] < s.nframes, s.kind[pick[k]] == 0, pinv[pick[k]] == k)))
    return shared_step(s, code, post, as_address(base), z3.IntVal(0), assume)


def UnmapFileFromMemory(s: SharedState, pid: Ref, base: Ref,
                        space: Ref | None = None) -> SharedStep:
    """UnmapViewOfFile of the file view holding vpn base, any page of it: its
    dirty pages are written back, its pages unmapped; a page whose last
    mapping this was leaves the cache."""
    view = s.vbase[pid, base]
    f, first, count = s.vsrc[pid, view], s.vidx[pid, view], s.vcount[pid, view]
    code = status(*_current_checks(pid, space),
                  (s.vkind[pid, base] != FILE, E.ERROR_INVALID_ADDRESS))
    t = remove_view(write_back(s, f, first, count), pid, view)
    fr, g, k = z3.Ints("_fr _g _k")
    gone = z3.And(in_source(s, fr, z3.IntVal(FILE), f, first, count), s.refs[fr] == 1)
    post = t.but(
        kind=z3.Lambda([fr], z3.If(gone, 0, t.kind[fr])),
        cached=z3.Lambda([g, k], z3.If(z3.And(g == f, within(k, first, count),
                                              s.refs[s.cframe[g, k]] == 1),
                                       False, s.cached[g, k])))
    return shared_step(s, code, post, z3.BoolVal(True), z3.BoolVal(False))


# -- munmap over part of a view ------------------------------------------------------

def SyscallMunmap(s: SharedState, pid: Ref, vpn: Ref, count: Ref,
                  space: Ref | None = None) -> SharedStep:
    """munmap of pages [vpn, vpn+count) of pid, a strict part of one view piece
    (the whole piece is its Unmap step; a range over several pieces is the
    caller's sequence of steps, one per piece, as do_vmi_munmap splits vma by
    vma): the pages are unmapped (a file's dirty ones written back first, a
    cache page whose last mapping this was released), what is left before vpn
    keeps its base, what is left from vpn+count on is a piece based there
    (mm/mmap.c __split_vma; each page keeps its source page, the piece's
    vm_pgoff + offset). A block's piece left on both sides is one piece more
    (ipc/shm.c shm_open: shm_nattch counts vmas), in the block's next slot; a
    right piece alone takes the cut piece's slot."""
    base, size = s.vbase[pid, vpn], s.vcount[pid, vpn]
    kind, source, first = s.vkind[pid, vpn], s.vsrc[pid, vpn], s.vidx[pid, vpn]
    end = vpn + count
    left, right = vpn - base, base + size - end
    code = status(*_space_checks(space),
                  (z3.Not(z3.And(one_view(s, pid, vpn, count), count < size)),
                   E.ERROR_INVALID_ADDRESS))
    is_file = kind == FILE
    t = remove_pages(write_back(s, source, first, count, is_file), pid, vpn, count)
    fr, g, k = z3.Ints("_fr _g _k")
    gone = z3.And(is_file, in_source(s, fr, z3.IntVal(FILE), source, first, count),
                  s.refs[fr] == 1)
    t = t.but(
        kind=z3.Lambda([fr], z3.If(gone, 0, t.kind[fr])),
        cached=z3.Lambda([g, k], z3.If(z3.And(is_file, g == source, within(k, first, count),
                                              s.refs[s.cframe[g, k]] == 1),
                                       False, s.cached[g, k])))
    slot = s.vbslot[pid, vpn]
    new = z3.If(left > 0, s.brefs[source], slot)
    t = set_view_pages(t, pid, base, left, vcount=_const(left))
    t = set_view_pages(t, pid, end, right, vbase=_const(end), vcount=_const(right),
                       vbslot=_const(new))
    shm_right = z3.And(kind == SHM, right > 0)
    post = t.but(
        brefs=z3.Store(s.brefs, source, s.brefs[source] + z3.If(
            z3.And(shm_right, left > 0), 1, 0)),
        bslot_pid=z3.Store(s.bslot_pid, source, new,
                           z3.If(shm_right, pid, s.bslot_pid[source, new])),
        bslot_vpn=z3.Store(s.bslot_vpn, source, new,
                           z3.If(shm_right, end, s.bslot_vpn[source, new])))
    return shared_step(s, code, post, z3.BoolVal(True), z3.BoolVal(False))


def SyncMappedFile(s: SharedState, pid: Ref, base: Ref, invalidate: Ref,
                   space: Ref | None = None) -> SharedStep:
    """msync(MS_SYNC) / FlushViewOfFile: the view's dirty pages written back and
    clean; invalidate (MS_INVALIDATE) then reloads them from the file."""
    f, first, count = s.vsrc[pid, base], s.vidx[pid, base], s.vcount[pid, base]
    code = status(*_current_checks(pid, space),
                  (z3.Not(is_base(s, pid, base, FILE)), E.ERROR_INVALID_ADDRESS))
    t = write_back(s, f, first, count)
    fr = z3.Int("_fr")
    reload = z3.And(invalidate, in_source(s, fr, z3.IntVal(FILE), f, first, count))
    post = t.but(mdata=z3.Lambda([fr], z3.If(reload, t.fdata[f, s.idx[fr]], s.mdata[fr])))
    return shared_step(s, code, post, z3.BoolVal(True), z3.BoolVal(False))


# -- accesses --------------------------------------------------------------------------

def Write(s: SharedState, pid: Ref, vpn: Ref, token: Ref) -> SharedStep:
    """A user write of a page's contents (token) through a view: needs a
    writable PTE (else the page fault, ERROR_NOACCESS); a file page is dirty."""
    code = status((z3.Not(s.pte_writable[pid, vpn]), E.ERROR_NOACCESS))
    f, k = s.vsrc[pid, vpn], s.vidx[pid, vpn]
    dirty = z3.If(s.vkind[pid, vpn] == FILE, z3.Store(s.dirty, f, k, True), s.dirty)
    post = s.but(mdata=z3.Store(s.mdata, s.vframe[pid, vpn], token), dirty=dirty)
    return shared_step(s, code, post, z3.BoolVal(True), z3.BoolVal(False))


def Read(s: SharedState, pid: Ref, vpn: Ref) -> SharedStep:
    """A user read of a view page: its frame's token (a page whose protection
    refuses reads: PAGE_NOACCESS's page fault, PAGE_EXECUTE's access violation,
    ERROR_NOACCESS)."""
    code = status((z3.Not(z3.And(viewed(s, pid, vpn), allows(s.vprotect[pid, vpn], READ))),
                   E.ERROR_NOACCESS))
    return shared_step(s, code, s, s.mdata[s.vframe[pid, vpn]], z3.IntVal(0))


# -- private protection calls on view pages ---------------------------------------------

def one_view(s: SharedState, pid: Ref, vpn: Ref, count: Ref) -> Ref:
    """Pages [vpn, vpn+count) of pid (count > 0) all belong to one view: the view
    of vpn reaches vpn+count (VMM-1 makes every page of [vbase, vbase+vcount) a
    page of that view, so no quantifier is needed)."""
    return z3.And(count > 0, viewed(s, pid, vpn),
                  vpn + count <= s.vbase[pid, vpn] + s.vcount[pid, vpn])


def protect_pages(s: SharedState, pid: Ref, vpn: Ref, count: Ref, protect: Ref,
                  *refusals: tuple[Ref, int], result: Ref | None = None) -> SharedStep:
    """Pages [vpn, vpn+count) take protect unless a refusal's condition holds (its
    code, in order, after the protection's and the range's checks): their PTE
    writable iff it allows writes, and of a file only when the node takes
    writes, as a map makes it; the result is the first page's old protection
    unless ``result`` is given."""
    code = status((z3.Not(page_protect(protect)), E.ERROR_INVALID_PARAMETER),
                  (z3.Not(one_view(s, pid, vpn, count)), E.ERROR_INVALID_ADDRESS),
                  *refusals)
    writable = z3.And(allows(protect, WRITE), z3.Or(s.vkind[pid, vpn] == SHM,
                                                   s.fwritable[s.vsrc[pid, vpn]]))
    post = set_view_pages(s, pid, vpn, count, vprotect=_const(protect),
                          pte_writable=_const(writable))
    return shared_step(s, code, post, s.vprotect[pid, vpn] if result is None else result,
                       z3.IntVal(0))


def VirtualProtect(s: SharedState, pid: Ref, vpn: Ref, count: Ref,
                   protect: Ref) -> SharedStep:
    """VirtualProtect of count pages from vpn of pid, inside one view: a protection
    beyond the view's -> ERROR_INVALID_PARAMETER (Wine test_mapping)."""
    return protect_pages(s, pid, vpn, count, protect,
                         (z3.Not(narrower(protect, s.vaccess[pid, vpn])),
                          E.ERROR_INVALID_PARAMETER))


def VirtualAlloc(s: SharedState, pid: Ref, vpn: Ref, count: Ref, protect: Ref) -> SharedStep:
    """VirtualAlloc(MEM_COMMIT) of count pages from vpn of pid, inside one view: the
    pages are committed already, so a block view's take protect as VirtualProtect
    gives it (beyond the view's -> ERROR_INVALID_PARAMETER), a file view's are
    refused (ERROR_ACCESS_DENIED); the result is the first page's address (Wine
    dlls/kernel32/tests/virtual.c test_mapping, its VirtualAlloc loop: anonymous
    sections by is_compatible_protection(view[j].prot, ...), file sections
    always refused)."""
    return protect_pages(s, pid, vpn, count, protect,
                         (s.vkind[pid, vpn] == FILE, E.ERROR_ACCESS_DENIED),
                         (z3.Not(narrower(protect, s.vaccess[pid, vpn])),
                          E.ERROR_INVALID_PARAMETER), result=as_address(vpn))


def SyscallMprotect(s: SharedState, pid: Ref, vpn: Ref, count: Ref,
                    protect: Ref) -> SharedStep:
    """mprotect of count pages from vpn of pid inside one view (protect: the PAGE_*
    value of its PROT_* bits, the caller's translation): writing on a view whose
    source may not be written through it -> EACCES (no VM_MAYWRITE), which the
    model's last_error reports as ERROR_ACCESS_DENIED."""
    allowed = z3.Implies(allows(protect, WRITE), writable_source(s, pid, vpn))
    return protect_pages(s, pid, vpn, count, protect,
                         (z3.Not(allowed), E.ERROR_ACCESS_DENIED))


# -- concrete states -------------------------------------------------------------------

class BlockView(NamedTuple):
    """A held block (live, or destroyed but still mapped)."""

    live: bool
    size: int
    protect: int
    frames: tuple[int, ...]
    #: The implementation's own refcount (None: count the views), so that a
    #: refcount its bookkeeping gets wrong shows as SHM-1.
    refs: int | None = None


class FileView(NamedTuple):
    pages: int
    writable: bool
    data: Mapping[int, int]  # page -> token (absent pages: token 0)


class CacheView(NamedTuple):
    frame: int
    dirty: bool  # the page's flag or the D bit of any PTE mapping it


class ViewRecord(NamedTuple):
    kind: int  # SHM or FILE
    source: int  # shm id or file id
    first: int  # first page index in the block or file
    count: int  # type: ignore[assignment]  # the contract's name (shadows tuple.count)
    protect: int  # the view's protection as mapped (vaccess)
    #: Each page's own protection (vprotect); empty: every page has ``protect``.
    pages: tuple[int, ...] = ()


class PteView(NamedTuple):
    frame: int
    writable: bool


def concrete_shared(blocks: Mapping[int, BlockView], files: Mapping[int, FileView],
                    cache: Mapping[tuple[int, int], CacheView],
                    views: Mapping[tuple[int, int], ViewRecord],
                    ptes: Mapping[tuple[int, int], PteView], memory: Mapping[int, int],
                    nframes: int) -> SharedState:
    """The SharedState of plain data (views, whole or pieces, keyed by (pid, base
    vpn), each with its first source page; PTEs by (pid, vpn)); kind/src/idx,
    refs and the slots are computed (refs and the slots from the PTEs; a view
    page without one maps frame 0; the block slots from the views in (pid,
    base) order), brefs too unless a BlockView gives the implementation's own."""
    s = empty_shared(nframes)
    a = {f.name: getattr(s, f.name) for f in dataclasses.fields(s)}

    def put(name: str, *key_value: object) -> None:
        a[name] = z3.Store(a[name], *key_value)

    brefs = {b: 0 for b in blocks}
    for (pid, base), view in sorted(views.items()):
        slot = 0
        if view.kind == SHM:  # the block's pieces take its slots in (pid, base) order
            slot = brefs.get(view.source, 0)
            brefs[view.source] = slot + 1
            put("bslot_pid", view.source, slot, pid)
            put("bslot_vpn", view.source, slot, base)
        for offset in range(view.count):
            vpn = base + offset
            own = view.pages[offset] if view.pages else view.protect
            for name, value in (("vkind", view.kind), ("vsrc", view.source),
                                ("vidx", view.first + offset), ("vbase", base),
                                ("vprotect", own), ("vaccess", view.protect),
                                ("vcount", view.count), ("vbslot", slot)):
                put(name, pid, vpn, value)
    for b, block in sorted(blocks.items()):
        for name, value in (("blive", block.live), ("bheld", True), ("bsize", block.size),
                            ("bpages", len(block.frames)), ("bprotect", block.protect),
                            ("brefs", brefs.get(b, 0) if block.refs is None else block.refs)):
            put(name, b, value)
        for k, frame in enumerate(block.frames):
            put("bframe", b, k, frame)
            for name, value in (("kind", SHM), ("src", b), ("idx", k)):
                put(name, frame, value)
    for f, file in sorted(files.items()):
        put("fpages", f, file.pages)
        put("fwritable", f, file.writable)
        for k, token in sorted(file.data.items()):
            put("fdata", f, k, token)
    for (f, k), page in sorted(cache.items()):
        put("cached", f, k, True)
        put("cframe", f, k, page.frame)
        put("dirty", f, k, page.dirty)
        for name, value in (("kind", FILE), ("src", f), ("idx", k)):
            put(name, page.frame, value)
    refs: dict[int, int] = {}
    for (pid, vpn), pte in sorted(ptes.items()):
        slot = refs.get(pte.frame, 0)
        refs[pte.frame] = slot + 1
        put("vframe", pid, vpn, pte.frame)
        put("pte_writable", pid, vpn, pte.writable)
        put("vslot", pid, vpn, slot)
        put("slot_pid", pte.frame, slot, pid)
        put("slot_vpn", pte.frame, slot, vpn)
    for frame, count in sorted(refs.items()):
        put("refs", frame, count)
    for frame, token in sorted(memory.items()):
        put("mdata", frame, token)
    return SharedState(**a)


def violated(s: SharedState, timeout_ms: int = 10000) -> list[str]:
    """The invariants a concrete state breaks (an undecided one counts as broken)."""
    return refuted(INVARIANTS, s, timeout_ms)
