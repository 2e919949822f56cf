"""The abstraction function: a model (PageManager + VirtualMemoryManager) as a
concrete :class:`spec.state.State`.

DESIGN.md, "Three layers": an invariant is written once, in z3, over a
symbolic state, and is checked on a model by instantiating it with the
model's abstraction. :func:`abstract` builds that abstraction out of concrete
z3 terms (``K`` defaults and ``Store`` chains), so every query about it is a
query about one state.

The abstraction goes through a plain-Python :class:`Snapshot` first. The
snapshot is what the paging machine compares between steps (two equal
snapshots have equal abstractions), reads implementation choices from, and
prints in counterexamples; :func:`to_state` turns it into z3 terms.

Cost: proportional to the frames in use and the live paging structures
(1024 entries per directory and table), never to the size of physical memory
except through one C-level scan of the owner bytes and of the bitmap words
(1,048,576 bytes and 32,768 words for a 4 GiB model).

The model objects must be consistent for the abstraction to exist: a
directory's ``tables`` and ``tables_physical`` must agree slot by slot, and no
two distinct table objects may occupy one frame. When they do not,
:class:`AbstractionError` (an AssertionError naming ``abstraction``) is
raised: the state has no abstract counterpart, which is itself a model bug.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from itertools import compress

import z3

from model.page_manager import PageManager
from model.page_tables import PageDirectory, PageTable
from model.virtual_memory import VirtualMemoryManager
from model.x86_paging import is_kernel_slot
from spec.abi import ENTRIES_PER_TABLE, PAGE_SHIFT, PTE_PRESENT
from spec.state import (
    BYTE,
    ENTRY,
    FRAME,
    OFFSET,
    OWNER,
    SLOT,
    WORD,
    Ref,
    State,
)

#: The 33-bit sort of InitializePhysicalMemory's mem_end (2**32 is a valid end).
END = z3.BitVecSort(33)

_NONZERO = re.compile(rb"[^\x00]")


class AbstractionError(AssertionError):
    """The model's objects are inconsistent: the state has no abstraction."""

    violated = ("abstraction",)


# -- the Python snapshot ---------------------------------------------------------

Entries = dict[int, int]  # slot/index/offset -> nonzero value


@dataclass(frozen=True)
class Snapshot:
    """Everything the abstraction reads from a model, as plain Python values.

    Entry maps hold only the nonzero entries; ``pde`` has one map per live
    directory, ``pte`` one per live table (kernel tables and user tables
    reachable from a live directory), ``mem`` one per frame with stored
    contents (the nonzero bytes).
    """

    nframes: int
    used: tuple[int, ...]  # used frames (bitmap), ascending
    used_count: int
    owner: dict[int, int]
    pde: dict[int, Entries]
    pte: dict[int, Entries]
    kernel_dir: int
    current_dir: int
    paging: bool
    mem: dict[int, Entries]
    kernel_tables: frozenset[int] = frozenset()

    # -- derived views (ghost witnesses and the machine's bookkeeping) -----

    def mappings(self) -> Iterable[tuple[int, int, int]]:
        """(table, index, frame) of every present PTE of every live table, in order."""
        for table in sorted(self.pte):
            entries = self.pte[table]
            for index in sorted(entries):
                entry = entries[index]
                if entry & PTE_PRESENT:
                    yield table, index, entry >> PAGE_SHIFT

    def links(self) -> Iterable[tuple[int, int, int]]:
        """(directory, slot, table) of every present PDE of every live directory, in order."""
        for directory in sorted(self.pde):
            entries = self.pde[directory]
            for slot in sorted(entries):
                entry = entries[slot]
                if entry & PTE_PRESENT:
                    yield directory, slot, entry >> PAGE_SHIFT

    def user_pages(self, directory: int) -> list[tuple[int, int, int]]:
        """(slot, index, pte) of every present PTE in a user table of directory,
        in (slot, index) order: what ClonePageDirectory copies and
        DestroyPageDirectory unmaps."""
        pages = []
        for slot, table in self.user_tables(directory):
            entries = self.pte.get(table, {})
            for index in sorted(entries):
                if entries[index] & PTE_PRESENT:
                    pages.append((slot, index, entries[index]))
        return pages

    def user_tables(self, directory: int) -> list[tuple[int, int]]:
        """(slot, table) of every present user-slot PDE of directory, in slot order."""
        entries = self.pde.get(directory, {})
        return [(slot, entries[slot] >> PAGE_SHIFT) for slot in sorted(entries)
                if entries[slot] & PTE_PRESENT and not is_kernel_slot(slot)]

    def entry(self, directory: int, slot: int, index: int) -> tuple[int, int]:
        """(pde, pte) of the page (slot, index) of directory; 0 where absent."""
        pde = self.pde.get(directory, {}).get(slot, 0)
        if not pde & PTE_PRESENT:
            return pde, 0
        return pde, self.pte.get(pde >> PAGE_SHIFT, {}).get(index, 0)

    @property
    def free_count(self) -> int:
        return self.nframes - self.used_count


