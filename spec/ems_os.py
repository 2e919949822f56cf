"""The EMM's operating-system state (LIM 4.0 functions 28 and 30, INT 67h AH=5Bh
and 5Dh): DOS-7, DOS-8 and the step claims DOS-7K, DOS-7D.

The state, as model/ems_os.py keeps it on EmsManager: ``os_enabled`` (5Dh
has not disabled the OS/E set), ``key_held`` (an access key is outstanding:
issued by the first 00h/01h, forgotten by 02h), ``access_key`` (its BX:CX
value), ``keys_issued`` (how many keys were issued), and the 5Bh/01h context
save area ``alt_set`` at ``alt_segment``:``alt_offset`` (ES:DI).

Rules (LIM 4.0 function 30, "Enable/Disable OS/E Function Set"; RBIL INT 67h
AH=5Dh lists the same statuses): the first enable or disable returns the
access key; every later call must present it (A4h otherwise, nothing
changes); "return access key" (02h) enables the set and forgets the key, so
the set is disabled only while a key is outstanding, and nobody but its
holder can enable it again. While disabled, 5Bh (and 59h) answer A4h (LIM
4.0 functions 26 and 28: "the operating system has denied access"). 5Bh/01h
(function 28, with no alternate register sets): BL != 0 is 9Ch; a context the
4Eh/01h check refuses is A3h; otherwise ES:DI becomes the save area, which
5Bh/00h returns (0:0 when none). The key's value is the EMM's (EMM386's is
unpredictable): a free choice here, any 32-bit value.

The slots 5Bh/01h (and 4Fh/01h, 4Eh/01h) map are DosState's (spec/dos_memory.py),
changed one physical page at a time by EmsMapPage / EmsUnmapPage, each proved
on its own (proofs/dos_memory.py's composite operations); this module states
only the OS state.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import z3

from spec.abi import (
    EMM_ACCESS_DENIED,
    EMM_CORRUPT_MAP,
    EMM_INVALID_SUBFUNCTION,
    EMM_NO_ALTERNATE_SETS,
)
from spec.state import Ref, fresh_fields, ite_fields, refuted
from spec.step import Transition, guarded

INT, BOOL = z3.IntSort(), z3.BoolSort()
#: BX:CX: the access key is a 32-bit value.
KEY_LIMIT = 0xFFFF_FFFF
#: A real-mode segment or offset (ES, DI).
WORD_LIMIT = 0xFFFF
#: 5Bh's subfunctions: 00h-08h (get/set, size, allocate/deallocate a map or DMA set,
#: enable/disable DMA, deallocate DMA).
ALTERNATE_LAST = 8
#: 5Bh subfunctions that name a register set in BL (set 0 only: 9Ch otherwise).
_NAMES_SET = (1, 4, 6, 7, 8)


@dataclass(frozen=True)
class EmsOsState:
    """The OS/E set's enable flag and access key; 5Bh's context save area."""

    os_enabled: Ref  # Bool
    key_held: Ref  # Bool: a key is outstanding
    access_key: Ref  # Int: BX:CX of the outstanding key
    keys_issued: Ref  # Int
    alt_set: Ref  # Bool: 5Bh/01h gave a save area
    alt_segment: Ref  # Int: ES
    alt_offset: Ref  # Int: DI

    def but(self, **changes: Ref) -> EmsOsState:
        return dataclasses.replace(self, **changes)


_SORTS = {"os_enabled": BOOL, "key_held": BOOL, "access_key": INT, "keys_issued": INT,
          "alt_set": BOOL, "alt_segment": INT, "alt_offset": INT}
EmsOsStep = Transition[EmsOsState]


def symbolic_ems_os(prefix: str = "eo") -> EmsOsState:
    return fresh_fields(EmsOsState, _SORTS, prefix)


def ite_ems_os(cond: Ref, then: EmsOsState, other: EmsOsState) -> EmsOsState:
    return ite_fields(EmsOsState, cond, then, other)


def ems_os_step(pre: EmsOsState, code: Ref, post: EmsOsState, result: Ref, failure: Ref,
                assume: Ref) -> EmsOsStep:
    return guarded(pre, code, post, ite_ems_os, result, failure, assume)


def status(*checks: tuple[Ref, int]) -> Ref:
    """The code of the first failing check, else 0."""
    code: Ref = z3.IntVal(0)
    for failed, error in reversed(checks):
        code = z3.If(failed, z3.IntVal(error), code)
    return code


def _within(value: Ref, limit: int) -> Ref:
    return z3.And(0 <= value, value <= limit)


# -- invariants ----------------------------------------------------------------------

def dos_7(s: EmsOsState) -> Ref:
    """DOS-7: the OS/E set is disabled only while an access key is outstanding
    (LIM 4.0 function 30: only a call that issues or presents the key disables
    it, and returning the key enables it), so a disabled set can always be
    enabled again by the key's holder; an outstanding key is a 32-bit value
    (BX:CX) and one of the keys issued."""
    return z3.And(0 <= s.keys_issued, z3.Implies(z3.Not(s.os_enabled), s.key_held),
                  z3.Implies(s.key_held, z3.And(1 <= s.keys_issued,
                                                _within(s.access_key, KEY_LIMIT))))


def dos_8(s: EmsOsState) -> Ref:
    """DOS-8: 5Bh's context save area is none or a real-mode far pointer
    (segment and offset words, LIM 4.0 function 28: ES:DI), which 5Bh/00h
    hands back as it was given."""
    return z3.Implies(s.alt_set, z3.And(_within(s.alt_segment, WORD_LIMIT),
                                        _within(s.alt_offset, WORD_LIMIT)))


INVARIANTS: dict[str, Callable[[EmsOsState], Ref]] = {"DOS-7": dos_7, "DOS-8": dos_8}


def dos_7k(pre: EmsOsState, result: EmsOsStep, args: Mapping[str, Ref]) -> Ref:
    """DOS-7K (a claim on OsFunctionSet): while a key is outstanding, a 5Dh that
    succeeds was given that key (LIM 4.0 function 30: A4h otherwise)."""
    return z3.Implies(z3.And(result.ok, pre.key_held), args["presented"] == pre.access_key)


def dos_7d(pre: EmsOsState, result: EmsOsStep, args: Mapping[str, Ref]) -> Ref:
    """DOS-7D (a claim on AlternateMapRegisterSet): 5Bh succeeds only while the
    OS/E set is enabled (LIM 4.0 function 28: A4h while disabled)."""
    return z3.Implies(result.ok, pre.os_enabled)


STEP_CLAIMS = {"DOS-7K": ("OsFunctionSet", dos_7k),
               "DOS-7D": ("AlternateMapRegisterSet", dos_7d)}


# -- steps ---------------------------------------------------------------------------

def OsFunctionSet(s: EmsOsState, function: Ref, presented: Ref, key: Ref) -> EmsOsStep:
    """5Dh, AL = function, BX:CX = presented; key: the value a first 00h/01h issues
    (a free choice). 8Fh for AL past 02h; with a key outstanding A4h unless it is
    presented, then 00h enables, 01h disables, 02h enables and forgets the key;
    with none, 02h changes nothing and 00h/01h issue one. The result is BX:CX
    after the call (the key issued, else as given)."""
    issue = z3.And(z3.Not(s.key_held), function != 2)
    code = status((z3.Or(function < 0, function > 2), EMM_INVALID_SUBFUNCTION),
                  (z3.And(s.key_held, presented != s.access_key), EMM_ACCESS_DENIED))
    issued = s.but(key_held=z3.BoolVal(True), access_key=key, keys_issued=s.keys_issued + 1,
                   os_enabled=function == 0)
    shown = s.but(os_enabled=function != 1, key_held=function != 2)
    post = ite_ems_os(issue, issued, ite_ems_os(s.key_held, shown, s))
    return ems_os_step(s, code, post, z3.If(issue, key, presented), presented,
                       z3.And(_within(key, KEY_LIMIT), _within(presented, KEY_LIMIT)))


def AlternateMapRegisterSet(s: EmsOsState, function: Ref, bl: Ref, segment: Ref, offset: Ref,
                            corrupt: Ref) -> EmsOsStep:
    """5Bh, AL = function, BL, ES:DI = segment:offset; corrupt: the context at ES:DI
    is one 4Eh/01h refuses (a check of DosState's handles). A4h while disabled,
    8Fh past 08h, 9Ch for a set other than 0, A3h for 01h's corrupt context;
    01h makes ES:DI the save area. The result is 00h's ES:DI as one far pointer
    (segment * 10000h + offset; 0 with no area)."""
    code = status((z3.Not(s.os_enabled), EMM_ACCESS_DENIED),
                  (z3.Or(function < 0, function > ALTERNATE_LAST), EMM_INVALID_SUBFUNCTION),
                  (z3.And(z3.Or([function == f for f in _NAMES_SET]), bl != 0),
                   EMM_NO_ALTERNATE_SETS),
                  (z3.And(function == 1, corrupt), EMM_CORRUPT_MAP))
    given = s.but(alt_set=z3.BoolVal(True), alt_segment=segment, alt_offset=offset)
    post = ite_ems_os(function == 1, given, s)
    area = z3.If(s.alt_set, s.alt_segment * 0x10000 + s.alt_offset, 0)
    return ems_os_step(s, code, post, area, z3.IntVal(0), z3.And(
        _within(segment, WORD_LIMIT), _within(offset, WORD_LIMIT), _within(bl, 0xFF)))


# -- concrete states -----------------------------------------------------------------

def concrete_ems_os(*, os_enabled: bool, access_key: int | None, keys_issued: int,
                    alternate_area: tuple[int, int] | None) -> EmsOsState:
    """The state of EmsManager's fields (None: no key / no save area)."""
    segment, offset = alternate_area or (0, 0)
    return EmsOsState(z3.BoolVal(os_enabled), z3.BoolVal(access_key is not None),
                      z3.IntVal(access_key or 0), z3.IntVal(keys_issued),
                      z3.BoolVal(alternate_area is not None), z3.IntVal(segment),
                      z3.IntVal(offset))


def initial_ems_os() -> EmsOsState:
    """As the EMM loads: enabled, no key, no save area."""
    return concrete_ems_os(os_enabled=True, access_key=None, keys_issued=0, alternate_area=None)


def violated(s: EmsOsState, timeout_ms: int = 10000) -> list[str]:
    return refuted(INVARIANTS, s, timeout_ms)
