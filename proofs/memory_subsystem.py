"""Obligations of the MemorySubsystem and the unified interface: every call x
SYS-1..3, through the frame steps each is made of (spec/memory_subsystem.py)."""

from __future__ import annotations

from collections.abc import Iterator

import z3

from proofs.inductive.layered import Layer, layer_obligations
from proofs.inductive.reachable_layers import system_states
from proofs.obligation import Obligation
from spec import memory_subsystem as ms
from spec.catalogue import SYSTEM_OPERATIONS
from spec.state import Ref, SystemState, symbolic_system


def show(model: z3.ModelRef, pre: SystemState) -> str:
    def value(term: Ref) -> str:
        return str(model.eval(term, model_completion=True))

    return (f"frames {value(pre.nframes)}: used {value(pre.used_count)}, free "
            f"{value(pre.free_count)}, total {value(pre.total)}")


LAYER = Layer("memory_subsystem", symbolic_system, ms.INVARIANTS, SYSTEM_OPERATIONS,
              show=show, reachable=system_states)


def obligations() -> Iterator[Obligation]:
    return layer_obligations(LAYER)
