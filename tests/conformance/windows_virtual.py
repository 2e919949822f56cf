"""What real Windows does with VirtualAlloc / VirtualFree / VirtualProtect / VirtualQuery,
as data, run against the model through its user-mode front end (model/syscalls.py).

Sources (asserts of conformance tests that run against real Windows), cited per step:

- ``k32`` Wine's dlls/kernel32/tests/virtual.c, read in the copy ReactOS syncs from
  Wine (reactos/reactos modules/rostests/winetests/kernel32/virtual.c; the copy
  of wine-mirror/wine in the store predates the MEM_RESET and protection-table
  tests): test_VirtualAlloc, test_VirtualProtect, test_VirtualAlloc_protection.
- ``ntdll`` Wine's dlls/ntdll/tests/virtual.c (wine-mirror/wine):
  test_NtAllocateVirtualMemory.
- ``ros`` ReactOS modules/rostests/apitests/ntdll/NtAllocateVirtualMemory.c:
  CheckSize, CheckAlignment, CheckAdjacentVADs, START_TEST.

Nt* calls are expressed as the Win32 call that makes them, with the Win32 code
RtlNtStatusToDosError gives (``NT_TO_WIN32``, read from the conversion tables
of Wine's dlls/ntdll/error.c: C0000018h, C000009Fh and C00000A0h map to
ERROR_INVALID_ADDRESS, C0000005h to ERROR_NOACCESS, C000000Dh and its
numbered variants to ERROR_INVALID_PARAMETER). An NtFreeVirtualMemory(MEM_RELEASE)
with the allocation's whole size is VirtualFree(addr, 0, MEM_RELEASE); one
whose status depends on a non-zero size (STATUS_UNABLE_TO_FREE_VM, releasing
part of a reservation) has no Win32 form and is left out, as are asserts about
other processes, zero_bits, placeholders, extended parameters, guard pages,
write watches, DEP and file mappings (counted in the issue 15 report).
Out-parameters (the rounded address and size NtAllocate/NtFree return) are
checked through VirtualQuery of the range they describe.

Each step: the call, its arguments (``At(name, offset)`` = an address an
earlier step saved, plus offset), whether it succeeds, its exact return value
(an address, VirtualProtect's old protection, the bytes read; a tuple of bytes
accepts any of them), the last error on failure, MEMORY_BASIC_INFORMATION
fields read back, and the source assert.
"""

from __future__ import annotations

import struct
from typing import Any, NamedTuple

import pytest

from model.syscalls import SystemCalls
from model.virtual_alloc import MemoryBasicInformation
from spec.abi import (
    MEM_COMMIT,
    MEM_DECOMMIT,
    MEM_FREE,
    MEM_PRIVATE,
    MEM_RELEASE,
    MEM_RESERVE,
    MEM_RESET,
    PAGE_EXECUTE,
    PAGE_EXECUTE_READ,
    PAGE_EXECUTE_READWRITE,
    PAGE_NOACCESS,
    PAGE_READONLY,
    PAGE_READWRITE,
    USER_TOP,
    ErrorCode,
)
from tests.conformance.steps import At, Value, resolve, run_case
from tests.test_process_memory import snapshot

PAGE_WRITECOPY = 0x08
PAGE_EXECUTE_WRITECOPY = 0x80
AT_ROUND_TO_PAGE = 0x40000000
MEM_RESERVE_PLACEHOLDER = 0x00040000
MEM_WRITE_WATCH = 0x00200000
RESERVE_COMMIT = MEM_RESERVE | MEM_COMMIT

INVALID_PARAMETER = ErrorCode.ERROR_INVALID_PARAMETER
INVALID_ADDRESS = ErrorCode.ERROR_INVALID_ADDRESS
NOACCESS = ErrorCode.ERROR_NOACCESS

#: RtlNtStatusToDosError for the statuses the sources assert.
NT_TO_WIN32 = {
    "STATUS_INVALID_PARAMETER": INVALID_PARAMETER,
    "STATUS_INVALID_PARAMETER_2": INVALID_PARAMETER,
    "STATUS_INVALID_PARAMETER_5": INVALID_PARAMETER,
    "STATUS_CONFLICTING_ADDRESSES": INVALID_ADDRESS,
    "STATUS_FREE_VM_NOT_AT_BASE": INVALID_ADDRESS,
    "STATUS_MEMORY_NOT_ALLOCATED": INVALID_ADDRESS,
    "STATUS_ACCESS_VIOLATION": NOACCESS,
}

K32 = "dlls/kernel32/tests/virtual.c"
NTDLL = "dlls/ntdll/tests/virtual.c"
ROS = "modules/rostests/apitests/ntdll/NtAllocateVirtualMemory.c"


class Step(NamedTuple):
    call: str  # VirtualAlloc | VirtualFree | VirtualProtect | VirtualQuery | Write | Read
    args: tuple[Value | bytes | None, ...]
    source: str
    ok: bool = True
    returns: Value | tuple[bytes, ...] | None = None
    error: int = 0
    fields: tuple[tuple[str, Value], ...] = ()
    save: str = ""
    aligned: int = 0


