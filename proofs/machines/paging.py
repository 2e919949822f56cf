"""Refinement of the spec by the model, checked on every step of hypothesis runs.

DESIGN.md, "Three layers": ``model/`` refines ``spec/``. A hypothesis
:class:`~hypothesis.stateful.RuleBasedStateMachine` drives one PageManager and
its VirtualMemoryManager through every operation of ``spec/catalogue.py``
that is not an internal micro-step, with mostly valid and sometimes hostile
arguments. At every step the :class:`Harness`

1. abstracts the pre-state (:mod:`proofs.abstractions.paging`),
2. calls the model,
3. computes the spec's :class:`~spec.step.Step` from the pre abstraction, the
   arguments and the implementation's choices, read from the model's
   post-state (the frame a new PTE maps, the table a new PDE links, the
   directory returned),
4. asks z3 to refute: the model's ``last_error`` equals the Step's status, its
   returned value equals the Step's result, the choices satisfy the Step's
   ``assume``, and the abstraction of the post-state equals ``Step.post`` on
   the real (non-ghost) fields. A failure is named ``transition``;
5. checks every invariant of ``spec.catalogue.INVARIANTS`` on the post
   abstraction, one z3 query per invariant (``sat`` of the negation is a
   violation named by the invariant id; ``unknown`` is a failure, never a
   pass).

Composite operations are folds of the spec's micro-steps, as the docstring
of ``spec/virtual_memory.py`` defines them: ClonePageDirectory is
CreatePageDirectory then AllocPage + CopyPage per present user PTE,
DestroyPageDirectory is UnmapVirtualAddress per present user page, FreeTable
per user table, FreeDirectory; a multi-byte access is ``Access`` per byte,
all or nothing, faulting at the first refused byte.

Arguments the spec cannot represent are still passed to the model. An
address beyond 32 bits, or a non-bool flag of AllocPage/MapVirtualAddress,
is given to the spec as an unaligned address (``UNALIGNED``): the model must
refuse it with ERROR_INVALID_PARAMETER at the point the spec checks that
alignment, after the checks that precede it. Where the spec has no such
check (a stale directory object whose frame now holds another live
directory: the spec names directories by frame, the model by object; a
VirtualToPhysical address or an access beyond 4 GiB; RequestFrame's flags)
the model must refuse with the documented code and change nothing
(DESIGN.md: "Bad input never raises ... and never changes state").

Costs (CPU time, measured 2026-11-28 on the 2-CPU development machine, on
the states these runs reach: 16-48 frames, up to ~30 used):

- one invariant query, mean over a quick run: FRM-3 65 ms, VMM-2 43 ms,
  VMM-1 24 ms, FRM-2 18 ms, PROT-2 12 ms, VMM-4 9 ms, FRM-1 8 ms, PROT-1
  6 ms, PROT-3 4 ms; all nine on a state with 24 used frames and 13
  mappings 124 ms as nine queries, 520 ms as one query of the conjunction.
  So the invariants are checked one query each (which also names the
  violated ones directly), and a verdict is cached per tuple of the terms of
  the fields the invariant reads (z3 hash-conses terms: an unchanged field
  is the same term), so a step re-checks only the invariants that read a
  field it changed; about a third of the checks are answered from the cache.
- one transition query: about 1 ms mean, a few hundred ms for a large clone.
- building the spec's Step in Python: AllocPage and MapVirtualAddress 15 ms,
  the others 1-4 ms; the abstraction: 0.7 ms for the snapshot, 0.7 ms (cached
  terms) to 6.5 ms (new terms) for the z3 state.
- profiles: quick (3 examples of at most 20 steps, ~80 steps; derandomized,
  no database, swarm testing off) 4-5 s of CPU (10 examples measured 14 s in
  an idle quick run, 5 examples 7 s, and the whole quick profile must stay
  under a minute with every manager in); full (100 examples of at
  most 50 steps, ~5,300-5,700 steps; random, swarm testing on) 145-175 s.
  A failing run also shrinks, for at most ``SHRINK_SECONDS`` of wall time.
- what the budget catches (model bugs patched in with ``run_machine``): a
  leaking unmap (FRM-3), accesses ignoring U/S (transition), a kernel table
  linked into one directory (VMM-4), a free that keeps the used count (FRM-2),
  a clone that copies no data (transition) and a destroy that leaks its
  tables (FRM-3), each within the first 10 derandomized examples (the last
  two near the end), so the quick profile's 3 may miss the last two; the
  tests use the "teeth" profile (60 examples, stopping at the first failure).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import importlib
import io
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import z3
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.internal.conjecture import engine as hypothesis_engine
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    multiple,
    rule,
    run_state_machine_as_test,
)

from model.errors import ErrorCode
from model.frame_bitmap import FrameBitmap
from model.page_manager import NO_FRAME, FrameOwner, PageManager
from model.virtual_memory import (
    PageDirectory,
    PageFault,
    PageTable,
    VirtualMemoryManager,
)
from model.x86_paging import (
    ADDRESS_LIMIT,
    FAULT_PROTECTION,
    FAULT_USER,
    FAULT_WRITE,
    PAGE_SHIFT,
    PAGE_SIZE,
    PTE_PRESENT,
    PTE_USER,
    PTE_WRITABLE,
)
from proofs.abstractions.paging import (
    END,
    AbstractionError,
    Snapshot,
    byte_val,
    fits,
    frame_val,
    snapshot,
    spec_args,
    to_state,
    word_val,
)
from proofs.obligation import Kind, Obligation, Verdict
from spec import page_manager as spec_pm
from spec import virtual_memory as spec_vm
from spec.catalogue import INVARIANTS, OPERATIONS_BY_NAME, Invariant
from spec.state import (
    GHOST_FIELDS,
    REAL_FIELDS,
    WORD,
    Ref,
    State,
    ite,
    symbolic,
    walk,
)
from spec.step import Step

E = ErrorCode

#: Milliseconds z3 may spend on one query; running out is UNKNOWN, a failure.
QUERY_TIMEOUT_MS = 60_000

#: Hypothesis budget per profile: (max_examples, stateful_step_count).
BUDGETS = {"quick": (3, 20), "full": (100, 50), "teeth": (60, 20)}
#: Wall seconds hypothesis may spend shrinking a counterexample, per profile
#: (hypothesis' own limit is 300 s; every shrink attempt re-runs z3 queries).
SHRINK_SECONDS = {"quick": 30.0, "full": 120.0, "teeth": 30.0}

TRANSITION = "transition"
UNKNOWN_ID = "unknown"


# =========================================================================== failures

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


# =========================================================================== z3 queries

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


# =========================================================================== expectations

@dataclass
class Expected:
    """What the spec says about one model call.

    ``claims`` are named z3 claims that must all hold (status, result,
    assume, micro-steps); ``post`` is the spec's successor, compared with the
    abstraction of the model's post-state on the real fields.
    """

    status: Ref
    post: State
    claims: list[tuple[str, Ref]]
    result: Ref | None = None
    choices: dict[str, int] = field(default_factory=dict)


#: What the spec is asked about a value it cannot represent (beyond the
#: parameter's width, or a non-bool flag): an unaligned address, refused as
#: ERROR_INVALID_PARAMETER by the same check, in the same order, as the model
#: refuses the unrepresentable value.
UNALIGNED = 1


def substitute(value: object, sort: Ref, replacement: int) -> int:
    """value when the spec can represent it in the bit-vector sort, else replacement."""
    return value if isinstance(value, int) and fits(value, sort) else replacement


@dataclass(frozen=True)
class Refused:
    """An argument the spec cannot represent: the model must refuse it with
    ``code`` and leave the state unchanged."""

    code: ErrorCode
    why: str


def spec_step(name: str, pre: State, **values: object) -> Step:
    """The catalogue's transition ``name`` applied to Python argument values."""
    op = OPERATIONS_BY_NAME[name]
    return op.transition(pre, *spec_args(op.params, values))


def from_step(s: Step, status_claims: Iterable[tuple[str, Ref]] = (),
              choices: Mapping[str, int] | None = None) -> Expected:
    claims = [("assume", s.assume), *status_claims]
    return Expected(s.status, s.post, claims, s.result, dict(choices or {}))


