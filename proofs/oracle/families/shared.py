"""The shared family: shared memory blocks and file views in user processes.

- **Set-up**: the user family's (768 frames, paging, process 1 current), then
  what the shared machine starts with: a second process, current, and its
  files: ``CreateFile`` of 10040 bytes (a partial last page) and 8192 bytes,
  writable, of 300 bytes read-only, and an empty one (ids 1-4).
- **Rules**: :class:`proofs.machines.shared_memory.SharedMachine`'s own (blocks with
  bad sizes and permissions, maps at 0, at free, occupied and unaligned
  addresses, with wider protections, in destroyed processes; unmaps, destroys,
  sizes; file views with bad offsets, sizes and protections, sync with and
  without invalidate, unmaps; writes and reads of view pages; VirtualProtect,
  VirtualAlloc(MEM_COMMIT) and mprotect of view pages, munmap of whole views and
  of their front, last or middle pages, and mmap(MAP_FIXED) over such a part,
  which cut them into pieces (judged by the spec's SyscallMunmap step);
  process exit without unmapping), through
  :class:`SharedFront`. A write or read of a view
  page switches to its process first (the protocol's accesses are the current
  process's). At the end every process is destroyed, then every live block.
- **Strict**: FrameCounts, FrameBitmap, Processes, SharedMemory and
  MappedFiles after every call.
- **Spec** (:class:`SharedJudge`): the shared harness's own checks
  (:class:`proofs.machines.shared_memory.SharedHarness.call`) over the observations:
  the spec state from SharedMemory, MappedFiles, Processes' PTEs, FileBytes
  and FrameBytes (:meth:`SharedJudge.snapshot`); every invariant on every
  reported state, the spec's step with the implementation's choices (its id,
  its frames, its base; ``oom`` when it reports ERROR_NOT_ENOUGH_MEMORY),
  no change on failure, every view page read back through ProcessBytes
  against the judge's shadow, process exit as the unmaps of its views
  (chained), and at the end nothing lost (FileBytes) and every frame back.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from types import SimpleNamespace
from typing import Any

from hypothesis.stateful import RuleBasedStateMachine

from model.user_layout import page_ceil, protect_allows, protect_from_prot
from model.x86_paging import is_u32
from proofs.abstractions.shared_memory import SharedSnapshot, Tokens, file_page
from proofs.machines.checks import TRANSITION, CheckError
from proofs.machines.runner import CheckedMachine, every_rule_enabled
from proofs.machines.shared_memory import SharedMachine
from proofs.machines.shared_memory_harness import (
    FRAMES,
    NODES,
    NOTHING_LOST,
    Record,
    SharedHarness,
    SpecCall,
    picks,
)
from proofs.oracle.families.rules import SessionRules, one_machine
from proofs.oracle.families.shared_boundaries import SharedBoundaryRules
from proofs.oracle.families.user import OLD_PROTECT_PTR, user_setup
from proofs.oracle.managers import Family, Message
from proofs.oracle.session import Session, last_observed
from proofs.oracle.worlds.shared import MANAGERS, SharedPart, pattern
from proofs.oracle.worlds.user import MANAGERS as USER_MANAGERS
from spec.abi import (
    ALLOCATION_GRANULARITY,
    EACCES,
    EBADF,
    EEXIST,
    EINVAL,
    ENOMEM,
    EPERM,
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_PRIVATE,
    MEM_COMMIT,
    PAGE_READWRITE,
    PAGE_SHIFT,
    PAGE_SIZE,
    PROT_READ,
    PROT_WRITE,
    ErrorCode,
)
from spec.shared_memory import FILE, SHM, BlockView, CacheView, PteView, ViewRecord

E = ErrorCode
SUCCESS = E.ERROR_SUCCESS
PARAMS = {op: params for m in MANAGERS for op, params in m.operations.items()}
USER_PARAMS = USER_MANAGERS[0].operations
#: The Windows code of each errno mprotect, munmap and mmap report (model/linux_mm.py's
#: last_error).
ERRNO_CODES = {0: E.ERROR_SUCCESS, EACCES: E.ERROR_ACCESS_DENIED, EPERM: E.ERROR_ACCESS_DENIED,
               EINVAL: E.ERROR_INVALID_PARAMETER, ENOMEM: E.ERROR_NOT_ENOUGH_MEMORY,
               EEXIST: E.ERROR_ALREADY_EXISTS, EBADF: E.ERROR_INVALID_HANDLE}
OWNER = {op: m.name for m in MANAGERS for op in m.operations}
#: The files every sequence starts with: the machine's NODES, then an empty one.
FILES = (*NODES, (0, True))
#: Where the judge places a view whose base the spec needs but the reply does not
#: give (a failure the caller's alignment check decides).
FREE_AREA = 0x60000000
#: A call's spec steps (from the post snapshot, reply and status), what the
#: judge's records learn from its success, and whether the reply is the step's result.
Plan = tuple[Callable[[SharedSnapshot, Any, int], "list[SpecCall] | None"],
             "Callable[[Any], None] | None", bool]


def page_records(runs: list[list[Any]]) -> dict[int, tuple[int, int | None]]:
    """vpn -> (protect, frame) of the Processes report's page runs."""
    out: dict[int, tuple[int, int | None]] = {}
    for first, count, _, protect, _, frame in runs:
        for n in range(count):
            out[first + n] = (protect, None if frame is None else frame + n)
    return out


