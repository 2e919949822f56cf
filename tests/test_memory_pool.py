"""MemoryPool (seed section 3): fixed-size blocks over one heap allocation.

The heap is the small world of the heap tests: 16 MB, the first MB reserved,
a heap at 0xC0000000 with 8 pages mapped, max 0x40000, 64 index entries, so
data_start is 0xC0001000 and the pool's arena (the first heap block) has its
payload at 0xC000100C. Every test checks POOL-1 (free list and live blocks
partition the carved blocks) and POOL-2 (current_blocks <= max_blocks) on the
free list read back from memory.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from model.kernel_heap import KernelHeap
from model.memory_pool import MemoryPool
from model.page_manager import PageManager
from model.page_tables import PageDirectory
from model.virtual_memory import VirtualMemoryManager
from spec.abi import ErrorCode

E = ErrorCode
ARENA = 0xC000100C
HOSTILE = [None, -1, 2**32, "4", 1.5, True]


def make_heap(readonly: bool = False, create: bool = True) -> KernelHeap:
    pm = PageManager()
    assert pm.InitializePhysicalMemory(0x100000, 0x1000000)
    vmm = VirtualMemoryManager(pm)
    assert vmm.InitializePaging()
    heap = KernelHeap(vmm)
    if create:
        assert heap.Create(0xC0000000, 0xC0008000, 0xC0040000, True, readonly,
                           index_size=64, min_size=0x2000) is heap
    return heap


def make_pool(block_size: int = 10, max_blocks: int = 4) -> MemoryPool:
    pool = MemoryPool(make_heap())
    assert pool.Create(block_size, max_blocks) is pool
    assert pool.last_error == E.ERROR_SUCCESS
    return pool


def kernel(pool: MemoryPool) -> PageDirectory:
    assert pool.heap.directory is not None
    return pool.heap.directory


def write(pool: MemoryPool, address: int, data: bytes) -> None:
    assert pool.heap.vmm.WriteVirtualMemory(kernel(pool), address, data, False) is True


def read(pool: MemoryPool, address: int, length: int) -> bytes:
    data = pool.heap.vmm.ReadVirtualMemory(kernel(pool), address, length, False)
    assert isinstance(data, bytes)
    return data


def state(pool: MemoryPool) -> tuple[Any, ...]:
    heap, pm = pool.heap, pool.heap.vmm.pageman
    tables = {slot: list(table.entries) for slot, table in pool.heap.vmm.kernel_tables.items()}
    return (pool.created, pool.block_size, pool.max_blocks, pool.current_blocks, pool.arena,
            pool.free_list, bytes(pool.live), heap.walk(), heap.holes(), dict(heap.allocated),
            heap.end_address, bytes(pm.owner), list(pm.frames.words),
            {frame: bytes(page) for frame, page in pm.memory.items()}, tables)


def refused(pool: MemoryPool, call: Any, expected: Any, code: ErrorCode) -> None:
    before = state(pool)
    assert call() == expected
    assert pool.last_error == code
    assert state(pool) == before


def check_pool(pool: MemoryPool) -> None:
    """POOL-1 and POOL-2 from the free list in memory and the live record."""
    assert pool.current_blocks <= pool.max_blocks
    assert len(pool.live) == pool.current_blocks
    free = pool.free_blocks()
    assert free is not None
    carved = [pool.arena + i * pool.block_size for i in range(pool.current_blocks)]
    live = [block for i, block in enumerate(carved) if pool.live[i]]
    assert len(set(free)) == len(free)
    assert set(free) | set(live) == set(carved) and not set(free) & set(live)


# -- Create ----------------------------------------------------------------------

@pytest.mark.parametrize(("block_size", "stride"), [(1, 4), (3, 4), (4, 4), (5, 8), (10, 12)])
def test_create_stride(block_size: int, stride: int) -> None:
    pool = make_pool(block_size, 4)
    assert (pool.created, pool.block_size, pool.max_blocks) == (True, stride, 4)
    assert (pool.arena, pool.current_blocks, pool.free_list, pool.live) == (ARENA, 0, 0, b"")
    block = pool.heap.allocated[ARENA - 12]
    assert block.requested == stride * 4
    check_pool(pool)


@pytest.mark.parametrize(("block_size", "max_blocks"),
                         [(0, 4), (4, 0), (2**31, 2), (0xFFFFFFFF, 1), (0x40000000, 4)]
                         + [(bad, 4) for bad in HOSTILE] + [(4, bad) for bad in HOSTILE])
def test_create_rejects_parameters(block_size: Any, max_blocks: Any) -> None:
    pool = MemoryPool(make_heap())
    refused(pool, lambda: pool.Create(block_size, max_blocks), None, E.ERROR_INVALID_PARAMETER)


def test_create_failures() -> None:
    pool = MemoryPool(make_heap())
    # Fits in 32 bits, not in the heap's max: the heap's refusal.
    refused(pool, lambda: pool.Create(0x1000, 0x100), None, E.ERROR_NOT_ENOUGH_MEMORY)
    uncreated = MemoryPool(make_heap(create=False))
    refused(uncreated, lambda: uncreated.Create(8, 4), None, E.ERROR_NOT_READY)
    readonly = MemoryPool(make_heap(readonly=True))
    refused(readonly, lambda: readonly.Create(8, 4), None, E.ERROR_ACCESS_DENIED)
    created = make_pool()
    refused(created, lambda: created.Create(8, 4), None, E.ERROR_ALREADY_INITIALIZED)


def test_calls_before_create() -> None:
    pool = MemoryPool(make_heap())
    refused(pool, pool.AllocBlock, 0, E.ERROR_NOT_READY)
    refused(pool, lambda: pool.FreeBlock(ARENA), False, E.ERROR_NOT_READY)
    refused(pool, pool.Destroy, False, E.ERROR_NOT_READY)
    assert pool.free_blocks() == []


# -- AllocBlock / FreeBlock -----------------------------------------------------

def test_carve_then_exhaust() -> None:
    pool = make_pool()
    assert [pool.AllocBlock() for _ in range(4)] == [ARENA, ARENA + 12, ARENA + 24, ARENA + 36]
    assert pool.current_blocks == 4 and pool.live == b"\x01" * 4
    refused(pool, pool.AllocBlock, 0, E.ERROR_NOT_ENOUGH_MEMORY)
    check_pool(pool)


def test_free_list_lifo_in_memory() -> None:
    pool = make_pool()
    b0, b1, b2 = (pool.AllocBlock() for _ in range(3))
    assert pool.FreeBlock(b0) and pool.FreeBlock(b2)
    assert pool.last_error == E.ERROR_SUCCESS
    assert pool.free_list == b2 and pool.live == b"\x00\x01\x00"
    assert read(pool, b2, 4) == b0.to_bytes(4, "little")
    assert read(pool, b0, 4) == bytes(4)
    assert pool.free_blocks() == [b2, b0]
    check_pool(pool)
    assert [pool.AllocBlock() for _ in range(3)] == [b2, b0, ARENA + 36]
    assert pool.free_list == 0 and pool.current_blocks == 4
    check_pool(pool)


def test_free_errors() -> None:
    pool = make_pool()
    b0 = pool.AllocBlock()
    pool.AllocBlock()
    assert pool.FreeBlock(b0)
    refused(pool, lambda: pool.FreeBlock(b0), False, E.ERROR_INVALID_BLOCK)  # double free
    refused(pool, lambda: pool.FreeBlock(ARENA + 24), False, E.ERROR_INVALID_BLOCK)  # not carved
    for foreign in (ARENA + 1, ARENA + 14, ARENA - 12, ARENA + 48, 0, 0xC0000000):
        refused(pool, lambda foreign=foreign: pool.FreeBlock(foreign), False,
                E.ERROR_INVALID_ADDRESS)
    for bad in HOSTILE:
        refused(pool, lambda bad=bad: pool.FreeBlock(bad), False, E.ERROR_INVALID_PARAMETER)
    check_pool(pool)


@pytest.mark.parametrize("damage", ["live", "self", "misaligned", "uncarved", "outside", "-"])
def test_use_after_free_is_detected(damage: str) -> None:
    pool = make_pool()
    b0, b1, b2 = (pool.AllocBlock() for _ in range(3))
    assert pool.FreeBlock(b0) and pool.FreeBlock(b1)  # list: b1 -> b0
    value = {"live": b2, "self": b1, "misaligned": b0 + 2, "uncarved": ARENA + 36,
             "outside": 0xDEADBEEF, "-": ARENA - 12}[damage]
    write(pool, b1, value.to_bytes(4, "little"))  # a write through a dangling pointer
    assert pool.free_blocks() is None
    refused(pool, pool.AllocBlock, 0, E.ERROR_ARENA_TRASHED)


def test_damage_naming_a_free_block_leaks() -> None:
    """The O(1) pop cannot see a next pointer that skips free blocks; POOL-1 on
    free_blocks() does (the documented limit)."""
    pool = make_pool()
    b0, b1, b2 = (pool.AllocBlock() for _ in range(3))
    for block in (b0, b1, b2):
        assert pool.FreeBlock(block)
    write(pool, b2, b0.to_bytes(4, "little"))
    assert pool.free_blocks() == [b2, b0]
    assert pool.AllocBlock() == b2 and pool.AllocBlock() == b0
    assert pool.free_list == 0 and pool.live == b"\x01\x00\x01"  # b1 is lost


# -- Destroy ---------------------------------------------------------------------

def test_destroy_returns_the_arena() -> None:
    pool = make_pool()
    heap = pool.heap
    free_before = heap.vmm.pageman.GetFreeFrameCount()
    pool.AllocBlock()
    assert pool.Destroy() and pool.last_error == E.ERROR_SUCCESS
    assert heap.allocated == {} and heap.holes() == [(0x7000, 0xC0001000)]
    assert (pool.created, pool.block_size, pool.max_blocks, pool.current_blocks,
            pool.arena, pool.free_list, pool.live) == (False, 0, 0, 0, 0, 0, b"")
    assert heap.vmm.pageman.GetFreeFrameCount() == free_before
    assert pool.Create(16, 2) is pool and pool.arena == ARENA


def test_destroy_with_trashed_arena_end() -> None:
    pool = make_pool()
    # Write past the end of the arena: damages its footer.
    write(pool, ARENA + 48, b"\xff" * 8)
    refused(pool, pool.Destroy, False, E.ERROR_ARENA_TRASHED)


# -- contents and the invariants over random runs ---------------------------------

class PoolMachine(RuleBasedStateMachine):
    """Random alloc/free/write: contents of live blocks read back intact."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = make_pool(10, 6)
        self.contents: dict[int, bytes] = {}

    @rule()
    def alloc(self) -> None:
        block = self.pool.AllocBlock()
        if len(self.contents) == 6:
            assert block == 0 and self.pool.last_error == E.ERROR_NOT_ENOUGH_MEMORY
            return
        assert block not in self.contents and (block - ARENA) % 12 == 0
        self.contents[block] = read(self.pool, block, 10)

    @precondition(lambda self: self.contents)
    @rule(data=st.data())
    def free(self, data: st.DataObject) -> None:
        block = data.draw(st.sampled_from(sorted(self.contents)))
        assert self.pool.FreeBlock(block)
        del self.contents[block]
        refused(self.pool, lambda: self.pool.FreeBlock(block), False, E.ERROR_INVALID_BLOCK)

    @precondition(lambda self: self.contents)
    @rule(data=st.data(), payload=st.binary(min_size=10, max_size=10))
    def fill(self, data: st.DataObject, payload: bytes) -> None:
        block = data.draw(st.sampled_from(sorted(self.contents)))
        write(self.pool, block, payload)
        self.contents[block] = payload

    @invariant()
    def intact(self) -> None:
        check_pool(self.pool)
        for block, payload in self.contents.items():
            assert read(self.pool, block, 10) == payload


