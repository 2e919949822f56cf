"""The ABI of the specified system: the numbers an implementation must match.

Page size, PTE bits, error codes, layouts, magic numbers, status codes: the
constants of the system being specified (``../shared/seed/memory-design.md`` and the
real systems it imitates), defined once. The trusted base (spec/) and the judged
code (model/) both import them from here, and spec/ imports nothing from model/,
so the judge never changes when the judged code does (DESIGN.md, "Three
layers"); tests/test_layering.py checks both directions. The oracle's protocol
schema and PROTOCOL.md are tested against these values (tests/test_abi.py).

Nothing here imports z3 or model code: the model and the oracle's model world
import this module without loading the solver.
"""

from __future__ import annotations

import enum

# ------------------------------------------------------------------------------
# Error codes: Windows system error codes (Microsoft Learn, "System Error Codes
# (0-499)" and "(1000-1299)"): every manager's ``last_error``, as
# SetLastError/GetLastError keep it.


class ErrorCode(enum.IntEnum):
    """The failures a memory manager reports, with their Windows numbers."""

    ERROR_SUCCESS = 0
    #: A system call number nobody serves ("Incorrect function"; Linux's ENOSYS).
    ERROR_INVALID_FUNCTION = 1
    #: A directory or handle that is not live (unknown, destroyed, foreign).
    ERROR_INVALID_HANDLE = 6
    #: No free frame (or not enough for the whole operation).
    ERROR_NOT_ENOUGH_MEMORY = 8
    #: A frame that is not held in the way the call needs: freeing a free frame
    #: (double free), unreserving a frame that is not reserved.
    ERROR_INVALID_BLOCK = 9
    #: The manager is not initialised yet (physical memory or paging).
    ERROR_NOT_READY = 21
    #: Heap or pool metadata found damaged (a header or footer whose magic or
    #: back-pointer is wrong, as a write past the end of a block leaves it):
    #: Windows' ERROR_ARENA_TRASHED, "The storage control blocks were destroyed",
    #: the same number as DOS error 7 "memory control blocks destroyed".
    ERROR_ARENA_TRASHED = 7
    #: Unaligned address, value out of the 32-bit range, bad argument type.
    ERROR_INVALID_PARAMETER = 87
    #: The frame or directory is in use (mapped, a page table, the current
    #: directory) and cannot be freed or destroyed now.
    ERROR_BUSY = 170
    #: The virtual page is already mapped.
    ERROR_ALREADY_EXISTS = 183
    #: The request would break protection: a user page in kernel space, a
    #: write into a paging structure, destroying the kernel directory.
    ERROR_ACCESS_DENIED = 5
    #: The address is not mapped, or lies beyond physical memory.
    ERROR_INVALID_ADDRESS = 487
    #: An access the page tables refuse (the call returns the PageFault).
    ERROR_NOACCESS = 998
    #: A buffer length too small for the structure asked for (VirtualQuery's
    #: STATUS_INFO_LENGTH_MISMATCH).
    ERROR_BAD_LENGTH = 24
    #: Initialising twice.
    ERROR_ALREADY_INITIALIZED = 1247
    #: A view's base address or file offset is not on the required boundary
    #: (NtMapViewOfSection's STATUS_MAPPED_ALIGNMENT).
    ERROR_MAPPED_ALIGNMENT = 1132
    #: Mapping a file of length 0 (CreateFileMapping rejects empty files), or a file
    #: whose node cannot tell its length.
    ERROR_FILE_INVALID = 1006
    #: A file's node failed to give its bytes ("The system cannot read from the
    #: specified device").
    ERROR_READ_FAULT = 30
    #: A file's node failed to store bytes written back ("The system cannot write
    #: to the specified device").
    ERROR_WRITE_FAULT = 29


