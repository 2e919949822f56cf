"""MemoryPool: fixed-size blocks from one kernel heap allocation (seed section 3).

State: ``block_size`` (the stride), ``max_blocks``, ``current_blocks`` (blocks
carved so far, live or free), ``arena`` (payload of the one heap allocation),
``free_list`` (first free block, 0 = empty) and ``live`` (one byte per carved
block, 1 when allocated: the pool's own record). Decisions:

- The free list is the seed's ``void** free_list``, threaded through the free
  blocks: a free block's first 4 bytes (little endian) hold the next free block,
  0 ends the list. These words live in modelled memory and are read and written
  as kernel accesses through the heap's directory (ReadVirtualMemory /
  WriteVirtualMemory, user_mode=False), so a use after free can damage them.
- The stride is block_size rounded up to a multiple of 4, at least 4 (a free
  block must hold the next pointer; Linux's kmem_cache aligns objects to a word).
- Create allocates the whole arena, stride * max_blocks bytes, with one
  heap.Alloc (the heap's error when that fails) and carves blocks lazily:
  AllocBlock pops the free list first (the most recently freed block, LIFO as
  the tutorial-style list gives), else carves the next block while
  current_blocks < max_blocks, else ERROR_NOT_ENOUGH_MEMORY (POOL-2).
- block_size or max_blocks 0, not an int in u32, or an arena of 2**32 bytes or
  more: ERROR_INVALID_PARAMETER. Create on a created pool:
  ERROR_ALREADY_INITIALIZED. A readonly heap cannot hold a free list the pool
  writes: ERROR_ACCESS_DENIED. Other calls before Create: ERROR_NOT_READY.
- FreeBlock (POOL-3): not an int in u32: ERROR_INVALID_PARAMETER; outside the
  arena or off a block boundary: ERROR_INVALID_ADDRESS; a block that is not live
  (double free, never carved): ERROR_INVALID_BLOCK. Nothing is pushed then.
- AllocBlock checks the next pointer it pops: it must be 0 or a carved, free
  block of this arena other than the one popped; anything else (a use after free
  damaged it) is ERROR_ARENA_TRASHED and nothing changes (HeapAlloc's
  ERROR_ARENA_TRASHED for damaged control blocks). The check is O(1), as the
  pop is: damage that still names a free block (skipping part of the list) goes
  unseen by AllocBlock and leaks the skipped blocks; POOL-1 over free_blocks()
  exposes it.
- Destroy (the pool's destruction, not a seed call) frees the arena back to the
  heap; the pool is then uncreated and may be created again.
- The arena is the heap's: once the heap refuses calls (its directory was
  destroyed: ERROR_INVALID_HANDLE; the heap itself destroyed: ERROR_NOT_READY),
  AllocBlock and FreeBlock fail with the heap's code after their own checks
  above and change nothing (a carved block would lie in pages that are gone),
  and Destroy fails with the code of the heap's Free.
- Block contents are the caller's: a block is not cleared on allocation
  (the heap's malloc-like contract); the next pointer is left in a popped block.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from model.errors import ReportsStatus
from model.x86_paging import is_u32
from spec.abi import (
    ADDRESS_LIMIT,
    OFFSET_MASK,
    PAGE_SHIFT,
    POINTER_SIZE,
    PTE_PRESENT,
    ErrorCode,
)

if TYPE_CHECKING:
    from model.kernel_heap import KernelHeap




class MemoryPool(ReportsStatus):
    """A pool of fixed-size blocks with a free list in memory."""

    def __init__(self, heap: KernelHeap) -> None:
        self.heap = heap
        self.created = False
        self.block_size = 0
        self.max_blocks = 0
        self.current_blocks = 0
        self.arena = 0
        self.free_list = 0
        self.live = bytearray()
        self.last_error = ErrorCode.ERROR_SUCCESS

    # -- seed operations -------------------------------------------------

    def Create(self, block_size: int, max_blocks: int) -> MemoryPool | None:
        """Allocate the arena for max_blocks blocks of block_size bytes; returns self."""
        if self.created:
            return self._fail(ErrorCode.ERROR_ALREADY_INITIALIZED, None)
        if not (is_u32(block_size) and is_u32(max_blocks) and block_size > 0 and max_blocks > 0):
            return self._fail(ErrorCode.ERROR_INVALID_PARAMETER, None)
        stride = max(POINTER_SIZE, block_size + (-block_size) % POINTER_SIZE)
        if stride * max_blocks >= ADDRESS_LIMIT:
            return self._fail(ErrorCode.ERROR_INVALID_PARAMETER, None)
        if self.heap.created and self.heap.readonly:
            return self._fail(ErrorCode.ERROR_ACCESS_DENIED, None)
        arena = self.heap.Alloc(stride * max_blocks)
        if arena == 0:
            return self._fail(self.heap.last_error, None)
        self.created = True
        self.block_size, self.max_blocks, self.arena = stride, max_blocks, arena
        self.current_blocks = self.free_list = 0
        self.live = bytearray()
        return self._ok(self)

    def AllocBlock(self) -> int:
        """Pop the free list, else carve the next block; 0 when exhausted."""
        if not self.created:
            return self._fail(ErrorCode.ERROR_NOT_READY, 0)
        code = self.heap._usable()
        if code != ErrorCode.ERROR_SUCCESS:
            return self._fail(code, 0)
        head = self.free_list
        if head:
            after = self._peek_next(head)
            index = self._index(after)
            if after != 0 and (after == head or not 0 <= index < self.current_blocks
                               or self.live[index]):
                return self._fail(ErrorCode.ERROR_ARENA_TRASHED, 0)
            directory = self.heap.directory
            assert directory is not None  # a created pool's heap is created
            # The pop's kernel read of the next pointer (sets the PTE's A bit);
            # the peek above validated it without touching the tables.
            self.heap.vmm.ReadVirtualMemory(directory, head, POINTER_SIZE, False)
            self.free_list = after
            self.live[self._index(head)] = 1
            return self._ok(head)
        if self.current_blocks >= self.max_blocks:
            return self._fail(ErrorCode.ERROR_NOT_ENOUGH_MEMORY, 0)
        block = self.arena + self.current_blocks * self.block_size
        self.live.append(1)
        self.current_blocks += 1
        return self._ok(block)

    def FreeBlock(self, block: int) -> bool:
        """Push a live block on the free list."""
        if not is_u32(block):
            return self._fail(ErrorCode.ERROR_INVALID_PARAMETER, False)
        if not self.created:
            return self._fail(ErrorCode.ERROR_NOT_READY, False)
        index = self._index(block)
        if index < 0:
            return self._fail(ErrorCode.ERROR_INVALID_ADDRESS, False)
        if index >= self.current_blocks or not self.live[index]:
            return self._fail(ErrorCode.ERROR_INVALID_BLOCK, False)
        code = self.heap._usable()
        if code != ErrorCode.ERROR_SUCCESS:
            return self._fail(code, False)
        directory = self.heap.directory
        if directory is None or self.heap.vmm.WriteVirtualMemory(
                directory, block, self.free_list.to_bytes(POINTER_SIZE, "little"),
                False) is not True:
            return self._fail(ErrorCode.ERROR_ARENA_TRASHED, False)
        self.free_list = block
        self.live[index] = 0
        return self._ok(True)

    def Destroy(self) -> bool:
        """Free the arena back to the heap; the pool becomes uncreated."""
        if not self.created:
            return self._fail(ErrorCode.ERROR_NOT_READY, False)
        if not self.heap.Free(self.arena):
            return self._fail(self.heap.last_error, False)
        self.created = False
        self.block_size = self.max_blocks = self.current_blocks = 0
        self.arena = self.free_list = 0
        self.live = bytearray()
        return self._ok(True)

    # -- observation -------------------------------------------------------

    def free_blocks(self) -> list[int] | None:
        """The free list read from memory, in order; None when it is corrupt.

        Corrupt: a pointer outside the carved blocks or off a boundary, onto a
        live block, or back onto the list (a cycle).
        """
        blocks: list[int] = []
        block = self.free_list if self.created else 0
        # The list holds distinct carved blocks, at most current_blocks of them:
        # one pass more ends any list that comes back onto itself (a cycle).
        for _ in range(self.current_blocks + 1):
            if not block:
                return blocks
            index = self._index(block)
            if not 0 <= index < self.current_blocks or self.live[index]:
                return None
            blocks.append(block)
            block = self._peek_next(block)
        return None

    # -- private -----------------------------------------------------------

    def _index(self, address: int) -> int:
        """Block number of a block address in the arena; -1 off the arena or a boundary."""
        offset = address - self.arena
        if not 0 <= offset < self.block_size * self.max_blocks or offset % self.block_size:
            return -1
        return offset // self.block_size

    def _peek_next(self, block: int) -> int:
        """The next pointer stored in block, read from its frames without an access
        (no A bit set: free_blocks is an observation, and a refused pop changes
        nothing); -1 when a byte of it is not mapped."""
        directory = self.heap.directory
        if directory is None:
            return -1
        spans: list[tuple[int, int, int]] = []
        for address in range(block, block + POINTER_SIZE):
            table = directory.tables[address >> 22]
            entry = 0 if table is None else table.entries[(address >> PAGE_SHIFT) & 0x3FF]
            if not entry & PTE_PRESENT:
                return -1
            offset = address & OFFSET_MASK
            spans.append((entry >> PAGE_SHIFT, offset, offset + 1))
        return int.from_bytes(self.heap.vmm.pageman.read_span(spans), "little")

