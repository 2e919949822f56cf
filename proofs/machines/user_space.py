"""The user-space spec checked on every step of hypothesis runs over several processes.

A RuleBasedStateMachine drives one model.syscalls.SystemCalls on 4 MB of
memory with up to three processes: CreateProcess, DestroyProcess and
SwitchProcess; VirtualAlloc (reserve, commit, both, at NULL, at an
allocation, at a chosen address, with bad types and protections),
VirtualFree (decommit, release), VirtualProtect, VirtualQuery; mmap (placed,
hinted, MAP_FIXED), munmap, mprotect, brk; HeapAlloc / HeapFree /
HeapReAlloc / HeapSize of the process heap; user-mode reads, writes and
executes. After every call :class:`UserHarness` checks

1. every invariant of spec.user_space (USR-1..4, PROT-2, PROT-3) on the
   abstraction of the post-state (proofs.abstractions.user_space; one z3 query per
   invariant, cached per view; unknown is a failure);
2. the transition, for the calls the spec has a step for: the spec's step
   from the abstraction of the pre-state, with the call's pages as
   arguments and the frames the model picked as ``pick``, must report the
   model's status, and on success its post-state must equal the abstraction
   of the model's post-state on every observable field (``TRANSITION``);
   PROT-1 on every access (the spec's claim on the Access step). A failed
   VirtualProtect, VirtualFree, VirtualAlloc(MEM_COMMIT, MEM_RESET,
   MEM_RESET_UNDO) or munmap whose
   arguments the spec can represent (user pages, a size above 0) is the
   spec's step too: its status must be the model's code (:meth:`refused`);
   the codes of the rule tables the spec does not model are compared
   directly (:meth:`documented_code`): VirtualProtect outside user space 87
   (model/virtual_alloc.py), brk's last_error (ERROR_SUCCESS for brk(0), the
   query) and every Linux call's last_error, the Windows code of its errno
   (docs/user-space.md: EPERM and EACCES 5, EBADF 6, ENOMEM 8, EEXIST 183,
   EINVAL 87);
3. a failed call changes nothing (``UNCHANGED``): records, allocations, PTEs,
   the frame owners and memory contents;
4. bytes written to a page read back while it stays committed (``CONTENTS``),
   except after a MEM_RESET of the page and until it is written again (Windows
   may keep or discard reset data: :meth:`UserChecks.forget`);
5. at the end of every example, destroying every process gives every frame
   back: the free count returns to its value before the first process
   (``FRAMES``);
6. the process heap's blocks as a program sees them (``HEAP_BLOCKS``, one
   definition with the oracle's user judge: proofs/machines/heap_blocks.py):
   every pointer HeapAlloc / HeapReAlloc returned is 8-aligned, the live
   blocks do not overlap, HeapSize of each is the size last asked for
   (0xFFFFFFFF with 87 once freed), its bytes are what the machine wrote into
   it (a pattern over the whole block after each HeapAlloc / HeapReAlloc), a
   moved block keeps its contents up to the smaller size and HEAP_ZERO_MEMORY
   zeroes what was added; here also the model's own records of its blocks and
   HeapSize of every live block through the model.

CreateProcess is the spec's CreateProcess followed by ProcessHeapCreate;
a HeapAlloc, HeapFree or HeapReAlloc that expands or contracts the process
heap is ProcessHeapGrow or ProcessHeapShrink over the pages whose state
changed, a successful HeapSize ProcessHeapSize (how
the heap arranges its blocks is the kernel heap's spec, refined by its own
machine). Checked by 1, 3, 4 and 5 only: VirtualQuery (no change), heap calls
that leave the heap's pages as they were, and failures whose code comes from
argument validation the spec does not model (types, alignment, flags).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

import z3
from hypothesis import strategies as st
from hypothesis.stateful import initialize, precondition, rule

from model.address_space import AccessViolation
from model.page_manager import PageManager
from model.page_tables import PageFault
from model.process_memory import ProcessMemorySpace
from model.syscalls import SystemCalls
from model.user_layout import page_ceil, page_floor, protect_from_prot
from model.virtual_alloc import VirtualProtectProcessMemory
from model.virtual_memory import VirtualMemoryManager
from model.x86_paging import is_u32
from proofs.abstractions.user_space import View, to_user_state, user_view
from proofs.machines.checks import (
    CONTENTS,
    HEAP_BLOCKS,
    TRANSITION,
    UNCHANGED,
    CheckError,
    check_invariants,
    failing,
    raise_problems,
)
from proofs.machines.heap_blocks import HeapBlocks
from proofs.machines.runner import (
    Budget,
    CheckedMachine,
    ModelVariant,
    machine_obligation,
    run_machine,
)
from proofs.obligation import Obligation, Verdict
from proofs.oracle.worlds.user import LINUX, linux_code
from spec import user_space as us
from spec.abi import (
    EACCES,
    EBADF,
    EEXIST,
    EINVAL,
    ENOMEM,
    EPERM,
    HEAP_REALLOC_IN_PLACE_ONLY,
    HEAP_ZERO_MEMORY,
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_PRIVATE,
    MAP_SHARED,
    MEM_COMMIT,
    MEM_DECOMMIT,
    MEM_FREE,
    MEM_RELEASE,
    MEM_RESERVE,
    MEM_RESET,
    MEM_RESET_UNDO,
    MEM_TOP_DOWN,
    ORIGIN_MMAP,
    ORIGIN_PROCESS_HEAP,
    ORIGIN_VIRTUAL_ALLOC,
    PAGE_EXECUTE,
    PAGE_EXECUTE_READ,
    PAGE_EXECUTE_READWRITE,
    PAGE_NOACCESS,
    PAGE_READONLY,
    PAGE_READWRITE,
    PAGE_SHIFT,
    PAGE_SIZE,
    PTE_PRESENT,
    PTE_WRITABLE,
    STACK_RESERVE,
    USER_TOP,
    ErrorCode,
)
from spec.state import Ref
from spec.user_space import PageView, UserState

#: Hypothesis budget per profile: a step costs ~0.1-1 s of z3 (14 examples of 16
#: steps measured 40 s of CPU, too much for the quick profile's minute), so the
#: quick profile runs 2 examples; the full one 20 of up to 40 steps (100, the
#: other machines' budget, ran past the check's 600 s limit on this 2-core
#: machine; 30 took 377 s). The broken models' run ("teeth") is 50 examples of
#: 30 steps: with the HeapReAlloc and MEM_RESET rules (issue 15) 30 of 16, then
#: 50 of 24, no longer reached a munmap or decommit of mapped pages on the
#: derandomized path (swarm testing leaves half the rules out of an example);
#: each variant is caught in 7-50 s.
BUDGETS = {"quick": Budget(2, 16, 20.0), "full": Budget(20, 40, 60.0),
           "teeth": Budget(50, 30, 10.0)}
E = ErrorCode
SUCCESS = E.ERROR_SUCCESS
FRAMES = "frames"
MEMORY_END = 0x400000
MAX_PROCESSES = 3
#: The Windows code a Linux call leaves in last_error for its errno (docs/user-space.md).
LINUX_CODES = {EPERM: E.ERROR_ACCESS_DENIED, EACCES: E.ERROR_ACCESS_DENIED,
               EBADF: E.ERROR_INVALID_HANDLE, ENOMEM: E.ERROR_NOT_ENOUGH_MEMORY,
               EEXIST: E.ERROR_ALREADY_EXISTS, EINVAL: E.ERROR_INVALID_PARAMETER}
#: VirtualProtect targets at the top of user space: with the rule's sizes (1,
#: 0x2000) the stack's last page, and ranges reaching kernel space or past 4 GiB.
OUTSIDE_USER = (0xBFFFF000, 0xC0000000, 0xFFFFF000)
#: VirtualAlloc's types that change no page (model.virtual_alloc).
RESET_TYPES = (MEM_RESET, MEM_RESET_UNDO)
#: The failed calls whose arguments the spec may represent (UserChecks.refused).
REFUSED = frozenset({"protect", "SyscallVirtualProtect", "SyscallVirtualFree",
                     "SyscallVirtualAlloc", "SyscallMunmap"})
#: brk targets off the heap: the query (0), below start_brk, past heap_max.
BRK_EDGES = ("query", "below start", "past max")
NO_FD = 0xFFFFFFFF
#: Addresses the rules aim at besides the current process's allocations.
FIXED_AREA = 0x40000000
PROTECTIONS = (PAGE_NOACCESS, PAGE_READONLY, PAGE_READWRITE, PAGE_EXECUTE, PAGE_EXECUTE_READ,
               PAGE_EXECUTE_READWRITE)
KIND = {"read": us.READ, "write": us.WRITE, "execute": us.EXECUTE}
#: Fields compared where the page is not free (base, origin, protect) and
#: where it is committed (frame); state and the PTE bits everywhere.
PAGE_FIELDS = ("base", "origin", "protect")


def make_calls() -> SystemCalls:
    pm = PageManager()
    assert pm.InitializePhysicalMemory(0x100000, MEMORY_END)
    vmm = VirtualMemoryManager(pm)
    assert vmm.InitializePaging()
    return SystemCalls(vmm)


def observable(s: UserState) -> list[Ref]:
    """The values two states must agree on, as terms over the free constants
    _oq (pid), _ow (vpn) and _of (frame): a state equals another when every
    term does, for every value of those constants. Free pages' stale fields,
    dead pids' layouts and the ghost rmap do not count. (Pointwise terms, not
    array equalities: z3 answers sat, wrongly, to some inequalities between
    lambdas.)"""
    q, w, f = z3.Ints("_oq _ow _of")
    free = s.state[q, w] == MEM_FREE
    terms = [s.live[q], s.state[q, w], s.pte_present[q, w], s.pte_writable[q, w],
             s.pte_user[q, w], s.owner[f]]
    terms += [z3.If(s.live[q], getattr(s, name)[q], 0) for name in (
        "heap_start", "heap_end", "heap_max", "stack_top", "stack_size")]
    terms += [z3.If(free, 0, getattr(s, name)[q, w]) for name in PAGE_FIELDS]
    terms.append(z3.If(s.state[q, w] == MEM_COMMIT, s.frame[q, w], 0))
    return terms


OBSERVED = ("live", "state", "pte_present", "pte_writable", "pte_user", "owner", "heap_start",
            "heap_end", "heap_max", "stack_top", "stack_size", *PAGE_FIELDS, "frame")


def world(calls: SystemCalls) -> tuple[object, ...]:
    """Everything a failed call must leave as it was."""
    pm = calls.vmm.pageman
    spaces = {pid: ({vpn: dataclasses.astuple(r) for vpn, r in space.pages.items()},
                    {b: dataclasses.astuple(a) for b, a in space.allocations.items()},
                    {vpn: space.pte(vpn) for vpn in space.pages}, space.brk)
              for pid, space in calls.processes.items()}
    return (spaces, bytes(pm.owner), list(pm.frames.words),
            {frame: bytes(page) for frame, page in pm.memory.items()},
            {pid: dict(sizes) for pid, sizes in calls.heap_sizes.items()})


def allocation_pages(view: View, pid: int, base: int) -> int:
    """The pages of pid's allocation based at base (those that name it, in a row)."""
    pages = view[0][pid]
    count = 0
    while base + count in pages and pages[base + count].base_vpn == base:
        count += 1
    return count


