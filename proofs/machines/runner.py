"""How every refinement machine is run: its budget per profile, the hypothesis
settings, broken models patched in, and the run that turns a machine into a
:class:`~proofs.obligation.Verdict` (how a step is judged: :mod:`.checks`).

A machine run is evidence, never proof, and its verdict says so honestly
(DESIGN.md, "Three layers"): no counterexample in *K* examples, where *K* is the
number of examples the machine itself counted; a check that failed is a
counterexample naming what it broke (:class:`CheckError` and its ``violated``
ids); z3's unknown is unknown; anything else is an error of the harness, with
its traceback, never a pass.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import time
import traceback
from collections import Counter
from collections.abc import Callable, Hashable, Iterator, Mapping
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase
from hypothesis.internal.conjecture import engine as hypothesis_engine
from hypothesis.stateful import RuleBasedStateMachine, run_state_machine_as_test

from proofs.machines.checks import CheckError, SolverUnknownError
from proofs.obligation import Kind, Obligation, Verdict
from proofs.runner import cache as proof_cache

# -- the machine -----------------------------------------------------------------------

def every_rule_enabled(machine: RuleBasedStateMachine) -> None:
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


class CheckedMachine(RuleBasedStateMachine):
    """A machine whose run counts its examples and outcomes and keeps a verdict
    cache; :func:`run_machine` gives every run a fresh subclass, so nothing
    carries over from one run to the next.

    ``swarm``: hypothesis' swarm testing (each example disables a random subset
    of the rules) diversifies long runs, but makes a run of a few examples a
    lottery; a :class:`Budget` says whether its profile wants it."""

    examples: ClassVar[int] = 0
    #: (what, key) -> names of the failed checks; keys are abstract snapshots.
    cache: ClassVar[dict[Hashable, tuple[str, ...]]] = {}
    outcomes: ClassVar[Counter[str]] = Counter()
    swarm: ClassVar[bool] = True

    def __init__(self) -> None:
        super().__init__()
        if not type(self).swarm:
            every_rule_enabled(self)

    @classmethod
    def cost(cls) -> str:
        """What the run covered, for a passing verdict's detail."""
        return "calls: " + ", ".join(f"{k} {n}" for k, n in sorted(cls.outcomes.items()))


# -- budgets and settings --------------------------------------------------------------

@dataclass(frozen=True)
class Budget:
    """One profile's budget of a machine: examples, steps per example, the wall
    seconds hypothesis may spend shrinking a counterexample (its own limit is
    300 s; every shrink attempt re-runs z3 queries), and swarm testing."""

    examples: int
    steps: int
    shrink_seconds: float
    swarm: bool = True


#: A machine's budget per profile ("quick", "full"; "teeth", where the broken
#: models' tests want a larger derandomized run than quick's).
Budgets = Mapping[str, Budget]


def machine_settings(profile: str, budget: Budget, *, max_examples: int | None = None,
                     steps: int | None = None, shrink: bool = True) -> settings:
    """Hypothesis settings for one run: derandomized (reproducible in CI) in every
    profile but full; in full, the example database under the proof cache's
    directory when ``python -m proofs.check`` runs with one (a failure found once
    is replayed first by every later run; machines' verdicts themselves are never
    cached; a derandomized run has no database, hypothesis' rule), none
    otherwise; the smallest failure only (a broken model is one bug, and
    shrinking each distinct failure would multiply the time)."""
    cache = proof_cache.active()
    database = None if cache is None or profile != "full" else DirectoryBasedExampleDatabase(
        str(cache.directory / "hypothesis"))
    return settings(
        max_examples=max_examples or budget.examples,
        stateful_step_count=steps or budget.steps,
        deadline=None, derandomize=profile != "full", database=database,
        suppress_health_check=list(HealthCheck), print_blob=False,
        report_multiple_bugs=False,
        phases=[phase for phase in Phase
                if phase is not Phase.explain and (shrink or phase is not Phase.shrink)])


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


# -- broken models ---------------------------------------------------------------------

class ModelVariant(NamedTuple):
    """A broken model: its name, the ids it may be caught as (any one), its patches
    ("Class.method" -> replacement)."""

    name: str
    catches: tuple[str, ...]
    patches: Mapping[str, object]


def _resolve(target: str, owners: Mapping[str, type]) -> tuple[type, str]:
    """("Class.method", Class in owners, or "package.module.Class.method") ->
    (owner, attribute)."""
    owner_path, _, attribute = target.rpartition(".")
    if owner_path in owners:
        return owners[owner_path], attribute
    module_path, _, class_name = owner_path.rpartition(".")
    owner: type = getattr(importlib.import_module(module_path), class_name)
    return owner, attribute


