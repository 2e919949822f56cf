"""DOS rules aimed at the states where XMS and EMS managers break (issue 16,
"Campaigns": generation reaches the boundaries), mixed into the dos family's
machine beside the DOS machine's own rules.

Each is a short composite the machine's single calls reach only by luck in a
sequence of two dozen calls drawn from some thirty rules:

- a locked XMS block freed (XMS 3.0 function 0Ah: ABh "block is locked", the
  block kept; HIMEM.SYS refuses it too): allocate, lock, free;
- an EMS page moved between physical pages (LIM 4.0 function 44h: a logical
  page shows in at most one physical page; mapping it elsewhere unmaps it
  from the first): allocate, map to one page, map to another;
- an EMS handle deallocated while its pages are mapped (LIM 4.0 function 45h
  frees the pages; the physical pages showing them show nothing after):
  allocate, map, deallocate;
- an XMS move (0Bh) with handle 0 into the HMA: FFFF:0010 and above are
  linear 100000h-10FFEFh, which HIMEM.SYS reaches; a move ending exactly at
  10FFF0h succeeds, one a byte further is refused with A7h (model/xms.py,
  tests/conformance). The source is conventional memory below the chain
  (0000:0600), which the move only reads.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import rule


class DosBoundaryRules:
    """Mixed into the dos family's machine (``self.h`` is its DosFront)."""

    h: Any

    @rule(kb=st.sampled_from((1, 16)), seed=st.booleans())
    def xms_free_while_locked(self, kb: int, seed: bool) -> None:
        handle = self.h.call("XmsAllocate", kb)
        if handle and self.h.call("XmsLock", handle):
            self.h.call("FreeXmsMemory" if seed else "XmsFree", handle)

    @rule(pages=st.integers(1, 2), first=st.integers(0, 3), second=st.integers(0, 3))
    def ems_move_between_physical_pages(self, pages: int, first: int, second: int) -> None:
        handle = self.h.call("EmsAllocate", pages)
        if handle and self.h.call("EmsMap", handle, 0, first):
            self.h.call("EmsMap", handle, 0, second)

    @rule(pages=st.integers(1, 2), physical=st.integers(0, 3), seed=st.booleans())
    def ems_free_while_mapped(self, pages: int, physical: int, seed: bool) -> None:
        handle = self.h.call("EmsAllocate", pages)
        if handle and self.h.call("EmsMap", handle, pages - 1, physical):
            self.h.call("FreeEmsPages" if seed else "EmsDeallocate", handle)

    @rule(length=st.sampled_from((2, 16)), offset=st.sampled_from((0x10, 0x20, 0xFFE0, 0xFFE8)))
    def xms_move_into_the_hma(self, length: int, offset: int) -> None:
        self.h.call("XmsMove", length, 0, 0x0000_0600, 0, 0xFFFF << 16 | offset)
