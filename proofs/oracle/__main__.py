"""``python -m proofs.oracle``: judge an implementation of the design.

    python -m proofs.oracle --impl CMD [--mode spec|strict|both] [--max-examples N]
                            [--time S] [--seed N] [--family NAME] [--junit FILE]
                            [--trace-out FILE]
    python -m proofs.oracle replay TRACE --impl CMD [--mode ...] [--junit FILE]

Exit status: 0 nothing diverged (and something ran); 1 a divergence; 2 usage;
3 undecided (z3 answered unknown on a step: not a pass).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from proofs.oracle.families import FAMILIES
from proofs.oracle.report import describe, write_junit
from proofs.oracle.run import Outcome, load_trace, replay, save_trace, search
from proofs.oracle.world import MANAGERS
from proofs.version import version

EXIT_PASS, EXIT_DIVERGED, EXIT_USAGE, EXIT_UNKNOWN = 0, 1, 2, 3


def _parser(prog: str = "python -m proofs.oracle") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"memspec {version()}")
    parser.add_argument("trace", nargs="*", help="'replay TRACE' replays a saved trace")
    parser.add_argument("--impl", required=True,
                        help="the command that starts the implementation (run by the shell)")
    parser.add_argument("--mode", choices=("spec", "strict", "both"), default="both")
    parser.add_argument("--max-examples", type=int, default=100,
                        help="sequences to generate per mode (default 100)")
    parser.add_argument("--time", type=float, default=300.0,
                        help="seconds per mode before no new sequence starts (default 300)")
    parser.add_argument("--steps", type=int, default=25, help="operations per sequence")
    parser.add_argument("--family", action="append", choices=[f.name for f in FAMILIES],
                        help="run only this family of sequences (repeatable; default: every "
                             "family whose managers the implementation declares)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generation")
    parser.add_argument("--request-timeout", type=float, default=5.0,
                        help="seconds to wait for each reply (default 5)")
    parser.add_argument("--shrink-time", type=float, default=30.0,
                        help="seconds hypothesis may spend shrinking (default 30)")
    parser.add_argument("--trace-out", type=Path, default=Path("oracle-trace.json"),
                        help="where a divergence's trace is saved (default oracle-trace.json)")
    parser.add_argument("--junit", type=Path, help="write a JUnit XML report here")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    return parser


def _progress(outcome: Outcome) -> None:
    ops = sum(outcome.coverage.operations.values())
    print(f"  [{outcome.mode}] {outcome.examples} sequences, {ops} operations, "
          f"{outcome.seconds:.1f} s", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None, prog: str = "python -m proofs.oracle") -> int:
    args = _parser(prog).parse_args(argv)
    modes = ("spec", "strict") if args.mode == "both" else (args.mode,)
    if args.trace and (args.trace[0] != "replay" or len(args.trace) != 2):
        replay_prog = prog if prog.endswith(" replay") else f"{prog} replay"
        print(f"usage: {replay_prog} TRACE --impl CMD", file=sys.stderr)
        return EXIT_USAGE
    outcomes: list[Outcome] = []
    reports: list[str] = []
    for mode in modes:
        if args.trace:
            try:
                trace = load_trace(Path(args.trace[1]))
            except (OSError, ValueError) as exc:
                print(f"cannot read the trace: {exc}", file=sys.stderr)
                return EXIT_USAGE
            outcome = replay(args.impl, mode, trace["operations"], args.request_timeout,
                             family=str(trace.get("family", "kernel")))
            managers = trace.get("managers", [])
        else:
            outcome = search(args.impl, mode, max_examples=args.max_examples,
                             time_limit=args.time, seed=args.seed, steps=args.steps,
                             timeout=args.request_timeout, shrink_seconds=args.shrink_time,
                             progress=None if args.quiet else _progress,
                             families=None if args.family is None else tuple(args.family))
            managers = _managers(outcome)
        report = describe(outcome, managers)
        if outcome.divergence is not None and not args.trace:
            save_trace(args.trace_out, outcome, managers)
            report += f"\n\ntrace saved: {args.trace_out} (replay: python -m proofs.oracle " \
                      f"replay {args.trace_out} --impl ...)"
        print(report, flush=True)
        outcomes.append(outcome)
        reports.append(report)
        if outcome.divergence is not None or outcome.unknown is not None:
            break
    if args.junit is not None:
        write_junit(args.junit, outcomes, reports)
    if any(o.divergence is not None for o in outcomes):
        return EXIT_DIVERGED
    if any(o.unknown is not None for o in outcomes):
        return EXIT_UNKNOWN
    return EXIT_PASS if outcomes and all(o.passed for o in outcomes) else EXIT_DIVERGED


def _managers(outcome: Outcome) -> list[str]:
    skipped = {s.removeprefix("manager ") for s in outcome.skipped if s.startswith("manager ")}
    return [m for m in MANAGERS if m not in skipped]


if __name__ == "__main__":
    sys.exit(main())
