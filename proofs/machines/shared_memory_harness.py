"""The shared-memory machine's harness: one MemorySubsystem with its processes,
blocks and file views, every call judged by the spec's step with the model's
choices, every invariant and step claim, unchanged state after a failure, and a
shadow of every byte written through a view (the checks are listed in
proofs/machines/shared_memory.py's docstring)."""


from __future__ import annotations

import contextlib
import dataclasses
import operator
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import z3

from model.address_space import Allocation, PageRecord
from model.file_node import DiskFileNode, FileNode, MemoryFileNode
from model.linux_mm import SyscallMmap, SyscallMprotect, SyscallMunmap
from model.mapped_files import MemoryMappedFiles
from model.memory_subsystem import MemorySubsystem
from model.process_memory import ProcessMemorySpace
from model.shared_memory import SharedMemoryManager
from model.user_layout import page_ceil, protect_allows, protect_from_prot
from model.virtual_alloc import VirtualAllocProcessMemory, VirtualProtectProcessMemory
from model.x86_paging import is_u32
from proofs.abstractions.shared_memory import (
    SharedSnapshot,
    file_page,
    shared_snapshot,
    to_shared_state,
)
from proofs.machines.checks import (
    CONTENTS,
    TRANSITION,
    UNCHANGED,
    CheckError,
    decide,
    failing,
    raise_problems,
    why_false,
)
from spec import shared_memory as sm
from spec.abi import (
    ALLOCATION_GRANULARITY,
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_PRIVATE,
    MEM_COMMIT,
    PAGE_EXECUTE,
    PAGE_EXECUTE_READ,
    PAGE_EXECUTE_READWRITE,
    PAGE_NOACCESS,
    PAGE_READONLY,
    PAGE_READWRITE,
    PAGE_SHIFT,
    PAGE_SIZE,
    PROT_READ,
    PROT_WRITE,
    USER_TOP,
    ErrorCode,
)
from spec.shared_memory import FILE, SHM, SharedState
from spec.state import Ref
from spec.step import Transition

if TYPE_CHECKING:
    from proofs.machines.shared_memory import SharedMachine

E = ErrorCode
SUCCESS = E.ERROR_SUCCESS
FRAMES, NOTHING_LOST = "frames", "nothing-lost"
MEMORY_SIZE = 0x800000
KERNEL_END = 0x100000
MAX_PROCESSES = 3
#: Held blocks and views at most (z3's time grows with the views: VMM-1 over 8
#: views takes ~0.15 s, over 32 ~1 s).
MAX_BLOCKS, MAX_VIEWS = 4, 8
VIEW_PROTECTIONS = (PAGE_READONLY, PAGE_READWRITE, PAGE_EXECUTE_READ, PAGE_EXECUTE_READWRITE)
#: Protections no block or view may have (0x08: PAGE_WRITECOPY).
BAD_PROTECTIONS = (PAGE_NOACCESS, PAGE_EXECUTE, 0x08)
#: A 64 KB-aligned address the rules aim at (free until a view is placed there).
FIXED_AREA = 0x40000000
#: The file nodes of every example: (length, writable).
NODES = ((10040, True), (8192, True), (300, False))
NOT_A_NODE = object()

#: A spec argument: an int, a bool, or an array given as its (index, value) pairs.
Arg = int | bool | tuple[tuple[int, int], ...]


class SpecCall(NamedTuple):
    """One spec step: its name, its keyword arguments, and the code the caller's
    byte-level check reports when every check of the step passes (0: none)."""

    op: str
    args: tuple[tuple[str, Arg], ...]
    then: int = 0


class Record(NamedTuple):
    """The machine's record of a view or of a piece of one (munmap over part of a
    view): SHM (source = shm id) or FILE (node index), its first source page."""

    kind: int
    source: int
    first: int
    pages: int
    writable: bool  # user writes go through


def pattern(index: int, length: int) -> bytes:
    return bytes((i * 7 + index * 13 + 1) % 251 for i in range(length))


def make_subsystem() -> MemorySubsystem:
    sub = MemorySubsystem(MEMORY_SIZE)
    assert sub.InitializeMemorySubsystem(KERNEL_END), sub.last_error
    return sub


def z3_arg(value: Arg) -> Ref:
    if isinstance(value, bool):
        return z3.BoolVal(value)
    if isinstance(value, int):
        return z3.IntVal(value)
    array: Ref = z3.K(z3.IntSort(), z3.IntVal(-1))
    for index, item in value:
        array = z3.Store(array, index, item)
    return array


def picks(frames: Mapping[int, int]) -> tuple[tuple[str, Arg], tuple[str, Arg]]:
    """pick (page index -> frame) and its inverse."""
    return (("pick", tuple(sorted(frames.items()))),
            ("pinv", tuple(sorted((frame, k) for k, frame in frames.items()))))


