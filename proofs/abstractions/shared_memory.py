"""The abstraction of the model's shared memory and file views into spec.shared_memory.

``shared_snapshot`` reads one MemorySubsystem as plain, hashable data (the
verdict caches' key): the arguments of the spec's ``concrete_shared``.
``concrete_state`` is that function's state; ``to_shared_state`` encodes the
same arrays as piecewise lambdas over runs (consecutive pages of a view,
consecutive frames of a block or of a PTE run), as proofs/abstractions/user_space.py
does for the user layer: z3 decides VMM-1 over a dozen views three to four
times faster so. A test checks the two encodings agree field by field.
What the snapshot reads:

- blocks: every block of SharedMemoryManager.blocks (held: live, or
  destroyed but mapped), live = not destroyed;
- files: every node MemoryMappedFiles has given an id (``files``), plus the
  ``extra`` nodes the caller names with the id they would get (a node's
  first MapFileToMemory: the pre-state must hold the file the spec maps);
  pages = page_ceil(length) / 4096;
- cache: (file id, page) -> CacheView(frame, MemoryMappedFiles.is_dirty);
- views: the managers' records, keyed by (pid, base vpn), a piece of a view
  (munmap over part of one, issue 15) as a view of its own: a block piece's
  first page is SharedMemoryManager.firsts' (vm_pgoff), its count its
  allocation's pages; a block view's protection is its allocation's
  allocation_protect; each page's own
  protection is its page record's (VirtualProtect / mprotect change it);
- ptes: the PTE of every view page that has a present one, the page record's
  frame (not writable) for a view page without one (a PAGE_NOACCESS page: its
  frame stays mapped, as Linux's rmap counts a PROT_NONE PTE), and every
  other present user PTE mapping a SHARED frame (a PTE left behind shows up);
- memory: the token of every frame the PageManager owns as SHARED.

Tokens (spec.shared_memory: "equal tokens = equal 4096 bytes"): ``Tokens``
interns each page's bytes to an int, zeros to the spec's ZERO; one interner
serves the pre- and post-states of every call. Decision: a file page's
token, in the file and in its cache frame alike, is made of the bytes below
the end of the file, the rest read as zeros. Write-back stores only those
bytes (a mapping never extends its file: model/file_node.py, mmap(2)), so
bytes written past the end into the last page's frame are not the file's:
with a token of all 4096 bytes, MMF-1 ("a clean cached page holds the file's
bytes") would be false after every sync of such a page. The machine's own
shadow keeps those bytes, so what the token leaves out is still checked
(CONTENTS).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from typing import NamedTuple

import z3

from model.file_node import FileNode
from model.memory_subsystem import MemorySubsystem
from model.process_memory import ProcessMemorySpace
from model.user_layout import page_ceil
from spec.abi import (
    PAGE_SHIFT,
    PAGE_SIZE,
    PTE_PRESENT,
    PTE_WRITABLE,
    USER_END_VPN,
    USER_FIRST_VPN,
    FrameOwner,
)
from spec.shared_memory import (
    FILE,
    SHM,
    ZERO,
    BlockView,
    CacheView,
    FileView,
    PteView,
    SharedState,
    ViewRecord,
    concrete_shared,
    empty_shared,
)
from spec.state import Ref

ZERO_PAGE = bytes(PAGE_SIZE)


class Tokens:
    """Page contents -> Int tokens: equal bytes, equal tokens; zeros are ZERO."""

    def __init__(self) -> None:
        self.known: dict[bytes, int] = {ZERO_PAGE: ZERO}

    def of(self, page: bytes) -> int:
        """The token of a page's bytes (shorter than a page: padded with zeros)."""
        page = bytes(page).ljust(PAGE_SIZE, b"\0")
        token = self.known.get(page)
        if token is None:
            token = self.known[page] = len(self.known)
        return token


def file_page(data: bytes | bytearray, length: int, index: int) -> bytes:
    """The bytes of page index of a file of length bytes as a token sees them:
    those below the end of the file, zeros after."""
    return bytes(data[:max(0, min(PAGE_SIZE, length - index * PAGE_SIZE))]).ljust(
        PAGE_SIZE, b"\0")


