"""XmsHma: the HMA and the A20 line as HIMEM.SYS keeps them (XMS 3.0 functions 01h-07h).

State: ``hma_owned`` (a program or TSR holds the HMA), ``hma_min`` (HIMEM's
/HMAMIN=n, stored in bytes, n KB * 1024, n in 0..63: HimemX.asm lines
3186-3202), ``a20_global`` (the global-enable flag) and ``a20_local`` (the
local-enable count). The A20 line is on exactly when the count is above 0.
The HMA always exists here: the manager's memory reaches past 110000h, so 00h
reports DX=1 and 90h ("HMA does not exist") is never the answer. Its 65,520
bytes are model/hma_memory.py's (XmsDriver.hma_memory), which 0Bh with handle
0 reads and writes whoever owns the HMA and whatever the A20 count (HIMEM
turns A20 on around the copy itself; model/xms.py).

Rules (DOSBox-staging src/ints/xms.cpp lines 185-224 and 513-578, "how
Microsoft HIMEM.SYS implements this"; HimemX.asm lines 648-789):

- 01h request (DX = bytes wanted, FFFFh for an application): 91h when the HMA
  is already held, then 92h when DX < hma_min; else the caller holds it.
- 02h release: 93h when nobody holds it; else released.
- 05h local enable: 82h when the count is at its limit (xms.cpp line 190);
  else the count rises and A20 is on. 06h local disable: 82h when the count
  is 0 (xms.cpp line 214, "HIMEM.SYS behavior"), else the count falls; 94h
  ("A20 still enabled") while it stays above 0, success when it reaches 0.
- 03h global enable: only when the flag is clear, a local enable that sets the
  flag if it succeeds; 04h global disable: only when the flag is set, a local
  disable that clears the flag if it succeeds (94h keeps it set). A second 03h
  or an 04h without a flag succeeds and changes nothing.
- 07h query: AX = 1 when A20 is on, BL = 0.

Each call returns its XMS status (0 = success); a failure changes nothing
except the count a 94h answer has already lowered, as HIMEM does.
"""

from __future__ import annotations

from spec.abi import (
    A20_MAX_COUNT,
    HIMEM_A20_ERROR,
    HIMEM_A20_STILL_ENABLED,
    HIMEM_HMA_IN_USE,
    HIMEM_HMA_NOT_ALLOCATED,
    HIMEM_HMA_TOO_SMALL,
    XMS_SUCCESS,
)

#: /HMAMIN's largest value, 63 KB, in bytes (HimemX.asm lines 3197-3202).
HMA_MIN_LIMIT = 63 * 1024


class XmsHma:
    """HIMEM's HMA owner flag and A20 counts."""

    def __init__(self, hma_min: int = 0) -> None:
        self.hma_owned = False
        self.hma_min = hma_min
        self.a20_global = False
        self.a20_local = 0

    @property
    def a20_enabled(self) -> bool:
        return self.a20_local > 0

    def QueryA20(self) -> bool:
        """07h: whether the A20 line is on."""
        return self.a20_enabled

    def RequestHma(self, wanted: int) -> int:
        """01h: wanted = DX, the bytes the caller needs (FFFFh: an application)."""
        if self.hma_owned:
            return HIMEM_HMA_IN_USE
        if wanted < self.hma_min:
            return HIMEM_HMA_TOO_SMALL
        self.hma_owned = True
        return XMS_SUCCESS

    def ReleaseHma(self) -> int:
        """02h."""
        if not self.hma_owned:
            return HIMEM_HMA_NOT_ALLOCATED
        self.hma_owned = False
        return XMS_SUCCESS

    def GlobalEnableA20(self) -> int:
        """03h."""
        if self.a20_global:
            return XMS_SUCCESS
        code = self.LocalEnableA20()
        if code == XMS_SUCCESS:
            self.a20_global = True
        return code

    def GlobalDisableA20(self) -> int:
        """04h."""
        if not self.a20_global:
            return XMS_SUCCESS
        code = self.LocalDisableA20()
        if code == XMS_SUCCESS:
            self.a20_global = False
        return code

    def LocalEnableA20(self) -> int:
        """05h."""
        if self.a20_local >= A20_MAX_COUNT:
            return HIMEM_A20_ERROR
        self.a20_local += 1
        return XMS_SUCCESS

    def LocalDisableA20(self) -> int:
        """06h."""
        if self.a20_local == 0:
            return HIMEM_A20_ERROR
        self.a20_local -= 1
        return HIMEM_A20_STILL_ENABLED if self.a20_local else XMS_SUCCESS
