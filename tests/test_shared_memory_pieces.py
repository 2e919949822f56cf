"""munmap and MAP_FIXED over part of a shared view (issue 15): a view becomes pieces,
each with its first page in its source (the vma's vm_pgoff; mm/mmap.c
do_vmi_munmap / __split_vma), each counted in the block's mappings (shm_nattch:
ipc/shm.c shm_open on the split vma), a file piece's dirty pages written back
before its pages go; the unmapped pages fault and the rest stay (LTP munmap01's
'partially unmapped region not accessible'). The Windows calls take a piece as
a view (UnmapViewOfFile's any-address rule, applied to the piece holding it)."""

from __future__ import annotations

import pytest

from model.file_node import MemoryFileNode
from model.linux_mm import SyscallMmap, SyscallMprotect, SyscallMunmap, linux_maps
from model.memory_subsystem import MemorySubsystem
from model.page_tables import PageFault
from model.process_memory import ProcessMemorySpace
from model.virtual_alloc import VirtualProtectProcessMemory
from spec.abi import (
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_PRIVATE,
    PAGE_NOACCESS,
    PAGE_READONLY,
    PAGE_READWRITE,
    PAGE_SIZE,
    PROT_READ,
    PROT_WRITE,
    ErrorCode,
    FrameOwner,
)
from tests.test_mapped_files import CountingNode, use
from tests.test_shared_memory import check_world, new_process, world_snapshot

E = ErrorCode
P = PAGE_SIZE


@pytest.fixture
def space(sub: MemorySubsystem) -> ProcessMemorySpace:
    return use(sub, new_process(sub))


def fill(space: ProcessMemorySpace, base: int, pages: int) -> None:
    for page in range(pages):
        assert space.WriteUserMemory(base + page * P, bytes([65 + page]) * 4) is True


def test_munmap_of_a_block_views_middle_leaves_two_pieces(sub: MemorySubsystem,
                                                          space: ProcessMemorySpace) -> None:
    shm = sub.shared_memory
    other = new_process(sub)
    shm_id = shm.CreateSharedMemory(4 * P, PAGE_READWRITE)
    base = shm.MapSharedMemoryToProcess(space, shm_id, 0)
    seen = shm.MapSharedMemoryToProcess(other, shm_id, 0)
    fill(space, base, 4)
    assert SyscallMunmap(space, base + P, P) == 0
    assert shm.blocks[shm_id].mappings == {(space.pid, base), (space.pid, base + 2 * P),
                                           (other.pid, seen)}
    assert (shm.firsts[(space.pid, base)], shm.firsts[(space.pid, base + 2 * P)]) == (0, 2)
    assert space.allocations[base].size == P and space.allocations[base + 2 * P].size == 2 * P
    fault = space.WriteUserMemory(base + P, b"x")
    assert isinstance(fault, PageFault) and fault.address == base + P
    assert space.ReadUserMemory(base, 4) == b"AAAA"
    assert space.ReadUserMemory(base + 3 * P, 4) == b"DDDD"
    assert space.WriteUserMemory(base + 2 * P, b"new") is True  # the same frames
    assert other.ReadUserMemory(seen + 2 * P, 3) == b"new"
    assert other.ReadUserMemory(seen + P, 4) == b"BBBB"  # the other view keeps the page
    assert [(start - base, end - base, perms) for start, end, perms in linux_maps(space)
            if base <= start < base + 4 * P] == [(0, P, "rw-s"), (2 * P, 4 * P, "rw-s")]
    check_world(sub)


def test_a_destroyed_block_lives_while_any_piece_is_attached(
        sub: MemorySubsystem, space: ProcessMemorySpace) -> None:
    shm, pm = sub.shared_memory, sub.pageman
    shm_id = shm.CreateSharedMemory(3 * P, PAGE_READWRITE)
    frames = shm.blocks[shm_id].frames
    base = shm.MapSharedMemoryToProcess(space, shm_id, 0)
    assert SyscallMunmap(space, base + P, P) == 0 and shm.DestroySharedMemory(shm_id)
    assert SyscallMunmap(space, base, P) == 0  # the left piece, whole
    assert shm_id in shm.blocks and shm.blocks[shm_id].mappings == {(space.pid, base + 2 * P)}
    assert all(pm.owner[frame] == FrameOwner.SHARED for frame in frames)
    check_world(sub)
    assert SyscallMunmap(space, base + 2 * P, P) == 0  # the last piece
    assert shm_id not in shm.blocks and not shm.firsts
    assert all(pm.owner[frame] == FrameOwner.FREE for frame in frames)


