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


__all__ = ["ACCESS_KINDS", "is_view_protect", "narrows", "place_view", "view_error"]
