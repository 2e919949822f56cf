"""model/heap_layout.py and model/hole_index.py: the heap's pure arithmetic and its index.

Each layout helper is checked on pinned examples (the tutorial's bug cases
included) and, with hypothesis, against a brute-force reading of its rule.
The HoleIndex is checked against a plain sorted list of (size, -sequence,
header) under random inserts and removes.
"""

from __future__ import annotations

import pytest
import z3
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from model.heap_layout import (
    aligned_header,
    block_header,
    contraction_length,
    expansion_length,
    fits,
    split_block,
)
from model.hole_index import HoleIndex
from spec.abi import MIN_BLOCK
from spec.kernel_heap import fits as spec_fits
from spec.state import symbolic_heap

U32 = st.integers(0, 2**32 - 1)
PAGE = 4096


def brute_aligned_header(hole: int) -> int:
    """The first x >= hole with (x + 12) % 4096 == 0 and a gap of 0 or >= 20 bytes."""
    x = hole
    while (x + 12) % PAGE or 0 < x - hole < MIN_BLOCK:
        x += 1
    return x


# -- aligned_header ------------------------------------------------------------------

@pytest.mark.parametrize(("hole", "header"), [
    (0xC0000FF4, 0xC0000FF4),  # already aligned: no gap
    (0xC0000FE0, 0xC0000FF4),  # gap of exactly 20 bytes: a hole of its own
    (0xC0000FE1, 0xC0001FF4),  # gap of 19 bytes: cannot be a hole, next page
    (0xC0000FF3, 0xC0001FF4),  # gap of 1 byte
    (0xC0001000, 0xC0001FF4),  # gap of 4084 bytes
    (0xC0000FF5, 0xC0001FF4),  # just past an aligned header
    (0, 0xFF4),
])
def test_aligned_header_examples(hole: int, header: int) -> None:
    assert aligned_header(hole) == header
    assert block_header(hole, True) == header
    assert block_header(hole, False) == hole


@settings(max_examples=300)
@given(st.integers(0, 2**32 - 1))
def test_aligned_header_is_the_first_valid_placement(hole: int) -> None:
    base = hole - hole % PAGE
    # brute force over at most two pages, offset into the same page of the hole
    assert aligned_header(hole) == base + brute_aligned_header(hole - base)


# -- split_block ---------------------------------------------------------------------

@pytest.mark.parametrize(("hole_size", "gap", "need", "expected"), [
    (100, 0, 40, (40, 60)),
    (60, 0, 40, (40, 20)),  # remainder of exactly MIN_BLOCK: split
    (59, 0, 40, (59, 0)),  # remainder of 19 bytes: absorbed
    (40, 0, 40, (40, 0)),  # exact fit
    (5000, 4084, 120, (120, 796)),  # after a page-align gap
    (4214, 4084, 120, (130, 0)),  # remainder 10 after the gap: absorbed
])
def test_split_block_examples(hole_size: int, gap: int, need: int,
                              expected: tuple[int, int]) -> None:
    assert split_block(hole_size, gap, need) == expected


@given(st.integers(MIN_BLOCK, 2**32), st.integers(0, 2**32), st.integers(0, 2**32))
def test_split_block_rule(need: int, gap: int, extra: int) -> None:
    hole_size = need + gap + extra
    block, rest = split_block(hole_size, gap, need)
    if extra >= MIN_BLOCK:
        assert (block, rest) == (need, extra)
    else:
        assert (block, rest) == (need + extra, 0)


def test_fits_counts_header_footer_and_gap() -> None:
    assert fits(0x1000, 120, 100, False)
    assert not fits(0x1000, 119, 100, False)
    # page aligned: header at 0x1FF4, needs 0xFF4 + 120 bytes
    assert fits(0x1000, 0xFF4 + 120, 100, True)
    assert not fits(0x1000, 0xFF4 + 119, 100, True)


# -- expansion_length ----------------------------------------------------------------

@pytest.mark.parametrize(("length", "need", "page_align", "limit", "expected"), [
    (0x8000, 0x9014, False, 0x40000, 0x12000),
    (0x8000, 0x9014, True, 0x40000, 0x13000),  # plus a page for the alignment
    (0x8000, 120, False, 0x40000, 0x9000),
    (0x8000, 0x1000, False, 0x40000, 0x9000),  # exactly a page: no rounding
    (0x8000, 0x40000, False, 0x40000, 0x40000),  # capped at max - start
    (0x40000, 20, False, 0x40000, 0x40000),  # already at max: no growth
])
def test_expansion_length_examples(length: int, need: int, page_align: bool, limit: int,
                                   expected: int) -> None:
    assert expansion_length(length, need, page_align, limit) == expected


# -- contraction_length --------------------------------------------------------------