# ------------------------------------------------------------------------------
# x86 paging: Intel SDM Vol. 3A, 4.3 "32-bit paging" (Figure 4-2, Tables 4-5 and 4-6), 4.7
# (page-fault error code); the address-space split of DESIGN.md.
PAGE_SIZE = 4096
PAGE_SHIFT = 12
ENTRIES_PER_TABLE = 1024
ADDRESS_LIMIT = 1 << 32
FRAME_LIMIT = ADDRESS_LIMIT >> PAGE_SHIFT  # 1,048,576 frames in 4 GiB
OFFSET_MASK = PAGE_SIZE - 1
FRAME_MASK = 0xFFFFF000
# PDE/PTE bits (SDM Vol. 3A, Tables 4-5 and 4-6).
PTE_PRESENT = 0x001
PTE_WRITABLE = 0x002
PTE_USER = 0x004
PTE_ACCESSED = 0x020
PTE_DIRTY = 0x040
# Page-fault error code bits (SDM Vol. 3A, section 4.7).
FAULT_PROTECTION = 0x1  # P: 0 = page not present, 1 = protection violation
FAULT_WRITE = 0x2  # W/R: the access was a write
FAULT_USER = 0x4  # U/S: the access was made in user mode
# Address-space layout (DESIGN.md: Windows 9x keeps the first 4 MB for DOS and
# the identity map; 0x00400000 is the default image base; the kernel owns
# 0xC0000000 and up as in the tutorial kernel the seed follows).
IDENTITY_LIMIT = 0x00400000
USER_SPACE_START = 0x00400000
KERNEL_SPACE_START = 0xC0000000
FIRST_KERNEL_HIGH_SLOT = KERNEL_SPACE_START >> 22  # 768
IDENTITY_SLOTS = IDENTITY_LIMIT >> 22  # 1: directory slot 0

#: Failure value of VirtualToPhysical (check last_error: it is also a valid address).
INVALID_PHYSICAL_ADDRESS = 0xFFFFFFFF
KERNEL_PDE_FLAGS = PTE_PRESENT | PTE_WRITABLE
USER_PDE_FLAGS = PTE_PRESENT | PTE_WRITABLE | PTE_USER
#: PTE bits a clone keeps: a fresh copy is neither accessed nor dirty (Linux's
#: copy_present_pte marks the child's PTEs old).
CLONED_BITS = PTE_PRESENT | PTE_WRITABLE | PTE_USER
#: The bits of a PDE that VMM-4 compares (the hardware sets A in each directory).
PDE_LINK_MASK = ~(PTE_ACCESSED | PTE_DIRTY) & 0xFFFFFFFF


# ------------------------------------------------------------------------------
# Physical frames: the PageManager's failure value and the ownership map of FRM-3.
#: Failure value of the calls that return a physical address.
NO_FRAME = 0xFFFFFFFF


class FrameOwner(enum.IntEnum):
    """Who owns a frame (the ownership map of FRM-3)."""

    FREE = 0
    RESERVED = 1
    DIRECTORY = 2
    TABLE = 3
    MAPPED = 4
    HELD = 5
    #: A shared-memory block's or a file page cache's frame: mapped by any number
    #: of PTEs, owned by its manager, never by a PTE (issue 5, VMM-1).
    SHARED = 6


# ------------------------------------------------------------------------------
# Kernel heap: the tutorial heap the seed follows (JamesM's kernel heap): header
# {magic u32, is_hole u8, 3 pad, size u32}, footer {magic u32, header u32}, and its
# constants (DESIGN.md).
HEADER_SIZE = 12
FOOTER_SIZE = 8
MIN_BLOCK = HEADER_SIZE + FOOTER_SIZE  # 20: the smallest block (empty payload)

HEAP_MAGIC = 0x123890AB
KHEAP_START = 0xC0000000
KHEAP_INITIAL_SIZE = 0x100000
KHEAP_MAX = 0xCFFFF000
HEAP_INDEX_SIZE = 0x20000
HEAP_MIN_SIZE = 0x70000
NULL = 0
#: The highest page-aligned 32-bit address: a heap's max may not exceed it.
HEAP_TOP = 0xFFFFF000
U32_MAX = 0xFFFFFFFF


# ------------------------------------------------------------------------------
# Kernel memory: the kernel's own areas (DESIGN.md; seed sections 3, 9, 10).
#: Bytes of the placement arena after the kernel image (256 KB; the frame bitmap of
#: 4 GiB takes 128 KB of it).
PLACEMENT_ARENA_SIZE = 0x40000
#: The first megabyte (real-mode IVT, BIOS data, DOS, video and ROM) is never
#: kernel memory (SYS-3): kernel_end lies at or above it.
LOW_MEMORY_END = 0x100000

#: Bytes of the next pointer (a 32-bit void*).
POINTER_SIZE = 4

PAGE_AREA_START = 0xE0000000
PAGE_AREA_END = 0xF0000000

#: The tutorial's 16 MB machine.
DEFAULT_MEMORY_SIZE = 0x1000000
#: The XMS pool InitializeDosMemory takes at the top of physical memory.
DOS_XMS_POOL = 0x100000
#: Linux i386 THREAD_SIZE.
KERNEL_STACK_SIZE = 0x2000
KERNEL_STACK_AREA_START = 0xD0000000
KERNEL_STACK_AREA_END = 0xE0000000
#: A slot: one guard page, then the stack.
STACK_SLOT_SIZE = PAGE_SIZE + KERNEL_STACK_SIZE
STACK_SLOTS = (KERNEL_STACK_AREA_END - KERNEL_STACK_AREA_START) // STACK_SLOT_SIZE
#: What a 32-bit statistic reports when the value does not fit.
SATURATED = 0xFFFFFFFF