class Case(NamedTuple):
    name: str
    steps: tuple[Step, ...]


# -- step builders ------------------------------------------------------------------


def alloc(address: Value, size: int, kind: int, protect: int, source: str, *,
          returns: Value | None = None, error: int = 0, save: str = "",
          aligned: int = 0) -> Step:
    return Step("VirtualAlloc", (address, size, kind, protect), source, not error,
                returns, error, save=save, aligned=aligned)


def free(address: Value, size: int, kind: int, source: str, *, error: int = 0) -> Step:
    return Step("VirtualFree", (address, size, kind), source, not error, None, error)


def protect(address: Value, size: int, new: int, source: str, *, old: int | None = None,
            error: int = 0, old_pointer: int | None = -1) -> Step:
    args: tuple[Value | bytes | None, ...] = (address, size, new)
    if old_pointer != -1:
        args += (old_pointer,)
    return Step("VirtualProtect", args, source, not error, old, error)


def query(address: Value, source: str, **fields: Value) -> Step:
    return Step("VirtualQuery", (address,), source, fields=tuple(fields.items()))


def write(address: Value, data: bytes, source: str, *, error: int = 0) -> Step:
    return Step("Write", (address, data), source, not error, None, error)


def read(address: Value, length: int, source: str, *accepted: bytes, error: int = 0) -> Step:
    return Step("Read", (address, length), source, not error, accepted or None, error)


def region(base: Value, size: int, state: int, protect_now: int, allocation_base: Value,
           allocation_protect: int) -> dict[str, Value]:
    """The seven MEMORY_BASIC_INFORMATION fields of a private region."""
    return {"BaseAddress": base, "AllocationBase": allocation_base,
            "AllocationProtect": allocation_protect, "RegionSize": size, "State": state,
            "Protect": protect_now, "Type": MEM_PRIVATE}


# -- dlls/kernel32/tests/virtual.c: test_VirtualAlloc ---------------------------------

_VA = f"{K32}: test_VirtualAlloc"
A1 = At("addr1")

K32_VIRTUAL_ALLOC = Case("k32_VirtualAlloc_sequence", (
    alloc(0, 0, MEM_RESERVE, PAGE_NOACCESS, f"{_VA}: 'should fail on zero-sized allocation'",
          error=INVALID_PARAMETER),
    alloc(0, 0xFFFC, MEM_RESERVE, PAGE_NOACCESS, f"{_VA}: addr1 != NULL", save="addr1"),
    query(A1, f"{_VA}: 'test a not committed memory' (7 fields, Protect 0 on NT)",
          **region(A1, 0x10000, MEM_RESERVE, 0, A1, PAGE_NOACCESS)),
    protect(A1, 0xFFFC, PAGE_READONLY, f"{_VA}: 'should fail on a not committed memory'",
            error=INVALID_ADDRESS),
    alloc(A1, 0x1000, MEM_COMMIT, PAGE_NOACCESS, f"{_VA}: addr1 == addr2", returns=A1),
    query(A1, f"{_VA}: 'test a committed memory' (7 fields)",
          **region(A1, 0x1000, MEM_COMMIT, PAGE_NOACCESS, A1, PAGE_NOACCESS)),
    protect(A1, 0xFFFC, PAGE_READONLY, f"{_VA}: 'not the whole range is committed yet'",
            error=INVALID_ADDRESS),
    protect(A1, 0x1000, PAGE_READONLY, f"{_VA}: old_prot == PAGE_NOACCESS", old=PAGE_NOACCESS),
    protect(A1, 0x1000, PAGE_READWRITE, f"{_VA}: old_prot == PAGE_READONLY", old=PAGE_READONLY),
    query(A1, f"{_VA}: RegionSize 0x1000, MEM_COMMIT, PAGE_READWRITE",
          RegionSize=0x1000, State=MEM_COMMIT, Protect=PAGE_READWRITE),
    write(A1, b"\x55" * 20, f"{_VA}: memset(addr1, 0x55, 20)"),
    read(A1, 4, f"{_VA}: *(DWORD *)addr1 == 0x55555555", b"\x55" * 4),
    alloc(A1, 0x1000, MEM_RESET, PAGE_NOACCESS, f"{_VA}: MEM_RESET addr2 == addr1", returns=A1),
    read(A1, 4, f"{_VA}: after MEM_RESET 0x55555555 or 0", b"\x55" * 4, b"\0" * 4),
    query(A1, f"{_VA}: after MEM_RESET RegionSize 0x1000, MEM_COMMIT, PAGE_READWRITE",
          RegionSize=0x1000, State=MEM_COMMIT, Protect=PAGE_READWRITE),
    alloc(At("addr1", 0x1000), 0x1000, MEM_RESET, PAGE_NOACCESS,
          f"{_VA}: MEM_RESET of a reserved page returns addr1 + 0x1000",
          returns=At("addr1", 0x1000)),
    query(At("addr1", 0x1000), f"{_VA}: RegionSize 0xf000, MEM_RESERVE, Protect 0",
          RegionSize=0xF000, State=MEM_RESERVE, Protect=0),
    alloc(At("addr1", 0xF000), 0x2000, MEM_RESET, PAGE_NOACCESS,
          f"{_VA}: MEM_RESET past the allocation fails, ERROR_INVALID_ADDRESS",
          error=INVALID_ADDRESS),
    alloc(0, 0x1000, MEM_RESERVE, 0, f"{_VA}: 'invalid protection values' MEM_RESERVE, 0",
          error=INVALID_PARAMETER),
    alloc(0, 0x1000, MEM_COMMIT, 0, f"{_VA}: MEM_COMMIT, 0", error=INVALID_PARAMETER),
    alloc(A1, 0x1000, MEM_COMMIT, PAGE_READONLY | PAGE_EXECUTE,
          f"{_VA}: PAGE_READONLY | PAGE_EXECUTE", error=INVALID_PARAMETER),
    protect(A1, 0x1000, PAGE_READWRITE | PAGE_EXECUTE_WRITECOPY,
            f"{_VA}: VirtualProtect PAGE_READWRITE | PAGE_EXECUTE_WRITECOPY",
            error=INVALID_PARAMETER),
    protect(A1, 0x1000, 0, f"{_VA}: VirtualProtect 0", error=INVALID_PARAMETER),
    free(A1, 0x10000, 0, f"{_VA}: 'should fail with type 0'", error=INVALID_PARAMETER),
    free(A1, 0, MEM_FREE, f"{_VA}: 'should fail with type MEM_FREE'", error=INVALID_PARAMETER),
    free(A1, 0x10000, MEM_DECOMMIT, f"{_VA}: VirtualFree MEM_DECOMMIT"),
    free(A1, 1, MEM_RELEASE, f"{_VA}: 'if the type is MEM_RELEASE, size must be 0'",
         error=INVALID_PARAMETER),
    free(A1, 0, MEM_RELEASE, f"{_VA}: VirtualFree MEM_RELEASE"),
))