def test_munmap_of_a_views_head_rebases_it(sub: MemorySubsystem,
                                           space: ProcessMemorySpace) -> None:
    """The head goes: the piece left starts at the end of the range, its first page
    the distance (vm_pgoff), and the old base is no view any more."""
    shm = sub.shared_memory
    shm_id = shm.CreateSharedMemory(3 * P, PAGE_READWRITE)
    base = shm.MapSharedMemoryToProcess(space, shm_id, 0)
    fill(space, base, 3)
    assert SyscallMunmap(space, base, 2 * P) == 0
    assert (space.pid, base) not in shm.views and base not in space.views
    assert shm.firsts[(space.pid, base + 2 * P)] == 2
    assert space.ReadUserMemory(base + 2 * P, 4) == b"CCCC"
    before = world_snapshot(sub)
    assert not shm.UnmapSharedMemoryFromProcess(space, base)
    assert shm.last_error == E.ERROR_INVALID_ADDRESS and world_snapshot(sub) == before
    check_world(sub)


def test_munmap_across_two_views_takes_the_tail_of_one_and_the_head_of_the_next(
        sub: MemorySubsystem, space: ProcessMemorySpace) -> None:
    shm = sub.shared_memory
    one, two = (shm.CreateSharedMemory(2 * P, PAGE_READWRITE) for _ in range(2))
    first = shm.MapSharedMemoryToProcess(space, one, 0)
    second = shm.MapSharedMemoryToProcess(space, two, first + 0x10000)
    assert second == first + 0x10000
    assert SyscallMunmap(space, first + P, second + P - (first + P)) == 0
    assert shm.blocks[one].mappings == {(space.pid, first)}
    assert shm.blocks[two].mappings == {(space.pid, second + P)}
    assert shm.firsts[(space.pid, first)] == 0 and shm.firsts[(space.pid, second + P)] == 1
    check_world(sub)


def test_unmap_shared_memory_inside_a_split_view_unmaps_that_piece(
        sub: MemorySubsystem, space: ProcessMemorySpace) -> None:
    """UnmapViewOfFile's any-address rule takes the piece holding the address; the
    other piece stays mapped (the seed has no shmdt, which would detach both)."""
    shm = sub.shared_memory
    shm_id = shm.CreateSharedMemory(4 * P, PAGE_READWRITE)
    base = shm.MapSharedMemoryToProcess(space, shm_id, 0)
    assert SyscallMunmap(space, base + P, P) == 0
    assert shm.UnmapSharedMemoryFromProcess(space, base + 3 * P + 100)
    assert shm.blocks[shm_id].mappings == {(space.pid, base)}
    assert space.ReadUserMemory(base, 1) == b"\0"
    assert isinstance(space.ReadUserMemory(base + 2 * P, 1), PageFault)
    check_world(sub)


