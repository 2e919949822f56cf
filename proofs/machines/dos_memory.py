"""The DOS memory spec checked on every step of hypothesis runs (issue 6).

A RuleBasedStateMachine drives one model.dos_memory.DosMemoryManager (4 MB,
the first MB reserved, chain from 0800h, UMBs [C800h, E000h) or none, an
XMS pool to 2 MB, 8 EMS pages): AH=48h/49h/4Ah with every strategy value
(invalid ones included), the UMB link on and off, hostile segments and
sizes; the queries; XMS allocate / free / lock / unlock / reallocate / move
(handle 0 = conventional memory) through the XMS functions and the seed's
calls; EMS allocate / deallocate / map / unmap through LIM 44h and the
seed's MapEmsPageToPhysical, reallocate (51h) and save / restore the mapping
(47h/48h) and set the page map (4Eh; a successful 48h or 4Eh has no single
spec step: its slots are LIM 44h's);
HIMEM's HMA and A20 in proofs/machines/himem.py; a program's writes into its blocks and through
the EMS page frame. After every call :class:`DosHarness` checks

1. DOS-1..5 on the abstraction of the post-state (``dos_view``: the MCBs as
   read from modelled memory, not through walk(), so a block past its area
   or a bad type byte reaches the invariants; spec.dos_memory.concrete_dos;
   cached per view; unknown is a failure);
2. the transition: the spec's step from the abstraction of the pre-state,
   with the model's choices as arguments (the block the strategy took, the
   new handle, address and storage pages, which of the free-choice failures
   happened), must report the model's status (and its result: the segment,
   the locked address, AH=4Ah's maximum), and wherever the step changes the
   state (success, and AH=48h's and AH=4Ah's error 8, after which the joins
   stay) its post-state equals the abstraction of the model's on every
   observable field, pointwise over free constants; DOS-4F on XmsFree.
   AH=48h and AH=4Ah are the spec's Coalesce on each run of free blocks the
   call joins (every run of the areas AH=48h scans, the run after AH=4Ah's
   block: ``scanned``, ``free_runs``), then AllocateDosMemory or
   ResizeDosMemory on the joined state (``coalesced``);
3. a failed call changes nothing (``unchanged``): memory, frames, flags,
   handles, slots, storage;
4. contents (``contents``): bytes written into a block read back while it
   is allocated; an XMS block holds what was moved into it (the bytes moved
   equal the bytes read from the source before the move) and keeps them
   across other calls and a reallocation; a logical EMS page written through
   the page frame reads back through the frame wherever it is mapped later,
   and from its storage while unmapped;
5. a corrupted chain (``mcb-destroyed``): after a type byte of an MCB is
   damaged in modelled memory the next chain call fails with error 7 and
   changes nothing (the byte is then restored);
6. at the end of every example everything is freed: the chains are one free
   block per area again and every EMS frame is back (``frames``).

Not given to the spec (checked by 1 and 3 only): arguments that are not
16-bit values (the model's error 87, which the spec's integers cannot
express), MapEmsPageToPhysical with an unknown page or a segment outside the
frame (the seed's translation to LIM 44h), XmsMove with a handle-0 range
outside the first MB (the spec does not check seg:off). The codes of the
first are compared with the rule tables instead (:func:`hostile_code`: DOS
87; an XMS handle that is not an int A2h, an EMS one 83h).
"""

from __future__ import annotations

import dataclasses
import random
import struct
import time
from collections.abc import Iterator, Mapping
from typing import Any

import z3
from hypothesis import strategies as st
from hypothesis.stateful import initialize, precondition, rule

from model.dos_memory import DosMemoryManager, Mcb
from model.dos_physical import read_physical, write_physical
from model.ems import EmsManager, slot_address
from model.page_manager import PageManager
from model.xms import XmsDriver
from proofs.machines.checks import (
    CONTENTS,
    TRANSITION,
    UNCHANGED,
    CheckError,
    check_invariants,
    failing,
    raise_problems,
)
from proofs.machines.ems_os import EmsOsMachine
from proofs.machines.himem import HimemMachine
from proofs.machines.runner import (
    Budget,
    CheckedMachine,
    ModelVariant,
    machine_obligation,
    run_machine,
)
from proofs.machines.witness import differs
from proofs.obligation import Kind, Obligation, Verdict
from proofs.oracle.worlds.dos import raw_mcbs
from spec import dos_memory as dm
from spec.abi import (
    CONVENTIONAL_TOP,
    DEFAULT_PSP,
    EMS_INVALID_HANDLE,
    KB,
    MCB_M,
    MCB_Z,
    OWNER_FREE,
    PARAGRAPH,
    STRATEGIES,
    UNMAP,
    XMS_INVALID_HANDLE,
    DosError,
)
from spec.dos_memory import DosState, McbView, concrete_dos
from spec.state import Ref
from spec.step import Transition

#: Hypothesis budget per profile, for each machine (the HIMEM one costs little): in the quick
#: profile 2 examples each (3 x 6 measured 7.1 s CPU on the 2-core shared machine,
#: over the quick profile's share; 3 x 5 kept it near 6 s).
BUDGETS = {"quick": Budget(2, 16, 20.0), "full": Budget(100, 40, 60.0),
           "teeth": Budget(30, 16, 10.0)}
FRAMES, CORRUPTION = "frames", "mcb-destroyed"
FIRST, UMB_START, UMB_END = 0x0800, 0xC800, 0xE000
MEMORY_END, XMS_END, EMS_PAGES = 0x400000, 0x200000, 8
HOSTILE: tuple[Any, ...] = (-1, 0x10000, None, "8", 1.5)
PARAGRAPHS = (0, 1, 0x10, 0x100, 0x1000, 0x9000, 0x97FE, 0xFFFF)
STRATEGY_VALUES = (*sorted(STRATEGIES), 3, 0x43, 0xC0, 0xFF, -1)
_MCB = struct.Struct("<BHH")
View = tuple[Any, ...]


# -- the codes the spec cannot express -----------------------------------------------

#: The code of a call whose argument has the wrong type or range (the rule tables
#: of model/dos_memory.py, model/xms.py and model/ems.py): DOS 87; an XMS
#: handle that is not an int A2h, an EMS one 83h.
_DOS_CALLS = ("AllocateDosMemory", "FreeDosMemory", "ResizeDosMemory")
_XMS_HANDLE_CALLS = ("XmsLock", "XmsUnlock", "XmsFree", "FreeXmsMemory")
_EMS_HANDLE_CALLS = ("EmsDeallocate", "FreeEmsPages", "EmsReallocate", "EmsSaveMap",
                     "EmsRestoreMap")


def hostile_code(name: str, args: tuple[Any, ...]) -> int | None:
    """The documented code of a call with an ill-typed or out-of-range argument
    the spec cannot represent; None when the arguments are not such."""
    if name in _DOS_CALLS and not all(_u16(a) for a in args):
        return DosError.INVALID_PARAMETER
    if name == "SetAllocationStrategy" and type(args[0]) is not int \
            or name == "SetUmbLink" and type(args[0]) is not bool:
        return DosError.INVALID_PARAMETER
    if name in _XMS_HANDLE_CALLS and type(args[0]) is not int:
        return XMS_INVALID_HANDLE
    if name in _EMS_HANDLE_CALLS and type(args[0]) is not int:
        return EMS_INVALID_HANDLE
    return None


