"""User-family rules aimed at the boundaries where address spaces and heaps
break (issue 16, "Campaigns": generation reaches the boundaries; docs/oracle.md,
"Generation at the boundaries"), mixed into the user family's machine beside
the user machine's own rules.

Each is a short composite whose arguments come from what the call before it
returned, so that it lands exactly on an edge the machine's single calls reach
only by luck in a sequence of two dozen calls drawn from some twenty rules:

- a reservation's end (docs/user-space.md, VirtualAlloc: MEM_COMMIT of pages
  outside a reservation fails with ERROR_INVALID_ADDRESS): a 64 KB reservation
  (one allocation-granularity granule) or one of a granule and a page, then a
  commit of one or two pages ending a page before its end, exactly at it, or a
  page past it;
- the allocation granularity: VirtualAlloc(MEM_RESERVE | MEM_COMMIT) at an
  address a page, a granule less a page or a whole granule past a 64 KB
  boundary (a reservation's base is rounded down to the granule), of a page, a
  granule or a granule and a byte;
- part of a committed range given a new protection: two committed read-write
  pages (VirtualAlloc or mmap), then VirtualProtect or mprotect to READONLY,
  EXECUTE_READ or NOACCESS of the first page, both, the second, or the second
  and a page past the allocation (which fails, 487 / ENOMEM);
- part of a committed range decommitted: two or three committed pages, then
  MEM_DECOMMIT of some of them from the first, second or third page (a range
  reaching a page past the allocation included);
- mmap and munmap of exactly a page, a page and a byte, or two pages, then
  munmap of the whole mapping from its base, of its second page, or of a page
  more than it has (mm/mmap.c: munmap rounds the length up to pages);
- brk across a page boundary: to a byte before, exactly at or a byte past the
  end of the page after the break's, then perhaps back down where it was;
- HeapAlloc of 0 bytes, of 1, of the process heap's whole reservation and a
  few bytes less, and of sizes no heap can give (~0 - 7, ~0: Wine
  dlls/kernel32/tests/heap.c test_HeapCreate); the block freed or kept;
- HeapReAlloc growing and shrinking a fresh block: to 0, a byte less or the
  same size; or a byte more (into the block's rounding slack) and then a
  page more (the block moves), with HEAP_ZERO_MEMORY and
  HEAP_REALLOC_IN_PLACE_ONLY (which must then fail, the block kept).
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import precondition, rule

from model.user_layout import page_ceil
from proofs.machines.user_space import FIXED_AREA, NO_FD, Layout
from spec.abi import (
    ALLOCATION_GRANULARITY,
    HEAP_REALLOC_IN_PLACE_ONLY,
    HEAP_ZERO_MEMORY,
    MAP_ANONYMOUS,
    MAP_PRIVATE,
    MEM_COMMIT,
    MEM_DECOMMIT,
    MEM_RESERVE,
    ORIGIN_PROCESS_HEAP,
    PAGE_EXECUTE_READ,
    PAGE_NOACCESS,
    PAGE_READONLY,
    PAGE_READWRITE,
    PAGE_SIZE,
)

P = PAGE_SIZE
#: Where alloc_at_granularity aims: above the machine's own fixed area.
GRANULE_AREA = FIXED_AREA + 0x200000
#: heap_alloc_edge's sizes: 0 and 1 byte, the process heap's whole reservation
#: and a little less, and sizes no heap can give (Wine test_HeapCreate: ~0 and
#: ~0 - 7 fail).
HEAP_EDGES = ("0", "1", "reservation", "reservation - 0x20", "reservation - page", "~0 - 7",
              "~0")
#: Fresh blocks' sizes for HeapReAlloc: empty, a byte, a small block, a page's payload.
BLOCK_SIZES = (0, 1, 24, P - 4)
#: mprotect's PROT_* for each protection protect_part gives.
PROTS = {PAGE_READONLY: 1, PAGE_EXECUTE_READ: 5, PAGE_NOACCESS: 0}
REALLOC_FLAGS = (0, HEAP_ZERO_MEMORY, HEAP_REALLOC_IN_PLACE_ONLY,
                 HEAP_REALLOC_IN_PLACE_ONLY | HEAP_ZERO_MEMORY)


#: boundary_tour's stops: each composite with the arguments of one of its edges.
TOUR: tuple[tuple[str, tuple[Any, ...]], ...] = (
    ("heap_grow", (24, 0, 0)),
    ("mmap_then_munmap", (P, 3, "whole")),
    ("protect_part", (False, 0, 1, PAGE_READONLY)),
    ("decommit_part", (2, 0, 1)),
    ("brk_across_page", (0, True)),
    ("commit_at_reservation_end", (ALLOCATION_GRANULARITY, 1, 2)),
    ("heap_shrink", (24, "zero", HEAP_ZERO_MEMORY)),
    ("alloc_at_granularity", (P, ALLOCATION_GRANULARITY + 1)),
    ("heap_alloc_edge", ("reservation", True, True)),
    ("protect_part", (True, 1, 2, PAGE_EXECUTE_READ)),
)


class UserBoundaryRules:
    """Mixed into the user family's machine (``self.h`` is its UserFront)."""

    h: Any
    tour_stop = 0

    @precondition(lambda self: self.has_current())
    @rule()
    def boundary_tour(self) -> None:
        """The next of TOUR's composites. Hypothesis' first sequence of a run is its
        simplest: its first valid rule (no arguments first, then by name) repeated;
        without this rule that is brk 22 times (at seed 1, two of the first six
        sequences of the user family were). With it that sequence visits every
        boundary composite in turn."""
        name, args = TOUR[self.tour_stop % len(TOUR)]
        self.tour_stop += 1
        getattr(self, name)(*args)

    def layout(self) -> Layout | None:
        raise NotImplementedError

    def has_current(self) -> bool:
        raise NotImplementedError

    def protect(self, address: int, size: int, protect: int) -> None:
        raise NotImplementedError

    @precondition(lambda self: self.has_current())
    @rule(size=st.sampled_from((ALLOCATION_GRANULARITY, ALLOCATION_GRANULARITY + P)),
          end=st.sampled_from((-1, 0, 1)), pages=st.integers(1, 2))
    def commit_at_reservation_end(self, size: int, end: int, pages: int) -> None:
        """Reserve, then commit pages ending a page before, at, or a page past its end."""
        base = self.h.call("SyscallVirtualAlloc", 0, size, MEM_RESERVE, PAGE_READWRITE)
        if type(base) is int and base:
            last = base + size + end * P
            self.h.call("SyscallVirtualAlloc", last - pages * P, pages * P, MEM_COMMIT,
                        PAGE_READWRITE)

    @precondition(lambda self: self.has_current())
    @rule(offset=st.sampled_from((0, P, ALLOCATION_GRANULARITY - P, ALLOCATION_GRANULARITY)),
          size=st.sampled_from((P, ALLOCATION_GRANULARITY, ALLOCATION_GRANULARITY + 1)))
    def alloc_at_granularity(self, offset: int, size: int) -> None:
        """Reserve and commit at an address offset past a 64 KB boundary."""
        self.h.call("SyscallVirtualAlloc", GRANULE_AREA + offset, size, MEM_RESERVE | MEM_COMMIT,
                    PAGE_READWRITE)

    @precondition(lambda self: self.has_current())
    @rule(pages=st.integers(2, 3), first=st.integers(0, 2), count=st.integers(1, 2))
    def decommit_part(self, pages: int, first: int, count: int) -> None:
        """Commit pages, then decommit count of them from page first."""
        base = self.h.call("SyscallVirtualAlloc", 0, pages * P, MEM_RESERVE | MEM_COMMIT,
                           PAGE_READWRITE)
        if type(base) is int and base:
            self.h.call("SyscallVirtualFree", base + first * P, count * P, MEM_DECOMMIT)

    @precondition(lambda self: self.has_current())
    @rule(linux=st.booleans(), first=st.integers(0, 1), count=st.integers(1, 2),
          protect=st.sampled_from((PAGE_READONLY, PAGE_EXECUTE_READ, PAGE_NOACCESS)))
    def protect_part(self, linux: bool, first: int, count: int, protect: int) -> None:
        """Two committed read-write pages (VirtualAlloc, or mmap), then a new
        protection for count of them from page first: the first page, both, the
        second, or the second and a page past the allocation."""
        if linux:
            base = self.h.call("SyscallMmap", 0, 2 * P, 3, MAP_PRIVATE | MAP_ANONYMOUS, NO_FD, 0)
        else:
            base = self.h.call("SyscallVirtualAlloc", 0, 2 * P, MEM_RESERVE | MEM_COMMIT,
                               PAGE_READWRITE)
        if type(base) is int and base > 0:
            if linux:
                self.h.call("SyscallMprotect", base + first * P, count * P,
                            PROTS[protect])
            else:
                self.protect(base + first * P, count * P, protect)

    @precondition(lambda self: self.has_current())
    @rule(length=st.sampled_from((P, P + 1, 2 * P)), prot=st.sampled_from((3, 1, 0)),
          unmap=st.sampled_from(("whole", "second page", "page past")))
    def mmap_then_munmap(self, length: int, prot: int, unmap: str) -> None:
        """mmap exactly a page, a page and a byte or two pages, then munmap it all,
        its second page, or a page more than it has."""
        base = self.h.call("SyscallMmap", 0, length, prot, MAP_PRIVATE | MAP_ANONYMOUS,
                           NO_FD, 0)
        if type(base) is int and base > 0:
            pages = page_ceil(length)
            address, size = {"whole": (base, length), "second page": (base + P, P),
                             "page past": (base, pages + P)}[unmap]
            self.h.call("SyscallMunmap", address, size)

    @precondition(lambda self: self.has_current())
    @rule(edge=st.sampled_from((-1, 0, 1)), back=st.booleans())
    def brk_across_page(self, edge: int, back: bool) -> None:
        """brk a byte before, at, or a byte past the end of the next page; perhaps back."""
        layout = self.layout()
        assert layout is not None
        self.h.call("SyscallBrk", page_ceil(layout.brk) + P + edge)
        if back:
            self.h.call("SyscallBrk", layout.brk)

    def reservation(self, layout: Layout) -> int:
        """The process heap's reservation's size (the whole heap could hold)."""
        return next((end - base for base, end, origin in layout.allocations
                     if origin == ORIGIN_PROCESS_HEAP), 0)

    @precondition(lambda self: self.has_current())
    @rule(which=st.sampled_from(HEAP_EDGES), zero=st.booleans(), keep=st.booleans())
    def heap_alloc_edge(self, which: str, zero: bool, keep: bool) -> None:
        """HeapAlloc at the edges of what the heap can give; the block freed or kept."""
        layout = self.layout()
        assert layout is not None
        reservation = self.reservation(layout)
        size = {"0": 0, "1": 1, "reservation": reservation,
                "reservation - 0x20": reservation - 0x20, "reservation - page": reservation - P,
                "~0 - 7": 0xFFFFFFF8, "~0": 0xFFFFFFFF}[which]
        pointer = self.h.call("SyscallHeapAlloc", layout.heap, HEAP_ZERO_MEMORY if zero else 0,
                              size)
        if type(pointer) is int and pointer and not keep:
            self.h.call("SyscallHeapFree", layout.heap, 0, pointer)

    def resize(self, size: int, change: str, flags: int) -> int:
        """A fresh block (its first bytes written), then HeapReAlloc of it; the
        block's pointer after it (0: none)."""
        layout = self.layout()
        assert layout is not None
        pointer = self.h.call("SyscallHeapAlloc", layout.heap, 0, size)
        if type(pointer) is not int or not pointer:
            return 0
        new = {"zero": 0, "byte less": max(size - 1, 0), "same": size,
               "byte more": size + 1}[change]
        moved = self.h.call("SyscallHeapReAlloc", layout.heap, flags, pointer, new)
        return moved if type(moved) is int and moved else pointer

    @precondition(lambda self: self.has_current())
    @rule(size=st.sampled_from(BLOCK_SIZES[1:]), flags=st.sampled_from(REALLOC_FLAGS),
          move_flags=st.sampled_from(REALLOC_FLAGS[:3]))
    def heap_grow(self, size: int, flags: int, move_flags: int) -> None:
        """A fresh block grown by a byte (into its rounding slack, or moved), then
        by a page more (it moves; in place only, it must fail and stay)."""
        pointer = self.resize(size, "byte more", flags)
        if pointer:
            layout = self.layout()
            assert layout is not None
            self.h.call("SyscallHeapReAlloc", layout.heap, move_flags, pointer, size + 1 + P)

    @precondition(lambda self: self.has_current())
    @rule(size=st.sampled_from(BLOCK_SIZES), change=st.sampled_from(("zero", "byte less", "same")),
          flags=st.sampled_from(REALLOC_FLAGS))
    def heap_shrink(self, size: int, change: str, flags: int) -> None:
        """Shrunk to 0 or by a byte, or kept at its size (in place)."""
        self.resize(size, change, flags)
