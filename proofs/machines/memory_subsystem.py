"""Refinement of the MemorySubsystem spec by the model, checked on every step of hypothesis runs.

A :class:`~hypothesis.stateful.RuleBasedStateMachine` drives one
MemorySubsystem of 8 MB and its MemoryInterface: InitializeMemorySubsystem
(valid and refused kernel_end), kernel stacks, heap memory (plain and
aligned, with writes and reads through the kernel directory), GetFreePage /
ReleasePage, RequestFrame / FreeFrame of the PageManager (to hold frames),
MapPage / UnmapPage outside the managed areas (free, held, busy and missing
frames), the statistics and ill-typed arguments. After every call
:class:`SystemHarness` checks

1. SYS-1..3 on ``abstract_system`` (one z3 query of each negation: sat is a
   violation named by the id, unknown a failure);
2. the transition: the frames whose owner kind changed between the pre and
   post owner maps (frame_owners()) are ReleaseFrame(frame, old kind) and
   TakeFrame(frame, new kind) steps (spec/memory_subsystem.py), releases
   first, after the spec's InitializeMemorySubsystem for a boot. Every step
   must have status 0 and the composite must equal the post abstraction on
   the real fields (``transition``). A frame that changes kind is a failure,
   except the documented hand-over of a held frame to MapPage (a release of
   the held frame, then a take as mapped). Each call may take and give back
   only the kinds its manager owns (``KINDS``). A failed call moves no frame;
3. a failed call returns the failure value and changes nothing (``unchanged``),
   with the code the rule tables of model/memory_subsystem.py,
   model/memory_interface.py and the PageManager give for its arguments in
   that state (:meth:`SystemHarness.refusals`; ``transition`` otherwise):
   ERROR_INVALID_PARAMETER, ERROR_NOT_READY, ERROR_INVALID_ADDRESS,
   ERROR_INVALID_BLOCK, ERROR_ACCESS_DENIED, ERROR_ALREADY_EXISTS, ERROR_BUSY,
   and ERROR_NOT_ENOUGH_MEMORY only for calls that take frames;
4. what was written into heap blocks, free pages and stacks reads back until
   they are freed (``contents``); GetFreePage pages read as zeros.

The abstraction encodes ``used``, ``owner`` and the ghosts ``rank``/``unrank``
as piecewise lambdas over the maximal runs of consecutive frames (equal, as
arrays, to a Store per used or owned frame): booting leaves ~600 used
frames, and SYS-2 over a Store chain that long takes ~16 s, over ~5 runs
~20 ms. ``booted`` is "the kernel heap exists" (InitializeMemorySubsystem
is all or nothing). The boot's spec arguments are nframes = memory_size /
4096 and reserved_end = the placement arena's end / 4096; a kernel_end below
1 MB is reserved_end = kernel_end / 4096 (refused by the spec); one the spec
cannot represent (ill-typed, or an arena beyond the 4 MB identity region)
must fail with ERROR_INVALID_PARAMETER (ERROR_ALREADY_INITIALIZED when booted).

Costs (CPU, 2-core machine): building the ~260 TakeFrame steps of a boot
takes ~0.6 s, so verdicts are cached per (pre, call, post) snapshot and the
examples boot from two kernel_end values; the quick profile (5 examples x
16 steps) about 3 s, the full one (100 x 40) about 35-45 s.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import z3
from hypothesis import strategies as st
from hypothesis.stateful import initialize, precondition, rule

from model.kernel_memory import placement_limit, valid_kernel_end
from model.memory_interface import MemoryInterface
from model.memory_subsystem import MemorySubsystem
from model.page_manager import PageManager
from model.page_tables import PageDirectory
from model.x86_paging import is_kernel_address, is_u32
from proofs.machines.checks import (
    CONTENTS,
    TRANSITION,
    UNCHANGED,
    CheckError,
    check_invariants,
    failing,
    raise_problems,
)
from proofs.machines.memory_pool import HOSTILE
from proofs.machines.runner import (
    Budget,
    CheckedMachine,
    ModelVariant,
    machine_obligation,
    run_machine,
)
from proofs.obligation import Obligation, Verdict
from spec import memory_subsystem as sp
from spec.abi import (
    ADDRESS_LIMIT,
    HEADER_SIZE,
    IDENTITY_LIMIT,
    KERNEL_STACK_AREA_END,
    KERNEL_STACK_AREA_START,
    LOW_MEMORY_END,
    MIN_BLOCK,
    NO_FRAME,
    PAGE_AREA_END,
    PAGE_AREA_START,
    PAGE_SHIFT,
    PAGE_SIZE,
    PTE_PRESENT,
    U32_MAX,
    ErrorCode,
    FrameOwner,
)
from spec.state import ADDR, SYSTEM_GHOST_FIELDS, Ref, SystemState

#: Hypothesis budget per profile (the pool machine's).
BUDGETS = {"quick": Budget(5, 16, 20.0), "full": Budget(100, 40, 60.0),
           "teeth": Budget(30, 16, 10.0)}
E = ErrorCode
SUCCESS = E.ERROR_SUCCESS
BOOT = "InitializeMemorySubsystem"
MEMORY_SIZE = 0x800000
#: kernel_end values the examples boot from (a verified boot is cached).
BOOT_ENDS = (0x100000, 0x1F0123)
KIND = {name: index for index, name in enumerate(sp.OWNER_KINDS)}
REAL_FIELDS = tuple(field.name for field in dataclasses.fields(SystemState)
                    if field.name not in SYSTEM_GHOST_FIELDS)
#: Owner kinds each call may (take, give back): the manager that owns them.
KINDS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    name: (frozenset(takes.split()), frozenset(gives.split())) for name, takes, gives in (
        (BOOT, "directory table heap", ""), ("AllocateKernelStack", "stack table", ""),
        ("FreeKernelStack", "", "stack"), ("AllocateMemory", "heap table", ""),
        ("AllocateAlignedMemory", "heap table", ""), ("FreeMemory", "", "heap"),
        ("GetFreePage", "page table", ""), ("ReleasePage", "", "page"),
        ("MapPage", "mapped table", "held"), ("UnmapPage", "", "mapped"),
        ("RequestFrame", "held", ""), ("FreeFrame", "", "held"))}
#: What each call returns when it fails.
FAILURE: dict[str, object] = {
    BOOT: False, "AllocateKernelStack": 0, "FreeKernelStack": False, "AllocateMemory": 0,
    "AllocateAlignedMemory": 0, "FreeMemory": False, "GetFreePage": 0, "ReleasePage": False,
    "MapPage": False, "UnmapPage": False, "RequestFrame": NO_FRAME, "FreeFrame": False}
#: Statistics calls -> the snapshot field they report (times 4096).
STATISTICS = {"GetTotalMemory": "total", "GetUsedMemory": "used_count",
              "GetAvailableMemory": "free_count", "GetTotalPhysicalMemory": "total",
              "GetUsedPhysicalMemory": "used_count", "GetFreePhysicalMemory": "free_count"}
INTERFACE = {"AllocateMemory", "AllocateAlignedMemory", "FreeMemory", "GetFreePage",
             "ReleasePage", "MapPage", "UnmapPage", "GetTotalPhysicalMemory",
             "GetUsedPhysicalMemory", "GetFreePhysicalMemory"}


# -- the abstraction --------------------------------------------------------------

@dataclass(frozen=True)
class SystemSnapshot:
    """What the abstraction reads: used frames, (frame, owner kind) claims, counts."""

    booted: bool
    nframes: int
    used: tuple[int, ...]
    owners: tuple[tuple[int, int], ...]
    total: int
    used_count: int
    free_count: int


def system_snapshot(ms: MemorySubsystem) -> SystemSnapshot:
    pm, saved = ms.pageman, ms.last_error
    try:  # the statistics set last_error: an observation must not
        counts = [call() // PAGE_SIZE for call in (
            ms.GetTotalMemory, ms.GetUsedMemory, ms.GetAvailableMemory)]
    finally:
        ms.last_error = saved
    used = [(index << 5) + bit for index, word in enumerate(pm.frames.words) if word
            for bit in range(32) if word >> bit & 1]
    return SystemSnapshot(ms.kheap is not None, pm.nframes, tuple(used),
                          tuple(sorted((f, KIND[k]) for f, k in ms.frame_owners().items())),
                          *counts)


def runs(pairs: Iterator[tuple[int, int]] | tuple[tuple[int, int], ...]
         ) -> list[tuple[int, int, int]]:
    """Maximal (first, end, value) runs of consecutive frames with one value."""
    out: list[tuple[int, int, int]] = []
    for frame, value in pairs:
        if out and out[-1][1] == frame and out[-1][2] == value:
            out[-1] = (out[-1][0], frame + 1, value)
        else:
            out.append((frame, frame + 1, value))
    return out


def piecewise(pieces: list[tuple[int, int, int]], default: Ref, value: Any) -> Ref:
    """Lambda x: value(first, v, x) on each piece [first, end), default elsewhere."""
    x = z3.Const("x", ADDR)
    body = default
    for first, end, v in reversed(pieces):
        body = z3.If(z3.And(first <= x, x < end), value(first, v, x), body)
    return z3.Lambda([x], body)


@functools.lru_cache(maxsize=64)
def to_system_state(snap: SystemSnapshot) -> SystemState:
    """The SystemState of a snapshot; rank numbers the used frames in ascending order
    (memoized: a call's pre-state is the previous call's post-state)."""
    used = runs((f, 0) for f in snap.used)
    ranked, base = [], 0
    for first, end, _ in used:
        ranked.append((first, end, base))
        base += end - first
    n = z3.IntVal
    return SystemState(
        z3.BoolVal(snap.booted), n(snap.nframes), n(sp.LOW_FRAMES),
        piecewise(used, z3.BoolVal(False), lambda first, v, x: z3.BoolVal(True)),
        piecewise(runs(snap.owners), n(sp.NONE), lambda first, v, x: n(v)),
        n(snap.total), n(snap.used_count), n(snap.free_count),
        piecewise(ranked, n(0), lambda first, b, x: x - first + b),
        piecewise([(b, b + end - first, first) for first, end, b in ranked], n(0),
                  lambda b, first, x: x - b + first))


def abstract_system(ms: MemorySubsystem) -> SystemState:
    return to_system_state(system_snapshot(ms))


def world(ms: MemorySubsystem, iface: MemoryInterface) -> tuple[object, ...]:
    """Everything a failed call must leave as it was (the search hints excepted)."""
    pm, vmm, heap = ms.pageman, ms.virmem, ms.kheap
    return (bytes(pm.owner), list(pm.frames.words), pm.reserved_end,
            {frame: bytes(page) for frame, page in pm.memory.items()},
            {slot: list(table.entries) for slot, table in vmm.kernel_tables.items()},
            {address: list(d.tables_physical) for address, d in vmm.directories.items()},
            None if heap is None else (heap.walk(), heap.holes(), dict(heap.allocated),
                                       heap.end_address),
            ms.paging_enabled, ms.frame_bitmap_address, ms.kernel.kernel_end,
            ms.kernel.placement_address, ms.kernel.heap is heap, set(ms.stacks), set(ms.pages),
            set(ms.mapped), dict(iface.aligned), dict(iface.inner))


# -- the harness ------------------------------------------------------------------

class SystemHarness:
    """One subsystem, its interface, and what the machine holds of them."""

    def __init__(self, machine: type[CheckedMachine]) -> None:
        self.machine = machine
        self.ms = MemorySubsystem(MEMORY_SIZE)
        self.iface = MemoryInterface(self.ms)
        self.regions: dict[int, bytearray] = {}  # start -> bytes written there, known
        self.stacks: list[int] = []
        self.pointers: list[int] = []
        self.pages: list[int] = []
        self.held: list[int] = []
        self.mapped: list[int] = []

    def target(self, name: str) -> MemorySubsystem | MemoryInterface | PageManager:
        if name in INTERFACE:
            return self.iface
        return self.ms.pageman if name in ("RequestFrame", "FreeFrame") else self.ms

    def call(self, name: str, *args: Any) -> Any:
        target = self.target(name)
        pre_snap, before = system_snapshot(self.ms), world(self.ms, self.iface)
        reply = getattr(target, name)(*args)
        code = target.last_error
        self.machine.outcomes[f"{name} {code.name.removeprefix('ERROR_')}"] += 1
        post_snap = system_snapshot(self.ms)
        problems = check_invariants(self.machine, sp.INVARIANTS, post_snap,
                                    lambda: to_system_state(post_snap))
        key = ("transition", name, repr(args), code, repr(reply), pre_snap, post_snap)
        wrong = self.machine.cache.get(key)
        if wrong is None:
            wrong = self.machine.cache[key] = self.transition(name, args, pre_snap, post_snap,
                                                              reply, code)
        problems.update({TRANSITION: "; ".join(wrong)} if wrong else {})
        if code != SUCCESS and world(self.ms, self.iface) != before:
            problems[UNCHANGED] = "a failed call changed the subsystem"
        if code != SUCCESS and name != BOOT and name not in STATISTICS:
            allowed = self.refusals(name, args)
            if code not in allowed:
                problems[TRANSITION] = (f"the rules allow "
                                        f"{' or '.join(c.name for c in allowed) or 'no failure'}")
        if code == SUCCESS:
            self.track(name, args, reply, problems)
        problems.update(self.check_contents())
        raise_problems(f"{name}{args!r} returned {reply!r} with {code.name}", problems)
        return reply

    def refusals(self, name: str, args: tuple[Any, ...]) -> frozenset[ErrorCode]:
        """The codes the rule tables allow a failure of the call in the current
        state, which a failed call leaves as it was (empty: it must succeed)."""
        ms, pm, iface = self.ms, self.ms.pageman, self.iface
        kernel_dir = ms.virmem.kernel_directory
        paging = ms.paging_enabled and kernel_dir is not None
        heap = ms.kheap if ms.kheap is not None and ms.kheap.created else None

        def page(value: Any) -> bool:
            return is_u32(value) and value % PAGE_SIZE == 0

        if name in ("AllocateKernelStack", "GetFreePage"):
            code = E.ERROR_NOT_ENOUGH_MEMORY if paging else E.ERROR_NOT_READY
        elif name in ("FreeKernelStack", "ReleasePage", "UnmapPage"):
            valid = page(args[0]) if name == "UnmapPage" else is_u32(args[0])
            code = (E.ERROR_INVALID_PARAMETER if not valid
                    else E.ERROR_NOT_READY if name != "FreeKernelStack" and not paging
                    else E.ERROR_INVALID_ADDRESS)
        elif name in ("AllocateMemory", "AllocateAlignedMemory"):
            size, alignment = (args[0], 1) if name == "AllocateMemory" else args
            total = size
            if is_u32(size) and is_u32(alignment) and alignment not in (1, PAGE_SIZE):
                total = size + alignment - (PAGE_SIZE if alignment > PAGE_SIZE else 1)
            code = (E.ERROR_INVALID_PARAMETER if not (
                        is_u32(size) and is_u32(alignment) and alignment > 0
                        and alignment & (alignment - 1) == 0)
                    else E.ERROR_NOT_READY if heap is None
                    else E.ERROR_INVALID_PARAMETER if total >= ADDRESS_LIMIT
                    or total > U32_MAX - MIN_BLOCK
                    else E.ERROR_NOT_ENOUGH_MEMORY)
        elif name == "FreeMemory":
            pointer = args[0]
            record = iface.aligned.get(pointer) if is_u32(pointer) else None
            header = (record[0] if record else pointer if is_u32(pointer) else 0) - HEADER_SIZE
            code = (E.ERROR_INVALID_PARAMETER if not is_u32(pointer)
                    else E.ERROR_NOT_READY if heap is None
                    else E.ERROR_INVALID_ADDRESS if record is None and pointer in iface.inner
                    else E.ERROR_NOT_ENOUGH_MEMORY if header in heap.allocated  # index full
                    else E.ERROR_INVALID_BLOCK if header in {h for _, h in heap.holes()}
                    else E.ERROR_INVALID_ADDRESS)
        elif name == "MapPage":
            code = self.map_refusal(*args)
        elif name == "RequestFrame":
            code = (E.ERROR_INVALID_PARAMETER if not all(type(a) is bool for a in args)
                    else E.ERROR_NOT_ENOUGH_MEMORY if pm.initialized else E.ERROR_NOT_READY)
        elif name == "FreeFrame":
            frame = args[0] >> PAGE_SHIFT if page(args[0]) else -1
            code = (E.ERROR_INVALID_PARAMETER if frame < 0
                    else E.ERROR_NOT_READY if not pm.initialized
                    else E.ERROR_INVALID_ADDRESS if frame >= pm.nframes
                    else E.ERROR_INVALID_BLOCK if pm.owner[frame] == FrameOwner.FREE
                    else E.ERROR_BUSY)
        else:
            return frozenset()
        return frozenset({code})

    def map_refusal(self, virtual: Any, physical: Any, kernel: Any, writable: Any) -> ErrorCode:
        """MapPage's rule table (model/memory_interface.py), in its order."""
        ms, pm = self.ms, self.ms.pageman
        vmm = ms.virmem
        if not (is_u32(virtual) and virtual % PAGE_SIZE == 0 and is_u32(physical)
                and physical % PAGE_SIZE == 0 and type(kernel) is bool
                and type(writable) is bool):
            return E.ERROR_INVALID_PARAMETER
        directory = vmm.current_directory
        if not ms.paging_enabled or vmm.kernel_directory is None or directory is None:
            return E.ERROR_NOT_READY
        heap = ms.kheap
        owned = (virtual < IDENTITY_LIMIT
                 or (heap is not None and heap.start_address <= virtual < heap.max_address)
                 or KERNEL_STACK_AREA_START <= virtual < KERNEL_STACK_AREA_END
                 or PAGE_AREA_START <= virtual < PAGE_AREA_END)
        user = not is_kernel_address(virtual)
        if owned or (not kernel and not user) or (directory is vmm.kernel_directory and user):
            return E.ERROR_ACCESS_DENIED
        table = directory.tables[virtual >> 22]
        if table is not None and table.entries[(virtual >> PAGE_SHIFT) & 0x3FF] & PTE_PRESENT:
            return E.ERROR_ALREADY_EXISTS
        frame = physical >> PAGE_SHIFT
        if frame >= pm.nframes:
            return E.ERROR_INVALID_ADDRESS
        if pm.owner[frame] not in (FrameOwner.FREE, FrameOwner.HELD):
            return E.ERROR_BUSY
        return E.ERROR_NOT_ENOUGH_MEMORY

    def boot_step(self, kernel_end: Any, booted: bool, pre: SystemState
                  ) -> tuple[sp.SystemStep, int] | ErrorCode:
        """The spec's boot and its reserved_end, or the code the model must refuse with."""
        if valid_kernel_end(kernel_end):
            reserved_end = placement_limit(kernel_end) // PAGE_SIZE
        elif is_u32(kernel_end) and kernel_end < LOW_MEMORY_END:
            reserved_end = kernel_end // PAGE_SIZE
        else:
            return E.ERROR_ALREADY_INITIALIZED if booted else E.ERROR_INVALID_PARAMETER
        nframes = self.ms.memory_size // PAGE_SIZE
        step = sp.InitializeMemorySubsystem(pre, z3.IntVal(nframes), z3.IntVal(reserved_end))
        return step, reserved_end

    def transition(self, name: str, args: tuple[Any, ...], pre_snap: SystemSnapshot,
                   post_snap: SystemSnapshot, reply: Any, code: ErrorCode) -> tuple[str, ...]:
        """What is wrong with the call as a composite of the spec's frame steps."""
        wrong: list[str] = []
        failure = FAILURE.get(name)
        if name in STATISTICS:
            value = getattr(post_snap, STATISTICS[name]) * PAGE_SIZE
            if (reply, code) != ((value, SUCCESS) if post_snap.booted else (0, E.ERROR_NOT_READY)):
                wrong.append(f"reported {reply!r} for {value}")
        elif (code == SUCCESS) == (type(reply) is type(failure) and reply == failure):
            wrong.append(f"returned {reply!r} with {code.name}")
        s, before = to_system_state(pre_snap), dict(pre_snap.owners)
        claims: list[tuple[str, Ref]] = []
        if name == BOOT:
            boot = self.boot_step(args[0], pre_snap.booted, s)
            if isinstance(boot, ErrorCode):
                if code != boot:
                    wrong.append(f"the spec cannot take kernel_end {args[0]!r}: expected "
                                 f"{boot.name}")
            else:
                claims.append(("boot status", boot[0].status == int(code)))
                if code == SUCCESS:
                    s, before = boot[0].changed, dict.fromkeys(range(boot[1]), sp.RESERVED)
        after = dict(post_snap.owners)
        gives = sorted((f, k) for f, k in before.items() if after.get(f) != k)
        takes = sorted((f, k) for f, k in after.items() if before.get(f) != k)
        may_take, may_give = KINDS.get(name, (frozenset(), frozenset()))
        for f, k in takes:
            if f in before and not (name == "MapPage" and (before[f], k) == (
                    KIND["held"], KIND["mapped"])):
                wrong.append(f"frame {f:#x} changed from {sp.OWNER_KINDS[before[f]]} to "
                             f"{sp.OWNER_KINDS[k]}")
        moved = [("takes", f, k, may_take) for f, k in takes] + [
            ("gives back", f, k, may_give) for f, k in gives]
        for verb, f, k, allowed in moved:
            if code != SUCCESS or sp.OWNER_KINDS[k] not in allowed:
                wrong.append(f"{name} {verb} frame {f:#x} ({sp.OWNER_KINDS[k]})")
        for f, k in gives:
            step = sp.ReleaseFrame(s, z3.IntVal(f), z3.IntVal(k))
            claims.append((f"ReleaseFrame({f:#x}, {sp.OWNER_KINDS[k]})", step.status == 0))
            s = step.changed
        for f, k in takes:
            step = sp.TakeFrame(s, z3.IntVal(f), z3.IntVal(k))
            claims.append((f"TakeFrame({f:#x}, {sp.OWNER_KINDS[k]})", step.status == 0))
            s = step.changed
        post = to_system_state(post_snap)
        claims += [(field, getattr(s, field) == getattr(post, field)) for field in REAL_FIELDS]
        failed = failing(claims, TRANSITION)
        if failed:
            wrong.append(f"differs from the spec steps on {', '.join(failed)}")
        return tuple(wrong)

    # -- what the machine holds ------------------------------------------------------

    @property
    def kernel(self) -> PageDirectory:
        assert self.ms.virmem.kernel_directory is not None
        return self.ms.virmem.kernel_directory

    def track(self, name: str, args: tuple[Any, ...], reply: Any,
              problems: dict[str, str]) -> None:
        """Record a successful call: what it handed out, what it took back."""
        if name in ("AllocateMemory", "AllocateAlignedMemory"):
            self.pointers.append(reply)
            self.remember(reply, min(args[0], 32), problems)
        elif name == "GetFreePage":
            self.pages.append(reply)
            if self.remember(reply, 32, problems) != bytes(32):
                problems.setdefault(CONTENTS, f"GetFreePage {reply:#x} is not zeroed")
        elif name == "AllocateKernelStack":
            self.stacks.append(reply)
            self.remember(reply - 32, 32, problems)
        elif name == "RequestFrame":
            self.held.append(reply)
        elif name == "MapPage":
            self.mapped.append(args[0])
            if args[1] in self.held:
                self.held.remove(args[1])
        elif name in KINDS and name != BOOT:  # the frees
            for held in (self.stacks, self.pointers, self.pages, self.held, self.mapped):
                if args[0] in held:
                    held.remove(args[0])
            self.regions.pop(args[0] - 32 if name == "FreeKernelStack" else args[0], None)

    def remember(self, start: int, length: int, problems: dict[str, str]) -> bytes:
        """Read length bytes at start; they must stay so until freed."""
        data = self.ms.virmem.ReadVirtualMemory(self.kernel, start, length, False)
        if not isinstance(data, bytes):
            problems[CONTENTS] = f"{start:#x} just handed out does not read: {data!r}"
            return b""
        if data:
            self.regions[start] = bytearray(data)
        return data

    def write(self, pick: int, offset: int, data: bytes) -> None:
        start = sorted(self.regions)[pick % len(self.regions)]
        known = self.regions[start]
        offset %= len(known)
        data = data[:len(known) - offset]
        if self.ms.virmem.WriteVirtualMemory(self.kernel, start + offset, data, False) is not True:
            raise_problems(f"write at {start + offset:#x}", {CONTENTS: "the write was refused"})
        known[offset:offset + len(data)] = data
        snap = system_snapshot(self.ms)
        problems = check_invariants(self.machine, sp.INVARIANTS, snap,
                                    lambda: to_system_state(snap))
        raise_problems(f"write {data!r} at {start + offset:#x}",
                       problems | self.check_contents())

    def check_contents(self) -> dict[str, str]:
        for start, known in self.regions.items():
            data = self.ms.virmem.ReadVirtualMemory(self.kernel, start, len(known), False)
            if data != bytes(known):
                return {CONTENTS: f"{start:#x} no longer holds {bytes(known)!r}"}
        return {}


