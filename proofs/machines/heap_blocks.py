"""The process heap's blocks as a program sees them (``HEAP_BLOCKS``): one
definition, judged on the model by the user machine's harness
(proofs/machines/user_space.py) and on an implementation by the oracle's user
judge (proofs/oracle/families/user_heap.py).

The rules (docs/user-space.md, "HeapAlloc" to "HeapReAlloc"; model/process_heap.py):

- every pointer HeapAlloc and HeapReAlloc return is a multiple of
  MEMORY_ALLOCATION_ALIGNMENT (winnt.h: 8 on 32-bit; Wine
  dlls/kernel32/tests/heap.c test_HeapCreate "got wrong alignment"), and the
  live blocks of a process never overlap;
- HEAP_ZERO_MEMORY: a new block reads zero, a grown one zero past the old size
  (test_HeapCreate, "test HEAP_ZERO_MEMORY": "memory wasn't zeroed" after
  HeapAlloc and HeapReAlloc);
- HeapSize of a live block is the size last asked for (test_HeapCreate:
  HeapSize after HeapAlloc(1), HeapAlloc(0), HeapReAlloc); of anything else
  (SIZE_T)-1 with ERROR_INVALID_PARAMETER (Wine dlls/ntdll/heap.c RtlSizeHeap);
- HeapReAlloc keeps the first min(old, new) bytes wherever the block lands;
  NULL gives NULL with ERROR_SUCCESS, a pointer that is no block NULL with 87;
  HEAP_REALLOC_IN_PLACE_ONLY never moves; a failure (8, or 7 for a damaged
  block) leaves the block as it was;
- HeapFree of NULL succeeds, of a pointer that is no live block (a double free,
  a pointer into a block) fails (RtlFreeHeap: STATUS_INVALID_PARAMETER);
- a failed call changes nothing: the live blocks, their sizes and their bytes
  stay.

What a block must hold is what is *known* of it: the model's harness fills
every block with a pattern of its own (``known`` is the whole block); the
oracle knows the bytes it wrote into a block with WriteUserMemory, and the
zeros HEAP_ZERO_MEMORY promised, up to a limit of bytes of its start.
A freed or moved block's bytes are no longer the program's: the heap may keep
its own records there (Windows links free blocks through them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from spec.abi import (
    HEAP_REALLOC_IN_PLACE_ONLY,
    HEAP_SIZE_FAILED,
    HEAP_ZERO_MEMORY,
    MEMORY_ALLOCATION_ALIGNMENT,
    PROCESS_HEAP_MAX,
    ErrorCode,
)

E = ErrorCode
#: HeapReAlloc's failures that keep the block: no room (or in place only), a damaged block.
REALLOC_FAILURES = (E.ERROR_NOT_ENOUGH_MEMORY, E.ERROR_ARENA_TRASHED)
HEAP_CALLS = ("SyscallHeapAlloc", "SyscallHeapFree", "SyscallHeapSize", "SyscallHeapReAlloc")


@dataclass
class Block:
    """A live block: the size last asked for, and its first bytes as they must read."""

    size: int
    known: bytes


#: HEAP_ZERO_MEMORY's zeros are read back over at most this many bytes (the
#: model's whole process heap), so that a reply claiming a huge block cannot make
#: the judge read gigabytes.
ZERO_CHECKED = PROCESS_HEAP_MAX
#: read(pid, address, length): the bytes a program reads there (b"" when it cannot).
Reader = Callable[[int, int, int], bytes]
#: fill(pid, pointer, size, kept): what the block is known to hold after a call
#: gave it (kept: what the rules already know of it).
Filler = Callable[[int, int, int, bytes], bytes]


class HeapBlocks:
    """Every process's live blocks, as the heap calls' replies made them."""

    def __init__(self, read: Reader | None, fill: Filler, limit: int | None,
                 handle: Callable[[int], int]) -> None:
        #: None: the bytes cannot be read (no contents are judged)
        self.read = read
        self.fill = fill
        #: bytes of a block's start kept track of (None: all of them)
        self.limit = limit
        #: pid -> its process heap's handle
        self.handle = handle
        self.blocks: dict[int, dict[int, Block]] = {}
        #: (pid, start, end) of bytes the last call gave back to the heap
        self.released: list[tuple[int, int, int]] = []

    def differs(self, pid: int, address: int, data: bytes) -> bytes | None:
        """The bytes at address when they are not data (None: they are, or unread)."""
        if self.read is None or not data:
            return None
        seen = self.read(pid, address, len(data))
        return None if seen == data else seen

    def cap(self, size: int) -> int:
        """How many of a block's first bytes are kept track of."""
        return size if self.limit is None else min(size, self.limit)

    def destroyed(self, pid: int) -> None:
        self.blocks.pop(pid, None)

    def wrote(self, pid: int, address: int, data: bytes) -> bool:
        """A program wrote data at address: what a block holding it now holds (its
        known start grows when the write continues it). True when a block's known
        bytes took all of data."""
        for pointer, block in self.blocks.get(pid, {}).items():
            offset = address - pointer
            if 0 <= offset <= len(block.known) and offset + len(data) <= self.cap(block.size):
                block.known = block.known[:offset] + data + block.known[offset + len(data):]
                return True
        return False

    # -- one call -------------------------------------------------------------------------

    def after(self, name: str, args: tuple[Any, ...], pid: int, reply: Any, code: int,
              live: set[int]) -> list[str]:
        """After any call of pid (live: the live pids): a heap call's rules, then
        every live block."""
        self.released = []
        if name == "DestroyProcess" and reply:
            self.destroyed(args[0])
        wrong = self.reply(name, args, pid, self.handle(pid), reply, code) if (
            name in HEAP_CALLS and pid in live) else []
        return wrong + self.live(live)

    def reply(self, name: str, args: tuple[Any, ...], pid: int, heap: int, reply: Any,
              last: int) -> list[str]:
        """The rules of one heap call of pid, whose process heap's handle is heap
        (last: the call's GetLastError); the blocks follow it."""
        self.released = []
        blocks = self.blocks.setdefault(pid, {})
        if not all(type(a) is int for a in args) or type(reply) is not int:
            return []
        if args[0] != heap:
            return [] if reply in (0, HEAP_SIZE_FAILED) else [
                f"{name} with {args[0]:#x}, not the process heap {heap:#x}, returned {reply:#x}"]
        flags, pointer = args[1], args[2]
        if name == "SyscallHeapAlloc":
            return self.allocated(pid, flags, pointer, reply, blocks)
        if name == "SyscallHeapFree":
            return self.freed(pid, pointer, reply, blocks)
        if name == "SyscallHeapSize":
            block = blocks.get(pointer)
            expected = (HEAP_SIZE_FAILED, E.ERROR_INVALID_PARAMETER) if block is None else (
                block.size, E.ERROR_SUCCESS)
            if (reply, last) != expected:
                return [f"HeapSize({pointer:#x}) gave {reply:#x} (error {last}), the rules "
                        f"{expected[0]:#x} (error {int(expected[1])})"]
            return []
        if name == "SyscallHeapReAlloc":
            return self.reallocated(pid, flags, pointer, args[3], reply, last, blocks)
        return []

    def allocated(self, pid: int, flags: int, size: int, reply: int,
                  blocks: dict[int, Block]) -> list[str]:
        if not reply:
            return []
        wrong = []
        if flags & HEAP_ZERO_MEMORY and self.differs(
                pid, reply, bytes(min(size, ZERO_CHECKED))) is not None:
            wrong.append(f"HeapAlloc(HEAP_ZERO_MEMORY, {size:#x}) at {reply:#x} left bytes "
                         "that are not zero")
        if reply in blocks:
            wrong.append(f"HeapAlloc returned {reply:#x}, a live block")
        zeros = bytes(self.cap(size)) if flags & HEAP_ZERO_MEMORY else b""
        blocks[reply] = Block(size, self.fill(pid, reply, size, zeros))
        return wrong

    def freed(self, pid: int, pointer: int, reply: int, blocks: dict[int, Block]) -> list[str]:
        block = blocks.get(pointer)
        if pointer == 0:
            return [] if reply else ["HeapFree(NULL) failed: it must succeed"]
        if block is None:
            return [f"HeapFree({pointer:#x}) succeeded: it is no live block"] if reply else []
        if reply:
            del blocks[pointer]
            self.released.append((pid, pointer, pointer + block.size))
        return []

    def reallocated(self, pid: int, flags: int, pointer: int, size: int, reply: int,
                    last: int, blocks: dict[int, Block]) -> list[str]:
        old = blocks.get(pointer)
        if old is None:
            want = E.ERROR_SUCCESS if pointer == 0 else E.ERROR_INVALID_PARAMETER
            return [] if (reply, last) == (0, want) else [
                f"HeapReAlloc of {pointer:#x} (no block) gave {reply:#x} (error {last}), "
                f"the rules 0 (error {int(want)})"]
        if not reply:
            return [] if last in REALLOC_FAILURES else [
                f"HeapReAlloc of {pointer:#x} failed with error {last}, not 8 or 7"]
        if flags & HEAP_REALLOC_IN_PLACE_ONLY and reply != pointer:
            return [f"HeapReAlloc(HEAP_REALLOC_IN_PLACE_ONLY) moved {pointer:#x} to {reply:#x}"]
        del blocks[pointer]
        wrong = [f"HeapReAlloc returned {reply:#x}, a live block"] if reply in blocks else []
        if reply != pointer:
            self.released.append((pid, pointer, pointer + old.size))
        elif size < old.size:
            self.released.append((pid, pointer + size, pointer + old.size))
        kept = old.known[:size]
        seen = self.differs(pid, reply, kept)
        if seen is not None:
            wrong.append(f"HeapReAlloc of {pointer:#x} to {reply:#x} ({old.size:#x} -> "
                         f"{size:#x} bytes) lost its first bytes: {seen[:16].hex()} read, "
                         f"{kept[:16].hex()} kept")
        grown = size - old.size
        if flags & HEAP_ZERO_MEMORY and grown > 0:
            if self.differs(pid, reply + old.size, bytes(min(grown, ZERO_CHECKED))) is not None:
                wrong.append(f"HeapReAlloc(HEAP_ZERO_MEMORY) to {size:#x} bytes left bytes "
                             f"past {old.size:#x} that are not zero")
            if len(kept) == old.size:
                kept += bytes(self.cap(size) - len(kept))
        blocks[reply] = Block(size, self.fill(pid, reply, size, kept))
        return wrong

    # -- every call --------------------------------------------------------------------------

    def live(self, pids: set[int]) -> list[str]:
        """Every live block of the live pids: aligned, disjoint, its known bytes as they were."""
        wrong = []
        for pid in sorted(self.blocks.keys() & pids):
            blocks = self.blocks[pid]
            ordered = sorted(blocks)
            for low, high in zip(ordered, ordered[1:], strict=False):
                if low + blocks[low].size > high:
                    wrong.append(f"blocks {low:#x} ({blocks[low].size:#x} bytes) and {high:#x} "
                                 f"of process {pid} overlap")
            for pointer, block in blocks.items():
                if pointer % MEMORY_ALLOCATION_ALIGNMENT:
                    wrong.append(f"{pointer:#x} is not {MEMORY_ALLOCATION_ALIGNMENT}-aligned")
                if self.differs(pid, pointer, block.known) is not None:
                    wrong.append(f"block {pointer:#x} of process {pid} lost its contents")
        return wrong
