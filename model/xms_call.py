"""XmsCall: the XMS driver's far-call entry point (INT 2Fh AX=4310h gives its
address), registers in, registers out, over XmsDriver (model/xms.py) and its
HMA/A20 state (model/xms_hma.py).

AH is the function. A function that reports success or failure returns AX =
0001h on success and AX = 0000h with BL = the error code on failure (XMS 3.0;
DOSBox-staging src/ints/xms.cpp lines 495-505). Registers a function does not
name are returned unchanged; 16-bit results keep the high word of their
32-bit register (HimemX.asm lines 922-957 save and restore it).

- 00h: AX = 0300h (XMS 3.00, BCD), BX = 0301h (the driver revision
  DOSBox-staging reports, xms.cpp line 32), DX = 1 (the HMA exists).
- 01h (DX = bytes wanted) - 07h: model/xms_hma.py; 07h answers AX = 1 / 0 with
  BL = 0 (xms.cpp lines 575-578).
- 08h: AX = largest free KB, DX = total free KB, each clamped to FFFFh
  ("cap sizes for older programs", xms.cpp lines 579-585; HimemX lines
  938-946), BL = 0, or A0h when nothing is free.
- 09h (DX KB): DX = the handle; on failure DX = 0 (HimemX ?ALLOCDX0, xms.cpp
  line 590). 0Ah (DX handle). 0Bh: DS:SI points to the 16-byte move
  structure (dword length, word source handle, dword source offset, word
  destination handle, dword destination offset); BL is left as it was on
  success (xms.cpp line 597).
- 0Ch: DX:BX = the block's 32-bit physical address. 0Dh (DX handle).
- 0Eh: BH = lock count, BL = free handles (at most FFh), DX = size KB; a block
  of more than FFFFh KB fails with A2h, as Microsoft's HIMEM (HimemX
  ?HINF_MSCOMP, lines 1697-1703).
- 0Fh (DX handle, BX KB).
- 10h-12h, upper memory blocks: without UMBs there is no UMB provider and
  HIMEM alone answers 80h (HimemX dispatcher, lines 1992-1999; xms.cpp lines
  622-624, 663-666). With UMBs, DOS=UMB has linked every UMB into its own
  chain at boot (model/dos_memory.py), so 10h answers B1h with DX = 0 (no
  UMB, largest 0) and 11h/12h B2h (not a segment the driver handed out)
  (XMS 3.0 functions 10h-12h).
- 88h: EAX = largest free KB, EDX = total free KB, ECX = the highest address
  of the memory the driver manages (pool end - 1; HimemX xms_highest_addr,
  lines 3305-3310; DOSBox reports the end of all memory - 1, line 684),
  BL = 0 / A0h. 89h (EDX KB): DX = the handle. 8Eh: BH = lock count, CX =
  free handles, EDX = size KB, BL unchanged (xms.cpp lines 692-700). 8Fh
  (DX handle, EBX KB).
- Any other AH: AX = 0, BL = 80h (xms.cpp lines 704-706; HimemX lines
  1996-1999), nothing changes. A register record no register can hold
  (``not regs.valid()``) is refused the same way, before any state is read;
  so is every call to a driver that did not install (a manager not ready).
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from model.dos_physical import read_physical
from model.registers import Registers
from model.xms import XmsDriver
from spec.abi import (
    HIMEM_DRIVER_REVISION,
    HIMEM_INVALID_UMB,
    HIMEM_NO_UMB,
    HIMEM_NOT_IMPLEMENTED,
    HIMEM_SPEC_VERSION,
    XMS_INVALID_HANDLE,
    XMS_SUCCESS,
)

#: The XMS move structure (XMS 3.0 function 0Bh).
MOVE_STRUCT = struct.Struct("<IHIHI")


class _Call:
    """One XMS call: the driver, whether UMBs exist, the caller's registers."""

    def __init__(self, xms: XmsDriver, has_umbs: bool, regs: Registers) -> None:
        self.xms, self.has_umbs, self.regs = xms, has_umbs, regs

    def status(self, code: int, **more: int) -> Registers:
        """AX = 1 / BL = 0 on success, AX = 0 / BL = code on failure."""
        if code == XMS_SUCCESS:
            return self.regs.set(ax=1, bl=0, **more)
        return self.regs.set(ax=0, bl=code)

    def last(self, ok: bool, **more: int) -> Registers:
        return self.status(XMS_SUCCESS if ok else self.xms.last_error, **more)

    def version(self) -> Registers:
        return self.regs.set(ax=HIMEM_SPEC_VERSION, bx=HIMEM_DRIVER_REVISION, dx=1)

    def request_hma(self) -> Registers:
        return self.status(self.xms.hma.RequestHma(self.regs.dx))

    def release_hma(self) -> Registers:
        return self.status(self.xms.hma.ReleaseHma())

    def global_enable(self) -> Registers:
        return self.status(self.xms.hma.GlobalEnableA20())

    def global_disable(self) -> Registers:
        return self.status(self.xms.hma.GlobalDisableA20())

    def local_enable(self) -> Registers:
        return self.status(self.xms.hma.LocalEnableA20())

    def local_disable(self) -> Registers:
        return self.status(self.xms.hma.LocalDisableA20())

    def query_a20(self) -> Registers:
        return self.regs.set(ax=int(self.xms.hma.QueryA20()), bl=0)

    def query_free(self) -> Registers:
        largest, total = self.xms.XmsQueryFree()
        return self.regs.set(ax=min(largest, 0xFFFF), dx=min(total, 0xFFFF),
                             bl=self.xms.last_error)

    def query_any_free(self) -> Registers:
        largest, total = self.xms.XmsQueryFree()
        return self.regs.set(eax=largest, edx=total, ecx=self.xms.pool_end - 1,
                             bl=self.xms.last_error)

    def allocate(self, kb: int) -> Registers:
        handle = self.xms.XmsAllocate(kb)
        if handle == 0:
            return self.regs.set(ax=0, dx=0, bl=self.xms.last_error)
        return self.status(XMS_SUCCESS, dx=handle)

    def free(self) -> Registers:
        return self.last(self.xms.XmsFree(self.regs.dx))

    def move(self) -> Registers:
        address = self.regs.ds * 16 + self.regs.si
        fields = MOVE_STRUCT.unpack(read_physical(self.xms.pageman, address, MOVE_STRUCT.size))
        if self.xms.XmsMove(*fields):
            return self.regs.set(ax=1)
        return self.status(self.xms.last_error)

    def lock(self) -> Registers:
        address = self.xms.XmsLock(self.regs.dx)
        if self.xms.last_error != XMS_SUCCESS:
            return self.status(self.xms.last_error)
        return self.regs.set(ax=1, dx=address >> 16, bx=address & 0xFFFF)

    def unlock(self) -> Registers:
        return self.last(self.xms.XmsUnlock(self.regs.dx))

    def handle_info(self, wide: bool) -> Registers:
        info = self.xms.XmsGetHandleInfo(self.regs.dx)
        if info is None:
            return self.status(self.xms.last_error)
        locks, free, size = info
        if wide:
            return self.regs.set(ax=1, bx=(locks << 8) | self.regs.bl, cx=free, edx=size)
        if size > 0xFFFF:
            return self.status(XMS_INVALID_HANDLE)
        return self.regs.set(ax=1, bx=(locks << 8) | min(free, 0xFF), dx=size)

    def reallocate(self, kb: int) -> Registers:
        return self.last(self.xms.XmsReallocate(self.regs.dx, kb))

    def request_umb(self) -> Registers:
        if not self.has_umbs:
            return self.status(HIMEM_NOT_IMPLEMENTED)
        return self.regs.set(ax=0, bl=HIMEM_NO_UMB, dx=0)

    def other_umb(self) -> Registers:
        return self.status(HIMEM_INVALID_UMB if self.has_umbs else HIMEM_NOT_IMPLEMENTED)