K32_VIRTUAL_ALLOC_64K = Case("k32_VirtualAlloc_64k_alignment", (
    alloc(0, 0x2000, RESERVE_COMMIT, PAGE_EXECUTE_READWRITE,
          f"{_VA}: 'memory returned by VirtualAlloc should be aligned to 64k'",
          save="addr1", aligned=0x10000),
    free(A1, 0, MEM_RELEASE, f"{_VA}: VirtualFree MEM_RELEASE"),
    alloc(A1, 0x1000, RESERVE_COMMIT, PAGE_EXECUTE_READWRITE, f"{_VA}: addr2 == addr1",
          returns=A1),
    alloc(At("addr1", 0x1000), 0x1000, RESERVE_COMMIT, PAGE_EXECUTE_READWRITE,
          f"{_VA}: NtAllocateVirtualMemory 'conflicts because of 64k align' "
          "STATUS_CONFLICTING_ADDRESSES", error=INVALID_ADDRESS),
    alloc(A1, 0x1000, RESERVE_COMMIT | AT_ROUND_TO_PAGE, PAGE_EXECUTE_READWRITE,
          f"{_VA}: 'AT_ROUND_TO_PAGE flag is not supported for VirtualAlloc'",
          error=INVALID_PARAMETER),
    alloc(At("addr1", 0x1000), 0x1000, RESERVE_COMMIT | AT_ROUND_TO_PAGE,
          PAGE_EXECUTE_READWRITE, f"{_VA}: NtAllocateVirtualMemory AT_ROUND_TO_PAGE "
          "STATUS_INVALID_PARAMETER_5", error=INVALID_PARAMETER),
    free(A1, 0, MEM_RELEASE, f"{_VA}: VirtualFree MEM_RELEASE"),
))


# -- dlls/kernel32/tests/virtual.c: test_VirtualProtect -------------------------------

_VP = f"{K32}: test_VirtualProtect"
BASE = At("base")
_ALL_PROTECTIONS = (
    [0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x0D,
     0x0E, 0x0F, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xA0, 0xB0, 0xC0,
     0xD0, 0xE0, 0xF0])
#: td[]'s prot_get: what VirtualProtect(prot_set) leaves (0: it fails).
_PROT_GET = {PAGE_NOACCESS: PAGE_NOACCESS, PAGE_READONLY: PAGE_READONLY,
             PAGE_READWRITE: PAGE_READWRITE, PAGE_EXECUTE: PAGE_EXECUTE,
             PAGE_EXECUTE_READ: PAGE_EXECUTE_READ,
             PAGE_EXECUTE_READWRITE: PAGE_EXECUTE_READWRITE}

_VP_PRELUDE = alloc(0, 0x1000, RESERVE_COMMIT, PAGE_NOACCESS, f"{_VP}: base != NULL",
                    save="base")

K32_VIRTUAL_PROTECT_NULL = Case("k32_VirtualProtect_null_old_protect", (
    _VP_PRELUDE,
    protect(BASE, 0x1000, PAGE_READONLY, f"{_VP}: lpflOldProtect NULL, ERROR_NOACCESS",
            error=NOACCESS, old_pointer=0),
    protect(BASE, 0x1000, PAGE_NOACCESS, f"{_VP}: old_prot == PAGE_NOACCESS",
            old=PAGE_NOACCESS),
    protect(BASE, 0x1000, PAGE_READONLY, f"{_VP}: NtProtectVirtualMemory old NULL, "
            "STATUS_ACCESS_VIOLATION", error=NOACCESS, old_pointer=0),
    protect(BASE, 0x1000, PAGE_NOACCESS, f"{_VP}: NtProtectVirtualMemory old_prot == "
            "PAGE_NOACCESS", old=PAGE_NOACCESS),
))


