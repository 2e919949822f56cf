"""Running one mutant: a private copy of the tree, the mutant spliced into it,
its tests and the quick profile each run as the user runs them, with a limit.

Each worker owns a copy of model/, spec/, proofs/, tests/ and the proof cache
(so the quick profile decides again only the obligations whose sources the
mutant changed, exactly as a warm ``python -m proofs.check --profile quick``
would) and imports from it: the copy is the working directory and
``PYTHONPATH``, which Python searches before the editable install. The
mutated file is restored after every mutant, and hypothesis' example
database is removed, so no mutant sees another's failing examples.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from proofs.mutation.operators import Mutant

#: The statuses that count as catching a mutant: a failure, or a hang the
#: harness stopped and reported.
CAUGHT = ("killed", "timeout")
_COPIED = ("model", "spec", "proofs", "tests", "pyproject.toml")
_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis")


@dataclass(frozen=True)
class Outcome:
    """What one gate made of one mutant.

    ``status``: ``killed`` (a test or obligation failed), ``timeout`` (the gate
    ran past its limit: a hang, reported as one), ``survived`` (the gate
    passed), ``untested`` (no test executes the line), ``error`` (the gate
    could not run, e.g. a usage error), ``skipped`` (not run: the tests
    caught the mutant and the run was lazy). ``by`` names what killed it."""

    status: str
    by: str
    seconds: float


@dataclass(frozen=True)
class Limits:
    tests_seconds: float
    check_seconds: float
    obligation_seconds: float


class Worker:
    """One private tree; runs one mutant at a time."""

    def __init__(self, source: Path, directory: Path, cache: Path | None) -> None:
        self.root = directory
        if directory.exists():
            shutil.rmtree(directory)
        directory.mkdir(parents=True)
        for name in _COPIED:
            origin = source / name
            if origin.is_dir():
                shutil.copytree(origin, directory / name, ignore=_IGNORED)
            else:
                shutil.copy2(origin, directory / name)
        self.cache = directory / ".memspec-cache"
        if cache is not None and cache.is_dir():
            shutil.copytree(cache, self.cache)
        self.environment = {**os.environ, "PYTHONPATH": str(directory),
                            "PYTHONDONTWRITEBYTECODE": "1"}

    def run(self, mutant: Mutant, tests: list[str], limits: Limits,
            gates: tuple[str, ...], lazy: bool = False) -> dict[str, Outcome]:
        """Each gate's outcome; with lazy, the quick profile runs only when the
        tests did not catch the mutant (``skipped`` otherwise)."""
        path = self.root / mutant.path
        original = path.read_bytes()
        path.write_bytes(mutant.apply(original))
        try:
            outcomes: dict[str, Outcome] = {}
            if "tests" in gates:
                outcomes["tests"] = self._tests(tests, limits.tests_seconds)
            if "quick" in gates:
                caught = outcomes.get("tests", Outcome("", "", 0)).status in CAUGHT
                outcomes["quick"] = Outcome("skipped", "", 0.0) if lazy and caught \
                    else self._quick(limits)
            return outcomes
        finally:
            path.write_bytes(original)
            shutil.rmtree(self.root / ".hypothesis", ignore_errors=True)

    def baseline(self, limits: Limits) -> Outcome:
        """The quick profile on the unmutated copy: must pass (and warms its cache)."""
        return self._quick(limits)

    def collectable(self, tests: list[str]) -> set[str]:
        """The test functions pytest collects on the unmutated tree, out of tests."""
        _, output, _ = self._call(self._pytest(tests, "--collect-only"), 600)
        return {line.split("[", 1)[0] for line in output.splitlines() if "::" in line}

    def _tests(self, tests: list[str], limit: float) -> Outcome:
        if not tests:
            return Outcome("untested", "", 0.0)
        code, output, seconds = self._call(self._pytest(tests, "-x", "-rf", "--no-header"),
                                           limit)
        if code is None:
            return Outcome("timeout", f"no verdict within {limit:.0f} s", seconds)
        if code == 0:
            return Outcome("survived", "", seconds)
        if code in (1, 2):
            failed = re.search(r"^(?:FAILED|ERROR) (\S+)", output, re.MULTILINE)
            by = failed.group(1) if failed else _last_line(output)
            return Outcome("killed", by, seconds)
        if code < 0:
            return Outcome("killed", f"pytest died of signal {-code}", seconds)
        if code == 4 and "found no collectors" in output:
            # every id was collected on the unmutated tree (collectable): the
            # mutant makes a test module fail while it is collected
            return Outcome("killed", "a test module no longer collects: "
                           + _last_line(output), seconds)
        return Outcome("error", f"pytest exit {code}: {_last_line(output)}", seconds)

    def _pytest(self, tests: list[str], *options: str) -> list[str]:
        """pytest on exactly these node ids (read from a file: there may be
        thousands), without the project's ``-n auto`` or its cache."""
        listing = self.root / ".mutation-tests"
        listing.write_text("\n".join(tests) + "\n")
        return [sys.executable, "-m", "pytest", "-q", *options, "-p", "no:cacheprovider",
                "-o", "addopts=", f"@{listing}"]

    def _quick(self, limits: Limits) -> Outcome:
        report = self.root / ".mutation-quick.json"
        report.unlink(missing_ok=True)
        command = [sys.executable, "-m", "proofs.check", "--profile", "quick", "--jobs", "1",
                   "--cache-dir", str(self.cache), "--timeout", f"{limits.obligation_seconds:g}",
                   "--json", str(report)]
        code, output, seconds = self._call(command, limits.check_seconds)
        if code is None:
            return Outcome("timeout", f"no verdict within {limits.check_seconds:.0f} s",
                           seconds)
        if code == 0:
            return Outcome("survived", "", seconds)
        if code == 1 and report.exists():
            failed = [o for o in json.loads(report.read_text())["obligations"]
                      if o["kind"] in ("COUNTEREXAMPLE", "UNKNOWN", "ERROR")]
            if failed and all(o["kind"] == "UNKNOWN" and "timeout" in o["summary"].lower()
                              for o in failed):
                return Outcome("timeout", failed[0]["id"] + ": " + failed[0]["summary"],
                               seconds)
            return Outcome("killed", ", ".join(f"{o['id']} ({o['kind']})" for o in failed[:3])
                           + (f" and {len(failed) - 3} more" if len(failed) > 3 else ""),
                           seconds)
        if code == 1 or code < 0:
            return Outcome("killed", _last_line(output) or f"died of signal {-code}", seconds)
        return Outcome("error", f"proofs.check exit {code}: {_last_line(output)}", seconds)

    def _call(self, command: list[str], limit: float) -> tuple[int | None, str, float]:
        """Exit code (None past the limit, the whole process group then killed),
        combined output and seconds."""
        start = time.monotonic()
        process = subprocess.Popen(command, cwd=self.root, env=self.environment,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            output, _ = process.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            return None, "", time.monotonic() - start
        return process.returncode, output.decode(errors="replace"), time.monotonic() - start


#: Address space per gate process: a mutant that turns a page count into a
#: byte count (``<<`` for ``>>``) would otherwise take the machine's memory.
MEMORY_LIMIT = 6 << 30


def limit_memory() -> None:
    """Cap this process's address space, and so every gate process it starts
    (a limit is inherited; set here rather than in a preexec_fn, which is not
    safe beside the worker threads)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = MEMORY_LIMIT if hard == resource.RLIM_INFINITY else min(MEMORY_LIMIT, hard)
    if soft == resource.RLIM_INFINITY or soft > cap:
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))


def _last_line(output: str) -> str:
    lines = [line for line in output.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""