def _nonzero(values: list[int]) -> Entries:
    """The nonzero entries of a list, by index (``compress`` scans in C)."""
    return {index: values[index] for index in compress(range(len(values)), values)}


def _nonzero_bytes(data: bytes | bytearray) -> Entries:
    return {m.start(): data[m.start()] for m in _NONZERO.finditer(data)}


def _frame(physical_addr: int) -> int:
    return physical_addr >> PAGE_SHIFT


def _directory_tables(directory: PageDirectory, pdes: Entries) -> Iterable[PageTable]:
    """The table objects of a directory, checked against its PDEs slot by slot."""
    frame = _frame(directory.physical_addr)
    tables = directory.tables
    slots = list(compress(range(ENTRIES_PER_TABLE), tables))
    present = [slot for slot, pde in pdes.items() if pde & PTE_PRESENT]
    for slot in sorted(set(slots) | set(present)):
        table = tables[slot]
        pde = pdes.get(slot, 0)
        if table is None:
            raise AbstractionError(
                f"abstraction: directory {frame:#x} slot {slot}: PDE {pde:#010x} is present "
                "but the directory has no table object there")
        if not pde & PTE_PRESENT or _frame(pde) != _frame(table.physical_addr):
            raise AbstractionError(
                f"abstraction: directory {frame:#x} slot {slot}: PDE {pde:#010x} does not "
                f"link its table object at frame {_frame(table.physical_addr):#x}")
        yield table


def snapshot(pm: PageManager, vm: VirtualMemoryManager | None) -> Snapshot:
    """The plain-Python view of a model that :func:`to_state` abstracts."""
    owner = {m.start(): pm.owner[m.start()] for m in _NONZERO.finditer(pm.owner)}
    mem = {}
    for frame, page in pm.memory.items():
        data = _nonzero_bytes(page)
        if data:
            mem[frame] = data
    pde: dict[int, Entries] = {}
    pte: dict[int, Entries] = {}
    tables: dict[int, PageTable] = {}
    kernel_tables: set[int] = set()
    kernel_dir = current_dir = 0
    paging = False

    def add_table(table: PageTable) -> int:
        frame = _frame(table.physical_addr)
        known = tables.get(frame)
        if known is None:
            tables[frame] = table
            pte[frame] = _nonzero(table.entries)
        elif known is not table:
            raise AbstractionError(
                f"abstraction: two distinct page-table objects occupy frame {frame:#x}")
        return frame

    if vm is not None:
        paging = vm.kernel_directory is not None
        if vm.kernel_directory is not None:
            kernel_dir = _frame(vm.kernel_directory.physical_addr)
        if vm.current_directory is not None:
            current_dir = _frame(vm.current_directory.physical_addr)
        for table in vm.kernel_tables.values():
            kernel_tables.add(add_table(table))
        for key, directory in vm.directories.items():
            if key != directory.physical_addr:
                raise AbstractionError(
                    f"abstraction: directory object at {directory.physical_addr:#x} "
                    f"registered under {key:#x}")
            pdes = pde[_frame(key)] = _nonzero(directory.tables_physical)
            for table in _directory_tables(directory, pdes):
                add_table(table)
    return Snapshot(nframes=pm.nframes, used=pm.used_frames(), used_count=pm.frames.used,
                    owner=owner, pde=pde, pte=pte, kernel_dir=kernel_dir,
                    current_dir=current_dir, paging=paging, mem=mem,
                    kernel_tables=frozenset(kernel_tables))