def _protect_table_case(prot_set: int) -> Case:
    prot_get = _PROT_GET.get(prot_set, 0)
    src = f"{_VP}: td[{prot_set:#04x}]"
    steps = [_VP_PRELUDE,
             query(BASE, f"{src} query before (7 fields)",
                   **region(BASE, 0x1000, MEM_COMMIT, PAGE_NOACCESS, BASE, PAGE_NOACCESS))]
    if prot_get:
        steps += [protect(BASE, 0x1000, prot_set, f"{src} succeeds, old PAGE_NOACCESS",
                          old=PAGE_NOACCESS),
                  query(BASE, f"{src} query after (7 fields)",
                        **region(BASE, 0x1000, MEM_COMMIT, prot_get, BASE, PAGE_NOACCESS))]
    else:
        steps.append(protect(BASE, 0x1000, prot_set, f"{src} fails, ERROR_INVALID_PARAMETER",
                             error=INVALID_PARAMETER))
    steps.append(protect(BASE, 0x1000, PAGE_NOACCESS, f"{src} back to PAGE_NOACCESS",
                         old=prot_get or PAGE_NOACCESS))
    return Case(f"k32_VirtualProtect_td_{prot_set:#04x}", tuple(steps))


def _exec_rw_case(prot: int) -> Case:
    """The second loop: exec_prot in (0, 0x10, 0x20, 0x40, 0x80) | rw_prot in (0, 1, 2, 4, 8)."""
    exec_part, rw_part = prot & 0xF0, prot & 0x0F
    valid = bool(exec_part) != bool(rw_part) and not prot & (PAGE_WRITECOPY |
                                                               PAGE_EXECUTE_WRITECOPY)
    src = f"{_VP}: exec_prot | rw_prot = {prot:#04x}"
    error = 0 if valid else INVALID_PARAMETER
    return Case(f"k32_VirtualProtect_commit_{prot:#04x}", (
        _VP_PRELUDE,
        alloc(BASE, 0x1000, MEM_COMMIT, prot, f"{src}: VirtualAlloc(base, MEM_COMMIT)",
              returns=BASE if valid else None, error=error),
        protect(BASE, 0x1000, prot, f"{src}: VirtualProtect", error=error),
    ))


_EXEC_RW = sorted({e | r for e in (0, 0x10, 0x20, 0x40, 0x80) for r in (0, 1, 2, 4, 8)})


# -- dlls/kernel32/tests/virtual.c: test_VirtualAlloc_protection ----------------------

_VAP = f"{K32}: test_VirtualAlloc_protection"
_WRITABLE = (PAGE_READWRITE, PAGE_EXECUTE_READWRITE)


def _alloc_protection_case(prot: int) -> Case:
    src = f"{_VAP}: td[{prot:#04x}]"
    if prot not in _PROT_GET:
        return Case(f"k32_VirtualAlloc_protection_{prot:#04x}", (
            alloc(0, 0x1000, MEM_COMMIT, prot, f"{src} fails, ERROR_INVALID_PARAMETER",
                  error=INVALID_PARAMETER),))
    steps = [alloc(0, 0x1000, MEM_COMMIT, prot, f"{src} succeeds", save="base"),
             query(BASE, f"{src} query (7 fields)",
                   **region(BASE, 0x1000, MEM_COMMIT, prot, BASE, prot))]
    if prot in _WRITABLE:
        steps += [write(BASE, b"\xfe", f"{src} base[0] = 0xfe"),
                  query(BASE, f"{src} Protect unchanged after the write", Protect=prot)]
    steps.append(alloc(BASE, 0x1000, MEM_COMMIT, prot, f"{src} recommit returns base",
                       returns=BASE))
    return Case(f"k32_VirtualAlloc_protection_{prot:#04x}", tuple(steps))


# -- dlls/ntdll/tests/virtual.c: test_NtAllocateVirtualMemory -------------------------

_NA = f"{NTDLL}: test_NtAllocateVirtualMemory"

NTDLL_ALLOCATE = Case("ntdll_NtAllocateVirtualMemory_64k_conflict", (
    alloc(0, 0x1000, RESERVE_COMMIT, PAGE_EXECUTE_READWRITE,
          f"{_NA}: 'simple allocation should success'", save="addr1"),
    alloc(At("addr1", 0x1000), 0x1000, RESERVE_COMMIT, PAGE_EXECUTE_READWRITE,
          f"{_NA}: 'allocation conflicts because of 64k align' STATUS_CONFLICTING_ADDRESSES",
          error=INVALID_ADDRESS),
    alloc(At("addr1", 0x1000), 0x1000, RESERVE_COMMIT | AT_ROUND_TO_PAGE,
          PAGE_EXECUTE_READWRITE, f"{_NA}: 'AT_ROUND_TO_PAGE flag is not supported'",
          error=INVALID_PARAMETER),
    free(A1, 0, MEM_RELEASE, f"{_NA}: NtFreeVirtualMemory MEM_RELEASE"),
    alloc(0, 0x10000, MEM_RESERVE | MEM_RESERVE_PLACEHOLDER, PAGE_NOACCESS,
          f"{_NA}: 'Placeholder functionality' fails (STATUS_INVALID_PARAMETER in "
          "test_NtAllocateVirtualMemoryEx)", error=INVALID_PARAMETER),
))