class SharedSnapshot(NamedTuple):
    """concrete_shared's arguments as sorted tuples (hashable)."""

    blocks: tuple[tuple[int, BlockView], ...]
    files: tuple[tuple[int, int, bool, tuple[int, ...]], ...]  # (id, pages, writable, tokens)
    cache: tuple[tuple[tuple[int, int], CacheView], ...]
    views: tuple[tuple[tuple[int, int], ViewRecord], ...]
    ptes: tuple[tuple[tuple[int, int], PteView], ...]
    memory: tuple[tuple[int, int], ...]
    nframes: int


def frame_bytes(sub: MemorySubsystem, frame: int) -> bytes:
    page = sub.pageman.memory.get(frame)
    return ZERO_PAGE if page is None else bytes(page)


def user_ptes(space: ProcessMemorySpace) -> Iterator[tuple[int, int]]:
    """(vpn, entry) of every present PTE of the space's user tables."""
    directory = space.page_dir
    if directory is None:
        return
    for slot in range(USER_FIRST_VPN >> 10, USER_END_VPN >> 10):
        table = directory.tables[slot]
        if table is None:
            continue
        for index, entry in enumerate(table.entries):
            if entry & PTE_PRESENT:
                yield (slot << 10) | index, entry


def page_protections(space: ProcessMemorySpace | None, first: int,
                     count: int) -> tuple[int, ...]:
    """The protection of each page of [first, first + count) in space (0 for a page
    without a record: the view's pages always have one in a sound model)."""
    if space is None:
        return ()
    pages = space.pages
    return tuple(record.protect if (record := pages.get(vpn)) is not None else 0
                 for vpn in range(first, first + count))


def shared_snapshot(sub: MemorySubsystem, tokens: Tokens,
                    extra: Mapping[int, FileNode] | None = None) -> SharedSnapshot:
    """The snapshot of sub's shared memory, files, page cache and views."""
    shm, mmf, pm = sub.shared_memory, sub.mapped_files, sub.pageman
    processes = sub.syscalls.processes
    blocks = tuple((shm_id, BlockView(not block.destroyed, block.size, block.permissions,
                                      tuple(block.frames), len(block.mappings)))
                   for shm_id, block in sorted(shm.blocks.items()))
    nodes = {**(extra or {}), **mmf.files}
    lengths = {file_id: node.length() for file_id, node in nodes.items()}
    files = []
    for file_id, node in sorted(nodes.items()):
        length = lengths[file_id]
        pages = page_ceil(length) >> PAGE_SHIFT
        files.append((file_id, pages, bool(node.writable), tuple(
            tokens.of(file_page(node.read(k * PAGE_SIZE, PAGE_SIZE), length, k))
            for k in range(pages))))
    cache = tuple(((file_id, index), CacheView(page.frame, mmf.is_dirty(page)))
                  for (file_id, index), page in sorted(mmf.cache.items()))
    cached = {page.frame: (file_id, index) for (file_id, index), page in mmf.cache.items()}
    views: dict[tuple[int, int], ViewRecord] = {}
    for (pid, base), shm_id in shm.views.items():
        space = processes.get(pid)
        allocation = None if space is None else space.allocations.get(base)
        first = shm.firsts.get((pid, base), 0)
        count = len(shm.blocks[shm_id].frames) - first if allocation is None \
            else allocation.size >> PAGE_SHIFT
        views[(pid, base >> PAGE_SHIFT)] = ViewRecord(
            SHM, shm_id, first, count,
            0 if allocation is None else allocation.allocation_protect,
            page_protections(space, base >> PAGE_SHIFT, count))
    for (pid, base), view in mmf.views.items():
        views[(pid, base >> PAGE_SHIFT)] = ViewRecord(
            FILE, view.file, view.first, view.count, view.protect,
            page_protections(processes.get(pid), base >> PAGE_SHIFT, view.count))
    ptes: dict[tuple[int, int], PteView] = {}
    for pid, space in processes.items():
        viewed = {vpn for (p, base), view in views.items() if p == pid
                  for vpn in range(base, base + view.count)}
        for vpn in sorted(viewed):
            record = space.pages.get(vpn)
            if record is not None and record.frame is not None:
                ptes[(pid, vpn)] = PteView(record.frame, False)
        for vpn, entry in user_ptes(space):
            frame = entry >> PAGE_SHIFT
            if vpn in viewed or (frame < pm.nframes and pm.owner[frame] == FrameOwner.SHARED):
                ptes[(pid, vpn)] = PteView(frame, bool(entry & PTE_WRITABLE))
    memory = []
    for frame, owner in enumerate(pm.owner):
        if owner != FrameOwner.SHARED:
            continue
        data = frame_bytes(sub, frame)
        if frame in cached:
            file_id, index = cached[frame]
            data = file_page(data, lengths.get(file_id, PAGE_SIZE * (index + 1)), index)
        memory.append((frame, tokens.of(data)))
    return SharedSnapshot(blocks, tuple(files), cache, tuple(sorted(views.items())),
                          tuple(sorted(ptes.items())), tuple(memory), pm.nframes)


