"""What shared-memory and file views have in common (issue 5, shm_common).

Both managers map a view the same way (AddressSpace.map_view /
unmap_view); this module holds the rules they share, with their sources:

- A view's protection is one of PAGE_READONLY, PAGE_READWRITE,
  PAGE_EXECUTE_READ, PAGE_EXECUTE_READWRITE: CreateFileMapping's flProtect
  without the WRITECOPY values, which the seed's flag list lacks, and without
  NOACCESS / EXECUTE, which CreateFileMapping does not accept.
- A view may only narrow what its source allows (SHM-3; MapViewOfFile fails
  with ERROR_ACCESS_DENIED for an access the section was not created with,
  an executable view (FILE_MAP_EXECUTE) of a PAGE_READONLY or PAGE_READWRITE
  section included, file-backed or pagefile-backed: Wine
  dlls/kernel32/tests/virtual.c test_mapping, is_compatible_access over
  map_prot_to_access, which grants SECTION_MAP_EXECUTE to the PAGE_EXECUTE_*
  sections only, in the file and the anonymous passes of test_mappings; an
  older copy of the test granted it to every section, as Vista did; shmat
  gives SHM_RDONLY for a segment without write permission).
- Placement: a nonzero address must be a multiple of the 64 KB allocation
  granularity (NtMapViewOfSection's STATUS_MAPPED_ALIGNMENT, Win32
  ERROR_MAPPED_ALIGNMENT 1132) and the range inside user space and free
  (ERROR_INVALID_ADDRESS); 0 places Windows-style, bottom-up from the 64 KB
  boundary above the brk area (AddressSpace.windows_floor), none ->
  ERROR_NOT_ENOUGH_MEMORY.
- Unmap: the seed's UnmapSharedMemoryFromProcess and UnmapFileFromMemory are
  Windows-facing calls (seed section 7: Windows conventions; their status is a
  Win32 code), so each takes UnmapViewOfFile's rule: any address inside one of
  the manager's views of the space unmaps that whole view (``view_holding``;
  Wine test_MapViewOfFile). Linux reaches a view through munmap
  (model/linux_mm.py, its own rule: over part of a view it leaves pieces, each
  a view of its own for these calls, issue 15) and process exit; the seed has no shmdt
  call (its Linux layer is mmap, munmap and brk), whose attach-address-only
  rule is then nobody's. FlushViewOfFile / msync (SyncMappedFile) still take
  the view's base (``view_error``).
- Private protection calls on a view's pages, each system with its own bound.
  Windows (``may_protect``): VirtualProtect may give a page of a view any
  protection allowing nothing the view's own (its AllocationProtect, itself
  within the section's) does not, PAGE_NOACCESS always; otherwise
  ERROR_INVALID_PARAMETER, and on success the old protection is the page's
  previous one (Wine dlls/kernel32/tests/virtual.c test_mapping,
  is_compatible_protection). VirtualAlloc(MEM_COMMIT) on a block view's pages,
  committed already, takes the same bound (test_mapping's anonymous pass:
  is_compatible_protection(view[j].prot, page_prot[k])); on a file view's it
  fails with ERROR_ACCESS_DENIED (model/virtual_alloc.py). Linux
  (``may_mprotect``): mprotect asks the vma's VM_MAY* bits (mm/mprotect.c: a
  new VM_WRITE needs VM_MAYWRITE, else EACCES; mprotect(2) EACCES): VM_MAYREAD
  and VM_MAYEXEC are always set here (no noexec mounts), VM_MAYWRITE when the
  view's source may be written through it (ViewOwner.may_write: a block's view
  unless read-only, shmat's SHM_RDONLY; a file view when its node takes
  writes, whatever protection it was mapped with: LTP mprotect01 TC[2] EACCES
  on a read-only file, mprotect02 PROT_WRITE on a PROT_READ shared mapping of
  a file open O_RDWR). So a page's protection allows writing only when its
  source may be written (SHM-3), and its PTE is writable only then (MMF-2).
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
    """Whether VirtualProtect may give a page of a view mapped with view_protect the
    protection protect (a valid PAGE_* value): every access it allows, the view
    allows (Wine test_mapping's is_compatible_protection)."""
    return narrows(protect, view_protect)


def may_mprotect(protect: int, may_write: bool) -> bool:
    """Whether mprotect may give a page of a view the protection protect (the PAGE_*
    value of its PROT_* bits): writing only when the view's source may be written
    (VM_MAYWRITE); reading and executing always (VM_MAYREAD, VM_MAYEXEC)."""
    return may_write or not protect_allows(protect, "write")


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


def view_holding(space: AddressSpace, addr: int, owner: object,
                 views: Container[tuple[int, int]]) -> tuple[int, ErrorCode]:
    """(base, ERROR_SUCCESS) of owner's view in space whose pages hold addr, or
    (-1, the error): the space's status() code, ERROR_INVALID_PARAMETER for a
    non-u32 addr, ERROR_INVALID_ADDRESS outside owner's views in space (memory of
    VirtualAlloc, another manager's view, a free page). UnmapViewOfFile takes any
    address inside the view (Wine dlls/kernel32/tests/virtual.c
    test_MapViewOfFile: UnmapViewOfFile(ptr + 100), (ptr + 4096) and
    (ptr + 4096 + 100) each unmap the view; NtUnmapViewOfSection looks the
    address up among the process's views). views is owner's own record, keyed
    (pid, base)."""
    code = space.status()
    if code != ErrorCode.ERROR_SUCCESS:
        return -1, code
    if not is_u32(addr):
        return -1, ErrorCode.ERROR_INVALID_PARAMETER
    allocation = space.allocation_at(addr)
    if allocation is None or (space.pid, allocation.base) not in views \
            or space.views.get(allocation.base) is not owner:
        return -1, ErrorCode.ERROR_INVALID_ADDRESS
    return allocation.base, ErrorCode.ERROR_SUCCESS


def view_error(space: AddressSpace, addr: int, owner: object,
               views: Container[tuple[int, int]]) -> ErrorCode:
    """The status of a sync of the view based at addr (FlushViewOfFile / msync here
    take the base): view_holding's, and ERROR_INVALID_ADDRESS for an address
    inside a view that is not its base."""
    base, code = view_holding(space, addr, owner, views)
    if code == ErrorCode.ERROR_SUCCESS and base != addr:
        return ErrorCode.ERROR_INVALID_ADDRESS
    return code


__all__ = ["ACCESS_KINDS", "is_view_protect", "may_mprotect", "may_protect", "narrows",
           "place_view", "view_error", "view_holding"]
