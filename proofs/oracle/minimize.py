"""Delta debugging of a divergence's trace by replay (docs/oracle.md, "Minimal traces").

Hypothesis' shrinker works on its own choice sequence; what it returns is
often longer than needed (a failed call that changes nothing, a call whose
only use was to feed a later one). :func:`minimize` then shrinks the trace's
steps (after the family's set-up calls) by replaying candidates in a fresh
implementation: Zeller and Hildebrandt's ddmin ("Simplifying and Isolating
Failure-Inducing Input", IEEE TSE 2002: subsets, then complements, then finer
partitions), then removal of single steps until none can go. A candidate is
kept only if its replay diverges in the SAME bucket
(:func:`proofs.oracle.buckets.bucket_of`), so the trace stays the trace of
that bug. When every single removal was tried and failed the trace is
1-minimal; when the time budget ends first the result says so.

Steps that name an earlier step's result (a pointer, a frame address, a pid,
a handle) are replayed with that result as the candidate's replay returned
it: when an earlier step is removed, a later allocation may land elsewhere,
and the trace stored the address the original run got. Where a number only
happens to equal an earlier result, the candidate is also tried with the
arguments as stored.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from proofs.oracle.buckets import Bucket, bucket_of
from proofs.oracle.session import (
    DivergenceError,
    Exchange,
    OracleUnknownError,
    Session,
    unplaced,
)

Step = dict[str, Any]
#: How a divergence is judged the same bug: its bucket.
Judge = Callable[[DivergenceError], bool]


@dataclass
class Minimal:
    """What :func:`minimize` returns."""

    steps: list[Step]
    #: The replay of ``steps``: the divergence the report shows.
    divergence: DivergenceError
    #: Every single removal was tried (the trace is 1-minimal).
    minimal: bool
    replays: int


def _result(exchanges: list[Exchange]) -> Any:
    """The result of the first operation among exchanges (strict mode: the model's,
    which the implementation's must equal)."""
    for exchange in exchanges:
        if "op" in exchange.request:
            reply = exchange.reply if exchange.reply is not None else exchange.expected
            return None if reply is None else reply.get("result")
    return None


def _reference(value: Any) -> bool:
    return type(value) is int


def _substituted(step: Step, names: dict[int, int]) -> Step:
    if not names:
        return step
    if "look" in step:
        look = step["look"]
        return {"look": {**look, "virtual_addr": names.get(look["virtual_addr"],
                                                           look["virtual_addr"])}}
    return {**step, "args": {k: names.get(v, v) if _reference(v) else v
                             for k, v in step["args"].items()}}


def run_steps(new: Callable[[], Session], steps: list[Step], originals: list[Any] | None
              ) -> tuple[Exception | None, list[Any], bool]:
    """Set up, send steps (renaming earlier results when originals, the results
    the steps had in the original run, are given) and finish: what was raised
    (a divergence, an undecided step, None), the steps' results, whether an
    argument was renamed."""
    names: dict[int, int] = {}
    results: list[Any] = []
    renamed = False
    session: Session | None = None
    try:
        session = new()
        session.setup()
        for n, step in enumerate(steps):
            sent = _substituted(step, names)
            renamed = renamed or sent != step
            before = len(session.exchanges)
            if "look" in sent:
                session.look(sent["look"]["virtual_addr"], sent["look"]["length"])
            elif "inspect" in sent:
                session.inspect(sent["inspect"], sent["args"])
            elif sent["manager"] in session.managers:
                session.execute(sent["manager"], sent["op"], sent["args"])
            result = _result(session.exchanges[before:])
            results.append(result)
            old = originals[n] if originals is not None else None
            if isinstance(old, int) and _reference(old) and _reference(result) \
                    and old != result:
                names[old] = int(result)
        session.finish()
    except (DivergenceError, OracleUnknownError) as exc:
        return exc, results, renamed
    finally:
        if session is not None:
            session.close()
    return None, results, renamed


class _Replayer:
    """Candidates (tuples of indices into the trace) replayed, each once."""

    def __init__(self, new: Callable[[], Session], steps: list[Step], same: Judge,
                 deadline: float) -> None:
        self.new, self.steps, self.same, self.deadline = new, steps, same, deadline
        self.originals: list[Any] = [None] * len(steps)
        self.seen: dict[tuple[int, ...], DivergenceError | None] = {}
        self.replays = 0

    def out_of_time(self) -> bool:
        return time.monotonic() > self.deadline

    def __call__(self, keep: tuple[int, ...]) -> DivergenceError | None:
        if keep in self.seen:
            return self.seen[keep]
        steps = [self.steps[i] for i in keep]
        originals = [self.originals[i] for i in keep]
        self.replays += 1
        raised, _, renamed = run_steps(self.new, steps, originals)
        found = raised if isinstance(raised, DivergenceError) and self.same(raised) else None
        if found is None and renamed and not self.out_of_time():
            self.replays += 1
            raised, _, _ = run_steps(self.new, steps, None)
            found = raised if isinstance(raised, DivergenceError) and self.same(raised) \
                else None
        self.seen[keep] = found
        return found


def _ddmin(test: _Replayer, keep: tuple[int, ...], best: DivergenceError
           ) -> tuple[tuple[int, ...], DivergenceError]:
    """Zeller's ddmin over keep (the candidate indices), within the deadline."""
    n = 2
    while len(keep) >= 2 and not test.out_of_time():
        size = -(-len(keep) // n)
        parts = [keep[i:i + size] for i in range(0, len(keep), size)]
        candidates = parts + ([tuple(x for p in parts[:i] + parts[i + 1:] for x in p)
                               for i in range(len(parts))] if len(parts) > 2 else [])
        for number, candidate in enumerate(candidates):
            found = test(candidate)
            if found is not None:
                keep, best = candidate, found
                n = 2 if number < len(parts) else max(n - 1, 2)
                break
            if test.out_of_time():
                return keep, best
        else:
            if n >= len(keep):
                break
            n = min(2 * n, len(keep))
    return keep, best


def minimize(new: Callable[[], Session], steps: list[Step], bucket: Bucket, family: str,
             seconds: float) -> Minimal | None:
    """The smallest trace of bucket found within seconds (None: the steps, replayed,
    do not diverge in that bucket: a bug that does not reproduce by replay)."""
    deadline = time.monotonic() + seconds
    test = _Replayer(new, steps, lambda d: bucket_of(d, family) == bucket, deadline)
    raised, results, _ = run_steps(new, steps, None)
    test.replays += 1
    if not isinstance(raised, DivergenceError) or bucket_of(raised, family) != bucket:
        return None
    test.originals = results + [None] * (len(steps) - len(results))
    # the step that diverged is the last kept (results stop before it)
    keep: tuple[int, ...] = tuple(range(min(len(results) + 1, len(steps))))
    best = raised
    for candidate in [()] if keep else []:
        found = test(candidate)
        if found is not None:
            keep, best = candidate, found
    keep, best = _ddmin(test, keep, best)
    minimal = False
    while not test.out_of_time():  # single removals to a fixpoint
        for i in range(len(keep)):
            found = test(keep[:i] + keep[i + 1:])
            if found is not None:
                keep, best = keep[:i] + keep[i + 1:], found
                break
            if test.out_of_time():
                break
        else:
            minimal = True
            break
    if unplaced(best.exchanges):  # stderr read while several requests were pending:
        # the run is in step now (Coverage.lockstep), a replay places every line
        raised, _, _ = run_steps(new, [steps[i] for i in keep], None)
        test.replays += 1
        if isinstance(raised, DivergenceError) and bucket_of(raised, family) == bucket:
            best = raised
    return Minimal([steps[i] for i in keep], best, minimal, test.replays)
