"""Spec mode in the kernel family: the reported state, judged by the spec with z3.

The observations (PROTOCOL.md) are turned into the very snapshots the model's
machines abstract, and the machines' judges run on them unchanged:

- the page manager and kernel directory become a paging :class:`Snapshot`
  (FrameCounts, FrameBitmap, PageTables; physical contents are not observed and
  read as zeros), judged by :class:`proofs.machines.paging.Harness`: the spec's
  step from the observed pre-state with the implementation's choice (which
  free frame) must be allowed (its ``assume`` true), report the same status and
  result, and reach the observed post-state;
- the paging invariants (FRM-1..3, VMM-1..4, PROT-1..3) are checked by z3 on
  the first reported state (the set-up's) and on the last state of every
  sequence; in between, every reported state passes the frame-role check
  below (FRM-3's ownership rule) at once. A page-manager call whose
  post-state is the spec's successor keeps the invariants by the proved
  inductive steps (``page_manager.*.FRM-*`` and the rest), so its post-state
  is not re-checked; heap calls change the paging state outside those steps,
  which is why the last state is checked whole. (A z3 check of a paging
  state costs about 1 s here, against 10-40 ms for a step; checking every
  state made a sequence of 20 calls take 3 s.);
- the heap becomes a :class:`HeapSnapshot` (HeapWalk, HoleIndex, the heap's
  PTEs), judged by :class:`proofs.machines.kernel_heap.HeapHarness`: HEAP-1..6, the
  composite of spec steps with the implementation's hole, end and frames, no
  change on failure, payload bytes intact (ReadBytes). A successful call is
  first judged by the steps' Python twins (:mod:`proofs.machines.kernel_heap_twin`,
  tested against the z3 steps in tests/test_heap_twin.py): what they accept
  passes, anything else goes to the z3 steps, which decide (issue 16: the z3
  steps cost 10-60 ms a call, most of the search's time);
- the paging harness remembers the calls it allowed (``passed``, shared by the
  run's judges): the same call from the same reported state with the same
  reply, error and post-state passes again without z3.

Who owns a used frame is not reported; it is derived from what the oracle saw:
frames below the reserved end are reserved, the directory and the tables the
PDEs link are paging structures, frames the PTEs map are mapped, frames
RequestFrame returned (and FreeFrame did not take back) are held. A used
frame with none of these roles (a leak) or with two (held and mapped: handed
out twice) breaks FRM-3's ownership rule, reported as FRM-3 directly.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import z3

from model.x86_paging import is_kernel_slot
from proofs.abstractions import page_manager_twin, paging_twin
from proofs.abstractions.heap_walk import RawBlock
from proofs.abstractions.kernel_heap import HeapSnapshot
from proofs.abstractions.paging import Snapshot
from proofs.machines import paging_harness_twin
from proofs.machines.checks import CheckError, InvariantViolationError
from proofs.machines.kernel_heap import HeapHarness, Invariants
from proofs.machines.paging_expect import Expected, from_step, spec_step
from proofs.machines.paging_harness import Harness, reply_claim
from proofs.machines.paging_queries import InvariantChecker, Stats
from proofs.oracle.protocol import Message
from proofs.oracle.spec_session import SpecSession
from proofs.oracle.world import OPERATIONS
from spec.abi import HEADER_SIZE, NO_FRAME, PAGE_SHIFT, PTE_PRESENT, ErrorCode, FrameOwner

SUCCESS = ErrorCode.ERROR_SUCCESS
#: States up to this many frames (the default configuration's 48) have a twin's
#: violation confirmed by z3.
Z3_CONFIRM_FRAMES = 64
#: Heap snapshots remembered to keep HEAP-1..6, at most (then forgotten).
KEPT_SNAPSHOTS = 4096


class _Calls:
    """The implementation dressed as the model's PageManager and VMM: the
    paging harness calls ``pm.RequestFrame(...)`` and reads ``pm.last_error``."""

    def __init__(self, session: SpecSession, manager: str) -> None:
        self.session, self.manager = session, manager
        self.last_error = 0

    def __getattr__(self, op: str) -> Callable[..., Any]:
        params = OPERATIONS[self.manager].get(op)
        if params is None:
            raise AttributeError(op)

        def invoke(*args: Any) -> Any:
            result, self.last_error = self.session.invoke(
                self.manager, op, dict(zip(params, args, strict=True)))
            return result
        return invoke


class ObservedPaging(Harness):
    """The paging harness over the implementation's reported frames and tables."""

    subject = "implementation"
    post_invariants = False

    def __init__(self, session: SpecSession, stats: Stats, invariants: InvariantChecker) -> None:
        self.session, self.stats, self.invariants = session, stats, invariants
        self.passed = session.judges.caches.setdefault("paging verdicts", set())
        self.pm: Any = _Calls(session, "PageManager")
        self.vm: Any = _Calls(session, "VirtualMemoryManager")
        self.history: list[str] = []
        self._state: tuple[Snapshot, Any] | None = None
        self._built: tuple[Message, set[int], Snapshot] | None = None
        session.observe_all(PAGING_OBSERVATIONS)
        self.snap = self._observed()
        self._check_invariants(None, "the initial state", [])

    def _twin_accepts(self, operation: str, args: Mapping[str, object], reply: object,
                      status: int, pre_snap: Snapshot, post_snap: Snapshot) -> bool:
        """A page-manager call the twins of its step accept passes without z3
        (:mod:`proofs.machines.paging_harness_twin`, tested against the z3
        steps in tests/test_page_manager_twin.py); any other is judged by the
        z3 step, which decides and names what differs."""
        return paging_harness_twin.accepts(operation, args, reply, status, pre_snap, post_snap)

    def _check_invariants(self, state: Any, where: str, context: list[str]) -> None:
        """The paging invariants of the reported state, decided by their Python
        twins (:mod:`proofs.abstractions.paging_twin`, property-tested against
        the z3 forms): z3 over a state of thousands of frames takes minutes. On
        a state of at most Z3_CONFIRM_FRAMES frames, z3 confirms a violation
        (and names what it refutes)."""
        refuted = paging_twin.violated(self.snap)
        if not refuted:
            return
        if self.snap.nframes <= Z3_CONFIRM_FRAMES:
            super()._check_invariants(self.state if state is None else state, where, context)
            refuted = [f"{ident} (the twin's verdict; z3 does not confirm it)"
                       for ident in refuted]
        raise InvariantViolationError(f"{', '.join(refuted)}: invariant violated in {where}",
                                      [r.split()[0] for r in refuted])

    def FirstFreeFrame(self) -> object:
        """As the harness's, with the step's ``assume`` (the frame is the lowest
        free one) decided by its twin (:func:`page_manager_twin.lowest_free`, tested
        against the z3 form) on the reported pre-state: z3's quantifier over
        every lower frame took minutes, or gave up, on 4096 frames."""
        def expect(pre_snap: Snapshot, pre: Any, reply: object, post: Snapshot) -> Expected:
            frame = reply >> PAGE_SHIFT if isinstance(reply, int) and reply != NO_FRAME else 0
            s = spec_step("FirstFreeFrame", pre, result=frame & 0xFFFFF)
            ok, _ = paging_twin.guarded(s.assume)
            s = dataclasses.replace(s, assume=z3.Implies(ok, z3.BoolVal(
                page_manager_twin.lowest_free(pre_snap, frame & 0xFFFFF))))
            return from_step(s, [reply_claim(reply, s.result, "word")], {"result": frame})
        return self._pm_call("FirstFreeFrame", {}, self.pm.FirstFreeFrame, expect)

    def _snapshot(self) -> Snapshot:
        return self._observed()

    def check(self, where: str, invariants: bool = True) -> None:
        """Take the reported state (building its snapshot checks the frame
        roles); with ``invariants``, check the paging invariants on it."""
        snap = self._observed()
        if snap != self.snap:
            self.snap = snap
        if invariants:
            self._check_invariants(None, where, [])

    def _observed(self) -> Snapshot:
        """The reported state as a paging Snapshot, its frame roles checked;
        built again only when FrameCounts is another reply (the session answers
        an observation once per state, so the same reply object is the same
        state) or the held frames changed."""
        counts = self.session.observe("FrameCounts")
        built = self._built
        if built is not None and built[0] is counts and built[1] == self.session.held:
            return built[2]
        snap = self._roles(counts)
        self._built = (counts, set(self.session.held), snap)
        return snap

    def _roles(self, counts: Message) -> Snapshot:
        s = self.session
        if counts["free"] != counts["frames"] - counts["used"]:
            raise CheckError(f"FrameCounts: free {counts['free']} is not frames "
                             f"{counts['frames']} - used {counts['used']}", ["FRM-2"])
        used = tuple(f for first, count in s.observe("FrameBitmap")["used"]
                     for f in range(first, first + count))
        tables: Message = (s.observe("PageTables") if "PageTables" in s.observations
                           else {"directory": 0, "pdes": [], "ptes": []})
        directory = tables["directory"]
        frames_at = {slot: pde >> PAGE_SHIFT for slot, pde in tables["pdes"] if pde & PTE_PRESENT}
        pte: dict[int, dict[int, int]] = {frame: {} for frame in frames_at.values()}
        for slot, index, entry in tables["ptes"]:
            if slot in frames_at:
                pte[frames_at[slot]][index] = entry
        roles: dict[int, list[tuple[int, str]]] = {}

        def role(frame: int, owner: FrameOwner, what: str) -> None:
            roles.setdefault(frame, []).append((int(owner), what))

        for f in used:
            if f < s.reserved_end:
                role(f, FrameOwner.RESERVED, "reserved")
        if directory:
            role(directory, FrameOwner.DIRECTORY, "the kernel directory")
        for slot, frame in frames_at.items():
            role(frame, FrameOwner.TABLE, f"the page table of slot {slot}")
        for slot, index, entry in tables["ptes"]:
            frame = entry >> PAGE_SHIFT
            identity = slot == 0 and index == frame and frame < s.reserved_end
            if entry & PTE_PRESENT and not identity:
                role(frame, FrameOwner.MAPPED, f"mapped at {(slot << 22) | (index << 12):#x}")
        for f in s.held:
            role(f, FrameOwner.HELD, "held by the caller (RequestFrame)")
        twice = {f: r for f, r in roles.items() if len(r) > 1}
        if twice:
            f, r = next(iter(sorted(twice.items())))
            raise CheckError(f"frame {f:#x} is {' and '.join(what for _, what in r)}",
                             ["FRM-3"])
        orphans = sorted(set(used) - set(roles))
        if orphans:
            raise CheckError(f"frames {', '.join(map(hex, orphans[:8]))} are used in the "
                             "bitmap, and nothing owns them (a leak)", ["FRM-3"])
        return Snapshot(
            nframes=counts["frames"], used=used, used_count=counts["used"],
            owner={f: r[0][0] for f, r in roles.items()}, pde=(
                {directory: {slot: e for slot, e in tables["pdes"]}} if directory else {}),
            pte=pte, kernel_dir=directory, current_dir=directory, paging=directory != 0,
            mem={}, kernel_tables=frozenset(f for slot, f in frames_at.items()
                                            if is_kernel_slot(slot)))


