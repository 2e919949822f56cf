"""Loops over the model's data structures end, whatever the state (issue 18).

A loop that walks a structure read from the model's state or from modelled
memory (an MCB chain, heap blocks, a pool's free list, bitmap words, the
allocations of a space, id and slot searches, page spans) must end on a
corrupted state, and under a mutant of its own control, with a failure
rather than a hang: docs/hostile-input.md#loops lists them and their bounds.

Two kinds of test, each under an alarm (``alarm``) so that a loop that no
longer ends fails its test instead of hanging the run:

- corrupted states written directly (a cyclic free list, a zero align, a
  negative bitmap word, an exhausted id space): the call returns its
  documented failure;
- mutants: every one-token mutation of each audited loop's control (its
  condition or range, the statements that update the variables it carries
  from one pass to the next and the exits that test them: ``+`` and ``-``
  swapped, ``<`` and ``<=``, ``in`` and ``not in`` ..., an integer constant
  plus or minus one, the update deleted), built from the loop's own source
  and run on a scenario that takes the loop round several times, must end:
  return or raise, anything but run into the alarm.
"""

from __future__ import annotations
import __future__

import ast
import inspect
import signal
import sys
import textwrap
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from model import dos_physical, linux_mm, shared_memory, virtual_alloc, x86_paging
from model.address_space import AddressSpace
from model.dos_memory import DosMemoryManager
from model.frame_bitmap import FrameBitmap
from model.kernel_heap import KernelHeap
from model.memory_interface import MemoryInterface
from model.memory_pool import MemoryPool
from model.memory_subsystem import MemorySubsystem
from model.page_manager import PageManager
from model.process_memory import ProcessMemorySpace
from model.shared_memory import SharedMemoryManager
from model.virtual_memory import VirtualMemoryManager
from spec.abi import (
    MAP_ANONYMOUS,
    MAP_PRIVATE,
    MEM_COMMIT,
    MEM_RESERVE,
    PAGE_READONLY,
    PAGE_READWRITE,
    PAGE_SIZE,
    PROT_READ,
    PROT_WRITE,
    ErrorCode,
)
from tests.dos_world import make_dos

E = ErrorCode
#: Seconds a test may run before it counts as hung. The slowest bounded mutant
#: (an MCB walk that never advances, cut off after 0x10000 blocks) takes well
#: under one.
ALARM_SECONDS = 5.0


class Hung(BaseException):
    """Raised by the alarm: a BaseException, so a mutant's ``except Exception`` keeps it."""


@pytest.fixture(autouse=True)
def alarm() -> Iterator[None]:
    """Fail the test, instead of hanging the run, when it outlives ALARM_SECONDS."""
    if not hasattr(signal, "setitimer"):
        pytest.skip("needs signal.setitimer")

    def ring(signum: int, frame: object) -> None:
        raise Hung(f"still running after {ALARM_SECONDS} s: a loop does not end")

    previous = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, ALARM_SECONDS)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# -- worlds -------------------------------------------------------------------


def booted() -> MemorySubsystem:
    sub = MemorySubsystem(0x1000000)
    assert sub.InitializeMemorySubsystem(0x100000)
    return sub


def new_process(sub: MemorySubsystem) -> ProcessMemorySpace:
    pid = sub.syscalls.CreateProcess()
    assert pid, sub.syscalls.last_error
    return sub.syscalls.processes[pid]


def make_heap() -> KernelHeap:
    pm = PageManager()
    assert pm.InitializePhysicalMemory(0x100000, 0x1000000)
    vmm = VirtualMemoryManager(pm)
    assert vmm.InitializePaging()
    heap = KernelHeap(vmm)
    assert heap.Create(0xC0000000, 0xC0008000, 0xC0040000, True, False,
                       index_size=64, min_size=0x2000) is heap
    return heap


def make_pool(max_blocks: int = 4) -> MemoryPool:
    pool = MemoryPool(make_heap())
    assert pool.Create(8, max_blocks) is pool
    return pool


def write_kernel(heap: KernelHeap, address: int, data: bytes) -> None:
    assert heap.directory is not None
    assert heap.vmm.WriteVirtualMemory(heap.directory, address, data, False) is True


