"""What shared-memory and file views have in common (issue 5, shm_common).

Both managers map a view the same way (AddressSpace.map_view /
unmap_view); this module holds the rules they share, with their sources:

- A view's protection is one of PAGE_READONLY, PAGE_READWRITE,
  PAGE_EXECUTE_READ, PAGE_EXECUTE_READWRITE: CreateFileMapping's flProtect
  without the WRITECOPY values, which the seed's flag list lacks, and without
  NOACCESS / EXECUTE, which CreateFileMapping does not accept.
- A view may only narrow what its source allows (SHM-3; MapViewOfFile fails
  with ERROR_ACCESS_DENIED for an access the section was not created with;
  shmat gives SHM_RDONLY for a segment without write permission).
- Placement: a nonzero address must be a multiple of the 64 KB allocation
  granularity (NtMapViewOfSection's STATUS_MAPPED_ALIGNMENT, Win32
  ERROR_MAPPED_ALIGNMENT 1132) and the range inside user space and free
  (ERROR_INVALID_ADDRESS); 0 places Windows-style, bottom-up from the 64 KB
  boundary above the brk area (AddressSpace.windows_floor), none ->
  ERROR_NOT_ENOUGH_MEMORY.
- Private protection calls on a view's pages (``may_protect``): VirtualProtect
  and mprotect may give any page of a view a protection that allows nothing
  the view's own protection (its AllocationProtect, itself within the
  section's) does not; PAGE_NOACCESS / PROT_NONE always. Windows: Wine
  dlls/kernel32/tests/virtual.c test_mapping (is_compatible_protection: the
  new access must be within the view's, and then it is within the section's;
  otherwise VirtualProtect fails with ERROR_INVALID_PARAMETER, and on success
  the old protection is the page's previous one). Linux: mprotect(2) EACCES,
  mm/mprotect.c (a new VM_READ/WRITE/EXEC needs the vma's VM_MAY* bit; a shared
  mapping of a read-only file, or shmat's SHM_RDONLY, lacks VM_MAYWRITE),
  LTP mprotect01 TC[2]. The view's protection stands for the VM_MAY* bits on
  both systems (one bound, so SHM-3 holds page by page); real Linux keeps
  VM_MAYEXEC on a shared mapping outside a noexec mount, so its mprotect
  would let a page of a non-executable view execute: a deviation
  (docs/deviations.md).
"""

from __future__ import annotations

from collections.abc import Container

from model.address_space import AddressSpace
from model.user_layout import protect_allows
from model.x86_paging import is_u32
from spec.abi import (
    ALLOCATION_GRANULARITY,
    USER_BASE,
    USER_TOP,
    VIEW_PROTECTIONS,
    ErrorCode,
)

ACCESS_KINDS = ("read", "write", "execute")


def is_view_protect(protect: object) -> bool:
    """Whether protect is one of the four view protections (an int, not a bool)."""
    return type(protect) is int and protect in VIEW_PROTECTIONS


def narrows(protect: int, permissions: int) -> bool:
    """Whether every access protect allows, permissions allows too (SHM-3)."""
    return all(protect_allows(permissions, kind) for kind in ACCESS_KINDS
               if protect_allows(protect, kind))


def may_protect(protect: int, view_protect: int) -> bool:
    """Whether a private protection call may give a page of a view mapped with
    view_protect the protection protect (a valid PAGE_* value): every access it
    allows, the view allows (Wine test_mapping's is_compatible_protection)."""
    return narrows(protect, view_protect)


def place_view(space: AddressSpace, virtual_addr: int,
               length: int) -> tuple[int, ErrorCode]:
    """(base, ERROR_SUCCESS) where a view of length bytes goes, or (-1, the error)."""
    if not is_u32(virtual_addr):
        return -1, ErrorCode.ERROR_INVALID_PARAMETER
    if virtual_addr % ALLOCATION_GRANULARITY:
        return -1, ErrorCode.ERROR_MAPPED_ALIGNMENT
    if virtual_addr == 0:
        base = space.find_bottom_up(length, space.windows_floor(), USER_TOP,
                                    ALLOCATION_GRANULARITY)
        return (base, ErrorCode.ERROR_SUCCESS) if base >= 0 else (
            -1, ErrorCode.ERROR_NOT_ENOUGH_MEMORY)
    if not (USER_BASE <= virtual_addr and virtual_addr + length <= USER_TOP
            and space.is_free(virtual_addr, virtual_addr + length)):
        return -1, ErrorCode.ERROR_INVALID_ADDRESS
    return virtual_addr, ErrorCode.ERROR_SUCCESS


def view_error(space: AddressSpace, addr: int, owner: object,
               views: Container[tuple[int, int]]) -> ErrorCode:
    """The status of an unmap or sync of the view based at addr: the space's
    status() code, ERROR_INVALID_PARAMETER for a non-u32 addr,
    ERROR_INVALID_ADDRESS unless addr is the base of one of owner's views in
    space (UnmapViewOfFile, shmdt and FlushViewOfFile here take the base); views
    is owner's own record, keyed (pid, base)."""
    code = space.status()
    if code != ErrorCode.ERROR_SUCCESS:
        return code
    if not is_u32(addr):
        return ErrorCode.ERROR_INVALID_PARAMETER
    if (space.pid, addr) not in views or space.views.get(addr) is not owner:
        return ErrorCode.ERROR_INVALID_ADDRESS
    return ErrorCode.ERROR_SUCCESS


__all__ = ["ACCESS_KINDS", "is_view_protect", "may_protect", "narrows", "place_view",
           "view_error"]
