"""``python -m proofs.oracle concurrent``: judge an implementation's concurrency.

    python -m proofs.oracle concurrent --impl CMD [--threads N] [--calls N] [--heap] [--pool]
                                       [--max-examples N] [--time S] [--seed N]
                                       [--stress N] [--trace-out FILE]
    python -m proofs.oracle concurrent --replay FILE --impl CMD [--stress N]

The implementation must declare protocol 3 (PROTOCOL.md, "Concurrency
(protocol 3)"); one that does not is judged as before, by ``python -m
proofs.oracle --impl CMD``, and this command refuses it (exit 2). A search
draws plans of up to ``--threads`` threads and ``--calls`` calls (the frame
manager's calls; with ``--heap`` the kernel heap's too, with ``--pool`` the
pool's AllocBlock and FreeBlock, the pool made at set-up), runs each
concurrently, judges its history with the linearizability checker and shrinks
a failing one; ``--stress N`` then replays the smallest failing plan N times
and says how often it fails. A failing run is saved with ``--trace-out`` (the
plan, its history as proofs/concurrency/history.py's JSON, the verdict as
proofs/concurrency/verdict_data.py writes it: the closest orders and the calls
blocked after the first, by number); ``--html FILE`` draws it (one lane per
thread; ``memspec report TRACE.json --html OUT`` draws a saved one); ``--replay
FILE`` runs a saved plan again (N times with ``--stress``).

Exit status, as the oracle's: 0 every history linearizable (and something
ran); 1 a divergence (a history that is not linearizable, a crash, a
protocol error); 2 usage (and an implementation without protocol 3); 3
undecided (the checker's budget ran out on a history: not a pass).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from proofs.concurrency.history import to_json
from proofs.concurrency.linearize import DEFAULT_BUDGET, Budget
from proofs.concurrency.verdict_data import TRACE_FORMAT, verdict_data
from proofs.html.lanes import render_trace
from proofs.oracle.child import Child, ImplementationError, end_children_on_sigterm
from proofs.oracle.concurrent import NEEDED, Judged
from proofs.oracle.concurrent_plan import Plan
from proofs.oracle.concurrent_search import SearchOptions, Stressed, search, stress
from proofs.oracle.config import ConfigError, checked, layered

EXIT_PASS, EXIT_DIVERGED, EXIT_USAGE, EXIT_UNKNOWN = 0, 1, 2, 3


def parser_of() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m proofs.oracle concurrent",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--impl", required=True, help="the command that starts the "
                        "implementation (run by the shell)")
    parser.add_argument("--threads", type=int, default=4, help="threads at most (default 4; "
                        "no more than the hello declares)")
    parser.add_argument("--calls", type=int, default=12, help="calls at most, all threads "
                        "together (default 12)")
    parser.add_argument("--heap", action="store_true", help="KernelHeap's Alloc and Free too")
    parser.add_argument("--pool", action="store_true", help="MemoryPool's AllocBlock and "
                        "FreeBlock too (the hello must declare MemoryPool)")
    parser.add_argument("--max-examples", type=int, default=200)
    parser.add_argument("--time", type=float, default=120.0, help="seconds of search "
                        "(default 120)")
    parser.add_argument("--shrink-time", type=float, default=30.0)
    parser.add_argument("--attempts", type=int, default=3, help="runs of each example (a "
                        "race need not show on one; default 3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stress", type=int, default=0, metavar="N",
                        help="replay the failing (or --replay) plan N times")
    parser.add_argument("--request-timeout", type=float, default=5.0,
                        help="seconds a thread has to answer (then it is stopped, its call "
                             "pending)")
    parser.add_argument("--nodes", type=int, default=DEFAULT_BUDGET.nodes)
    parser.add_argument("--seconds", type=float, default=DEFAULT_BUDGET.seconds,
                        help="the checker's CPU seconds per history")
    parser.add_argument("--trace-out", type=Path, default=Path("concurrent-trace.json"))
    parser.add_argument("--html", type=Path, metavar="FILE", help="the run's page: the "
                        "failing (or undecided) history drawn as one lane per thread")
    parser.add_argument("--replay", type=Path, metavar="FILE")
    parser.add_argument("--quiet", action="store_true")
    return parser


def _hello(impl: str, timeout: float, pool: bool = False
           ) -> tuple[int, dict[str, Any]] | str:
    """(threads, the kernel family's configuration) from the hello, or why not
    (pool: the hello must declare MemoryPool too)."""
    try:
        child = Child(impl, timeout)
    except ImplementationError as error:
        return f"the implementation did not start: {error}"
    hello = child.hello
    child.close()
    if hello.threads < 1:
        return ("the implementation does not declare concurrency (protocol 3, \"threads\" in "
                "its hello): judge it with python -m proofs.oracle --impl ...")
    needed = (*NEEDED, *(("MemoryPool",) if pool else ()))
    missing = [m for m in needed if m not in hello.managers]
    if missing:
        return f"a concurrent run needs {', '.join(needed)}; the hello lacks {missing}"
    try:
        config = checked(layered(hello.config or {}), ["kernel"]).of("kernel")
    except ConfigError as error:
        return f"the hello's configuration is refused: {error}"
    return hello.threads, config


def describe(judged: Judged) -> str:
    """A run in words: the plan, what went wrong, the verdict with its lanes."""
    lines = [f"plan: {judged.plan} ({judged.plan.used_threads} threads, "
             f"{judged.plan.calls} calls)"]
    if judged.problem is not None:
        lines.append(f"{judged.problem[0]}: {judged.problem[1]}")
        if judged.stderr:
            lines.append("stderr: " + judged.stderr)
    if judged.timing == "oracle":
        lines.append("times: the oracle's, at send and receive (some replies carried none): "
                     "wider intervals")
    if judged.stopped:
        lines.append(f"stopped (no reply in time, call pending): threads {judged.stopped}")
    if judged.verdict is not None and judged.history is not None:
        lines.append(judged.verdict.explain(judged.history))
    return "\n".join(lines)


def _stressed(result: Stressed) -> str:
    return (f"stress: {result.failures} of {result.runs} runs failed"
            + (f", {result.undecided} undecided" if result.undecided else ""))


def trace_data(judged: Judged, summary: str) -> dict[str, Any]:
    """A run as JSON data: the trace ``--trace-out`` saves and ``--html`` draws
    (the verdict as proofs/concurrency/verdict_data.py writes it)."""
    verdict, history = judged.verdict, judged.history
    return {"format": TRACE_FORMAT, "summary": summary, "plan": judged.plan.to_json(),
            "problem": list(judged.problem) if judged.problem else None,
            "timing": judged.timing, "stopped": judged.stopped, "stderr": judged.stderr,
            "history": to_json(history) if history is not None else None,
            "verdict": None if verdict is None or history is None
            else verdict_data(history, verdict)}


def _save(path: Path, data: dict[str, Any]) -> str:
    try:
        path.write_text(json.dumps(data, indent=1) + "\n")
    except OSError as error:
        return f"the trace could not be saved: {error}"
    return f"trace saved: {path} (replay: python -m proofs.oracle concurrent --replay {path} " \
           "--impl ... --stress 20)"


def _page(path: Path | None, data: dict[str, Any]) -> None:
    """The HTML page of data at path (when asked), saying so."""
    if path is None:
        return
    try:
        # drawn from the JSON the trace saves: a saved trace renders the same page
        path.write_text(render_trace(json.loads(json.dumps(data))), encoding="utf-8")
        print(f"HTML report written: {path}")
    except OSError as error:
        print(f"the HTML report could not be written: {error}", file=sys.stderr)


def summary_only(summary: str) -> dict[str, Any]:
    """The page of a run with no trace to show: its summary line."""
    return {"format": TRACE_FORMAT, "summary": summary}


def main(argv: list[str] | None = None) -> int:
    args = parser_of().parse_args(argv)
    if (args.threads < 2 or args.calls < 2 or args.stress < 0 or args.attempts < 1
            or args.max_examples < 1 or args.nodes < 1
            or not all(0 < t < float("inf") for t in (args.time, args.request_timeout,
                                                       args.seconds))
            or not 0 <= args.shrink_time < float("inf")):
        print("--threads and --calls: 2 or more; --stress and --shrink-time: 0 or more; "
              "--attempts, --max-examples, --nodes: 1 or more; --time, --request-timeout, "
              "--seconds: positive", file=sys.stderr)
        return EXIT_USAGE
    end_children_on_sigterm()
    replayed: Plan | None = None
    if args.replay is not None:
        try:
            replayed = Plan.from_json(json.loads(args.replay.read_text())["plan"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            print(f"cannot read the trace: {error}", file=sys.stderr)
            return EXIT_USAGE
    calls = [] if replayed is None else [
        *replayed.prefix, *(s for r in replayed.rounds for t in r for s in t)]
    pool = args.pool if replayed is None else any(s.manager == "MemoryPool" for s in calls)
    declared = _hello(args.impl, args.request_timeout, pool)
    if isinstance(declared, str):
        print(f"[concurrent] {declared}", file=sys.stderr)
        return EXIT_USAGE
    threads, config = declared
    budget = Budget(args.nodes, args.seconds)
    if replayed is not None:
        heap = any(s.manager == "KernelHeap" for s in calls)
        result = stress(args.impl, replayed, config, max(1, args.stress), heap=heap,
                        timeout=args.request_timeout, budget=budget, pool=pool)
        summary = f"replay of {args.replay}: {_stressed(result)}"
        print(f"[concurrent] {summary}")
        if result.first_failure is not None:
            print(describe(result.first_failure))
            _page(args.html, trace_data(result.first_failure, summary))
            return EXIT_DIVERGED
        _page(args.html, summary_only(summary))
        return EXIT_UNKNOWN if result.undecided else EXIT_PASS
    options = SearchOptions(threads=min(args.threads, threads), calls=args.calls,
                            heap=args.heap, pool=args.pool, max_examples=args.max_examples,
                            time_limit=args.time, shrink_seconds=args.shrink_time,
                            attempts=args.attempts, seed=args.seed,
                            timeout=args.request_timeout, budget=budget)
    found = search(args.impl, config, options, None if args.quiet else lambda f: print(
        f"  [concurrent] {f.examples} plans, {f.runs} runs", file=sys.stderr, flush=True))
    head = (f"[concurrent] {found.examples} plans, {found.runs} runs, {found.seconds:.1f} s "
            f"(up to {options.threads} threads, {options.calls} calls"
            f"{', heap' if options.heap else ''}{', pool' if options.pool else ''})")
    if found.failure is not None:
        failure = found.failure
        shrunk = (f"; shrunk from {found.first_size[0]} threads, {found.first_size[1]} calls"
                  if found.first_size and found.first_size != failure.plan.size() else "")
        print(f"{head}: DIVERGED{shrunk}")
        for note in found.notes:
            print(note)
        print(describe(failure))
        if args.stress:
            print(_stressed(stress(args.impl, failure.plan, config, args.stress,
                                   heap=options.heap, timeout=args.request_timeout,
                                   budget=budget, pool=options.pool)))
        data = trace_data(failure, f"{head}: DIVERGED{shrunk}")
        print(_save(args.trace_out, data))
        _page(args.html, data)
        return EXIT_DIVERGED
    if found.undecided is not None:
        print(f"{head}: UNDECIDED (the checker's budget ran out; not a pass)")
        print(describe(found.undecided))
        _page(args.html, trace_data(found.undecided, f"{head}: UNDECIDED"))
        return EXIT_UNKNOWN
    if found.examples == 0:
        print(f"{head}: nothing ran")
        _page(args.html, summary_only(f"{head}: nothing ran"))
        return EXIT_DIVERGED
    print(f"{head}: every history linearizable")
    _page(args.html, summary_only(f"{head}: every history linearizable"))
    return EXIT_PASS