# -- z3 terms ------------------------------------------------------------------

def _stores(default: Ref, items: Iterable[tuple[Ref, Ref]]) -> Ref:
    """default with a Store per (key, value), through z3's C API directly: the
    terms are those z3.Store builds (sorts are right by construction), at a
    third of the cost of the checked Python wrapper."""
    ctx = default.ctx
    ref = ctx.ref()
    array = default
    for key, value in items:
        array = z3.ArrayRef(z3.Z3_mk_store(ref, array.as_ast(), key.as_ast(), value.as_ast()),
                            ctx)
    return array


def _num(value: int, sort: Ref) -> Ref:
    """A bit-vector numeral (value must fit the sort: callers guarantee it)."""
    ctx = sort.ctx
    return z3.BitVecNumRef(z3.Z3_mk_unsigned_int64(ctx.ref(), value, sort.ast), ctx)


#: Terms already built, by (sorts, items): z3 hash-conses terms, so a cached
#: term is the very term a rebuild would give; the cache only saves the
#: Python-side calls. Cleared when it grows past _CACHE_LIMIT entries.
_TERMS: dict[tuple[object, ...], Ref] = {}
_CACHE_LIMIT = 50_000


def _cached(key: tuple[object, ...], build: Callable[[], Ref]) -> Ref:
    term = _TERMS.get(key)
    if term is None:
        if len(_TERMS) >= _CACHE_LIMIT:
            _TERMS.clear()
        term = _TERMS[key] = build()
    return term


def _map(pairs: Mapping[int, int], key_sort: Ref, value_sort: Ref) -> Ref:
    """K(0) with a Store per (key, value) pair, in key order."""
    items = tuple(sorted(pairs.items()))
    return _cached(("map", key_sort.size(), value_sort.size(), items), lambda: _stores(
        z3.K(key_sort, z3.BitVecVal(0, value_sort)),
        ((_num(k, key_sort), _num(v, value_sort)) for k, v in items)))


def _nested(arrays: Mapping[int, Entries], index_sort: Ref, value_sort: Ref) -> Ref:
    """FRAME -> (index -> value): K(K(0)) with a Store per frame, in frame order."""
    inner = [(f, _map(arrays[f], index_sort, value_sort)) for f in sorted(arrays)]
    return _stores(z3.K(FRAME, z3.K(index_sort, z3.BitVecVal(0, value_sort))),
                   ((_num(f, FRAME), array) for f, array in inner))


def _used(frames: tuple[int, ...]) -> Ref:
    true = z3.BoolVal(True)
    return _cached(("used", frames), lambda: _stores(
        z3.K(FRAME, z3.BoolVal(False)), ((_num(f, FRAME), true) for f in frames)))


