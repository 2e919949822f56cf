"""Pure arithmetic of the KernelHeap (seed section 3): placement, split, expansion, contraction.

Every function is a total function of integers with a PEP 316 contract
(``pre:``/``post:``) that CrossHair checks over all paths
(proofs/contracts/crosshair.py). They use ``+ - * // %`` and comparisons only, so
CrossHair keeps them symbolic (see model/x86_paging.py). Each fixes one of
the tutorial heap's (JamesM's kernel heap) well-known bugs:

- ``aligned_header``: the tutorial tests ``location+sizeof(header_t) & 0xFFFFF000
  != 0`` (precedence: the mask binds first) and leaves a gap of 1..19 bytes
  that cannot hold a header and a footer; here the gap is 0 or >= MIN_BLOCK.
- ``split_block``: the tutorial computes ``orig_hole_size - new_size`` with
  unsigned operands and can underflow; here the remainder is split off only
  when it can hold a header and a footer, else the block absorbs it.
- ``contraction_length``: the tutorial's contract can cut into a live block or
  leave a hole of 1..19 bytes; here it cuts the trailing hole only, to 0 or
  >= MIN_BLOCK bytes, never below the floor.
"""

from __future__ import annotations

from model.x86_paging import align_up
from spec.abi import (
    HEADER_SIZE,
    MIN_BLOCK,
    PAGE_SIZE,
)


def aligned_header(hole: int) -> int:
    """The first header address >= hole whose payload is page aligned and whose gap
    [hole, header) is empty or can be a hole of its own (>= MIN_BLOCK bytes).

    pre: 0 <= hole < 2**32
    post: (__return__ + 12) % 4096 == 0
    post: __return__ == hole or __return__ - hole >= 20
    post: hole <= __return__ < hole + 4096 + 20
    post: __return__ - hole < 4096 or 0 < __return__ - hole - 4096 < 20
    """
    header = hole + (-(hole + HEADER_SIZE)) % PAGE_SIZE
    if 0 < header - hole < MIN_BLOCK:
        header += PAGE_SIZE  # a gap of 1..19 bytes cannot be a hole: next page
    return header


def block_header(hole: int, page_align: bool) -> int:
    """Where a block taken from the hole at ``hole`` gets its header."""
    return aligned_header(hole) if page_align else hole


def fits(hole: int, hole_size: int, size: int, page_align: bool) -> bool:
    """Whether a block with a payload of ``size`` bytes fits in the hole."""
    return block_header(hole, page_align) + size + MIN_BLOCK <= hole + hole_size


def split_block(hole_size: int, gap: int, need: int) -> tuple[int, int]:
    """(block size, remainder hole size) for a block of ``need`` bytes placed
    ``gap`` bytes into a hole; remainder 0 means the block absorbed it.

    pre: need >= 20 and gap >= 0 and gap + need <= hole_size
    post: __return__[0] + __return__[1] == hole_size - gap
    post: __return__[1] == 0 or __return__[1] >= 20
    post: (__return__[1] == 0) == (hole_size - gap - need < 20)
    post: __return__[0] == need or (__return__[1] == 0 and __return__[0] < need + 20)
    """
    rest = hole_size - gap - need
    if rest >= MIN_BLOCK:
        return need, rest
    return need + rest, 0


def expansion_length(length: int, need: int, page_align: bool, limit: int) -> int:
    """The length Alloc expands the heap to when no hole fits ``need`` bytes:
    length + need (+ a page when page_align), rounded up to a page, capped at limit.

    pre: 0 <= length <= limit < 2**32 and length % 4096 == 0 and limit % 4096 == 0
    pre: 0 <= need < 2**32
    post: length <= __return__ <= limit
    post: __return__ % 4096 == 0
    post: __return__ == limit or __return__ >= length + need + 4096 * page_align
    post: __return__ - 4096 < length + need + 4096 * page_align
    """
    wanted = align_up(length + need + (PAGE_SIZE if page_align else 0))
    return limit if wanted > limit else wanted


def contraction_length(least: int, length: int, hole: int) -> int:
    """The length Contract leaves: ``least`` (the larger of the requested length and
    the floor) rounded up to a page, never below the trailing hole's header
    ``hole`` (an offset from the heap start; ``length`` when the last block is
    live), one page longer when the hole would keep 1..19 bytes, and ``length``
    when that cuts nothing.

    pre: 0 <= least < 2**32 and 0 <= length < 2**32 and length % 4096 == 0
    pre: 0 <= hole <= length and (hole == length or length - hole >= 20)
    post: __return__ % 4096 == 0
    post: hole <= __return__ <= length
    post: __return__ == length or __return__ >= least
    post: __return__ - hole == 0 or __return__ - hole >= 20
    post: __return__ == length or __return__ < max(least, hole) + 4096 or __return__ < hole + 4116
    """
    target = align_up(max(least, hole))
    if 0 < target - hole < MIN_BLOCK:
        target += PAGE_SIZE  # the hole would keep 1..19 bytes: cut a page less
    return length if target >= length else target
