"""What real Windows does with a section's views and the private memory calls on
them, as data, run against the model: SharedMemoryManager's blocks stand for the
pagefile-backed sections (CreateFileMapping(INVALID_HANDLE_VALUE, SEC_COMMIT)),
MemoryMappedFiles' views for a file section's, the calls are the current
process's through model/syscalls.py.

Sources (asserts of Wine's conformance tests, which run against real Windows), cited
per step: ``k32`` Wine's dlls/kernel32/tests/virtual.c, read in wine-mirror/wine's
stored copy (test_mapping as test_mappings calls it: a writable file with
SEC_COMMIT and then an anonymous, pagefile-backed mapping; its page_prot x view[] x
page_prot loops, with is_compatible_access (map_prot_to_access of
file_access_to_prot) and the two-argument is_compatible_protection deciding each
assert; test_MapViewOfFile; test_CreateFileMapping_protection's first td[] loop) and
in the copy ReactOS syncs (reactos/reactos
modules/rostests/winetests/kernel32/virtual.c: test_MapViewOfFile).

How the sources are expressed:

- test_mapping's anonymous mapping (test_mapping(INVALID_HANDLE_VALUE, SEC_COMMIT,
  FALSE)) is a block of two pages with the section's protection as its
  permissions; each view[] entry is a case (its dwDesiredAccess gives the view's
  protection, view[j].prot, which MapSharedMemoryToProcess takes). An executable
  view (FILE_MAP_EXECUTE) of a PAGE_READONLY or PAGE_READWRITE section fails with
  ERROR_ACCESS_DENIED, file-backed or not: the current test's map_prot_to_access
  grants SECTION_MAP_EXECUTE to the PAGE_EXECUTE_* sections only (an older copy of
  the test, ReactOS's sync of Wine's, granted it to every section, as Vista did).
- test_mapping's file mapping (test_mapping(hfile, SEC_COMMIT, FALSE), a file of two
  pages opened for reading, writing and executing) is MapFileToMemory of a
  writable node for each view[] entry the section grants (the model's file views
  have no section object: a view the section refuses is not expressible); there
  VirtualAlloc(MEM_COMMIT) on the view fails with ERROR_ACCESS_DENIED, where on an
  anonymous mapping's view it re-protects the page when
  is_compatible_protection(view[j].prot, page_prot[k]) allows it (VirtualQuery then
  reports page_prot[k]), else fails with ERROR_INVALID_PARAMETER.
- test_CreateFileMapping_protection's first loop (a one-page file section per td[]
  protection, a FILE_MAP_READ view of it) is a case per section protection the model
  has: VirtualAlloc(MEM_COMMIT, td[i].prot) on the view fails with ERROR_ACCESS_DENIED,
  VirtualProtect(td[i].prot) succeeds for PAGE_READONLY only (else
  ERROR_INVALID_PARAMETER).
- test_MapViewOfFile's VirtualFree(MEM_DECOMMIT) of a view is made on a SEC_RESERVE
  section's view whose pages were committed: the model's views are SEC_COMMIT, all
  pages committed, as they are when the source asserts.
- test_MapViewOfFile's file sections (CreateFileMapping on its test file) are
  MemoryMappedFiles' views of a MemoryFileNode: ``CreateFile`` makes the node at the
  length the file has when the source maps it (its first CreateFileMapping of
  MAPPING_SIZE bytes extended the 4096-byte file; the model's nodes are not
  extended by a mapping), ``CreateFileMapping`` with the node names the file
  section, and MapViewOfFile of it is MapFileToMemory (offset 0, the size asked,
  the view's protection). UnmapViewOfFile goes to the manager whose view holds the
  address (the file manager's views, else the shared-memory manager).

Left out (counted in the report): sections and views with the WRITECOPY values and
views with no access (not protections the model has: the seed's flags), the
WRITECOPY protections' successful VirtualProtect (copy-on-write; the old
protection the next step reads is then not asserted), the NtMapViewOfSection views
test_mapping compares with, the file-only PAGE_WRITECOPY pass over the whole view,
the read-only file and SEC_IMAGE passes, VirtualAlloc(MEM_COMMIT) with the WRITECOPY
values (the model refuses the value itself), SEC_RESERVE sections, DuplicateHandle's access
masks, named mappings, NtQuerySection and other processes;
test_CreateFileMapping_protection's protections CreateFileMapping refuses (the model's
file sections are the node and a size, with no protection to check) and its second
loop (VirtualProtect on an execute-read-write view, not a VirtualAlloc assert).
"""

