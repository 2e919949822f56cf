"""HoleIndex: the KernelHeap's ordered array of holes (the tutorial's ordered_array).

Entries are (size, header) pairs ordered by size, non-decreasing; a new entry
goes before the entries of equal size already there, as the tutorial's
insert_ordered_array puts it (it stops at the first entry that is not
smaller). Each entry carries a sequence number, so the sort key is
(size, -sequence): unique, and bisection finds an insertion point, an entry to
remove, or the first entry of at least a given size in O(log n) comparisons.

The tutorial keeps the array in heap memory at [start, start + 4 * capacity);
this model keeps the entries in Python (that range stays mapped and belongs to
the heap, but its bytes are not written).
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterator

#: Below every sequence key (-sequence): (size, _FIRST, 0) sorts before each entry of that size.
_FIRST = -(1 << 64)

Entry = tuple[int, int, int]  # (size, -sequence, header)


class HoleIndex:
    """The holes of a heap ordered by size, newest first among equal sizes."""

    def __init__(self) -> None:
        self._entries: list[Entry] = []
        self._keys: dict[int, Entry] = {}  # header -> its entry
        self._sequence = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, header: object) -> bool:
        return header in self._keys

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for size, _, header in self._entries:
            yield size, header

    def __getitem__(self, position: int) -> tuple[int, int]:
        """The entry (size, header) at a position."""
        size, _, header = self._entries[position]
        return size, header

    def size_of(self, header: int) -> int:
        """The size recorded for the hole at header (KeyError when not indexed)."""
        return self._keys[header][0]

    def insert(self, size: int, header: int) -> None:
        """Add a hole, before the entries of equal size; header must not be indexed."""
        self._sequence += 1
        entry = (size, -self._sequence, header)
        self._keys[header] = entry
        insort(self._entries, entry)

    def remove(self, header: int) -> int:
        """Remove the hole at header (KeyError when not indexed); return its size."""
        entry = self._keys.pop(header)
        del self._entries[bisect_left(self._entries, entry)]
        return entry[0]

    def first_at_least(self, size: int) -> int:
        """The position of the first entry whose size is >= size; len(self) when none."""
        return bisect_left(self._entries, (size, _FIRST, 0))

    def entries_from(self, position: int) -> Iterator[tuple[int, int, int]]:
        """(position, size, header) for every entry from position on, in order."""
        entries = self._entries
        for current in range(position, len(entries)):
            size, _, header = entries[current]
            yield current, size, header