def observable(s: SharedState) -> list[tuple[str, Ref]]:
    """The values two states must agree on, as terms over free constants: the
    ghosts (src, idx, the slots) and the fields of what is not held, cached or
    viewed do not count."""
    b, k, f, fr, p, v = z3.Ints("_ob _ok _of _ofr _op _ov")
    held = s.bheld[b]
    viewed = s.vkind[p, v] != 0
    cached = s.cached[f, k]
    terms = [("blive", s.blive[b]), ("bheld", held),
             ("bframe", z3.If(z3.And(held, 0 <= k, k < s.bpages[b]), s.bframe[b, k], -1)),
             ("fpages", s.fpages[f]), ("fwritable", s.fwritable[f]),
             ("fdata", z3.If(z3.And(0 <= k, k < s.fpages[f]), s.fdata[f, k], -1)),
             ("cached", cached), ("cframe", z3.If(cached, s.cframe[f, k], -1)),
             ("dirty", s.dirty[f, k]), ("kind", s.kind[fr]), ("refs", s.refs[fr]),
             ("mdata", z3.If(s.kind[fr] != 0, s.mdata[fr], -1)), ("vkind", s.vkind[p, v]),
             ("pte_writable", s.pte_writable[p, v]), ("nframes", s.nframes)]
    terms += [(name, z3.If(held, getattr(s, name)[b], -1))
              for name in ("bpages", "bsize", "bprotect", "brefs")]
    terms += [(name, z3.If(viewed, getattr(s, name)[p, v], -1))
              for name in ("vsrc", "vidx", "vbase", "vprotect", "vaccess", "vframe",
                           "vcount")]
    return terms


_PAGE = operator.attrgetter(*(f.name for f in dataclasses.fields(PageRecord)))
_ALLOCATION = operator.attrgetter(*(f.name for f in dataclasses.fields(Allocation)))


def contents(node: FileNode) -> bytes:
    """Every byte of a node, read through its own interface (from disk for a
    DiskFileNode)."""
    return node.read(0, node.length())


def world(sub: MemorySubsystem, nodes: list[FileNode]) -> tuple[object, ...]:
    """Everything a failed call must leave as it was."""
    pm, shm, mmf = sub.pageman, sub.shared_memory, sub.mapped_files
    spaces = {pid: ([(vpn, _PAGE(r), space.pte(vpn)) for vpn, r in space.pages.items()],
                    [_ALLOCATION(a) for a in space.allocations.values()], tuple(space.views))
              for pid, space in sub.syscalls.processes.items()}
    return (spaces, bytes(pm.owner), list(pm.frames.words),
            {frame: bytes(page) for frame, page in pm.memory.items()},
            {i: (b.size, b.permissions, b.frames, b.destroyed, frozenset(b.mappings))
             for i, b in shm.blocks.items()}, shm.next_shm_id, dict(shm.views),
            dict(mmf.file_ids), {key: (page.frame, page.dirty, frozenset(
                (space.pid, vpn) for space, vpn in page.mappers))
                for key, page in mmf.cache.items()}, dict(mmf.views),
            [contents(node) for node in nodes])


