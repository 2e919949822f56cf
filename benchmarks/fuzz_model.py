"""A longer campaign of the model fuzzer (tests/model_fuzzer.py, issue 17).

Random sequences of the model's public operations, with hostile and meaningful
arguments, in booted and fresh worlds, for a time budget; every call is checked
as the CI test checks it (no exception, its status set, a failed call changes
nothing, under a second, no allocation in proportion to a hostile size). A
defect is recorded and the campaign goes on in a fresh world; the report counts
calls tried, calls that succeeded and failed, and the defects found (0 is the
passing result: exit status 1 otherwise).

    python benchmarks/fuzz_model.py --seconds 300 --seed 1
"""

from __future__ import annotations

import argparse
import collections
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.model_fuzzer import (  # noqa: E402
    Defect,
    arguments,
    call,
    operations,
    status_of,
    world,
)

STEPS = 40  # calls in one world before a fresh one is built


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="time budget (default 60)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the campaign")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    ops = operations()
    tried, failed = collections.Counter[str](), collections.Counter[str]()
    defects: list[str] = []
    worlds = 0
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="memspec-fuzz-") as directory:
        while time.monotonic() - start < args.seconds:
            stage = rng.choice(("booted", "booted", "fresh"))
            w = world(stage, tempfile.mkdtemp(dir=directory))
            worlds += 1
            for _ in range(STEPS):
                op = rng.choice(ops)
                call_args, kwargs = arguments(op, rng.choice, lambda p: rng.random() < p, w)
                tried[op.label] += 1
                try:
                    call(w, op, call_args, kwargs)
                except Defect as defect:
                    defects.append(str(defect))
                    break
                holder = w.targets.get(op.owner) if op.method else None
                if holder is not None and status_of(holder) not in (None, 0):
                    failed[op.label] += 1
    seconds = time.monotonic() - start
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=Path(__file__).resolve().parent.parent).stdout.strip()
    total = sum(tried.values())
    print(f"model fuzz campaign: seed {args.seed}, {seconds:.0f} s, commit {commit or '?'}")
    print(f"operations: {len(ops)} ({len(tried)} called); worlds: {worlds}")
    print(f"calls tried: {total}; failed with a status (methods): {sum(failed.values())}")
    print(f"defects found: {len(defects)}")
    for defect in defects[:20]:
        print(f"  {defect}")
    return 1 if defects else 0


if __name__ == "__main__":
    sys.exit(main())
