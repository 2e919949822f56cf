"""What real Windows does with HeapAlloc / HeapReAlloc / HeapSize / HeapFree, as data,
run against the model's process heap through its system calls (model/process_heap.py).

Sources (asserts of tests that run against real Windows), cited per case:

- ``NEW``: Wine's dlls/kernel32/tests/heap.c as wine-mirror/wine has it (commit
  00c64fcb): test_HeapCreate (the growable heap), test_block_layout,
  test_heap_checks (as test_child_heap runs it without global flags).
- ``OLD``: the same file before Wine rewrote it in 2022 (the copy in
  BlueAmulet/wine-overwatch, commit cd01d67c): test_heap, test_HeapCreate,
  test_sized_HeapAlloc / test_sized_HeapReAlloc as START_TEST calls them.
- dlls/ntdll/tests/heap.c (the stored copy, DarkShadow44/wine 7dbc7c8f) has no
  HeapAlloc/HeapReAlloc/HeapSize/HeapFree assert: it walks the csrss heap.

Every assert is run on the process heap (GetProcessHeap), the model's one heap:
asserts about private heaps that hold on any growable heap are taken as they
are; those that need HeapCreate's limits (a fixed maximum), HeapWalk,
HeapValidate, HeapLock, HeapQueryInformation, GlobalAlloc / LocalAlloc, threads,
debug-heap flags (tail and free checking, user info), block layout (the
distance between blocks), or sizes the model's 1 MB process heap cannot hold
(alloc_size = 0x8000 * sizeof(void *) is 128 KB on 32-bit: 128 blocks of it,
1 << 20 bytes, 3000 KB) are left out and counted in the issue 15 report.
A ``while (size) if (ptr[--size]) break; ok(!size && !ptr[0])`` loop is one
``Zeroed`` step over the block's HeapSize bytes.

Each step: the call, its arguments (names bind earlier results: HEAP is
GetProcessHeap()), what the result must be, the last error where the source
checks it, the name the result is kept under, and the source.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import pytest

from model.syscalls import SystemCalls
from spec.abi import (
    HEAP_REALLOC_IN_PLACE_ONLY,
    HEAP_ZERO_MEMORY,
    MEMORY_ALLOCATION_ALIGNMENT,
    ErrorCode,
)
from tests.test_process_memory import check_space, world

NEW = "dlls/kernel32/tests/heap.c (wine-mirror/wine 00c64fcb)"
OLD = "dlls/kernel32/tests/heap.c (2017; BlueAmulet/wine-overwatch cd01d67c)"
HEAP = "heap"
#: alloc_size of the new test_HeapCreate: 0x8000 * sizeof(void *), 32-bit.
ALLOC = 0x8000 * 4
#: memchunk of the old test_HeapCreate: ten 4 KB pages.
CHUNK = 10 * 4096
ZERO, IN_PLACE = HEAP_ZERO_MEMORY, HEAP_REALLOC_IN_PLACE_ONLY
MAX = 0xFFFFFFFF  # ~(SIZE_T)0 on 32-bit


class Expect(NamedTuple):
    """What a result must be: ``kind`` with ``value`` (a number or a name)."""

    kind: str  # "eq", "nonnull", "same", "same_or_null", "at_least", "below"
    value: int | str = 0


NONNULL = Expect("nonnull")
NULL = FALSE = Expect("eq", 0)
TRUE = Expect("eq", 1)


def eq(value: int) -> Expect:
    return Expect("eq", value)


def same(name: str) -> Expect:
    return Expect("same", name)


class Step(NamedTuple):
    """One call: HeapAlloc / HeapReAlloc / HeapSize / HeapFree with their Win32
    arguments; Zeroed(ptr, offset, length) and Fill(ptr, byte, length) read and
    write the caller's memory; Aligned(ptr) is the pointer-alignment assert."""

    call: str
    args: tuple[int | str, ...]
    expect: Expect
    error: ErrorCode | None = None
    name: str = ""


class Case(NamedTuple):
    id: str
    source: str
    steps: tuple[Step, ...]


def zeroed(name: str, length: int, offset: int = 0) -> Step:
    return Step("Zeroed", (name, offset, length), TRUE)


def case(id_: str, source: str, *steps: Step) -> Case:
    return Case(id_, source, steps)