def test_map_fixed_over_part_of_a_view_replaces_those_pages(
        sub: MemorySubsystem, space: ProcessMemorySpace) -> None:
    shm = sub.shared_memory
    shm_id = shm.CreateSharedMemory(3 * P, PAGE_READWRITE)
    base = shm.MapSharedMemoryToProcess(space, shm_id, 0)
    fill(space, base, 3)
    fresh = SyscallMmap(space, base + P, P, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0)
    assert fresh == base + P and space.ReadUserMemory(fresh, 4) == bytes(4)
    assert fresh not in space.views and space.pages[fresh // P].frame not in \
        shm.blocks[shm_id].frames
    assert space.ReadUserMemory(base, 4) == b"AAAA"
    assert space.ReadUserMemory(base + 2 * P, 4) == b"CCCC"
    assert shm.blocks[shm_id].mappings == {(space.pid, base), (space.pid, base + 2 * P)}
    check_world(sub)


def test_protection_calls_act_on_a_piece(sub: MemorySubsystem,
                                         space: ProcessMemorySpace) -> None:
    """A piece is one allocation: VirtualProtect stays inside it, mprotect applies."""
    shm = sub.shared_memory
    shm_id = shm.CreateSharedMemory(4 * P, PAGE_READWRITE)
    base = shm.MapSharedMemoryToProcess(space, shm_id, 0)
    assert SyscallMunmap(space, base + P, P) == 0
    assert SyscallMprotect(space, base + 2 * P, 2 * P, PROT_READ) == 0
    assert isinstance(space.WriteUserMemory(base + 3 * P, b"x"), PageFault)
    done, old = VirtualProtectProcessMemory(space, base + 2 * P, 2 * P, PAGE_READWRITE)
    assert done and old == PAGE_READONLY
    done, _ = VirtualProtectProcessMemory(space, base, 3 * P, PAGE_READONLY)
    assert not done and space.last_error == E.ERROR_INVALID_ADDRESS  # across pieces
    check_world(sub)


def test_a_file_piece_writes_back_the_pages_it_unmaps(sub: MemorySubsystem,
                                                      space: ProcessMemorySpace) -> None:
    """munmap of part of a MAP_SHARED file mapping keeps the writes of those pages
    (written back first; the cache pages nothing maps any more are freed); the pages
    left stay dirty in the cache until their own unmap or sync."""
    mmf = sub.mapped_files
    node = CountingNode(bytes(4 * P))
    base = mmf.MapFileToMemory(node, 0, 0, PAGE_READWRITE)
    fill(space, base, 4)
    assert SyscallMunmap(space, base + P, P) == 0
    assert node.writes == [(P, P)] and bytes(node.data[P:P + 4]) == b"BBBB"
    assert (1, 0) in mmf.cache and (1, 1) not in mmf.cache and (1, 2) in mmf.cache
    assert mmf.views[(space.pid, base)].first == 0 and mmf.views[(space.pid, base)].count == 1
    right = mmf.views[(space.pid, base + 2 * P)]
    assert (right.first, right.count) == (2, 2)
    assert bytes(node.data[2 * P:2 * P + 4]) == bytes(4)  # not written back yet
    assert mmf.SyncMappedFile(base + 2 * P)  # a piece's base is a view's base
    assert bytes(node.data[2 * P:2 * P + 4]) == b"CCCC"
    assert mmf.UnmapFileFromMemory(base + 100)
    assert bytes(node.data[:4]) == b"AAAA" and (1, 0) not in mmf.cache
    check_world(sub)


def test_a_file_piece_dropped_write_back_still_unmaps(sub: MemorySubsystem,
                                                      space: ProcessMemorySpace) -> None:
    """munmap cannot fail on a write-back the node refuses: the pages are unmapped and
    their bytes dropped, as at exit (Linux keeps the error for a later fsync)."""
    mmf = sub.mapped_files

    class Refusing(MemoryFileNode):
        def write(self, offset: int, data: bytes) -> int:
            raise OSError("no space")

    node = Refusing(bytes(3 * P))
    base = mmf.MapFileToMemory(node, 0, 0, PAGE_READWRITE)
    fill(space, base, 3)
    assert SyscallMunmap(space, base + 2 * P, P) == 0
    assert bytes(node.data) == bytes(3 * P) and (1, 2) not in mmf.cache
    assert space.ReadUserMemory(base + P, 4) == b"BBBB"
    check_world(sub)


def test_a_rebased_file_piece_folds_its_dirty_pages_at_its_offset(
        sub: MemorySubsystem, space: ProcessMemorySpace) -> None:
    """After the head goes, the piece's pages are file pages first + (vpn - base): a
    page written then made PAGE_NOACCESS (its D bit folded into the cache page) is
    written back to its own place at the unmap."""
    mmf = sub.mapped_files
    node = CountingNode(bytes(4 * P))
    base = mmf.MapFileToMemory(node, 0, 0, PAGE_READWRITE)
    assert SyscallMunmap(space, base, P) == 0
    piece = base + P
    assert (mmf.views[(space.pid, piece)].first, mmf.views[(space.pid, piece)].count) == (1, 3)
    assert space.WriteUserMemory(base + 2 * P, b"two") is True
    done, _ = VirtualProtectProcessMemory(space, base + 2 * P, P, PAGE_NOACCESS)
    assert done and mmf.cache[(1, 2)].dirty
    assert mmf.UnmapFileFromMemory(piece + 3 * P - 1)
    assert node.writes == [(2 * P, P)] and bytes(node.data[2 * P:2 * P + 3]) == b"two"
    assert not mmf.views and not mmf.cache
