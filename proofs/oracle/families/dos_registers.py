"""The dos family's calls in register form (PROTOCOL.md, "Register form").

:func:`to_registers` turns a seed-level call of the DOS machine's rules into
the registers a DOS program loads for it; :func:`from_registers` reads the
registers the implementation returns back into the seed-level result and
error, so both modes judge them as before; :func:`seed_call` goes the other
way for a saved trace's register steps. The mapping (model/int21.py,
model/xms_call.py, model/int67.py cite the sources of each register):

- INT 21h: AllocateDosMemory = AH=48h BX; FreeDosMemory = 49h ES;
  ResizeDosMemory = 4Ah ES BX; Get/SetAllocationStrategy = 5800h / 5801h BL;
  GetUmbLink = 5802h (AL); SetUmbLink = 5803h BX 0/1. CF set: the result is
  false / 0 and the error AX; CF clear: error 0, the result AX (48h, 5800h),
  AL (5802h) or true.
- XMS: XmsQueryFree 08h (AX << 16 | DX), XmsAllocate 09h DX (DX), XmsFree
  0Ah, XmsMove 0Bh, XmsLock 0Ch (DX << 16 | BX), XmsUnlock 0Dh,
  XmsGetHandleInfo 0Eh (BH << 24 | BL << 16 | DX), XmsReallocate 0Fh DX BX;
  the handle in DX. AX = 0: the error BL and the result false / 0; else error 0.
- EMS: EmsGetStatus 40h (AH), EmsGetPageFrame 41h (BX), EmsGetPageCounts 42h
  (BX << 16 | DX), EmsAllocate 43h BX (DX), EmsMap 44h AL physical BX logical
  DX handle, EmsDeallocate 45h DX, EmsGetVersion 46h (AL), EmsGetHandleCount
  4Bh (BX), EmsGetHandlePages 4Ch DX (BX). The error is AH; not 0: false / 0.
- XmsMove's 16-byte structure is stored first (a WriteMemory) at
  :data:`MOVE_SCRATCH`, 07F0h:0000h, below the chain's first MCB (0800h):
  memory the family's world does not otherwise use; DS:SI point at it.

Calls no DOS program makes through these registers go in seed form: the
seed's own C++ calls (GetDosMemorySize, GetDosLargestBlock, AllocateXmsMemory,
FreeXmsMemory, AllocateEmsPages, FreeEmsPages, MapEmsPageToPhysical), the
protocol's Initialize and WriteMemory, and a call whose argument no register
can hold (a negative number, one wider than its register, a non-integer: the
rules' hostile values), which the model refuses in seed form.
"""

from __future__ import annotations

from typing import Any

from model.xms_call import MOVE_STRUCT
from proofs.oracle.managers import Message
from proofs.oracle.register_form import REGISTER_FIELDS

#: Where XmsMove's structure is stored: (segment, offset), below the chain.
MOVE_SCRATCH = (0x07F0, 0x0000)
_WIDTH = {"ax": 16, "bx": 16, "cx": 16, "dx": 16, "es": 16, "al": 8, "bl": 8, "flag": 1}

#: seed op -> (register op, AX on entry, ((parameter, register), ...), result)
TABLE: dict[str, tuple[str, int, tuple[tuple[str, str], ...], str]] = {
    "AllocateDosMemory": ("Int21h", 0x4800, (("paragraphs", "bx"),), "ax"),
    "FreeDosMemory": ("Int21h", 0x4900, (("segment", "es"),), "bool"),
    "ResizeDosMemory": ("Int21h", 0x4A00, (("segment", "es"), ("paragraphs", "bx")), "bool"),
    "GetAllocationStrategy": ("Int21h", 0x5800, (), "ax"),
    "SetAllocationStrategy": ("Int21h", 0x5801, (("strategy", "bl"),), "bool"),
    "GetUmbLink": ("Int21h", 0x5802, (), "al_bool"),
    "SetUmbLink": ("Int21h", 0x5803, (("linked", "flag"),), "bool"),
    "XmsQueryFree": ("XmsCall", 0x0800, (), "ax_dx"),
    "XmsAllocate": ("XmsCall", 0x0900, (("kb", "dx"),), "dx"),
    "XmsFree": ("XmsCall", 0x0A00, (("handle", "dx"),), "bool"),
    "XmsMove": ("XmsCall", 0x0B00, (), "bool"),
    "XmsLock": ("XmsCall", 0x0C00, (("handle", "dx"),), "dx_bx"),
    "XmsUnlock": ("XmsCall", 0x0D00, (("handle", "dx"),), "bool"),
    "XmsGetHandleInfo": ("XmsCall", 0x0E00, (("handle", "dx"),), "bx_dx"),
    "XmsReallocate": ("XmsCall", 0x0F00, (("handle", "dx"), ("kb", "bx")), "bool"),
    "EmsGetStatus": ("Int67h", 0x4000, (), "ah"),
    "EmsGetPageFrame": ("Int67h", 0x4100, (), "bx"),
    "EmsGetPageCounts": ("Int67h", 0x4200, (), "bx_dx"),
    "EmsAllocate": ("Int67h", 0x4300, (("pages", "bx"),), "dx"),
    "EmsMap": ("Int67h", 0x4400, (("handle", "dx"), ("logical", "bx"), ("physical", "al")),
               "bool"),
    "EmsDeallocate": ("Int67h", 0x4500, (("handle", "dx"),), "bool"),
    "EmsGetVersion": ("Int67h", 0x4600, (), "al"),
    "EmsGetHandleCount": ("Int67h", 0x4B00, (), "bx"),
    "EmsGetHandlePages": ("Int67h", 0x4C00, (("handle", "dx"),), "bx"),
}
_MOVE_FIELDS = ("length", "src_handle", "src_offset", "dst_handle", "dst_offset")
_MOVE_WIDTHS = (32, 16, 32, 16, 32)
_WIDE = {"ax": "eax", "bx": "ebx", "cx": "ecx", "dx": "edx"}


