"""The kernel's side of the model world: PageManager, the kernel directory, KernelHeap.

The managers of PROTOCOL.md's "Operations" section, served by the world's
PageManager and VirtualMemoryManager and a KernelHeap on them, with the set-up
every kernel-family sequence starts with. Arguments are passed to the model as
they arrive: a wrong type or a value out of range is the model's to refuse (its
documented ERROR_INVALID_PARAMETER). Observations never change the state:
ReadBytes and the heap walk read frames without setting accessed bits, and
PageTables clears the accessed and dirty bits (the hardware's business, not the
design's).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from model.kernel_heap import KernelHeap
from model.page_manager import PageManager
from model.page_tables import PageFault
from model.virtual_memory import VirtualMemoryManager
from proofs.abstractions.heap_walk import raw_blocks, read_virtual
from proofs.oracle.managers import Calls, Manager, Message, WorldPart
from spec.abi import (
    NO_FRAME,
    PAGE_SHIFT,
    PAGE_SIZE,
    PTE_ACCESSED,
    PTE_DIRTY,
    PTE_PRESENT,
    ErrorCode,
)

#: The kernel's managers (PROTOCOL.md, "Operations").
MANAGERS = (
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
#: The world every sequence starts from (PROTOCOL.md, "Operations").
MEM_START, MEM_END = 0x8000, 0x30000
HEAP_START, HEAP_END, HEAP_MAX = 0xC0000000, 0xC0002000, 0xC0020000
HEAP_INDEX_SIZE, HEAP_MIN_SIZE = 16, 0x1000
#: The same values as a configuration (PROTOCOL.md, "Configuration").
DEFAULT_CONFIG: Mapping[str, Any] = {
    "mem_start": MEM_START, "mem_end": MEM_END, "heap_start": HEAP_START, "heap_end": HEAP_END,
    "heap_max": HEAP_MAX, "index_size": HEAP_INDEX_SIZE, "min_size": HEAP_MIN_SIZE,
    "supervisor": True, "readonly": False}
READ_LIMIT = PAGE_SIZE
_AD = PTE_ACCESSED | PTE_DIRTY


def setup_calls(managers: Iterator[str] | tuple[str, ...],
                config: Mapping[str, Any] | None = None) -> list[tuple[str, str, Message]]:
    """The set-up calls of a sequence, for the declared managers, with the
    configuration's values (:mod:`proofs.oracle.config`; None: the defaults)."""
    declared = set(managers)
    c = dict(DEFAULT_CONFIG if config is None else config)
    calls: list[tuple[str, str, Message]] = [
        ("PageManager", "InitializePhysicalMemory",
         {"mem_start": c["mem_start"], "mem_end": c["mem_end"]})]
    if "KernelHeap" in declared or "VirtualMemoryManager" in declared:
        calls.append(("VirtualMemoryManager", "InitializePaging", {}))
    if "KernelHeap" in declared:
        calls.append(("KernelHeap", "Create", {
            "start": c["heap_start"], "end": c["heap_end"], "max": c["heap_max"],
            "supervisor": c["supervisor"], "readonly": c["readonly"],
            "index_size": c["index_size"], "min_size": c["min_size"]}))
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


class KernelPart:
    """The kernel's managers: the world's PageManager and kernel directory, and a
    KernelHeap on them."""

    def __init__(self, pm: PageManager, vmm: VirtualMemoryManager,
                 parts: Sequence[WorldPart] = ()) -> None:
        self.pm, self.vmm = pm, vmm
        self.heap = KernelHeap(vmm)

    def calls(self) -> Calls:
        errors: dict[str, Callable[[], int]] = {
            "PageManager": lambda: self.pm.last_error,
            "VirtualMemoryManager": lambda: self.vmm.last_error,
            "KernelHeap": lambda: self.heap.last_error}
        special: dict[tuple[str, str], Callable[..., Any]] = {
            ("VirtualMemoryManager", "WriteVirtualMemory"): self._write,
            ("VirtualMemoryManager", "InitializePaging"): self.vmm.InitializePaging,
            ("KernelHeap", "Create"): self._create}
        targets: dict[str, object] = {"PageManager": self.pm, "KernelHeap": self.heap}
        return {(m.name, op): (special.get((m.name, op)) or getattr(targets[m.name], op),
                               errors[m.name])
                for m in MANAGERS for op in m.operations}

    def observers(self) -> Mapping[str, Callable[..., Message]]:
        return {name: getattr(self, f"_observe_{name}") for m in MANAGERS
                for name in m.observations}

    def _create(self, start: int, end: int, max: int, supervisor: bool, readonly: bool,
                index_size: int, min_size: int) -> bool:
        return self.heap.Create(start, end, max, supervisor, readonly, index_size=index_size,
                                min_size=min_size) is not None

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