class StepInputs:
    """What a spec step is built from, each built when first asked for (a call
    with no step builds none): the z3 abstraction of the pre-state, and
    pick/pinv/oom of the post-state (:meth:`UserChecks.picked`)."""

    def __init__(self, checks: UserChecks, pid: int, pre_view: View, post_view: View) -> None:
        self.checks, self.pid, self.pre_view, self.post_view = checks, pid, pre_view, post_view

    @functools.cached_property
    def pre(self) -> UserState:
        return self.checks.state(self.pre_view)

    @functools.cached_property
    def picked(self) -> tuple[Ref, Ref, Ref]:
        return self.checks.picked(self.pid, self.post_view)


class UserChecks:
    """The checks of one call, over hooks for what is checked: the current view,
    the call itself, the bytes of a page. :class:`UserHarness` runs them on the
    model; the oracle's user judge (proofs.oracle.families.user) on what an
    implementation reports, so both judge by this one implementation."""

    machine: type[CheckedMachine]
    #: (pid, address) -> the byte written there, while its page stays committed
    written: dict[tuple[int, int], bytes]
    #: the process heaps' live blocks (HEAP_BLOCKS)
    heap_blocks: HeapBlocks

    # -- hooks ------------------------------------------------------------------------

    def view(self) -> View:
        """The live processes' pages and layouts now."""
        raise NotImplementedError

    def nframes(self) -> int:
        raise NotImplementedError

    def snapshot(self) -> object:
        """Everything a failed call must leave as it was."""
        raise NotImplementedError

    def current_pid(self) -> int:
        """The current process (0: none)."""
        raise NotImplementedError

    def invoke(self, name: str, args: tuple[Any, ...]) -> tuple[Any, int]:
        """Make the call: its reply and its code (0, the Windows error or the errno)."""
        raise NotImplementedError

    def process_layout(self, pid: int, post_view: View) -> tuple[int, int, int, int]:
        """A new process's image (first vpn, pages) and heap (first vpn, committed pages)."""
        raise NotImplementedError

    def read(self, pid: int, address: int, length: int) -> bytes:
        """The bytes at address in pid's committed pages (through its records)."""
        raise NotImplementedError

    def touch(self, kind: str, address: int) -> tuple[bool, object]:
        """A user-mode access in the current process: (allowed, reply)."""
        raise NotImplementedError

    def write_data(self) -> bytes:
        """The bytes the last write access wrote."""
        return b"\x5a"

    # -- the checks ---------------------------------------------------------------------

    def state(self, view: View) -> UserState:
        return to_user_state(view, self.nframes())

    def call(self, name: str, *args: Any) -> Any:
        pid = self.current_pid()
        pre_view, before = self.view(), self.snapshot()
        reply, code = self.invoke(name, args)
        self.machine.outcomes[f"{name} {code}"] += 1
        where = f"{name}{args!r} in process {pid} returned {reply!r} ({code})"
        post_view = self.view()
        problems = self.invariant_problems(post_view)
        failed = code != 0
        partial = name == "SyscallMprotect" and code in (ENOMEM, EACCES)
        if failed and not partial and self.snapshot() != before:
            problems[UNCHANGED] = "a failed call changed the processes or memory"
        step = self.expected(name, args, pid, pre_view, post_view, reply, code)
        if step is not None:
            problems.update(self.transition(step, code, post_view, compare=not failed or partial))
        wrong = self.documented_code(name, args, reply, code)
        if wrong:
            problems[TRANSITION] = "; ".join(filter(None, (problems.get(TRANSITION), wrong)))
        if name == "SyscallVirtualAlloc" and not failed and args[2] == MEM_RESET:
            self.forget(pid, page_floor(args[0]), page_ceil(args[0] + args[1]))
        if name == "SyscallVirtualProtect" and not failed:
            old = pre_view[0][pid][page_floor(args[0]) >> PAGE_SHIFT].protect
            for n, byte in enumerate(old.to_bytes(4, "little")):
                self.written[(pid, args[3] + n)] = bytes([byte])
        problems.update(self.heap_checks(name, args, pid, reply, code, set(post_view[1])))
        problems.update(self.check_contents(post_view))
        raise_problems(where, problems)
        return reply

    def invariant_problems(self, view: View) -> dict[str, str]:
        """{id: why} for each invariant of spec.user_space refuted on view (z3, cached)."""
        return check_invariants(self.machine, us.INVARIANTS, repr(view), lambda: self.state(view))

    # -- the spec's step of a call ------------------------------------------------

    def expected(self, name: str, args: tuple[Any, ...], pid: int, pre_view: View,
                 post_view: View, reply: Any, code: int = 0) -> us.UserStep | None:
        """The spec step the call must take, None when the spec has none for it
        (its z3 terms are built only for a step returned: :class:`StepInputs`)."""
        a = StepInputs(self, pid, pre_view, post_view)
        if name == "DestroyProcess":
            return us.DestroyProcess(a.pre, z3.IntVal(args[0]))
        if name == "CreateProcess" and reply:
            return self.created(a.pre, reply, post_view, *self.picked(reply, post_view))
        if pid == 0:
            return None
        p = z3.IntVal(pid)
        live = pid in post_view[1]
        if name == "SyscallVirtualAlloc" and reply:
            address, size, kind, protect = args
            first = reply >> PAGE_SHIFT
            if kind in RESET_TYPES:
                count = (page_ceil(address + size) >> PAGE_SHIFT) - first
                return us.VirtualAllocReset(a.pre, p, z3.IntVal(first), z3.IntVal(count),
                                            z3.IntVal(protect))
            if kind & MEM_RESERVE or address == 0:
                count = self.allocation_pages(post_view, pid, first)
                if kind & MEM_COMMIT:
                    return us.VirtualAllocReserveCommit(a.pre, p, z3.IntVal(first),
                                                        z3.IntVal(count), z3.IntVal(protect),
                                                        *a.picked)
                return us.VirtualAllocReserve(a.pre, p, z3.IntVal(first), z3.IntVal(count),
                                              z3.IntVal(protect))
            count = (page_ceil(address + size) - page_floor(address)) >> PAGE_SHIFT
            return us.VirtualAllocCommit(a.pre, p, z3.IntVal(first), z3.IntVal(count),
                                         z3.IntVal(protect), *a.picked)
        if name == "SyscallVirtualFree" and reply:
            address, size, kind = args
            first = page_floor(address) >> PAGE_SHIFT
            if kind == MEM_RELEASE:
                return us.VirtualFreeRelease(a.pre, p, z3.IntVal(first))
            base = pre_view[0][pid][first].base_vpn
            end = (base + self.allocation_pages(pre_view, pid, base) if size == 0
                   else page_ceil(address + size) >> PAGE_SHIFT)
            return us.VirtualFreeDecommit(a.pre, p, z3.IntVal(first), z3.IntVal(end - first))
        if name == "protect" and reply[0] or name == "SyscallVirtualProtect" and reply:
            address, size, protect = args[:3]
            first = page_floor(address) >> PAGE_SHIFT
            count = (page_ceil(address + size) >> PAGE_SHIFT) - first
            return us.VirtualProtect(a.pre, p, z3.IntVal(first), z3.IntVal(count),
                                     z3.IntVal(protect))
        if name == "SyscallMmap" and reply >= 0 and live:
            address, length, prot, flags = args[:4]
            first, count = reply >> PAGE_SHIFT, page_ceil(length) >> PAGE_SHIFT
            step = us.MmapFixed if flags & MAP_FIXED else us.Mmap
            return step(a.pre, p, z3.IntVal(first), z3.IntVal(count),
                        z3.IntVal(protect_from_prot(prot)), *a.picked)
        if name == "SyscallMunmap" and reply == 0:
            address, length = args
            return us.Munmap(a.pre, p, z3.IntVal(address >> PAGE_SHIFT),
                             z3.IntVal(page_ceil(length) >> PAGE_SHIFT))
        if name == "SyscallMprotect" and args[1] and reply in (0, -ENOMEM, -EACCES):
            address, length, prot = args
            first = address >> PAGE_SHIFT
            end = page_ceil(address + length) >> PAGE_SHIFT
            stop = mprotect_stop(pre_view[0][pid], first, end)
            return us.Mprotect(a.pre, p, z3.IntVal(first), z3.IntVal(end - first),
                               z3.IntVal(protect_from_prot(prot)), z3.IntVal(stop))
        if name in ("SyscallHeapAlloc", "SyscallHeapFree", "SyscallHeapReAlloc") and live:
            return heap_pages(a, pid, pre_view, post_view)
        if name == "SyscallHeapSize" and live and code == 0:
            return us.ProcessHeapSize(a.pre, p)
        if name == "SyscallBrk" and live and reply == args[0]:
            old_end, new_end = pre_view[1][pid].heap_end, post_view[1][pid].heap_end
            if new_end > old_end:
                return us.BrkGrow(a.pre, p, z3.IntVal(new_end), *a.picked)
            if new_end < old_end:
                return us.BrkShrink(a.pre, p, z3.IntVal(new_end))
        return refused(name, args, a, p, code) if live else None

    def documented_code(self, name: str, args: tuple[Any, ...], reply: Any,
                        code: int) -> str:
        """What is wrong with a code the spec does not model (empty: nothing):
        VirtualProtect outside user space must fail with 87 (model/virtual_alloc.py's
        range rule, after the lpflOldProtect check of the system call). The
        model's harness adds last_error checks of the Linux calls."""
        if name in ("protect", "SyscallVirtualProtect") and all(
                is_u32(a) for a in args[:2]) and args[1] and page_ceil(
                args[0] + args[1]) > USER_TOP and code not in (
                E.ERROR_INVALID_PARAMETER, E.ERROR_NOACCESS, E.ERROR_INVALID_HANDLE):
            return f"VirtualProtect outside user space must fail with 87, not {code}"
        return ""

    def created(self, pre: UserState, pid: int, post_view: View, pick: Ref, pinv: Ref,
                oom: Ref) -> us.UserStep:
        """SystemCalls.CreateProcess: the spec's CreateProcess (image, brk heap,
        stack), then ProcessHeapCreate (the process heap's reservation with its
        initial pages committed), as one step."""
        image, image_pages, base, heap_pages = self.process_layout(pid, post_view)
        p, layout = z3.IntVal(pid), post_view[1][pid]
        first = us.CreateProcess(
            pre, p, z3.IntVal(image), z3.IntVal(image_pages),
            z3.IntVal(PAGE_EXECUTE_READ), z3.IntVal(layout.heap_start),
            z3.IntVal(layout.heap_max), z3.IntVal(layout.stack_top),
            z3.IntVal(STACK_RESERVE >> PAGE_SHIFT), z3.IntVal(layout.stack_size), pick, pinv, oom)
        second = us.ProcessHeapCreate(
            first.changed, p, z3.IntVal(base),
            z3.IntVal(self.allocation_pages(post_view, pid, base)), z3.IntVal(heap_pages),
            pick, pinv, oom)
        return chain(first, second)

    allocation_pages = staticmethod(allocation_pages)

    @staticmethod
    def picked(pid: int, post_view: View) -> tuple[Ref, Ref, Ref]:
        """pick/pinv: the frame of every committed page of pid after the call (the
        spec reads pick only at the pages it commits anew: MAP_FIXED recommits
        pages that were committed, possibly in the same frame); oom false."""
        pick: Ref = z3.K(z3.IntSort(), z3.IntVal(-1))
        pinv: Ref = z3.K(z3.IntSort(), z3.IntVal(-1))
        for vpn, page in sorted(post_view[0].get(pid, {}).items()):
            if page.state == MEM_COMMIT and page.frame is not None:
                pick = z3.Store(pick, vpn, page.frame)
                pinv = z3.Store(pinv, page.frame, vpn)
        return pick, pinv, z3.BoolVal(False)

    def transition(self, step: us.UserStep, code: int, post_view: View, *,
                   compare: bool) -> dict[str, str]:
        """The spec's status is the model's; when ``compare``, the spec's post-state
        is the abstraction of the model's on every observable field."""
        claims: list[tuple[str, Ref]] = [
            ("the spec's assumptions (pick, stop) hold", step.assume),
            (f"the spec's status is {code}", z3.Implies(step.assume, step.status == code))]
        if compare:
            post = self.state(post_view)
            claims += [(f"post-state {name}", z3.Implies(step.assume, a == b))
                       for name, a, b in zip(OBSERVED, observable(step.post), observable(post),
                                             strict=True)]
        bad = failing(claims, TRANSITION)
        return {TRANSITION: "; ".join(bad)} if bad else {}

    def forget(self, pid: int, start: int, end: int) -> None:
        """MEM_RESET: the data of [start, end) is no longer of interest: Windows may
        keep it or discard it (zero pages), so nothing written there is expected
        until it is written again."""
        for key in [(q, a) for q, a in self.written if q == pid and start <= a < end]:
            del self.written[key]

    def heap_checks(self, name: str, args: tuple[Any, ...], pid: int, reply: Any, code: int,
                    live: set[int]) -> dict[str, str]:
        """HEAP_BLOCKS (proofs.machines.heap_blocks); the bytes of a block given
        back are no longer read back."""
        wrong = self.heap_blocks.after(name, args, pid, reply, code, live)
        for q, start, end in self.heap_blocks.released:
            self.forget(q, start, end)
        return {HEAP_BLOCKS: "; ".join(wrong)} if wrong else {}

    def check_contents(self, view: View) -> dict[str, str]:
        """Every byte written to a page that stays committed reads back; the bytes
        written side by side in one page are read in one piece."""
        runs = written_runs(self.written, view)
        wrong = []
        for pid, start, wanted in runs:
            seen = self.read(pid, start, len(wanted))
            if seen == wanted:
                continue
            address = start
            while address < start + len(wanted):
                data = self.written[(pid, address)]
                got = seen[address - start:address - start + len(data)]
                if got != data:
                    wrong.append(f"{address:#x} in process {pid} reads {got!r}, wrote {data!r}")
                address += len(data)
        return {CONTENTS: "; ".join(wrong)} if wrong else {}

    def access(self, kind: str, address: int) -> None:
        """A user-mode access of one byte; PROT-1 on the spec's Access step."""
        pid = self.current_pid()
        if pid == 0:
            return
        pre_view = self.view()
        allowed, reply = self.touch(kind, address)
        self.machine.outcomes[f"access {kind} {'ok' if allowed else 'fault'}"] += 1
        bad = self.access_failing(pid, kind, address, allowed, pre_view)
        data = self.write_data() if allowed and kind == "write" else b""
        if data and not self.heap_blocks.wrote(pid, address, data):
            self.written.update(((pid, address + n), bytes([b])) for n, b in enumerate(data))
        raise_problems(f"{kind} {address:#x} in process {pid}: {reply!r}",
                       {name: f"the spec's Access step disagrees ({name})" for name in bad})

    def access_failing(self, pid: int, kind: str, address: int, allowed: bool,
                       pre_view: View) -> list[str]:
        """The claims of the spec's Access step that fail (PROT-1; TRANSITION: the
        step's ok is whether the access was allowed)."""
        pre = self.state(pre_view)
        args = {"pid": z3.IntVal(pid), "vpn": z3.IntVal(address >> PAGE_SHIFT),
                "kind": z3.IntVal(KIND[kind])}
        step = us.Access(pre, args["pid"], args["vpn"], args["kind"])
        claims = [("PROT-1", us.prot_1(pre, step, args) if allowed else z3.BoolVal(True)),
                  (TRANSITION, step.ok == allowed)]
        return failing(claims, "access")


