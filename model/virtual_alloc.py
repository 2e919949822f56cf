"""The Windows-style calls on a process's address space (seed section 4, issue 4).

VirtualAllocProcessMemory, VirtualFreeProcessMemory, VirtualQueryProcessMemory
and VirtualProtectProcessMemory (the seed's "implement memory protection"). A
failure returns NULL / FALSE / 0, sets ``space.last_error`` and changes
nothing. Rules, each with its source (Microsoft Learn pages VirtualAlloc,
VirtualFree, VirtualQuery, VirtualProtect, MEMORY_BASIC_INFORMATION, "Memory
Protection Constants"; Wine's dlls/kernel32/tests/virtual.c, read in the copy
ReactOS syncs (modules/rostests/winetests/kernel32/virtual.c), and
dlls/ntdll/tests/virtual.c record what Windows returns; their asserts run as
data in tests/conformance/windows_virtual.py):

- Checks in order: space live; argument types (ERROR_INVALID_PARAMETER);
  size 0 -> ERROR_INVALID_PARAMETER (Wine test: "VirtualAlloc should fail on
  zero-sized allocation"); allocation type must hold MEM_COMMIT and/or
  MEM_RESERVE, optionally MEM_TOP_DOWN, nothing else, or be MEM_RESET or
  MEM_RESET_UNDO alone (ERROR_INVALID_PARAMETER; Wine: AT_ROUND_TO_PAGE and
  MEM_WRITE_WATCH alone refused, ntdll test: MEM_RESERVE_PLACEHOLDER refused);
  the protection one of the seed's six (ERROR_INVALID_PARAMETER; combinations
  and modifiers are not supported); a range past 4 GiB or reaching kernel space
  at 0xC0000000 -> ERROR_INVALID_PARAMETER (NtAllocateVirtualMemory's
  STATUS_INVALID_PARAMETER above the highest user address); below user space
  (the kernel's first 4 MB) -> ERROR_INVALID_ADDRESS (in use by the system),
  except a reservation at a non-NULL address below MM_LOWEST_USER_ADDRESS
  0x10000: ERROR_INVALID_PARAMETER (ReactOS apitests NtAllocateVirtualMemory.c,
  START_TEST: 0xf000 gives STATUS_INVALID_PARAMETER_2, 0x10000
  STATUS_CONFLICTING_ADDRESSES). The protection is checked for every type, the
  MEM_RESET ones too (The Old New Thing, "Why do I have to pass a valid page
  protection value to VirtualAlloc even if it ignores it?"; Wine test_VirtualAlloc:
  protection 0 -> ERROR_INVALID_PARAMETER).
- MEM_RESET 0x80000 and MEM_RESET_UNDO 0x1000000 (VirtualAlloc docs): each alone
  (any other bit -> ERROR_INVALID_PARAMETER, "cannot be used with any other
  value"); flProtect ignored once valid; every page of [addr, addr+size) in one
  allocation, committed or only reserved (Wine's test_VirtualAlloc resets a
  reserved page and succeeds, and a range past the allocation's end fails with
  ERROR_INVALID_ADDRESS; free memory likewise); views and managed allocations
  too (Wine's test_MapViewOfFile resets a view). Returns the range's first page;
  no page's state, protection or frame changes. Contents (decision): Windows may
  discard reset pages (they read back as zeros) or keep them until trimmed; the
  model keeps them, as Windows does while the page stays in the working set
  (Wine: "*(DWORD *)addr1 == 0x55555555 || *(DWORD *)addr1 == 0"). So
  MEM_RESET_UNDO always finds the data intact and succeeds: the docs' failure
  ("at least some of the data ... replaced with zeroes") never happens here.
- Reserving (MEM_RESERVE, or MEM_COMMIT with lpAddress NULL, which "reserves
  and commits" per VirtualAlloc's docs): the address is rounded down to 64 KB,
  the end up to a page ("all pages that contain one or more bytes in the
  range"); the range must be free, else ERROR_INVALID_ADDRESS. NULL: the
  lowest free 64 KB-aligned range above the brk area, MEM_TOP_DOWN the highest;
  none -> ERROR_NOT_ENOUGH_MEMORY. MEM_RESERVE|MEM_COMMIT commits the whole
  reserved range. Returns the reservation's base.
- Committing at an address: page granular; every page of the range must lie in
  one allocation (ERROR_INVALID_ADDRESS otherwise, also for free memory).
  Committing committed pages does not fail ("An attempt to commit a page that is
  already committed does not cause the function to fail") and gives them the new
  protection, as Wine does. Returns the first page's address.
- Frames are taken at commit (eager commit charge); too few ->
  ERROR_NOT_ENOUGH_MEMORY, nothing changes.
- VirtualFree: dwFreeType exactly MEM_DECOMMIT or MEM_RELEASE (0 or both ->
  ERROR_INVALID_PARAMETER, Wine test and VS warning C6331). MEM_RELEASE: dwSize
  must be 0 (ERROR_INVALID_PARAMETER, Wine test) and lpAddress in the first page
  of an allocation (ERROR_INVALID_ADDRESS otherwise; Windows'
  STATUS_FREE_VM_NOT_AT_BASE and STATUS_MEMORY_NOT_ALLOCATED both map to it);
  lpAddress is rounded down to its page first (Wine dlls/ntdll/tests/virtual.c,
  test_NtAllocateVirtualMemory: base + 0xfff releases, base + 0x1001 is
  STATUS_FREE_VM_NOT_AT_BASE); the whole reservation goes.
  MEM_DECOMMIT: dwSize 0 decommits the whole allocation whose first page holds
  lpAddress (same test: base + 0xffe decommits, base + 0x1001 is refused),
  otherwise the pages of [addr, addr+size), which must lie in one allocation
  (ERROR_INVALID_ADDRESS); pages stay reserved; decommitting reserved pages
  succeeds (Wine test decommits 0x10000 bytes of which one page was committed).
- VirtualQuery: the run from the page of lpAddress of pages with identical
  state and protection inside one allocation: BaseAddress (page), AllocationBase,
  AllocationProtect, RegionSize, State, Protect (0 for reserved pages, Wine
  test "NT reports Protect == 0 for a not committed memory block"), Type. Free
  memory: State MEM_FREE, AllocationBase 0, AllocationProtect 0, Protect
  PAGE_NOACCESS, Type 0, RegionSize up to the next allocation (or the top of
  user space). Returns 28 = sizeof(MEMORY_BASIC_INFORMATION) on 32-bit, 0 with
  ERROR_INVALID_PARAMETER outside user space (above lpMaximumApplicationAddress).
- VirtualProtect: the pages of [addr, addr+size) must be committed and in one
  allocation (ERROR_INVALID_ADDRESS, Wine test "should fail on a not committed
  memory"); size 0 -> ERROR_INVALID_PARAMETER; returns the old protection of the
  first page ("lpflOldProtect ... the previous access protection value of the
  first page").
- Allocations Windows did not make through VirtualAlloc (decision): mmap pieces
  are treated as private allocations (commit, decommit, protect, release whole
  piece from its base). The image, the stack and the brk area cannot be freed
  or decommitted (ERROR_INVALID_PARAMETER: Wine refuses VirtualFree of a view
  VirtualAlloc did not create); their pages may be re-protected and reserved
  stack pages committed. The process heap cannot be freed either, and its pages
  belong to the heap manager: commit and protect -> ERROR_ACCESS_DENIED.
- Views (issue 5, shm_common; a model view is a SEC_COMMIT section's, every
  page committed): VirtualFree, MEM_DECOMMIT or MEM_RELEASE ->
  ERROR_INVALID_PARAMETER (Wine test_MapViewOfFile: VirtualFree(ptr, 0x10000,
  MEM_DECOMMIT) of a view fails so; a view goes only with UnmapViewOfFile);
  VirtualAlloc(MEM_COMMIT) on a file view's pages -> ERROR_ACCESS_DENIED
  whatever the protection (Wine test_mapping's file pass, for every page_prot
  of every SEC_COMMIT view; test_CreateFileMapping_protection likewise); on a
  block's view (a pagefile-backed section's, its pages committed already) it
  re-protects the pages as VirtualProtect does, within the view's
  AllocationProtect, else ERROR_INVALID_PARAMETER, and returns the first page
  (test_mapping's anonymous pass: is_compatible_protection(view[j].prot,
  page_prot[k]) decides, VirtualQuery then reports Protect == page_prot[k]).
  VirtualProtect on a view's pages succeeds when the new protection
  allows nothing the view's own (AllocationProtect) does not, the page's old
  protection returned, and VirtualQuery then reports the protection per page
  (Type MEM_MAPPED, AllocationProtect unchanged); otherwise
  ERROR_INVALID_PARAMETER (Wine test_mapping, is_compatible_protection;
  model/views.py may_protect). The PAGE_WRITECOPY values, which Windows
  accepts on a readable view, are no protection the model has (the seed's six
  values): ERROR_INVALID_PARAMETER, as for private pages.
"""

