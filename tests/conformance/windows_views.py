"""What real Windows does with the private memory calls on a section's views, as data,
run against the model: SharedMemoryManager's blocks stand for the sections
(CreateFileMapping with SEC_COMMIT, one page) and its views for MapViewOfFile's,
the calls are the current process's through model/syscalls.py.

Sources (asserts of Wine's conformance tests, which run against real Windows), cited
per step: ``k32`` Wine's dlls/kernel32/tests/virtual.c, read in wine-mirror/wine's
stored copy (test_mapping: its page_prot x view[] x page_prot loops, with
is_compatible_access / is_compatible_protection deciding each assert) and in the
copy ReactOS syncs (reactos/reactos modules/rostests/winetests/kernel32/virtual.c:
test_MapViewOfFile).

How the sources are expressed:

- test_mapping maps a one-page file; the rules its asserts check are the section's
  and the view's protections (is_compatible_*), not the backing: the model's
  pagefile-backed block of one page stands for it. Each view[] entry is a case
  (the entry's dwDesiredAccess gives the view's protection, view[j].prot, which is
  what the model's MapSharedMemoryToProcess takes).
- test_MapViewOfFile's VirtualFree(MEM_DECOMMIT) of a view is made on a SEC_RESERVE
  section's view whose pages were committed: the model's views are SEC_COMMIT, all
  pages committed, as they are when the source asserts.

Left out (counted in the report): sections and views with the WRITECOPY values and
views with no access (not protections the model has: the seed's flags), the
WRITECOPY protections' successful VirtualProtect (copy-on-write; the old
protection the next step reads is then not asserted) and VirtualAlloc's
ERROR_ACCESS_DENIED for them (the model refuses the value first, 87), executable
views of PAGE_READONLY and PAGE_READWRITE file sections (Windows grants
SECTION_MAP_EXECUTE there, is_compatible_access; the model's SHM-3 keeps a view
within its section's protection), SEC_RESERVE sections, UnmapViewOfFile at an
address inside a view (the model takes the base), DuplicateHandle's access masks,
named mappings, NtQuerySection and other processes.
"""

from __future__ import annotations

import struct
from typing import Any, NamedTuple

import pytest

from model.memory_subsystem import MemorySubsystem
from model.virtual_alloc import MemoryBasicInformation
from spec.abi import (
    MEM_COMMIT,
    MEM_DECOMMIT,
    MEM_FREE,
    MEM_MAPPED,
    MEM_RELEASE,
    MEM_RESET,
    PAGE_EXECUTE_READ,
    PAGE_EXECUTE_READWRITE,
    PAGE_NOACCESS,
    PAGE_READONLY,
    PAGE_READWRITE,
    PAGE_SIZE,
    USER_TOP,
    ErrorCode,
)
from tests.conformance.steps import At, Value, resolve
from tests.test_memory_subsystem import booted
from tests.test_process_memory import snapshot
from tests.test_shared_memory import check_world

PAGE_WRITECOPY = 0x08
PAGE_EXECUTE_WRITECOPY = 0x80
FILE_MAP_COPY, FILE_MAP_WRITE, FILE_MAP_READ = 0x01, 0x02, 0x04
SECTION_MAP_EXECUTE, FILE_MAP_EXECUTE = 0x08, 0x20
#: Wine's MAPPING_SIZE (test_MapViewOfFile).
MAPPING_SIZE = 0x100000

INVALID_PARAMETER = ErrorCode.ERROR_INVALID_PARAMETER
INVALID_ADDRESS = ErrorCode.ERROR_INVALID_ADDRESS
ACCESS_DENIED = ErrorCode.ERROR_ACCESS_DENIED

K32 = "dlls/kernel32/tests/virtual.c"
_TM = f"{K32}: test_mapping"
_MV = f"{K32}: test_MapViewOfFile"