def space_with_allocations() -> tuple[ProcessMemorySpace, list[int]]:
    """A process (image, heap and stack allocations) with three more committed
    regions of 3 pages, 64 KB apart, the middle page of the first read-only; the
    space and those three bases."""
    space = new_process(booted())
    bases = [virtual_alloc.VirtualAllocProcessMemory(space, 0, 3 * PAGE_SIZE,
                                                     MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE)
             for _ in range(3)]
    assert all(bases), space.last_error
    changed, _ = virtual_alloc.VirtualProtectProcessMemory(space, bases[0] + PAGE_SIZE,
                                                           PAGE_SIZE, PAGE_READONLY)
    assert changed
    return space, bases


# -- corrupted states -----------------------------------------------------------


def test_a_free_list_pointing_to_itself_is_corrupt() -> None:
    pool = make_pool()
    block = pool.AllocBlock()
    assert block and pool.AllocBlock()
    assert pool.FreeBlock(block)
    write_kernel(pool.heap, block, block.to_bytes(4, "little"))  # next = itself
    assert pool.free_blocks() is None
    assert pool.AllocBlock() == 0 and pool.last_error == E.ERROR_ARENA_TRASHED
    assert pool.free_list == block


def test_a_free_list_cycle_of_two_is_corrupt() -> None:
    pool = make_pool()
    first, second = pool.AllocBlock(), pool.AllocBlock()
    assert pool.FreeBlock(first) and pool.FreeBlock(second)
    write_kernel(pool.heap, first, second.to_bytes(4, "little"))  # second -> first -> second
    assert pool.free_blocks() is None


def test_a_full_free_list_is_read_to_its_end() -> None:
    """The bound leaves room for every carved block and the final 0."""
    pool = make_pool(max_blocks=5)
    blocks = [pool.AllocBlock() for _ in range(5)]
    for block in blocks:
        assert pool.FreeBlock(block)
    assert pool.free_blocks() == blocks[::-1]


def test_a_heap_block_of_size_zero_is_corrupt() -> None:
    heap = make_heap()
    payload = heap.Alloc(100)
    assert payload
    header = payload - 12
    write_kernel(heap, header + 8, bytes(4))  # size 0
    assert heap.walk() is None
    assert not heap.Free(payload) and heap.last_error == E.ERROR_ARENA_TRASHED


def test_an_mcb_running_past_its_area_is_error_7() -> None:
    dos = make_dos()
    segment = dos.AllocateDosMemory(0x10)
    assert segment
    dos._write_mcb(segment - 1, 0x4D, 0x100, 0xFFFF)  # 'M', past conventional memory
    assert dos.walk(dos.first_segment) is None
    assert dos.AllocateDosMemory(1) == 0 and dos.last_error == 7


def test_used_frames_of_a_negative_word_ends() -> None:
    """A bitmap word is a uint32 (FRM-1); a negative one, whose set bits never run
    out in Python, is read as a finite set of frames and fails the consistency check."""
    pm = PageManager()
    assert pm.InitializePhysicalMemory(0x100000, 0x1000000)
    before = pm.used_frames()
    pm.frames.words[100] = -1
    assert pm.used_frames() == before + (3200,)
    assert not pm.frames.is_consistent()


def test_a_summary_level_that_does_not_shrink_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    """A level builder that never narrows (a bug) gives a bitmap that fails its
    check, after the bounded number of levels, instead of building levels forever."""
    import model.frame_bitmap as frame_bitmap
    monkeypatch.setattr(frame_bitmap, "_full_level", lambda width: [0] * max(2, width))
    bitmap = FrameBitmap(1 << 20)
    assert len(bitmap.levels) == (1 << 15).bit_length() // 5 + 1
    assert not bitmap.is_consistent()


def test_a_zero_align_does_not_stall_the_placement_search() -> None:
    """align 0 makes every candidate 0: the search gives up after one pass per
    allocation instead of coming back to 0 for ever."""
    space, _ = space_with_allocations()
    size = space.bases[0] + PAGE_SIZE  # overlaps the first allocation from 0
    assert space.find_bottom_up(size, 0, 0x2000000, 0) == -1
    assert space.find_top_down(size, 0, 0x2000000, 0) == -1