class SharedCore:
    """One subsystem, its file nodes, and the machine's shadow of every byte:
    every call goes through :meth:`call`, which judges it by the spec; the calls
    come in the classes below, one per manager, joined by :class:`SharedHarness`."""

    def __init__(self, machine: type[SharedMachine]) -> None:
        self.machine = machine
        self.tokens = machine.tokens
        self.sub = make_subsystem()
        self.free_at_start = self.sub.pageman.free_count()
        #: Node 0 is a real file (DiskFileNode in a fresh temporary directory), the
        #: others in memory: "nothing lost" is checked on disk too.
        self.directory = tempfile.TemporaryDirectory(prefix="memspec-shm-")
        disk = os.path.join(self.directory.name, "node0")
        with open(disk, "wb") as file:
            file.write(pattern(0, NODES[0][0]))
        self.nodes: list[FileNode] = [
            DiskFileNode(disk, NODES[0][1]),
            *(MemoryFileNode(pattern(i, length), writable)
              for i, (length, writable) in enumerate(NODES) if i)]
        self.empty = MemoryFileNode(b"")
        #: What each node must hold once everything is written back.
        self.expected = {i: bytearray(contents(node)) for i, node in enumerate(self.nodes)}
        self.block_pages: dict[tuple[int, int], bytearray] = {}  # (shm id, page)
        self.file_pages: dict[tuple[int, int], bytearray] = {}  # (node, page), cached
        self.views: dict[tuple[int, int], Record] = {}  # (pid, base address)
        self.live_blocks: set[int] = set()
        self.stale: list[ProcessMemorySpace] = []
        self.states: dict[SharedSnapshot, SharedState] = {}
        #: A check failed: the teardown (hypothesis runs it in a finally) must not
        #: replace that failure with its own.
        self.failed = False

    @property
    def current(self) -> ProcessMemorySpace | None:
        return self.sub.syscalls.current

    def snapshot(self, extra: Mapping[int, FileNode] | None = None) -> SharedSnapshot:
        return shared_snapshot(self.sub, self.tokens, extra)

    def call(self, where: str, run: Callable[[], Any], code: Callable[[], int],
             plan: Callable[[SharedSnapshot, Any, int], list[SpecCall] | None], *,
             extra: Mapping[int, FileNode] | None = None, result: bool = True,
             track: Callable[[Any], None] | None = None,
             stages: list[SharedSnapshot] | None = None) -> Any:
        """Run one model call and check it (1-4); ``plan`` gives its spec steps from
        the post snapshot, the reply and the status (None: the layer must not change),
        chained; with ``stages`` (the snapshots the call took after each step), each
        step on its own."""
        self.failed = True  # until every check passed
        pre_snap, before = self.snapshot(extra), self.everything()
        reply = run()
        status = code()
        outcome = f"{where.split('(')[0].split()[0]} {E(status).name.removeprefix('ERROR_')}"
        self.machine.outcomes[outcome] += 1
        post_snap = self.snapshot()
        problems = self.invariants(post_snap)
        if status != SUCCESS and self.everything() != before:
            problems[UNCHANGED] = "a failed call changed the processes, memory or files"
        steps = plan(post_snap, reply, status)
        if steps is None:
            if post_snap != pre_snap:
                problems[TRANSITION] = "a call without a spec step changed the shared layer"
        elif stages is not None:
            shots = [pre_snap, *stages]
            if status == SUCCESS and len(shots) != len(steps) + 1:
                problems[TRANSITION] = f"{len(shots) - 1} views detached, {len(steps)} held"
            for step, before_step, after_step in zip(steps, shots, shots[1:], strict=False):
                problems.update(self.transition(before_step, after_step, [step], SUCCESS,
                                                None))
            if shots[-1] != post_snap:
                problems[TRANSITION] = "the shared layer changed besides the views' unmaps"
        else:
            value = reply if result and type(reply) in (int, bool) else None
            problems.update(self.transition(pre_snap, post_snap, steps, status, value))
        if status == SUCCESS and track is not None:
            track(reply)
        problems.update(self.check_contents())
        raise_problems(f"{where} returned {reply!r} ({E(status).name})", problems)
        self.failed = False
        return reply

    def everything(self) -> object:
        """What a failed call must leave as it was (a hook: the oracle's judge reads
        it from the implementation's reports)."""
        return world(self.sub, self.nodes)

    def read_page(self, pid: int, address: int) -> bytes | None:
        """The page at address as process pid reads it (a hook, as everything); a page
        whose protection refuses reads (PAGE_NOACCESS, PAGE_EXECUTE) through its
        record's frame, as the oracle's ProcessBytes reads it."""
        space = self.sub.syscalls.processes[pid]
        seen = space.ReadUserMemory(address, PAGE_SIZE)
        if isinstance(seen, bytes):
            return seen
        record = space.pages.get(address >> PAGE_SHIFT)
        if record is None or record.frame is None or protect_allows(record.protect, "read"):
            return None
        page = self.sub.pageman.memory.get(record.frame)
        return bytes(PAGE_SIZE) if page is None else bytes(page)

    def remember_write(self, record: Record, page: int, offset: int, data: bytes) -> None:
        """A write through a view that succeeded: the view's shadow holds the bytes,
        and a file's expected contents the ones below its end."""
        self.shadow(record, page)[offset:offset + len(data)] = data
        if record.kind == FILE:
            known = self.expected[record.source]
            start = (record.first + page) * PAGE_SIZE + offset
            stored = max(0, min(len(data), len(known) - start))
            known[start:start + stored] = data[:stored]

    def invariants(self, snap: SharedSnapshot) -> dict[str, str]:
        """{id: why} for every invariant refuted on the snapshot's state (cached),
        each decided conjunct by conjunct: z3 takes VMM-1 over a dozen views in
        about half the time so."""
        key = ("invariants", snap)
        refuted = self.machine.cache.get(key)
        if refuted is None:
            state, broken = self.state(snap), []
            for name, holds in sm.INVARIANTS.items():
                body = holds(state)
                parts = body.children() if z3.is_and(body) else [body]
                if not all(decide(part, name) for part in parts):
                    broken.append(name)
            refuted = self.machine.cache[key] = tuple(broken)
        return {name: why_false(name, sm.INVARIANTS[name], self.state(snap))
                for name in refuted}

    def transition(self, pre_snap: SharedSnapshot, post_snap: SharedSnapshot,
                   steps: list[SpecCall], status: int, reply: int | bool | None
                   ) -> dict[str, str]:
        """{check: why} for the spec steps against the model's status, reply and post."""
        key = ("transition", pre_snap, post_snap, tuple(steps), status, reply)
        bad = self.machine.cache.get(key)
        if bad is None:
            bad = tuple(self.judge(pre_snap, post_snap, steps, status, reply))
            self.machine.cache[key] = bad
        problems: dict[str, str] = {}
        for name in bad:
            claim = name.split(":")[0]
            check = claim if claim in sm.STEP_CLAIMS else TRANSITION
            problems[check] = f"{problems[check]}; {name}" if check in problems else name
        return problems

    def state(self, snap: SharedSnapshot) -> SharedState:
        """The spec state of a snapshot (the last few are kept: a call's pre-state is
        the previous call's post-state)."""
        states = self.states
        found = states.pop(snap, None)
        if found is None:
            found = to_shared_state(snap)
        states[snap] = found
        if len(states) > 4:
            del states[next(iter(states))]
        return found

    def judge(self, pre_snap: SharedSnapshot, post_snap: SharedSnapshot, steps: list[SpecCall],
              status: int, reply: int | bool | None) -> list[str]:
        pre = self.state(pre_snap)
        state, code, assume, step = pre, z3.IntVal(0), z3.BoolVal(True), None
        for call in steps:
            args = {name: z3_arg(value) for name, value in call.args}
            step = getattr(sm, call.op)(state, **args)
            step_code = step.status if not call.then else z3.If(
                step.status == 0, z3.IntVal(call.then), step.status)
            code = z3.If(code != 0, code, step_code)
            if not call.then:  # else the step's success only stands for the checks' passing
                assume = z3.And(assume, step.assume)
            state = step.changed
        claims: list[tuple[str, Ref]] = [
            ("the spec's assumptions (pick, shm_id) hold", assume),
            (f"the spec's status is {status}", z3.Implies(assume, code == status))]
        if status == SUCCESS:
            post = self.state(post_snap)
            claims += [(f"post-state {name}", z3.Implies(assume, a == b)) for (name, a), (_, b)
                       in zip(observable(state), observable(post), strict=True)]
        if step is not None and len(steps) == 1 and not steps[0].then:
            if reply is not None and step.result is not None:
                claims.append((f"the spec's result is {reply!r}", z3.Implies(
                    assume, step.result == (z3.BoolVal(reply) if isinstance(reply, bool)
                                            else z3.IntVal(reply)))))
        if status == SUCCESS and len(steps) == 1:
            model = Transition(z3.IntVal(status), post, post)
            args = {name: z3_arg(value) for name, value in steps[0].args}
            claims += [(f"{claim}: the model's outcome breaks the step claim", check(
                pre, model, args)) for claim, (op, check) in sm.STEP_CLAIMS.items()
                if op == steps[0].op]
        return failing(claims, TRANSITION)

    def watched(self, manager: SharedMemoryManager | MemoryMappedFiles,
                stages: list[SharedSnapshot], name: str = "detach") -> Callable[..., None]:
        """The manager's detach or unmap_pages (as its class has it now), then a
        snapshot."""
        method = getattr(type(manager), name)

        def watch(space: ProcessMemorySpace, *args: int) -> None:
            method(manager, space, *args)
            stages.append(self.snapshot())

        return watch

    @contextlib.contextmanager
    def staged(self, stages: list[SharedSnapshot]) -> Iterator[None]:
        """While inside, each manager's detach and unmap_pages snapshot the layer
        after they ran (the model's steps of a munmap or a process exit)."""
        managers = (self.sub.shared_memory, self.sub.mapped_files)
        for manager in managers:
            for name in ("detach", "unmap_pages"):
                setattr(manager, name, self.watched(manager, stages, name))
        try:
            yield
        finally:
            for manager in managers:
                for name in ("detach", "unmap_pages"):
                    delattr(manager, name)

    def shadow(self, record: Record, page: int) -> bytearray:
        if record.kind == SHM:
            return self.block_pages[(record.source, record.first + page)]
        return self.file_pages[(record.source, record.first + page)]

    def check_contents(self) -> dict[str, str]:
        wrong = []
        for (pid, base), record in self.views.items():
            for page in range(record.pages):
                seen = self.read_page(pid, base + page * PAGE_SIZE)
                if seen != bytes(self.shadow(record, page)):
                    wrong.append(f"page {page} of the view at {base:#x} in process {pid}")
        return {CONTENTS: "; ".join(wrong) + " differ from the bytes written"} if wrong else {}

    def load(self, index: int, first: int, count: int, *, reload: bool) -> None:
        """Shadow the file's pages [first, first + count) from what the node must hold
        (bytes past its end zero), unless cached already (reload: always)."""
        data, length = self.expected[index], len(self.expected[index])
        for k in range(first, first + count):
            if reload or (index, k) not in self.file_pages:
                self.file_pages[(index, k)] = bytearray(file_page(
                    data[k * PAGE_SIZE:(k + 1) * PAGE_SIZE], length, k))

    def holding(self, pid: int, address: int) -> tuple[int, int]:
        """The key of pid's view whose pages hold address (UnmapViewOfFile takes any
        address inside a view), else (pid, address)."""
        for (owner, base), record in self.views.items():
            if owner == pid and base <= address < base + record.pages * PAGE_SIZE:
                return owner, base
        return pid, address

    def cut(self, key: tuple[int, int], start: int, end: int) -> None:
        """munmap took the pages [start, end) (addresses) of the view at key: what is
        left before start keeps the key, what is left from end is a piece of its own
        (model/address_space.py split_view); the shadows nothing maps go."""
        pid, base = key
        record = self.views.pop(key)
        low, high = (start - base) >> PAGE_SHIFT, (end - base) >> PAGE_SHIFT
        if low > 0:
            self.views[key] = record._replace(pages=low)
        if high < record.pages:
            self.views[(pid, end)] = record._replace(first=record.first + high,
                                                     pages=record.pages - high)
        self.prune(record._replace(first=record.first + low, pages=high - low))

    def forget(self, key: tuple[int, int]) -> None:
        """The view at key is gone: drop the shadows nothing maps any more."""
        self.prune(self.views.pop(key))

    def prune(self, record: Record) -> None:
        """The pages of record are unmapped: drop the shadows nothing maps any more (a
        block's all at once, when it is destroyed and no piece of it is left)."""
        if record.kind == SHM:
            if record.source not in self.live_blocks and not any(
                    r.kind == SHM and r.source == record.source for r in self.views.values()):
                for page in [page for page in self.block_pages if page[0] == record.source]:
                    del self.block_pages[page]
            return
        for k in range(record.first, record.first + record.pages):
            if not any(r.kind == FILE and r.source == record.source
                       and r.first <= k < r.first + r.pages for r in self.views.values()):
                del self.file_pages[(record.source, k)]


