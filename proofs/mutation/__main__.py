"""``python -m proofs.mutation``: sample mutants of model/ with a seed and report
which the test suite and the quick profile catch (see proofs/mutation/__init__.py).

Exit status: 0 the run completed (whatever the score; read the report);
1 a mutant could not be judged (a gate failed to run) or the unmutated tree
failed its own gates; 2 usage error. With ``--min-score P`` a score below P%
of non-equivalent mutants caught by every gate run exits 1 too.
"""

from __future__ import annotations

import argparse
import difflib
import itertools
import json
import random
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from proofs.mutation.execute import Limits, Outcome, Worker, limit_memory
from proofs.mutation.operators import Mutant, compiles, mutants
from proofs.mutation.report import CAUGHT_FILE, Result, equivalents, markdown, tally
from proofs.mutation.selection import CoverageMap, coverage_map, own_tests, tree_digest

ROOT = Path(__file__).resolve().parents[2]
GATES = ("tests", "quick")


def model_modules(root: Path) -> list[tuple[str, str]]:
    """(dotted name, path) of every module of model/."""
    return [(f"model.{path.stem}", path.relative_to(root).as_posix())
            for path in sorted((root / "model").glob("*.py"))]


def sample(root: Path, per_module: int, seed: int, modules: list[str] | None) -> list[Mutant]:
    """per_module mutants of each module (all of them when it has fewer), drawn
    with random.Random(f"{seed}:{module}") so a module's sample does not
    change when another module changes; a draw that does not compile, or that
    changes a type-only statement, is replaced by the next."""
    chosen: list[Mutant] = []
    for name, path in model_modules(root):
        if modules and name not in modules and name.removeprefix("model.") not in modules:
            continue
        source = (root / path).read_bytes()
        found = mutants(name, path, source, type_only=True)
        random.Random(f"{seed}:{name}").shuffle(found)
        picked = list(itertools.islice(
            (m for m in found if not m.type_only and compiles(m, source)), per_module))
        chosen += sorted(picked, key=lambda m: (m.line, m.start, m.operator))
    return chosen


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m proofs.mutation",
        description="Mutation score of model/: which sampled mutants the test suite and "
                    "the quick check profile catch.")
    parser.add_argument("--per-module", type=int, default=20, metavar="N",
                        help="mutants drawn per model module (default 20)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--modules", nargs="+", metavar="MODULE",
                        help="only these modules (frame_bitmap or model.frame_bitmap)")
    parser.add_argument("--keys", nargs="+", metavar="KEY",
                        help="only the mutants with these keys (from a report)")
    parser.add_argument("--rerun", metavar="REPORT",
                        help="only the mutants a previous JSON report lists as survived")
    parser.add_argument("--limit", type=int, metavar="K",
                        help="at most K mutants in all, spread over the modules (a smoke run)")
    parser.add_argument("--gates", default=",".join(GATES),
                        help="comma-separated gates to run: tests, quick (default both)")
    parser.add_argument("--select", choices=("coverage", "own"), default="coverage",
                        help="a mutant's tests: those that run its line (coverage, the "
                             "default; collects the suite's coverage once per tree) or its "
                             "module's own tests/test_<module>.py (own: a quick smoke run)")
    parser.add_argument("--tests", nargs="+", metavar="NODE_ID",
                        help="run these tests for every chosen mutant instead of the ones "
                             "that execute its line (to show which new test kills a survivor)")
    parser.add_argument("--lazy-quick", action="store_true",
                        help="run the quick profile only on mutants the tests did not catch "
                             "(the score of both gates at a fraction of the time; the quick "
                             "profile's own rate then needs a run of its own, --gates quick)")
    parser.add_argument("--journal", metavar="FILE",
                        help="append each verdict to FILE as it is reached (JSON lines), and "
                             "reuse the verdicts FILE holds for this tree and these gates: an "
                             "interrupted run resumes where it stopped")
    parser.add_argument("--jobs", type=int, default=2, help="mutants run at once (default 2)")
    parser.add_argument("--json", metavar="FILE", help="write every verdict as JSON")
    parser.add_argument("--markdown", metavar="FILE", help="write the tables and survivors")
    parser.add_argument("--min-score", type=float, metavar="P",
                        help="exit 1 when under P%% of non-equivalent mutants are caught")
    parser.add_argument("--verify-caught", action="store_true",
                        help="run each mutant of proofs/mutation/caught.json against the test "
                             "named there (a survivor's new test): exit 1 unless every one is "
                             "killed")
    parser.add_argument("--no-run", action="store_true",
                        help="with --journal: report the verdicts the journal holds for this "
                             "tree and sample, and run nothing (a run in progress, or stopped)")
    parser.add_argument("--show", action="store_true",
                        help="print the chosen mutants as diffs and run nothing")
    parser.add_argument("--work-dir", metavar="DIR",
                        help="where the workers' copies go (default: a temporary directory)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    gates = tuple(gate for gate in args.gates.split(",") if gate)
    if not gates or any(gate not in GATES for gate in gates):
        _parser().error(f"--gates takes a comma-separated subset of {', '.join(GATES)}")
    if args.no_run and not args.journal:
        _parser().error("--no-run reports a --journal")
    if args.verify_caught:
        return _verify_caught(args.jobs)
    chosen = sample(ROOT, args.per_module, args.seed, args.modules)
    if args.keys or args.rerun:
        wanted = set(args.keys or ())
        if args.rerun:
            wanted |= {m["key"] for m in json.loads(Path(args.rerun).read_text())["mutants"]
                       if m["verdict"] == "survived"}
        chosen = [m for m in chosen if m.key in wanted]
    if args.limit is not None:
        chosen = _spread(chosen, args.limit)
    if not chosen:
        print("no mutant matches", file=sys.stderr)
        return 2
    if args.show:
        for mutant in chosen:
            print(_diff(mutant))
        return 0
    cache = ROOT / ".memspec-cache" / "mutation"
    tree = tree_digest(ROOT)
    try:
        if "tests" not in gates or args.no_run:
            covered = CoverageMap({}, {})
        elif args.tests:
            named: dict[str, dict[int, list[str]]] = {}
            for mutant in chosen:
                named.setdefault(mutant.path, {})[mutant.line] = list(args.tests)
            covered = CoverageMap(named, {})
        elif args.select == "own":
            covered = own_tests(ROOT, sorted({m.path for m in chosen}))
        else:
            covered = coverage_map(ROOT, cache, args.jobs)
    except RuntimeError as failure:
        print(failure, file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="memspec-mutation-") as scratch:
        base = Path(args.work_dir) if args.work_dir else Path(scratch)
        journal = Journal(Path(args.journal), tree, gates, args.lazy_quick) \
            if args.journal else None
        results = _run(_spread(chosen, len(chosen)), covered, gates, base, args.jobs,
                       args.lazy_quick, journal, args.no_run)
    if results is None:
        return 1
    lazy = " (quick only where the tests did not catch)" if args.lazy_quick else ""
    heading = (f"Mutation run: seed {args.seed}, {args.per_module} per module, gates "
               f"{', '.join(gates)}{lazy}, tree {tree[:12]}")
    text = markdown(results, gates, heading)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text)
    if args.json:
        Path(args.json).write_text(json.dumps({
            "seed": args.seed, "per_module": args.per_module, "gates": list(gates),
            "tree": tree, "mutants": [r.as_json() for r in results]}, indent=1))
    errors = [r for r in results if any(o.status == "error" for o in r.outcomes.values())]
    for result in errors:
        print(f"could not judge {result.mutant.describe()}: "
              f"{[o.by for o in result.outcomes.values() if o.status == 'error']}",
              file=sys.stderr)
    t = tally(results)
    low = args.min_score is not None and t.counted and 100 * t.either / t.counted < args.min_score
    return 1 if errors or low else 0


