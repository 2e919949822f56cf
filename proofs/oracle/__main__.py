"""``python -m proofs.oracle``: judge an implementation of the design.

    python -m proofs.oracle --impl CMD [--mode spec|strict|both] [--max-examples N]
                            [--time S] [--seed N] [--family NAME] [--junit FILE]
                            [--trace-out FILE] [--json FILE] [--html FILE]
                            [--config FILE] [--set FAMILY.FIELD=VALUE]
    python -m proofs.oracle replay TRACE --impl CMD [--mode ...] [--junit FILE]
                            [--json FILE] [--html FILE]
    python -m proofs.oracle concurrent --impl CMD [--threads N] [--heap] [--stress N] ...
                            (protocol 3: proofs/oracle/concurrent_cli.py)

Exit status: 0 nothing diverged (and something ran); 1 a divergence; 2 usage
(checked before anything runs, a --config/--set the schema or the model refuses
among them; also a report that could not be written); 3 undecided (z3 answered
unknown on a step: not a pass); 4 the configuration the hello declares (with
--config/--set on top) is refused by the model's preconditions.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from proofs.oracle import processes
from proofs.oracle.campaign import example_database, run_campaign
from proofs.oracle.child import end_children_on_sigterm
from proofs.oracle.concurrent_cli import main as concurrent_main
from proofs.oracle.config import ConfigError, checked, layered, read_file, settings
from proofs.oracle.families import FAMILIES
from proofs.oracle.findings_report import bug_fields, cases_of, describe_campaign, numbered
from proofs.oracle.report import describe, write_junit
from proofs.oracle.report_data import divergence_data, outcome_data, report_data
from proofs.oracle.run import (
    Outcome,
    load_trace,
    managers_of,
    replay,
    save_trace,
    search,
    trace_of,
)
from proofs.report import write_html
from proofs.runner.cluster import ClusterUnavailableError
from proofs.runner.report import ensure_parent, unwritable
from proofs.version import version

EXIT_PASS, EXIT_DIVERGED, EXIT_USAGE, EXIT_UNKNOWN, EXIT_CONFIG = 0, 1, 2, 3, 4


def _number(kind: type[int] | type[float], what: str, ok: Callable[[float], bool]
            ) -> Callable[[str], float]:
    """An argparse type: a number of kind for which ok holds (else a usage error
    that says what was expected)."""
    def convert(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not (math.isfinite(value) and ok(value)):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value
    return convert


#: --request-timeout, --time: a reply slower than 0 s or than nan s means nothing.
SECONDS = _number(float, "a positive, finite number of seconds", lambda v: v > 0)
#: --shrink-time: 0 s shrinks nothing (the first divergence as found).
SHRINK_SECONDS = _number(float, "a finite number of seconds, 0 or more", lambda v: v >= 0)
#: --max-examples, --steps: at least one sequence of at least one operation.
POSITIVE = _number(int, "a positive integer", lambda v: v > 0)
#: --seed: 0 or more (each seed its own runs: seed * 1000003 + chunk).
SEED = _number(int, "an integer, 0 or more", lambda v: v >= 0)


def parser_of(prog: str = "python -m proofs.oracle") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"memspec {version()}")
    parser.add_argument("trace", nargs="*", help="'replay TRACE' replays a saved trace")
    parser.add_argument("--impl", required=True,
                        help="the command that starts the implementation (run by the shell)")
    parser.add_argument("--mode", choices=("spec", "strict", "both"), default="both")
    parser.add_argument("--max-examples", type=POSITIVE, default=None,
                        help="sequences to generate per mode (default: no limit, --time "
                             "ends the search)")
    parser.add_argument("--time", type=SECONDS, default=300.0,
                        help="seconds per mode before no new sequence starts: the "
                             "campaign's budget (default 300)")
    parser.add_argument("--first", action="store_true",
                        help="stop at the first divergence (default: a campaign that goes "
                             "on and reports every distinct bug, each with its own trace)")
    parser.add_argument("--steps", type=POSITIVE, default=25,
                        help="operations per sequence (default 25)")
    parser.add_argument("--family", action="append", choices=[f.name for f in FAMILIES],
                        help="run only this family of sequences (repeatable; default: every "
                             "family whose managers the implementation declares)")
    parser.add_argument("--seed", type=SEED, default=0,
                        help="seed of the generation, 0 or more (default 0)")
    parser.add_argument("--request-timeout", type=SECONDS, default=5.0,
                        help="seconds to wait for each reply (default 5)")
    parser.add_argument("--shrink-time", type=SHRINK_SECONDS, default=30.0,
                        help="seconds hypothesis may spend shrinking (default 30)")
    parser.add_argument("--database", metavar="DIR|redis://HOST:PORT/N",
                        help="hypothesis' example database: every failing sequence is saved "
                             "there and replayed first by every later run (a directory on "
                             "shared storage, or Redis, for a campaign across machines)")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="run the search as tasks of the Dask cluster whose scheduler is "
                             "at ADDRESS (each worker runs --impl itself)")
    parser.add_argument("--chunks", type=POSITIVE, default=4,
                        help="with --scheduler: tasks per mode and family, each with its own "
                             "seed, a share of --max-examples and the whole --time "
                             "(default 4)")
    parser.add_argument("--trace-out", type=Path, default=Path("oracle-trace.json"),
                        help="where a divergence's trace is saved (default oracle-trace.json)")
    parser.add_argument("--junit", type=Path, help="write a JUnit XML report here")
    parser.add_argument("--json", type=Path, help="write the JSON report here (every bug, every "
                        "step of each, both replies; proofs/oracle/report_data.py)")
    parser.add_argument("--html", type=Path, help="write a self-contained HTML report here, "
                        "rendered from the JSON report's data")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    parser.add_argument("--config", type=Path, metavar="FILE",
                        help="the set-up's values (PROTOCOL.md, Configuration), JSON or TOML "
                             "(.toml): over the ones the hello declares")
    parser.add_argument("--set", action="append", default=[], metavar="FAMILY.FIELD=VALUE",
                        dest="settings", help="one value of the configuration, over --config "
                                              "(repeatable; kernel.index_size=0x20000)")
    return parser


def parse_options(parser: argparse.ArgumentParser, argv: list[str] | None
                  ) -> argparse.Namespace:
    """The options, each checked before anything runs (argparse exits 2 on a bad one)."""
    args = parser.parse_args(argv)
    if not args.impl.strip():
        parser.error("--impl: an empty command")
    outputs = [("--junit", args.junit), ("--json", args.json), ("--html", args.html)]
    outputs += [] if args.trace else [("--trace-out", args.trace_out)]
    for option, path in outputs:
        why = None if path is None else unwritable(str(path))
        if why is not None:
            parser.error(f"{option}: {why}")
    if args.database is not None:
        try:
            example_database(args.database)
        except ValueError as error:
            parser.error(f"--database: {error}")
    if args.scheduler is not None and args.trace:
        parser.error("--scheduler: a replay runs here, not on a cluster")
    if args.scheduler is not None and (args.json or args.html):
        parser.error("--json/--html: not with --scheduler (its chunks return their text "
                     "reports and traces, not the replies the report shows)")
    try:
        layer = read_file(args.config) if args.config is not None else {}
        for family, fields in settings(args.settings).items():
            layer.setdefault(family, {}).update(fields)
        checked(layered(layer), args.family)
    except ConfigError as error:
        parser.error(f"{'--config' if args.config is not None else '--set'}: {error}")
    args.config_layer = layer or None
    return args


def _progress(outcome: Outcome) -> None:
    ops = sum(outcome.coverage.operations.values())
    print(f"  [{outcome.mode}] {outcome.examples} sequences, {ops} operations, "
          f"{outcome.seconds:.1f} s", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None, prog: str = "python -m proofs.oracle") -> int:
    words = sys.argv[1:] if argv is None else argv
    if words[:1] == ["concurrent"]:  # protocol 3: proofs/oracle/concurrent_cli.py
        return concurrent_main(words[1:])
    parser = parser_of(prog)
    args = parse_options(parser, argv)
    if args.trace and (args.trace[0] != "replay" or len(args.trace) != 2):
        replay_prog = prog if prog.endswith(" replay") else f"{prog} replay"
        print(f"usage: {replay_prog} TRACE --impl CMD", file=sys.stderr)
        return EXIT_USAGE
    trace = None
    if args.trace:
        try:
            trace = load_trace(Path(args.trace[1]))
        except (OSError, ValueError) as exc:
            print(f"cannot read the trace: {exc}", file=sys.stderr)
            return EXIT_USAGE
    end_children_on_sigterm()
    if not processes.CAN_TRACK and not args.quiet:
        print(f"note: at the end of each sequence the oracle ends {processes.TRACKING}",
              file=sys.stderr)
    if args.scheduler is not None:
        try:
            code = run_campaign(args, save_report)
        except ClusterUnavailableError as error:
            print(f"proofs.oracle: {error}", file=sys.stderr)
            return EXIT_USAGE
        return code
    outcomes, reports, traces = _run(args, trace)
    try:
        if args.junit is not None:
            ensure_parent(str(args.junit))
            write_junit(args.junit, [c for o, r in zip(outcomes, reports, strict=True)
                                     for c in cases_of(o, r)])
        if args.json is not None or args.html is not None:
            _write_reports(args, trace, outcomes, traces)
    except OSError as exc:
        print(f"cannot write the report: {exc}", file=sys.stderr)
        return _verdict(outcomes, written=False)
    return _verdict(outcomes)


def _write_reports(args: argparse.Namespace, trace: dict[str, Any] | None,
                   outcomes: list[Outcome], traces: list[list[str]]) -> None:
    """The JSON report and the HTML report rendered from it (--json, --html):
    a campaign's every bug with its bucket and its saved trace."""
    modes = []
    for outcome, paths in zip(outcomes, traces, strict=True):
        bugs = [divergence_data(f.divergence, f.bucket.family, **bug_fields(
            outcome, f, paths[n] if n < len(paths) and paths[n] else None))
            for n, f in enumerate(outcome.findings)]
        modes.append(outcome_data(
            outcome, trace.get("managers", []) if trace else managers_of(outcome),
            paths[0] if paths and paths[0] else None, bugs or None))
    data = json.loads(json.dumps(report_data("replay" if trace else "search", modes,
                                             _verdict(outcomes))))
    if args.json is not None:
        ensure_parent(str(args.json))
        args.json.write_text(json.dumps(data, indent=1) + "\n")
    if args.html is not None:
        write_html(args.html, data)