# ------------------------------------------------------------------------------
# Windows user mode: winnt.h values (Microsoft Learn: "Memory Protection
# Constants", VirtualAlloc, VirtualFree, MEMORY_BASIC_INFORMATION, HeapAlloc) and
# the process heap's sizes.
# Windows allocation types and states (winnt.h).
MEM_COMMIT = 0x1000
MEM_RESERVE = 0x2000
MEM_DECOMMIT = 0x4000
MEM_RELEASE = 0x8000
MEM_FREE = 0x10000
MEM_TOP_DOWN = 0x100000
#: VirtualAlloc: the range's data is no longer of interest (alone, no other type).
MEM_RESET = 0x00080000
#: VirtualAlloc: the data of a MEM_RESET range is of interest again (Windows 8;
#: same value as MEM_IMAGE, which is a region type, not an allocation type).
MEM_RESET_UNDO = 0x01000000
#: VirtualAlloc / NtAllocateVirtualMemory: a non-NULL address below this is
#: STATUS_INVALID_PARAMETER_2 (ERROR_INVALID_PARAMETER), MM_LOWEST_USER_ADDRESS.
MM_LOWEST_USER_ADDRESS = 0x10000
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
ALLOCATION_GRANULARITY = 0x10000

#: sizeof(MEMORY_BASIC_INFORMATION) on 32-bit Windows: seven DWORD-sized fields.
MEMORY_BASIC_INFORMATION_SIZE = 28

HEAP_NO_SERIALIZE = 0x1
HEAP_GENERATE_EXCEPTIONS = 0x4
HEAP_ZERO_MEMORY = 0x8
#: HeapReAlloc: fail rather than move the block (winnt.h).
HEAP_REALLOC_IN_PLACE_ONLY = 0x10
#: The flag bits the process heap's calls act on; others are ignored, as
#: Windows ignores them (Wine dlls/kernel32/tests/heap.c: test_block_layout
#: allocates with 0xc00 | HEAP_ADD_USER_INFO and gets a block).
HEAP_KNOWN_FLAGS = HEAP_NO_SERIALIZE | HEAP_GENERATE_EXCEPTIONS | HEAP_ZERO_MEMORY \
    | HEAP_REALLOC_IN_PLACE_ONLY
#: winnt.h MEMORY_ALLOCATION_ALIGNMENT on 32-bit: every heap pointer is a multiple of it.
MEMORY_ALLOCATION_ALIGNMENT = 8
#: HeapSize's failure value, (SIZE_T)-1 on 32-bit.
HEAP_SIZE_FAILED = 0xFFFFFFFF
#: The NTSTATUS a call made with HEAP_GENERATE_EXCEPTIONS raises for its failure
#: (ntstatus.h; Microsoft Learn, HeapAlloc "Return value").
STATUS_NO_MEMORY = 0xC0000017
STATUS_ACCESS_VIOLATION = 0xC0000005
STATUS_INVALID_PARAMETER = 0xC000000D
STATUS_INVALID_HANDLE = 0xC0000008
PROCESS_HEAP_INITIAL = 0x10000
PROCESS_HEAP_MAX = 0x100000
#: Hole-index entries of a process heap (its index takes 4 KB at the heap's start).
PROCESS_HEAP_INDEX = 0x400


# ------------------------------------------------------------------------------
# User address spaces: user space is [4 MB, 3 GB) (DESIGN.md); the layout of a
# process, and the origins the records give each allocation.
# User space: [USER_BASE, USER_TOP), in pages [USER_FIRST_VPN, USER_END_VPN).
USER_BASE = 0x00400000
USER_TOP = 0xC0000000
USER_FIRST_VPN = USER_BASE >> PAGE_SHIFT
USER_END_VPN = USER_TOP >> PAGE_SHIFT
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

IMAGE_BASE = 0x00400000
DEFAULT_IMAGE_SIZE = 0x10000
DEFAULT_HEAP_MAX_SIZE = 0x01000000
STACK_RESERVE = 0x00100000
DEFAULT_STACK_SIZE = 0x10000
#: Linux mmap_base without randomisation: TASK_SIZE - MIN_GAP (128 MB).
MMAP_BASE = USER_TOP - 0x08000000
#: Linux TASK_UNMAPPED_BASE on i386: PAGE_ALIGN(TASK_SIZE / 3).
TASK_UNMAPPED_BASE = 0x40000000

