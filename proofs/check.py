"""Run every proof obligation and report a verdict for each: ``python -m proofs.check``.

Obligations are found in the ``proofs`` package by proofs/runner/discovery.py,
run in worker processes with a time limit each by proofs/runner/pool.py, and
reported (table, failures, totals, JSON, JUnit XML) by proofs/runner/report.py;
``--html FILE`` writes the HTML report, rendered from the JSON report's data
(proofs/html/check_report.py).

Exit status: 0 when every obligation passed (:attr:`Kind.passed`), 1 when any
was a counterexample, unknown (including a timeout) or an error, or when no
obligation was found at all; 2 on a usage error (unknown profile, nothing
matched ``--only``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import sys
import time
from collections.abc import Sequence

from proofs.obligation import PROFILES
from proofs.runner.cache import DEFAULT_DIRECTORY as DEFAULT_CACHE
from proofs.runner.cluster import ClusterUnavailableError, run_on_cluster
from proofs.runner.discovery import DEFAULT_PACKAGE, DuplicateObligationError, collect, select
from proofs.runner.pool import DEFAULT_TIMEOUT, run_obligations
from proofs.runner.report import (
    ProgressPrinter,
    ensure_parent,
    format_failures,
    format_table,
    format_totals,
    json_report,
    junit_report,
    passed,
    unwritable,
)
from proofs.runner.shard import parse as parse_shard
from proofs.runner.shard import partition, recorded
from proofs.version import version


def _parser(prog: str = "python -m proofs.check") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run the proof obligations of memspec and report a verdict for each.",
        epilog="Exit status: 0 every obligation passed; 1 a counterexample, unknown "
               "(including a timeout) or error; 2 usage error.")
    parser.add_argument("--version", action="version", version=f"memspec {version()}")
    parser.add_argument("--list", action="store_true",
                        help="print id, manager, operation, invariant, profiles; run nothing")
    parser.add_argument("--only", action="append", default=[], metavar="PATTERN",
                        help="run only obligations whose id matches PATTERN (fnmatch "
                             "pattern or plain substring); may be repeated")
    parser.add_argument("--profile", choices=PROFILES, default="full",
                        help="quick: short bounds and budgets; full: the real check "
                             "(default: full)")
    parser.add_argument("--json", metavar="FILE", help="write a JSON report to FILE")
    parser.add_argument("--junit", metavar="FILE", help="write a JUnit XML report to FILE")
    parser.add_argument("--html", metavar="FILE",
                        help="write a self-contained HTML report to FILE (rendered from the "
                             "JSON report's data; `memspec report FILE.json --html OUT` "
                             "renders a saved one)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, metavar="N",
                        help="worker processes (default: the number of CPUs)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                        help="per-obligation time limit; a timeout is UNKNOWN, a failure "
                             f"(default: {DEFAULT_TIMEOUT:g})")
    parser.add_argument("--shard", metavar="I/N",
                        help="run only the I-th of N parts of the chosen obligations, "
                             "balanced by their recorded durations (N CI jobs, I = 1..N, run "
                             "every obligation exactly once)")
    parser.add_argument("--cache-dir", default=DEFAULT_CACHE, metavar="DIR",
                        help="the proof cache: a passing verdict is reused while the source "
                             "it depends on is unchanged, and z3's unsat answers are reused "
                             f"for the same query (default: {DEFAULT_CACHE})")
    parser.add_argument("--no-cache", action="store_true",
                        help="decide everything afresh; neither read nor write the cache")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="run the obligations as tasks of the Dask cluster whose "
                             "scheduler is at ADDRESS (tcp://host:8786; --jobs is then the "
                             "workers' business; the cache directory is each worker's)")
    # Where to discover obligations; tests point it at a fake package.
    parser.add_argument("--registry", default=DEFAULT_PACKAGE, help=argparse.SUPPRESS)
    # Run in this process without workers or timeouts; for fast tests of the CLI.
    parser.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)
    return parser


def is_package(name: str) -> bool:
    """Whether name imports as a package (the registry of obligations)."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return False
    return spec is not None and spec.submodule_search_locations is not None


