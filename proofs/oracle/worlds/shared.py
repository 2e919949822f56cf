"""The shared-memory and mapped-file managers in the model world.

Two managers (PROTOCOL.md, "Shared memory and mapped files"), built on the
user part's SystemCalls as the subsystem wires them (model/memory_subsystem.py):
``SharedMemoryManager(vmm)`` and ``MemoryMappedFiles(vmm, current process)``,
so views map into the processes SystemCalls made. Decisions:

- The seed's ``ProcessMemorySpace* space`` is a pid: an unknown (or destroyed)
  pid is a space that is not live, the model's ERROR_INVALID_HANDLE.
- The seed's default ``protect`` (None: the block's permissions) is protect 0
  (JSON arguments carry no null; 0 is no PAGE_* value).
- The protocol cannot pass an ``fs_node*``: ``CreateFile(size, writable)``
  (the protocol's, not the seed's) makes a MemoryFileNode of size bytes and
  returns its file id (1, 2, ...); byte i of file n is (7i + 13(n - 1) + 1)
  mod 251 (proofs.machines.shared_memory.pattern). MapFileToMemory's ``file`` is such
  an id; any other value is not a node (ERROR_INVALID_HANDLE). CreateFile
  fails (0, ERROR_INVALID_PARAMETER) for a size that is not a u32 or a
  writable that is not a boolean.
- Results: ids, sizes and bases are numbers (0 on failure); Unmap*, Destroy*
  and Sync return booleans. ``error`` is the manager's last_error (Windows).
- An argument of the wrong JSON type is refused before the model sees it
  (0 / false, ERROR_INVALID_PARAMETER; nothing changes), except where the
  model documents its own check (a non-node file: ERROR_INVALID_HANDLE).
- Observations never change the state: SharedMemory and MappedFiles report
  the managers' records (files and the page cache by the protocol's file id),
  FileBytes reads a node, FrameBytes reads a physical frame without a PTE.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from model.file_node import MemoryFileNode
from model.mapped_files import MemoryMappedFiles
from model.page_manager import PageManager
from model.process_memory import ProcessMemorySpace
from model.shared_memory import SharedMemoryManager
from model.virtual_memory import VirtualMemoryManager
from model.x86_paging import is_u32
from proofs.oracle.managers import Calls, Manager, Message, PartFactory, Result, WorldPart
from proofs.oracle.worlds.user import UserPart
from spec.abi import PAGE_SIZE, ErrorCode

NEEDS = ("PageManager", "VirtualMemoryManager", "SystemCalls")
MANAGERS: tuple[Manager, ...] = (
    Manager("SharedMemoryManager", NEEDS, {
        "CreateSharedMemory": ("size", "permissions"),
        "MapSharedMemoryToProcess": ("pid", "shm_id", "virtual_addr", "protect"),
        "UnmapSharedMemoryFromProcess": ("pid", "addr"),
        "DestroySharedMemory": ("shm_id",),
        "GetSharedMemorySize": ("shm_id",),
    }, ("SharedMemory", "FrameBytes"),
        frozenset({"UnmapSharedMemoryFromProcess", "DestroySharedMemory"})),
    Manager("MemoryMappedFiles", NEEDS, {
        "CreateFile": ("size", "writable"),
        "MapFileToMemory": ("file", "offset", "size", "protection"),
        "UnmapFileFromMemory": ("addr",),
        "SyncMappedFile": ("addr", "invalidate"),
    }, ("MappedFiles", "FileBytes"), frozenset({"UnmapFileFromMemory", "SyncMappedFile"})),
)
#: Bytes FileBytes and FrameBytes read at most.
READ_LIMIT = PAGE_SIZE
#: The largest file CreateFile makes (the protocol's bound, 1 MB).
MAX_FILE = 1 << 20
_NOT_A_NODE = object()


def pattern(file_id: int, length: int) -> bytes:
    """A new file's bytes (proofs.machines.shared_memory.pattern of index file_id - 1)."""
    return bytes((i * 7 + (file_id - 1) * 13 + 1) % 251 for i in range(length))


