"""Boundaries no other test reached (issue 18's surviving mutants and their class).

A sample of mutants of model/ survived because no test or machine produced
the boundary where the mutated line matters. Each test here drives one such
boundary and compares the documented result exactly, reading the outcome
through a path independent of the code under test:

1. kernel-heap headers and footers that straddle a page boundary (every
   offset a 12-byte header or an 8-byte footer can straddle at), read back
   byte by byte through the page tables and the frames, not through the
   heap's own reader (``KernelHeap._spans``);
2. a file whose last page holds one byte, and the last byte of every page
   and of the file: a dirty write there reaches the file on sync, unmap and
   process exit (``MemoryMappedFiles._store``);
3. exact exhaustion of frames: every call that takes frames succeeds when
   exactly as many are free and fails with its "not enough memory" code,
   changing nothing, when one fewer are; UnreservePage(0) (frame 0 is a frame
   like the others); Contract on a heap whose min_size is above its initial
   length; a memory pool whose heap's directory was destroyed; a valid 'Z'
   type byte on an MCB that does not end its chain, with the UMBs linked;
4. error codes: VirtualProtect's for a range into kernel space or past 4 GiB
   (the module's ``_range_error``: ERROR_INVALID_PARAMETER), and last_error
   after brk(0) (the query succeeds: ERROR_SUCCESS), and place_view's failure
   base (-1 with every error, though its callers read only the code).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from model.dos_memory import DosMemoryManager
from model.dos_physical import write_physical
from model.file_node import MemoryFileNode
from model.kernel_heap import KernelHeap, footer_bytes, header_bytes
from model.linux_mm import SyscallBrk, SyscallMmap
from model.memory_interface import MemoryInterface
from model.memory_pool import MemoryPool
from model.memory_subsystem import MemorySubsystem
from model.page_manager import PageManager
from model.page_tables import PageDirectory
from model.process_memory import ProcessMemorySpace
from model.syscalls import SystemCalls
from model.views import place_view
from model.virtual_alloc import VirtualAllocProcessMemory, VirtualProtectProcessMemory
from model.virtual_memory import VirtualMemoryManager
from proofs.abstractions.kernel_heap import heap_snapshot
from proofs.machines.kernel_heap import CROSSINGS as MACHINE_CROSSINGS
from proofs.machines.kernel_heap import make_heap as machine_heap
from proofs.machines.kernel_heap import size_ending_near_page
from spec.abi import (
    EMS_NOT_ENOUGH_PAGES,
    FOOTER_SIZE,
    HEADER_SIZE,
    IMAGE_BASE,
    INVALID_PHYSICAL_ADDRESS,
    MAP_ANONYMOUS,
    MAP_PRIVATE,
    MCB_M,
    MCB_Z,
    MEM_COMMIT,
    MEM_RESERVE,
    NO_FRAME,
    PAGE_NOACCESS,
    PAGE_READONLY,
    PAGE_READWRITE,
    PAGE_SIZE,
    PROT_READ,
    PROT_WRITE,
    PTE_DIRTY,
    UMB_HEAD,
    USER_TOP,
    DosError,
    ErrorCode,
    FrameOwner,
)
from tests.dos_world import make_dos, snapshot
from tests.test_kernel_heap import check_heap, make_world
from tests.test_memory_subsystem import booted
from tests.test_process_memory import snapshot as snapshot_space
from tests.test_shared_memory import check_world, new_process

E = ErrorCode
SUCCESS = E.ERROR_SUCCESS
NO_FD = 0xFFFFFFFF


# -- 1. kernel-heap headers and footers across a page boundary -----------------------------

HEAP = 0xC0000000


def read_through_tables(vm: VirtualMemoryManager, directory: PageDirectory, address: int,
                        length: int) -> bytes:
    """Bytes at a virtual address, each translated on its own by VirtualToPhysical
    and read from its frame: nothing of the heap's span arithmetic is used."""
    pm = vm.pageman
    out = bytearray()
    for at in range(address, address + length):
        physical = vm.VirtualToPhysical(directory, at)
        assert physical != INVALID_PHYSICAL_ADDRESS, hex(at)
        page = pm.memory.get(physical // PAGE_SIZE)
        out.append(0 if page is None else page[physical % PAGE_SIZE])
    return bytes(out)


def assert_block_in_memory(heap: KernelHeap, header: int, size: int, hole: bool) -> None:
    directory = heap.directory
    assert directory is not None
    vm = heap.vmm
    assert read_through_tables(vm, directory, header, HEADER_SIZE) == header_bytes(size, hole)
    assert read_through_tables(vm, directory, header + size - FOOTER_SIZE,
                               FOOTER_SIZE) == footer_bytes(header)


def straddles(address: int, length: int) -> bool:
    return address // PAGE_SIZE != (address + length - 1) // PAGE_SIZE


#: Where a block ends relative to a page boundary: -11..-1 puts the next
#: block's header across it, +1..+7 the block's own footer.
CROSSINGS = [*range(-(HEADER_SIZE - 1), 0), *range(1, FOOTER_SIZE)]


def test_headers_and_footers_across_page_boundaries_are_in_the_right_frames() -> None:
    _, vm = make_world()
    heap = KernelHeap(vm)
    assert heap.Create(HEAP, HEAP + 0x20000, HEAP + 0x40000, True, False, index_size=64) is heap
    blocks: list[tuple[int, int]] = []  # (payload, requested size)
    at = heap.data_start
    for crossing in CROSSINGS:
        boundary = (at + 20) // PAGE_SIZE * PAGE_SIZE + PAGE_SIZE
        end = boundary + crossing
        size = end - at - 20
        p = heap.Alloc(size)
        assert p == at + HEADER_SIZE and heap.last_error == SUCCESS, (crossing, heap.last_error)
        assert heap.allocated[at].size == size + 20
        # the block's footer straddles for a positive crossing, the hole's header
        # (the rest of the heap) for a negative one
        assert straddles(end - FOOTER_SIZE, FOOTER_SIZE) == (crossing > 0)
        assert straddles(end, HEADER_SIZE) == (crossing < 0)
        assert_block_in_memory(heap, at, size + 20, False)
        tail = next(h for _, h in heap.holes() if h == end)
        assert_block_in_memory(heap, tail, heap.index.size_of(tail), True)
        blocks.append((p, size))
        at = end
    check_heap(heap)
    # A payload filled to its last byte leaves the straddling footer and the next
    # header intact: Free reads them (the heap's own reader) and finds no damage.
    directory = heap.directory
    assert directory is not None
    for n, (p, size) in enumerate(blocks):
        assert vm.WriteVirtualMemory(directory, p, bytes([n + 1]) * size, False) is True
    # free every other block (no merging), then the rest (merging across the
    # boundaries): each merged hole's header and footer is rewritten in memory
    for p, _ in blocks[::2] + blocks[1::2]:
        header = p - HEADER_SIZE
        assert heap.Free(p) and heap.last_error == SUCCESS, (hex(p), heap.last_error)
        merged = next((h, s) for s, h in heap.holes() if h <= header < h + s)
        if merged[0] + merged[1] <= heap.end_address and merged[0] in heap.index:
            assert_block_in_memory(heap, merged[0], merged[1], True)
        check_heap(heap)
    assert heap.holes() == [(heap.end_address - heap.data_start, heap.data_start)]


def test_a_page_aligned_block_after_a_straddling_header() -> None:
    """A page-aligned Alloc whose gap hole begins at a straddling header: the gap's
    header, the block's header (just below the page) and both footers."""
    _, vm = make_world()
    heap = KernelHeap(vm)
    assert heap.Create(HEAP, HEAP + 0x8000, HEAP + 0x40000, True, False, index_size=64) is heap
    first = heap.Alloc(PAGE_SIZE - 20 - 5)  # the hole after it starts 5 bytes below a page
    gap = first - HEADER_SIZE + PAGE_SIZE - 5
    assert straddles(gap, HEADER_SIZE)
    p = heap.Alloc(100, True)
    assert p % PAGE_SIZE == 0 and heap.last_error == SUCCESS
    header = p - HEADER_SIZE
    assert_block_in_memory(heap, gap, header - gap, True)
    assert_block_in_memory(heap, header, heap.allocated[header].size, False)
    check_heap(heap)


# -- 2. the last byte of a page and of a file -----------------------------------------------

FILE_SIZES = [1, 4095, 4096, 4097, 8191, 8192, 8193, 3 * PAGE_SIZE + 1]


def last_bytes(length: int) -> list[int]:
    """Offsets of the first and last byte of every page of a file, and its last byte."""
    offsets = {length - 1}
    for page in range(0, length, PAGE_SIZE):
        offsets |= {page, min(page + PAGE_SIZE, length) - 1}
    return sorted(offsets)


@pytest.mark.parametrize("length", FILE_SIZES)
@pytest.mark.parametrize("how", ["sync", "unmap", "exit"])
def test_dirty_last_bytes_reach_the_file(length: int, how: str) -> None:
    sub = booted()
    space = new_process(sub)
    assert sub.syscalls.SwitchProcess(space.pid)
    mmf = sub.mapped_files
    node = MemoryFileNode(bytes(length))
    base = mmf.MapFileToMemory(node, 0, 0, PAGE_READWRITE)
    assert base and mmf.last_error == SUCCESS
    expected = bytearray(length)
    for n, offset in enumerate(last_bytes(length)):
        expected[offset] = 0x80 | n
        assert space.WriteUserMemory(base + offset, bytes([0x80 | n])) is True
    view_end = -(-length // PAGE_SIZE) * PAGE_SIZE
    if view_end > length:  # past the end of the file: never stored, the file never grows
        assert space.WriteUserMemory(base + view_end - 1, b"\xff") is True
    if how == "sync":
        assert mmf.SyncMappedFile(base) and mmf.last_error == SUCCESS
        assert not any(mmf.is_dirty(page) for page in mmf.cache.values())
    elif how == "unmap":
        assert mmf.UnmapFileFromMemory(base) and mmf.last_error == SUCCESS
    else:
        assert sub.syscalls.DestroyProcess(space.pid)
    assert bytes(node.data) == bytes(expected)
    check_world(sub)


def test_a_one_byte_last_page_is_written_back_alone() -> None:
    """Only the last page dirty, holding one byte of the file: one write of one byte."""
    sub = booted()
    space = new_process(sub)
    assert sub.syscalls.SwitchProcess(space.pid)
    mmf = sub.mapped_files
    node = MemoryFileNode(bytes(range(256)) * 16 + b"\x01")
    writes: list[tuple[int, bytes]] = []
    write = node.write

    def recording(offset: int, data: bytes) -> int:
        writes.append((offset, bytes(data)))
        return write(offset, data)

    node.write = recording  # type: ignore[method-assign]
    base = mmf.MapFileToMemory(node, 0, 0, PAGE_READWRITE)
    assert space.WriteUserMemory(base + PAGE_SIZE, b"\x7e") is True
    assert mmf.SyncMappedFile(base)
    assert writes == [(PAGE_SIZE, b"\x7e")] and node.data[-1] == 0x7E
    assert mmf.SyncMappedFile(base, True)  # reloads what the file holds
    assert space.ReadUserMemory(base + PAGE_SIZE, 2) == b"\x7e\x00"
    check_world(sub)


# -- 3a. exact exhaustion of frames ---------------------------------------------------------

@dataclass
class Taker:
    """A call that takes frames: ``make`` builds a fresh world and returns its page
    manager and the call (which returns (result, status)); ``failure`` is the
    status when too few frames are free."""

    make: Callable[[], tuple[PageManager, Callable[[], tuple[Any, int]]]]
    failure: int = E.ERROR_NOT_ENOUGH_MEMORY


def _paging(mem_end: int = 0x300000) -> tuple[PageManager, VirtualMemoryManager]:
    return make_world(mem_end)


def _space(mem_end: int = 0x400000) -> tuple[PageManager, ProcessMemorySpace]:
    pm, vm = _paging(mem_end)
    space = ProcessMemorySpace(vm, 1)
    assert space.InitializeUserSpace()
    return pm, space


def _request_frame() -> tuple[PageManager, Callable[[], tuple[Any, int]]]:
    pm = PageManager()
    assert pm.InitializePhysicalMemory(0x100000, 0x200000)
    return pm, lambda: (pm.RequestFrame(True, True) != NO_FRAME, pm.last_error)


def _alloc_page() -> tuple[PageManager, Callable[[], tuple[Any, int]]]:
    pm, vm = _paging()
    kernel = vm.kernel_directory
    assert kernel is not None  # a page in a table not there yet: 2 frames
    return pm, lambda: (vm.AllocPage(kernel, 0xD0000000, True, True), vm.last_error)


def _create_directory() -> tuple[PageManager, Callable[[], tuple[Any, int]]]:
    pm, vm = _paging()
    return pm, lambda: (vm.CreatePageDirectory(), vm.last_error)


def _clone_directory() -> tuple[PageManager, Callable[[], tuple[Any, int]]]:
    pm, vm = _paging()
    source = vm.CreatePageDirectory()
    assert source is not None
    for page in (0x400000, 0x401000, 0x800000):
        assert vm.AllocPage(source, page, False, True)
    return pm, lambda: (vm.ClonePageDirectory(source), vm.last_error)


def _heap_create() -> tuple[PageManager, Callable[[], tuple[Any, int]]]:
    pm, vm = _paging()
    heap = KernelHeap(vm)
    return pm, lambda: (heap.Create(HEAP, HEAP + 0x4000, HEAP + 0x10000, True, False,
                                    index_size=16), heap.last_error)


def _created_heap() -> tuple[PageManager, KernelHeap]:
    pm, vm = _paging()
    heap = KernelHeap(vm)
    assert heap.Create(HEAP, HEAP + 0x4000, HEAP + 0x20000, True, False, index_size=16)
    return pm, heap


def _heap_expand() -> tuple[PageManager, Callable[[], tuple[Any, int]]]:
    pm, heap = _created_heap()
    return pm, lambda: (heap.Expand(0x9000), heap.last_error)


def _heap_alloc_expanding() -> tuple[PageManager, Callable[[], tuple[Any, int]]]:
    pm, heap = _created_heap()
    return pm, lambda: (heap.Alloc(0x6000), heap.last_error)


def _user_space() -> tuple[PageManager, Callable[[], tuple[Any, int]]]:
    pm, vm = _paging()
    space = ProcessMemorySpace(vm, 1)
    return pm, lambda: (space.InitializeUserSpace(), space.last_error)


def _reserve_commit() -> tuple[PageManager, Callable[[], tuple[Any, int]]]:
    pm, space = _space()
    return pm, lambda: (VirtualAllocProcessMemory(space, 0, 0x5000, MEM_RESERVE | MEM_COMMIT,
                                                  PAGE_READWRITE), space.last_error)


def _commit() -> tuple[PageManager, Callable[[], tuple[Any, int]]]:
    pm, space = _space()
    base = VirtualAllocProcessMemory(space, 0, 0x10000, MEM_RESERVE, PAGE_READWRITE)
    assert base
    return pm, lambda: (VirtualAllocProcessMemory(space, base, 0x5000, MEM_COMMIT,
                                                  PAGE_READWRITE), space.last_error)


def _alloc_user_memory() -> tuple[PageManager, Callable[[], tuple[Any, int]]]:
    pm, space = _space()
    return pm, lambda: (space.AllocUserMemory(0x3000), space.last_error)


def _map_user_memory() -> tuple[PageManager, Callable[[], tuple[Any, int]]]:
    pm, space = _space()
    return pm, lambda: (space.MapUserMemory(0x20000000, 0x3000, PAGE_READWRITE),
                        space.last_error)


def _mmap() -> tuple[PageManager, Callable[[], tuple[Any, int]]]:
    pm, space = _space()
    return pm, lambda: (SyscallMmap(space, 0, 0x3000, PROT_READ | PROT_WRITE,
                                    MAP_PRIVATE | MAP_ANONYMOUS, NO_FD, 0) > 0,
                        space.last_error)


def _brk() -> tuple[PageManager, Callable[[], tuple[Any, int]]]:
    pm, space = _space()
    target = space.brk + 0x3000
    return pm, lambda: (SyscallBrk(space, target) == target, space.last_error)


def _subsystem() -> tuple[PageManager, MemorySubsystem]:
    sub = booted(memory_size=0x800000)
    return sub.pageman, sub


def _shared_create() -> tuple[PageManager, Callable[[], tuple[Any, int]]]:
    pm, sub = _subsystem()
    shm = sub.shared_memory
    return pm, lambda: (shm.CreateSharedMemory(0x3000, PAGE_READWRITE), shm.last_error)


def _shared_map() -> tuple[PageManager, Callable[[], tuple[Any, int]]]:
    pm, sub = _subsystem()
    shm = sub.shared_memory
    space = new_process(sub)
    shm_id = shm.CreateSharedMemory(0x3000, PAGE_READWRITE)
    assert shm_id  # mapped where no page table is yet: the table is the frame it needs
    return pm, lambda: (shm.MapSharedMemoryToProcess(space, shm_id, 0x30000000),
                        shm.last_error)


def _map_file() -> tuple[PageManager, Callable[[], tuple[Any, int]]]:
    pm, sub = _subsystem()
    space = new_process(sub)
    assert sub.syscalls.SwitchProcess(space.pid)
    node = MemoryFileNode(b"\x11" * 0x2801)
    mmf = sub.mapped_files
    return pm, lambda: (mmf.MapFileToMemory(node, 0, 0, PAGE_READONLY), mmf.last_error)


def _kernel_stack() -> tuple[PageManager, Callable[[], tuple[Any, int]]]:
    pm, sub = _subsystem()
    return pm, lambda: (sub.AllocateKernelStack(), sub.last_error)


def _map_page() -> tuple[PageManager, Callable[[], tuple[Any, int]]]:
    pm, sub = _subsystem()
    api = MemoryInterface(sub)
    frame = pm.nframes - 1  # free: MapPage claims it (and a table if 0xF0000000 has none)
    assert pm.owner[frame] == FrameOwner.FREE
    return pm, lambda: (api.MapPage(0xF0000000, frame * PAGE_SIZE, True, True),
                        api.last_error)


def _ems_allocate() -> tuple[PageManager, Callable[[], tuple[Any, int]]]:
    pm = PageManager()
    assert pm.InitializePhysicalMemory(0x100000, 0x400000)
    dos = DosMemoryManager(pm, xms_end=0x200000, ems_pages=32)
    assert dos.ready
    return pm, lambda: (dos.ems.EmsAllocate(3), dos.ems.last_status)


TAKERS = {
    "RequestFrame": Taker(_request_frame),
    "AllocPage": Taker(_alloc_page),
    "CreatePageDirectory": Taker(_create_directory),
    "ClonePageDirectory": Taker(_clone_directory),
    "KernelHeap.Create": Taker(_heap_create),
    "KernelHeap.Expand": Taker(_heap_expand),
    "KernelHeap.Alloc(expanding)": Taker(_heap_alloc_expanding),
    "InitializeUserSpace": Taker(_user_space),
    "VirtualAlloc(reserve+commit)": Taker(_reserve_commit),
    "VirtualAlloc(commit)": Taker(_commit),
    "AllocUserMemory": Taker(_alloc_user_memory),
    "MapUserMemory": Taker(_map_user_memory),
    "mmap": Taker(_mmap),
    "brk": Taker(_brk),
    "CreateSharedMemory": Taker(_shared_create),
    "MapSharedMemoryToProcess": Taker(_shared_map),
    "MapFileToMemory": Taker(_map_file),
    "AllocateKernelStack": Taker(_kernel_stack),
    "MapPage": Taker(_map_page),
    "EmsAllocate": Taker(_ems_allocate, EMS_NOT_ENOUGH_PAGES),
}


def hold_all_but(pm: PageManager, free: int) -> None:
    """Hold frames (RequestFrame) until exactly ``free`` are free."""
    assert pm.free_count() >= free
    while pm.free_count() > free:
        assert pm.RequestFrame(True, True) != NO_FRAME


def memory_state(pm: PageManager) -> tuple[object, ...]:
    return (pm.free_count(), bytes(pm.owner),
            {frame: bytes(page) for frame, page in pm.memory.items()})


@pytest.mark.parametrize("name", sorted(TAKERS))
def test_the_last_free_frames_can_be_taken_and_one_short_fails(name: str) -> None:
    taker = TAKERS[name]
    pm, call = taker.make()
    free = pm.free_count()
    result, code = call()
    assert result and code == SUCCESS, (name, code)
    need = free - pm.free_count()
    assert need > 0
    pm, call = taker.make()  # exactly enough: succeeds and leaves none
    hold_all_but(pm, need)
    result, code = call()
    assert result and code == SUCCESS, (name, need, code)
    assert pm.free_count() == 0
    pm, call = taker.make()  # one short: fails and changes nothing
    hold_all_but(pm, need - 1)
    before = memory_state(pm)
    result, code = call()
    assert not result and code == taker.failure, (name, need, code)
    assert memory_state(pm) == before


# -- 3b. UnreservePage(0) -----------------------------------------------------------------------

def test_unreserve_page_zero_frees_frame_zero() -> None:
    """Frame 0 is a reserved frame like the others (docs/semantics.md: UnreservePage
    frees a reserved frame and removes its identity mapping)."""
    pm, vm = make_world(0x200000)
    kernel = vm.kernel_directory
    assert kernel is not None
    assert vm.VirtualToPhysical(kernel, 0x10) == 0x10  # identity-mapped before
    free = pm.free_count()
    assert pm.UnreservePage(0) is True and pm.last_error == SUCCESS
    assert pm.owner[0] == FrameOwner.FREE and pm.free_count() == free + 1
    assert vm.VirtualToPhysical(kernel, 0) == INVALID_PHYSICAL_ADDRESS
    assert vm.last_error == E.ERROR_INVALID_ADDRESS
    assert pm.FirstFreeFrame() == 0 and pm.last_error == SUCCESS
    assert pm.UnreservePage(0) is False and pm.last_error == E.ERROR_INVALID_BLOCK
    assert pm.RequestFrame(True, True) == 0  # the lowest free frame is frame 0 again
    # the last reserved frame, and the first frame above the reserved range
    last = pm.reserved_end - 1
    assert pm.UnreservePage(last * PAGE_SIZE) and pm.owner[last] == FrameOwner.FREE
    assert not pm.UnreservePage(pm.reserved_end * PAGE_SIZE)
    assert pm.last_error == E.ERROR_INVALID_BLOCK


def test_unreserve_page_zero_without_paging() -> None:
    pm = PageManager()
    assert pm.InitializePhysicalMemory(0x100000, 0x200000)
    assert pm.UnreservePage(0) and pm.last_error == SUCCESS and pm.FirstFreeFrame() == 0


# -- 3c. Contract with min_size above the initial length ----------------------------------------

def test_contract_never_cuts_below_a_min_size_above_the_initial_length() -> None:
    """min_size is max(min_size, end - start): 0x6000 here, above the initial 0x4000."""
    _, vm = make_world()
    heap = KernelHeap(vm)
    assert heap.Create(HEAP, HEAP + 0x4000, HEAP + 0x20000, True, False, index_size=16,
                       min_size=0x6000) is heap
    assert heap.min_size == 0x6000
    assert heap.Contract(0) == 0x4000 and heap.last_error == SUCCESS  # nothing to cut
    assert heap.Expand(0x10000) and heap.end_address == HEAP + 0x10000
    assert heap.Contract(0) == 0x6000 and heap.end_address == HEAP + 0x6000
    assert heap.last_error == SUCCESS
    check_heap(heap)
    # Free's own contraction stops at the same floor
    assert heap.Expand(0x10000)
    p = heap.Alloc(0xA000)
    assert p and heap.end_address == HEAP + 0x10000
    assert heap.Free(p) and heap.end_address == HEAP + 0x6000
    check_heap(heap)


def test_contract_with_min_size_equal_to_and_below_the_length() -> None:
    for min_size, floor in ((0x4000, 0x4000), (0x2000, 0x4000), (0x4001, 0x4001)):
        _, vm = make_world()
        heap = KernelHeap(vm)
        assert heap.Create(HEAP, HEAP + 0x4000, HEAP + 0x20000, True, False, index_size=16,
                           min_size=min_size)
        assert heap.min_size == floor
        assert heap.Expand(0x10000)
        assert heap.Contract(0) == -(-floor // PAGE_SIZE) * PAGE_SIZE


# -- 3d. a memory pool whose heap's directory was destroyed --------------------------------------

@pytest.mark.parametrize(("base", "supervisor"), [(0x400000, False), (HEAP, True)])
def test_a_pool_in_a_destroyed_directory_refuses_like_its_heap(base: int,
                                                               supervisor: bool) -> None:
    """The heap refuses every call once its directory is destroyed
    (ERROR_INVALID_HANDLE, model/kernel_heap.py); the pool built on it does the
    same, with a free list and without one, and changes nothing."""
    pm, vm = make_world()
    directory = vm.CreatePageDirectory()
    assert directory is not None
    heap = KernelHeap(vm, directory)
    assert heap.Create(base, base + 0x4000, base + 0x8000, supervisor, False, index_size=4)
    pools = []
    for free_one in (True, False):
        pool = MemoryPool(heap)
        assert pool.Create(16, 8) is pool
        first, second = pool.AllocBlock(), pool.AllocBlock()
        assert first and second
        if free_one:
            assert pool.FreeBlock(first)
        pools.append((pool, second))
    kernel = vm.kernel_directory
    assert kernel is not None and vm.SwitchPageDirectory(kernel)
    assert vm.DestroyPageDirectory(directory)
    for pool, live in pools:
        state = (pool.free_list, pool.current_blocks, bytes(pool.live), pm.free_count())
        assert pool.AllocBlock() == 0 and pool.last_error == E.ERROR_INVALID_HANDLE
        assert pool.FreeBlock(live) is False and pool.last_error == E.ERROR_INVALID_HANDLE
        assert pool.Destroy() is False and pool.last_error == E.ERROR_INVALID_HANDLE
        assert (pool.free_list, pool.current_blocks, bytes(pool.live),
                pm.free_count()) == state
        # the pool's own argument checks still come first
        assert pool.FreeBlock(-1) is False and pool.last_error == E.ERROR_INVALID_PARAMETER
    assert heap.Destroy()


# -- 3e. a 'Z' on the wrong MCB with the UMBs linked -------------------------------------------

def dos_with_blocks() -> tuple[DosMemoryManager, list[int], list[int]]:
    """UMBs linked, two conventional and two UMB blocks allocated."""
    dos = make_dos()
    assert dos.SetUmbLink(True)
    low = [dos.AllocateDosMemory(0x10), dos.AllocateDosMemory(0x10)]
    assert dos.SetAllocationStrategy(0x40)
    high = [dos.AllocateDosMemory(0x10), dos.AllocateDosMemory(0x10)]
    assert dos.SetAllocationStrategy(0x80)
    assert all(low) and all(high) and min(high) > UMB_HEAD
    return dos, low, high


def z_places(dos: DosMemoryManager, low: list[int], high: list[int]) -> dict[str, int]:
    chain = dos.walk(dos.first_segment)
    assert chain is not None
    last_low = max(b.segment for b in chain if b.segment < UMB_HEAD)
    return {"first conventional": low[0] - 1, "last conventional": last_low,
            "UMB head": UMB_HEAD, "first UMB": high[0] - 1, "second UMB": high[1] - 1}


@pytest.mark.parametrize("where", ["first conventional", "last conventional", "UMB head",
                                   "first UMB", "second UMB"])
def test_a_z_on_an_mcb_that_does_not_end_the_chain_is_error_7(where: str) -> None:
    """With the UMB link on, the chain runs from the first MCB through 9FFFh to the
    last UMB block: a valid 'Z' type byte anywhere before its end is corruption
    (error 7, ERROR_ARENA_TRASHED) and is never followed."""
    dos, low, high = dos_with_blocks()
    segment = z_places(dos, low, high)[where]
    write_physical(dos.pageman, segment * 16, bytes((MCB_Z,)))
    before = snapshot(dos)
    calls: list[Callable[[], object]] = [
        lambda: dos.AllocateDosMemory(1), lambda: dos.FreeDosMemory(high[1]),
        lambda: dos.FreeDosMemory(low[1]), lambda: dos.ResizeDosMemory(high[0], 1),
        dos.GetDosLargestBlock, lambda: dos.SetUmbLink(False)]
    for call in calls:
        assert not call() and dos.last_error == DosError.ARENA_TRASHED, (where, call)
    assert snapshot(dos) == before


def test_a_z_ending_a_longer_conventional_chain_is_error_7() -> None:
    """The same 'Z' on the last conventional MCB when the conventional chain has
    more blocks than the UMB chain: the linked walk stops at 9FFFh and its tail
    is not the UMB chain (DosMemoryManager._chains compares both, not only the
    lengths)."""
    dos, low, high = dos_with_blocks()
    assert dos.SetAllocationStrategy(0x00)
    low += [dos.AllocateDosMemory(0x10) for _ in range(4)]
    assert all(low)
    chain, umbs = dos.walk(dos.first_segment), dos.umb_chain()
    assert chain is not None and umbs is not None
    assert len([b for b in chain if b.segment < UMB_HEAD]) > len(umbs)
    write_physical(dos.pageman, z_places(dos, low, high)["last conventional"] * 16,
                   bytes((MCB_Z,)))
    before = snapshot(dos)
    assert not dos.AllocateDosMemory(1) and dos.last_error == DosError.ARENA_TRASHED
    assert not dos.FreeDosMemory(low[-1]) and dos.last_error == DosError.ARENA_TRASHED
    assert snapshot(dos) == before


def test_the_z_where_it_belongs_keeps_the_chain_valid() -> None:
    """The control: rewriting the last UMB's 'Z' (and an 'M' where it is) changes nothing."""
    dos, low, high = dos_with_blocks()
    umbs = dos.umb_chain()
    assert umbs is not None and umbs[-1].type == MCB_Z
    write_physical(dos.pageman, umbs[-1].segment * 16, bytes((MCB_Z,)))
    write_physical(dos.pageman, (high[0] - 1) * 16, bytes((MCB_M,)))
    assert dos.GetDosLargestBlock() and dos.last_error == DosError.SUCCESS
    assert dos.FreeDosMemory(high[1]) and dos.FreeDosMemory(low[1])


# -- 4. error codes ----------------------------------------------------------------------------

def test_virtual_protect_outside_user_space_is_invalid_parameter() -> None:
    """_range_error: a range reaching 0xC0000000 or past 4 GiB is ERROR_INVALID_PARAMETER
    (87), not the ERROR_INVALID_ADDRESS (487) of an uncommitted user range."""
    pm, space = _space()
    base = VirtualAllocProcessMemory(space, 0, 0x10000, MEM_RESERVE | MEM_COMMIT,
                                     PAGE_READWRITE)
    assert base
    cases = [
        (0xC0000000, 0x1000), (0xBFFFF000, 0x2000), (0xBFFFFFFF, 2), (0xC0000000, 1),
        (0xFFFFF000, 0x1000), (0xFFFFF000, 0x2000), (0xFFFFFFFF, 1), (base, 0xFFFFFFFF),
        (0x80000000, 0x40000001),
    ]
    for address, size in cases:
        assert VirtualProtectProcessMemory(space, address, size, PAGE_READONLY) == (False, 0)
        assert space.last_error == E.ERROR_INVALID_PARAMETER, (hex(address), hex(size))
    # the edges inside user space: the last user byte (the stack's top page, committed)
    # and a free range below it, refused as an address (487), not as a parameter
    assert VirtualProtectProcessMemory(space, 0xBFFFFFFF, 1, PAGE_READONLY) == (
        True, PAGE_READWRITE)
    assert space.last_error == SUCCESS
    assert VirtualProtectProcessMemory(space, 0x80000000, 0x1000, PAGE_READONLY) == (False, 0)
    assert space.last_error == E.ERROR_INVALID_ADDRESS
    assert VirtualProtectProcessMemory(space, base, 0x1000, PAGE_READONLY) == (
        True, PAGE_READWRITE)
    assert space.last_error == SUCCESS


def test_the_virtual_protect_syscall_reports_the_same_codes() -> None:
    calls = SystemCalls(make_world(0x400000)[1])
    pid = calls.CreateProcess()
    assert pid and calls.SwitchProcess(pid)
    space = calls.current
    assert space is not None
    base = calls.SyscallVirtualAlloc(0, 0x10000, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE)
    assert base
    for address, size, code in ((0xC0000000, 0x1000, E.ERROR_INVALID_PARAMETER),
                                (0xFFFFF000, 0x2000, E.ERROR_INVALID_PARAMETER),
                                (0x80000000, 0x1000, E.ERROR_INVALID_ADDRESS)):
        assert calls.SyscallVirtualProtect(address, size, PAGE_READONLY, base) == 0
        assert calls.last_error == code and space.last_error == code, hex(address)


def test_brk_zero_is_a_query_that_succeeds() -> None:
    pm, space = _space()
    start = space.brk
    assert SyscallBrk(space, 1) == start and space.last_error == E.ERROR_INVALID_PARAMETER
    assert SyscallBrk(space, 0) == start and space.last_error == SUCCESS
    assert SyscallBrk(space, start + 0x1800) == start + 0x1800
    assert SyscallBrk(space, space.heap_max + 1) == start + 0x1800
    assert space.last_error == E.ERROR_NOT_ENOUGH_MEMORY
    assert SyscallBrk(space, 0) == start + 0x1800 and space.last_error == SUCCESS
    assert SyscallBrk(space, space.heap_start - 1) == start + 0x1800
    assert space.last_error == E.ERROR_INVALID_PARAMETER


def test_brk_zero_through_the_system_calls() -> None:
    pm, vm = make_world(0x400000)
    calls = SystemCalls(vm)
    pid = calls.CreateProcess()
    assert pid and calls.SwitchProcess(pid)
    current = calls.SyscallBrk(0)
    assert current > 0 and calls.last_error == SUCCESS
    assert calls.SyscallBrk(current + PAGE_SIZE) == current + PAGE_SIZE
    assert calls.SyscallBrk(0x10) == current + PAGE_SIZE
    assert calls.last_error == E.ERROR_INVALID_PARAMETER
    assert calls.SyscallBrk(0) == current + PAGE_SIZE and calls.last_error == SUCCESS


def test_the_heap_machine_asks_for_every_crossing() -> None:
    """The kernel heap machine's alloc_across_page rule: the size it computes puts
    the block's end at the crossing asked for, in the hole Alloc takes (a hole of
    the index, or the heap's tail when it expands)."""
    heap = machine_heap()
    assert heap.Expand(0x10000)  # a hole of 15 pages to carve from, then holes freed
    for pages in (0, 1):
        for crossing in MACHINE_CROSSINGS:
            size = size_ending_near_page(heap_snapshot(heap), crossing, pages)
            p = heap.Alloc(size)
            assert p and heap.last_error == SUCCESS
            header = p - HEADER_SIZE
            end = header + heap.allocated[header].size
            assert (end - crossing) % PAGE_SIZE == 0, (pages, crossing, hex(end))
            assert straddles(end, HEADER_SIZE) if crossing < 0 else straddles(
                end - FOOTER_SIZE, FOOTER_SIZE)
            assert_block_in_memory(heap, header, heap.allocated[header].size, False)
            if crossing % 3 == 0:  # holes in the index to choose from next time
                assert heap.Free(p)
        check_heap(heap)
        for header in list(heap.allocated):  # room for the next pass
            assert heap.Free(header + HEADER_SIZE)


# -- 3c. calls that take no frame succeed with none free --------------------------------------

@pytest.mark.parametrize("protect", [PAGE_NOACCESS, PAGE_READONLY, PAGE_READWRITE])
def test_reprotecting_committed_pages_needs_no_free_frame(protect: int) -> None:
    """VirtualProtect of committed pages whose page table exists takes no frame
    (a NOACCESS page keeps its frame, docs/user-space.md): it succeeds with
    none free. A mutation run found a cost of one frame for NOACCESS unnoticed."""
    pm, space = _space()
    base = VirtualAllocProcessMemory(space, 0, 0x3000, MEM_RESERVE | MEM_COMMIT,
                                     PAGE_READWRITE)
    assert base
    hold_all_but(pm, 0)
    assert VirtualProtectProcessMemory(space, base, 0x3000, protect) == (True, PAGE_READWRITE)
    assert space.last_error == SUCCESS and pm.free_count() == 0
    assert VirtualProtectProcessMemory(space, base, 0x1000, PAGE_READWRITE) == (True, protect)


def test_reprotecting_that_needs_a_page_table_fails_whole_with_none_free() -> None:
    """VirtualProtect that makes a NOACCESS page (no PTE) accessible in a region with
    no page table needs a frame for the table: with none free it fails with
    ERROR_NOT_ENOUGH_MEMORY, answers (False, 0) as every failure does, and changes
    nothing (a mutation run found the failure's second value unchecked)."""
    pm, space = _space()
    base = VirtualAllocProcessMemory(space, 0, 0x1000, MEM_RESERVE | MEM_COMMIT, PAGE_NOACCESS)
    assert base and space.protect_cost(base, base + 0x1000, PAGE_READWRITE) == 1
    hold_all_but(pm, 0)
    before = memory_state(pm)
    assert VirtualProtectProcessMemory(space, base, 0x1000, PAGE_READWRITE) == (False, 0)
    assert space.last_error == ErrorCode.ERROR_NOT_ENOUGH_MEMORY
    assert memory_state(pm) == before


# -- 4b. the status before any call ------------------------------------------------------------

def test_every_fresh_manager_reports_success_before_its_first_call() -> None:
    """GetLastError on a thread that made no call is 0 (ERROR_SUCCESS); each manager
    of a fresh subsystem, and a fresh DOS manager's drivers, start the same way (a
    mutation run found SystemCalls' initial status unread)."""
    sub = MemorySubsystem(0x1000000)
    managers: list[Any] = [sub, sub.pageman, sub.virmem, sub.kernel, sub.syscalls,
                           sub.shared_memory, sub.mapped_files]
    dos = make_dos()
    managers += [dos, dos.xms]
    for manager in managers:
        assert manager.last_error == 0, type(manager).__name__
    assert dos.ems.last_status == 0  # EMS reports a status byte in AH


# -- 4c. the D bit of a page without a page table ---------------------------------------------

def test_take_dirty_of_a_page_without_a_table_is_false_and_changes_nothing() -> None:
    """AddressSpace.take_dirty answers whether page vpn's PTE has D set and clears it
    (the page cache's sync, model/mapped_files.py ``_clean``): a page with no page
    table, or a space with no directory, has no PTE, so the answer is False and
    nothing changes; a dirty page answers True once. ``_clean`` reaches a missing
    table when the kernel destroyed a mapper's directory behind its back
    (VirtualMemoryManager.DestroyPageDirectory). A mutation run found both the
    missing table and the clean answer unchecked."""
    pm, space = _space()
    base = VirtualAllocProcessMemory(space, 0, 0x2000, MEM_RESERVE | MEM_COMMIT,
                                     PAGE_READWRITE)
    assert base
    vpn = base >> 12
    assert space.take_dirty(vpn) is False  # committed, never written: clean
    assert space.WriteUserMemory(base, b"d") is True
    assert space.pte(vpn) & PTE_DIRTY
    assert space.take_dirty(vpn) is True and not space.pte(vpn) & PTE_DIRTY
    assert space.take_dirty(vpn) is False
    far = 0x80000000 >> 12  # no allocation near: no page table for it
    assert space.page_dir is not None and space.page_dir.tables[far >> 10] is None
    before = snapshot_space(space)
    assert space.take_dirty(far) is False and snapshot_space(space) == before
    fresh = ProcessMemorySpace(space.vmm, 2)  # not initialized: no directory
    assert fresh.take_dirty(vpn) is False


# -- 4d. place_view's failure base ------------------------------------------------------------

def test_place_view_answers_minus_one_with_every_error() -> None:
    """place_view (model/views.py, the placement both MapSharedMemoryToProcess and
    MapFileToMemory use) answers (base, ERROR_SUCCESS) or (-1, the error): a
    non-u32 address ERROR_INVALID_PARAMETER, one off the 64 KB granularity
    ERROR_MAPPED_ALIGNMENT, no room for a system-chosen base
    ERROR_NOT_ENOUGH_MEMORY, a taken range (the image at IMAGE_BASE)
    ERROR_INVALID_ADDRESS; and it changes nothing. Its callers read only the
    code on failure, so a mutation run found the failure base unchecked (0, -2:
    a direct call sees them)."""
    sub = booted()
    space = new_process(sub)
    before = snapshot_space(space)
    assert place_view(space, 2**32, PAGE_SIZE) == (-1, E.ERROR_INVALID_PARAMETER)
    assert place_view(space, 0x10001000, PAGE_SIZE) == (-1, E.ERROR_MAPPED_ALIGNMENT)
    assert place_view(space, 0, USER_TOP) == (-1, E.ERROR_NOT_ENOUGH_MEMORY)
    assert place_view(space, IMAGE_BASE, PAGE_SIZE) == (-1, E.ERROR_INVALID_ADDRESS)
    assert place_view(space, 0x10000000, PAGE_SIZE) == (0x10000000, SUCCESS)
    assert snapshot_space(space) == before