class Step(NamedTuple):
    call: str  # CreateFileMapping | MapViewOfFile | UnmapViewOfFile | VirtualAlloc
    #            | VirtualFree | VirtualProtect | VirtualQuery
    args: tuple[Value, ...]
    source: str
    ok: bool = True
    returns: Value | None = None
    error: int = 0
    fields: tuple[tuple[str, Value], ...] = ()
    save: str = ""


class Case(NamedTuple):
    name: str
    steps: tuple[Step, ...]


# -- test_mapping's tables, as data ------------------------------------------------------

#: page_prot[]: the sections' and the requested protections, in the source's order.
PAGE_PROT = (PAGE_NOACCESS, PAGE_READONLY, PAGE_READWRITE, PAGE_WRITECOPY,
             PAGE_EXECUTE_READ, PAGE_EXECUTE_READWRITE, PAGE_EXECUTE_WRITECOPY)
#: view[]: (dwDesiredAccess, the view's protection), its entries by their comment.
VIEWS = (
    (0x00, PAGE_NOACCESS), (0x01, PAGE_WRITECOPY), (0x02, PAGE_READWRITE),
    (0x03, PAGE_READWRITE), (0x04, PAGE_READONLY), (0x05, PAGE_READONLY),
    (0x06, PAGE_READWRITE), (0x07, PAGE_READWRITE), (0x08, PAGE_NOACCESS),
    (0x09, PAGE_NOACCESS), (0x0A, PAGE_READWRITE), (0x0B, PAGE_READWRITE),
    (0x0C, PAGE_READONLY), (0x0D, PAGE_READONLY), (0x0E, PAGE_READWRITE),
    (0x0F, PAGE_READWRITE), (0x20, PAGE_NOACCESS), (0x21, PAGE_EXECUTE_WRITECOPY),
    (0x22, PAGE_EXECUTE_READWRITE), (0x23, PAGE_EXECUTE_READWRITE),
    (0x24, PAGE_EXECUTE_READ), (0x25, PAGE_EXECUTE_READ), (0x26, PAGE_EXECUTE_READWRITE),
    (0x27, PAGE_EXECUTE_READWRITE), (0x28, PAGE_NOACCESS), (0x29, PAGE_NOACCESS),
    (0x2A, PAGE_EXECUTE_READWRITE), (0x2B, PAGE_EXECUTE_READWRITE),
    (0x2C, PAGE_EXECUTE_READ), (0x2D, PAGE_EXECUTE_READ), (0x2E, PAGE_EXECUTE_READWRITE),
    (0x2F, PAGE_EXECUTE_READWRITE))
#: The protections the model has for sections and views (the seed's four).
MODELLED = (PAGE_READONLY, PAGE_READWRITE, PAGE_EXECUTE_READ, PAGE_EXECUTE_READWRITE)

_R, _W, _X, _WC = 0x01, 0x02, 0x04, 0x08
#: page_prot_to_access (its table; the other values: no access).
_ACCESS = {PAGE_READWRITE: _R | _W, PAGE_EXECUTE_READ: _R | _X,
           PAGE_EXECUTE_READWRITE: _R | _W | _WC | _X, PAGE_EXECUTE_WRITECOPY: _R | _WC | _X,
           PAGE_READONLY: _R, PAGE_WRITECOPY: _R}
#: map_prot_to_access's SECTION_MAP_WRITE: the sections a write view may map.
_SECTION_WRITES = (PAGE_READWRITE, PAGE_EXECUTE_READWRITE)


def compatible_access(map_prot: int, access: int) -> bool:
    """is_compatible_access: the view's access rights within the section's
    (map_prot_to_access: every section grants query, read and both execute rights,
    write only a PAGE_READWRITE or PAGE_EXECUTE_READWRITE one; no right asked: read)."""
    granted = FILE_MAP_COPY | FILE_MAP_READ | SECTION_MAP_EXECUTE | FILE_MAP_EXECUTE | (
        FILE_MAP_WRITE if map_prot in _SECTION_WRITES else 0)  # FILE_MAP_COPY: SECTION_QUERY
    return (access or FILE_MAP_READ) & granted == (access or FILE_MAP_READ)


