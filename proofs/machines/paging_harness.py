"""The paging machine's harness: one model call checked against the spec's step and
every invariant (the steps are listed in proofs/machines/paging.py's docstring).
:class:`HarnessCore` is the check itself; the operations come in one class per
concern (the page manager's calls, directories, mappings, accesses), joined by
:class:`Harness`."""

from __future__ import annotations

import dataclasses
import hashlib
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import z3

from model.page_manager import PageManager
from model.page_tables import PageDirectory, PageFault
from model.virtual_memory import VirtualMemoryManager
from proofs.abstractions.paging import (
    END,
    Snapshot,
    byte_val,
    fits,
    frame_val,
    snapshot,
    to_state,
    word_val,
)
from proofs.machines.checks import (
    TRANSITION,
    InvariantViolationError,
    SolverUnknownError,
    TransitionError,
)
from proofs.machines.paging_expect import (
    UNALIGNED,
    Expected,
    Refused,
    _error_name,
    _fmt,
    _witness,
    describe_changes,
    describe_state,
    first_failure,
    from_step,
    spec_step,
    substitute,
)
from proofs.machines.paging_queries import InvariantChecker, Stats, prove, value_of
from proofs.machines.witness import explain
from spec import page_manager as spec_pm
from spec import virtual_memory as spec_vm
from spec.abi import (
    ADDRESS_LIMIT,
    FAULT_PROTECTION,
    FAULT_USER,
    FAULT_WRITE,
    NO_FRAME,
    PAGE_SHIFT,
    PAGE_SIZE,
    PTE_PRESENT,
    PTE_USER,
    PTE_WRITABLE,
    ErrorCode,
)
from spec.catalogue import INVARIANTS
from spec.state import (
    REAL_FIELDS,
    WORD,
    Ref,
    State,
    ite,
    walk,
)
from spec.step import Step

#: The paging invariants by id (spec/catalogue.py), for the why.
_HOLDS = {inv.id: inv.holds for inv in INVARIANTS}


def _explained(refuted: Sequence[str], state: State) -> list[str]:
    """Why each refuted invariant is false on state (proofs/machines/witness.py)."""
    return [f"    {line}" for ident in refuted if ident in _HOLDS
            for line in explain(_HOLDS[ident], state)]

E = ErrorCode

UNKNOWN_ID = "unknown"


def reply_claim(reply: object, spec_result: Ref | None, kind: str) -> tuple[str, Ref]:
    """The claim that the model's returned value is the spec's result."""
    if spec_result is None:
        return "result", z3.BoolVal(True)
    if kind == "bool":
        if not isinstance(reply, bool):
            return "result (not a bool)", z3.BoolVal(False)
        return "result", spec_result == z3.BoolVal(reply)
    if kind == "word":
        if not isinstance(reply, int) or isinstance(reply, bool) or not fits(reply, WORD):
            return "result (not a 32-bit int)", z3.BoolVal(False)
        return "result", spec_result == word_val(reply)
    raise ValueError(kind)


def _directory_reply(reply: object, s: Step) -> tuple[str, Ref]:
    """CreatePageDirectory/ClonePageDirectory: None on failure, else the directory."""
    if reply is None:
        return "result (None)", s.status != 0
    if not isinstance(reply, PageDirectory):
        return "result (not a PageDirectory)", z3.BoolVal(False)
    return "result", z3.And(s.status == 0, s.result == word_val(reply.physical_addr))

#: Past this many remembered verdicts the memory starts again.
PASSED_LIMIT = 100_000


