"""MemorySubsystem: boot and kernel-wide services (seed section 9).

Holds the managers (``pageman``, ``virmem``, ``kheap``, ``kernel``: the
section-3 allocation functions) and the records of what it handed out
(``stacks``; ``pages`` and ``mapped`` for the unified interface of section 10)
and the processes with their system calls (``syscalls``, section 7), shared
memory (``shared_memory``) and file views (``mapped_files``, section 5; its
calls act on ``syscalls.current``). ``dosmem`` is None until
InitializeDosMemory. Decisions:

- InitializeMemorySubsystem(kernel_end) boots in the tutorial's order: the
  placement arena from kernel_end (kernel_memory.py), the frame bitmap's
  nframes/8 bytes from it (``frame_bitmap_address``; the tutorial's
  kmalloc(INDEX_FROM_BIT(nframes)) allocates a quarter of that, a known bug),
  InitializePhysicalMemory(placement_end, memory_size) so everything below the
  arena's end is reserved and identity mapped, CreateKernelPageDirectory,
  EnablePaging, CreateKernelHeap(KHEAP_START, KHEAP_START + KHEAP_INITIAL_SIZE,
  KHEAP_MAX). kernel_end below 1 MB (real-mode, BIOS and DOS memory stay
  reserved: SYS-3) or an arena ending above the 4 MB identity region:
  ERROR_INVALID_PARAMETER. All or nothing: a failing step (too little memory for
  the heap, a bad memory_size) leaves a fresh, unbooted subsystem. Twice:
  ERROR_ALREADY_INITIALIZED.
- The steps are callable alone in boot order (``initialize_physical`` is the
  first one, which has no seed name); a step before its predecessor:
  ERROR_NOT_READY; a step done twice: ERROR_ALREADY_INITIALIZED.
  EnablePaging sets CR0.PG (``paging_enabled``) with the kernel directory in CR3.
  CreateKernelHeap makes a supervisor, writable heap that must lie in
  [0xC0000000, KERNEL_STACK_AREA_START) (ERROR_INVALID_PARAMETER otherwise) and
  switches the allocation functions from the placement arena to it.
- AllocateKernelStack returns the stack's top (the initial ESP; i386 stacks grow
  down) of KERNEL_STACK_SIZE bytes (8 KB, Linux i386 THREAD_SIZE) of supervisor
  writable pages. Slot i of the stack area holds one unmapped guard page and the
  stack above it, so an overflow faults (as Linux's vmalloc'd stacks with guard
  pages); the lowest free slot is taken. No frames or no free slot:
  ERROR_NOT_ENOUGH_MEMORY, nothing mapped. Needs paging enabled.
- FreeKernelStack(stack): not an int in u32: ERROR_INVALID_PARAMETER; not a top
  handed out and not freed: ERROR_INVALID_ADDRESS; else unmaps its pages, whose
  frames return to the PageManager.
- GetAvailableMemory / GetUsedMemory / GetTotalMemory: free, used and all frames
  times 4096, saturating at 0xFFFFFFFF when the value needs 33 bits (4 GiB of
  memory), as GlobalMemoryStatus reports -1 on overflow (Microsoft Learn,
  GlobalMemoryStatus, Remarks). Before physical memory is initialised: 0 with
  ERROR_NOT_READY.
- InitializeDosMemory() (not a seed name: the seed's MemorySubsystem holds a
  DosMemoryManager but names no call that makes it) creates ``dosmem`` over the
  booted PageManager: conventional memory and UMBs in the reserved first MB,
  the XMS pool in the top DOS_XMS_POOL bytes of physical memory (free after
  boot, since frames are taken lowest first; XMS memory is "above 1 MB", and
  the kernel's image and placement arena sit right above 1 MB), EMS pages
  taken from the PageManager when allocated. Not booted, or done twice:
  ERROR_NOT_READY / ERROR_ALREADY_INITIALIZED; a pool that is not free or too
  little memory: ERROR_NOT_ENOUGH_MEMORY with nothing claimed.
- frame_owners() is the SYS-1 observation: every frame some owner claims, with
  the owner's name, each claim checked against the PageManager's owner kind.
  A shared-memory block's frames are claimed once as "shared" and each page
  cache frame once as "file" (FrameOwner.SHARED both), however many views map
  them; processes' ``frames()`` leave view pages out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from model.dos_memory import DosMemoryManager
from model.errors import ReportsStatus
from model.kernel_heap import KernelHeap
from model.kernel_memory import KernelMemory, placement_limit, valid_kernel_end
from model.mapped_files import MemoryMappedFiles
from model.page_manager import PageManager
from model.page_tables import PageDirectory, PageTable
from model.shared_memory import SharedMemoryManager
from model.syscalls import SystemCalls
from model.virtual_memory import VirtualMemoryManager
from model.x86_paging import align_down, is_u32
from spec.abi import (
    ADDRESS_LIMIT,
    DEFAULT_MEMORY_SIZE,
    DOS_XMS_POOL,
    KERNEL_SPACE_START,
    KERNEL_STACK_AREA_START,
    KERNEL_STACK_SIZE,
    KHEAP_INITIAL_SIZE,
    KHEAP_MAX,
    KHEAP_START,
    PAGE_SHIFT,
    PAGE_SIZE,
    PTE_PRESENT,
    SATURATED,
    STACK_SLOT_SIZE,
    STACK_SLOTS,
    ErrorCode,
    FrameOwner,
)

#: The PageManager owner each kind of claim in frame_owners must agree with.
CLAIM_OWNER: dict[str, tuple[FrameOwner, ...]] = {
    "reserved": (FrameOwner.RESERVED,), "directory": (FrameOwner.DIRECTORY,),
    "table": (FrameOwner.TABLE,), "heap": (FrameOwner.MAPPED,), "stack": (FrameOwner.MAPPED,),
    "page": (FrameOwner.MAPPED,), "mapped": (FrameOwner.MAPPED,), "held": (FrameOwner.HELD,),
    # a process's committed page: mapped by its PTE, or held while PAGE_NOACCESS
    "user": (FrameOwner.MAPPED, FrameOwner.HELD),
    # the XMS pool and the EMS pages' storage (the first MB is "reserved")
    "dos": (FrameOwner.HELD,),
    # a shared-memory block's frames and the file page cache's (issue 5)
    "shared": (FrameOwner.SHARED,), "file": (FrameOwner.SHARED,),
}



def fresh(manager: object, *args: object) -> None:
    """Reset manager to the state its constructor gives it, keeping the object."""
    type(manager).__init__(manager, *args)


def stack_top(slot: int) -> int:
    """The top of the stack in slot (its guard page is the slot's first page)."""
    return KERNEL_STACK_AREA_START + (slot + 1) * STACK_SLOT_SIZE


class MemorySubsystem(ReportsStatus):
    """The whole kernel memory stack, booted in order."""

    def __init__(self, memory_size: int = DEFAULT_MEMORY_SIZE) -> None:
        self.memory_size = memory_size
        self.pageman = PageManager()
        self.virmem = VirtualMemoryManager(self.pageman)
        self.kheap: KernelHeap | None = None
        self.dosmem: DosMemoryManager | None = None
        self.kernel = KernelMemory(self.virmem)
        #: The processes and their system calls (section 7; issue 4).
        self.syscalls = SystemCalls(self.virmem)
        #: Shared memory and memory-mapped files (section 5; issue 5).
        self.shared_memory = SharedMemoryManager(self.virmem)
        self.mapped_files = MemoryMappedFiles(self.virmem, lambda: self.syscalls.current)
        self.paging_enabled = False
        self.frame_bitmap_address = 0
        self.stacks: set[int] = set()
        #: GetFreePage pages and (directory physical address, virtual) of MapPage
        #: mappings: kept here so frame_owners sees every owner (memory_interface.py).
        self.pages: set[int] = set()
        self.mapped: set[tuple[int, int]] = set()
        #: Search caches, as FrameBitmap's hint: every stack slot below stack_hint,
        #: every page-area page below page_hint is in use.
        self.stack_hint = 0
        self.page_hint = 0
        self.last_error = ErrorCode.ERROR_SUCCESS

    # -- seed operations: boot -------------------------------------------

    def InitializeMemorySubsystem(self, kernel_end: int) -> bool:
        """Boot everything from kernel_end; all or nothing."""
        if not self.initialize_physical(kernel_end):
            return False  # refused before it changed anything (its own checks)
        booted = (self.CreateKernelPageDirectory() is not None
                  and self.EnablePaging()
                  and self.CreateKernelHeap(KHEAP_START, KHEAP_START + KHEAP_INITIAL_SIZE,
                                            KHEAP_MAX) is not None)
        if not booted:
            code = self.last_error
            self._reset()
            return self._fail(code, False)
        return self._ok(True)

    def initialize_physical(self, kernel_end: int) -> bool:
        """Boot step 1: placement arena, frame bitmap, physical memory below it reserved."""
        if self.kernel.kernel_end or self.pageman.initialized:
            return self._fail(ErrorCode.ERROR_ALREADY_INITIALIZED, False)
        size = self.memory_size
        if not (valid_kernel_end(kernel_end) and type(size) is int
                and placement_limit(kernel_end) < align_down(size) and size <= ADDRESS_LIMIT):
            return self._fail(ErrorCode.ERROR_INVALID_PARAMETER, False)
        # Checked above: none of these three can fail now.
        self.kernel.initialize_placement(kernel_end)
        self.frame_bitmap_address = self.kernel.AllocateKernelMemory(
            (size // PAGE_SIZE + 31) // 32 * 4)
        self.pageman.InitializePhysicalMemory(self.kernel.placement_end, size)
        return self._ok(True)

    def CreateKernelPageDirectory(self) -> PageDirectory | None:
        """Boot step 2: the kernel directory with the identity map (InitializePaging)."""
        if self.virmem.kernel_directory is not None:
            return self._fail(ErrorCode.ERROR_ALREADY_INITIALIZED, None)
        if not self.pageman.initialized:
            return self._fail(ErrorCode.ERROR_NOT_READY, None)
        if not self.virmem.InitializePaging():
            return self._fail(self.virmem.last_error, None)
        return self._ok(self.virmem.kernel_directory)

    def EnablePaging(self) -> bool:
        """Boot step 3: load CR3 with the kernel directory and set CR0.PG."""
        if self.paging_enabled:
            return self._fail(ErrorCode.ERROR_ALREADY_INITIALIZED, False)
        directory = self.virmem.kernel_directory
        if directory is None:
            return self._fail(ErrorCode.ERROR_NOT_READY, False)
        self.virmem.SwitchPageDirectory(directory)
        self.paging_enabled = True
        return self._ok(True)

    def CreateKernelHeap(self, start: int, end: int, max: int) -> KernelHeap | None:
        """Boot step 4: the kernel heap (supervisor, writable); allocations move to it."""
        if self.kheap is not None:
            return self._fail(ErrorCode.ERROR_ALREADY_INITIALIZED, None)
        if not (is_u32(start) and is_u32(end) and is_u32(max)
                and KERNEL_SPACE_START <= start and max <= KERNEL_STACK_AREA_START):
            return self._fail(ErrorCode.ERROR_INVALID_PARAMETER, None)
        if not self.paging_enabled:
            return self._fail(ErrorCode.ERROR_NOT_READY, None)
        heap = KernelHeap(self.virmem)
        if heap.Create(start, end, max, True, False) is None:
            return self._fail(heap.last_error, None)
        self.kheap = self.kernel.heap = heap
        return self._ok(heap)

    # -- seed operations: stacks -------------------------------------------

    def AllocateKernelStack(self) -> int:
        """Map a KERNEL_STACK_SIZE stack above an unmapped guard page; its top, or 0."""
        directory = self.virmem.kernel_directory
        if not self.paging_enabled or directory is None:
            return self._fail(ErrorCode.ERROR_NOT_READY, 0)
        slot = self.stack_hint
        # The slots passed over are distinct stacks: at most len(self.stacks).
        for _ in range(len(self.stacks)):
            if stack_top(slot) not in self.stacks:
                break
            slot += 1
        self.stack_hint = slot
        top = stack_top(slot)
        pages = range(top - KERNEL_STACK_SIZE, top, PAGE_SIZE)
        tables = {page >> 22 for page in pages if directory.tables[page >> 22] is None}
        if (slot >= STACK_SLOTS or top in self.stacks
                or self.pageman.free_count() < len(pages) + len(tables)):
            return self._fail(ErrorCode.ERROR_NOT_ENOUGH_MEMORY, 0)
        for page in pages:
            self.virmem.AllocPage(directory, page, True, True)
        self.stacks.add(top)
        return self._ok(top)

    def FreeKernelStack(self, stack: int) -> bool:
        """Unmap a stack AllocateKernelStack returned; its frames are freed."""
        if not is_u32(stack):
            return self._fail(ErrorCode.ERROR_INVALID_PARAMETER, False)
        directory = self.virmem.kernel_directory
        if stack not in self.stacks or directory is None:
            return self._fail(ErrorCode.ERROR_INVALID_ADDRESS, False)
        for page in range(stack - KERNEL_STACK_SIZE, stack, PAGE_SIZE):
            self.virmem.UnmapVirtualAddress(directory, page)
        self.stacks.remove(stack)
        self.stack_hint = min(self.stack_hint, (stack - KERNEL_STACK_AREA_START)
                              // STACK_SLOT_SIZE - 1)
        return self._ok(True)

    # -- seed operations: statistics -----------------------------------------

    def GetAvailableMemory(self) -> int:
        return self._bytes(lambda: self.pageman.free_count())

    def GetUsedMemory(self) -> int:
        return self._bytes(lambda: self.pageman.frames.used)

    def GetTotalMemory(self) -> int:
        return self._bytes(lambda: self.pageman.nframes)

    # -- observation -------------------------------------------------------

    def frame_owners(self) -> dict[int, str]:
        """Frame -> owner name for every frame exactly one owner claims (SYS-1).

        Claims: reserved frames below the reserved end; every live directory;
        every page table linked in one; the frames behind the heap's mapped pages
        in [start, end), each live stack's pages, the GetFreePage pages and the
        MapPage mappings; the committed pages of every process (``syscalls``, mapped
        or held while PAGE_NOACCESS; view pages left out); each shared-memory block's
        frames and each page-cache frame, once; frames held after RequestFrame. A
        frame claimed twice, or whose PageManager owner kind disagrees with its claim,
        is left out, as is an allocated frame nobody claims: SYS-1 holds exactly
        when the keys are the allocated frames.
        """
        pm = self.pageman
        claims: list[tuple[int, str]] = [
            (frame, "reserved") for frame in range(pm.reserved_end)
            if pm.owner[frame] == FrameOwner.RESERVED]
        tables: dict[int, PageTable] = {}
        for directory in self.virmem.directories.values():
            claims.append((directory.physical_addr >> PAGE_SHIFT, "directory"))
            tables.update((id(table), table) for table in directory.tables if table is not None)
        claims += [(table.physical_addr >> PAGE_SHIFT, "table") for table in tables.values()]
        heap = self.kheap
        kernel_directory = self.virmem.kernel_directory
        if kernel_directory is not None:
            if heap is not None and heap.created:
                claims += [(self._frame_at(kernel_directory, page), "heap")
                           for page in range(heap.start_address, heap.end_address, PAGE_SIZE)]
            for top in self.stacks:
                claims += [(self._frame_at(kernel_directory, page), "stack")
                           for page in range(top - KERNEL_STACK_SIZE, top, PAGE_SIZE)]
            claims += [(self._frame_at(kernel_directory, page), "page") for page in self.pages]
        for directory_address, page in self.mapped:
            owner = self.virmem.directories.get(directory_address)
            if owner is not None:
                claims.append((self._frame_at(owner, page), "mapped"))
        user = [frame for space in self.syscalls.processes.values() for frame in space.frames()]
        claims += [(frame, "user") for frame in user]
        dos = set() if self.dosmem is None else self.dosmem.xms.frames() | self.dosmem.ems.frames()
        claims += [(frame, "dos") for frame in dos]
        claims += [(frame, "shared") for frame in self.shared_memory.frames()]
        claims += [(frame, "file") for frame in self.mapped_files.frames()]
        owned = set(user) | dos
        claims += [(frame, "held") for frame in range(pm.nframes)
                   if pm.owner[frame] == FrameOwner.HELD and frame not in owned]
        counts = Counter(frame for frame, _ in claims)
        return {frame: name for frame, name in claims
                if counts[frame] == 1 and 0 <= frame < pm.nframes
                and pm.owner[frame] in CLAIM_OWNER[name]}

    def InitializeDosMemory(self) -> DosMemoryManager | None:
        """Create ``dosmem`` (see the module docstring); it, or None."""
        if self.kheap is None:
            return self._fail(ErrorCode.ERROR_NOT_READY, None)
        if self.dosmem is not None:
            return self._fail(ErrorCode.ERROR_ALREADY_INITIALIZED, None)
        end = self.pageman.nframes * PAGE_SIZE
        dos = DosMemoryManager(self.pageman, xms_start=end - DOS_XMS_POOL, xms_end=end)
        if not dos.ready:
            return self._fail(ErrorCode.ERROR_NOT_ENOUGH_MEMORY, None)
        self.dosmem = dos
        return self._ok(dos)

    # -- private -----------------------------------------------------------

    def _reset(self) -> None:
        """Back to a fresh, unbooted subsystem (a boot that ran out of frames), in
        place: the manager objects a caller holds stay this subsystem's."""
        fresh(self.pageman)
        fresh(self.virmem, self.pageman)
        self.kheap = None
        fresh(self.kernel, self.virmem)
        fresh(self.syscalls, self.virmem)
        fresh(self.shared_memory, self.virmem)
        fresh(self.mapped_files, self.virmem, lambda: self.syscalls.current)
        self.dosmem = None
        self.paging_enabled = False
        self.frame_bitmap_address = 0

    @staticmethod
    def _frame_at(directory: PageDirectory, page: int) -> int:
        """The frame a present PTE maps at page in directory; -1 when unmapped."""
        table = directory.tables[page >> 22]
        entry = 0 if table is None else table.entries[(page >> PAGE_SHIFT) & 0x3FF]
        return entry >> PAGE_SHIFT if entry & PTE_PRESENT else -1

    def _bytes(self, frames: Callable[[], int]) -> int:
        """frames() * PAGE_SIZE, saturated to 32 bits; 0 before physical memory exists."""
        if not self.pageman.initialized:
            return self._fail(ErrorCode.ERROR_NOT_READY, 0)
        return self._ok(min(frames() * PAGE_SIZE, SATURATED))