def _fits(value: Any, width: int) -> bool:
    if width == 1:
        return type(value) is bool
    return type(value) is int and 0 <= value < 1 << width


def move_structure(args: Message) -> bytes | None:
    """XmsMove's 16-byte structure (None when a field does not fit it)."""
    values = [args[name] for name in _MOVE_FIELDS]
    if not all(_fits(v, w) for v, w in zip(values, _MOVE_WIDTHS, strict=True)):
        return None
    return MOVE_STRUCT.pack(*values)


def move_write(args: Message) -> Message:
    """The WriteMemory that stores XmsMove's structure at MOVE_SCRATCH (the call
    is in register form: its fields fit)."""
    segment, offset = MOVE_SCRATCH
    return {"address": segment * 16 + offset, "data": (move_structure(args) or b"").hex()}


def to_registers(op: str, args: Message) -> tuple[str, Message] | None:
    """(register op, register object) for a seed-level call; None: seed form."""
    entry = TABLE.get(op)
    if entry is None:
        return None
    name, ax, params, _ = entry
    regs: Message = dict.fromkeys(REGISTER_FIELDS, 0)
    regs["carry"] = False
    regs["eax"] = ax
    if op == "XmsMove":
        if move_structure(args) is None:
            return None
        regs["ds"], regs["esi"] = MOVE_SCRATCH
    for param, register in params:
        value = args[param]
        if not _fits(value, _WIDTH[register]):
            return None
        if register in ("al", "bl"):
            regs["e" + register[0] + "x"] |= value
        elif register == "flag":
            regs["ebx"] = int(value)
        else:
            regs[_WIDE.get(register, register)] = value
    return name, regs


def from_registers(op: str, regs: Message) -> tuple[Any, int]:
    """The seed-level (result, error) the returned registers say (a validated
    register object)."""
    _, _, _, kind = TABLE[op]
    ax, bx, dx = regs["eax"] & 0xFFFF, regs["ebx"] & 0xFFFF, regs["edx"] & 0xFFFF
    if TABLE[op][0] == "Int21h":
        error = ax if regs["carry"] else 0
    elif TABLE[op][0] == "XmsCall":
        error = bx & 0xFF if ax == 0 else 0
    else:
        error = ax >> 8
    if kind == "bool":
        return error == 0, error
    if kind == "ah" or kind == "ax_dx":  # the status itself; AX:DX even when AX = 0
        return (ax >> 8 if kind == "ah" else ax << 16 | dx), error
    if error:
        return 0 if kind != "al_bool" else False, error
    values = {"ax": ax, "al": ax & 0xFF, "al_bool": ax & 0xFF == 1, "bx": bx, "dx": dx,
              "dx_bx": dx << 16 | bx, "bx_dx": bx << 16 | dx}
    return values[kind], error


