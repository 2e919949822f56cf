"""model/x86_paging.py: x86 facts, each helper's behaviour, and equivalence with
the bitwise implementations the CrossHair-friendly ones replaced.

The helpers were rewritten with ``+ - * // %``, shifts and ``& (2**k - 1)`` so
that CrossHair can exhaust their paths. The ``_reference_*`` functions below
are verbatim copies of the previous bitwise implementations; the hypothesis
tests check that the two agree over the whole input range the contracts
allow (every 32-bit value, 33 bits for the alignment helpers), with the edge
values pinned as explicit examples.
"""

from __future__ import annotations

import itertools

from hypothesis import example, given, settings
from hypothesis import strategies as st

from model.x86_paging import (
    AddressParts,
    PageEntry,
    access_fault,
    align_down,
    align_up,
    decode_entry,
    encode_entry,
    is_kernel_address,
    is_kernel_slot,
    is_page_aligned,
    is_u32,
    join_address,
    lowest_clear_bit,
    lowest_set_bit,
    split_address,
)
from spec.abi import (
    ADDRESS_LIMIT,
    FAULT_PROTECTION,
    FAULT_USER,
    FAULT_WRITE,
    FRAME_MASK,
    OFFSET_MASK,
    PAGE_SHIFT,
    PTE_ACCESSED,
    PTE_DIRTY,
    PTE_PRESENT,
    PTE_USER,
    PTE_WRITABLE,
)

U32_MAX = ADDRESS_LIMIT - 1
u32s = st.integers(0, U32_MAX)
# Bit patterns a uniform draw rarely hits: all ones, all zeros, one bit, one hole.
edge_u32s = st.one_of(
    u32s,
    st.sampled_from([0, 1, U32_MAX, U32_MAX - 1, 0x80000000, 0x7FFFFFFF, 0xFFFFF067, 0xFFF]),
    st.integers(0, 31).map(lambda i: 1 << i),
    st.integers(0, 31).map(lambda i: U32_MAX ^ (1 << i)),
)
EQUIVALENCE = settings(max_examples=1000, deadline=None)


# --------------------------------------------------------------------------- references
# Verbatim copies of the implementations before the CrossHair rewrite.


def _reference_join_address(directory_index: int, table_index: int, offset: int) -> int:
    return (directory_index << 22) | (table_index << 12) | offset


def _reference_encode_entry(frame: int, present: bool, writable: bool, user: bool,
                            accessed: bool = False, dirty: bool = False) -> int:
    return ((frame << PAGE_SHIFT)
            | (PTE_PRESENT if present else 0)
            | (PTE_WRITABLE if writable else 0)
            | (PTE_USER if user else 0)
            | (PTE_ACCESSED if accessed else 0)
            | (PTE_DIRTY if dirty else 0))


def _reference_decode_entry(entry: int) -> PageEntry:
    return PageEntry(entry >> PAGE_SHIFT, bool(entry & PTE_PRESENT),
                     bool(entry & PTE_WRITABLE), bool(entry & PTE_USER),
                     bool(entry & PTE_ACCESSED), bool(entry & PTE_DIRTY))


def _reference_align_down(value: int) -> int:
    return value & ~OFFSET_MASK


def _reference_align_up(value: int) -> int:
    return (value + OFFSET_MASK) & ~OFFSET_MASK


def _reference_is_u32(value: object) -> bool:
    return type(value) is int and 0 <= value < ADDRESS_LIMIT


def _reference_access_fault(pde: int, pte: int, user_mode: bool, write: bool) -> int:
    present = bool(pde & PTE_PRESENT) and bool(pte & PTE_PRESENT)
    allowed = (present
               and (not user_mode or bool(pde & pte & PTE_USER))
               and (not write or bool(pde & pte & PTE_WRITABLE)))
    if allowed:
        return -1
    return ((FAULT_PROTECTION if present else 0)
            | (FAULT_WRITE if write else 0)
            | (FAULT_USER if user_mode else 0))


