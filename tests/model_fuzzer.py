"""A fuzzer of the model's public operations (issue 17), shared by
tests/test_fuzz_model.py (quick budgets, in CI) and benchmarks/fuzz_model.py (a
longer campaign).

- **Discovery**: every operation is found by introspection: the methods of the
  model's classes and the functions of its modules whose names start with a
  capital letter (the seed's spelling; lower-case names are internal primitives
  whose callers validate), so a new operation is fuzzed without anyone adding it.
- **Worlds**: a booted MemorySubsystem with a process, DOS memory, a pool, a
  shared block mapped in the process and a file view; or a fresh one where
  nothing is booted. Each world has a foreign twin whose objects (directories,
  spaces, heaps) are passed in as handles of the wrong subsystem.
- **Arguments**: hostile values (negatives, 2**32, 2**64, floats, NaN, strings,
  bytes, None, objects of the wrong class, destroyed and foreign handles,
  misbehaving file nodes) mixed with values that mean something in the world
  (live addresses, handles, pids, small sizes, flags), so a sequence also
  changes state.
- **The check** of every call: no exception escapes; the call sets its
  manager's status (``last_error``, EMS's ``last_status``); a failed call (a
  status other than success) leaves a deep snapshot of the whole world
  (managers, modelled memory, file nodes, the foreign twin) as it was, except
  the accessed bits a failed old_mmap sets in the PTE of its argument block
  (model/syscalls.py states that exception); no call takes a second or
  allocates memory in proportion to a hostile size (32 MB at the most).
"""

from __future__ import annotations

import enum
import importlib
import inspect
import math
import os
import pkgutil
import struct
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import model
from model.address_space import AddressSpace
from model.file_node import DiskFileNode, MemoryFileNode
from model.kernel_heap import KernelHeap
from model.memory_interface import MemoryInterface
from model.memory_pool import MemoryPool
from model.memory_subsystem import MemorySubsystem
from model.page_tables import PageDirectory
from model.process_memory import ProcessMemorySpace
from spec.abi import (
    PAGE_READWRITE,
    PAGE_SHIFT,
    PAGE_SIZE,
    PTE_ACCESSED,
    SYS_MMAP,
    USER_BASE,
    USER_TOP,
)

MEMORY = 0x800000
KERNEL_END = 0x100000
TIME_LIMIT = 1.0
MEMORY_LIMIT = 32 << 20
STATUS = ("last_error", "last_status")
#: Attributes that are search caches, not state: a lookup may move them without
#: changing what the structure says (FrameBitmap.hint: every word below it is full).
CACHES = frozenset({"hint", "stack_hint", "page_hint"})
UNSET = -0x5EED  # a status no call sets: one still there after a call was never set


# -- discovery ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Operation:
    """One public operation: a class's method or a module's function."""

    owner: str  # the class name, or the module name for a function
    name: str
    function: Callable[..., Any]
    params: tuple[inspect.Parameter, ...]
    method: bool

    @property
    def label(self) -> str:
        return f"{self.owner}.{self.name}"


def operations() -> list[Operation]:
    """Every public operation of the model, found by introspection."""
    found = []
    for info in pkgutil.iter_modules(model.__path__):
        module = importlib.import_module(f"model.{info.name}")
        for name, obj in vars(module).items():
            if getattr(obj, "__module__", None) != module.__name__:
                continue
            if inspect.isclass(obj) and not getattr(obj, "_is_protocol", False):
                for attribute, value in vars(obj).items():
                    if attribute[:1].isupper() and inspect.isfunction(value):
                        params = tuple(inspect.signature(value).parameters.values())[1:]
                        found.append(Operation(name, attribute, value, params, True))
            elif inspect.isfunction(obj) and name[:1].isupper():
                params = tuple(inspect.signature(obj).parameters.values())
                found.append(Operation(info.name, name, obj, params, False))
    return sorted(found, key=lambda op: op.label)


# -- hostile nodes -----------------------------------------------------------------------