def compatible_protection(map_prot: int, view_prot: int, prot: int) -> bool:
    """is_compatible_protection: the new protection's access within the view's."""
    view, new = _ACCESS.get(view_prot, 0), _ACCESS.get(prot, 0)
    if view == new:
        return True
    if not view or view & new != new:
        return False
    return _ACCESS.get(map_prot, 0) & new == new


def _mapping_case(map_prot: int, access: int, view_prot: int) -> Case | None:
    """One view[] entry on one section: None when the source's asserts there are not
    expressible (see the module docstring)."""
    src = f"{_TM}: page_prot {map_prot:#04x}, view[] entry {access:#04x}"
    if view_prot not in MODELLED:
        return None
    steps = [Step("CreateFileMapping", (map_prot,), f"{src}: CreateFileMapping SEC_COMMIT "
                  "succeeds", save="map")]
    if not compatible_access(map_prot, access):
        steps.append(Step("MapViewOfFile", (At("map"), view_prot),
                          f"{src}: 'MapViewOfFile should fail', ERROR_ACCESS_DENIED",
                          ok=False, error=ACCESS_DENIED))
        return Case(f"k32_mapping_{map_prot:#04x}_{access:#04x}", tuple(steps))
    if _ACCESS[view_prot] & ~_ACCESS[map_prot] & (_W | _X):
        return None  # Windows maps it (the section grants the right); the model refuses
    steps += [
        Step("MapViewOfFile", (At("map"), view_prot), f"{src}: base != NULL", save="base"),
        Step("VirtualQuery", (At("base"),), f"{src}: VirtualQuery (7 fields)", fields=(
            ("BaseAddress", At("base")), ("RegionSize", PAGE_SIZE), ("Protect", view_prot),
            ("AllocationBase", At("base")), ("AllocationProtect", view_prot),
            ("State", MEM_COMMIT), ("Type", MEM_MAPPED)))]
    prev: int | None = view_prot
    for prot in PAGE_PROT:
        where = f"{src}: VirtualProtect({prot:#04x})"
        if compatible_protection(map_prot, view_prot, prot):
            if prot in (PAGE_WRITECOPY, PAGE_EXECUTE_WRITECOPY):
                prev = None  # copy-on-write: not the model's; the next old is unknown
                continue
            steps.append(Step("VirtualProtect", (At("base"), PAGE_SIZE, prot),
                              f"{where} succeeds, old_prot == prev_prot", returns=prev))
            prev = prot
        else:
            steps.append(Step("VirtualProtect", (At("base"), PAGE_SIZE, prot),
                              f"{where} 'should fail', ERROR_INVALID_PARAMETER", ok=False,
                              error=INVALID_PARAMETER))
    for prot in PAGE_PROT:
        if prot in (PAGE_WRITECOPY, PAGE_EXECUTE_WRITECOPY):
            continue  # the model refuses the value itself (87), Windows the commit (5)
        steps.append(Step("VirtualAlloc", (At("base"), PAGE_SIZE, MEM_COMMIT, prot),
                          f"{src}: VirtualAlloc(MEM_COMMIT, {prot:#04x}) 'should fail', "
                          "ERROR_ACCESS_DENIED", ok=False, error=ACCESS_DENIED))
    steps.append(Step("UnmapViewOfFile", (At("base"),), f"{src}: UnmapViewOfFile(base)"))
    return Case(f"k32_mapping_{map_prot:#04x}_{access:#04x}", tuple(steps))


