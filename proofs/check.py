"""Run every proof obligation and report a verdict for each: ``python -m proofs.check``.

Discovery: every module of the ``proofs`` package and its sub-packages (except
this one, ``obligation``, ``__main__``, ``cli``, the oracle's and the runner's
packages, and private ``_*`` modules) that defines a
top-level ``obligations()`` contributes the :class:`~proofs.obligation.Obligation`
objects it yields. Ids are unique across the package. A module that fails to
import, or whose ``obligations()`` raises, contributes one obligation
``<module>.discovery`` that fails with the traceback, so a broken module is
reported rather than silently skipped.

Execution: obligations run in worker processes started with the ``spawn``
method (z3 is not fork-safe). ``Obligation.run`` is a closure and cannot be
sent to a worker, so each worker rebuilds the registry by discovery once and
runs obligations by id. A worker runs one obligation at a time; one that
overruns ``--timeout`` is killed and replaced, and the obligation is reported
UNKNOWN, so a hang cannot hang the check. An exception inside ``run`` is an
ERROR verdict with the traceback; a worker that dies is an ERROR too.

Exit status: 0 when every obligation passed (:attr:`Kind.passed`), 1 when any
was a counterexample, unknown (including a timeout) or an error, or when no
obligation was found at all; 2 on a usage error (unknown profile, nothing
matched ``--only``).
"""

from __future__ import annotations

import argparse
import collections
import fnmatch
import importlib
import json
import multiprocessing
import os
import pkgutil
import sys
import time
import traceback
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Sequence
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import TextIO

from proofs.obligation import PROFILES, Kind, Obligation, Verdict

DEFAULT_PACKAGE = "proofs"
DEFAULT_TIMEOUT = 600.0
#: Modules and sub-packages that define no obligations: the runner, and the oracle
#: (its own command; importing it in every worker would only cost time).
NOT_OBLIGATION_MODULES = frozenset({"check", "obligation", "__main__", "cli", "oracle",
                                    "runner"})

# Time a fresh worker may take to import the package and rebuild the registry.
WORKER_STARTUP_TIMEOUT = 120.0

Result = tuple[Obligation, Verdict, float]
Progress = Callable[[int, int, Obligation, Verdict, float], None]


class DuplicateObligationError(ValueError):
    """Two obligations share an id; reports cite ids, so they must be unique."""


# --------------------------------------------------------------------------- discovery


def obligation_modules(package: str = DEFAULT_PACKAGE) -> list[str]:
    """Names of the modules of ``package`` and of its sub-packages (but the
    oracle's) that may define ``obligations()``."""
    pkg = importlib.import_module(package)
    names = []
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name in NOT_OBLIGATION_MODULES or info.name.startswith("_"):
            continue
        if info.ispkg:
            names.append(f"{package}.{info.name}")  # its __init__ may define some
            names += obligation_modules(f"{package}.{info.name}")
        else:
            names.append(f"{package}.{info.name}")
    return sorted(names)


def _discovery_failure(module_name: str, detail: str) -> Obligation:
    short = module_name.split(".", 1)[-1]

    def run(profile: str) -> Verdict:
        return Verdict(Kind.ERROR, "module failed to import or to list its obligations",
                       detail=detail)

    return Obligation(id=f"{short}.discovery", manager=short, operation="obligations",
                      invariant="discovery", run=run)


def _module_obligations(module_name: str) -> list[Obligation]:
    try:
        module = importlib.import_module(module_name)
        factory = getattr(module, "obligations", None)
        if not callable(factory):
            return []
        found = list(factory())
        for item in found:
            if not isinstance(item, Obligation):
                raise TypeError(f"obligations() yielded {item!r}, not an Obligation")
        return found
    except Exception:
        return [_discovery_failure(module_name, traceback.format_exc())]


def collect(package: str = DEFAULT_PACKAGE) -> list[Obligation]:
    """Every obligation the modules of ``package`` define, in module order.

    Raises :class:`DuplicateObligationError` when two obligations share an id.
    """
    obligations: list[Obligation] = []
    origin: dict[str, str] = {}
    for module_name in obligation_modules(package):
        for obligation in _module_obligations(module_name):
            if obligation.id in origin:
                raise DuplicateObligationError(
                    f"obligation id {obligation.id!r} is defined by {origin[obligation.id]}"
                    f" and by {module_name}")
            origin[obligation.id] = module_name
            obligations.append(obligation)
    return obligations


def select(obligations: Iterable[Obligation], patterns: Sequence[str]) -> list[Obligation]:
    """The obligations whose id matches any pattern (fnmatch, or a plain substring)."""
    if not patterns:
        return list(obligations)
    return [o for o in obligations
            if any(fnmatch.fnmatchcase(o.id, p) or p in o.id for p in patterns)]


# --------------------------------------------------------------------------- running