def mprotect_stop(pages: Mapping[int, PageView], first: int, end: int) -> int:
    """The Mprotect step's stop: the first page of [first, end) not committed or
    of the process heap (end when there is none), read from the pages before."""
    stop = first
    while stop < end and stop in pages and pages[stop].state == MEM_COMMIT \
            and pages[stop].origin != ORIGIN_PROCESS_HEAP:
        stop += 1
    return stop


def heap_changes(pid: int, pre_view: View, post_view: View) -> tuple[list[int], list[int]]:
    """The process heap's pages a heap call committed and those it decommitted."""
    before, after = pre_view[0][pid], post_view[0][pid]
    grown = [v for v, page in after.items() if page.origin == ORIGIN_PROCESS_HEAP
             and page.state == MEM_COMMIT and before[v].state != MEM_COMMIT]
    shrunk = [v for v, page in before.items() if page.origin == ORIGIN_PROCESS_HEAP
              and page.state == MEM_COMMIT and after[v].state != MEM_COMMIT]
    return grown, shrunk


def heap_pages(a: StepInputs, pid: int, pre_view: View, post_view: View
               ) -> us.UserStep | None:
    """A heap call that expanded or contracted the process heap: the pages
    committed or decommitted at its end (ProcessHeapGrow / ProcessHeapShrink);
    None (and no z3 term built) for one that moved no page."""
    grown, shrunk = heap_changes(pid, pre_view, post_view)
    p = z3.IntVal(pid)
    if grown:
        return us.ProcessHeapGrow(a.pre, p, z3.IntVal(min(grown)), z3.IntVal(len(grown)),
                                  *a.picked)
    if shrunk:
        return us.ProcessHeapShrink(a.pre, p, z3.IntVal(min(shrunk)),
                                    z3.IntVal(len(shrunk)))
    return None


