"""MemoryPool (seed section 3): invariants POOL-1..3 and the pool's transitions.

The model's rules are in model/memory_pool.py. The spec names a block by its
index b in the arena (its address is arena + b * stride); FreeBlock's
pointer is decoded into that index by the caller of the spec, and the
decoding is the step's ``assume``. AllocBlock may hand out the free list's
head or carve the next block only when the list is empty, as the model does.
"""

from __future__ import annotations

import z3

from spec.abi import ErrorCode
from spec.state import WORD, PoolState, Ref, bv, ite_pool
from spec.step import Transition, guarded, status

E = ErrorCode
PoolStep = Transition[PoolState]


def on_list(s: PoolState, b: Ref) -> Ref:
    return z3.And(z3.ULT(s.fpos[b], s.fcount), s.free[s.fpos[b]] == b)


# -- invariants ----------------------------------------------------------------

def pool_1(s: PoolState) -> Ref:
    """POOL-1: every carved block is exactly one of live or on the free list;
    the free list holds carved, non-live blocks, each once; nothing beyond
    the carved blocks is live."""
    b, i = z3.Consts("b i", WORD)
    return z3.Implies(s.created, z3.And(
        z3.ForAll([b], z3.Implies(z3.ULT(b, s.current), s.live[b] != on_list(s, b))),
        z3.ForAll([b], z3.Implies(z3.UGE(b, s.current), z3.Not(s.live[b]))),
        z3.ForAll([i], z3.Implies(z3.ULT(i, s.fcount), z3.And(
            z3.ULT(s.free[i], s.current), z3.Not(s.live[s.free[i]]),
            s.fpos[s.free[i]] == i)))))


def pool_2(s: PoolState) -> Ref:
    """POOL-2: current_blocks <= max_blocks, and the carved blocks are the live
    ones plus the free list: the live count is the number of live blocks,
    counted by a ghost bijection with [0, nlive) (as FRM-2 counts frames)."""
    b, i = z3.Consts("b i", WORD)
    return z3.Implies(s.created, z3.And(
        z3.ULE(s.current, s.max_blocks), s.nlive + s.fcount == s.current,
        z3.ULE(s.nlive, s.current),
        z3.ForAll([b], z3.Implies(s.live[b], z3.And(z3.ULT(s.lrank[b], s.nlive),
                                                    s.lunrank[s.lrank[b]] == b))),
        z3.ForAll([i], z3.Implies(z3.ULT(i, s.nlive), z3.And(
            s.live[s.lunrank[i]], s.lrank[s.lunrank[i]] == i)))))


INVARIANTS = {"POOL-1": pool_1, "POOL-2": pool_2}


def pool_3(pre: PoolState, result: PoolStep, block: Ref) -> Ref:
    """POOL-3: a FreeBlock that succeeds frees a live block of this pool's
    carved blocks: a double free or a foreign pointer is refused."""
    return z3.Implies(result.ok, z3.And(z3.ULT(block, pre.current), pre.live[block]))


# -- operations ----------------------------------------------------------------

def pool_step(pre: PoolState, code: Ref, post: PoolState, result: Ref | None = None,
              failure: Ref | None = None, assume: Ref | None = None) -> PoolStep:
    return guarded(pre, code, post, ite_pool, result, failure, assume)


def address(s: PoolState, b: Ref) -> Ref:
    return s.arena + b * s.stride


def AllocBlock(s: PoolState) -> PoolStep:
    """Pop the free list's head, or carve the next block when the list is empty."""
    empty = s.fcount == 0
    b = z3.If(empty, s.current, s.free[s.fcount - 1])
    code = status((z3.Not(s.created), E.ERROR_NOT_READY),
                  (z3.And(empty, s.current == s.max_blocks), E.ERROR_NOT_ENOUGH_MEMORY))
    post = s.but(live=z3.Store(s.live, b, True),
                 current=z3.If(empty, s.current + 1, s.current),
                 fcount=z3.If(empty, s.fcount, s.fcount - 1),
                 nlive=s.nlive + 1, lrank=z3.Store(s.lrank, b, s.nlive),
                 lunrank=z3.Store(s.lunrank, s.nlive, b))
    return pool_step(s, code, post, address(s, b), bv(0, WORD))


def FreeBlock(s: PoolState, block_addr: Ref, block: Ref) -> PoolStep:
    """Push a live block; ``block`` is the index the address decodes to (assumed:
    block_addr = arena + block * stride with block < max_blocks, when it does)."""
    offset = block_addr - s.arena
    in_arena = z3.And(z3.UGE(block_addr, s.arena),
                      z3.ULT(offset, s.stride * s.max_blocks),
                      z3.URem(offset, s.stride) == 0)
    code = status((z3.Not(s.created), E.ERROR_NOT_READY),
                  (z3.Not(in_arena), E.ERROR_INVALID_ADDRESS),
                  (z3.Not(z3.And(z3.ULT(block, s.current), s.live[block])),
                   E.ERROR_INVALID_BLOCK))
    decoded = z3.Implies(in_arena, z3.And(z3.UDiv(offset, s.stride) == block,
                                          z3.ULT(block, s.max_blocks)))
    last = s.lunrank[s.nlive - 1]
    post = s.but(live=z3.Store(s.live, block, False),
                 free=z3.Store(s.free, s.fcount, block),
                 fpos=z3.Store(s.fpos, block, s.fcount), fcount=s.fcount + 1,
                 nlive=s.nlive - 1, lrank=z3.Store(s.lrank, last, s.lrank[block]),
                 lunrank=z3.Store(s.lunrank, s.lrank[block], last))
    return pool_step(s, code, post, z3.BoolVal(True), z3.BoolVal(False), assume=decoded)


def Create(s: PoolState, arena: Ref, stride: Ref, max_blocks: Ref) -> PoolStep:
    """An empty pool over an arena of stride * max_blocks bytes (below 2**32).

    ``arena`` is what the heap's Alloc returned: 0 (NULL) when the heap
    refused, and the pool then fails with ERROR_NOT_ENOUGH_MEMORY (the model
    passes on the heap's own code, ERROR_NOT_ENOUGH_MEMORY or, for a readonly
    heap, ERROR_ACCESS_DENIED)."""
    wide = z3.ZeroExt(32, stride) * z3.ZeroExt(32, max_blocks)
    code = status((s.created, E.ERROR_ALREADY_INITIALIZED),
                  (z3.Or(stride == 0, max_blocks == 0, z3.UGE(wide, 1 << 32)),
                   E.ERROR_INVALID_PARAMETER),
                  (arena == 0, E.ERROR_NOT_ENOUGH_MEMORY))
    post = s.but(created=z3.BoolVal(True), arena=arena, stride=stride,
                 max_blocks=max_blocks, current=bv(0, WORD), fcount=bv(0, WORD),
                 nlive=bv(0, WORD), live=z3.K(WORD, z3.BoolVal(False)))
    return pool_step(s, code, post)


def Destroy(s: PoolState) -> PoolStep:
    code = status((z3.Not(s.created), E.ERROR_NOT_READY))
    return pool_step(s, code, s.but(created=z3.BoolVal(False)))
