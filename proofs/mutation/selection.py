"""Which tests can kill a mutant: the ones that execute its line.

One run of the whole suite under coverage.py with pytest-cov's per-test
contexts (``--cov-context=test``) records, for every line of model/, the
pytest node ids that executed it, and a JUnit report gives each test's time.
A mutant then runs only its line's tests, fastest first, and stops at the
first failure (mutmut and cosmic-ray select the same way). A line no test
executes by name (a module-level constant, run at import) falls back to every
test that executed any line of its module. Tests that only reach the model in
a subprocess (the oracle's, the CLI's) are not recorded; the quick profile,
run in full for every mutant, covers those paths.

The map is kept under ``.memspec-cache/mutation/`` and keyed by the digest of
model/, spec/, proofs/ and tests/, so a changed test or model is collected again.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

import coverage

_TREES = ("model", "spec", "proofs", "tests")


@dataclass(frozen=True)
class CoverageMap:
    """Tests by the model lines they executed, and each test's seconds."""

    lines: dict[str, dict[int, list[str]]]
    durations: dict[str, float]

    def tests_for(self, path: str, line: int) -> list[str]:
        """The node ids that can kill a mutant at path:line, fastest first."""
        by_line = self.lines.get(path, {})
        tests = by_line.get(line)
        if not tests:
            tests = sorted({test for ids in by_line.values() for test in ids})
        return sorted(tests, key=lambda test: (self.durations.get(test, 0.0), test))

    def only(self, tests: set[str]) -> CoverageMap:
        """The map restricted to the given tests."""
        return CoverageMap({path: {line: [t for t in ids if t in tests]
                                   for line, ids in lines.items()}
                            for path, lines in self.lines.items()}, self.durations)

    def seconds(self, tests: list[str]) -> float:
        return sum(self.durations.get(test, 0.0) for test in tests)


def own_tests(root: Path, paths: list[str]) -> CoverageMap:
    """The cheap selection for a smoke run: a module's own test file
    (tests/test_<module>.py), whole, for every line of the module."""
    lines: dict[str, dict[int, list[str]]] = {}
    for path in paths:
        own = f"tests/test_{Path(path).stem}.py"
        if (root / own).exists():
            count = (root / path).read_bytes().count(b"\n") + 1
            lines[path] = {line: [own] for line in range(1, count + 1)}
    return CoverageMap(lines, {})


def tree_digest(root: Path) -> str:
    """The digest of every Python source the mutation verdicts depend on (the
    mutation tool's own code aside)."""
    digest = hashlib.sha256()
    for tree in _TREES:
        for path in sorted((root / tree).rglob("*.py")):
            if path.parent.name == "mutation" and path.parent.parent.name == "proofs":
                continue
            digest.update(str(path.relative_to(root)).encode() + b"\0")
            digest.update(path.read_bytes())
    return digest.hexdigest()


def coverage_map(root: Path, cache: Path, jobs: int) -> CoverageMap:
    """The map for the tree at root: read from the cache, or collected now."""
    stored = cache / f"coverage-{tree_digest(root)[:16]}.json"
    if not stored.exists():
        cache.mkdir(parents=True, exist_ok=True)
        collected = _collect(root, cache, jobs)
        stored.write_text(json.dumps({
            "lines": collected.lines, "durations": collected.durations}))
    data = json.loads(stored.read_text())
    return CoverageMap({path: {int(line): ids for line, ids in lines.items()}
                        for path, lines in data["lines"].items()}, data["durations"])


def _collect(root: Path, cache: Path, jobs: int) -> CoverageMap:
    data_file, junit = cache / "coverage.data", cache / "junit.xml"
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
               "-n", str(jobs), "--cov=model", "--cov-context=test", "--cov-report=",
               f"--junit-xml={junit}"]
    print(f"collecting test coverage of model/: {' '.join(command[1:])}", file=sys.stderr)
    environment = {**os.environ, "COVERAGE_FILE": str(data_file)}
    result = subprocess.run(command, cwd=root, env=environment, check=False)
    if result.returncode != 0:
        raise RuntimeError(
            f"the test suite fails without any mutant (exit {result.returncode}); "
            "mutation scores need a green suite")
    data = coverage.CoverageData(str(data_file))
    data.read()
    lines: dict[str, dict[int, list[str]]] = {}
    for measured in data.measured_files():
        path = Path(measured).resolve().relative_to(root.resolve()).as_posix()
        contexts = data.contexts_by_lineno(measured)
        lines[path] = {line: sorted({_node_id(context) for context in names if context})
                       for line, names in contexts.items()}
    return CoverageMap(lines, _durations(junit, root))


def _node_id(context: str) -> str:
    """The test function of a context: pytest-cov names a context ``<node
    id>|run`` (or ``|setup``, ``|teardown``); the parameters are dropped, since
    pytest cannot select some ids it prints (escaped bytes in them), so a
    parametrized test runs whole."""
    return context.rsplit("|", 1)[0].split("[", 1)[0]


def _durations(junit: Path, root: Path) -> dict[str, float]:
    """Seconds per node id, from the JUnit report's classname and name."""
    durations: dict[str, float] = {}
    for case in ElementTree.parse(junit).iter("testcase"):
        parts = case.get("classname", "").split(".")
        for cut in range(len(parts), 0, -1):
            path = "/".join(parts[:cut]) + ".py"
            if (root / path).exists():
                node = "::".join([path, *parts[cut:], case.get("name", "").split("[", 1)[0]])
                durations[node] = durations.get(node, 0.0) + float(case.get("time", "0"))
                break
    return durations
