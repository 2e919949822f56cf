"""Byte access to physical memory for the DOS areas (model/dos_physical.py): spans,
reads, writes and zeroing across frame boundaries, read back frame by frame."""

from __future__ import annotations

import pytest

from model.dos_physical import read_physical, spans, write_physical, zero_physical
from model.page_manager import PageManager
from spec.abi import PAGE_SIZE


def _pageman() -> PageManager:
    pm = PageManager()
    assert pm.InitializePhysicalMemory(0x100000, 0x400000)
    return pm


def test_spans_cut_at_every_frame_boundary() -> None:
    assert spans(0x1FFE, 4) == [(1, 0xFFE, 0x1000), (2, 0, 2)]
    assert spans(0x3000, PAGE_SIZE) == [(3, 0, PAGE_SIZE)]
    assert spans(0x3000, 0) == []


@pytest.mark.parametrize(("start", "length"), [
    (0x2000, PAGE_SIZE),            # one whole frame
    (0x2800, 0x800),                # the second half of a frame, to its end
    (0x2000, 0x800),                # the first half, from its start
    (0x2100, 0x100),                # inside
    (0x2001, PAGE_SIZE - 1),        # all of a frame but its first byte
    (0x2800, PAGE_SIZE),            # across a boundary: a half and a half
    (0x1800, 2 * PAGE_SIZE),        # a half, a whole frame, a half
])
def test_zero_physical_clears_exactly_its_range(start: int, length: int) -> None:
    """Only [start, start + length) reads as zero afterwards; the bytes around it in
    the same frames keep their values (a whole frame may be dropped, since a
    frame with no bytes reads as zeros; a part of one may not)."""
    pm = _pageman()
    low, high = 0x1000, 0x5000
    pattern = bytes((i * 7 + 1) & 0xFF or 1 for i in range(high - low))
    write_physical(pm, low, pattern)
    zero_physical(pm, start, length)
    after = read_physical(pm, low, high - low)
    for offset, byte in enumerate(after):
        address = low + offset
        expected = 0 if start <= address < start + length else pattern[offset]
        assert byte == expected, hex(address)
