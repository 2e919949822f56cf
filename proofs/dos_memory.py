"""Obligations of DOS memory (spec/dos_memory.py): every call x DOS-1..5, and
the step claim DOS-4F on XmsFree; HIMEM's HMA and A20 calls (spec/himem.py) x
DOS-6 and the claim DOS-6H on RequestHma; the EMM's 5Dh and 5Bh (spec/ems_os.py)
x DOS-7, DOS-8 and the claims DOS-7K, DOS-7D; all unbounded: the chains are arrays over
segments with the ghost ``mcb_of``, so no proof walks the chain and none
has a bound on its length or on the number of handles.

The seed's calls are proved through the spec's steps (AllocateDosMemory and
ResizeDosMemory after Coalesce, which joins free blocks as MS-DOS's scan
does; MapEmsPageToPhysical is EmsMapPage or EmsUnmapPage, ...). Reachable states
are built by running the spec's own steps with concrete arguments from the
initial state, so a broken variant's counterexample comes from a state the
spec reaches.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import TypeVar

import z3

from proofs.inductive.layered import Layer, layer_obligations
from proofs.inductive.paging import conjuncts, instances
from proofs.obligation import Obligation
from spec import dos_memory as dm
from spec import ems_os as eo
from spec import himem as hm
from spec.abi import CONVENTIONAL_TOP, XMS_BASE
from spec.catalogue import Operation
from spec.dos_memory import DosState
from spec.state import Ref
from spec.step import Transition

_S = TypeVar("_S")

INT, BOOL = z3.IntSort(), z3.BoolSort()
_DM = "dos_memory"
SEGMENT, PARAGRAPHS = ("segment", INT), ("paragraphs", INT)
HANDLE, KB = ("handle", INT), ("kb", INT)
I2I = z3.ArraySort(INT, INT)

CHAIN_OPERATIONS = (
    # AH=48h and AH=4Ah join free blocks first (ALLOC.ASM's Coalesce), then act
    Operation("Coalesce", _DM, dm.Coalesce, (("mcb", INT), ("stop", INT)), internal=True),
    Operation("AllocCarve", _DM, dm.AllocateDosMemory,
              (PARAGRAPHS, ("block", INT), ("psp", INT)), internal=True),
    Operation("AllocateDosMemory", _DM, dm.AllocateDosMemory, (),
              parts=("Coalesce", "AllocCarve")),
    Operation("FreeDosMemory", _DM, dm.FreeDosMemory, (SEGMENT,)),
    Operation("SetBlock", _DM, dm.ResizeDosMemory, (SEGMENT, PARAGRAPHS, ("psp", INT)),
              internal=True),
    Operation("ResizeDosMemory", _DM, dm.ResizeDosMemory, (), parts=("Coalesce", "SetBlock")),
)
#: Calls that leave the chain alone (or change one MCB's type).
PLAIN_OPERATIONS = (
    Operation("SetAllocationStrategy", _DM, dm.SetAllocationStrategy, (("strategy", INT),)),
    Operation("SetUmbLink", _DM, dm.SetUmbLink, (("link", BOOL),)),
    Operation("Query", _DM, dm.Query, (), internal=True),
    Operation("GetDosMemorySize", _DM, dm.Query, (), parts=("Query",)),
    Operation("GetDosLargestBlock", _DM, dm.Query, (), parts=("Query",)),
    Operation("XmsAllocate", _DM, dm.XmsAllocate,
              (KB, HANDLE, ("address", INT), ("full", BOOL), ("oom", BOOL))),
    Operation("AllocateXmsMemory", _DM, dm.XmsAllocate, (), parts=("XmsAllocate",)),
    Operation("XmsFree", _DM, dm.XmsFree, (HANDLE,)),
    Operation("FreeXmsMemory", _DM, dm.XmsFree, (), parts=("XmsFree",)),
    Operation("XmsLock", _DM, dm.XmsLock, (HANDLE,)),
    Operation("XmsUnlock", _DM, dm.XmsUnlock, (HANDLE,)),
    Operation("XmsReallocate", _DM, dm.XmsReallocate,
              (HANDLE, KB, ("address", INT), ("oom", BOOL))),
    Operation("XmsMove", _DM, dm.XmsMove,
              (("length", INT), ("src_handle", INT), ("src_offset", INT), ("dst_handle", INT),
               ("dst_offset", INT))),
    Operation("EmsAllocate", _DM, dm.EmsAllocate,
              (("pages", INT), HANDLE, ("pick", I2I), ("pinv", I2I), ("full", BOOL),
               ("short", BOOL))),
    Operation("AllocateEmsPages", _DM, dm.EmsAllocate, (), parts=("EmsAllocate",)),
    Operation("EmsAllocateAny", _DM, dm.EmsAllocateAny,
              (("pages", INT), HANDLE, ("pick", I2I), ("pinv", I2I), ("full", BOOL),
               ("short", BOOL))),
    Operation("EmsDeallocate", _DM, dm.EmsDeallocate, (HANDLE,)),
    Operation("EmsSaveMap", _DM, dm.EmsSaveMap, (HANDLE,)),
    Operation("EmsRestoreMap", _DM, dm.EmsRestoreMap, (HANDLE,)),
    Operation("EmsReallocate", _DM, dm.EmsReallocate,
              (HANDLE, ("pages", INT), ("pick", I2I), ("pinv", I2I), ("short", BOOL))),
    Operation("FreeEmsPages", _DM, dm.EmsDeallocate, (), parts=("EmsDeallocate",)),
    Operation("EmsMapPage", _DM, dm.EmsMapPage,
              (HANDLE, ("logical", INT), ("physical", INT)), internal=True),
    Operation("EmsUnmapPage", _DM, dm.EmsUnmapPage, (HANDLE, ("physical", INT)),
              internal=True),
    Operation("EmsMap", _DM, dm.EmsMapPage, (), parts=("EmsMapPage", "EmsUnmapPage")),
    Operation("MapEmsPageToPhysical", _DM, dm.EmsMapPage, (),
              parts=("EmsMapPage", "EmsUnmapPage")),
    # LIM 4.0 functions 15 and 16 (4Eh, 4Fh): a context read changes nothing; a
    # context set (4Eh/01h, 4Fh/01h, and 5Bh/01h's mapping) maps or unmaps one
    # physical page at a time, each a 44h step
    Operation("EmsGetPartialPageMap", _DM, dm.Query, (), parts=("Query",)),
    Operation("EmsSetPartialPageMap", _DM, dm.EmsMapPage, (),
              parts=("EmsMapPage", "EmsUnmapPage")),
    Operation("EmsSetPageMap", _DM, dm.EmsMapPage, (), parts=("EmsMapPage", "EmsUnmapPage")),
)


def show(model: z3.ModelRef, pre: DosState) -> str:
    def value(term: Ref) -> str:
        return str(model.eval(term, model_completion=True))

    return (f"first {value(pre.first)}, UMBs [{value(pre.umb_start)}, {value(pre.umb_end)}) "
            f"linked {value(pre.linked)}, strategy {value(pre.strategy)}; xms_end "
            f"{value(pre.xms_end)}; EMS pages {value(pre.etotal)}")


# -- reachable states -------------------------------------------------------------------

FIRST, UMB_START, UMB_END, XMS_END, EMS_TOTAL = 0x0800, 0xC800, 0xE000, 0x400000, 16


def _i(value: int) -> Ref:
    return z3.IntVal(value)


def _ok(step: Transition[_S]) -> _S:
    """The successor of a step that must succeed (its arguments are concrete)."""
    solver = z3.Solver()
    solver.add(z3.Not(z3.And(step.ok, step.assume)))
    assert solver.check() == z3.unsat, "a reachable state's step failed"
    return step.changed


def _pick(first: int) -> tuple[Ref, Ref]:
    v = z3.Int("_v")
    return z3.Lambda([v], v + first), z3.Lambda([v], v - first)


@functools.cache
def dos_states() -> list[tuple[str, DosState]]:
    """Three conventional blocks with a hole; then a UMB taken with the link on
    and high-only strategy, two XMS blocks, one locked, two EMS handles with
    pages mapped in slots 0 and 1, the mapping saved in handle 2's area; and a
    system without UMBs."""
    no = z3.BoolVal(False)
    s = dm.initial_dos(FIRST, UMB_START, UMB_END, XMS_END, EMS_TOTAL)
    size = CONVENTIONAL_TOP - FIRST - 1
    s = _ok(dm.AllocateDosMemory(s, _i(0x100), _i(FIRST), _i(0x60)))
    second = FIRST + 0x101
    s = _ok(dm.AllocateDosMemory(s, _i(0x200), _i(second), _i(0x60)))
    third = second + 0x201
    s = _ok(dm.AllocateDosMemory(s, _i(0x80), _i(third), _i(0x70)))
    s = _ok(dm.FreeDosMemory(s, _i(second + 1)))
    assert size > 0x400
    conventional = s
    s = _ok(dm.SetUmbLink(s, z3.BoolVal(True)))
    s = _ok(dm.SetAllocationStrategy(s, _i(0x40)))
    s = _ok(dm.AllocateDosMemory(s, _i(0x40), _i(UMB_START), _i(0x70)))
    s = _ok(dm.XmsAllocate(s, _i(64), _i(1), _i(XMS_BASE), no, no))
    s = _ok(dm.XmsAllocate(s, _i(16), _i(2), _i(XMS_BASE + 64 * 1024), no, no))
    s = _ok(dm.XmsLock(s, _i(2)))
    s = _ok(dm.EmsAllocate(s, _i(2), _i(1), *_pick(0), no, no))
    s = _ok(dm.EmsAllocate(s, _i(3), _i(2), *_pick(2), no, no))
    s = _ok(dm.EmsMapPage(s, _i(1), _i(1), _i(0)))
    s = _ok(dm.EmsMapPage(s, _i(2), _i(0), _i(1)))
    s = _ok(dm.EmsSaveMap(s, _i(2)))
    bare = dm.initial_dos(FIRST, UMB_START, UMB_START, XMS_END, EMS_TOTAL)
    bare = _ok(dm.AllocateDosMemory(bare, _i(0x100), _i(FIRST), _i(0x60)))
    return [("conventional blocks with a hole", conventional),
            ("UMB, XMS and EMS in use", s), ("no UMBs, one block taken", bare)]


SUPPORT = {"DOS-1": ("DOS-1", "DOS-2", "DOS-3"), "DOS-2": ("DOS-2", "DOS-3"),
           "DOS-3": ("DOS-2", "DOS-3"), "DOS-4": ("DOS-4",), "DOS-5": ("DOS-5",)}

#: 1 s or more in a quick run (jobs 1, shared machine, 2026-11-30: 1.0-7.1 s):
#: the full profile proves them, the quick one stays CI-sized.
FULL_ONLY = frozenset(f"{_DM}.{name}" for name in (
    "AllocateDosMemory.DOS-2", "AllocateDosMemory.DOS-3", "FreeDosMemory.DOS-2",
    "ResizeDosMemory.DOS-2", "ResizeDosMemory.DOS-3"))



def ground(pre: DosState, invariants: Ref, terms: list[Ref]) -> list[Ref]:
    """Instances of the chain invariants at the segments a step touches: each
    term, its neighbours, the blocks holding them and the blocks after those;
    two-variable ones (tiling) at pairs of a smaller pool; the ground
    conjuncts as they are. Only DOS-1..3 (the chain's) are instantiated."""
    base = [t for t in terms if t.sort() == INT]
    near = [*base, *(t - 1 for t in base), *(t - 2 for t in base)]
    blocks = [pre.mcb_of[t] for t in near]
    after = [dm.nxt(pre, b) for b in [*near, *blocks]]
    wide = [*near, *blocks, *after, *(dm.nxt(pre, b) for b in after), pre.first,
            pre.umb_start, pre.mcb_of[CONVENTIONAL_TOP - 1]]
    chain = {part.get_id() for holds in (dm.dos_1, dm.dos_2, dm.dos_3)
             for part in conjuncts(holds(pre))}
    out: list[Ref] = []
    for part in conjuncts(invariants):
        if part.get_id() not in chain:
            continue
        if not (z3.is_quantifier(part) and part.is_forall()):
            out.append(part)
            continue
        pool = wide if part.num_vars() == 1 else [*near, *blocks]
        out += instances(part, {INT: pool})
    return out


#: The calls that reshape the chain, helped by ground instances (tried
#: first); the others (strategy, link, queries, XMS, EMS) without them.
LAYER = Layer(_DM, dm.symbolic_dos, dm.INVARIANTS, CHAIN_OPERATIONS, support=SUPPORT,
              ground=ground, full_only=FULL_ONLY, show=show, reachable=dos_states)
PLAIN_LAYER = Layer(_DM, dm.symbolic_dos, dm.INVARIANTS, PLAIN_OPERATIONS, support=SUPPORT,
                     step_claims=dm.STEP_CLAIMS, full_only=FULL_ONLY, show=show,
                     reachable=dos_states)


# -- HIMEM's HMA and A20 (spec/himem.py) --------------------------------------------------

HIMEM_OPERATIONS = (
    Operation("RequestHma", _DM, hm.RequestHma, (("wanted", INT),)),
    Operation("ReleaseHma", _DM, hm.ReleaseHma, ()),
    Operation("GlobalEnableA20", _DM, hm.GlobalEnableA20, ()),
    Operation("GlobalDisableA20", _DM, hm.GlobalDisableA20, ()),
    Operation("LocalEnableA20", _DM, hm.LocalEnableA20, ()),
    Operation("LocalDisableA20", _DM, hm.LocalDisableA20, ()),
    Operation("QueryA20", _DM, hm.QueryA20, ()),
)


def show_himem(model: z3.ModelRef, pre: hm.HimemState) -> str:
    def value(term: Ref) -> str:
        return str(model.eval(term, model_completion=True))

    return (f"HMA owned {value(pre.hma_owned)} (/HMAMIN {value(pre.hma_min)} bytes), A20 count "
            f"{value(pre.a20_count)}, global {value(pre.a20_global)}")


@functools.cache
def himem_states() -> list[tuple[str, hm.HimemState]]:
    """The driver as loaded (/HMAMIN=1), the HMA held with A20 enabled twice
    (global and local), and the global flag left set after a local disable
    took the count to 0 (HIMEM keeps the flag)."""
    s = hm.concrete_himem(hma_owned=False, hma_min=1024, a20_count=0, a20_global=False)
    loaded = s
    s = _ok(hm.RequestHma(s, _i(0xFFFF)))
    s = _ok(hm.GlobalEnableA20(s))
    s = _ok(hm.LocalEnableA20(s))
    busy = s
    s = _ok(hm.LocalDisableA20(s))
    s = _ok(hm.LocalDisableA20(s))
    return [("loaded", loaded), ("HMA held, A20 enabled twice", busy),
            ("global flag, count 0", s)]


HIMEM_LAYER = Layer(_DM, hm.symbolic_himem, hm.INVARIANTS, HIMEM_OPERATIONS,
                    step_claims=hm.STEP_CLAIMS, show=show_himem, reachable=himem_states)


# -- the EMM's OS state: 5Bh and 5Dh (spec/ems_os.py) ------------------------------------

EMS_OS_OPERATIONS = (
    Operation("OsFunctionSet", _DM, eo.OsFunctionSet,
              (("function", INT), ("presented", INT), ("key", INT))),
    Operation("AlternateMapRegisterSet", _DM, eo.AlternateMapRegisterSet,
              (("function", INT), ("bl", INT), SEGMENT, ("offset", INT), ("corrupt", BOOL))),
)


def show_ems_os(model: z3.ModelRef, pre: eo.EmsOsState) -> str:
    def value(term: Ref) -> str:
        return str(model.eval(term, model_completion=True))

    return (f"OS/E set enabled {value(pre.os_enabled)}, key held {value(pre.key_held)} "
            f"({value(pre.access_key)}, {value(pre.keys_issued)} issued), save area "
            f"{value(pre.alt_set)} at {value(pre.alt_segment)}:{value(pre.alt_offset)}")


@functools.cache
def ems_os_states() -> list[tuple[str, eo.EmsOsState]]:
    """As loaded; disabled by the first 01h (a key issued) with a save area set;
    the key returned (02h), so enabled again with none outstanding."""
    s = eo.initial_ems_os()
    loaded = s
    key = _i(0x4F53_0001)
    s = _ok(eo.OsFunctionSet(s, _i(1), _i(0), key))
    held = s
    s = _ok(eo.OsFunctionSet(s, _i(0), key, key))
    s = _ok(eo.AlternateMapRegisterSet(s, _i(1), _i(0), _i(0x2000), _i(0x10), z3.BoolVal(False)))
    s = _ok(eo.OsFunctionSet(s, _i(2), key, key))
    return [("loaded", loaded), ("disabled, key held", held),
            ("key returned, save area set", s)]


EMS_OS_LAYER = Layer(_DM, eo.symbolic_ems_os, eo.INVARIANTS, EMS_OS_OPERATIONS,
                     step_claims=eo.STEP_CLAIMS, show=show_ems_os, reachable=ems_os_states)


def obligations() -> Iterator[Obligation]:
    yield from layer_obligations(LAYER)
    yield from layer_obligations(PLAIN_LAYER)
    yield from layer_obligations(HIMEM_LAYER)
    yield from layer_obligations(EMS_OS_LAYER)