def written_runs(written: dict[tuple[int, int], bytes], view: View
                 ) -> list[tuple[int, int, bytearray]]:
    """(pid, address, bytes) of what was written side by side in one page, of the
    pages committed in view; what was written to any other page is forgotten."""
    for pid, address in list(written):
        page = view[0].get(pid, {}).get(address >> PAGE_SHIFT)
        if page is None or page.state != MEM_COMMIT:
            del written[(pid, address)]
    return byte_runs(written)


def byte_runs(written: Mapping[tuple[int, int], bytes]) -> list[tuple[int, int, bytearray]]:
    """(pid, address, bytes) of what was written side by side in one page."""
    runs: list[tuple[int, int, bytearray]] = []
    for (pid, address), data in sorted(written.items()):
        if runs and runs[-1][0] == pid and runs[-1][1] + len(runs[-1][2]) == address \
                and runs[-1][1] >> PAGE_SHIFT == (address + len(data) - 1) >> PAGE_SHIFT:
            runs[-1][2].extend(data)
        else:
            runs.append((pid, address, bytearray(data)))
    return runs


def refused(name: str, args: tuple[Any, ...], inputs: StepInputs, p: Ref,
            code: int) -> us.UserStep | None:
    """The spec's step of a failed call whose arguments it represents: page
    ranges of user space (a size above 0) of VirtualProtect, VirtualFree
    (a release from an aligned address with size 0, a decommit of some
    bytes), VirtualAlloc(MEM_COMMIT) at an address, VirtualAlloc(MEM_RESET,
    MEM_RESET_UNDO), munmap; only its status
    is compared (assume true: nothing was picked). None for other failures:
    argument validation the spec does not model, the syscall's own check of
    lpflOldProtect (998), and out of memory where the spec leaves the choice
    free (a VirtualProtect's page tables)."""
    if code == 0 or name not in REFUSED or not all(is_u32(a) for a in args[:2]):
        return None
    address, size = args[:2]
    first = address >> PAGE_SHIFT
    count = (page_ceil(address + size) >> PAGE_SHIFT) - first
    in_user = 0 < size and page_ceil(address + size) <= USER_TOP
    step: us.UserStep | None = None
    first_t, count_t = z3.IntVal(first), z3.IntVal(count)
    if name in ("protect", "SyscallVirtualProtect") and in_user and code not in (
            E.ERROR_NOT_ENOUGH_MEMORY, E.ERROR_NOACCESS) and type(args[2]) is int:
        step = us.VirtualProtect(inputs.pre, p, first_t, count_t, z3.IntVal(args[2]))
    elif name == "SyscallVirtualFree" and address % PAGE_SIZE == 0:
        if args[2] == MEM_RELEASE and size == 0:
            step = us.VirtualFreeRelease(inputs.pre, p, first_t)
        elif args[2] == MEM_DECOMMIT and in_user:
            step = us.VirtualFreeDecommit(inputs.pre, p, first_t, count_t)
    elif name == "SyscallVirtualAlloc" and args[2] in RESET_TYPES and in_user \
            and type(args[3]) is int:
        step = us.VirtualAllocReset(inputs.pre, p, first_t, count_t, z3.IntVal(args[3]))
    elif name == "SyscallVirtualAlloc" and args[2] == MEM_COMMIT and address and in_user \
            and type(args[3]) is int:
        pick, pinv, _ = inputs.picked
        step = us.VirtualAllocCommit(inputs.pre, p, first_t, count_t, z3.IntVal(args[3]), pick,
                                     pinv, z3.BoolVal(code == E.ERROR_NOT_ENOUGH_MEMORY))
    elif name == "SyscallMunmap" and address % PAGE_SIZE == 0:
        step = us.Munmap(inputs.pre, p, first_t, z3.IntVal(page_ceil(size) >> PAGE_SHIFT))
    return None if step is None else dataclasses.replace(step, assume=z3.BoolVal(True))


