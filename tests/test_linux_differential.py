"""The Linux calls of the model against the kernel this machine runs (issue 4).

Hypothesis generates sequences of mmap/munmap/mprotect (and, separately, brk)
operations; each runs on the host (tests/host_kernel.py, through ctypes) and on
a fresh model (PageManager 16 MB, InitializePaging, ProcessMemorySpace), and
after EVERY operation the two must agree on:

- the result: success vs -errno and the errno value; an mmap address is
  compared window-relative, an address outside the window only as "outside"
  (the host's top-down placement is 64-bit, see KNOWN_DIFFERENCES) and is
  unmapped again on both sides at once;
- the window page by page: mapped or not, and the perms /proc/self/maps shows
  (r/w/x, p/s) -- the host's from /proc/self/maps, the model's from linux_maps.

mmap/munmap/mprotect run inside a PROT_NONE window of WINDOW_PAGES pages: the
host's (HostWindow, reset to PROT_NONE before each sequence) and the model's at
MODEL_WINDOW. Every range stays inside it; the deliberately bad or odd arguments
are an unaligned address, length 0, huge lengths, unknown prot bits (and
PROT_SEM, PROT_GROWSDOWN/UP), neither or both of MAP_SHARED/MAP_PRIVATE, no
MAP_ANONYMOUS (fd -1), an unaligned file offset, MAP_FIXED with
MAP_FIXED_NOREPLACE, MAP_NORESERVE. Half the sequences start by unmapping the
whole window, so hints have free room.

brk runs in a child process (BrkChild; never inside pytest, whose malloc owns
the break): brk to start_brk + delta, MAP_FIXED(_NOREPLACE) mappings at
start_brk + k pages to make collisions, munmap; results are compared relative to
start_brk (the model's heap_start) and so are the BRK_PAGES pages after it.

A divergence is reported with the whole sequence and the step that diverged;
hypothesis shrinks the sequence first. Differences that are genuinely 32-bit vs
64-bit are in KNOWN_DIFFERENCES, each with its reason and how the comparison
neutralises it; anything else is a model bug.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Protocol

import pytest
from host_kernel import (
    PAGE,
    BrkChild,
    CompilerMissingError,
    HostWindow,
    PageState,
    compile_brk_child,
    host_mmap,
    host_mprotect,
    host_munmap,
    page_states,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model.linux_mm import SyscallBrk, SyscallMmap, SyscallMprotect, SyscallMunmap, linux_maps
from model.page_manager import PageManager
from model.process_memory import ProcessMemorySpace
from model.virtual_memory import VirtualMemoryManager
from spec.abi import (
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_FIXED_NOREPLACE,
    MAP_PRIVATE,
    MAP_SHARED,
    PROT_NONE,
)

WINDOW_PAGES = 64
MODEL_WINDOW = 0x40000000
#: Pages after start_brk compared by the brk test (the generated ops stay below).
BRK_PAGES = 40
MODEL_MEMORY = 16 * 1024 * 1024
PROT_SEM = 0x8  # valid on x86 (arch_validate_prot), ignored by both
PROT_UNKNOWN = 0x40  # no meaning on any arch (0x10 is PROT_BTI/PROT_SAO, 0x20 PROT_MTE)
PROT_GROWSDOWN = 0x01000000
PROT_GROWSUP = 0x02000000
MAP_NORESERVE = 0x4000
MAP_BOTH = MAP_SHARED | MAP_PRIVATE  # MAP_SHARED_VALIDATE: EINVAL for anonymous


class KnownDifference(NamedTuple):
    what: str
    reason: str
    handled: str


#: The genuinely 32-bit vs 64-bit differences, and how the comparison neutralises each.
KNOWN_DIFFERENCES = (
    KnownDifference(
        "TASK_SIZE and argument width",
        "i386 registers are 32 bits and TASK_SIZE is 0xC0000000; x86-64 has 64-bit "
        "registers and a 47-bit (or 56-bit) user space, so the same byte count can be "
        "'huge' on one and ordinary on the other.",
        "huge lengths are symbolic: 2**bits - PAGE and 2**bits - 1 with bits 32 for the "
        "model and 64 for the host; both exceed TASK_SIZE (mmap ENOMEM, munmap EINVAL) and "
        "both wrap start + len (mprotect ENOMEM before touching anything)."),
    KnownDifference(
        "top-down mmap base",
        "mmap_base is below the stack: near 0xC0000000 minus the stack gap on i386, near "
        "0x7fff_xxxx_xxxx (randomised) on x86-64, so addresses chosen by the kernel differ.",
        "a result outside the window compares only as 'outside' and is unmapped again on "
        "both sides; the windows themselves sit at different addresses (host: fixed high "
        "address, model: MODEL_WINDOW) and every address is compared window-relative."),
    KnownDifference(
        "brk base",
        "start_brk follows the ELF image (randomised on the host, image_base + image size "
        "in the model).",
        "brk arguments and results are start_brk-relative."),
    KnownDifference(
        "mmap_min_addr, the low 4 MB and kernel space",
        "i386 reserves [0, 4 MB) and [0xC0000000, 4 GB) in this model; x86-64 has "
        "mmap_min_addr 4096 and a canonical-address hole.",
        "no generated address leaves the window or the heap area."),
    KnownDifference(
        "vsyscall page and vdso",
        "x86-64 has [vsyscall] at 0xffffffffff600000 and a vdso near the stack; the model "
        "has neither.",
        "only the window's pages (and the pages after start_brk) are compared."),
    KnownDifference(
        "NX (and x86-64 protection keys)",
        "x86-64 PTEs carry NX, so a page without PROT_EXEC cannot be executed, and with "
        "PKU a PROT_EXEC-only mapping gets an execute-only key; the model's i386 CPU has "
        "neither: every present page is executable and a PROT_WRITE-only or PROT_EXEC-only "
        "page is readable through its PTE.",
        "compared are the asked bits /proc/self/maps shows (the vma flags), which both "
        "derive from prot alone; the host's PTE bits are not observable from user space."),
    KnownDifference(
        "RLIMIT_DATA (configuration, not width)",
        "the host's brk limit is this process's RLIMIT_DATA (often unlimited); the model's "
        "is heap_max, 16 MB above start_brk by default.",
        "generated breaks stay below BRK_PAGES pages, far under both limits."),
)


# --- operations -----------------------------------------------------------------


@dataclass(frozen=True)
class Length:
    """A length argument: `value` bytes, or symbolic 'huge_aligned'/'huge_max' (per width)."""

    kind: str = "bytes"
    value: int = 0

    def resolve(self, bits: int) -> int:
        if self.kind == "huge_aligned":
            return (1 << bits) - PAGE
        if self.kind == "huge_max":
            return (1 << bits) - 1
        return self.value

    def pages(self) -> int:
        return -(-self.value // PAGE) if self.kind == "bytes" else 0


@dataclass(frozen=True)
class Mmap:
    place: str  # 'null' (addr 0) | 'hint' | 'fixed' | 'noreplace' | 'both' (the two fixed)
    offset: int  # bytes into the window: the address for hint/fixed/noreplace
    length: Length
    prot: int
    share: int  # MAP_PRIVATE, MAP_SHARED, 0 (neither) or MAP_BOTH
    anonymous: bool = True
    file_offset: int = 0
    extra_flags: int = 0  # MAP_NORESERVE: accepted and without effect on both

    def flags(self) -> int:
        place = {"null": 0, "hint": 0, "fixed": MAP_FIXED, "noreplace": MAP_FIXED_NOREPLACE,
                 "both": MAP_FIXED | MAP_FIXED_NOREPLACE}
        return (self.share | (MAP_ANONYMOUS if self.anonymous else 0) | place[self.place]
                | self.extra_flags)


@dataclass(frozen=True)
class Munmap:
    offset: int
    length: Length


@dataclass(frozen=True)
class Mprotect:
    offset: int
    length: Length
    prot: int


WindowOp = Mmap | Munmap | Mprotect
Outcome = tuple[object, ...]


class Side(Protocol):
    """One implementation of the calls, with a window at `base`."""

    name: str
    base: int
    bits: int

    def mmap(self, addr: int, length: int, prot: int, flags: int, fd: int, offset: int) -> int: ...

    def munmap(self, addr: int, length: int) -> int: ...

    def mprotect(self, addr: int, length: int, prot: int) -> int: ...

    def pages(self) -> tuple[PageState, ...]: ...


class HostSide:
    name = "host"
    bits = 64

    def __init__(self, window: HostWindow) -> None:
        self.window = window
        self.base = window.base
        self.mmap = host_mmap
        self.munmap = host_munmap
        self.mprotect = host_mprotect

    def pages(self) -> tuple[PageState, ...]:
        return self.window.pages()


def new_model_space() -> ProcessMemorySpace:
    """A fresh model process: PageManager 16 MB, paging on, user space initialised."""
    pageman = PageManager()
    assert pageman.InitializePhysicalMemory(0, MODEL_MEMORY)
    vmm = VirtualMemoryManager(pageman)
    assert vmm.InitializePaging()
    space = ProcessMemorySpace(vmm, 1)
    assert space.InitializeUserSpace()
    return space


class ModelSide:
    name = "model"
    bits = 32
    base = MODEL_WINDOW

    def __init__(self) -> None:
        self.space = new_model_space()
        flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED
        window = self.mmap(MODEL_WINDOW, WINDOW_PAGES * PAGE, PROT_NONE, flags, -1, 0)
        assert window == MODEL_WINDOW, f"the model refused the PROT_NONE window: {window}"

    def mmap(self, addr: int, length: int, prot: int, flags: int, fd: int, offset: int) -> int:
        return SyscallMmap(self.space, addr, length, prot, flags, fd, offset)

    def munmap(self, addr: int, length: int) -> int:
        return SyscallMunmap(self.space, addr, length)

    def mprotect(self, addr: int, length: int, prot: int) -> int:
        return SyscallMprotect(self.space, addr, length, prot)

    def pages(self) -> tuple[PageState, ...]:
        return page_states(linux_maps(self.space), MODEL_WINDOW, WINDOW_PAGES)


def is_error(result: int) -> bool:
    return -4096 < result < 0


def apply(op: WindowOp, side: Side) -> Outcome:
    """Run op on side; the outcome in window-relative, width-free terms."""
    address = side.base + op.offset
    if isinstance(op, Munmap):
        result = side.munmap(address, op.length.resolve(side.bits))
    elif isinstance(op, Mprotect):
        result = side.mprotect(address, op.length.resolve(side.bits), op.prot)
    else:
        length = op.length.resolve(side.bits)
        result = side.mmap(0 if op.place == "null" else address, length, op.prot, op.flags(),
                           -1, op.file_offset)
        if not is_error(result):
            if side.base <= result < side.base + WINDOW_PAGES * PAGE:
                return ("at", result - side.base)
            undone = side.munmap(result, length)
            return ("outside", f"unmapped again: {undone}")
    return ("error", -result) if is_error(result) else ("ok", result)


def page_diffs(host: Sequence[PageState], model: Sequence[PageState], what: str) -> list[str]:
    """Runs of pages that differ, as 'pages a..b: host X, model Y'."""
    diffs: list[str] = []
    index = 0
    while index < len(host):
        if host[index] == model[index]:
            index += 1
            continue
        end = index
        while end + 1 < len(host) and (host[end + 1], model[end + 1]) == (host[index],
                                                                           model[index]):
            end += 1
        diffs.append(f"{what} pages {index}..{end}: host {host[index]}, model {model[index]}")
        index = end + 1
    return diffs


def report(ops: Sequence[object], step: int, diffs: list[str]) -> str:
    lines = [f"model diverges from the host kernel at step {step}:"]
    lines += [f"  {'>>' if i == step else '  '} {i}: {op!r}" for i, op in enumerate(ops)]
    return "\n".join(lines + [f"  {diff}" for diff in diffs])


def run_window_sequence(ops: Sequence[WindowOp], host: Side, model: Side) -> str | None:
    """None when host and model agree after every op, else the divergence report."""
    diffs = page_diffs(host.pages(), model.pages(), "window (initial)")
    if diffs:
        return report(ops, -1, diffs)
    for step, op in enumerate(ops):
        host_outcome, model_outcome = apply(op, host), apply(op, model)
        if host_outcome != model_outcome:
            diffs.append(f"result: host {host_outcome}, model {model_outcome}")
        diffs += page_diffs(host.pages(), model.pages(), "window")
        if diffs:
            return report(ops, step, diffs)
    return None


# --- brk ----------------------------------------------------------------------


@dataclass(frozen=True)
class Brk:
    delta: int | None  # brk(start_brk + delta); None is brk(0), the query


@dataclass(frozen=True)
class BrkMmap:
    page: int  # MAP_FIXED (or MAP_FIXED_NOREPLACE) at start_brk + page pages
    npages: int
    prot: int
    noreplace: bool = False


@dataclass(frozen=True)
class BrkMunmap:
    page: int
    npages: int


BrkOp = Brk | BrkMmap | BrkMunmap


class BrkSide(Protocol):
    def brk(self, delta: int | None) -> int: ...

    def mmap(self, offset: int, length: int, prot: int, flags: int) -> int: ...

    def munmap(self, offset: int, length: int) -> int: ...

    def pages(self) -> tuple[PageState, ...]: ...


class HostBrk:
    """The child process, start_brk-relative."""

    def __init__(self, child: BrkChild) -> None:
        self.child = child

    def brk(self, delta: int | None) -> int:
        return self.child.brk(-self.child.start_brk if delta is None else delta)

    def mmap(self, offset: int, length: int, prot: int, flags: int) -> int:
        return self.child.mmap(offset, length, prot, flags)

    def munmap(self, offset: int, length: int) -> int:
        return self.child.munmap(offset, length)

    def pages(self) -> tuple[PageState, ...]:
        return self.child.pages(BRK_PAGES)


class ModelBrk:
    """A fresh model process, heap_start-relative."""

    def __init__(self) -> None:
        self.space = new_model_space()
        self.start = self.space.heap_start

    def brk(self, delta: int | None) -> int:
        result = SyscallBrk(self.space, 0 if delta is None else self.start + delta)
        return result - self.start

    def mmap(self, offset: int, length: int, prot: int, flags: int) -> int:
        result = SyscallMmap(self.space, self.start + offset, length, prot, flags, -1, 0)
        return result if is_error(result) else result - self.start

    def munmap(self, offset: int, length: int) -> int:
        return SyscallMunmap(self.space, self.start + offset, length)

    def pages(self) -> tuple[PageState, ...]:
        return page_states(linux_maps(self.space), self.start, BRK_PAGES)


def apply_brk(op: BrkOp, side: BrkSide) -> int:
    if isinstance(op, Brk):
        return side.brk(op.delta)
    if isinstance(op, BrkMunmap):
        return side.munmap(op.page * PAGE, op.npages * PAGE)
    fixed = MAP_FIXED_NOREPLACE if op.noreplace else MAP_FIXED
    return side.mmap(op.page * PAGE, op.npages * PAGE, op.prot,
                     MAP_PRIVATE | MAP_ANONYMOUS | fixed)


def run_brk_sequence(ops: Sequence[BrkOp], host: BrkSide, model: BrkSide) -> str | None:
    diffs = page_diffs(host.pages(), model.pages(), "heap (initial)")
    if diffs:
        return report(ops, -1, diffs)
    for step, op in enumerate(ops):
        host_result, model_result = apply_brk(op, host), apply_brk(op, model)
        if host_result != model_result:
            diffs.append(f"result (start_brk-relative or -errno): host {host_result}, "
                         f"model {model_result}")
        diffs += page_diffs(host.pages(), model.pages(), "heap")
        if diffs:
            return report(ops, step, diffs)
    return None


# --- strategies -----------------------------------------------------------------

PROTS = st.sampled_from([3, 1, 0, 2, 4, 5, 6, 7] * 3 + [PROT_SEM, PROT_UNKNOWN, PROT_GROWSDOWN])


@st.composite
def window_ranges(draw: st.DrawFn) -> tuple[int, Length]:
    """(offset, length) inside the window; sometimes unaligned, zero or huge."""
    unaligned = draw(st.sampled_from([0] * 10 + [1, PAGE // 2]))
    room = WINDOW_PAGES - (1 if unaligned else 0)  # an unaligned hint rounds up a page
    page = draw(st.integers(0, room - 1))
    kind = draw(st.sampled_from(["bytes"] * 12 + ["zero", "huge_aligned", "huge_max"]))
    if kind == "zero":
        return page * PAGE + unaligned, Length("bytes", 0)
    if kind != "bytes":
        return page * PAGE + unaligned, Length(kind)
    npages = draw(st.integers(1, min(4, room - page)) | st.integers(1, room - page))
    trim = draw(st.sampled_from([0, 0, 0, 1, PAGE - 1]))
    return page * PAGE + unaligned, Length("bytes", npages * PAGE - trim)


@st.composite
def mmaps(draw: st.DrawFn) -> Mmap:
    offset, length = draw(window_ranges())
    place = draw(st.sampled_from(["fixed", "fixed", "hint", "noreplace", "null", "both"]))
    return Mmap(
        place, 0 if place == "null" else offset, length, draw(PROTS),
        draw(st.sampled_from([MAP_PRIVATE] * 6 + [MAP_SHARED] * 3 + [0, MAP_BOTH])),
        draw(st.sampled_from([True] * 12 + [False])),
        draw(st.sampled_from([0] * 12 + [PAGE, 1])),
        draw(st.sampled_from([0] * 8 + [MAP_NORESERVE])),
    )


#: Unmaps the whole window: sequences starting with it have room for hints.
EMPTY_WINDOW = Munmap(0, Length("bytes", WINDOW_PAGES * PAGE))

window_ops = st.one_of(
    mmaps(),
    st.builds(lambda r: Munmap(r[0], r[1]), window_ranges()),
    st.builds(lambda r, prot: Mprotect(r[0], r[1], prot), window_ranges(),
              PROTS | st.sampled_from([PROT_GROWSUP | 1, PROT_GROWSDOWN | PROT_GROWSUP | 1])),
)


window_sequences = st.builds(
    lambda empty, ops: [EMPTY_WINDOW, *ops] if empty else ops,
    st.booleans(), st.lists(window_ops, min_size=1, max_size=12))


@st.composite
def brk_ops(draw: st.DrawFn) -> BrkOp:
    kind = draw(st.sampled_from(["brk", "brk", "brk", "query", "mmap", "mmap", "munmap"]))
    if kind == "query":
        return Brk(None)
    if kind == "brk":
        pages = draw(st.integers(-2, BRK_PAGES - 8))
        return Brk(pages * PAGE + draw(st.sampled_from([0, 0, 0, 1, 100, PAGE - 1])))
    page = draw(st.integers(0, BRK_PAGES - 8))
    npages = draw(st.integers(1, 4))
    if kind == "munmap":
        return BrkMunmap(page, npages)
    return BrkMmap(page, npages, draw(PROTS), draw(st.booleans()))


# --- tests ----------------------------------------------------------------------

DIFFERENTIAL = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                        suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def host_window() -> Iterator[HostWindow]:
    window = HostWindow(WINDOW_PAGES)
    yield window
    window.close()


@pytest.fixture(scope="module")
def brk_child_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        return compile_brk_child(tmp_path_factory.mktemp("brk_child"))
    except CompilerMissingError as missing:
        pytest.fail(str(missing))


@DIFFERENTIAL
@given(ops=window_sequences)
def test_mmap_munmap_mprotect_agree_with_the_host_kernel(host_window: HostWindow,
                                                         ops: list[WindowOp]) -> None:
    host_window.reset()
    divergence = run_window_sequence(ops, HostSide(host_window), ModelSide())
    assert divergence is None, divergence


@DIFFERENTIAL
@given(ops=st.lists(brk_ops(), min_size=1, max_size=12))
def test_brk_agrees_with_the_host_kernel(brk_child_binary: Path, ops: list[BrkOp]) -> None:
    child = BrkChild(brk_child_binary)
    try:
        divergence = run_brk_sequence(ops, HostBrk(child), ModelBrk())
    finally:
        child.close()
    assert divergence is None, divergence


# --- the harness can fail ------------------------------------------------------------


class MunmapDoesNothing(ModelSide):
    """A broken model: munmap reports success and unmaps nothing."""

    def munmap(self, addr: int, length: int) -> int:
        return 0


class BrkNeverShrinks(ModelBrk):
    """A broken model: brk below the current break answers the current break."""

    def brk(self, delta: int | None) -> int:
        current = super().brk(None)
        if delta is not None and delta < current:
            return current
        return super().brk(delta)


def test_a_munmap_that_does_nothing_is_reported(host_window: HostWindow) -> None:
    host_window.reset()
    ops: list[WindowOp] = [
        Mmap("fixed", 2 * PAGE, Length("bytes", 4 * PAGE), 3, MAP_PRIVATE),
        Munmap(3 * PAGE, Length("bytes", PAGE)),
    ]
    assert run_window_sequence(ops, HostSide(host_window), ModelSide()) is None
    host_window.reset()
    divergence = run_window_sequence(ops, HostSide(host_window), MunmapDoesNothing())
    assert divergence is not None
    assert "at step 1" in divergence
    assert "window pages 3..3: host None, model rw-p" in divergence


def test_a_brk_that_never_shrinks_is_reported(brk_child_binary: Path) -> None:
    ops: list[BrkOp] = [Brk(3 * PAGE), Brk(PAGE)]
    sides: list[tuple[Callable[[], ModelBrk], bool]] = [(ModelBrk, True),
                                                         (BrkNeverShrinks, False)]
    for make_model, agrees in sides:
        child = BrkChild(brk_child_binary)
        try:
            divergence = run_brk_sequence(ops, HostBrk(child), make_model())
        finally:
            child.close()
        assert (divergence is None) == agrees, divergence
    assert divergence is not None
    assert "at step 1" in divergence
    assert f"host {PAGE}, model {3 * PAGE}" in divergence
