"""The shared-memory and file-view spec checked on every step of hypothesis runs.

A RuleBasedStateMachine drives one MemorySubsystem (8 MB) with up to three
processes and three file nodes (a DiskFileNode, a real file in a temporary
directory, of 10040 bytes: a partial last page; MemoryFileNodes of 8192
bytes and of 300 bytes, read-only; plus an empty node and an object that is
not a node): CreateSharedMemory (bad sizes and permissions too),
MapSharedMemoryToProcess (live, destroyed and bogus ids; address 0, a free
64 KB-aligned one, an occupied one, unaligned ones, one past user space;
protect None, each view protection, wider than the block, invalid; a space
whose process was destroyed), UnmapSharedMemoryFromProcess,
DestroySharedMemory, GetSharedMemorySize, MapFileToMemory (after switching
to the process; offsets and sizes unaligned, past the end, 0),
UnmapFileFromMemory, SyncMappedFile (with and without invalidate), user
writes and reads of one view page in any process, DestroyProcess without
unmapping, CreateProcess and SwitchProcess, VirtualProtect,
VirtualAlloc(MEM_COMMIT) and mprotect of pages of a view (within the view's
access or beyond it; the Windows calls past its end or with PAGE_WRITECOPY),
munmap of a whole view, and of its first pages, its last pages (with the
free page after them) or a middle page, which cuts it into pieces
(model/linux_mm.py; the spec's SyscallMunmap step, issue 15), or
mmap(MAP_FIXED) of private pages over the same range, which cuts it the same
way; the pieces are then used as views of their own by every rule.
After every call
:class:`SharedHarness` checks

1. every invariant of spec.shared_memory on the abstraction of the
   post-state (proofs.abstractions.shared_memory; cached per snapshot);
2. the transition: the spec's step from the abstraction of the pre-state,
   with the call's arguments and the model's choices (the id it chose, the
   frames it took as ``pick``, where it placed the view, ``occupied``: the
   range overlaps a private allocation, ``oom``: the frames it needed
   exceeded the free count), must report the model's status and result, its
   ``assume`` must hold, and on success its post-state must equal the
   abstraction of the model's post-state on every observable field
   (``TRANSITION``). The spec's step claims (SHM-2D, SHM-2U, SHM-2M, MMF-1S,
   MMF-1U, MMF-1M, MMF-2W) are checked on the model's own transition (its status and
   post-state), so a model that breaks them is named by the claim. Process
   exit is the Unmap steps of the process's views in the order the model
   detaches them, each checked (with its claims) from the model's state
   before it to the one after it: the harness snapshots the layer after each
   manager's ``detach``; the last snapshot must be the post-state. A munmap
   is checked the same way: the whole view's Unmap step, or the
   SyscallMunmap step of its part (snapshot after the manager's
   ``unmap_pages``). CreateProcess and SwitchProcess leave this layer as it
   was;
3. a failed call changes nothing (``UNCHANGED``): processes, PTEs, frames,
   memory, the managers' records and the nodes' bytes;
4. every page of every view reads, in every process that maps it, what the
   machine's own shadow says (``CONTENTS``): per (block, page), per cached
   (file, page), loaded from the machine's record of the file's bytes;
5. at the end of every example, every process is destroyed (no unmap): each
   node then holds the last bytes written below its end (``NOTHING_LOST``);
   after the live blocks are destroyed the free frame count is back at its
   value before the first process (``FRAMES``).

Byte-level arguments the spec leaves to its caller (its docstring) are
translated here: an address not a multiple of 4096 is vpn -1 (unaligned for
the spec), except for the Unmap calls, which take the address's vpn (any
address inside a view unmaps it: UnmapViewOfFile); a file view of bytes past
the end of the file gets count 0 (the spec's ERROR_ACCESS_DENIED); a file
offset that is not page aligned is ERROR_MAPPED_ALIGNMENT once every check
the spec makes before the page range passed (checked with the range of page
0). UnmapFileFromMemory /
SyncMappedFile with no current process are pid 0 (the spec's and the model's
ERROR_NOT_READY); Unmap with the space of a destroyed process passes its
status (ERROR_INVALID_HANDLE).

Rules draw valid arguments most of the time and spoil one of them in the
rest (``FAULT``), so that most calls reach their success path; at most
MAX_BLOCKS held blocks and MAX_VIEWS views exist at once. A check that
fails ends the example without the end-of-example checks (hypothesis runs
the teardown in a ``finally``: its failure would hide the first one).

Costs (CPU, 2-core machine, beside another z3 run): a state's invariants
~0.1-0.3 s of z3 (VMM-1 most of it, decided conjunct by conjunct), a
transition ~10-30 ms, so verdicts are cached per snapshot; an example of
40 steps ~1.3-2 s. See QUICK_EXAMPLES and FULL_EXAMPLES for the budgets.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import initialize, precondition, rule

from model.mapped_files import FileView, MemoryMappedFiles
from model.page_manager import PageManager
from model.process_memory import ProcessMemorySpace
from model.shared_memory import SharedMemoryManager
from model.syscalls import SystemCalls
from model.user_layout import page_ceil
from model.views import narrows
from proofs.abstractions.shared_memory import (
    Tokens,
)
from proofs.machines.runner import (
    Budget,
    CheckedMachine,
    ModelVariant,
    machine_obligation,
    run_machine,
)
from proofs.machines.shared_memory_harness import (
    BAD_PROTECTIONS,
    FIXED_AREA,
    FRAMES,
    MAX_BLOCKS,
    MAX_PROCESSES,
    MAX_VIEWS,
    NODES,
    NOTHING_LOST,
    VIEW_PROTECTIONS,
    SharedHarness,
    make_subsystem,
)
from proofs.obligation import Obligation, Verdict
from spec.abi import (
    ALLOCATION_GRANULARITY,
    PAGE_EXECUTE,
    PAGE_EXECUTE_READ,
    PAGE_EXECUTE_READWRITE,
    PAGE_NOACCESS,
    PAGE_READONLY,
    PAGE_READWRITE,
    PAGE_SIZE,
    PROT_EXEC,
    PROT_READ,
    PROT_WRITE,
    USER_TOP,
)
from spec.shared_memory import FILE, SHM

#: The six page protections VirtualProtect takes, and one it does not.
PAGE_PROTECTIONS = (PAGE_READONLY, PAGE_NOACCESS, PAGE_READWRITE, PAGE_EXECUTE,
                    PAGE_EXECUTE_READ, PAGE_EXECUTE_READWRITE)
PAGE_WRITECOPY = 0x08

#: Hypothesis budget per profile: in the quick profile 3 examples of 16 steps
#: (derandomized: 3 measured 3.7 s of CPU; 4 made hypothesis run 7, 6.2 s); in the
#: full one 90 of 40 steps (100 measured 188 s of CPU, hypothesis ran 147
#: machines; 60 took 100 s). The teeth run (the broken models' tests) gets 60
#: derandomized examples: with 30, a CI run of the whole suite once went 44
#: examples without reaching a dropped write-back (``unmap_drops_dirty``); each
#: broken model stops at its first counterexample, so a caught one costs no more.
BUDGETS = {"quick": Budget(3, 16, 20.0), "full": Budget(90, 40, 60.0),
           "teeth": Budget(60, 16, 10.0)}


# -- the machine ------------------------------------------------------------------


def mostly(good: tuple[Any, ...], bad: tuple[Any, ...]) -> st.SearchStrategy[Any]:
    """A good value two times in three (hypothesis shrinks towards good[0])."""
    return st.sampled_from(good) | st.sampled_from(good) | st.sampled_from(bad)


#: 9000 first: a block of three pages has a middle page to cut (munmap_part).
GOOD_SIZES = (9000, 5000, 1, PAGE_SIZE)
BAD_SIZES = (0, -1, 1 << 32, 0x10000000)
#: Which argument a rule spoils (None: every argument is valid), half the time.
FAULT = st.sampled_from((None, None, None, None, None, None, "a", "b", "c", "d"))


class SharedMachine(CheckedMachine):
    """Blocks and file views in up to three processes, with writes and reads."""

    tokens: Tokens

    def __init__(self) -> None:
        super().__init__()
        cls = type(self)
        cls.examples += 1
        if "tokens" not in cls.__dict__:  # one interner per run (its cache's keys)
            cls.tokens = Tokens()
        self.h = SharedHarness(cls)

    def teardown(self) -> None:
        try:
            if not self.h.failed:
                self.h.finish()
        finally:
            self.h.directory.cleanup()

    # -- targets --------------------------------------------------------------------

    def pids(self) -> list[int]:
        return sorted(self.h.sub.syscalls.processes)

    def view_bases(self, pid: int, kind: int | None = None) -> list[int]:
        return sorted(base for (p, base), record in self.h.views.items()
                      if p == pid and kind in (None, record.kind))

    def has_views(self, kind: int) -> bool:
        return any(record.kind == kind for record in self.h.views.values())

    def holder(self, data: st.DataObject, kind: int) -> int:
        """Mostly a process with a view of this kind, else any process."""
        holders = tuple(sorted({pid for (pid, _), record in self.h.views.items()
                                if record.kind == kind}))
        return int(data.draw(mostly(holders, tuple(self.pids()))))

    def address(self, data: st.DataObject, pid: int, kind: int) -> int:
        """Mostly the base of one of pid's views of this kind; else another view's
        base, a page inside a view, an unaligned address inside it or a free one
        (an unmap of the two inside succeeds: UnmapViewOfFile; a sync fails)."""
        bases = self.view_bases(pid, kind)
        bogus = [FIXED_AREA, *self.view_bases(pid), *(base + offset for base in bases[:1]
                                                      for offset in (PAGE_SIZE, 5))]
        return int(data.draw(mostly(tuple(bases), tuple(bogus)) if bases
                             else st.sampled_from(bogus)))

    # -- processes -------------------------------------------------------------------

    @initialize()
    def start(self) -> None:
        """Two processes, the second current."""
        self.create_process()
        self.create_process()

    @precondition(lambda self: len(self.h.sub.syscalls.processes) < MAX_PROCESSES)
    @rule()
    def create_process(self) -> None:
        pid = self.h.processes("CreateProcess")
        if pid:
            self.h.processes("SwitchProcess", pid)

    @precondition(lambda self: bool(self.h.sub.syscalls.processes))
    @rule(data=st.data(), destroy=st.sampled_from((False, False, True)))
    def switch_or_destroy(self, data: st.DataObject, destroy: bool) -> None:
        """SwitchProcess, or DestroyProcess without unmapping anything."""
        pid = data.draw(st.sampled_from(self.pids()))
        self.h.processes("DestroyProcess" if destroy else "SwitchProcess", pid)

    # -- shared memory -----------------------------------------------------------------

    def room(self) -> bool:
        return len(self.h.views) < MAX_VIEWS

    @precondition(lambda self: len(self.h.sub.shared_memory.blocks) < MAX_BLOCKS)
    @rule(size=st.sampled_from(GOOD_SIZES), permissions=st.sampled_from(VIEW_PROTECTIONS),
          fault=FAULT, bad=st.integers(0, 3),
          maps=st.lists(st.tuples(st.integers(0, 2), st.sampled_from((None,
                                                                      *VIEW_PROTECTIONS))),
                        max_size=2))
    def create_block(self, size: int, permissions: int, fault: str | None, bad: int,
                     maps: list[tuple[int, int | None]]) -> None:
        """CreateSharedMemory (a: a bad size, b: bad permissions), then a view in the
        maps' processes (by index) at 0."""
        if fault == "a":
            size = BAD_SIZES[bad]
        elif fault == "b":
            permissions = BAD_PROTECTIONS[bad % len(BAD_PROTECTIONS)]
        shm_id = self.h.create(size, permissions)
        pids = self.pids()
        for pick, protect in maps if shm_id and pids and self.room() else ():
            self.h.map_block(self.h.sub.syscalls.processes[pids[pick % len(pids)]], shm_id, 0,
                             protect)

    def block_ids(self) -> list[int]:
        """Destroyed-but-mapped, freed and bogus ids."""
        shm = self.h.sub.shared_memory
        return [*(i for i in sorted(shm.blocks) if shm.blocks[i].destroyed),
                shm.next_shm_id, shm.next_shm_id - 1, 0, 999]

    @precondition(lambda self: self.room() and bool(self.h.sub.syscalls.processes))
    @rule(data=st.data(), protect=st.sampled_from((None, *VIEW_PROTECTIONS)),
          where=st.sampled_from(("0", "free", "0")), fault=FAULT)
    def map_block(self, data: st.DataObject, protect: int | None, where: str,
                  fault: str | None) -> None:
        """MapSharedMemoryToProcess of a live block (created first when there is
        none) at 0 or a free 64 KB-aligned address (any view protection: some are
        wider than the block); a: the space of a destroyed process, b: a destroyed
        or bogus id, c: a bad protection, d: an occupied, unaligned, the highest or
        a too high address."""
        spaces = [self.h.sub.syscalls.processes[pid] for pid in self.pids()]
        space = data.draw(st.sampled_from(spaces))
        if fault == "a" and self.h.stale:
            space = self.h.stale[-1]
        live = sorted(self.h.live_blocks)
        if fault != "b" and not live and len(self.h.sub.shared_memory.blocks) < MAX_BLOCKS:
            live = [self.h.create(data.draw(st.sampled_from(GOOD_SIZES)),
                                  data.draw(st.sampled_from(VIEW_PROTECTIONS)))]
        shm_id = data.draw(st.sampled_from(self.block_ids() if fault == "b" or not live
                                           else live))
        if fault == "c":
            protect = data.draw(st.sampled_from(BAD_PROTECTIONS))
        address = 0 if where == "0" else FIXED_AREA + 0x100000 * data.draw(st.integers(0, 2))
        if fault == "d":
            occupied = [*self.view_bases(space.pid), *sorted(space.allocations)[-1:]]
            address = data.draw(st.sampled_from((*occupied, FIXED_AREA + PAGE_SIZE,
                                                 FIXED_AREA + 5, USER_TOP,
                                                 USER_TOP - ALLOCATION_GRANULARITY)))
        self.h.map_block(space, shm_id, address, protect)

    @precondition(lambda self: self.has_views(SHM))
    @rule(data=st.data(), stale=st.sampled_from((False, False, False, True)))
    def unmap_block(self, data: st.DataObject, stale: bool) -> None:
        """UnmapSharedMemoryFromProcess of a view (stale: with the space of a
        destroyed process, the model's ERROR_INVALID_HANDLE), or munmap of it."""
        pid = self.holder(data, SHM)
        address = self.address(data, pid, SHM)
        if not stale and self.munmapped(data, pid, address):
            return
        space = self.h.stale[-1] if stale and self.h.stale else \
            self.h.sub.syscalls.processes[pid]
        self.h.unmap_block(space, address)

    def munmapped(self, data: st.DataObject, pid: int, address: int) -> bool:
        """A quarter of the unmaps of a view's base are munmap of the whole view (and
        the free page after it)."""
        record = self.h.views.get((pid, address))
        if record is None or not data.draw(st.sampled_from((False, False, False, True))):
            return False
        self.h.munmap(pid, address)
        return True

    @precondition(lambda self: any(record.pages > 1 for record in self.h.views.values()))
    @rule(data=st.data(), where=st.sampled_from(("middle", "front", "end")),
          other=st.booleans())
    def munmap_part(self, data: st.DataObject, where: str, other: bool) -> None:
        """munmap of part of a view (or of a piece of one), which cuts it into pieces
        (model/linux_mm.py; the spec's SyscallMunmap): its first page(s), its last
        page(s), or a middle page (a view of two pages: its last); mostly of a view
        with a middle. other: the last pages with the free page after them, and the
        first pages by mmap(MAP_FIXED) of private pages instead, which cuts the view
        the same way (one flag for both: a draw more would change the derandomized
        teeth run's examples, which catch unmap_drops_dirty narrowly)."""
        keys = {pages: tuple(sorted(key for key, record in self.h.views.items()
                                    if record.pages >= pages)) for pages in (2, 3)}
        key = data.draw(mostly(keys[3], keys[2]) if keys[3] else st.sampled_from(keys[2]))
        pages = self.h.views[key].pages
        if where == "front":
            low, high = 0, data.draw(st.integers(1, pages - 1))
        elif where == "end" or pages < 3:
            low, high = data.draw(st.integers(1, pages - 1)), pages
        else:
            low = data.draw(st.integers(1, pages - 2))
            high = low + 1
        self.h.munmap(key[0], key[1], (low, high - low), past=other and high == pages,
                      fixed=other and where == "front")

    @precondition(lambda self: bool(self.h.sub.shared_memory.blocks))
    @rule(data=st.data(), size=st.booleans(), fault=st.sampled_from((False, False, True)))
    def destroy_or_size(self, data: st.DataObject, size: bool, fault: bool) -> None:
        """DestroySharedMemory or GetSharedMemorySize of a live block (fault: of a
        destroyed or bogus id)."""
        live = sorted(self.h.live_blocks)
        shm_id = data.draw(st.sampled_from(self.block_ids() if fault or not live else live))
        if size:
            self.h.block_size(shm_id)
        else:
            self.h.destroy_block(shm_id)

    # -- files -------------------------------------------------------------------------

    @precondition(lambda self: self.room() and bool(self.h.sub.syscalls.processes))
    @rule(data=st.data(), index=st.sampled_from(range(len(NODES))), fault=FAULT,
          switch=st.sampled_from((True, True, True, False)))
    def map_file(self, data: st.DataObject, index: int, fault: str | None,
                 switch: bool) -> None:
        """MapFileToMemory (after SwitchProcess, mostly) of pages of a node, to the end
        (size 0), one byte, one page or the rest; a: the empty node or no node, b: an
        unaligned offset or one past the end, c: a size past the end, d: a protection
        that is invalid or writable on the read-only node."""
        if switch:
            self.h.processes("SwitchProcess", data.draw(st.sampled_from(self.pids())))
        length, writable = NODES[index]
        offset = data.draw(st.integers(0, (length - 1) // PAGE_SIZE)) * PAGE_SIZE
        rest = length - offset
        size = data.draw(st.sampled_from((0, 1, min(PAGE_SIZE, rest), rest)))
        protections = VIEW_PROTECTIONS if writable else (PAGE_READONLY, PAGE_EXECUTE_READ)
        protection = data.draw(st.sampled_from(protections))
        if fault == "a":
            index = data.draw(st.sampled_from((len(NODES), len(NODES) + 1)))
        elif fault == "b":
            offset = data.draw(st.sampled_from((offset + 100, page_ceil(length))))
        elif fault == "c":
            size = data.draw(st.sampled_from((rest + 1, 0x10000)))
        elif fault == "d":
            protection = data.draw(st.sampled_from((0x08, PAGE_NOACCESS) if writable
                                                   else (PAGE_READWRITE, 0x08)))
        self.h.map_file(index, offset, size, protection)

    @precondition(lambda self: self.has_views(FILE))
    @rule(data=st.data(), sync=st.booleans(), invalidate=st.booleans())
    def unmap_or_sync_file(self, data: st.DataObject, sync: bool, invalidate: bool) -> None:
        """UnmapFileFromMemory or SyncMappedFile of a view, mostly in its process (made
        current); else in whatever process is current, or none (ERROR_NOT_READY); or
        munmap of it."""
        pid = self.holder(data, FILE)
        address = self.address(data, pid, FILE)
        if not sync and self.munmapped(data, pid, address):
            return
        if data.draw(st.sampled_from((True, True, True, False))):
            self.h.processes("SwitchProcess", pid)
        self.h.unmap_file(address, sync, invalidate)

    # -- accesses ----------------------------------------------------------------------

    @precondition(lambda self: bool(self.h.views))
    @rule(data=st.data(), offset=st.sampled_from((0, 7, 1000, 2000, 4090)),
          value=st.binary(min_size=1, max_size=8), read=st.sampled_from((False, False, True)),
          then=st.sampled_from((None, None, "sync", "invalidate", "unmap")))
    def access(self, data: st.DataObject, offset: int, value: bytes, read: bool,
               then: str | None) -> None:
        """A user write (mostly through a writable view; a read-only one refuses it)
        or a read of one view page (a third of the reads: a protection call,
        :meth:`protect`, a rule of its own would dilute the others);
        after a write to a file view, then: SyncMappedFile (with invalidate) or
        UnmapFileFromMemory of that view in its process."""
        if read and data.draw(st.sampled_from((False, False, True))):
            self.protect(data)
            return
        writable = tuple(key for key, record in sorted(self.h.views.items())
                         if record.writable)
        views = tuple(sorted(self.h.views))
        pid, base = data.draw(st.sampled_from(views) if read or not writable
                              else mostly(writable, views))
        record = self.h.views[(pid, base)]
        page = data.draw(st.integers(0, record.pages - 1))
        self.h.access(pid, base, page, offset, None if read else value)
        if not read and then is not None and record.kind == FILE:
            self.h.processes("SwitchProcess", pid)
            self.h.unmap_file(base, then != "unmap", then == "invalidate")


    def protect(self, data: st.DataObject) -> None:
        """VirtualProtect, VirtualAlloc(MEM_COMMIT) or mprotect of pages of one view:
        any of the six protections (PROT_* combinations), some beyond the view's own
        (a file view refuses every commit); a quarter of the Windows calls past the
        view's end, or with PAGE_WRITECOPY or 0 (mprotect ranges stay inside the view:
        one past it is the user layer's partial change)."""
        pid, base = data.draw(st.sampled_from(tuple(sorted(self.h.views))))
        record = self.h.views[(pid, base)]
        page = data.draw(st.integers(0, record.pages - 1))
        count = data.draw(st.integers(1, record.pages - page))
        if data.draw(st.booleans()):
            value = data.draw(st.integers(0, PROT_READ | PROT_WRITE | PROT_EXEC))
            self.h.protect(pid, base, page, count, value, "SyscallMprotect")
            return
        value = data.draw(st.sampled_from(PAGE_PROTECTIONS))
        if data.draw(st.sampled_from((False, False, False, True))):
            if data.draw(st.booleans()):
                count += 1
            else:
                value = data.draw(st.sampled_from((0, PAGE_WRITECOPY)))
        op = data.draw(st.sampled_from(("VirtualProtect", "VirtualAlloc")))
        self.h.protect(pid, base, page, count, value, op)


def run_shared_machine(profile: str, patches: Mapping[str, object] | None = None, *,
                       max_examples: int | None = None,
                       shrink_seconds: float | None = None) -> Verdict:
    """Run the machine; ``patches`` maps "Class.method" of the model classes
    involved to a replacement (restored afterwards)."""
    owners = {cls.__name__: cls for cls in (SharedMemoryManager, MemoryMappedFiles,
                                            ProcessMemorySpace, SystemCalls, PageManager)}
    return run_machine(SharedMachine, profile, BUDGETS, patches, owners, max_examples=max_examples,
                       shrink_seconds=shrink_seconds)


# -- broken models ------------------------------------------------------------------

_MAP_BLOCK, _FILE_DETACH, _FILE_UNMAP = (SharedMemoryManager.MapSharedMemoryToProcess,
                                         MemoryMappedFiles.detach,
                                         MemoryMappedFiles.UnmapFileFromMemory)
_BLOCK_UNMAP_PAGES = SharedMemoryManager.unmap_pages


def _unmap_keeps_refcount(self: SharedMemoryManager, space: ProcessMemorySpace,
                          base: int) -> None:
    """detach without the refcount decrement: (pid, base) stays in the block's
    mappings, so a destroyed block never frees its frames."""
    self.views.pop((space.pid, base))
    space.unmap_view(base)


def _split_not_counted(self: SharedMemoryManager, space: ProcessMemorySpace, base: int,
                       start: int, end: int) -> None:
    """unmap_pages that cuts a block view in its middle but leaves the right piece out
    of the block's mappings (shm_nattch not raised at the split): the block counts
    one piece too few (SHM-1)."""
    _BLOCK_UNMAP_PAGES(self, space, base, start, end)
    right = (space.pid, end)
    if start > base and right in self.views:
        self.blocks[self.views[right]].mappings.discard(right)


def _sync_skips_last_page(self: MemoryMappedFiles, addr: int,
                          invalidate: bool = False) -> bool:
    """SyncMappedFile whose write-back stops one page early."""
    space = self._space_with_view(addr) if type(invalidate) is bool else None
    if space is None:
        return False
    view = self.views[(space.pid, addr)]
    short = FileView(view.file, view.first, view.count - 1, view.protect)
    self._store(short, self._dirty(short))
    return self._ok(True)


def _store_nothing(self: MemoryMappedFiles, view: FileView, indexes: list[int]
                   ) -> dict[int, int]:
    """_store that marks the pages clean without writing them."""
    self._clean(view, indexes)
    return {}


@contextlib.contextmanager
def _dropping_dirty() -> Iterator[None]:
    store = MemoryMappedFiles._store
    MemoryMappedFiles._store = _store_nothing  # type: ignore[method-assign]
    try:
        yield
    finally:
        MemoryMappedFiles._store = store  # type: ignore[method-assign]


def _detach_drops_dirty(self: MemoryMappedFiles, space: ProcessMemorySpace, base: int) -> None:
    """detach (process exit) that writes nothing back."""
    with _dropping_dirty():
        _FILE_DETACH(self, space, base)


def _unmap_drops_dirty(self: MemoryMappedFiles, addr: int) -> bool:
    """UnmapFileFromMemory that writes nothing back."""
    with _dropping_dirty():
        return _FILE_UNMAP(self, addr)


def _map_widens_protection(self: SharedMemoryManager, space: ProcessMemorySpace, shm_id: int,
                           virtual_addr: int, protect: int | None = None) -> int:
    """MapSharedMemoryToProcess without the narrowing check: a read-write view of a
    read-only block."""
    block = self._live(shm_id)
    if block is None or protect is None or narrows(protect, block.permissions):
        return _MAP_BLOCK(self, space, shm_id, virtual_addr, protect)
    saved = block.permissions
    block.permissions = PAGE_EXECUTE_READWRITE
    try:
        return _MAP_BLOCK(self, space, shm_id, virtual_addr, protect)
    finally:
        block.permissions = saved


SHARED_MODEL_VARIANTS = (
    # the abstraction takes brefs from the model's own refcount (the block's
    # mappings): after the unmap it exceeds the frames' mappings (SHM-1); a
    # destroyed block then keeps its frames with no view left (SHM-2, FRAMES)
    ModelVariant("unmap_keeps_refcount", ("SHM-1", "SHM-2", FRAMES),
                 {"SharedMemoryManager.detach": _unmap_keeps_refcount}),
    ModelVariant("sync_skips_last_page", ("MMF-1S", NOTHING_LOST),
                 {"MemoryMappedFiles.SyncMappedFile": _sync_skips_last_page}),
    ModelVariant("unmap_drops_dirty", ("MMF-1U", NOTHING_LOST),
                 {"MemoryMappedFiles.detach": _detach_drops_dirty,
                  "MemoryMappedFiles.UnmapFileFromMemory": _unmap_drops_dirty}),
    ModelVariant("rw_view_of_readonly_block", ("SHM-3",),
                 {"SharedMemoryManager.MapSharedMemoryToProcess": _map_widens_protection}),
    ModelVariant("split_not_counted", ("SHM-1",),
                 {"SharedMemoryManager.unmap_pages": _split_not_counted}),
)

def obligations() -> Iterator[Obligation]:
    yield machine_obligation("shared_memory.machine.refinement", "shared_memory",
                             run_shared_machine)


__all__ = ["SHARED_MODEL_VARIANTS", "SharedHarness", "SharedMachine", "make_subsystem",
           "obligations", "run_shared_machine"]