def run_one(obligation: Obligation, profile: str) -> tuple[Verdict, float]:
    """Run one obligation here, turning an exception into an ERROR verdict."""
    start = time.perf_counter()
    try:
        verdict = obligation.run(profile)
        if not isinstance(verdict, Verdict):
            verdict = Verdict(Kind.ERROR, "run() did not return a Verdict",
                              detail=f"run({profile!r}) returned {verdict!r}")
    except (Exception, SystemExit):
        verdict = Verdict(Kind.ERROR, "exception in run()", detail=traceback.format_exc())
    return verdict, time.perf_counter() - start


def _worker_main(conn: Connection, package: str) -> None:
    """A worker process: rebuild the registry once, then run obligations by id."""
    sys.stdout = sys.stderr  # stdout belongs to the parent's report
    try:
        registry = {o.id: o for o in collect(package)}
    except BaseException:
        conn.send(("failed", traceback.format_exc()))
        return
    conn.send(("ready", None))
    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is None:
            return
        obligation_id, profile = task
        obligation = registry.get(obligation_id)
        if obligation is None:
            result = (Verdict(Kind.ERROR, "not found by the worker's discovery"), 0.0)
        else:
            result = run_one(obligation, profile)
        try:
            conn.send(("done", result))
        except Exception:  # a verdict that does not pickle
            conn.send(("done", (Verdict(Kind.ERROR, "verdict could not be sent back",
                                        detail=traceback.format_exc()), result[1])))


class _Worker:
    """One worker process, the parent's end of its pipe, and what it is running."""

    def __init__(self, package: str) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child_conn = context.Pipe()
        self.process: BaseProcess = context.Process(
            target=_worker_main, args=(child_conn, package), daemon=True,
            name="proofs.check worker")
        self.process.start()
        child_conn.close()
        self.started = time.monotonic()
        self.ready = False
        self.task: int | None = None  # index of the obligation being run
        self.task_started = 0.0

    def deadline(self, timeout: float) -> float:
        if not self.ready:
            return self.started + WORKER_STARTUP_TIMEOUT
        return self.task_started + timeout if self.task is not None else float("inf")

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self.conn.close()

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except (OSError, ValueError):
            pass
        self.process.join(2.0)
        self.kill()


class WorkerStartupError(RuntimeError):
    """A worker could not rebuild the registry."""


def _run_pool(obligations: Sequence[Obligation], profile: str, jobs: int, timeout: float,
              package: str, progress: Progress | None) -> list[Result]:
    results: list[Result | None] = [None] * len(obligations)
    # The state-machine runs are the longest single obligations: start them
    # first, so the workers do not end with one long run and one idle core.
    # The report keeps the discovery order.
    pending = collections.deque(sorted(range(len(obligations)),
                                       key=lambda i: obligations[i].invariant != "refinement"))
    workers: list[_Worker] = []
    done = 0

    def finish(index: int, verdict: Verdict, seconds: float) -> None:
        nonlocal done
        results[index] = (obligations[index], verdict, seconds)
        done += 1
        if progress is not None:
            progress(done, len(obligations), obligations[index], verdict, seconds)

    def replace(worker: _Worker) -> None:
        worker.kill()
        workers.remove(worker)
        if pending:
            workers.append(_Worker(package))

    try:
        workers.extend(_Worker(package) for _ in range(min(jobs, len(obligations))))
        while done < len(obligations):
            for worker in workers:
                if worker.ready and worker.task is None and pending:
                    worker.task = pending.popleft()
                    worker.task_started = time.monotonic()
                    worker.conn.send((obligations[worker.task].id, profile))
            now = time.monotonic()
            next_deadline = min(w.deadline(timeout) for w in workers)
            waitables: list[Connection | int] = [w.conn for w in workers]
            waitables += [w.process.sentinel for w in workers]
            wait(waitables, timeout=None if next_deadline == float("inf")
                 else max(0.0, next_deadline - now))
            for worker in list(workers):
                message = None
                try:
                    if worker.conn.poll():
                        message = worker.conn.recv()
                except (EOFError, OSError):
                    message = None
                if message is not None:
                    tag, payload = message
                    if tag == "ready":
                        worker.ready = True
                    elif tag == "failed":
                        raise WorkerStartupError(str(payload))
                    else:
                        assert worker.task is not None
                        verdict, seconds = payload
                        index, worker.task = worker.task, None
                        finish(index, verdict, seconds)
                elif not worker.process.is_alive():
                    code = worker.process.exitcode
                    if not worker.ready:
                        raise WorkerStartupError(f"worker exited with code {code} before "
                                                 "it rebuilt the registry")
                    if worker.task is None:  # died idle: nothing lost
                        replace(worker)
                        continue
                    seconds = time.monotonic() - worker.task_started
                    finish(worker.task, Verdict(
                        Kind.ERROR, f"worker process died (exit code {code})",
                        detail=f"the worker running {obligations[worker.task].id} exited "
                               f"with code {code} (killed by a signal if negative)"), seconds)
                    replace(worker)
                elif time.monotonic() >= worker.deadline(timeout):
                    if worker.task is None:
                        raise WorkerStartupError(
                            f"worker did not rebuild the registry in {WORKER_STARTUP_TIMEOUT}s")
                    finish(worker.task, Verdict(
                        Kind.UNKNOWN, f"timeout after {timeout:g}s",
                        detail=f"no verdict within --timeout {timeout:g}s; the worker was "
                               "killed"), timeout)
                    replace(worker)
    except WorkerStartupError as error:
        for index in range(len(obligations)):
            if results[index] is None:
                finish(index, Verdict(Kind.ERROR, "worker failed to start",
                                      detail=str(error)), 0.0)
    finally:
        for worker in workers:
            worker.stop()
    return [r for r in results if r is not None]


