"""The kernel family: the page manager, the kernel directory and the kernel heap.

- **Set-up**: PROTOCOL.md's (by default the page manager on 48 frames, paging,
  a small heap; the implementation's configuration when it declares one:
  :func:`proofs.oracle.worlds.kernel.setup_calls`).
- **Rules**: the kernel heap's are :class:`proofs.machines.kernel_heap.HeapMachine`'s
  own (sizes, page alignment, live / double / foreign / misaligned frees,
  Expand, Contract, FindSmallestHole, payload writes), through
  :class:`HeapFront`, plus boundary rules of the oracle's own; the page
  manager's are written for the protocol's world: RequestFrame, FreeFrame of
  held frames (twice, sometimes) and of addresses that are not held, and the
  four queries.
- **Judge**: :class:`proofs.oracle.families.kernel_judge.KernelJudge` (the
  paging and heap specs over the observations).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule

from proofs.machines.kernel_heap import HeapMachine
from proofs.oracle.families.kernel_boundaries import BoundaryRules
from proofs.oracle.families.kernel_judge import KernelJudge
from proofs.oracle.families.rules import SessionRules, machine_class
from proofs.oracle.managers import Family
from proofs.oracle.session import Session, last_observed
from proofs.oracle.world import OPERATIONS
from proofs.oracle.worlds.kernel import setup_calls
from spec.abi import HEADER_SIZE, MIN_BLOCK, NO_FRAME, PAGE_SIZE

QUERIES = ("FirstFreeFrame", "GetFrameCount", "GetFreeFrameCount", "GetUsedFrameCount")


def bad_frames(mem_end: int) -> tuple[int, ...]:
    """Frame addresses FreeFrame must refuse whatever was handed out: reserved,
    past the end (the configuration's), unaligned, the last word."""
    return (0x0, 0x5000, 0xFF000, mem_end, mem_end + 0x1000, 0x100001, 0xFFFFFFFF)


class HeapFront:
    """What the heap machine's rules see: each call goes through the session
    (judged, traced); the records (live pointers) are the judge's."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.harness: Any = session.heap

    @property
    def live(self) -> dict[int, int]:
        return self.harness.live  # type: ignore[no-any-return]

    @property
    def snap(self) -> Any:
        return self.harness.snap

    def pointer(self, how: str, pick: int) -> int:
        return self.harness.pointer(how, pick)  # type: ignore[no-any-return]

    def call(self, name: str, *args: Any) -> Any:
        params = OPERATIONS["KernelHeap"][name]
        return self.session.execute("KernelHeap", name, dict(zip(params, args, strict=True)))

    def write(self, p: int, offset: int, data: bytes) -> None:
        size = self.live[p]
        if size:
            offset %= size
            self.session.execute("VirtualMemoryManager", "WriteVirtualMemory",
                                 {"virtual_addr": p + offset, "data": data[:size - offset].hex()})


class PageRules(SessionRules):
    """The page manager's rules."""

    h: Any  # HeapFront: what HeapMachine's rules call

    def started(self) -> None:
        self.frames: list[int] = []
        self.h = HeapFront(self.s)
        config = self.s.config.of("kernel")
        self.bad_frames = bad_frames(config["mem_end"])
        self.heap_start = config["heap_start"]

    def _frame(self, op: str, **args: Any) -> Any:
        return self.s.execute("PageManager", op, args)

    @rule(count=st.integers(1, 4), is_kernel=st.booleans(), is_writeable=st.booleans())
    def request_frames(self, count: int, is_kernel: bool, is_writeable: bool) -> None:
        for _ in range(count):
            frame = self._frame("RequestFrame", is_kernel=is_kernel, is_writeable=is_writeable)
            if isinstance(frame, int) and frame != NO_FRAME:
                self.frames.append(frame)

    @precondition(lambda self: self.frames)
    @rule(pick=st.integers(0, 1 << 16), twice=st.booleans())
    def free_frame(self, pick: int, twice: bool) -> None:
        """Free a held frame; sometimes again (a double free)."""
        frame = self.frames.pop(pick % len(self.frames))
        for _ in range(1 + twice):
            self._frame("FreeFrame", frame_addr=frame)

    @rule(pick=st.integers(0, 1 << 16))
    def free_not_held(self, pick: int) -> None:
        """FreeFrame of an address that is not a held frame."""
        extra = [f + 0x800 for f in self.frames[:2]]
        choices = [*self.bad_frames, *extra]
        self._frame("FreeFrame", frame_addr=choices[pick % len(choices)])

    @rule(which=st.sampled_from(QUERIES))
    def query(self, which: str) -> None:
        self._frame(which)

    @rule(page=st.integers(0, 0x21), offset=st.integers(0, 0xFFF), length=st.integers(0, 48))
    def look(self, page: int, offset: int, length: int) -> None:
        """Translate and read an address of the heap's range (mapped or not)."""
        self.s.look(self.heap_start + page * PAGE_SIZE + offset, length)


class OraclePageMachine(PageRules, RuleBasedStateMachine):
    """An implementation of the page manager alone."""


class OracleHeapMachine(PageRules, BoundaryRules, HeapMachine):
    """An implementation of the page manager and the kernel heap. Every rule
    stays enabled (no swarm testing): a run of the oracle is a few dozen
    sequences, and swarm testing makes so few a lottery.

    Besides the heap machine's rules, GetBlockSize (judged against the sizes
    the blocks were allocated with), and four aim at the boundaries where an
    implementation decides: an allocation sized from a hole the heap has
    (exactly its payload room, or up to 24 bytes less: the split-or-not
    boundary at a header plus a footer), a contraction to the smallest length
    (0: down to the floor, past any live block), and frees that unify: a block
    beside a hole, and two live neighbours one after the other; more, and
    hypothesis' targets, in :mod:`.kernel_boundaries`."""

    swarm = False

    def teardown(self) -> None:
        try:
            self.aim()
        finally:
            super().teardown()

    @rule(pick=st.integers(0, 1 << 16), slack=st.integers(0, 24))
    def alloc_to_fit(self, pick: int, slack: int) -> None:
        holes = [b.size for b in self.h.snap.blocks if b.hole]
        if holes:
            room = holes[pick % len(holes)] - MIN_BLOCK - slack
            self.h.call("Alloc", max(room, 0), False)

    @rule(how=st.sampled_from(("live", "live", "double", "misaligned", "foreign")),
          pick=st.integers(0, 1 << 16))
    def block_size(self, how: str, pick: int) -> None:
        """GetBlockSize of a live payload (its requested size) or of another
        address (0, ERROR_INVALID_ADDRESS)."""
        self.h.call("GetBlockSize", self.h.pointer(how, pick))

    @precondition(lambda self: self.h.snap.end - self.h.snap.start > self.h.snap.floor)
    @rule()
    def contract_to_floor(self) -> None:
        """Contract(0) while the heap is longer than its floor (at the floor it
        is a no-op every implementation gets right, and a step the shrinker
        would have to delete)."""
        self.h.call("Contract", 0)

    @rule(pick=st.integers(0, 1 << 16), left_first=st.booleans())
    def free_neighbours(self, pick: int, left_first: bool) -> None:
        """Free two adjacent live blocks, one after the other: the second free
        unifies with the hole the first one left (on its left, or its right)."""
        blocks = self.h.snap.blocks
        pairs = [(a.header + HEADER_SIZE, b.header + HEADER_SIZE)
                 for a, b in zip(blocks, blocks[1:], strict=False)
                 if a.header + HEADER_SIZE in self.h.live and b.header + HEADER_SIZE in self.h.live]
        if pairs:
            left, right = pairs[pick % len(pairs)]
            for p in (left, right) if left_first else (right, left):
                self.h.call("Free", p)

    @rule(pick=st.integers(0, 1 << 16), side=st.sampled_from((-1, 1)))
    def free_beside_hole(self, pick: int, side: int) -> None:
        """Free a live block with a hole before it (side -1) or after it (+1):
        unifying left, or right."""
        blocks = self.h.snap.blocks
        beside = [b.header + HEADER_SIZE for n, b in enumerate(blocks)
                  if not b.hole and b.header + HEADER_SIZE in self.h.live
                  and 0 <= n + side < len(blocks) and blocks[n + side].hole]
        if beside:
            self.h.call("Free", beside[pick % len(beside)])


def kernel_machine(session_factory: Callable[[], Session], managers: tuple[str, ...]
                   ) -> type[SessionRules]:
    """The kernel family's machine: the heap's rules too when it is declared."""
    heap = "KernelHeap" in managers
    return machine_class(OracleHeapMachine if heap else OraclePageMachine, session_factory)


def kernel_map(exchanges: list[Any]) -> list[str]:
    """The heap's blocks and the used frames as last reported."""
    out = []
    walk = last_observed(exchanges, "HeapWalk")
    if walk is not None and walk.get("created"):
        out.append(f"heap [{walk['start']:#x}, {walk['end']:#x}) max {walk['max']:#x}, "
                   f"data from {walk['data_start']:#x}:")
        for b in walk["blocks"]:
            ok = "" if b["magic"] == b["footer_magic"] == 0x123890AB and \
                b["footer_header"] == b["header"] else \
                f"  footer {{magic {b['footer_magic']:#x}, header {b['footer_header']:#x}}}"
            out.append(f"  {b['header']:#x}..{b['header'] + b['size']:#x}  "
                       f"{'hole ' if b['hole'] else 'block'} {b['size']:>6}{ok}")
    holes = last_observed(exchanges, "HoleIndex")
    if holes is not None:
        out.append("hole index: " + ", ".join(f"{size}@{header:#x}"
                                              for size, header in holes["holes"]))
    bitmap = last_observed(exchanges, "FrameBitmap")
    if bitmap is not None:
        out.append("used frames: " + ", ".join(
            f"{first:#x}" if count == 1 else f"{first:#x}-{first + count - 1:#x}"
            for first, count in bitmap["used"]))
    return out


KERNEL = Family(
    name="kernel", managers=("PageManager",), setup=setup_calls,
    state_observations=("FrameCounts", "FrameBitmap", "PageTables", "HeapWalk", "HoleIndex"),
    spec_observations=("FrameCounts", "FrameBitmap"), machine=kernel_machine,
    judge=KernelJudge, memory_map=kernel_map)
