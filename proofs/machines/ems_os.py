"""The EMM's LIM 4.0 context and OS functions checked on every step of hypothesis
runs, through the register entry DosMemoryManager.Int67h: 4Fh (partial page
map), 5Bh (alternate map register set) and 5Dh (OS/E function set), with 43h,
44h and 45h to vary the handles and the slots (issue 15).

After every call the machine checks

1. DOS-5 (spec/dos_memory.py) on the slots and handles, DOS-7 and DOS-8
   (spec/ems_os.py) on the OS state, each on the abstraction of the post-state;
2. the transition: 5Dh and 5Bh answer AH = the spec step's status, BX:CX (5Dh)
   and ES:DI (5Bh/00h) its result, and leave its post-state (the key issued is
   the step's free choice, taken from the model); DOS-7K and DOS-7D on them;
   4Fh/01h (and 5Bh/01h) leave exactly the slots the context names over the
   others (A3h when that is no valid mapping), 4Fh/00h writes what the slots
   show, 4Fh/02h's AL is 2 + 4 * BX; 59h answers A4h exactly while the set is
   disabled;
3. a failure changes nothing: slots, handles, OS state, and the caller's
   buffer.
"""

from __future__ import annotations

import struct
from typing import Any

import z3
from hypothesis import strategies as st
from hypothesis.stateful import initialize, precondition, rule

from model.dos_memory import DosMemoryManager
from model.dos_physical import read_physical, write_physical
from model.ems_os import alternate_map_register_set, os_function_set
from model.page_manager import PageManager
from model.registers import Registers
from proofs.machines.checks import TRANSITION, UNCHANGED, check_invariants, raise_problems
from proofs.machines.runner import CheckedMachine, ModelVariant
from spec import dos_memory as dm
from spec import ems_os as eo
from spec.abi import (
    EMM_ACCESS_DENIED,
    EMM_CORRUPT_MAP,
    EMS_FRAME_SEGMENT,
    EMS_INVALID_PHYSICAL,
    EMS_SUCCESS,
    MCB_Z,
    PHYSICAL_PAGES,
    UNMAP,
)
from spec.dos_memory import McbView
from spec.step import Transition

#: Caller buffers in conventional memory (segment, offset); the last crosses a 64 KB line.
BUFFERS = ((0x2000, 0x0000), (0x2345, 0x0010), (0x3000, 0xFFF8))
FRAME_SEGMENTS = tuple(EMS_FRAME_SEGMENT + 0x400 * page for page in range(PHYSICAL_PAGES))
BAD_SEGMENTS = (EMS_FRAME_SEGMENT + 0x10, 0xF000, 0x0000)
WRONG_KEY = 0x1234_5678
Slots = tuple[tuple[int, int] | None, ...]
OsView = tuple[bool, int | None, int, tuple[int, int] | None]


def os_view(dos: DosMemoryManager) -> OsView:
    ems = dos.ems
    return ems.os_enabled, ems.access_key, ems.keys_issued, ems.alternate_area


def to_os_state(view: OsView) -> eo.EmsOsState:
    enabled, key, issued, area = view
    return eo.concrete_ems_os(os_enabled=enabled, access_key=key, keys_issued=issued,
                              alternate_area=area)


def ems_view(dos: DosMemoryManager) -> tuple[Any, ...]:
    ems = dos.ems
    return (tuple((h, tuple(ids)) for h, ids in sorted(ems.handles.items())),
            tuple(ems.slots), tuple(sorted(ems.saved)), ems.total_pages)


def to_ems_state(view: tuple[Any, ...]) -> dm.DosState:
    """The DosState of the EMS part (a one-block chain: only DOS-5 is judged)."""
    handles, slots, saved, total = view
    return dm.concrete_dos([McbView(0x800, MCB_Z, 0, 0x97FF)], first=0x800, umb_start=0xA000,
                           umb_end=0xA000, linked=False, strategy=0, xms={}, xms_end=0x110000,
                           ems_handles={h: list(ids) for h, ids in handles}, ems_slots=slots,
                           ems_total=total, ems_saved=saved)