def _mapping_cases() -> list[Case]:
    cases = [Case("k32_mapping_noaccess_section", (
        Step("CreateFileMapping", (PAGE_NOACCESS,), f"{_TM}: 'CreateFileMapping(PAGE_NOACCESS)"
             " should fail', ERROR_INVALID_PARAMETER", ok=False, error=INVALID_PARAMETER),))]
    for map_prot in PAGE_PROT:
        if map_prot not in MODELLED:
            continue
        for access, view_prot in VIEWS:
            case = _mapping_case(map_prot, access, view_prot)
            if case is not None:
                cases.append(case)
    return cases


# -- test_MapViewOfFile ------------------------------------------------------------------

MV_QUERIES = tuple(Case(f"k32_MapViewOfFile_{name}_view_query", (
    Step("CreateFileMapping", (PAGE_READWRITE, 4090), f"{_MV}: CreateFileMapping("
         "PAGE_READWRITE, 4090 bytes, name)", save="map"),
    Step("MapViewOfFile", (At("map"), protect), f"{_MV}: MapViewOfFile({name}) != NULL",
         save="ptr"),
    Step("VirtualQuery", (At("ptr"),), f"{_MV}: {name} view: VirtualQuery (6 fields)", fields=(
        ("BaseAddress", At("ptr")), ("AllocationBase", At("ptr")),
        ("AllocationProtect", protect), ("RegionSize", PAGE_SIZE), ("State", MEM_COMMIT),
        ("Protect", protect))),
    Step("UnmapViewOfFile", (At("ptr"),), f"{_MV}: UnmapViewOfFile(ptr)"),
)) for name, protect in (("FILE_MAP_READ", PAGE_READONLY), ("FILE_MAP_WRITE", PAGE_READWRITE)))

MV_COMMITTED_VIEW = Case("k32_MapViewOfFile_private_calls_on_a_view", (
    Step("CreateFileMapping", (PAGE_READWRITE, MAPPING_SIZE),
         f"{_MV}: CreateFileMapping(PAGE_READWRITE, MAPPING_SIZE)", save="map"),
    Step("MapViewOfFile", (At("map"), PAGE_READWRITE), f"{_MV}: MapViewOfFile(FILE_MAP_WRITE)",
         save="ptr"),
    Step("VirtualAlloc", (At("ptr"), MAPPING_SIZE, MEM_RESET, PAGE_READONLY),
         f"{_MV}: VirtualAlloc(ptr, MAPPING_SIZE, MEM_RESET) == ptr", returns=At("ptr")),
    Step("VirtualFree", (At("ptr"), 0x10000, MEM_DECOMMIT),
         f"{_MV}: VirtualFree(ptr, 0x10000, MEM_DECOMMIT) of a view fails, "
         "ERROR_INVALID_PARAMETER", ok=False, error=INVALID_PARAMETER),
    Step("UnmapViewOfFile", (At("ptr"),), f"{_MV}: UnmapViewOfFile(ptr)"),
    Step("VirtualQuery", (At("ptr"),), f"{_MV}: after UnmapViewOfFile: MEM_FREE (5 fields)",
         fields=(("BaseAddress", At("ptr")), ("Protect", PAGE_NOACCESS), ("AllocationBase", 0),
                 ("AllocationProtect", 0), ("State", MEM_FREE), ("Type", 0))),
))

MV_UNMAP_PRIVATE = Case("k32_MapViewOfFile_unmap_of_virtual_alloc_memory", (
    Step("VirtualAlloc", (0, 0x10000, MEM_COMMIT, PAGE_READONLY),
         f"{_MV}: VirtualAlloc(NULL, 0x10000, MEM_COMMIT, PAGE_READONLY) != NULL", save="addr"),
    *(Step("UnmapViewOfFile", (address,), f"{_MV}: 'UnmapViewOfFile should fail on "
           f"VirtualAlloc mem' ({name}), ERROR_INVALID_ADDRESS", ok=False, error=INVALID_ADDRESS)
      for name, address in (("addr", At("addr")), ("addr + 0x3000", At("addr", 0x3000)),
                            ("0xdeadbeef", 0xDEADBEEF))),
    Step("VirtualFree", (At("addr"), 0, MEM_RELEASE),
         f"{_MV}: VirtualFree(addr, 0, MEM_RELEASE)"),
))