class UserHarness(UserChecks):
    """The checks on the model's processes, and what was written into their pages."""

    def __init__(self, machine: type[CheckedMachine]) -> None:
        self.machine = machine
        self.calls = make_calls()
        self.free_at_start = self.calls.vmm.pageman.free_count()
        self.written = {}
        self.brk_before: tuple[int, int, int] | None = None
        self.heap_blocks = HeapBlocks(self.user_read, self.fill, None,
                                      lambda pid: self.calls.heaps[pid].start_address)
        self.fills = 0

    def heap_checks(self, name: str, args: tuple[Any, ...], pid: int, reply: Any, code: int,
                    live: set[int]) -> dict[str, str]:
        """UserChecks' HEAP_BLOCKS, then the model's own records: its live blocks
        are the calls', HeapSize (the current process's, through the call; its
        status restored) of each is its size."""
        problems = super().heap_checks(name, args, pid, reply, code, live)
        calls = self.calls
        wrong = [problems[HEAP_BLOCKS]] if problems else []
        for q, blocks in self.heap_blocks.blocks.items():
            if q not in live:
                continue
            if set(blocks) != set(calls.heap_sizes[q]):
                wrong.append(f"process {q}'s live blocks are {sorted(calls.heap_sizes[q])}"
                             f", the calls gave {sorted(blocks)}")
            space = calls.current
            if space is calls.processes[q]:
                saved = (calls.last_error, space.last_error, calls.raised)
                heap = calls.heaps[q].start_address
                wrong += [f"HeapSize({pointer:#x}) is {got:#x}, asked {block.size:#x}"
                          for pointer, block in blocks.items()
                          if (got := calls.SyscallHeapSize(heap, 0, pointer)) != block.size]
                calls.last_error, space.last_error, calls.raised = saved
        return {HEAP_BLOCKS: "; ".join(wrong)} if wrong else {}

    def fill(self, pid: int, pointer: int, size: int, kept: bytes) -> bytes:
        """Write a pattern no other fill repeats at the same offset into the whole
        block (what was kept is checked already)."""
        self.fills += 1
        start = self.fills % 251
        data = (bytes(range(1, 252)) * (size // 251 + 2))[start:start + size]
        space = self.calls.processes[pid]
        if size:
            assert space.page_dir is not None
            assert self.calls.vmm.WriteVirtualMemory(space.page_dir, pointer, data, True) is True
        return data

    def user_read(self, pid: int, address: int, length: int) -> bytes:
        """length bytes at address in pid's space, through its page tables."""
        space = self.calls.processes[pid]
        if length == 0 or space.page_dir is None:
            return b""
        data = self.calls.vmm.ReadVirtualMemory(space.page_dir, address, length, True)
        return data if isinstance(data, bytes) else b""

    @property
    def space(self) -> ProcessMemorySpace | None:
        return self.calls.current

    def view(self) -> View:
        return user_view(self.calls)

    def nframes(self) -> int:
        return self.calls.vmm.pageman.nframes

    def snapshot(self) -> object:
        return world(self.calls)

    def current_pid(self) -> int:
        return 0 if self.calls.current is None else self.calls.current.pid

    def invoke(self, name: str, args: tuple[Any, ...]) -> tuple[Any, int]:
        calls = self.calls
        space = calls.current
        self.brk_before = None if space is None else (space.brk, space.heap_start,
                                                      space.heap_max)
        target = (lambda *a: _protect(calls, *a)) if name == "protect" else getattr(calls, name)
        reply = target(*args)
        return reply, self.code(name, args, reply)

    def documented_code(self, name: str, args: tuple[Any, ...], reply: Any,
                        code: int) -> str:
        """UserChecks' rules, then a Linux call's last_error: brk's by its rule
        table (brk(0), the query, succeeds and returns the break; below
        start_brk 87, past heap_max 8, any other failure one of 487, 87, 183, 8),
        the others' the Windows code of the errno (ERROR_SUCCESS for none)."""
        wrong = super().documented_code(name, args, reply, code)
        if wrong or name not in LINUX or self.brk_before is None:
            return wrong
        last = self.calls.last_error
        allowed: tuple[ErrorCode, ...]
        if name == "SyscallBrk":
            brk, start, top = self.brk_before
            target = args[0]
            if target == 0:
                if reply != brk:
                    return f"brk(0) returned {reply:#x}, not the break {brk:#x}"
                allowed = (SUCCESS,)
            elif reply == target:
                allowed = (SUCCESS,)
            elif target < start:
                allowed = (E.ERROR_INVALID_PARAMETER,)
            elif target > top:
                allowed = (E.ERROR_NOT_ENOUGH_MEMORY,)
            else:
                allowed = (E.ERROR_INVALID_ADDRESS, E.ERROR_INVALID_PARAMETER,
                           E.ERROR_ALREADY_EXISTS, E.ERROR_NOT_ENOUGH_MEMORY)
        elif code == 0:
            allowed = (SUCCESS,)
        elif code in LINUX_CODES:
            allowed = (LINUX_CODES[code],)
        else:
            return ""
        if last not in allowed:
            return f"last_error {last.name}, the rules give {' or '.join(a.name for a in allowed)}"
        return ""

    def code(self, name: str, args: tuple[Any, ...], reply: Any) -> int:
        """0 on success, else the Windows error code or the errno."""
        if name in LINUX:
            return linux_code(name, args, reply)
        if name in ("CreateProcess", "SwitchProcess", "DestroyProcess"):
            return int(self.calls.last_error)
        space = self.calls.current
        return 0 if space is None else int(space.last_error)

    def process_layout(self, pid: int, post_view: View) -> tuple[int, int, int, int]:
        space, heap = self.calls.processes[pid], self.calls.heaps[pid]
        return (space.image_base >> PAGE_SHIFT,
                (space.heap_start - space.image_base) >> PAGE_SHIFT,
                heap.start_address >> PAGE_SHIFT,
                (heap.end_address - heap.start_address) >> PAGE_SHIFT)

    def read(self, pid: int, address: int, length: int) -> bytes:
        record = self.calls.processes[pid].pages[address >> PAGE_SHIFT]
        assert record.frame is not None
        page = self.calls.vmm.pageman.memory.get(record.frame)
        offset = address & (PAGE_SIZE - 1)
        return bytes(length) if page is None else bytes(page[offset:offset + length])

    def touch(self, kind: str, address: int) -> tuple[bool, object]:
        space = self.calls.current
        assert space is not None
        if kind == "read":
            reply: Any = space.ReadUserMemory(address, 1)
        elif kind == "execute":
            reply = space.ExecuteUserMemory(address)
        else:
            reply = space.WriteUserMemory(address, b"\x5a")
        allowed = not isinstance(reply, PageFault | AccessViolation) and reply not in (None, False)
        return allowed, reply


class Layout(NamedTuple):
    """What the rules read of the current process: its break, its allocations
    (base, end, origin) by base, its process heap's handle and live blocks."""

    brk: int
    allocations: list[tuple[int, int, int]]
    heap: int
    heap_pointers: list[int]


def chain(first: us.UserStep, second: us.UserStep) -> us.UserStep:
    """first, then second from first's successor, as one step: the status of the
    first that fails, the assumptions of both."""
    return us.UserStep(z3.If(first.status != 0, first.status, second.status), second.post,
                       second.changed, second.result, z3.And(first.assume, second.assume))


def _protect(calls: SystemCalls, address: int, size: int, protect: int) -> tuple[bool, int]:
    space = calls.current
    assert space is not None
    return VirtualProtectProcessMemory(space, address, size, protect)


class UserMachine(CheckedMachine):
    """Several processes' user spaces through the system calls."""

    def __init__(self) -> None:
        super().__init__()
        type(self).examples += 1
        self.h = UserHarness(type(self))

    def teardown(self) -> None:
        calls = self.h.calls
        for pid in list(calls.processes):
            self.h.call("DestroyProcess", pid)
        free = calls.vmm.pageman.free_count()
        if free != self.h.free_at_start:
            raise CheckError(f"{free} frames free after every process was destroyed, "
                             f"{self.h.free_at_start} before the first", [FRAMES])

    # -- targets --------------------------------------------------------------------

    def layout(self) -> Layout | None:
        """What the rules read of the current process (None: no current process)."""
        space = self.h.space
        if space is None:
            return None
        heap = self.h.calls.heaps[space.pid]
        return Layout(space.brk, [(a.base, a.end, a.origin) for a in (
            space.allocations[base] for base in space.bases)], heap.start_address,
            sorted(self.h.calls.heap_sizes[space.pid]))

    def pids(self) -> list[int]:
        return sorted(self.h.calls.processes)

    def has_current(self) -> bool:
        return self.h.space is not None

    def heap_handle(self) -> int:
        """GetProcessHeap of the current process (the model's, unchecked)."""
        return self.h.calls.SyscallGetProcessHeap()

    def protect(self, address: int, size: int, protect: int) -> None:
        """VirtualProtect in the current process."""
        self.h.call("protect", address, size, protect)

    def addresses(self) -> list[int]:
        """Where the rules aim: the fixed area, the break, and the first page, the
        second page and the end of the current process's allocations (the most
        recent eight), the image and the stack included."""
        layout = self.layout()
        found = [FIXED_AREA, FIXED_AREA + 0x11000]
        if layout is not None:
            found.append(layout.brk)
            for base, end, _ in layout.allocations[-8:] + layout.allocations[:1]:
                found += [base, base + PAGE_SIZE, end]
        return found

    # -- processes --------------------------------------------------------------------

    @initialize()
    def first_process(self) -> None:
        """Every example starts with one process, current."""
        self.create()

    @precondition(lambda self: len(self.pids()) < MAX_PROCESSES)
    @rule()
    def create(self) -> None:
        pid = self.h.call("CreateProcess")
        if pid:
            self.h.call("SwitchProcess", pid)

    @precondition(lambda self: bool(self.pids()))
    @rule(data=st.data())
    def switch_or_destroy(self, data: st.DataObject) -> None:
        pid = data.draw(st.sampled_from(self.pids()))
        self.h.call(data.draw(st.sampled_from(("SwitchProcess", "DestroyProcess"))), pid)

    # -- Windows -------------------------------------------------------------------------

    @precondition(lambda self: self.has_current())
    @rule(size=st.sampled_from((0x1000, 0x3000, 0x5000)),
          protect=st.sampled_from((PAGE_READWRITE, PAGE_READONLY, PAGE_NOACCESS)),
          top_down=st.booleans())
    def allocate(self, size: int, protect: int, top_down: bool) -> None:
        """A VirtualAlloc that should succeed: reserve and commit, anywhere."""
        kind = MEM_RESERVE | MEM_COMMIT | (MEM_TOP_DOWN if top_down else 0)
        self.h.call("SyscallVirtualAlloc", 0, size, kind, protect)

    @precondition(lambda self: self.has_current())
    @rule(data=st.data(), size=st.sampled_from((0x1000, 0x3000, 0x10001, 0, 1)),
          kind=st.sampled_from((MEM_RESERVE | MEM_COMMIT, MEM_COMMIT, MEM_RESERVE, MEM_RELEASE,
                                MEM_RESET, MEM_RESET_UNDO)),
          protect=st.sampled_from((PAGE_READWRITE, *PROTECTIONS, 0x3)))
    def virtual_alloc(self, data: st.DataObject, size: int, kind: int, protect: int) -> None:
        address = data.draw(st.one_of(st.just(0), st.sampled_from(self.addresses())))
        self.h.call("SyscallVirtualAlloc", address, size, kind, protect)

    def areas(self, kind: int) -> list[int]:
        """The bases of the current process's allocations of one origin."""
        layout = self.layout()
        return [] if layout is None else [
            base for base, _, origin in layout.allocations if origin == kind]

    def private(self) -> list[int]:
        """Bases and second pages of the current process's VirtualAlloc and mmap
        allocations (what VirtualFree and VirtualProtect may change)."""
        layout = self.layout()
        if layout is None:
            return []
        return [address for base, _, origin in layout.allocations
                if origin in (ORIGIN_VIRTUAL_ALLOC, ORIGIN_MMAP)
                for address in (base, base + PAGE_SIZE)]

    @precondition(lambda self: self.has_current())
    @rule(data=st.data(), size=st.sampled_from((0, 0x1000, 0x2000)),
          kind=st.sampled_from((MEM_DECOMMIT, MEM_RELEASE)))
    def virtual_free(self, data: st.DataObject, size: int, kind: int) -> None:
        targets = self.private() or self.addresses()
        self.h.call("SyscallVirtualFree", data.draw(st.sampled_from(targets)), size, kind)

    @precondition(lambda self: self.has_current())
    @rule(data=st.data(), size=st.sampled_from((1, 0x2000)),
          protect=st.sampled_from((*PROTECTIONS, 0x6)))
    def virtual_protect(self, data: st.DataObject, size: int, protect: int) -> None:
        """VirtualProtect of the current process's allocations, or at the top of
        user space (ranges reaching kernel space or past 4 GiB: 87)."""
        targets = (self.private() or self.addresses()) + list(OUTSIDE_USER)
        self.protect(data.draw(st.sampled_from(targets)), size, protect)

    # -- Linux -----------------------------------------------------------------------------

    @precondition(lambda self: self.has_current())
    @rule(data=st.data(), length=st.sampled_from((0, 0x1000, 0x3000)),
          prot=st.sampled_from((0, 1, 3, 5, 7)),
          flags=st.sampled_from((MAP_PRIVATE | MAP_ANONYMOUS, MAP_SHARED | MAP_ANONYMOUS,
                                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)))
    def mmap(self, data: st.DataObject, length: int, prot: int, flags: int) -> None:
        address = data.draw(st.one_of(st.just(0), st.sampled_from(self.addresses())))
        self.h.call("SyscallMmap", address, length, prot, flags, NO_FD, 0)


    @precondition(lambda self: self.has_current())
    @rule(data=st.data(), length=st.sampled_from((0x1000, 0x2000)))
    def munmap(self, data: st.DataObject, length: int) -> None:
        """munmap of the current process's mmap areas (the first page, the second),
        or where the rules aim. munmap succeeds only over mmap and brk areas and
        whole reservations (model/linux_mm.py), so with no mmap area yet one is
        mapped first: otherwise an example reaches a successful munmap only when
        swarm testing happened to leave the mmap rule in."""
        if not self.areas(ORIGIN_MMAP):
            self.h.call("SyscallMmap", 0, 0x3000, 3, MAP_PRIVATE | MAP_ANONYMOUS, NO_FD, 0)
        areas = self.areas(ORIGIN_MMAP)
        targets = [a + offset for a in areas[-4:] for offset in (0, PAGE_SIZE)]
        target = data.draw(st.sampled_from(targets + self.addresses()))
        self.h.call("SyscallMunmap", page_floor(target), length)

    @precondition(lambda self: self.has_current())
    @rule(data=st.data(), length=st.sampled_from((0, 0x1000, 0x3000)),
          prot=st.sampled_from((0, 1, 3, 4)))
    def mprotect(self, data: st.DataObject, length: int, prot: int) -> None:
        self.h.call("SyscallMprotect",
                    page_floor(data.draw(st.sampled_from(self.addresses()))), length, prot)

    @precondition(lambda self: self.has_current())
    @rule(delta=st.sampled_from((-0x3000, -1, 0, 0x10, 0x2000, 0x5001, *BRK_EDGES)))
    def brk(self, delta: int | str) -> None:
        """brk near the break, or off the heap: brk(0), the query; below start_brk;
        past heap_max (the break stays)."""
        layout = self.layout()
        assert layout is not None
        edges = {"query": 0, "below start": PAGE_SIZE, "past max": layout.brk + 0x2000000}
        self.h.call("SyscallBrk", edges[delta] if isinstance(delta, str)
                    else max(0, layout.brk + delta))

    # -- the process heap and accesses -------------------------------------------------

    @precondition(lambda self: self.has_current())
    @rule(size=st.sampled_from((0, 24, 0x3000, 0x20000)), zero=st.booleans(),
          resize=st.sampled_from((None, 8, 0x3000, 0x3000)))
    def heap_alloc(self, size: int, zero: bool, resize: int | None) -> None:
        """HeapAlloc, then perhaps a HeapReAlloc of the new block (in place or moved)."""
        heap = self.heap_handle()
        pointer = self.h.call("SyscallHeapAlloc", heap, 0x8 if zero else 0, size)
        if pointer and resize is not None:
            self.h.call("SyscallHeapReAlloc", heap, 0x8 if zero else 0, pointer, resize)

    @precondition(lambda self: self.has_current())
    @rule(data=st.data(), call=st.sampled_from(("SyscallHeapFree", "SyscallHeapSize")))
    def heap_free_or_size(self, data: st.DataObject, call: str) -> None:
        """HeapFree or HeapSize of a live block, NULL or a pointer into the heap."""
        layout = self.layout()
        assert layout is not None
        pointer = data.draw(st.sampled_from([*layout.heap_pointers, layout.heap + 1, 0]))
        self.h.call(call, layout.heap, 0, pointer)

    @precondition(lambda self: self.has_current())
    @rule(data=st.data(), size=st.sampled_from((0, 100, 0x3000, 0x3000, 0x20000, 0xFFFFFFFF)),
          flags=st.sampled_from((0, HEAP_ZERO_MEMORY, 0, HEAP_ZERO_MEMORY,
                                 HEAP_REALLOC_IN_PLACE_ONLY,
                                 HEAP_REALLOC_IN_PLACE_ONLY | HEAP_ZERO_MEMORY)))
    def heap_realloc(self, data: st.DataObject, size: int, flags: int) -> None:
        """HeapReAlloc of a live block (grow, shrink, in place or moved; one is
        made first when there is none), of NULL, or of a pointer into a block."""
        layout = self.layout()
        assert layout is not None
        target = data.draw(st.sampled_from(("block", "block", "block", "null", "inside")))
        if target == "block" and not layout.heap_pointers:
            self.h.call("SyscallHeapAlloc", layout.heap, 0, data.draw(st.sampled_from((0, 24))))
            layout = self.layout()
            assert layout is not None
        pointers = layout.heap_pointers
        pointer = {"null": 0, "inside": layout.heap + 0x1010}.get(target) if (
            target != "block" or not pointers) else data.draw(st.sampled_from(pointers))
        self.h.call("SyscallHeapReAlloc", layout.heap, flags, pointer or 0, size)

    @precondition(lambda self: self.has_current())
    @rule(data=st.data(), kind=st.sampled_from(("read", "write", "execute")))
    def access(self, data: st.DataObject, kind: str) -> None:
        self.h.access(kind, data.draw(st.sampled_from(self.addresses())))


def run_user_machine(profile: str, patches: Mapping[str, object] | None = None, *,
                     max_examples: int | None = None,
                     shrink_seconds: float | None = None) -> Verdict:
    """Run the machine; ``patches`` maps "Class.method" of the user-space model
    classes to a replacement (restored afterwards)."""
    owners = {cls.__name__: cls for cls in (SystemCalls, ProcessMemorySpace, PageManager)}
    return run_machine(UserMachine, profile, BUDGETS, patches, owners, max_examples=max_examples,
                       shrink_seconds=shrink_seconds)


_CUT, _REPROTECT, _DECOMMIT = (ProcessMemorySpace.cut, ProcessMemorySpace._reprotect,
                                ProcessMemorySpace.decommit)


def _cut_leaks_frames(self: ProcessMemorySpace, start: int, end: int) -> None:
    """munmap that forgets the pages but never gives their frames back."""
    drop = ProcessMemorySpace._drop_frame
    ProcessMemorySpace._drop_frame = lambda *args: None  # type: ignore[method-assign]
    try:
        _CUT(self, start, end)
    finally:
        ProcessMemorySpace._drop_frame = drop  # type: ignore[method-assign]


def _reprotect_keeps_writable(self: ProcessMemorySpace, vpn: int, record: Any,
                              protect: int) -> None:
    """A protection change that leaves the PTE writable (VirtualProtect to READONLY
    still lets user mode write)."""
    _REPROTECT(self, vpn, record, protect)
    entry = self.pte(vpn)
    if entry & PTE_PRESENT:
        table = self.page_dir.tables[vpn >> 10] if self.page_dir else None
        if table is not None:
            table.entries[vpn & 0x3FF] = entry | PTE_WRITABLE


def _decommit_keeps_pte(self: ProcessMemorySpace, start: int, end: int) -> None:
    """Decommit that marks the pages reserved but leaves their PTEs (and frames)."""
    for vpn in range(start >> PAGE_SHIFT, end >> PAGE_SHIFT):
        record = self.pages[vpn]
        if record.state == MEM_COMMIT:
            record.state, record.protect, record.frame = MEM_RESERVE, 0, None


def _move_forgets_contents(self: SystemCalls, space: ProcessMemorySpace, target: int,
                          data: bytes) -> None:
    """A HeapReAlloc that moves the block but copies nothing."""


USER_MODEL_VARIANTS = (
    ModelVariant("realloc_forgets_contents", (HEAP_BLOCKS,),
                 {"SystemCalls._move_contents": _move_forgets_contents}),
    # the leaked pages keep their PTEs, so the abstraction shows present PTEs on
    # free pages before the teardown counts the frames
    ModelVariant("munmap_leaks_frames", (FRAMES, "USR-2", "PROT-2"),
                 {"ProcessMemorySpace.cut": _cut_leaks_frames}),
    ModelVariant("reprotect_keeps_writable", ("PROT-2", TRANSITION),
                 {"ProcessMemorySpace._reprotect": _reprotect_keeps_writable}),
    ModelVariant("decommit_keeps_pte", ("USR-2", "PROT-2"),
                 {"ProcessMemorySpace.decommit": _decommit_keeps_pte}),
)


def obligations() -> Iterator[Obligation]:
    yield machine_obligation("user_space.machine.refinement", "user_space", run_user_machine)