# -- the machine ------------------------------------------------------------------

def _pick(items: list[int], pick: int) -> int:
    return items[pick % len(items)]


#: Kernel pages MapPage may map (above the page area) and pages it must refuse:
#: the identity region, the heap, the stack and page areas, a user page.
MAP_PAGES = (0xF0000000, 0xF0001000, 0xF0400000, 0xFFFFF000)
DENIED_PAGES = (0x1000, 0xC0001000, 0xD0000000, PAGE_AREA_START, 0x400000)
SIZES = st.one_of(st.integers(0, 64), st.integers(0, 0x3000), st.just(0x40000))


class SystemMachine(CheckedMachine):
    """Boot, stacks, heap memory, pages and mappings of one small subsystem."""

    h: SystemHarness

    @initialize(kernel_end=st.sampled_from(BOOT_ENDS), unbooted=st.integers(0, 9))
    def start(self, kernel_end: int, unbooted: int) -> None:
        type(self).examples += 1
        self.h = SystemHarness(type(self))
        if unbooted != 9:
            self.h.call(BOOT, kernel_end)

    @rule(kernel_end=st.one_of(st.sampled_from(BOOT_ENDS), st.sampled_from(
        (0, 0x80000, 0xFFFFF, 0x3D0000, 0xFFFFFFFF, *HOSTILE))))
    def boot(self, kernel_end: Any) -> None:
        self.h.call(BOOT, kernel_end)

    @rule(free=st.booleans(), pick=st.integers(0, 15), twice=st.booleans())
    def stack(self, free: bool, pick: int, twice: bool) -> None:
        """AllocateKernelStack, or FreeKernelStack of one (twice: ERROR_INVALID_ADDRESS)."""
        if free and self.h.stacks:
            stack = _pick(self.h.stacks, pick)
            for _ in range(1 + twice):
                self.h.call("FreeKernelStack", stack)
        else:
            self.h.call("AllocateKernelStack")

    @rule(free=st.booleans(), size=SIZES,
          alignment=st.sampled_from((0, 0, 1, 8, 64, PAGE_SIZE, 2 * PAGE_SIZE)),
          pick=st.integers(0, 15), twice=st.booleans())
    def memory(self, free: bool, size: int, alignment: int, pick: int, twice: bool) -> None:
        """AllocateMemory / AllocateAlignedMemory, or FreeMemory of a pointer (twice)."""
        if free and self.h.pointers:
            pointer = _pick(self.h.pointers, pick)
            for _ in range(1 + twice):
                self.h.call("FreeMemory", pointer)
        elif alignment:
            self.h.call("AllocateAlignedMemory", size, alignment)
        else:
            self.h.call("AllocateMemory", size)

    @precondition(lambda self: self.h.regions)
    @rule(pick=st.integers(0, 15), offset=st.integers(0, 31),
          data=st.binary(min_size=1, max_size=8))
    def write(self, pick: int, offset: int, data: bytes) -> None:
        self.h.write(pick, offset, data)

    @rule(release=st.booleans(), pick=st.integers(0, 15))
    def free_page(self, release: bool, pick: int) -> None:
        """GetFreePage, or ReleasePage of a page it gave (twice sometimes)."""
        if release and self.h.pages:
            page = _pick(self.h.pages, pick)
            for _ in range(1 + pick % 2):
                self.h.call("ReleasePage", page)
        else:
            self.h.call("GetFreePage")

    @rule(free=st.booleans(), pick=st.integers(0, 15))
    def hold_frame(self, free: bool, pick: int) -> None:
        """RequestFrame (a held frame for MapPage), or FreeFrame of one."""
        if free and self.h.held:
            self.h.call("FreeFrame", _pick(self.h.held, pick))
        else:
            self.h.call("RequestFrame", True, True)

    @rule(page=st.one_of(st.sampled_from(MAP_PAGES), st.sampled_from(MAP_PAGES + DENIED_PAGES)),
          frame=st.sampled_from(("free", "free", "held", "held", "busy", "beyond")),
          pick=st.integers(0, 15), kernel=st.booleans(), writable=st.booleans())
    def map_page(self, page: int, frame: str, pick: int, kernel: bool, writable: bool) -> None:
        if frame == "held" and self.h.held:
            physical = _pick(self.h.held, pick)
        else:
            physical = {"busy": (0x10000, 0x100000)[pick % 2], "beyond": 2 * MEMORY_SIZE
                        }.get(frame, MEMORY_SIZE - (1 + pick) * PAGE_SIZE)
        self.h.call("MapPage", page, physical, kernel or pick % 4 != 0, writable)

    @precondition(lambda self: self.h.mapped)
    @rule(pick=st.integers(0, 15))
    def unmap_page(self, pick: int) -> None:
        """UnmapPage of a mapping (sometimes twice), or of a page MapPage did not map."""
        page = _pick(self.h.mapped, pick) if pick % 4 else \
            _pick(list(MAP_PAGES + DENIED_PAGES), pick)
        for _ in range(1 + (pick % 3 == 0)):
            self.h.call("UnmapPage", page)

    @rule(name=st.sampled_from(sorted(STATISTICS)))
    def statistics(self, name: str) -> None:
        self.h.call(name)

    @rule(name=st.sampled_from(("FreeKernelStack", "FreeMemory", "ReleasePage", "UnmapPage",
                                "AllocateMemory", "AllocateAlignedMemory", "MapPage")),
          value=st.sampled_from((*HOSTILE, 0xF0000001)))
    def hostile(self, name: str, value: Any) -> None:
        """A non-u32 (or unaligned) argument: ERROR_INVALID_PARAMETER, nothing changed."""
        args = {"AllocateAlignedMemory": (16, value), "MapPage": (0xF0000000, value, True, True)
                }.get(name, (value,))
        self.h.call(name, *args)
        if self.h.target(name).last_error != E.ERROR_INVALID_PARAMETER and not (
                value == 0xF0000001 and name in ("FreeKernelStack", "FreeMemory", "ReleasePage",
                                                 "AllocateMemory")):
            raise CheckError(f"{name}{args!r}: expected ERROR_INVALID_PARAMETER", [TRANSITION])