NTDLL_FREE = Case("ntdll_NtFreeVirtualMemory_rounding", (
    alloc(0, 0x10000, RESERVE_COMMIT, PAGE_EXECUTE_READWRITE,
          f"{_NA}: 'NtFreeVirtualMemory tests' allocation", save="addr1"),
    free(At("addr1", 0x1FFF), 2, MEM_DECOMMIT, f"{_NA}: MEM_DECOMMIT of 2 bytes at +0x1fff"),
    query(At("addr1", 0x1000), f"{_NA}: size == 0x2000, addr2 == addr1 + 0x1000",
          BaseAddress=At("addr1", 0x1000), RegionSize=0x2000, State=MEM_RESERVE, Protect=0),
    free(At("addr1", 0x1001), 0, MEM_DECOMMIT,
         f"{_NA}: MEM_DECOMMIT size 0 at +0x1001 STATUS_FREE_VM_NOT_AT_BASE",
         error=INVALID_ADDRESS),
    free(At("addr1", 0xFFE), 0, MEM_DECOMMIT, f"{_NA}: MEM_DECOMMIT size 0 at +0xffe succeeds"),
    query(A1, f"{_NA}: addr2 == addr1 (the whole allocation decommitted)",
          BaseAddress=A1, RegionSize=0x10000, State=MEM_RESERVE),
    free(At("addr1", 0x1001), 0, MEM_RELEASE,
         f"{_NA}: MEM_RELEASE at +0x1001 STATUS_FREE_VM_NOT_AT_BASE", error=INVALID_ADDRESS),
    free(At("addr1", 0xFFF), 0, MEM_RELEASE, f"{_NA}: MEM_RELEASE at +0xfff succeeds"),
    query(A1, f"{_NA}: size == 0x10000, addr2 == addr1 (released)", State=MEM_FREE,
          AllocationBase=0),
))


_NF = f"{NTDLL}: test_NtFreeVirtualMemory"

NTDLL_FREE_NOT_AT_BASE = Case("ntdll_NtFreeVirtualMemory_not_at_base", (
    alloc(0, 0x10000, RESERVE_COMMIT, PAGE_READWRITE, f"{_NF}: allocation", save="addr1"),
    free(At("addr1", 0x1000), 0, MEM_RELEASE,
         f"{_NF}: MEM_RELEASE size 0 at + 0x1000 STATUS_FREE_VM_NOT_AT_BASE",
         error=INVALID_ADDRESS),
))

NTDLL_SYSCALLS = Case("ntdll_syscalls_thunk_page", (
    alloc(0, 0x1000, MEM_COMMIT, PAGE_EXECUTE_READWRITE,
          f"{NTDLL}: test_syscalls: 'syscall thunk copy' VirtualAlloc != NULL", save="ptr"),
))

K32_WRITE_WATCH_ALONE = Case("k32_write_watch_type_alone", (
    alloc(0, 0x10000, MEM_WRITE_WATCH, PAGE_READWRITE,
          f"{K32}: test_write_watch: VirtualAlloc(MEM_WRITE_WATCH) alone fails",
          error=INVALID_PARAMETER),
))


# -- modules/rostests/apitests/ntdll/NtAllocateVirtualMemory.c ----------------------------

_CS = f"{ROS}: CheckAlignment/CheckSize"


def _check_size_case(base: int, size: int, expected: int) -> Case:
    src = f"{_CS}({base:#x}, {size:#x}, {expected:#x})"
    rounded = base & ~0xFFFF
    return Case(f"ros_CheckSize_{base:#x}_{size:#x}", (
        alloc(base, size, MEM_RESERVE, PAGE_NOACCESS, f"{src}: base rounded to 64K",
              returns=rounded),
        query(rounded, f"{src}: Size == ExpectedSize",
              **region(rounded, expected, MEM_RESERVE, 0, rounded, PAGE_NOACCESS)),
        free(rounded, 0, MEM_RELEASE, f"{src}: NtFreeVirtualMemory MEM_RELEASE"),
    ))


_CHECK_SIZES = ((0x50000000, 0x0001, 0x1000), (0x50008000, 0x0001, 0x9000),
                (0x50000010, 0x1000, 0x2000), (0x50010000, 0x2000, 0x2000),
                (0x5000FFFF, 0x3000, 0x13000), (0x50001010, 0x7000, 0x9000),
                (0x50001010, 0xC000, 0xE000))

_CA = f"{ROS}: CheckAlignment"
_NOT_ALLOCATED = ("(NtFreeVirtualMemory size 0x1000: STATUS_MEMORY_NOT_ALLOCATED; "
                  "as VirtualFree size 0)")

