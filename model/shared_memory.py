"""SharedMemoryManager: shared memory blocks (seed section 5, issue 5).

The seed's ``shared_blocks`` is ``blocks`` (id -> SharedMemoryBlock, every
block that holds frames: live, or destroyed but still mapped) and
``next_shm_id``. A block is Windows' pagefile-backed section
(CreateFileMapping(INVALID_HANDLE_VALUE, SEC_COMMIT) + MapViewOfFileEx) with
System V shm's lifetime rules. Rules (shm_common.md), each with its source:

- CreateSharedMemory(size, permissions) -> id >= 1, or 0. size a u32 > 0,
  permissions one of PAGE_READONLY, PAGE_READWRITE, PAGE_EXECUTE_READ,
  PAGE_EXECUTE_READWRITE (model/views.py), else ERROR_INVALID_PARAMETER. All
  page_ceil(size) / 4096 frames are taken now, zero-filled, owner
  FrameOwner.SHARED (SEC_COMMIT; CreateFileMapping: "the initial contents of
  the pages ... are 0"); too few free frames -> ERROR_NOT_ENOUGH_MEMORY.
- Ids: next_shm_id counts up from 1 and skips every id whose block still holds
  frames, so an id is never reused while any mapping of the old block exists.
  Every id live (only possible with MAX_SHM_ID below the frame count):
  ERROR_NOT_ENOUGH_MEMORY, as for too few frames.
- MapSharedMemoryToProcess(space, shm_id, virtual_addr, protect=None) -> base
  or 0. protect (default: the block's permissions) is the view's PAGE_* value
  (MapViewOfFile's dwDesiredAccess, shmat's SHM_RDONLY). Checks in order: the
  space's status() code (ERROR_INVALID_HANDLE for a non-space, or a space of
  another subsystem: its VMM is not this manager's); shm_id unknown
  or destroyed -> ERROR_INVALID_HANDLE; protect not a view protection ->
  ERROR_INVALID_PARAMETER; protect allowing an access the block does not ->
  ERROR_ACCESS_DENIED (SHM-3); then placement (model/views.py: a non-u32
  address ERROR_INVALID_PARAMETER, unaligned ERROR_MAPPED_ALIGNMENT, not free
  ERROR_INVALID_ADDRESS, 0 bottom-up from windows_floor); frames for missing
  page tables short -> ERROR_NOT_ENOUGH_MEMORY. The view is an
  ORIGIN_SHARED_MEMORY, MEM_MAPPED allocation whose page i maps the block's
  frame i (AddressSpace.map_view); the block's refcount (``mappings``,
  the set of (pid, base)) grows by one. Any (64 KB aligned) address in each
  process: the same frames, so a write through one view is read through all.
- Pieces (Linux, issue 15): munmap or MAP_FIXED over part of a view
  (model/linux_mm.py) unmaps exactly those pages; what is left is one or two
  pieces, each with its first page in the block (``firsts``: the vma's
  vm_pgoff) and each counted in ``mappings`` (a split vma is a vma of its own
  in shm_nattch: ipc/shm.c shm_open; mm/mmap.c __split_vma; LTP
  munmap01/02: the rest stays accessible, the unmapped part faults). The
  block lives while any piece is attached. The Windows calls below take a
  piece as a view: UnmapSharedMemoryFromProcess at an address in a piece
  unmaps that piece only (the seed has no shmdt, whose rule detaches every
  piece of the attach at its distance vm_pgoff).
- UnmapSharedMemoryFromProcess(space, addr): addr anywhere inside a
  shared-memory view in space unmaps that view (UnmapViewOfFile: Wine
  dlls/kernel32/tests/virtual.c test_MapViewOfFile unmaps at ptr + 100 and
  ptr + 4096; model/views.py view_holding), else ERROR_INVALID_ADDRESS (not a
  u32: ERROR_INVALID_PARAMETER). Clears the PTEs,
  removes the allocation, refcount - 1; a destroyed block whose refcount
  reaches 0 frees its frames now.
- DestroySharedMemory(shm_id): unknown or destroyed -> ERROR_INVALID_HANDLE.
  The id stops being valid for Map and GetSharedMemorySize at once; the frames
  are freed now when nothing maps the block, else at its last unmap
  (shmctl(2) IPC_RMID: "the segment will actually be destroyed only after the
  last process detaches it"; a Windows section lives while a view of it
  exists). Why: freeing a mapped frame would leave live PTEs on a free frame
  (VMM-2) and the next owner's data visible through them (SHM-2).
- GetSharedMemorySize(shm_id): the size as created (shm_segsz), or 0 with
  ERROR_INVALID_HANDLE for an unknown or destroyed id.
- Process exit (DestroyUserSpace) detaches every view through ``detach``, as
  an unmap does. Processes are told apart by pid (SystemCalls gives each its
  own). The status of each call is this manager's ``last_error``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from model.address_space import AddressSpace
from model.errors import ReportsStatus
from model.process_memory import ProcessMemorySpace
from model.user_layout import page_ceil, protect_allows
from model.views import is_view_protect, narrows, place_view, view_holding
from model.virtual_memory import VirtualMemoryManager
from model.x86_paging import is_u32
from spec.abi import (
    MAX_SHM_ID,
    ORIGIN_SHARED_MEMORY,
    PAGE_SHIFT,
    PAGE_SIZE,
    ErrorCode,
    FrameOwner,
)


@dataclass(slots=True)
class SharedMemoryBlock:
    """One block: its size, permissions, frames and the views mapping it."""

    size: int
    permissions: int
    frames: tuple[int, ...]
    destroyed: bool = False
    mappings: set[tuple[int, int]] = field(default_factory=set)  # (pid, view base)


class SharedMemoryManager(ReportsStatus):
    """Shared memory blocks over one VirtualMemoryManager, with the seed's operations."""

    def __init__(self, vmm: VirtualMemoryManager) -> None:
        self.vmm = vmm
        self.blocks: dict[int, SharedMemoryBlock] = {}
        self.next_shm_id = 1
        self.views: dict[tuple[int, int], int] = {}  # (pid, piece base) -> shm id
        #: (pid, piece base) -> the piece's first page in its block (vm_pgoff)
        self.firsts: dict[tuple[int, int], int] = {}
        self.last_error = ErrorCode.ERROR_SUCCESS

    # -- seed operations -------------------------------------------------------

    def CreateSharedMemory(self, size: int, permissions: int) -> int:
        """A new zero-filled block of size bytes: its id, or 0."""
        if not (is_u32(size) and size > 0 and is_view_protect(permissions)):
            return self._fail(ErrorCode.ERROR_INVALID_PARAMETER, 0)
        count = page_ceil(size) // PAGE_SIZE
        pageman = self.vmm.pageman
        if pageman.free_count() < count:
            return self._fail(ErrorCode.ERROR_NOT_ENOUGH_MEMORY, 0)
        shm_id = self.next_shm_id
        # The ids passed over are distinct live ids: at most len(self.blocks).
        for _ in range(len(self.blocks)):
            if shm_id not in self.blocks:
                break
            shm_id = shm_id % MAX_SHM_ID + 1
        if shm_id in self.blocks:  # every id is live
            return self._fail(ErrorCode.ERROR_NOT_ENOUGH_MEMORY, 0)
        frames = tuple(pageman.take_frame(FrameOwner.SHARED) for _ in range(count))
        self.blocks[shm_id] = SharedMemoryBlock(size, permissions, frames)
        self.next_shm_id = shm_id % MAX_SHM_ID + 1
        return self._ok(shm_id)

    def MapSharedMemoryToProcess(self, space: ProcessMemorySpace, shm_id: int,
                                 virtual_addr: int, protect: int | None = None) -> int:
        """Map the block into space at virtual_addr (0: chosen): the view's base, or 0."""
        if not self._ours(space):
            return self._fail(ErrorCode.ERROR_INVALID_HANDLE, 0)
        code = space.status()
        if code != ErrorCode.ERROR_SUCCESS:
            return self._fail(code, 0)
        block = self._live(shm_id)
        if block is None:
            return self._fail(ErrorCode.ERROR_INVALID_HANDLE, 0)
        if protect is None:
            protect = block.permissions
        if not is_view_protect(protect):
            return self._fail(ErrorCode.ERROR_INVALID_PARAMETER, 0)
        if not narrows(protect, block.permissions):
            return self._fail(ErrorCode.ERROR_ACCESS_DENIED, 0)
        length = len(block.frames) * PAGE_SIZE
        base, code = place_view(space, virtual_addr, length)
        if code != ErrorCode.ERROR_SUCCESS:
            return self._fail(code, 0)
        if space.missing_tables(base, base + length) > space.free_frames():
            return self._fail(ErrorCode.ERROR_NOT_ENOUGH_MEMORY, 0)
        space.map_view(base, block.frames, protect, ORIGIN_SHARED_MEMORY, self)
        block.mappings.add((space.pid, base))
        self.views[(space.pid, base)] = shm_id
        self.firsts[(space.pid, base)] = 0
        return self._ok(base)

    def UnmapSharedMemoryFromProcess(self, space: ProcessMemorySpace, addr: int) -> bool:
        """Unmap the view holding addr from space; True, or False."""
        if not self._ours(space):
            return self._fail(ErrorCode.ERROR_INVALID_HANDLE, False)
        base, code = view_holding(space, addr, self, self.views)
        if code != ErrorCode.ERROR_SUCCESS:
            return self._fail(code, False)
        self.detach(space, base)
        return self._ok(True)

    def DestroySharedMemory(self, shm_id: int) -> bool:
        """Invalidate the id; the frames go now, or at the block's last unmap."""
        block = self._live(shm_id)
        if block is None:
            return self._fail(ErrorCode.ERROR_INVALID_HANDLE, False)
        block.destroyed = True
        if not block.mappings:
            self._free(shm_id)
        return self._ok(True)

    def GetSharedMemorySize(self, shm_id: int) -> int:
        """The block's size in bytes as created, or 0."""
        block = self._live(shm_id)
        if block is None:
            return self._fail(ErrorCode.ERROR_INVALID_HANDLE, 0)
        return self._ok(block.size)

    def _ours(self, space: object) -> bool:
        """Whether space is a process space of this manager's VirtualMemoryManager: a
        space of another subsystem (its frames and tables another PageManager's)
        is not a handle this manager knows, ERROR_INVALID_HANDLE."""
        return isinstance(space, ProcessMemorySpace) and space.vmm is self.vmm

    # -- ViewOwner ---------------------------------------------------------------

    def detach(self, space: AddressSpace, base: int) -> None:
        """Unmap the view based at base from space (pre: it is one of this manager's)."""
        shm_id = self.views.pop((space.pid, base))
        self.firsts.pop((space.pid, base), None)
        space.unmap_view(base)
        block = self.blocks[shm_id]
        block.mappings.discard((space.pid, base))
        if block.destroyed and not block.mappings:
            self._free(shm_id)

    def unmap_pages(self, space: AddressSpace, base: int, start: int, end: int) -> None:
        """Unmap the pages [start, end) of the piece based at base, a strict part of it
        (pre: one of this manager's pieces): what is left is one or two pieces, each
        counted in the block's ``mappings`` (shm_nattch counts vmas: ipc/shm.c
        shm_open on the vma split), the right one with its first page in the block.
        The block keeps its frames (it has a piece left)."""
        key = (space.pid, base)
        shm_id, first = self.views.pop(key), self.firsts.pop(key, 0)
        block = self.blocks[shm_id]
        block.mappings.discard(key)
        _, right = space.split_view(base, start, end)
        pieces = [] if start == base else [(base, first)]
        if right is not None:
            pieces.append((right, first + ((right - base) >> PAGE_SHIFT)))
        for piece, piece_first in pieces:
            self.views[(space.pid, piece)] = shm_id
            self.firsts[(space.pid, piece)] = piece_first
            block.mappings.add((space.pid, piece))

    def fold_dirty(self, space: AddressSpace, base: int, vpn: int) -> None:
        """Nothing to keep: a block is never written back (its frames are its data)."""

    def may_write(self, space: AddressSpace, base: int) -> bool:
        """Unless the view is read-only (shmat's SHM_RDONLY opens the segment's file
        FMODE_READ, so the vma lacks VM_MAYWRITE: ipc/shm.c do_shmat)."""
        allocation = space.allocations.get(base)
        return allocation is not None and protect_allows(allocation.allocation_protect, "write")

    # -- observation ---------------------------------------------------------------

    def frames(self) -> list[int]:
        """Every frame a block holds (SYS-1's "shared" claims)."""
        return [frame for block in self.blocks.values() for frame in block.frames]

    # -- private -------------------------------------------------------------------

    def _live(self, shm_id: int) -> SharedMemoryBlock | None:
        block = self.blocks.get(shm_id) if type(shm_id) is int else None
        return None if block is None or block.destroyed else block

    def _free(self, shm_id: int) -> None:
        release = self.vmm.pageman.release_frame
        for frame in self.blocks.pop(shm_id).frames:
            release(frame)


__all__ = ["SharedMemoryBlock", "SharedMemoryManager"]