CASES: tuple[Case, ...] = (*_mapping_cases(), *MV_QUERIES, MV_COMMITTED_VIEW, MV_UNMAP_PRIVATE)


# -- the runner -----------------------------------------------------------------------

#: Where VirtualQuery writes its structure and VirtualProtect the old protection.
QUERY_BUFFER = USER_TOP - 64
OLD_PROTECT = USER_TOP - 4


def perform(sub: MemorySubsystem, step: Step, saved: dict[str, int]) -> tuple[bool, Any, int]:
    """Run one step in the current process: (succeeded, the value to compare, the error)."""
    system, shm = sub.syscalls, sub.shared_memory
    space = system.current
    assert space is not None
    args = [resolve(a, saved) for a in step.args]
    if step.call == "CreateFileMapping":
        shm_id = shm.CreateSharedMemory(args[1] if len(args) > 1 else PAGE_SIZE, args[0])
        return shm_id != 0, shm_id, shm.last_error
    if step.call == "MapViewOfFile":
        base = shm.MapSharedMemoryToProcess(space, args[0], 0, args[1])
        return base != 0, base, shm.last_error
    if step.call == "UnmapViewOfFile":
        return shm.UnmapSharedMemoryFromProcess(space, args[0]), None, shm.last_error
    if step.call == "VirtualAlloc":
        result = system.SyscallVirtualAlloc(*args)
        return result != 0, result, system.last_error
    if step.call == "VirtualFree":
        return system.SyscallVirtualFree(*args) == 1, None, system.last_error
    if step.call == "VirtualProtect":
        ok = system.SyscallVirtualProtect(*args, OLD_PROTECT) == 1
        old = space.ReadUserMemory(OLD_PROTECT, 4) if ok else None
        return ok, int.from_bytes(old, "little") if isinstance(old, bytes) else None, \
            system.last_error
    ok = system.SyscallVirtualQuery(args[0], QUERY_BUFFER, 28) == 28
    raw = space.ReadUserMemory(QUERY_BUFFER, 28)
    info = MemoryBasicInformation(*struct.unpack("<7I", raw)) if ok and \
        isinstance(raw, bytes) else None
    return ok, info, system.last_error


def state(sub: MemorySubsystem) -> object:
    """What a failed step must leave as it was: the space's records and the blocks."""
    space = sub.syscalls.current
    assert space is not None
    return snapshot(space), {shm_id: (block.frames, frozenset(block.mappings))
                             for shm_id, block in sub.shared_memory.blocks.items()}


def check(sub: MemorySubsystem, step: Step, saved: dict[str, int]) -> None:
    before = state(sub)
    ok, value, error = perform(sub, step, saved)
    where = f"{step.call}{step.args} ({step.source})"
    assert ok == step.ok, f"{where}: {'succeeded' if ok else f'failed with {error}'}"
    if not ok:
        assert error == step.error, f"{where}: last error {error}, expected {step.error}"
        assert state(sub) == before, f"{where}: a failure changed the state"
        return
    if step.save:
        saved[step.save] = value
    if step.returns is not None:
        assert value == resolve(step.returns, saved), f"{where}: returned {value!r}"
    for name, expected in step.fields:
        seen = getattr(value, name)
        assert seen == resolve(expected, saved), f"{where}: {name} {seen:#x}"


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_windows_views(case: Case) -> None:
    sub = booted()
    system = sub.syscalls
    assert system.SwitchProcess(system.CreateProcess())
    saved: dict[str, int] = {}
    for step in case.steps:
        check(sub, step, saved)
    check_world(sub)


__all__ = ["CASES", "Case", "Step", "compatible_access", "compatible_protection",
           "test_windows_views"]