class BlockCalls(SharedCore):
    """The shared-memory manager's calls: create, map, unmap, destroy, size."""

    def create(self, size: Any, permissions: int) -> int:
        shm, pm = self.sub.shared_memory, self.sub.pageman
        pages = page_ceil(size) >> PAGE_SHIFT if is_u32(size) else 0
        oom = pm.free_count() < pages

        def plan(post: SharedSnapshot, reply: Any, status: int) -> list[SpecCall]:
            frames = dict(enumerate(dict(post.blocks)[reply].frames)) if reply else {}
            return [SpecCall("CreateSharedMemory", (
                ("size", size if type(size) is int else -1), ("permissions", permissions),
                ("shm_id", reply or shm.next_shm_id), *picks(frames), ("oom", oom)))]

        def track(shm_id: int) -> None:
            self.live_blocks.add(shm_id)
            for k in range(pages):
                self.block_pages[(shm_id, k)] = bytearray(PAGE_SIZE)

        shm_id: int = self.call(f"CreateSharedMemory({size!r}, {permissions:#x})",
                                lambda: shm.CreateSharedMemory(size, permissions),
                                lambda: int(shm.last_error), plan, track=track)
        return shm_id

    def map_block(self, space: ProcessMemorySpace, shm_id: int, address: int,
                  protect: int | None) -> None:
        shm = self.sub.shared_memory
        block = shm.blocks.get(shm_id)
        live = block is not None and not block.destroyed
        count = len(block.frames) if block is not None and live else 1
        length = count * PAGE_SIZE
        space_code = int(space.status())
        placed = address == 0
        occupied = oom = False
        if placed:
            found = space.find_bottom_up(length, space.windows_floor(), USER_TOP,
                                         ALLOCATION_GRANULARITY) if space_code == 0 else -1
            base = max(found, 0) >> PAGE_SHIFT
        else:
            base = address >> PAGE_SHIFT if address % PAGE_SIZE == 0 else -1
            occupied = any(allocation.base not in space.views for allocation in
                           space.allocations_between(address, address + length))
        start = base << PAGE_SHIFT
        if space_code == 0 and base > 0 and start + length <= USER_TOP and space.is_free(
                start, start + length):
            oom = space.missing_tables(start, start + length) > space.free_frames()
        spec_protect = protect if protect is not None else (
            block.permissions if block is not None and live else PAGE_READWRITE)
        call = SpecCall("MapSharedMemoryToProcess", (
            ("pid", space.pid), ("space", space_code), ("shm_id", shm_id), ("base", base),
            ("protect", spec_protect), ("placed", placed), ("occupied", occupied),
            ("oom", oom)))

        def track(view: int) -> None:
            written = protect_allows(spec_protect, "write")
            self.views[(space.pid, view)] = Record(SHM, shm_id, 0, count, written)

        self.call(f"MapSharedMemoryToProcess(<process {space.pid}>, {shm_id}, {address:#x}, "
                  f"{protect!r})", lambda: shm.MapSharedMemoryToProcess(
                      space, shm_id, address, protect),
                  lambda: int(shm.last_error), lambda *_: [call], track=track)

    def unmap_block(self, space: ProcessMemorySpace, address: int) -> None:
        shm = self.sub.shared_memory
        call = SpecCall("UnmapSharedMemoryFromProcess", (
            ("pid", space.pid), ("base", address >> PAGE_SHIFT),
            ("space", int(space.status()))))
        self.call(f"UnmapSharedMemoryFromProcess(<process {space.pid}>, {address:#x})",
                  lambda: shm.UnmapSharedMemoryFromProcess(space, address),
                  lambda: int(shm.last_error), lambda *_: [call],
                  track=lambda _: self.forget(self.holding(space.pid, address)))

    def destroy_block(self, shm_id: int) -> None:
        shm = self.sub.shared_memory

        def track(_: object) -> None:
            self.live_blocks.discard(shm_id)
            if not any(r.kind == SHM and r.source == shm_id for r in self.views.values()):
                for key in [key for key in self.block_pages if key[0] == shm_id]:
                    del self.block_pages[key]

        call = SpecCall("DestroySharedMemory", (("shm_id", shm_id),))
        self.call(f"DestroySharedMemory({shm_id})", lambda: shm.DestroySharedMemory(shm_id),
                  lambda: int(shm.last_error), lambda *_: [call], track=track)

    def block_size(self, shm_id: int) -> None:
        shm = self.sub.shared_memory
        call = SpecCall("GetSharedMemorySize", (("shm_id", shm_id),))
        self.call(f"GetSharedMemorySize({shm_id})", lambda: shm.GetSharedMemorySize(shm_id),
                  lambda: int(shm.last_error), lambda *_: [call])


