"""Is a concurrent history linearizable against the sequential model?

The search is Wing and Gong's ("Testing and verifying concurrent objects",
JPDC 1993): pick a call that no other remaining call precedes in real time,
let it take effect on the model state (its reply must be one the model allows
there), recurse; backtrack when no call can come next; succeed when every
completed call has taken effect (a pending call may take effect or not: its
thread saw no reply). With Lowe's memoization ("Testing for linearizability",
CCPE 2017, section 3): a configuration is the set of calls linearized (a
bitset) and the model state (its key), and a configuration met once is never
searched again, whatever order of calls led to it. Porcupine and Knossos
search the same way (Porcupine: checker.go, checkSingle; the cache of
(linearized bitset, state)).

P-compositionality (Herlihy and Wing's locality, Lowe section 4; Porcupine's
partitioning): a history is linearizable iff each object's sub-history is,
when the objects are independent. Calls are grouped by the objects their
footprints name (SequentialSpec.footprint; connected components of the
"shares an object" relation) and each group is searched alone, from the
initial state.

A budget (nodes and CPU seconds, shared by the groups) bounds the search;
running out gives UNDECIDED, never LINEARIZABLE. CPU time, not wall time: on
a shared machine other processes would otherwise decide which histories are
undecided. A history that is not linearizable comes with the longest
linearizable prefixes found (the sequential orders that came closest) and,
after the first of them, every call that could have come next with the reply
it got and the reply the model gives there.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum

from proofs.concurrency.history import Call, History
from proofs.concurrency.lanes import lanes
from proofs.concurrency.sequential import SequentialSpec
from proofs.concurrency.world import Reply, Snapshot, show_reply

#: How many closest orders a verdict keeps.
CLOSEST = 3
_INF = float("inf")


class Outcome(Enum):
    LINEARIZABLE = "linearizable"
    NOT_LINEARIZABLE = "not linearizable"
    UNDECIDED = "undecided within budget"


@dataclass(frozen=True, slots=True)
class Budget:
    """The most search nodes and CPU seconds (this process's) one history may take."""

    nodes: int = 200_000
    seconds: float = 2.0


#: The budget check() uses unless told otherwise.
DEFAULT_BUDGET = Budget()

@dataclass(frozen=True, slots=True)
class Blocked:
    """A call that could come next after the closest order, and why it could not:
    its reply (None: pending) and the model's reply there."""

    call: int
    reply: Reply | None
    expected: Reply


@dataclass(frozen=True)
class Verdict:
    """The answer for one history; call numbers index ``History.calls``."""

    outcome: Outcome
    #: LINEARIZABLE: one witness order per independent group (pending calls that
    #: took effect included). Otherwise the longest linearizable prefixes found,
    #: of the group that failed or ran out (up to CLOSEST).
    orders: tuple[tuple[int, ...], ...]
    blocked: tuple[Blocked, ...]
    groups: int
    nodes: int
    seconds: float

    @property
    def linearizable(self) -> bool:
        return self.outcome is Outcome.LINEARIZABLE

    def explain(self, history: History) -> str:
        """The verdict in words: the closest order and the calls that failed after it."""
        lines = [f"{self.outcome.value} ({self.groups} group(s), {self.nodes} nodes, "
                 f"{self.seconds * 1000:.1f} ms)"]
        if self.outcome is Outcome.LINEARIZABLE:
            return lines[0]
        if self.orders:
            lines.append("closest order: " + "; ".join(str(history.calls[i])
                                                        for i in self.orders[0]))
        for block in self.blocked:
            lines.append(f"  next could be {history.calls[block.call]}, "
                         f"but the model answers {show_reply(block.expected)}")
        lines.append(lanes(history, marked=frozenset(block.call for block in self.blocked)))
        return "\n".join(lines)


def groups(history: History, spec: SequentialSpec) -> list[list[int]]:
    """The calls in independent groups: connected by a shared object (union-find)."""
    parent: dict[str, str] = {}

    def root(name: str) -> str:
        # Path halving; each step moves up, so at most len(parent) steps.
        for _ in range(len(parent) + 1):
            up = parent.setdefault(name, name)
            if up == name:
                break
            parent[name] = parent.setdefault(up, up)
            name = parent[name]
        return name

    prints = [sorted(spec.footprint(call.op)) for call in history.calls]
    for objects in prints:
        for other in objects[1:]:
            parent[root(other)] = root(objects[0])
    grouped: dict[str, list[int]] = {}
    for index, objects in enumerate(prints):
        grouped.setdefault(root(objects[0]), []).append(index)
    return sorted(grouped.values())


def check(history: History, spec: SequentialSpec, budget: Budget = DEFAULT_BUDGET, *,
          compositional: bool = True) -> Verdict:
    """Decide whether history is linearizable (module docstring)."""
    spec.name_frames((call.op, call.reply) for call in history.calls)
    parts = groups(history, spec) if compositional else [list(range(len(history)))]
    search = _Search(spec, budget)
    witnesses: list[tuple[int, ...]] = []
    undecided: _Result | None = None
    for part in parts:
        result = search.run([history.calls[i] for i in part], part)
        if result.outcome is Outcome.NOT_LINEARIZABLE:
            return search.verdict(result, len(parts))
        if result.outcome is Outcome.UNDECIDED:
            undecided = result  # the budget is spent: the groups left stay unsearched
            break
        else:
            witnesses.append(result.orders[0])
    if undecided is not None:
        return search.verdict(undecided, len(parts))
    return Verdict(Outcome.LINEARIZABLE, tuple(witnesses), (), len(parts), search.nodes,
                   search.elapsed())


@dataclass(frozen=True)
class _Result:
    outcome: Outcome
    orders: tuple[tuple[int, ...], ...]
    blocked: tuple[Blocked, ...] = ()


class _Search:
    """Wing and Gong's search with Lowe's cache over one group at a time."""

    def __init__(self, spec: SequentialSpec, budget: Budget) -> None:
        self.spec = spec
        self.budget = budget
        self.nodes = 0
        self.started = time.perf_counter()
        self.deadline = time.process_time() + budget.seconds

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def verdict(self, result: _Result, parts: int) -> Verdict:
        return Verdict(result.outcome, result.orders, result.blocked, parts, self.nodes,
                       self.elapsed())

    def run(self, calls: list[Call], numbers: list[int]) -> _Result:
        """Search one group; numbers are its calls' numbers in the whole history."""
        by_start = sorted(range(len(calls)), key=lambda i: calls[i].invoked)
        calls = [calls[i] for i in by_start]
        numbers = [numbers[i] for i in by_start]
        returned = [_INF if c.returned is None else c.returned for c in calls]
        required = sum(1 << i for i, c in enumerate(calls) if not c.pending)
        if not required:  # only pending calls: none of them need have taken effect
            return _Result(Outcome.LINEARIZABLE, ((),))
        spec = self.spec
        start = spec.initial
        seen = {(0, start.key)}
        path: list[int] = []
        best: list[tuple[int, ...]] = [()]
        best_state, best_done = start, 0
        stack: list[Iterator[tuple[int, Snapshot]]] = [self._next(calls, returned, 0, start)]
        masks = [0]
        out_of_budget = False
        # Each configuration (bitset, state) is entered once (seen), and there
        # are finitely many: the loop ends; the budget ends it sooner.
        while stack:
            step = next(stack[-1], None)
            if step is None:
                stack.pop()
                masks.pop()
                if path:
                    path.pop()
                continue
            index, state = step
            mask = masks[-1] | 1 << index
            if (mask, state.key) in seen:
                continue
            seen.add((mask, state.key))
            self.nodes += 1
            # The clock is read at every node: a node may cost a model run (a
            # millisecond with a process in the world), so reading it is cheap.
            if self.nodes >= self.budget.nodes or time.process_time() > self.deadline:
                out_of_budget = True
                break
            path.append(index)
            done = (mask & required).bit_count()
            if done > best_done:
                best_done, best, best_state = done, [tuple(path)], state
            elif done == best_done and len(best) < CLOSEST:
                best.append(tuple(path))
            if mask & required == required:
                return _Result(Outcome.LINEARIZABLE, (tuple(numbers[i] for i in path),))
            stack.append(self._next(calls, returned, mask, state))
            masks.append(mask)
        orders = tuple(tuple(numbers[i] for i in order) for order in best)
        blocked = self._blocked(calls, returned, numbers, best[0], best_state)
        return _Result(Outcome.UNDECIDED if out_of_budget else Outcome.NOT_LINEARIZABLE,
                       orders, blocked)

    def _next(self, calls: list[Call], returned: list[float], mask: int,
              state: Snapshot) -> Iterator[tuple[int, Snapshot]]:
        """(call, state after it) for every call that may take effect next."""
        first_return = min((r for i, r in enumerate(returned) if not mask >> i & 1),
                           default=_INF)
        outcomes = self.spec.outcomes
        for i, call in enumerate(calls):
            if call.invoked > first_return:
                break  # sorted by invocation: every later call is preceded too
            if mask >> i & 1:
                continue
            for after in outcomes(state, call.op, call.reply):
                yield i, after

    def _blocked(self, calls: list[Call], returned: list[float], numbers: list[int],
                 order: tuple[int, ...], state: Snapshot) -> tuple[Blocked, ...]:
        """After order (which leaves state), the calls that could come next and the
        model's replies to them."""
        spec = self.spec
        mask = sum(1 << index for index in order)
        first_return = min((r for i, r in enumerate(returned) if not mask >> i & 1),
                           default=_INF)
        return tuple(Blocked(numbers[i], call.reply, spec.expected(state, call.op))
                     for i, call in enumerate(calls)
                     if not mask >> i & 1 and call.invoked <= first_return
                     and not call.pending)