def concrete_state(snap: SharedSnapshot) -> SharedState:
    """The spec state of a snapshot by the contract's concrete_shared (a Store per
    entry): the reference ``to_shared_state`` is tested against."""
    files = {file_id: FileView(pages, writable, dict(enumerate(data)))
             for file_id, pages, writable, data in snap.files}
    return concrete_shared(dict(snap.blocks), files, dict(snap.cache), dict(snap.views),
                           dict(snap.ptes), dict(snap.memory), snap.nframes)


class Run(NamedTuple):
    """Keys [first, first + length) (of pid, or frames when pid is None) whose value
    is ``value``, or ``value`` + (key - first) when ``step``."""

    pid: int | None
    first: int
    length: int
    value: tuple[int, ...]
    step: tuple[bool, ...]


def runs(entries: Sequence[tuple[int | None, int, tuple[int, ...]]],
         step: tuple[bool, ...]) -> list[Run]:
    """Maximal runs of consecutive keys over sorted (pid, key, value) entries: the
    fields marked in step grow by one per key, the others are equal."""
    out: list[Run] = []
    for pid, key, value in sorted(entries, key=lambda e: (e[0] or 0, e[1])):
        if out:
            last = out[-1]
            offset = key - last.first
            if last.pid == pid and offset == last.length and value == tuple(
                    v + offset if grows else v for v, grows in zip(last.value, step,
                                                                    strict=True)):
                out[-1] = last._replace(length=last.length + 1)
                continue
        out.append(Run(pid, key, 1, value, step))
    return out


class Pieces:
    """If-chains over runs (their conditions built once, shared by every field)."""

    def __init__(self, key: Ref, runs_: list[Run], pid: Ref | None = None) -> None:
        self.key, self.runs = key, runs_
        self.inside = []
        for run in runs_:
            inside = z3.And(run.first <= key, key < run.first + run.length)
            self.inside.append(inside if pid is None else z3.And(pid == run.pid, inside))

    def field(self, index: int, default: int | bool = 0) -> Ref:
        """The If-chain of field ``index`` of the runs at key (and pid)."""
        term = z3.BoolVal(default) if isinstance(default, bool) else z3.IntVal(default)
        for run, inside in zip(reversed(self.runs), reversed(self.inside), strict=True):
            value = run.value[index]
            piece = self.key - run.first + value if run.step[index] else value
            term = z3.If(inside, piece, term)
        return term


