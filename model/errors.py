"""Status codes the kernel-side managers leave in ``last_error``.

Every public operation of a manager sets ``last_error`` (ERROR_SUCCESS when it
succeeded), as Windows' SetLastError/GetLastError do, and returns the failure
value of the seed's return type (False, None, 0xFFFFFFFF) when it fails. The
numeric values are Windows' own system error codes (Microsoft Learn, "System
Error Codes (0-499)" and "(1000-1299)"), so one table serves the kernel
managers and the Win32-style user interfaces of later sections alike.
"""

from __future__ import annotations

from typing import TypeVar

from spec.abi import (
    ErrorCode,
)

_T = TypeVar("_T")




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