class SharedPart:
    """SharedMemoryManager and MemoryMappedFiles behind the protocol."""

    def __init__(self, pm: PageManager, vmm: VirtualMemoryManager,
                 parts: Sequence[WorldPart] = ()) -> None:
        user = next(p for p in parts if isinstance(p, UserPart))
        self.pm = pm
        self.syscalls = user.syscalls
        self.shm = SharedMemoryManager(vmm)
        self.mmf = MemoryMappedFiles(vmm, lambda: self.syscalls.current)
        #: The protocol's file ids (CreateFile) -> nodes.
        self.files: dict[int, MemoryFileNode] = {}
        self.file_error = ErrorCode.ERROR_SUCCESS
        self._create_error = False

    def calls(self) -> Calls:
        shm, mmf = self.shm, self.mmf

        def shm_error() -> int:
            return int(shm.last_error)

        def mmf_error() -> int:
            return int(self.file_error) if self._create_error else int(mmf.last_error)

        def typed(fn: Callable[..., Result], fail: Result, error: Callable[[ErrorCode], None],
                  bools: tuple[int, ...] = ()) -> Callable[..., Result]:
            def call(*args: Any) -> Result:
                if not all(type(a) is (bool if n in bools else int)
                           for n, a in enumerate(args)):
                    error(ErrorCode.ERROR_INVALID_PARAMETER)
                    return fail
                return fn(*args)
            return call

        def shm_fail(code: ErrorCode) -> None:
            shm.last_error = code

        def mmf_fail(code: ErrorCode) -> None:
            self._create_error = False
            mmf.last_error = code

        def mmf_call(fn: Callable[..., Any]) -> Callable[..., Result]:
            def call(*args: Any) -> Result:
                self._create_error = False
                result: Result = fn(*args)
                return result
            return call

        return {
            ("SharedMemoryManager", "CreateSharedMemory"): (
                typed(shm.CreateSharedMemory, 0, shm_fail), shm_error),
            ("SharedMemoryManager", "MapSharedMemoryToProcess"): (
                typed(self._map_block, 0, shm_fail), shm_error),
            ("SharedMemoryManager", "UnmapSharedMemoryFromProcess"): (
                typed(self._unmap_block, False, shm_fail), shm_error),
            ("SharedMemoryManager", "DestroySharedMemory"): (
                typed(shm.DestroySharedMemory, False, shm_fail), shm_error),
            ("SharedMemoryManager", "GetSharedMemorySize"): (
                typed(shm.GetSharedMemorySize, 0, shm_fail), shm_error),
            ("MemoryMappedFiles", "CreateFile"): (self._create_file, mmf_error),
            ("MemoryMappedFiles", "MapFileToMemory"): (
                typed(mmf_call(self._map_file), 0, mmf_fail), mmf_error),
            ("MemoryMappedFiles", "UnmapFileFromMemory"): (
                typed(mmf_call(mmf.UnmapFileFromMemory), False, mmf_fail), mmf_error),
            ("MemoryMappedFiles", "SyncMappedFile"): (
                typed(mmf_call(mmf.SyncMappedFile), False, mmf_fail, (1,)), mmf_error),
        }

    def _space(self, pid: int) -> ProcessMemorySpace | None:
        return self.syscalls.processes.get(pid)

    def _map_block(self, pid: int, shm_id: int, virtual_addr: int, protect: int) -> int:
        space: Any = self._space(pid)
        return self.shm.MapSharedMemoryToProcess(space, shm_id, virtual_addr, protect or None)

    def _unmap_block(self, pid: int, addr: int) -> bool:
        space: Any = self._space(pid)
        return self.shm.UnmapSharedMemoryFromProcess(space, addr)

    def _map_file(self, file: int, offset: int, size: int, protection: int) -> int:
        node: Any = self.files.get(file, _NOT_A_NODE)
        return self.mmf.MapFileToMemory(node, offset, size, protection)

    def _create_file(self, size: Any, writable: Any) -> int:
        self._create_error = True
        if type(size) is not int or not 0 <= size <= MAX_FILE or type(writable) is not bool \
                or not is_u32(size):
            self.file_error = ErrorCode.ERROR_INVALID_PARAMETER
            return 0
        file_id = len(self.files) + 1
        self.files[file_id] = MemoryFileNode(pattern(file_id, size), writable)
        self.file_error = ErrorCode.ERROR_SUCCESS
        return file_id

    # -- observations -----------------------------------------------------------------

    def observers(self) -> Mapping[str, Callable[..., Message]]:
        return {"SharedMemory": self._shared_memory, "MappedFiles": self._mapped_files,
                "FileBytes": self._file_bytes, "FrameBytes": self._frame_bytes}

    def _protocol_id(self) -> dict[int, int]:
        """The model's file id -> the protocol's."""
        ours = {id(node): file_id for file_id, node in self.files.items()}
        return {model_id: ours[id(node)] for model_id, node in self.mmf.files.items()}

    def _shared_memory(self) -> Message:
        shm, processes = self.shm, self.syscalls.processes
        views = []
        for (pid, base), shm_id in sorted(shm.views.items()):
            space = processes.get(pid)
            allocation = None if space is None else space.allocations.get(base)
            views.append({"pid": pid, "base": base, "shm_id": shm_id, "protect": 0 if
                          allocation is None else allocation.allocation_protect})
        return {"blocks": [{"id": i, "size": b.size, "permissions": b.permissions,
                            "frames": list(b.frames), "destroyed": b.destroyed,
                            "refcount": len(b.mappings)} for i, b in sorted(shm.blocks.items())],
                "views": views}

    def _mapped_files(self) -> Message:
        mmf, ids = self.mmf, self._protocol_id()
        return {"files": [{"id": i, "size": node.length(), "writable": node.writable}
                          for i, node in sorted(self.files.items())],
                "cache": sorted([[ids[f], k, page.frame, mmf.is_dirty(page)]
                                 for (f, k), page in mmf.cache.items()]),
                "views": [{"pid": pid, "base": base, "file": ids[v.file], "first": v.first,
                           "count": v.count, "protect": v.protect}
                          for (pid, base), v in sorted(mmf.views.items())]}

    def _file_bytes(self, file: int, offset: int, length: int) -> Message:
        node = self.files.get(file) if type(file) is int else None
        if node is None or type(offset) is not int or type(length) is not int or not (
                0 <= length <= READ_LIMIT and 0 <= offset and offset + length <= node.length()):
            return {"data": None}
        return {"data": node.read(offset, length).hex()}

    def _frame_bytes(self, frame: int) -> Message:
        if type(frame) is not int or not 0 <= frame < self.pm.nframes:
            return {"data": None}
        page = self.pm.memory.get(frame)
        return {"data": (bytes(PAGE_SIZE) if page is None else bytes(page)).hex()}


PARTS: tuple[PartFactory, ...] = (SharedPart,)