def merged(pre: Slots, named: dict[int, tuple[int, int] | None],
           handles: dict[int, tuple[int, ...]]) -> Slots | None:
    """The slots a context that names ``named`` leaves over ``pre``; None when
    that is no valid mapping (a dead page, or one page twice: A3h)."""
    slots = tuple(named.get(p, pre[p]) if p in named else pre[p] for p in range(PHYSICAL_PAGES))
    shown = [s for s in slots if s is not None]
    if len(set(shown)) != len(shown):
        return None
    if any(h not in handles or not 0 <= logical < len(handles[h]) for h, logical in shown):
        return None
    return slots


def _value(term: z3.ExprRef) -> Any:
    simple = z3.simplify(term)
    return z3.is_true(simple) if z3.is_bool(simple) else simple.as_long()


def _same_state(step: Transition[eo.EmsOsState], post: eo.EmsOsState) -> bool:
    fields = ("os_enabled", "key_held", "access_key", "keys_issued", "alt_set",
              "alt_segment", "alt_offset")
    expected = step.post
    held, area = _value(post.key_held), _value(post.alt_set)
    return all(_value(getattr(expected, name) == getattr(post, name)) for name in fields
               if (name != "access_key" or held)
               and (name not in ("alt_segment", "alt_offset") or area))


