"""Inductive obligations for the managers with a state of their own (the heap,
the pool, the subsystem): one per public operation x claim.

The same scheme as proofs/inductive/paging.py, which serves the physical and
virtual memory state: Inv(pre) and a successful step imply each invariant
on the successor; a public call made of steps (``parts``) is proved through
each of its steps; a *step claim* (POOL-3) is a property of one operation's
transition rather than of states.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import z3

from proofs.inductive import vacuity
from proofs.inductive.paging import (
    REACHABLE_FIRST,
    SEARCH_TIMEOUT,
    conjuncts,
    decide,
    prove_steps,
)
from proofs.obligation import PROFILES, Explained, Kind, Obligation, Verdict
from spec.catalogue import Operation
from spec.state import Ref
from spec.step import Transition

#: A step claim: (pre, the step, its arguments) -> what must hold.
StepClaim = Callable[[Any, Transition[Any], Mapping[str, Ref]], Ref]


@dataclass(frozen=True)
class Layer:
    manager: str
    fresh: Callable[[str], Any]
    invariants: Mapping[str, Callable[[Any], Ref]]
    operations: tuple[Operation, ...]
    #: claim -> the invariants its proof leans on (tried first as the only premises)
    support: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: (pre, premises, terms) -> ground instances of premises at terms
    ground: Callable[[Any, Ref, list[Ref]], list[Ref]] | None = None
    #: claim id -> (operation name, the claim)
    step_claims: Mapping[str, tuple[str, StepClaim]] = field(default_factory=dict)
    #: obligations measured too slow for the quick profile
    full_only: frozenset[str] = frozenset()
    #: (model, pre) -> the pre-state around the counterexample, for a reader
    show: Callable[[z3.ModelRef, Any], str] | None = None
    #: (model, pre) -> the pre-state as data (proofs/obligation.py's Explained)
    concrete: Callable[[z3.ModelRef, Any], dict[str, Any]] | None = None
    #: concrete states the model reaches, (name, state): when a proof is
    #: undecided, a counterexample is searched from them with symbolic arguments
    reachable: Callable[[], list[tuple[str, Any]]] | None = None

    def operation(self, name: str) -> Operation:
        return next(op for op in self.operations if op.name == name)

    def vacuity_family(self) -> vacuity.Family:
        """What the non-vacuity check (proofs/inductive/vacuity.py) needs of the layer."""
        return vacuity.Family(self.manager, self.invariants, self.fresh,
                              {op.name: op for op in self.operations}, self.reachable or tuple)


def layer_obligations(layer: Layer) -> Iterator[Obligation]:
    """One obligation per public operation x claim of the layer (not a discovered
    module-level ``obligations()``: the managers' proofs modules call it)."""
    for op in layer.operations:
        if op.internal:
            continue
        claims = [*layer.invariants,
                  *(claim for claim, (name, _) in layer.step_claims.items() if name == op.name)]
        for claim in claims:
            ident = f"{layer.manager}.{op.name}.{claim}"
            profiles = frozenset({"full"} if ident in layer.full_only else PROFILES)
            yield Obligation(ident, layer.manager, op.name, claim,
                             functools.partial(_run, layer, op.name, claim), profiles,
                             depends_on=(__name__,),
                             shares=frozenset(f"{layer.manager}.{step}.{claim}"
                                              for step in op.parts or (op.name,)))
    public = [op for op in layer.operations if not op.internal]
    yield from vacuity.operation_obligations(layer.vacuity_family(), layer.manager, public)


def _run(layer: Layer, operation: str, claim: str, profile: str) -> Verdict:
    return prove(layer, layer.operation(operation), claim, profile)


def prove(layer: Layer, op: Operation, claim: str, profile: str) -> Verdict:
    """Decide one step (or every step of a public call) x one claim."""
    if op.parts:
        return prove_steps(op.parts, lambda part: prove(layer, layer.operation(part), claim,
                                                       profile))
    pre = layer.fresh("pre")
    args = {name: z3.Const(f"{op.name}.{name}", sort) for name, sort in op.params}
    result = op.transition(pre, **args)
    invariants = layer.invariants
    hypotheses = [z3.And([holds(pre) for holds in invariants.values()]), result.assume,
                  result.ok]
    if claim in layer.step_claims:
        goal = layer.step_claims[claim][1](pre, result, args)
    else:
        goal = invariants[claim](result.changed)
    leaned_on = [invariants[name](pre) for name in layer.support.get(claim, ())]
    support = [*leaned_on, *hypotheses[1:]] if leaned_on else None
    terms = [*args.values()]
    ground = layer.ground
    instances = None if ground is None else (
        lambda witness: ground(pre, z3.And(leaned_on or hypotheses[:1]), [*witness, *terms]))
    if (profile == REACHABLE_FIRST and layer.reachable is not None
            and (found := search_reachable(layer, op, claim))):
        return found
    verdict = decide(hypotheses, goal, claim, profile,
                     lambda model: describe(model, op, args, layer, pre), support, instances,
                     ground_first=ground is not None, name=f"{layer.manager}.{op.name}.{claim}")
    if verdict.kind is Kind.UNKNOWN and layer.reachable is not None and profile != REACHABLE_FIRST:
        return search_reachable(layer, op, claim) or verdict
    return verdict


def search_reachable(layer: Layer, op: Operation, claim: str) -> Verdict | None:
    """A counterexample from a state the model reached, with symbolic arguments:
    the state is concrete, so the query is decided where the inductive one
    (over every state satisfying the invariants) was not."""
    assert layer.reachable is not None
    for name, pre in layer.reachable():
        args = {arg: z3.Const(f"{op.name}.{arg}", sort) for arg, sort in op.params}
        result = op.transition(pre, **args)
        if claim in layer.step_claims:
            goal = layer.step_claims[claim][1](pre, result, args)
        else:
            goal = layer.invariants[claim](result.changed)
        for part in conjuncts(goal):
            solver = z3.Solver()
            solver.set("timeout", SEARCH_TIMEOUT)
            solver.add(result.assume, result.ok, z3.Not(part))
            if solver.check() == z3.sat:
                detail, state = describe(solver.model(), op, args, layer, pre)
                return Verdict(Kind.COUNTEREXAMPLE, f"counterexample to {claim} (reachable)",
                               f"from the reachable state {name}:\n{detail}", (claim,),
                               counterexample=state)
    return None


def describe(model: z3.ModelRef, op: Operation, args: Mapping[str, Ref], layer: Layer,
             pre: Any) -> Explained:
    """The counterexample's call, with its arguments' values, and the pre-state
    (as text, and as data when the layer says how)."""
    values = {name: str(model.eval(term, model_completion=True))
              for name, term in args.items() if not z3.is_array(term)}
    shown = ", ".join(f"{name}={value}" for name, value in values.items())
    state = "" if layer.show is None else "\n" + layer.show(model, pre)
    data = {"step": {"op": op.name, "args": values},
            **({} if layer.concrete is None else layer.concrete(model, pre))}
    return Explained(f"step: {op.name}({shown}){state}", data)