@pytest.mark.parametrize("size", [PAGE_SIZE, 0x4000, 0xD000, 0x10000, 0x13000])
def test_placement_bounds_leave_every_answer(size: int) -> None:
    """The bounds leave one pass per allocation: both searches agree with a scan
    of every page-aligned candidate, also when they must skip every allocation."""
    space, bases = space_with_allocations()
    low, high = bases[0] - 0x10000, bases[-1] + 0x20000
    fitting = [base for base in range(low, high - size + 1, PAGE_SIZE)
               if space.is_free(base, base + size)]
    assert space.find_bottom_up(size, low, high, PAGE_SIZE) == (fitting[0] if fitting else -1)
    assert space.find_top_down(size, low, high, PAGE_SIZE) == (fitting[-1] if fitting else -1)


def test_an_exhausted_id_space_fails_create_shared_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every id live (MAX_SHM_ID made 3: with the real 0xFFFFFFFF the frames run out
    first): CreateSharedMemory fails with ERROR_NOT_ENOUGH_MEMORY and changes nothing."""
    monkeypatch.setattr(shared_memory, "MAX_SHM_ID", 3)
    shm = booted().shared_memory
    assert [shm.CreateSharedMemory(PAGE_SIZE, PAGE_READWRITE) for _ in range(3)] == [1, 2, 3]
    free, blocks = shm.vmm.pageman.free_count(), dict(shm.blocks)
    assert shm.CreateSharedMemory(PAGE_SIZE, PAGE_READWRITE) == 0
    assert shm.last_error == E.ERROR_NOT_ENOUGH_MEMORY
    assert shm.vmm.pageman.free_count() == free and shm.blocks == blocks and shm.next_shm_id == 1
    assert shm.DestroySharedMemory(2)
    assert shm.CreateSharedMemory(PAGE_SIZE, PAGE_READWRITE) == 2


# -- mutants of the loops' control ----------------------------------------------------


def _pieces() -> object:
    assert list(x86_paging.page_pieces(0x1FFF, 0x2002)) == [
        (1, 0xFFF, 0x1000), (2, 0, 0x1000), (3, 0, 0x1000), (4, 0, 1)]
    return list(x86_paging.page_pieces(0x1001, 0)), list(x86_paging.page_pieces(0, 0x3000))


def _physical_spans() -> object:
    assert dos_physical.spans(0x1FFF, 0x2002)[1] == (2, 0, 0x1000)
    return dos_physical.read_physical(make_dos().pageman, 0x2FF0, 0x2020)


def _data_span() -> object:
    pm = PageManager()
    assert pm.InitializePhysicalMemory(0x100000, 0x1000000)
    assert pm.WritePhysicalMemory(0x10, b"x") is False  # reserved: access denied
    return pm.ReadPhysicalMemory(0x1FF0, 0x3020)


def _used_frames() -> object:
    pm = PageManager()
    assert pm.InitializePhysicalMemory(0x100000, 0x1000000)
    pm.frames.words[100] = -1
    return pm.used_frames()


def _bitmap_levels() -> object:
    return FrameBitmap((1 << 20) + 5).is_consistent()


def _mcb_walk() -> object:
    dos = make_dos()
    segments = [dos.AllocateDosMemory(0x20) for _ in range(4)]
    assert all(segments) and dos.FreeDosMemory(segments[1])
    assert dos.SetUmbLink(True)
    return dos.AllocateDosMemory(0x10), dos.GetDosLargestBlock()


def _heap_walk() -> object:
    heap = make_heap()
    payloads = [heap.Alloc(100) for _ in range(4)]
    assert all(payloads) and heap.Free(payloads[1])
    assert heap.walk() is not None
    return heap.Alloc(0x1800, True)


def _heap_spans() -> object:
    heap = make_heap()
    return heap._spans(0xC0001FF8, 0x2010), heap._read(0xC0001FF8, 0x2010)


def _pool_list() -> object:
    pool = make_pool()
    blocks = [pool.AllocBlock() for _ in range(4)]
    for block in blocks[:3]:
        assert pool.FreeBlock(block)
    assert pool.free_blocks() is not None
    write_kernel(pool.heap, blocks[0], blocks[2].to_bytes(4, "little"))  # a cycle of three
    return pool.free_blocks()


def _placement() -> object:
    space, bases = space_with_allocations()
    top = space.allocations[bases[-1]].end
    wide = 0x13000
    return (space.allocations_between(bases[0] - 0x100000, top),
            space.find_bottom_up(wide, bases[0], top + wide, PAGE_SIZE),
            space.find_top_down(wide, bases[0], top, PAGE_SIZE),
            space.find_top_down(PAGE_SIZE, bases[0], top, PAGE_SIZE),
            space.find_bottom_up(bases[0] + PAGE_SIZE, 0, top, 0))


def _user_access() -> object:
    space, bases = space_with_allocations()
    base = bases[2]
    assert space.WriteUserMemory(base + 1, bytes(2 * PAGE_SIZE)) is True
    return (space.ReadUserMemory(base + 1, 2 * PAGE_SIZE),
            space.WriteUserMemory(bases[0], bytes(2 * PAGE_SIZE)),
            space.ReadUserMemory(base, 4 * PAGE_SIZE))


def _mprotect() -> object:
    space = new_process(booted())
    rw, flags = PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS
    address = linux_mm.SyscallMmap(space, 0, 4 * PAGE_SIZE, rw, flags, 0xFFFFFFFF, 0)
    assert address > 0
    assert linux_mm.SyscallMprotect(space, address, 4 * PAGE_SIZE, PROT_READ) == 0
    assert linux_mm.SyscallMunmap(space, address + 2 * PAGE_SIZE, PAGE_SIZE) == 0
    return linux_mm.SyscallMprotect(space, address, 4 * PAGE_SIZE, rw)


def _virtual_query() -> object:
    space, bases = space_with_allocations()
    return [virtual_alloc.VirtualQueryProcessMemory(space, base + offset)
            for base in bases for offset in (0, PAGE_SIZE)]


def _free_page() -> object:
    api = MemoryInterface(booted())
    pages = [api.GetFreePage() for _ in range(4)]
    assert all(pages) and api.ReleasePage(pages[0])
    return api.GetFreePage(), api.GetFreePage()


def _kernel_stack() -> object:
    sub = booted()
    stacks = [sub.AllocateKernelStack() for _ in range(4)]
    assert all(stacks) and sub.FreeKernelStack(stacks[0])
    return sub.AllocateKernelStack(), sub.AllocateKernelStack()


def _shared_ids() -> object:
    shm = booted().shared_memory
    ids = [shm.CreateSharedMemory(PAGE_SIZE, PAGE_READWRITE) for _ in range(4)]
    assert all(ids) and shm.DestroySharedMemory(ids[1])
    shm.next_shm_id = ids[0]  # as after a wrap of the id counter
    return shm.CreateSharedMemory(PAGE_SIZE, PAGE_READWRITE)


@dataclass(frozen=True)
class Target:
    """A function holding audited loops, and a scenario that runs them."""

    owner: type | types.ModuleType
    name: str
    scenario: Callable[[], object]

    @property
    def label(self) -> str:
        return f"{self.owner.__name__.rsplit('.', 1)[-1]}.{self.name}"


TARGETS = [
    Target(x86_paging, "page_pieces", _pieces),
    Target(dos_physical, "spans", _physical_spans),
    Target(PageManager, "_data_span", _data_span),
    Target(PageManager, "used_frames", _used_frames),
    Target(FrameBitmap, "__init__", _bitmap_levels),
    Target(DosMemoryManager, "walk", _mcb_walk),
    Target(KernelHeap, "walk", _heap_walk),
    Target(KernelHeap, "_spans", _heap_spans),
    Target(MemoryPool, "free_blocks", _pool_list),
    Target(AddressSpace, "allocations_between", _placement),
    Target(AddressSpace, "find_bottom_up", _placement),
    Target(AddressSpace, "find_top_down", _placement),
    Target(AddressSpace, "_check_access", _user_access),
    Target(VirtualMemoryManager, "_access", _user_access),
    Target(linux_mm, "SyscallMprotect", _mprotect),
    Target(virtual_alloc, "VirtualQueryProcessMemory", _virtual_query),
    Target(MemoryInterface, "GetFreePage", _free_page),
    Target(MemorySubsystem, "AllocateKernelStack", _kernel_stack),
    Target(SharedMemoryManager, "CreateSharedMemory", _shared_ids),
]

_SWAPS: dict[type, type] = {
    ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Lt: ast.LtE, ast.LtE: ast.Lt,
    ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq,
    ast.In: ast.NotIn, ast.NotIn: ast.In,
}


def _source(target: Target) -> tuple[ast.Module, str, int]:
    """The function's definition (decorators included) as a module, its file and first line."""
    function = inspect.unwrap(vars(target.owner)[target.name])
    lines, first = inspect.getsourcelines(function)
    tree = ast.parse(textwrap.dedent("".join(lines)))
    ast.increment_lineno(tree, first - 1)
    return tree, inspect.getsourcefile(function) or "<source>", first


