"""Throughput of the PageManager and VirtualMemoryManager reference model.

Run from the repository root:

    .venv/bin/python benchmarks/bench_paging.py [--repeat N] [--markdown]

Each figure is the best of ``--repeat`` runs (default 3) by wall-clock time
(``time.perf_counter``); the CPU time of the same run (``time.process_time``)
is printed beside it, because other processes on a small machine stretch wall
time, and the load average before and after is printed for the same reason.
Every run starts from a fresh manager; setup (initialisation, prefilling) is
not timed. This is a measurement, not a test: it prints a table and checks
nothing but the model's answers.

1. Allocate every frame of a full 4 GiB (1,048,576 frames) and free them all,
   through the public API (RequestFrame until it fails, then FreeFrame each)
   and through the internal path (PageManager.take_frame / release_frame).
2. A seeded random mix of RequestFrame / FreeFrame at 1,024 and 1,048,576
   frames (half of memory held before timing): cost per operation at both
   sizes and their ratio, which stays near 1 when allocation is O(log n).
3. VirtualMemoryManager: RequestFrame + MapVirtualAddress, VirtualToPhysical
   and AllocPage over 100,000 pages of one user directory.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from model.page_manager import PageManager  # noqa: E402
from model.virtual_memory import VirtualMemoryManager  # noqa: E402
from spec.abi import ADDRESS_LIMIT, NO_FRAME, PAGE_SHIFT, PAGE_SIZE, USER_SPACE_START, FrameOwner  # noqa: E402

FULL_FRAMES = ADDRESS_LIMIT >> PAGE_SHIFT  # 1,048,576
MIX_OPS = 200_000
MIX_SEED = 20261128
VMM_PAGES = 100_000
TARGET_FULL_SECONDS = 5.0
TARGET_MIX_RATIO = 2.0


def now() -> tuple[float, float]:
    """Wall-clock (perf_counter) and CPU (process_time) seconds, read together."""
    return time.perf_counter(), time.process_time()


def best_of(repeat: int, run: Callable[[], dict[str, float]], key: str) -> dict[str, float]:
    """The run (a dict of timings) with the smallest ``key`` among ``repeat`` runs."""
    return min((run() for _ in range(repeat)), key=lambda result: result[key])


def fresh_page_manager(mem_end: int) -> PageManager:
    pm = PageManager()
    assert pm.InitializePhysicalMemory(0, mem_end)
    return pm


# -- 1. allocate and free every frame ---------------------------------------

def full_cycle_public() -> dict[str, float]:
    pm = fresh_page_manager(ADDRESS_LIMIT)
    request, free = pm.RequestFrame, pm.FreeFrame
    held: list[int] = []
    keep = held.append
    start = now()
    while True:
        address = request(False, True)
        if address == NO_FRAME:
            break
        keep(address)
    middle = now()
    for address in held:
        free(address)
    end = now()
    assert len(held) == FULL_FRAMES and pm.GetFreeFrameCount() == FULL_FRAMES
    assert held[:3] == [0, PAGE_SIZE, 2 * PAGE_SIZE]  # lowest free frame first
    return {"alloc": middle[0] - start[0], "free": end[0] - middle[0],
            "total": end[0] - start[0], "cpu": end[1] - start[1]}


def full_cycle_internal() -> dict[str, float]:
    pm = fresh_page_manager(ADDRESS_LIMIT)
    take, release = pm.take_frame, pm.release_frame
    owner = FrameOwner.HELD
    held: list[int] = []
    keep = held.append
    start = now()
    while True:
        frame = take(owner)
        if frame < 0:
            break
        keep(frame)
    middle = now()
    for frame in held:
        release(frame)
    end = now()
    assert len(held) == FULL_FRAMES and pm.GetFreeFrameCount() == FULL_FRAMES
    return {"alloc": middle[0] - start[0], "free": end[0] - middle[0],
            "total": end[0] - start[0], "cpu": end[1] - start[1]}


# -- 2. random mix -------------------------------------------------------------

def mix_run(nframes: int) -> dict[str, float]:
    """MIX_OPS seeded operations: RequestFrame, or FreeFrame of a random held frame.

    Half of memory is held before timing. Each operation draws r: it
    allocates when ``r % nframes >= held`` and otherwise frees held frame
    ``r % held``, so occupancy hovers around one half at every size and the
    frees punch holes all over memory (the allocator must find the lowest).
    """
    pm = fresh_page_manager(nframes << PAGE_SHIFT)
    rng = random.Random(MIX_SEED)
    held = [pm.RequestFrame(False, True) for _ in range(nframes // 2)]
    rng.shuffle(held)
    script = [rng.getrandbits(40) for _ in range(MIX_OPS)]
    request, free = pm.RequestFrame, pm.FreeFrame
    allocations = 0
    start = now()
    for draw in script:
        count = len(held)
        if draw % nframes >= count:
            address = request(False, True)
            held.append(address)
            allocations += 1
        else:
            slot = draw % count
            address = held[slot]
            held[slot] = held[-1]
            held.pop()
            free(address)
    end = now()
    assert NO_FRAME not in held and pm.GetUsedFrameCount() == len(held)
    return {"total": end[0] - start[0], "per_op": (end[0] - start[0]) / MIX_OPS,
            "cpu": end[1] - start[1],
            "allocations": allocations}


# -- 3. virtual memory -------------------------------------------------------

def fresh_paging() -> tuple[PageManager, VirtualMemoryManager]:
    pm = fresh_page_manager(ADDRESS_LIMIT)
    vm = VirtualMemoryManager(pm)
    assert vm.InitializePaging()
    return pm, vm


def vmm_map_translate() -> dict[str, float]:
    pm, vm = fresh_paging()
    directory = vm.CreatePageDirectory()
    assert directory is not None
    addresses = [USER_SPACE_START + page * PAGE_SIZE for page in range(VMM_PAGES)]
    request, map_page, translate = pm.RequestFrame, vm.MapVirtualAddress, vm.VirtualToPhysical
    frames: list[int] = []
    start = now()
    for virtual in addresses:
        physical = request(False, True)
        map_page(directory, virtual, physical, False, True)
        frames.append(physical)
    middle = now()
    translated = [translate(directory, virtual + 0x123) for virtual in addresses]
    end = now()
    assert translated == [physical + 0x123 for physical in frames]
    return {"map": middle[0] - start[0], "translate": end[0] - middle[0],
            "total": end[0] - start[0], "map_cpu": middle[1] - start[1],
            "translate_cpu": end[1] - middle[1]}


def vmm_alloc_page() -> dict[str, float]:
    pm, vm = fresh_paging()
    directory = vm.CreatePageDirectory()
    assert directory is not None
    addresses = [USER_SPACE_START + page * PAGE_SIZE for page in range(VMM_PAGES)]
    alloc = vm.AllocPage
    start = now()
    results = [alloc(directory, virtual, False, True) for virtual in addresses]
    end = now()
    assert all(results)
    return {"total": end[0] - start[0], "cpu": end[1] - start[1]}


# -- report --------------------------------------------------------------------

def machine_info() -> list[tuple[str, str]]:
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return [
        ("nproc", str(usable)),
        ("cpu", cpu),
        ("python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("platform", platform.platform()),
        ("load average at start", load_average()),
    ]


def load_average() -> str:
    """The 1/5/15-minute load: other processes on the machine slow wall-clock figures."""
    if not hasattr(os, "getloadavg"):
        return "?"
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def rate(ops: int, seconds: float) -> str:
    return f"{ops / seconds:,.0f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (best is kept)")
    parser.add_argument("--markdown", action="store_true", help="print the table as markdown")
    args = parser.parse_args()
    repeat = max(1, args.repeat)

    info = machine_info()
    public = best_of(repeat, full_cycle_public, "total")
    internal = best_of(repeat, full_cycle_internal, "total")
    small = best_of(repeat, lambda: mix_run(1024), "per_op")
    large = best_of(repeat, lambda: mix_run(FULL_FRAMES), "per_op")
    mapped = best_of(repeat, vmm_map_translate, "total")
    allocated = best_of(repeat, vmm_alloc_page, "total")
    ratio = large["per_op"] / small["per_op"]
    cpu_ratio = large["cpu"] / small["cpu"]

    ops_full = 2 * FULL_FRAMES
    # (benchmark, wall time, CPU time of the same run, operations per wall second)
    rows = [
        ("alloc+free all 1,048,576 frames, public API (RequestFrame/FreeFrame)",
         f"{public['total']:.2f} s (alloc {public['alloc']:.2f} + free {public['free']:.2f})",
         f"{public['cpu']:.2f} s", rate(ops_full, public["total"])),
        ("alloc+free all 1,048,576 frames, internal (take_frame/release_frame)",
         f"{internal['total']:.2f} s (alloc {internal['alloc']:.2f} + free "
         f"{internal['free']:.2f})",
         f"{internal['cpu']:.2f} s", rate(ops_full, internal["total"])),
        (f"random mix, 1,024 frames ({MIX_OPS:,} ops)",
         f"{small['per_op'] * 1e6:.2f} us/op",
         f"{small['cpu'] / MIX_OPS * 1e6:.2f} us/op", rate(MIX_OPS, small["total"])),
        (f"random mix, 1,048,576 frames ({MIX_OPS:,} ops)",
         f"{large['per_op'] * 1e6:.2f} us/op",
         f"{large['cpu'] / MIX_OPS * 1e6:.2f} us/op", rate(MIX_OPS, large["total"])),
        ("random mix cost per op, ratio 1,048,576 / 1,024", f"{ratio:.2f}x",
         f"{cpu_ratio:.2f}x", ""),
        (f"RequestFrame + MapVirtualAddress, {VMM_PAGES:,} pages",
         f"{mapped['map']:.3f} s", f"{mapped['map_cpu']:.3f} s",
         rate(VMM_PAGES, mapped["map"])),
        (f"VirtualToPhysical, {VMM_PAGES:,} pages",
         f"{mapped['translate']:.3f} s", f"{mapped['translate_cpu']:.3f} s",
         rate(VMM_PAGES, mapped["translate"])),
        (f"AllocPage, {VMM_PAGES:,} pages",
         f"{allocated['total']:.3f} s", f"{allocated['cpu']:.3f} s",
         rate(VMM_PAGES, allocated["total"])),
    ]
    verdicts = [
        (f"full alloc+free, public API < {TARGET_FULL_SECONDS:.0f} s",
         public["total"] < TARGET_FULL_SECONDS),
        (f"full alloc+free, internal path < {TARGET_FULL_SECONDS:.0f} s",
         internal["total"] < TARGET_FULL_SECONDS),
        (f"mix cost ratio < {TARGET_MIX_RATIO:.0f}x", ratio < TARGET_MIX_RATIO),
    ]
    info.append(("load average at end", load_average()))
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
    print(f"{headers[0]:<{widths[0]}}  " + "  ".join(
        f"{header:>{widths[column]}}" for column, header in enumerate(headers) if column))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(f"{row[0]:<{widths[0]}}  " + "  ".join(
            f"{cell:>{widths[column]}}" for column, cell in enumerate(row) if column))
    print()
    for name, ok in verdicts:
        print(f"{'met    ' if ok else 'NOT met'}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
