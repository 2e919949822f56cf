"""The sequential model the checker judges against, with cheap states.

One small world built from the model's own classes (never a re-implementation):
a PageManager of ``MEMORY_END`` bytes, its VirtualMemoryManager, a KernelHeap in
the kernel directory, a MemoryPool carved from that heap, a
SharedMemoryManager and one process (SystemCalls) to map shared blocks into.
The operations (:class:`Op`) are the seed's, named by manager and operation as
in proofs/oracle/PROTOCOL.md; a reply is (result, error code), the error being
the manager's ``last_error`` read right after the call, inside its
linearization point.

Cheap states (docs/concurrency.md, "Model states"): the model's objects are
expensive to deepcopy (page tables of 1024 entries, 4 KB frames), so a state
is a :class:`Snapshot`: the world pickled to bytes (immutable, so sharing a
snapshot between search branches costs nothing) and a hashable abstraction,
``key()``, of everything the operations observe: the owner of every frame,
the heap's blocks and hole index, the pool's free list and carved blocks, the
shared blocks and views, and the process's allocations. Which physical frame
backs which heap page, A/D bits and the cache fields (FrameBitmap.hint) are
left out: no operation's reply depends on them. Two states with one key are
one search state (Lowe's memoization); tests/test_linearizability.py checks
that key-equal states answer alike.
"""

from __future__ import annotations

import pickle
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any

from model.kernel_heap import KernelHeap
from model.memory_pool import MemoryPool
from model.page_manager import PageManager
from model.shared_memory import SharedMemoryManager
from model.syscalls import SystemCalls
from model.virtual_memory import VirtualMemoryManager
from spec.abi import KHEAP_START, PAGE_SIZE, ErrorCode

#: Physical memory [0, MEMORY_END), the frames below MEMORY_START reserved.
MEMORY_START = 0x10000
MEMORY_END = 0x400000
#: The kernel heap: [HEAP_START, HEAP_END) mapped, growable to HEAP_MAX.
HEAP_START = KHEAP_START
HEAP_END = KHEAP_START + 4 * PAGE_SIZE
HEAP_MAX = KHEAP_START + 16 * PAGE_SIZE
HEAP_INDEX = 64
#: The pool: POOL_BLOCKS blocks of POOL_BLOCK_SIZE bytes from the heap.
POOL_BLOCK_SIZE = 16
POOL_BLOCKS = 8

#: An argument: a number or a boolean.
Arg = int | bool
#: A result: a number, a boolean, or (an observation) a tuple of numbers or tuples.
Value = int | bool | tuple[object, ...]
#: The manager name of observations, taken only at quiescent points
#: (docs/concurrency.md, "Observations"); the names are the oracle's.
OBSERVE = "observe"
OBSERVATIONS = ("FrameCounts", "FrameBitmap", "HeapWalk", "HoleIndex", "PoolFreeList")
#: The operations each manager offers to concurrent callers (docs/concurrency.md,
#: "The contract"), and the observations.
OPERATIONS: dict[str, tuple[str, ...]] = {
    "PageManager": ("RequestFrame", "FreeFrame", "GetFreeFrameCount"),
    "KernelHeap": ("Alloc", "Free"),
    "MemoryPool": ("AllocBlock", "FreeBlock"),
    "SharedMemoryManager": ("CreateSharedMemory", "MapSharedMemoryToProcess",
                            "UnmapSharedMemoryFromProcess", "DestroySharedMemory",
                            "GetSharedMemorySize"),
    OBSERVE: OBSERVATIONS,
}
#: A reply: the result (a number or a boolean) and the error code.
Reply = tuple[Value, int]


@dataclass(frozen=True, slots=True)
class Op:
    """One operation: the manager, the seed's operation name, its arguments."""

    manager: str
    name: str
    args: tuple[Arg, ...] = ()

    def __str__(self) -> str:
        return f"{self.manager}.{self.name}({', '.join(map(_show, self.args))})"