# --------------------------------------------------------------------------- equivalence


@EQUIVALENCE
@given(st.integers(0, 1023), st.integers(0, 1023), st.integers(0, 4095))
@example(0, 0, 0)
@example(1023, 1023, 4095)
@example(768, 257, 0x234)
def test_join_address_matches_reference(directory: int, table: int, offset: int) -> None:
    assert join_address(directory, table, offset) == _reference_join_address(
        directory, table, offset)


@EQUIVALENCE
@given(st.integers(0, 2**20 - 1), st.booleans(), st.booleans(), st.booleans(),
       st.booleans(), st.booleans())
@example(0, False, False, False, False, False)
@example(2**20 - 1, True, True, True, True, True)
def test_encode_entry_matches_reference(frame: int, present: bool, writable: bool, user: bool,
                                        accessed: bool, dirty: bool) -> None:
    new = encode_entry(frame, present, writable, user, accessed, dirty)
    old = _reference_encode_entry(frame, present, writable, user, accessed, dirty)
    assert type(new) is int and new == old
    # The defaults for accessed and dirty are unchanged too.
    assert encode_entry(frame, present, writable, user) == _reference_encode_entry(
        frame, present, writable, user)


def test_encode_entry_matches_reference_for_every_flag_combination() -> None:
    for frame in (0, 1, 0x12345, 2**20 - 1):
        for flags in itertools.product((False, True), repeat=5):
            assert encode_entry(frame, *flags) == _reference_encode_entry(frame, *flags)


@EQUIVALENCE
@given(edge_u32s)
def test_decode_entry_matches_reference(entry: int) -> None:
    new, old = decode_entry(entry), _reference_decode_entry(entry)
    assert new == old
    assert type(new) is PageEntry
    assert [type(field) for field in new] == [int, bool, bool, bool, bool, bool]


def test_decode_entry_matches_reference_for_every_low_bit_pattern() -> None:
    for high in (0, 0x1000, 0x12345000, FRAME_MASK):
        for low in range(4096):
            assert decode_entry(high + low) == _reference_decode_entry(high + low)


@EQUIVALENCE
@given(st.integers(0, 2**33 - 1))
@example(0)
@example(1)
@example(4095)
@example(4096)
@example(4097)
@example(U32_MAX)
@example(ADDRESS_LIMIT)
@example(2**33 - 1)
def test_alignment_matches_reference(value: int) -> None:
    assert align_down(value) == _reference_align_down(value)
    assert align_up(value) == _reference_align_up(value)


def test_alignment_matches_reference_around_every_boundary_of_a_few_pages() -> None:
    top = range(ADDRESS_LIMIT - 4096, ADDRESS_LIMIT + 2)
    for value in itertools.chain(range(0, 5 * 4096), top):
        assert align_down(value) == _reference_align_down(value)
        assert align_up(value) == _reference_align_up(value)


@EQUIVALENCE
@given(st.one_of(
    st.integers(), edge_u32s, st.booleans(), st.none(), st.floats(), st.text(), st.binary(),
    st.lists(st.integers(), max_size=2), st.sampled_from([0.0, 1.0, 2.0**32, -0.0]),
))
@example(-1)
@example(0)
@example(U32_MAX)
@example(ADDRESS_LIMIT)
@example(True)
@example(False)
def test_is_u32_matches_reference(value: object) -> None:
    assert is_u32(value) is _reference_is_u32(value)  # type: ignore[arg-type]


@EQUIVALENCE
@given(edge_u32s, edge_u32s, st.booleans(), st.booleans())
def test_access_fault_matches_reference(pde: int, pte: int, user_mode: bool,
                                        write: bool) -> None:
    assert access_fault(pde, pte, user_mode, write) == _reference_access_fault(
        pde, pte, user_mode, write)