def _stored(nodes: list[ast.AST]) -> set[str]:
    return {node.id for root in nodes for node in ast.walk(root)
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store)}


def _read(root: ast.AST) -> set[str]:
    return {node.id for node in ast.walk(root)
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)}


def _targets_of(statement: ast.stmt) -> set[str]:
    if isinstance(statement, ast.Assign):
        return _stored(list(statement.targets))
    if isinstance(statement, ast.AugAssign | ast.AnnAssign):
        return _stored([statement.target])
    return set()


def _control(tree: ast.Module) -> tuple[list[ast.AST], list[ast.stmt]]:
    """The expressions that steer the function's loops (conditions, ranges, exits)
    and the statements that update the variables a loop carries between passes."""
    function = tree.body[0]
    assert isinstance(function, ast.FunctionDef)
    parameters = {argument.arg for argument in ast.walk(function.args)
                  if isinstance(argument, ast.arg)}
    expressions: list[ast.AST] = []
    updates: list[ast.stmt] = []
    for loop in ast.walk(function):
        if isinstance(loop, ast.For | ast.While):
            header: list[ast.AST] = [loop.iter if isinstance(loop, ast.For) else loop.test]
            body: list[ast.stmt] = loop.body + loop.orelse
        elif isinstance(loop, ast.comprehension):
            header, body = [loop.iter, *loop.ifs], []
        else:
            continue
        inside = {id(node) for statement in body for node in ast.walk(statement)}
        in_body = _stored(list(body))
        elsewhere = {node.id for node in ast.walk(function) if isinstance(node, ast.Name)
                     and isinstance(node.ctx, ast.Store) and id(node) not in inside}
        carried = in_body & (elsewhere | parameters | set().union(*map(_read, header)))
        statements = [node for statement in body for node in ast.walk(statement)
                      if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign)]
        feeding = set().union(*(_read(node) for node in statements if _targets_of(node) & carried))
        steering = carried | (feeding & in_body)
        updates += [node for node in statements if _targets_of(node) & steering]
        exits: list[ast.AST] = [node.test for statement in body for node in ast.walk(statement)
                 if isinstance(node, ast.If) and len(node.body) == 1
                 and isinstance(node.body[0], ast.Break | ast.Return | ast.Continue)
                 and _read(node.test) & carried]
        # A container the loop's tests read, updated by a call (``seen.add(block)``).
        tested = set().union(*map(_read, header + exits))
        updates += [node for statement in body for node in ast.walk(statement)
                    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
                    and isinstance(node.value.func, ast.Attribute)
                    and isinstance(node.value.func.value, ast.Name)
                    and node.value.func.value.id in tested]
        expressions += header + exits
    return expressions, updates


