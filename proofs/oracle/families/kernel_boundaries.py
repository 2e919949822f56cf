"""Kernel-heap rules aimed at the boundaries where heaps break (issue 16,
"Campaigns"; docs/oracle.md, "Generation at the boundaries").

Each rule computes its arguments from the heap as last reported, so that the
request lands exactly on a boundary an implementation decides at:

- the heap's max: a request for exactly the room left up to it (the tail hole,
  or the end, grown to max), a byte less or a byte more;
- a page: blocks that exactly fill one or two pages, or a byte more or less,
  page-aligned or not;
- wrap-around: sizes whose block (size plus header and footer, plus up to a
  page for alignment) passes 2^32;
- the leftover of a page-aligned split: a hole made to begin ``gap`` bytes
  before the header a page-aligned payload needs (0, 1, a header and footer
  less one, exactly, one more), then a page-aligned request into it;
- a full index: small blocks, every other one freed, a few holes at a time
  until the index holds its capacity and one more hole is asked for (only
  while at most 40 holes are missing, so never at a real-size index).

At the end of each sequence hypothesis' ``target`` is told how full the index
was and how far the heap had grown towards its max, so that generation drifts
towards the sequences that reach the index's capacity and the heap's limit.
Swarm testing stays off (``OracleHeapMachine.swarm``): with a few dozen
sequences a run, disabling rules at random makes the catch a lottery.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st
from hypothesis import target
from hypothesis.stateful import precondition, rule

from proofs.machines.kernel_heap import size_ending_near_page
from spec.abi import HEADER_SIZE, MIN_BLOCK, PAGE_SIZE

#: The full-index rule runs only while at most this many holes are missing.
MOST_HOLES = 40
WORD = 1 << 32


def _tail(snap: Any) -> int:
    """Where the room up to max begins: the hole that ends the heap, or its end."""
    return int(next((b.header for b in snap.blocks if b.hole and b.header + b.size == snap.end),
                    snap.end))


def _missing_holes(machine: Any) -> int:
    snap = machine.h.snap
    return int(snap.capacity) - len(snap.index)


class BoundaryRules:
    """Mixed into the kernel family's heap machine (``self.h`` is its HeapFront)."""

    h: Any
    s: Any

    @rule(offset=st.sampled_from((-1, 0, 1)), page_align=st.booleans())
    def alloc_to_max(self, offset: int, page_align: bool) -> None:
        """Exactly the room left up to max, a byte less or more."""
        snap = self.h.snap
        room = snap.max - _tail(snap) - MIN_BLOCK
        self.h.call("Alloc", max(room + offset, 0), page_align)

    @rule(pages=st.integers(1, 2), offset=st.sampled_from((-1, 0, 1)),
          page_align=st.booleans())
    def alloc_page_sized(self, pages: int, offset: int, page_align: bool) -> None:
        """A block that fills pages exactly (its payload, when page-aligned),
        a byte less or more."""
        size = pages * PAGE_SIZE - (0 if page_align else MIN_BLOCK) + offset
        self.h.call("Alloc", size, page_align)

    @rule(short=st.sampled_from((0, 1, MIN_BLOCK - 1, MIN_BLOCK, MIN_BLOCK + 1,
                                 PAGE_SIZE - 1, PAGE_SIZE + MIN_BLOCK)),
          page_align=st.booleans(), find=st.booleans())
    def alloc_wrapping(self, short: int, page_align: bool, find: bool) -> None:
        """A size ``short`` bytes below 2^32: with its header and footer (and
        alignment) the block's length wraps; Alloc and FindSmallestHole must fail."""
        self.h.call("FindSmallestHole" if find else "Alloc", WORD - 1 - short, page_align)

    @rule(gap=st.sampled_from((0, 1, MIN_BLOCK - 1, MIN_BLOCK, MIN_BLOCK + 1)),
          size=st.integers(0, 64))
    def alloc_aligned_leftover(self, gap: int, size: int) -> None:
        """A filler block that leaves a hole beginning ``gap`` bytes before the
        header of the next page-aligned payload, then a page-aligned request:
        the split before it leaves exactly gap bytes (no room for a hole below
        a header and footer)."""
        filler = size_ending_near_page(self.h.snap, -(HEADER_SIZE + gap), 1)
        if filler > 0 and self.h.call("Alloc", filler, False):
            self.h.call("Alloc", size, True)

    @precondition(lambda self: 0 < _missing_holes(self) <= MOST_HOLES)
    @rule(holes=st.integers(1, 4), size=st.integers(0, 16))
    def fill_index(self, holes: int, size: int) -> None:
        """Towards a full index: small blocks, every other one freed (up to
        four holes a time; repeated, and aimed at by the target, until the index
        is full and a free needs an entry it does not have)."""
        blocks = [self.h.call("Alloc", size, False) for _ in range(2 * holes)]
        for p in blocks[::2]:
            if p and p in self.h.live:
                self.h.call("Free", p)

    def aim(self) -> None:
        """Hypothesis' targets, once a sequence: index fill and heap growth."""
        session = getattr(self, "s", None)
        if session is None or session.failed or getattr(session, "heap", None) is None:
            return
        snap = self.h.snap
        if snap.created and snap.capacity:
            target(len(snap.index) / snap.capacity, label="index fill")
            target((snap.end - snap.start) / max(snap.max - snap.start, 1),
                   label="heap growth")
