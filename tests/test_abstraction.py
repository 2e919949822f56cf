"""proofs/abstractions/paging.py: the abstraction of a model is the state the spec's
invariants judge, so a good model satisfies every invariant and a corrupted
one violates the invariant that names the corruption."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import z3

from model.page_manager import PageManager
from model.page_tables import PageDirectory
from model.virtual_memory import VirtualMemoryManager
from model.x86_paging import encode_entry
from proofs.abstractions.paging import (
    AbstractionError,
    abstract,
    frame_val,
    snapshot,
    spec_args,
    to_z3,
    word_val,
)
from spec.abi import PAGE_SHIFT, PAGE_SIZE, PTE_USER, FrameOwner
from spec.catalogue import INVARIANTS, OPERATIONS_BY_NAME
from spec.state import DIRECTORY, FRAME, MAPPED, REAL_FIELDS, SLOT, WORD

Model = tuple[PageManager, VirtualMemoryManager, PageDirectory, PageDirectory]


def violated(pm: PageManager, vm: VirtualMemoryManager | None) -> set[str]:
    """The ids of the invariants z3 refutes on the model's abstraction."""
    state = abstract(pm, vm)
    found = set()
    for inv in INVARIANTS:
        solver = z3.Solver()
        solver.set("timeout", 60_000)
        solver.add(z3.Not(inv.holds(state)))
        result = solver.check()
        assert result != z3.unknown, f"z3 could not decide {inv.id}"
        if result == z3.sat:
            found.add(inv.id)
    return found


def booted() -> Model:
    """A 40-frame model in use: user and kernel pages, two kernel tables, a held
    frame mapped, data written across a page boundary, a clone."""
    pm = PageManager()
    vm = VirtualMemoryManager(pm)
    assert pm.InitializePhysicalMemory(0x2345, 40 * PAGE_SIZE)
    assert vm.InitializePaging()
    kernel = vm.kernel_directory
    assert kernel is not None
    d = vm.CreatePageDirectory()
    assert d is not None
    assert vm.AllocPage(d, 0x400000, False, True)
    assert vm.AllocPage(d, 0x401000, False, True)
    assert vm.AllocPage(d, 0x402000, False, False)
    assert vm.AllocPage(d, 0xC0000000, True, True)  # a kernel table, linked everywhere
    held = pm.RequestFrame(True, True)
    assert vm.MapVirtualAddress(kernel, 0xC0401000, held, True, True)  # another kernel table
    assert vm.WriteVirtualMemory(d, 0x400FFE, b"abcd", True) is True
    clone = vm.ClonePageDirectory(d)
    assert clone is not None
    assert vm.SwitchPageDirectory(clone)
    return pm, vm, d, clone


def value(term: z3.ExprRef) -> int | bool:
    simple = z3.simplify(term)
    if z3.is_bv_value(simple):
        return int(simple.as_long())
    return bool(z3.is_true(simple))


def test_every_stage_of_boot_satisfies_every_invariant() -> None:
    pm = PageManager()
    vm = VirtualMemoryManager(pm)
    assert violated(pm, vm) == set()
    assert pm.InitializePhysicalMemory(0x3000, 24 * PAGE_SIZE)
    assert violated(pm, vm) == set()
    assert vm.InitializePaging()
    assert violated(pm, vm) == set()
    assert violated(*booted()[:2]) == set()


def test_abstraction_reads_the_model() -> None:
    pm, vm, d, clone = booted()
    s = abstract(pm, vm)
    d_frame = d.physical_addr >> PAGE_SHIFT
    assert value(s.nframes) == 40
    assert value(s.used_count) == pm.frames.used
    assert value(s.paging) is True
    assert value(s.current_dir) == clone.physical_addr >> PAGE_SHIFT
    assert value(s.owner[frame_val(d_frame)] == DIRECTORY) is True
    assert value(s.used[frame_val(2)]) is True  # reserved: 0x2345 rounds up to 3 frames
    assert value(s.used[frame_val(39)]) is False
    # the kernel table at slot 768 is the same in every directory
    kernel_frame = vm.kernel_tables[768].physical_addr >> PAGE_SHIFT
    for directory in (d, clone):
        frame = frame_val(directory.physical_addr >> PAGE_SHIFT)
        pde = value(s.pde[frame][z3.BitVecVal(768, SLOT)])
        assert isinstance(pde, int) and pde >> PAGE_SHIFT == kernel_frame
    # the page at 0x400000 holds "ab" at its last two bytes, mapped user-writable
    table = d.tables[1]
    assert table is not None
    entry = table.entries[0]
    assert value(s.pte[frame_val(table.physical_addr >> PAGE_SHIFT)][z3.BitVecVal(0, SLOT)]) \
        == entry
    page = frame_val(entry >> PAGE_SHIFT)
    assert value(s.owner[page] == MAPPED) is True
    assert value(s.mem[page][z3.BitVecVal(0xFFE, 12)]) == ord("a")
    assert value(s.mem[page][z3.BitVecVal(0xFFD, 12)]) == 0
    # ghost witnesses: the PTE's back-pointer and the enumeration of used frames
    assert value(s.map_table[page]) == table.physical_addr >> PAGE_SHIFT
    assert value(s.unrank[s.rank[page]] == page) is True


def test_a_freed_frame_abstracts_to_all_zero_arrays() -> None:
    pm, vm, d, clone = booted()
    d_frame = d.physical_addr >> PAGE_SHIFT
    assert vm.DestroyPageDirectory(d)
    s = abstract(pm, vm)
    zero = z3.K(SLOT, z3.BitVecVal(0, WORD))
    assert value(s.pde[frame_val(d_frame)] == zero) is True
    assert violated(pm, vm) == set()