def first_failure(statuses: Sequence[Ref]) -> Ref:
    """The first nonzero status of a sequence, else 0."""
    code = word_val(0)
    for status in reversed(statuses):
        code = z3.If(status != 0, status, code)
    return code


def _error_name(code: object) -> str:
    if isinstance(code, int) and not isinstance(code, bool):
        try:
            return f"{ErrorCode(code).name} ({code})"
        except ValueError:
            return str(code)
    return str(code)


def _fmt(value: object) -> str:
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int):
        return hex(value) if value > 9 else str(value)
    if isinstance(value, PageDirectory):
        return f"<directory {value.physical_addr >> PAGE_SHIFT:#x}>"
    if isinstance(value, PageFault):
        return f"PageFault(error_code={value.error_code:#x}, address={value.address:#x})"
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex() or "b''"
    return repr(value)


def _owner_name(value: int) -> str:
    try:
        return FrameOwner(value).name
    except ValueError:
        return f"owner {value}"


def describe_changes(pre: Snapshot, post: Snapshot, limit: int = 24) -> list[str]:
    """The model's state changes, readable (frame numbers in hex)."""
    lines: list[str] = []
    for name in ("nframes", "used_count", "kernel_dir", "current_dir", "paging"):
        a, b = getattr(pre, name), getattr(post, name)
        if a != b:
            lines.append(f"{name}: {_fmt(a)} -> {_fmt(b)}")
    for frame in sorted(set(pre.used) ^ set(post.used)):
        lines.append(f"used[{frame:#x}]: {frame in pre.used} -> {frame in post.used}")
    for frame in sorted(set(pre.owner) | set(post.owner)):
        a, b = pre.owner.get(frame, 0), post.owner.get(frame, 0)
        if a != b:
            lines.append(f"owner[{frame:#x}]: {_owner_name(a)} -> {_owner_name(b)}")
    for label, x, y in (("pde", pre.pde, post.pde), ("pte", pre.pte, post.pte)):
        for frame in sorted(set(x) | set(y)):
            ex, ey = x.get(frame, {}), y.get(frame, {})
            if frame not in y:
                lines.append(f"{label}[{frame:#x}]: no longer live")
                continue
            for index in sorted(set(ex) | set(ey)):
                a, b = ex.get(index, 0), ey.get(index, 0)
                if a != b:
                    lines.append(f"{label}[{frame:#x}][{index}]: {a:#x} -> {b:#x}")
    for frame in sorted(set(pre.mem) | set(post.mem)):
        if pre.mem.get(frame) != post.mem.get(frame):
            lines.append(f"mem[{frame:#x}]: {len(pre.mem.get(frame, {}))} -> "
                         f"{len(post.mem.get(frame, {}))} nonzero bytes")
    if len(lines) > limit:
        lines = lines[:limit] + [f"... {len(lines) - limit} more"]
    return lines or ["(no change)"]


def describe_state(snap: Snapshot) -> list[str]:
    """Owners, links and mappings of a snapshot, readable."""
    owners: dict[str, list[str]] = {}
    for frame, owner in sorted(snap.owner.items()):
        owners.setdefault(_owner_name(owner), []).append(f"{frame:#x}")
    lines = [f"nframes={snap.nframes:#x} used_count={snap.used_count} paging={snap.paging} "
             f"kernel_dir={snap.kernel_dir:#x} current_dir={snap.current_dir:#x}"]
    lines += [f"{name}: {' '.join(frames)}" for name, frames in owners.items()]
    links = [f"{d:#x}[{slot}]->{t:#x}" for d, slot, t in snap.links()]
    if links:
        lines.append("links: " + " ".join(links))
    maps = [f"{t:#x}[{i}]->{f:#x}" for t, i, f in snap.mappings()]
    if maps:
        lines.append("mappings: " + " ".join(maps[:48]) + (" ..." if len(maps) > 48 else ""))
    return lines


def _witness(a: Ref, b: Ref) -> str:
    """An index where two arrays differ, and both values there."""
    solver = z3.Solver()
    solver.set("timeout", QUERY_TIMEOUT_MS)
    if not z3.is_array(a):
        return f"model {_fmt(value_of(a))}, spec {_fmt(value_of(b))}"
    i = z3.Const("witness_i", a.domain())
    x, y, index = a[i], b[i], [i]
    if z3.is_array(x):
        j = z3.Const("witness_j", x.domain())
        x, y, index = x[j], y[j], [i, j]
    solver.add(x != y)
    if solver.check() != z3.sat:
        return "(no witness found)"
    model = solver.model()
    where = "".join(f"[{_fmt(model.eval(k, model_completion=True).as_long())}]" for k in index)
    return (f"at {where}: model {_fmt(value_of(model.eval(x, model_completion=True)))}, "
            f"spec {_fmt(value_of(model.eval(y, model_completion=True)))}")


# =========================================================================== harness

def _reply_claim(reply: object, spec_result: Ref | None, kind: str) -> tuple[str, Ref]:
    """The claim that the model's returned value is the spec's result."""
    if spec_result is None:
        return "result", z3.BoolVal(True)
    if kind == "bool":
        if not isinstance(reply, bool):
            return "result (not a bool)", z3.BoolVal(False)
        return "result", spec_result == z3.BoolVal(reply)
    if kind == "word":
        if not isinstance(reply, int) or isinstance(reply, bool) or not fits(reply, WORD):
            return "result (not a 32-bit int)", z3.BoolVal(False)
        return "result", spec_result == word_val(reply)
    raise ValueError(kind)


def _directory_reply(reply: object, s: Step) -> tuple[str, Ref]:
    """CreatePageDirectory/ClonePageDirectory: None on failure, else the directory."""
    if reply is None:
        return "result (None)", s.status != 0
    if not isinstance(reply, PageDirectory):
        return "result (not a PageDirectory)", z3.BoolVal(False)
    return "result", z3.And(s.status == 0, s.result == word_val(reply.physical_addr))


