"""The registers a real-mode DOS program sees across INT 21h, the XMS driver's
entry point and INT 67h (issue 15: register-level front ends).

A call takes a ``Registers`` and returns the ``Registers`` the program finds
after it: the 16-bit general registers, the segment registers DS and ES, and the
carry flag (INT 21h reports failure with CF set and the error code in AX; XMS
and EMS report status in AX and BL / AH instead, and leave CF alone). Every
register holds 0..FFFFh, as the hardware's do; a value outside that range cannot
be loaded into a register, so it is refused when the record is built, before any
manager sees it (``Registers.valid``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

#: The width of every register modelled here (real-mode 16-bit registers).
REGISTER_MASK = 0xFFFF


@dataclass(frozen=True)
class Registers:
    """AX, BX, CX, DX, SI, DI, DS, ES and the carry flag, as a DOS program sees them."""

    ax: int = 0
    bx: int = 0
    cx: int = 0
    dx: int = 0
    si: int = 0
    di: int = 0
    ds: int = 0
    es: int = 0
    carry: bool = False

    @property
    def ah(self) -> int:
        """The high byte of AX (the function number of INT 21h and INT 67h)."""
        return self.ax >> 8

    @property
    def al(self) -> int:
        """The low byte of AX (the subfunction of AH=58h, say)."""
        return self.ax & 0xFF

    @property
    def bl(self) -> int:
        """The low byte of BX (the XMS error code on failure)."""
        return self.bx & 0xFF

    def valid(self) -> bool:
        """Every register within 0..FFFFh and the carry a bool."""
        fields = (self.ax, self.bx, self.cx, self.dx, self.si, self.di, self.ds, self.es)
        return (all(type(value) is int and 0 <= value <= REGISTER_MASK for value in fields)
                and type(self.carry) is bool)

    def set(self, **changes: int | bool) -> Registers:
        """A copy with the named registers changed (the manager's answer)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def split_dword(value: int) -> tuple[int, int]:
    """(high word, low word) of a 32-bit value: DX:AX and similar register pairs."""
    return (value >> 16) & REGISTER_MASK, value & REGISTER_MASK


def join_dword(high: int, low: int) -> int:
    """The 32-bit value of a register pair high:low (DX:AX, ES:BX as a linear pair)."""
    return ((high & REGISTER_MASK) << 16) | (low & REGISTER_MASK)