class HarnessCore:
    """One model under check: every call goes through :meth:`call`, which checks it
    against the spec's step and the invariants; the operations are in the
    classes below, one per concern, and :class:`Harness` joins them."""

    def __init__(self, stats: Stats | None = None,
                 invariants: InvariantChecker | None = None) -> None:
        self.stats = stats if stats is not None else Stats()
        self.invariants = invariants if invariants is not None else InvariantChecker(self.stats)
        self.pm = PageManager()
        self.vm = VirtualMemoryManager(self.pm)
        self.snap = snapshot(self.pm, self.vm)
        self._state: tuple[Snapshot, State] | None = None
        self.history: list[str] = []
        self._check_invariants(self.state, "the initial state", [])

    # -- the check ------------------------------------------------------------

    @property
    def state(self) -> State:
        """The z3 abstraction of the current snapshot, built when first asked
        (a call the twin accepts needs none: at the real size it cost 7 ms)."""
        if self._state is None or self._state[0] is not self.snap:
            self._state = (self.snap, self._to_state(self.snap))
        return self._state[1]

    @state.setter
    def state(self, value: State) -> None:
        self._state = (self.snap, value)

    def _to_state(self, snap: Snapshot) -> State:
        start = time.process_time()
        state = to_state(snap)
        self.stats.abstraction_seconds += time.process_time() - start
        return state

    def _snapshot(self) -> Snapshot:
        """The model's state now."""
        start = time.process_time()
        snap = snapshot(self.pm, self.vm)
        self.stats.abstraction_seconds += time.process_time() - start
        return snap

    def _twin_accepts(self, operation: str, args: Mapping[str, object], reply: object,
                      status: int, pre_snap: Snapshot, post_snap: Snapshot) -> bool:
        """Whether a Python twin of the step accepts the call (then z3 is not
        asked); the machines have none: every call is judged by z3."""
        return False

    def _check_invariants(self, state: State, where: str, context: list[str]) -> None:
        refuted, unknown = self.invariants.violated(state)
        if refuted or unknown:
            lines = [f"{', '.join(refuted + unknown)}: invariant "
                     f"{'violated' if refuted else 'unknown (z3)'} in {where}", *context]
            if unknown:
                lines.append(f"z3 answered unknown for {', '.join(unknown)}")
            if refuted:
                raise InvariantViolationError("\n".join(lines + _explained(refuted, state)),
                                              refuted + unknown)
            raise SolverUnknownError("\n".join(lines), unknown)

    def call(self, operation: str, args: Mapping[str, object], invoke: Callable[[], object],
             last_error: Callable[[], int],
             expect: Callable[[Snapshot, State, object, Snapshot], Expected | Refused]) -> object:
        """Run one model call and check it against the spec and the invariants."""
        self.stats.steps += 1
        pre_snap = self._snapshot()
        if pre_snap != self.snap:
            self.snap = pre_snap
        shown = ", ".join(f"{k}={_fmt(v)}" for k, v in args.items())
        label = f"{operation}({shown})"
        self.history.append(label)
        try:
            reply = invoke()
        except Exception as exc:  # a model that raises is a model bug
            raise TransitionError(
                f"{TRANSITION}: {label} raised {type(exc).__name__}: {exc}\n"
                + "".join(traceback.format_exception(exc)[-6:]), [TRANSITION]) from exc
        status = int(last_error())
        self.stats.outcomes[operation, _error_name(status).split(" ")[0]] += 1
        post_snap = self._snapshot()
        if self._twin_accepts(operation, args, reply, status, pre_snap, post_snap):
            if post_snap != pre_snap:
                self.snap = post_snap
            return reply
        key = None if self.passed is None else hashlib.sha256(
            f"{operation}|{sorted(args.items())!r}|{reply!r}|{status}|{pre_snap!r}|{post_snap!r}"
            .encode()).digest()
        if key is not None and self.passed is not None and key in self.passed:
            if post_snap != pre_snap:
                self.snap = post_snap
            return reply
        pre = self.state
        post = pre if post_snap == pre_snap else self._to_state(post_snap)
        expected = expect(pre_snap, pre, reply, post_snap)
        failed: list[str] = []
        unknown = False
        if isinstance(expected, Refused):
            if status != expected.code or post_snap != pre_snap:
                failed.append(f"refusal: the spec cannot represent {expected.why}; the model "
                              f"must refuse with {_error_name(int(expected.code))} "
                              "and change nothing")
            if reply is True or isinstance(reply, PageDirectory | bytes):
                failed.append("refusal: the model returned a success value")
        else:
            parts = [("status", expected.status == word_val(status)), *expected.claims,
                     ("post", z3.And([getattr(post, n) == getattr(expected.post, n)
                                      for n in REAL_FIELDS]))]
            verdict = prove(z3.And([claim for _, claim in parts]), self.stats)
            if verdict != z3.unsat:
                failed = self._diagnose(parts, post, expected.post)
                unknown = verdict == z3.unknown and not failed
        if post_snap != pre_snap:
            self.snap, self.state = post_snap, post
        refuted, inv_unknown = ([], []) if post_snap == pre_snap or not self.post_invariants \
            else self.invariants.violated(post)
        if not (failed or refuted or unknown or inv_unknown):
            if key is not None and self.passed is not None:
                if len(self.passed) > PASSED_LIMIT:
                    self.passed.clear()
                self.passed.add(key)
            return reply
        context = self._context(label, reply, status, expected, pre_snap, post_snap)
        if failed or refuted:
            ids = list(refuted) + ([TRANSITION] if failed else [])
            lines = [f"{', '.join(ids)}: {label} is not allowed by the spec"
                     if failed else f"{', '.join(ids)}: invariant violated after {label}",
                     *context]
            if failed:
                lines.append("  transition check failed: " + "; ".join(failed))
            if refuted:
                lines.append(f"  invariants violated in the post-state: {', '.join(refuted)}")
                lines += _explained(refuted, post)
            lines.append("  calls so far: " + "; ".join(self.history[-12:]))
            if refuted:
                raise InvariantViolationError("\n".join(lines), ids)
            raise TransitionError("\n".join(lines), ids)
        ids = inv_unknown + ([UNKNOWN_ID] if unknown else [])
        raise SolverUnknownError(
            f"unknown: z3 could not decide {', '.join(ids)} after {label}\n"
            + "\n".join(context), ids)

    def _diagnose(self, parts: Sequence[tuple[str, Ref]], post: State, spec_post: State
                  ) -> list[str]:
        """Which of the claims failed; for the post-state, which fields and where."""
        failed = []
        for name, claim in parts:
            if name == "post":
                for field_name in REAL_FIELDS:
                    a, b = getattr(post, field_name), getattr(spec_post, field_name)
                    answer = prove(a == b, self.stats)
                    if answer != z3.unsat:
                        where = _witness(a, b) if answer == z3.sat else "(z3: unknown)"
                        failed.append(f"post.{field_name} differs {where}")
            else:
                answer = prove(claim, self.stats)
                if answer != z3.unsat:
                    failed.append(name if answer == z3.sat else f"{name} (z3: unknown)")
        return failed

    #: What the report calls the thing judged (the oracle judges an implementation).
    subject = "model"
    #: Digests of (call, reply, error, pre-state, post-state) already judged
    #: allowed: the judgement is a function of them, so the same call from the
    #: same state with the same outcome passes again without z3 (the oracle's
    #: set-up calls, repeated by every sequence). None: no memory (the machines).
    passed: set[bytes] | None = None
    #: Whether call() checks the invariants of a changed post-state. The
    #: machines do; the oracle relies on the proved inductive steps instead (a
    #: post-state equal to the spec's successor keeps what the pre-state kept).
    post_invariants = True

    def _context(self, label: str, reply: object, status: int, expected: Expected | Refused,
                 pre_snap: Snapshot, post_snap: Snapshot) -> list[str]:
        """The lines a failure report prints: both replies, the changes, the state."""
        detail: list[str] = []
        if isinstance(expected, Refused):
            spec_reply = f"refused with {_error_name(int(expected.code))} (outside the spec)"
        else:
            spec_reply = f"status {_error_name(value_of(expected.status))}"
            if expected.result is not None:
                spec_reply += f", result {_fmt(value_of(expected.result))}"
            if expected.choices:
                detail.append("implementation's choices: " + ", ".join(
                    f"{k}={_fmt(v)}" for k, v in expected.choices.items()))
        return [f"  operation: {label}",
                f"  {self.subject}: returned {_fmt(reply)}, last_error {_error_name(status)}",
                f"  spec:  {spec_reply}",
                *(f"  {line}" for line in detail),
                f"  {self.subject} changes: " + "; ".join(describe_changes(pre_snap, post_snap)),
                "  pre-state: " + " | ".join(describe_state(pre_snap))]

    # -- helpers for the operations -----------------------------------------

    def directory_arg(self, handle: object) -> int | None:
        """The spec's name (frame) for a directory handle; None when the spec
        cannot represent it (a stale object whose frame holds another live
        directory, or not a PageDirectory at all)."""
        if not isinstance(handle, PageDirectory):
            return None
        frame = handle.physical_addr >> PAGE_SHIFT
        if not 0 <= handle.physical_addr < ADDRESS_LIMIT or handle.physical_addr % PAGE_SIZE:
            return None
        if self.vm.directories.get(handle.physical_addr) is handle:
            return frame
        live_frames = {d >> PAGE_SHIFT for d in self.vm.directories}
        return None if frame in live_frames else frame

    def _vm_call(self, operation: str, args: Mapping[str, object], invoke: Callable[[], object],
                 expect: Callable[[Snapshot, State, object, Snapshot], Expected | Refused]
                 ) -> object:
        return self.call(operation, args, invoke, lambda: self.vm.last_error, expect)

    def _pm_call(self, operation: str, args: Mapping[str, object], invoke: Callable[[], object],
                 expect: Callable[[Snapshot, State, object, Snapshot], Expected | Refused]
                 ) -> object:
        return self.call(operation, args, invoke, lambda: self.pm.last_error, expect)