def shared_setup(managers: tuple[str, ...], config: Mapping[str, Any] | None = None
                 ) -> list[tuple[str, str, Message]]:
    return [*user_setup(managers, config), ("SystemCalls", "CreateProcess", {}),
            ("SystemCalls", "SwitchProcess", {"pid": 2}),
            *(("MemoryMappedFiles", "CreateFile", {"size": size, "writable": writable})
              for size, writable in FILES)]


class SharedFront:
    """What the shared machine's rules see in place of its harness: calls
    through the session; processes, blocks and the current process from the
    model world (strict) or the judge's last observations (spec); the views,
    live blocks and destroyed processes as the replies made them."""

    def __init__(self, session: Session) -> None:
        self.session = session
        world = getattr(session, "world", None)
        self.part: SharedPart | None = None if world is None else next(
            p for p in world.parts if isinstance(p, SharedPart))
        self.views: dict[tuple[int, int], Any] = {}
        self.live_blocks: set[int] = set()
        self.stale: list[Any] = []
        self.blocks: dict[int, tuple[int, int]] = {}  # id -> (pages, permissions)
        self.failed = False

    # -- what the rules read ---------------------------------------------------------

    def _judge(self) -> SharedJudge:
        judge = self.session.judge  # type: ignore[attr-defined]
        assert isinstance(judge, SharedJudge)
        return judge

    @property
    def sub(self) -> Any:
        if self.part is not None:
            return SimpleNamespace(syscalls=self.part.syscalls, shared_memory=self.part.shm)
        judge = self._judge()
        processes = judge.observe("Processes")
        blocks = judge.observe("SharedMemory")["blocks"]
        return SimpleNamespace(
            syscalls=SimpleNamespace(processes={p["pid"]: SimpleNamespace(
                pid=p["pid"], allocations={a[0]: a for a in p["allocations"]})
                for p in processes["processes"]}),
            shared_memory=SimpleNamespace(
                blocks={b["id"]: SimpleNamespace(destroyed=b["destroyed"]) for b in blocks},
                next_shm_id=max((b["id"] for b in blocks), default=0) + 1))

    def current(self) -> int:
        if self.part is not None:
            space = self.part.syscalls.current
            return 0 if space is None else space.pid
        return int(self._judge().observe("Processes")["current"])

    def file_ids(self) -> list[int]:
        return list(range(1, len(FILES) + 1)) if self.part is not None else \
            self._judge().file_ids

    # -- calls ----------------------------------------------------------------------

    def _call(self, op: str, *args: Any) -> Any:
        manager = OWNER.get(op, "SystemCalls")
        params = PARAMS.get(op) or USER_PARAMS.get(op) or {
            "CreateProcess": (), "WriteUserMemory": ("addr", "data")}.get(
            op, ("pid",) if op.endswith("Process") else ("addr",))
        return self.session.execute(manager, op, dict(zip(params, args, strict=True)))

    def create(self, size: Any, permissions: int) -> int:
        shm_id = self._call("CreateSharedMemory", size, permissions)
        if type(shm_id) is int and shm_id:
            self.live_blocks.add(shm_id)
            self.blocks[shm_id] = (page_ceil(size) >> PAGE_SHIFT, permissions)
        return shm_id if type(shm_id) is int else 0

    def map_block(self, space: Any, shm_id: int, address: int, protect: int | None) -> None:
        base = self._call("MapSharedMemoryToProcess", space.pid, shm_id, address, protect or 0)
        if type(base) is int and base and shm_id in self.blocks:
            pages, permissions = self.blocks[shm_id]
            writable = protect_allows(protect or permissions, "write")
            self.views[(space.pid, base)] = SimpleNamespace(kind=SHM, pages=pages,
                                                            writable=writable)

    def _holding(self, pid: int, address: int) -> tuple[int, int]:
        """The key of pid's view holding address (an unmap takes any address in it)."""
        return next((key for key, view in self.views.items() if key[0] == pid
                     and key[1] <= address < key[1] + view.pages * PAGE_SIZE), (pid, address))

    def unmap_block(self, space: Any, address: int) -> None:
        if self._call("UnmapSharedMemoryFromProcess", space.pid, address) is True:
            self.views.pop(self._holding(space.pid, address), None)

    def destroy_block(self, shm_id: int) -> None:
        if self._call("DestroySharedMemory", shm_id) is True:
            self.live_blocks.discard(shm_id)

    def block_size(self, shm_id: int) -> None:
        self._call("GetSharedMemorySize", shm_id)

    def map_file(self, index: int, offset: int, size: int, protection: int) -> None:
        ids = self.file_ids()
        file_id = ids[index] if index < len(ids) else 0
        pid = self.current()
        base = self._call("MapFileToMemory", file_id, offset, size, protection)
        if type(base) is int and base and index < len(NODES):
            length, writable = NODES[index]
            pages = page_ceil(size or length - offset) >> PAGE_SHIFT
            self.views[(pid, base)] = SimpleNamespace(
                kind=FILE, pages=pages, writable=writable and protect_allows(protection, "write"))

    def unmap_file(self, address: int, sync: bool, invalidate: bool = False) -> None:
        pid = self.current()
        if sync:
            self._call("SyncMappedFile", address, invalidate)
        elif self._call("UnmapFileFromMemory", address) is True:
            self.views.pop(self._holding(pid, address), None)

    def access(self, pid: int, base: int, page: int, offset: int, data: bytes | None) -> None:
        if self.current() != pid:
            self.processes("SwitchProcess", pid)
        address = base + page * PAGE_SIZE
        if data is None:
            self._call("ReadUserMemory", address)
        else:
            self._call("WriteUserMemory", address + offset, data[:PAGE_SIZE - offset].hex())

    def protect(self, pid: int, base: int, page: int, count: int, value: int,
                op: str) -> None:
        """VirtualProtect (its old protection on the stack's top),
        VirtualAlloc(MEM_COMMIT) or SyscallMprotect, in pid."""
        if self.current() != pid:
            self.processes("SwitchProcess", pid)
        address, size = base + page * PAGE_SIZE, count * PAGE_SIZE
        if op == "SyscallMprotect":
            self._call("SyscallMprotect", address, size, value)
        elif op == "VirtualAlloc":
            self._call("SyscallVirtualAlloc", address, size, MEM_COMMIT, value)
        else:
            self._call("SyscallVirtualProtect", address, size, value, OLD_PROTECT_PTR)

    def munmap(self, pid: int, base: int, part: tuple[int, int] | None = None,
               past: bool = False, fixed: bool = False) -> None:
        """munmap of the whole view and the page after it (part None), or of its
        pages [page, page + count) (part; past: and the page after the view; fixed:
        mmap(MAP_FIXED) of private pages there instead), which cuts it into pieces:
        what is left before keeps the base, what is left after is a piece based at
        its end."""
        if self.current() != pid:
            self.processes("SwitchProcess", pid)
        view = self.views[(pid, base)]
        if part is None:
            if self._call("SyscallMunmap", base, (view.pages + 1) * PAGE_SIZE) == 0:
                self.views.pop((pid, base), None)
            return
        page, count = part
        address, length = base + page * PAGE_SIZE, (count + past) * PAGE_SIZE
        if fixed:
            if self._call("SyscallMmap", address, length, PROT_READ | PROT_WRITE,
                          MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) != address:
                return
        elif self._call("SyscallMunmap", address, length):
            return
        del self.views[(pid, base)]
        if page:
            self.views[(pid, base)] = SimpleNamespace(kind=view.kind, pages=page,
                                                      writable=view.writable)
        if page + count < view.pages:
            self.views[(pid, base + (page + count) * PAGE_SIZE)] = SimpleNamespace(
                kind=view.kind, pages=view.pages - page - count, writable=view.writable)

    def processes(self, name: str, pid: int = 0) -> int:
        reply = self._call(name) if name == "CreateProcess" else self._call(name, pid)
        if name == "DestroyProcess" and reply is True:
            self.stale.append(SimpleNamespace(pid=pid, allocations={}))
            for key in [key for key in self.views if key[0] == pid]:
                del self.views[key]
        return int(reply)