class Harness:
    """One model under check: every call goes through :meth:`call`."""

    def __init__(self, stats: Stats | None = None,
                 invariants: InvariantChecker | None = None) -> None:
        self.stats = stats if stats is not None else Stats()
        self.invariants = invariants if invariants is not None else InvariantChecker(self.stats)
        self.pm = PageManager()
        self.vm = VirtualMemoryManager(self.pm)
        self.snap = snapshot(self.pm, self.vm)
        self.state = to_state(self.snap)
        self.history: list[str] = []
        self._check_invariants(self.state, "the initial state", [])

    # -- the check ------------------------------------------------------------

    def _abstract(self) -> tuple[Snapshot, State]:
        start = time.process_time()
        snap = snapshot(self.pm, self.vm)
        state = self.state if snap == self.snap else to_state(snap)
        self.stats.abstraction_seconds += time.process_time() - start
        return snap, state

    def _check_invariants(self, state: State, where: str, context: list[str]) -> None:
        refuted, unknown = self.invariants.violated(state)
        if refuted or unknown:
            lines = [f"{', '.join(refuted + unknown)}: invariant "
                     f"{'violated' if refuted else 'unknown (z3)'} in {where}", *context]
            if unknown:
                lines.append(f"z3 answered unknown for {', '.join(unknown)}")
            if refuted:
                raise InvariantViolationError("\n".join(lines), refuted + unknown)
            raise SolverUnknownError("\n".join(lines), unknown)

    def call(self, operation: str, args: Mapping[str, object], invoke: Callable[[], object],
             last_error: Callable[[], int],
             expect: Callable[[Snapshot, State, object, Snapshot], Expected | Refused]) -> object:
        """Run one model call and check it against the spec and the invariants."""
        self.stats.steps += 1
        pre_snap, pre = self._abstract()
        if pre_snap != self.snap:
            self.snap, self.state = pre_snap, pre
        shown = ", ".join(f"{k}={_fmt(v)}" for k, v in args.items())
        label = f"{operation}({shown})"
        self.history.append(label)
        try:
            reply = invoke()
        except Exception as exc:  # a model that raises is a model bug
            raise TransitionError(
                f"{TRANSITION}: {label} raised {type(exc).__name__}: {exc}\n"
                + "".join(traceback.format_exception(exc)[-6:]), [TRANSITION]) from exc
        status = int(last_error())
        self.stats.outcomes[operation, _error_name(status).split(" ")[0]] += 1
        post_snap, post = self._abstract()
        expected = expect(pre_snap, pre, reply, post_snap)
        failed: list[str] = []
        unknown = False
        if isinstance(expected, Refused):
            if status != expected.code or post_snap != pre_snap:
                failed.append(f"refusal: the spec cannot represent {expected.why}; the model "
                              f"must refuse with {_error_name(int(expected.code))} "
                              "and change nothing")
            if reply is True or isinstance(reply, PageDirectory | bytes):
                failed.append("refusal: the model returned a success value")
        else:
            parts = [("status", expected.status == word_val(status)), *expected.claims,
                     ("post", z3.And([getattr(post, n) == getattr(expected.post, n)
                                      for n in REAL_FIELDS]))]
            verdict = prove(z3.And([claim for _, claim in parts]), self.stats)
            if verdict != z3.unsat:
                failed = self._diagnose(parts, post, expected.post)
                unknown = verdict == z3.unknown and not failed
        if post_snap != pre_snap:
            self.snap, self.state = post_snap, post
        refuted, inv_unknown = ([], []) if post_snap == pre_snap or not self.post_invariants \
            else self.invariants.violated(post)
        if not (failed or refuted or unknown or inv_unknown):
            return reply
        context = self._context(label, reply, status, expected, pre_snap, post_snap)
        if failed or refuted:
            ids = list(refuted) + ([TRANSITION] if failed else [])
            lines = [f"{', '.join(ids)}: {label} is not allowed by the spec"
                     if failed else f"{', '.join(ids)}: invariant violated after {label}",
                     *context]
            if failed:
                lines.append("  transition check failed: " + "; ".join(failed))
            if refuted:
                lines.append(f"  invariants violated in the post-state: {', '.join(refuted)}")
            lines.append("  calls so far: " + "; ".join(self.history[-12:]))
            if refuted:
                raise InvariantViolationError("\n".join(lines), ids)
            raise TransitionError("\n".join(lines), ids)
        ids = inv_unknown + ([UNKNOWN_ID] if unknown else [])
        raise SolverUnknownError(
            f"unknown: z3 could not decide {', '.join(ids)} after {label}\n"
            + "\n".join(context), ids)

    def _diagnose(self, parts: Sequence[tuple[str, Ref]], post: State, spec_post: State
                  ) -> list[str]:
        """Which of the claims failed; for the post-state, which fields and where."""
        failed = []
        for name, claim in parts:
            if name == "post":
                for field_name in REAL_FIELDS:
                    a, b = getattr(post, field_name), getattr(spec_post, field_name)
                    answer = prove(a == b, self.stats)
                    if answer != z3.unsat:
                        where = _witness(a, b) if answer == z3.sat else "(z3: unknown)"
                        failed.append(f"post.{field_name} differs {where}")
            else:
                answer = prove(claim, self.stats)
                if answer != z3.unsat:
                    failed.append(name if answer == z3.sat else f"{name} (z3: unknown)")
        return failed

    #: What the report calls the thing judged (the oracle judges an implementation).
    subject = "model"
    #: Whether call() checks the invariants of a changed post-state. The
    #: machines do; the oracle relies on the proved inductive steps instead (a
    #: post-state equal to the spec's successor keeps what the pre-state kept).
    post_invariants = True

    def _context(self, label: str, reply: object, status: int, expected: Expected | Refused,
                 pre_snap: Snapshot, post_snap: Snapshot) -> list[str]:
        """The lines a failure report prints: both replies, the changes, the state."""
        detail: list[str] = []
        if isinstance(expected, Refused):
            spec_reply = f"refused with {_error_name(int(expected.code))} (outside the spec)"
        else:
            spec_reply = f"status {_error_name(value_of(expected.status))}"
            if expected.result is not None:
                spec_reply += f", result {_fmt(value_of(expected.result))}"
            if expected.choices:
                detail.append("implementation's choices: " + ", ".join(
                    f"{k}={_fmt(v)}" for k, v in expected.choices.items()))
        return [f"  operation: {label}",
                f"  {self.subject}: returned {_fmt(reply)}, last_error {_error_name(status)}",
                f"  spec:  {spec_reply}",
                *(f"  {line}" for line in detail),
                f"  {self.subject} changes: " + "; ".join(describe_changes(pre_snap, post_snap)),
                "  pre-state: " + " | ".join(describe_state(pre_snap))]

    # -- helpers for the operations -----------------------------------------

    def directory_arg(self, handle: object) -> int | None:
        """The spec's name (frame) for a directory handle; None when the spec
        cannot represent it (a stale object whose frame holds another live
        directory, or not a PageDirectory at all)."""
        if not isinstance(handle, PageDirectory):
            return None
        frame = handle.physical_addr >> PAGE_SHIFT
        if not 0 <= handle.physical_addr < ADDRESS_LIMIT or handle.physical_addr % PAGE_SIZE:
            return None
        if self.vm.directories.get(handle.physical_addr) is handle:
            return frame
        live_frames = {d >> PAGE_SHIFT for d in self.vm.directories}
        return None if frame in live_frames else frame

    def _vm_call(self, operation: str, args: Mapping[str, object], invoke: Callable[[], object],
                 expect: Callable[[Snapshot, State, object, Snapshot], Expected | Refused]
                 ) -> object:
        return self.call(operation, args, invoke, lambda: self.vm.last_error, expect)

    def _pm_call(self, operation: str, args: Mapping[str, object], invoke: Callable[[], object],
                 expect: Callable[[Snapshot, State, object, Snapshot], Expected | Refused]
                 ) -> object:
        return self.call(operation, args, invoke, lambda: self.pm.last_error, expect)

    # -- PageManager ------------------------------------------------------------

    def InitializePhysicalMemory(self, mem_start: int, mem_end: int) -> object:
        def expect(pre_snap: Snapshot, pre: State, reply: object, post: Snapshot
                   ) -> Expected | Refused:
            s = spec_step("InitializePhysicalMemory", pre,
                          mem_start=substitute(mem_start, WORD, 0xFFFFFFFF),
                          mem_end=substitute(mem_end, END, 0))
            return from_step(s, [_reply_claim(reply, s.result, "bool")])
        return self._pm_call("InitializePhysicalMemory",
                             {"mem_start": mem_start, "mem_end": mem_end},
                             lambda: self.pm.InitializePhysicalMemory(mem_start, mem_end), expect)

    def RequestFrame(self, is_kernel: Any, is_writeable: Any) -> object:
        def expect(pre_snap: Snapshot, pre: State, reply: object, post: Snapshot
                   ) -> Expected | Refused:
            if not (isinstance(is_kernel, bool) and isinstance(is_writeable, bool)):
                return Refused(E.ERROR_INVALID_PARAMETER, "a flag that is not a bool")
            frame = reply >> PAGE_SHIFT if isinstance(reply, int) and reply != NO_FRAME else 0
            s = spec_step("RequestFrame", pre, frame=frame & 0xFFFFF)
            return from_step(s, [_reply_claim(reply, s.result, "word")], {"frame": frame})
        return self._pm_call("RequestFrame", {"is_kernel": is_kernel, "is_writeable": is_writeable},
                             lambda: self.pm.RequestFrame(is_kernel, is_writeable),
                             expect)

    def _address_op(self, name: str, value: int, invoke: Callable[[], object],
                    param: str) -> object:
        def expect(pre_snap: Snapshot, pre: State, reply: object, post: Snapshot
                   ) -> Expected | Refused:
            s = spec_step(name, pre, **{param: substitute(value, WORD, UNALIGNED)})
            return from_step(s, [_reply_claim(reply, s.result, "bool")])
        return self._pm_call(name, {param: value}, invoke, expect)

    def FreeFrame(self, frame_addr: int) -> object:
        return self._address_op("FreeFrame", frame_addr,
                                lambda: self.pm.FreeFrame(frame_addr), "frame_addr")

    def UnreservePage(self, virtual_address: int) -> object:
        return self._address_op("UnreservePage", virtual_address,
                                lambda: self.pm.UnreservePage(virtual_address),
                                "virtual_address")

    def FirstFreeFrame(self) -> object:
        def expect(pre_snap: Snapshot, pre: State, reply: object, post: Snapshot) -> Expected:
            frame = reply >> PAGE_SHIFT if isinstance(reply, int) and reply != NO_FRAME else 0
            s = spec_step("FirstFreeFrame", pre, result=frame & 0xFFFFF)
            return from_step(s, [_reply_claim(reply, s.result, "word")], {"result": frame})
        return self._pm_call("FirstFreeFrame", {}, self.pm.FirstFreeFrame, expect)

    def CopyPage(self, src: int, dst: int) -> object:
        def expect(pre_snap: Snapshot, pre: State, reply: object, post: Snapshot
                   ) -> Expected | Refused:
            s = spec_step("CopyPage", pre, src=substitute(src, WORD, UNALIGNED),
                          dst=substitute(dst, WORD, UNALIGNED))
            return from_step(s, [_reply_claim(reply, s.result, "bool")])
        return self._pm_call("CopyPage", {"src": src, "dst": dst},
                             lambda: self.pm.CopyPage(src, dst), expect)

    def _count(self, name: str) -> object:
        def expect(pre_snap: Snapshot, pre: State, reply: object, post: Snapshot) -> Expected:
            # The free and used counts are read-only steps outside the catalogue
            # (nothing to prove inductively): spec.page_manager states them.
            s = getattr(spec_pm, name)(pre)
            return from_step(s, [_reply_claim(reply, s.result, "word")])
        return self._pm_call(name, {}, getattr(self.pm, name), expect)

    def GetFrameCount(self) -> object:
        return self._count("GetFrameCount")

    def GetFreeFrameCount(self) -> object:
        return self._count("GetFreeFrameCount")

    def GetUsedFrameCount(self) -> object:
        return self._count("GetUsedFrameCount")

    def AllocFrame(self, pd: Any, virtual_address: int, is_kernel: Any,
                   is_writeable: Any) -> object:
        return self._place("AllocFrame", pd, virtual_address, is_kernel, is_writeable, None,
                           lambda: self.pm.AllocFrame(pd, virtual_address,
                                                      is_kernel, is_writeable),
                           lambda: self.pm.last_error)

    # -- VirtualMemoryManager ---------------------------------------------------------

    def InitializePaging(self) -> object:
        def expect(pre_snap: Snapshot, pre: State, reply: object, post: Snapshot) -> Expected:
            kernel_dir = post.kernel_dir if post.paging and not pre_snap.paging else 0
            identity = post.pde.get(kernel_dir, {}).get(0, 0) >> PAGE_SHIFT
            s = spec_step("InitializePaging", pre, kernel_dir=kernel_dir, identity_table=identity)
            return from_step(s, [_reply_claim(reply, s.result, "bool")],
                             {"kernel_dir": kernel_dir, "identity_table": identity})
        return self._vm_call("InitializePaging", {}, self.vm.InitializePaging, expect)

    def CreatePageDirectory(self) -> object:
        def expect(pre_snap: Snapshot, pre: State, reply: object, post: Snapshot) -> Expected:
            new_dir = reply.physical_addr >> PAGE_SHIFT if isinstance(reply, PageDirectory) else 0
            s = spec_step("CreatePageDirectory", pre, new_dir=new_dir & 0xFFFFF)
            return from_step(s, [_directory_reply(reply, s)], {"new_dir": new_dir})
        return self._vm_call("CreatePageDirectory", {}, self.vm.CreatePageDirectory, expect)

    def SwitchPageDirectory(self, new_dir: Any) -> object:
        frame = self.directory_arg(new_dir)

        def expect(pre_snap: Snapshot, pre: State, reply: object, post: Snapshot
                   ) -> Expected | Refused:
            if frame is None:
                return Refused(E.ERROR_INVALID_HANDLE, "this directory handle")
            s = spec_step("SwitchPageDirectory", pre, new_dir=frame)
            return from_step(s, [_reply_claim(reply, s.result, "bool")])
        return self._vm_call("SwitchPageDirectory", {"new_dir": new_dir},
                             lambda: self.vm.SwitchPageDirectory(new_dir),
                             expect)

    def _place(self, name: str, d: Any, va: int, is_kernel: Any, is_writeable: Any,
               physical_addr: int | None, invoke: Callable[[], object],
               last_error: Callable[[], int]) -> object:
        """AllocPage / AllocFrame / MapVirtualAddress."""
        frame_dir = self.directory_arg(d)
        args: dict[str, object] = {"dir": d, "virtual_addr": va}
        if physical_addr is not None:
            args["physical_addr"] = physical_addr
        args.update(is_kernel=is_kernel, is_writeable=is_writeable)

        def expect(pre_snap: Snapshot, pre: State, reply: object, post: Snapshot
                   ) -> Expected | Refused:
            if frame_dir is None:
                return Refused(E.ERROR_INVALID_HANDLE, "this directory handle")
            # The model validates the flags with the address: a non-bool flag
            # is refused where the spec refuses an unaligned address.
            flags_ok = isinstance(is_kernel, bool) and isinstance(is_writeable, bool)
            va_s = substitute(va, WORD, UNALIGNED) if flags_ok else UNALIGNED
            slot, index = va_s >> 22, (va_s >> PAGE_SHIFT) & 0x3FF
            pde, pte = post.entry(frame_dir, slot, index)
            table = pde >> PAGE_SHIFT
            choices = {"table": table}
            values: dict[str, object] = dict(
                dir=frame_dir, virtual_addr=va_s, is_kernel=is_kernel is True,
                is_writeable=is_writeable is True, table=table)
            if physical_addr is None:
                values["frame"] = choices["frame"] = pte >> PAGE_SHIFT
            else:
                values["physical_addr"] = substitute(physical_addr, WORD, UNALIGNED)
            s = spec_step(name, pre, **values)
            return from_step(s, [_reply_claim(reply, s.result, "bool")], choices)
        return self.call(name, args, invoke, last_error, expect)

    def AllocPage(self, d: Any, va: int, is_kernel: Any, is_writeable: Any) -> object:
        return self._place("AllocPage", d, va, is_kernel, is_writeable, None,
                           lambda: self.vm.AllocPage(d, va, is_kernel, is_writeable),
                           lambda: self.vm.last_error)

    def MapVirtualAddress(self, d: Any, va: int, physical_addr: int, is_kernel: Any,
                          is_writeable: Any) -> object:
        return self._place("MapVirtualAddress", d, va, is_kernel, is_writeable, physical_addr,
                           lambda: self.vm.MapVirtualAddress(d, va, physical_addr,
                                                             is_kernel, is_writeable),
                           lambda: self.vm.last_error)

    def _unmap(self, name: str, d: Any, va: int, invoke: Callable[[], object]) -> object:
        frame_dir = self.directory_arg(d)

        def expect(pre_snap: Snapshot, pre: State, reply: object, post: Snapshot
                   ) -> Expected | Refused:
            if frame_dir is None:
                return Refused(E.ERROR_INVALID_HANDLE, "this directory handle")
            s = spec_step(name, pre, dir=frame_dir, virtual_addr=substitute(va, WORD, UNALIGNED))
            return from_step(s, [_reply_claim(reply, s.result, "bool")])
        return self._vm_call(name, {"dir": d, "virtual_addr": va}, invoke, expect)

    def UnmapVirtualAddress(self, d: Any, va: int) -> object:
        return self._unmap("UnmapVirtualAddress", d, va,
                           lambda: self.vm.UnmapVirtualAddress(d, va))

    def FreePage(self, d: Any, va: int) -> object:
        return self._unmap("FreePage", d, va,
                           lambda: self.vm.FreePage(d, va))

    def VirtualToPhysical(self, d: Any, va: int) -> object:
        frame_dir = self.directory_arg(d)

        def expect(pre_snap: Snapshot, pre: State, reply: object, post: Snapshot
                   ) -> Expected | Refused:
            if frame_dir is None:
                return Refused(E.ERROR_INVALID_HANDLE, "this directory handle")
            if not fits(va, WORD):
                return Refused(E.ERROR_INVALID_PARAMETER if frame_dir in pre_snap.pde
                               else E.ERROR_INVALID_HANDLE, "an address beyond 32 bits")
            s = spec_step("VirtualToPhysical", pre, dir=frame_dir, virtual_addr=va)
            return from_step(s, [_reply_claim(reply, s.result, "word")])
        return self._vm_call("VirtualToPhysical", {"dir": d, "virtual_addr": va},
                             lambda: self.vm.VirtualToPhysical(d, va),
                             expect)

    def ClonePageDirectory(self, src: Any) -> object:
        frame_src = self.directory_arg(src)

        def expect(pre_snap: Snapshot, pre: State, reply: object, post: Snapshot
                   ) -> Expected | Refused:
            if frame_src is None:
                return Refused(E.ERROR_INVALID_HANDLE, "this directory handle")
            pages = pre_snap.user_pages(frame_src)
            tables = {slot for slot, _, _ in pages}
            needed = 1 + len(tables) + len(pages)
            new_dir = reply.physical_addr >> PAGE_SHIFT if isinstance(reply, PageDirectory) else 0
            create = spec_step("CreatePageDirectory", pre, new_dir=new_dir & 0xFFFFF)
            status = z3.If(z3.Not(spec_vm.live(pre, frame_val(frame_src))),
                           word_val(E.ERROR_INVALID_HANDLE),
                           z3.If(z3.ULT(pre.nframes - pre.used_count, needed),
                                 word_val(E.ERROR_NOT_ENOUGH_MEMORY), word_val(0)))
            ok = status == 0
            micro: list[Ref] = [create.status == 0, create.assume]
            s = create.post
            choices: dict[str, int] = {"new_dir": new_dir}
            for slot, index, entry in pages:
                va = slot << 22 | index << PAGE_SHIFT
                pde, pte = post.entry(new_dir, slot, index)
                table, frame = pde >> PAGE_SHIFT, pte >> PAGE_SHIFT
                choices[f"table[{slot}]"] = table
                choices[f"frame[{va:#x}]"] = frame
                alloc = spec_step("AllocPage", s, dir=new_dir, virtual_addr=va,
                                  is_kernel=not entry & PTE_USER,
                                  is_writeable=bool(entry & PTE_WRITABLE),
                                  frame=frame, table=table)
                copy = spec_step("CopyPage", alloc.post, src=entry & 0xFFFFF000,
                                 dst=frame << PAGE_SHIFT)
                micro += [alloc.status == 0, alloc.assume, copy.status == 0, copy.assume]
                s = copy.post
            claims = [("micro-steps (CreatePageDirectory, AllocPage, CopyPage)",
                       z3.Implies(ok, z3.And(micro))),
                      _directory_reply(reply, dataclasses.replace(
                          create, status=status))]
            return Expected(status, ite(ok, s, pre), claims,
                            z3.If(ok, create.result, word_val(0)), choices)
        return self._vm_call("ClonePageDirectory", {"src": src},
                             lambda: self.vm.ClonePageDirectory(src),
                             expect)

    def DestroyPageDirectory(self, d: Any) -> object:
        frame_dir = self.directory_arg(d)

        def expect(pre_snap: Snapshot, pre: State, reply: object, post: Snapshot
                   ) -> Expected | Refused:
            if frame_dir is None:
                return Refused(E.ERROR_INVALID_HANDLE, "this directory handle")
            f = frame_val(frame_dir)
            status = z3.If(z3.Not(spec_vm.live(pre, f)), word_val(E.ERROR_INVALID_HANDLE),
                           z3.If(f == pre.kernel_dir, word_val(E.ERROR_ACCESS_DENIED),
                                 z3.If(f == pre.current_dir, word_val(E.ERROR_BUSY),
                                       word_val(0))))
            ok = status == 0
            micro: list[Ref] = []
            s = pre
            for slot, index, _ in pre_snap.user_pages(frame_dir):
                unmap = spec_step("UnmapVirtualAddress", s, dir=frame_dir,
                                  virtual_addr=slot << 22 | index << PAGE_SHIFT)
                micro += [unmap.status == 0, unmap.assume]
                s = unmap.post
            for slot, _ in pre_snap.user_tables(frame_dir):
                free = spec_step("FreeTable", s, dir=frame_dir, slot=slot)
                micro += [free.status == 0, free.assume]
                s = free.post
            last = spec_step("FreeDirectory", s, dir=frame_dir)
            micro += [last.status == 0, last.assume]
            claims = [("micro-steps (UnmapVirtualAddress, FreeTable, FreeDirectory)",
                       z3.Implies(ok, z3.And(micro))),
                      _reply_claim(reply, ok, "bool")]
            return Expected(status, ite(ok, last.post, pre), claims, ok)
        return self._vm_call("DestroyPageDirectory", {"dir": d},
                             lambda: self.vm.DestroyPageDirectory(d),
                             expect)

    def _access(self, name: str, d: Any, va: int, data: bytes, user_mode: Any,
                write: bool, invoke: Callable[[], object], args: dict[str, object]) -> object:
        frame_dir = self.directory_arg(d)
        length = len(data)

        def expect(pre_snap: Snapshot, pre: State, reply: object, post: Snapshot
                   ) -> Expected | Refused:
            if frame_dir is None:
                return Refused(E.ERROR_INVALID_HANDLE, "this directory handle")
            if not (fits(va, WORD) and va + length <= ADDRESS_LIMIT
                    and isinstance(user_mode, bool)):
                return Refused(E.ERROR_INVALID_PARAMETER if frame_dir in pre_snap.pde
                               else E.ERROR_INVALID_HANDLE, "an access beyond 4 GiB")
            steps: list[Step] = []
            s = pre
            for k in range(length):
                byte = spec_step("Access", s, dir=frame_dir, virtual_addr=va + k,
                                 user_mode=user_mode, write=write, value=data[k])
                steps.append(byte)
                s = byte.post
            statuses = [x.status for x in steps]
            status = z3.If(z3.Not(spec_vm.live(pre, frame_val(frame_dir))),
                           word_val(E.ERROR_INVALID_HANDLE), first_failure(statuses))
            ok = status == 0
            claims: list[tuple[str, Ref]] = [
                ("assume", z3.Implies(ok, z3.And([x.assume for x in steps] or [True])))]
            if isinstance(reply, PageFault):
                claims += self._fault_claims(reply, va, length, pre, frame_dir, statuses,
                                             user_mode, write)
            elif write:
                claims.append(("result", ok if reply is True else z3.And(
                    z3.BoolVal(reply is False), z3.Not(ok))))
            elif isinstance(reply, bytes):
                results = [x.result for x in steps]
                claims.append(("result (bytes read)", z3.And(
                    z3.BoolVal(len(reply) == length), ok,
                    *[r == byte_val(b) for r, b in zip(results, reply, strict=False)])))
            elif reply is None:
                claims.append(("result (None)", z3.Not(ok)))
            else:
                claims.append(("result (not bytes, PageFault or None)", z3.BoolVal(False)))
            return Expected(status, ite(ok, s, pre), claims)
        return self._vm_call(name, args, invoke, expect)

    @staticmethod
    def _fault_claims(fault: PageFault, va: int, length: int, pre: State, frame_dir: int,
                      statuses: Sequence[Ref], user_mode: bool, write: bool
                      ) -> list[tuple[str, Ref]]:
        """A PageFault names the first refused byte (CR2) and carries the x86 error
        code: P when both entries were present, W/R for a write, U/S in user mode."""
        k = fault.address - va
        if not 0 <= k < length:
            return [(f"fault address {fault.address:#x} lies outside the access",
                     z3.BoolVal(False))]
        slot, index = fault.address >> 22, (fault.address >> PAGE_SHIFT) & 0x3FF
        present = walk(pre, frame_val(frame_dir), z3.BitVecVal(slot, 10),
                       z3.BitVecVal(index, 10))[2]
        code = fault.error_code
        return [
            (f"fault address {fault.address:#x} is the first byte the spec refuses",
             z3.And(*[x == 0 for x in statuses[:k]], statuses[k] != 0)),
            (f"fault error code {code:#x}: P says the entries were "
             f"{'' if code & FAULT_PROTECTION else 'not '}both present",
             present == z3.BoolVal(bool(code & FAULT_PROTECTION))),
            (f"fault error code {code:#x}: W/R must be {int(write)} (write={write})",
             z3.BoolVal(bool(code & FAULT_WRITE) == write)),
            (f"fault error code {code:#x}: U/S must be {int(user_mode)} (user_mode={user_mode})",
             z3.BoolVal(bool(code & FAULT_USER) == user_mode)),
        ]

    def ReadVirtualMemory(self, d: Any, va: int, length: int, user_mode: Any) -> object:
        return self._access("ReadVirtualMemory", d, va, bytes(length), user_mode, False,
                            lambda: self.vm.ReadVirtualMemory(d, va, length,
                                                              user_mode),
                            {"dir": d, "virtual_addr": va, "length": length,
                             "user_mode": user_mode})

    def ExecuteVirtualMemory(self, d: Any, va: int, user_mode: Any) -> object:
        return self._access("ExecuteVirtualMemory", d, va, bytes(1), user_mode, False,
                            lambda: self.vm.ExecuteVirtualMemory(d, va,
                                                                 user_mode),
                            {"dir": d, "virtual_addr": va, "user_mode": user_mode})

    def WriteVirtualMemory(self, d: Any, va: int, data: bytes, user_mode: Any) -> object:
        return self._access("WriteVirtualMemory", d, va, data, user_mode, True,
                            lambda: self.vm.WriteVirtualMemory(d, va, data,
                                                               user_mode),
                            {"dir": d, "virtual_addr": va, "data": data,
                             "user_mode": user_mode})

    # -- observations for the machine --------------------------------------------------

    def physical_of(self, d: Any, va: int) -> int:
        """The frame address va maps to in d (the current model state), else va."""
        frame_dir = self.directory_arg(d)
        if frame_dir is None:
            return va & 0xFFFFF000
        _, pte = self.snap.entry(frame_dir, va >> 22, (va >> PAGE_SHIFT) & 0x3FF)
        return pte & 0xFFFFF000 if pte & PTE_PRESENT else va & 0xFFFFF000


