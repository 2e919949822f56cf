"""Non-vacuity: every inductive step's hypotheses have a model.

An inductive obligation proves ``Inv(pre) and guard and ok => claim(post)``.
If the hypotheses (the invariants on the pre-state, the step's guard
``assume`` and its success condition ``ok``) are unsatisfiable, every claim
about the step is "proved" and nothing is: a contradictory guard, or an
invariant no state satisfies, would pass the whole check unseen. So for every
step of every public operation one obligation, ``<manager>.<Op>.NON-VACUOUS``,
shows a model of the hypotheses:

* a state the model reached through its API (the reachable states of
  ``proofs/inductive/reachable.py`` and of each layer), on which z3 confirms
  every invariant, with arguments for which the guard and the success
  condition hold (symbolic, or pinned to values the model used where the
  guard quantifies over the state: FreeTable's "every entry of the table is
  clear"); concrete, so decided in milliseconds;
* failing that, a model z3 finds of the symbolic hypotheses.

z3 answering unsat is a vacuous step: a COUNTEREXAMPLE to NON-VACUOUS. No
witness within the budget is UNKNOWN. Both fail the check (the Hyperkernel
and Dafny practice of checking that a lemma's assumptions are consistent).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import z3

from proofs.inductive.paging import BUDGET, Asked
from proofs.inductive.reachable import reference_pinned, reference_states
from proofs.obligation import PROFILES, Kind, Obligation, Verdict
from spec.catalogue import INVARIANTS, OPERATIONS, OPERATIONS_BY_NAME, Operation
from spec.state import Ref, refuted, symbolic

CLAIM = "NON-VACUOUS"

#: Milliseconds per query on a reached state (concrete: decided far sooner).
WITNESS_TIMEOUT = 5000

#: arguments pinned for one step on one reached state: (state name, {argument: value})
Pinned = tuple[str, Mapping[str, int]]


@dataclass(frozen=True)
class Family:
    """What the check needs of one family of steps (paging, or one layer)."""

    name: str
    invariants: Mapping[str, Callable[[Any], Ref]]
    fresh: Callable[[str], Any]
    operations: Mapping[str, Operation]
    reached: Callable[[], Sequence[tuple[str, Any]]] = tuple
    pinned: Callable[[], Mapping[str, Pinned]] = dict
    #: reached state name -> whether z3 confirmed every invariant on it (asked once)
    holding: dict[str, bool] = field(default_factory=dict, compare=False, repr=False)


def operation_obligations(family: Family, manager: str,
                          public: Sequence[Operation]) -> Iterator[Obligation]:
    """One NON-VACUOUS obligation per public operation (all its steps), in both profiles."""
    for op in public:
        yield Obligation(f"{manager}.{op.name}.{CLAIM}", manager, op.name, CLAIM,
                         functools.partial(prove, family, op.name), frozenset(PROFILES),
                         depends_on=(__name__,))


def prove(family: Family, operation: str, profile: str) -> Verdict:
    """A model of each step's hypotheses, or the step that has none."""
    op = family.operations[operation]
    found = []
    for step in op.parts or (op.name,):
        how = witness(family, family.operations[step], profile)
        if isinstance(how, Verdict):
            return how
        found.append(f"{family.name}.{step}: {how}")
    steps = len(op.parts) or 1
    return Verdict(Kind.PROVED, f"hypotheses satisfiable ({steps} step{'s' * (steps > 1)})",
                   "\n".join(found))


def witness(family: Family, op: Operation, profile: str) -> str | Verdict:
    """How op's hypotheses are satisfied, or the failing verdict."""
    args = {name: z3.Const(f"{op.name}.{name}", sort) for name, sort in op.params}
    pinned = family.pinned().get(op.name)
    for name, state in reversed(family.reached()):  # the fullest states first
        pins = dict(pinned[1]) if pinned is not None and pinned[0] == name else {}
        step = op.transition(state, **args)
        solver = z3.Solver()  # a concrete state: quick, so no context of its own needed
        solver.set("timeout", WITNESS_TIMEOUT)
        solver.add(step.assume, step.ok, *(args[arg] == value for arg, value in pins.items()))
        if solver.check() == z3.sat and _invariants_hold(family, name, state):
            shown = ", ".join(f"{arg}={value:#x}" for arg, value in pins.items())
            return f"the reached state {name}" + (f" ({shown})" if shown else "")
    pre = family.fresh("pre")
    step = op.transition(pre, **args)
    hypotheses = [z3.And([holds(pre) for holds in family.invariants.values()]), step.assume,
                  step.ok]
    query = Asked(hypotheses, 0, BUDGET[profile][1])
    if query.answer == z3.sat:
        return "z3: a model of the invariants, the guard and the success condition"
    if query.answer == z3.unsat:
        return Verdict(Kind.COUNTEREXAMPLE, f"counterexample to {CLAIM}: step {op.name} is vacuous",
                       f"{family.name}.{op.name}: the invariants, the step's guard and its "
                       "success condition are unsatisfiable: every claim about the step "
                       "would be proved without meaning anything", (CLAIM,))
    return Verdict(Kind.UNKNOWN, f"no witness for step {op.name}",
                   f"{family.name}.{op.name}: no reached state satisfies the guard and the "
                   f"success condition, and z3 answered {query.solver.reason_unknown()} on "
                   "the symbolic hypotheses")


def _invariants_hold(family: Family, state_name: str, state: Any) -> bool:
    """Whether z3 confirms every invariant on the reached state (asked once)."""
    if state_name not in family.holding:
        family.holding[state_name] = not refuted(family.invariants, state)
    return family.holding[state_name]


def paging_obligations(manager: str) -> Iterator[Obligation]:
    """The NON-VACUOUS obligations of one manager of the paging state."""
    public = [op for op in OPERATIONS if op.manager == manager and not op.internal]
    yield from operation_obligations(PAGING, manager, public)


PAGING = Family("paging", {inv.id: inv.holds for inv in INVARIANTS}, symbolic,
                OPERATIONS_BY_NAME, reference_states, reference_pinned)