class OracleSharedMachine(SessionRules, SharedMachine, SharedBoundaryRules):
    """The shared machine's rules, sent to an implementation, and cuts of a fresh
    three-page view (:mod:`.shared_boundaries`). The set-up made both processes
    and the files (the machine's own start is replaced)."""

    h: Any  # SharedFront

    def __init__(self) -> None:
        RuleBasedStateMachine.__init__(self)
        every_rule_enabled(self)  # no swarm testing: a run is a few sequences

    def started(self) -> None:
        self.h = SharedFront(self.s)

    def start(self) -> None:
        """Made by the set-up calls."""

    def wind_down(self) -> None:
        """Destroy every process, then every live block (the machine's finish)."""
        for pid in self.pids():
            self.h.processes("DestroyProcess", pid)
        for shm_id in sorted(self.h.live_blocks):
            self.h.destroy_block(shm_id)


class ObservedShared(SharedHarness):
    """The shared harness over what the implementation reports: its hooks
    (``everything``, ``read_page``, the snapshot) read observations, not a model."""

    def __init__(self, session: Any) -> None:
        self.session = session
        machine = session.judges.caches.get("shared")
        if machine is None:
            machine = session.judges.caches["shared"] = type(
                "SharedOracle", (CheckedMachine,), {"cache": {}, "outcomes": Counter(),
                                                    "tokens": Tokens()})
        self.machine = machine
        self.tokens = machine.tokens
        self.expected = {}
        self.block_pages = {}
        self.file_pages = {}
        self.views = {}
        self.live_blocks = set()
        self.stale = []
        self.states = {}
        self.failed = False
        self.file_ids: list[int] = []
        self.start_free: int | None = None
        self._status = 0

    def observe(self, name: str, **args: int) -> Message:
        return self.session.observe(name, **args)  # type: ignore[no-any-return]

    def read_file(self, file: int, size: int) -> bytes:
        data = self.session.read("FileBytes", "offset", 0, size, file=file)
        if data is None:
            raise CheckError(f"FileBytes of file {file} reports null inside its {size} bytes",
                             ["MappedFiles"])
        return bytes(data)

    def snapshot(self, extra: Mapping[int, Any] | None = None) -> SharedSnapshot:
        """The spec's view of the reports (every file the implementation made)."""
        shared, mapped = self.observe("SharedMemory"), self.observe("MappedFiles")
        blocks = tuple((b["id"], BlockView(not b["destroyed"], b["size"], b["permissions"],
                                           tuple(b["frames"]), b["refcount"]))
                       for b in shared["blocks"])
        sizes = {f["id"]: f["size"] for f in mapped["files"]}
        files = []
        for f in mapped["files"]:
            data, pages = self.read_file(f["id"], f["size"]), page_ceil(f["size"]) >> PAGE_SHIFT
            files.append((f["id"], pages, f["writable"], tuple(self.tokens.of(file_page(
                data[k * PAGE_SIZE:(k + 1) * PAGE_SIZE], f["size"], k)) for k in range(pages))))
        cache = tuple(((f, k), CacheView(frame, dirty)) for f, k, frame, dirty in mapped["cache"])
        frames_of = {i: block.frames for i, block in blocks}
        processes = self.observe("Processes")["processes"]
        records = {p["pid"]: page_records(p["pages"]) for p in processes}

        sizes_of = {p["pid"]: {a[0]: a[1] for a in p["allocations"]} for p in processes}

        def own(pid: int, base: int, count: int) -> tuple[int, ...]:
            pages = records.get(pid, {})
            return tuple(pages.get(vpn, (0, None))[0] for vpn in range(base, base + count))

        def piece(v: Message) -> ViewRecord:
            """A block view or a piece of one (munmap cut it): its pages from its
            allocation, its first page in the block from the frame its first page maps
            (the report has no vm_pgoff: the block's frames are distinct)."""
            frames, vpn = frames_of.get(v["shm_id"], ()), v["base"] >> PAGE_SHIFT
            size = sizes_of.get(v["pid"], {}).get(v["base"])
            count = len(frames) if size is None else page_ceil(size) >> PAGE_SHIFT
            frame = records.get(v["pid"], {}).get(vpn, (0, None))[1]
            first = frames.index(frame) if frame in frames else 0
            return ViewRecord(SHM, v["shm_id"], first, count, v["protect"],
                              own(v["pid"], vpn, count))
        views = {(v["pid"], v["base"] >> PAGE_SHIFT): piece(v) for v in shared["views"]}
        views.update({(v["pid"], v["base"] >> PAGE_SHIFT): ViewRecord(
            FILE, v["file"], v["first"], v["count"], v["protect"],
            own(v["pid"], v["base"] >> PAGE_SHIFT, v["count"])) for v in mapped["views"]})
        cached = {frame: (f, k) for f, k, frame, _ in mapped["cache"]}
        shared_frames = sorted({*cached, *(f for _, b in blocks for f in b.frames)})
        ptes: dict[tuple[int, int], PteView] = {}
        for p in processes:
            pid = p["pid"]
            viewed = {vpn for (q, base), view in views.items() if q == pid
                      for vpn in range(base, base + view.count)}
            for vpn in sorted(viewed):  # a PAGE_NOACCESS view page: its record's frame
                frame = records[pid].get(vpn, (0, None))[1]
                if frame is not None:
                    ptes[(pid, vpn)] = PteView(frame, False)
            for first, count, frame, writable, _ in p["ptes"]:
                for n in range(count):
                    if first + n in viewed or frame + n in shared_frames:
                        ptes[(pid, first + n)] = PteView(frame + n, bool(writable))
        memory = []
        for frame in shared_frames:
            data = self.observe("FrameBytes", frame=frame)["data"]
            page = bytes(PAGE_SIZE) if data is None else bytes.fromhex(data)
            if frame in cached:
                f, k = cached[frame]
                page = file_page(page, sizes.get(f, PAGE_SIZE * (k + 1)), k)
            memory.append((frame, self.tokens.of(page)))
        return SharedSnapshot(blocks, tuple(sorted(files)), tuple(sorted(cache)),
                              tuple(sorted(views.items())), tuple(sorted(ptes.items())),
                              tuple(memory), int(self.observe("FrameCounts")["frames"]))

    def everything(self) -> object:
        frames = "FrameBitmap" if "FrameBitmap" in self.session.observations else "FrameCounts"
        return self.snapshot(), self.observe("Processes"), self.observe(frames)

    def read_page(self, pid: int, address: int) -> bytes | None:
        data = self.observe("ProcessBytes", pid=pid, virtual_addr=address,
                            length=PAGE_SIZE)["data"]
        return None if data is None else bytes.fromhex(data)

    def invoke(self, manager: str, op: str, args: Message) -> Any:
        result, self._status = self.session.invoke(manager, op, args)
        if op in ("SyscallMprotect", "SyscallMunmap", "SyscallMmap"):  # errno: as last_error
            self._status = int(ERRNO_CODES.get(self._status, self._status))
        if self._status not in E._value2member_map_:
            raise CheckError(f"{op} reports error {self._status}, not an error of the "
                             "design", [TRANSITION])
        return result

    def create_file(self, args: Message) -> Any:
        """The protocol's CreateFile: a new id whose file has the bytes asked for."""
        before = {f["id"] for f in self.observe("MappedFiles")["files"]}
        file_id = self.invoke("MemoryMappedFiles", "CreateFile", args)
        size, writable = args["size"], args["writable"]
        report = {f["id"]: f for f in self.observe("MappedFiles")["files"]}.get(file_id)
        if self._status != 0 or type(file_id) is not int or file_id in before or \
                report != {"id": file_id, "size": size, "writable": writable} or \
                self.read_file(file_id, size) != pattern(file_id, size):
            raise CheckError(f"CreateFile({size}, {writable}) returned {file_id} (error "
                             f"{self._status}); reported {report}", ["setup"])
        self.file_ids.append(file_id)
        self.expected[file_id] = bytearray(pattern(file_id, size))
        return file_id


