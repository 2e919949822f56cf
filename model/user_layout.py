"""Constants and pure helpers of user address spaces (issue 4, seed sections 4, 7, 8).

The numbers are the platforms' own, so a test can compare with a real kernel:

- MEM_*, PAGE_* and MEM_PRIVATE/MAPPED/IMAGE: Microsoft Learn, "Memory
  Protection Constants", VirtualAlloc, VirtualFree, MEMORY_BASIC_INFORMATION
  (winnt.h values). The seed's six PAGE_* values are the only valid
  protections; any other value (a combination, PAGE_GUARD, PAGE_NOCACHE,
  PAGE_WRITECOPY) is ERROR_INVALID_PARAMETER.
- PROT_*, MAP_* and errno: Linux i386 uapi headers (asm-generic/mman-common.h,
  asm-generic/errno-base.h, asm-generic/errno.h), mmap(2).
- User space is [USER_BASE, USER_TOP) = [4 MB, 3 GB): DESIGN.md keeps the
  identity-mapped first 4 MB and everything from 0xC0000000 for the kernel
  (model/virtual_memory.py's kernel slots 0 and 768..1023).
- Access rights per protection: Microsoft's "Memory Protection Constants"
  table. The PTE has no NX bit on this CPU (model/x86_paging.py), so a
  PAGE_EXECUTE page is present and the model refuses its reads itself.
- protect_from_prot: Linux PROT_* bits mapped to the closest PAGE_* value; on
  i386 without NX, PROT_WRITE implies read (mmap(2): "on some hardware
  architectures ... PROT_WRITE may imply PROT_READ").
"""

from __future__ import annotations

from typing import Literal

from spec.abi import (
    ALLOCATION_GRANULARITY,
    PAGE_EXECUTE,
    PAGE_EXECUTE_READ,
    PAGE_EXECUTE_READWRITE,
    PAGE_NOACCESS,
    PAGE_READONLY,
    PAGE_READWRITE,
    PAGE_SIZE,
    PROT_EXEC,
    PROT_READ,
    PROT_WRITE,
    USER_BASE,
    USER_TOP,
    VALID_PROTECTIONS,
)

AccessKind = Literal["read", "write", "execute"]

#: Microsoft's table: which accesses each protection allows.
_ALLOWS: dict[int, frozenset[str]] = {
    PAGE_NOACCESS: frozenset(),
    PAGE_READONLY: frozenset(("read",)),
    PAGE_READWRITE: frozenset(("read", "write")),
    PAGE_EXECUTE: frozenset(("execute",)),
    PAGE_EXECUTE_READ: frozenset(("read", "execute")),
    PAGE_EXECUTE_READWRITE: frozenset(("read", "write", "execute")),
}

#: Linux PROT_* bits (R=1, W=2, X=4) to the PAGE_* value granting them.
_FROM_PROT = (
    PAGE_NOACCESS,  # ---
    PAGE_READONLY,  # r--
    PAGE_READWRITE,  # -w-
    PAGE_READWRITE,  # rw-
    PAGE_EXECUTE,  # --x
    PAGE_EXECUTE_READ,  # r-x
    PAGE_EXECUTE_READWRITE,  # -wx
    PAGE_EXECUTE_READWRITE,  # rwx
)


def is_valid_protect(protect: object) -> bool:
    """True for exactly the seed's six PAGE_* values (ints, not bools)."""
    return type(protect) is int and protect in VALID_PROTECTIONS


def protect_allows(protect: int, kind: str) -> bool:
    """Whether a page of this protection allows the access kind ('read'|'write'|'execute')."""
    return kind in _ALLOWS.get(protect, frozenset())


def pte_bits(protect: int) -> tuple[bool, bool]:
    """(present, writable) of the PTE of a committed page with this protection."""
    return protect != PAGE_NOACCESS, protect in (PAGE_READWRITE, PAGE_EXECUTE_READWRITE)


def protect_from_prot(prot: int) -> int:
    """The PAGE_* value of Linux PROT_* bits (bits above PROT_EXEC ignored by the caller)."""
    return _FROM_PROT[prot & (PROT_READ | PROT_WRITE | PROT_EXEC)]


def prot_from_protect(protect: int) -> int:
    """The Linux PROT_* bits a PAGE_* value grants (for /proc/self/maps of Windows pages)."""
    allows = _ALLOWS.get(protect, frozenset())
    return (
        (PROT_READ if "read" in allows else 0)
        | (PROT_WRITE if "write" in allows else 0)
        | (PROT_EXEC if "execute" in allows else 0)
    )


def page_floor(address: int) -> int:
    """address rounded down to a page boundary."""
    return address & ~(PAGE_SIZE - 1)


def page_ceil(address: int) -> int:
    """address rounded up to a page boundary (may reach 2**32)."""
    return (address + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)


def granularity_floor(address: int) -> int:
    """address rounded down to the 64 KB allocation granularity."""
    return address & ~(ALLOCATION_GRANULARITY - 1)


def granularity_ceil(address: int) -> int:
    """address rounded up to the 64 KB allocation granularity."""
    return (address + ALLOCATION_GRANULARITY - 1) & ~(ALLOCATION_GRANULARITY - 1)


def is_user_range(address: int, size: int) -> bool:
    """Whether [address, address+size) lies inside user space (size > 0)."""
    return size > 0 and USER_BASE <= address and address + size <= USER_TOP