@contextlib.contextmanager
def patched_methods(patches: Mapping[str, object], owners: Mapping[str, type]) -> Iterator[None]:
    """Replace model methods for the duration (broken models); always restored,
    an attribute a class did not define itself deleted again."""
    saved: list[tuple[type, str, object]] = []
    try:
        for target, replacement in patches.items():
            owner, attribute = _resolve(target, owners)
            saved.append((owner, attribute, vars(owner).get(attribute)))
            setattr(owner, attribute, replacement)
        yield
    finally:
        for owner, attribute, original in reversed(saved):
            if original is None:
                delattr(owner, attribute)
            else:
                setattr(owner, attribute, original)


# -- the run ---------------------------------------------------------------------------

def run_machine(machine: type[CheckedMachine], profile: str, budgets: Budgets,
                patches: Mapping[str, object] | None = None,
                owners: Mapping[str, type] | None = None, *,
                max_examples: int | None = None, steps: int | None = None,
                shrink_seconds: float | None = None, shrink: bool = True,
                fresh: Mapping[str, object] | None = None) -> Verdict:
    """Run ``machine`` on the model (methods replaced by ``patches``, "Class.method"
    with Class among ``owners`` or a dotted path; restored afterwards) within the
    profile's budget, and return its verdict. ``fresh`` holds more class
    attributes a run starts from (a machine's own statistics)."""
    if profile not in budgets:
        raise ValueError(f"unknown profile {profile!r}; expected one of {tuple(budgets)}")
    budget = budgets[profile]
    cls: type[CheckedMachine] = type(machine.__name__, (machine,), {
        "examples": 0, "cache": {}, "outcomes": Counter(), "swarm": budget.swarm,
        **(fresh or {})})
    options = machine_settings(profile, budget, max_examples=max_examples, steps=steps,
                               shrink=shrink)
    limit = shrink_seconds or budget.shrink_seconds
    out = io.StringIO()
    start = time.process_time()
    try:
        with (patched_methods(patches or {}, owners or {}), contextlib.redirect_stdout(out),
              shrink_limit(limit)):
            run_state_machine_as_test(cls, settings=options)
    except Exception as exc:  # noqa: BLE001 - every failure becomes a verdict
        return failure_verdict(exc, out.getvalue(), cls.examples,
                               f"{cls.cost()}; {time.process_time() - start:.1f} s CPU", limit)
    return Verdict(Kind.NO_COUNTEREXAMPLE, f"no counterexample in {cls.examples} examples",
                   detail=f"{time.process_time() - start:.1f} s CPU; {cls.cost()}",
                   examples=cls.examples)


def _failures(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        found: list[BaseException] = []
        for inner in exc.exceptions:
            found += _failures(inner)
        return found
    return [exc]


def failure_verdict(exc: BaseException, printed: str, examples: int, cost: str = "",
                    shrink_seconds: float | None = None) -> Verdict:
    """The verdict of a run that raised: a counterexample when a check failed
    (naming every id it broke), unknown when z3 could not decide, an error (with
    the traceback) when the harness itself broke."""
    failures = _failures(exc)
    violated: list[str] = []
    parts: list[str] = []
    for failure in failures:
        notes = "\n".join(getattr(failure, "__notes__", []))
        for name in getattr(failure, "violated", ()):
            if name not in violated:
                violated.append(name)
        if isinstance(failure, CheckError | SolverUnknownError):
            parts.append(f"{notes}\n{failure}".strip())
        else:  # the harness itself broke: not a verdict on the model
            parts.append(f"{notes}\n{''.join(traceback.format_exception(failure))}".strip())
    if not all(isinstance(f, CheckError | SolverUnknownError) for f in failures):
        kind = Kind.ERROR
    elif all(isinstance(f, SolverUnknownError) for f in failures):
        kind = Kind.UNKNOWN
    else:
        kind = Kind.COUNTEREXAMPLE
    detail = "\n\n".join(parts)
    printed = printed.strip()
    if "more than five minutes working to shrink" in printed:
        limit = "" if shrink_seconds is None else f" of {shrink_seconds:g} s"
        printed = (printed.split("WARNING:")[0].strip() + "\n\n(hypothesis stopped shrinking "
                   f"at this run's limit{limit}; its own message says five minutes)")
    if printed:
        detail += "\n\n" + printed
    if cost:
        detail += f"\n\n({cost})"
    head = "; ".join(str(f).splitlines()[0] if str(f) else type(f).__name__ for f in failures)
    summary = {Kind.COUNTEREXAMPLE: f"counterexample: {head}",
               Kind.UNKNOWN: f"unknown: {head}",
               Kind.ERROR: f"error: {type(failures[0]).__name__}: {head}"}[kind]
    return Verdict(kind, summary[:300], detail=detail, violated=tuple(violated),
                   examples=examples)


def machine_obligation(ident: str, manager: str, run: Callable[[str], Verdict]) -> Obligation:
    """The refinement obligation of a machine: ``run(profile)`` is its verdict."""
    return Obligation(ident, manager, "all", "refinement", run=run)
