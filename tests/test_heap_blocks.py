"""HEAP_BLOCKS (proofs/machines/heap_blocks.py), the one definition of the process
heap's rules the user machine's harness and the oracle's user judge share:
each rule accepts what Windows does and refutes a heap that breaks it, over a
plain memory of bytes."""

from __future__ import annotations

from typing import Any

import pytest

from proofs.machines.heap_blocks import HeapBlocks
from proofs.oracle.families.user_heap import program_bytes
from proofs.oracle.spec_session import SpecSession
from proofs.oracle.worlds.user import READ_LIMIT
from spec.abi import HEAP_REALLOC_IN_PLACE_ONLY, HEAP_SIZE_FAILED, HEAP_ZERO_MEMORY

HEAP = 0x1410000
PID = 1
OK, BAD_PARAMETER, NO_MEMORY, TRASHED = 0, 87, 8, 7


class Memory:
    """A process's bytes (0 where nothing was written)."""

    def __init__(self) -> None:
        self.bytes: dict[int, int] = {}

    def read(self, pid: int, address: int, length: int) -> bytes:
        return bytes(self.bytes.get(address + n, 0) for n in range(length))

    def write(self, address: int, data: bytes) -> None:
        for n, byte in enumerate(data):
            self.bytes[address + n] = byte


def judge(limit: int | None = 64) -> tuple[HeapBlocks, Memory]:
    memory = Memory()
    return HeapBlocks(memory.read, lambda pid, pointer, size, kept: kept, limit,
                      lambda pid: HEAP), memory


def alloc(heap: HeapBlocks, memory: Memory, pointer: int, size: int, data: bytes = b"",
          flags: int = 0) -> None:
    assert heap.reply("SyscallHeapAlloc", (HEAP, flags, size), PID, HEAP, pointer, OK) == []
    if data:
        memory.write(pointer, data)
        assert heap.wrote(PID, pointer, data)


def test_a_moved_block_keeps_its_first_bytes() -> None:
    heap, memory = judge()
    alloc(heap, memory, 0x1000, 24, b"abcdef")
    memory.write(0x2000, b"abcdef")
    assert heap.reply("SyscallHeapReAlloc", (HEAP, 0, 0x1000, 0x3000), PID, HEAP, 0x2000,
                      OK) == []
    assert heap.released == [(PID, 0x1000, 0x1018)]
    assert heap.live({PID}) == []


def test_a_move_that_forgets_the_contents_is_refuted() -> None:
    heap, memory = judge()
    alloc(heap, memory, 0x1000, 24, b"abcdef")
    (why,) = heap.reply("SyscallHeapReAlloc", (HEAP, 0, 0x1000, 0x3000), PID, HEAP, 0x2000, OK)
    assert "lost its first bytes" in why


def test_a_shrink_keeps_only_the_new_size() -> None:
    heap, memory = judge()
    alloc(heap, memory, 0x1000, 24, b"abcdef")
    memory.write(0x1002, b"zz")  # past the new size: no longer the program's
    assert heap.reply("SyscallHeapReAlloc", (HEAP, 0, 0x1000, 2), PID, HEAP, 0x1000, OK) == []
    assert heap.released == [(PID, 0x1002, 0x1018)]
    assert heap.live({PID}) == []
    assert heap.reply("SyscallHeapSize", (HEAP, 0, 0x1000), PID, HEAP, 2, OK) == []


@pytest.mark.parametrize(("tail", "refuted"), [(b"", False), (b"\x01", True)])
def test_heap_zero_memory_zeroes_what_growing_adds(tail: bytes, refuted: bool) -> None:
    heap, memory = judge()
    alloc(heap, memory, 0x1000, 4, b"abcd")
    memory.write(0x2000, b"abcd" + bytes(8) + tail)
    why = heap.reply("SyscallHeapReAlloc", (HEAP, HEAP_ZERO_MEMORY, 0x1000, 16), PID, HEAP,
                     0x2000, OK)
    assert bool(why) == refuted
    assert heap.blocks[PID][0x2000].known == b"abcd" + bytes(12)


@pytest.mark.parametrize(("size", "reply", "error", "refuted"), [
    (24, 24, OK, False), (24, 32, OK, True), (None, HEAP_SIZE_FAILED, BAD_PARAMETER, False),
    (None, 0, OK, True)])
def test_heap_size_is_the_size_asked_for(size: int | None, reply: int, error: int,
                                         refuted: bool) -> None:
    heap, memory = judge()
    if size is not None:
        alloc(heap, memory, 0x1000, size)
    assert bool(heap.reply("SyscallHeapSize", (HEAP, 0, 0x1000), PID, HEAP, reply,
                           error)) == refuted


def test_overlapping_or_unaligned_blocks_are_refuted() -> None:
    heap, memory = judge()
    alloc(heap, memory, 0x1000, 24)
    alloc(heap, memory, 0x1010, 8)
    assert any("overlap" in why for why in heap.live({PID}))
    heap, memory = judge()
    alloc(heap, memory, 0x1004, 8)
    assert any("aligned" in why for why in heap.live({PID}))
    heap, memory = judge()
    alloc(heap, memory, 0x1000, 0)
    assert heap.reply("SyscallHeapAlloc", (HEAP, 0, 0), PID, HEAP, 0x1000, OK) != []