# -- broken models and the runner -----------------------------------------------

_FREE_STACK, _GET_FREE_PAGE = MemorySubsystem.FreeKernelStack, MemoryInterface.GetFreePage


def _free_stack_leaks(self: MemorySubsystem, stack: int) -> bool:
    """FreeKernelStack that forgets the stack without unmapping its pages."""
    if not is_u32(stack) or stack not in self.stacks:
        return _FREE_STACK(self, stack)
    self.stacks.remove(stack)
    return self._ok(True)


def _free_page_from_low_memory(self: MemoryInterface) -> int:
    """GetFreePage that maps frame 0x10 of the first MB: it marks the reserved frame
    held in the PageManager's owner map and hands it to MapVirtualAddress."""
    pm, kernel = self.subsystem.pageman, self.subsystem.virmem.kernel_directory
    if kernel is None or not pm.initialized or pm.owner[0x10] != FrameOwner.RESERVED:
        return _GET_FREE_PAGE(self)
    page = PAGE_AREA_START
    while page in self.subsystem.pages:
        page += PAGE_SIZE
    pm.owner[0x10] = FrameOwner.HELD
    self.subsystem.virmem.MapVirtualAddress(kernel, page, 0x10 * PAGE_SIZE, True, True)
    self.subsystem.pages.add(page)
    return self._ok(page)


