"""INT 67h's operating-system functions over EmsManager (model/ems.py): 5Bh
"Alternate Map Register Set" (LIM 4.0 function 28) and 5Dh "Enable/Disable
OS/E Function Set" (LIM 4.0 function 30). DOSBox-staging has neither (its
handler answers 84h, src/ints/ems.cpp lines 1116-1119); the rules follow the
specification's function descriptions (RBIL INT 67h AH=5Bh/5Dh lists the
same statuses) for a driver with no alternate register sets, as EMM386 on a
machine without mapping hardware:

- 5Bh/00h: BL = 0; ES:DI = the context save area 01h set last (0:0 when
  none), which receives the current 16-byte 4Eh context first. 01h: BL = 0:
  the context at ES:DI is mapped (A3h when 4Eh/01h would refuse it; nothing
  changes) and ES:DI becomes the save area; BL != 0: 9Ch. 02h: DX = 16.
  03h/05h (allocate a map / DMA register set): BL = 0, none available.
  04h/06h/07h/08h (deallocate, enable / disable DMA on, deallocate DMA
  register set BL): BL = 0 accepted, nothing to do (a decision: no source
  says what set 0 means to these); other BL 9Ch. Other AL 8Fh.
- 5Dh: the first 00h (enable) or 01h (disable) call returns the access key in
  BX:CX; every later 00h/01h/02h call must present it in BX:CX (A4h
  otherwise, nothing changes). 02h (return the key) enables the functions and
  forgets the key, so the next 00h/01h issues a new one; 02h with no key
  issued changes nothing (a decision: the specification is silent). Other
  AL 8Fh. While the set is disabled 59h and 5Bh answer A4h. The model's key
  is deterministic (the issue count over a fixed base); EMM386's is
  unpredictable, which a model need not be.
"""

from __future__ import annotations

from model.dos_physical import read_physical, write_physical
from model.ems import EmsManager
from model.registers import Registers
from spec.abi import (
    EMM_ACCESS_DENIED,
    EMM_CONTEXT_SIZE,
    EMM_CORRUPT_MAP,
    EMM_INVALID_SUBFUNCTION,
    EMM_NO_ALTERNATE_SETS,
    EMS_SUCCESS,
)

#: The model's first access key (BX:CX); the n-th key issued is this plus n.
KEY_BASE = 0x4F53_0000


def alternate_map_register_set(ems: EmsManager, regs: Registers) -> Registers:
    """5Bh, LIM 4.0 function 28, with no alternate register sets."""
    if not ems.os_enabled:
        return regs.set(ah=EMM_ACCESS_DENIED)
    if regs.al == 0:
        if ems.alternate_area is None:
            return regs.set(ah=EMS_SUCCESS, bl=0, es=0, di=0)
        segment, offset = ems.alternate_area
        write_physical(ems.pageman, segment * 16 + offset, ems.EmsGetPageMap())
        return regs.set(ah=EMS_SUCCESS, bl=0, es=segment, di=offset)
    if regs.al == 1:
        if regs.bl:
            return regs.set(ah=EMM_NO_ALTERNATE_SETS)
        context = read_physical(ems.pageman, regs.es * 16 + regs.di, EMM_CONTEXT_SIZE)
        if not ems.page_map_valid(context):
            return regs.set(ah=EMM_CORRUPT_MAP)
        ems.EmsSetPageMap(context)
        ems.alternate_area = (regs.es, regs.di)
        return regs.set(ah=EMS_SUCCESS)
    if regs.al == 2:
        return regs.set(ah=EMS_SUCCESS, dx=EMM_CONTEXT_SIZE)
    if regs.al in (3, 5):
        return regs.set(ah=EMS_SUCCESS, bl=0)
    if regs.al in (4, 6, 7, 8):
        return regs.set(ah=EMM_NO_ALTERNATE_SETS if regs.bl else EMS_SUCCESS)
    return regs.set(ah=EMM_INVALID_SUBFUNCTION)


def os_function_set(ems: EmsManager, regs: Registers) -> Registers:
    """5Dh, LIM 4.0 function 30: enable (00h) / disable (01h) 59h and 5Bh, return
    the access key (02h)."""
    if regs.al > 2:
        return regs.set(ah=EMM_INVALID_SUBFUNCTION)
    presented = (regs.bx << 16) | regs.cx
    if ems.access_key is None:
        if regs.al == 2:
            return regs.set(ah=EMS_SUCCESS)
        ems.keys_issued += 1
        ems.access_key = (KEY_BASE + ems.keys_issued) & 0xFFFF_FFFF
        ems.os_enabled = regs.al == 0
        return regs.set(ah=EMS_SUCCESS, bx=ems.access_key >> 16, cx=ems.access_key)
    if presented != ems.access_key:
        return regs.set(ah=EMM_ACCESS_DENIED)
    ems.os_enabled = regs.al != 1
    if regs.al == 2:
        ems.access_key = None
    return regs.set(ah=EMS_SUCCESS)
