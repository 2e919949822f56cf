"""Throughput of the oracle's protocol in strict mode, and of the model alone.

Run from the repository root (builds the C implementation of tests/oracle_impl
with cc):

    .venv/bin/python benchmarks/bench_oracle.py [--ops N] [--repeat N]

A seeded trace of N operations (default 20,000) over the protocol's world is
generated on the model: RequestFrame / FreeFrame of held frames, Alloc of 0..2
KB (a tenth page-aligned) / Free of live blocks, the frame counts, payload
writes, FindSmallestHole. Then it is timed three ways, best of ``--repeat``:

1. the model alone: ``ModelWorld.handle`` per request (what strict mode
   computes for every request anyway);
2. strict mode through the protocol against the C implementation, operations
   only: every request sent, every reply validated and compared;
3. the same with the five state observations after every operation (what the
   oracle's generated sequences do), counting observations as requests.

The target is 20,000 protocol operations per second in strict mode (2.).
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_paging import load_average, machine_info  # noqa: E402
from proofs.oracle.run import replay  # noqa: E402
from proofs.oracle.world import MANAGERS, ModelWorld  # noqa: E402
from proofs.oracle.worlds.kernel import setup_calls  # noqa: E402

SEED = 20261129
TARGET = 20_000
ROOT = Path(__file__).resolve().parent.parent


def make_trace(count: int, seed: int = SEED) -> list[dict[str, Any]]:
    """count operations chosen on the model (its replies pick the arguments)."""
    rng = random.Random(seed)
    world = ModelWorld()
    for manager, op, args in setup_calls(MANAGERS):
        world.call(manager, op, args)
    frames: list[int] = []
    live: list[tuple[int, int]] = []
    ops: list[dict[str, Any]] = []

    def call(manager: str, op: str, **args: Any) -> Any:
        ops.append({"manager": manager, "op": op, "args": args})
        result, error = world.call(manager, op, args)
        return result if error == 0 else None

    while len(ops) < count:
        r = rng.random()
        if r < 0.15:
            frame = call("PageManager", "RequestFrame", is_kernel=True, is_writeable=True)
            if frame is not None:
                frames.append(frame)
        elif r < 0.3 and frames:
            call("PageManager", "FreeFrame", frame_addr=frames.pop(rng.randrange(len(frames))))
        elif r < 0.35:
            call("PageManager", rng.choice(("GetFreeFrameCount", "FirstFreeFrame")))
        elif r < 0.6 and len(live) < 12:
            size = rng.randrange(0, 2048)
            p = call("KernelHeap", "Alloc", size=size, page_align=rng.random() < 0.1)
            if p is not None:
                live.append((p, size))
        elif r < 0.85 and live:
            p, _ = live.pop(rng.randrange(len(live)))
            call("KernelHeap", "Free", p=p)
        elif r < 0.95 and live:
            p, size = rng.choice(live)
            if size:
                call("VirtualMemoryManager", "WriteVirtualMemory", virtual_addr=p,
                     data=bytes(rng.randrange(256) for _ in range(min(size, 8))).hex())
        else:
            call("KernelHeap", "FindSmallestHole", size=rng.randrange(0, 4096),
                 page_align=False)
    return ops


def build() -> str:
    out = Path(tempfile.mkdtemp()) / "memimpl"
    subprocess.run(["cc", "-std=c11", "-O2", "-o", str(out),
                    *sorted(str(p) for p in (ROOT / "tests" / "oracle_impl").glob("*.c"))],
                   check=True)
    return str(out)


def model_alone(ops: list[dict[str, Any]]) -> float:
    world = ModelWorld()
    for manager, op, args in setup_calls(MANAGERS):
        world.call(manager, op, args)
    start = time.perf_counter()
    for n, entry in enumerate(ops, 1):
        world.handle({"id": n, **entry})
    return time.perf_counter() - start


def through_protocol(binary: str, ops: list[dict[str, Any]], observe: bool) -> tuple[float, int]:
    start = time.perf_counter()
    outcome = replay(binary, "strict", ops, observe=observe)
    seconds = time.perf_counter() - start
    if not outcome.passed:
        raise SystemExit(f"the C implementation diverged: {outcome.divergence}")
    requests = (sum(outcome.coverage.operations.values())
                + sum(outcome.coverage.observations.values()))
    return seconds, requests


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ops", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    ops = make_trace(args.ops)
    binary = build()
    print("; ".join(f"{k}: {v}" for k, v in machine_info()))
    print(f"load average before: {load_average()}")
    alone = min(model_alone(ops) for _ in range(args.repeat))
    plain = min((through_protocol(binary, ops, False) for _ in range(args.repeat)),
                key=lambda r: r[0])
    observed = min((through_protocol(binary, ops, True) for _ in range(max(1, args.repeat - 1))),
                   key=lambda r: r[0])
    print("| trace | requests | wall time | requests/s |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| model alone (ModelWorld.handle) | {len(ops):,} | {alone:.3f} s | "
          f"{len(ops) / alone:,.0f} |")
    print(f"| strict, C implementation, operations only | {plain[1]:,} | {plain[0]:.3f} s | "
          f"{plain[1] / plain[0]:,.0f} |")
    print(f"| strict, C implementation, + 5 observations per operation | {observed[1]:,} | "
          f"{observed[0]:.3f} s | {observed[1] / observed[0]:,.0f} |")
    rate = plain[1] / plain[0]
    print(f"target {TARGET:,} protocol operations/s in strict mode: "
          f"{'met' if rate >= TARGET else 'NOT met'} ({rate:,.0f})")
    print(f"load average after: {load_average()}")


if __name__ == "__main__":
    main()
