"""Concrete states of the heap, the pool and the subsystem for counterexample
search (proofs.inductive.layered.search_reachable): the heap's come from the model
itself; the pool's and the subsystem's are built by running their spec steps
with concrete arguments from the empty state, so each is reachable by
construction."""

from __future__ import annotations

import functools

import z3

from proofs.abstractions.kernel_heap import abstract_heap, small_heap
from spec import memory_pool as mp
from spec import memory_subsystem as ms
from spec.abi import MIN_BLOCK
from spec.state import (
    WORD,
    HeapState,
    PoolState,
    SystemState,
    symbolic_pool,
    symbolic_system,
)


@functools.cache
def heap_states() -> list[tuple[str, HeapState]]:
    """A fresh heap; one with holes of several sizes around an allocated block
    whose neighbours are allocated, and a page-aligned block; one filled to its
    end (the last block allocated); the same expanded by two pages (a trailing
    hole that starts on a page boundary, above the floor), and filled again."""
    heap = small_heap(0x3000, 0x10000, 8, 0x2000)
    states = [("fresh heap", abstract_heap(heap))]
    blocks = [heap.Alloc(size) for size in (40, 100, 40, 300, 64, 52)]
    heap.Alloc(16, True)
    heap.Free(blocks[0])
    heap.Free(blocks[4])
    states.append(("heap with holes", abstract_heap(heap)))
    walk = heap.walk() or []
    heap.Alloc(walk[-1].size - MIN_BLOCK)
    states.append(("heap filled to its end", abstract_heap(heap)))
    heap.Expand(heap.end_address - heap.start_address + 0x2000)
    states.append(("heap expanded past a live block", abstract_heap(heap)))
    walk = heap.walk() or []
    heap.Alloc(walk[-1].size - MIN_BLOCK)
    states.append(("expanded heap filled to its end", abstract_heap(heap)))
    return states


def _w(value: int) -> z3.BitVecNumRef:
    return z3.BitVecVal(value, WORD)


@functools.cache
def pool_states() -> list[tuple[str, PoolState]]:
    empty = symbolic_pool("empty").but(created=z3.BoolVal(False))
    created = mp.Create(empty, _w(0xC0001000), _w(16), _w(4)).post
    one = mp.AllocBlock(created).post
    two = mp.AllocBlock(one).post
    freed = mp.FreeBlock(two, _w(0xC0001000), _w(0)).post
    small = mp.Create(empty, _w(0xC0002000), _w(16), _w(1)).post
    full = mp.AllocBlock(small).post
    return [("pool with one live and one free block", freed), ("pool with two live", two),
            ("pool carved to its max of one block", full)]


@functools.cache
def system_states() -> list[tuple[str, SystemState]]:
    empty = symbolic_system("empty").but(booted=z3.BoolVal(False))
    booted = ms.InitializeMemorySubsystem(empty, z3.IntVal(300), z3.IntVal(260)).post
    taken = ms.TakeFrame(booted, z3.IntVal(270), z3.IntVal(5)).post
    return [("booted, one stack frame", taken), ("booted", booted)]