class PageManagerCalls(HarnessCore):
    """The page manager's calls (seed section 1)."""

    def InitializePhysicalMemory(self, mem_start: int, mem_end: int) -> object:
        def expect(pre_snap: Snapshot, pre: State, reply: object, post: Snapshot
                   ) -> Expected | Refused:
            s = spec_step("InitializePhysicalMemory", pre,
                          mem_start=substitute(mem_start, WORD, 0xFFFFFFFF),
                          mem_end=substitute(mem_end, END, 0))
            return from_step(s, [reply_claim(reply, s.result, "bool")])
        return self._pm_call("InitializePhysicalMemory",
                             {"mem_start": mem_start, "mem_end": mem_end},
                             lambda: self.pm.InitializePhysicalMemory(mem_start, mem_end), expect)

    def RequestFrame(self, is_kernel: Any, is_writeable: Any) -> object:
        def expect(pre_snap: Snapshot, pre: State, reply: object, post: Snapshot
                   ) -> Expected | Refused:
            if not (isinstance(is_kernel, bool) and isinstance(is_writeable, bool)):
                return Refused(E.ERROR_INVALID_PARAMETER, "a flag that is not a bool")
            frame = reply >> PAGE_SHIFT if isinstance(reply, int) and reply != NO_FRAME else 0
            s = spec_step("RequestFrame", pre, frame=frame & 0xFFFFF)
            return from_step(s, [reply_claim(reply, s.result, "word")], {"frame": frame})
        return self._pm_call("RequestFrame", {"is_kernel": is_kernel, "is_writeable": is_writeable},
                             lambda: self.pm.RequestFrame(is_kernel, is_writeable),
                             expect)

    def _address_op(self, name: str, value: int, invoke: Callable[[], object],
                    param: str) -> object:
        def expect(pre_snap: Snapshot, pre: State, reply: object, post: Snapshot
                   ) -> Expected | Refused:
            s = spec_step(name, pre, **{param: substitute(value, WORD, UNALIGNED)})
            return from_step(s, [reply_claim(reply, s.result, "bool")])
        return self._pm_call(name, {param: value}, invoke, expect)

    def FreeFrame(self, frame_addr: int) -> object:
        return self._address_op("FreeFrame", frame_addr,
                                lambda: self.pm.FreeFrame(frame_addr), "frame_addr")

    def UnreservePage(self, virtual_address: int) -> object:
        return self._address_op("UnreservePage", virtual_address,
                                lambda: self.pm.UnreservePage(virtual_address),
                                "virtual_address")

    def FirstFreeFrame(self) -> object:
        def expect(pre_snap: Snapshot, pre: State, reply: object, post: Snapshot) -> Expected:
            frame = reply >> PAGE_SHIFT if isinstance(reply, int) and reply != NO_FRAME else 0
            s = spec_step("FirstFreeFrame", pre, result=frame & 0xFFFFF)
            return from_step(s, [reply_claim(reply, s.result, "word")], {"result": frame})
        return self._pm_call("FirstFreeFrame", {}, self.pm.FirstFreeFrame, expect)

    def CopyPage(self, src: int, dst: int) -> object:
        def expect(pre_snap: Snapshot, pre: State, reply: object, post: Snapshot
                   ) -> Expected | Refused:
            s = spec_step("CopyPage", pre, src=substitute(src, WORD, UNALIGNED),
                          dst=substitute(dst, WORD, UNALIGNED))
            return from_step(s, [reply_claim(reply, s.result, "bool")])
        return self._pm_call("CopyPage", {"src": src, "dst": dst},
                             lambda: self.pm.CopyPage(src, dst), expect)

    def _count(self, name: str) -> object:
        def expect(pre_snap: Snapshot, pre: State, reply: object, post: Snapshot) -> Expected:
            # The free and used counts are read-only steps outside the catalogue
            # (nothing to prove inductively): spec.page_manager states them.
            s = getattr(spec_pm, name)(pre)
            return from_step(s, [reply_claim(reply, s.result, "word")])
        return self._pm_call(name, {}, getattr(self.pm, name), expect)

    def GetFrameCount(self) -> object:
        return self._count("GetFrameCount")

    def GetFreeFrameCount(self) -> object:
        return self._count("GetFreeFrameCount")

    def GetUsedFrameCount(self) -> object:
        return self._count("GetUsedFrameCount")