def to_shared_state(snap: SharedSnapshot) -> SharedState:
    """The spec state of a snapshot as piecewise lambdas over runs of pages and
    frames (equal, as arrays, to ``concrete_state``: a test checks it). z3 decides
    VMM-1 over a dozen views' Store chains in seconds, over their runs in a
    fraction of that."""
    s = empty_shared(snap.nframes)
    a: dict[str, Ref] = {field.name: getattr(s, field.name) for field in dataclasses.fields(s)}

    def put(name: str, *key_value: object) -> None:
        a[name] = z3.Store(a[name], *key_value)

    brefs = {b: 0 for b, _ in snap.blocks}
    slots: dict[tuple[int, int], int] = {}  # (pid, base) -> its block slot
    for (pid, base), view in snap.views:
        if view.kind == SHM:  # the block slots as concrete_shared numbers them
            slot = slots[(pid, base)] = brefs.get(view.source, 0)
            brefs[view.source] = slot + 1
            put("bslot_pid", view.source, slot, pid)
            put("bslot_vpn", view.source, slot, base)
    for b, block in snap.blocks:
        for name, value in (("blive", block.live), ("bheld", True), ("bsize", block.size),
                            ("bpages", len(block.frames)), ("bprotect", block.protect),
                            ("brefs", brefs.get(b, 0) if block.refs is None else block.refs)):
            put(name, b, value)
    for f, pages, writable, data in snap.files:
        put("fpages", f, pages)
        put("fwritable", f, writable)
        for k, token in enumerate(data):
            put("fdata", f, k, token)
    for (f, k), page in snap.cache:
        put("cached", f, k, True)
        put("cframe", f, k, page.frame)
        put("dirty", f, k, page.dirty)
    # frames: (kind, src, idx) and the blocks' pages
    owners = [(None, frame, (SHM, b, k)) for b, block in snap.blocks
              for k, frame in enumerate(block.frames)]
    owners += [(None, page.frame, (FILE, f, k)) for (f, k), page in snap.cache]
    owned = runs(owners, (False, False, True))
    block_pages = runs([(b, k, (frame,)) for b, block in snap.blocks
                  for k, frame in enumerate(block.frames)], (True,))
    # PTEs: frame, writable and slot per run; the slots as concrete_shared numbers them
    refs: dict[int, int] = {}
    entries = []
    for (pid, vpn), pte in snap.ptes:
        slot = refs.get(pte.frame, 0)
        refs[pte.frame] = slot + 1
        entries.append((pid, vpn, (pte.frame, int(pte.writable), slot)))
    mapped = runs(entries, (True, False, False))
    counted = runs([(None, frame, (count,)) for frame, count in refs.items()], (False,))
    view_runs = [Run(pid, base, view.count, (view.kind, view.source, view.first, base,
                                             view.protect, view.count,
                                             slots.get((pid, base), 0)),
                     (False, False, True, False, False, False, False))
                 for (pid, base), view in snap.views]
    protect_runs = runs([(pid, base + offset, (view.pages[offset] if view.pages
                                               else view.protect,))
                         for (pid, base), view in snap.views for offset in range(view.count)],
                        (False,))
    fr, i, q, w, c, k = z3.Ints("_sfr _si _sq _sw _sc _sk")
    memory: Ref = z3.IntVal(0)
    for frame, token in reversed(snap.memory):
        memory = z3.If(fr == frame, token, memory)
    slot_pid: Ref = z3.IntVal(0)
    slot_vpn: Ref = z3.IntVal(0)
    for run in reversed(mapped):
        low, _, slot = run.value
        hit = z3.And(low <= fr, fr < low + run.length, i == slot)
        slot_pid = z3.If(hit, z3.IntVal(run.pid or 0), slot_pid)
        slot_vpn = z3.If(hit, fr - low + run.first, slot_vpn)
    frames, ptes, views = Pieces(fr, owned), Pieces(w, mapped, q), Pieces(w, view_runs, q)
    a.update(
        bframe=z3.Lambda([c, k], Pieces(k, block_pages, c).field(0)),
        kind=z3.Lambda([fr], frames.field(0)), src=z3.Lambda([fr], frames.field(1)),
        idx=z3.Lambda([fr], frames.field(2)),
        refs=z3.Lambda([fr], Pieces(fr, counted).field(0)),
        mdata=z3.Lambda([fr], memory),
        slot_pid=z3.Lambda([fr, i], slot_pid), slot_vpn=z3.Lambda([fr, i], slot_vpn),
        vframe=z3.Lambda([q, w], ptes.field(0)),
        pte_writable=z3.Lambda([q, w], ptes.field(1) == 1),
        vslot=z3.Lambda([q, w], ptes.field(2)),
        vprotect=z3.Lambda([q, w], Pieces(w, protect_runs, q).field(0)),
        **{name: z3.Lambda([q, w], views.field(index))
           for index, name in enumerate(("vkind", "vsrc", "vidx", "vbase", "vaccess",
                                         "vcount", "vbslot"))})
    return SharedState(**a)


__all__ = ["Run", "SharedSnapshot", "Tokens", "concrete_state", "file_page", "frame_bytes",
           "Pieces", "page_protections", "runs", "shared_snapshot",
           "to_shared_state", "user_ptes"]