ROS_ALIGNMENT = Case("ros_CheckAlignment", (
    alloc(0x50001010, 0x1000, MEM_RESERVE, PAGE_NOACCESS,
          f"{_CA}: 'Reserve memory not aligned to allocation granularity'",
          returns=0x50000000),
    query(0x50000000, f"{_CA}: Size == 0x3000", RegionSize=0x3000, State=MEM_RESERVE),
    alloc(0x50008000, 0x1000, MEM_RESERVE, PAGE_NOACCESS,
          f"{_CA}: 'Try to reserve again in the same 64k region' "
          "STATUS_CONFLICTING_ADDRESSES", error=INVALID_ADDRESS),
    alloc(0x50002000, 0x1000, MEM_COMMIT, PAGE_NOACCESS, f"{_CA}: 'Commit memory'",
          returns=0x50002000),
    query(0x50002000, f"{_CA}: Size == 0x1000", RegionSize=0x1000, State=MEM_COMMIT,
          Protect=PAGE_NOACCESS),
    alloc(0x50002000, 0x1000, MEM_COMMIT, PAGE_READWRITE,
          f"{_CA}: 'Commit the same address again with a different protection'",
          returns=0x50002000),
    query(0x50002000, f"{_CA}: Size == 0x1000", RegionSize=0x1000, Protect=PAGE_READWRITE),
    alloc(0x50003000, 0x1000, MEM_COMMIT, PAGE_NOACCESS,
          f"{_CA}: 'Commit memory at a too high address' STATUS_CONFLICTING_ADDRESSES",
          error=INVALID_ADDRESS),
    free(0x50000000, 0x3000, MEM_DECOMMIT,
         f"{_CA}: 'Decommit the memory, even those pages that were not committed'"),
    free(0x50010000, 0, MEM_RELEASE, f"{_CA}: 'release memory in a different 64k region' "
         + _NOT_ALLOCATED, error=INVALID_ADDRESS),
    free(0x50008000, 0, MEM_RELEASE, f"{_CA}: 'same 64k region at a different address' "
         + _NOT_ALLOCATED, error=INVALID_ADDRESS),
    free(0x50000000, 0, MEM_RELEASE, f"{_CA}: 'Release the memory'"),
    alloc(0x50004080, 0x1000, RESERVE_COMMIT, PAGE_READWRITE,
          f"{_CA}: 'Reserve and commit at once'", returns=0x50000000),
    query(0x50000000, f"{_CA}: Size == 0x6000",
          **region(0x50000000, 0x6000, MEM_COMMIT, PAGE_READWRITE, 0x50000000, PAGE_READWRITE)),
    write(0x50000000, b"\x01\0\0\0", f"{_CA}: *(int*)BaseAddress = 1, no exception"),
    write(0x50004080, b"\x01\0\0\0", f"{_CA}: *(int*)0x50004080 = 1, no exception"),
    free(0x50000000, 0, MEM_RELEASE, f"{_CA}: 'Release the memory'"),
))

_AV = f"{ROS}: CheckAdjacentVADs"

ROS_ADJACENT = Case("ros_CheckAdjacentVADs", (
    alloc(0x50000000, 0x10000, MEM_RESERVE, PAGE_NOACCESS, f"{_AV}: 'Reserve a full 64k region'",
          returns=0x50000000),
    alloc(0x50020000, 0x10000, MEM_RESERVE, PAGE_NOACCESS,
          f"{_AV}: 'Reserve another 64k region, but with 64k between'", returns=0x50020000),
    alloc(0x50010000, 0x10000, MEM_RESERVE, PAGE_NOACCESS, f"{_AV}: 'Reserve the part in the "
          "middle'", returns=0x50010000),
    alloc(0x50004000, 0x10000, MEM_COMMIT, PAGE_NOACCESS,
          f"{_AV}: 'Try to commit memory covering 2 allocations' "
          "STATUS_CONFLICTING_ADDRESSES", error=INVALID_ADDRESS),
    alloc(0x50000000, 0x1000, MEM_COMMIT, PAGE_READWRITE, f"{_AV}: 'Commit a page'",
          returns=0x50000000),
    alloc(0x50002000, 0x1000, MEM_COMMIT, PAGE_NOACCESS, f"{_AV}: 'Commit another page'",
          returns=0x50002000),
    write(0x50000000, b"\x01\0\0\0", f"{_AV}: write to 0x50000000, no exception"),
    read(0x50002000, 4, f"{_AV}: read of 0x50002000 STATUS_ACCESS_VIOLATION", error=NOACCESS),
    alloc(0x50000000, 0x3000, MEM_COMMIT, PAGE_READONLY,
          f"{_AV}: 'Allocate 3 pages, on top of the previous 2'", returns=0x50000000),
    write(0x50000000, b"\x01\0\0\0", f"{_AV}: write to READONLY STATUS_ACCESS_VIOLATION",
          error=NOACCESS),
    alloc(0x5000F000, 0x1000, MEM_COMMIT, PAGE_READWRITE,
          f"{_AV}: 'Commit a page at the end of the first region'", returns=0x5000F000),
    query(0x5000F700, f"{_AV}: NtQueryVirtualMemory(0x5000F700) (7 fields)",
          **region(0x5000F000, 0x1000, MEM_COMMIT, PAGE_READWRITE, 0x50000000, PAGE_NOACCESS)),
    free(0x50000000, 0, MEM_RELEASE, f"{_AV}: release 0x50000000 (size 0x10000, the whole)"),
    free(0x50010000, 0, MEM_RELEASE, f"{_AV}: release 0x50010000 (size 0x10000, the whole)"),
    free(0x50020000, 0, MEM_RELEASE, f"{_AV}: release 0x50020000 (size 0x10000, the whole)"),
    alloc(0x50000000, 0x30000, MEM_RESERVE, PAGE_NOACCESS, f"{_AV}: 'Reserve 3 full 64k region'",
          returns=0x50000000),
))

