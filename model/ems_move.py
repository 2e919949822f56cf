"""LIM 4.0 function 24, INT 67h AH=57h: move (AL=00h) or exchange (AL=01h) a
memory region between conventional and expanded memory, over EmsManager.

The region (18 bytes at DS:SI): dword length; then source and destination,
each a byte type (0 conventional, 1 expanded), word handle, word offset, word
segment (conventional) or logical page (expanded). An expanded region starts
at byte offset of the logical page and runs on through the handle's following
logical pages; its bytes are where copy-on-switch keeps them (the physical
page while mapped, the storage frames otherwise: model/ems.py).

Checks, in order (LIM 4.0 function 24's status list; DOSBox-staging
src/ints/ems.cpp lines 676-777 checks 83h and 8Ah only): 98h a type other
than 0/1; 96h a length over 1 MB; per side, source first: 83h unknown
handle, 95h an offset past 3FFFh, 8Ah a logical page past the handle's, 93h
a region past the handle's pages; A2h a conventional region past 1 MB. Then
the regions' overlap: an exchange of overlapping regions is 97h (nothing
done); a move of overlapping regions is done as memmove and answers 92h (a
success status LIM 4.0 defines: "the move was performed but the regions
overlap"). Length 0 succeeds and changes nothing. Overlap is judged on the
bytes' current physical places, so an expanded region mapped in the page
frame overlaps the conventional bytes of the frame.
"""

from __future__ import annotations

import struct

from model.dos_physical import read_physical, write_physical
from model.ems import EmsManager, slot_address
from spec.abi import (
    CONVENTIONAL_LIMIT,
    EMM_BAD_MEMORY_TYPE,
    EMM_EXCHANGE_OVERLAP,
    EMM_LENGTH_TOO_LARGE,
    EMM_MOVE_OVERLAP,
    EMM_OFFSET_TOO_LARGE,
    EMM_PAST_1MB,
    EMM_REGION_TOO_LONG,
    EMS_INVALID_HANDLE,
    EMS_INVALID_LOGICAL,
    EMS_PAGE_SIZE,
    EMS_SUCCESS,
    PAGE_SHIFT,
    PAGE_SIZE,
)

#: The region structure (18 bytes) and its longest length (1 MB).
REGION = struct.Struct("<IBHHHBHHH")
MAX_REGION = 0x100000


def _pieces(ems: EmsManager, kind: int, handle: int, offset: int, where: int,
            length: int) -> list[tuple[int, int]]:
    """The (physical address, length) pieces of one side's region, none across
    a 4 KB frame of expanded memory (at most 257 for 1 MB)."""
    if kind == 0:
        return [(where * 16 + offset, length)] if length else []
    pieces: list[tuple[int, int]] = []
    position, end = where * EMS_PAGE_SIZE + offset, where * EMS_PAGE_SIZE + offset + length
    while position < end:
        logical, within = divmod(position, EMS_PAGE_SIZE)
        size = min(end - position, PAGE_SIZE - within % PAGE_SIZE)
        slot = next((p for p, mapped in enumerate(ems.slots) if mapped == (handle, logical)), -1)
        if slot >= 0:
            address = slot_address(slot) + within
        else:
            frame = ems.storage[ems.handles[handle][logical]][within >> PAGE_SHIFT]
            address = (frame << PAGE_SHIFT) + within % PAGE_SIZE
        pieces.append((address, size))
        position += size
    return pieces


def _check_side(ems: EmsManager, kind: int, handle: int, offset: int, where: int,
                length: int) -> int:
    if kind == 0:
        return EMM_PAST_1MB if where * 16 + offset + length > CONVENTIONAL_LIMIT else 0
    pages = ems.handles.get(handle)
    if pages is None:
        return EMS_INVALID_HANDLE
    if offset >= EMS_PAGE_SIZE:
        return EMM_OFFSET_TOO_LARGE
    if where >= len(pages):
        return EMS_INVALID_LOGICAL
    if where * EMS_PAGE_SIZE + offset + length > len(pages) * EMS_PAGE_SIZE:
        return EMM_REGION_TOO_LONG
    return 0


def _read(ems: EmsManager, pieces: list[tuple[int, int]]) -> bytes:
    return b"".join(read_physical(ems.pageman, address, size) for address, size in pieces)


def _write(ems: EmsManager, pieces: list[tuple[int, int]], data: bytes) -> None:
    done = 0
    for address, size in pieces:
        write_physical(ems.pageman, address, data[done:done + size])
        done += size


def EmsMoveRegion(ems: EmsManager, exchange: bool, region: bytes) -> int:
    """57h/00h (exchange False) or 57h/01h: the LIM status (00h, or 92h for a
    move of overlapping regions, done); a region that is not 18 bytes cannot
    come from DS:SI: 98h."""
    if type(region) is not bytes or len(region) != REGION.size:
        return EMM_BAD_MEMORY_TYPE
    length, *sides = REGION.unpack(region)
    source = (sides[0], sides[1], sides[2], sides[3])
    destination = (sides[4], sides[5], sides[6], sides[7])
    if source[0] > 1 or destination[0] > 1:
        return EMM_BAD_MEMORY_TYPE
    if length > MAX_REGION:
        return EMM_LENGTH_TOO_LARGE
    for kind, handle, offset, where in (source, destination):
        code = _check_side(ems, kind, handle, offset, where, length)
        if code:
            return code
    src = _pieces(ems, *source, length)
    dst = _pieces(ems, *destination, length)
    overlap = any(a < b + n and b < a + m for a, m in src for b, n in dst)
    if overlap and exchange:
        return EMM_EXCHANGE_OVERLAP
    data = _read(ems, src)
    if exchange:
        _write(ems, src, _read(ems, dst))
    _write(ems, dst, data)
    return EMM_MOVE_OVERLAP if overlap else EMS_SUCCESS