TASK_SIZE = USER_TOP
MMAP_MIN_ADDR = USER_BASE


# ------------------------------------------------------------------------------
# Linux i386: the uapi headers (asm-generic/mman-common.h,
# asm-generic/errno-base.h, asm-generic/errno.h), mmap(2); i386 syscall numbers
# (arch/x86/entry/syscalls/syscall_32.tbl), and this design's numbers for the
# Windows-named calls (seed section 7).
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
# Further Linux values the syscall layer uses (asm-generic/mman-common.h, errno-base.h).
PROT_SEM = 0x8
PROT_GROWSDOWN = 0x01000000
PROT_GROWSUP = 0x02000000
MAP_TYPE = 0x0F
ESRCH = 3
EFAULT = 14

SYS_BRK = 45
SYS_MMAP = 90
SYS_MUNMAP = 91
SYS_MPROTECT = 125
SYS_MMAP2 = 192
SYS_VIRTUAL_ALLOC = 0x1001
SYS_VIRTUAL_FREE = 0x1002
SYS_GET_PROCESS_HEAP = 0x1003
SYS_HEAP_ALLOC = 0x1004
SYS_HEAP_FREE = 0x1005
SYS_VIRTUAL_QUERY = 0x1006
SYS_VIRTUAL_PROTECT = 0x1007
SYS_HEAP_SIZE = 0x1008
SYS_HEAP_REALLOC = 0x1009


# ------------------------------------------------------------------------------
# Shared memory and mapped files: seed section 5; the shared-memory ids and the
# protections a view may have (CreateFileMapping's flProtect without WRITECOPY).
#: The largest id; ids wrap around to 1 after it (uint32, 0 means failure).
MAX_SHM_ID = 0xFFFFFFFF

VIEW_PROTECTIONS = frozenset((PAGE_READONLY, PAGE_READWRITE, PAGE_EXECUTE_READ,
                              PAGE_EXECUTE_READWRITE))


# ------------------------------------------------------------------------------
# DOS conventional memory and UMBs: MS-DOS memory control blocks (one paragraph:
# type 'M'/'Z', owner word, size in paragraphs, name), INT 21h AH=48h/49h/4Ah/58h
# (Ralf Brown's Interrupt List, table 01680 and the AX=5801h strategy values).
PARAGRAPH = 16

MCB_M = 0x4D
MCB_Z = 0x5A
OWNER_FREE = 0
OWNER_DOS = 8
CONVENTIONAL_TOP = 0xA000
UMB_HEAD = 0x9FFF
DEFAULT_FIRST_SEGMENT = 0x0800
DEFAULT_UMB_START = 0xC800
DEFAULT_UMB_END = 0xE000
DEFAULT_PSP = 0x0100
LOW_MB_FRAMES = 0x100
#: AX=5801h's strategy values: first, best or last fit (00h-02h), in UMBs only
#: (40h-42h), in UMBs then conventional memory (80h-82h).
STRATEGIES = frozenset({0x00, 0x01, 0x02, 0x40, 0x41, 0x42, 0x80, 0x81, 0x82})
#: Upper memory ends at segment FFFFh.
UPPER_END = 0x10000


class DosError(enum.IntEnum):
    """INT 21h error codes (RBIL table 01680)."""

    SUCCESS = 0
    INVALID_FUNCTION = 1
    ARENA_TRASHED = 7
    NOT_ENOUGH_MEMORY = 8
    INVALID_BLOCK = 9
    NOT_READY = 21
    INVALID_PARAMETER = 87


