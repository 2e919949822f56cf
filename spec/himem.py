"""HIMEM's HMA and A20 state (XMS 3.0 functions 01h-07h): DOS-6 and DOS-6H.

The state: ``hma_owned`` (a program holds the HMA), ``hma_min`` (/HMAMIN in
bytes), ``a20_count`` (the local-enable count; A20 is on exactly when it is
above 0) and ``a20_global`` (the global-enable flag). The rules are those of
model/xms_hma.py (DOSBox-staging src/ints/xms.cpp lines 185-224 and 513-578,
"how Microsoft HIMEM.SYS implements this"; HimemX.asm lines 648-789).

Spec-level decision: 06h (and 04h) lowering a count that stays above 0 is a
step that succeeds here, its result ``True`` ("A20 still enabled"); HIMEM
answers it with AX = 0 and BL = 94h, but the count has fallen, so it is the
state change of a success and the register answer is the result's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import z3

from spec.abi import (
    A20_MAX_COUNT,
    HIMEM_A20_ERROR,
    HIMEM_HMA_IN_USE,
    HIMEM_HMA_NOT_ALLOCATED,
    HIMEM_HMA_TOO_SMALL,
)
from spec.state import Ref, fresh_fields, ite_fields, refuted
from spec.step import Transition, guarded

INT, BOOL = z3.IntSort(), z3.BoolSort()


@dataclass(frozen=True)
class HimemState:
    """HIMEM's HMA owner flag, /HMAMIN and A20 counts."""

    hma_owned: Ref  # Bool
    hma_min: Ref  # Int: bytes
    a20_count: Ref  # Int: outstanding local enables
    a20_global: Ref  # Bool

    def but(self, **changes: Ref) -> HimemState:
        return dataclasses.replace(self, **changes)


_SORTS = {"hma_owned": BOOL, "hma_min": INT, "a20_count": INT, "a20_global": BOOL}
HimemStep = Transition[HimemState]


def symbolic_himem(prefix: str = "hm") -> HimemState:
    return fresh_fields(HimemState, _SORTS, prefix)


def ite_himem(cond: Ref, then: HimemState, other: HimemState) -> HimemState:
    return ite_fields(HimemState, cond, then, other)


def himem_step(pre: HimemState, code: Ref, post: HimemState,
               result: Ref | None = None) -> HimemStep:
    return guarded(pre, code, post, ite_himem, result, None if result is None
                   else z3.BoolVal(False))


def status(*checks: tuple[Ref, int]) -> Ref:
    """The code of the first failing check, else 0."""
    code: Ref = z3.IntVal(0)
    for failed, error in reversed(checks):
        code = z3.If(failed, z3.IntVal(error), code)
    return code


def a20_on(s: HimemState) -> Ref:
    return s.a20_count > 0


# -- invariants ----------------------------------------------------------------------

def dos_6(s: HimemState) -> Ref:
    """DOS-6: the A20 local count stays in [0, A20_MAX_COUNT] (06h at 0 and 05h at
    the limit are 82h): every enable that succeeded is undone by exactly one
    disable, so A20 is off again exactly when all of them are (XMS 3.0 function
    06h: "A20 is disabled only if all previous calls to function 5 have been
    canceled"); /HMAMIN is 0..63 KB."""
    return z3.And(0 <= s.a20_count, s.a20_count <= A20_MAX_COUNT,
                  0 <= s.hma_min, s.hma_min <= 63 * 1024)


INVARIANTS: dict[str, Callable[[HimemState], Ref]] = {"DOS-6": dos_6}


def dos_6h(pre: HimemState, result: HimemStep, args: Mapping[str, Ref]) -> Ref:
    """DOS-6H (a claim on RequestHma): the HMA has one owner at a time: a request
    that succeeds found it free and asked for at least /HMAMIN bytes (XMS 3.0
    function 01h: 91h in use, 92h below /HMAMIN)."""
    return z3.Implies(result.ok, z3.And(z3.Not(pre.hma_owned),
                                        args["wanted"] >= pre.hma_min))


STEP_CLAIMS = {"DOS-6H": ("RequestHma", dos_6h)}


# -- steps ---------------------------------------------------------------------------

def RequestHma(s: HimemState, wanted: Ref) -> HimemStep:
    """01h (DX = wanted bytes): 91h held, then 92h below /HMAMIN."""
    code = status((s.hma_owned, HIMEM_HMA_IN_USE), (wanted < s.hma_min, HIMEM_HMA_TOO_SMALL))
    return himem_step(s, code, s.but(hma_owned=z3.BoolVal(True)), z3.BoolVal(True))


def ReleaseHma(s: HimemState) -> HimemStep:
    """02h: 93h when nobody holds it."""
    code = status((z3.Not(s.hma_owned), HIMEM_HMA_NOT_ALLOCATED))
    return himem_step(s, code, s.but(hma_owned=z3.BoolVal(False)), z3.BoolVal(True))


def LocalEnableA20(s: HimemState) -> HimemStep:
    """05h: 82h at the count's limit."""
    code = status((s.a20_count >= A20_MAX_COUNT, HIMEM_A20_ERROR))
    return himem_step(s, code, s.but(a20_count=s.a20_count + 1), z3.BoolVal(False))


def LocalDisableA20(s: HimemState) -> HimemStep:
    """06h: 82h at 0; else the count falls; the result: A20 still enabled (94h)."""
    code = status((s.a20_count == 0, HIMEM_A20_ERROR))
    return himem_step(s, code, s.but(a20_count=s.a20_count - 1), s.a20_count > 1)


def GlobalEnableA20(s: HimemState) -> HimemStep:
    """03h: with the flag clear, a local enable that sets the flag; else nothing."""
    enable = LocalEnableA20(s)
    code = z3.If(s.a20_global, z3.IntVal(0), enable.status)
    post = ite_himem(s.a20_global, s, enable.changed.but(a20_global=z3.BoolVal(True)))
    return himem_step(s, code, post, z3.BoolVal(False))


def GlobalDisableA20(s: HimemState) -> HimemStep:
    """04h: with the flag set, a local disable that clears the flag when A20 goes
    off (94h keeps it); else nothing."""
    disable = LocalDisableA20(s)
    still = s.a20_count > 1
    code = z3.If(s.a20_global, disable.status, z3.IntVal(0))
    post = ite_himem(s.a20_global, disable.changed.but(a20_global=still), s)
    return himem_step(s, code, post, z3.And(s.a20_global, still))


def QueryA20(s: HimemState) -> HimemStep:
    """07h: the result is whether A20 is on; nothing changes."""
    return himem_step(s, z3.IntVal(0), s, a20_on(s))


# -- concrete states -----------------------------------------------------------------

def concrete_himem(*, hma_owned: bool, hma_min: int, a20_count: int,
                   a20_global: bool) -> HimemState:
    return HimemState(z3.BoolVal(hma_owned), z3.IntVal(hma_min), z3.IntVal(a20_count),
                      z3.BoolVal(a20_global))


def violated(s: HimemState, timeout_ms: int = 10000) -> list[str]:
    return refuted(INVARIANTS, s, timeout_ms)