TestPoolMachine = PoolMachine.TestCase
TestPoolMachine.settings = settings(max_examples=25, stateful_step_count=30, deadline=None,
                                    suppress_health_check=[HealthCheck.too_slow])



@pytest.mark.parametrize("damage", ["misaligned", "uncarved", "outside", "-"])
def test_use_after_free_is_detected_when_the_last_carved_block_is_free(damage: str) -> None:
    """POOL-1 (spec/memory_pool.py): a next pointer off the carved blocks or off a
    boundary makes the list corrupt (free_blocks() is None), also when the last
    carved block is free: the off-arena index -1 must not be read as "the last
    block" (a mutation run found the lower bound of the index check unchecked,
    since in the neighbouring test the last block is live)."""
    pool = make_pool()
    b0, b1, b2 = (pool.AllocBlock() for _ in range(3))
    assert pool.FreeBlock(b2) and pool.FreeBlock(b1)  # list: b1 -> b2, b0 live
    assert pool.free_blocks() == [b1, b2]
    value = {"misaligned": b0 + 2, "uncarved": ARENA + 36, "outside": 0xDEADBEEF,
             "-": ARENA - 12}[damage]
    write(pool, b1, value.to_bytes(4, "little"))  # a write through a dangling pointer
    assert pool.free_blocks() is None
    refused(pool, pool.AllocBlock, 0, E.ERROR_ARENA_TRASHED)


def test_free_blocks_of_a_pool_whose_heap_was_destroyed_is_none() -> None:
    """POOL-1 over free_blocks() (model/memory_pool.py): the free list is read from
    memory, and a next pointer that cannot be read (no page directory left: the
    heap under the pool was destroyed, KernelHeap.Destroy resets its directory)
    makes the list unreadable, None, not a list that ends at its head (a mutation
    run found _peek_next's -1 for a missing directory unchecked: 0 there reads as
    the end of the list)."""
    pool = make_pool()
    b0, b1 = pool.AllocBlock(), pool.AllocBlock()
    assert pool.FreeBlock(b0) and pool.FreeBlock(b1)
    assert pool.free_blocks() == [b1, b0]
    assert pool.heap.Destroy() and pool.heap.directory is None
    assert pool.created and pool.free_list == b1
    assert pool.free_blocks() is None
    refused(pool, pool.AllocBlock, 0, E.ERROR_NOT_READY)