def _run(args: argparse.Namespace, trace: dict[str, Any] | None
         ) -> tuple[list[Outcome], list[str], list[list[str]]]:
    """Each mode in turn (a replay or ``--first``: until one diverges; always
    until one is undecided): outcomes, reports, the paths of each one's traces."""
    outcomes: list[Outcome] = []
    reports: list[str] = []
    saved: list[list[str]] = []
    for mode in ("spec", "strict") if args.mode == "both" else (args.mode,):
        paths: list[str] = []
        if trace is not None:
            layer = {f: dict(v) for f, v in trace.get("config", {}).items()}
            for family, fields in (args.config_layer or {}).items():
                layer.setdefault(family, {}).update(fields)
            outcome = replay(args.impl, mode, trace["operations"], args.request_timeout,
                             family=str(trace.get("family", "kernel")), config=layer or None)
            managers = list(trace.get("managers", []))
            report = describe(outcome, managers)
        else:
            outcome = search(args.impl, mode, max_examples=args.max_examples,
                             time_limit=args.time, seed=args.seed, steps=args.steps,
                             timeout=args.request_timeout, shrink_seconds=args.shrink_time,
                             progress=None if args.quiet else _progress,
                             families=None if args.family is None else tuple(args.family),
                             database=None if args.database is None
                             else example_database(args.database), config=args.config_layer,
                             keep_going=not args.first)
            managers = managers_of(outcome)
            report, paths = _saved(args, outcome, managers, sum(len(p) for p in saved))
        if outcome.refused is not None:
            report = f"[{mode}] the configuration is refused: {outcome.refused}"
        if outcome.config:
            first, _, rest = report.partition("\n")
            report = f"{first}\n  configuration: {shown_config(outcome.config)}\n{rest}"
        print(report, flush=True)
        outcomes.append(outcome)
        reports.append(report)
        saved.append(paths)
        if outcome.unknown is not None or outcome.refused is not None or (
                outcome.divergence is not None and (args.first or trace is not None)):
            break
    return outcomes, reports, saved