from __future__ import annotations

from typing import NamedTuple

from model.address_space import AddressSpace, Allocation, on_a_space
from model.user_layout import is_valid_protect, page_ceil
from model.views import may_protect
from model.x86_paging import is_u32
from spec.abi import (
    ALLOCATION_GRANULARITY,
    MANAGED_ORIGINS,
    MEM_COMMIT,
    MEM_DECOMMIT,
    MEM_FREE,
    MEM_MAPPED,
    MEM_PRIVATE,
    MEM_RELEASE,
    MEM_RESERVE,
    MEM_RESET,
    MEM_RESET_UNDO,
    MEM_TOP_DOWN,
    MEMORY_BASIC_INFORMATION_SIZE,
    MM_LOWEST_USER_ADDRESS,
    NULL,
    ORIGIN_MMAP,
    ORIGIN_PROCESS_HEAP,
    ORIGIN_SHARED_MEMORY,
    ORIGIN_VIRTUAL_ALLOC,
    PAGE_NOACCESS,
    PAGE_SHIFT,
    PAGE_SIZE,
    USER_BASE,
    USER_TOP,
    ErrorCode,
)

_LIMIT = 1 << 32
_SUCCESS = ErrorCode.ERROR_SUCCESS


class MemoryBasicInformation(NamedTuple):
    """MEMORY_BASIC_INFORMATION with Microsoft's field names."""

    BaseAddress: int
    AllocationBase: int
    AllocationProtect: int
    RegionSize: int
    State: int
    Protect: int
    Type: int


