"""The catalogue: every invariant and every operation of the spec, by name.

Obligations are generated from this table (one per operation x invariant, as
Hyperkernel's ``main.py`` does), so an operation or invariant added here is
proved without further wiring.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import z3

from spec import (
    kernel_heap,
    memory_pool,
    memory_subsystem,
    page_manager,
    protection,
    virtual_memory,
)
from spec.state import ADDR, FRAME, PAGE, SLOT, WORD, Ref, State
from spec.step import Transition

BOOL = z3.BoolSort()
BYTE = z3.BitVecSort(8)
END = z3.BitVecSort(33)


@dataclass(frozen=True)
class Invariant:
    id: str
    manager: str
    holds: Callable[[State], Ref]


@dataclass(frozen=True)
class Operation:
    """A spec operation: the seed name, its manager, and its parameters' sorts.

    ``parts`` names the steps a composite operation is made of (AllocPage =
    LinkTable then PlaceFrame; Clone; Destroy); the composite preserves an
    invariant because each of its steps does, and each step is proved.
    """

    name: str
    manager: str
    transition: Callable[..., Transition[Any]]
    params: tuple[tuple[str, Ref], ...]
    parts: tuple[str, ...] = ()
    #: A step of a composite operation, not an API call of its own.
    internal: bool = False


INVARIANTS = tuple(
    Invariant(name, manager, holds)
    for manager, table in (("page_manager", page_manager.INVARIANTS),
                           ("virtual_memory", virtual_memory.INVARIANTS),
                           ("protection", protection.INVARIANTS))
    for name, holds in table.items())


def invariant(s: State) -> Ref:
    """Inv: the conjunction of every state invariant."""
    return z3.And([inv.holds(s) for inv in INVARIANTS])


_PM, _VM = "page_manager", "virtual_memory"
_pm, _vm = page_manager, virtual_memory
ADDRESS, PAGE_FLAGS = ("virtual_addr", WORD), (("is_kernel", BOOL), ("is_writeable", BOOL))

OPERATIONS = (
    Operation("InitializePhysicalMemory", _PM, _pm.InitializePhysicalMemory,
              (("mem_start", WORD), ("mem_end", END))),
    Operation("AllocFrame", _PM, _vm.AllocPage,
              (("dir", FRAME), ADDRESS, *PAGE_FLAGS, ("frame", FRAME), ("table", FRAME)),
              parts=("LinkKernelTable", "LinkUserTable", "PlaceKernelFrame", "PlaceUserFrame")),
    Operation("FreeFrame", _PM, _pm.FreeFrame, (("frame_addr", WORD),)),
    Operation("FirstFreeFrame", _PM, _pm.FirstFreeFrame, (("result", FRAME),)),
    Operation("RequestFrame", _PM, _pm.RequestFrame, (("frame", FRAME),)),
    Operation("UnreservePage", _PM, _pm.UnreservePage, (("virtual_address", WORD),)),
    Operation("CopyPage", _PM, _pm.CopyPage, (("src", WORD), ("dst", WORD))),
    Operation("GetFrameCount", _PM, _pm.GetFrameCount, ()),
    Operation("InitializePaging", _VM, _vm.InitializePaging,
              (("kernel_dir", FRAME), ("identity_table", FRAME))),
    Operation("CreatePageDirectory", _VM, _vm.CreatePageDirectory, (("new_dir", FRAME),)),
    Operation("FreeTable", _VM, _vm.FreeTable, (("dir", FRAME), ("slot", SLOT)), internal=True),
    Operation("FreeDirectory", _VM, _vm.FreeDirectory, (("dir", FRAME),), internal=True),
    Operation("DestroyPageDirectory", _VM, _vm.FreeDirectory, (),
              parts=("UnmapVirtualAddress", "FreeTable", "FreeDirectory")),
    Operation("ClonePageDirectory", _VM, _vm.CreatePageDirectory, (),
              parts=("CreatePageDirectory", "LinkUserTable", "PlaceUserFrame", "CopyPage")),
    Operation("SwitchPageDirectory", _VM, _vm.SwitchPageDirectory, (("new_dir", FRAME),)),
    Operation("MapVirtualAddress", _VM, _vm.MapVirtualAddress,
              (("dir", FRAME), ADDRESS, ("physical_addr", WORD), *PAGE_FLAGS, ("table", FRAME)),
              parts=("LinkKernelTable", "LinkUserTable", "PlaceKernelHeld", "PlaceUserHeld")),
    Operation("UnmapVirtualAddress", _VM, _vm.UnmapVirtualAddress, (("dir", FRAME), ADDRESS)),
    Operation("VirtualToPhysical", _VM, _vm.VirtualToPhysical, (("dir", FRAME), ADDRESS)),
    Operation("AllocPage", _VM, _vm.AllocPage,
              (("dir", FRAME), ADDRESS, *PAGE_FLAGS, ("frame", FRAME), ("table", FRAME)),
              parts=("LinkKernelTable", "LinkUserTable", "PlaceKernelFrame", "PlaceUserFrame")),
    Operation("LinkKernelTable", _VM, _vm.LinkKernelTable,
              (("dir", FRAME), ("slot", SLOT), ("table", FRAME)), internal=True),
    Operation("LinkUserTable", _VM, _vm.LinkUserTable,
              (("dir", FRAME), ("slot", SLOT), ("table", FRAME)), internal=True),
    Operation("PlaceFrame", _VM, _vm.PlaceFrame,
              (("dir", FRAME), ADDRESS, *PAGE_FLAGS, ("frame", FRAME)), internal=True),
    Operation("PlaceKernelFrame", _VM, _vm.in_space(_vm.PlaceFrame, kernel=True),
              (("dir", FRAME), ADDRESS, *PAGE_FLAGS, ("frame", FRAME)), internal=True),
    Operation("PlaceUserFrame", _VM, _vm.in_space(_vm.PlaceFrame, kernel=False),
              (("dir", FRAME), ADDRESS, *PAGE_FLAGS, ("frame", FRAME)), internal=True),
    Operation("PlaceKernelHeld", _VM, _vm.in_space(_vm.PlaceHeld, kernel=True),
              (("dir", FRAME), ADDRESS, ("physical_addr", WORD), *PAGE_FLAGS), internal=True),
    Operation("PlaceUserHeld", _VM, _vm.in_space(_vm.PlaceHeld, kernel=False),
              (("dir", FRAME), ADDRESS, ("physical_addr", WORD), *PAGE_FLAGS), internal=True),
    Operation("PlaceHeld", _VM, _vm.PlaceHeld,
              (("dir", FRAME), ADDRESS, ("physical_addr", WORD), *PAGE_FLAGS), internal=True),
    Operation("FreePage", _VM, _vm.UnmapVirtualAddress, (("dir", FRAME), ADDRESS)),
    Operation("Access", _VM, _vm.Access,
              (("dir", FRAME), ADDRESS, ("user_mode", BOOL), ("write", BOOL), ("value", BYTE))),
)

OPERATIONS_BY_NAME = {op.name: op for op in OPERATIONS}


# -- the kernel heap (spec/kernel_heap.py) --------------------------------------

_KH = "kernel_heap"
_kh = kernel_heap
HEADER, POSITION = ("h", ADDR), ("q", ADDR)
FRAMES = ("frames", z3.ArraySort(PAGE, FRAME))
NEW_END = ("new_end", ADDR)

HEAP_OPERATIONS = (
    Operation("Create", _KH, _kh.Create,
              (("start", ADDR), ("end", ADDR), ("max", ADDR), ("supervisor", BOOL),
               ("readonly", BOOL), ("capacity", ADDR), ("data_start", ADDR), ("floor", ADDR),
               FRAMES)),
    Operation("Alloc", _KH, _kh.Take, (),
              parts=("ExpandHole", "ExpandNewHole", "Take", "CarveHead", "CarveTail")),
    Operation("Free", _KH, _kh.Release, (),
              parts=("AbsorbRight", "AbsorbLeft", "Release", "ShrinkHole", "DropHole")),
    Operation("FindSmallestHole", _KH, _kh.FindSmallestHole,
              (("size", ADDR), ("page_align", BOOL), ("result", ADDR), ("x", ADDR))),
    Operation("Expand", _KH, _kh.ExpandHole, (), parts=("ExpandHole", "ExpandNewHole")),
    Operation("Contract", _KH, _kh.ShrinkHole, (), parts=("ShrinkHole", "DropHole")),
    Operation("Destroy", _KH, _kh.Destroy, ()),
    Operation("Take", _KH, _kh.Take, (HEADER, ("page_align", BOOL)), internal=True),
    Operation("CarveHead", _KH, _kh.CarveHead, (HEADER, ("x", ADDR), POSITION), internal=True),
    Operation("CarveTail", _KH, _kh.CarveTail, (HEADER, ("size", ADDR), POSITION),
              internal=True),
    Operation("AbsorbRight", _KH, _kh.AbsorbRight, (HEADER,), internal=True),
    Operation("AbsorbLeft", _KH, _kh.AbsorbLeft, (HEADER, POSITION), internal=True),
    Operation("Release", _KH, _kh.Release, (HEADER, POSITION), internal=True),
    Operation("ExpandHole", _KH, _kh.ExpandHole, (NEW_END, FRAMES, POSITION), internal=True),
    Operation("ExpandNewHole", _KH, _kh.ExpandNewHole, (NEW_END, FRAMES, POSITION),
              internal=True),
    Operation("ShrinkHole", _KH, _kh.ShrinkHole, (NEW_END, POSITION), internal=True),
    Operation("DropHole", _KH, _kh.DropHole, (NEW_END,), internal=True),
)


# -- the memory pool (spec/memory_pool.py) ----------------------------------------

_MP = "memory_pool"

POOL_OPERATIONS = (
    Operation("Create", _MP, memory_pool.Create,
              (("arena", WORD), ("stride", WORD), ("max_blocks", WORD))),
    Operation("AllocBlock", _MP, memory_pool.AllocBlock, ()),
    Operation("FreeBlock", _MP, memory_pool.FreeBlock, (("block_addr", WORD), ("block", WORD))),
    Operation("Destroy", _MP, memory_pool.Destroy, ()),
)


# -- the memory subsystem and the unified interface (spec/memory_subsystem.py) -----

_MS = "memory_subsystem"
_ms = memory_subsystem
FRAME_KIND = (("frame", ADDR), ("kind", ADDR))
_TAKE, _GIVE = ("TakeFrame",), ("ReleaseFrame",)

SYSTEM_OPERATIONS = (
    Operation("InitializeMemorySubsystem", _MS, _ms.InitializeMemorySubsystem,
              (("nframes", ADDR), ("reserved_end", ADDR))),
    Operation("TakeFrame", _MS, _ms.TakeFrame, FRAME_KIND, internal=True),
    Operation("ReleaseFrame", _MS, _ms.ReleaseFrame, FRAME_KIND, internal=True),
    *(Operation(name, _MS, _ms.TakeFrame, (), parts=_TAKE) for name in (
        "CreateKernelPageDirectory", "CreateKernelHeap", "AllocateKernelStack",
        "AllocateMemory", "AllocateAlignedMemory", "GetFreePage", "AllocateKernelMemory",
        "AllocateKernelMemoryAligned", "AllocateKernelPhysicalMemory",
        "AllocateKernelAlignedPhysical")),
    # a frame the caller holds (RequestFrame) changes hands: released, then taken
    Operation("MapPage", _MS, _ms.TakeFrame, (), parts=(*_GIVE, *_TAKE)),
    *(Operation(name, _MS, _ms.ReleaseFrame, (), parts=_GIVE) for name in (
        "FreeKernelStack", "FreeMemory", "FreeKernelMemory", "ReleasePage", "UnmapPage")),
    Operation("EnablePaging", _MS, _ms.EnablePaging, ()),
    # statistics: the unified interface's GetTotal/Free/UsedPhysicalMemory report the same
    Operation("GetTotalMemory", _MS, _ms.GetTotalMemory, ()),
    Operation("GetUsedMemory", _MS, _ms.GetUsedMemory, ()),
    Operation("GetAvailableMemory", _MS, _ms.GetAvailableMemory, ()),
)
