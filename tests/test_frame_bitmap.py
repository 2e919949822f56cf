"""FrameBitmap against a plain set of allocated frames.

A hypothesis state machine drives set / set_range / clear / first_clear / take_first on
bitmaps of several sizes (1 frame, sizes around a word boundary, sizes whose
summary tree has two and three levels) and after every step compares the
bitmap with a set model, recomputing the words, the used count and every
summary level from scratch (it does not trust FrameBitmap.is_consistent, and
checks that one too).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from model.frame_bitmap import FULL_WORD, WORD_BITS, FrameBitmap

#: 1 frame; around one word; a partial last word; exactly 32 words (one summary
#: word); 33 words (two summary levels); 1057 words (three levels, partial tail).
SIZES = [1, 2, 31, 32, 33, 95, 1024, 1025, 1056 + 7, 33 * 1024 + 7]


def expected_words(nframes: int, used: set[int]) -> list[int]:
    words = [0] * ((nframes + WORD_BITS - 1) // WORD_BITS)
    for frame in used:
        words[frame // WORD_BITS] |= 1 << (frame % WORD_BITS)
    return words


def expected_levels(nframes: int, words: list[int]) -> list[list[int]]:
    """The summary tree as the module docstring defines it, built bit by bit."""
    flags = []
    for index, word in enumerate(words):
        valid = min(WORD_BITS, nframes - index * WORD_BITS)
        flags.append(word != (1 << valid) - 1)
    levels: list[list[int]] = []
    while True:
        level = [0] * max(1, (len(flags) + WORD_BITS - 1) // WORD_BITS)
        for index, flag in enumerate(flags):
            if flag:
                level[index // WORD_BITS] |= 1 << (index % WORD_BITS)
        levels.append(level)
        if len(level) == 1:
            return levels
        flags = [word != 0 for word in level]


def lowest_free_frames(nframes: int, used: set[int], count: int) -> list[int]:
    """The ``count`` lowest free frames, lowest first (fewer when memory runs out)."""
    found: list[int] = []
    for frame in range(nframes):
        if len(found) == count:
            break
        if frame not in used:
            found.append(frame)
    return found


def lowest_free(nframes: int, used: set[int]) -> int:
    return next(iter(lowest_free_frames(nframes, used, 1)), -1)


def assert_matches(bitmap: FrameBitmap, nframes: int, used: set[int]) -> None:
    words = expected_words(nframes, used)
    assert bitmap.nframes == nframes
    assert bitmap.words == words
    assert max(bitmap.words, default=0) <= FULL_WORD
    # FRM-1: no bit at or beyond nframes.
    tail = len(words) * WORD_BITS - nframes
    if tail:
        assert bitmap.words[-1] >> (WORD_BITS - tail) == 0
    assert bitmap.used == len(used)
    assert bitmap.levels == expected_levels(nframes, words)
    assert all(bitmap.test(frame) == (frame in used) for frame in range(min(nframes, 64)))
    assert bitmap.is_consistent()


class BitmapMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.nframes = 0
        self.bitmap = FrameBitmap(0)
        self.used: set[int] = set()

    @initialize(nframes=st.sampled_from(SIZES), prefill=st.sampled_from([0, 0, 0.5, 1.0]))
    def start(self, nframes: int, prefill: float) -> None:
        self.nframes = nframes
        self.bitmap = FrameBitmap(nframes)
        self.used = set()
        count = int(nframes * prefill)
        self.bitmap.set_range(0, count)
        self.used.update(range(count))

    def _frame_near(self, frame: int, allocated: bool) -> int:
        """The first frame at or after frame (wrapping around) that is allocated or free."""
        for candidate in range(frame, frame + self.nframes):
            if (candidate % self.nframes in self.used) == allocated:
                return candidate % self.nframes
        raise AssertionError("no such frame")

    @precondition(lambda self: len(self.used) < self.nframes)
    @rule(data=st.data())
    def set_free_frame(self, data: st.DataObject) -> None:
        frame = self._frame_near(data.draw(st.integers(0, self.nframes - 1)), False)
        self.bitmap.set(frame)
        self.used.add(frame)

    @precondition(lambda self: len(self.used) < self.nframes)
    @rule(data=st.data(), length=st.integers(1, 100))
    def set_free_run(self, data: st.DataObject, length: int) -> None:
        """set_range over a run of free frames (as InitializePhysicalMemory reserves)."""
        start = self._frame_near(data.draw(st.integers(0, self.nframes - 1)), False)
        stop = start
        while stop < min(self.nframes, start + length) and stop not in self.used:
            stop += 1
        self.bitmap.set_range(start, stop)
        self.used.update(range(start, stop))

    @precondition(lambda self: bool(self.used))
    @rule(data=st.data())
    def clear_used_frame(self, data: st.DataObject) -> None:
        frame = self._frame_near(data.draw(st.integers(0, self.nframes - 1)), True)
        self.bitmap.clear(frame)
        self.used.discard(frame)

    @rule()
    def first_clear(self) -> None:
        assert self.bitmap.first_clear() == lowest_free(self.nframes, self.used)

    @rule(count=st.integers(1, 40))
    def take_first(self, count: int) -> None:
        expected = lowest_free_frames(self.nframes, self.used, count)
        expected += [-1] * (count - len(expected))
        assert [self.bitmap.take_first() for _ in range(count)] == expected
        self.used.update(frame for frame in expected if frame >= 0)

    @rule(data=st.data())
    def fill_word(self, data: st.DataObject) -> None:
        """Allocate every free frame of one word (the summary bit must drop)."""
        index = data.draw(st.integers(0, (self.nframes - 1) // WORD_BITS))
        for frame in range(index * WORD_BITS, min(self.nframes, (index + 1) * WORD_BITS)):
            if frame not in self.used:
                self.bitmap.set(frame)
                self.used.add(frame)

    @rule(data=st.data())
    def empty_word(self, data: st.DataObject) -> None:
        """Free every allocated frame of one word."""
        index = data.draw(st.integers(0, (self.nframes - 1) // WORD_BITS))
        for frame in range(index * WORD_BITS, min(self.nframes, (index + 1) * WORD_BITS)):
            if frame in self.used:
                self.bitmap.clear(frame)
                self.used.discard(frame)

    @precondition(lambda self: self.nframes <= 2048)
    @rule()
    def take_all_then_free_some(self) -> None:
        """Exhaust memory with take_first, then free every third frame."""
        expected = lowest_free_frames(self.nframes, self.used, self.nframes)
        assert [self.bitmap.take_first() for _ in expected] == expected
        self.used.update(expected)
        assert self.bitmap.take_first() == -1
        assert self.bitmap.first_clear() == -1
        for frame in range(self.nframes - 1, -1, -3):
            self.bitmap.clear(frame)
            self.used.discard(frame)

    @invariant()
    def matches_model(self) -> None:
        assert_matches(self.bitmap, self.nframes, self.used)


BitmapMachine.TestCase.settings = settings(
    max_examples=50, stateful_step_count=25, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
TestBitmapMachine = BitmapMachine.TestCase


@pytest.mark.parametrize("nframes", SIZES)
def test_fresh_bitmap_is_empty(nframes: int) -> None:
    bitmap = FrameBitmap(nframes)
    assert_matches(bitmap, nframes, set())
    assert bitmap.first_clear() == 0


def test_zero_frames() -> None:
    bitmap = FrameBitmap(0)
    assert bitmap.words == [] and bitmap.used == 0
    assert bitmap.first_clear() == -1
    assert bitmap.take_first() == -1
    assert bitmap.is_consistent()


def test_full_4gib_shape_and_tail() -> None:
    """1,048,576 frames: 32,768 words, summary levels of 1,024, 32 and 1 words."""
    bitmap = FrameBitmap(1 << 20)
    assert len(bitmap.words) == 32768
    assert [len(level) for level in bitmap.levels] == [1024, 32, 1]
    assert [bitmap.take_first() for _ in range(70)] == list(range(70))
    bitmap.clear(3)
    bitmap.clear(40)
    assert bitmap.take_first() == 3
    assert bitmap.take_first() == 40
    assert bitmap.take_first() == 70
    # The last frame of memory.
    last = (1 << 20) - 1
    bitmap.set(last)
    assert bitmap.words[-1] == 1 << 31
    bitmap.clear(last)
    assert bitmap.words[-1] == 0 and bitmap.used == 71


def test_tail_word_never_gets_bits_beyond_nframes() -> None:
    bitmap = FrameBitmap(33)
    assert [bitmap.take_first() for _ in range(33)] == list(range(33))
    assert bitmap.words == [FULL_WORD, 1]
    assert bitmap.take_first() == -1
    assert bitmap.levels == [[0]]
    bitmap.clear(32)
    assert bitmap.levels == [[0b10]]
    assert bitmap.first_clear() == 32


@given(st.sets(st.integers(0, 33 * 1024 + 6)))
@settings(max_examples=30, deadline=None)
def test_bulk_set_then_scan(used: set[int]) -> None:
    nframes = 33 * 1024 + 7
    bitmap = FrameBitmap(nframes)
    for frame in sorted(used, reverse=True):
        bitmap.set(frame)
    assert_matches(bitmap, nframes, used)
    assert bitmap.first_clear() == lowest_free(nframes, used)


@pytest.mark.parametrize("corrupt", [
    "bit beyond nframes", "used count", "summary level 0", "summary top", "hint above a hole",
])
def test_is_consistent_detects_corruption(corrupt: str) -> None:
    bitmap = FrameBitmap(1056 + 7)
    for _ in range(100):
        bitmap.take_first()
    assert bitmap.is_consistent()
    if corrupt == "bit beyond nframes":
        bitmap.words[-1] |= 1 << 31
    elif corrupt == "used count":
        bitmap.used += 1
    elif corrupt == "summary level 0":
        bitmap.levels[0][0] ^= 1
    elif corrupt == "summary top":
        bitmap.levels[-1][0] = 0
    else:
        bitmap.clear(5)
        bitmap.hint = 2
    assert not bitmap.is_consistent()