def run_obligations(obligations_or_ids: Iterable[Obligation | str], profile: str = "full",
                    jobs: int = 1, *, timeout: float | None = None,
                    package: str = DEFAULT_PACKAGE,
                    progress: Progress | None = None,
                    in_process: bool | None = None) -> list[Result]:
    """Run obligations (objects, or ids found by discovery in ``package``).

    Returns ``(obligation, verdict, seconds)`` in the order given.
    ``in_process`` defaults to ``jobs <= 1 and timeout is None``: then they run
    here, one after another (what tests want; nothing enforces a time limit).
    Otherwise they run in ``jobs`` spawned worker processes that find them by
    id in ``package``, and ``timeout`` (seconds per obligation, default
    :data:`DEFAULT_TIMEOUT`) is enforced by killing the worker.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; expected one of {PROFILES}")
    items = list(obligations_or_ids)
    if in_process is None:
        in_process = jobs <= 1 and timeout is None
    registry: dict[str, Obligation] = {}
    if any(isinstance(item, str) for item in items) or not in_process:
        registry = {o.id: o for o in collect(package)}
    obligations: list[Obligation] = []
    for item in items:
        if isinstance(item, str):
            if item not in registry:
                raise KeyError(f"no obligation {item!r} in package {package!r}")
            obligations.append(registry[item])
        else:
            if not in_process and item.id not in registry:
                raise KeyError(f"obligation {item.id!r} is not discoverable in package "
                               f"{package!r}, so a worker process cannot run it; "
                               "run it in-process (jobs=1, timeout=None)")
            obligations.append(item)
    if in_process:
        results: list[Result] = []
        for index, obligation in enumerate(obligations):
            verdict, seconds = run_one(obligation, profile)
            results.append((obligation, verdict, seconds))
            if progress is not None:
                progress(index + 1, len(obligations), obligation, verdict, seconds)
        return results
    return _run_pool(obligations, profile, max(1, jobs),
                     DEFAULT_TIMEOUT if timeout is None else timeout, package, progress)


# --------------------------------------------------------------------------- reporting


def _label(kind: Kind) -> str:
    label = kind.name.lower().replace("_", "-")
    return label if kind.passed else label.upper()


class ProgressPrinter:
    """One line per finished obligation; on a TTY, passes share one updating line."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.pending_newline = False

    def __call__(self, done: int, total: int, obligation: Obligation, verdict: Verdict,
                 seconds: float) -> None:
        width = len(str(total))
        line = (f"[{done:>{width}}/{total}] {_label(verdict.kind):<17} {obligation.id}"
                f"  {seconds:.2f}s")
        if self.tty and verdict.kind.passed:
            self.stream.write("\r\x1b[K" + line)
            self.pending_newline = True
        else:
            if self.tty:
                self.stream.write("\r\x1b[K")
            self.stream.write(line + "\n")
            self.pending_newline = False
        self.stream.flush()

    def close(self) -> None:
        if self.pending_newline:
            self.stream.write("\n")
            self.stream.flush()
            self.pending_newline = False


def totals(results: Sequence[Result], wall_seconds: float) -> dict[str, object]:
    counts = collections.Counter(verdict.kind for _, verdict, _ in results)
    out: dict[str, object] = {kind.name: counts[kind] for kind in Kind}
    out["obligations"] = len(results)
    out["failed"] = sum(n for kind, n in counts.items() if not kind.passed)
    out["wall_seconds"] = round(wall_seconds, 3)
    return out


def passed(results: Sequence[Result]) -> bool:
    return bool(results) and all(verdict.kind.passed for _, verdict, _ in results)