_ST = f"{ROS}: START_TEST"

ROS_LOW = Case("ros_low_addresses", (
    alloc(0xF000, 0x1000, MEM_RESERVE, PAGE_READWRITE,
          f"{_ST}: 'Reserve memory below 0x10000' STATUS_INVALID_PARAMETER_2",
          error=INVALID_PARAMETER),
    alloc(0x10000, 0x1000, MEM_RESERVE, PAGE_READWRITE,
          f"{_ST}: 'Reserve memory at 0x10000' STATUS_CONFLICTING_ADDRESSES",
          error=INVALID_ADDRESS),
))


_SR = f"{ROS}: START_TEST stress"
#: Runs of the stress loop ported (the source runs 32 and skips the rest once an
#: allocation fails; Size1 grows by half each run, past this machine's memory).
STRESS_RUNS = 16


def _pattern(size: int, inverted: bool) -> bytes:
    """AccessMemory1 (LOBYTE(i)) or AccessMemory2 (UCHAR_MAX - LOBYTE(i))."""
    return bytes((255 - (i & 0xFF)) if inverted else (i & 0xFF) for i in range(size))


class _Buffer(NamedTuple):
    name: str
    user: int  # UserBuffer - AllocationStart
    size: int  # AllocationSize
    data: int  # DataSize