def _sites(tree: ast.Module) -> list[tuple[int, str, int]]:
    """(node position in ast.walk order, kind, operand index) of every mutation."""
    position = {id(node): index for index, node in enumerate(ast.walk(tree))}
    expressions, updates = _control(tree)
    sites: set[tuple[int, str, int]] = {(position[id(node)], "delete", 0) for node in updates}
    for root in expressions + updates:
        for node in ast.walk(root):
            where = position[id(node)]
            if isinstance(node, ast.BinOp | ast.AugAssign) and type(node.op) in _SWAPS:
                sites.add((where, "swap", 0))
            elif isinstance(node, ast.Compare):
                sites.update((where, "compare", index) for index, op in enumerate(node.ops)
                             if type(op) in _SWAPS)
            elif (isinstance(node, ast.Constant) and type(node.value) is int):
                sites.update({(where, "plus", 0), (where, "minus", 0)})
    return sorted(sites)


def _mutate(tree: ast.Module, site: tuple[int, str, int]) -> str:
    """Apply one mutation in place; a description of it."""
    where, kind, operand = site
    nodes = list(ast.walk(tree))
    node = nodes[where]
    line = getattr(node, "lineno", 0)
    if kind == "delete":
        for parent in nodes:
            for field in ("body", "orelse"):
                block = getattr(parent, field, None)
                if isinstance(block, list) and node in block:
                    block[block.index(node)] = ast.copy_location(ast.Pass(), node)
        return f"line {line}: update deleted"
    if kind == "swap":
        assert isinstance(node, ast.BinOp | ast.AugAssign)
        before = type(node.op).__name__
        node.op = _SWAPS[type(node.op)]()
        return f"line {line}: {before} -> {type(node.op).__name__}"
    if kind == "compare":
        assert isinstance(node, ast.Compare)
        before = type(node.ops[operand]).__name__
        node.ops[operand] = _SWAPS[type(node.ops[operand])]()
        return f"line {line}: {before} -> {type(node.ops[operand]).__name__}"
    assert isinstance(node, ast.Constant) and isinstance(node.value, int)
    value: int = node.value
    node.value = value + (1 if kind == "plus" else -1)
    return f"line {line}: {value} -> {value + (1 if kind == 'plus' else -1)}"


