"""Operations as guard + successor (Hyperkernel's ``specs.py`` shape).

An operation of the spec is a function of a pre-state and arguments that
returns a :class:`Step`: the status the call reports (0 = ERROR_SUCCESS, in
the order the checks are made), the successor state (the pre-state itself
unless the status is 0: a refused call changes nothing), the returned value,
and ``assume``: the validity of the nondeterministic choices the
implementation made (which free frame it took). The spec allows every choice
for which ``assume`` holds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import z3

from spec.abi import ErrorCode
from spec.state import WORD, Ref, State, bv, ite

Translation = Callable[[Ref, Ref, Ref], tuple[Ref, Ref]]
S = TypeVar("S")


@dataclass(frozen=True)
class Transition(Generic[S]):
    """A transition of any layer's state (State, HeapState, PoolState)."""

    status: Ref
    post: S
    #: The successor when the call succeeds (``post`` is If(ok, changed, pre)).
    changed: S
    result: Ref | None = None
    assume: Ref = field(default_factory=lambda: z3.BoolVal(True))
    #: The translation (mapped, frame) every surviving directory must have
    #: after the step, as a function of (directory, slot, index); None when
    #: the step changes no translation (VMM-3).
    translation: Translation | None = None

    @property
    def ok(self) -> Ref:
        return self.status == 0


#: A transition of the physical and virtual memory state.
Step = Transition[State]


def status(*checks: tuple[Ref, ErrorCode]) -> Ref:
    """The code of the first failing check (condition true = failure), else 0."""
    code = bv(0, WORD)
    for failed, error in reversed(checks):
        code = z3.If(failed, bv(int(error), WORD), code)
    return code


def step(pre: State, code: Ref, post: State, result: Ref | None = None,
         failure: Ref | None = None, assume: Ref | None = None,
         translation: Translation | None = None) -> Step:
    """A Step whose successor is ``post`` on success and ``pre`` otherwise."""
    return guarded(pre, code, post, ite, result, failure, assume, translation)


def guarded(pre: S, code: Ref, post: S, choose: Callable[[Ref, S, S], S],
            result: Ref | None = None, failure: Ref | None = None,
            assume: Ref | None = None, translation: Translation | None = None) -> Transition[S]:
    """``step`` for any state type; ``choose`` is its field-wise If."""
    ok = z3.simplify(code == 0)
    if z3.is_true(ok):
        return Transition(code, post, post, result,
                    z3.BoolVal(True) if assume is None else assume, translation)
    value = None if result is None else (result if failure is None
                                         else z3.If(ok, result, failure))
    return Transition(code, choose(ok, post, pre), post, value,
                z3.BoolVal(True) if assume is None else z3.Implies(ok, assume),
                translation)