# =========================================================================== strategies

PAGE = PAGE_SIZE
#: A few user slots and the kernel slots 0 (identity) and 768.. (kernel tables are
#: linked into every directory, so these slots exercise the sharing).
USER_SLOTS = (1, 2, 767)
KERNEL_SLOTS = (0, 768, 1023)
INDICES = (0, 1, 7, 1023)
#: mem_start values: 0, aligned and unaligned (rounded up to whole frames); up to
#: 8 reserved frames, so that a 16-frame memory runs out within a few steps.
MEM_STARTS = (0, 0x1000, 0x1234, 0x3000, 0x5FFF, 0x8000)
#: Frames of memory: 16-48, mostly small (the cost of an invariant query grows
#: with the frames in use).
NFRAMES = st.one_of(st.integers(16, 20), st.integers(16, 20), st.integers(16, 48))


def _join(slot: int, index: int) -> int:
    return slot << 22 | index << PAGE_SHIFT


user_va = st.builds(_join, st.sampled_from(USER_SLOTS), st.sampled_from(INDICES))
kernel_va = st.builds(_join, st.sampled_from(KERNEL_SLOTS), st.sampled_from(INDICES))
aligned_va = st.one_of(user_va, kernel_va)
#: Mostly aligned addresses, some unaligned (hostile).
any_va = st.one_of(aligned_va, aligned_va, aligned_va, aligned_va.map(lambda v: v | 0x10))
#: (virtual address, is_kernel): mostly coherent (user page in user space, kernel
#: page in kernel space), sometimes anything (a user page in kernel space is refused).
placement = st.one_of(st.tuples(user_va, st.just(False)), st.tuples(kernel_va, st.just(True)),
                      st.tuples(any_va, st.booleans()))
