"""z3 queries about the paging state, shared by the paging machine's harness and the
oracle's kernel judge: each claim once (a claim proved before is not asked again),
each invariant one query per state with its verdict cached per the terms of the
fields it reads, and what the run cost (:class:`Stats`)."""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import z3

from proofs.machines.checks import (
    QUERY_TIMEOUT_MS,
    proved_before,
    remember_proved,
)
from spec.catalogue import INVARIANTS, Invariant
from spec.state import (
    GHOST_FIELDS,
    REAL_FIELDS,
    Ref,
    State,
    symbolic,
)


@dataclass
class Stats:
    """What a run cost: counts and seconds per kind of z3 query."""

    steps: int = 0
    transition_queries: int = 0
    transition_seconds: float = 0.0
    invariant_queries: int = 0
    invariant_seconds: float = 0.0
    invariant_cache_hits: int = 0
    abstraction_seconds: float = 0.0
    slowest_query: float = 0.0
    #: (operation, last_error name) -> calls: what the run covered.
    outcomes: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)

    def coverage(self) -> str:
        """Calls per operation and outcome, one operation a line."""
        by_op: dict[str, list[str]] = {}
        for (op, code), n in sorted(self.outcomes.items()):
            by_op.setdefault(op, []).append(f"{code.removeprefix('ERROR_')} {n}")
        return "\n".join(f"{op}: {', '.join(codes)}" for op, codes in by_op.items())

    def summary(self) -> str:
        def mean(total: float, n: int) -> float:
            return 1000 * total / n if n else 0.0
        return (f"{self.steps} steps; {self.transition_queries} transition queries "
                f"(mean {mean(self.transition_seconds, self.transition_queries):.1f} ms); "
                f"{self.invariant_queries} invariant queries "
                f"(mean {mean(self.invariant_seconds, self.invariant_queries):.1f} ms, "
                f"{self.invariant_cache_hits} answered from the cache); "
                f"abstraction {self.abstraction_seconds:.2f} s; "
                f"slowest query {1000 * self.slowest_query:.0f} ms")


def prove(claim: Ref, stats: Stats | None = None, kind: str = "transition") -> z3.CheckSatResult:
    """unsat: the claim holds; sat: it is false; unknown: neither (a failure)."""
    if proved_before(claim):
        return z3.unsat
    solver = z3.Solver()
    solver.set("timeout", QUERY_TIMEOUT_MS)
    solver.add(z3.Not(claim))
    start = time.process_time()
    result = solver.check()
    elapsed = time.process_time() - start
    if stats is not None:
        stats.slowest_query = max(stats.slowest_query, elapsed)
        if kind == "invariant":
            stats.invariant_queries += 1
            stats.invariant_seconds += elapsed
        else:
            stats.transition_queries += 1
            stats.transition_seconds += elapsed
    if result == z3.unsat:
        remember_proved(claim)
    return result


def value_of(term: Ref) -> object:
    """The Python value of a closed z3 term (an int, a bool), or its text."""
    simple = z3.simplify(term)
    if z3.is_bv_value(simple):
        return simple.as_long()
    if z3.is_true(simple) or z3.is_false(simple):
        return z3.is_true(simple)
    solver = z3.Solver()
    solver.set("timeout", QUERY_TIMEOUT_MS)
    if solver.check() == z3.sat:
        value = solver.model().eval(term, model_completion=True)
        if z3.is_bv_value(value):
            return value.as_long()
        if z3.is_true(value) or z3.is_false(value):
            return z3.is_true(value)
    return str(simple)


def _fields_read(holds: Callable[[State], Ref]) -> tuple[str, ...]:
    """The State fields an invariant's formula mentions."""
    sym = symbolic("inv")
    names = {getattr(sym, name).get_id(): name for name in REAL_FIELDS + GHOST_FIELDS}
    seen: set[int] = set()
    found: set[str] = set()
    stack = [holds(sym)]
    while stack:
        term = stack.pop()
        if term.get_id() in seen:
            continue
        seen.add(term.get_id())
        if term.get_id() in names:
            found.add(names[term.get_id()])
        if z3.is_quantifier(term):
            stack.append(term.body())
        elif z3.is_app(term):
            stack.extend(term.children())
    return tuple(name for name in REAL_FIELDS + GHOST_FIELDS if name in found)


@dataclass(frozen=True)
class _CompiledInvariant:
    invariant: Invariant
    fields: tuple[str, ...]
    symbolic_state: State
    negation: Ref  # Not(holds(symbolic_state))


_COMPILED: list[_CompiledInvariant] = []


def compiled_invariants() -> list[_CompiledInvariant]:
    """Each invariant once over a symbolic state, with the fields it reads."""
    if not _COMPILED:
        for inv in INVARIANTS:
            sym = symbolic("inv")
            _COMPILED.append(_CompiledInvariant(inv, _fields_read(inv.holds), sym,
                                                z3.Not(inv.holds(sym))))
    return _COMPILED


class InvariantChecker:
    """Checks invariants on concrete states, caching verdicts per field terms.

    The cache key holds the terms themselves, so their z3 ids cannot be
    reused while the entry lives; z3 hash-conses terms, so a field whose
    value is unchanged has the same id.
    """

    MAX_CACHE = 20_000

    def __init__(self, stats: Stats) -> None:
        self.stats = stats
        self.cache: dict[tuple[str, tuple[int, ...]],
                         tuple[z3.CheckSatResult, tuple[Ref, ...]]] = {}

    def violated(self, state: State) -> tuple[list[str], list[str]]:
        """(ids refuted, ids unknown) on state."""
        refuted: list[str] = []
        unknown: list[str] = []
        for comp in compiled_invariants():
            terms = tuple(getattr(state, name) for name in comp.fields)
            key = (comp.invariant.id, tuple(t.get_id() for t in terms))
            cached = self.cache.get(key)
            if cached is not None:
                self.stats.invariant_cache_hits += 1
                result = cached[0]
            else:
                pairs = [(getattr(comp.symbolic_state, name), getattr(state, name))
                         for name in comp.fields]
                start = time.process_time()
                solver = z3.Solver()
                solver.set("timeout", QUERY_TIMEOUT_MS)
                solver.add(z3.substitute(comp.negation, *pairs))
                result = solver.check()
                elapsed = time.process_time() - start
                self.stats.invariant_queries += 1
                self.stats.invariant_seconds += elapsed
                self.stats.slowest_query = max(self.stats.slowest_query, elapsed)
                if result == z3.unsat:
                    if len(self.cache) >= self.MAX_CACHE:
                        self.cache.clear()
                    self.cache[key] = (result, terms)
            if result == z3.sat:
                refuted.append(comp.invariant.id)
            elif result != z3.unsat:
                unknown.append(comp.invariant.id)
        return refuted, unknown


