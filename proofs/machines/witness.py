"""Why an invariant is false on a concrete state: its text, the failing clause and
the concrete objects (issue 16, "the why").

An invariant is a function of a state dataclass whose fields are z3 terms
(spec/state.py). :func:`explain` evaluates it on a *symbolic twin* of the state
(each field a constant named after it: ``size``, ``key``) and walks the formula
down to the clause that is false, substituting the concrete fields only to ask
z3 what holds: an implication's consequent (its premise holds), the first false
conjunct of an ``And`` ("clause 2 of 3"), and a ``ForAll``'s body with the
counterexample z3's model gives for its bound variables (``h = 0xc0001014``).
At the clause it prints the formula over field names and the value of every
field read there (``size[h] = 20``), numbers from 0x1000 up in hex. Only a
state already refuted is explained, and not while the oracle shrinks
(:func:`quiet`: it explains the shrunk sequence once, by replaying it); every
query is bounded (:data:`TIMEOUT_MS`), and what z3 cannot answer ends the
explanation where it is.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import re
from collections.abc import Callable, Iterator
from typing import Any

import z3

Ref = Any
#: While set, explanations are only the invariant's text (:func:`quiet`).
_QUIET: contextvars.ContextVar[bool] = contextvars.ContextVar("witness_quiet", default=False)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """No counterexamples looked for meanwhile: a search that shrinks raises a
    divergence for every failing candidate, and only the last one is read (the
    oracle replays it to explain it)."""
    token = _QUIET.set(True)
    try:
        yield
    finally:
        _QUIET.reset(token)
#: Each query of an explanation (a concrete state: usually milliseconds).
TIMEOUT_MS = 2000
#: Steps down the formula (nested And / Implies / ForAll), at most.
DEPTH = 16
#: Field reads shown at the clause, at most.
READS = 12


def _text(value: Any) -> str:
    if z3.is_true(value) or z3.is_false(value):
        return "true" if z3.is_true(value) else "false"
    if z3.is_int_value(value) or z3.is_bv_value(value):
        number = value.as_long()
        return hex(number) if number >= 0x1000 else str(number)
    return re.sub(r"\s+", " ", str(value))[:60]


_SELECT = re.compile(r"Select\((\w+), ([^()]+?)\)")


def _pretty(text: str) -> str:
    """z3's text with a field's reads as ``field[i, j]`` (its printer writes a
    select of a two-index array as ``Select(field, i, j)``)."""
    while (simpler := _SELECT.sub(r"\1[\2]", text)) != text:
        text = simpler
    return text


def _check(claim: Ref) -> z3.ModelRef | None | bool:
    """A model of claim (sat), False (unsat) or None (z3 could not say)."""
    solver = z3.Solver()
    solver.set("timeout", TIMEOUT_MS)
    solver.add(claim)
    result = solver.check()
    if result == z3.sat:
        return solver.model()
    return False if result == z3.unsat else None


class _Twin:
    """The symbolic twin of a concrete state and the substitution back to it."""

    def __init__(self, state: Any) -> None:
        fields = {f.name: getattr(state, f.name) for f in dataclasses.fields(state)}
        self.names: dict[int, str] = {}
        twin: dict[str, Any] = {}
        self.pairs: list[tuple[Ref, Ref]] = []
        for name, term in fields.items():
            if isinstance(term, z3.ExprRef):
                const = z3.Const(name, term.sort())
                twin[name] = const
                self.names[const.get_id()] = name
                self.pairs.append((const, term))
            else:
                twin[name] = term
        self.state = dataclasses.replace(state, **twin)
        self.bound: list[tuple[Ref, Ref]] = []

    def concrete(self, term: Ref) -> Ref:
        return z3.substitute(term, *self.pairs, *self.bound) if self.pairs or self.bound \
            else term

    def false(self, claim: Ref) -> bool | None:
        """Whether claim is false on the state (None: undecided)."""
        model = _check(z3.Not(self.concrete(claim)))
        return None if model is None else model is not False

    def value(self, term: Ref) -> str:
        model = _check(z3.BoolVal(True))
        assert isinstance(model, z3.ModelRef)
        return _text(model.eval(self.concrete(term), model_completion=True))


def _reads(term: Ref, names: dict[int, str]) -> list[Ref]:
    """The field reads in term: array selects of a field, and fields themselves."""
    found: list[Ref] = []
    seen: set[int] = set()
    stack = [term]
    while stack and len(found) < READS:
        t = stack.pop()
        if t.get_id() in seen or not z3.is_app(t):
            continue
        seen.add(t.get_id())
        if z3.is_select(t) and t.arg(0).get_id() in names:
            found.append(t)
        elif t.get_id() in names and not z3.is_array(t):
            found.append(t)
        else:
            stack.extend(reversed(t.children()))
    return found


def _mentions(term: Ref, const: Ref) -> bool:
    """Whether const occurs in term."""
    stack, seen = [term], set()
    while stack:
        t = stack.pop()
        if t.get_id() == const.get_id():
            return True
        if t.get_id() not in seen and z3.is_app(t):
            seen.add(t.get_id())
            stack.extend(t.children())
    return False


def explain(holds: Callable[[Any], Ref], state: Any) -> list[str]:
    """Lines saying why ``holds(state)`` is false: the invariant's text, the path to
    the false clause with its bound variables' values, the clause, and the
    values of the fields it reads. Empty when the state has no z3 fields."""
    twin = _Twin(state)
    doc = " ".join((holds.__doc__ or "").split("\n\n")[0].split())
    lines = [doc] if doc else []
    if not twin.pairs or _QUIET.get():
        return lines
    formula = holds(twin.state)
    path: list[str] = []
    for _ in range(DEPTH):
        if z3.is_app_of(formula, z3.Z3_OP_IMPLIES):
            formula = formula.arg(1)  # the premise holds, or the implication would
        elif z3.is_and(formula):
            parts = formula.children()
            for k, part in enumerate(parts):
                verdict = twin.false(part)
                if verdict is None:
                    return [*lines, *path, "(z3 could not say which clause is false)"]
                if verdict:
                    path.append(f"clause {k + 1} of {len(parts)} is false")
                    formula = part
                    break
            else:
                break
        elif z3.is_quantifier(formula) and formula.is_forall():
            bound = [z3.Const(formula.var_name(i), formula.var_sort(i))
                     for i in range(formula.num_vars())]
            body = z3.substitute_vars(formula.body(), *reversed(bound))
            model = _check(z3.Not(twin.concrete(body)))
            if not isinstance(model, z3.ModelRef):
                break
            values = [model.eval(v, model_completion=True) for v in bound]
            twin.bound += list(zip(bound, values, strict=True))
            path.append("for " + ", ".join(f"{v} = {_text(x)}"
                                           for v, x in zip(bound, values, strict=True)))
            formula = body
        else:
            break
    clause = re.sub(r"\b\d{4,}\b", lambda m: _text(z3.IntVal(int(m.group()))),
                    re.sub(r"\s+", " ", str(formula)))
    reads = [f"{_pretty(str(r))} = {twin.value(r)}" for r in _reads(formula, twin.names)]
    reads += [f"{v} = {_text(x)}" for v, x in twin.bound if _mentions(formula, v)]
    return [*lines, *path, f"false: {_pretty(clause)[:300]}",
            *([f"where {', '.join(reads)}"] if reads else [])]


def differs(name: str, expected: Ref, observed: Ref, assume: Ref,
            free: tuple[Ref, ...]) -> str:
    """Where a spec's post-state term and the reported one differ: the free
    constants' values z3's counterexample picks (which MCB, which handle) and the
    two values, ``name`` naming the term (``owner[m]``)."""
    model = None if _QUIET.get() else _check(z3.And(assume, expected != observed))
    if not isinstance(model, z3.ModelRef):
        return name
    at = [f"{str(v).removeprefix('_o')} = {_text(model.eval(v, model_completion=True))}"
          for v in free
          if _mentions(expected, v) or _mentions(observed, v)]
    values = (f"the spec's {_text(model.eval(expected, model_completion=True))}, reported "
              f"{_text(model.eval(observed, model_completion=True))}")
    return f"{name}{' for ' + ', '.join(at) if at else ''}: {values}"
