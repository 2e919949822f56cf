"""How a machine judges a step: its failures, and deciding closed z3 claims.

A check that fails raises :class:`CheckError` naming what it broke (invariant ids,
or the machines' own checks: ``transition``, ``contents``, ``unchanged``); z3's
unknown raises :class:`SolverUnknownError`, which is neither verdict.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import z3

from proofs.machines.witness import explain
from spec.state import Ref

if TYPE_CHECKING:
    from proofs.machines.runner import CheckedMachine

#: The names of the machines' own checks (beside invariant ids): the call is the
#: spec's transition; written bytes read back; a failure changed nothing.
TRANSITION, CONTENTS, UNCHANGED = "transition", "contents", "unchanged"
#: The process heap's blocks as a program sees them (proofs/machines/user_space.py).
HEAP_BLOCKS = "heap-blocks"
#: Milliseconds z3 may spend on one query; running out is UNKNOWN, a failure.
QUERY_TIMEOUT_MS = 60_000


# -- failures ------------------------------------------------------------------------

class CheckError(AssertionError):
    """A step the spec does not allow; ``violated`` names what was broken."""

    def __init__(self, message: str, violated: Sequence[str]) -> None:
        super().__init__(message)
        self.violated = tuple(violated)


class InvariantViolationError(CheckError):
    """The post-state breaks an invariant (and possibly the transition)."""


class TransitionError(CheckError):
    """The step is not one the spec allows, the invariants still hold."""


class SolverUnknownError(Exception):
    """z3 answered unknown: the step is neither confirmed nor refuted."""

    def __init__(self, message: str, violated: Sequence[str]) -> None:
        super().__init__(message)
        self.violated = tuple(violated)


def raise_problems(where: str, problems: Mapping[str, str]) -> None:
    """A CheckError naming every problem ({check id: why}), if there is any."""
    if problems:
        lines = "\n".join(f"  {name}: {why}" for name, why in problems.items())
        raise CheckError(f"{where}\n{lines}", list(problems))


# -- deciding claims -------------------------------------------------------------------

#: Claims proved before, by z3 term id. z3 hash-conses terms, so a claim built
#: again from equal snapshots is the same term; the entry keeps the term alive
#: so that its id is never reused. The oracle judges the same set-up state in
#: every example, and the machines revisit states: both ask again.
_PROVED: dict[int, Ref] = {}
_PROVED_LIMIT = 50_000


def proved_before(claim: Ref) -> bool:
    return claim.get_id() in _PROVED


def remember_proved(claim: Ref) -> None:
    if len(_PROVED) >= _PROVED_LIMIT:
        _PROVED.clear()
    _PROVED[claim.get_id()] = claim


def decide(claim: Ref, what: str) -> bool:
    """Whether a closed claim holds: simplified, else z3 refutes its negation."""
    simple = z3.simplify(claim)
    if z3.is_true(simple) or z3.is_false(simple):
        return bool(z3.is_true(simple))
    if proved_before(claim):
        return True
    result, solver = z3.unknown, z3.Solver()
    # The default solver picks its tactic from the query's shape and may give up
    # on a quantified one it takes for difference logic ("incomplete (theory
    # difference-logic)"); the AUFLIA solver, configured for arrays and linear
    # integers with quantifiers, then decides it (user-space steps, 0.2 s).
    for solver in (z3.Solver(), z3.SolverFor("AUFLIA")):
        solver.set("timeout", QUERY_TIMEOUT_MS)
        solver.add(z3.Not(claim))
        result = solver.check()
        if result != z3.unknown:
            break
    if result == z3.unknown:
        raise SolverUnknownError(f"z3 could not decide {what}: {solver.reason_unknown()}",
                                 [what])
    if result == z3.unsat:
        remember_proved(claim)
    return bool(result == z3.unsat)


def failing(claims: list[tuple[str, Ref]], what: str) -> list[str]:
    """The names of the claims that do not hold (one query when all do)."""
    if not claims or decide(z3.And([claim for _, claim in claims]), what):
        return []
    return [name for name, claim in claims if not decide(claim, what)]


def check_invariants(cls: type[CheckedMachine], invariants: Mapping[str, Callable[[Any], Ref]],
                     key: Hashable, state: Callable[[], Any]) -> dict[str, str]:
    """{id: message} for every invariant refuted on state() (cached per key)."""
    refuted = cls.cache.get(("invariants", key))
    if refuted is None:
        abstract = state()
        refuted = tuple(name for name, holds in invariants.items()
                        if not decide(holds(abstract), name))
        cls.cache[("invariants", key)] = refuted
    return {name: why_false(name, invariants[name], state()) for name in refuted}


def why_false(name: str, holds: Callable[[Any], Ref], state: Any) -> str:
    """An invariant refuted on state, and why: its text, the false clause and the
    concrete objects (proofs/machines/witness.py), one line each, indented."""
    lines = explain(holds, state)
    return f"{name} is false on the abstraction of the post-state" + "".join(
        f"\n      {line}" for line in lines)