#: The register bits each call may write (model/int21.py: AX and CF, BX after
#: error 8; model/xms_call.py: AX, BL or BX, DX; model/int67.py: AH and the
#: outputs), beyond which every register comes back as it was loaded.
_WRITES: dict[str, tuple[tuple[str, int], ...]] = {
    "XmsQueryFree": (("eax", 0xFFFF), ("ebx", 0xFF), ("edx", 0xFFFF)),
    "XmsAllocate": (("eax", 0xFFFF), ("ebx", 0xFF), ("edx", 0xFFFF)),
    "XmsLock": (("eax", 0xFFFF), ("ebx", 0xFFFF), ("edx", 0xFFFF)),
    "XmsGetHandleInfo": (("eax", 0xFFFF), ("ebx", 0xFFFF), ("edx", 0xFFFF)),
    "EmsGetPageFrame": (("eax", 0xFF00), ("ebx", 0xFFFF)),
    "EmsGetPageCounts": (("eax", 0xFF00), ("ebx", 0xFFFF), ("edx", 0xFFFF)),
    "EmsAllocate": (("eax", 0xFF00), ("edx", 0xFFFF)),
    "EmsGetVersion": (("eax", 0xFFFF),),
    "EmsGetHandleCount": (("eax", 0xFF00), ("ebx", 0xFFFF)),
    "EmsGetHandlePages": (("eax", 0xFF00), ("ebx", 0xFFFF)),
}
_DEFAULT_WRITES = {"Int21h": (("eax", 0xFFFF),), "XmsCall": (("eax", 0xFFFF), ("ebx", 0xFF)),
                   "Int67h": (("eax", 0xFF00),)}


def register_problems(op: str, sent: Message, got: Message) -> list[str]:
    """What the registers after a register-form call break of the rules that hold
    whatever the state (spec mode's register check): no register but the call's
    outputs changes (MS-DOS restores the caller's registers, DISP.ASM:261/:417;
    HIMEM and the EMM write only their outputs), INT 21h AX = ES - 1 after 49h
    and ES after 4Ah (ALLOC.ASM:350-356, :287-288), AX kept by a successful
    5801h / 5803h and AH by 5802h, XMS AX 0 or 1 (but 08h)."""
    name = TABLE[op][0]
    writes = dict(_WRITES.get(op, _DEFAULT_WRITES[name]))
    if name == "Int21h" and got["carry"] and got["eax"] & 0xFFFF == 8:
        writes["ebx"] = 0xFFFF
    problems = [f"{register.upper()} changed from {sent[register]:#x} to {got[register]:#x} "
                f"(the call writes {writes.get(register, 0):#x} of it)"
                for register in REGISTER_FIELDS[:-1]
                if (sent[register] ^ got[register]) & ~writes.get(register, 0)]
    if name != "Int21h" and got["carry"] != sent["carry"]:
        problems.append("CF changed")
    ax, function = got["eax"] & 0xFFFF, sent["eax"] & 0xFFFF
    if name == "Int21h" and not got["carry"]:
        want = {0x4900: (sent["es"] - 1) & 0xFFFF, 0x4A00: sent["es"], 0x5801: function,
                0x5803: function}.get(function, ax)
        if function == 0x5802:
            want = (function & 0xFF00) | (ax & 0xFF)
        if ax != want:
            problems.append(f"AX after AX={function:04X}h: expected {want:#06x}, "
                            f"observed {ax:#06x}")
    if name == "XmsCall" and op != "XmsQueryFree" and ax not in (0, 1):
        problems.append(f"AX after AH={function >> 8:02X}h is {ax:#06x}, not 1 or 0")
    return problems


def seed_call(op: str, regs: Message, structure: bytes | None = None
              ) -> tuple[str, Message] | None:
    """The seed-level call a register step of a trace makes (``structure``: the
    bytes at DS:SI, for XMS 0Bh); None when it is none of :data:`TABLE`'s."""
    ax = regs.get("eax", 0) & 0xFFFF if type(regs.get("eax")) is int else -1
    for seed, (name, entry_ax, params, _) in TABLE.items():
        if name != op or (entry_ax >> 8) != ax >> 8 or (
                name == "Int21h" and entry_ax & 0xFF != ax & 0xFF and entry_ax >> 8 == 0x58):
            continue
        if seed == "XmsMove":
            if structure is None or len(structure) != MOVE_STRUCT.size:
                return None
            return seed, dict(zip(_MOVE_FIELDS, MOVE_STRUCT.unpack(structure), strict=True))
        args: Message = {}
        for param, register in params:
            if register in ("al", "bl"):
                args[param] = regs["e" + register[0] + "x"] & 0xFF
            elif register == "flag":
                args[param] = bool(regs["ebx"] & 0xFFFF)
            else:
                args[param] = regs[_WIDE.get(register, register)] & 0xFFFF
        return seed, args
    return None