class DirectoryCalls(HarnessCore):
    """The directories' calls: paging, create, switch, clone, destroy (seed section 2)."""

    def InitializePaging(self) -> object:
        def expect(pre_snap: Snapshot, pre: State, reply: object, post: Snapshot) -> Expected:
            kernel_dir = post.kernel_dir if post.paging and not pre_snap.paging else 0
            identity = post.pde.get(kernel_dir, {}).get(0, 0) >> PAGE_SHIFT
            s = spec_step("InitializePaging", pre, kernel_dir=kernel_dir, identity_table=identity)
            return from_step(s, [reply_claim(reply, s.result, "bool")],
                             {"kernel_dir": kernel_dir, "identity_table": identity})
        return self._vm_call("InitializePaging", {}, self.vm.InitializePaging, expect)

    def CreatePageDirectory(self) -> object:
        def expect(pre_snap: Snapshot, pre: State, reply: object, post: Snapshot) -> Expected:
            new_dir = reply.physical_addr >> PAGE_SHIFT if isinstance(reply, PageDirectory) else 0
            s = spec_step("CreatePageDirectory", pre, new_dir=new_dir & 0xFFFFF)
            return from_step(s, [_directory_reply(reply, s)], {"new_dir": new_dir})
        return self._vm_call("CreatePageDirectory", {}, self.vm.CreatePageDirectory, expect)

    def SwitchPageDirectory(self, new_dir: Any) -> object:
        frame = self.directory_arg(new_dir)

        def expect(pre_snap: Snapshot, pre: State, reply: object, post: Snapshot
                   ) -> Expected | Refused:
            if frame is None:
                return Refused(E.ERROR_INVALID_HANDLE, "this directory handle")
            s = spec_step("SwitchPageDirectory", pre, new_dir=frame)
            return from_step(s, [reply_claim(reply, s.result, "bool")])
        return self._vm_call("SwitchPageDirectory", {"new_dir": new_dir},
                             lambda: self.vm.SwitchPageDirectory(new_dir),
                             expect)

    def ClonePageDirectory(self, src: Any) -> object:
        frame_src = self.directory_arg(src)

        def expect(pre_snap: Snapshot, pre: State, reply: object, post: Snapshot
                   ) -> Expected | Refused:
            if frame_src is None:
                return Refused(E.ERROR_INVALID_HANDLE, "this directory handle")
            pages = pre_snap.user_pages(frame_src)
            tables = {slot for slot, _, _ in pages}
            needed = 1 + len(tables) + len(pages)
            new_dir = reply.physical_addr >> PAGE_SHIFT if isinstance(reply, PageDirectory) else 0
            create = spec_step("CreatePageDirectory", pre, new_dir=new_dir & 0xFFFFF)
            status = z3.If(z3.Not(spec_vm.live(pre, frame_val(frame_src))),
                           word_val(E.ERROR_INVALID_HANDLE),
                           z3.If(z3.ULT(pre.nframes - pre.used_count, needed),
                                 word_val(E.ERROR_NOT_ENOUGH_MEMORY), word_val(0)))
            ok = status == 0
            micro: list[Ref] = [create.status == 0, create.assume]
            s = create.post
            choices: dict[str, int] = {"new_dir": new_dir}
            for slot, index, entry in pages:
                va = slot << 22 | index << PAGE_SHIFT
                pde, pte = post.entry(new_dir, slot, index)
                table, frame = pde >> PAGE_SHIFT, pte >> PAGE_SHIFT
                choices[f"table[{slot}]"] = table
                choices[f"frame[{va:#x}]"] = frame
                alloc = spec_step("AllocPage", s, dir=new_dir, virtual_addr=va,
                                  is_kernel=not entry & PTE_USER,
                                  is_writeable=bool(entry & PTE_WRITABLE),
                                  frame=frame, table=table)
                copy = spec_step("CopyPage", alloc.post, src=entry & 0xFFFFF000,
                                 dst=frame << PAGE_SHIFT)
                micro += [alloc.status == 0, alloc.assume, copy.status == 0, copy.assume]
                s = copy.post
            claims = [("micro-steps (CreatePageDirectory, AllocPage, CopyPage)",
                       z3.Implies(ok, z3.And(micro))),
                      _directory_reply(reply, dataclasses.replace(
                          create, status=status))]
            return Expected(status, ite(ok, s, pre), claims,
                            z3.If(ok, create.result, word_val(0)), choices)
        return self._vm_call("ClonePageDirectory", {"src": src},
                             lambda: self.vm.ClonePageDirectory(src),
                             expect)

    def DestroyPageDirectory(self, d: Any) -> object:
        frame_dir = self.directory_arg(d)

        def expect(pre_snap: Snapshot, pre: State, reply: object, post: Snapshot
                   ) -> Expected | Refused:
            if frame_dir is None:
                return Refused(E.ERROR_INVALID_HANDLE, "this directory handle")
            f = frame_val(frame_dir)
            status = z3.If(z3.Not(spec_vm.live(pre, f)), word_val(E.ERROR_INVALID_HANDLE),
                           z3.If(f == pre.kernel_dir, word_val(E.ERROR_ACCESS_DENIED),
                                 z3.If(f == pre.current_dir, word_val(E.ERROR_BUSY),
                                       word_val(0))))
            ok = status == 0
            micro: list[Ref] = []
            s = pre
            for slot, index, _ in pre_snap.user_pages(frame_dir):
                unmap = spec_step("UnmapVirtualAddress", s, dir=frame_dir,
                                  virtual_addr=slot << 22 | index << PAGE_SHIFT)
                micro += [unmap.status == 0, unmap.assume]
                s = unmap.post
            for slot, _ in pre_snap.user_tables(frame_dir):
                free = spec_step("FreeTable", s, dir=frame_dir, slot=slot)
                micro += [free.status == 0, free.assume]
                s = free.post
            last = spec_step("FreeDirectory", s, dir=frame_dir)
            micro += [last.status == 0, last.assume]
            claims = [("micro-steps (UnmapVirtualAddress, FreeTable, FreeDirectory)",
                       z3.Implies(ok, z3.And(micro))),
                      reply_claim(reply, ok, "bool")]
            return Expected(status, ite(ok, last.post, pre), claims, ok)
        return self._vm_call("DestroyPageDirectory", {"dir": d},
                             lambda: self.vm.DestroyPageDirectory(d),
                             expect)