def test_zeroed_allocation_and_free_rules() -> None:
    heap, memory = judge()
    memory.write(0x1004, b"\x07")
    assert heap.reply("SyscallHeapAlloc", (HEAP, HEAP_ZERO_MEMORY, 8), PID, HEAP, 0x1000, OK)
    assert heap.reply("SyscallHeapFree", (HEAP, 0, 0), PID, HEAP, 1, OK) == []
    assert heap.reply("SyscallHeapFree", (HEAP, 0, 0), PID, HEAP, 0, BAD_PARAMETER) != []
    assert heap.reply("SyscallHeapFree", (HEAP, 0, 0x5000), PID, HEAP, 1, OK) != []
    assert heap.reply("SyscallHeapFree", (HEAP, 0, 0x1000), PID, HEAP, 1, OK) == []
    assert heap.released == [(PID, 0x1000, 0x1008)] and heap.blocks[PID] == {}
    assert heap.reply("SyscallHeapFree", (HEAP, 0, 0x1000), PID, HEAP, 0, BAD_PARAMETER) == []


@pytest.mark.parametrize(("flags", "pointer", "reply", "error", "refuted"), [
    (0, 0, 0, OK, False), (0, 0, 0, BAD_PARAMETER, True), (0, 0x3000, 0, BAD_PARAMETER, False),
    (0, 0x3000, 0x4000, OK, True), (HEAP_REALLOC_IN_PLACE_ONLY, 0x1000, 0, NO_MEMORY, False),
    (HEAP_REALLOC_IN_PLACE_ONLY, 0x1000, 0x2000, OK, True), (0, 0x1000, 0, TRASHED, False),
    (0, 0x1000, 0, BAD_PARAMETER, True)])
def test_realloc_failures_and_in_place(flags: int, pointer: int, reply: int, error: int,
                                       refuted: bool) -> None:
    heap, memory = judge()
    alloc(heap, memory, 0x1000, 8, b"ab")
    memory.write(0x2000, b"ab")
    why = heap.reply("SyscallHeapReAlloc", (HEAP, flags, pointer, 0x3000), PID, HEAP, reply,
                     error)
    assert bool(why) == refuted, why
    if not reply:
        assert set(heap.blocks[PID]) == {0x1000} and heap.released == []


def test_another_heap_handle_must_fail() -> None:
    heap, _ = judge()
    assert heap.reply("SyscallHeapAlloc", (HEAP + 1, 0, 8), PID, HEAP, 0, BAD_PARAMETER) == []
    assert heap.reply("SyscallHeapAlloc", (HEAP + 1, 0, 8), PID, HEAP, 0x1000, OK) != []


def test_written_bytes_become_known_up_to_the_limit() -> None:
    heap, memory = judge(limit=4)
    alloc(heap, memory, 0x1000, 24, b"ab")
    assert heap.wrote(PID, 0x1002, b"cd")
    assert not heap.wrote(PID, 0x1004, b"e")  # past the limit: not the heap's to judge
    assert not heap.wrote(PID, 0x2000, b"e")
    assert heap.blocks[PID][0x1000].known == b"abcd"
    memory.write(0x1001, b"X")
    assert any("lost its contents" in why for why in heap.live({PID}))
    assert heap.live(set()) == []


def test_without_a_reader_no_contents_are_judged() -> None:
    heap = HeapBlocks(None, lambda pid, pointer, size, kept: kept, 64, lambda pid: HEAP)
    assert heap.reply("SyscallHeapAlloc", (HEAP, HEAP_ZERO_MEMORY, 8), PID, HEAP, 0x1000,
                      OK) == []
    assert heap.live({PID}) == []


def test_after_a_call_and_a_destroyed_process() -> None:
    """``after`` judges heap calls of live processes only, and forgets a destroyed
    process's blocks."""
    heap, memory = judge()
    alloc(heap, memory, 0x1000, 8, b"ab")
    assert heap.after("SyscallHeapSize", (HEAP, 0, 0x1000), PID, 9, OK, {PID}) != []
    assert heap.after("SyscallHeapSize", (HEAP, 0, 0x1000), PID, 9, OK, set()) == []
    memory.write(0x1000, b"X")
    assert heap.after("SyscallMunmap", (0x1000, 0x1000), PID, 0, OK, {PID}) != []
    assert heap.after("DestroyProcess", (PID,), 0, True, OK, set()) == []
    assert PID not in heap.blocks


class FakeSession:
    """ProcessBytes over a Memory, read as the oracle's sessions read (a reply of
    another length than asked is refused there: tests/test_oracle_hostile.py,
    test_a_byte_observation_must_have_the_bytes_asked_for)."""

    read = SpecSession.read
    pieces = staticmethod(SpecSession.pieces)

    def __init__(self, memory: Memory) -> None:
        self.memory, self.asked = memory, 0

    def observe(self, name: str, pid: int, virtual_addr: int, length: int) -> dict[str, Any]:
        self.asked += 1
        data = self.memory.read(pid, virtual_addr, length)
        return {"data": data.hex()}


def test_the_judge_reads_in_pieces() -> None:
    memory = Memory()
    memory.write(READ_LIMIT - 1, b"xy")
    session = FakeSession(memory)
    assert program_bytes(session, PID, 0, READ_LIMIT + 5)[READ_LIMIT - 1:][:2] == b"xy"
    assert session.asked == 2
