"""The model's side of the oracle protocol: one world, requests in, replies out.

A :class:`ModelWorld` is the reference implementation of PROTOCOL.md: a
PageManager, its VirtualMemoryManager (the kernel directory) and a KernelHeap,
driven by protocol messages. Strict mode compares an implementation's replies
with these; :mod:`proofs.oracle.model_shim` serves them over stdin/stdout, so
the model can be judged by the oracle like any implementation.

Arguments are passed to the model as they arrive: a wrong type or a value out
of range is the model's to refuse (its documented ERROR_INVALID_PARAMETER).
Observations never change the state: ReadBytes and the heap walk read frames
without setting accessed bits, and PageTables clears the accessed and dirty
bits (the hardware's business, not the design's).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from model.errors import ErrorCode
from model.kernel_heap import KernelHeap
from model.page_manager import NO_FRAME, PageManager
from model.virtual_memory import PageFault, VirtualMemoryManager
from model.x86_paging import PAGE_SHIFT, PAGE_SIZE, PTE_ACCESSED, PTE_DIRTY, PTE_PRESENT
from proofs.heap_walk import raw_blocks, read_virtual
from proofs.oracle import dos_world, shared_world, user_world
from proofs.oracle.managers import Manager, Message, PartFactory, Result, WorldPart

PROTOCOL_VERSION = 1
#: The kernel's managers (PROTOCOL.md, "Operations").
KERNEL_MANAGERS = (
    Manager("PageManager", (), {
        "InitializePhysicalMemory": ("mem_start", "mem_end"),
        "RequestFrame": ("is_kernel", "is_writeable"),
        "FreeFrame": ("frame_addr",),
        "FirstFreeFrame": (),
        "GetFrameCount": (),
        "GetFreeFrameCount": (),
        "GetUsedFrameCount": (),
    }, ("FrameCounts", "FrameBitmap"), frozenset({"InitializePhysicalMemory", "FreeFrame"})),
    Manager("VirtualMemoryManager", ("PageManager",), {
        "InitializePaging": (),
        "WriteVirtualMemory": ("virtual_addr", "data"),
    }, ("PageTables", "VirtualToPhysical", "ReadBytes"),
        frozenset({"InitializePaging", "WriteVirtualMemory"})),
    Manager("KernelHeap", ("PageManager", "VirtualMemoryManager"), {
        "Create": ("start", "end", "max", "supervisor", "readonly", "index_size", "min_size"),
        "Alloc": ("size", "page_align"),
        "Free": ("p",),
        "Expand": ("new_size",),
        "Contract": ("new_size",),
        "FindSmallestHole": ("size", "page_align"),
        "GetBlockSize": ("p",),
    }, ("HeapWalk", "HoleIndex"), frozenset({"Create", "Free", "Expand"})),
)
#: Every manager of the protocol, in the order hellos list them.
ALL_MANAGERS: tuple[Manager, ...] = (*KERNEL_MANAGERS, *dos_world.MANAGERS,
                                     *user_world.MANAGERS, *shared_world.MANAGERS)
MANAGERS = tuple(m.name for m in ALL_MANAGERS)
OBSERVATIONS = tuple(o for m in ALL_MANAGERS for o in m.observations)
#: The managers each manager needs (the heap maps its pages through the VMM).
NEEDS = {m.name: m.needs for m in ALL_MANAGERS}
#: The observations that belong to each manager.
OBSERVATIONS_OF = {m.name: m.observations for m in ALL_MANAGERS}
#: Every operation's parameters, in the seed's order.
OPERATIONS: dict[str, dict[str, tuple[str, ...]]] = {
    m.name: dict(m.operations) for m in ALL_MANAGERS}
#: The operations whose result is a JSON boolean (the others return a number).
BOOL_RESULTS = frozenset((m.name, op) for m in ALL_MANAGERS for op in m.bool_results)
#: The world every sequence starts from (PROTOCOL.md, "Operations").
MEM_START, MEM_END = 0x8000, 0x30000
HEAP_START, HEAP_END, HEAP_MAX = 0xC0000000, 0xC0002000, 0xC0020000
HEAP_INDEX_SIZE, HEAP_MIN_SIZE = 16, 0x1000
READ_LIMIT = PAGE_SIZE
_AD = PTE_ACCESSED | PTE_DIRTY


def setup_calls(managers: Iterator[str] | tuple[str, ...]) -> list[tuple[str, str, Message]]:
    """The set-up calls of a sequence, for the declared managers."""
    declared = set(managers)
    calls: list[tuple[str, str, Message]] = [
        ("PageManager", "InitializePhysicalMemory", {"mem_start": MEM_START, "mem_end": MEM_END})]
    if "KernelHeap" in declared or "VirtualMemoryManager" in declared:
        calls.append(("VirtualMemoryManager", "InitializePaging", {}))
    if "KernelHeap" in declared:
        calls.append(("KernelHeap", "Create", {
            "start": HEAP_START, "end": HEAP_END, "max": HEAP_MAX, "supervisor": True,
            "readonly": False, "index_size": HEAP_INDEX_SIZE, "min_size": HEAP_MIN_SIZE}))
    return calls


def runs(values: list[int]) -> list[list[int]]:
    """Ascending values as [first, count] runs."""
    out: list[list[int]] = []
    for v in values:
        if out and out[-1][0] + out[-1][1] == v:
            out[-1][1] += 1
        else:
            out.append([v, 1])
    return out


#: The model behind the managers past the kernel's, made from the world's
#: PageManager and VirtualMemoryManager.
PARTS: tuple[PartFactory, ...] = (*dos_world.PARTS, *user_world.PARTS, *shared_world.PARTS)


class ModelWorld:
    """The model behind the protocol: PageManager, kernel directory, KernelHeap,
    and the parts behind the other managers (:data:`PARTS`)."""

    def __init__(self) -> None:
        self.pm = PageManager()
        self.vmm = VirtualMemoryManager(self.pm)
        self.heap = KernelHeap(self.vmm)
        errors = {"PageManager": self._pm_error, "VirtualMemoryManager": self._vmm_error,
                  "KernelHeap": self._heap_error}
        special: dict[tuple[str, str], Callable[..., Any]] = {
            ("VirtualMemoryManager", "WriteVirtualMemory"): self._write,
            ("VirtualMemoryManager", "InitializePaging"): self.vmm.InitializePaging,
            ("KernelHeap", "Create"): self._create}
        targets: dict[str, object] = {"PageManager": self.pm, "KernelHeap": self.heap}
        #: (manager, op) -> (function, its error, parameters, their names as a set)
        self._calls: dict[tuple[str, str], tuple[Callable[..., Any], Callable[[], int],
                                                 tuple[str, ...], frozenset[str]]] = {
            (m.name, op): (special.get((m.name, op)) or getattr(targets[m.name], op),
                           errors[m.name], params, frozenset(params))
            for m in KERNEL_MANAGERS for op, params in m.operations.items()}
        self._observers: dict[str, Callable[..., Message]] = {
            name: getattr(self, f"_observe_{name}") for m in KERNEL_MANAGERS
            for name in m.observations}
        #: The parts behind the other managers (DOS, processes), sharing pm and vmm.
        self.parts: list[WorldPart] = []
        for make in PARTS:
            self.parts.append(make(self.pm, self.vmm, tuple(self.parts)))
        for part in self.parts:
            for key, (fn, error) in part.calls().items():
                params = OPERATIONS[key[0]][key[1]]
                self._calls[key] = (fn, error, params, frozenset(params))
            self._observers.update(part.observers())
        #: Each observation's argument names.
        self._observer_args = {name: frozenset(inspect.signature(observer).parameters)
                               for name, observer in self._observers.items()}

    def _pm_error(self) -> ErrorCode:
        return self.pm.last_error

    def _vmm_error(self) -> ErrorCode:
        return self.vmm.last_error

    def _heap_error(self) -> ErrorCode:
        return self.heap.last_error

    # -- requests ------------------------------------------------------------------

    def handle(self, message: Mapping[str, Any]) -> Message:
        """The reply to one request or observation (PROTOCOL.md)."""
        ident = message["id"]
        if "observe" in message:
            return {"id": ident, "observed": self.observe(message["observe"], message["args"])}
        result, error = self.call(message["manager"], message["op"], message["args"])
        return {"id": ident, "result": result, "error": error}

    def call(self, manager: str, op: str, args: Mapping[str, Any]) -> tuple[Result, int]:
        """Run one operation: (result as the protocol encodes it, error code)."""
        entry = self._calls.get((manager, op))
        if entry is None or args.keys() != entry[3]:
            return False, int(ErrorCode.ERROR_INVALID_PARAMETER)
        fn, error, params, _ = entry
        result = fn(*[args[p] for p in params])
        if result is None:
            result = False
        elif isinstance(result, KernelHeap):
            result = True
        return result, int(error())

    def _create(self, start: int, end: int, max: int, supervisor: bool, readonly: bool,
                index_size: int, min_size: int) -> KernelHeap | None:
        return self.heap.Create(start, end, max, supervisor, readonly, index_size=index_size,
                                min_size=min_size)

    def _write(self, virtual_addr: int, data: str) -> bool:
        """WriteVirtualMemory in the kernel directory with supervisor access."""
        directory = self.vmm.kernel_directory
        try:
            payload = bytes.fromhex(data) if isinstance(data, str) else None
        except ValueError:
            payload = None
        if directory is None or payload is None:
            self.vmm.last_error = (ErrorCode.ERROR_NOT_READY if directory is None
                                   else ErrorCode.ERROR_INVALID_PARAMETER)
            return False
        written = self.vmm.WriteVirtualMemory(directory, virtual_addr, payload, False)
        return written is True and not isinstance(written, PageFault)

    # -- observations ----------------------------------------------------------------

    def observe(self, name: str, args: Mapping[str, Any]) -> Message:
        """An observation; ``{}`` for one PROTOCOL.md does not define (an unknown
        name, other argument names): the oracle never asks those, an implementer
        piping requests to the model shim sees that it was not understood."""
        observer = self._observers.get(name)
        if observer is None or args.keys() != self._observer_args[name]:
            return {}
        return observer(**args)

    def _observe_FrameCounts(self) -> Message:
        used = self.pm.frames.used
        return {"frames": self.pm.nframes, "free": self.pm.nframes - used, "used": used}

    def _observe_FrameBitmap(self) -> Message:
        return {"used": runs(list(self.pm.used_frames()))}

    def _observe_PageTables(self) -> Message:
        directory = self.vmm.kernel_directory
        if directory is None:
            return {"directory": 0, "pdes": [], "ptes": []}
        pdes: list[list[int]] = []
        ptes: list[list[int]] = []
        for slot, pde in enumerate(directory.tables_physical):
            table = directory.tables[slot]
            if not pde & PTE_PRESENT or table is None:
                continue
            pdes.append([slot, pde & ~_AD])
            ptes.extend([slot, index, pte & ~_AD] for index, pte in enumerate(table.entries)
                        if pte)
        return {"directory": directory.physical_addr >> PAGE_SHIFT, "pdes": pdes, "ptes": ptes}

    def _entry(self, address: int) -> int:
        directory = self.vmm.kernel_directory
        if directory is None or type(address) is not int or not 0 <= address < 1 << 32:
            return 0
        table = directory.tables[address >> 22]
        return 0 if table is None else table.entries[(address >> PAGE_SHIFT) & 0x3FF]

    def _observe_VirtualToPhysical(self, virtual_addr: int) -> Message:
        entry = self._entry(virtual_addr)
        if not entry & PTE_PRESENT:
            return {"physical": NO_FRAME}
        return {"physical": (entry & 0xFFFFF000) | (virtual_addr & 0xFFF)}

    def _observe_ReadBytes(self, virtual_addr: int, length: int) -> Message:
        if not (type(length) is int and type(virtual_addr) is int and 0 <= length <= READ_LIMIT
                and 0 <= virtual_addr <= (1 << 32) - length):
            return {"data": None}
        data = read_virtual(self.pm, self.vmm.kernel_directory, virtual_addr, length)
        return {"data": None if data is None else data.hex()}

    def _observe_HeapWalk(self) -> Message:
        heap = self.heap
        return {
            "created": heap.created, "start": heap.start_address, "end": heap.end_address,
            "max": heap.max_address, "data_start": heap.data_start,
            "index_size": heap.index_size, "min_size": heap.min_size,
            "supervisor": heap.supervisor, "readonly": heap.readonly,
            "blocks": [{"header": b.header, "magic": b.magic, "hole": b.hole, "size": b.size,
                        "footer_magic": b.fmagic, "footer_header": b.back}
                       for b in raw_blocks(heap)]}

    def _observe_HoleIndex(self) -> Message:
        return {"holes": [[size, header] for size, header in self.heap.holes()]}