class EmsOsMachine(CheckedMachine):
    """4Fh, 5Bh, 5Dh (and 43h-45h) through Int67h."""

    dos: DosMemoryManager

    @initialize()
    def load(self) -> None:
        type(self).examples += 1
        pm = PageManager()
        assert pm.InitializePhysicalMemory(0x100000, 0x400000)
        self.dos = DosMemoryManager(pm, xms_end=0x200000, ems_pages=8)
        assert self.dos.ready
        for pages in (3, 2):
            assert self.dos.Int67h(Registers(eax=0x4300, ebx=pages)).ah == EMS_SUCCESS

    # -- calls and checks ----------------------------------------------------------------

    def call(self, regs: Registers) -> tuple[Registers, dict[str, str]]:
        """Int67h, then the invariants and the unchanged check of a failure."""
        before = os_view(self.dos), ems_view(self.dos)
        answer = self.dos.Int67h(regs)
        type(self).outcomes[f"{regs.ah:02X}h/{regs.al:02X}h {answer.ah:#04x}"] += 1
        post_os, post_ems = os_view(self.dos), ems_view(self.dos)
        problems = check_invariants(type(self), eo.INVARIANTS, post_os,
                                    lambda: to_os_state(post_os))
        problems.update(check_invariants(type(self), {"DOS-5": dm.dos_5}, post_ems,
                                         lambda: to_ems_state(post_ems)))
        if answer.ah != EMS_SUCCESS and (post_os, post_ems) != before:
            problems[UNCHANGED] = "a failed call changed the EMM's state"
        return answer, problems

    def buffer(self, data: st.DataObject) -> tuple[int, int]:
        return data.draw(st.sampled_from(BUFFERS))

    def handles(self) -> dict[int, tuple[int, ...]]:
        return {h: tuple(ids) for h, ids in self.dos.ems.handles.items()}

    # -- rules ---------------------------------------------------------------------------

    @rule(handle=st.sampled_from((1, 2, 3)), logical=st.sampled_from((0, 1, 2, UNMAP)),
          physical=st.integers(0, 3))
    def map_page(self, handle: int, logical: int, physical: int) -> None:
        answer, problems = self.call(Registers(eax=0x4400 | physical, ebx=logical, edx=handle))
        raise_problems(f"44h({handle}, {logical}, {physical}) returned {answer}", problems)

    @rule(pages=st.sampled_from((0, 1, 3)), free=st.sampled_from((1, 2, 3)))
    def churn(self, pages: int, free: int) -> None:
        """45h of a handle (a dead handle's pages must leave the slots) or 43h."""
        regs = Registers(eax=0x4500, edx=free) if pages == 0 else \
            Registers(eax=0x4300, ebx=pages)
        answer, problems = self.call(regs)
        raise_problems(f"{regs.ah:02X}h returned {answer}", problems)

    @rule(al=st.sampled_from((0, 1, 2, 3, 0xFF)), right=st.booleans())
    def os_function_set(self, al: int, right: bool) -> None:
        key = self.dos.ems.access_key
        presented = key if right and key is not None else WRONG_KEY
        regs = Registers(eax=0x5D00 | al, ebx=presented >> 16, ecx=presented & 0xFFFF,
                         edx=0x77)
        pre = to_os_state(os_view(self.dos))
        answer, problems = self.call(regs)
        issued = self.dos.ems.access_key if self.dos.ems.access_key is not None else 0
        step = eo.OsFunctionSet(pre, z3.IntVal(al), z3.IntVal(presented), z3.IntVal(issued))
        code, result = _value(step.status), _value(step.result)
        if answer != regs.set(ah=code, bx=result >> 16, cx=result & 0xFFFF):
            problems[TRANSITION] = f"the spec's status {code:#x}, BX:CX {result:#x}"
        if not _same_state(step, to_os_state(os_view(self.dos))):
            problems[TRANSITION] = f"the spec's post-state differs from {os_view(self.dos)}"
        args = {"presented": z3.IntVal(presented)}
        if not _value(eo.dos_7k(pre, Transition(z3.IntVal(answer.ah), pre, pre), args)):
            problems["DOS-7K"] = "5Dh succeeded without the outstanding key"
        raise_problems(f"5Dh/{al:02X}h BX:CX={presented:#x} returned {answer}", problems)

    @rule(data=st.data(), al=st.sampled_from((0, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9)),
          bl=st.sampled_from((0, 0, 1)), kind=st.sampled_from(("current", "swap", "garbage")))
    def alternate(self, data: st.DataObject, al: int, bl: int, kind: str) -> None:
        segment, offset = self.buffer(data)
        context = self.context(kind)
        write_physical(self.dos.pageman, segment * 16 + offset, context)
        pre_slots, handles = tuple(self.dos.ems.slots), self.handles()
        named = {p: self.entry(context, p) for p in range(PHYSICAL_PAGES)}
        corrupt = merged(pre_slots, named, handles) is None
        regs = Registers(eax=0x5B00 | al, ebx=bl, es=segment, edi=offset)
        pre = to_os_state(os_view(self.dos))
        answer, problems = self.call(regs)
        step = eo.AlternateMapRegisterSet(pre, z3.IntVal(al), z3.IntVal(bl), z3.IntVal(segment),
                                          z3.IntVal(offset), z3.BoolVal(corrupt))
        code, area = _value(step.status), _value(step.result)
        expected = regs.set(ah=code)
        if code == 0 and al == 0:
            expected = regs.set(ah=0, bl=0, es=area >> 16, di=area & 0xFFFF)
        elif code == 0 and al in (3, 5):
            expected = regs.set(ah=0, bl=0)
        elif code == 0 and al == 2:
            expected = regs.set(ah=0, dx=len(context))
        if answer != expected:
            problems[TRANSITION] = f"the spec's answer is {expected}"
        if not _same_state(step, to_os_state(os_view(self.dos))):
            problems[TRANSITION] = f"the spec's post-state differs from {os_view(self.dos)}"
        if answer.ah == 0 and al == 1:
            if tuple(self.dos.ems.slots) != merged(pre_slots, named, handles):
                problems[TRANSITION] = "5Bh/01h did not map the context"
        if answer.ah == 0 and al == 0 and area:
            shown = read_physical(self.dos.pageman, (area >> 16) * 16 + (area & 0xFFFF), 16)
            if shown != self.dos.ems.EmsGetPageMap():
                problems[TRANSITION] = "5Bh/00h did not write the context to the save area"
        if answer.ah == 0 and not _value(pre.os_enabled):
            problems["DOS-7D"] = "5Bh answered while the OS/E set is disabled"
        raise_problems(f"5Bh/{al:02X}h BL={bl} ES:DI={segment:04X}:{offset:04X} "
                       f"returned {answer}", problems)

    def context(self, kind: str) -> bytes:
        """A 4Eh context: the current one, the current one with two slots swapped
        (valid), or one naming a page no handle has."""
        current = bytearray(self.dos.ems.EmsGetPageMap())
        if kind == "swap":
            current[0:4], current[4:8] = current[4:8], current[0:4]
        elif kind == "garbage":
            struct.pack_into("<HH", current, 8, 0x00EE, 0x0003)
        return bytes(current)

    @staticmethod
    def entry(context: bytes, physical: int) -> tuple[int, int] | None:
        handle, logical = struct.unpack_from("<HH", context, 4 * physical)
        return None if (handle, logical) == (UNMAP, UNMAP) else (handle, logical)

    @rule(data=st.data(), count=st.sampled_from((0, 1, 2, 4, 5)), bad=st.booleans())
    def partial_get(self, data: st.DataObject, count: int, bad: bool) -> None:
        """4Fh/00h: DS:SI a segment list, ES:DI the partial context it gets."""
        (segment, offset), out = self.buffer(data), BUFFERS[1]
        pages = data.draw(st.lists(st.integers(0, 3), min_size=count, max_size=count))
        segments = [FRAME_SEGMENTS[p] for p in pages]
        if bad and segments:
            segments[-1] = data.draw(st.sampled_from(BAD_SEGMENTS))
        write_physical(self.dos.pageman, segment * 16 + offset,
                       struct.pack(f"<{1 + count}H", count, *segments))
        before = read_physical(self.dos.pageman, out[0] * 16 + out[1], 2 + 4 * count)
        regs = Registers(eax=0x4F00, ds=segment, esi=offset, es=out[0], edi=out[1])
        answer, problems = self.call(regs)
        code = EMM_CORRUPT_MAP if count > PHYSICAL_PAGES else \
            EMS_INVALID_PHYSICAL if bad and segments else EMS_SUCCESS
        written = read_physical(self.dos.pageman, out[0] * 16 + out[1], 2 + 4 * count)
        if answer != regs.set(ah=code):
            problems[TRANSITION] = f"expected AH = {code:#x}"
        elif code == EMS_SUCCESS:
            expected = struct.pack("<H", count) + b"".join(
                struct.pack("<BBH", p, *self.partial_entry(p)) for p in pages)
            if written != expected:
                problems[TRANSITION] = "4Fh/00h wrote another context than the slots show"
        elif written != before:
            problems[UNCHANGED] = "a failed 4Fh/00h wrote the caller's buffer"
        raise_problems(f"4Fh/00h {count} segments {segments} returned {answer}", problems)

    def partial_entry(self, physical: int) -> tuple[int, int]:
        shown = self.dos.ems.slots[physical]
        return (0xFF, UNMAP) if shown is None else (shown[0], shown[1])

    @precondition(lambda self: any(self.dos.ems.slots))
    @rule(data=st.data(), count=st.sampled_from((1, 2, 3, 5)),
          twist=st.sampled_from(("none", "dead", "page", "unmap")))
    def partial_set(self, data: st.DataObject, count: int, twist: str) -> None:
        """4Fh/01h: DS:SI a partial context, from the slots as they are, then twisted:
        a dead handle, a physical page past 3, or an unmap entry."""
        segment, offset = self.buffer(data)
        pages = data.draw(st.lists(st.integers(0, 3), min_size=min(count, 4),
                                   max_size=min(count, 4), unique=True))
        others = [(p, *self.partial_entry(p)) for p in pages]
        entries = [(p, *self.partial_entry((p + 1) % PHYSICAL_PAGES)) for p in pages]
        if twist == "dead":
            entries[0] = (entries[0][0], 0x3E, 0)
        elif twist == "page":
            entries[0] = (7, *entries[0][1:])
        elif twist == "unmap":
            entries[0] = (entries[0][0], 0xFF, UNMAP)
        raw = struct.pack("<H", count) + b"".join(struct.pack("<BBH", *e) for e in entries)
        write_physical(self.dos.pageman, segment * 16 + offset, raw)
        pre_slots, handles = tuple(self.dos.ems.slots), self.handles()
        regs = Registers(eax=0x4F01, ds=segment, esi=offset)
        answer, problems = self.call(regs)
        named = {p: None if h == 0xFF else (h, logical) for p, h, logical in entries}
        after = merged(pre_slots, named, handles)
        code = EMM_CORRUPT_MAP if count > PHYSICAL_PAGES else EMS_INVALID_PHYSICAL \
            if twist == "page" else EMS_SUCCESS if after is not None else EMM_CORRUPT_MAP
        if answer != regs.set(ah=code):
            problems[TRANSITION] = f"expected AH = {code:#x} (others {others})"
        elif code == EMS_SUCCESS and tuple(self.dos.ems.slots) != after:
            problems[TRANSITION] = f"4Fh/01h left {self.dos.ems.slots}, the context says {after}"
        raise_problems(f"4Fh/01h {entries} (count {count}) returned {answer}", problems)

    @rule(al=st.sampled_from((0, 1, 2)))
    def hardware_info(self, al: int) -> None:
        """59h: A4h while the OS/E set is disabled (LIM 4.0 function 26), else 00h
        writes the 10-byte record, 01h the raw page counts, 02h 8Fh."""
        out = BUFFERS[0]
        regs = Registers(eax=0x5900 | al, es=out[0], edi=out[1])
        disabled = not self.dos.ems.os_enabled
        answer, problems = self.call(regs)
        code = EMM_ACCESS_DENIED if disabled else 0x8F if al == 2 else EMS_SUCCESS
        if answer.ah != code:
            problems[TRANSITION] = f"expected AH = {code:#x} (OS/E set disabled: {disabled})"
        raise_problems(f"59h/{al:02X}h returned {answer}", problems)

    @rule(al=st.sampled_from((2, 3)), bx=st.integers(0, 5))
    def partial_size(self, al: int, bx: int) -> None:
        regs = Registers(eax=0x4F00 | al, ebx=bx)
        answer, problems = self.call(regs)
        expected = regs.set(ah=0x8F) if al == 3 else regs.set(ah=EMS_INVALID_PHYSICAL) \
            if bx > PHYSICAL_PAGES else regs.set(ah=0, al=2 + 4 * bx)
        if answer != expected:
            problems[TRANSITION] = f"expected {expected}"
        raise_problems(f"4Fh/{al:02X}h BX={bx} returned {answer}", problems)


def _return_key_keeps_disabled(ems: Any, regs: Registers) -> Registers:
    """5Dh/02h that forgets the key but leaves the OS/E set as it was."""
    enabled = ems.os_enabled
    out = os_function_set(ems, regs)
    if regs.al == 2 and out.ah == 0:
        ems.os_enabled = enabled
    return out


def _alternate_ignores_disable(ems: Any, regs: Registers) -> Registers:
    """5Bh without the A4h check."""
    enabled, ems.os_enabled = ems.os_enabled, True
    out = alternate_map_register_set(ems, regs)
    ems.os_enabled = enabled
    return out


#: Broken models (int67h calls these functions by their names in model.int67).
EMS_OS_MODEL_VARIANTS = (
    ModelVariant("ems_return_key_keeps_disabled", ("DOS-7", TRANSITION),
                 {"model.int67.os_function_set": _return_key_keeps_disabled}),
    ModelVariant("ems_alternate_ignores_disable", ("DOS-7D", TRANSITION),
                 {"model.int67.alternate_map_register_set": _alternate_ignores_disable}),
)
