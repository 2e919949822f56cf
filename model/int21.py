"""INT 21h at the register level: AH=48h, 49h, 4Ah and 58h (issue 15).

``int21h(dos, regs)`` is ``DosMemoryManager.Int21h``: it reads the call from
the registers, runs the manager's operation and returns the registers the
program finds after the IRET. Sources: MS-DOS 4.0's own (microsoft/MS-DOS,
v4.0/src/DOS/); DOS 5's UMB link (58h AL=02h/03h) is not in it and follows
FreeDOS (FDOS/kernel kernel/inthndlr.c) and DOSBox-staging (src/dos/dos.cpp).

- What changes. The dispatcher saves every register on the caller's stack and
  restores them on return (DISP.ASM:261 save_world, :417 restore_world); a
  routine ends in SYS_RET_OK, which clears the caller's CF and stores AX, or
  SYS_RET_ERR, which sets CF and stores the error code in AX with AH = 0
  (MS_CODE.ASM:294-309), and LEAVEDOS stores AL once more (DISP.ASM:412).
  So only AX and CF change, plus BX where a routine writes the caller's BX
  (ALLOC.ASM:201-203). The high words of the 32-bit registers are untouched
  (MS-DOS 4 is 8086 code).
- AH=48h (ALLOC.ASM:160-293): BX paragraphs; AX = the block's segment, CF
  clear (:287-291); error 8: CF, AX = 8, BX = the largest free block
  (:200-205); error 7: CF, AX = 7, BX unchanged (:192-194).
- AH=49h (ALLOC.ASM:346-361): ES = the block; success leaves AX = ES - 1,
  the MCB's segment, as the routine left it (:350-356, ``DEC AX`` then
  SYS_RET_OK); failure CF, AX = 9.
- AH=4Ah (ALLOC.ASM:311-332): ES, BX; success AX = ES (the routine ends at
  alloc_set_owner, :287-288: AX = MCB + 1); error 8: BX = the largest size
  the block can reach (:327-331, pushed CX -> alloc_fail's user BX).
- AH=58h (ALLOC.ASM:375-389): AL=00h AX = the strategy, AH = 0 (:383-385);
  AL=01h BX = the strategy, AX unchanged on success (:386-388); AL=02h AL =
  the UMB link, AH kept (FreeDOS inthndlr.c:1222-1224, DOSBox dos.cpp:1320-
  1322); AL=03h BX = 0 unlink / 1 link (DOSBox dos_memory.cpp:441-458: any
  other BX is error 1); any other AL: CF, AX = 1 (ALLOC.ASM:380-381,
  FreeDOS inthndlr.c:1234-1235). Carry is cleared on success (FreeDOS
  inthndlr.c:452-456).
- AH past the table (above 6Ch, MS_TABLE.ASM:407-409, DISP.ASM:237-238):
  AL = 0 and IRET, every other register and CF as they were (DISP.ASM:192-
  200: "we CANNOT set the carry flag"). The table's CP/M no-ops 18h, 1Dh,
  1Eh, 20h and 61h (MS_TABLE.ASM:265,278,279,287,389 CPMFUNC) answer the same
  (MS_CODE.ASM:313-315: ``XOR AL,AL``).
- Deviation: the table's other functions (files, processes, ...) are not
  modelled: they get the no-op's answer (AL = 0, nothing else changes).
- Hostile registers (``Registers.valid()`` false, or not a Registers): no
  register can hold such a value, so the call never reaches DOS; the answer
  is a fresh record with CF set and AX = 87 (invalid parameter, the model's
  answer to bad arguments, also in ``last_error``) and no manager operation
  runs: the state is unchanged. Every answer sets ``last_error`` (0 for the
  no-op answer, 1 for 58h's undefined subfunctions).
"""

from __future__ import annotations

from typing import Protocol

from model.registers import WORD_MASK, Registers
from spec.abi import DosError


class DosMemoryManager(Protocol):
    """The manager's calls INT 21h uses (model/dos_memory.py's class)."""

    last_error: int
    largest_available: int

    def AllocateDosMemory(self, paragraphs: int) -> int: ...
    def FreeDosMemory(self, segment: int) -> bool: ...
    def ResizeDosMemory(self, segment: int, paragraphs: int) -> bool: ...
    def GetAllocationStrategy(self) -> int: ...
    def SetAllocationStrategy(self, strategy: int) -> bool: ...
    def GetUmbLink(self) -> bool: ...
    def SetUmbLink(self, linked: bool) -> bool: ...

#: The last function of MS-DOS 4.0's dispatch table (MS_TABLE.ASM:407, 6Ch).
MAXCOM = 0x6C
#: CPMFUNC entries of the table: XOR AL,AL and return (MS_CODE.ASM:313-315).
CPM_NO_OPS = frozenset({0x18, 0x1D, 0x1E, 0x20, 0x61})
ALLOC, DEALLOC, SETBLOCK, ALLOC_OPER = 0x48, 0x49, 0x4A, 0x58


def int21h(dos: DosMemoryManager, regs: Registers) -> Registers:
    """The registers after INT 21h with ``regs``; see the module docstring."""
    if not (isinstance(regs, Registers) and regs.valid()):
        dos.last_error = DosError.INVALID_PARAMETER
        return Registers(eax=int(DosError.INVALID_PARAMETER), carry=True)
    function = regs.ah
    if function == ALLOC:
        segment = dos.AllocateDosMemory(regs.bx)
        if segment:
            return regs.set(ax=segment, carry=False)
        return _failed(dos, regs)
    if function == DEALLOC:
        if dos.FreeDosMemory(regs.es):
            return regs.set(ax=(regs.es - 1) & WORD_MASK, carry=False)
        return _failed(dos, regs)
    if function == SETBLOCK:
        if dos.ResizeDosMemory(regs.es, regs.bx):
            return regs.set(ax=regs.es, carry=False)
        return _failed(dos, regs)
    if function == ALLOC_OPER:
        return _alloc_oper(dos, regs)
    dos.last_error = DosError.SUCCESS
    return regs.set(al=0)


def _alloc_oper(dos: DosMemoryManager, regs: Registers) -> Registers:
    """AH=58h, subfunctions AL=00h-03h."""
    sub = regs.al
    if sub == 0x00:
        return regs.set(ax=dos.GetAllocationStrategy() & 0xFF, carry=False)
    if sub == 0x01:
        done = dos.SetAllocationStrategy(regs.bl)
    elif sub == 0x02:
        return regs.set(al=int(dos.GetUmbLink()), carry=False)
    elif sub == 0x03 and regs.bx in (0, 1):
        done = dos.SetUmbLink(bool(regs.bx))
    else:
        dos.last_error = DosError.INVALID_FUNCTION
        return regs.set(ax=DosError.INVALID_FUNCTION, carry=True)
    return regs.set(carry=False) if done else _failed(dos, regs)


def _failed(dos: DosMemoryManager, regs: Registers) -> Registers:
    """CF set, AX = the error code; error 8 also reports the largest size in BX."""
    code = int(dos.last_error)
    if code == DosError.NOT_ENOUGH_MEMORY:
        return regs.set(ax=code, bx=dos.largest_available, carry=True)
    return regs.set(ax=code, carry=True)