class HostileNode:
    """A caller's file node that misbehaves in one way (or not at all)."""

    def __init__(self, how: str) -> None:
        self.how = how
        self.writable: Any = "yes" if how == "writable is a string" else True
        self.data = bytearray(b"n" * 5000)

    def length(self) -> Any:
        if self.how == "length raises":
            raise RuntimeError("no length")
        return {"length is a float": 5000.0, "length is huge": 1 << 40}.get(self.how,
                                                                            len(self.data))

    def read(self, offset: int, size: int) -> Any:
        if self.how == "read raises":
            raise OSError("the disk is gone")
        if self.how == "read is a list":
            return [1, 2, 3]
        return bytes(self.data[offset:offset + size])

    def write(self, offset: int, data: bytes) -> Any:
        if self.how == "write raises":
            raise OSError("read-only filesystem")
        if self.how == "write is a string":
            return "done"
        stored = max(0, min(len(data), len(self.data) - offset))
        self.data[offset:offset + stored] = data[:stored]
        return stored


NODE_FAULTS = ("fine", "length raises", "length is a float", "length is huge", "read raises",
               "read is a list", "write raises", "write is a string", "writable is a string")


# -- worlds ----------------------------------------------------------------------------

@dataclass
class World:
    """The objects the operations are called on, and the values they are passed."""

    sub: MemorySubsystem
    foreign: MemorySubsystem | None
    targets: dict[str, Any]
    nodes: list[Any]
    values: list[Any] = field(default_factory=list)

    def roots(self) -> list[Any]:
        return [self.sub, self.foreign, *self.targets.values(), *self.nodes]


def booted(directory: str, name: str = "node") -> MemorySubsystem:
    """A subsystem with everything in it: a process with a shared block and a file
    view, DOS memory with a block, XMS and EMS handles."""
    sub = MemorySubsystem(MEMORY)
    assert sub.InitializeMemorySubsystem(KERNEL_END)
    calls = sub.syscalls
    pid = calls.CreateProcess()
    assert pid and calls.SwitchProcess(pid)
    shm = sub.shared_memory.CreateSharedMemory(0x2000, PAGE_READWRITE)
    space = calls.current
    assert space is not None and sub.shared_memory.MapSharedMemoryToProcess(space, shm, 0)
    path = os.path.join(directory, name)
    with open(path, "wb") as handle:
        handle.write(b"d" * 6000)
    assert sub.mapped_files.MapFileToMemory(DiskFileNode(path), 0, 0, PAGE_READWRITE)
    dos = sub.InitializeDosMemory()
    assert dos is not None and dos.AllocateDosMemory(0x100)
    assert dos.AllocateXmsMemory(0x4000) and dos.AllocateEmsPages(1)
    for block, words in ARGUMENT_BLOCKS.items():  # old_mmap's, on the stack
        assert space.WriteUserMemory(block, struct.pack("<6I", *words)) is True
    return sub


def world(stage: str, directory: str) -> World:
    """The "booted" world or the "fresh" one, with a foreign twin."""
    if stage == "booted":
        sub, foreign = booted(directory), booted(directory, "foreign-node")
    else:
        sub, foreign = MemorySubsystem(MEMORY), MemorySubsystem(MEMORY)
    calls = sub.syscalls
    heap = sub.kheap or KernelHeap(sub.virmem)
    pool = MemoryPool(heap)
    pool.Create(16, 4)
    space = calls.current or ProcessMemorySpace(sub.virmem, 1)
    dead = ProcessMemorySpace(sub.virmem, 99)
    dead.destroyed = True
    dos = sub.dosmem
    targets: dict[str, Any] = {
        "PageManager": sub.pageman, "VirtualMemoryManager": sub.virmem, "KernelHeap": heap,
        "KernelMemory": sub.kernel, "MemoryPool": pool, "MemorySubsystem": sub,
        "MemoryInterface": MemoryInterface(sub), "SystemCalls": calls,
        "ProcessMemorySpace": space, "SharedMemoryManager": sub.shared_memory,
        "MemoryMappedFiles": sub.mapped_files}
    if dos is not None:
        targets.update(DosMemoryManager=dos, XmsDriver=dos.xms, EmsManager=dos.ems)
    nodes: list[Any] = [HostileNode(how) for how in NODE_FAULTS]
    nodes.append(MemoryFileNode(b"m" * 3000))
    w = World(sub, foreign, targets, nodes)
    w.values = meaningful(w, dead)
    return w


