"""proofs/machines/paging.py: the refinement check passes on the model and
catches broken models by name.

A scripted :class:`Harness` run checks every operation (composites and
hostile arguments included) deterministically; the hypothesis machine runs
with a small budget on the real model and on broken variants.
"""

from __future__ import annotations

from typing import Any

import pytest

from model.page_tables import PageDirectory, PageTable
from model.virtual_memory import VirtualMemoryManager
from proofs.machines.checks import CheckError, InvariantViolationError, TransitionError
from proofs.machines.paging import PATCHABLE, obligations, run_machine
from proofs.machines.paging_harness import Harness
from proofs.machines.runner import patched_methods
from proofs.obligation import Kind
from spec.abi import PAGE_SHIFT, PAGE_SIZE, ErrorCode, FrameOwner

E = ErrorCode


def _unmap_keeps_frame(self: VirtualMemoryManager, dir: PageDirectory,
                       virtual_addr: int) -> bool:
    """Broken: clears the PTE but keeps the frame allocated (a leak)."""
    table = self._mapped_table(dir, virtual_addr)
    if table is None:
        return False
    index = (virtual_addr >> PAGE_SHIFT) & 0x3FF
    if self.pageman.owner[table.entries[index] >> PAGE_SHIFT] != FrameOwner.MAPPED:
        return self._fail(E.ERROR_ACCESS_DENIED)
    table.entries[index] = 0
    return self._ok(True)


_ORIGINAL_ACCESS = VirtualMemoryManager._access


def _access_ignoring_user_bit(self: VirtualMemoryManager, dir: PageDirectory, virtual_addr: int,
                              length: int, user_mode: bool, write: bool) -> Any:
    """Broken: walks the tables as if every access were made in kernel mode."""
    return _ORIGINAL_ACCESS(self, dir, virtual_addr, length, False, write)


def _new_table_unlinked(self: VirtualMemoryManager, dir: PageDirectory, slot: int) -> PageTable:
    """Broken: a new kernel table is linked into the requesting directory only."""
    table = PageTable(self.pageman.take_frame(FrameOwner.TABLE) << PAGE_SHIFT)
    dir.tables[slot] = table
    dir.tables_physical[slot] = table.physical_addr | (3 if slot == 0 or slot >= 768 else 7)
    if slot == 0 or slot >= 768:
        self.kernel_tables[slot] = table
    return table


def scripted(h: Harness) -> None:
    """Every operation, valid and hostile, on one small model."""
    assert h.CreatePageDirectory() is None  # NOT_READY
    assert h.RequestFrame(True, True) == 0xFFFFFFFF
    assert h.InitializePhysicalMemory(0x1800, 24 * PAGE_SIZE + 0x7FF) is True
    assert h.InitializePhysicalMemory(0, 1 << 32) is False  # already initialised
    assert h.GetFrameCount() == 24
    assert h.InitializePaging() is True
    kernel = h.vm.kernel_directory
    d = h.CreatePageDirectory()
    assert isinstance(d, PageDirectory)
    assert h.AllocPage(d, 0x400000, False, True) is True
    assert h.AllocPage(d, 0x400000, False, True) is False  # already mapped
    assert h.AllocPage(d, 0xC0000000, False, True) is False  # user page in kernel space
    assert h.AllocPage(kernel, 0x800000, True, True) is False  # kernel dir: kernel space only
    assert h.AllocFrame(d, 0xC0000000, True, False) is True  # a kernel table, shared
    held = h.RequestFrame(False, True)
    assert isinstance(held, int)
    assert h.MapVirtualAddress(d, 0x401000, held, False, False) is True
    assert h.FreeFrame(held) is False  # mapped: busy
    assert h.MapVirtualAddress(d, 0x402000, 1 << 32, False, True) is False
    assert h.AllocPage(d, 0x403000, 1, True) is False  # a non-bool flag
    assert h.WriteVirtualMemory(d, 0x400FFE, b"abcd", True) is not True  # 0x401000 read-only
    assert h.WriteVirtualMemory(d, 0x400FFE, b"ab", True) is True
    assert h.ReadVirtualMemory(d, 0x400FFE, 4, True) == b"ab\0\0"
    assert h.ExecuteVirtualMemory(d, 0xC0000000, True) is not None  # supervisor page: fault
    assert h.ReadVirtualMemory(kernel, 0x1000, 2, False) == b"\0\0"  # identity-mapped, reserved
    assert h.VirtualToPhysical(d, 0x400123) == (h.physical_of(d, 0x400000) | 0x123)
    clone = h.ClonePageDirectory(d)
    assert isinstance(clone, PageDirectory)
    assert h.ReadVirtualMemory(clone, 0x400FFE, 2, True) == b"ab"
    assert h.CopyPage(h.physical_of(d, 0x401000), h.physical_of(clone, 0x400000)) is True
    assert h.SwitchPageDirectory(clone) is True
    assert h.DestroyPageDirectory(clone) is False  # current: busy
    assert h.DestroyPageDirectory(kernel) is False  # access denied
    assert h.SwitchPageDirectory(d) is True
    assert h.DestroyPageDirectory(clone) is True
    assert h.DestroyPageDirectory(clone) is False  # destroyed: invalid handle
    reused = h.CreatePageDirectory()  # takes the clone's frame again
    assert isinstance(reused, PageDirectory)
    assert h.SwitchPageDirectory(clone) is False  # a stale handle to a reused frame
    assert h.UnmapVirtualAddress(d, 0x400000) is True
    assert h.FreePage(d, 0x400000) is False  # unmapped already
    assert h.UnreservePage(0x1000) is True
    assert h.UnreservePage(0x1000) is False
    again = h.RequestFrame(True, True)
    assert isinstance(again, int)
    assert h.FreeFrame(again) is True
    assert h.FreeFrame(again) is False  # double free
    assert isinstance(h.FirstFreeFrame(), int)
    while h.RequestFrame(True, True) != 0xFFFFFFFF:
        pass
    assert h.AllocPage(d, 0x800000, False, True) is False  # not enough memory
    assert h.ClonePageDirectory(d) is None