def main(argv: Sequence[str] | None = None, prog: str = "python -m proofs.check") -> int:
    parser = _parser(prog)
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    if not (math.isfinite(args.timeout) and args.timeout > 0):
        parser.error("--timeout must be a positive number of seconds")
    for option, path in (("--json", args.json), ("--junit", args.junit),
                         ("--html", args.html)):
        problem = None if path is None else unwritable(path)
        if problem:
            parser.error(f"{option}: {problem}")
    if not args.no_cache and os.path.exists(args.cache_dir) \
            and not os.path.isdir(args.cache_dir):
        parser.error(f"--cache-dir: {args.cache_dir} is not a directory")
    shard = None if args.shard is None else parse_shard(args.shard)
    if args.shard is not None and shard is None:
        parser.error(f"--shard: {args.shard!r} is not I/N with 1 <= I <= N")
    if not is_package(args.registry):
        parser.error(f"--registry: no package named {args.registry!r}")
    try:
        everything = collect(args.registry)
    except DuplicateObligationError as error:
        print(f"proofs.check: {error}", file=sys.stderr)
        return 1
    chosen = select(everything, args.only)
    if args.only and not chosen:
        print(f"proofs.check: no obligation id matches {' or '.join(args.only)}",
              file=sys.stderr)
        return 2

    to_run = [o for o in chosen if args.profile in o.profiles]
    if shard is not None:
        to_run = partition(to_run, shard[1], recorded(args.profile))[shard[0] - 1]
        print(f"shard {shard[0]}/{shard[1]}: {len(to_run)} obligations", file=sys.stderr)
    if args.list:  # every profile's obligations; with --shard, the shard's of --profile
        for o in chosen if shard is None else to_run:
            profiles = ",".join(p for p in PROFILES if p in o.profiles)
            print(f"{o.id}\t{o.manager}\t{o.operation}\t{o.invariant}\t{profiles}")
        return 0
    if not to_run:
        print(f"proofs.check: no obligation to run in profile {args.profile!r}",
              file=sys.stderr)
        return 2 if args.only else 1

    start = time.monotonic()
    printer = ProgressPrinter(sys.stderr)
    cache_dir = None if args.no_cache else args.cache_dir
    try:
        if args.scheduler:
            results = run_on_cluster(to_run, args.profile, args.scheduler,
                                     timeout=args.timeout, package=args.registry,
                                     cache_dir=cache_dir, progress=printer)
        else:
            results = run_obligations(to_run, args.profile, args.jobs, timeout=args.timeout,
                                      package=args.registry, progress=printer,
                                      in_process=args.in_process, cache_dir=cache_dir)
    except ClusterUnavailableError as error:
        printer.close()
        print(f"proofs.check: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        printer.close()
        print("proofs.check: interrupted", file=sys.stderr)
        return 130
    finally:
        printer.close()
    wall = time.monotonic() - start

    print(format_table(results))
    failures = format_failures(results)
    if failures:
        print("\nFailures:\n")
        print(failures)
    print()
    print(format_totals(results, wall))
    not_run = [o.id for o in chosen if args.profile not in o.profiles]
    if not_run:
        print(f"not run in profile {args.profile}: {len(not_run)} obligations "
              f"(their profiles exclude it; `--list` shows them)")

    data = json_report(results, args.profile, wall)
    if args.json:
        ensure_parent(args.json)
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2)
            handle.write("\n")
    if args.html:
        from proofs.report import write_html
        write_html(args.html, json.loads(json.dumps(data)))  # what the JSON file holds
    if args.junit:
        ensure_parent(args.junit)
        junit_report(results, args.profile, wall).write(args.junit, encoding="utf-8",
                                                        xml_declaration=True)
    return 0 if passed(results) else 1


if __name__ == "__main__":
    sys.exit(main())