@dataclass(frozen=True)
class Mutant:
    target: Target
    site: tuple[int, str, int]

    def build(self) -> tuple[Callable[..., Any], str]:
        """The mutated function, compiled against its module's live globals, and
        what was changed."""
        tree, filename, _ = _source(self.target)
        change = _mutate(tree, self.site)
        ast.fix_missing_locations(tree)
        code = compile(tree, filename, "exec", dont_inherit=True,
                       flags=__future__.annotations.compiler_flag)
        module = sys.modules[inspect.unwrap(vars(self.target.owner)[self.target.name]).__module__]
        namespace = vars(module)
        missing = object()
        kept = namespace.get(self.target.name, missing)
        try:
            exec(code, namespace)
            function: Callable[..., Any] = namespace[self.target.name]
        finally:
            if kept is missing:
                del namespace[self.target.name]
            else:
                namespace[self.target.name] = kept
        return function, change


def _mutants() -> list[Mutant]:
    return [Mutant(target, site) for target in TARGETS for site in _sites(_source(target)[0])]


def _label(mutant: Mutant) -> str:
    tree, _, _ = _source(mutant.target)
    change = _mutate(tree, mutant.site).replace(": ", "-").replace(" ", "_")
    return f"{mutant.target.label}-{change}"


MUTANTS = _mutants()


def _install(monkeypatch: pytest.MonkeyPatch, target: Target, function: Callable[..., Any]) -> None:
    if isinstance(target.owner, type):
        monkeypatch.setattr(target.owner, target.name, function)
        return
    original = vars(target.owner)[target.name]
    for name, module in list(sys.modules.items()):
        if name.split(".")[0] in ("model", "tests") and getattr(module, target.name, None) \
                is original:
            monkeypatch.setattr(module, target.name, function)


@pytest.mark.parametrize("target", TARGETS, ids=lambda target: target.label)
def test_each_scenario_runs_its_loops(target: Target) -> None:
    """Unmutated, each scenario passes its own checks, and the function holds a
    loop or takes its pages from page_pieces."""
    tree, _, _ = _source(target)
    assert any(isinstance(node, ast.For | ast.While | ast.comprehension)
               or isinstance(node, ast.Name) and node.id == "page_pieces"
               for node in ast.walk(tree))
    target.scenario()


@pytest.mark.parametrize("mutant", MUTANTS, ids=[_label(mutant) for mutant in MUTANTS])
def test_a_mutant_of_a_loop_ends(mutant: Mutant, monkeypatch: pytest.MonkeyPatch) -> None:
    function, change = mutant.build()
    _install(monkeypatch, mutant.target, function)
    try:
        mutant.target.scenario()
    except Hung as hung:
        raise AssertionError(f"{mutant.target.label}, {change}: {hung}") from None
    except Exception:  # noqa: BLE001 - a mutant may fail in any way but hanging
        pass


def test_there_are_mutants_of_every_kind() -> None:
    """The generator finds the mutations it promises (a check on the test itself)."""
    kinds = {site[1] for mutant in MUTANTS for site in [mutant.site]}
    assert kinds == {"delete", "swap", "compare", "plus", "minus"}
    assert {mutant.target.label for mutant in MUTANTS} >= {
        "DosMemoryManager.walk", "KernelHeap.walk", "MemoryPool.free_blocks",
        "AddressSpace.find_bottom_up", "PageManager.used_frames", "x86_paging.page_pieces"}
