"""proofs/machines/memory_pool.py: the abstraction, the per-step checks, and the machine,
which passes on the model and catches each broken model by name."""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest
import z3

from model.memory_pool import MemoryPool
from proofs.machines.checks import CheckError
from proofs.machines.memory_pool import (
    POOL_MODEL_VARIANTS,
    PoolHarness,
    PoolSnapshot,
    abstract_pool,
    obligations,
    pool_snapshot,
    run_pool_machine,
    to_pool_state,
)
from proofs.machines.runner import CheckedMachine, ModelVariant
from proofs.obligation import Kind
from spec import memory_pool as mp
from spec.abi import ErrorCode

E = ErrorCode


def error(obj: Any) -> ErrorCode:
    """last_error, read through a call (no narrowing between asserts)."""
    code: ErrorCode = obj.last_error
    return code


def value(term: Any) -> Any:
    simple = z3.simplify(term)
    return simple.as_long() if z3.is_bv_value(simple) else z3.is_true(simple)


def harness() -> PoolHarness:
    machine: type[CheckedMachine] = type("M", (CheckedMachine,), {"cache": {}})
    return PoolHarness(machine)


def test_abstraction_reads_the_free_list_as_a_stack() -> None:
    h = harness()
    pool = h.pool
    assert h.call("Create", 10, 4) is pool
    blocks = [h.call("AllocBlock") for _ in range(3)]
    assert blocks == [pool.arena, pool.arena + 12, pool.arena + 24]
    assert h.call("FreeBlock", blocks[0]) is True
    assert h.call("FreeBlock", blocks[2]) is True
    snap = pool_snapshot(pool)
    assert snap == PoolSnapshot(True, pool.arena, 12, 4, 3, (1,), (2, 0))
    s = abstract_pool(pool)
    assert [value(s.free[1]), value(s.free[0])] == [2, 0]  # free[fcount - 1] is the head
    assert [value(s.fpos[2]), value(s.fpos[0])] == [1, 0]
    assert [value(s.live[b]) for b in range(4)] == [False, True, False, False]
    assert (value(s.fcount), value(s.nlive), value(s.lunrank[0]), value(s.lrank[1])) == (2, 1, 1, 0)
    for holds in mp.INVARIANTS.values():
        assert value(holds(s)) or z3.Solver().check(z3.Not(holds(s))) == z3.unsat
    # the spec's AllocBlock pops block 2, as the model does
    assert value(mp.AllocBlock(s).result) == blocks[2]


def test_a_corrupt_free_list_is_pool_1() -> None:
    h = harness()
    h.call("Create", 8, 4)
    block = h.call("AllocBlock")
    h.call("FreeBlock", block)
    h.pool.heap.vmm.WriteVirtualMemory(h.directory, block, block.to_bytes(4, "little"), False)
    with pytest.raises(CheckError) as caught:
        pool_snapshot(h.pool)
    assert caught.value.violated == ("POOL-1",)


def test_every_call_is_checked_against_the_spec() -> None:
    h = harness()
    pool = h.pool
    assert h.call("AllocBlock") == 0 and error(pool) == E.ERROR_NOT_READY
    assert h.call("FreeBlock", None) is False and error(pool) == E.ERROR_INVALID_PARAMETER
    assert h.call("Create", 0x28, 0x10000) is None  # the arena exceeds the heap
    assert error(pool) == E.ERROR_NOT_ENOUGH_MEMORY
    assert h.call("Create", 8, 1 << 31) is None and error(pool) == E.ERROR_INVALID_PARAMETER
    assert h.call("Create", "4", 2) is None and error(pool) == E.ERROR_INVALID_PARAMETER
    assert h.call("Create", 5, 2) is pool and pool.block_size == 8
    assert h.call("Create", 5, 2) is None and error(pool) == E.ERROR_ALREADY_INITIALIZED
    a, b = h.call("AllocBlock"), h.call("AllocBlock")
    assert h.call("AllocBlock") == 0 and error(pool) == E.ERROR_NOT_ENOUGH_MEMORY
    h.write(0, 2, b"xyz")
    assert h.contents[a][2:5] == b"xyz"
    assert h.call("FreeBlock", a + 1) is False and error(pool) == E.ERROR_INVALID_ADDRESS
    assert h.call("FreeBlock", b) is True
    assert h.call("FreeBlock", b) is False and error(pool) == E.ERROR_INVALID_BLOCK
    assert h.call("AllocBlock") == b  # the head of the free list
    assert h.call("Destroy") is True
    assert h.call("Destroy") is False and error(pool) == E.ERROR_NOT_READY
    assert h.machine.outcomes["FreeBlock INVALID_BLOCK"] == 1