#: VirtualQuery's failure: nothing written, no region.
_NO_REGION: tuple[int, MemoryBasicInformation | None] = (0, None)


@on_a_space(NULL)
def VirtualAllocProcessMemory(space: AddressSpace, address: int, size: int,
                              allocation_type: int, protect: int) -> int:
    """Reserve and/or commit pages: the base address, or NULL (0)."""
    code = _arguments(space, address, size, allocation_type, protect)
    if code == _SUCCESS:
        code = _range_error(address, size)
    if code == _SUCCESS and allocation_type not in _RESET_TYPES and (
            allocation_type & ~(MEM_COMMIT | MEM_RESERVE | MEM_TOP_DOWN)
            or not allocation_type & (MEM_COMMIT | MEM_RESERVE)):
        code = ErrorCode.ERROR_INVALID_PARAMETER
    if code == _SUCCESS and not is_valid_protect(protect):
        code = ErrorCode.ERROR_INVALID_PARAMETER
    if code == _SUCCESS and allocation_type & MEM_RESERVE and 0 < address < MM_LOWEST_USER_ADDRESS:
        code = ErrorCode.ERROR_INVALID_PARAMETER
    if code != _SUCCESS:
        return space._fail(code, NULL)
    if allocation_type in _RESET_TYPES:
        return _reset(space, address, size)
    commit = bool(allocation_type & MEM_COMMIT)
    if allocation_type & MEM_RESERVE or address == 0:
        if address:
            base = address & ~(ALLOCATION_GRANULARITY - 1)
            end = page_ceil(address + size)
            if base < USER_BASE or not space.is_free(base, end):
                return space._fail(ErrorCode.ERROR_INVALID_ADDRESS, NULL)
        else:
            length = page_ceil(size)
            if allocation_type & MEM_TOP_DOWN:
                base = space.find_top_down(length, space.windows_floor(), USER_TOP,
                                           ALLOCATION_GRANULARITY)
            else:
                base = space.find_bottom_up(length, space.windows_floor(), USER_TOP,
                                            ALLOCATION_GRANULARITY)
            if base < 0:
                return space._fail(ErrorCode.ERROR_NOT_ENOUGH_MEMORY, NULL)
            end = base + length
        if commit and space.commit_cost(base, end, protect) > space.free_frames():
            return space._fail(ErrorCode.ERROR_NOT_ENOUGH_MEMORY, NULL)
        space.reserve(base, end - base, protect, ORIGIN_VIRTUAL_ALLOC, MEM_PRIVATE)
        if commit:
            space.commit(base, end, protect)
        return space._ok(base)
    start, end = address & ~(PAGE_SIZE - 1), page_ceil(address + size)
    allocation = _allocation_of(space, start, end)
    if allocation is None:
        return space._fail(ErrorCode.ERROR_INVALID_ADDRESS, NULL)
    if allocation.origin == ORIGIN_SHARED_MEMORY:
        return _commit_block_view(space, allocation, start, end, protect)
    if allocation.origin in MANAGED_ORIGINS:
        return space._fail(ErrorCode.ERROR_ACCESS_DENIED, NULL)
    if space.commit_cost(start, end, protect) > space.free_frames():
        return space._fail(ErrorCode.ERROR_NOT_ENOUGH_MEMORY, NULL)
    space.commit(start, end, protect, None, allocation.type == MEM_MAPPED)
    return space._ok(start)