class SharedJudge(ObservedShared):
    """Spec mode for the shared family: each operation sent, then judged by the shared
    harness's checks with the spec calls the implementation's reply implies
    (:meth:`plan`); at the end, nothing lost and every frame back."""

    def execute(self, manager: str, op: str, args: Message) -> Any:
        if manager in ("PageManager", "VirtualMemoryManager"):
            result, error = self.session.invoke(manager, op, args)
            if result is not True or error != 0:
                raise CheckError(f"the set-up call {op}{tuple(args.values())} failed: "
                                 f"{result}, error {error}", ["setup"])
            return result
        if self.start_free is None:
            self.start_free = int(self.observe("FrameCounts")["free"])
        if op == "CreateFile":
            return self.create_file(args)
        pre = self.snapshot()
        processes = self.observe("Processes")
        pid = int(processes["current"])
        live = {p["pid"] for p in processes["processes"]}
        plan, track, result = self.plan(op, args, pre, pid, live, processes)
        return self.call(f"{op}{tuple(args.values())}", lambda: self.invoke(manager, op, args),
                         lambda: self._status, plan, result=result, track=track)

    def plan(self, op: str, args: Message, pre: SharedSnapshot, pid: int, live: set[int],
             processes: Message) -> Plan:
        """The spec steps of one call from the reported pre-state and the reply,
        what the judge's records learn from its success, and whether its reply is
        the spec step's result."""
        a: list[Any] = [args.get(p) for p in PARAMS.get(op, ())]
        blocks, files = dict(pre.blocks), {f: (pages, w) for f, pages, w, _ in pre.files}
        sizes = {f["id"]: f["size"] for f in self.observe("MappedFiles")["files"]}
        cache = dict(pre.cache)
        views = dict(pre.views)
        if op == "CreateSharedMemory":
            size, permissions = a
            pages = page_ceil(size) >> PAGE_SHIFT if is_u32(size) and size > 0 else 0
            oom = int(self.observe("FrameCounts")["free"]) < pages

            def create(post: SharedSnapshot, reply: Any, status: int) -> list[SpecCall]:
                block = dict(post.blocks).get(reply) if reply else None
                frames = dict(enumerate(block.frames)) if block is not None else {}
                return [SpecCall(op, (("size", size if type(size) is int else -1),
                                      ("permissions", permissions),
                                      ("shm_id", reply or max(blocks, default=0) + 1),
                                      *picks(frames), ("oom", oom)))]

            def made(shm_id: int) -> None:
                self.live_blocks.add(shm_id)
                for k in range(pages):
                    self.block_pages[(shm_id, k)] = bytearray(PAGE_SIZE)
            return create, made, True
        if op == "MapSharedMemoryToProcess":
            target, shm_id, address, protect = a
            block = blocks.get(shm_id)
            alive = block is not None and block.live
            count = len(block.frames) if block is not None and alive else 1
            spec_protect = protect or (block.protect if block is not None and alive
                                       else PAGE_READWRITE)
            placed = address == 0
            occupied = False
            if not placed:
                mine = {base for (q, base) in views if q == target}
                process = next((p for p in processes["processes"] if p["pid"] == target), None)
                occupied = process is not None and any(
                    b >> PAGE_SHIFT not in mine and b < address + count * PAGE_SIZE
                    and address < b + s for b, s, *_ in process["allocations"])

            def map_block(post: SharedSnapshot, reply: Any, status: int) -> list[SpecCall]:
                if placed:
                    base = reply >> PAGE_SHIFT if reply else 0
                else:
                    base = address >> PAGE_SHIFT if address % PAGE_SIZE == 0 else -1
                return [SpecCall(op, (("pid", target), ("space", 0 if target in live else 6),
                                      ("shm_id", shm_id), ("base", base),
                                      ("protect", spec_protect), ("placed", placed),
                                      ("occupied", occupied),
                                      ("oom", status == E.ERROR_NOT_ENOUGH_MEMORY)))]

            def mapped(view: int) -> None:
                self.views[(target, view)] = self.record(SHM, shm_id, 0, count,
                                                         protect_allows(spec_protect, "write"))
            return map_block, mapped, True
        if op == "UnmapSharedMemoryFromProcess":  # any address inside the view
            target, address = a
            call = SpecCall(op, (("pid", target), ("base", self.page(address)),
                                 ("space", 0 if target in live else 6)))
            return (lambda *_: [call]), (lambda _: self.drop(self.holding(target, address))), \
                True
        if op in ("DestroySharedMemory", "GetSharedMemorySize"):
            (shm_id,) = a

            def destroyed(_: object) -> None:
                if op == "DestroySharedMemory":
                    self.live_blocks.discard(shm_id)
                    if not any(r.kind == SHM and r.source == shm_id for r in self.views.values()):
                        for key in [key for key in self.block_pages if key[0] == shm_id]:
                            del self.block_pages[key]
            return (lambda *_: [SpecCall(op, (("shm_id", shm_id),))]), destroyed, True
        if op == "MapFileToMemory":
            return self.plan_map_file(a, pid, files, sizes, cache, views)
        if op in ("UnmapFileFromMemory", "SyncMappedFile"):
            address = a[0]
            key = (pid, address)
            if op == "SyncMappedFile":
                invalidate = a[1]
                call = SpecCall(op, (("pid", pid), ("base", self.vpn(address)),
                                     ("invalidate", invalidate)))

                def synced(_: object) -> None:
                    record = self.views.get(key)
                    if invalidate and record is not None:
                        self.load(record.source, record.first, record.pages, reload=True)
                return (lambda *_: [call]), synced, True
            call = SpecCall(op, (("pid", pid), ("base", self.page(address))))
            return (lambda *_: [call]), (lambda _: self.drop(self.holding(pid, address))), True
        return self.plan_process(op, args, pid, live, views)

    def plan_map_file(self, a: list[Any], pid: int, files: dict[int, tuple[int, bool]],
                      sizes: dict[int, int], cache: dict[tuple[int, int], CacheView],
                      views: dict[tuple[int, int], ViewRecord]) -> Plan:
        """MapFileToMemory's step, its byte-level arguments translated as the machine
        does (SharedHarness.map_file)."""
        file, offset, size, protection = a
        file_id = file if file in files else 0
        length = sizes.get(file_id, 0)
        size_left = length - offset if size == 0 else size
        first, count, then = offset >> PAGE_SHIFT, 0, 0
        if size_left > 0 and offset + size_left <= length:
            count = page_ceil(size_left) >> PAGE_SHIFT
        if offset % PAGE_SIZE:
            first, count, then = 0, 1, int(E.ERROR_MAPPED_ALIGNMENT)
        taken = [base for (q, base), view in views.items() if q == pid
                 for base in range(base, base + view.count)]
        free = FREE_AREA >> PAGE_SHIFT
        while any(free <= vpn < free + max(count, 1) for vpn in taken):
            free += ALLOCATION_GRANULARITY >> PAGE_SHIFT

        def map_file(post: SharedSnapshot, reply: Any, status: int) -> list[SpecCall]:
            after = dict(post.cache)
            new = {k: after[(file_id, k)].frame for k in range(first, first + count)
                   if (file_id, k) not in cache and (file_id, k) in after}
            base = reply >> PAGE_SHIFT if reply else (free if then else 0)
            return [SpecCall("MapFileToMemory", (
                ("pid", pid), ("file", file_id), ("first", first), ("count", count),
                ("protect", protection), ("base", base), ("occupied", False), *picks(new),
                ("oom", not then and status == E.ERROR_NOT_ENOUGH_MEMORY)), then)]

        def mapped(view: int) -> None:
            writable = protect_allows(protection, "write") and files[file_id][1]
            self.views[(pid, view)] = self.record(FILE, file_id, first, count, writable)
            self.load(file_id, first, count, reload=False)
        return map_file, mapped, True

    def plan_process(self, op: str, args: Message, pid: int, live: set[int],
                     views: dict[tuple[int, int], ViewRecord]) -> Plan:
        """The SystemCalls the family sends: process calls leave the layer as it
        was, but DestroyProcess (the unmaps of its views, chained); a write or
        read of a view page is the spec's Write or Read."""
        if op == "DestroyProcess" and args.get("pid") in live:
            target = args["pid"]
            steps = [SpecCall("UnmapSharedMemoryFromProcess" if view.kind == SHM
                              else "UnmapFileFromMemory", (("pid", target), ("base", base)))
                     for (q, base), view in sorted(views.items()) if q == target]

            def exited(_: object) -> None:
                for key in [key for key in self.views if key[0] == target]:
                    self.drop(key)
            return (lambda *_: steps or None), exited, False
        if op in ("SyscallVirtualProtect", "SyscallMprotect", "SyscallVirtualAlloc"):
            return self.plan_protect(op, args, pid, views)
        if op == "SyscallMunmap":
            return self.plan_munmap(args, pid, views)
        if op == "SyscallMmap" and args["flags"] & MAP_FIXED:  # the range unmapped first
            return self.plan_munmap(args, pid, views)
        address: Any = args.get("addr")
        vpn = address >> PAGE_SHIFT if type(address) is int else -1
        base = next((b for (q, b), view in views.items()
                     if q == pid and b <= vpn < b + view.count), None)
        if op not in ("WriteUserMemory", "ReadUserMemory") or base is None:
            return (lambda *_: None), None, False
        if op == "ReadUserMemory":
            return (lambda *_: [SpecCall("Read", (("pid", pid), ("vpn", vpn)))]), None, False
        data = bytes.fromhex(args["data"])
        pte = dict(self.snapshot().ptes).get((pid, vpn))
        frame = -1 if pte is None else pte.frame

        def write(post: SharedSnapshot, reply: Any, status: int) -> list[SpecCall]:
            token = dict(post.memory).get(frame, 0)
            return [SpecCall("Write", (("pid", pid), ("vpn", vpn), ("token", token)))]

        def written(_: object) -> None:
            record = self.views.get((pid, base << PAGE_SHIFT))
            if record is not None:
                self.remember_write(record, vpn - base, address & (PAGE_SIZE - 1), data)
        return write, written, False

    @staticmethod
    def plan_protect(op: str, args: Message, pid: int,
                     views: dict[tuple[int, int], ViewRecord]) -> Plan:
        """VirtualProtect, VirtualAlloc(MEM_COMMIT) or mprotect of pages of a view of
        the current process: the spec's step of that name (the machine sends
        page-aligned ranges from a view page; mprotect's PROT_* bits as their PAGE_*
        value; VirtualAlloc's reply, the first page's address, is the step's
        result); other pages and other allocation types are not this layer's."""
        linux, commit = op == "SyscallMprotect", op == "SyscallVirtualAlloc"
        address, size = (args["addr"], args["length"]) if linux else (args["address"],
                                                                      args["size"])
        vpn = address >> PAGE_SHIFT
        if not any(q == pid and b <= vpn < b + view.count for (q, b), view in views.items()) \
                or (commit and args["allocation_type"] != MEM_COMMIT):
            return (lambda *_: None), None, False
        protect = (protect_from_prot(args["prot"]) if linux else args["protect"] if commit
                   else args["new_protect"])
        name = "SyscallMprotect" if linux else "VirtualAlloc" if commit else "VirtualProtect"
        call = SpecCall(name, (("pid", pid), ("vpn", vpn),
                               ("count", page_ceil(size) >> PAGE_SHIFT), ("protect", protect)))
        return (lambda *_: [call]), None, commit

    def plan_munmap(self, args: Message, pid: int,
                    views: dict[tuple[int, int], ViewRecord]) -> Plan:
        """munmap over views of the current process, in address order (chained): a
        view (or piece) wholly inside the range is its Unmap step, a view the range
        covers part of is the spec's SyscallMunmap of that part, which cuts it into
        pieces (model/linux_mm.py; mm/mmap.c do_vmi_munmap splits vma by vma);
        mmap(MAP_FIXED) over views unmaps them the same way first (its private
        pages are the user layer's). A call that fails changes nothing."""
        first, end = args["addr"] >> PAGE_SHIFT, page_ceil(args["addr"] + args["length"])
        last = end >> PAGE_SHIFT
        touched = [(base, view, max(first, base), min(last, base + view.count))
                   for (q, base), view in sorted(views.items())
                   if q == pid and base < last and first < base + view.count]
        steps = [SpecCall("UnmapSharedMemoryFromProcess" if view.kind == SHM
                          else "UnmapFileFromMemory", (("pid", pid), ("base", base)))
                 if (low, high) == (base, base + view.count) else
                 SpecCall("SyscallMunmap", (("pid", pid), ("vpn", low), ("count", high - low)))
                 for base, view, low, high in touched]

        def unmapped(_: object) -> None:
            for base, view, low, high in touched:
                if (low, high) == (base, base + view.count):
                    self.drop((pid, base << PAGE_SHIFT))
                elif (pid, base << PAGE_SHIFT) in self.views:
                    self.cut((pid, base << PAGE_SHIFT), low << PAGE_SHIFT, high << PAGE_SHIFT)
        return (lambda post, reply, status: steps if steps and status == 0 else None), \
            unmapped, False

    @staticmethod
    def vpn(address: Any) -> int:
        return address >> PAGE_SHIFT if type(address) is int and address % PAGE_SIZE == 0 \
            else -1

    @staticmethod
    def page(address: Any) -> int:
        """The vpn of an address an unmap takes (any address inside a view)."""
        return address >> PAGE_SHIFT if type(address) is int and address >= 0 else -1

    @staticmethod
    def record(kind: int, source: int, first: int, pages: int, writable: bool) -> Any:
        return Record(kind, source, first, pages, writable)

    def drop(self, key: tuple[int, int]) -> None:
        if key in self.views:
            self.forget(key)

    def finish(self) -> None:
        """Once no process is left: every file holds the bytes written (NOTHING_LOST);
        once no block is left either, every frame is back (FRAMES)."""
        if self.start_free is None or self.observe("Processes")["processes"]:
            return
        lost = [f"file {file_id} differs from the bytes written"
                for file_id, known in self.expected.items()
                if self.read_file(file_id, len(known)) != bytes(known)]
        if lost:
            raise CheckError("after every process was destroyed: " + "; ".join(lost),
                             [NOTHING_LOST])
        if self.observe("SharedMemory")["blocks"]:
            return
        free = int(self.observe("FrameCounts")["free"])
        if free != self.start_free:
            raise CheckError(f"{free} frames free after every process and block was "
                             f"destroyed, {self.start_free} before the first", [FRAMES])