def ghosts(snap: Snapshot) -> dict[str, dict[int, int]]:
    """The ghost witnesses, computed from the concrete state (plain dicts)."""
    rank = {frame: i for i, frame in enumerate(snap.used)}
    unrank = dict(enumerate(snap.used))
    map_table: dict[int, int] = {}
    map_index: dict[int, int] = {}
    for table, index, frame in snap.mappings():
        map_table[frame] = table
        map_index[frame] = index
    table_dir: dict[int, int] = {}
    table_slot: dict[int, int] = {}
    for directory, slot, table in snap.links():
        table_dir[table] = snap.kernel_dir if is_kernel_slot(slot) else directory
        table_slot[table] = slot
    return {"rank": rank, "unrank": unrank, "map_table": map_table, "map_index": map_index,
            "table_dir": table_dir, "table_slot": table_slot}


def to_state(snap: Snapshot) -> State:
    """The concrete z3 State of a snapshot, ghost witnesses included."""
    g = ghosts(snap)
    return State(
        nframes=word_val(snap.nframes),
        used=_used(snap.used),
        used_count=word_val(snap.used_count),
        owner=_map(snap.owner, FRAME, OWNER),
        pde=_nested(snap.pde, SLOT, ENTRY),
        pte=_nested(snap.pte, SLOT, ENTRY),
        kernel_dir=frame_val(snap.kernel_dir),
        current_dir=frame_val(snap.current_dir),
        paging=z3.BoolVal(snap.paging),
        mem=_nested(snap.mem, OFFSET, BYTE),
        rank=_map(g["rank"], FRAME, WORD),
        unrank=_map(g["unrank"], WORD, FRAME),
        map_table=_map(g["map_table"], FRAME, FRAME),
        map_index=_map(g["map_index"], FRAME, SLOT),
        table_dir=_map(g["table_dir"], FRAME, FRAME),
        table_slot=_map(g["table_slot"], FRAME, SLOT),
    )


def abstract(pm: PageManager, vm: VirtualMemoryManager | None) -> State:
    """The abstract state of a model, as concrete z3 terms."""
    return to_state(snapshot(pm, vm))


# -- Python values as arguments of the spec's operations --------------------------

def frame_val(frame: int) -> Ref:
    """A frame number (20 bits)."""
    return z3.BitVecVal(frame, FRAME)


def word_val(value: int) -> Ref:
    """A 32-bit word: an address, a count, a status."""
    return z3.BitVecVal(value, WORD)


def slot_val(slot: int) -> Ref:
    return z3.BitVecVal(slot, SLOT)


def byte_val(value: int) -> Ref:
    return z3.BitVecVal(value, BYTE)


def bool_val(value: bool) -> Ref:
    return z3.BoolVal(value)


def end_val(value: int) -> Ref:
    """InitializePhysicalMemory's 33-bit mem_end."""
    return z3.BitVecVal(value, END)


def directory_frame(directory: object) -> int:
    """The frame a directory handle names (the spec identifies directories by frame)."""
    if isinstance(directory, PageDirectory):
        return _frame(directory.physical_addr) & 0xFFFFF
    return 0


def to_z3(value: object, sort: Ref) -> Ref:
    """A Python value (int, bool, PageDirectory) as a z3 value of ``sort``.

    Directories become their frame number; ints must fit the sort (the
    machine never asks the spec about values it cannot represent).
    """
    if sort == z3.BoolSort():
        if not isinstance(value, bool):
            raise TypeError(f"{value!r} is not a bool")
        return z3.BoolVal(value)
    if isinstance(value, PageDirectory):
        value = directory_frame(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{value!r} is not an int")
    width = sort.size()
    if not 0 <= value < 1 << width:
        raise ValueError(f"{value:#x} does not fit {width} bits")
    return z3.BitVecVal(value, sort)


def fits(value: object, sort: Ref) -> bool:
    """Whether :func:`to_z3` can represent value in sort."""
    try:
        to_z3(value, sort)
    except (TypeError, ValueError):
        return False
    return True


def spec_args(params: Iterable[tuple[str, Ref]], values: Mapping[str, object]) -> list[Ref]:
    """The z3 arguments of a spec operation, from its catalogue params and Python values."""
    return [to_z3(values[name], sort) for name, sort in params]