def test_access_fault_matches_reference_for_every_flag_combination() -> None:
    # Bits 0..2 (P, R/W, U/S) are all the rule reads; vary the others too.
    for high_pde, high_pte in ((0, 0), (0xFFFFFFF8, 0xFFFFFFF8), (0x12345060, 0x00000018)):
        for low_pde, low_pte, user_mode, write in itertools.product(
                range(8), range(8), (False, True), (False, True)):
            pde, pte = high_pde + low_pde, high_pte + low_pte
            assert access_fault(pde, pte, user_mode, write) == _reference_access_fault(
                pde, pte, user_mode, write)


# --------------------------------------------------------------------------- x86 facts


def test_split_address_of_a_higher_half_kernel_address() -> None:
    # 0xC0101234 = 1100000000 0100000001 001000110100 (SDM Vol. 3A, Figure 4-2).
    assert split_address(0xC0101234) == (768, 257, 0x234)
    assert split_address(0xC0101234) == AddressParts(
        directory_index=768, table_index=257, offset=0x234)
    assert join_address(768, 257, 0x234) == 0xC0101234


def test_split_address_extremes() -> None:
    assert split_address(0) == (0, 0, 0)
    assert split_address(U32_MAX) == (1023, 1023, 4095)
    assert split_address(0x00400000) == (1, 0, 0)  # 4 MiB per directory slot
    assert split_address(0x00001000) == (0, 1, 0)  # 4 KiB per table slot


@settings(max_examples=300, deadline=None)
@given(edge_u32s)
def test_split_then_join_is_the_identity(address: int) -> None:
    parts = split_address(address)
    assert 0 <= parts.directory_index < 1024 and 0 <= parts.table_index < 1024
    assert 0 <= parts.offset < 4096
    assert join_address(*parts) == address


def test_encode_entry_bits() -> None:
    # PTE layout (SDM Vol. 3A, Table 4-6): P bit 0, R/W bit 1, U/S bit 2, A bit 5, D bit 6,
    # the frame in bits 31..12.
    assert encode_entry(0x12345, True, False, False) == 0x12345001
    assert encode_entry(0x12345, True, True, False) == 0x12345003
    assert encode_entry(0x12345, True, True, True) == 0x12345007
    assert encode_entry(0, False, False, False, accessed=True) == 0x20
    assert encode_entry(0, False, False, False, dirty=True) == 0x40
    assert encode_entry(2**20 - 1, True, True, True, True, True) == 0xFFFFF067


def test_decode_entry_fields() -> None:
    assert decode_entry(0x12345007) == PageEntry(0x12345, True, True, True, False, False)
    assert decode_entry(0x00000060) == PageEntry(0, False, False, False, True, True)
    # Bits 3, 4 (PWT, PCD) and 7..11 (PAT/PS, G, AVL) are not modelled: ignored.
    assert decode_entry(0x00000F98) == PageEntry(0, False, False, False, False, False)
    assert decode_entry(U32_MAX) == PageEntry(2**20 - 1, True, True, True, True, True)


@settings(max_examples=300, deadline=None)
@given(edge_u32s)
def test_encode_of_decode_keeps_the_modelled_bits(entry: int) -> None:
    assert encode_entry(*decode_entry(entry)) == entry & 0xFFFFF067
    assert entry & 0xFFFFF067 == entry - entry % 4096 + entry % 8 + entry // 32 % 4 * 32


def test_alignment() -> None:
    assert (align_down(0), align_up(0)) == (0, 0)
    assert (align_down(1), align_up(1)) == (0, 4096)
    assert (align_down(4095), align_up(4095)) == (0, 4096)
    assert (align_down(4096), align_up(4096)) == (4096, 4096)
    assert (align_down(4097), align_up(4097)) == (4096, 8192)
    assert align_up(U32_MAX) == ADDRESS_LIMIT  # 33 bits: hence the 2**33 precondition
    assert is_page_aligned(0) and is_page_aligned(0x1000) and is_page_aligned(0xFFFFF000)
    assert not is_page_aligned(1) and not is_page_aligned(0xFFF) and not is_page_aligned(0x1800)


