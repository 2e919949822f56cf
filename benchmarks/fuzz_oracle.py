"""The oracle's own fuzzer: hostile implementations against it, for as long as asked.

Run from the repository root:

    .venv/bin/python benchmarks/fuzz_oracle.py [--seconds S] [--seed N]

Each round picks, at random, an attack of ``tests/oracle_impls.py``'s HOSTILE
implementation (at the hello, with the processes it starts, or at one
request: a crash, a hang, garbage, a reply twice or out of order, a partial or
enormous line, deep nesting, NUL bytes, invalid UTF-8, a wrong JSON type or an
extreme integer at any field, closed pipes, a flood of stdout or stderr, a
setsid grandchild, SIGTERM ignored), the request it strikes, the family and
the mode, and runs the oracle on it in this process: a replay of the family's
set-up and a few operations, or (one round in five) a search that shrinks.
A round counts as

- an *oracle crash* when an exception escapes the oracle (the run, the report
  or the JUnit file, which must parse as XML): must be 0;
- a *leftover* for each process carrying the round's tag still alive after it
  (the fuzzer then kills it): must be 0;
- *unclear* when a replay of an attack that must diverge did not, or not with
  the kind and words ``EXPECTED`` gives it;
- *slow* when it took longer than its bound (the timeouts it may wait, plus
  starting the processes);
- else a *divergence*, or a *pass* (an attack the protocol allows, or one
  aimed past the end of the sequence).

Prints the figures as a table; exit status 0 when no oracle crash and no
leftover was seen, else 1.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import tempfile
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_paging import load_average, machine_info  # noqa: E402
from proofs.oracle.child import end_children_on_sigterm  # noqa: E402
from proofs.oracle.report import describe, write_junit  # noqa: E402
from proofs.oracle.run import Outcome, replay, search  # noqa: E402
from tests.oracle_impls import (  # noqa: E402
    EXPECTED,
    EXTREME_VALUES,
    HARMLESS,
    WRONG_TYPES,
    hostile_impl,
    tagged,
)

#: Seconds each request may take in a round (a hang costs this much).
TIMEOUT = 1.0
#: Attacks that strike before the first request (``at`` does not matter).
AT_THE_START = ("no-hello", "bad-hello", "garbage-hello", "version", "huge-hello",
                "deep-hello", *HARMLESS)
#: A few operations per family after its set-up calls (PROTOCOL.md).
OPERATIONS: dict[str, list[dict[str, Any]]] = {
    "kernel": [{"manager": "PageManager", "op": "RequestFrame",
                "args": {"is_kernel": True, "is_writeable": True}},
               {"manager": "KernelHeap", "op": "Alloc", "args": {"size": 40,
                                                                  "page_align": False}},
               {"manager": "PageManager", "op": "GetFreeFrameCount", "args": {}}],
    "dos": [{"manager": "DosMemoryManager", "op": "AllocateDosMemory",
             "args": {"paragraphs": 16}},
            {"manager": "DosMemoryManager", "op": "XmsAllocate", "args": {"kb": 4}},
            {"manager": "DosMemoryManager", "op": "EmsAllocate", "args": {"pages": 2}}],
    "user": [{"manager": "SystemCalls", "op": "SyscallVirtualAlloc",
              "args": {"address": 0, "size": 0x2000, "allocation_type": 0x3000,
                       "protect": 4}},
             {"manager": "SystemCalls", "op": "SyscallMmap",
              "args": {"addr": 0, "length": 0x1000, "prot": 3, "flags": 0x22, "fd": -1,
                       "offset": 0}}],
    "shared": [{"manager": "SharedMemoryManager", "op": "CreateSharedMemory",
                "args": {"size": 0x2000, "permissions": 4}}],
}
#: How often each family is drawn (spec mode judges user and shared sequences
#: with seconds of z3 each).
FAMILY_WEIGHTS = {"kernel": 4, "dos": 3, "user": 1, "shared": 1}


@dataclass
class Round:
    """One attack: what was tried and what the oracle concluded."""

    attack: str
    at: int
    extra: int
    mode: str
    family: str
    searched: bool
    tag: str = field(default_factory=lambda: f"fuzz-{uuid.uuid4().hex}")


@dataclass
class Figures:
    """What the campaign saw."""

    tried: Counter[str] = field(default_factory=Counter)
    verdicts: Counter[str] = field(default_factory=Counter)
    leftovers: int = 0
    slowest: tuple[float, str] = (0.0, "")
    notes: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        if len(self.notes) < 20:
            self.notes.append(text)


def attacks() -> list[str]:
    """Every attack, with each wrong type and extreme value as one."""
    plain = [a for a in EXPECTED if "@" not in a]
    return [*plain, *HARMLESS, *(f"type-{t}" for t in WRONG_TYPES),
            *(f"value-{v}" for v in EXTREME_VALUES)]


def draw(rng: random.Random, every: list[str]) -> Round:
    family = rng.choices(list(FAMILY_WEIGHTS), weights=list(FAMILY_WEIGHTS.values()))[0]
    return Round(attack=rng.choice(every), at=rng.randint(1, 40), extra=rng.randrange(64),
                 mode=rng.choice(("strict", "spec")), family=family,
                 searched=rng.random() < 0.2)


def run(round_: Round, tmp: Path, seed: int) -> Outcome:
    command = hostile_impl(tmp, round_.attack, round_.at, round_.tag, round_.extra)
    if round_.searched:
        return search(command, round_.mode, max_examples=3, time_limit=30, seed=seed,
                      steps=6, timeout=TIMEOUT, shrink_seconds=2,
                      families=(round_.family,))
    return replay(command, round_.mode, OPERATIONS[round_.family], TIMEOUT,
                  family=round_.family)


def bound(round_: Round) -> float:
    """Seconds a round may take: its timeouts, starting and ending its processes."""
    per_child = TIMEOUT + 4.0
    return 40.0 + 10 * per_child if round_.searched else 10.0 + 3 * per_child + (
        20.0 if round_.mode == "spec" and round_.family in ("user", "shared") else 0.0)


def reached(round_: Round, outcome: Outcome) -> bool:
    """Whether the attack struck: at the start, or at a request the sequence has."""
    requests = (sum(outcome.coverage.operations.values())
                + sum(outcome.coverage.observations.values()))
    return round_.attack in AT_THE_START or round_.at <= requests


def verdict(round_: Round, outcome: Outcome) -> str:
    """divergence, pass or unclear (see the module's docstring)."""
    d = outcome.divergence
    if outcome.unknown is not None:
        return "undecided"
    if round_.attack in HARMLESS or round_.attack.startswith(("type-", "value-")):
        return "pass" if d is None else "divergence" if d.reason.strip() else "unclear"
    if not reached(round_, outcome) and d is None:
        return "pass"
    want = EXPECTED.get(f"{round_.attack}@{round_.mode}", EXPECTED.get(round_.attack))
    if d is None or want is None:
        return "unclear"
    if round_.searched:  # shrinking may strike elsewhere first: any clear verdict
        return "divergence" if d.reason.strip() else "unclear"
    return "divergence" if d.kind == want[0] and want[1] in d.reason else "unclear"


def check_reports(outcome: Outcome, tmp: Path) -> None:
    """The report prints and the JUnit file parses (raises otherwise)."""
    report = describe(outcome)
    junit = tmp / "oracle.xml"
    write_junit(junit, [outcome], [report])
    ElementTree.parse(junit)


def survivors(tag: str) -> int:
    """Kill (and count) the tag's processes still alive, after a moment to die."""
    deadline = time.monotonic() + 0.5
    while (alive := tagged(tag)) and time.monotonic() < deadline:
        time.sleep(0.02)
    for pid in alive:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return len(alive)


def one_round(round_: Round, tmp: Path, seed: int, figures: Figures) -> None:
    name = f"{round_.attack} at #{round_.at} ({round_.family}, {round_.mode}" \
           f"{', search' if round_.searched else ''})"
    figures.tried[round_.attack] += 1
    start = time.monotonic()
    try:
        outcome = run(round_, tmp, seed)
        check_reports(outcome, tmp)
        result = verdict(round_, outcome)
    except Exception:  # an oracle crash: what the fuzzer is looking for
        result = "oracle crash"
        figures.note(f"{name}: {traceback.format_exc()}")
    seconds = time.monotonic() - start
    left = survivors(round_.tag)
    figures.leftovers += left
    if left:
        figures.note(f"{name}: {left} processes left")
    if result == "unclear":
        figures.note(f"{name}: unclear verdict: {outcome.divergence}")
    figures.verdicts[result] += 1
    if seconds > bound(round_):
        figures.verdicts["slow"] += 1
        figures.note(f"{name}: {seconds:.1f} s")
    figures.slowest = max(figures.slowest, (seconds, name))


def campaign(seconds: float, seed: int, progress: Callable[[int], None] | None = None
             ) -> Figures:
    rng = random.Random(seed)
    every = attacks()
    figures = Figures()
    deadline = time.monotonic() + seconds
    with tempfile.TemporaryDirectory() as tmp:
        n = 0
        while time.monotonic() < deadline:
            # the first rounds try every attack once, in order; then at random
            round_ = draw(rng, every)
            if n < len(every):
                round_.attack = every[n]
            one_round(round_, Path(tmp), seed * 1_000_003 + n, figures)
            n += 1
            if progress is not None:
                progress(n)
    return figures


def table(figures: Figures, seconds: float) -> list[str]:
    v = figures.verdicts
    rows = [("attacks tried", sum(figures.tried.values())),
            ("kinds of attack", len(figures.tried)),
            ("divergences", v["divergence"]),
            ("passes (allowed, or past the sequence's end)", v["pass"]),
            ("unclear verdicts", v["unclear"]),
            ("undecided (z3)", v["undecided"]),
            ("slow rounds", v["slow"]),
            ("oracle crashes (must be 0)", v["oracle crash"]),
            ("leftover processes (must be 0)", figures.leftovers)]
    lines = ["| figure | value |", "| --- | ---: |", *(f"| {k} | {n:,} |" for k, n in rows)]
    lines.append(f"| slowest round | {figures.slowest[0]:.1f} s ({figures.slowest[1]}) |")
    lines.append(f"| wall time | {seconds:.0f} s |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="benchmarks/fuzz_oracle.py",
        description="Attack the oracle with hostile implementations; report oracle "
                    "crashes and leftover processes (both must be 0).")
    parser.add_argument("--seconds", type=float, default=60.0,
                        help="how long to attack (default 60; every attack is tried at "
                             "least once first)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the choices (default 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)
    if not 0 < args.seconds < float("inf") or args.seed < 0:
        parser.error("--seconds must be positive and finite, --seed 0 or more")
    end_children_on_sigterm()
    print("; ".join(f"{k}: {v}" for k, v in machine_info()))
    print(f"load average before: {load_average()}", flush=True)
    start = time.monotonic()
    figures = campaign(args.seconds, args.seed, None if args.quiet else lambda n: print(
        f"  {n} rounds, {time.monotonic() - start:.0f} s", file=sys.stderr, flush=True)
        if n % 25 == 0 else None)
    print("\n".join(table(figures, time.monotonic() - start)))
    print(f"load average after: {load_average()}")
    for text in figures.notes:
        print(f"\n{text}")
    return 0 if figures.verdicts["oracle crash"] == 0 and figures.leftovers == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
