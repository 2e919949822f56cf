"""The seed's paging structures (section 2): ``PageDirectory`` and ``PageTable``, and
the page fault the MMU reports.

A PageDirectory and each PageTable occupy one physical frame and hold 1024
encoded entries (model/x86_paging.py): the seed's fields are kept, ``tables``
(the PageTable objects), ``tables_physical`` (the PDEs) and ``physical_addr``.
They are plain data: the VirtualMemoryManager (model/virtual_memory.py) owns
and changes them, and the PageManager only names them (AllocFrame's ``pd``).
"""

from __future__ import annotations

from typing import NamedTuple

from spec.abi import ENTRIES_PER_TABLE


class PageFault(NamedTuple):
    """A page fault: the x86 error code (P, W/R, U/S bits) and the faulting address (CR2)."""

    error_code: int
    address: int


class PageTable:
    """1024 PTEs in one physical frame."""

    def __init__(self, physical_addr: int) -> None:
        self.entries = [0] * ENTRIES_PER_TABLE
        self.physical_addr = physical_addr


class PageDirectory:
    """1024 PDEs (``tables_physical``) and the tables they point to (``tables``)."""

    def __init__(self, physical_addr: int) -> None:
        self.tables: list[PageTable | None] = [None] * ENTRIES_PER_TABLE
        self.tables_physical = [0] * ENTRIES_PER_TABLE
        self.physical_addr = physical_addr