def meaningful(w: World, dead: ProcessMemorySpace) -> list[Any]:
    """Values that name something in the world (and the foreign twin's handles)."""
    sub, values = w.sub, [0, 1, 2, 3, 4, 16, 0x100, 0x1000, 0x2000, 0x10000, PAGE_SIZE - 1,
                          USER_BASE, USER_TOP - PAGE_SIZE, 0xC0000000, 0xC0001000,
                          True, False, b"data", PAGE_READWRITE, 0x1000 | 0x2000, 45, SYS_MMAP,
                          dead, *w.nodes, *ARGUMENT_BLOCKS]
    for frame in sorted(sub.pageman.used_frames())[-3:]:
        values.append(frame << PAGE_SHIFT)
    for other in (sub, w.foreign):
        if other is None:
            continue
        values.append(other.virmem.kernel_directory)
        values.extend(other.syscalls.processes.values())
        values.extend(other.syscalls.processes)
        values.extend(base for space in other.syscalls.processes.values() for base in space.views)
        values.extend(other.shared_memory.blocks)
        if other.kheap is not None:
            values.extend(list(other.kheap.allocated)[:2])
            values.append(other.kheap)
    return values


#: old_mmap argument blocks on the process's stack: an anonymous mapping, a file
#: mapping (EBADF), length 0 (EINVAL), an unaligned offset (EINVAL).
ARGUMENT_BLOCKS = {USER_TOP - 0x100: (0, 0x1000, 3, 0x22, 0xFFFFFFFF, 0),
                   USER_TOP - 0xE0: (0, 0x1000, 1, 0x02, 3, 0),
                   USER_TOP - 0xC0: (0, 0, 1, 0x22, 0xFFFFFFFF, 0),
                   USER_TOP - 0xA0: (0, 0x1000, 1, 0x22, 0xFFFFFFFF, 0x10)}
HOSTILE: tuple[Any, ...] = (-1, -0x1000, 1 << 31, 1 << 32, (1 << 32) + PAGE_SIZE, 1 << 64,
                            1.5, math.nan, math.inf, "x", "", b"\0" * 3, bytearray(2), None,
                            [], {}, (), object(), True, PageDirectory(0x1000), 0xFFFFFFFF)


# -- the deep snapshot ----------------------------------------------------------------

PLAIN = frozenset({int, bool, str, bytes, type(None)})


def deep(roots: list[Any]) -> Any:
    """Every piece of state reachable from roots as plain values; an object seen
    before is its first-visit number (so sharing and identity count too).
    Containers of plain values are copied whole (the page tables' 1024 entries,
    the frame bitmap's words), the rest walked."""
    seen: dict[int, int] = {}
    keep: list[Any] = []  # the visited objects stay alive: their ids are not reused

    def walk(value: Any) -> Any:
        kind = type(value)
        if kind in PLAIN or isinstance(value, enum.Enum):
            return value
        if kind is float:
            return ("nan",) if math.isnan(value) else value
        if kind is bytearray or kind is memoryview:
            return bytes(value)
        if inspect.isfunction(value) or inspect.ismethod(value) or inspect.isbuiltin(value):
            return ("callable",)
        key = id(value)
        if key in seen:
            return ("ref", seen[key])
        seen[key] = len(seen)
        keep.append(value)
        if kind is list or kind is tuple:
            if set(map(type, value)) <= PLAIN:
                return (kind.__name__, tuple(value))
            return (kind.__name__, tuple(walk(item) for item in value))
        if kind is dict:
            if set(map(type, value)) <= PLAIN and set(map(type, value.values())) <= PLAIN:
                return ("dict", frozenset(value.items()))
            return ("dict", frozenset((walk(k), walk(v)) for k, v in value.items()))
        if kind is set or kind is frozenset:
            if set(map(type, value)) <= PLAIN:
                return ("set", frozenset(value))
            return ("set", frozenset(walk(item) for item in value))
        if isinstance(value, DiskFileNode):
            try:
                with open(value.path, "rb") as handle:
                    content = handle.read()
            except OSError:
                content = b""
            return ("DiskFileNode", value.path, value.writable, content)
        fields = dict(getattr(value, "__dict__", {}))
        for slot in getattr(kind, "__slots__", ()):
            if hasattr(value, slot):
                fields[slot] = getattr(value, slot)
        return (kind.__name__, frozenset(
            (name, walk(item)) for name, item in fields.items()
            if name not in STATUS and name not in CACHES))

    return walk(roots)