def test_every_operation_refines_the_spec_on_a_scripted_run() -> None:
    h = Harness()
    scripted(h)
    assert h.stats.steps > 50
    assert h.stats.outcomes["ClonePageDirectory", "ERROR_NOT_ENOUGH_MEMORY"] == 1


def test_a_broken_unmap_is_caught_in_the_scripted_run_as_a_leak() -> None:
    with patched_methods({"VirtualMemoryManager.UnmapVirtualAddress": _unmap_keeps_frame},
                         PATCHABLE), \
            pytest.raises(InvariantViolationError) as caught:
        scripted(Harness())
    assert "FRM-3" in caught.value.violated
    assert "UnmapVirtualAddress(dir=" in str(caught.value)
    assert VirtualMemoryManager.UnmapVirtualAddress is not _unmap_keeps_frame  # restored


def test_a_broken_access_is_caught_in_the_scripted_run_as_a_transition() -> None:
    with patched_methods({"VirtualMemoryManager._access": _access_ignoring_user_bit},
                         PATCHABLE), \
            pytest.raises(CheckError) as caught:
        scripted(Harness())
    assert isinstance(caught.value, TransitionError)
    assert caught.value.violated == ("transition",)
    assert "WriteVirtualMemory(dir=" in str(caught.value)  # user write to a read-only page


def test_the_machine_finds_no_counterexample_in_the_model() -> None:
    verdict = run_machine("quick", max_examples=4, steps=12)
    assert verdict.kind is Kind.NO_COUNTEREXAMPLE, verdict.detail
    assert verdict.examples is not None and verdict.examples >= 4
    assert verdict.summary == f"no counterexample in {verdict.examples} examples"


def test_a_kernel_table_linked_into_one_directory_breaks_vmm_4() -> None:
    h = Harness()
    assert h.InitializePhysicalMemory(0, 16 * PAGE_SIZE) is True
    assert h.InitializePaging() is True
    d = h.CreatePageDirectory()
    with patched_methods({"VirtualMemoryManager._new_table": _new_table_unlinked},
                         PATCHABLE), \
            pytest.raises(InvariantViolationError) as caught:
        h.AllocPage(d, 0xC0000000, True, True)
    assert "VMM-4" in caught.value.violated
    assert "post.pde differs" in str(caught.value)


@pytest.mark.parametrize(("patches", "expected"), [
    ({"VirtualMemoryManager.UnmapVirtualAddress": _unmap_keeps_frame}, {"FRM-3"}),
    ({"VirtualMemoryManager._access": _access_ignoring_user_bit}, {"transition", "PROT-1"}),
], ids=["unmap-keeps-frame", "access-ignores-user-bit"])
def test_the_machine_names_what_a_broken_model_violates(patches: dict[str, object],
                                                        expected: set[str]) -> None:
    verdict = run_machine("teeth", patches, shrink_seconds=3)
    assert verdict.kind is Kind.COUNTEREXAMPLE, verdict.detail
    assert expected & set(verdict.violated), (verdict.violated, verdict.detail)
    assert "state = PagingMachine()" in verdict.detail  # hypothesis' failing program
    for target, replacement in patches.items():
        assert getattr(VirtualMemoryManager, target.split(".")[1]) is not replacement


def test_the_obligation_is_registered() -> None:
    (obligation,) = obligations()
    assert (obligation.id, obligation.manager, obligation.operation, obligation.invariant) == (
        "paging_machine.refinement", "virtual_memory", "all", "refinement")