class FileCalls(SharedCore):
    """The mapped-file manager's calls: map, unmap and sync a file view."""

    def map_file(self, index: int, offset: int, size: int, protection: int) -> None:
        """MapFileToMemory in the current process; index: a node, len(nodes) the
        empty node, more: an object that is not a node."""
        mmf, space = self.sub.mapped_files, self.current
        node: Any = (self.nodes + [self.empty])[index] if index <= len(self.nodes) \
            else NOT_A_NODE
        is_node = isinstance(node, FileNode)
        file_id = (mmf.file_ids.get(id(node), len(mmf.files) + 1)) if is_node else 0
        extra = {file_id: node} if is_node and id(node) not in mmf.file_ids else {}
        length = node.length() if is_node else 0
        size_left = length - offset if size == 0 else size
        first, count = offset >> PAGE_SHIFT, 0
        if size_left > 0 and offset + size_left <= length:
            count = page_ceil(size_left) >> PAGE_SHIFT
        then = 0
        if offset % PAGE_SIZE:  # the caller's check, after the spec's checks
            first, count, then = 0, 1, int(E.ERROR_MAPPED_ALIGNMENT)
        base = oom = 0
        if space is not None:
            found = space.find_bottom_up(max(count, 1) << PAGE_SHIFT, space.windows_floor(),
                                         USER_TOP, ALLOCATION_GRANULARITY)
            base = max(found, 0) >> PAGE_SHIFT
            if found >= 0 and not then:
                new = sum((file_id, k) not in mmf.cache for k in range(first, first + count))
                oom = new + space.missing_tables(found, found + (count << PAGE_SHIFT)) > \
                    space.free_frames()

        def plan(post: SharedSnapshot, reply: Any, status: int) -> list[SpecCall]:
            cache = dict(post.cache)
            new = {k: cache[(file_id, k)].frame for k in range(first, first + count)
                   if (file_id, k) not in mmf_before and (file_id, k) in cache}
            return [SpecCall("MapFileToMemory", (
                ("pid", 0 if space is None else space.pid), ("file", file_id),
                ("first", first), ("count", count), ("protect", protection), ("base", base),
                ("occupied", False), *picks(new), ("oom", bool(oom))), then)]

        def track(view: int) -> None:
            assert space is not None and index < len(self.nodes)
            written = protect_allows(protection, "write") and NODES[index][1]
            self.views[(space.pid, view)] = Record(FILE, index, first, count, written)
            self.load(index, first, count, reload=False)

        mmf_before = set(mmf.cache)
        pid = 0 if space is None else space.pid
        self.call(f"MapFileToMemory(<node {index}>, {offset:#x}, {size:#x}, {protection:#x}) "
                  f"in process {pid}", lambda: mmf.MapFileToMemory(node, offset, size,
                                                                    protection),
                  lambda: int(mmf.last_error), plan, extra=extra, track=track)

    def unmap_file(self, address: int, sync: bool, invalidate: bool = False) -> None:
        """UnmapFileFromMemory, or SyncMappedFile, of address in the current process
        (none: pid 0, the model's ERROR_NOT_READY)."""
        mmf, space = self.sub.mapped_files, self.current
        pid = 0 if space is None else space.pid
        base = address >> PAGE_SHIFT if address % PAGE_SIZE == 0 else -1
        key = (pid, address)
        if sync:
            call = SpecCall("SyncMappedFile", (("pid", pid), ("base", base),
                                               ("invalidate", invalidate)))

            def track(_: object) -> None:
                if invalidate:
                    record = self.views[key]
                    self.load(record.source, record.first, record.pages, reload=True)

            self.call(f"SyncMappedFile({address:#x}, {invalidate}) in process {pid}",
                      lambda: mmf.SyncMappedFile(address, invalidate),
                      lambda: int(mmf.last_error), lambda *_: [call], track=track)
            return
        call = SpecCall("UnmapFileFromMemory", (("pid", pid), ("base", address >> PAGE_SHIFT)))
        self.call(f"UnmapFileFromMemory({address:#x}) in process {pid}",
                  lambda: mmf.UnmapFileFromMemory(address), lambda: int(mmf.last_error),
                  lambda *_: [call], track=lambda _: self.forget(self.holding(pid, address)))


