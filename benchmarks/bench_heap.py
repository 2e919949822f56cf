"""Throughput of the KernelHeap reference model.

Run from the repository root:

    .venv/bin/python benchmarks/bench_heap.py [--repeat N] [--markdown]

A heap with the tutorial's parameters (KHEAP_START, KHEAP_INITIAL_SIZE,
KHEAP_MAX, HEAP_INDEX_SIZE, HEAP_MIN_SIZE) over 512 MB of physical memory.
For each population (1,000 and 100,000 live blocks) a fresh heap is filled
with that many blocks of seeded random payload sizes (8..512 bytes), then
MIX_OPS seeded operations are timed: each draws r and allocates when
``r % (2 * population) >= live`` (a new random size), otherwise frees a random
live block, so the population hovers around its target and frees punch holes
all over the heap. The figure is the cost per operation of that mix; the
requirement is that it grows at most TARGET_RATIO times from 1,000 to 100,000
live blocks (the hole index is searched by bisection). The fill of 100,000
blocks is timed too and reported as allocations per second.

The same mix runs on a fragmented heap as well: filled with twice the
population, then every other block freed, so the index starts with as many
holes as there are live blocks (100,001 at the large size). That is the
index's worst case: each insert or remove moves the entries after it.

Each figure is the best of ``--repeat`` runs (default 2: about 60 s of CPU) by wall-clock time
(``time.perf_counter``), with the CPU time (``time.process_time``) of the same
run beside it; the load average is printed, as other processes on a shared
machine stretch wall time. This is a measurement, not a test: it checks only
the model's answers (every call succeeds, the walk of the heap is intact).
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_paging import best_of, load_average, machine_info, now, rate  # noqa: E402
from model.kernel_heap import KernelHeap
from model.page_manager import PageManager  # noqa: E402
from model.virtual_memory import VirtualMemoryManager  # noqa: E402
from spec.abi import HEAP_INDEX_SIZE, HEAP_MIN_SIZE, KHEAP_INITIAL_SIZE, KHEAP_MAX, KHEAP_START

MEMORY = 512 << 20
SMALL, LARGE = 1_000, 100_000
MIX_OPS = 50_000
SEED = 20261129
MIN_PAYLOAD, MAX_PAYLOAD = 8, 512
TARGET_RATIO = 4.0


def fresh_heap() -> KernelHeap:
    pm = PageManager()
    assert pm.InitializePhysicalMemory(0x100000, MEMORY)
    vm = VirtualMemoryManager(pm)
    assert vm.InitializePaging()
    heap = KernelHeap(vm)
    assert heap.Create(KHEAP_START, KHEAP_START + KHEAP_INITIAL_SIZE, KHEAP_MAX, True, False,
                       index_size=HEAP_INDEX_SIZE, min_size=HEAP_MIN_SIZE) is heap
    return heap


def mix_run(population: int, fragmented: bool = False) -> dict[str, float]:
    """Fill to ``population`` live blocks (timed separately), then time the mix.

    Fragmented: fill with twice the population, then free every other block.
    """
    heap = fresh_heap()
    rng = random.Random(SEED)
    filling = 2 * population if fragmented else population
    sizes = [rng.randint(MIN_PAYLOAD, MAX_PAYLOAD) for _ in range(filling)]
    alloc, free = heap.Alloc, heap.Free
    start = now()
    live = [alloc(size) for size in sizes]
    filled = now()
    assert 0 not in live
    if fragmented:
        for pointer in live[0::2]:
            assert free(pointer)
        live = live[1::2]
        assert len(heap.index) == population + 1
    script = [(rng.getrandbits(40), rng.randint(MIN_PAYLOAD, MAX_PAYLOAD))
              for _ in range(MIX_OPS)]
    span = 2 * population
    holes_before = len(heap.index)
    begin = now()
    for draw, size in script:
        count = len(live)
        if draw % span >= count:
            live.append(alloc(size))
        else:
            slot = draw % count
            pointer = live[slot]
            live[slot] = live[-1]
            live.pop()
            free(pointer)
    end = now()
    assert 0 not in live and len(heap.allocated) == len(live)
    holes = len(heap.index)
    walk = heap.walk()
    assert walk is not None and sum(block.is_hole for block in walk) == holes
    return {"fill": filled[0] - start[0], "fill_cpu": filled[1] - start[1],
            "total": end[0] - begin[0], "per_op": (end[0] - begin[0]) / MIX_OPS,
            "cpu": end[1] - begin[1], "holes": holes, "holes_before": holes_before,
            "live": len(live)}


def mix_rows(kind: str, small: dict[str, float],
             large: dict[str, float]) -> list[tuple[str, str, str, str]]:
    """Table rows for one mix at both populations and their cost ratio."""
    rows = []
    for population, run in ((SMALL, small), (LARGE, large)):
        rows.append((f"{kind}alloc/free mix at {population:,} live blocks ({MIX_OPS:,} ops; "
                     f"holes {run['holes_before']:,.0f} before, {run['holes']:,.0f} after)",
                     f"{run['per_op'] * 1e6:.2f} us/op",
                     f"{run['cpu'] / MIX_OPS * 1e6:.2f} us/op", rate(MIX_OPS, run["total"])))
    rows.append((f"{kind}mix cost per op, ratio {LARGE:,} / {SMALL:,}",
                 f"{large['per_op'] / small['per_op']:.2f}x",
                 f"{large['cpu'] / small['cpu']:.2f}x", ""))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=2, help="runs per figure (best is kept)")
    parser.add_argument("--markdown", action="store_true", help="print the table as markdown")
    args = parser.parse_args()
    repeat = max(1, args.repeat)

    info = machine_info()
    small = best_of(repeat, lambda: mix_run(SMALL), "per_op")
    large = best_of(repeat, lambda: mix_run(LARGE), "per_op")
    small_frag = best_of(repeat, lambda: mix_run(SMALL, True), "per_op")
    large_frag = best_of(repeat, lambda: mix_run(LARGE, True), "per_op")
    info.append(("load average at end", load_average()))
    ratio = large["per_op"] / small["per_op"]
    frag_ratio = large_frag["per_op"] / small_frag["per_op"]
    rows = [
        (f"fill to {LARGE:,} live blocks (Alloc {MIN_PAYLOAD}..{MAX_PAYLOAD} bytes)",
         f"{large['fill']:.2f} s", f"{large['fill_cpu']:.2f} s", rate(LARGE, large["fill"])),
        *mix_rows("", small, large),
        *mix_rows("fragmented ", small_frag, large_frag),
    ]
    verdicts = [(f"mix cost ratio {LARGE:,} / {SMALL:,} <= {TARGET_RATIO:.0f}x",
                 ratio <= TARGET_RATIO),
                (f"fragmented mix cost ratio {LARGE:,} / {SMALL:,} <= {TARGET_RATIO:.0f}x",
                 frag_ratio <= TARGET_RATIO)]
    headers = ("benchmark", "wall time", "CPU time", "ops/s")

    if args.markdown:
        for name, value in info:
            print(f"- {name}: {value}")
        print(f"- best of {repeat} runs by wall time (time.perf_counter); CPU time is "
              "time.process_time of the same run\n")
        print("| " + " | ".join(headers) + " |")
        print("| --- | ---: | ---: | ---: |")
        for row in rows:
            print("| " + " | ".join(row) + " |")
        print()
        for name, ok in verdicts:
            print(f"- {name}: {'met' if ok else 'NOT met'}")
        return 0

    width = max(len(name) for name, _ in info)
    for name, value in info:
        print(f"{name:<{width}}  {value}")
    print(f"best of {repeat} runs by wall time (time.perf_counter); "
          "CPU time (time.process_time) of the same run\n")
    widths = [max(len(row[column]) for row in [headers, *rows]) for column in range(4)]
    for row in [headers, *rows]:
        print(f"{row[0]:<{widths[0]}}  " + "  ".join(
            f"{cell:>{widths[column]}}" for column, cell in enumerate(row) if column))
    print()
    for name, ok in verdicts:
        print(f"{'met    ' if ok else 'NOT met'}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
