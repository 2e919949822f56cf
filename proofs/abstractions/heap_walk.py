"""A kernel heap's blocks as its memory holds them, read without z3.

The heap abstraction (proofs/abstractions/kernel_heap.py) and the oracle's model world
(proofs/oracle/world.py, whose shim starts without importing z3) both read the
heap this way: from data_start, each header's size leads to the next; the
magic, hole flag, size, footer magic and footer back-pointer are the bytes
found there, so a heap whose bookkeeping and memory disagree shows it.
Reading goes through the directory's tables and the frames directly, without
setting accessed bits.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from model.kernel_heap import KernelHeap
from model.page_manager import PageManager
from model.page_tables import PageDirectory
from spec.abi import FOOTER_SIZE, HEADER_SIZE, MIN_BLOCK, PAGE_SHIFT, PAGE_SIZE, PTE_PRESENT

_HEADER = struct.Struct("<IB3xI")
_FOOTER = struct.Struct("<II")


@dataclass(frozen=True)
class RawBlock:
    """A block as memory holds it: header at ``header``, then what it says."""

    header: int
    magic: int
    hole: bool
    size: int
    fmagic: int
    back: int



def read_virtual(pageman: PageManager, directory: PageDirectory | None, address: int,
                 length: int) -> bytes | None:
    """Bytes at a virtual address of directory (None when a page is unmapped)."""
    if directory is None:
        return None
    out = bytearray()
    while length > 0:
        table = directory.tables[(address >> 22) & 0x3FF]
        entry = 0 if table is None else table.entries[(address >> PAGE_SHIFT) & 0x3FF]
        if not entry & PTE_PRESENT:
            return None
        offset = address & (PAGE_SIZE - 1)
        piece = min(length, PAGE_SIZE - offset)
        out += pageman.read_span([(entry >> PAGE_SHIFT, offset, offset + piece)])
        address += piece
        length -= piece
    return bytes(out)


def raw_blocks(heap: KernelHeap) -> tuple[RawBlock, ...]:
    """Follow the headers from data_start; stop at the end or at a size that
    cannot be followed (the last block read then shows the damage)."""
    blocks = []
    at = heap.data_start
    pageman, directory, end = heap.vmm.pageman, heap.directory, heap.end_address
    while heap.created and at < end:
        raw = read_virtual(pageman, directory, at, HEADER_SIZE)
        if raw is None:
            break
        magic, hole, size = _HEADER.unpack(raw)
        footer = (read_virtual(pageman, directory, at + size - FOOTER_SIZE, FOOTER_SIZE)
                  if size >= FOOTER_SIZE and at + size <= end else None)
        fmagic, back = _FOOTER.unpack(footer) if footer is not None else (0, 0)
        blocks.append(RawBlock(at, magic, hole == 1, size, fmagic, back))
        if size < MIN_BLOCK or at + size > end:
            break
        at += size
    return tuple(blocks)