def old_mmap_block(op: Operation, args: tuple[Any, ...]) -> int | None:
    """The argument block's address of an old_mmap call (SyscallOldMmap, Syscall(90))."""
    if op.label == "SystemCalls.SyscallOldMmap" and args and type(args[0]) is int:
        return args[0]
    if op.label == "SystemCalls.Syscall" and len(args) == 2 and args[0] == SYS_MMAP \
            and type(args[1]) is int:
        return args[1]
    return None


def without_argument_access(w: World, block: int) -> None:
    """Clear the accessed bit in the PDEs and PTEs of the pages of an old_mmap
    argument block (before and after the call alike: the one change a failed
    old_mmap may make)."""
    space = w.sub.syscalls.current
    directory = None if space is None else space.page_dir
    if directory is None or not 0 <= block < 1 << 32:
        return
    for page in range(block >> PAGE_SHIFT, ((block + 23) >> PAGE_SHIFT) + 1):
        slot = (page >> 10) & 0x3FF
        table = directory.tables[slot]
        if table is not None:
            table.entries[page & 0x3FF] &= ~PTE_ACCESSED
            directory.tables_physical[slot] &= ~PTE_ACCESSED


# -- one checked call ------------------------------------------------------------------

class Defect(AssertionError):  # noqa: N818 - what the fuzzer finds is a defect
    """A call broke one of the fuzzer's rules."""


def status_of(target: Any) -> Any:
    for name in STATUS:
        if hasattr(target, name):
            return getattr(target, name)
    return None


def set_status(target: Any, value: Any) -> None:
    for name in STATUS:
        if hasattr(target, name):
            setattr(target, name, value)


def call(w: World, op: Operation, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Make one call and check it; raise Defect when it breaks a rule."""
    target = w.targets.get(op.owner) if op.method else None
    if op.method and target is None:
        return None
    holder = target if op.method else (
        args[0] if args and isinstance(args[0], AddressSpace) else None)
    if holder is not None:
        set_status(holder, UNSET)
    block = old_mmap_block(op, args)
    if block is not None:
        without_argument_access(w, block)
    before = deep(w.roots())
    shown = f"{op.label}{args!r}{kwargs or ''}"
    tracemalloc.start()  # around the call only: tracing slows everything else
    start = time.perf_counter()
    try:
        result = op.function(target, *args, **kwargs) if op.method else op.function(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - that is the defect looked for
        raise Defect(f"{shown} raised {type(exc).__name__}: {exc}") from exc
    finally:
        elapsed = time.perf_counter() - start
        grown = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    if elapsed > TIME_LIMIT:
        raise Defect(f"{shown} took {elapsed:.2f} s")
    if grown > MEMORY_LIMIT:
        raise Defect(f"{shown} allocated {grown >> 20} MB")
    status = None if holder is None else status_of(holder)
    if status == UNSET:
        raise Defect(f"{shown} returned {result!r} without setting its status")
    if status != 0:  # failed (None: nothing to hold a status, a non-space: refused)
        if block is not None:
            without_argument_access(w, block)
        if deep(w.roots()) != before:
            raise Defect(f"{shown} failed ({status!r}) but changed the state")
    return result


def arguments(op: Operation, pick: Callable[[list[Any]], Any],
              choose: Callable[[float], bool], w: World) -> tuple[tuple[Any, ...],
                                                               dict[str, Any]]:
    """Positional arguments for op's required parameters (and sometimes its optional
    ones): each a meaningful value or a hostile one."""
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for param in op.params:
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            if param.kind == param.VAR_POSITIONAL:
                args.extend(pick(w.values) for _ in range(int(choose(0.5)) * 2))
            continue
        if param.default is not param.empty and not choose(0.4):
            continue
        value = pick(list(HOSTILE)) if choose(0.35) else pick(w.values)
        if param.kind == param.KEYWORD_ONLY:
            kwargs[param.name] = value
        else:
            args.append(value)
    return tuple(args), kwargs
