"""Pure x86 paging arithmetic: address split, PDE/PTE encoding, alignment, bit search.

Everything here is a total function of integers, so CrossHair checks the
contracts written in each docstring (PEP 316 ``pre:``/``post:``) over all paths.
The helpers are written with ``+ - * // %``, shifts and ``& (2**k - 1)`` only
(``value - value % 4096`` rather than ``value & ~0xFFF``, flags added rather
than or-ed): CrossHair keeps those symbolic and can exhaust the paths, where
``|``, ``^``, ``~`` and other masks make it fall back to sampling values.
``lowest_clear_bit`` and ``lowest_set_bit`` are the exception: they sit on the
frame allocator's hot path and keep their fast bit tricks, so CrossHair only
samples them.

Sources: Intel SDM Vol. 3A, section 4.3 "32-bit paging" (Figure 4-2 for the
address split, Tables 4-5 and 4-6 for the PDE/PTE bits) and section 4.7 for
the page-fault error code. This model has no PAE and no NX: bit 4 (I/D) of the
error code is reserved without NX, so an instruction fetch faults like a read.
CR0.WP is taken as set (Linux since the 486, Windows since NT): supervisor
writes honour R/W exactly as user writes do.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

from spec.abi import (
    ADDRESS_LIMIT,
    FAULT_PROTECTION,
    FAULT_USER,
    FAULT_WRITE,
    FIRST_KERNEL_HIGH_SLOT,
    IDENTITY_SLOTS,
    OFFSET_MASK,
    PAGE_SHIFT,
    PAGE_SIZE,
    PTE_ACCESSED,
    PTE_DIRTY,
    PTE_PRESENT,
    PTE_USER,
    PTE_WRITABLE,
)


class AddressParts(NamedTuple):
    """The three fields of a 32-bit linear address (SDM Figure 4-2)."""

    directory_index: int
    table_index: int
    offset: int


class PageEntry(NamedTuple):
    """A decoded PDE or PTE."""

    frame: int
    present: bool
    writable: bool
    user: bool
    accessed: bool
    dirty: bool


def split_address(address: int) -> AddressParts:
    """Split a linear address into directory index, table index and offset.

    pre: 0 <= address < 2**32
    post: 0 <= __return__.directory_index < 1024
    post: 0 <= __return__.table_index < 1024
    post: 0 <= __return__.offset < 4096
    post: join_address(*__return__) == address
    """
    return AddressParts(address >> 22, (address >> 12) & 0x3FF, address & OFFSET_MASK)


def join_address(directory_index: int, table_index: int, offset: int) -> int:
    """The linear address whose fields are the given indices and offset.

    pre: 0 <= directory_index < 1024
    pre: 0 <= table_index < 1024
    pre: 0 <= offset < 4096
    post: 0 <= __return__ < 2**32
    post: split_address(__return__) == (directory_index, table_index, offset)
    """
    return directory_index * 0x400000 + table_index * PAGE_SIZE + offset


def encode_entry(frame: int, present: bool, writable: bool, user: bool,
                 accessed: bool = False, dirty: bool = False) -> int:
    """Encode a PDE/PTE: frame number in bits 31..12, flag bits below.

    pre: 0 <= frame < 2**20
    post: 0 <= __return__ < 2**32
    post: decode_entry(__return__) == (frame, present, writable, user, accessed, dirty)
    """
    return (frame * PAGE_SIZE
            + (PTE_PRESENT if present else 0)
            + (PTE_WRITABLE if writable else 0)
            + (PTE_USER if user else 0)
            + (PTE_ACCESSED if accessed else 0)
            + (PTE_DIRTY if dirty else 0))


def decode_entry(entry: int) -> PageEntry:
    """Decode a PDE/PTE into its frame number and flags.

    pre: 0 <= entry < 2**32
    post: 0 <= __return__.frame < 2**20
    post: encode_entry(*__return__) == entry - entry % 4096 + entry % 8 + entry // 32 % 4 * 32
    """
    # encode_entry(*decode_entry(entry)) is entry & 0xFFFFF067: the frame, P,
    # R/W, U/S, A and D; the postcondition spells that mask with arithmetic.
    # Testing the bits of the two small fields rather than of entry keeps the
    # solver's queries easy: each path then confirms in milliseconds.
    low = entry & 7  # P, R/W, U/S: bits 0..2
    accessed_dirty = (entry >> 5) & 3  # A, D: bits 5..6
    return PageEntry(entry >> PAGE_SHIFT, low & 1 == 1, (low >> 1) & 1 == 1,
                     (low >> 2) & 1 == 1, accessed_dirty & 1 == 1,
                     (accessed_dirty >> 1) & 1 == 1)


def is_page_aligned(value: int) -> bool:
    """True when value is a multiple of PAGE_SIZE.

    post: __return__ == (value % 4096 == 0)
    """
    return value & OFFSET_MASK == 0


def align_down(value: int) -> int:
    """The largest page boundary <= value.

    pre: 0 <= value < 2**33
    post: __return__ <= value < __return__ + 4096
    post: __return__ % 4096 == 0
    """
    return value - value % PAGE_SIZE


def align_up(value: int) -> int:
    """The smallest page boundary >= value.

    pre: 0 <= value < 2**33
    post: __return__ - 4096 < value <= __return__
    post: __return__ % 4096 == 0
    """
    return value + (-value) % PAGE_SIZE


def page_pieces(address: int, length: int) -> Iterator[tuple[int, int, int]]:
    """(page number, start, end) for each page [address, address + length) touches,
    in order, start and end being offsets in that page; nothing when length <= 0.

    The page loops of the managers (byte spans, access checks) iterate over this
    range rather than advance a cursor: its length is fixed before the first pass,
    so no wrong offset can make a caller loop forever.
    """
    if length <= 0:
        return
    end = address + length
    for page in range(address >> PAGE_SHIFT, (end + OFFSET_MASK) >> PAGE_SHIFT):
        base = page << PAGE_SHIFT
        yield page, max(address - base, 0), min(end - base, PAGE_SIZE)


def is_u32(value: int | bool | float | str | bytes | None) -> bool:
    """True for a Python int that fits in a C uint32 (bool excluded).

    Any object may be passed (it is how the managers validate their
    arguments); the annotation lists the kinds of value CrossHair should try,
    as it would explore a parameter annotated ``object`` as one plain
    ``object()`` only.

    post: not isinstance(value, bool) or not __return__
    post: isinstance(value, bool) or __return__ == (isinstance(value, int) and -1 < value < 2**32)
    """
    return type(value) is int and 0 <= value < ADDRESS_LIMIT


def is_kernel_slot(directory_index: int) -> bool:
    """True for directory slots that map kernel space (identity region and 3-4 GiB).

    pre: 0 <= directory_index < 1024
    post: __return__ == (directory_index < 1 or directory_index >= 768)
    """
    return directory_index < IDENTITY_SLOTS or directory_index >= FIRST_KERNEL_HIGH_SLOT


def is_kernel_address(address: int) -> bool:
    """True for linear addresses in kernel space.

    pre: 0 <= address < 2**32
    post: __return__ == (address < 0x400000 or address >= 0xC0000000)
    """
    return is_kernel_slot(address >> 22)


def lowest_clear_bit(word: int) -> int:
    """Index of the lowest 0 bit of a 32-bit word, or 32 when every bit is set.

    pre: 0 <= word < 2**32
    post: 0 <= __return__ <= 32
    post: __return__ == 32 or (word >> __return__) & 1 == 0
    post: all((word >> i) & 1 == 1 for i in range(__return__))
    """
    inverted = ~word & 0xFFFFFFFF
    return (inverted & -inverted).bit_length() - 1 if inverted else 32


def lowest_set_bit(word: int) -> int:
    """Index of the lowest 1 bit of a 32-bit word, or 32 when the word is 0.

    pre: 0 <= word < 2**32
    post: 0 <= __return__ <= 32
    post: __return__ == 32 or (word >> __return__) & 1 == 1
    post: all((word >> i) & 1 == 0 for i in range(__return__))
    """
    return (word & -word).bit_length() - 1 if word else 32


def access_fault(pde: int, pte: int, user_mode: bool, write: bool) -> int:
    """Page-fault error code for an access through (pde, pte), or -1 when allowed.

    32-bit paging with CR0.WP=1 (SDM Vol. 3A, 4.6): the access is allowed when
    both entries are present, a user-mode access finds U/S set in both, and a
    write finds R/W set in both. The error code has P set when both entries
    were present (a protection violation), W/R for a write, U/S for user mode.

    The contract states that rule clause by clause: the error code (P is
    (pde & 1) * (pte & 1), both entries present); an allowed access meets every
    condition; and a refused access through present entries (error code 1, 3,
    5 or 7) has a reason (1 never happens: a supervisor read through present
    entries is always allowed).

    pre: 0 <= pde < 2**32 and 0 <= pte < 2**32
    post: __return__ == -1 or __return__ == (pde & 1) * (pte & 1) + 2 * write + 4 * user_mode
    post: __return__ != -1 or pde & 1 == pte & 1 == 1
    post: __return__ != -1 or not user_mode or (pde >> 2) & 1 == (pte >> 2) & 1 == 1
    post: __return__ != -1 or not write or (pde >> 1) & 1 == (pte >> 1) & 1 == 1
    post: __return__ != 1
    post: __return__ != 3 or not (pde >> 1) & 1 == (pte >> 1) & 1 == 1
    post: __return__ != 5 or not (pde >> 2) & 1 == (pte >> 2) & 1 == 1
    post: __return__ != 7 or min(pde >> 1 & 1, pte >> 1 & 1, pde >> 2 & 1, pte >> 2 & 1) == 0
    """
    present = pde & 1 == 1 and pte & 1 == 1
    allowed = (present
               and (not user_mode or ((pde >> 2) & 1 == 1 and (pte >> 2) & 1 == 1))
               and (not write or ((pde >> 1) & 1 == 1 and (pte >> 1) & 1 == 1)))
    if allowed:
        return -1
    return ((FAULT_PROTECTION if present else 0)
            + (FAULT_WRITE if write else 0)
            + (FAULT_USER if user_mode else 0))