offsets = st.sampled_from((0, 1, 0x7FF, 0xFFD, 0xFFF))
frame_addr = st.integers(0, 52).map(lambda f: f * PAGE)
#: Physical addresses: any frame (of any owner, in memory or beyond), some unaligned,
#: one beyond 32 bits.
any_frame_addr = st.one_of(frame_addr, frame_addr, frame_addr.map(lambda a: a + 0x80),
                           st.just(1 << 32))
flags = st.booleans()
#: Calls made before InitializePhysicalMemory (NOT_READY and friends, bad bounds).
PROBES = ("RequestFrame", "FirstFreeFrame", "FreeFrame", "CopyPage", "UnreservePage",
          "InitializePaging", "CreatePageDirectory", "GetFrameCount", "AllocFrame",
          "BadInitialize", "WideInitialize")
#: (mem_start, mem_end) of a second InitializePhysicalMemory: refused, whatever the values.
AGAIN = ((0x1000, 0x20000), (0x400001, 0x20000), (0, 1 << 32), (0, (1 << 32) + 1),
         (1 << 32, 0x20000), (0, 1 << 33))
#: Calls with arguments the model must refuse (see :meth:`PagingMachine.hostile`).
HOSTILE = ("FreeFrame", "CopyPage", "MapVirtualAddress", "UnmapVirtualAddress",
           "VirtualToPhysical", "AllocPage", "AllocFrame", "ReadVirtualMemory",
           "WriteVirtualMemory", "SwitchPageDirectory", "DestroyPageDirectory",
           "ClonePageDirectory", "UnreservePage")

