"""Refinement of the MemoryPool spec by the model, checked on every step of hypothesis runs.

A :class:`~hypothesis.stateful.RuleBasedStateMachine` drives one MemoryPool
over one small kernel heap (``make_heap``): Create (valid and refused
arguments), AllocBlock, FreeBlock (live blocks mostly; double, never carved,
foreign, misaligned and ill-typed pointers), Destroy, and writes into live
blocks. After every call :class:`PoolHarness` checks

1. POOL-1 and POOL-2 on ``abstract_pool`` (one z3 query of each negation:
   sat is a violation named by the id, unknown a failure); a free list that
   ``free_blocks()`` reads as corrupt is itself POOL-1;
2. FreeBlock: POOL-3 on the model's outcome (its ``last_error`` as the
   status of the step);
3. the spec step (spec/memory_pool.py) from the pre abstraction: status ==
   ``last_error``, result == the returned address or flag, ``assume`` true,
   and the post abstraction equal to the step's post on the real fields
   (``transition``). The fields of an uncreated pool are not state: after a
   Destroy only ``created`` is compared. ``free`` is a stack: it is compared
   at the positions below ``fcount`` (AllocBlock leaves the popped entry
   above the top);
4. a failed call changes nothing: pool, heap, frames, memory, tables
   (``unchanged``);
5. every live block reads back what it held (``contents``).

Arguments the spec cannot represent: Create's block_size or max_blocks not a
u32, or an arena of 2**32 bytes or more, are given to the spec as stride 0
(refused as ERROR_INVALID_PARAMETER after ERROR_ALREADY_INITIALIZED, the
model's order); an arena larger than the heap, which the spec's Create does
not model, must fail with ERROR_NOT_ENOUGH_MEMORY; a FreeBlock pointer that
is not a u32 must fail with ERROR_INVALID_PARAMETER (checked before
readiness). The spec's stride is block_size rounded up to a word (its
docstring); the arena is the implementation's choice, read from the model.

Costs (CPU, 2-core machine): POOL-1/POOL-2 queries 5-30 ms, cached per
abstract state; the quick profile (5 examples x 16 steps) about 1 s, the
full one (100 x 40) about 25 s.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import z3
from hypothesis import strategies as st
from hypothesis.stateful import (
    initialize,
    precondition,
    rule,
)

from model.kernel_heap import KernelHeap
from model.memory_pool import MemoryPool
from model.page_tables import PageDirectory
from model.x86_paging import is_u32
from proofs.abstractions.kernel_heap import small_heap
from proofs.machines.checks import (
    CONTENTS,
    TRANSITION,
    UNCHANGED,
    CheckError,
    check_invariants,
    decide,
    failing,
    raise_problems,
)
from proofs.machines.runner import (
    Budget,
    CheckedMachine,
    ModelVariant,
    machine_obligation,
    run_machine,
)
from proofs.obligation import Obligation, Verdict
from spec import memory_pool as mp
from spec.abi import ADDRESS_LIMIT, POINTER_SIZE, ErrorCode
from spec.state import WORD, PoolState, Ref, bv
from spec.step import Transition

E = ErrorCode
SUCCESS = E.ERROR_SUCCESS
#: Hypothesis budget per profile; "teeth" (derandomized, as quick) gives the
#: broken variants a margin.
BUDGETS = {"quick": Budget(5, 16, 20.0), "full": Budget(100, 40, 60.0),
           "teeth": Budget(30, 16, 10.0)}
#: Pointers and sizes that are not u32 (True is a bool, not an int).
HOSTILE: tuple[Any, ...] = (None, -1, 1 << 32, "4", 1.5, True)


# -- the abstraction --------------------------------------------------------------

@dataclass(frozen=True)
class PoolSnapshot:
    """What the abstraction reads: block indices of the live blocks and of the
    free list (head first, read from memory)."""

    created: bool
    arena: int
    stride: int
    max_blocks: int
    current: int
    live: tuple[int, ...]
    free: tuple[int, ...]


def pool_snapshot(pool: MemoryPool) -> PoolSnapshot:
    blocks = pool.free_blocks()
    if blocks is None:
        raise CheckError("POOL-1: free_blocks() reads a corrupt free list", ["POOL-1"])
    return PoolSnapshot(pool.created, pool.arena, pool.block_size, pool.max_blocks,
                        pool.current_blocks, tuple(i for i, on in enumerate(pool.live) if on),
                        tuple((b - pool.arena) // pool.block_size for b in blocks))


def to_pool_state(snap: PoolSnapshot) -> PoolState:
    """The PoolState of a snapshot: free[fcount - 1] is the head; lrank numbers
    the live blocks in ascending order."""
    def word(value: int) -> Ref:
        return bv(value % ADDRESS_LIMIT, WORD)

    zero = z3.K(WORD, word(0))
    live, lrank, lunrank = z3.K(WORD, z3.BoolVal(False)), zero, zero
    for rank, block in enumerate(snap.live):
        live = z3.Store(live, word(block), True)
        lrank = z3.Store(lrank, word(block), word(rank))
        lunrank = z3.Store(lunrank, word(rank), word(block))
    free, fpos, fcount = zero, zero, len(snap.free)
    for depth, block in enumerate(snap.free):
        free = z3.Store(free, word(fcount - 1 - depth), word(block))
        fpos = z3.Store(fpos, word(block), word(fcount - 1 - depth))
    return PoolState(z3.BoolVal(snap.created), word(snap.arena), word(snap.stride),
                     word(snap.max_blocks), word(snap.current), live, free, word(fcount),
                     word(len(snap.live)), fpos, lrank, lunrank)


def abstract_pool(pool: MemoryPool) -> PoolState:
    return to_pool_state(pool_snapshot(pool))


def world(pool: MemoryPool) -> tuple[object, ...]:
    """Everything a failed call must leave as it was."""
    heap, vmm = pool.heap, pool.heap.vmm
    pm = vmm.pageman
    return (pool.created, pool.block_size, pool.max_blocks, pool.current_blocks, pool.arena,
            pool.free_list, bytes(pool.live), heap.walk(), heap.holes(), dict(heap.allocated),
            heap.end_address, bytes(pm.owner), list(pm.frames.words),
            {frame: bytes(page) for frame, page in pm.memory.items()},
            {slot: list(table.entries) for slot, table in vmm.kernel_tables.items()})


def make_heap() -> KernelHeap:
    """8 MB, the first MB reserved; a heap of 8 pages at 0xC0000000, max 0x40000."""
    return small_heap(0x8000, 0x40000, 64, 0x2000)


# -- the harness ------------------------------------------------------------------

def word_stride(block_size: int) -> int:
    """The spec's stride: block_size rounded up to a word."""
    return -(-block_size // POINTER_SIZE) * POINTER_SIZE


class PoolHarness:
    """One pool and what was written into its live blocks."""

    def __init__(self, machine: type[CheckedMachine]) -> None:
        self.machine = machine
        self.pool = MemoryPool(make_heap())
        self.contents: dict[int, bytearray] = {}  # live block -> its bytes
        self.freed: list[int] = []

    @property
    def directory(self) -> PageDirectory:
        assert self.pool.heap.directory is not None
        return self.pool.heap.directory

    def call(self, name: str, *args: Any) -> Any:
        pool = self.pool
        pre_snap = pool_snapshot(pool)
        pre, before = to_pool_state(pre_snap), world(pool)
        reply = getattr(pool, name)(*args)
        code = pool.last_error
        self.machine.outcomes[f"{name} {code.name.removeprefix('ERROR_')}"] += 1
        where = f"{name}{args!r} returned {reply!r} with {code.name}"
        problems: dict[str, str] = {}
        expected = self.expect(name, args, pre_snap, pre, pool.arena if code == SUCCESS else 0)
        if name == "FreeBlock" and not isinstance(expected, ErrorCode):
            outcome = Transition(bv(int(code), WORD), pre, pre)
            if not decide(mp.pool_3(pre, outcome, bv(self.index(pre_snap, args[0]), WORD)),
                          "POOL-3"):
                problems["POOL-3"] = "FreeBlock succeeded on a block that was not live"
        try:
            post_snap = pool_snapshot(pool)
        except CheckError as exc:
            problems.update(dict.fromkeys(exc.violated, str(exc)))
            raise_problems(where, problems)
        problems.update(check_invariants(self.machine, mp.INVARIANTS, post_snap,
                                         lambda: to_pool_state(post_snap)))
        problems.update(self.transition(name, expected, pre_snap, post_snap, reply, code))
        if code != SUCCESS and world(pool) != before:
            problems[UNCHANGED] = "a failed call changed the pool, the heap or memory"
        if code == SUCCESS:
            self.track(name, args, reply)
        problems.update(self.check_contents())
        raise_problems(where, problems)
        return reply

    @staticmethod
    def index(snap: PoolSnapshot, pointer: int) -> int:
        """The block a pointer names when it is in the arena on a boundary, else 0."""
        offset = pointer - snap.arena
        if snap.stride and 0 <= offset < snap.stride * snap.max_blocks \
                and offset % snap.stride == 0:
            return offset // snap.stride
        return 0

    def expect(self, name: str, args: tuple[Any, ...], pre_snap: PoolSnapshot,
               pre: PoolState, arena: int) -> mp.PoolStep | ErrorCode:
        """The spec step of the call, or the code the model must refuse it with."""
        if name == "AllocBlock":
            return mp.AllocBlock(pre)
        if name == "Destroy":
            return mp.Destroy(pre)
        if name == "FreeBlock":
            if not is_u32(args[0]):
                return E.ERROR_INVALID_PARAMETER
            return mp.FreeBlock(pre, bv(args[0], WORD), bv(self.index(pre_snap, args[0]), WORD))
        block_size, max_blocks = args
        stride = word_stride(block_size) if is_u32(block_size) and is_u32(max_blocks) else 0
        if stride and stride * max_blocks >= ADDRESS_LIMIT:
            stride = 0
        heap = self.pool.heap
        if stride and not pre_snap.created \
                and stride * max_blocks >= heap.max_address - heap.start_address:
            return E.ERROR_NOT_ENOUGH_MEMORY
        return mp.Create(pre, bv(arena, WORD), bv(stride, WORD),
                         bv(max_blocks if stride else 0, WORD))

    def transition(self, name: str, expected: mp.PoolStep | ErrorCode, pre_snap: PoolSnapshot,
                   post_snap: PoolSnapshot, reply: Any, code: ErrorCode) -> dict[str, str]:
        failure = {"AllocBlock": 0, "FreeBlock": False, "Create": None, "Destroy": False}[name]
        failed = type(reply) is type(failure) and reply == failure
        if isinstance(expected, ErrorCode):
            if code == expected and failed:
                return {}
            return {TRANSITION: f"the spec cannot take these arguments: expected "
                                f"{expected.name} and no change"}
        good_reply = failed if code != SUCCESS else {
            "AllocBlock": type(reply) is int, "FreeBlock": reply is True,
            "Create": reply is self.pool, "Destroy": reply is True}[name]
        claims = [("status", expected.status == int(code)), ("assume", expected.assume),
                  ("reply", z3.BoolVal(good_reply))]
        if name == "AllocBlock":
            claims.append(("result", expected.result == bv(reply % ADDRESS_LIMIT, WORD)
                           if type(reply) is int else z3.BoolVal(False)))
        spec, post = expected.post, to_pool_state(post_snap)
        claims.append(("created", spec.created == post.created))
        if post_snap.created:
            claims += [(field, getattr(spec, field) == getattr(post, field)) for field in (
                "arena", "stride", "max_blocks", "current", "live", "fcount", "nlive")]
            claims += [(f"free[{i}]", spec.free[i] == post.free[i])
                       for i in range(len(post_snap.free))]
        wrong = failing(claims, TRANSITION)
        return {TRANSITION: f"differs from the spec step on {', '.join(wrong)}"} if wrong else {}

    def track(self, name: str, args: tuple[Any, ...], reply: Any) -> None:
        """Record a successful call's effect on the live blocks."""
        if name == "AllocBlock":
            data = self.pool.heap.vmm.ReadVirtualMemory(self.directory, reply,
                                                        self.pool.block_size, False)
            self.contents[reply] = bytearray(data if isinstance(data, bytes) else b"")
        elif name == "FreeBlock":
            self.contents.pop(args[0], None)
            self.freed.append(args[0])
        else:  # Create, Destroy
            self.contents.clear()
            self.freed.clear()

    def write(self, pick: int, offset: int, data: bytes) -> None:
        block = sorted(self.contents)[pick % len(self.contents)]
        known = self.contents[block]
        offset %= len(known)
        data = data[:len(known) - offset]
        if self.pool.heap.vmm.WriteVirtualMemory(self.directory, block + offset, data,
                                                 False) is not True:
            raise_problems(f"write into live block {block:#x}",
                           {CONTENTS: "the write was refused"})
        known[offset:offset + len(data)] = data
        problems = check_invariants(self.machine, mp.INVARIANTS, pool_snapshot(self.pool),
                                    lambda: abstract_pool(self.pool))
        raise_problems(f"write {data!r} at {block + offset:#x}",
                       problems | self.check_contents())

    def check_contents(self) -> dict[str, str]:
        vmm = self.pool.heap.vmm
        for block, known in self.contents.items():
            if vmm.ReadVirtualMemory(self.directory, block, len(known), False) != bytes(known):
                return {CONTENTS: f"live block {block:#x} no longer holds {bytes(known)!r}"}
        return {}

    def bad_pointer(self, how: str, pick: int) -> Any:
        pool = self.pool
        stride = max(pool.block_size, POINTER_SIZE)
        if how == "double" and not self.freed and self.contents:
            self.call("FreeBlock", sorted(self.contents)[pick % len(self.contents)])
        if how == "double" and self.freed:
            return self.freed[pick % len(self.freed)]
        if how == "uncarved" and pool.current_blocks < pool.max_blocks:
            return pool.arena + (pool.current_blocks + pick % 2) * stride
        if how == "misaligned":
            return pool.arena + pick % max(pool.current_blocks, 1) * stride + 1 + pick % (
                stride - 1)
        if how == "hostile":
            return HOSTILE[pick % len(HOSTILE)]
        return (0, pool.arena - POINTER_SIZE, pool.arena + stride * pool.max_blocks,
                pool.heap.start_address, 0xFFFFFFFF)[pick % 5]


# -- the machine ------------------------------------------------------------------

SIZES = st.one_of(st.integers(1, 40), st.integers(1, 40), st.sampled_from((0, *HOSTILE)))
COUNTS = st.one_of(st.integers(1, 8), st.integers(1, 8),
                   st.sampled_from((0, 0x10000, 1 << 31, None, 1 << 32)))


class PoolMachine(CheckedMachine):
    """Create, AllocBlock, FreeBlock and Destroy of one pool, with block writes."""

    h: PoolHarness

    @initialize(block_size=st.integers(1, 40), max_blocks=st.integers(1, 8),
                uncreated=st.integers(0, 5))
    def start(self, block_size: int, max_blocks: int, uncreated: int) -> None:
        type(self).examples += 1
        self.h = PoolHarness(type(self))
        if uncreated != 5:
            self.h.call("Create", block_size, max_blocks)

    @rule(block_size=SIZES, max_blocks=COUNTS, destroy=st.integers(0, 3))
    def create(self, block_size: Any, max_blocks: Any, destroy: int) -> None:
        """Create (refused while created); destroy: 0 Destroy only, 1 Destroy then Create."""
        if destroy < 2:
            self.h.call("Destroy")
        if destroy:
            self.h.call("Create", block_size, max_blocks)

    @rule(count=st.integers(1, 3), picks=st.lists(st.integers(0, 63), max_size=2))
    def alloc_block(self, count: int, picks: list[int]) -> None:
        """AllocBlock count times, then FreeBlock of len(picks) live blocks."""
        for _ in range(count):
            self.h.call("AllocBlock")
        self.free_block(picks)

    @precondition(lambda self: self.h.contents)
    @rule(picks=st.lists(st.integers(0, 63), min_size=1, max_size=3), twice=st.booleans())
    def free_block(self, picks: list[int], twice: bool = False) -> None:
        """FreeBlock of live blocks; twice: the last one again (ERROR_INVALID_BLOCK)."""
        for pick in picks:
            if self.h.contents:
                self.h.call("FreeBlock", sorted(self.h.contents)[pick % len(self.h.contents)])
        if twice and self.h.freed:
            self.h.call("FreeBlock", self.h.freed[-1])

    @rule(how=st.sampled_from(("double", "uncarved", "foreign", "misaligned", "hostile")),
          pick=st.integers(0, 63))
    def free_invalid(self, how: str, pick: int) -> None:
        self.h.call("FreeBlock", self.h.bad_pointer(how, pick))

    @precondition(lambda self: self.h.contents)
    @rule(pick=st.integers(0, 63), offset=st.integers(0, 40),
          data=st.binary(min_size=1, max_size=8))
    def write(self, pick: int, offset: int, data: bytes) -> None:
        self.h.write(pick, offset, data)


# -- broken models and the runner -----------------------------------------------

_FREE, _ALLOC = MemoryPool.FreeBlock, MemoryPool.AllocBlock


def _free_accepts_double_free(self: MemoryPool, block: int) -> bool:
    """FreeBlock without the liveness check: a free block is pushed again."""
    index = self._index(block) if is_u32(block) and self.created else -1
    if not 0 <= index < self.current_blocks or self.live[index]:
        return _FREE(self, block)
    assert self.heap.directory is not None
    self.heap.vmm.WriteVirtualMemory(self.heap.directory, block,
                                     self.free_list.to_bytes(POINTER_SIZE, "little"), False)
    self.free_list = block
    return self._ok(True)


def _alloc_past_max(self: MemoryPool) -> int:
    """AllocBlock that carves past max_blocks when the free list is empty."""
    if self.created and not self.free_list and self.current_blocks >= self.max_blocks:
        self.live.append(1)
        self.current_blocks += 1
        return self._ok(self.arena + (self.current_blocks - 1) * self.block_size)
    return _ALLOC(self)


def _free_forgets_push(self: MemoryPool, block: int) -> bool:
    """FreeBlock that clears the live flag but leaves the list head as it was."""
    head = self.free_list
    freed = _FREE(self, block)
    if freed:
        self.free_list = head
    return freed


POOL_MODEL_VARIANTS = (
    ModelVariant("free_accepts_double_free", ("POOL-3", "POOL-1"),
                {"MemoryPool.FreeBlock": _free_accepts_double_free}),
    ModelVariant("alloc_past_max", ("POOL-2",), {"MemoryPool.AllocBlock": _alloc_past_max}),
    ModelVariant("free_forgets_push", ("POOL-1",), {"MemoryPool.FreeBlock": _free_forgets_push}),
)


def run_pool_machine(profile: str, patches: Mapping[str, object] | None = None, *,
                     max_examples: int | None = None, shrink_seconds: float | None = None
                     ) -> Verdict:
    """Run the pool machine; ``patches`` maps "MemoryPool.method" to a replacement."""
    return run_machine(PoolMachine, profile, BUDGETS, patches, {"MemoryPool": MemoryPool},
                       max_examples=max_examples, shrink_seconds=shrink_seconds)


def obligations() -> Iterator[Obligation]:
    yield machine_obligation("memory_pool.machine.refinement", "memory_pool", run_pool_machine)