def format_table(results: Sequence[Result]) -> str:
    header = ("obligation", "manager", "invariant", "result", "time")
    rows = [(o.id, o.manager, o.invariant,
             v.summary if v.kind.passed else f"{_label(v.kind)}: {v.summary}",
             f"{s:.2f}s")
            for o, v, s in results]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]
    lines = []
    for row in [header, *rows]:
        cells = [row[i].ljust(widths[i]) for i in range(4)]
        lines.append("  ".join(cells) + "  " + row[4].rjust(7))
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def format_failures(results: Sequence[Result]) -> str:
    blocks = []
    for obligation, verdict, _ in results:
        if verdict.kind.passed:
            continue
        head = f"== {obligation.id}: {_label(verdict.kind)}: {verdict.summary}"
        if verdict.violated:
            head += f"\n   violates: {', '.join(verdict.violated)}"
        body = verdict.detail.rstrip() or "(no detail)"
        blocks.append(head + "\n" + "\n".join("   " + line for line in body.splitlines()))
    return "\n\n".join(blocks)


def format_totals(results: Sequence[Result], wall_seconds: float) -> str:
    counts = collections.Counter(verdict.kind for _, verdict, _ in results)
    parts = [f"{counts[kind]} {kind.name.lower().replace('_', '-')}" for kind in Kind]
    verdict = "PASSED" if passed(results) else "FAILED"
    return (f"{verdict}: {len(results)} obligations: {', '.join(parts)}; "
            f"wall time {wall_seconds:.1f}s")


def json_report(results: Sequence[Result], profile: str, wall_seconds: float) -> dict[str, object]:
    return {
        "profile": profile,
        "obligations": [
            {"id": o.id, "manager": o.manager, "operation": o.operation,
             "invariant": o.invariant, "kind": v.kind.name, "summary": v.summary,
             "detail": v.detail, "violated": list(v.violated), "bound": v.bound,
             "examples": v.examples, "seconds": round(s, 3)}
            for o, v, s in results],
        "totals": totals(results, wall_seconds),
        "passed": passed(results),
    }


def junit_report(results: Sequence[Result], profile: str, wall_seconds: float) -> ET.ElementTree:
    failures = sum(1 for _, v, _ in results if not v.kind.passed)
    suites = ET.Element("testsuites", name="memspec", tests=str(len(results)),
                        failures=str(failures), errors="0", time=f"{wall_seconds:.3f}")
    suite = ET.SubElement(suites, "testsuite", name=f"proofs.check[{profile}]",
                          tests=str(len(results)), failures=str(failures), errors="0",
                          skipped="0", time=f"{wall_seconds:.3f}")
    for obligation, verdict, seconds in results:
        case = ET.SubElement(suite, "testcase", classname=obligation.manager,
                             name=obligation.id, time=f"{seconds:.3f}")
        if verdict.kind.passed:
            ET.SubElement(case, "system-out").text = verdict.summary
        else:
            failure = ET.SubElement(case, "failure", type=verdict.kind.name,
                                    message=verdict.summary)
            failure.text = verdict.detail or verdict.summary
    ET.indent(suites)
    return ET.ElementTree(suites)


def _ensure_parent(path: str) -> None:
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)


# --------------------------------------------------------------------------- command line


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m proofs.check",
        description="Run the proof obligations of memspec and report a verdict for each.",
        epilog="Exit status: 0 every obligation passed; 1 a counterexample, unknown "
               "(including a timeout) or error; 2 usage error.")
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
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, metavar="N",
                        help="worker processes (default: the number of CPUs)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                        help="per-obligation time limit; a timeout is UNKNOWN, a failure "
                             f"(default: {DEFAULT_TIMEOUT:g})")
    # Where to discover obligations; tests point it at a fake package.
    parser.add_argument("--registry", default=DEFAULT_PACKAGE, help=argparse.SUPPRESS)
    # Run in this process without workers or timeouts; for fast tests of the CLI.
    parser.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
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

    if args.list:
        for o in chosen:
            profiles = ",".join(p for p in PROFILES if p in o.profiles)
            print(f"{o.id}\t{o.manager}\t{o.operation}\t{o.invariant}\t{profiles}")
        return 0

    to_run = [o for o in chosen if args.profile in o.profiles]
    if not to_run:
        print(f"proofs.check: no obligation to run in profile {args.profile!r}",
              file=sys.stderr)
        return 2 if args.only else 1

    start = time.monotonic()
    printer = ProgressPrinter(sys.stderr)
    try:
        results = run_obligations(to_run, args.profile, args.jobs, timeout=args.timeout,
                                  package=args.registry, progress=printer,
                                  in_process=args.in_process)
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

    if args.json:
        _ensure_parent(args.json)
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(json_report(results, args.profile, wall), handle, indent=2)
            handle.write("\n")
    if args.junit:
        _ensure_parent(args.junit)
        junit_report(results, args.profile, wall).write(args.junit, encoding="utf-8",
                                                        xml_declaration=True)
    return 0 if passed(results) else 1


if __name__ == "__main__":
    sys.exit(main())