@on_a_space(False)
def VirtualFreeProcessMemory(space: AddressSpace, address: int, size: int,
                             free_type: int) -> bool:
    """Decommit pages or release a whole reservation: TRUE, or FALSE."""
    code = _arguments(space, address, size, free_type)
    if code == _SUCCESS and free_type not in (MEM_DECOMMIT, MEM_RELEASE):
        code = ErrorCode.ERROR_INVALID_PARAMETER
    if code == _SUCCESS and free_type == MEM_RELEASE and size != 0:
        code = ErrorCode.ERROR_INVALID_PARAMETER
    if code == _SUCCESS and size:
        code = _range_error(address, size)
    if code != _SUCCESS:
        return space._fail(code, False)
    if free_type == MEM_RELEASE or size == 0:
        start = address & ~(PAGE_SIZE - 1)
        allocation = space.allocations.get(start)
        end = start + (allocation.size if allocation is not None else 0)
    else:
        start, end = address & ~(PAGE_SIZE - 1), page_ceil(address + size)
        allocation = _allocation_of(space, start, end)
    if allocation is None:
        return space._fail(ErrorCode.ERROR_INVALID_ADDRESS, False)
    if allocation.origin not in (ORIGIN_VIRTUAL_ALLOC, ORIGIN_MMAP):
        return space._fail(ErrorCode.ERROR_INVALID_PARAMETER, False)
    if free_type == MEM_RELEASE:
        space.release(allocation)
    else:
        space.decommit(start, end)
    return space._ok(True)


@on_a_space(_NO_REGION)
def VirtualQueryProcessMemory(space: AddressSpace,
                              address: int) -> tuple[int, MemoryBasicInformation | None]:
    """(28, the region holding address) or (0, None)."""
    code = space.status()
    if code == _SUCCESS and not is_u32(address):
        code = ErrorCode.ERROR_INVALID_PARAMETER
    if code == _SUCCESS and not USER_BASE <= address < USER_TOP:
        code = ErrorCode.ERROR_INVALID_PARAMETER
    if code != _SUCCESS:
        return space._fail(code, (0, None))
    base = address & ~(PAGE_SIZE - 1)
    record = space.pages.get(base >> PAGE_SHIFT)
    if record is None:
        info = MemoryBasicInformation(base, 0, 0, space.next_base(base) - base, MEM_FREE,
                                      PAGE_NOACCESS, 0)
        return space._ok((MEMORY_BASIC_INFORMATION_SIZE, info))
    allocation = space.allocations[record.allocation_base]
    pages = space.pages
    vpn, last = base >> PAGE_SHIFT, allocation.end >> PAGE_SHIFT
    state, protect = record.state, record.protect
    end = next((page for page in range(vpn + 1, last)
                if pages[page].state != state or pages[page].protect != protect),
               max(last, vpn + 1))
    info = MemoryBasicInformation(base, allocation.base, allocation.allocation_protect,
                                  (end - vpn) << PAGE_SHIFT, state, protect, allocation.type)
    return space._ok((MEMORY_BASIC_INFORMATION_SIZE, info))