def shared_map(exchanges: list[Any]) -> list[str]:
    """The blocks, file views and page cache as last reported."""
    out = []
    shared = last_observed(exchanges, "SharedMemory")
    if shared is not None:
        out += [f"block {b['id']}: {b['size']} bytes, permissions {b['permissions']:#x}, "
                f"frames {b['frames']}, refcount {b['refcount']}"
                f"{' (destroyed)' if b['destroyed'] else ''}" for b in shared["blocks"]]
        out += [f"  view of block {v['shm_id']} in process {v['pid']} at {v['base']:#x}"
                for v in shared["views"]]
    mapped = last_observed(exchanges, "MappedFiles")
    if mapped is not None:
        out += [f"file {v['file']} pages {v['first']}..{v['first'] + v['count'] - 1} in "
                f"process {v['pid']} at {v['base']:#x}" for v in mapped["views"]]
        out += ["page cache: " + ", ".join(f"{f}:{k}@{frame:#x}{'*' if dirty else ''}"
                                           for f, k, frame, dirty in mapped["cache"])]
    return out


SHARED = Family(
    name="shared", managers=("PageManager", "VirtualMemoryManager", "SystemCalls",
                             "SharedMemoryManager", "MemoryMappedFiles"),
    setup=shared_setup,
    state_observations=("FrameCounts", "FrameBitmap", "Processes", "SharedMemory",
                        "MappedFiles"),
    spec_observations=("FrameCounts", "Processes", "ProcessBytes", "SharedMemory",
                       "MappedFiles", "FileBytes", "FrameBytes"),
    machine=one_machine(OracleSharedMachine), judge=SharedJudge, memory_map=shared_map)
