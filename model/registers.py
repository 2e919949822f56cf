"""The registers a DOS program sees across INT 21h, the XMS driver's entry point
and INT 67h (issue 15: register-level front ends).

A call takes a ``Registers`` and returns the ``Registers`` the program finds
after it: the general registers, the segment registers DS and ES, and the carry
flag (INT 21h reports failure with CF set and the error code in AX; XMS and EMS
report status in AX and BL / AH instead). The general registers are held at
their 32-bit width (EAX..EDI), because XMS 3.0's super-extended functions
88h-8Fh pass sizes in EAX, EDX and ECX; the 16-bit names are views of the low
word, and writing one keeps the high word, as ``mov ax, ...`` does on an i386
(Intel SDM vol. 1, 3.4.1 "General-Purpose Registers"). A register holds only
what fits it; a value outside that range cannot be loaded, so it is refused when
the record is built, before any manager sees it (``Registers.valid``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

#: A 16-bit register (and the low word of a 32-bit one).
WORD_MASK = 0xFFFF
#: A 32-bit general register.
DWORD_MASK = 0xFFFF_FFFF
#: The 16-bit name -> the 32-bit register whose low word it is.
LOW_WORDS = {"ax": "eax", "bx": "ebx", "cx": "ecx", "dx": "edx", "si": "esi", "di": "edi"}


@dataclass(frozen=True)
class Registers:
    """EAX..EDI, DS, ES and the carry flag, as a DOS program sees them."""

    eax: int = 0
    ebx: int = 0
    ecx: int = 0
    edx: int = 0
    esi: int = 0
    edi: int = 0
    ds: int = 0
    es: int = 0
    carry: bool = False

    @property
    def ax(self) -> int:
        return self.eax & WORD_MASK

    @property
    def bx(self) -> int:
        return self.ebx & WORD_MASK

    @property
    def cx(self) -> int:
        return self.ecx & WORD_MASK

    @property
    def dx(self) -> int:
        return self.edx & WORD_MASK

    @property
    def si(self) -> int:
        return self.esi & WORD_MASK

    @property
    def di(self) -> int:
        return self.edi & WORD_MASK

    @property
    def ah(self) -> int:
        """The high byte of AX (the function number of INT 21h, XMS and INT 67h)."""
        return (self.eax >> 8) & 0xFF

    @property
    def al(self) -> int:
        """The low byte of AX (the subfunction of AH=58h, say)."""
        return self.eax & 0xFF

    @property
    def bl(self) -> int:
        """The low byte of BX (the XMS error code on failure)."""
        return self.ebx & 0xFF

    def valid(self) -> bool:
        """Every general register within 32 bits, DS and ES within 16, the carry a bool."""
        wide = (self.eax, self.ebx, self.ecx, self.edx, self.esi, self.edi)
        return (all(type(value) is int and 0 <= value <= DWORD_MASK for value in wide)
                and all(type(value) is int and 0 <= value <= WORD_MASK
                        for value in (self.ds, self.es))
                and type(self.carry) is bool)

    def set(self, **changes: int | bool) -> Registers:
        """A copy with the named registers changed (the manager's answer). A 16-bit
        name (ax, bx, ...) replaces the low word of its 32-bit register and keeps
        the high word; ah, al and bl replace their byte."""
        wide: dict[str, int | bool] = {}
        for name, value in changes.items():
            if name in LOW_WORDS:
                full = LOW_WORDS[name]
                current = wide.get(full, getattr(self, full))
                wide[full] = (int(current) & ~WORD_MASK) | (int(value) & WORD_MASK)
            elif name in ("ah", "al", "bl"):
                full = "ebx" if name == "bl" else "eax"
                shift = 8 if name == "ah" else 0
                current = int(wide.get(full, getattr(self, full)))
                wide[full] = (current & ~(0xFF << shift)) | ((int(value) & 0xFF) << shift)
            else:
                wide[name] = value
        return dataclasses.replace(self, **wide)  # type: ignore[arg-type]


def split_dword(value: int) -> tuple[int, int]:
    """(high word, low word) of a 32-bit value: DX:AX and similar register pairs."""
    return (value >> 16) & WORD_MASK, value & WORD_MASK


def join_dword(high: int, low: int) -> int:
    """The 32-bit value of a register pair high:low (DX:AX, say)."""
    return ((high & WORD_MASK) << 16) | (low & WORD_MASK)