@on_a_space((False, 0))
def VirtualProtectProcessMemory(space: AddressSpace, address: int, size: int,
                                new_protect: int) -> tuple[bool, int]:
    """Change the protection of committed pages: (TRUE, old protection of the first page)
    or (FALSE, 0)."""
    code = _arguments(space, address, size, new_protect)
    if code == _SUCCESS and (size == 0 or not is_valid_protect(new_protect)):
        code = ErrorCode.ERROR_INVALID_PARAMETER
    if code == _SUCCESS:
        code = _range_error(address, size)
    if code != _SUCCESS:
        return space._fail(code, (False, 0))
    start, end = address & ~(PAGE_SIZE - 1), page_ceil(address + size)
    allocation = _allocation_of(space, start, end)
    pages = space.pages
    if allocation is None or any(pages[vpn].state != MEM_COMMIT
                                 for vpn in range(start >> PAGE_SHIFT, end >> PAGE_SHIFT)):
        return space._fail(ErrorCode.ERROR_INVALID_ADDRESS, (False, 0))
    if allocation.origin == ORIGIN_PROCESS_HEAP:
        return space._fail(ErrorCode.ERROR_ACCESS_DENIED, (False, 0))
    old = pages[start >> PAGE_SHIFT].protect
    code = _protect_error(space, allocation, start, end, new_protect)
    if code != _SUCCESS:
        return space._fail(code, (False, 0))
    space.set_protect(start, end, new_protect, None)
    return space._ok((True, old))


# -- private ------------------------------------------------------------------

def _protect_error(space: AddressSpace, allocation: Allocation, start: int, end: int,
                   protect: int) -> ErrorCode:
    """Whether the committed pages [start, end) of allocation may take protect: a view's
    only within its AllocationProtect (ERROR_INVALID_PARAMETER, model/views.py
    may_protect), and the page-table frames it needs must be free
    (ERROR_NOT_ENOUGH_MEMORY)."""
    if allocation.base in space.views and not may_protect(protect,
                                                          allocation.allocation_protect):
        return ErrorCode.ERROR_INVALID_PARAMETER
    if space.protect_cost(start, end, protect) > space.free_frames():
        return ErrorCode.ERROR_NOT_ENOUGH_MEMORY
    return _SUCCESS


def _commit_block_view(space: AddressSpace, allocation: Allocation, start: int, end: int,
                       protect: int) -> int:
    """VirtualAlloc(MEM_COMMIT) on pages of a block's view (a pagefile-backed SEC_COMMIT
    section's, every page committed already): they take protect as VirtualProtect
    gives it (_protect_error); returns start (Wine test_mapping, anonymous pass)."""
    code = _protect_error(space, allocation, start, end, protect)
    if code != _SUCCESS:
        return space._fail(code, NULL)
    space.set_protect(start, end, protect, None)
    return space._ok(start)


#: The allocation types that change no page's state (each alone, no other bit).
_RESET_TYPES = (MEM_RESET, MEM_RESET_UNDO)


def _reset(space: AddressSpace, address: int, size: int) -> int:
    """MEM_RESET / MEM_RESET_UNDO on checked arguments: the first page of the range,
    every page of which lies in one allocation (else ERROR_INVALID_ADDRESS); no page's
    state, protection, frame or contents changes (the model keeps the data)."""
    start, end = address & ~(PAGE_SIZE - 1), page_ceil(address + size)
    if _allocation_of(space, start, end) is None:
        return space._fail(ErrorCode.ERROR_INVALID_ADDRESS, NULL)
    return space._ok(start)



def _arguments(space: AddressSpace, *values: int) -> ErrorCode:
    """The space's status, then ERROR_INVALID_PARAMETER for a non-32-bit argument."""
    code = space.status()
    if code == _SUCCESS and not all(is_u32(value) for value in values):
        return ErrorCode.ERROR_INVALID_PARAMETER
    return code


def _range_error(address: int, size: int) -> ErrorCode:
    """Size 0, a range past 4 GiB or into kernel space at 0xC0000000: INVALID_PARAMETER."""
    if size == 0 or address + size > _LIMIT or page_ceil(address + size) > USER_TOP:
        return ErrorCode.ERROR_INVALID_PARAMETER
    return _SUCCESS


def _allocation_of(space: AddressSpace, start: int, end: int) -> Allocation | None:
    """The one allocation holding every page of [start, end), or None."""
    allocation = space.allocation_at(start)
    return allocation if allocation is not None and end <= allocation.end else None


__all__ = ["MemoryBasicInformation", "VirtualAllocProcessMemory", "VirtualFreeProcessMemory",
           "VirtualProtectProcessMemory", "VirtualQueryProcessMemory"]
