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
"""

from __future__ import annotations

from model.x86_paging import lowest_set_bit

WORD_BITS = 32
FULL_WORD = 0xFFFFFFFF


class FrameBitmap:
    """A bitset of ``nframes`` frames with a used count and a free-frame summary."""

    def __init__(self, nframes: int) -> None:
        self.nframes = nframes
        self.words = [0] * ((nframes + WORD_BITS - 1) // WORD_BITS)
        self.used = 0
        self.levels: list[list[int]] = []
        width = len(self.words)
        while True:
            count = max(1, (width + WORD_BITS - 1) // WORD_BITS)
            level = [0] * count
            for index in range(width):
                level[index // WORD_BITS] |= 1 << (index % WORD_BITS)
            self.levels.append(level)
            if count == 1:
                break
            width = count

    def valid_mask(self, word_index: int) -> int:
        """The bits of a bitmap word that stand for real frames."""
        tail = self.nframes - word_index * WORD_BITS
        return FULL_WORD if tail >= WORD_BITS else (1 << tail) - 1

    def test(self, frame: int) -> bool:
        return bool(self.words[frame // WORD_BITS] >> (frame % WORD_BITS) & 1)

    def set(self, frame: int) -> None:
        """Mark a free frame allocated."""
        index = frame // WORD_BITS
        word = self.words[index] | 1 << (frame % WORD_BITS)
        self.words[index] = word
        self.used += 1
        if word == self.valid_mask(index):
            self._summary_clear(index)

    def clear(self, frame: int) -> None:
        """Mark an allocated frame free."""
        index = frame // WORD_BITS
        self.words[index] &= ~(1 << (frame % WORD_BITS))
        self.used -= 1
        self._summary_set(index)

    def first_clear(self) -> int:
        """The lowest free frame, or -1 when every frame is allocated."""
        index = 0
        for level in reversed(self.levels):
            bit = lowest_set_bit(level[index])
            if bit == WORD_BITS:
                return -1
            index = index * WORD_BITS + bit
        free_bits = ~self.words[index] & self.valid_mask(index)
        return index * WORD_BITS + lowest_set_bit(free_bits)

    def _summary_clear(self, index: int) -> None:
        for level in self.levels:
            slot, bit = divmod(index, WORD_BITS)
            level[slot] &= ~(1 << bit)
            if level[slot]:
                return
            index = slot

    def _summary_set(self, index: int) -> None:
        for level in self.levels:
            slot, bit = divmod(index, WORD_BITS)
            before = level[slot]
            level[slot] = before | 1 << bit
            if before:
                return
            index = slot
