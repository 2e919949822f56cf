"""The seed's frame bitset, with a summary that finds the first free frame fast.

``words`` is exactly the seed's ``uint32* frames``: bit ``frame % 32`` of word
``frame // 32`` is set when the frame is allocated (the layout of the tutorial
kernel the seed follows: INDEX_FROM_BIT / OFFSET_FROM_BIT). Bits at or beyond
``nframes`` in the last word stay clear (FRM-1).

Searching the bitset word by word is linear in memory size, so a summary tree
sits on top of it: level 0 has one bit per bitmap word, set when that word has
a free frame; each further level has one bit per word of the level below, set
when that word is non-zero; the top level is a single word. Finding the first
free frame descends the tree, and setting or clearing a bit touches one word
per level: O(log32 nframes), 4 words for 4 GiB.

On top of the tree, ``hint`` caches the index of the lowest bitmap word that
may hold a free frame: every word below ``hint`` is full. Allocation looks at
``words[hint]`` first and descends the tree only when that word is full (once
per 32 allocations in a sequential fill); freeing lowers the hint. Freeing a
frame in a word that was not full, and allocating one that does not fill its
word, touch no summary word at all, since the summary bits do not change.
``hint`` is a cache: it changes how fast an answer comes, never the answer, and
is no part of the state the spec abstracts (a lookup may move it).

``set`` and ``clear`` have preconditions (the frame is in range and free,
respectively allocated); the PageManager checks them before calling.
"""

from __future__ import annotations

WORD_BITS = 32
WORD_SHIFT = 5
BIT_MASK = WORD_BITS - 1
FULL_WORD = 0xFFFFFFFF


def _full_level(width: int) -> list[int]:
    """A summary level with the first ``width`` bits set (at least one word)."""
    count = max(1, (width + BIT_MASK) >> WORD_SHIFT)
    level = [FULL_WORD] * (width >> WORD_SHIFT)
    if width & BIT_MASK:
        level.append((1 << (width & BIT_MASK)) - 1)
    level.extend([0] * (count - len(level)))
    return level