_FUNCTIONS: dict[int, Callable[[_Call], Registers]] = {
    0x00: _Call.version, 0x01: _Call.request_hma, 0x02: _Call.release_hma,
    0x03: _Call.global_enable, 0x04: _Call.global_disable, 0x05: _Call.local_enable,
    0x06: _Call.local_disable, 0x07: _Call.query_a20, 0x08: _Call.query_free,
    0x09: lambda call: call.allocate(call.regs.dx), 0x0A: _Call.free, 0x0B: _Call.move,
    0x0C: _Call.lock, 0x0D: _Call.unlock,
    0x0E: lambda call: call.handle_info(False),
    0x0F: lambda call: call.reallocate(call.regs.bx),
    0x10: _Call.request_umb, 0x11: _Call.other_umb, 0x12: _Call.other_umb,
    0x88: _Call.query_any_free, 0x89: lambda call: call.allocate(call.regs.edx),
    0x8E: lambda call: call.handle_info(True),
    0x8F: lambda call: call.reallocate(call.regs.ebx),
}


def xms_call(xms: XmsDriver, has_umbs: bool, regs: Registers, *,
             installed: bool = True) -> Registers:
    """The XMS driver entry: AH the function; the registers the caller finds after."""
    if not (isinstance(regs, Registers) and regs.valid()):
        return Registers(ebx=HIMEM_NOT_IMPLEMENTED)
    function = _FUNCTIONS.get(regs.ah)
    if function is None or not (installed and xms.ready):
        return regs.set(ax=0, bl=HIMEM_NOT_IMPLEMENTED)
    return function(_Call(xms, has_umbs, regs))