_FREE = MemoryPool.FreeBlock


def _carve_then_refuse(self: MemoryPool) -> int:
    """Broken: carves a block, then reports exhaustion."""
    self.current_blocks += 1
    self.live.append(0)
    return self._fail(E.ERROR_NOT_ENOUGH_MEMORY, 0)


def _push_onto_neighbour(self: MemoryPool, block: int) -> bool:
    """Broken: also scribbles on the following block."""
    freed = _FREE(self, block)
    if freed:
        assert self.heap.directory is not None
        self.heap.vmm.WriteVirtualMemory(self.heap.directory, block + self.block_size,
                                         b"\xee", False)
    return freed


def test_a_failed_call_that_changes_state_is_caught() -> None:
    h = harness()
    h.call("Create", 8, 1)
    h.call("AllocBlock")
    with mock.patch.object(MemoryPool, "AllocBlock", _carve_then_refuse), \
            pytest.raises(CheckError) as failure:
        h.call("AllocBlock")
    assert "unchanged" in failure.value.violated


def test_damaged_contents_are_caught() -> None:
    h = harness()
    h.call("Create", 8, 4)
    first, second = h.call("AllocBlock"), h.call("AllocBlock")
    h.write(1, 0, b"\x11\x22")
    assert bytes(h.contents[second][:2]) == b"\x11\x22"
    with mock.patch.object(MemoryPool, "FreeBlock", _push_onto_neighbour), \
            pytest.raises(CheckError) as failure:
        h.call("FreeBlock", first)
    assert failure.value.violated == ("contents",)


def test_to_pool_state_of_an_uncreated_pool() -> None:
    s = to_pool_state(PoolSnapshot(False, 0, 0, 0, 0, (), ()))
    assert not value(s.created) and value(mp.Destroy(s).status) == E.ERROR_NOT_READY


def test_the_model_refines_the_spec() -> None:
    verdict = run_pool_machine("quick", max_examples=10)
    assert verdict.kind == Kind.NO_COUNTEREXAMPLE, verdict.detail
    assert verdict.summary == f"no counterexample in {verdict.examples} examples"
    assert verdict.examples is not None and verdict.examples >= 10


@pytest.mark.parametrize("variant", POOL_MODEL_VARIANTS, ids=lambda v: v.name)
def test_broken_models_are_caught_by_name(variant: ModelVariant) -> None:
    verdict = run_pool_machine("teeth", variant.patches, shrink_seconds=3)
    assert verdict.kind == Kind.COUNTEREXAMPLE, verdict.summary
    assert set(variant.catches) & set(verdict.violated), verdict.detail
    assert "state = PoolMachine()" in verdict.detail


def test_patches_are_undone_and_profiles_checked() -> None:
    original = MemoryPool.FreeBlock
    run_pool_machine("quick", POOL_MODEL_VARIANTS[0].patches, max_examples=1)
    assert MemoryPool.FreeBlock is original
    with pytest.raises(ValueError):
        run_pool_machine("slow")


def test_obligation() -> None:
    (obligation,) = obligations()
    assert (obligation.id, obligation.manager, obligation.operation, obligation.invariant) == (
        "memory_pool.machine.refinement", "memory_pool", "all", "refinement")