@pytest.mark.parametrize(("least", "length", "hole", "expected"), [
    (0x8000, 0x12000, 0x1000, 0x8000),  # cut at the floor
    (0x8000, 0x12000, 0x4000, 0x8000),
    (0x8001, 0x12000, 0x1000, 0x9000),  # requested length rounded up to a page
    (0x8000, 0x12000, 0x8FF0, 0xA000),  # remainder 16 bytes: one page more
    (0x8000, 0x12000, 0x8FEC, 0x9000),  # remainder exactly 20 bytes
    (0x8000, 0x12000, 0x9000, 0x9000),  # the whole hole goes: remainder 0
    (0x8000, 0x12000, 0x12000, 0x12000),  # last block live: nothing is cut
    (0x8000, 0x8000, 0x1000, 0x8000),  # already at the floor
    (0x8000, 0xA000, 0x8FF0, 0xA000),  # one page more reaches the end: nothing is cut
    (0x20000, 0x12000, 0x1000, 0x12000),  # floor above the length
])
def test_contraction_length_examples(least: int, length: int, hole: int,
                                     expected: int) -> None:
    assert contraction_length(least, length, hole) == expected


@settings(max_examples=300)
@given(st.integers(0, 64), st.integers(1, 64), st.integers(0, 64 * PAGE))
def test_contraction_length_is_the_lowest_valid_cut(least_pages: int, pages: int,
                                                    hole: int) -> None:
    """Brute force: the lowest page-aligned length >= least that cuts the hole to
    0 or >= MIN_BLOCK bytes and keeps every block before it; else the length."""
    length = pages * PAGE
    hole = min(hole, length)
    if 0 < length - hole < MIN_BLOCK:
        hole = length
    least = least_pages * 1000
    valid = [cut for cut in range(0, length, PAGE)
             if cut >= least and cut >= hole and (cut == hole or cut - hole >= MIN_BLOCK)]
    assert contraction_length(least, length, hole) == (valid[0] if valid else length)


# -- HoleIndex -------------------------------------------------------------------------

def test_hole_index_orders_by_size_newest_first() -> None:
    index = HoleIndex()
    for size, header in [(30, 0x100), (50, 0x200), (30, 0x300), (10, 0x400), (30, 0x500)]:
        index.insert(size, header)
    assert list(index) == [(10, 0x400), (30, 0x500), (30, 0x300), (30, 0x100), (50, 0x200)]
    assert len(index) == 5 and index[1] == (30, 0x500) and index[-1] == (50, 0x200)
    assert index.first_at_least(30) == 1 and index.first_at_least(31) == 4
    assert index.first_at_least(0) == 0 and index.first_at_least(51) == 5
    assert list(index.entries_from(3)) == [(3, 30, 0x100), (4, 50, 0x200)]
    assert 0x300 in index and 0x600 not in index and index.size_of(0x300) == 30
    assert index.remove(0x500) == 30
    index.insert(30, 0x500)  # re-inserted: newest again
    assert list(index)[1:4] == [(30, 0x500), (30, 0x300), (30, 0x100)]
    with pytest.raises(KeyError):
        index.remove(0x600)


class HoleIndexMachine(RuleBasedStateMachine):
    """HoleIndex against a plain sorted list under random inserts and removes."""

    def __init__(self) -> None:
        super().__init__()
        self.index = HoleIndex()
        self.reference: list[tuple[int, int, int]] = []
        self.sequence = 0
        self.next_header = 0

    @rule(size=st.integers(MIN_BLOCK, 60))
    def insert(self, size: int) -> None:
        self.sequence += 1
        self.next_header += 0x40
        self.index.insert(size, self.next_header)
        self.reference.append((size, -self.sequence, self.next_header))
        self.reference.sort()

    @rule(data=st.data())
    def remove(self, data: st.DataObject) -> None:
        if self.reference:
            entry = data.draw(st.sampled_from(self.reference))
            assert self.index.remove(entry[2]) == entry[0]
            self.reference.remove(entry)

    @rule(size=st.integers(0, 70))
    def first_at_least(self, size: int) -> None:
        expected = next((i for i, entry in enumerate(self.reference) if entry[0] >= size),
                        len(self.reference))
        assert self.index.first_at_least(size) == expected

    @invariant()
    def same_order(self) -> None:
        assert list(self.index) == [(size, header) for size, _, header in self.reference]
        assert len(self.index) == len(self.reference)


HoleIndexMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=40,
                                              deadline=None)
test_hole_index_machine = HoleIndexMachine.TestCase


@settings(max_examples=300, deadline=None)
@given(hole=st.integers(0, 2**20), hole_size=st.integers(0, 3 * PAGE),
       size=st.integers(0, 2 * PAGE), page_align=st.booleans())
def test_fits_agrees_with_the_spec(hole: int, hole_size: int, size: int, page_align: bool) -> None:
    """The model's fits (which the spec-mode judge uses to refuse a heap grown while
    a hole fits) is spec ``fits`` with some header x: z3 decides the latter."""
    state = symbolic_heap("fit")
    x = z3.Int("x")
    solver = z3.Solver()
    solver.add(state.size[hole] == hole_size,
               spec_fits(state, z3.IntVal(hole), z3.IntVal(size), z3.BoolVal(page_align), x))
    assert (solver.check() == z3.sat) == fits(hole, hole_size, size, page_align)