def _saved(args: argparse.Namespace, outcome: Outcome, managers: list[str], before: int
           ) -> tuple[str, list[str]]:
    """Save the traces of a search's bugs (numbered from ``before``) or of its
    undecided step: its report, and where they went."""
    paths: list[str] = []
    notes: list[str] = []
    for n, finding in enumerate(outcome.findings):
        path = numbered(args.trace_out, before + n)
        note = save_report(path, trace_of(outcome, managers, finding))
        paths.append(str(path) if note.startswith("\n\ntrace saved") else "")
        notes.append(note.strip())
    if outcome.findings:
        report = describe_campaign(outcome, managers, notes)
    else:
        report = describe(outcome, managers)
    if outcome.divergence is not None and not outcome.findings:  # not reproducible
        report += save_report(numbered(args.trace_out, before),
                              trace_of(outcome, managers))
        paths.append(str(numbered(args.trace_out, before)))
    if outcome.unknown is not None:
        path = numbered(args.trace_out, before + len(paths))
        report += save_report(path, trace_of(outcome, managers, unknown=True))
        paths.append(str(path))
    return report, paths


def shown_config(config: dict[str, Any]) -> str:
    """The configuration's values beside the defaults, as FAMILY.FIELD=VALUE."""
    return ", ".join(f"{family}.{key}={value:#x}" if type(value) is int else
                     f"{family}.{key}={str(value).lower()}"
                     for family, fields in config.items() for key, value in fields.items())


def save_report(path: Path, trace: dict[str, Any]) -> str:
    """Save a divergence's trace; what the report says of it."""
    try:
        ensure_parent(str(path))
        save_trace(path, trace)
    except OSError as exc:
        return f"\n\nthe trace could not be saved: {exc}"
    return (f"\n\ntrace saved: {path} (replay: python -m proofs.oracle replay {path} "
            "--impl ...)")


def _verdict(outcomes: list[Outcome], written: bool = True) -> int:
    if any(o.divergence is not None for o in outcomes):
        return EXIT_DIVERGED
    if any(o.unknown is not None for o in outcomes):
        return EXIT_UNKNOWN
    if any(o.refused is not None for o in outcomes):
        return EXIT_CONFIG
    if not written:
        return EXIT_USAGE
    return EXIT_PASS if outcomes and all(o.passed for o in outcomes) else EXIT_DIVERGED


if __name__ == "__main__":
    sys.exit(main())