Page = tuple[PageDirectory, int]


def _every_rule_enabled(machine: RuleBasedStateMachine) -> None:
    """Switch hypothesis' swarm testing off for one machine: every rule enabled in
    every example. Uses hypothesis internals (6.x: ``RuleStrategy.
    enabled_rules_strategy``, ``FeatureFlags`` without data enables everything);
    when they are not there, swarm testing simply stays on."""
    strategy = getattr(machine, "_rules_strategy", None)
    if strategy is None or not hasattr(strategy, "enabled_rules_strategy"):
        return
    try:
        from hypothesis.strategies._internal.featureflags import FeatureFlags
    except ImportError:
        return
    strategy.enabled_rules_strategy = st.just(FeatureFlags())


class PagingMachine(RuleBasedStateMachine):
    """Drives one PageManager + VirtualMemoryManager; every step is checked by :class:`Harness`.

    Bundles hold what the model handed out: live directories, frames obtained
    with RequestFrame, and (directory, address) pairs of mapped pages. The
    valid uses of each operation have their own rules; hostile arguments
    (destroyed and forged directory handles, frames of any owner, unaligned
    and out-of-range addresses, non-bool flags) share one rule, so that they
    do not crowd out the state-building steps in a small budget (hypothesis
    also disables a random subset of rules in each example).
    """

    #: Counted by :meth:`boot`; reset by :func:`run_machine`.
    examples = 0
    stats = Stats()
    invariant_checker: InvariantChecker | None = None
    #: Hypothesis' swarm testing: each example disables a random subset of the
    #: rules. It diversifies long runs (full) but makes a 10-example run a
    #: lottery (some examples only switch directories), so :func:`run_machine`
    #: turns it off for the small profiles.
    swarm = True

    directories = Bundle("directories")
    frames = Bundle("frames")
    pages = Bundle("pages")

    def __init__(self) -> None:
        super().__init__()
        cls = type(self)
        if cls.invariant_checker is None:
            cls.invariant_checker = InvariantChecker(cls.stats)
        self.h = Harness(cls.stats, cls.invariant_checker)
        self.graveyard: list[PageDirectory] = []
        self.user_dir: object = None
        if not cls.swarm:
            _every_rule_enabled(self)

    # -- boot ------------------------------------------------------------------

    @initialize(target=directories, probes=st.lists(st.sampled_from(PROBES), max_size=2),
                mem_start=st.sampled_from(MEM_STARTS),
                nframes=NFRAMES,
                tail=st.sampled_from((0, 0x7FF)),
                paging=st.sampled_from(("paging and a directory", "paging and a directory",
                                        "paging", "no paging")),
                again=st.one_of(st.none(), st.sampled_from(AGAIN)))
    def boot(self, probes: list[str], mem_start: int, nframes: int, tail: int,
             paging: str, again: tuple[int, int] | None) -> object:
        type(self).examples += 1
        for probe in probes:  # calls before initialisation: NOT_READY and friends
            if probe == "BadInitialize":
                self.h.InitializePhysicalMemory(0x5000, 0x5000)
            elif probe == "WideInitialize":
                self.h.InitializePhysicalMemory(1 << 32, 1 << 33)
            elif probe in ("FreeFrame", "UnreservePage"):
                getattr(self.h, probe)(0x1000)
            elif probe == "CopyPage":
                self.h.CopyPage(0, 0x1000)
            elif probe == "RequestFrame":
                self.h.RequestFrame(True, False)
            elif probe == "AllocFrame":
                self.h.AllocFrame(PageDirectory(0), 0x400000, False, True)
            else:
                getattr(self.h, probe)()
        self.h.InitializePhysicalMemory(mem_start, nframes * PAGE + tail)
        if again is not None:
            self.h.InitializePhysicalMemory(*again)
        if paging == "no paging" or self.h.InitializePaging() is not True:
            return multiple()
        made: list[object] = [self.h.vm.kernel_directory]
        if paging == "paging and a directory":
            self.user_dir = self.h.CreatePageDirectory()
            made.append(self.user_dir)
        return multiple(*[d for d in made if isinstance(d, PageDirectory)])

    @initialize(target=pages, how=st.sampled_from(("a user page", "user and kernel pages",
                                                    "nothing")),
                data=st.binary(min_size=1, max_size=4))
    def populate(self, how: str, data: bytes) -> object:
        """Pages with contents in the directory boot created (when boot ran first and
        made one): material for clone, destroy, copies and accesses."""
        d = self.user_dir
        if how == "nothing" or not isinstance(d, PageDirectory):
            return multiple()
        made = []
        if self.h.AllocPage(d, 0x400000, False, True) is True:
            made.append((d, 0x400000))
            self.h.WriteVirtualMemory(d, 0x400FFC, data, True)
        if how == "user and kernel pages" and self.h.AllocPage(d, 0xC0000000, True, True) is True:
            made.append((d, 0xC0000000))
        return multiple(*made)

    # -- PageManager ---------------------------------------------------------------

    @rule(target=frames, count=st.integers(1, 4), is_kernel=flags, is_writeable=flags)
    def request_frames(self, count: int, is_kernel: bool, is_writeable: bool) -> object:
        """RequestFrame count times (several at once, so memory runs out)."""
        got = []
        for _ in range(count):
            reply = self.h.RequestFrame(is_kernel, is_writeable)
            if isinstance(reply, int) and reply != NO_FRAME:
                got.append(reply)
        return multiple(*got)

    @rule(frame=consumes(frames), twice=flags)
    def free_frame(self, frame: int, twice: bool) -> None:
        self.h.FreeFrame(frame)
        if twice:
            self.h.FreeFrame(frame)  # a double free

    @rule(which=st.sampled_from(("FirstFreeFrame", "GetFrameCount", "UnreservePage")),
          frame=st.integers(0, 13))
    def query(self, which: str, frame: int) -> None:
        """Calls that take no handle: the queries, and UnreservePage."""
        if which == "UnreservePage":
            self.h.UnreservePage(frame * PAGE)
        else:
            getattr(self.h, which)()

    @rule(src=st.integers(0, 63), dst=st.integers(0, 63))
    def copy_page(self, src: int, dst: int) -> None:
        """CopyPage between data frames (held, mapped, reserved), picked by position."""
        data = sorted(f for f, owner in self.h.snap.owner.items()
                      if owner in (FrameOwner.HELD, FrameOwner.MAPPED, FrameOwner.RESERVED))
        src_frame, dst_frame = (data[i % len(data)] if data else i for i in (src, dst))
        self.h.CopyPage(src_frame * PAGE, dst_frame * PAGE)

    # -- VirtualMemoryManager ---------------------------------------------------------

    @rule(target=directories)
    def initialize_paging(self) -> object:
        if self.h.InitializePaging() is True:
            return multiple(self.h.vm.kernel_directory)
        return multiple()

    @rule(target=directories)
    def create_directory(self) -> object:
        reply = self.h.CreatePageDirectory()
        return reply if isinstance(reply, PageDirectory) else multiple()

    @rule(target=directories, d=consumes(directories))
    def destroy_directory(self, d: PageDirectory) -> object:
        if self.h.DestroyPageDirectory(d) is True:
            self.graveyard.append(d)
            return multiple()
        return d  # the kernel or current directory: refused, still live

    @rule(target=directories, src=directories, stamp=st.integers(1, 255),
          then=st.sampled_from(("keep", "destroy", "switch, destroy")))
    def clone_directory(self, src: PageDirectory, stamp: int, then: str) -> object:
        """Stamp a byte into the source's first user page, clone, read the copies
        back, and keep or destroy the clone (destroying the current directory is
        refused first)."""
        src_pages = self.h.snap.user_pages(self.h.directory_arg(src) or 0)
        if src_pages and isinstance(src, PageDirectory):
            slot, index, _ = src_pages[0]
            self.h.WriteVirtualMemory(src, _join(slot, index) + 0xFFF, bytes([stamp]), False)
        clone = self.h.ClonePageDirectory(src)
        if not isinstance(clone, PageDirectory):
            return multiple()
        for slot, index, _ in self.h.snap.user_pages(clone.physical_addr >> PAGE_SHIFT)[:2]:
            self.h.ReadVirtualMemory(clone, _join(slot, index) + 0xFFE, 2, True)
        if then == "keep":
            return clone
        if then == "switch, destroy":
            self.h.SwitchPageDirectory(clone)
            self.h.DestroyPageDirectory(clone)  # busy: the current directory
            self.h.SwitchPageDirectory(self.h.vm.kernel_directory)
        if self.h.DestroyPageDirectory(clone) is True:
            self.graveyard.append(clone)
            return multiple()
        return clone

    @rule(d=directories)
    def switch_directory(self, d: PageDirectory) -> None:
        self.h.SwitchPageDirectory(d)

    @rule(target=pages, d=directories, where=placement, is_writeable=flags,
          via=st.sampled_from(("AllocPage", "AllocFrame")), offset=offsets,
          data=st.binary(min_size=1, max_size=4), user_mode=flags,
          then=st.sampled_from(("keep", "UnmapVirtualAddress", "FreePage")))
    def alloc_page(self, d: PageDirectory, where: tuple[int, bool], is_writeable: bool,
                   via: str, offset: int, data: bytes, user_mode: bool, then: str) -> object:
        """Allocate a page, write and read it back, then keep it or free it."""
        va, is_kernel = where
        if getattr(self.h, via)(d, va, is_kernel, is_writeable) is not True:
            return multiple()
        self.h.WriteVirtualMemory(d, va + offset, data, user_mode)
        self.h.ReadVirtualMemory(d, va + offset, len(data), user_mode)
        if then == "keep":
            return (d, va)
        getattr(self.h, then)(d, va)
        return multiple()

    @rule(target=pages, d=directories, where=placement, frame=frames, is_writeable=flags)
    def map_held(self, d: PageDirectory, where: tuple[int, bool], frame: int,
                 is_writeable: bool) -> object:
        """Map a frame from RequestFrame (it stays in the bundle: mapping it again
        is ERROR_BUSY, freeing it too)."""
        va, is_kernel = where
        if self.h.MapVirtualAddress(d, va, frame, is_kernel, is_writeable) is True:
            return (d, va)
        return multiple()

    @rule(page=consumes(pages), via=st.sampled_from(("UnmapVirtualAddress", "FreePage")),
          twice=flags)
    def unmap(self, page: Page, via: str, twice: bool) -> None:
        getattr(self.h, via)(*page)
        if twice:
            getattr(self.h, via)(*page)  # unmapped already: ERROR_INVALID_ADDRESS

    @rule(page=pages, offset=offsets)
    def translate(self, page: Page, offset: int) -> None:
        self.h.VirtualToPhysical(page[0], page[1] + offset)

    # -- accesses ----------------------------------------------------------------------

    @rule(page=pages, offset=offsets, length=st.integers(0, 6), user_mode=flags)
    def read(self, page: Page, offset: int, length: int, user_mode: bool) -> None:
        self.h.ReadVirtualMemory(page[0], page[1] + offset, length, user_mode)

    @rule(page=pages, offset=offsets, data=st.binary(min_size=1, max_size=6), user_mode=flags)
    def write(self, page: Page, offset: int, data: bytes, user_mode: bool) -> None:
        self.h.WriteVirtualMemory(page[0], page[1] + offset, data, user_mode)

    @rule(page=pages, offset=offsets, user_mode=flags)
    def execute(self, page: Page, offset: int, user_mode: bool) -> None:
        self.h.ExecuteVirtualMemory(page[0], page[1] + offset, user_mode)

    # -- hostile arguments -------------------------------------------------------------

    @rule(op=st.sampled_from(HOSTILE), d=directories, pick=st.integers(0, 40), va=any_va,
          address=any_frame_addr, flag=st.sampled_from((True, False, 0, 1, None)),
          data=st.binary(min_size=1, max_size=3))
    def hostile(self, op: str, d: PageDirectory, pick: int, va: int, address: int,
                flag: Any, data: bytes) -> None:
        """An operation with arguments it must refuse, or at least survive: a
        destroyed or forged handle (whose frame may hold a live directory again),
        an address of any frame or beyond 32 bits, unaligned, a non-bool flag,
        an access crossing 4 GiB."""
        if pick % 3 == 0:
            if self.graveyard and pick % 2:
                d = self.graveyard[pick % len(self.graveyard)]
            else:
                d = PageDirectory(pick * PAGE)
        wide = (va, 1 << 32, 0xFFFFFFFE)[pick % 3]
        if op == "FreeFrame":
            self.h.FreeFrame(address)
        elif op == "UnreservePage":
            self.h.UnreservePage(address)
        elif op == "CopyPage":
            self.h.CopyPage(address, self.h.physical_of(d, va))
        elif op == "MapVirtualAddress":
            self.h.MapVirtualAddress(d, va, address, flag, True)
        elif op in ("UnmapVirtualAddress", "VirtualToPhysical"):
            getattr(self.h, op)(d, wide)
        elif op in ("AllocPage", "AllocFrame"):
            getattr(self.h, op)(d, wide if pick % 2 else va, flag, True)
        elif op == "ReadVirtualMemory":
            self.h.ReadVirtualMemory(d, wide, len(data), bool(pick % 2))
        elif op == "WriteVirtualMemory":
            self.h.WriteVirtualMemory(d, wide, data, bool(pick % 2))
        else:
            getattr(self.h, op)(d)


