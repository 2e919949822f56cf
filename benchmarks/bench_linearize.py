"""Cost of the linearizability checker (proofs/concurrency/) per history.

Run from the repository root:

    .venv/bin/python benchmarks/bench_linearize.py [--histories N] [--markdown]

For each mix of calls (proofs/concurrency/generate.py: ``kernel`` is
RequestFrame, FreeFrame, Alloc, Free, AllocBlock and FreeBlock; ``frames``
and ``shared`` the PageManager's and the SharedMemoryManager's calls) and each
seed, a sequential run of 4 threads x 25 calls on the model is given random
overlapping intervals (a thread's last call left pending one time in four):
that history is linearizable. ``wide`` gives every call the widest interval
its thread allows, so each call overlaps the neighbouring calls of every other
thread (the most orders to try). A copy with one reply changed
(``corrupt``) is checked too: mostly not linearizable, which the search must
prove by exhausting every order the memo does not cut. Checking uses
Matching.ANY_FREE_FRAME (the mode a real allocator needs) and the default
budget (200,000 nodes, 2 CPU seconds). Reported per mix and kind: the
verdicts, and the wall time per history (median, p90, max), the search nodes
and model runs (cache misses: thawing a snapshot, running the call,
snapshotting) at the max.
This is a measurement, not a test: it checks only that no linearizable-by-
construction history is judged otherwise.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_paging import load_average, machine_info  # noqa: E402
from proofs.concurrency.generate import corrupt, overlap, sequential_run  # noqa: E402
from proofs.concurrency.history import Call, History  # noqa: E402
from proofs.concurrency.linearize import DEFAULT_BUDGET, Outcome, check  # noqa: E402
from proofs.concurrency.sequential import Matching, SequentialSpec  # noqa: E402
from proofs.concurrency.world import World  # noqa: E402

THREADS, CALLS = 4, 25
SEED = 20261207


def widest(history: History) -> History:
    """Every call stretched to halfway to its thread's neighbours (still well formed)."""
    by_thread: dict[int, list[int]] = {}
    for index, call in enumerate(history.calls):
        by_thread.setdefault(call.thread, []).append(index)
    calls = list(history.calls)
    for indices in by_thread.values():
        mids = [(history.calls[a].returned or 0) / 2 + history.calls[b].invoked / 2
                for a, b in zip(indices, indices[1:], strict=False)]
        for k, index in enumerate(indices):
            call = calls[index]
            invoked = mids[k - 1] + 1e-6 if k else call.invoked - 1000
            returned = mids[k] - 1e-6 if k < len(mids) else call.invoked + 1000
            calls[index] = Call(call.thread, call.op, invoked,
                                None if call.pending else returned, call.reply)
    return History(tuple(sorted(calls, key=lambda c: c.invoked)))


@dataclass
class Row:
    """One mix and kind: the verdicts, and the wall time per history."""

    mix: str
    kind: str
    outcomes: dict[str, int]
    median: float
    p90: float
    max: float
    nodes: int  # search nodes of the slowest history
    runs: int  # model runs of the slowest history

    def cells(self) -> tuple[str, ...]:
        verdicts = ", ".join(f"{n} {v}" for v, n in sorted(self.outcomes.items()))
        return (self.mix, self.kind, verdicts, f"{self.median * 1000:.0f}",
                f"{self.p90 * 1000:.0f}", f"{self.max * 1000:.0f}", f"{self.nodes}, {self.runs}")


def measure(mix: str, kind: str, histories: int) -> Row:
    shared = mix == "shared"
    times: list[tuple[float, int, int]] = []
    outcomes: dict[str, int] = {}
    for n in range(histories):
        rng = random.Random(f"{SEED}-{mix}-{n}")
        history = overlap(rng, sequential_run(rng, World(shared=shared), THREADS, CALLS, mix),
                          pending=0.25)
        if kind.startswith("wide"):
            history = widest(history)
        if kind.endswith("corrupt"):
            history, _ = corrupt(rng, history)
        spec = SequentialSpec(World(shared=shared), Matching.ANY_FREE_FRAME)
        start = time.perf_counter()
        verdict = check(history, spec)
        seconds = time.perf_counter() - start
        if not kind.endswith("corrupt") and verdict.outcome is Outcome.NOT_LINEARIZABLE:
            raise SystemExit(f"{mix}/{kind} #{n}: a model run judged not linearizable\n"
                             + verdict.explain(history))
        outcomes[verdict.outcome.value] = outcomes.get(verdict.outcome.value, 0) + 1
        times.append((seconds, verdict.nodes, spec.model_runs))
    times.sort()
    worst = times[-1]
    return Row(mix, kind, outcomes, statistics.median(t for t, _, _ in times),
               times[min(len(times) - 1, int(0.9 * len(times)))][0], worst[0], worst[1],
               worst[2])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--histories", type=int, default=50, help="histories per row")
    parser.add_argument("--mixes", default="kernel,frames,shared")
    parser.add_argument("--markdown", action="store_true", help="a table for the docs")
    args = parser.parse_args()
    rows = [measure(mix, kind, args.histories) for mix in args.mixes.split(",")
            for kind in ("linearizable", "corrupt", "wide", "wide-corrupt")]
    print(f"{THREADS} threads x {CALLS} calls, {args.histories} histories a row, budget "
          f"{DEFAULT_BUDGET.nodes} nodes / {DEFAULT_BUDGET.seconds:g} CPU s; "
          f"load {load_average()}")
    if args.markdown:
        for name, value in machine_info():
            print(f"- {name}: {value}")
        print("\n| mix | histories | verdicts | median ms | p90 ms | max ms "
              "| nodes, model runs at max |")
        print("|---|---|---|---|---|---|---|")
    for row in rows:
        cells = row.cells()
        print("| " + " | ".join(cells) + " |" if args.markdown else "  ".join(cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
