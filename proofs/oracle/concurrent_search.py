"""Search for a non-linearizable history, shrink it, stress it.

:func:`search` lets hypothesis draw plans (proofs/oracle/concurrent_plan.py),
runs each on a fresh child (proofs/oracle/concurrent.py, :func:`run_plan`)
and fails an example whose history is not linearizable or whose run broke the
protocol; hypothesis then shrinks the plan (fewer threads, fewer calls). A
data race is nondeterministic: one run of a plan may pass where the next
fails. So each example is run up to ``attempts`` times (it fails as soon as one
run does), and the search keeps every failing run it saw and reports the
smallest (threads, then calls): hypothesis' own last replay of its shrunk
example may pass, which it calls flaky; the smallest failure seen is real all
the same, with its recorded history. Where hypothesis' shrinking stalls on a
failure that shows rarely, :func:`shrink_more` goes on greedily within the
shrink time (drop a thread, then a call; a candidate counts as failing when one
of ``2 * attempts`` runs fails). An UNDECIDED history is never a pass: it is
kept and reported as undecided when nothing failed.

:func:`stress` replays one plan N times and counts the failures (how often the
race shows).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as seeded
from hypothesis.errors import Flaky

from proofs.concurrency.linearize import DEFAULT_BUDGET, Budget
from proofs.oracle.concurrent import Judged, run_plan
from proofs.oracle.concurrent_plan import Plan, Round, Step, plans

#: The note when hypothesis finds the failure flaky.
FLAKY = ("hypothesis: {} (a race does not show on every run; the smallest failing run seen "
         "is reported)")


class DivergedError(Exception):
    """An example's run failed (only this ends a search quietly: any other
    exception is the oracle's own bug and propagates)."""


@dataclass
class Found:
    """What a search found: the smallest failing run, an undecided one, counts."""

    failure: Judged | None = None
    undecided: Judged | None = None
    examples: int = 0
    runs: int = 0
    seconds: float = 0.0
    #: The first failing plan, before shrinking: (threads, calls).
    first_size: tuple[int, int] | None = None
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SearchOptions:
    threads: int = 4
    calls: int = 12
    heap: bool = False
    pool: bool = False
    max_examples: int = 200
    time_limit: float = 120.0
    shrink_seconds: float = 30.0
    attempts: int = 3
    seed: int = 0
    timeout: float = 5.0
    budget: Budget = DEFAULT_BUDGET


def search(impl: str, config: Mapping[str, Any], options: SearchOptions,
           progress: Callable[[Found], None] | None = None) -> Found:
    """Draw, run, judge and shrink plans (module docstring)."""
    found = Found()
    started = time.monotonic()
    stop_at = started + options.time_limit
    shrink_until: list[float] = []

    def one(plan: Plan) -> None:
        now = time.monotonic()
        if now > stop_at and found.failure is None:
            return  # out of time: the examples left pass unrun
        if shrink_until and now > shrink_until[0]:
            return  # shrinking's time is up: the smallest failure so far stands
        found.examples += 1
        for _ in range(options.attempts):
            found.runs += 1
            judged = run_plan(impl, plan, config, heap=options.heap, timeout=options.timeout,
                              budget=options.budget, pool=options.pool)
            if judged.failed:
                _keep(found, judged)
                if not shrink_until:
                    shrink_until.append(time.monotonic() + options.shrink_seconds)
                raise DivergedError(f"diverged: {plan}")
            if judged.undecided and found.undecided is None:
                found.undecided = judged
        if progress is not None and found.examples % 20 == 0:
            progress(found)

    test = settings(max_examples=options.max_examples, deadline=None, database=None,
                    phases=(Phase.generate, Phase.shrink), report_multiple_bugs=False,
                    suppress_health_check=list(HealthCheck))(
        given(plans(options.threads, options.calls, options.heap, options.pool))(one))
    try:
        seeded(options.seed)(test)()
    except DivergedError:
        pass  # the failure is in found
    except BaseExceptionGroup as group:  # hypothesis' FlakyFailure is an ExceptionGroup
        if group.split(DivergedError)[1] is not None or found.failure is None:
            raise  # not a run that failed: the oracle's own bug
        found.notes.append(FLAKY.format(type(group).__name__))
    except Flaky as error:  # the shrunk example passed when replayed
        if found.failure is None:
            raise
        found.notes.append(FLAKY.format(type(error).__name__))
    if found.failure is not None:
        shrink_more(impl, config, options, found,
                    (shrink_until[0] if shrink_until else time.monotonic()
                     + options.shrink_seconds))
    found.seconds = time.monotonic() - started
    return found


def smaller(plan: Plan) -> list[Plan]:
    """The plans one step smaller: a round dropped (the first stays), a thread
    dropped (down to two), a call of the prefix, then one call (a thread keeps
    one at least)."""
    rounds = plan.rounds

    def made(new: tuple[Round, ...], prefix: tuple[Step, ...] = plan.prefix) -> Plan:
        return Plan(new[0], prefix, new[1:])

    out = [made(rounds[:r] + rounds[r + 1:]) for r in range(1, len(rounds))]
    for r, threads in enumerate(rounds):
        if len(threads) > 2:
            out += [made(rounds[:r] + (threads[:n] + threads[n + 1:],) + rounds[r + 1:])
                    for n in range(len(threads))]
    out += [made(rounds, plan.prefix[:n] + plan.prefix[n + 1:])
            for n in range(len(plan.prefix))]
    for r, threads in enumerate(rounds):
        for t, steps in enumerate(threads):
            if len(steps) > 1:
                out += [made(rounds[:r] + (threads[:t] + (steps[:n] + steps[n + 1:],)
                                           + threads[t + 1:],) + rounds[r + 1:])
                        for n in range(len(steps))]
    return out


def shrink_more(impl: str, config: Mapping[str, Any], options: SearchOptions, found: Found,
                deadline: float) -> None:
    """Greedy shrinking of found's failure until no smaller plan fails or the
    deadline passes (module docstring)."""
    assert found.failure is not None
    progress = True
    while progress and time.monotonic() < deadline:
        progress = False
        for candidate in smaller(found.failure.plan):
            for _ in range(2 * options.attempts):
                if time.monotonic() >= deadline:
                    return
                found.runs += 1
                judged = run_plan(impl, candidate, config, heap=options.heap,
                                  timeout=options.timeout, budget=options.budget,
                                  pool=options.pool)
                if judged.failed:
                    _keep(found, judged)
                    progress = True
                    break
            if progress:
                break


def _keep(found: Found, judged: Judged) -> None:
    if found.first_size is None:
        found.first_size = judged.plan.size()
    if found.failure is None or judged.plan.size() < found.failure.plan.size():
        found.failure = judged


@dataclass
class Stressed:
    runs: int
    failures: int
    undecided: int
    first_failure: Judged | None


def stress(impl: str, plan: Plan, config: Mapping[str, Any], runs: int, *, heap: bool,
           timeout: float, budget: Budget = DEFAULT_BUDGET, pool: bool = False) -> Stressed:
    """Run plan runs times on fresh children; how many runs failed."""
    failures = undecided = 0
    first: Judged | None = None
    for _ in range(runs):
        judged = run_plan(impl, plan, config, heap=heap, timeout=timeout, budget=budget,
                          pool=pool)
        if judged.failed:
            failures += 1
            first = first or judged
        elif judged.undecided:
            undecided += 1
    return Stressed(runs, failures, undecided, first)
