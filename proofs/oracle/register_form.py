"""The register form of the DOS manager (PROTOCOL.md, "Register form").

An implementation whose hello says ``"register_form": ["DosMemoryManager"]``
serves INT 21h, the XMS driver's entry and INT 67h as a DOS program calls
them: ops ``Int21h``, ``XmsCall`` and ``Int67h`` whose args are the *register
object* (model/registers.py's Registers: eax..edi as 32-bit numbers, ds and es
as 16-bit ones, carry a boolean) and whose result is the register object the
program finds after the call. This module holds what both modes need: the
register object on the wire and the names strict mode reports a mismatch by.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from model.registers import Registers

#: The managers a hello may declare in register form.
REGISTER_MANAGERS = ("DosMemoryManager",)
#: The register-form ops: INT 21h, the XMS entry point, INT 67h.
REGISTER_OPS = ("Int21h", "XmsCall", "Int67h")
#: The register object's fields, in the order of model/registers.py.
REGISTER_FIELDS = tuple(f.name for f in dataclasses.fields(Registers))
#: The 16-bit views strict mode names a mismatch by (the high word separately).
_WORDS = {"eax": "AX", "ebx": "BX", "ecx": "CX", "edx": "DX", "esi": "SI", "edi": "DI"}


def to_message(regs: Registers) -> dict[str, Any]:
    """The register object of a Registers."""
    return {name: getattr(regs, name) for name in REGISTER_FIELDS}


def from_message(args: dict[str, Any]) -> Registers:
    """A Registers holding the object's values as they came (the manager refuses
    what no register can hold: ``Registers.valid``)."""
    return Registers(**{name: args[name] for name in REGISTER_FIELDS})


def registers_text(regs: dict[str, Any]) -> str:
    """A register object as a debugger shows it: AX=4800 BX=FFFF ... CF=0 (a
    32-bit register by its E-name when its high word is not 0)."""
    if set(regs) != set(REGISTER_FIELDS) or not all(
            type(regs[name]) is int for name in REGISTER_FIELDS[:-1]):
        return repr(regs)
    parts = [f"E{_WORDS[name]}={regs[name]:08X}" if regs[name] >> 16
             else f"{_WORDS[name]}={regs[name]:04X}" for name in _WORDS]
    return " ".join([*parts, f"DS={regs['ds']:04X}", f"ES={regs['es']:04X}",
                     f"CF={int(bool(regs['carry']))}"])


def register_differences(got: Any, want: dict[str, Any]) -> list[str]:
    """Each register the implementation left other than the model, named as a
    program reads it (AX, BX, ..., the high word as EAX[31:16]), expected and
    observed in hex."""
    if not isinstance(got, dict):
        return [f"result: expected the register object, observed {got!r}"]
    out = []
    for name in REGISTER_FIELDS:
        a, b = got.get(name), want[name]
        if a == b and type(a) is type(b):
            continue
        if name == "carry" or type(a) is not int:
            out.append(f"{name.upper()}: expected {b!r}, observed {a!r}")
        elif name in _WORDS and (a ^ b) & 0xFFFF:
            out.append(f"{_WORDS[name]}: expected {b & 0xFFFF:#06x}, observed {a & 0xFFFF:#06x}"
                       + ("" if (a ^ b) >> 16 == 0 else f" (E{_WORDS[name]} {b:#010x} vs "
                                                         f"{a:#010x})"))
        elif name in _WORDS:
            out.append(f"{name.upper()}[31:16]: expected {b >> 16:#06x}, "
                       f"observed {a >> 16:#06x}")
        else:
            out.append(f"{name.upper()}: expected {b:#06x}, observed {a:#06x}")
    return out