class MappingCalls(HarnessCore):
    """Placing, mapping, unmapping and translating pages: AllocFrame, AllocPage,
    MapVirtualAddress, UnmapVirtualAddress, FreePage, VirtualToPhysical."""

    def _place(self, name: str, d: Any, va: int, is_kernel: Any, is_writeable: Any,
               physical_addr: int | None, invoke: Callable[[], object],
               last_error: Callable[[], int]) -> object:
        """AllocPage / AllocFrame / MapVirtualAddress."""
        frame_dir = self.directory_arg(d)
        args: dict[str, object] = {"dir": d, "virtual_addr": va}
        if physical_addr is not None:
            args["physical_addr"] = physical_addr
        args.update(is_kernel=is_kernel, is_writeable=is_writeable)

        def expect(pre_snap: Snapshot, pre: State, reply: object, post: Snapshot
                   ) -> Expected | Refused:
            if frame_dir is None:
                return Refused(E.ERROR_INVALID_HANDLE, "this directory handle")
            # The model validates the flags with the address: a non-bool flag
            # is refused where the spec refuses an unaligned address.
            flags_ok = isinstance(is_kernel, bool) and isinstance(is_writeable, bool)
            va_s = substitute(va, WORD, UNALIGNED) if flags_ok else UNALIGNED
            slot, index = va_s >> 22, (va_s >> PAGE_SHIFT) & 0x3FF
            pde, pte = post.entry(frame_dir, slot, index)
            table = pde >> PAGE_SHIFT
            choices = {"table": table}
            values: dict[str, object] = dict(
                dir=frame_dir, virtual_addr=va_s, is_kernel=is_kernel is True,
                is_writeable=is_writeable is True, table=table)
            if physical_addr is None:
                values["frame"] = choices["frame"] = pte >> PAGE_SHIFT
            else:
                values["physical_addr"] = substitute(physical_addr, WORD, UNALIGNED)
            s = spec_step(name, pre, **values)
            return from_step(s, [reply_claim(reply, s.result, "bool")], choices)
        return self.call(name, args, invoke, last_error, expect)

    def AllocFrame(self, pd: Any, virtual_address: int, is_kernel: Any,
                   is_writeable: Any) -> object:
        return self._place("AllocFrame", pd, virtual_address, is_kernel, is_writeable, None,
                           lambda: self.pm.AllocFrame(pd, virtual_address,
                                                      is_kernel, is_writeable),
                           lambda: self.pm.last_error)

    def AllocPage(self, d: Any, va: int, is_kernel: Any, is_writeable: Any) -> object:
        return self._place("AllocPage", d, va, is_kernel, is_writeable, None,
                           lambda: self.vm.AllocPage(d, va, is_kernel, is_writeable),
                           lambda: self.vm.last_error)

    def MapVirtualAddress(self, d: Any, va: int, physical_addr: int, is_kernel: Any,
                          is_writeable: Any) -> object:
        return self._place("MapVirtualAddress", d, va, is_kernel, is_writeable, physical_addr,
                           lambda: self.vm.MapVirtualAddress(d, va, physical_addr,
                                                             is_kernel, is_writeable),
                           lambda: self.vm.last_error)

    def _unmap(self, name: str, d: Any, va: int, invoke: Callable[[], object]) -> object:
        frame_dir = self.directory_arg(d)

        def expect(pre_snap: Snapshot, pre: State, reply: object, post: Snapshot
                   ) -> Expected | Refused:
            if frame_dir is None:
                return Refused(E.ERROR_INVALID_HANDLE, "this directory handle")
            s = spec_step(name, pre, dir=frame_dir, virtual_addr=substitute(va, WORD, UNALIGNED))
            return from_step(s, [reply_claim(reply, s.result, "bool")])
        return self._vm_call(name, {"dir": d, "virtual_addr": va}, invoke, expect)

    def UnmapVirtualAddress(self, d: Any, va: int) -> object:
        return self._unmap("UnmapVirtualAddress", d, va,
                           lambda: self.vm.UnmapVirtualAddress(d, va))

    def FreePage(self, d: Any, va: int) -> object:
        return self._unmap("FreePage", d, va,
                           lambda: self.vm.FreePage(d, va))

    def VirtualToPhysical(self, d: Any, va: int) -> object:
        frame_dir = self.directory_arg(d)

        def expect(pre_snap: Snapshot, pre: State, reply: object, post: Snapshot
                   ) -> Expected | Refused:
            if frame_dir is None:
                return Refused(E.ERROR_INVALID_HANDLE, "this directory handle")
            if not fits(va, WORD):
                return Refused(E.ERROR_INVALID_PARAMETER if frame_dir in pre_snap.pde
                               else E.ERROR_INVALID_HANDLE, "an address beyond 32 bits")
            s = spec_step("VirtualToPhysical", pre, dir=frame_dir, virtual_addr=va)
            return from_step(s, [reply_claim(reply, s.result, "word")])
        return self._vm_call("VirtualToPhysical", {"dir": d, "virtual_addr": va},
                             lambda: self.vm.VirtualToPhysical(d, va),
                             expect)


