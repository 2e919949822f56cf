"""Obligations of the KernelHeap: every public call x HEAP-1..6, unbounded.

Each public call is proved through its steps (spec/kernel_heap.py): Alloc
through Take, CarveHead, CarveTail and the expansion steps; Free through
AbsorbRight, AbsorbLeft, Release and the contraction steps. z3 is helped by
ground instances of the invariants at the addresses and index positions a
step touches (tried first: a ground query is decided in milliseconds when the
instances suffice), then by the invariants each claim leans on, then by all.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import z3

from proofs.inductive.layered import Layer, layer_obligations
from proofs.inductive.paging import conjuncts, instances
from proofs.inductive.reachable_layers import heap_states
from proofs.obligation import Obligation
from spec import kernel_heap as kh
from spec.abi import MIN_BLOCK
from spec.catalogue import HEAP_OPERATIONS
from spec.state import ADDR, HeapState, Ref, symbolic_heap


def ground(pre: HeapState, invariants: Ref, terms: list[Ref]) -> list[Ref]:
    """Instances of the invariants at the addresses and positions a step touches.

    One-variable conjuncts are instantiated at the terms, their neighbours
    (t - 1, t + 1), the blocks around them, the heap's last byte and last
    block, and the index positions of those blocks and the entries before;
    two-variable ones (tiling, disjointness) at the terms, their neighbours,
    the last byte and the last block only, which keeps the ground query small."""
    base = [t for t in terms if t.sort() == ADDR]
    tail = pre.owner_of[pre.end - 1]
    near = [*base, *(t - 1 for t in base), *(t + 1 for t in base), pre.end - 1, tail]
    blocks = [*base, *(pre.owner_of[t - 1] for t in base), *(t + pre.size[t] for t in base),
              tail]
    positions = [p for b in blocks for p in (pre.pos[b], pre.pos[b] - 1)]
    wide = [*near, *blocks, *positions, *(pre.index[t] for t in base), pre.end,
            pre.data_start]
    out: list[Ref] = []
    for part in conjuncts(invariants):
        guard = part.arg(0) if z3.is_app_of(part, z3.Z3_OP_IMPLIES) else z3.BoolVal(True)
        body = part.arg(1) if z3.is_app_of(part, z3.Z3_OP_IMPLIES) else part
        if not (z3.is_quantifier(body) and body.is_forall()):
            continue
        pool = wide if body.num_vars() == 1 else near
        out += [z3.Implies(guard, inst) for inst in instances(body, {ADDR: pool})]
    return out


def show(model: z3.ModelRef, pre: HeapState) -> str:
    def value(term: Ref) -> str:
        return str(model.eval(term, model_completion=True))

    return (f"heap [{value(pre.start)}, {value(pre.end)}) max {value(pre.max)} data_start "
            f"{value(pre.data_start)}; index count {value(pre.count)} of "
            f"{value(pre.capacity)}")


#: Blocks and index entries a counterexample's heap lists at most (a model may
#: give a heap millions of bytes long; the report needs the ones around the step).
SHOWN = 64


def concrete(model: z3.ModelRef, pre: HeapState) -> dict[str, Any]:
    """The pre-state as data: its blocks from data_start, each header's size
    followed (as the oracle's HeapWalk lists them: a size below MIN_BLOCK or
    past the end is the last block), and its hole index as (size, header)."""
    def value(term: Ref) -> int:
        return int(model.eval(term, model_completion=True).as_long())

    def flag(term: Ref) -> bool:
        return bool(z3.is_true(model.eval(term, model_completion=True)))

    end = value(pre.end)
    blocks: list[dict[str, Any]] = []
    header = value(pre.data_start)
    while header < end and len(blocks) < SHOWN:
        h = z3.IntVal(header)
        size = value(pre.size[h])
        blocks.append({"header": header, "magic": value(pre.magic[h]), "hole": flag(pre.hole[h]),
                       "size": size, "footer_magic": value(pre.fmagic[h]),
                       "footer_header": value(pre.back[h])})
        if size < MIN_BLOCK:
            break
        header += size
    holes: list[list[int]] = []
    for position in range(min(max(value(pre.count), 0), SHOWN)):
        entry = value(pre.index[z3.IntVal(position)])
        holes.append([value(pre.size[z3.IntVal(entry)]), entry])
    return {"heap": {"created": flag(pre.created), "start": value(pre.start), "end": end,
                     "max": value(pre.max), "data_start": value(pre.data_start),
                     "index_size": value(pre.capacity), "blocks": blocks, "holes": holes}}


#: Measured at 1 s or more in the quick budget on the 2-core machine
#: (2026-11-29, loaded): full profile only, so the quick profile stays CI-sized.
FULL_PROFILE_ONLY = frozenset(f"kernel_heap.{name}" for name in (
    "Alloc.HEAP-2", "Alloc.HEAP-3", "Alloc.HEAP-4", "Alloc.HEAP-5", "Alloc.HEAP-6",
    "Free.HEAP-2", "Free.HEAP-3", "Free.HEAP-4", "Free.HEAP-5", "Free.HEAP-6",
    "Expand.HEAP-2", "Expand.HEAP-5", "Contract.HEAP-2", "Contract.HEAP-5",
    "FindSmallestHole.HEAP-2", "FindSmallestHole.HEAP-5", "Create.HEAP-2", "Create.HEAP-5",
    # 1-2 s each: moved to keep the whole quick profile near a minute
    "Expand.HEAP-3", "Expand.HEAP-6", "Contract.HEAP-3", "Create.HEAP-3", "Create.HEAP-6",
    # 9.7 s in an idle quick run (2026-11-29)
    "FindSmallestHole.HEAP-3"))

LAYER = Layer(
    "kernel_heap", symbolic_heap, kh.INVARIANTS, HEAP_OPERATIONS,
    support={"HEAP-1": ("HEAP-1", "HEAP-3"), "HEAP-2": ("HEAP-2", "HEAP-5", "HEAP-6"),
             "HEAP-3": ("HEAP-2", "HEAP-3"), "HEAP-4": ("HEAP-2", "HEAP-3", "HEAP-4"),
             "HEAP-5": ("HEAP-2", "HEAP-5"), "HEAP-6": ("HEAP-2", "HEAP-6")},
    ground=ground, full_only=FULL_PROFILE_ONLY, show=show, concrete=concrete,
    reachable=heap_states)


def obligations() -> Iterator[Obligation]:
    return layer_obligations(LAYER)