# -- the abstraction ------------------------------------------------------------------

def raw_chain(pm: PageManager, start: int, end: int) -> list[McbView]:
    """The MCBs from start as memory holds them: on while the type is 'M' and the
    next MCB lies before end (a block past end, a bad type byte: kept, last)."""
    return [McbView(*block) for block in raw_mcbs(pm, start, end)]


def dos_view(dos: DosMemoryManager) -> View:
    """Plain data of everything the spec's DosState holds."""
    high = raw_chain(dos.pageman, dos.umb_start, dos.umb_end) if dos.has_umbs else []
    return (tuple(raw_chain(dos.pageman, dos.first_segment, dos.conv_end)), tuple(high),
            dos.first_segment, dos.umb_start, dos.umb_end, dos.umb_linked, dos.strategy,
            tuple(sorted(dos.xms.handles.items())), dos.xms.pool_end,
            tuple((h, tuple(ids)) for h, ids in sorted(dos.ems.handles.items())),
            tuple(dos.ems.slots), dos.ems.total_pages, tuple(sorted(dos.ems.saved)))


def to_dos_state(view: View) -> DosState:
    """The DosState of a view; the handles with a saved mapping (47h) are its
    13th element, absent from the oracle's views (its protocol has no 47h)."""
    low, high, first, umb_start, umb_end, linked, strategy, xms, xms_end, ems, slots, total = \
        view[:12]
    return concrete_dos([*low, *high], first=first, umb_start=umb_start, umb_end=umb_end,
                        linked=linked, strategy=strategy, xms=dict(xms), xms_end=xms_end,
                        ems_handles={h: list(ids) for h, ids in ems}, ems_slots=slots,
                        ems_total=total, ems_saved=view[12] if len(view) > 12 else ())


#: What each term of :func:`observable` is, as the why names it.
OBSERVABLE_NAMES = (
    "first", "umb_start", "umb_end", "linked", "strategy", "xms_end", "etotal",
    "is_mcb[m]", "typ[m]", "owner[m]", "size[m]", "xlive[h]", "xaddr[h]", "xsize[h]",
    "xlock[h]", "elive[h]", "epages[h]", "pstore[h, k]", "esaved[h]", "slot_used[p]",
    "slot_h[p]", "slot_l[p]")
#: The free constants of :func:`observable` (an MCB segment, a handle, a logical
#: page, a slot).
OBSERVABLE_FREE = tuple(z3.Ints("_om _oh _ol _op"))


def observable(s: DosState) -> list[Ref]:
    """Terms over the free constants _om (segment), _oh (handle), _ol (logical
    page) and _op (slot) two states must agree on: the MCBs, the XMS blocks of
    live handles, live EMS handles' pages, the used slots (not the ghosts)."""
    m, h, k, p = z3.Ints("_om _oh _ol _op")
    mcb, xl, el, used = s.is_mcb[m], s.xlive[h], s.elive[h], s.slot_used[p]
    page = z3.And(el, 0 <= k, k < s.epages[h])
    return [s.first, s.umb_start, s.umb_end, s.linked, s.strategy, s.xms_end, s.etotal,
            mcb, *(z3.If(mcb, f[m], 0) for f in (s.typ, s.owner, s.size)),
            xl, *(z3.If(xl, f[h], 0) for f in (s.xaddr, s.xsize, s.xlock)),
            el, z3.If(el, s.epages[h], 0), z3.If(page, s.pstore[h, k], 0),
            z3.And(el, s.esaved[h]),
            used, z3.If(used, s.slot_h[p], 0), z3.If(used, s.slot_l[p], 0)]


def world(dos: DosMemoryManager) -> tuple[object, ...]:
    """Everything a failed call must leave as it was."""
    pm = dos.pageman
    return (bytes(pm.owner), list(pm.frames.words),
            {frame: bytes(page) for frame, page in pm.memory.items()}, dos.strategy,
            dos.umb_linked, dict(dos.xms.handles), {h: list(p) for h, p in dos.ems.handles.items()},
            list(dos.ems.slots), {k: list(v) for k, v in dos.ems.storage.items()},
            {h: list(v) for h, v in dos.ems.saved.items()})


def make_dos(umbs: bool = True) -> DosMemoryManager:
    pm = PageManager()
    assert pm.InitializePhysicalMemory(0x100000, MEMORY_END)
    end = UMB_END if umbs else UMB_START
    dos = DosMemoryManager(pm, first_segment=FIRST, umb_start=UMB_START, umb_end=end,
                           xms_end=XMS_END, ems_pages=EMS_PAGES)
    assert dos.ready
    return dos


def _i(value: int) -> Ref:
    return z3.IntVal(value)


def _u16(value: object) -> bool:
    return type(value) is int and 0 <= value <= 0xFFFF


# -- the harness ----------------------------------------------------------------------

def move_address(view: View, handle: Any, offset: Any) -> int | None:
    """The physical address an XMS move's (handle, offset) names in the view
    (handle 0: seg:off in conventional memory); None when it names none."""
    if type(handle) is not int or type(offset) is not int or offset < 0:
        return None
    if handle == 0:
        return (offset >> 16) * PARAGRAPH + (offset & 0xFFFF)
    block = dict(view[7]).get(handle)
    return None if block is None else block.address + offset


