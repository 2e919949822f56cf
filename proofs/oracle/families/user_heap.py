"""The process heap's blocks in the user family (``HEAP_BLOCKS``), judged over
the protocol by the one definition the user machine's harness uses
(proofs/machines/heap_blocks.py).

- **What a block holds**: the sequence writes a pattern of its own into the
  first bytes of every block HeapAlloc or HeapReAlloc returned
  (:func:`fill_block`: one WriteUserMemory, at most ``FILL_BYTES`` and never
  past the block's page, so it stays one user-mode access the judge checks
  like any other); the judge keeps track of those bytes and of the zeros
  HEAP_ZERO_MEMORY promises, up to ``KNOWN_LIMIT`` bytes of a block's start,
  and reads them back through ProcessBytes (without it no contents are judged).
- **Replies**: HeapAlloc, HeapFree, HeapSize and HeapReAlloc of the current
  process's heap, with its handle as Processes reports it (``heap``), judged
  by :class:`proofs.machines.heap_blocks.HeapBlocks`: aligned, disjoint blocks,
  HeapSize the size asked for, HeapReAlloc keeping the first min(old, new)
  bytes and zeroing what HEAP_ZERO_MEMORY added, a failure changing nothing.
"""

from __future__ import annotations

from typing import Any

from proofs.machines.heap_blocks import HeapBlocks
from spec.abi import PAGE_SIZE

#: Bytes written into the start of each block (and kept track of, at most).
FILL_BYTES, KNOWN_LIMIT = 16, 64


def pattern(serial: int, length: int) -> bytes:
    """length bytes no other fill of a sequence repeats at the same offset (1..251)."""
    return bytes((serial * 7 + n) % 251 + 1 for n in range(length))


def fill_block(front: Any, pointer: int, size: int) -> None:
    """Write the next pattern into the first bytes of the block at pointer."""
    length = min(size, FILL_BYTES, PAGE_SIZE - pointer % PAGE_SIZE)
    if length > 0:
        front.fills = getattr(front, "fills", 0) + 1
        front.session.execute("SystemCalls", "WriteUserMemory",
                              {"addr": pointer, "data": pattern(front.fills, length).hex()})


def program_bytes(session: Any, pid: int, address: int, length: int) -> bytes:
    """length bytes at address of pid's committed pages, through ProcessBytes
    (b"" when a page is not committed)."""
    data = session.read("ProcessBytes", "virtual_addr", address, length, pid=pid)
    return b"" if data is None else bytes(data)


class HeapJudging:
    """Mixed into the user judge: its HEAP_BLOCKS hooks."""

    session: Any
    last: dict[str, Any]
    _args: dict[str, Any]

    def heap_judge(self) -> HeapBlocks:
        """The blocks, judged from what the implementation reports."""
        readable = "ProcessBytes" in self.session.observations
        return HeapBlocks(self.program_bytes if readable else None,
                          lambda pid, pointer, size, kept: kept, KNOWN_LIMIT, self.heap_handle)

    def program_bytes(self, pid: int, address: int, length: int) -> bytes:
        return program_bytes(self.session, pid, address, length)

    def heap_handle(self, pid: int) -> int:
        process = next((p for p in self.last["processes"] if p["pid"] == pid), None)
        return -1 if process is None else int(process["heap"])

    def write_data(self) -> bytes:
        data = self._args.get("data")
        try:
            return bytes.fromhex(data) if isinstance(data, str) else b""
        except ValueError:
            return b""
