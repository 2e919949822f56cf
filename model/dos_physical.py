"""Byte access to physical memory for the DOS areas (MCB chains, XMS moves, the EMS frame).

The DOS areas read and write the PageManager's frames directly, as real-mode
code and the memory managers themselves do (no page tables in between). The
frames must exist (pre: address + length <= nframes * PAGE_SIZE); their owner is
not checked here: the callers own or reserve them.
"""

from __future__ import annotations

from model.page_manager import PageManager
from model.x86_paging import page_pieces
from spec.abi import PAGE_SIZE


def spans(address: int, length: int) -> list[tuple[int, int, int]]:
    """(frame, start, end) pieces of [address, address + length)."""
    return list(page_pieces(address, length))


def read_physical(pageman: PageManager, address: int, length: int) -> bytes:
    return pageman.read_span(spans(address, length))


def write_physical(pageman: PageManager, address: int, data: bytes) -> None:
    pageman.write_span(spans(address, len(data)), data)


def zero_physical(pageman: PageManager, address: int, length: int) -> None:
    """Zero [address, address + length): whole frames are dropped (they read as zeros)."""
    for frame, start, end in spans(address, length):
        page = pageman.memory.get(frame)
        if page is None:
            continue
        if start == 0 and end == PAGE_SIZE:
            del pageman.memory[frame]
        else:
            page[start:end] = bytes(end - start)