class DosChecks:
    """The checks of one DOS world (1-5 of the module docstring) over four hooks:
    :meth:`view` (the current state as a :func:`dos_view` tuple), :meth:`snapshot`
    (what a failed call must leave as it was), :meth:`invoke` (a call: its reply
    and status) and :meth:`read` (physical bytes). :class:`DosHarness` runs them
    on the model; the oracle's DOS judge on an implementation's observations."""

    machine: type[CheckedMachine]
    #: The owner AH=48h gives new blocks.
    psp = DEFAULT_PSP

    def _begin(self, machine: type[CheckedMachine], states: dict[View, DosState]) -> None:
        self.machine = machine
        self.conv: dict[int, bytes] = {}  # data segment -> bytes at its start
        self.xms: dict[int, bytearray] = {}  # handle -> the block's bytes
        self.ems: dict[tuple[int, int], tuple[int, bytes]] = {}  # page -> (offset, bytes)
        self.states = states
        self.raised = False  # a check failed: teardown then checks nothing more

    # -- the hooks ------------------------------------------------------------------

    def view(self) -> View:
        raise NotImplementedError

    def snapshot(self) -> object:
        raise NotImplementedError

    def invoke(self, name: str, args: tuple[Any, ...]) -> tuple[Any, int]:
        raise NotImplementedError

    def read(self, address: int, length: int) -> bytes | None:
        """Physical bytes (None: not observable)."""
        raise NotImplementedError

    def read_logical(self, handle: int, logical: int) -> bytes | None:
        """An unmapped logical EMS page's bytes (None: not observable)."""
        return None

    def resize_maximum(self) -> int | None:
        """AH=4Ah's BX after its error 8 (None: not observable)."""
        return None

    # -- a call ---------------------------------------------------------------------

    def state(self, view: View) -> DosState:
        if view not in self.states:
            self.states[view] = to_dos_state(view)
        return self.states[view]

    def call(self, name: str, *args: Any) -> Any:
        pre_view, before = self.view(), self.snapshot()
        moved = self.move_source(args) if name == "XmsMove" else None
        reply, code = self.invoke(name, args)
        self.machine.outcomes[f"{name} {code:#x}"] += 1
        where = f"{name}{args!r} returned {reply!r} (status {code:#x})"
        post_view = self.view()
        problems = check_invariants(self.machine, dm.INVARIANTS, post_view,
                                    lambda: self.state(post_view))
        partial = (name in ("AllocateDosMemory", "ResizeDosMemory")
                   and code == DosError.NOT_ENOUGH_MEMORY)
        if code and not partial and self.snapshot() != before:
            problems[UNCHANGED] = "a failed call changed memory, frames, handles or slots"
        step = self.expected(name, args, pre_view, post_view, reply, code)
        if step is not None:
            problems.update(self.transition(name, step, args, pre_view, post_view, reply,
                                            code, compare=not code or partial))
        hostile = hostile_code(name, args) if step is None else None
        if hostile is not None and code != hostile:
            problems[TRANSITION] = f"arguments of the wrong type or range: expected {hostile:#x}"
        self.follow(name, args, reply, code, pre_view, moved)
        problems.update(self.check_contents())
        self.raised = bool(problems)
        raise_problems(where, problems)
        return reply

    # -- the spec's step of a call --------------------------------------------------

    def expected(self, name: str, args: tuple[Any, ...], pre_view: View, post_view: View,
                 reply: Any, code: int) -> dm.DosStep | None:
        """The spec step the call must take; None for arguments the spec has no
        step for (see the module docstring)."""
        if not all(type(a) in (int, bool) for a in args):
            return None
        pre = self.state(pre_view)
        if name in ("AllocateDosMemory", "FreeDosMemory", "ResizeDosMemory"):
            if not all(_u16(a) for a in args):
                return None
            if name == "FreeDosMemory":
                return dm.FreeDosMemory(pre, _i(args[0]))
            if name == "AllocateDosMemory":
                joins = [run for area in scanned(pre_view, args[0]) for run in free_runs(area)]
                joined, assume = coalesced(pre, joins)
                block = holder(joined_view(pre_view, joins), reply - 1) if reply else FIRST
                step = dm.AllocateDosMemory(joined, _i(args[0]), _i(block), _i(self.psp))
            else:
                segment, paragraphs = args
                joins = [run for area in pre_view[:2] for run in free_runs(area, segment - 1)]
                joined, assume = coalesced(pre, joins)
                step = dm.ResizeDosMemory(joined, _i(segment), _i(paragraphs), _i(self.psp))
            return dataclasses.replace(step, assume=z3.And(assume, step.assume))
        if name == "SetAllocationStrategy":
            return dm.SetAllocationStrategy(pre, _i(args[0]))
        if name == "SetUmbLink":
            return dm.SetUmbLink(pre, z3.BoolVal(args[0]))
        if name in QUERIES:  # a query's failure (unknown handle) has no step
            return None if code else dm.Query(pre)
        if name in ("XmsAllocate", "AllocateXmsMemory"):
            kb = args[0] if name == "XmsAllocate" else -(-args[0] // KB)
            made = dict(post_view[7]).get(reply) if reply else None
            address = made.address if made else 0
            return dm.XmsAllocate(pre, _i(kb), _i(reply), _i(address),
                                  z3.BoolVal(code == 0xA1), z3.BoolVal(code == 0xA0))
        if name in ("XmsFree", "FreeXmsMemory"):
            return dm.XmsFree(pre, _i(args[0]))
        if name in ("XmsLock", "XmsUnlock"):
            return (dm.XmsLock if name == "XmsLock" else dm.XmsUnlock)(pre, _i(args[0]))
        if name == "XmsReallocate":
            held = dict(post_view[7]).get(args[0])
            return dm.XmsReallocate(pre, _i(args[0]), _i(args[1]),
                                    _i(held.address if held else 0), z3.BoolVal(code == 0xA0))
        if name == "XmsMove":
            if moved_outside(args):
                return None
            return dm.XmsMove(pre, *(_i(a) for a in args))
        if name in ("EmsAllocate", "AllocateEmsPages"):
            ids = dict(post_view[9]).get(reply, ()) if reply else ()
            pick: Ref = z3.K(z3.IntSort(), _i(-1))
            pinv: Ref = z3.K(z3.IntSort(), _i(-1))
            for logical, store in enumerate(ids):
                pick, pinv = z3.Store(pick, logical, store), z3.Store(pinv, store, logical)
            allocate = dm.EmsAllocateAny if args[1:] == (True,) else dm.EmsAllocate
            return allocate(pre, _i(args[0]), _i(reply), pick, pinv,
                            z3.BoolVal(code == 0x85), z3.BoolVal(code == 0x88))
        if name in ("EmsDeallocate", "FreeEmsPages"):
            return dm.EmsDeallocate(pre, _i(args[0]))
        if name == "EmsSaveMap":
            return dm.EmsSaveMap(pre, _i(args[0]))
        if name == "EmsRestoreMap":  # success: its slots are LIM 44h steps, no one step
            return dm.EmsRestoreMap(pre, _i(args[0])) if code else None
        if name == "EmsReallocate":
            old = dict(pre_view[9]).get(args[0], ())
            ids = dict(post_view[9]).get(args[0], ()) if not code else ()
            pick, pinv = z3.K(z3.IntSort(), _i(-1)), z3.K(z3.IntSort(), _i(-1))
            for logical, store in list(enumerate(ids))[len(old):]:
                pick, pinv = z3.Store(pick, logical, store), z3.Store(pinv, store, logical)
            return dm.EmsReallocate(pre, _i(args[0]), _i(args[1]), pick, pinv,
                                    z3.BoolVal(code == 0x88))
        if name == "EmsMap":
            handle, logical, physical = args
            if logical == UNMAP:
                return dm.EmsUnmapPage(pre, _i(handle), _i(physical))
            return dm.EmsMapPage(pre, _i(handle), _i(logical), _i(physical))
        if name == "MapEmsPageToPhysical":
            page_num, segment = args
            owners = {store: (h, logical) for h, ids in pre_view[9]
                      for logical, store in enumerate(ids)}
            offset = segment - 0xE000
            if page_num not in owners or offset not in (0, 0x400, 0x800, 0xC00):
                return None
            h, logical = owners[page_num]
            return dm.EmsMapPage(pre, _i(h), _i(logical), _i(offset // 0x400))
        return None

    def transition(self, name: str, step: dm.DosStep, args: tuple[Any, ...], pre_view: View,
                   post_view: View, reply: Any, code: int, *,
                   compare: bool) -> dict[str, str]:
        """The spec's status (and result) are the model's; where the step changes
        the state, its post-state is the model's on every observable field."""
        expected = code
        claims: list[tuple[str, Ref]] = [
            ("the spec's assumptions (the model's choices) hold", step.assume),
            (f"the spec's status is {expected:#x}", z3.Implies(step.assume,
                                                               step.status == expected))]
        value = self.result_of(name, reply, code)
        if value is not None and step.result is not None:
            claims.append((f"the spec's result is {value:#x}",
                           z3.Implies(step.assume, step.result == value)))
        if name in ("XmsFree", "FreeXmsMemory"):
            pre = self.state(pre_view)
            done = Transition(_i(code), pre, pre)
            claims.append(("DOS-4F", dm.dos_4f(pre, done, {"handle": _i(args[0])})))
        terms: dict[str, tuple[Ref, Ref]] = {}
        if compare:
            post = self.state(post_view)
            terms = dict(zip(OBSERVABLE_NAMES, zip(observable(step.post), observable(post),
                                                   strict=True), strict=True))
            claims += [(f"post-state {n}", z3.Implies(step.assume, a == b))
                       for n, (a, b) in terms.items()]
        bad = [differs(b.removeprefix("post-state "), *terms[b.removeprefix("post-state ")],
                       step.assume, OBSERVABLE_FREE)
               if b.startswith("post-state ") else b for b in failing(claims, TRANSITION)]
        problems = {TRANSITION: "; ".join(b for b in bad if b != "DOS-4F")} if bad else {}
        if "DOS-4F" in bad:
            problems["DOS-4F"] = "a free that succeeded freed a locked or dead block"
        return {k: v for k, v in problems.items() if v}

    def result_of(self, name: str, reply: Any, code: int) -> int | None:
        if name == "AllocateDosMemory":
            return int(reply)
        if name == "ResizeDosMemory" and code == DosError.NOT_ENOUGH_MEMORY:
            return self.resize_maximum()
        if name == "XmsLock":
            return int(reply)
        return None

    # -- contents -------------------------------------------------------------------

    def move_source(self, args: tuple[Any, ...]) -> bytes | None:
        """The bytes a move's source holds before it (None: not a plain range)."""
        length, src_handle, src_offset = args[:3]
        start = move_address(self.view(), src_handle, src_offset)
        if start is None or type(length) is not int or not 0 <= length <= 0x10000:
            return None
        return self.read(start, length)

    def follow(self, name: str, args: tuple[Any, ...], reply: Any, code: int,
               pre_view: View, moved: bytes | None) -> None:
        """Update what the contents check expects after a call."""
        if code:
            return
        handles = dict(self.view()[7])
        if name in ("XmsAllocate", "AllocateXmsMemory"):
            block = handles.get(reply)
            data = None if block is None else self.read(block.address, block.size_kb * KB)
            if data is not None:
                self.xms[reply] = bytearray(data)
        elif name in ("XmsFree", "FreeXmsMemory"):
            self.xms.pop(args[0], None)
        elif name == "XmsReallocate" and args[0] in self.xms:
            block = handles.get(args[0])
            old = self.xms.pop(args[0])
            if block is not None:
                old = old[:block.size_kb * KB]
                more = self.read(block.address + len(old), block.size_kb * KB - len(old))
                if more is not None:
                    self.xms[args[0]] = old + more
        elif name == "XmsMove" and moved is not None:
            self.moved(args, moved)
        elif name in ("EmsDeallocate", "FreeEmsPages"):
            self.ems = {page: kept for page, kept in self.ems.items() if page[0] != args[0]}
        elif name == "EmsReallocate":
            self.ems = {page: kept for page, kept in self.ems.items()
                        if page[0] != args[0] or page[1] < args[1]}
        elif name in ("FreeDosMemory", "ResizeDosMemory"):
            self.conv.pop(args[0], None)

    def moved(self, args: tuple[Any, ...], data: bytes) -> None:
        """A successful move: the destination holds the source's bytes as they were."""
        length, _, _, dst_handle, dst_offset = args
        start = move_address(self.view(), dst_handle, dst_offset)
        seen = None if start is None else self.read(start, length)
        if seen is not None and seen != data:
            self.raised = True
            raise CheckError(f"XmsMove{args!r}: the destination reads {seen[:16]!r}..., the "
                             f"source held {data[:16]!r}...", [CONTENTS])
        if dst_handle in self.xms:
            self.xms[dst_handle][dst_offset:dst_offset + length] = data
        elif dst_offset & 0xFFFF == 0 and (dst_offset >> 16) in self.conv:
            old = self.conv[dst_offset >> 16]
            self.conv[dst_offset >> 16] = data + old[len(data):]

    def check_contents(self) -> dict[str, str]:
        wrong = []
        view = self.view()
        sizes = {b.segment + 1: b.size for b in view[0] + view[1] if b.owner != OWNER_FREE}
        for segment, data in list(self.conv.items()):
            if sizes.get(segment, 0) * PARAGRAPH < len(data):
                del self.conv[segment]
            elif self.read(segment * PARAGRAPH, len(data)) not in (data, None):
                wrong.append(f"conventional block {segment:#x}")
        handles = dict(view[7])
        for handle, held in self.xms.items():
            block = handles.get(handle)
            if block is None or self.read(block.address, len(held)) not in (held, None):
                wrong.append(f"XMS handle {handle}")
        slots = list(view[10])
        for (handle, logical), (offset, data) in self.ems.items():
            if (handle, logical) in slots:
                shown = slots.index((handle, logical))
                seen = self.read(slot_address(shown) + offset, len(data))
            else:
                page = self.read_logical(handle, logical)
                seen = None if page is None else page[offset:offset + len(data)]
            if seen not in (data, None):
                wrong.append(f"EMS page {logical} of handle {handle}")
        return {CONTENTS: "does not read back: " + ", ".join(wrong)} if wrong else {}


    def damaged_call(self, where: str, name: str, args: tuple[Any, ...]) -> Any:
        """A chain call on a damaged chain: error 7, nothing changes (``mcb-destroyed``)."""
        before = self.snapshot()
        reply, code = self.invoke(name, args)
        self.machine.outcomes[f"corrupt {name} {code}"] += 1
        kept = self.snapshot() == before
        if code != 7 or reply or not kept:
            self.raised = True
            raise CheckError(f"{where} returned {reply!r} (error {code}), the world "
                             f"{'unchanged' if kept else 'changed'}", [CORRUPTION])
        return reply


class DosHarness(DosChecks):
    """One DOS memory manager (the model) and what was written into its memory."""

    def __init__(self, machine: type[CheckedMachine], umbs: bool = True) -> None:
        self._begin(machine, {})
        self.dos = make_dos(umbs)
        self.psp = self.dos.psp
        self.free_at_start = self.dos.pageman.free_count()
        self.initial = dos_view(self.dos)

    def view(self) -> View:
        return dos_view(self.dos)

    def snapshot(self) -> object:
        return world(self.dos)

    def target(self, name: str) -> Any:
        dos = self.dos
        owner = dos.xms if name.startswith("Xms") else dos.ems if name.startswith("Ems") else dos
        return getattr(owner, name)

    def code(self, name: str) -> int:
        dos = self.dos
        if name.startswith("Xms"):
            return dos.xms.last_error
        return dos.ems.last_status if name.startswith("Ems") else int(dos.last_error)

    def invoke(self, name: str, args: tuple[Any, ...]) -> tuple[Any, int]:
        reply = self.target(name)(*args)
        return reply, self.code(name)

    def read(self, address: int, length: int) -> bytes:
        """Linear bytes: the HMA's from its frames (model/hma_memory.py)."""
        return self.dos.xms.hma_memory.read(address, length)

    def read_logical(self, handle: int, logical: int) -> bytes:
        return self.dos.ems.read_logical(handle, logical)

    def resize_maximum(self) -> int:
        return self.dos.largest_available

    def poke(self, address: int, data: bytes) -> None:
        """A program's store into memory (its block or the page frame)."""
        write_physical(self.dos.pageman, address, data)
        self.machine.outcomes["write"] += 1

    def corrupt(self, segment: int, garbage: int, name: str, *args: Any) -> None:
        """Damage the type byte of the MCB at segment; the chain call must fail
        with 7 and change nothing; the byte is restored."""
        pm = self.dos.pageman
        original = read_physical(pm, segment * PARAGRAPH, 1)
        write_physical(pm, segment * PARAGRAPH, bytes((garbage,)))
        try:
            self.damaged_call(f"{name}{args!r} with MCB {segment:#x} typed {garbage:#x}",
                              name, args)
        finally:
            write_physical(pm, segment * PARAGRAPH, original)

    def teardown(self) -> None:
        """Free everything: one free block per area, every frame back."""
        dos = self.dos
        if self.raised:
            return
        if dos.has_umbs:
            dos.SetUmbLink(False)
        for block in [b for b in dos_view(dos)[0] + dos_view(dos)[1] if b.owner]:
            self.call("FreeDosMemory", block.segment + 1)  # checked: owner 0 only
        # a failing AH=48h joins every free run of the areas it scans (checked)
        if dos.has_umbs:
            self.call("SetUmbLink", True)
        self.call("SetAllocationStrategy", 0x80 if dos.has_umbs else 0)
        self.call("AllocateDosMemory", 0xFFFF)
        if dos.has_umbs:
            self.call("SetUmbLink", False)
        for handle, block in list(dos.xms.handles.items()):
            for _ in range(block.lock_count):
                dos.xms.XmsUnlock(handle)
            dos.xms.XmsFree(handle)
        self.xms.clear()  # freed unchecked above: nothing of theirs to read back
        for handle in list(dos.ems.saved):
            self.call("EmsRestoreMap", handle)
        for handle in list(dos.ems.handles):
            self.call("EmsDeallocate", handle)  # checked: unmaps its pages (DOS-5)
        view = dos_view(dos)
        if view[:2] != self.initial[:2] or view[7] or view[9] != ((0, ()),):
            raise CheckError(f"after freeing everything: {view[:2]!r}", [FRAMES])
        if dos.pageman.free_count() != self.free_at_start:
            raise CheckError(f"{dos.pageman.free_count()} frames free at the end, "
                             f"{self.free_at_start} at the start", [FRAMES])


QUERIES = ("GetDosLargestBlock", "GetDosMemorySize", "GetAllocationStrategy", "GetUmbLink",
           "XmsQueryFree", "XmsGetHandleInfo", "EmsGetStatus", "EmsGetPageFrame",
           "EmsGetPageCounts", "EmsGetVersion", "EmsGetHandleCount", "EmsGetHandlePages")


def pick(data: st.DataObject, good: list[Any], bad: list[Any]) -> Any:
    """One of good three times in four (when there is one), else one of bad."""
    rarely: int = data.draw(st.integers(0, 3))  # hypothesis favours 0: the common case
    if good and rarely != 3:
        return data.draw(st.sampled_from(good))
    return data.draw(st.sampled_from(bad))


def scanned(view: View, paragraphs: int) -> list[tuple[McbView, ...]]:
    """The areas AH=48h scans (and joins): as the strategy and the link say
    (linked, a low strategy scans both; high first scans the UMBs, then both
    when nothing there fits the joined blocks)."""
    low, high, linked, strategy = view[0], view[1], view[5], view[6]
    if not linked:
        return [low]
    if strategy & 0x40:
        return [high]
    fits = any(stop - head - 1 >= paragraphs for head, stop in free_runs(high, every=True))
    return [high] if strategy & 0x80 and fits else [low, high]


def free_runs(area: tuple[McbView, ...], at: int | None = None, *,
              every: bool = False) -> list[tuple[int, int]]:
    """(first MCB, end) of each run of adjacent free blocks of two or more
    (``every``: of one or more), or, with ``at``, of block ``at`` and the free
    blocks right after it when there are some (ALLOC.ASM's Coalesce on it)."""
    out = []
    for index, block in enumerate(area):
        free = block.owner == OWNER_FREE
        if at is None and not free or at is not None and block.segment != at:
            continue
        if at is None and index and area[index - 1].owner == OWNER_FREE:
            continue  # inside a run: its first block stands for it
        stop = index + 1
        while stop < len(area) and area[stop].owner == OWNER_FREE:
            stop += 1
        if stop - index > 1 or every:
            last = area[stop - 1]
            out.append((block.segment, last.segment + last.size + 1))
    return out


def coalesced(pre: DosState, runs: list[tuple[int, int]]) -> tuple[DosState, Ref]:
    """The spec's Coalesce on each run in turn: the joined state, and that each
    join was a valid one (status 0, its choice of ``stop`` right)."""
    state, valid = pre, []
    for head, stop in runs:
        step = dm.Coalesce(state, _i(head), _i(stop))
        valid += [step.status == 0, step.assume]
        state = step.changed
    return state, z3.And(valid)


def joined_view(view: View, runs: list[tuple[int, int]]) -> View:
    """The view's chains with each run as one block (to name the block a call took)."""
    heads = dict(runs)
    areas = []
    for area in view[:2]:
        out: list[McbView] = []
        for block in area:
            if out and out[-1].segment in heads and block.segment < heads[out[-1].segment]:
                continue
            stop = heads.get(block.segment)
            out.append(block if stop is None else block._replace(size=stop - block.segment - 1))
        areas.append(tuple(out))
    return (*areas, *view[2:])


def holder(view: View, segment: int) -> int:
    """The MCB (conventional or UMB) whose block holds segment."""
    return int(next((b.segment for b in view[0] + view[1]
                     if b.segment <= segment <= b.segment + b.size), -1))


def moved_outside(args: tuple[Any, ...]) -> bool:
    """Arguments a spec step cannot take (not integers)."""
    return not all(type(a) is int for a in args)


# -- the machine -------------------------------------------------------------------------

class DosRules:
    """What the rules target, read from ``self.h``: the harness (``view()``,
    ``call``, ``poke``, ``corrupt``, the ``conv`` / ``ems`` records), here the
    model's, in the oracle a front over an implementation."""

    h: Any

    def prepare(self) -> None:
        """What a fresh harness starts with (nothing here)."""

    def blocks(self) -> list[McbView]:
        view = self.h.view()
        return [*view[0], *view[1]]

    def live(self) -> list[int]:
        return [b.segment + 1 for b in self.blocks() if b.owner != OWNER_FREE]

    def segment(self, data: st.DataObject) -> Any:
        """Mostly a live block's data segment, else a hostile one: a free block's
        data, an MCB, inside a block, the UMB head's data, 0, FFFFh, not a u16."""
        odd = [b.segment + k for b in self.blocks()[:3] for k in (0, 1, 2)]
        return pick(data, self.live(), [*odd, CONVENTIONAL_TOP, 0, 0xFFFF, *HOSTILE])


class ConventionalRules(DosRules):
    """AH=48h/49h/4Ah, strategies, the UMB link, queries, writes, corruption."""

    @rule(data=st.data())
    def allocate(self, data: st.DataObject) -> None:
        self.h.call("AllocateDosMemory", self.paragraphs(data))

    def paragraphs(self, data: st.DataObject) -> Any:
        """A free block's size (exact fit) or one more, a listed size, a small one,
        now and then one that is not a u16."""
        if data.draw(st.integers(0, 7)) == 7:
            return data.draw(st.sampled_from(HOSTILE))
        free = [b.size + k for b in self.blocks() if b.owner == OWNER_FREE for k in (0, 1)]
        return data.draw(st.one_of(st.sampled_from(PARAGRAPHS), st.integers(0, 0x400),
                                   st.sampled_from(free or [1])))

    def neighbours(self) -> list[tuple[McbView, McbView | None]]:
        """Each allocated block with the block after it in its area (None: last)."""
        view = self.h.view()
        return [(block, area[i + 1] if i + 1 < len(area) else None)
                for area in view[:2] for i, block in enumerate(area) if block.owner]

    @precondition(lambda self: bool(self.live()))
    @rule(data=st.data(), more=st.sampled_from((1, 0x10)))
    def resize_past_maximum(self, data: st.DataObject, more: int) -> None:
        """AH=4Ah beyond what the block can reach: error 8, grown to its maximum."""
        block, after = data.draw(st.sampled_from(self.neighbours()))
        area = [b for b in self.blocks() if b.segment > block.segment]
        most = block.size
        for later in area:
            if later.owner != OWNER_FREE or later.segment != block.segment + most + 1:
                break
            most += later.size + 1
        self.h.call("ResizeDosMemory", block.segment + 1, min(0xFFFF, most + more))

    @rule(data=st.data())
    def free_beside_free(self, data: st.DataObject) -> None:
        """AH=49h on a block with a free neighbour (owner 0 only: no join)."""
        view = self.h.view()
        beside = [b.segment + 1 for area in view[:2] for a, b in zip(area, area[1:], strict=False)
                  if a.owner == OWNER_FREE and b.owner] + [
                  a.segment + 1 for area in view[:2] for a, b in zip(area, area[1:], strict=False)
                  if b.owner == OWNER_FREE and a.owner]
        self.h.call("FreeDosMemory", data.draw(st.sampled_from(beside or self.live() or [0])))

    @rule(data=st.data())
    def free(self, data: st.DataObject) -> None:
        self.h.call("FreeDosMemory", self.segment(data))

    @rule(data=st.data())
    def resize(self, data: st.DataObject) -> None:
        self.h.call("ResizeDosMemory", self.segment(data), self.paragraphs(data))

    @rule(strategy=st.sampled_from(STRATEGY_VALUES))
    def strategy(self, strategy: int) -> None:
        self.h.call("SetAllocationStrategy", strategy)

    @rule(linked=st.booleans())
    def link(self, linked: bool) -> None:
        self.h.call("SetUmbLink", linked)

    @rule(name=st.sampled_from((*QUERIES[:5], *QUERIES[6:11])))
    def query(self, name: str) -> None:
        self.h.call(name)

    @precondition(lambda self: bool(self.live()))
    @rule(data=st.data())
    def write_block(self, data: st.DataObject) -> None:
        sizes = {b.segment + 1: b.size for b in self.blocks()}
        segment = data.draw(st.sampled_from(self.live()))
        length = min(sizes[segment] * PARAGRAPH, 16)
        payload = random.Random(data.draw(st.integers(0, 255))).randbytes(length)
        self.h.poke(segment * PARAGRAPH, payload)
        self.h.conv[segment] = payload + self.h.conv.get(segment, b"")[length:]

    @rule(data=st.data(), garbage=st.sampled_from((0x00, 0x4E, 0x7A, 0xFF)),
          name=st.sampled_from(("AllocateDosMemory", "FreeDosMemory", "ResizeDosMemory",
                                "GetDosLargestBlock", "SetUmbLink")))
    def corrupt(self, data: st.DataObject, garbage: int, name: str) -> None:
        view = self.h.view()
        block = data.draw(st.sampled_from(self.blocks()))
        target = data.draw(st.sampled_from(self.live() or [block.segment + 1]))
        args = {"AllocateDosMemory": (1,), "FreeDosMemory": (target,),
                "ResizeDosMemory": (target, 1), "GetDosLargestBlock": (),
                "SetUmbLink": (view[5],)}[name]
        if name == "SetUmbLink" and not view[3] < view[4]:  # no UMBs
            name, args = "GetDosLargestBlock", ()
        self.h.corrupt(block.segment, garbage, name, *args)


class XmsRules(DosRules):
    """XMS functions and the seed's XMS calls; conventional blocks for moves."""

    def prepare(self) -> None:
        """Two conventional blocks with known bytes: handle-0 ends of moves."""
        for paragraphs in (0x100, 0x10):
            segment = self.h.call("AllocateDosMemory", paragraphs)
            payload = random.Random(segment).randbytes(16)
            self.h.poke(segment * PARAGRAPH, payload)
            self.h.conv[segment] = payload

    @rule(data=st.data())
    def lock(self, data: st.DataObject) -> None:
        self.h.call("XmsLock", self.handle(data))

    def handle(self, data: st.DataObject) -> Any:
        return pick(data, sorted(dict(self.h.view()[7])), [0, 99, -1, None])

    @rule(data=st.data(), seed=st.booleans())
    def xms_allocate(self, data: st.DataObject, seed: bool) -> None:
        if seed:
            self.h.call("AllocateXmsMemory", data.draw(st.sampled_from((0, 1, 1024, 5000))))
        else:
            self.h.call("XmsAllocate", data.draw(st.sampled_from((0, 1, 4, 16, 0x1000))))

    @rule(data=st.data(), name=st.sampled_from(("XmsLock", "XmsFree", "FreeXmsMemory",
                                                "XmsLock", "XmsUnlock", "XmsGetHandleInfo")))
    def xms_handle(self, data: st.DataObject, name: str) -> None:
        self.h.call(name, self.handle(data))

    @precondition(lambda self: any(b.lock_count for _, b in self.h.view()[7]))
    @rule(data=st.data(), seed=st.booleans())
    def xms_free_locked(self, data: st.DataObject, seed: bool) -> None:
        """XMS 0Ah on a locked block: ABh, nothing changes."""
        locked = [h for h, b in self.h.view()[7] if b.lock_count]
        self.h.call("FreeXmsMemory" if seed else "XmsFree", data.draw(st.sampled_from(locked)))

    @rule(data=st.data(), kb=st.sampled_from((0, 1, 2, 8, 32, 0x1000)))
    def xms_reallocate(self, data: st.DataObject, kb: int) -> None:
        self.h.call("XmsReallocate", self.handle(data), kb)

    def end(self, data: st.DataObject, length: int, source: bool) -> tuple[int, int]:
        """A move's end: an XMS block at an offset (some past its end), a live
        conventional block's data (seg:0) large enough, the HMA, the EMS frame (a
        source only), the HMA's last 16 bytes (A7h past them), an unknown handle."""
        choices: list[tuple[int, int]] = [
            (0, b.segment + 1 << 16) for b in self.blocks()
            if b.owner != OWNER_FREE and b.size * PARAGRAPH >= length][:4]
        choices.append((0, 0xFFFF << 16 | 0x20))  # FFFF:0020, in the HMA
        bad = [(0, 0xFFFF << 16 | 0xFFF0), (77, 0)]  # FFFF:FFF0: 16 bytes before 10FFF0h
        if source:
            choices.append((0, 0xE000 << 16))
        for handle, block in self.h.view()[7][:3]:
            size = block.size_kb * KB
            choices += [(handle, 0), (handle, 2), (handle, max(0, size - length))]
            bad += [(handle, size), (handle, size + 2), (handle, -2)]
        return tuple(pick(data, choices, bad))

    @rule(data=st.data(), length=st.sampled_from((2, 16, 64, 0x800, 0, 3, -2)))
    def xms_move(self, data: st.DataObject, length: int) -> None:
        src, dst = self.end(data, length, True), self.end(data, length, False)
        self.h.call("XmsMove", length, *src, *dst)


class EmsRules(DosRules):
    """LIM 43h-45h, the seed's EMS calls, writes through the page frame."""

    def ems_handle(self, data: st.DataObject) -> Any:
        return pick(data, [h for h, ids in self.h.view()[9] if ids], [0, 63, -1, None])

    @rule(data=st.data(), seed=st.booleans())
    def ems_allocate(self, data: st.DataObject, seed: bool) -> None:
        pages = data.draw(st.sampled_from((0, 1, 2, 3, EMS_PAGES, EMS_PAGES + 1, -1)))
        self.h.call("AllocateEmsPages" if seed else "EmsAllocate", pages)

    @rule(data=st.data(), seed=st.booleans())
    def ems_deallocate(self, data: st.DataObject, seed: bool) -> None:
        self.h.call("FreeEmsPages" if seed else "EmsDeallocate", self.ems_handle(data))

    @rule(data=st.data(), logical=st.sampled_from((0, 1, 0, 2, UNMAP, 5, -1)),
          physical=st.sampled_from((0, 1, 2, 3, 4, -1)))
    def ems_map(self, data: st.DataObject, logical: int, physical: int) -> None:
        self.h.call("EmsMap", self.ems_handle(data), logical, physical)

    @rule(data=st.data(),
          segment=st.sampled_from((0xE000, 0xE400, 0xE800, 0xEC00, 0xE100, 0xF000)))
    def ems_map_seed(self, data: st.DataObject, segment: int) -> None:
        page = pick(data, sorted(i for _, ids in self.h.view()[9] for i in ids),
                    [-1, EMS_PAGES, None])
        self.h.call("MapEmsPageToPhysical", page, segment)

    @precondition(lambda self: any(self.h.view()[10]))
    @rule(data=st.data(), physical=st.integers(0, 3))
    def ems_remap(self, data: st.DataObject, physical: int) -> None:
        """Map a page shown in one slot into another: it moves (DOS-5), and its bytes
        follow it."""
        shown = [s for s in self.h.view()[10] if s is not None]
        handle, logical = data.draw(st.sampled_from(shown))
        self.h.call("EmsMap", handle, logical, physical)

    @precondition(lambda self: any(self.h.view()[10]))
    @rule(data=st.data(), offset=st.sampled_from((0, 0x3FF0)))
    def write_frame(self, data: st.DataObject, offset: int) -> None:
        slots = self.h.view()[10]
        physical = data.draw(st.sampled_from([p for p, shown in enumerate(slots) if shown]))
        shown = slots[physical]
        assert shown is not None
        payload = random.Random(data.draw(st.integers(0, 255))).randbytes(16)
        self.h.poke(slot_address(physical) + offset, payload)
        self.h.ems[shown] = (offset, payload)


class EmsModelRules(EmsRules):
    """EmsRules and LIM 47h/48h/4Eh/51h/5Ah, which the oracle protocol does not carry."""

    @rule(data=st.data(), pages=st.sampled_from((0, 1, 2, 3, EMS_PAGES, EMS_PAGES + 1)))
    def ems_reallocate(self, data: st.DataObject, pages: int) -> None:
        self.h.call("EmsReallocate", self.ems_handle(data), pages)

    @rule(pages=st.sampled_from((0, 0, 1, EMS_PAGES + 1)))
    def ems_allocate_any(self, pages: int) -> None:
        """LIM 5Ah: 0 pages allowed."""
        self.h.call("EmsAllocate", pages, True)

    @rule(data=st.data(), restore=st.booleans())
    def ems_save_restore(self, data: st.DataObject, restore: bool) -> None:
        """LIM 47h / 48h: the slots come back as saved (8Dh, 8Eh, 83h otherwise);
        no spec step (each restored slot is a LIM 44h): DOS-5, contents, unchanged."""
        handle = pick(data, [h for h, _ in self.h.view()[9]], [63, -1])
        self.h.call("EmsRestoreMap" if restore else "EmsSaveMap", handle)

    @rule(data=st.data(), corrupt=st.booleans())
    def ems_set_page_map(self, data: st.DataObject, corrupt: bool) -> None:
        """LIM 4Eh/01h with the slots shuffled (pages of live handles, each once), or
        naming a handle that does not exist or one page twice (A3h, unchanged); no
        spec step (each slot is a LIM 44h): DOS-5, contents, unchanged."""
        pages = [(h, k) for h, ids in self.h.view()[9] for k in range(len(ids))]
        slots = [data.draw(st.sampled_from([None, *pages])) for _ in range(4)]
        if corrupt:
            slots[0] = slots[1] = data.draw(st.sampled_from([(63, 0), *pages]))
        elif len({s for s in slots if s}) != len([s for s in slots if s]):
            slots = [None] * 4
        context = b"".join(struct.pack("<HH", *(s or (UNMAP, UNMAP))) for s in slots)
        self.h.call("EmsSetPageMap", context)


class DosMachine(DosRules, CheckedMachine):
    """Conventional memory, UMBs, XMS and EMS through the model's calls."""

    def __init__(self) -> None:
        super().__init__()
        type(self).examples += 1
        self.h = DosHarness(type(self))
        self.prepare()

    @initialize(umbs=st.sampled_from((True, True, False)))
    def configure(self, umbs: bool) -> None:
        if not umbs:
            self.h = DosHarness(type(self), umbs=False)
            self.prepare()

    def teardown(self) -> None:
        self.h.teardown()


class ConventionalMachine(ConventionalRules, DosMachine):
    """AH=48h/49h/4Ah, strategies, the UMB link, queries, writes, corruption."""


class XmsMachine(XmsRules, DosMachine):
    """XMS functions and the seed's XMS calls; conventional blocks for moves."""


class EmsMachine(EmsRules, DosMachine):
    """LIM 43h-45h, the seed's EMS calls, writes through the page frame."""


class EmsLim4Machine(EmsModelRules, DosMachine):
    """EmsMachine's rules and LIM 47h/48h/4Eh/51h (a machine of their own, so that
    EmsMachine's budget still finds its broken models)."""


def run_dos_machine(profile: str, patches: Mapping[str, object] | None = None, *,
                    max_examples: int | None = None, shrink_seconds: float | None = None,
                    machines: tuple[type[CheckedMachine], ...] | None = None) -> Verdict:
    """Run the five machines (or ``machines``) (the first counterexample is the verdict);
    ``patches`` maps "Class.method" of DosMemoryManager, XmsDriver or EmsManager
    to a replacement (restored afterwards)."""
    owners = {cls.__name__: cls for cls in (DosMemoryManager, XmsDriver, EmsManager)}
    start, examples, notes = time.process_time(), 0, []
    for machine in machines or MACHINES:
        verdict = run_machine(machine, profile, BUDGETS, patches, owners, max_examples=max_examples,
                              shrink_seconds=shrink_seconds)
        if verdict.kind is not Kind.NO_COUNTEREXAMPLE:
            return verdict
        examples += verdict.examples or 0
        notes.append(f"{machine.__name__}: {verdict.detail}")
    return Verdict(Kind.NO_COUNTEREXAMPLE, f"no counterexample in {examples} examples",
                   detail=f"{time.process_time() - start:.1f} s CPU\n" + "\n".join(notes),
                   examples=examples)


MACHINES: tuple[type[CheckedMachine], ...] = (ConventionalMachine, XmsMachine, EmsMachine,
                                              EmsLim4Machine, HimemMachine, EmsOsMachine)


# -- broken models ------------------------------------------------------------------------

_WALK, _EMS_MAP = DosMemoryManager.walk, EmsManager.EmsMap


def _free_merges_neighbours(self: DosMemoryManager, segment: int) -> bool:
    """AH=49h that joins the freed block with free neighbours at once (the
    model before issue 15): MS-DOS writes owner 0 only (ALLOC.ASM:354)."""
    found = self._find(segment) if _u16(segment) else None
    if found is None:
        return False
    area, index = found
    start = index - 1 if index and area[index - 1].owner == OWNER_FREE else index
    stop = index + 2 if index + 1 < len(area) and area[index + 1].owner == OWNER_FREE \
        else index + 1
    first, last = area[start], area[stop - 1]
    self._write_mcb(first.segment, last.type, OWNER_FREE,
                    last.segment + last.size - first.segment, first.name)
    self.last_error = 0
    return True


def _choose_past_end(area: list[Mcb], paragraphs: int, fit: int) -> Mcb | None:
    """A block "fits" when its MCB paragraph would make up the difference; the
    allocation then runs one paragraph past the area (0xA000 for the last)."""
    fitting = [b for b in area if b.owner == OWNER_FREE and b.size + 1 >= paragraphs]
    return fitting[0] if fitting else None


def _carve_past_end(self: DosMemoryManager, block: Mcb, paragraphs: int,
                    from_end: bool) -> int:
    if paragraphs > block.size:
        self._write_mcb(block.segment, block.type, self.psp, paragraphs, block.name)
        return block.segment + 1
    return _CARVE(self, block, paragraphs, from_end)


_CARVE = DosMemoryManager._carve


def _xms_free_locked(self: XmsDriver, handle: int) -> bool:
    """XMS 0Ah that does not look at the lock count."""
    if self._block(handle, 0xA2) is None:
        return False
    del self.handles[handle]
    self.last_error = 0
    return True


def _map_keeps_old_slot(self: EmsManager, handle: int, logical: int, physical: int) -> bool:
    """LIM 44h that leaves the page in the slot it showed in before (aliased)."""
    pages = self._pages(handle)
    if (pages is None or type(physical) is not int or not 0 <= physical < 4
            or type(logical) is not int or not 0 <= logical < len(pages)):
        return _EMS_MAP(self, handle, logical, physical)
    self._unmap(physical)
    self._load(physical, pages[logical])
    self.slots[physical] = (handle, logical)
    self.last_status = 0
    return True


def _drop_keeps_slots(self: EmsManager, handle: int, keep: int) -> None:
    """51h's shrink (and 45h) that frees the pages past keep but leaves the
    slots showing them."""
    pages = self.handles[handle]
    for page in pages[keep:]:
        for frame in self.storage.pop(page):
            self.pageman.release_frame(frame)
    del pages[keep:]


def _endpoint_first_mb(self: XmsDriver, handle: int, offset: int, length: int,
                       handle_code: int, offset_code: int) -> int:
    """0Bh's handle 0 kept inside the first MB (the model before issue 15's HMA
    move): FFFF:0010 and above are refused, where HIMEM reaches 10FFF0h."""
    if handle == 0 and type(handle) is int and type(offset) is int and 0 <= offset <= 0xFFFFFFFF:
        start = (offset >> 16) * PARAGRAPH + (offset & 0xFFFF)
        if start > 0x100000:
            return int(self._set(-1, offset_code))
        if start + length > 0x100000:
            return int(self._set(-1, 0xA7))
    return int(_ENDPOINT(self, handle, offset, length, handle_code, offset_code))


_ENDPOINT = XmsDriver._endpoint


def _resize_failure_unchanged(self: DosMemoryManager, segment: int, paragraphs: int) -> bool:
    """AH=4Ah whose error 8 leaves the block as it was (not RBIL's DOS 2.1-6.0)."""
    before = read_physical(self.pageman, 0, 0xA0000)
    result = _RESIZE(self, segment, paragraphs)
    if self.last_error == 8:
        write_physical(self.pageman, 0, before)
    return result


_RESIZE = DosMemoryManager.ResizeDosMemory


def _walk_any_type(self: DosMemoryManager, start_segment: int) -> list[Mcb] | None:
    """walk() that takes any type byte but 'Z' for 'M': a damaged chain is followed."""
    blocks = _WALK(self, start_segment)
    if blocks is not None or not self.ready:
        return blocks
    out: list[Mcb] = []
    segment = start_segment
    while len(out) < 0x1000:
        typ, owner, size = _MCB.unpack(read_physical(self.pageman, segment * PARAGRAPH, 5))
        limit = self._limit(segment)
        if limit < 0 or segment + size + 1 > limit:
            return None
        out.append(Mcb(segment, MCB_Z if typ == MCB_Z else MCB_M, owner, size, bytes(8)))
        if typ == MCB_Z or segment + size + 1 == limit:
            return out
        segment += size + 1
    return None


DOS_MODEL_VARIANTS = (
    ModelVariant("free_merges_neighbours", (TRANSITION,),
                 {"DosMemoryManager.FreeDosMemory": _free_merges_neighbours}),
    ModelVariant("alloc_past_a000", ("DOS-1", "DOS-2", TRANSITION),
                 {"DosMemoryManager._choose": staticmethod(_choose_past_end),
                  "DosMemoryManager._carve": _carve_past_end}),
    ModelVariant("xms_free_of_locked_block", ("DOS-4F", TRANSITION),
                 {"XmsDriver.XmsFree": _xms_free_locked}),
    ModelVariant("ems_map_keeps_old_slot", ("DOS-5", TRANSITION),
                 {"EmsManager.EmsMap": _map_keeps_old_slot}),
    ModelVariant("ems_shrink_keeps_slots", ("DOS-5", TRANSITION),
                 {"EmsManager._drop": _drop_keeps_slots}),
    ModelVariant("xms_move_first_mb_only", (TRANSITION,),
                 {"XmsDriver._endpoint": _endpoint_first_mb}),
    ModelVariant("resize_failure_unchanged", (TRANSITION,),
                 {"DosMemoryManager.ResizeDosMemory": _resize_failure_unchanged}),
    ModelVariant("walk_follows_bad_type", (CORRUPTION,),
                 {"DosMemoryManager.walk": _walk_any_type}),
)

#: The machine that exercises each broken model (the teeth run needs only it).
VARIANT_MACHINES: dict[str, tuple[type[CheckedMachine], ...]] = {
    **{v.name: (ConventionalMachine,) for v in DOS_MODEL_VARIANTS},
    "xms_free_of_locked_block": (XmsMachine,), "xms_move_first_mb_only": (XmsMachine,),
    "ems_map_keeps_old_slot": (EmsMachine,),
    "ems_shrink_keeps_slots": (EmsLim4Machine,)}


def obligations() -> Iterator[Obligation]:
    yield machine_obligation("dos_memory.machine.refinement", "dos_memory", run_dos_machine)
