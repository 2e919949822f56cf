"""Behaviour of the PageManager's seed operations (seed section 1).

Each test drives one operation through its documented successes and failures
(model/page_manager.py docstring) and then checks FRM-1..3 on the whole state
with ``check_frames``. Memory is small (16 MB, the first 1 MB reserved) except
in the full-4-GiB test, which only initialises and counts.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model.page_manager import PageManager
from model.virtual_memory import VirtualMemoryManager
from spec.abi import NO_FRAME, PAGE_SIZE, USER_SPACE_START, ErrorCode, FrameOwner

RESERVED_END = 0x100000  # 256 reserved frames: real-mode area and kernel image
MEM_END = 0x1000000  # 16 MB: 4096 frames
NFRAMES = MEM_END // PAGE_SIZE
RESERVED = RESERVED_END // PAGE_SIZE
FIRST_FREE = RESERVED_END  # physical address of the first free frame


def check_frames(pm: PageManager) -> None:
    """FRM-1 (no bits beyond nframes), FRM-2 (used = popcount), FRM-3 (bit set iff owned)."""
    bitmap = pm.frames
    assert bitmap.is_consistent()
    assert bitmap.nframes == pm.nframes == len(pm.owner)
    owned = [frame for frame in range(pm.nframes) if pm.owner[frame] != FrameOwner.FREE]
    assert bitmap.used == len(owned)
    assert all(bitmap.test(frame) == (pm.owner[frame] != FrameOwner.FREE)
               for frame in range(pm.nframes))
    assert all(pm.owner[frame] != FrameOwner.FREE for frame in pm.memory)


@pytest.fixture
def pm() -> PageManager:
    manager = PageManager()
    assert manager.InitializePhysicalMemory(RESERVED_END, MEM_END) is True
    return manager


def request(pm: PageManager) -> int:
    address = pm.RequestFrame(False, True)
    assert address != NO_FRAME and pm.last_error == ErrorCode.ERROR_SUCCESS
    return address


def exhaust(pm: PageManager) -> list[int]:
    held = []
    while (address := pm.RequestFrame(True, True)) != NO_FRAME:
        held.append(address)
    return held


# -- InitializePhysicalMemory ----------------------------------------------

def test_initialize_reserves_frames_below_mem_start(pm: PageManager) -> None:
    assert pm.last_error == ErrorCode.ERROR_SUCCESS
    assert pm.GetFrameCount() == NFRAMES
    assert pm.GetUsedFrameCount() == RESERVED
    assert pm.GetFreeFrameCount() == NFRAMES - RESERVED
    assert all(pm.owner[frame] == FrameOwner.RESERVED for frame in range(RESERVED))
    assert all(pm.owner[frame] == FrameOwner.FREE for frame in range(RESERVED, NFRAMES))
    assert pm.FirstFreeFrame() == FIRST_FREE
    check_frames(pm)


def test_initialize_rounds_start_up_and_end_down() -> None:
    pm = PageManager()
    assert pm.InitializePhysicalMemory(0x1001, 0x10FFF)
    assert pm.GetFrameCount() == 0x10  # [0, 0x10000): end rounded down
    assert pm.reserved_end == 2  # 0x1001 rounded up to 0x2000
    assert pm.GetUsedFrameCount() == 2
    check_frames(pm)


def test_initialize_with_nothing_reserved() -> None:
    pm = PageManager()
    assert pm.InitializePhysicalMemory(0, PAGE_SIZE)
    assert pm.GetFrameCount() == 1 and pm.FirstFreeFrame() == 0
    check_frames(pm)


def test_full_4gib() -> None:
    pm = PageManager()
    assert pm.InitializePhysicalMemory(0, 1 << 32)
    assert pm.GetFrameCount() == 1048576
    assert pm.GetFreeFrameCount() == 1048576
    assert len(pm.frames.words) == 32768
    # The very last frame of the address space is usable.
    last = (1 << 32) - PAGE_SIZE
    assert pm.CopyPage(0, 0) is False  # nothing allocated yet
    frames = [pm.RequestFrame(False, False) for _ in range(3)]
    assert frames == [0, PAGE_SIZE, 2 * PAGE_SIZE]
    assert pm.FreeFrame(last) is False
    assert pm.last_error == ErrorCode.ERROR_INVALID_BLOCK


@pytest.mark.parametrize(("mem_start", "mem_end"), [
    (0, 0),  # empty
    (0x2000, 0x2000),  # start == end
    (0x1001, 0x2000),  # nothing left after rounding
    (0x400001, 0x1000000),  # reserved range beyond the 4 MB identity region
    (0, (1 << 32) + PAGE_SIZE),  # beyond 4 GiB
    (-PAGE_SIZE, MEM_END),
    (0, -1),
    (None, MEM_END),
    (0, "16M"),
    (0.0, MEM_END),
    (True, MEM_END),
    (0, float(MEM_END)),
])
def test_initialize_rejects_bad_ranges(mem_start: object, mem_end: object) -> None:
    pm = PageManager()
    assert pm.InitializePhysicalMemory(mem_start, mem_end) is False  # type: ignore[arg-type]
    assert pm.last_error == ErrorCode.ERROR_INVALID_PARAMETER
    assert not pm.initialized and pm.GetFrameCount() == 0


def test_initialize_twice_fails(pm: PageManager) -> None:
    address = request(pm)
    assert pm.InitializePhysicalMemory(0, 2 * MEM_END) is False
    assert pm.last_error == ErrorCode.ERROR_ALREADY_INITIALIZED
    assert pm.GetFrameCount() == NFRAMES
    assert pm.owner[address // PAGE_SIZE] == FrameOwner.HELD


# -- RequestFrame / FirstFreeFrame / FreeFrame -----------------------------

def test_request_frame_takes_lowest_free_frame(pm: PageManager) -> None:
    assert [request(pm) for _ in range(3)] == [FIRST_FREE + i * PAGE_SIZE for i in range(3)]
    assert pm.owner[FIRST_FREE // PAGE_SIZE] == FrameOwner.HELD
    assert pm.GetUsedFrameCount() == RESERVED + 3
    check_frames(pm)


@pytest.mark.parametrize(("is_kernel", "is_writeable"), [
    (1, True), (True, 0), (None, True), (True, "yes"), (0.0, False),
])
def test_request_frame_rejects_non_bool_flags(pm: PageManager, is_kernel: object,
                                              is_writeable: object) -> None:
    assert pm.RequestFrame(is_kernel, is_writeable) == NO_FRAME  # type: ignore[arg-type]
    assert pm.last_error == ErrorCode.ERROR_INVALID_PARAMETER
    assert pm.GetUsedFrameCount() == RESERVED


def test_request_frame_until_memory_is_exhausted(pm: PageManager) -> None:
    held = exhaust(pm)
    assert len(held) == NFRAMES - RESERVED
    assert held == sorted(held)
    assert pm.last_error == ErrorCode.ERROR_NOT_ENOUGH_MEMORY
    assert pm.FirstFreeFrame() == NO_FRAME
    assert pm.last_error == ErrorCode.ERROR_NOT_ENOUGH_MEMORY
    check_frames(pm)
    # Freeing one frame makes exactly that one available again.
    assert pm.FreeFrame(held[1234])
    assert pm.FirstFreeFrame() == held[1234]
    assert pm.RequestFrame(False, False) == held[1234]
    assert pm.RequestFrame(False, False) == NO_FRAME
    check_frames(pm)


def test_first_free_frame_does_not_allocate(pm: PageManager) -> None:
    assert pm.FirstFreeFrame() == pm.FirstFreeFrame() == FIRST_FREE
    assert pm.GetUsedFrameCount() == RESERVED


def test_free_frame_returns_the_frame_to_the_pool(pm: PageManager) -> None:
    first, second = request(pm), request(pm)
    assert pm.FreeFrame(first) is True and pm.last_error == ErrorCode.ERROR_SUCCESS
    assert pm.owner[first // PAGE_SIZE] == FrameOwner.FREE
    assert pm.FirstFreeFrame() == first
    assert request(pm) == first  # the lowest free frame again
    assert pm.FreeFrame(second)
    check_frames(pm)


def test_reused_frame_reads_as_zeros(pm: PageManager) -> None:
    address = request(pm)
    assert pm.WritePhysicalMemory(address + 10, b"secret")
    assert pm.ReadPhysicalMemory(address + 8, 10) == b"\0\0secret\0\0"
    assert pm.FreeFrame(address)
    assert address // PAGE_SIZE not in pm.memory
    assert request(pm) == address
    assert pm.ReadPhysicalMemory(address, PAGE_SIZE) == bytes(PAGE_SIZE)


@pytest.mark.parametrize(("address", "code"), [
    (FIRST_FREE, ErrorCode.ERROR_INVALID_BLOCK),  # never allocated: double free
    (0, ErrorCode.ERROR_BUSY),  # reserved
    (FIRST_FREE + 1, ErrorCode.ERROR_INVALID_PARAMETER),
    (-PAGE_SIZE, ErrorCode.ERROR_INVALID_PARAMETER),
    (1 << 32, ErrorCode.ERROR_INVALID_PARAMETER),
    (MEM_END, ErrorCode.ERROR_INVALID_ADDRESS),  # beyond physical memory
    ((1 << 32) - PAGE_SIZE, ErrorCode.ERROR_INVALID_ADDRESS),
    (None, ErrorCode.ERROR_INVALID_PARAMETER),
    (float(FIRST_FREE), ErrorCode.ERROR_INVALID_PARAMETER),
])
def test_free_frame_failures(pm: PageManager, address: object, code: ErrorCode) -> None:
    assert pm.FreeFrame(address) is False  # type: ignore[arg-type]
    assert pm.last_error == code
    assert pm.GetUsedFrameCount() == RESERVED


def test_double_free(pm: PageManager) -> None:
    address = request(pm)
    assert pm.FreeFrame(address)
    assert pm.FreeFrame(address) is False
    assert pm.last_error == ErrorCode.ERROR_INVALID_BLOCK
    check_frames(pm)


def test_free_frame_refuses_mapped_and_paging_frames(pm: PageManager) -> None:
    vm = VirtualMemoryManager(pm)
    assert vm.InitializePaging()
    directory = vm.CreatePageDirectory()
    assert directory is not None
    address = request(pm)
    assert vm.MapVirtualAddress(directory, USER_SPACE_START, address, False, True)
    table = directory.tables[USER_SPACE_START >> 22]
    assert table is not None
    for busy in (address, directory.physical_addr, table.physical_addr):
        assert pm.FreeFrame(busy) is False
        assert pm.last_error == ErrorCode.ERROR_BUSY
    check_frames(pm)


def test_operations_before_initialisation() -> None:
    pm = PageManager()
    assert pm.GetFrameCount() == 0 and pm.last_error == ErrorCode.ERROR_SUCCESS
    assert pm.FirstFreeFrame() == NO_FRAME and pm.last_error == ErrorCode.ERROR_NOT_READY
    assert pm.RequestFrame(False, True) == NO_FRAME
    assert pm.last_error == ErrorCode.ERROR_NOT_READY
    for call in (pm.FreeFrame, pm.UnreservePage):
        assert call(0) is False and pm.last_error == ErrorCode.ERROR_NOT_READY
    assert pm.CopyPage(0, PAGE_SIZE) is False and pm.last_error == ErrorCode.ERROR_NOT_READY


# -- AllocFrame -------------------------------------------------------------

def test_alloc_frame_maps_the_first_free_frame(pm: PageManager) -> None:
    vm = VirtualMemoryManager(pm)
    assert vm.InitializePaging()
    directory = vm.CreatePageDirectory()
    assert directory is not None
    expected = pm.FirstFreeFrame() + PAGE_SIZE  # the page table is taken first
    assert pm.AllocFrame(directory, USER_SPACE_START, False, True) is True
    assert pm.last_error == ErrorCode.ERROR_SUCCESS
    assert vm.VirtualToPhysical(directory, USER_SPACE_START + 5) == expected + 5
    assert pm.owner[expected // PAGE_SIZE] == FrameOwner.MAPPED
    # The same page again: already mapped, and the error comes through AllocFrame.
    assert pm.AllocFrame(directory, USER_SPACE_START, False, True) is False
    assert pm.last_error == ErrorCode.ERROR_ALREADY_EXISTS
    check_frames(pm)


def test_alloc_frame_without_paging(pm: PageManager) -> None:
    assert pm.AllocFrame(None, USER_SPACE_START, False, True) is False  # type: ignore[arg-type]
    assert pm.last_error == ErrorCode.ERROR_NOT_READY


# -- UnreservePage ------------------------------------------------------------

def test_unreserve_page_frees_a_reserved_frame(pm: PageManager) -> None:
    assert pm.UnreservePage(0x5000) is True
    assert pm.owner[5] == FrameOwner.FREE
    assert pm.FirstFreeFrame() == 0x5000
    assert pm.GetUsedFrameCount() == RESERVED - 1
    assert pm.UnreservePage(0x5000) is False
    assert pm.last_error == ErrorCode.ERROR_INVALID_BLOCK
    check_frames(pm)


def test_unreserve_page_drops_the_identity_mapping(pm: PageManager) -> None:
    vm = VirtualMemoryManager(pm)
    assert vm.InitializePaging()
    kernel = vm.kernel_directory
    assert kernel is not None
    assert vm.VirtualToPhysical(kernel, 0x7123) == 0x7123
    assert pm.UnreservePage(0x7000)
    assert vm.VirtualToPhysical(kernel, 0x7123) == 0xFFFFFFFF
    assert vm.last_error == ErrorCode.ERROR_INVALID_ADDRESS
    check_frames(pm)


@pytest.mark.parametrize(("address", "code"), [
    (FIRST_FREE, ErrorCode.ERROR_INVALID_BLOCK),  # free, not reserved
    (0x5001, ErrorCode.ERROR_INVALID_PARAMETER),
    (MEM_END, ErrorCode.ERROR_INVALID_ADDRESS),
    (-1, ErrorCode.ERROR_INVALID_PARAMETER),
    ("0x5000", ErrorCode.ERROR_INVALID_PARAMETER),
])
def test_unreserve_page_failures(pm: PageManager, address: object, code: ErrorCode) -> None:
    assert pm.UnreservePage(address) is False  # type: ignore[arg-type]
    assert pm.last_error == code
    assert pm.GetUsedFrameCount() == RESERVED


def test_unreserve_page_refuses_held_frames(pm: PageManager) -> None:
    address = request(pm)
    assert pm.UnreservePage(address) is False
    assert pm.last_error == ErrorCode.ERROR_INVALID_BLOCK
    assert pm.owner[address // PAGE_SIZE] == FrameOwner.HELD


# -- CopyPage -----------------------------------------------------------------

def test_copy_page_copies_contents(pm: PageManager) -> None:
    src, dst = request(pm), request(pm)
    data = bytes(range(256)) * 16
    assert pm.WritePhysicalMemory(src, data)
    assert pm.CopyPage(src, dst) is True and pm.last_error == ErrorCode.ERROR_SUCCESS
    assert pm.ReadPhysicalMemory(dst, PAGE_SIZE) == data
    # An independent copy: writing the source later does not change it.
    assert pm.WritePhysicalMemory(src, b"x")
    assert pm.ReadPhysicalMemory(dst, 1) == b"\0"
    # Copying a zero frame zeroes the destination.
    zero = request(pm)
    assert pm.CopyPage(zero, dst)
    assert pm.ReadPhysicalMemory(dst, PAGE_SIZE) == bytes(PAGE_SIZE)
    check_frames(pm)


def test_copy_page_from_reserved_memory(pm: PageManager) -> None:
    dst = request(pm)
    assert pm.CopyPage(0x3000, dst)
    assert pm.ReadPhysicalMemory(dst, PAGE_SIZE) == bytes(PAGE_SIZE)


def test_copy_page_failures(pm: PageManager) -> None:
    vm = VirtualMemoryManager(pm)
    assert vm.InitializePaging()
    held = request(pm)
    assert pm.WritePhysicalMemory(held, b"keep")
    directory = vm.kernel_directory
    assert directory is not None
    cases = [
        (held, 0x3000, ErrorCode.ERROR_ACCESS_DENIED),  # into reserved memory
        (held, directory.physical_addr, ErrorCode.ERROR_ACCESS_DENIED),  # into a directory
        (directory.physical_addr, held, ErrorCode.ERROR_ACCESS_DENIED),  # from a directory
        (held, held + PAGE_SIZE, ErrorCode.ERROR_INVALID_ADDRESS),  # into a free frame
        (held + PAGE_SIZE, held, ErrorCode.ERROR_INVALID_ADDRESS),  # from a free frame
        (held, MEM_END, ErrorCode.ERROR_INVALID_ADDRESS),
        (held + 1, held, ErrorCode.ERROR_INVALID_PARAMETER),
        (held, None, ErrorCode.ERROR_INVALID_PARAMETER),
    ]
    for src, dst, code in cases:
        assert pm.CopyPage(src, dst) is False, (src, dst)
        assert pm.last_error == code, (src, dst)
    assert pm.ReadPhysicalMemory(held, 4) == b"keep"
    check_frames(pm)


def test_get_frame_count(pm: PageManager) -> None:
    assert pm.GetFrameCount() == NFRAMES
    request(pm)
    assert pm.GetFrameCount() == NFRAMES
    assert pm.GetUsedFrameCount() + pm.GetFreeFrameCount() == NFRAMES


# -- the allocator's fast path (take_frame / release_frame inline the bitmap) ---

@settings(max_examples=40, deadline=None)
@given(nframes=st.sampled_from([1, 33, 64, 100, 1025, 1100]),
       reserved=st.integers(0, 40),
       steps=st.lists(st.one_of(st.just(-1), st.just(-1), st.integers(0, 1 << 20)),
                      max_size=300))
def test_take_and_release_match_a_set_model(nframes: int, reserved: int,
                                            steps: list[int]) -> None:
    """Each step allocates (-1) or frees a held frame (picked by value); the frame
    taken is always the lowest free one, and FRM-1..3 hold after every step."""
    reserved = min(reserved, nframes - 1)
    pm = PageManager()
    assert pm.InitializePhysicalMemory(reserved * PAGE_SIZE, nframes * PAGE_SIZE)
    held: list[int] = []
    for step in steps:
        if step < 0 or not held:
            used = {frame for frame in range(nframes) if pm.owner[frame] != FrameOwner.FREE}
            expected = next((frame for frame in range(nframes) if frame not in used), -1)
            assert pm.take_frame(FrameOwner.HELD) == expected
            if expected >= 0:
                held.append(expected)
        else:
            frame = held.pop(step % len(held))
            pm.release_frame(frame)
            assert pm.owner[frame] == FrameOwner.FREE
        assert pm.frames.used == reserved + len(held)
    check_frames(pm)
    for frame in held:
        pm.release_frame(frame)
    assert pm.GetUsedFrameCount() == reserved
    check_frames(pm)


@pytest.mark.parametrize("nframes", [1, 31, 33, 1025, 33 * 1024 + 7])
def test_fill_free_refill(nframes: int) -> None:
    """Exhaust memory, free every third frame and the last one, take them back in order."""
    pm = PageManager()
    assert pm.InitializePhysicalMemory(0, nframes * PAGE_SIZE)
    assert [pm.take_frame(FrameOwner.HELD) for _ in range(nframes)] == list(range(nframes))
    assert pm.take_frame(FrameOwner.HELD) == -1
    freed = sorted({*range(0, nframes, 3), nframes - 1})
    for frame in reversed(freed):
        pm.release_frame(frame)
    assert pm.FirstFreeFrame() == 0
    assert [pm.take_frame(FrameOwner.TABLE) for _ in freed] == freed
    assert pm.take_frame(FrameOwner.HELD) == -1
    check_frames(pm)


@pytest.mark.parametrize("owner", [FrameOwner.MAPPED, FrameOwner.HELD])
def test_physical_writes_reach_mapped_and_held_frames(pm: PageManager,
                                                      owner: FrameOwner) -> None:
    """Write/ReadPhysicalMemory serve the data frames a page table maps (MAPPED) as
    well as the ones a manager holds (HELD), not reserved ones (a mutation run
    found MAPPED frames unchecked)."""
    frame = pm.take_frame(owner)
    address = frame * PAGE_SIZE
    assert pm.WritePhysicalMemory(address + 4094, b"edge") is False  # runs off the frame
    assert pm.WritePhysicalMemory(address + 100, b"data") is True
    assert pm.ReadPhysicalMemory(address + 99, 6) == b"\0data\0"