# ------------------------------------------------------------------------------
# XMS 3.0: eXtended Memory Specification 3.0 (status codes in BL) and HIMEM.SYS.
XMS_BASE = 0x110000
KB = 1024
MAX_LOCKS = 255
CONVENTIONAL_LIMIT = 0x100000
#: The High Memory Area: FFFF:0010-FFFF:FFFF, linear [HMA_START, HMA_END), 65,520 bytes;
#: HMA_END is also the end of what a real-mode seg:off (an XMS move's handle 0) reaches.
HMA_START = 0x100000
HMA_END = 0x10FFF0
XMS_SUCCESS = 0x00
XMS_OUT_OF_MEMORY = 0xA0
XMS_OUT_OF_HANDLES = 0xA1
XMS_INVALID_HANDLE = 0xA2
XMS_INVALID_SOURCE_HANDLE = 0xA3
XMS_INVALID_SOURCE_OFFSET = 0xA4
XMS_INVALID_DEST_HANDLE = 0xA5
XMS_INVALID_DEST_OFFSET = 0xA6
XMS_INVALID_LENGTH = 0xA7
XMS_NOT_LOCKED = 0xAA
XMS_LOCKED = 0xAB
XMS_LOCK_OVERFLOW = 0xAC
# The driver-level codes (XMS 3.0 "error codes", named HIMEM_ because the oracle
# protocol's XMS_ codes are A0h-ACh; DOSBox-staging src/ints/xms.cpp
# lines 40-68; HimemX.asm lines 120-146).
HIMEM_NOT_IMPLEMENTED = 0x80
HIMEM_A20_ERROR = 0x82
HIMEM_HMA_MISSING = 0x90
HIMEM_HMA_IN_USE = 0x91
HIMEM_HMA_TOO_SMALL = 0x92
HIMEM_HMA_NOT_ALLOCATED = 0x93
HIMEM_A20_STILL_ENABLED = 0x94
HIMEM_NO_UMB = 0xB1
HIMEM_INVALID_UMB = 0xB2
#: 00h: the XMS version (BCD 3.00) and the driver revision (DOSBox-staging
#: src/ints/xms.cpp lines 31-32).
HIMEM_SPEC_VERSION = 0x0300
HIMEM_DRIVER_REVISION = 0x0301
#: HIMEM's A20 local-enable counter limit (DOSBox-staging xms.cpp line 110).
A20_MAX_COUNT = 0xFFFF_FFFF


# ------------------------------------------------------------------------------
# LIM EMS 4.0: Lotus/Intel/Microsoft Expanded Memory Specification 4.0 (AH
# status codes).
EMS_FRAME_SEGMENT = 0xE000
EMS_PAGE_SIZE = 0x4000
PHYSICAL_PAGES = 4
FRAMES_PER_PAGE = 4
EMS_VERSION = 0x40
UNMAP = 0xFFFF
OS_HANDLE = 0
EMS_SUCCESS = 0x00
EMS_INVALID_HANDLE = 0x83
EMS_NO_HANDLES = 0x85
EMS_TOO_MANY_PAGES = 0x87
EMS_NOT_ENOUGH_PAGES = 0x88
EMS_ZERO_PAGES = 0x89
EMS_INVALID_LOGICAL = 0x8A
EMS_INVALID_PHYSICAL = 0x8B
# INT 67h statuses of the LIM 4.0 functions past 4Ch (named EMM_, as DOSBox-staging's
# src/ints/ems.cpp lines 47-67 do; the oracle protocol's EMS_ codes are 83h-8Bh).
EMM_FUNCTION_NOT_SUPPORTED = 0x84
EMM_SAVED_CONTEXT = 0x86
EMM_MAP_ALREADY_SAVED = 0x8D
EMM_NO_SAVED_MAP = 0x8E
EMM_INVALID_SUBFUNCTION = 0x8F
EMM_UNDEFINED_ATTRIBUTE = 0x90
EMM_FEATURE_NOT_SUPPORTED = 0x91
#: 57h (LIM 4.0 function 24): 92h is a success (the overlapping move was done).
EMM_MOVE_OVERLAP = 0x92
EMM_REGION_TOO_LONG = 0x93
EMM_OFFSET_TOO_LARGE = 0x95
EMM_LENGTH_TOO_LARGE = 0x96
EMM_EXCHANGE_OVERLAP = 0x97
EMM_BAD_MEMORY_TYPE = 0x98
EMM_PAST_1MB = 0xA2
EMM_NAME_NOT_FOUND = 0xA0
EMM_NAME_EXISTS = 0xA1
#: 54h/01h: searching for the null name (LIM 4.0 function 21: A1h).
EMM_NULL_NAME = 0xA1
#: 4Eh/01h: a page map array that names no mapping the EMM could have made.
EMM_CORRUPT_MAP = 0xA3
#: 5Bh: alternate map register sets are not supported and BL != 0 (LIM 4.0 function 28).
EMM_NO_ALTERNATE_SETS = 0x9C
#: 59h, 5Bh, 5Dh: the operating system denied access (LIM 4.0 function 30).
EMM_ACCESS_DENIED = 0xA4
#: 59h/00h: paragraphs in a raw page (16 KB), the context save area in bytes.
EMM_RAW_PAGE_PARAGRAPHS = 0x0400
EMM_CONTEXT_SIZE = 16