class ObservedHeap(HeapHarness):
    """The heap harness over the implementation's heap walk and hole index.

    HEAP-1..6 are checked by z3 on the state Create reports; after that only
    when a call's check fails, to name the invariant the state breaks (as the
    harness would, which checks them first). A call that passes keeps them:
    a successful call's post-state is the spec's composite of steps from the
    pre-state (each step proved to keep every invariant: the ``kernel_heap.*``
    obligations), a failed one leaves the state as it was. (One z3 query per
    invariant per step cost 40-90 ms at the real-size configuration: a third of
    the search's time.) A successful call is judged by the steps' Python twins
    first (``twin``; z3 judges what they do not accept)."""

    twin = True

    def __init__(self, session: SpecSession, checker: Invariants,
                 outcomes: Counter[str]) -> None:
        self.session = session
        self._built: tuple[Message, set[int], HeapSnapshot] | None = None
        self._deferred = False
        self._where = ""
        self._begin(checker, outcomes)

    def check_invariants(self, where: str) -> None:
        self._where = where  # the harness's own words for the call, result and code
        if not self._deferred:
            self._checked(where)

    def _checked(self, where: str) -> None:
        """HEAP-1..6 of the reported heap. Their verdict is a function of the
        snapshot, and a snapshot that kept them is remembered in the search's
        judge caches (which outlive a sequence): the state Create reports, the
        same in every sequence, is checked once a search (its abstraction's z3
        terms cost about 1 ms a sequence to build)."""
        kept: set[HeapSnapshot] = self.session.judges.caches.setdefault(
            "heap invariants kept", set())
        if self.snap in kept:
            return
        super().check_invariants(where)
        if len(kept) >= KEPT_SNAPSHOTS:
            kept.clear()
        kept.add(self.snap)

    def write(self, p: int, offset: int, data: bytes) -> None:
        """As the harness's; the invariants are checked only when the write
        changed the reported heap (a state the passed calls reached keeps them,
        as above: at the real size the z3 check cost 230 ms a write)."""
        before = self.snap
        self._deferred = True
        try:
            super().write(p, offset, data)
        except CheckError:
            self._deferred = False
            if self.snap != before:
                self._checked(self._where)
            raise
        finally:
            self._deferred = False
        if self.snap != before:
            self._checked(self._where)

    def call(self, name: str, *args: Any) -> Any:
        self._deferred, self._where = True, f"{name}{args!r}"
        try:
            return super().call(name, *args)
        except CheckError:
            self._deferred = False
            self._checked(self._where)
            raise
        finally:
            self._deferred = False

    def _snapshot(self) -> HeapSnapshot:
        """The reported heap, built again only when HeapWalk is another reply
        (a new state: see ObservedPaging._observed) or the aligned set changed."""
        s = self.session
        walk = s.observe("HeapWalk")
        built = self._built
        if built is not None and built[0] is walk and built[1] == s.aligned:
            return built[2]
        snap = self._walked(walk)
        self._built = (walk, set(s.aligned), snap)
        return snap

    def _walked(self, walk: Message) -> HeapSnapshot:
        s = self.session
        start, end_page = walk["start"] >> PAGE_SHIFT, walk["max"] >> PAGE_SHIFT
        ptes = sorted(((slot << 10) | index, entry)
                      for slot, index, entry in s.observe("PageTables")["ptes"]
                      if entry & PTE_PRESENT and start <= (slot << 10) | index < end_page)
        return HeapSnapshot(
            walk["created"], walk["start"], walk["end"], walk["max"], walk["data_start"],
            walk["min_size"], walk["index_size"], walk["supervisor"], walk["readonly"],
            tuple(RawBlock(b["header"], b["magic"], b["hole"], b["size"], b["footer_magic"],
                           b["footer_header"]) for b in walk["blocks"]),
            frozenset(s.aligned), tuple((size, header) for size, header
                                        in s.observe("HoleIndex")["holes"]), tuple(ptes))

    def _free_frames(self) -> int:
        return int(self.session.observe("FrameCounts")["free"])

    def _invoke(self, name: str, args: tuple[Any, ...]) -> tuple[Any, ErrorCode]:
        params = OPERATIONS["KernelHeap"][name]
        result, error = self.session.invoke("KernelHeap", name,
                                            dict(zip(params, args, strict=True)))
        try:
            code = ErrorCode(error)
        except ValueError:
            raise CheckError(f"{name} reports error {error}, not an error of the design",
                             ["transition"]) from None
        if code == SUCCESS and name == "Alloc" and args[1] is True:
            self.session.aligned.add(result - HEADER_SIZE)
        elif code == SUCCESS and name == "Free":
            self.session.aligned.discard(args[0] - HEADER_SIZE)
        return result, code

    def _read(self, address: int, length: int) -> bytes | None:
        return self.session.read("ReadBytes", "virtual_addr", address, length)

    def _write(self, address: int, data: bytes) -> object:
        result, _ = self.session.invoke("VirtualMemoryManager", "WriteVirtualMemory",
                                        {"virtual_addr": address, "data": data.hex()})
        return result