class ProcessCalls(SharedCore):
    """User-mode accesses through the views, and the processes' own calls (create,
    switch, destroy: a process's exit detaches its views)."""

    def access(self, pid: int, base: int, page: int, offset: int, data: bytes | None) -> None:
        """A user write of data (None: a read of the whole page) at offset in page of
        the view at base of process pid."""
        space = self.sub.syscalls.processes[pid]
        record = self.views[(pid, base)]
        address = base + page * PAGE_SIZE
        vpn = address >> PAGE_SHIFT
        if data is None:
            def plan(post: SharedSnapshot, reply: Any, status: int) -> list[SpecCall]:
                return [SpecCall("Read", (("pid", pid), ("vpn", vpn)))]

            def read() -> int | None:
                seen = space.ReadUserMemory(address, PAGE_SIZE)
                if not isinstance(seen, bytes):
                    return None
                if record.kind == FILE:
                    k = record.first + page
                    seen = file_page(seen, len(self.expected[record.source]), k)
                return self.tokens.of(seen)

            self.call(f"read {address:#x} in process {pid}", read,
                      lambda: int(space.last_error), plan)
            return
        data = data[:PAGE_SIZE - offset]
        frame = space.pte(vpn) >> PAGE_SHIFT

        def write_plan(post: SharedSnapshot, reply: Any, status: int) -> list[SpecCall]:
            token = dict(post.memory).get(frame, 0)
            return [SpecCall("Write", (("pid", pid), ("vpn", vpn), ("token", token)))]

        def track(_: object) -> None:
            self.remember_write(record, page, offset, data)

        self.call(f"write {data!r} at {address + offset:#x} in process {pid}",
                  lambda: space.WriteUserMemory(address + offset, data),
                  lambda: int(space.last_error), write_plan, result=False, track=track)

    def protect(self, pid: int, base: int, page: int, count: int, value: int,
                op: str) -> None:
        """VirtualProtect or VirtualAlloc(MEM_COMMIT) (value: a PAGE_* value), or
        SyscallMprotect (value: PROT_* bits, the spec's protection their PAGE_* value),
        of count pages from page of the view at base of process pid, called on its
        space (as the current process would)."""
        space = self.sub.syscalls.processes[pid]
        address, size = base + page * PAGE_SIZE, count * PAGE_SIZE
        linux = op == "SyscallMprotect"
        protect = protect_from_prot(value) if linux else value

        def run() -> int:
            if linux:
                return SyscallMprotect(space, address, size, value)
            if op == "VirtualAlloc":
                return VirtualAllocProcessMemory(space, address, size, MEM_COMMIT, value)
            done, old = VirtualProtectProcessMemory(space, address, size, value)
            return old if done else 0

        def plan(post: SharedSnapshot, reply: Any, status: int) -> list[SpecCall]:
            return [SpecCall(op, (("pid", pid), ("vpn", address >> PAGE_SHIFT),
                                  ("count", count), ("protect", protect)))]

        self.call(f"{op}({address:#x}, {size:#x}, {value:#x}) in process {pid}", run,
                  lambda: int(space.last_error), plan, result=not linux)

    def munmap(self, pid: int, base: int, part: tuple[int, int] | None = None,
               past: bool = False, fixed: bool = False) -> None:
        """munmap of the view at base of process pid: the whole view and the free page
        after it (part None: the view's Unmap step, shmdt / UnmapFileFromMemory's), or
        its pages [page, page + count) (part, a strict part of the view: the spec's
        SyscallMunmap step, the view cut into pieces) and, past, the page after the
        view (free: the same step); fixed: mmap(MAP_FIXED | MAP_PRIVATE |
        MAP_ANONYMOUS) over the same range instead, which unmaps it the same way
        and maps private pages there (the user layer's). Each step is checked from
        the state before the manager's detach / unmap_pages to the one after it."""
        space = self.sub.syscalls.processes[pid]
        record = self.views[(pid, base)]
        if part is None:
            address, length = base, (record.pages + 1) * PAGE_SIZE
            unmap = "UnmapSharedMemoryFromProcess" if record.kind == SHM \
                else "UnmapFileFromMemory"
            steps = [SpecCall(unmap, (("pid", pid), ("base", base >> PAGE_SHIFT)))]
        else:
            page, count = part
            address, length = base + page * PAGE_SIZE, (count + past) * PAGE_SIZE
            steps = [SpecCall("SyscallMunmap", (("pid", pid), ("vpn", address >> PAGE_SHIFT),
                                                ("count", count)))]
        stages: list[SharedSnapshot] = []

        def run() -> int:
            with self.staged(stages):
                if fixed:
                    done = SyscallMmap(space, address, length, PROT_READ | PROT_WRITE,
                                       MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
                    return 0 if done == address else done
                return SyscallMunmap(space, address, length)

        def track(_: object) -> None:
            if part is None:
                self.forget((pid, base))
            else:
                self.cut((pid, base), address, address + part[1] * PAGE_SIZE)

        name = "mmap(MAP_FIXED)" if fixed else "munmap"
        self.call(f"{name}({address:#x}, {length:#x}) in process {pid}", run,
                  lambda: int(space.last_error),
                  lambda post, reply, status: steps if status == SUCCESS else None,
                  result=False, track=track, stages=stages)

    def processes(self, name: str, pid: int = 0) -> int:
        """CreateProcess, SwitchProcess(pid) or DestroyProcess(pid): the Unmap steps
        of the process's views in the order the model detaches them, each checked
        from the model's state before it to the one after it (snapshots taken
        between the managers' detach calls)."""
        calls = self.sub.syscalls
        space = calls.processes.get(pid)
        steps: list[SpecCall] | None = None
        stages: list[SharedSnapshot] = []
        if name == "DestroyProcess" and space is not None:
            steps = [SpecCall("UnmapSharedMemoryFromProcess" if owner is
                              self.sub.shared_memory else "UnmapFileFromMemory",
                              (("pid", pid), ("base", base >> PAGE_SHIFT)))
                     for base, owner in space.views.items()]

        def run() -> Any:
            if name == "CreateProcess":
                return calls.CreateProcess()
            if name == "SwitchProcess":
                return calls.SwitchProcess(pid)
            with self.staged(stages):
                return calls.DestroyProcess(pid)

        def track(_: object) -> None:
            if name == "DestroyProcess" and space is not None:
                self.stale.append(space)
                for key in [key for key in self.views if key[0] == pid]:
                    self.forget(key)

        reply: int = self.call(f"{name}({pid or ''})", run, lambda: int(calls.last_error),
                               lambda *_: steps, result=False, track=track, stages=stages)
        return reply


class SharedHarness(BlockCalls, FileCalls, ProcessCalls):
    """The shared-memory machine's harness: blocks, file views and processes under
    check, and the end of an example (:meth:`finish`)."""

    def finish(self) -> None:
        """5: destroy every process; nothing lost; destroy the blocks; every frame back."""
        for pid in list(self.sub.syscalls.processes):
            self.processes("DestroyProcess", pid)
        held = [contents(node) for node in self.nodes]
        lost = [f"node {i} holds {data[:16]!r}..., "
                f"not the bytes written ({bytes(known)[:16]!r}...)"
                for i, (data, known) in enumerate(zip(held, self.expected.values(), strict=True))
                if data != known]
        raise_problems("after every process was destroyed", {NOTHING_LOST: "; ".join(lost)}
                       if lost else {})
        for shm_id in sorted(self.live_blocks):
            self.destroy_block(shm_id)
        free = self.sub.pageman.free_count()
        if free != self.free_at_start:
            raise CheckError(f"{free} frames free after every process and block was "
                             f"destroyed, {self.free_at_start} before the first", [FRAMES])