def _allocate(data: int, name: str, steps: list[Step]) -> _Buffer:
    """Allocate(): reserve, commit all but the last page, zeros, fill, header."""
    size = -(-(data + 0x1000 + 8) // 0x1000) * 0x1000
    committed = size - 0x1000
    user = size - 0x1000 - data
    base = At(name)
    steps += [
        alloc(0, size, MEM_RESERVE, PAGE_NOACCESS, f"{_SR}: Allocate reserve NT_SUCCESS",
              save=name),
        alloc(base, committed, MEM_COMMIT, PAGE_READWRITE, f"{_SR}: Allocate commit NT_SUCCESS",
              returns=base),
        read(base, committed, f"{_SR}: ASSERT(RtlCompareMemoryUlong(FirstPageStart, Size, 0) "
             "== Size)", bytes(committed)),
        write(base, b"\xae" * user, f"{_SR}: RtlFillMemory(FirstPageStart, ..., 0xae)"),
        write(At(name, user), bytes(data), f"{_SR}: RtlZeroMemory(UserBuffer, DataSize)"),
        write(At(name, user - 8), struct.pack("<II", size, data), f"{_SR}: the size words"),
        read(At(name, user - 8), 8, f"{_SR}: ValidateAllocations ASSERTs",
             struct.pack("<II", size, data)),
    ]
    return _Buffer(name, user, size, data)


def _free(buffer: _Buffer, steps: list[Step]) -> None:
    steps += [
        write(At(buffer.name, buffer.user), b"\xbe" * buffer.data,
              f"{_SR}: Free RtlFillMemory(UserBuffer, DataSize, 0xbe)"),
        write(At(buffer.name, buffer.user - 8), struct.pack("<II", 0xFAFBFCFD, 0),
              f"{_SR}: Free size words"),
        free(At(buffer.name), 0, MEM_RELEASE, f"{_SR}: Free ASSERT(Status == STATUS_SUCCESS)"),
    ]


def _check(buffer: _Buffer, length: int, inverted: bool, steps: list[Step]) -> None:
    which = 2 if inverted else 1
    steps.append(read(At(buffer.name, buffer.user), length,
                      f"{_SR}: ok(CheckMemory{which}(...) == TRUE)", _pattern(length, inverted)))


def _access(buffer: _Buffer, length: int, inverted: bool, steps: list[Step]) -> None:
    which = 2 if inverted else 1
    steps.append(write(At(buffer.name, buffer.user), _pattern(length, inverted),
                       f"{_SR}: AccessMemory{which}"))


def _reallocate(old: _Buffer, new_data: int, name: str, inverted: bool,
                steps: list[Step]) -> _Buffer:
    new = _allocate(new_data, name, steps)
    steps.append(read(At(old.name, old.user - 4), 4, f"{_SR}: ReAllocate ASSERT(old DataSize)",
                      struct.pack("<I", old.data)))
    copied = min(old.data, new_data)
    steps.append(write(At(new.name, new.user), _pattern(copied, inverted),
                       f"{_SR}: ReAllocate RtlCopyMemory"))
    _free(old, steps)
    return new


def _stress_case() -> Case:
    steps: list[Step] = []
    size1, size2 = 32, 128
    mem1 = _allocate(size1, "mem1_0", steps)
    _access(mem1, size1, False, steps)
    mem2 = _allocate(size2, "mem2_0", steps)
    _access(mem2, size2, True, steps)
    for run in range(1, STRESS_RUNS + 1):
        _check(mem1, size1, False, steps)
        mem1 = _reallocate(mem1, size1 * 3 // 2, f"mem1_{run}", False, steps)
        _check(mem1, size1, False, steps)
        size1 = size1 * 3 // 2
        _access(mem1, size1, False, steps)
        _check(mem2, size2, True, steps)
        mem2 = _reallocate(mem2, size2 + 128, f"mem2_{run}", True, steps)
        _check(mem2, size2, True, steps)
        size2 += 128
        _access(mem2, size2, True, steps)
    _check(mem2, size2, True, steps)
    _free(mem2, steps)
    _check(mem1, size1, False, steps)
    _free(mem1, steps)
    return Case("ros_stress_reallocate", tuple(steps))


CASES: tuple[Case, ...] = (
    K32_VIRTUAL_ALLOC, K32_VIRTUAL_ALLOC_64K, K32_VIRTUAL_PROTECT_NULL,
    *(_protect_table_case(p) for p in _ALL_PROTECTIONS),
    *(_exec_rw_case(p) for p in _EXEC_RW),
    *(_alloc_protection_case(p) for p in _ALL_PROTECTIONS),
    K32_WRITE_WATCH_ALONE,
    NTDLL_ALLOCATE, NTDLL_FREE, NTDLL_FREE_NOT_AT_BASE, NTDLL_SYSCALLS,
    *(_check_size_case(*row) for row in _CHECK_SIZES),
    ROS_ALIGNMENT, ROS_ADJACENT, ROS_LOW, _stress_case(),
)


# -- the runner -----------------------------------------------------------------------

#: Where VirtualQuery writes its structure and VirtualProtect the old protection:
#: the top of the process's committed stack (USER_TOP - 64 and USER_TOP - 4).
QUERY_BUFFER = USER_TOP - 64
OLD_PROTECT = USER_TOP - 4


def perform(system: SystemCalls, step: Step, saved: dict[str, int]) -> tuple[bool, Any, int]:
    """Run one step: (succeeded, the value to compare, the last error)."""
    space = system.current
    assert space is not None
    args = [resolve(a, saved) for a in step.args]
    if step.call == "VirtualAlloc":
        result = system.SyscallVirtualAlloc(*args)
        return result != 0, result, system.last_error
    if step.call == "VirtualFree":
        return system.SyscallVirtualFree(*args) == 1, None, system.last_error
    if step.call == "VirtualProtect":
        pointer = args[3] if len(args) == 4 else OLD_PROTECT
        ok = system.SyscallVirtualProtect(*args[:3], pointer) == 1
        old = space.ReadUserMemory(OLD_PROTECT, 4) if ok else None
        return ok, int.from_bytes(old, "little") if isinstance(old, bytes) else None, \
            system.last_error
    if step.call == "VirtualQuery":
        ok = system.SyscallVirtualQuery(args[0], QUERY_BUFFER, 28) == 28
        raw = space.ReadUserMemory(QUERY_BUFFER, 28)
        info = MemoryBasicInformation(*struct.unpack("<7I", raw)) if ok and \
            isinstance(raw, bytes) else None
        return ok, info, system.last_error
    if step.call == "Write":
        return space.WriteUserMemory(args[0], args[1]) is True, None, space.last_error
    data = space.ReadUserMemory(args[0], args[1])
    return isinstance(data, bytes), data, space.last_error


def check(system: SystemCalls, step: Step, saved: dict[str, int]) -> None:
    space = system.current
    assert space is not None
    before = snapshot(space)
    ok, value, error = perform(system, step, saved)
    where = f"{step.call}{step.args} ({step.source})"
    assert ok == step.ok, f"{where}: {'succeeded' if ok else f'failed with {error}'}"
    if not ok:
        assert error == step.error, f"{where}: last error {error}, expected {step.error}"
        assert snapshot(space) == before, f"{where}: a failure changed the state"
        return
    if step.save:
        saved[step.save] = value
    if step.aligned:
        assert value % step.aligned == 0, f"{where}: {value:#x} not aligned"
    if isinstance(step.returns, tuple) and not isinstance(step.returns, At):
        assert value in step.returns, f"{where}: {value!r}, expected one of {step.returns!r}"
    elif step.returns is not None:
        assert value == resolve(step.returns, saved), f"{where}: returned {value!r}"
    for name, expected in step.fields:
        seen = getattr(value, name)
        assert seen == resolve(expected, saved), f"{where}: {name} {seen:#x}"


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_windows_virtual(case: Case) -> None:
    run_case(case.steps, check)


__all__ = ["CASES", "NT_TO_WIN32", "At", "Case", "Step", "test_windows_virtual"]