def show_reply(reply: Reply) -> str:
    """A reply as the lanes print it: (result, error), addresses in hex."""
    return f"({_show(reply[0])}, {reply[1]})"


def _show(value: Value) -> str:
    if isinstance(value, bool) or not isinstance(value, int):
        return str(value)
    return str(value) if value < 0x1000 else hex(value)


class World:
    """The model's managers, booted small, each operation run as the model runs it."""

    def __init__(self, *, heap_max: int = HEAP_MAX, shared: bool = False,
                 kernel: Mapping[str, Any] | None = None, pool: bool = False) -> None:
        """kernel: boot as the oracle's kernel family does with that configuration
        (proofs/oracle/config.py's ``kernel`` fields; PROTOCOL.md, "Configuration"),
        the world an implementation run by ``python -m proofs.oracle concurrent``
        is in: its set-up calls only, and with pool (``--pool``) the pool's
        Create(POOL_BLOCK_SIZE, POOL_BLOCKS), the set-up call the run sends
        (PROTOCOL.md, "Concurrency (protocol 3)"). Without kernel the pool is
        always made."""
        c = {"mem_start": MEMORY_START, "mem_end": MEMORY_END, "heap_start": HEAP_START,
             "heap_end": HEAP_END, "heap_max": heap_max, "index_size": HEAP_INDEX,
             "min_size": 0, "supervisor": True, "readonly": False, **(kernel or {})}
        self.pm = PageManager()
        ok = self.pm.InitializePhysicalMemory(c["mem_start"], c["mem_end"])
        self.vmm = VirtualMemoryManager(self.pm)
        ok = ok and self.vmm.InitializePaging()
        self.heap = KernelHeap(self.vmm)
        ok = ok and self.heap.Create(c["heap_start"], c["heap_end"], c["heap_max"],
                                     c["supervisor"], c["readonly"],
                                     index_size=c["index_size"],
                                     min_size=c["min_size"]) is not None
        self.pool = MemoryPool(self.heap)
        if kernel is None or pool:
            ok = ok and self.pool.Create(POOL_BLOCK_SIZE, POOL_BLOCKS) is not None
        #: The process views map into: made only for shared memory (a process
        #: costs five times the rest in every snapshot).
        self.syscalls = SystemCalls(self.vmm)
        self.pid = self.syscalls.CreateProcess(image_size=PAGE_SIZE, stack_size=PAGE_SIZE) \
            if shared else 0
        self.shm = SharedMemoryManager(self.vmm)
        if not (ok and (self.pid or not shared)):
            raise RuntimeError("the concurrency world failed to boot")

    # -- operations ------------------------------------------------------------

    def apply(self, op: Op) -> Reply:
        """Run op on the model: its (result, error). Unknown operations raise."""
        manager, name, args = op.manager, op.name, op.args
        if name not in OPERATIONS.get(manager, ()):
            raise ValueError(f"no such operation: {op}")
        if manager == "PageManager":
            return getattr(self.pm, name)(*args), int(self.pm.last_error)
        if manager == "KernelHeap":
            return getattr(self.heap, name)(*args), int(self.heap.last_error)
        if manager == "MemoryPool":
            return getattr(self.pool, name)(*args), int(self.pool.last_error)
        if manager == "SharedMemoryManager":
            return self._shared(name, args), int(self.shm.last_error)
        return self.observe(name), int(ErrorCode.ERROR_SUCCESS)

    def _shared(self, name: str, args: tuple[Arg, ...]) -> Value:
        shm = self.shm
        if name in ("CreateSharedMemory", "DestroySharedMemory", "GetSharedMemorySize"):
            result: Value = getattr(shm, name)(*args)
            return result
        space = self.syscalls.processes.get(int(args[0]))
        if name == "MapSharedMemoryToProcess" and space is not None:
            shm_id, virtual_addr, protect = args[1:]
            return shm.MapSharedMemoryToProcess(space, int(shm_id), int(virtual_addr),
                                                int(protect) or None)
        if name == "UnmapSharedMemoryFromProcess" and space is not None:
            return shm.UnmapSharedMemoryFromProcess(space, int(args[1]))
        if name in ("MapSharedMemoryToProcess", "UnmapSharedMemoryFromProcess"):
            # An unknown pid is a space that is not live (proofs/oracle/worlds/shared.py).
            shm.last_error = ErrorCode.ERROR_INVALID_HANDLE
            return 0 if name == "MapSharedMemoryToProcess" else False
        raise ValueError(f"no such operation: SharedMemoryManager.{name}")

    def observe(self, name: str) -> tuple[object, ...]:
        """An observation, read from the model's own observers; changes nothing.
        FrameCounts (free, used); FrameBitmap the used frames, ascending;
        HeapWalk (header, size, is_hole) per block as memory holds them, () when
        corrupt; HoleIndex (size, header) in index order; PoolFreeList (the free
        list's blocks, head first, as memory holds them, () when corrupt; the
        blocks carved)."""
        if name == "FrameCounts":
            return (self.pm.free_count(), self.pm.frames.used)
        if name == "FrameBitmap":
            return self.pm.used_frames()
        if name == "HeapWalk":
            return tuple(tuple(block) for block in self.heap.walk() or ())
        if name == "PoolFreeList":
            return (tuple(self.pool.free_blocks() or ()), self.pool.current_blocks)
        return tuple(self.heap.holes())

    # -- states ------------------------------------------------------------------

    def key(self) -> Hashable:
        """What the operations observe (module docstring): equal keys, equal futures.
        One part per manager, each its adapter's abstraction of the model's state."""
        return (self.frames_key(), self.heap_key(), self.pool_key(), self.shared_key())

    def frames_key(self) -> Hashable:
        """PageManager: the owner of every frame (the bitmap bit is set exactly for
        owned frames, FRM-3); contents are zero for a frame the operations hand out."""
        return bytes(self.pm.owner)

    def heap_key(self) -> Hashable:
        """KernelHeap: its end, its live blocks and its hole index; headers and
        footers in memory follow from them (the heap writes no payload)."""
        heap = self.heap
        return (heap.end_address,
                tuple(sorted((h, b.size, b.requested, b.page_align)
                             for h, b in heap.allocated.items())),
                tuple(heap.index))

    def pool_key(self) -> Hashable:
        """MemoryPool: its free list as memory holds it, carved and live blocks."""
        pool = self.pool
        return (pool.free_list, pool.current_blocks, bytes(pool.live),
                tuple(pool.free_blocks() or (-1,)))

    def shared_key(self) -> Hashable:
        """SharedMemoryManager: the id counter, the blocks with their frames and
        views, and the allocations of the process views are placed among."""
        shm = self.shm
        space = self.syscalls.processes.get(self.pid)
        return (shm.next_shm_id,
                tuple(sorted((i, b.size, b.permissions, b.frames, b.destroyed,
                              tuple(sorted(b.mappings))) for i, b in shm.blocks.items())),
                () if space is None else tuple(sorted(
                    (a.base, a.size, a.allocation_protect, a.origin)
                    for a in space.allocations.values())))

    def snapshot(self, key: Hashable | None = None) -> Snapshot:
        """The world frozen; key, when given, is its key() computed already."""
        return Snapshot(self.key() if key is None else key,
                        pickle.dumps(self, pickle.HIGHEST_PROTOCOL))


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A world frozen: its key (hash and equality) and its pickled bytes."""

    key: Hashable
    blob: bytes

    def thaw(self) -> World:
        """A private, mutable copy of the world."""
        world = pickle.loads(self.blob)
        assert isinstance(world, World)
        return world

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Snapshot) and self.key == other.key
