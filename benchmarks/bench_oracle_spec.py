"""Spec-mode search speed: sequences per second per family, at the default and
the real-size configuration (issue 16).

Run from the repository root (builds the C implementation of tests/oracle_impl
with cc):

    .venv/bin/python benchmarks/bench_oracle_spec.py [--seconds S] [--family NAME ...]

Each row is one ``search`` in spec mode (seed 1, 25 steps a sequence, the
oracle's defaults otherwise) for ``--seconds`` (default 30) against a clean
implementation, so nothing diverges and the whole budget goes to generating
and judging sequences: the C fixture (the kernel family; its real size is
``MEMIMPL_CONFIG=real``) and the model shim (every family; its real size is
declared with ``--config``). The real-size configuration is the tutorial
heap's (index capacity 0x20000, min size 0x70000, a 1 MB initial heap) on
4096 frames, and 4096 frames for the other families' physical memory.
Sequences/s counts sequences judged to the end (set-up calls included). The
machine may be shared: each row gives the oracle's CPU seconds and the
implementation's (its children's, reaped) beside the wall time, and the load
average is printed before and after.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_paging import load_average, machine_info  # noqa: E402
from proofs.oracle.run import search  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
#: The real-size configuration (PROTOCOL.md, "Configuration").
REAL = {"kernel": {"mem_end": 0x1000000, "heap_end": 0xC0100000, "heap_max": 0xCFFFF000,
                   "index_size": 0x20000, "min_size": 0x70000},
        "dos": {"mem_end": 0x1000000}, "user": {"mem_end": 0x1000000},
        "shared": {"mem_end": 0x1000000}}
FAMILIES = ("kernel", "dos", "user", "shared")


def build(out: Path) -> str:
    binary = out / "memimpl"
    subprocess.run(["cc", "-std=c11", "-O2", "-o", str(binary),
                    *sorted(str(p) for p in (ROOT / "tests" / "oracle_impl").glob("*.c"))],
                   check=True)
    return str(binary)


def rate(command: str, family: str, seconds: float) -> tuple[int, float, int, str]:
    """(sequences, seconds, operations, verdict) of one spec-mode search."""
    outcome = search(command, "spec", max_examples=1_000_000, time_limit=seconds, seed=1,
                     families=(family,))
    verdict = ("passed" if outcome.passed else "refused" if outcome.refused else
               "diverged" if outcome.divergence else "unknown")
    return (outcome.examples, outcome.seconds, sum(outcome.coverage.operations.values()),
            verdict)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--family", action="append", choices=FAMILIES)
    args = parser.parse_args()
    out = Path(tempfile.mkdtemp())
    binary = build(out)
    config = out / "real.json"
    config.write_text(json.dumps(REAL))
    model = f"{sys.executable} -m proofs.oracle.model_shim"
    rows = []
    for family in args.family or FAMILIES:
        if family == "kernel":
            rows += [(family, "C fixture", "default", binary),
                     (family, "C fixture", "real size", f"MEMIMPL_CONFIG=real {binary}")]
        rows += [(family, "model shim", "default", model),
                 (family, "model shim", "real size", f"{model} --config {config}")]
    print("; ".join(f"{k}: {v}" for k, v in machine_info()))
    print(f"load average before: {load_average()}")
    print("| family | implementation | configuration | sequences | seconds | sequences/s "
          "| operations/s | oracle CPU s | implementation CPU s | verdict |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for family, name, size, command in rows:
        start, cpu = time.monotonic(), time.process_time()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        sequences, seconds, operations, verdict = rate(command, family, args.seconds)
        seconds = seconds or time.monotonic() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        children = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        print(f"| {family} | {name} | {size} | {sequences} | {seconds:.1f} | "
              f"{sequences / seconds:.2f} | {operations / seconds:.0f} | "
              f"{time.process_time() - cpu:.1f} | {children:.1f} | {verdict} |", flush=True)
    print(f"load average after: {load_average()}")


if __name__ == "__main__":
    main()
