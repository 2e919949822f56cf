"""Refinement of the spec by the model, checked on every step of hypothesis runs.

DESIGN.md, "Three layers": ``model/`` refines ``spec/``. A hypothesis
:class:`~hypothesis.stateful.RuleBasedStateMachine` drives one PageManager and
its VirtualMemoryManager through every operation of ``spec/catalogue.py``
that is not an internal micro-step, with mostly valid and sometimes hostile
arguments. At every step the :class:`Harness`

1. abstracts the pre-state (:mod:`proofs.abstractions.paging`),
2. calls the model,
3. computes the spec's :class:`~spec.step.Step` from the pre abstraction, the
   arguments and the implementation's choices, read from the model's
   post-state (the frame a new PTE maps, the table a new PDE links, the
   directory returned),
4. asks z3 to refute: the model's ``last_error`` equals the Step's status, its
   returned value equals the Step's result, the choices satisfy the Step's
   ``assume``, and the abstraction of the post-state equals ``Step.post`` on
   the real (non-ghost) fields. A failure is named ``transition``;
5. checks every invariant of ``spec.catalogue.INVARIANTS`` on the post
   abstraction, one z3 query per invariant (``sat`` of the negation is a
   violation named by the invariant id; ``unknown`` is a failure, never a
   pass).

Composite operations are folds of the spec's micro-steps, as the docstring
of ``spec/virtual_memory.py`` defines them: ClonePageDirectory is
CreatePageDirectory then AllocPage + CopyPage per present user PTE,
DestroyPageDirectory is UnmapVirtualAddress per present user page, FreeTable
per user table, FreeDirectory; a multi-byte access is ``Access`` per byte,
all or nothing, faulting at the first refused byte.

Arguments the spec cannot represent are still passed to the model. An
address beyond 32 bits, or a non-bool flag of AllocPage/MapVirtualAddress,
is given to the spec as an unaligned address (``UNALIGNED``): the model must
refuse it with ERROR_INVALID_PARAMETER at the point the spec checks that
alignment, after the checks that precede it. Where the spec has no such
check (a stale directory object whose frame now holds another live
directory: the spec names directories by frame, the model by object; a
VirtualToPhysical address or an access beyond 4 GiB; RequestFrame's flags)
the model must refuse with the documented code and change nothing
(DESIGN.md: "Bad input never raises ... and never changes state").

Costs (CPU time, measured 2026-11-28 on the 2-CPU development machine, on
the states these runs reach: 16-48 frames, up to ~30 used):

- one invariant query, mean over a quick run: FRM-3 65 ms, VMM-2 43 ms,
  VMM-1 24 ms, FRM-2 18 ms, PROT-2 12 ms, VMM-4 9 ms, FRM-1 8 ms, PROT-1
  6 ms, PROT-3 4 ms; all nine on a state with 24 used frames and 13
  mappings 124 ms as nine queries, 520 ms as one query of the conjunction.
  So the invariants are checked one query each (which also names the
  violated ones directly), and a verdict is cached per tuple of the terms of
  the fields the invariant reads (z3 hash-conses terms: an unchanged field
  is the same term), so a step re-checks only the invariants that read a
  field it changed; about a third of the checks are answered from the cache.
- one transition query: about 1 ms mean, a few hundred ms for a large clone.
- building the spec's Step in Python: AllocPage and MapVirtualAddress 15 ms,
  the others 1-4 ms; the abstraction: 0.7 ms for the snapshot, 0.7 ms (cached
  terms) to 6.5 ms (new terms) for the z3 state.
- profiles: quick (3 examples of at most 20 steps, ~80 steps; derandomized,
  no database, swarm testing off) 4-5 s of CPU (10 examples measured 14 s in
  an idle quick run, 5 examples 7 s, and the whole quick profile must stay
  under a minute with every manager in); full (100 examples of at
  most 50 steps, ~5,300-5,700 steps; random, swarm testing on) 145-175 s.
  A failing run also shrinks, for at most ``SHRINK_SECONDS`` of wall time.
- what the budget catches (model bugs patched in with ``run_machine``): a
  leaking unmap (FRM-3), accesses ignoring U/S (transition), a kernel table
  linked into one directory (VMM-4), a free that keeps the used count (FRM-2),
  a clone that copies no data (transition) and a destroy that leaks its
  tables (FRM-3), each within the first 10 derandomized examples (the last
  two near the end), so the quick profile's 3 may miss the last two; the
  tests use the "teeth" profile (60 examples, stopping at the first failure).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    consumes,
    initialize,
    multiple,
    rule,
)

from model.frame_bitmap import FrameBitmap
from model.page_manager import PageManager
from model.page_tables import PageDirectory, PageTable
from model.virtual_memory import VirtualMemoryManager
from proofs.machines import runner
from proofs.machines.paging_harness import Harness
from proofs.machines.paging_queries import InvariantChecker, Stats
from proofs.machines.runner import Budget, CheckedMachine, machine_obligation
from proofs.obligation import Obligation, Verdict
from spec.abi import NO_FRAME, PAGE_SHIFT, PAGE_SIZE, FrameOwner

#: Hypothesis budget per profile; swarm testing only in the full profile.
BUDGETS = {"quick": Budget(3, 20, 30.0, swarm=False), "full": Budget(100, 50, 120.0),
           "teeth": Budget(60, 20, 30.0, swarm=False)}


# =========================================================================== strategies

PAGE = PAGE_SIZE
#: A few user slots and the kernel slots 0 (identity) and 768.. (kernel tables are
#: linked into every directory, so these slots exercise the sharing).
USER_SLOTS = (1, 2, 767)
KERNEL_SLOTS = (0, 768, 1023)
INDICES = (0, 1, 7, 1023)
#: mem_start values: 0, aligned and unaligned (rounded up to whole frames); up to
#: 8 reserved frames, so that a 16-frame memory runs out within a few steps.
MEM_STARTS = (0, 0x1000, 0x1234, 0x3000, 0x5FFF, 0x8000)
#: Frames of memory: 16-48, mostly small (the cost of an invariant query grows
#: with the frames in use).
NFRAMES = st.one_of(st.integers(16, 20), st.integers(16, 20), st.integers(16, 48))


def _join(slot: int, index: int) -> int:
    return slot << 22 | index << PAGE_SHIFT


user_va = st.builds(_join, st.sampled_from(USER_SLOTS), st.sampled_from(INDICES))
kernel_va = st.builds(_join, st.sampled_from(KERNEL_SLOTS), st.sampled_from(INDICES))
aligned_va = st.one_of(user_va, kernel_va)
#: Mostly aligned addresses, some unaligned (hostile).
any_va = st.one_of(aligned_va, aligned_va, aligned_va, aligned_va.map(lambda v: v | 0x10))
#: (virtual address, is_kernel): mostly coherent (user page in user space, kernel
#: page in kernel space), sometimes anything (a user page in kernel space is refused).
placement = st.one_of(st.tuples(user_va, st.just(False)), st.tuples(kernel_va, st.just(True)),
                      st.tuples(any_va, st.booleans()))
offsets = st.sampled_from((0, 1, 0x7FF, 0xFFD, 0xFFF))
frame_addr = st.integers(0, 52).map(lambda f: f * PAGE)
#: Physical addresses: any frame (of any owner, in memory or beyond), some unaligned,
#: one beyond 32 bits.
any_frame_addr = st.one_of(frame_addr, frame_addr, frame_addr.map(lambda a: a + 0x80),
                           st.just(1 << 32))
flags = st.booleans()
#: Calls made before InitializePhysicalMemory (NOT_READY and friends, bad bounds).
PROBES = ("RequestFrame", "FirstFreeFrame", "FreeFrame", "CopyPage", "UnreservePage",
          "InitializePaging", "CreatePageDirectory", "GetFrameCount", "AllocFrame",
          "BadInitialize", "WideInitialize")
#: (mem_start, mem_end) of a second InitializePhysicalMemory: refused, whatever the values.
AGAIN = ((0x1000, 0x20000), (0x400001, 0x20000), (0, 1 << 32), (0, (1 << 32) + 1),
         (1 << 32, 0x20000), (0, 1 << 33))
#: Calls with arguments the model must refuse (see :meth:`PagingMachine.hostile`).
HOSTILE = ("FreeFrame", "CopyPage", "MapVirtualAddress", "UnmapVirtualAddress",
           "VirtualToPhysical", "AllocPage", "AllocFrame", "ReadVirtualMemory",
           "WriteVirtualMemory", "SwitchPageDirectory", "DestroyPageDirectory",
           "ClonePageDirectory", "UnreservePage")

Page = tuple[PageDirectory, int]


class PagingMachine(CheckedMachine):
    """Drives one PageManager + VirtualMemoryManager; every step is checked by :class:`Harness`.

    Bundles hold what the model handed out: live directories, frames obtained
    with RequestFrame, and (directory, address) pairs of mapped pages. The
    valid uses of each operation have their own rules; hostile arguments
    (destroyed and forged directory handles, frames of any owner, unaligned
    and out-of-range addresses, non-bool flags) share one rule, so that they
    do not crowd out the state-building steps in a small budget (hypothesis
    also disables a random subset of rules in each example).
    """

    stats = Stats()
    invariant_checker: InvariantChecker | None = None

    directories = Bundle("directories")
    frames = Bundle("frames")
    pages = Bundle("pages")

    def __init__(self) -> None:
        super().__init__()
        cls = type(self)
        if cls.invariant_checker is None:
            cls.invariant_checker = InvariantChecker(cls.stats)
        self.h = Harness(cls.stats, cls.invariant_checker)
        self.graveyard: list[PageDirectory] = []
        self.user_dir: object = None

    @classmethod
    def cost(cls) -> str:
        return cls.stats.summary()

    # -- boot ------------------------------------------------------------------

    @initialize(target=directories, probes=st.lists(st.sampled_from(PROBES), max_size=2),
                mem_start=st.sampled_from(MEM_STARTS),
                nframes=NFRAMES,
                tail=st.sampled_from((0, 0x7FF)),
                paging=st.sampled_from(("paging and a directory", "paging and a directory",
                                        "paging", "no paging")),
                again=st.one_of(st.none(), st.sampled_from(AGAIN)))
    def boot(self, probes: list[str], mem_start: int, nframes: int, tail: int,
             paging: str, again: tuple[int, int] | None) -> object:
        type(self).examples += 1
        for probe in probes:  # calls before initialisation: NOT_READY and friends
            if probe == "BadInitialize":
                self.h.InitializePhysicalMemory(0x5000, 0x5000)
            elif probe == "WideInitialize":
                self.h.InitializePhysicalMemory(1 << 32, 1 << 33)
            elif probe in ("FreeFrame", "UnreservePage"):
                getattr(self.h, probe)(0x1000)
            elif probe == "CopyPage":
                self.h.CopyPage(0, 0x1000)
            elif probe == "RequestFrame":
                self.h.RequestFrame(True, False)
            elif probe == "AllocFrame":
                self.h.AllocFrame(PageDirectory(0), 0x400000, False, True)
            else:
                getattr(self.h, probe)()
        self.h.InitializePhysicalMemory(mem_start, nframes * PAGE + tail)
        if again is not None:
            self.h.InitializePhysicalMemory(*again)
        if paging == "no paging" or self.h.InitializePaging() is not True:
            return multiple()
        made: list[object] = [self.h.vm.kernel_directory]
        if paging == "paging and a directory":
            self.user_dir = self.h.CreatePageDirectory()
            made.append(self.user_dir)
        return multiple(*[d for d in made if isinstance(d, PageDirectory)])

    @initialize(target=pages, how=st.sampled_from(("a user page", "user and kernel pages",
                                                    "nothing")),
                data=st.binary(min_size=1, max_size=4))
    def populate(self, how: str, data: bytes) -> object:
        """Pages with contents in the directory boot created (when boot ran first and
        made one): material for clone, destroy, copies and accesses."""
        d = self.user_dir
        if how == "nothing" or not isinstance(d, PageDirectory):
            return multiple()
        made = []
        if self.h.AllocPage(d, 0x400000, False, True) is True:
            made.append((d, 0x400000))
            self.h.WriteVirtualMemory(d, 0x400FFC, data, True)
        if how == "user and kernel pages" and self.h.AllocPage(d, 0xC0000000, True, True) is True:
            made.append((d, 0xC0000000))
        return multiple(*made)

    # -- PageManager ---------------------------------------------------------------

    @rule(target=frames, count=st.integers(1, 4), is_kernel=flags, is_writeable=flags)
    def request_frames(self, count: int, is_kernel: bool, is_writeable: bool) -> object:
        """RequestFrame count times (several at once, so memory runs out)."""
        got = []
        for _ in range(count):
            reply = self.h.RequestFrame(is_kernel, is_writeable)
            if isinstance(reply, int) and reply != NO_FRAME:
                got.append(reply)
        return multiple(*got)

    @rule(frame=consumes(frames), twice=flags)
    def free_frame(self, frame: int, twice: bool) -> None:
        self.h.FreeFrame(frame)
        if twice:
            self.h.FreeFrame(frame)  # a double free

    @rule(which=st.sampled_from(("FirstFreeFrame", "GetFrameCount", "UnreservePage")),
          frame=st.integers(0, 13))
    def query(self, which: str, frame: int) -> None:
        """Calls that take no handle: the queries, and UnreservePage."""
        if which == "UnreservePage":
            self.h.UnreservePage(frame * PAGE)
        else:
            getattr(self.h, which)()

    @rule(src=st.integers(0, 63), dst=st.integers(0, 63))
    def copy_page(self, src: int, dst: int) -> None:
        """CopyPage between data frames (held, mapped, reserved), picked by position."""
        data = sorted(f for f, owner in self.h.snap.owner.items()
                      if owner in (FrameOwner.HELD, FrameOwner.MAPPED, FrameOwner.RESERVED))
        src_frame, dst_frame = (data[i % len(data)] if data else i for i in (src, dst))
        self.h.CopyPage(src_frame * PAGE, dst_frame * PAGE)

    # -- VirtualMemoryManager ---------------------------------------------------------

    @rule(target=directories)
    def initialize_paging(self) -> object:
        if self.h.InitializePaging() is True:
            return multiple(self.h.vm.kernel_directory)
        return multiple()

    @rule(target=directories)
    def create_directory(self) -> object:
        reply = self.h.CreatePageDirectory()
        return reply if isinstance(reply, PageDirectory) else multiple()

    @rule(target=directories, d=consumes(directories))
    def destroy_directory(self, d: PageDirectory) -> object:
        if self.h.DestroyPageDirectory(d) is True:
            self.graveyard.append(d)
            return multiple()
        return d  # the kernel or current directory: refused, still live

    @rule(target=directories, src=directories, stamp=st.integers(1, 255),
          then=st.sampled_from(("keep", "destroy", "switch, destroy")))
    def clone_directory(self, src: PageDirectory, stamp: int, then: str) -> object:
        """Stamp a byte into the source's first user page, clone, read the copies
        back, and keep or destroy the clone (destroying the current directory is
        refused first)."""
        src_pages = self.h.snap.user_pages(self.h.directory_arg(src) or 0)
        if src_pages and isinstance(src, PageDirectory):
            slot, index, _ = src_pages[0]
            self.h.WriteVirtualMemory(src, _join(slot, index) + 0xFFF, bytes([stamp]), False)
        clone = self.h.ClonePageDirectory(src)
        if not isinstance(clone, PageDirectory):
            return multiple()
        for slot, index, _ in self.h.snap.user_pages(clone.physical_addr >> PAGE_SHIFT)[:2]:
            self.h.ReadVirtualMemory(clone, _join(slot, index) + 0xFFE, 2, True)
        if then == "keep":
            return clone
        if then == "switch, destroy":
            self.h.SwitchPageDirectory(clone)
            self.h.DestroyPageDirectory(clone)  # busy: the current directory
            self.h.SwitchPageDirectory(self.h.vm.kernel_directory)
        if self.h.DestroyPageDirectory(clone) is True:
            self.graveyard.append(clone)
            return multiple()
        return clone

    @rule(d=directories)
    def switch_directory(self, d: PageDirectory) -> None:
        self.h.SwitchPageDirectory(d)

    @rule(target=pages, d=directories, where=placement, is_writeable=flags,
          via=st.sampled_from(("AllocPage", "AllocFrame")), offset=offsets,
          data=st.binary(min_size=1, max_size=4), user_mode=flags,
          then=st.sampled_from(("keep", "UnmapVirtualAddress", "FreePage")))
    def alloc_page(self, d: PageDirectory, where: tuple[int, bool], is_writeable: bool,
                   via: str, offset: int, data: bytes, user_mode: bool, then: str) -> object:
        """Allocate a page, write and read it back, then keep it or free it."""
        va, is_kernel = where
        if getattr(self.h, via)(d, va, is_kernel, is_writeable) is not True:
            return multiple()
        self.h.WriteVirtualMemory(d, va + offset, data, user_mode)
        self.h.ReadVirtualMemory(d, va + offset, len(data), user_mode)
        if then == "keep":
            return (d, va)
        getattr(self.h, then)(d, va)
        return multiple()

    @rule(target=pages, d=directories, where=placement, frame=frames, is_writeable=flags)
    def map_held(self, d: PageDirectory, where: tuple[int, bool], frame: int,
                 is_writeable: bool) -> object:
        """Map a frame from RequestFrame (it stays in the bundle: mapping it again
        is ERROR_BUSY, freeing it too)."""
        va, is_kernel = where
        if self.h.MapVirtualAddress(d, va, frame, is_kernel, is_writeable) is True:
            return (d, va)
        return multiple()

    @rule(page=consumes(pages), via=st.sampled_from(("UnmapVirtualAddress", "FreePage")),
          twice=flags)
    def unmap(self, page: Page, via: str, twice: bool) -> None:
        getattr(self.h, via)(*page)
        if twice:
            getattr(self.h, via)(*page)  # unmapped already: ERROR_INVALID_ADDRESS

    @rule(page=pages, offset=offsets)
    def translate(self, page: Page, offset: int) -> None:
        self.h.VirtualToPhysical(page[0], page[1] + offset)

    # -- accesses ----------------------------------------------------------------------

    @rule(page=pages, offset=offsets, length=st.integers(0, 6), user_mode=flags)
    def read(self, page: Page, offset: int, length: int, user_mode: bool) -> None:
        self.h.ReadVirtualMemory(page[0], page[1] + offset, length, user_mode)

    @rule(page=pages, offset=offsets, data=st.binary(min_size=1, max_size=6), user_mode=flags)
    def write(self, page: Page, offset: int, data: bytes, user_mode: bool) -> None:
        self.h.WriteVirtualMemory(page[0], page[1] + offset, data, user_mode)

    @rule(page=pages, offset=offsets, user_mode=flags)
    def execute(self, page: Page, offset: int, user_mode: bool) -> None:
        self.h.ExecuteVirtualMemory(page[0], page[1] + offset, user_mode)

    # -- hostile arguments -------------------------------------------------------------

    @rule(op=st.sampled_from(HOSTILE), d=directories, pick=st.integers(0, 40), va=any_va,
          address=any_frame_addr, flag=st.sampled_from((True, False, 0, 1, None)),
          data=st.binary(min_size=1, max_size=3))
    def hostile(self, op: str, d: PageDirectory, pick: int, va: int, address: int,
                flag: Any, data: bytes) -> None:
        """An operation with arguments it must refuse, or at least survive: a
        destroyed or forged handle (whose frame may hold a live directory again),
        an address of any frame or beyond 32 bits, unaligned, a non-bool flag,
        an access crossing 4 GiB."""
        if pick % 3 == 0:
            if self.graveyard and pick % 2:
                d = self.graveyard[pick % len(self.graveyard)]
            else:
                d = PageDirectory(pick * PAGE)
        wide = (va, 1 << 32, 0xFFFFFFFE)[pick % 3]
        if op == "FreeFrame":
            self.h.FreeFrame(address)
        elif op == "UnreservePage":
            self.h.UnreservePage(address)
        elif op == "CopyPage":
            self.h.CopyPage(address, self.h.physical_of(d, va))
        elif op == "MapVirtualAddress":
            self.h.MapVirtualAddress(d, va, address, flag, True)
        elif op in ("UnmapVirtualAddress", "VirtualToPhysical"):
            getattr(self.h, op)(d, wide)
        elif op in ("AllocPage", "AllocFrame"):
            getattr(self.h, op)(d, wide if pick % 2 else va, flag, True)
        elif op == "ReadVirtualMemory":
            self.h.ReadVirtualMemory(d, wide, len(data), bool(pick % 2))
        elif op == "WriteVirtualMemory":
            self.h.WriteVirtualMemory(d, wide, data, bool(pick % 2))
        else:
            getattr(self.h, op)(d)


# =========================================================================== runner

#: Classes whose methods a broken variant may replace, by name.
PATCHABLE: dict[str, type] = {cls.__name__: cls for cls in (
    PageManager, VirtualMemoryManager, FrameBitmap, PageDirectory, PageTable)}


def run_machine(profile: str = "quick", patches: Mapping[str, object] | None = None, *,
                max_examples: int | None = None, steps: int | None = None,
                shrink_seconds: float | None = None,
                machine: type[PagingMachine] = PagingMachine) -> Verdict:
    """Run the machine (optionally on a broken model) and return its verdict.

    ``patches`` maps "Class.method" (PageManager, VirtualMemoryManager,
    FrameBitmap, PageDirectory, PageTable, or a dotted path) to a replacement;
    they are undone afterwards. A counterexample's ``violated`` holds the
    invariant ids (and ``transition``) its assertion named; ``detail`` is the
    failing program hypothesis printed, followed by the assertion message.
    """
    return runner.run_machine(machine, profile, BUDGETS, patches, PATCHABLE,
                              max_examples=max_examples, steps=steps,
                              shrink_seconds=shrink_seconds,
                              fresh={"stats": Stats(), "invariant_checker": None})


def obligations() -> Iterator[Obligation]:
    yield machine_obligation("paging_machine.refinement", "virtual_memory",
                             lambda profile: run_machine(profile))


__all__ = ["PagingMachine", "run_machine", "obligations"]