def _verify_caught(jobs: int) -> int:
    """Every survivor caught.json names is killed by the test it names."""
    named = {key: entry for key, entry in json.loads(CAUGHT_FILE.read_text()).items()}
    chosen: list[Mutant] = []
    lines: dict[str, dict[int, list[str]]] = {}
    for module in sorted({entry["module"] for entry in named.values()}):
        path = f"model/{module.removeprefix('model.')}.py"
        for mutant in mutants(module, path, (ROOT / path).read_bytes(), type_only=True):
            if mutant.key in named:
                chosen.append(mutant)
                lines.setdefault(path, {}).setdefault(mutant.line, []).append(
                    named[mutant.key]["test"])
    missing = sorted(set(named) - {m.key for m in chosen})
    with tempfile.TemporaryDirectory(prefix="memspec-mutation-") as scratch:
        results = _run(chosen, CoverageMap(lines, {}), ("tests",), Path(scratch), jobs,
                       False, None)
    alive = [r for r in results or [] if r.verdict not in ("killed", "timeout")]
    for result in alive:
        print(f"not killed by its test: {result.mutant.describe()}", file=sys.stderr)
    for key in missing:
        print(f"caught.json names {key}, which is no mutant of the model now", file=sys.stderr)
    print(f"{len(chosen) - len(alive)} of {len(named)} survivors killed by their new tests")
    return 1 if alive or missing or results is None else 0