#: The observations the paging judge asks of every reported state, and the
#: heap's once the heap exists.
PAGING_OBSERVATIONS = ("FrameCounts", "FrameBitmap", "PageTables")
HEAP_OBSERVATIONS = ("HeapWalk", "HoleIndex")


class KernelJudge:
    """Spec mode for the page manager, the kernel directory and the kernel heap."""

    def __init__(self, session: SpecSession) -> None:
        self.session = session
        self.paging: ObservedPaging | None = None
        self.heap: ObservedHeap | None = None

    def prefetch(self, manager: str, op: str) -> tuple[str, ...]:
        """The observations judging an operation asks of the state it leaves,
        sent with it (:meth:`SpecSession.invoke`): the paging state's after
        every call (the frame roles are checked on each), the heap's too once
        the heap is created (the next call's pre-state; after a page-manager
        call the heap's are asked only when a heap call follows, most of
        the calls)."""
        heap = self.heap is not None or op == "Create"
        return PAGING_OBSERVATIONS + (HEAP_OBSERVATIONS if heap else ())

    def execute(self, manager: str, op: str, args: Message) -> Any:
        judges = self.session.judges
        if self.paging is None:
            self.paging = ObservedPaging(self.session, judges.stats, judges.paging)
        if manager != "KernelHeap" and op != "WriteVirtualMemory":
            return getattr(self.paging, op)(*(args[p] for p in OPERATIONS[manager][op]))
        if op == "Create":
            result, error = self.session.invoke(manager, op, args)
            if result is not True or error != 0:
                raise CheckError(f"the set-up call Create{tuple(args.values())} failed: "
                                 f"{result}, error {error}", ["setup"])
            self.heap = self.session.heap = ObservedHeap(self.session, judges.heap,
                                                         judges.outcomes)
        elif self.heap is None:
            raise CheckError(f"{op} before the heap was created", ["setup"])
        elif op == "WriteVirtualMemory":
            self._write(args)
            result = True
        else:
            result = self.heap.call(op, *(args[p] for p in OPERATIONS[manager][op]))
        self.paging.check(f"after {op}", invariants=False)
        return result

    def finish(self) -> None:
        """The paging invariants of the sequence's last state."""
        if self.paging is not None:
            self.paging.check("at the end of the sequence")

    def look(self, address: int, length: int) -> None:
        """VirtualToPhysical and ReadBytes agree with the reported page tables."""
        s = self.session
        if not {"VirtualToPhysical", "PageTables"} <= set(s.observations):
            return
        entries = {(slot << 10) | index: entry
                   for slot, index, entry in s.observe("PageTables")["ptes"]}

        def frame(page: int) -> int | None:
            entry = entries.get(page, 0)
            return entry >> PAGE_SHIFT if entry & PTE_PRESENT else None

        physical = s.observe("VirtualToPhysical", virtual_addr=address)["physical"]
        mapped = frame(address >> PAGE_SHIFT)
        want = NO_FRAME if mapped is None else (mapped << PAGE_SHIFT) | (address & 0xFFF)
        problems = [] if physical == want else [
            f"VirtualToPhysical({address:#x}) = {physical:#x}; the page tables say {want:#x}"]
        if "ReadBytes" in s.observations:
            data = s.observe("ReadBytes", virtual_addr=address, length=length)["data"]
            pages = range(address >> PAGE_SHIFT, (address + max(length, 1) - 1 >> PAGE_SHIFT) + 1)
            readable = all(frame(page) is not None for page in pages) or length == 0
            if (data is None) == readable or (data is not None and len(data) != 2 * length):
                problems.append(f"ReadBytes({address:#x}, {length}) = {data!r:.40}; the page "
                                f"tables say the range is {'' if readable else 'not '}mapped")
        if problems:
            raise CheckError("; ".join(problems), ["translation"])

    def _write(self, args: Message) -> None:
        """A write: into a live payload it must succeed and read back (contents)."""
        assert self.heap is not None
        address, data = args["virtual_addr"], bytes.fromhex(args["data"])
        inside = next((p for p, size in self.heap.live.items()
                       if p <= address and address + len(data) <= p + size), None)
        if inside is None:
            raise CheckError(f"the oracle writes only into live payloads ({address:#x})",
                             ["setup"])
        self.heap.write(inside, address - inside, data)