def test_a_four_gigabyte_model_is_abstracted_without_scanning_frame_by_frame() -> None:
    pm = PageManager()
    vm = VirtualMemoryManager(pm)
    assert pm.InitializePhysicalMemory(0x1000, 1 << 32)
    assert vm.InitializePaging()
    d = vm.CreatePageDirectory()
    assert d is not None and vm.AllocPage(d, 0x400000, False, True)
    start = time.process_time()
    snap = snapshot(pm, vm)
    assert time.process_time() - start < 1.0
    assert snap.nframes == 1 << 20 and len(snap.used) == 6
    assert violated(pm, vm) == set()


def _mapping_twice(m: Model) -> None:
    """A PTE of one directory maps a frame another directory's PTE maps."""
    _, _, d, clone = m
    d_table, c_table = d.tables[1], clone.tables[1]
    assert d_table is not None and c_table is not None
    c_table.entries[5] = d_table.entries[0]


def _used_without_owner(m: Model) -> None:
    pm = m[0]
    pm.frames.set(pm.frames.first_clear())


def _user_pte_in_kernel_table(m: Model) -> None:
    m[1].kernel_tables[768].entries[0] |= PTE_USER


def _used_count_off_by_one(m: Model) -> None:
    m[0].frames.used += 1


def _pte_to_free_frame(m: Model) -> None:
    pm, _, d, _ = m
    table = d.tables[1]
    assert table is not None
    table.entries[9] = encode_entry(pm.frames.first_clear(), True, True, True)


def _kernel_table_unlinked(m: Model) -> None:
    clone = m[3]
    clone.tables[768] = None
    clone.tables_physical[768] = 0


def _kernel_pde_user_everywhere(m: Model) -> None:
    for directory in m[1].directories.values():
        directory.tables_physical[768] |= PTE_USER


def _user_reaches_reserved_frame(m: Model) -> None:
    table = m[2].tables[1]
    assert table is not None
    table.entries[9] = encode_entry(1, True, True, True)  # frame 1 is reserved


def _bit_beyond_nframes(m: Model) -> None:
    pm = m[0]
    pm.frames.words[-1] |= 1 << 31  # frame 63 of a 40-frame memory
    pm.frames.used += 1


def _table_owned_as_page(m: Model) -> None:
    table = m[2].tables[1]
    assert table is not None
    m[0].owner[table.physical_addr >> PAGE_SHIFT] = FrameOwner.MAPPED


CORRUPTIONS: list[tuple[str, Callable[[Model], None], str]] = [
    ("a frame mapped by two PTEs", _mapping_twice, "VMM-1"),
    ("a used bit without an owner", _used_without_owner, "FRM-3"),
    ("a user PTE in a kernel table", _user_pte_in_kernel_table, "PROT-2"),
    ("used_count off by one", _used_count_off_by_one, "FRM-2"),
    ("a PTE mapping a free frame", _pte_to_free_frame, "VMM-2"),
    ("a directory missing a kernel table", _kernel_table_unlinked, "VMM-4"),
    ("user-accessible kernel PDEs", _kernel_pde_user_everywhere, "PROT-3"),
    ("user mode reaching a reserved frame", _user_reaches_reserved_frame, "PROT-1"),
    ("a bitmap bit beyond nframes", _bit_beyond_nframes, "FRM-1"),
    ("a page table owned as a mapped page", _table_owned_as_page, "FRM-3"),
]


@pytest.mark.parametrize(("corrupt", "expected"), [(c, e) for _, c, e in CORRUPTIONS],
                         ids=[name for name, _, _ in CORRUPTIONS])
def test_a_corrupted_model_violates_the_invariant_that_names_it(
        corrupt: Callable[[Model], None], expected: str) -> None:
    model = booted()
    corrupt(model)
    assert expected in violated(model[0], model[1])


def test_exactly_the_named_invariant_for_single_field_corruptions() -> None:
    for corrupt, expected in ((_used_count_off_by_one, {"FRM-2"}),
                              (_used_without_owner, {"FRM-3"}),
                              (_user_pte_in_kernel_table, {"PROT-2"}),
                              (_kernel_table_unlinked, {"VMM-4"})):
        model = booted()
        corrupt(model)
        assert violated(model[0], model[1]) == expected, corrupt.__name__


def test_inconsistent_directory_objects_have_no_abstraction() -> None:
    pm, vm, d, _ = booted()
    d.tables[1] = None  # the PDE still says present
    with pytest.raises(AbstractionError, match="slot 1"):
        abstract(pm, vm)


def test_python_values_become_spec_arguments() -> None:
    assert value(to_z3(PageDirectory(0x5000), FRAME)) == 5
    assert value(to_z3(0xFFFFFFFF, WORD)) == 0xFFFFFFFF
    assert z3.is_true(to_z3(True, z3.BoolSort()))
    with pytest.raises(ValueError):
        to_z3(1 << 32, WORD)
    with pytest.raises(TypeError):
        to_z3(1, z3.BoolSort())
    op = OPERATIONS_BY_NAME["AllocPage"]
    args = spec_args(op.params, {"dir": 3, "virtual_addr": 0x400000, "is_kernel": False,
                                 "is_writeable": True, "frame": 7, "table": 8})
    assert [str(a) for a in args] == ["3", "4194304", "False", "True", "7", "8"]
    assert value(word_val(7)) == 7
    assert set(REAL_FIELDS) >= {"used", "owner", "pde", "pte", "mem"}
