"""Status codes the kernel-side managers leave in ``last_error``.

Every public operation of a manager sets ``last_error`` (ERROR_SUCCESS when it
succeeded), as Windows' SetLastError/GetLastError do, and returns the failure
value of the seed's return type (False, None, 0xFFFFFFFF) when it fails. The
numeric values are Windows' own system error codes (Microsoft Learn, "System
Error Codes (0-499)" and "(1000-1299)"), so one table serves the kernel
managers and the Win32-style user interfaces of later sections alike.
"""

from __future__ import annotations

import enum
from typing import TypeVar

_T = TypeVar("_T")


class ErrorCode(enum.IntEnum):
    """The failures a memory manager reports, with their Windows numbers."""

    ERROR_SUCCESS = 0
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
    #: Mapping a file of length 0 (CreateFileMapping rejects empty files).
    ERROR_FILE_INVALID = 1006


class ReportsStatus:
    """A manager whose calls leave their status in ``last_error`` (SetLastError)."""

    last_error: ErrorCode

    def _ok(self, value: _T) -> _T:
        """Succeed with value (ERROR_SUCCESS)."""
        self.last_error = ErrorCode.ERROR_SUCCESS
        return value

    def _fail(self, code: ErrorCode, value: _T) -> _T:
        """Fail with code, returning the call's failure value."""
        self.last_error = code
        return value
