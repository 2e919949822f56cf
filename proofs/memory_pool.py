"""Obligations of the MemoryPool: every operation x POOL-1, POOL-2, and the
step claim POOL-3 (a FreeBlock that succeeds frees a live block of the pool:
double frees and foreign pointers are refused)."""

from __future__ import annotations

from collections.abc import Iterator

import z3

from proofs.inductive.layered import Layer, layer_obligations
from proofs.inductive.reachable_layers import pool_states
from proofs.obligation import Obligation
from spec import memory_pool as mp
from spec.catalogue import POOL_OPERATIONS
from spec.state import PoolState, Ref, symbolic_pool


def show(model: z3.ModelRef, pre: PoolState) -> str:
    def value(term: Ref) -> str:
        return str(model.eval(term, model_completion=True))

    return (f"pool: {value(pre.current)} of {value(pre.max_blocks)} blocks carved, "
            f"{value(pre.nlive)} live, {value(pre.fcount)} on the free list")


LAYER = Layer(
    "memory_pool", symbolic_pool, mp.INVARIANTS, POOL_OPERATIONS,
    step_claims={"POOL-3": ("FreeBlock",
                            lambda pre, result, args: mp.pool_3(pre, result, args["block"]))},
    # 0.9-1.1 s in an idle quick run (2026-11-29): the full profile proves them
    full_only=frozenset({"memory_pool.FreeBlock.POOL-1", "memory_pool.FreeBlock.POOL-2"}),
    show=show, reachable=pool_states)


def obligations() -> Iterator[Obligation]:
    return layer_obligations(LAYER)
