"""Reachable states in which to look for counterexamples.

When z3 cannot decide an inductive step (unknown), the claim may still be
false; a counterexample is then searched for by running the step with
*symbolic arguments* from small states the model itself reached through its
API. A violation found this way is a reachable one, the strongest kind of
counterexample. Finding none proves nothing: the verdict stays unknown.
"""

from __future__ import annotations

import functools

from model.page_manager import PageManager
from model.page_tables import PageDirectory
from model.virtual_memory import VirtualMemoryManager
from proofs.abstractions.paging import abstract
from spec.state import State

MEM_START = 0x3000  # three reserved frames
MEM_END = 32 * 4096


def _booted() -> tuple[PageManager, VirtualMemoryManager]:
    pm = PageManager()
    vm = VirtualMemoryManager(pm)
    assert pm.InitializePhysicalMemory(MEM_START, MEM_END)
    return pm, vm


def _two_directories() -> tuple[PageManager, VirtualMemoryManager, PageDirectory,
                                PageDirectory]:
    """Paging on, and two new directories (the kernel directory current)."""
    pm, vm = _booted()
    assert vm.InitializePaging()
    first = vm.CreatePageDirectory()
    second = vm.CreatePageDirectory()
    assert first is not None and second is not None
    return pm, vm, first, second


def _populated() -> tuple[PageManager, VirtualMemoryManager]:
    """Two directories; user and kernel pages; a held frame; the kernel directory current."""
    pm, vm, first, second = _two_directories()
    assert vm.AllocPage(first, 0x00400000, False, True)
    assert vm.AllocPage(first, 0x00401000, False, False)
    assert vm.AllocPage(second, 0x00800000, False, True)
    assert vm.AllocPage(first, 0xC0000000, True, True)
    assert vm.WriteVirtualMemory(first, 0x00400010, b"memspec", True) is True
    assert pm.RequestFrame(False, True) != 0xFFFFFFFF
    return pm, vm


@functools.cache
def reference_states() -> tuple[tuple[str, State], ...]:
    """Named abstract states reached through the model's API."""
    states = [("after InitializePhysicalMemory(0x3000, 0x20000)", abstract(*_booted()))]
    pm, vm = _booted()
    assert vm.InitializePaging()
    states.append(("after InitializePaging", abstract(pm, vm)))
    states.append(("two directories with user and kernel pages and a held frame",
                   abstract(*_populated())))
    states.append((EMPTIED, abstract(*_emptied()[:2])))
    return tuple(states)


EMPTIED = "a directory with an emptied user table, and a new directory"


@functools.cache
def _emptied() -> tuple[PageManager, VirtualMemoryManager, int]:
    """Two directories with a user page each, the second's page then freed
    (its table stays, empty), and a third directory created; and the second
    directory's frame (one run, shared by the state and its pinned arguments)."""
    pm, vm, first, second = _two_directories()
    assert vm.AllocPage(first, 0x00400000, False, True)
    assert vm.AllocPage(second, 0x00800000, False, True)
    assert vm.FreePage(second, 0x00800000)
    assert vm.CreatePageDirectory() is not None
    return pm, vm, second.physical_addr >> 12


@functools.cache
def reference_pinned() -> dict[str, tuple[str, dict[str, int]]]:
    """Arguments a step's witness (proofs/inductive/vacuity.py) pins on a
    reference state, where the step's guard quantifies over the state:
    FreeTable needs a table with every entry clear."""
    return {"FreeTable": (EMPTIED, {"dir": _emptied()[2], "slot": 0x00800000 >> 22})}
