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


def _populated() -> tuple[PageManager, VirtualMemoryManager]:
    """Two directories; user and kernel pages; a held frame; the kernel directory current."""
    pm, vm = _booted()
    assert vm.InitializePaging()
    first = vm.CreatePageDirectory()
    second = vm.CreatePageDirectory()
    assert first is not None and second is not None
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
    return tuple(states)