class FrameBitmap:
    """A bitset of ``nframes`` frames with a used count and a free-frame summary."""

    def __init__(self, nframes: int) -> None:
        self.nframes = nframes
        nwords = (nframes + BIT_MASK) >> WORD_SHIFT
        self.words = [0] * nwords
        self.used = 0
        # hint, hint_mask, tail_index, tail_mask, summary_clear and after_clear are
        # the allocator's fast path, shared with PageManager.take_frame and
        # release_frame, which inline take_first and clear (one call less per frame).
        #: Lowest word that may have a free frame; every word below it is full.
        self.hint = 0
        #: Index and valid-bit mask of a partial last word (-1 when there is none).
        tail_bits = nframes & BIT_MASK
        self.tail_index = nwords - 1 if tail_bits else -1
        self.tail_mask = (1 << tail_bits) - 1
        #: valid_mask(hint): the bits of words[hint] that stand for real frames.
        self.hint_mask = self.tail_mask if self.tail_index == 0 else FULL_WORD
        self.levels: list[list[int]] = []
        width = nwords
        # Each level is 32 times narrower than the one below, so a width of b bits
        # needs at most b // 5 + 1 levels (6 for 4 GiB): a bound, should a level
        # ever fail to shrink.
        for _ in range(nwords.bit_length() // WORD_SHIFT + 1):
            level = _full_level(width)
            self.levels.append(level)
            if len(level) == 1:
                break
            width = len(level)
        self._top_down = self.levels[::-1]

    def valid_mask(self, word_index: int) -> int:
        """The bits of a bitmap word that stand for real frames."""
        tail = self.nframes - word_index * WORD_BITS
        return FULL_WORD if tail >= WORD_BITS else (1 << tail) - 1

    def test(self, frame: int) -> bool:
        return bool(self.words[frame >> WORD_SHIFT] >> (frame & BIT_MASK) & 1)

    def set(self, frame: int) -> None:
        """Mark a free frame allocated (pre: 0 <= frame < nframes, frame free)."""
        index = frame >> WORD_SHIFT
        words = self.words
        word = words[index] | 1 << (frame & BIT_MASK)
        words[index] = word
        self.used += 1
        if word == FULL_WORD or (index == self.tail_index and word == self.tail_mask):
            self.summary_clear(index)

    def set_range(self, start: int, stop: int) -> None:
        """Mark the free frames [start, stop) allocated, a word at a time (pre: all free)."""
        words = self.words
        for index in range(start >> WORD_SHIFT, (stop + BIT_MASK) >> WORD_SHIFT):
            low = max(start - (index << WORD_SHIFT), 0)
            high = min(stop - (index << WORD_SHIFT), WORD_BITS)
            bits = (1 << high) - (1 << low)
            word = words[index] | bits
            words[index] = word
            self.used += bits.bit_count()
            if word == self.valid_mask(index):
                self.summary_clear(index)

    def clear(self, frame: int) -> None:
        """Mark an allocated frame free (pre: 0 <= frame < nframes, frame allocated)."""
        # Hot path: literals instead of WORD_SHIFT / BIT_MASK / FULL_WORD (a constant
        # load is cheaper than a global one).
        index = frame >> 5
        words = self.words
        before = words[index]
        words[index] = before & ~(1 << (frame & 31))
        self.used -= 1
        # The summary changes only when the word was full; the hint only moves down.
        if before == 0xFFFFFFFF or before == self.tail_mask or index < self.hint:
            self.after_clear(index, before)

    def first_clear(self) -> int:
        """The lowest free frame, or -1 when every frame is allocated."""
        index = self.hint
        try:
            free = self.words[index] ^ self.hint_mask
        except IndexError:  # hint is past the last word: memory was full
            free = 0
        if not free:
            index = self._descend()
            if index < 0:
                return -1
            free = self.words[index] ^ self.hint_mask
        return (index << WORD_SHIFT) + (free & -free).bit_length() - 1

    def take_first(self) -> int:
        """Allocate the lowest free frame and return it; -1 when every frame is allocated.

        The same as ``first_clear`` followed by ``set``, in one call: the
        allocation fast path of the PageManager, a handful of integer
        operations when ``words[hint]`` has a free frame.
        """
        index = self.hint
        words = self.words
        mask = self.hint_mask
        try:
            word = words[index]
        except IndexError:  # hint is past the last word: memory was full
            word = mask
        free = word ^ mask
        if not free:
            index = self._descend()
            if index < 0:
                return -1
            mask = self.hint_mask
            word = words[index]
            free = word ^ mask
        bit = free & -free  # the lowest free frame of the word, as a one-bit mask
        word |= bit
        words[index] = word
        self.used += 1
        if word == mask:
            self.summary_clear(index)
        return (index << 5) + bit.bit_length() - 1  # 5 = WORD_SHIFT (hot path)

    def is_consistent(self) -> bool:
        """FRM-1, FRM-2 and the summary and hint invariants (for tests and checks)."""
        words = self.words
        nwords = (self.nframes + BIT_MASK) >> WORD_SHIFT
        if len(words) != nwords:
            return False
        masks = [FULL_WORD] * nwords
        if self.tail_index >= 0:
            masks[self.tail_index] = self.tail_mask
        if any(type(word) is not int or word < 0 or word & ~mask
               for word, mask in zip(words, masks, strict=True)):
            return False  # FRM-1: only bits of real frames, in uint32 words
        if self.used != sum(word.bit_count() for word in words):
            return False  # FRM-2
        hint = min(self.hint, nwords)
        if words[:hint] != masks[:hint]:
            return False
        below = [word != mask for word, mask in zip(words, masks, strict=True)]
        for level in self.levels:
            expected = [0] * max(1, (len(below) + BIT_MASK) >> WORD_SHIFT)
            for index, flag in enumerate(below):
                if flag:
                    expected[index >> WORD_SHIFT] |= 1 << (index & BIT_MASK)
            if level != expected:
                return False
            below = [word != 0 for word in level]
        return len(self.levels[-1]) == 1

    # -- the slow halves of the fast paths (also called by PageManager) -------

    def after_clear(self, index: int, before: int) -> None:
        """Lower the hint and set the summary bits after freeing a frame in words[index]."""
        if index < self.hint:
            self.hint = index
            self.hint_mask = self.valid_mask(index)
        if before == self.valid_mask(index):
            self._summary_set(index)

    def summary_clear(self, index: int) -> None:
        """words[index] just became full: clear its summary bit, and upwards while empty."""
        for level in self.levels:
            slot = index >> WORD_SHIFT
            word = level[slot] & ~(1 << (index & BIT_MASK))
            level[slot] = word
            if word:
                return
            index = slot

    # -- private -----------------------------------------------------------

    def _descend(self) -> int:
        """Index of the lowest word with a free frame, found through the summary; -1 if none.

        Moves ``hint`` to that word (or past the last word when memory is full).
        """
        index = 0
        for level in self._top_down:
            word = level[index]
            if not word:
                self.hint = len(self.words)
                return -1
            index = (index << WORD_SHIFT) + (word & -word).bit_length() - 1
        self.hint = index
        self.hint_mask = self.valid_mask(index)
        return index

    def _summary_set(self, index: int) -> None:
        """words[index] just stopped being full: set its summary bit, and upwards."""
        for level in self.levels:
            slot = index >> WORD_SHIFT
            before = level[slot]
            level[slot] = before | 1 << (index & BIT_MASK)
            if before:
                return
            index = slot
