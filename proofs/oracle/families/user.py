"""The user family: processes and their system calls, judged by the user-space spec.

- **Set-up**: ``InitializePhysicalMemory(0x100000, 0x400000)`` (768 frames),
  ``InitializePaging()``, then what the user machine starts with: one process,
  ``CreateProcess()`` and ``SwitchProcess(1)``.
- **Rules**: :class:`proofs.machines.user_space.UserMachine`'s own (processes,
  VirtualAlloc / Free / Protect, mmap, munmap, mprotect, brk, the process heap,
  user-mode accesses), through :class:`UserFront`, which writes a pattern into
  the start of every block HeapAlloc / HeapReAlloc returns (one
  WriteUserMemory: proofs.oracle.families.user_heap); VirtualProtect goes through
  SyscallVirtualProtect with its old-protection pointer on the stack's top
  word, and the VirtualQuery observation is asked as a step of its own
  (strict mode compares it with the model's, spec mode with the reported
  pages). At the end every process is destroyed (the machine's teardown).
- **Strict**: Processes, FrameCounts and FrameBitmap after every call.
- **Spec** (:class:`UserJudge`): the user harness's own checks
  (:class:`proofs.machines.user_space.UserChecks`) over the observations: the view
  from Processes (pages, PTEs, layouts), nframes from FrameCounts; USR-1..4,
  PROT-2/3 on every reported state, the spec's step with the frames the
  implementation picked, no change on failure (Processes and FrameBitmap
  before and after), PROT-1 on every access, written bytes read back through
  ProcessBytes, every frame back once the processes are destroyed, and the
  process heap's blocks after every call (HEAP_BLOCKS, the harness's one
  definition: proofs.machines.heap_blocks). A
  present PTE of a committed page must map the page's frame (USR-2: the spec
  has no PTE frame, so the judge checks it on the reports).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule

from model.user_layout import page_ceil
from proofs.abstractions.user_space import View
from proofs.machines.checks import TRANSITION, CheckError
from proofs.machines.runner import CheckedMachine, every_rule_enabled
from proofs.machines.user_space import FRAMES, MAX_PROCESSES, Layout, UserMachine, byte_runs
from proofs.oracle.families.rules import SessionRules, one_machine
from proofs.oracle.families.user_boundaries import UserBoundaryRules
from proofs.oracle.families.user_heap import HeapJudging, fill_block, program_bytes
from proofs.oracle.families.user_twins import TwinFirst
from proofs.oracle.managers import Family, Message
from proofs.oracle.session import Session, last_observed
from proofs.oracle.worlds.user import MANAGERS, UserPart, linux_code
from spec.abi import MEM_COMMIT, MEM_FREE, ORIGIN_PROCESS_HEAP, PAGE_NOACCESS, PAGE_SHIFT, USER_TOP
from spec.user_space import PageView, SpaceView

SYSTEM_CALLS = MANAGERS[0]
PARAMS = SYSTEM_CALLS.operations
MEM_START, MEM_END = 0x100000, 0x400000
#: Where SyscallVirtualProtect writes the old protection: the stack's top word.
OLD_PROTECT_PTR = USER_TOP - 4
ACCESS_OPS = {"read": "ReadUserMemory", "write": "WriteUserMemory",
              "execute": "ExecuteUserMemory"}
KINDS = {op: kind for kind, op in ACCESS_OPS.items()}


def user_setup(managers: tuple[str, ...], config: Mapping[str, Any] | None = None
               ) -> list[tuple[str, str, Message]]:
    """The set-up calls; the physical range from the configuration (None: today's)."""
    c = config or {}
    return [("PageManager", "InitializePhysicalMemory",
             {"mem_start": c.get("mem_start", MEM_START), "mem_end": c.get("mem_end", MEM_END)}),
            ("VirtualMemoryManager", "InitializePaging", {}),
            ("SystemCalls", "CreateProcess", {}),
            ("SystemCalls", "SwitchProcess", {"pid": 1})]


def layout_of(processes: Message, pointers: dict[int, list[int]]) -> Layout | None:
    """The current process's layout from a Processes observation."""
    current = next((p for p in processes["processes"] if p["pid"] == processes["current"]),
                   None)
    if current is None:
        return None
    ends = {base: base + size for base, size, *_ in current["allocations"]}
    origins = {base: origin for base, _, _, origin, _ in current["allocations"]}
    return Layout(current["brk"], [(b, ends[b], origins[b]) for b in sorted(ends)],
                  current["heap"], sorted(pointers.get(current["pid"], [])))


#: pid -> (its pages, ptes and allocations as reported, the pages built from them).
Known = dict[int, tuple[Any, dict[int, "PageView"]]]


def view_of(processes: Message, known: Known | None = None) -> View:
    """The user harness's view of a Processes observation; a page outside every
    reported allocation, or a present PTE of a committed page mapping another
    frame, is refuted on the spot. ``known``: the pages built for each pid from
    the last report, taken again when its runs are the same (most calls change
    one process's pages, or none), and updated."""
    spaces: dict[int, dict[int, PageView]] = {}
    layouts: dict[int, SpaceView] = {}
    for p in processes["processes"]:
        pid = p["pid"]
        layouts[pid] = SpaceView(p["heap_start"] >> PAGE_SHIFT, page_ceil(p["brk"]) >> PAGE_SHIFT,
                                 p["heap_max"] >> PAGE_SHIFT, p["stack_start"] >> PAGE_SHIFT,
                                 page_ceil(p["stack_size"]) >> PAGE_SHIFT)
        runs = (p["pages"], p["ptes"], p["allocations"])
        last = None if known is None else known.get(pid)
        if last is not None and last[0] == runs:
            spaces[pid] = last[1]
            continue
        origins = {base >> PAGE_SHIFT: origin for base, _, _, origin, _ in p["allocations"]}
        ptes = {first + n: (frame + n, writable, user)
                for first, count, frame, writable, user in p["ptes"] for n in range(count)}
        pages: dict[int, PageView] = {}
        for first, count, state, protect, base, frame in p["pages"]:
            if base not in origins:
                raise CheckError(f"process {pid}: pages from {first << PAGE_SHIFT:#x} lie in "
                                 f"no reported allocation (base {base << PAGE_SHIFT:#x})",
                                 ["USR-1"])
            for n in range(count):
                vpn = first + n
                pte = ptes.pop(vpn, None)
                held = None if frame is None else frame + n
                if pte is not None and state == MEM_COMMIT and pte[0] != held:
                    raise CheckError(f"process {pid}: the PTE of {vpn << PAGE_SHIFT:#x} maps "
                                     f"frame {pte[0]:#x}, the page holds {held}", ["USR-2"])
                pages[vpn] = PageView(state, protect, base, origins[base], held,
                                      pte is not None, bool(pte and pte[1]),
                                      bool(pte and pte[2]))
        for vpn, (_, writable, user) in ptes.items():
            pages[vpn] = PageView(MEM_FREE, 0, 0, 0, None, True, writable, user)
        spaces[pid] = pages
        if known is not None:
            known[pid] = runs, pages
    return spaces, layouts


def virtual_query(process: Message, address: int) -> list[int]:
    """MEMORY_BASIC_INFORMATION of address as the reported pages give it
    (model.virtual_alloc's rules): base, allocation base and protection, region
    size, state, protect, type."""
    vpn = address >> PAGE_SHIFT
    pages = {first + n: (state, protect, base)
             for first, count, state, protect, base, _ in process["pages"] for n in range(count)}
    allocations = {base: (size, protect, kind) for base, size, protect, _, kind
                   in process["allocations"]}
    if vpn not in pages:
        above = [b for b in allocations if b >= vpn << PAGE_SHIFT]
        return [vpn << PAGE_SHIFT, 0, 0, min(above, default=USER_TOP) - (vpn << PAGE_SHIFT),
                MEM_FREE, PAGE_NOACCESS, 0]
    state, protect, base = pages[vpn]
    size, allocation_protect, kind = allocations[base << PAGE_SHIFT]
    end, last = vpn + 1, base + (size >> PAGE_SHIFT)
    while end < last and pages.get(end, (0, 0, 0))[:2] == (state, protect):
        end += 1
    return [vpn << PAGE_SHIFT, base << PAGE_SHIFT, allocation_protect,
            (end - vpn) << PAGE_SHIFT, state, protect, kind]


class UserFront:
    """What the user machine's rules see: calls through the session; the
    current process as the model world (strict) or the judge (spec) last saw it;
    the process heap's live blocks as HeapAlloc / HeapFree returned them."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.pointers: dict[int, list[int]] = {}
        world = getattr(session, "world", None)
        self.part: UserPart | None = None if world is None else next(
            p for p in world.parts if isinstance(p, UserPart))

    def processes(self) -> Message:
        if self.part is not None:
            return self.part.observers()["Processes"]()
        judge = self.session.judge  # type: ignore[attr-defined]
        assert isinstance(judge, UserJudge)
        return judge.last

    def current(self) -> int:
        """The current process's pid (0: none), without a whole Processes report
        in strict mode."""
        if self.part is not None:
            space = self.part.syscalls.current
            return 0 if space is None else space.pid
        return int(self.processes()["current"])

    def call(self, name: str, *args: Any) -> Any:
        heap = name in ("SyscallHeapAlloc", "SyscallHeapFree", "SyscallHeapReAlloc")
        pid = self.current() if heap else 0
        result = self.session.execute("SystemCalls", name,
                                      dict(zip(PARAMS[name], args, strict=True)))
        live = self.pointers.setdefault(pid, []) if heap else []
        if name == "SyscallHeapAlloc" and isinstance(result, int) and result:
            live.append(result)
        elif name == "SyscallHeapFree" and result == 1 and args[2] in live:
            live.remove(args[2])
        elif name == "SyscallHeapReAlloc" and isinstance(result, int) and result \
                and args[2] in live:
            live[live.index(args[2])] = result
        if name in ("SyscallHeapAlloc", "SyscallHeapReAlloc") and type(result) is int \
                and result and not self.session.failed:
            fill_block(self, result, args[-1])
        return result

    def access(self, kind: str, address: int) -> None:
        args: Message = {"addr": address}
        if kind == "write":
            args["data"] = "5a"
        self.session.execute("SystemCalls", ACCESS_OPS[kind], args)


class OracleUserMachine(SessionRules, UserMachine, UserBoundaryRules):
    """The user machine's rules and the boundary rules
    (proofs.oracle.families.user_boundaries), sent to an implementation. The
    set-up made the first process (the machine's own initialize is replaced)."""

    h: Any  # UserFront

    def __init__(self) -> None:
        RuleBasedStateMachine.__init__(self)
        every_rule_enabled(self)  # no swarm testing: a run is a few sequences

    def started(self) -> None:
        self.h = self.front = UserFront(self.s)

    def first_process(self) -> None:
        """Made by the set-up calls."""

    def layout(self) -> Layout | None:
        return layout_of(self.front.processes(), self.front.pointers)

    def pids(self) -> list[int]:
        return sorted(p["pid"] for p in self.front.processes()["processes"])

    def has_current(self) -> bool:
        return bool(self.front.current())

    def heap_handle(self) -> int:
        return int(self.front.call("SyscallGetProcessHeap"))

    def protect(self, address: int, size: int, protect: int) -> None:
        self.front.call("SyscallVirtualProtect", address, size, protect, OLD_PROTECT_PTR)

    @precondition(lambda self: len(self.pids()) < MAX_PROCESSES)
    @rule()
    def create_process(self) -> None:
        """UserMachine.create (SessionRules' initialize has its name)."""
        UserMachine.create(self)

    @precondition(lambda self: self.has_current())
    @rule(pick=st.integers(0, 1 << 16))
    def query(self, pick: int) -> None:
        """The VirtualQuery observation at one of the rules' addresses (strict
        mode compares it with the model's; spec mode with the reported pages)."""
        targets = self.addresses()
        self.s.inspect("VirtualQuery", {"pid": self.front.current(),
                                        "address": targets[pick % len(targets)]})

    def wind_down(self) -> None:
        """Destroy every process (the machine's FRAMES check, at finish)."""
        for pid in self.pids():
            self.front.call("DestroyProcess", pid)


class UserJudge(HeapJudging, TwinFirst):
    """Spec mode for the user family: the user harness's checks over what the
    implementation reports (HEAP_BLOCKS: proofs.oracle.families.user_heap)."""

    def __init__(self, session: Any) -> None:
        self.session = session
        machine = session.judges.caches.get("user")
        if machine is None:
            machine = session.judges.caches["user"] = type(
                "UserOracle", (CheckedMachine,), {"cache": {}, "outcomes": Counter()})
        self.machine = machine
        self.written = {}
        self.heap_blocks = self.heap_judge()
        self.free_at_start: int | None = None
        self.last: Message = {"current": 0, "processes": []}
        self._args: Message = {}
        self._result: Any = None
        self._views: tuple[Message, View] | None = None
        #: The pages last built for each pid (view_of).
        self._known: Known = {}

    # -- hooks ------------------------------------------------------------------------

    def processes(self) -> Message:
        self.last = self.session.observe("Processes")
        return self.last

    def view(self) -> View:
        processes = self.processes()
        if self._views is None or self._views[0] is not processes:
            self._views = (processes, view_of(processes, self._known))
        return self._views[1]

    def prefetch(self, manager: str, op: str) -> list[str | tuple[str, Message]]:
        """What judging a SystemCalls call asks of the state it leaves, sent with
        it (:meth:`SpecSession.invoke`): Processes, the frame counts and bitmap,
        and the bytes read back now (the heap's live blocks, the bytes written),
        most of which are read again after it."""
        if manager != "SystemCalls":
            return []
        wanted: list[str | tuple[str, Message]] = ["Processes", "FrameCounts", "FrameBitmap"]
        if self.heap_blocks.read is None:
            return wanted
        reads: dict[int, list[tuple[int, int]]] = {}
        for pid, start, data in byte_runs(self.written):
            reads.setdefault(pid, []).append((start, len(data)))
        for pid, blocks in self.heap_blocks.blocks.items():
            reads.setdefault(pid, []).extend((p, len(b.known)) for p, b in blocks.items()
                                             if b.known)
        for pid, runs in reads.items():
            wanted += self.session.pieces("ProcessBytes", "virtual_addr", runs, pid=pid)
        return wanted

    def describe(self, view: View) -> str:
        """The report the view was built from, when it is the last one (its runs:
        a shorter text than the view's pages)."""
        if self._views is not None and self._views[1] is view:
            return repr(self._views[0]["processes"])
        return repr(view)

    def nframes(self) -> int:
        return int(self.session.observe("FrameCounts")["frames"])

    def snapshot(self) -> object:
        frames = ("FrameBitmap" if "FrameBitmap" in self.session.observations
                  else "FrameCounts")
        return self.processes(), self.session.observe(frames)

    def current_pid(self) -> int:
        return int(self.processes()["current"])

    def invoke(self, name: str, args: tuple[Any, ...]) -> tuple[Any, int]:
        result, error = self.session.invoke("SystemCalls", name,
                                            dict(zip(PARAMS[name], args, strict=True)))
        if name in ("SyscallMmap", "SyscallMunmap", "SyscallMprotect", "SyscallBrk"):
            errno = linux_code(name, args, result)
            if errno != error:
                raise CheckError(f"{name} returned {result} with error {error}: its result "
                                 f"means errno {errno}", [TRANSITION])
        return result, error

    def process_layout(self, pid: int, post_view: View) -> tuple[int, int, int, int]:
        p = next(p for p in self.last["processes"] if p["pid"] == pid)
        heap = [v for v, page in post_view[0][pid].items()
                if page.origin == ORIGIN_PROCESS_HEAP and page.state == MEM_COMMIT]
        return (p["image_base"] >> PAGE_SHIFT, (p["heap_start"] - p["image_base"]) >> PAGE_SHIFT,
                p["heap"] >> PAGE_SHIFT, len(heap))

    def read(self, pid: int, address: int, length: int) -> bytes:
        return program_bytes(self.session, pid, address, length)

    def check_contents(self, view: View) -> dict[str, str]:
        if "ProcessBytes" not in self.session.observations:
            return {}
        return super().check_contents(view)

    def touch(self, kind: str, address: int) -> tuple[bool, object]:
        self._result, _ = self.session.invoke("SystemCalls", ACCESS_OPS[kind], self._args)
        return self._result is True, self._result

    # -- the judge -----------------------------------------------------------------------

    def execute(self, manager: str, op: str, args: Message) -> Any:
        if manager != "SystemCalls":
            result, error = self.session.invoke(manager, op, args)
            if result is not True or error != 0:
                raise CheckError(f"the set-up call {op}{tuple(args.values())} failed: "
                                 f"{result}, error {error}", ["setup"])
            return result
        if self.free_at_start is None:
            self.free_at_start = int(self.session.observe("FrameCounts")["free"])
        if op in KINDS:
            self._args = args
            if self.current_pid() == 0:
                return self.session.invoke(manager, op, args)[0]
            self.access(KINDS[op], args["addr"])
            return self._result
        return self.call(op, *(args[p] for p in PARAMS[op]))

    def inspect(self, name: str, args: Message) -> None:
        """VirtualQuery of a process agrees with its reported pages."""
        address = args["address"]
        process = next((p for p in self.processes()["processes"] if p["pid"] == args["pid"]),
                       None)
        if name != "VirtualQuery" or process is None or not 0x400000 <= address < USER_TOP:
            return
        got = self.session.observe("VirtualQuery", pid=process["pid"], address=address)
        fields = ("base_address", "allocation_base", "allocation_protect", "region_size",
                  "state", "protect", "type")
        want = virtual_query(process, address)
        seen = [got[f] for f in fields]
        if got["result"] != 28 or got["error"] != 0 or seen != want:
            expected = dict(zip(fields, want, strict=True))
            raise CheckError(f"VirtualQuery({address:#x}) in process {process['pid']} reports "
                             f"{got}; the reported pages give {expected}", ["VirtualQuery"])

    def finish(self) -> None:
        """Every frame back once no process is left (the user machine's FRAMES)."""
        if self.free_at_start is None or self.processes()["processes"]:
            return
        free = int(self.session.observe("FrameCounts")["free"])
        if free != self.free_at_start:
            raise CheckError(f"{free} frames free after every process was destroyed, "
                             f"{self.free_at_start} before the first", [FRAMES])



def user_map(exchanges: list[Any]) -> list[str]:
    """Every process's allocations as last reported."""
    observed = last_observed(exchanges, "Processes")
    if observed is None:
        return []
    out = [f"current process {observed.get('current')}"]
    for p in observed.get("processes", []):
        out.append(f"process {p['pid']}: brk {p['brk']:#x}, heap {p['heap']:#x}")
        out += [f"  {base:#010x}..{base + size:#010x} origin {origin} type {kind:#x}"
                for base, size, _, origin, kind in p["allocations"]]
    return out


USER = Family(
    name="user", managers=("PageManager", "VirtualMemoryManager", "SystemCalls"),
    setup=user_setup, state_observations=("FrameCounts", "FrameBitmap", "Processes"),
    spec_observations=("FrameCounts", "Processes"), machine=one_machine(OracleUserMachine),
    judge=UserJudge, memory_map=user_map)