CASES: list[Case] = [
    # -- test_HeapCreate, the growable heap ("test some border cases") ------------------
    case("free_null", f"{NEW}: test_HeapCreate, HeapFree(heap, 0, NULL) ok(ret)",
         Step("HeapFree", (HEAP, 0, 0), TRUE)),
    case("realloc_null", f"{NEW}: test_HeapCreate, HeapReAlloc(heap, 0, NULL, 1): !ptr, "
         "GetLastError() == NO_ERROR (todo_wine: Windows)",
         Step("HeapReAlloc", (HEAP, 0, 0, 1), NULL, ErrorCode.ERROR_SUCCESS)),
    case("zero_size_block", f"{NEW}: test_HeapCreate, HeapAlloc(heap, 0, 0); HeapSize == 0; "
         "HeapReAlloc to ~0 - 7 and ~0 fails; HeapFree ok",
         Step("HeapAlloc", (HEAP, 0, 0), NONNULL, name="ptr"),
         Step("HeapSize", (HEAP, 0, "ptr"), eq(0)),
         Step("HeapReAlloc", (HEAP, 0, "ptr", MAX - 7), NULL),
         Step("HeapReAlloc", (HEAP, 0, "ptr", MAX), NULL),
         Step("HeapSize", (HEAP, 0, "ptr"), eq(0)),  # the failures left it (HeapValidate ok)
         Step("HeapFree", (HEAP, 0, "ptr"), TRUE)),
    case("alloc_all_ones", f"{NEW}: test_HeapCreate, pHeapAlloc(heap, 0, ~(SIZE_T)0): !ptr",
         Step("HeapAlloc", (HEAP, 0, MAX), NULL)),
    case("realloc_to_zero", f"{NEW}: test_HeapCreate, HeapAlloc(1); HeapReAlloc(ptr, 0) ok; "
         "HeapSize(ptr1) == 0; HeapFree(ptr) ok",
         Step("HeapAlloc", (HEAP, 0, 1), NONNULL, name="ptr"),
         Step("HeapReAlloc", (HEAP, 0, "ptr", 0), NONNULL, name="ptr1"),
         Step("HeapSize", (HEAP, 0, "ptr1"), eq(0)),
         Step("HeapFree", (HEAP, 0, "ptr"), TRUE)),
    case("five_alloc_sizes_and_one", f"{NEW}: test_HeapCreate, HeapAlloc(5 * alloc_size + 1)",
         Step("HeapAlloc", (HEAP, 0, 5 * ALLOC + 1), NONNULL, name="ptr"),
         Step("HeapFree", (HEAP, 0, "ptr"), TRUE)),
    case("alloc_size_blocks", f"{NEW}: test_HeapCreate, HeapAlloc(alloc_size); HeapSize == "
         "alloc_size; HeapAlloc(4 * alloc_size); both freed",
         Step("HeapAlloc", (HEAP, 0, ALLOC), NONNULL, name="ptr"),
         Step("HeapSize", (HEAP, 0, "ptr"), eq(ALLOC)),
         Step("HeapAlloc", (HEAP, 0, 4 * ALLOC), NONNULL, name="ptr1"),
         Step("HeapFree", (HEAP, 0, "ptr1"), TRUE),
         Step("HeapFree", (HEAP, 0, "ptr"), TRUE)),
    # -- test_HeapCreate, "test HEAP_ZERO_MEMORY" ------------------------------------
    case("zero_memory_one_byte", f"{NEW}: test_HeapCreate, HeapAlloc(HEAP_ZERO_MEMORY, 1)",
         Step("HeapAlloc", (HEAP, ZERO, 1), NONNULL, name="ptr"),
         Step("HeapSize", (HEAP, 0, "ptr"), eq(1)),
         zeroed("ptr", 1),
         Step("HeapFree", (HEAP, 0, "ptr"), TRUE)),
    case("zero_memory_realloc", f"{NEW}: test_HeapCreate, HeapAlloc(HEAP_ZERO_MEMORY, "
         "alloc_size), HeapReAlloc(HEAP_ZERO_MEMORY) to 3 * alloc_size, in place to 3/2 and "
         "back to 2 * alloc_size (\"shrinking a small-ish block in place and growing back is "
         "okay\"), HeapReAlloc(HEAP_ZERO_MEMORY) to 1",
         Step("HeapAlloc", (HEAP, ZERO, ALLOC), NONNULL, name="ptr"),
         Step("HeapSize", (HEAP, 0, "ptr"), eq(ALLOC)),
         zeroed("ptr", ALLOC),
         Step("HeapReAlloc", (HEAP, ZERO, "ptr", 3 * ALLOC), NONNULL, name="ptr"),
         Step("HeapSize", (HEAP, 0, "ptr"), eq(3 * ALLOC)),
         zeroed("ptr", 3 * ALLOC),
         Step("HeapReAlloc", (HEAP, IN_PLACE, "ptr", ALLOC * 3 // 2), same("ptr")),
         Step("HeapReAlloc", (HEAP, IN_PLACE, "ptr", 2 * ALLOC), same("ptr")),
         Step("HeapReAlloc", (HEAP, ZERO, "ptr", 1), NONNULL, name="ptr"),
         Step("HeapSize", (HEAP, 0, "ptr"), eq(1)),
         zeroed("ptr", 1)),
    case("heap_64k_aligned", f"{NEW}: test_HeapCreate, ok(!((ULONG_PTR)heap & 0xffff)) (the "
         "process heap is HeapCreate's heap too)",
         Step("Aligned", (HEAP, 0x10000), TRUE)),
    # -- test_block_layout (the sizes three blocks of which the process heap holds) ----
    *[case(f"block_layout_{size:#x}", f"{NEW}: test_block_layout, alloc_size {size:#x}: three "
           "HeapAlloc(HEAP_ZERO_MEMORY) ok, !(align & (2 * sizeof(void *) - 1)), freed",
           Step("HeapAlloc", (HEAP, ZERO, size), NONNULL, name="ptr0"),
           Step("HeapAlloc", (HEAP, ZERO, size), NONNULL, name="ptr1"),
           Step("HeapAlloc", (HEAP, ZERO, size), NONNULL, name="ptr2"),
           Step("Aligned", ("ptr0", 8), TRUE), Step("Aligned", ("ptr1", 8), TRUE),
           Step("Aligned", ("ptr2", 8), TRUE),
           Step("HeapFree", (HEAP, 0, "ptr2"), TRUE),
           Step("HeapFree", (HEAP, 0, "ptr1"), TRUE),
           Step("HeapFree", (HEAP, 0, "ptr0"), TRUE))
      for size in ((0x20000 * 4 - 0x3000) >> shift for shift in range(1, 19))],
    case("block_layout_threshold", f"{NEW}: test_block_layout, alloc_size 0x20000 * "
         "sizeof(void *) - 0x2000: HeapAlloc(HEAP_ZERO_MEMORY) ok, 8-aligned, freed",
         Step("HeapAlloc", (HEAP, ZERO, 0x20000 * 4 - 0x2000), NONNULL, name="ptr0"),
         Step("Aligned", ("ptr0", 8), TRUE),
         Step("HeapFree", (HEAP, 0, "ptr0"), TRUE)),
    case("user_info_flags_ignored", f"{NEW}: test_block_layout, HeapAlloc with 0xc00 | "
         "HEAP_ADD_USER_INFO, 0x200 | HEAP_ADD_USER_INFO, HEAP_ADD_USER_INFO: ok; freed",
         Step("HeapAlloc", (HEAP, 0xC00 | 0x100, 0x1000), NONNULL, name="ptr0"),
         Step("HeapAlloc", (HEAP, 0x200 | 0x100, 0x1000), NONNULL, name="ptr1"),
         Step("HeapAlloc", (HEAP, 0x100, 0x1000), NONNULL, name="ptr2"),
         Step("HeapSize", (HEAP, 0, "ptr0"), eq(0x1000)),
         Step("HeapFree", (HEAP, 0, "ptr2"), TRUE),
         Step("HeapFree", (HEAP, 0, "ptr1"), TRUE),
         Step("HeapFree", (HEAP, 0, "ptr0"), TRUE)),
    # -- test_heap_checks, no debug flags (GetProcessHeap) ---------------------------
    case("checks_zeroed_17", f"{NEW}: test_heap_checks, HeapAlloc(HEAP_ZERO_MEMORY, 17): "
         "HeapSize == 17, p[14..16] == 0; HeapReAlloc(HEAP_REALLOC_IN_PLACE_ONLY, p, 14) == p "
         "keeps p[14], p[15] == 0; HeapFree ok",
         Step("HeapAlloc", (HEAP, ZERO, 17), NONNULL, name="p"),
         Step("HeapSize", (HEAP, 0, "p"), eq(17)),
         zeroed("p", 3, 14),
         Step("HeapReAlloc", (HEAP, IN_PLACE, "p", 14), same("p")),
         zeroed("p", 2, 14),
         Step("HeapFree", (HEAP, 0, "p"), TRUE)),
    case("checks_write_past_17", f"{NEW}: test_heap_checks, HeapAlloc(HEAP_ZERO_MEMORY, 17), "
         "p[17] = 0xcc, HeapFree ok (no tail checking)",
         Step("HeapAlloc", (HEAP, ZERO, 17), NONNULL, name="p"),
         Step("Fill", ("p", 0xCC, 18), TRUE),
         Step("HeapFree", (HEAP, 0, "p"), TRUE)),
    case("checks_37", f"{NEW}: test_heap_checks, HeapAlloc(37), memset 0xcc, HeapFree ok",
         Step("HeapAlloc", (HEAP, 0, 37), NONNULL, name="p"),
         Step("Fill", ("p", 0xCC, 37), TRUE),
         Step("HeapFree", (HEAP, 0, "p"), TRUE)),
    # -- the old test_heap -----------------------------------------------------------------
    case("old_zero_size", f"{OLD}: test_heap, HeapAlloc(GetProcessHeap(), 0, 0) != NULL",
         Step("HeapAlloc", (HEAP, 0, 0), NONNULL, name="mem"),
         Step("HeapFree", (HEAP, 0, "mem"), TRUE)),
    case("old_realloc_null", f"{OLD}: test_heap, HeapReAlloc(GetProcessHeap(), 0, NULL, 10) "
         "== NULL",
         Step("HeapReAlloc", (HEAP, 0, 0, 10), NULL)),
    case("old_heapsize_0_to_256", f"{OLD}: test_heap, for size 0..256: HeapSize(HeapAlloc(size))"
         " == size",
         *[step for size in range(257) for step in (
             Step("HeapAlloc", (HEAP, 0, size), NONNULL, name="mem"),
             Step("HeapSize", (HEAP, 0, "mem"), eq(size)),
             Step("HeapFree", (HEAP, 0, "mem"), TRUE))]),
    case("old_border_cases", f"{OLD}: test_heap, \"test some border cases of HeapAlloc and "
         "HeapReAlloc\"",
         Step("HeapAlloc", (HEAP, 0, 0), NONNULL, name="mem"),
         Step("HeapReAlloc", (HEAP, ZERO, "mem", MAX - 7), NULL),
         Step("HeapReAlloc", (HEAP, ZERO, "mem", MAX), NULL),
         Step("HeapFree", (HEAP, 0, "mem"), TRUE),
         Step("HeapAlloc", (HEAP, 0, MAX), NULL),
         Step("HeapAlloc", (HEAP, 0, 17), NONNULL, name="mem"),
         Step("HeapReAlloc", (HEAP, 0, "mem", 0), NONNULL, name="msecond"),
         Step("HeapSize", (HEAP, 0, "msecond"), eq(0)),
         Step("HeapFree", (HEAP, 0, "msecond"), TRUE)),
    case("old_512k", f"{OLD}: test_heap, HeapAlloc(512 * 1024) ok (\"large blocks\")",
         Step("HeapAlloc", (HEAP, 0, 512 * 1024), NONNULL, name="mem"),
         Step("Aligned", ("mem", MEMORY_ALLOCATION_ALIGNMENT), TRUE),
         Step("HeapFree", (HEAP, 0, "mem"), TRUE)),
    case("old_sized_alloc_1", f"{OLD}: test_sized_HeapAlloc(1): zeroed, freed",
         Step("HeapAlloc", (HEAP, ZERO, 1), NONNULL, name="buf"),
         zeroed("buf", 1),
         Step("HeapFree", (HEAP, 0, "buf"), TRUE)),
    case("old_sized_realloc_1_100", f"{OLD}: test_sized_HeapReAlloc(1, 100): buf[0] == 0, "
         "HeapReAlloc(HEAP_ZERO_MEMORY) ok, buf[99] == 0, freed",
         Step("HeapAlloc", (HEAP, ZERO, 1), NONNULL, name="buf"),
         zeroed("buf", 1),
         Step("HeapReAlloc", (HEAP, ZERO, "buf", 100), NONNULL, name="buf"),
         zeroed("buf", 1, 99),
         Step("HeapFree", (HEAP, 0, "buf"), TRUE)),
    # -- the old test_HeapCreate (its heap's fixed maximum aside) -------------------------
    case("old_heapcreate", f"{OLD}: test_HeapCreate, memchunk = 10 pages: HeapAlloc, "
         "HeapSize >= memchunk, HEAP_ZERO_MEMORY zeroes, HeapReAlloc(HEAP_ZERO_MEMORY) zeroes "
         "the tail, HEAP_REALLOC_IN_PLACE_ONLY returns NULL or the same block, HeapFree ok, "
         "the 0-length buffer",
         Step("HeapAlloc", (HEAP, 0, CHUNK), NONNULL, name="mem1"),
         Step("HeapSize", (HEAP, 0, "mem1"), Expect("at_least", CHUNK)),
         Step("HeapAlloc", (HEAP, ZERO, CHUNK), NONNULL, name="mem2"),
         Step("HeapSize", (HEAP, 0, "mem2"), Expect("at_least", CHUNK)),
         zeroed("mem2", CHUNK),
         Step("HeapReAlloc", (HEAP, ZERO, "mem2", CHUNK + 5 * 4096), NONNULL, name="mem2a"),
         Step("HeapSize", (HEAP, 0, "mem2a"), Expect("at_least", CHUNK + 5 * 4096)),
         zeroed("mem2a", 5 * 4096, CHUNK),
         Step("HeapReAlloc", (HEAP, IN_PLACE, "mem1", CHUNK + 4096),
              Expect("same_or_null", "mem1")),
         Step("HeapFree", (HEAP, 0, "mem1"), TRUE),
         Step("HeapFree", (HEAP, 0, "mem2a"), TRUE),
         Step("HeapAlloc", (HEAP, 0, 0), NONNULL, name="mem1"),
         Step("HeapSize", (HEAP, 0, "mem1"), Expect("below", 0xFFFFFFFF)),
         Step("HeapFree", (HEAP, 0, "mem1"), TRUE)),
]


def _run(system: SystemCalls, step: Step, names: dict[str, int]) -> int:
    """Make the step's call; its result."""
    args = [names[a] if isinstance(a, str) else a for a in step.args]
    space = system.current
    assert space is not None
    if step.call == "Zeroed":
        pointer, offset, length = args
        return int(space.ReadUserMemory(pointer + offset, length) == bytes(length))
    if step.call == "Fill":
        pointer, byte, length = args
        return int(space.WriteUserMemory(pointer, bytes([byte]) * length) is True)
    if step.call == "Aligned":
        return int(args[0] % args[1] == 0)
    calls: dict[str, Callable[..., int]] = {
        "HeapAlloc": system.SyscallHeapAlloc, "HeapReAlloc": system.SyscallHeapReAlloc,
        "HeapSize": system.SyscallHeapSize, "HeapFree": system.SyscallHeapFree}
    call = calls[step.call]
    return int(call(*args))


def _holds(expect: Expect, result: int, names: dict[str, int]) -> bool:
    value = names[expect.value] if isinstance(expect.value, str) else expect.value
    return {"eq": result == value, "nonnull": result != 0, "same": result == value,
            "same_or_null": result in (0, value), "at_least": result >= value,
            "below": result < value}[expect.kind]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_windows_heap(case: Case) -> None:
    _, vm = world()
    system = SystemCalls(vm)
    assert system.SwitchProcess(system.CreateProcess())
    names = {HEAP: system.SyscallGetProcessHeap()}
    for number, step in enumerate(case.steps):
        result = _run(system, step, names)
        where = f"step {number} {step.call}{step.args} -> {result:#x} ({case.source})"
        assert _holds(step.expect, result, names), where
        if step.error is not None:
            assert system.last_error == step.error, where
        if step.call in ("HeapAlloc", "HeapReAlloc") and result:
            assert result % MEMORY_ALLOCATION_ALIGNMENT == 0, where
        if step.name:
            names[step.name] = result
    for space in system.processes.values():
        check_space(space)


def test_every_case_cites_its_assert() -> None:
    assert len({c.id for c in CASES}) == len(CASES)
    assert all(c.source.startswith(("dlls/kernel32/tests/heap.c",)) and c.steps for c in CASES)