def test_is_u32() -> None:
    assert is_u32(0) and is_u32(U32_MAX)
    assert not is_u32(-1) and not is_u32(ADDRESS_LIMIT)
    assert not is_u32(True) and not is_u32(False)  # bool is an int subclass, excluded
    assert not is_u32(1.0) and not is_u32("1") and not is_u32(b"\x01") and not is_u32(None)
    assert not is_u32([1])  # type: ignore[arg-type]  # any object may be passed


def test_kernel_space() -> None:
    assert is_kernel_slot(0) and not is_kernel_slot(1)
    assert not is_kernel_slot(767) and is_kernel_slot(768) and is_kernel_slot(1023)
    assert is_kernel_address(0) and is_kernel_address(0x003FFFFF)
    assert not is_kernel_address(0x00400000) and not is_kernel_address(0xBFFFFFFF)
    assert is_kernel_address(0xC0000000) and is_kernel_address(U32_MAX)


def test_lowest_bits() -> None:
    assert lowest_set_bit(0) == 32 and lowest_clear_bit(U32_MAX) == 32
    assert lowest_set_bit(1) == 0 and lowest_clear_bit(0) == 0
    assert lowest_set_bit(0b1000) == 3 and lowest_clear_bit(0b0111) == 3
    assert lowest_set_bit(0x80000000) == 31 and lowest_clear_bit(0x7FFFFFFF) == 31
    assert lowest_set_bit(0xFFFF0000) == 16 and lowest_clear_bit(0x0000FFFF) == 16


def _naive_lowest(word: int, bit: int) -> int:
    return next((i for i in range(32) if (word >> i) & 1 == bit), 32)


@settings(max_examples=500, deadline=None)
@given(edge_u32s)
def test_lowest_bits_match_a_bit_by_bit_search(word: int) -> None:
    assert lowest_set_bit(word) == _naive_lowest(word, 1)
    assert lowest_clear_bit(word) == _naive_lowest(word, 0)


def test_access_fault_allows() -> None:
    user_rw = PTE_PRESENT | PTE_WRITABLE | PTE_USER
    assert access_fault(user_rw, user_rw, True, True) == -1
    assert access_fault(user_rw, PTE_PRESENT | PTE_USER, True, False) == -1
    # Supervisor reads need only P; supervisor writes need R/W (CR0.WP=1).
    assert access_fault(PTE_PRESENT, PTE_PRESENT, False, False) == -1
    assert access_fault(PTE_PRESENT | PTE_WRITABLE, PTE_PRESENT | PTE_WRITABLE,
                        False, True) == -1


def test_access_fault_error_codes() -> None:
    # SDM Vol. 3A, 4.7: P (bit 0) = protection violation, W/R (bit 1) = write,
    # U/S (bit 2) = user mode.
    user_rw = PTE_PRESENT | PTE_WRITABLE | PTE_USER
    user_ro = PTE_PRESENT | PTE_USER
    kernel_rw = PTE_PRESENT | PTE_WRITABLE
    assert access_fault(user_rw, 0, True, False) == FAULT_USER == 0b100
    assert access_fault(0, user_rw, True, True) == FAULT_USER | FAULT_WRITE == 0b110
    assert access_fault(kernel_rw, 0, False, True) == FAULT_WRITE == 0b010
    assert access_fault(kernel_rw, 0, False, False) == 0
    assert access_fault(user_rw, user_ro, True, True) == 0b111  # write to read-only
    assert access_fault(user_ro, user_rw, True, True) == 0b111  # R/W must be set in both
    assert access_fault(user_rw, kernel_rw, True, False) == 0b101  # user reads kernel page
    assert access_fault(kernel_rw, user_rw, True, False) == 0b101  # U/S must be set in both
    assert access_fault(user_ro, user_ro, False, True) == 0b011  # WP=1: kernel honours R/W