# =========================================================================== runner

#: Classes whose methods a broken variant may replace, by name.
PATCHABLE: dict[str, type] = {cls.__name__: cls for cls in (
    PageManager, VirtualMemoryManager, FrameBitmap, PageDirectory, PageTable)}


def _resolve(target: str) -> tuple[object, str]:
    """("Class.method" or "package.module.Class.method") -> (owner, attribute)."""
    owner_path, _, attribute = target.rpartition(".")
    if owner_path in PATCHABLE:
        return PATCHABLE[owner_path], attribute
    module_path, _, class_name = owner_path.rpartition(".")
    module = importlib.import_module(module_path)
    return getattr(module, class_name), attribute


@contextlib.contextmanager
def patched(patches: Mapping[str, object]) -> Iterator[None]:
    """Replace model methods for the duration (broken variants); always restored."""
    saved: list[tuple[object, str, object]] = []
    try:
        for target, replacement in patches.items():
            owner, attribute = _resolve(target)
            saved.append((owner, attribute, vars(owner).get(attribute)))
            setattr(owner, attribute, replacement)
        yield
    finally:
        for owner, attribute, original in reversed(saved):
            if original is None:
                delattr(owner, attribute)
            else:
                setattr(owner, attribute, original)


def _settings(profile: str, max_examples: int | None, steps: int | None) -> settings:
    if profile not in BUDGETS:
        raise ValueError(f"unknown profile {profile!r}; expected one of {tuple(BUDGETS)}")
    default_examples, default_steps = BUDGETS[profile]
    quick = profile != "full"
    options: dict[str, Any] = {"database": None} if quick else {}
    return settings(
        max_examples=max_examples or default_examples,
        stateful_step_count=steps or default_steps,
        deadline=None,
        derandomize=quick,
        suppress_health_check=list(HealthCheck),
        print_blob=False,
        # Shrink the smallest failure only: a broken variant is one bug, and
        # shrinking each distinct failure would multiply the shrinking time.
        report_multiple_bugs=False,
        **options,
    )


