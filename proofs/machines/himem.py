"""HIMEM's HMA and A20 (spec/himem.py) checked on every step of hypothesis runs,
through the register entry DosMemoryManager.XmsCall (issue 15).

The machine loads the manager with /HMAMIN of 0, 1 or 63 KB and calls XMS
functions 01h-07h with DX values around /HMAMIN and high words in EAX and EDX,
undefined functions (13h, 80h, FFh), and now and then moves the A20 count next
to its limit (as a program's 2^32 enables would). After every call it checks

1. DOS-6 on the abstraction of the post-state (``himem_view``);
2. the transition: the spec's step from the pre-state's abstraction gives the
   registers the model returned (AX = 1 / BL = 0, AX = 0 / BL = the status;
   94h when the step's result says A20 is still enabled; 07h's AX the result)
   and the post-state; DOS-6H on RequestHma;
3. every register the function does not name is as it was (high words
   included); an undefined function changes nothing and answers 80h.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import z3
from hypothesis import strategies as st
from hypothesis.stateful import initialize, rule

from model.dos_memory import DosMemoryManager
from model.page_manager import PageManager
from model.registers import Registers
from proofs.machines.checks import TRANSITION, UNCHANGED, check_invariants, raise_problems
from proofs.machines.runner import CheckedMachine, ModelVariant
from spec import himem as hm
from spec.abi import A20_MAX_COUNT, HIMEM_A20_STILL_ENABLED, HIMEM_NOT_IMPLEMENTED, KB
from spec.step import Transition

#: XMS function -> the spec's step (01h takes DX).
STEPS: dict[int, Callable[..., hm.HimemStep]] = {
    0x01: hm.RequestHma, 0x02: hm.ReleaseHma, 0x03: hm.GlobalEnableA20,
    0x04: hm.GlobalDisableA20, 0x05: hm.LocalEnableA20, 0x06: hm.LocalDisableA20,
    0x07: hm.QueryA20}
WANTED = (0, 0x3FF, 0x400, 0xFBFF, 0xFC00, 0xFFFF)
View = tuple[bool, int, int, bool]


def himem_view(dos: DosMemoryManager) -> View:
    hma = dos.xms.hma
    return hma.hma_owned, hma.hma_min, hma.a20_local, hma.a20_global


def to_himem_state(view: View) -> hm.HimemState:
    owned, hma_min, count, flag = view
    return hm.concrete_himem(hma_owned=owned, hma_min=hma_min, a20_count=count, a20_global=flag)


def _value(term: z3.ExprRef) -> Any:
    simple = z3.simplify(term)
    return z3.is_true(simple) if z3.is_bool(simple) else simple.as_long()


def expected_registers(ah: int, step: hm.HimemStep, regs: Registers) -> Registers:
    """What HIMEM answers for the spec's step."""
    code, result = _value(step.status), _value(step.result)
    if ah == 0x07:
        return regs.set(ax=int(result), bl=0)
    if code:
        return regs.set(ax=0, bl=code)
    if result and ah in (0x04, 0x06):
        return regs.set(ax=0, bl=HIMEM_A20_STILL_ENABLED)
    return regs.set(ax=1, bl=0)


class HimemMachine(CheckedMachine):
    """XMS 01h-07h and undefined functions through XmsCall."""

    dos: DosMemoryManager

    @initialize(hma_min_kb=st.sampled_from((0, 1, 63)))
    def load(self, hma_min_kb: int) -> None:
        type(self).examples += 1
        pm = PageManager()
        assert pm.InitializePhysicalMemory(0x100000, 0x400000)
        self.dos = DosMemoryManager(pm, xms_end=0x200000)
        assert self.dos.ready
        self.dos.xms.hma.hma_min = hma_min_kb * KB

    @rule(ah=st.sampled_from(sorted(STEPS)), wanted=st.sampled_from(WANTED),
          high=st.sampled_from((0, 0xABCD)))
    def call(self, ah: int, wanted: int, high: int) -> None:
        regs = Registers(eax=(high << 16) | (ah << 8), ebx=0x1234, ecx=high,
                         edx=(high << 16) | wanted, esi=7, edi=8, ds=0x50, es=0x60)
        pre_view = himem_view(self.dos)
        pre = to_himem_state(pre_view)
        step = STEPS[ah](pre, z3.IntVal(wanted)) if ah == 0x01 else STEPS[ah](pre)
        answer = self.dos.XmsCall(regs)
        type(self).outcomes[f"{ah:02X}h {answer.ax}/{answer.bl:#x}"] += 1
        post_view = himem_view(self.dos)
        problems = check_invariants(type(self), hm.INVARIANTS, post_view,
                                    lambda: to_himem_state(post_view))
        expected = expected_registers(ah, step, regs)
        if answer != expected:
            problems[TRANSITION] = f"the spec's answer is {expected}"
        post = to_himem_state(post_view)
        if not all(_value(a == b) for a, b in zip(
                (step.post.hma_owned, step.post.hma_min, step.post.a20_count,
                 step.post.a20_global), (post.hma_owned, post.hma_min, post.a20_count,
                                         post.a20_global), strict=True)):
            problems[TRANSITION] = f"the spec's post-state differs from {post_view}"
        if ah == 0x01:
            done = Transition(z3.IntVal(0 if answer.ax else answer.bl), pre, pre)
            if not _value(hm.dos_6h(pre, done, {"wanted": z3.IntVal(wanted)})):
                problems["DOS-6H"] = "the HMA was given while held or below /HMAMIN"
        raise_problems(f"XmsCall({ah:02X}h, DX={wanted:#x}) returned {answer}", problems)

    @rule(ah=st.sampled_from((0x13, 0x80, 0xFF)))
    def undefined(self, ah: int) -> None:
        regs = Registers(eax=ah << 8, ebx=0x1234, edx=1)
        before = himem_view(self.dos), dict(self.dos.xms.handles)
        answer = self.dos.XmsCall(regs)
        problems = {}
        if answer != regs.set(ax=0, bl=HIMEM_NOT_IMPLEMENTED):
            problems[TRANSITION] = f"an undefined function answered {answer}"
        if (himem_view(self.dos), dict(self.dos.xms.handles)) != before:
            problems[UNCHANGED] = "an undefined function changed the driver"
        raise_problems(f"XmsCall({ah:02X}h)", problems)

    @rule(below=st.sampled_from((0, 1)))
    def near_the_limit(self, below: int) -> None:
        """The count after A20_MAX_COUNT - below enables (too many calls to make)."""
        self.dos.xms.hma.a20_local = A20_MAX_COUNT - below


def _disable_below_zero(self: Any) -> int:
    """06h without the 82h check at 0."""
    self.a20_local -= 1
    return 0


HIMEM_MODEL_VARIANTS = (
    ModelVariant("a20_disable_below_zero", ("DOS-6", TRANSITION),
                 {"model.xms_hma.XmsHma.LocalDisableA20": _disable_below_zero}),
)