def _used_memory_off_by_one(self: MemorySubsystem) -> int:
    return self._bytes(lambda: self.pageman.frames.used + 1)


SYSTEM_MODEL_VARIANTS = (
    ModelVariant("free_stack_leaks", ("SYS-1", TRANSITION),
                 {"MemorySubsystem.FreeKernelStack": _free_stack_leaks}),
    ModelVariant("free_page_from_low_memory", ("SYS-3",),
                 {"MemoryInterface.GetFreePage": _free_page_from_low_memory}),
    ModelVariant("used_memory_off_by_one", ("SYS-2",),
                 {"MemorySubsystem.GetUsedMemory": _used_memory_off_by_one}),
)


def run_subsystem_machine(profile: str, patches: Mapping[str, object] | None = None, *,
                          max_examples: int | None = None,
                          shrink_seconds: float | None = None) -> Verdict:
    """Run the machine; ``patches`` maps "MemorySubsystem.method", "MemoryInterface.method"
    or "PageManager.method" to a replacement (restored afterwards)."""
    owners = {cls.__name__: cls for cls in (MemorySubsystem, MemoryInterface, PageManager)}
    return run_machine(SystemMachine, profile, BUDGETS, patches, owners, max_examples=max_examples,
                       shrink_seconds=shrink_seconds)


def obligations() -> Iterator[Obligation]:
    yield machine_obligation("memory_subsystem.machine.refinement", "memory_subsystem",
                             run_subsystem_machine)