def _failures(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        found: list[BaseException] = []
        for inner in exc.exceptions:
            found += _failures(inner)
        return found
    return [exc]


@contextlib.contextmanager
def shrink_limit(seconds: float) -> Iterator[None]:
    """Bound hypothesis' shrinking time (its engine documents the constant as
    monkeypatchable); restored afterwards."""
    saved = hypothesis_engine.MAX_SHRINKING_SECONDS
    hypothesis_engine.MAX_SHRINKING_SECONDS = seconds  # type: ignore[assignment]
    try:
        yield
    finally:
        hypothesis_engine.MAX_SHRINKING_SECONDS = saved


def run_machine(profile: str = "quick", patches: Mapping[str, object] | None = None, *,
                max_examples: int | None = None, steps: int | None = None,
                shrink_seconds: float | None = None,
                machine: type[PagingMachine] = PagingMachine) -> Verdict:
    """Run the machine (optionally on a broken model) and return its verdict.

    ``patches`` maps "Class.method" (PageManager, VirtualMemoryManager,
    FrameBitmap, PageDirectory, PageTable, or a dotted path) to a replacement;
    they are undone afterwards. A counterexample's ``violated`` holds the
    invariant ids (and ``transition``) its assertion named; ``detail`` is the
    failing program hypothesis printed, followed by the assertion message.
    """
    cls: type[PagingMachine] = type(machine.__name__, (machine,), {
        "examples": 0, "stats": Stats(), "invariant_checker": None,
        "swarm": profile == "full"})
    out = io.StringIO()
    start = time.process_time()
    limit = shrink_seconds or SHRINK_SECONDS.get(profile, 300.0)
    try:
        with patched(patches or {}), contextlib.redirect_stdout(out), shrink_limit(limit):
            run_state_machine_as_test(cls, settings=_settings(profile, max_examples, steps))
    except BaseException as exc:  # noqa: BLE001 - every failure becomes a verdict
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        return _verdict_from_failure(exc, cls, out.getvalue(), time.process_time() - start,
                                     limit)
    n = cls.examples
    seconds = time.process_time() - start
    return Verdict(Kind.NO_COUNTEREXAMPLE, f"no counterexample in {n} examples",
                   detail=f"{cls.stats.summary()}; {seconds:.1f} s CPU", examples=n)


def _verdict_from_failure(exc: BaseException, cls: type[PagingMachine], printed: str,
                          seconds: float, shrink_seconds: float) -> Verdict:
    failures = _failures(exc)
    violated: list[str] = []
    parts: list[str] = []
    for failure in failures:
        notes = "\n".join(getattr(failure, "__notes__", []))
        for name in getattr(failure, "violated", ()):
            if name not in violated:
                violated.append(name)
        if hasattr(failure, "violated"):  # a check failed (or z3 could not decide one)
            parts.append(f"{notes}\n{failure}".strip())
        else:  # the harness itself broke: not a verdict on the model
            parts.append(f"{notes}\n{''.join(traceback.format_exception(failure))}".strip())
    if not all(hasattr(f, "violated") for f in failures):
        kind = Kind.ERROR
    elif all(isinstance(f, SolverUnknownError) for f in failures):
        kind = Kind.UNKNOWN
    else:
        kind = Kind.COUNTEREXAMPLE
    detail = "\n\n".join(parts)
    printed = printed.strip()
    if "more than five minutes working to shrink" in printed:
        printed = (f"(hypothesis stopped shrinking at this run's limit of {shrink_seconds:g} s; "
                   "its own message says five minutes)")
    if printed:
        detail += "\n\n" + printed
    detail += f"\n\n({cls.stats.summary()}; {seconds:.1f} s CPU)"
    head = "; ".join(str(f).splitlines()[0] for f in failures)
    summary = {Kind.COUNTEREXAMPLE: f"counterexample: {head}",
               Kind.UNKNOWN: f"unknown: {head}",
               Kind.ERROR: f"error: {type(failures[0]).__name__}: {head}"}[kind]
    return Verdict(kind, summary[:300], detail=detail, violated=tuple(violated),
                   examples=cls.examples)


def obligations() -> Iterator[Obligation]:
    yield Obligation("paging_machine.refinement", "virtual_memory", "all", "refinement",
                     run=lambda profile: run_machine(profile))


__all__ = ["Harness", "PagingMachine", "run_machine", "obligations", "Stats", "CheckError",
           "InvariantViolationError", "TransitionError", "SolverUnknownError", "AbstractionError"]