class AccessCalls(HarnessCore):
    """Reads, writes and instruction fetches through the page tables, byte by byte
    (the spec's Access), faulting as the hardware does."""

    def _access(self, name: str, d: Any, va: int, data: bytes, user_mode: Any,
                write: bool, invoke: Callable[[], object], args: dict[str, object]) -> object:
        frame_dir = self.directory_arg(d)
        length = len(data)

        def expect(pre_snap: Snapshot, pre: State, reply: object, post: Snapshot
                   ) -> Expected | Refused:
            if frame_dir is None:
                return Refused(E.ERROR_INVALID_HANDLE, "this directory handle")
            if not (fits(va, WORD) and va + length <= ADDRESS_LIMIT
                    and isinstance(user_mode, bool)):
                return Refused(E.ERROR_INVALID_PARAMETER if frame_dir in pre_snap.pde
                               else E.ERROR_INVALID_HANDLE, "an access beyond 4 GiB")
            steps: list[Step] = []
            s = pre
            for k in range(length):
                byte = spec_step("Access", s, dir=frame_dir, virtual_addr=va + k,
                                 user_mode=user_mode, write=write, value=data[k])
                steps.append(byte)
                s = byte.post
            statuses = [x.status for x in steps]
            status = z3.If(z3.Not(spec_vm.live(pre, frame_val(frame_dir))),
                           word_val(E.ERROR_INVALID_HANDLE), first_failure(statuses))
            ok = status == 0
            claims: list[tuple[str, Ref]] = [
                ("assume", z3.Implies(ok, z3.And([x.assume for x in steps] or [True])))]
            if isinstance(reply, PageFault):
                claims += self._fault_claims(reply, va, length, pre, frame_dir, statuses,
                                             user_mode, write)
            elif write:
                claims.append(("result", ok if reply is True else z3.And(
                    z3.BoolVal(reply is False), z3.Not(ok))))
            elif isinstance(reply, bytes):
                results = [x.result for x in steps]
                claims.append(("result (bytes read)", z3.And(
                    z3.BoolVal(len(reply) == length), ok,
                    *[r == byte_val(b) for r, b in zip(results, reply, strict=False)])))
            elif reply is None:
                claims.append(("result (None)", z3.Not(ok)))
            else:
                claims.append(("result (not bytes, PageFault or None)", z3.BoolVal(False)))
            return Expected(status, ite(ok, s, pre), claims)
        return self._vm_call(name, args, invoke, expect)

    @staticmethod
    def _fault_claims(fault: PageFault, va: int, length: int, pre: State, frame_dir: int,
                      statuses: Sequence[Ref], user_mode: bool, write: bool
                      ) -> list[tuple[str, Ref]]:
        """A PageFault names the first refused byte (CR2) and carries the x86 error
        code: P when both entries were present, W/R for a write, U/S in user mode."""
        k = fault.address - va
        if not 0 <= k < length:
            return [(f"fault address {fault.address:#x} lies outside the access",
                     z3.BoolVal(False))]
        slot, index = fault.address >> 22, (fault.address >> PAGE_SHIFT) & 0x3FF
        present = walk(pre, frame_val(frame_dir), z3.BitVecVal(slot, 10),
                       z3.BitVecVal(index, 10))[2]
        code = fault.error_code
        return [
            (f"fault address {fault.address:#x} is the first byte the spec refuses",
             z3.And(*[x == 0 for x in statuses[:k]], statuses[k] != 0)),
            (f"fault error code {code:#x}: P says the entries were "
             f"{'' if code & FAULT_PROTECTION else 'not '}both present",
             present == z3.BoolVal(bool(code & FAULT_PROTECTION))),
            (f"fault error code {code:#x}: W/R must be {int(write)} (write={write})",
             z3.BoolVal(bool(code & FAULT_WRITE) == write)),
            (f"fault error code {code:#x}: U/S must be {int(user_mode)} (user_mode={user_mode})",
             z3.BoolVal(bool(code & FAULT_USER) == user_mode)),
        ]

    def ReadVirtualMemory(self, d: Any, va: int, length: int, user_mode: Any) -> object:
        return self._access("ReadVirtualMemory", d, va, bytes(length), user_mode, False,
                            lambda: self.vm.ReadVirtualMemory(d, va, length,
                                                              user_mode),
                            {"dir": d, "virtual_addr": va, "length": length,
                             "user_mode": user_mode})

    def ExecuteVirtualMemory(self, d: Any, va: int, user_mode: Any) -> object:
        return self._access("ExecuteVirtualMemory", d, va, bytes(1), user_mode, False,
                            lambda: self.vm.ExecuteVirtualMemory(d, va,
                                                                 user_mode),
                            {"dir": d, "virtual_addr": va, "user_mode": user_mode})

    def WriteVirtualMemory(self, d: Any, va: int, data: bytes, user_mode: Any) -> object:
        return self._access("WriteVirtualMemory", d, va, data, user_mode, True,
                            lambda: self.vm.WriteVirtualMemory(d, va, data,
                                                               user_mode),
                            {"dir": d, "virtual_addr": va, "data": data,
                             "user_mode": user_mode})

    def physical_of(self, d: Any, va: int) -> int:
        """The frame address va maps to in d (the current model state), else va."""
        frame_dir = self.directory_arg(d)
        if frame_dir is None:
            return va & 0xFFFFF000
        _, pte = self.snap.entry(frame_dir, va >> 22, (va >> PAGE_SHIFT) & 0x3FF)
        return pte & 0xFFFFF000 if pte & PTE_PRESENT else va & 0xFFFFF000


class Harness(PageManagerCalls, DirectoryCalls, MappingCalls, AccessCalls):
    """One PageManager and its VirtualMemoryManager under check: every operation
    of the catalogue, through :meth:`HarnessCore.call`."""
