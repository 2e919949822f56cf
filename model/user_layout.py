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

# Windows allocation types and states (winnt.h).
MEM_COMMIT = 0x1000
MEM_RESERVE = 0x2000
MEM_DECOMMIT = 0x4000
MEM_RELEASE = 0x8000
MEM_FREE = 0x10000
MEM_TOP_DOWN = 0x100000
# Windows region types (MEMORY_BASIC_INFORMATION.Type).
MEM_PRIVATE = 0x20000
MEM_MAPPED = 0x40000
MEM_IMAGE = 0x1000000

# Windows page protections (the seed's six).
PAGE_NOACCESS = 0x01
PAGE_READONLY = 0x02
PAGE_READWRITE = 0x04
PAGE_EXECUTE = 0x10
PAGE_EXECUTE_READ = 0x20
PAGE_EXECUTE_READWRITE = 0x40
VALID_PROTECTIONS = frozenset(
    (PAGE_NOACCESS, PAGE_READONLY, PAGE_READWRITE, PAGE_EXECUTE, PAGE_EXECUTE_READ,
     PAGE_EXECUTE_READWRITE)
)

PAGE_SIZE = 4096
PAGE_SHIFT = 12
ALLOCATION_GRANULARITY = 0x10000

# User space: [USER_BASE, USER_TOP), in pages [USER_FIRST_VPN, USER_END_VPN).
USER_BASE = 0x00400000
USER_TOP = 0xC0000000
USER_FIRST_VPN = USER_BASE >> PAGE_SHIFT
USER_END_VPN = USER_TOP >> PAGE_SHIFT

# Linux i386 mmap flags and protections.
PROT_NONE = 0
PROT_READ = 1
PROT_WRITE = 2
PROT_EXEC = 4
MAP_SHARED = 0x01
MAP_PRIVATE = 0x02
MAP_FIXED = 0x10
MAP_ANONYMOUS = 0x20
MAP_FIXED_NOREPLACE = 0x100000

# Linux errno values.
EPERM = 1
ENOENT = 2
EBADF = 9
ENOMEM = 12
EACCES = 13
EEXIST = 17
EINVAL = 22
ENOSYS = 38

# Who created an allocation.
ORIGIN_VIRTUAL_ALLOC = 1
ORIGIN_MMAP = 2
ORIGIN_IMAGE = 3
ORIGIN_BRK = 4
ORIGIN_STACK = 5
ORIGIN_PROCESS_HEAP = 6
#: Views (issue 5): their pages belong to SharedMemoryManager / MemoryMappedFiles.
ORIGIN_SHARED_MEMORY = 7
ORIGIN_MAPPED_FILE = 8
#: Origins whose pages another manager owns (the process heap, views): the
#: private-memory calls refuse to commit, protect or unmap them.
MANAGED_ORIGINS = (ORIGIN_PROCESS_HEAP, ORIGIN_SHARED_MEMORY, ORIGIN_MAPPED_FILE)

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


# Further Linux values the syscall layer uses (asm-generic/mman-common.h, errno-base.h).
PROT_SEM = 0x8
PROT_GROWSDOWN = 0x01000000
PROT_GROWSUP = 0x02000000
MAP_TYPE = 0x0F
ESRCH = 3
EFAULT = 14