from __future__ import annotations

import struct
from typing import Any, NamedTuple

import pytest

from model.file_node import MemoryFileNode
from model.memory_subsystem import MemorySubsystem
from model.virtual_alloc import MemoryBasicInformation
from spec.abi import (
    MEM_COMMIT,
    MEM_DECOMMIT,
    MEM_FREE,
    MEM_MAPPED,
    MEM_RELEASE,
    MEM_RESET,
    PAGE_EXECUTE,
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
    call: str  # CreateFile | CreateFileMapping | MapViewOfFile | UnmapViewOfFile
    #            | VirtualAlloc | VirtualFree | VirtualProtect | VirtualQuery
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
PAGE_PROT = (PAGE_NOACCESS, PAGE_READONLY, PAGE_READWRITE, PAGE_WRITECOPY, PAGE_EXECUTE,
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
#: test_mapping's sections: two pages.
SECTION_SIZE = 2 * PAGE_SIZE

_R, _W, _X = 0x01, 0x02, 0x04
#: page_prot_to_access (its table; the other values: no access).
_ACCESS = {PAGE_READONLY: _R, PAGE_WRITECOPY: _R, PAGE_READWRITE: _R | _W,
           PAGE_EXECUTE: _R | _X, PAGE_EXECUTE_READ: _R | _X,
           PAGE_EXECUTE_WRITECOPY: _R | _X, PAGE_EXECUTE_READWRITE: _R | _W | _X}
SECTION_QUERY, SECTION_MAP_WRITE, SECTION_MAP_READ = 0x01, 0x02, 0x04
#: map_prot_to_access (its table; the other values: no rights).
_SECTION_RIGHTS = {
    PAGE_READWRITE: SECTION_MAP_READ | SECTION_MAP_WRITE | SECTION_QUERY,
    PAGE_EXECUTE_READWRITE: SECTION_MAP_READ | SECTION_MAP_WRITE | SECTION_MAP_EXECUTE
    | SECTION_QUERY,
    PAGE_READONLY: SECTION_MAP_READ | SECTION_QUERY,
    PAGE_WRITECOPY: SECTION_MAP_READ | SECTION_QUERY,
    **dict.fromkeys((PAGE_EXECUTE, PAGE_EXECUTE_READ, PAGE_EXECUTE_WRITECOPY),
                    SECTION_MAP_READ | SECTION_MAP_EXECUTE | SECTION_QUERY)}


def file_access_to_prot(access: int) -> int:
    """file_access_to_prot: the page protection a dwDesiredAccess maps with."""
    execute, access = access & FILE_MAP_EXECUTE, access & ~FILE_MAP_EXECUTE
    if access == FILE_MAP_COPY:
        return PAGE_EXECUTE_WRITECOPY if execute else PAGE_WRITECOPY
    if access & FILE_MAP_WRITE:
        return PAGE_EXECUTE_READWRITE if execute else PAGE_READWRITE
    if access & FILE_MAP_READ:
        return PAGE_EXECUTE_READ if execute else PAGE_READONLY
    return PAGE_NOACCESS


def compatible_access(map_prot: int, access: int) -> bool:
    """is_compatible_access: the section rights the view's protection needs (no
    right: SECTION_MAP_READ) are all the section's (map_prot_to_access)."""
    granted = _SECTION_RIGHTS.get(map_prot, 0)
    needed = _SECTION_RIGHTS.get(file_access_to_prot(access), 0) or SECTION_MAP_READ
    return needed & granted == needed


def compatible_protection(view_prot: int, prot: int) -> bool:
    """is_compatible_protection (two arguments): the new protection's access within
    the view's."""
    new = _ACCESS.get(prot, 0)
    return _ACCESS.get(view_prot, 0) & new == new


def _protect_steps(src: str, view_prot: int) -> list[Step]:
    """The page_prot loop of VirtualProtect on the view's first page: each compatible
    one succeeds returning the previous protection, VirtualQuery then reporting it;
    the others fail with ERROR_INVALID_PARAMETER."""
    steps: list[Step] = []
    prev: int | None = view_prot
    for prot in PAGE_PROT:
        where = f"{src}: VirtualProtect({prot:#04x})"
        if not compatible_protection(view_prot, prot):
            steps.append(Step("VirtualProtect", (At("base"), PAGE_SIZE, prot),
                              f"{where} 'should fail', ERROR_INVALID_PARAMETER", ok=False,
                              error=INVALID_PARAMETER))
        elif prot in (PAGE_WRITECOPY, PAGE_EXECUTE_WRITECOPY):
            prev = None  # copy-on-write: not the model's; the next old is unknown
        else:
            steps += [Step("VirtualProtect", (At("base"), PAGE_SIZE, prot),
                           f"{where} succeeds, old_prot == prev_prot", returns=prev),
                      Step("VirtualQuery", (At("base"),), f"{where}: VirtualQuery Protect",
                           fields=(("Protect", prot),))]
            prev = prot
    return steps


def _commit_steps(src: str, view_prot: int, file: bool) -> list[Step]:
    """The page_prot loop of VirtualAlloc(MEM_COMMIT) on the view's first page: on a
    file section's view each fails with ERROR_ACCESS_DENIED; on an anonymous one each
    protection is_compatible_protection(view[j].prot, ...) allows succeeds, VirtualQuery
    then reporting it, the others fail with ERROR_INVALID_PARAMETER. The WRITECOPY
    values are left out: the model refuses the value itself (87), where Windows refuses
    the commit of a file view (5) and commits an anonymous view's page (every modelled
    view allows reading, so they are compatible)."""
    steps: list[Step] = []
    for prot in PAGE_PROT:
        where = f"{src}: VirtualAlloc(base, page, MEM_COMMIT, {prot:#04x})"
        if prot in (PAGE_WRITECOPY, PAGE_EXECUTE_WRITECOPY):
            continue
        if file:
            steps.append(Step("VirtualAlloc", (At("base"), PAGE_SIZE, MEM_COMMIT, prot),
                              f"{where}: file mapping 'should fail', ERROR_ACCESS_DENIED",
                              ok=False, error=ACCESS_DENIED))
        elif compatible_protection(view_prot, prot):
            steps += [Step("VirtualAlloc", (At("base"), PAGE_SIZE, MEM_COMMIT, prot),
                           f"{where}: anon mapping, ptr != NULL"),
                      Step("VirtualQuery", (At("base"),),
                           f"{where}: VirtualQuery Protect == page_prot[k]",
                           fields=(("Protect", prot),))]
        else:
            steps.append(Step("VirtualAlloc", (At("base"), PAGE_SIZE, MEM_COMMIT, prot),
                              f"{where}: anon mapping 'should fail', ERROR_INVALID_PARAMETER",
                              ok=False, error=INVALID_PARAMETER))
    return steps


def _mapped_steps(src: str, view_prot: int, file: bool) -> list[Step]:
    """A view the section grants: its VirtualQuery, the VirtualProtect loop, the
    VirtualAlloc(MEM_COMMIT) loop, its unmap."""
    steps = [
        Step("MapViewOfFile", (At("map"), view_prot, 0), f"{src}: base != NULL", save="base"),
        Step("VirtualQuery", (At("base"),), f"{src}: VirtualQuery (7 fields)", fields=(
            ("BaseAddress", At("base")), ("RegionSize", SECTION_SIZE), ("Protect", view_prot),
            ("AllocationBase", At("base")), ("AllocationProtect", view_prot),
            ("State", MEM_COMMIT), ("Type", MEM_MAPPED))),
        *_protect_steps(src, view_prot)]
    steps += _commit_steps(src, view_prot, file)
    steps.append(Step("UnmapViewOfFile", (At("base"),), f"{src}: UnmapViewOfFile(base)"))
    return steps


def _mapping_case(map_prot: int, access: int, view_prot: int, file: bool) -> Case | None:
    """One view[] entry on one section: None when the source's asserts there are not
    expressible (see the module docstring)."""
    kind = "file" if file else "anon"
    src = f"{_TM}: {kind} mapping, page_prot {map_prot:#04x}, view[] entry {access:#04x}"
    if view_prot not in MODELLED:
        return None
    granted = compatible_access(map_prot, access)
    if file:  # the model's file views have no section to refuse them
        if not granted:
            return None
        steps = [Step("CreateFile", (SECTION_SIZE,), f"{_TM}: CreateFileA(file_name, "
                      "GENERIC_READ|GENERIC_WRITE|GENERIC_EXECUTE), two pages", save="file"),
                 Step("CreateFileMapping", (map_prot, SECTION_SIZE, At("file")),
                      f"{src}: CreateFileMappingW(hfile, SEC_COMMIT) succeeds", save="map")]
    else:
        steps = [Step("CreateFileMapping", (map_prot, SECTION_SIZE),
                      f"{src}: CreateFileMappingW(INVALID_HANDLE_VALUE, SEC_COMMIT) succeeds",
                      save="map")]
    if granted:
        steps += _mapped_steps(src, view_prot, file)
    else:
        steps.append(Step("MapViewOfFile", (At("map"), view_prot, 0),
                          f"{src}: 'MapViewOfFile should fail', ERROR_ACCESS_DENIED",
                          ok=False, error=ACCESS_DENIED))
    return Case(f"k32_mapping_{kind}_{map_prot:#04x}_{access:#04x}", tuple(steps))


def _mapping_cases() -> list[Case]:
    cases = [Case(f"k32_mapping_{name}_section", (
        Step("CreateFileMapping", (prot, SECTION_SIZE), f"{_TM}: anon mapping: "
             f"'CreateFileMapping({name}) should fail', ERROR_INVALID_PARAMETER", ok=False,
             error=INVALID_PARAMETER),)) for name, prot in (("PAGE_NOACCESS", PAGE_NOACCESS),
                                                            ("PAGE_EXECUTE", PAGE_EXECUTE))]
    for file in (True, False):
        for map_prot in PAGE_PROT:
            if map_prot not in MODELLED:
                continue
            for access, view_prot in VIEWS:
                case = _mapping_case(map_prot, access, view_prot, file)
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

def _file_view(protect: int, size: int, name: str, what: str) -> Step:
    return Step("MapViewOfFile", (At("map"), protect, size), f"{_MV}: {what} != NULL", save=name)


_VIEW_FIELDS = (("BaseAddress", At("ptr")), ("RegionSize", MAPPING_SIZE),
                ("Protect", PAGE_READWRITE), ("AllocationBase", At("ptr")),
                ("AllocationProtect", PAGE_READWRITE), ("State", MEM_COMMIT),
                ("Type", MEM_MAPPED))
_FREED_FIELDS = (("BaseAddress", At("ptr")), ("Protect", PAGE_NOACCESS),
                 ("AllocationBase", 0), ("AllocationProtect", 0), ("State", MEM_FREE),
                 ("Type", 0))

def _unclosed_view(kind: str, create: tuple[Step, ...]) -> Case:
    """The view left after CloseHandle(mapping) (the named mapping "Foo"): VirtualQuery
    twice (after the close, after CreateFileMappingA of the name again), then its
    UnmapViewOfFile and VirtualQuery of the free range."""
    return Case(f"k32_MapViewOfFile_{kind}_view_outlives_its_handle", (
        *create,
        _file_view(PAGE_READWRITE, 0, "ptr", f"{kind}: MapViewOfFile(mapping, FILE_MAP_WRITE)"),
        *(Step("VirtualQuery", (At("ptr"),), f"{_MV}: {kind} view {when}: VirtualQuery "
               "(7 fields)", fields=_VIEW_FIELDS)
          for when in ("after CloseHandle(mapping)", "after CreateFileMappingA(name) again")),
        Step("UnmapViewOfFile", (At("ptr"),), f"{_MV}: {kind} view: UnmapViewOfFile(ptr)"),
        Step("VirtualQuery", (At("ptr"),), f"{_MV}: {kind} view after UnmapViewOfFile: "
             "MEM_FREE (6 fields)", fields=_FREED_FIELDS)))


MV_UNCLOSED = (
    _unclosed_view("pagefile", (Step(
        "CreateFileMapping", (PAGE_READWRITE, MAPPING_SIZE), f"{_MV}: CreateFileMappingA("
        "INVALID_HANDLE_VALUE, PAGE_READWRITE, MAPPING_SIZE, name) != 0", save="map"),)),
    _unclosed_view("file", (
        Step("CreateFile", (MAPPING_SIZE,), f"{_MV}: CreateFileA(testfile) (4096 bytes, "
             "extended to MAPPING_SIZE by the CreateFileMappingA below)", save="file"),
        Step("CreateFileMapping", (PAGE_READWRITE, MAPPING_SIZE, At("file")),
             f"{_MV}: CreateFileMappingA(file, PAGE_READWRITE, MAPPING_SIZE, name) != 0",
             save="map"))))

#: UnmapViewOfFile at an address inside a view unmaps it (NtUnmapViewOfSection looks
#: the address up among the process's views); each next MapViewOfFile maps again.
MV_UNMAP_INSIDE = Case("k32_MapViewOfFile_unmap_inside_the_view", (
    Step("CreateFile", (MAPPING_SIZE,), f"{_MV}: the test file (MAPPING_SIZE bytes by then)",
         save="file"),
    Step("CreateFileMapping", (PAGE_READONLY, 12288, At("file")),
         f"{_MV}: CreateFileMappingA(file, PAGE_READONLY, 12288) != NULL", save="map"),
    *(step for offset in (100, 4096, 4096 + 100) for step in (
        _file_view(PAGE_READONLY, 12288, "ptr",
                   "MapViewOfFile(mapping, FILE_MAP_READ, 0, 0, 12288)"),
        Step("UnmapViewOfFile", (At("ptr", offset),),
             f"{_MV}: UnmapViewOfFile((char *)ptr + {offset}) succeeds"))),
))


# -- test_CreateFileMapping_protection -----------------------------------------------------

_CP = f"{K32}: test_CreateFileMapping_protection"


def _protection_case(prot: int) -> Case:
    """Its first td[] loop, for a section protection the model has: a one-page file
    section, a FILE_MAP_READ view of it, VirtualAlloc(MEM_COMMIT, td[i].prot) refused
    with ERROR_ACCESS_DENIED, VirtualProtect(td[i].prot) allowed for PAGE_READONLY
    only, else ERROR_INVALID_PARAMETER."""
    where = f"{_CP}: td[] {prot:#04x}"
    protect = (Step("VirtualProtect", (At("base"), PAGE_SIZE, prot), f"{where}: VirtualProtect "
                    "succeeds") if prot == PAGE_READONLY else
               Step("VirtualProtect", (At("base"), PAGE_SIZE, prot), f"{where}: VirtualProtect "
                    "'should fail', ERROR_INVALID_PARAMETER", ok=False, error=INVALID_PARAMETER))
    return Case(f"k32_CreateFileMapping_protection_{prot:#04x}", (
        Step("CreateFile", (PAGE_SIZE,), f"{_CP}: CreateFileA(GENERIC_READ|GENERIC_WRITE|"
             "GENERIC_EXECUTE), one page", save="file"),
        Step("CreateFileMapping", (prot, PAGE_SIZE, At("file")),
             f"{where}: CreateFileMappingW(hfile, SEC_COMMIT) succeeds", save="map"),
        Step("MapViewOfFile", (At("map"), PAGE_READONLY, 0),
             f"{where}: MapViewOfFile(FILE_MAP_READ) != NULL", save="base"),
        Step("VirtualQuery", (At("base"),), f"{where}: VirtualQuery (7 fields)", fields=(
            ("BaseAddress", At("base")), ("RegionSize", PAGE_SIZE), ("Protect", PAGE_READONLY),
            ("AllocationBase", At("base")), ("AllocationProtect", PAGE_READONLY),
            ("State", MEM_COMMIT), ("Type", MEM_MAPPED))),
        Step("VirtualAlloc", (At("base"), PAGE_SIZE, MEM_COMMIT, prot),
             f"{where}: VirtualAlloc 'should fail', ERROR_ACCESS_DENIED", ok=False,
             error=ACCESS_DENIED),
        protect,
        Step("UnmapViewOfFile", (At("base"),), f"{where}: UnmapViewOfFile(base)")))


CP_CASES = tuple(_protection_case(prot) for prot in MODELLED)

CASES: tuple[Case, ...] = (*_mapping_cases(), *MV_QUERIES, MV_COMMITTED_VIEW, MV_UNMAP_PRIVATE,
                           *MV_UNCLOSED, MV_UNMAP_INSIDE, *CP_CASES)


# -- the runner -----------------------------------------------------------------------

#: Where VirtualQuery writes its structure and VirtualProtect the old protection.
QUERY_BUFFER = USER_TOP - 64
OLD_PROTECT = USER_TOP - 4


#: The first handle of a file section (a pagefile section's handle is its block's id).
FILE_SECTIONS = 0x10000


class Files(NamedTuple):
    """The run's file nodes (CreateFile) and file sections (node index, size)."""

    nodes: list[MemoryFileNode]
    sections: list[tuple[int, int]]


def perform(sub: MemorySubsystem, step: Step, saved: dict[str, int],
            files: Files) -> tuple[bool, Any, int]:
    """Run one step in the current process: (succeeded, the value to compare, the error)."""
    system, shm, mmf = sub.syscalls, sub.shared_memory, sub.mapped_files
    space = system.current
    assert space is not None
    args = [resolve(a, saved) for a in step.args]
    if step.call == "CreateFile":
        files.nodes.append(MemoryFileNode(bytes(args[0])))
        return True, len(files.nodes) - 1, 0
    if step.call == "CreateFileMapping" and len(args) > 2:  # a file section
        files.sections.append((args[2], args[1]))
        return True, FILE_SECTIONS + len(files.sections) - 1, 0
    if step.call == "CreateFileMapping":
        shm_id = shm.CreateSharedMemory(args[1] if len(args) > 1 else PAGE_SIZE, args[0])
        return shm_id != 0, shm_id, shm.last_error
    if step.call == "MapViewOfFile" and args[0] >= FILE_SECTIONS:
        index, size = files.sections[args[0] - FILE_SECTIONS]
        base = mmf.MapFileToMemory(files.nodes[index], 0, args[2] or size, args[1])
        return base != 0, base, mmf.last_error
    if step.call == "MapViewOfFile":
        base = shm.MapSharedMemoryToProcess(space, args[0], 0, args[1])
        return base != 0, base, shm.last_error
    if step.call == "UnmapViewOfFile":
        allocation = space.allocation_at(args[0]) if type(args[0]) is int else None
        if allocation is not None and (space.pid, allocation.base) in mmf.views:
            return mmf.UnmapFileFromMemory(args[0]), None, mmf.last_error
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
    mmf = sub.mapped_files
    return snapshot(space), {shm_id: (block.frames, frozenset(block.mappings))
                             for shm_id, block in sub.shared_memory.blocks.items()}, \
        dict(mmf.views), {key: page.frame for key, page in mmf.cache.items()}


def check(sub: MemorySubsystem, step: Step, saved: dict[str, int], files: Files) -> None:
    before = state(sub)
    ok, value, error = perform(sub, step, saved, files)
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
    files = Files([], [])
    for step in case.steps:
        check(sub, step, saved, files)
    check_world(sub)


__all__ = ["CASES", "Case", "Step", "compatible_access", "compatible_protection",
           "test_windows_views"]