class Journal:
    """Verdicts as they are reached, one JSON line each, tagged with the tree and
    the gates they were reached under; only matching lines are reused."""

    def __init__(self, path: Path, tree: str, gates: tuple[str, ...], lazy: bool) -> None:
        self.path, self.gates = path, gates
        self.tag: dict[str, object] = {"tree": tree, "gates": list(gates), "lazy": lazy}

    def known(self) -> dict[str, dict[str, Outcome]]:
        found: dict[str, dict[str, Outcome]] = {}
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                entry = json.loads(line)
                if all(entry.get(name) == value for name, value in self.tag.items()):
                    found[entry["key"]] = {gate: Outcome(**entry[gate])
                                           for gate in self.gates}
        return found

    def add(self, result: Result) -> None:
        with self.path.open("a") as stream:
            stream.write(json.dumps({**self.tag, **result.as_json()}) + "\n")


def _diff(mutant: Mutant) -> str:
    """The mutant as a unified diff of its module, headed by its key."""
    source = (ROOT / mutant.path).read_bytes()
    before = source.decode().splitlines(keepends=True)
    after = mutant.apply(source).decode().splitlines(keepends=True)
    body = "".join(difflib.unified_diff(before, after, f"a/{mutant.path}", f"b/{mutant.path}"))
    return f"# {mutant.key} {mutant.describe()}\n{body}"


def _spread(chosen: list[Mutant], limit: int) -> list[Mutant]:
    """At most limit mutants, one module after another (round robin)."""
    by_module: dict[str, list[Mutant]] = {}
    for mutant in chosen:
        by_module.setdefault(mutant.module, []).append(mutant)
    picked: list[Mutant] = []
    queues = list(by_module.values())
    while len(picked) < limit and any(queues):
        for queue in queues:
            if queue and len(picked) < limit:
                picked.append(queue.pop(0))
    return picked


def _run(chosen: list[Mutant], covered: CoverageMap, gates: tuple[str, ...], base: Path,
         jobs: int, lazy: bool, journal: Journal | None,
         no_run: bool = False) -> list[Result] | None:
    """Every chosen mutant's result, taken round robin over the modules (so a run
    stopped early has judged every module about as far)."""
    equivalent = equivalents()
    known = journal.known() if journal else {}
    ready = [Result(m, known[m.key], equivalent.get(m.key)) for m in chosen if m.key in known]
    chosen = [m for m in chosen if m.key not in known]
    if ready:
        print(f"{len(ready)} verdicts from the journal, {len(chosen)} mutants "
              f"{'not run (--no-run)' if no_run else 'to run'}", file=sys.stderr)
    if not chosen or no_run:
        return ready
    cache = ROOT / ".memspec-cache"
    limit_memory()
    workers = [Worker(ROOT, base / f"worker-{index}", cache) for index in range(jobs)]
    quick_limit = Limits(tests_seconds=0, check_seconds=900, obligation_seconds=120)
    if "quick" in gates:
        baseline = workers[0].baseline(quick_limit)
        if baseline.status != "survived":
            print(f"the quick profile fails without any mutant: {baseline.by}", file=sys.stderr)
            return None
        print(f"baseline: the quick profile passes on the unmutated copy "
              f"({baseline.seconds:.1f} s)", file=sys.stderr)
    if "tests" in gates:
        wanted = sorted({t for m in chosen for t in covered.tests_for(m.path, m.line)})
        found = workers[0].collectable(wanted)
        found |= {test.split("::", 1)[0] for test in found}  # whole files (--select own)
        if set(wanted) - found:
            print(f"{len(set(wanted) - found)} of {len(wanted)} recorded tests are not "
                  f"collected on the unmutated tree and are left out: "
                  f"{sorted(set(wanted) - found)[:5]}", file=sys.stderr)
        covered = covered.only(found)
    free = list(workers)
    lock = threading.Lock()
    done = [0]
    started = time.monotonic()

    def judge(mutant: Mutant) -> Result:
        with lock:
            worker = free.pop()
        try:
            tests = covered.tests_for(mutant.path, mutant.line)
            limits = Limits(tests_seconds=60 + 3 * covered.seconds(tests),
                            check_seconds=quick_limit.check_seconds,
                            obligation_seconds=quick_limit.obligation_seconds)
            outcomes = worker.run(mutant, tests, limits, gates, lazy)
        finally:
            with lock:
                free.append(worker)
        result = Result(mutant, outcomes, equivalent.get(mutant.key))
        with lock:
            if journal:
                journal.add(result)
            done[0] += 1
            parts = "; ".join(f"{gate} {o.status} {o.seconds:.0f} s"
                              + (f" ({o.by[:80]})" if o.by else "")
                              for gate, o in outcomes.items())
            print(f"[{done[0]}/{len(chosen)} {time.monotonic() - started:.0f} s] "
                  f"{result.verdict}: {mutant.describe()} | {parts}", file=sys.stderr, flush=True)
        return result

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return ready + list(pool.map(judge, chosen))


if __name__ == "__main__":
    sys.exit(main())
