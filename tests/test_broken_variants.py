"""Teeth: every invariant has a broken variant that the check catches by name."""

from __future__ import annotations

import pytest

from proofs.broken_variants import VARIANTS, BrokenVariant, catch, caught
from spec import (
    dos_memory,
    ems_os,
    himem,
    kernel_heap,
    memory_pool,
    memory_subsystem,
    shared_memory,
    user_space,
)
from spec.catalogue import INVARIANTS


def test_every_invariant_has_a_broken_variant() -> None:
    covered = {variant.invariant for variant in VARIANTS}
    every = ({inv.id for inv in INVARIANTS} | {"VMM-3", "POOL-3"} | set(kernel_heap.INVARIANTS)
             | set(memory_pool.INVARIANTS) | set(memory_subsystem.INVARIANTS)
             | set(user_space.INVARIANTS) | set(user_space.STEP_CLAIMS)
             | set(dos_memory.INVARIANTS) | set(dos_memory.STEP_CLAIMS)
             | set(himem.INVARIANTS) | set(himem.STEP_CLAIMS)
             | set(ems_os.INVARIANTS) | set(ems_os.STEP_CLAIMS)
             | set(shared_memory.INVARIANTS) | set(shared_memory.STEP_CLAIMS))
    assert every <= covered


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: f"{v.invariant}-{v.name}")
def test_broken_variant_is_caught_by_name(variant: BrokenVariant) -> None:
    verdict = catch(variant)
    assert caught(variant, verdict), (verdict.kind, verdict.summary, verdict.detail)
