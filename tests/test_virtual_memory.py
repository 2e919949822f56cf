"""Behaviour of the VirtualMemoryManager's seed operations and access checks (seed section 2).

Every test ends with ``check_paging``, which checks VMM-1 (a private frame is
mapped once), VMM-2 (a present PTE points to an allocated frame of the right
owner), VMM-4 (kernel tables linked into every directory) and the ownership of
directory and table frames, from the raw state. Page-fault error codes follow
Intel SDM Vol. 3A section 4.7: bit 0 P (protection violation, not "not
present"), bit 1 W/R (write), bit 2 U/S (user mode).
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from model.page_manager import PageManager
from model.page_tables import PageDirectory, PageFault
from model.virtual_memory import VirtualMemoryManager
from spec.abi import (
    INVALID_PHYSICAL_ADDRESS,
    KERNEL_SPACE_START,
    NO_FRAME,
    PAGE_SIZE,
    PTE_ACCESSED,
    PTE_DIRTY,
    PTE_PRESENT,
    PTE_USER,
    PTE_WRITABLE,
    USER_SPACE_START,
    ErrorCode,
    FrameOwner,
)

RESERVED_END = 0x100000
MEM_END = 0x1000000
USER = USER_SPACE_START  # 0x00400000, directory slot 1
SUCCESS = ErrorCode.ERROR_SUCCESS


@dataclass
class System:
    pm: PageManager
    vm: VirtualMemoryManager

    @property
    def kernel(self) -> PageDirectory:
        assert self.vm.kernel_directory is not None
        return self.vm.kernel_directory

    def new_directory(self) -> PageDirectory:
        directory = self.vm.CreatePageDirectory()
        assert directory is not None and self.vm.last_error == SUCCESS
        return directory

    def held_frame(self) -> int:
        address = self.pm.RequestFrame(False, True)
        assert address != NO_FRAME
        return address

    def pte(self, directory: PageDirectory, virtual: int) -> int:
        table = directory.tables[virtual >> 22]
        assert table is not None
        return table.entries[(virtual >> 12) & 0x3FF]

    def pde(self, directory: PageDirectory, virtual: int) -> int:
        return directory.tables_physical[virtual >> 22]


def make_system(mem_end: int = MEM_END, reserved_end: int = RESERVED_END) -> System:
    pm = PageManager()
    assert pm.InitializePhysicalMemory(reserved_end, mem_end)
    vm = VirtualMemoryManager(pm)
    assert vm.InitializePaging() is True and vm.last_error == SUCCESS
    return System(pm, vm)


@pytest.fixture
def system() -> System:
    return make_system()


def check_paging(system: System) -> None:
    pm, vm = system.pm, system.vm
    assert pm.frames.is_consistent()
    mapped: dict[int, int] = {}
    kernel_tables = vm.kernel_tables
    for address, directory in vm.directories.items():
        assert directory.physical_addr == address
        assert pm.owner[address // PAGE_SIZE] == FrameOwner.DIRECTORY
        for slot, table in enumerate(directory.tables):
            pde = directory.tables_physical[slot]
            if table is None:
                assert pde == 0 and slot not in kernel_tables
                continue
            assert pde & 0xFFFFF000 == table.physical_addr and pde & PTE_PRESENT
            assert pm.owner[table.physical_addr // PAGE_SIZE] == FrameOwner.TABLE
            if slot in kernel_tables:
                assert table is kernel_tables[slot]  # VMM-4
                assert not pde & PTE_USER
                continue
            for entry in table.entries:
                if entry & PTE_PRESENT:
                    frame = entry >> 12
                    assert frame < pm.nframes
                    assert pm.owner[frame] == FrameOwner.MAPPED  # VMM-2
                    mapped[frame] = mapped.get(frame, 0) + 1
                else:
                    assert entry == 0
    for table in kernel_tables.values():
        for index, entry in enumerate(table.entries):
            if entry & PTE_PRESENT:
                owner = pm.owner[entry >> 12]
                assert owner in (FrameOwner.MAPPED, FrameOwner.RESERVED)
                if owner == FrameOwner.RESERVED:
                    assert table is kernel_tables.get(0) and entry >> 12 == index
                else:
                    mapped[entry >> 12] = mapped.get(entry >> 12, 0) + 1
    assert all(count == 1 for count in mapped.values())  # VMM-1
    assert sorted(mapped) == [frame for frame in range(pm.nframes)
                              if pm.owner[frame] == FrameOwner.MAPPED]
    assert vm.current_directory is None or vm.directories.get(
        vm.current_directory.physical_addr) is vm.current_directory


# -- InitializePaging ---------------------------------------------------------

def test_initialize_paging_identity_maps_reserved_frames(system: System) -> None:
    vm, kernel = system.vm, system.kernel
    assert vm.current_directory is kernel
    assert list(vm.directories.values()) == [kernel]
    assert set(vm.kernel_tables) == {0}
    for address in (0, 0x5000, RESERVED_END - PAGE_SIZE):
        assert vm.VirtualToPhysical(kernel, address + 0x10) == address + 0x10
        pte = system.pte(kernel, address)
        assert pte & (PTE_PRESENT | PTE_WRITABLE) and not pte & PTE_USER
    assert vm.VirtualToPhysical(kernel, RESERVED_END) == INVALID_PHYSICAL_ADDRESS
    assert vm.placement_address == RESERVED_END
    check_paging(system)


def test_initialize_paging_failures() -> None:
    pm = PageManager()
    vm = VirtualMemoryManager(pm)
    assert vm.InitializePaging() is False and vm.last_error == ErrorCode.ERROR_NOT_READY
    assert pm.InitializePhysicalMemory(PAGE_SIZE, 2 * PAGE_SIZE)  # one free frame only
    assert vm.InitializePaging() is False
    assert vm.last_error == ErrorCode.ERROR_NOT_ENOUGH_MEMORY
    assert vm.kernel_directory is None and pm.GetUsedFrameCount() == 1
    system = make_system()
    assert system.vm.InitializePaging() is False
    assert system.vm.last_error == ErrorCode.ERROR_ALREADY_INITIALIZED


# -- CreatePageDirectory / DestroyPageDirectory -----------------------------

def test_create_page_directory_links_kernel_tables(system: System) -> None:
    directory = system.new_directory()
    assert directory is not system.kernel
    assert system.pm.owner[directory.physical_addr // PAGE_SIZE] == FrameOwner.DIRECTORY
    assert directory.tables[0] is system.kernel.tables[0]
    assert directory.tables_physical[0] & ~0x60 == system.kernel.tables_physical[0] & ~0x60
    assert all(table is None for table in directory.tables[1:])
    assert system.vm.VirtualToPhysical(directory, 0x5000) == 0x5000
    check_paging(system)


def test_create_page_directory_failures() -> None:
    pm = PageManager()
    vm = VirtualMemoryManager(pm)
    assert vm.CreatePageDirectory() is None and vm.last_error == ErrorCode.ERROR_NOT_READY
    system = make_system(mem_end=RESERVED_END + 2 * PAGE_SIZE)  # both free frames used by paging
    assert system.vm.CreatePageDirectory() is None
    assert system.vm.last_error == ErrorCode.ERROR_NOT_ENOUGH_MEMORY


def test_destroy_page_directory_returns_every_frame(system: System) -> None:
    pm, vm = system.pm, system.vm
    free_before = pm.GetFreeFrameCount()
    directory = system.new_directory()
    for page in range(3):  # three user tables
        assert vm.AllocPage(directory, USER + page * 0x400000, False, True)
        assert vm.WriteVirtualMemory(directory, USER + page * 0x400000, b"data", True) is True
    for page in range(1, 5):
        assert vm.MapVirtualAddress(directory, USER + page * PAGE_SIZE, system.held_frame(),
                                    False, page % 2 == 0)
    assert pm.GetFreeFrameCount() == free_before - 1 - 3 - 3 - 4
    written = [frame for frame in pm.memory if pm.owner[frame] == FrameOwner.MAPPED]
    assert vm.DestroyPageDirectory(directory) is True and vm.last_error == SUCCESS
    assert pm.GetFreeFrameCount() == free_before
    assert all(frame not in pm.memory for frame in written)
    assert directory.physical_addr not in vm.directories
    check_paging(system)


def test_destroy_keeps_kernel_tables(system: System) -> None:
    vm = system.vm
    directory = system.new_directory()
    other = system.new_directory()
    assert vm.AllocPage(directory, KERNEL_SPACE_START, True, True)  # a kernel table, linked
    physical = vm.VirtualToPhysical(directory, KERNEL_SPACE_START)
    assert vm.DestroyPageDirectory(directory)
    assert vm.VirtualToPhysical(other, KERNEL_SPACE_START) == physical
    assert vm.VirtualToPhysical(system.kernel, KERNEL_SPACE_START) == physical
    check_paging(system)


def test_destroy_page_directory_failures(system: System) -> None:
    vm = system.vm
    assert vm.DestroyPageDirectory(system.kernel) is False
    assert vm.last_error == ErrorCode.ERROR_ACCESS_DENIED
    directory = system.new_directory()
    assert vm.SwitchPageDirectory(directory)
    assert vm.DestroyPageDirectory(directory) is False
    assert vm.last_error == ErrorCode.ERROR_BUSY
    assert vm.SwitchPageDirectory(system.kernel)
    assert vm.DestroyPageDirectory(directory)
    assert vm.DestroyPageDirectory(directory) is False  # destroyed already
    assert vm.last_error == ErrorCode.ERROR_INVALID_HANDLE
    for bogus in (None, PageDirectory(directory.physical_addr), make_system().kernel):
        assert vm.DestroyPageDirectory(bogus) is False  # type: ignore[arg-type]
        assert vm.last_error == ErrorCode.ERROR_INVALID_HANDLE
    check_paging(system)


# -- ClonePageDirectory --------------------------------------------------------

def test_clone_copies_user_pages_into_fresh_frames(system: System) -> None:
    vm, pm = system.vm, system.pm
    src = system.new_directory()
    assert vm.AllocPage(src, USER, False, True)
    assert vm.AllocPage(src, USER + PAGE_SIZE, False, False)  # read-only user page
    assert vm.AllocPage(src, USER + 0x400000, True, True)  # supervisor page, user space
    assert vm.WriteVirtualMemory(src, USER + 100, b"parent", True) is True
    assert vm.ReadVirtualMemory(src, USER + PAGE_SIZE, 1, True) == b"\0"
    free_before = pm.GetFreeFrameCount()
    clone = vm.ClonePageDirectory(src)
    assert clone is not None and vm.last_error == SUCCESS
    assert pm.GetFreeFrameCount() == free_before - 1 - 2 - 3  # directory, 2 tables, 3 pages
    for virtual in (USER, USER + PAGE_SIZE, USER + 0x400000):
        original, copy = system.pte(src, virtual), system.pte(clone, virtual)
        assert copy >> 12 != original >> 12  # a fresh frame
        flags = PTE_PRESENT | PTE_WRITABLE | PTE_USER
        assert copy & flags == original & flags
        assert not copy & (PTE_ACCESSED | PTE_DIRTY)  # A/D start clear in the copy
        assert pm.owner[copy >> 12] == FrameOwner.MAPPED
    assert system.pte(src, USER) & (PTE_ACCESSED | PTE_DIRTY) == PTE_ACCESSED | PTE_DIRTY
    assert clone.tables[1] is not src.tables[1]
    assert vm.ReadVirtualMemory(clone, USER + 100, 6, True) == b"parent"
    # Independent copies: a write to one is not seen in the other.
    assert vm.WriteVirtualMemory(clone, USER + 100, b"child!", True) is True
    assert vm.ReadVirtualMemory(src, USER + 100, 6, True) == b"parent"
    check_paging(system)


def test_clone_links_kernel_tables(system: System) -> None:
    vm = system.vm
    src = system.new_directory()
    assert vm.AllocPage(src, KERNEL_SPACE_START, True, True)
    clone = vm.ClonePageDirectory(src)
    assert clone is not None
    assert clone.tables[0] is src.tables[0] is system.kernel.tables[0]
    slot = KERNEL_SPACE_START >> 22
    assert clone.tables[slot] is src.tables[slot]
    # A kernel mapping made after cloning is visible in both (and everywhere).
    assert vm.AllocPage(src, KERNEL_SPACE_START + PAGE_SIZE, True, True)
    physical = vm.VirtualToPhysical(src, KERNEL_SPACE_START + PAGE_SIZE)
    assert vm.VirtualToPhysical(clone, KERNEL_SPACE_START + PAGE_SIZE) == physical
    # Also in a slot whose kernel table did not exist when the clone was made.
    high = 0xF0000000
    assert vm.AllocPage(clone, high, True, False)
    assert vm.VirtualToPhysical(src, high) == vm.VirtualToPhysical(clone, high)
    assert vm.VirtualToPhysical(system.kernel, high) == vm.VirtualToPhysical(clone, high)
    assert vm.WriteVirtualMemory(src, KERNEL_SPACE_START, b"k", False) is True
    assert vm.ReadVirtualMemory(clone, KERNEL_SPACE_START, 1, False) == b"k"
    check_paging(system)


def test_clone_skips_empty_user_tables(system: System) -> None:
    vm = system.vm
    src = system.new_directory()
    assert vm.AllocPage(src, USER, False, True)
    assert vm.FreePage(src, USER)
    clone = vm.ClonePageDirectory(src)
    assert clone is not None
    assert clone.tables[1] is None and clone.tables_physical[1] == 0
    check_paging(system)


def test_clone_is_all_or_nothing(system: System) -> None:
    vm, pm = system.vm, system.pm
    src = system.new_directory()
    for page in range(4):
        assert vm.AllocPage(src, USER + page * PAGE_SIZE, False, True)
    held = []
    while pm.GetFreeFrameCount() > 1 + 1 + 4 - 1:  # one frame short of the copy
        held.append(system.held_frame())
    state = (pm.GetFreeFrameCount(), len(vm.directories), bytes(pm.owner))
    assert vm.ClonePageDirectory(src) is None
    assert vm.last_error == ErrorCode.ERROR_NOT_ENOUGH_MEMORY
    assert (pm.GetFreeFrameCount(), len(vm.directories), bytes(pm.owner)) == state
    assert pm.FreeFrame(held[0])
    assert vm.ClonePageDirectory(src) is not None
    assert pm.GetFreeFrameCount() == 0
    check_paging(system)


def test_clone_of_the_kernel_directory(system: System) -> None:
    clone = system.vm.ClonePageDirectory(system.kernel)
    assert clone is not None and clone is not system.kernel
    assert system.vm.VirtualToPhysical(clone, 0x5000) == 0x5000
    assert system.vm.ClonePageDirectory(PageDirectory(clone.physical_addr)) is None
    assert system.vm.last_error == ErrorCode.ERROR_INVALID_HANDLE
    check_paging(system)


# -- SwitchPageDirectory -----------------------------------------------------

def test_switch_page_directory(system: System) -> None:
    vm = system.vm
    directory = system.new_directory()
    assert vm.SwitchPageDirectory(directory) is True and vm.last_error == SUCCESS
    assert vm.current_directory is directory
    assert vm.SwitchPageDirectory(directory)  # switching to the current one is fine
    assert vm.SwitchPageDirectory(PageDirectory(directory.physical_addr)) is False
    assert vm.last_error == ErrorCode.ERROR_INVALID_HANDLE
    assert vm.current_directory is directory
    assert vm.SwitchPageDirectory(system.kernel)
    assert vm.DestroyPageDirectory(directory)
    assert vm.SwitchPageDirectory(directory) is False
    assert vm.current_directory is system.kernel
    check_paging(system)


# -- MapVirtualAddress / UnmapVirtualAddress / VirtualToPhysical ------------

def test_map_virtual_address(system: System) -> None:
    vm, pm = system.vm, system.pm
    directory = system.new_directory()
    physical = system.held_frame()
    assert vm.MapVirtualAddress(directory, USER + 0x3000, physical, False, False) is True
    assert vm.last_error == SUCCESS
    assert pm.owner[physical // PAGE_SIZE] == FrameOwner.MAPPED
    assert vm.VirtualToPhysical(directory, USER + 0x3ABC) == physical + 0xABC
    pte = system.pte(directory, USER + 0x3000)
    assert pte == physical | PTE_PRESENT | PTE_USER  # read-only user page
    assert system.pde(directory, USER) & (PTE_PRESENT | PTE_WRITABLE | PTE_USER) == 7
    # Not visible in another directory.
    assert vm.VirtualToPhysical(system.kernel, USER + 0x3000) == INVALID_PHYSICAL_ADDRESS
    check_paging(system)


def test_map_kernel_space_links_into_every_directory(system: System) -> None:
    vm = system.vm
    first, second = system.new_directory(), system.new_directory()
    physical = system.held_frame()
    assert vm.MapVirtualAddress(first, 0xD0000000, physical, True, True)
    for directory in (first, second, system.kernel):
        assert vm.VirtualToPhysical(directory, 0xD0000000) == physical
        assert not system.pde(directory, 0xD0000000) & PTE_USER
    # A directory created afterwards gets it too.
    assert vm.VirtualToPhysical(system.new_directory(), 0xD0000000) == physical
    check_paging(system)


def test_map_virtual_address_failures(system: System) -> None:
    vm, pm = system.vm, system.pm
    directory = system.new_directory()
    held, mapped = system.held_frame(), system.held_frame()
    assert vm.MapVirtualAddress(directory, USER, mapped, False, True)
    free = pm.FirstFreeFrame()
    cases = [
        (USER, held, False, ErrorCode.ERROR_ALREADY_EXISTS),
        (0x1000, held, True, ErrorCode.ERROR_ALREADY_EXISTS),  # identity-mapped
        (KERNEL_SPACE_START, held, False, ErrorCode.ERROR_ACCESS_DENIED),  # user page, kernel
        (0x200000, held, False, ErrorCode.ERROR_ACCESS_DENIED),  # user page, identity region
        (USER + PAGE_SIZE, mapped, False, ErrorCode.ERROR_BUSY),  # frame already mapped
        (USER + PAGE_SIZE, 0x5000, False, ErrorCode.ERROR_BUSY),  # reserved frame
        (USER + PAGE_SIZE, directory.physical_addr, False, ErrorCode.ERROR_BUSY),
        (USER + PAGE_SIZE, free, False, ErrorCode.ERROR_INVALID_ADDRESS),  # a free frame
        (USER + PAGE_SIZE, MEM_END, False, ErrorCode.ERROR_INVALID_ADDRESS),  # beyond memory
        (USER + PAGE_SIZE, held + 1, False, ErrorCode.ERROR_INVALID_PARAMETER),
        (USER + 1, held, False, ErrorCode.ERROR_INVALID_PARAMETER),
        (1 << 32, held, True, ErrorCode.ERROR_INVALID_PARAMETER),
    ]
    for virtual, physical, is_kernel, code in cases:
        assert vm.MapVirtualAddress(directory, virtual, physical, is_kernel, True) is False
        assert vm.last_error == code, (hex(virtual), hex(physical))
    assert pm.owner[held // PAGE_SIZE] == FrameOwner.HELD
    check_paging(system)


def test_unmap_virtual_address_frees_the_frame(system: System) -> None:
    vm, pm = system.vm, system.pm
    directory = system.new_directory()
    physical = system.held_frame()
    assert vm.MapVirtualAddress(directory, USER, physical, False, True)
    free_before = pm.GetFreeFrameCount()
    assert vm.UnmapVirtualAddress(directory, USER) is True and vm.last_error == SUCCESS
    assert pm.owner[physical // PAGE_SIZE] == FrameOwner.FREE
    assert pm.GetFreeFrameCount() == free_before + 1  # the table stays
    assert system.pte(directory, USER) == 0
    assert vm.VirtualToPhysical(directory, USER) == INVALID_PHYSICAL_ADDRESS
    assert vm.last_error == ErrorCode.ERROR_INVALID_ADDRESS
    assert vm.UnmapVirtualAddress(directory, USER) is False
    assert vm.last_error == ErrorCode.ERROR_INVALID_ADDRESS
    check_paging(system)


def test_unmap_virtual_address_failures(system: System) -> None:
    vm = system.vm
    directory = system.new_directory()
    for virtual, code in [
        (USER, ErrorCode.ERROR_INVALID_ADDRESS),  # no table
        (0x5000, ErrorCode.ERROR_ACCESS_DENIED),  # identity-mapped reserved frame
        (0x5001, ErrorCode.ERROR_INVALID_PARAMETER),
        (-PAGE_SIZE, ErrorCode.ERROR_INVALID_PARAMETER),
    ]:
        assert vm.UnmapVirtualAddress(directory, virtual) is False
        assert vm.last_error == code
    assert vm.VirtualToPhysical(directory, 0x5000) == 0x5000
    check_paging(system)


def test_virtual_to_physical_keeps_the_offset(system: System) -> None:
    vm = system.vm
    directory = system.new_directory()
    physical = system.held_frame()
    assert vm.MapVirtualAddress(directory, 0xBFFFF000, physical, False, True)
    for offset in (0, 1, 0x7FF, 0xFFF):
        assert vm.VirtualToPhysical(directory, 0xBFFFF000 + offset) == physical + offset
        assert vm.last_error == SUCCESS
    for bad, code in [(1 << 32, ErrorCode.ERROR_INVALID_PARAMETER),
                      (-1, ErrorCode.ERROR_INVALID_PARAMETER),
                      (None, ErrorCode.ERROR_INVALID_PARAMETER),
                      (0xC0000000, ErrorCode.ERROR_INVALID_ADDRESS)]:
        assert vm.VirtualToPhysical(directory, bad) == INVALID_PHYSICAL_ADDRESS  # type: ignore[arg-type]
        assert vm.last_error == code


# -- AllocPage / FreePage ---------------------------------------------------

def test_alloc_page_takes_a_table_then_the_page(system: System) -> None:
    vm, pm = system.vm, system.pm
    directory = system.new_directory()
    first_free = pm.FirstFreeFrame()
    assert vm.AllocPage(directory, USER, False, True) is True and vm.last_error == SUCCESS
    table = directory.tables[1]
    assert table is not None and table.physical_addr == first_free
    assert vm.VirtualToPhysical(directory, USER) == first_free + PAGE_SIZE
    assert system.pte(directory, USER) == (first_free + PAGE_SIZE) | 7
    assert vm.ReadVirtualMemory(directory, USER, PAGE_SIZE, True) == bytes(PAGE_SIZE)
    # Same table for the next page: one frame only.
    assert vm.AllocPage(directory, USER + PAGE_SIZE, True, False)
    assert system.pte(directory, USER + PAGE_SIZE) == (first_free + 2 * PAGE_SIZE) | 1
    assert pm.FirstFreeFrame() == first_free + 3 * PAGE_SIZE
    check_paging(system)


def test_alloc_page_failures(system: System) -> None:
    vm, pm = system.vm, system.pm
    directory = system.new_directory()
    assert vm.AllocPage(directory, USER, False, True)
    for virtual, is_kernel, code in [
        (USER, False, ErrorCode.ERROR_ALREADY_EXISTS),
        (0xC0001000, False, ErrorCode.ERROR_ACCESS_DENIED),
        (0x3000, True, ErrorCode.ERROR_ALREADY_EXISTS),
        (USER + 0x800, False, ErrorCode.ERROR_INVALID_PARAMETER),
    ]:
        assert vm.AllocPage(directory, virtual, is_kernel, True) is False
        assert vm.last_error == code
    # Out of memory: a page in an existing table needs one frame, in a new table two.
    while pm.GetFreeFrameCount() > 1:
        system.held_frame()
    used = pm.GetUsedFrameCount()
    assert vm.AllocPage(directory, USER + 0x800000, False, True) is False
    assert vm.last_error == ErrorCode.ERROR_NOT_ENOUGH_MEMORY
    assert pm.GetUsedFrameCount() == used and directory.tables[3] is None
    assert vm.AllocPage(directory, USER + PAGE_SIZE, False, True)
    assert vm.AllocPage(directory, USER + 2 * PAGE_SIZE, False, True) is False
    assert vm.last_error == ErrorCode.ERROR_NOT_ENOUGH_MEMORY
    check_paging(system)


def test_free_page(system: System) -> None:
    vm, pm = system.vm, system.pm
    directory = system.new_directory()
    assert vm.AllocPage(directory, USER, False, True)
    frame = vm.VirtualToPhysical(directory, USER) // PAGE_SIZE
    assert vm.WriteVirtualMemory(directory, USER, b"x", True) is True
    assert vm.FreePage(directory, USER) is True and vm.last_error == SUCCESS
    assert pm.owner[frame] == FrameOwner.FREE and frame not in pm.memory
    assert vm.FreePage(directory, USER) is False
    assert vm.last_error == ErrorCode.ERROR_INVALID_ADDRESS
    check_paging(system)


# -- accesses through the page tables ---------------------------------------

@pytest.fixture
def pages(system: System) -> tuple[System, PageDirectory]:
    """A directory with a user RW page, a user RO page and a supervisor page in user space."""
    directory = system.new_directory()
    assert system.vm.AllocPage(directory, USER, False, True)  # user, writable
    assert system.vm.AllocPage(directory, USER + PAGE_SIZE, False, False)  # user, read-only
    assert system.vm.AllocPage(directory, USER + 2 * PAGE_SIZE, True, True)  # supervisor
    return system, directory


@pytest.mark.parametrize(("virtual", "user_mode", "write", "error_code"), [
    (USER + 2 * PAGE_SIZE, True, False, 0x5),  # user read of a supervisor page: P|U
    (USER + 2 * PAGE_SIZE, True, True, 0x7),  # user write of a supervisor page: P|W|U
    (USER + PAGE_SIZE, True, True, 0x7),  # user write of a read-only page: P|W|U
    (USER + PAGE_SIZE, False, True, 0x3),  # supervisor write of read-only (CR0.WP=1): P|W
    (USER + 3 * PAGE_SIZE, True, False, 0x4),  # not present: P=0
    (USER + 3 * PAGE_SIZE, False, True, 0x2),
    (0x40000000, False, False, 0x0),  # no page table at all
    (0x5000, True, False, 0x5),  # user read of the identity-mapped kernel
])
def test_access_faults(pages: tuple[System, PageDirectory], virtual: int, user_mode: bool,
                       write: bool, error_code: int) -> None:
    system, directory = pages
    vm = system.vm
    before = (list(directory.tables_physical), [list(t.entries) if t else None
                                                for t in directory.tables])
    address = virtual + 0x10
    if write:
        result: object = vm.WriteVirtualMemory(directory, address, b"ab", user_mode)
    else:
        result = vm.ReadVirtualMemory(directory, address, 2, user_mode)
    assert result == PageFault(error_code, address)
    assert vm.last_error == ErrorCode.ERROR_NOACCESS
    assert (list(directory.tables_physical), [list(t.entries) if t else None
                                              for t in directory.tables]) == before


def test_allowed_accesses_set_accessed_and_dirty(pages: tuple[System, PageDirectory]) -> None:
    system, directory = pages
    vm = system.vm
    assert not system.pde(directory, USER) & PTE_ACCESSED
    assert vm.ReadVirtualMemory(directory, USER + PAGE_SIZE, 4, True) == bytes(4)
    assert vm.last_error == SUCCESS
    assert system.pte(directory, USER + PAGE_SIZE) & (PTE_ACCESSED | PTE_DIRTY) == PTE_ACCESSED
    assert system.pde(directory, USER) & PTE_ACCESSED
    assert not system.pte(directory, USER) & PTE_ACCESSED  # untouched page
    assert vm.WriteVirtualMemory(directory, USER + 8, b"hello", True) is True
    assert system.pte(directory, USER) & (PTE_ACCESSED | PTE_DIRTY) == PTE_ACCESSED | PTE_DIRTY
    assert vm.ReadVirtualMemory(directory, USER + 8, 5, True) == b"hello"
    # Supervisor accesses reach supervisor pages.
    assert vm.WriteVirtualMemory(directory, USER + 2 * PAGE_SIZE, b"k", False) is True
    assert vm.ReadVirtualMemory(directory, USER + 2 * PAGE_SIZE, 1, False) == b"k"
    assert system.pte(directory, USER + 2 * PAGE_SIZE) & PTE_DIRTY


def test_access_spanning_pages(pages: tuple[System, PageDirectory]) -> None:
    system, directory = pages
    vm = system.vm
    data = bytes(range(200))
    start = USER + PAGE_SIZE - 100  # last 100 bytes of the RW page, first 100 of the RO page
    assert vm.WriteVirtualMemory(directory, start, data, False) == PageFault(0x3, USER + PAGE_SIZE)
    assert vm.ReadVirtualMemory(directory, start, 200, True) == bytes(200)
    assert vm.WriteVirtualMemory(directory, start, data[:100], True) is True
    assert vm.ReadVirtualMemory(directory, start, 100, True) == data[:100]


def test_multi_page_access_faulting_on_page_two_changes_nothing(
        pages: tuple[System, PageDirectory]) -> None:
    system, directory = pages
    vm, pm = system.vm, system.pm
    assert vm.WriteVirtualMemory(directory, USER, b"old", True) is True
    directory.tables_physical[1] &= ~PTE_ACCESSED  # start from clear A bits
    table = directory.tables[1]
    assert table is not None
    table.entries[0] &= ~(PTE_ACCESSED | PTE_DIRTY)
    entries, pde = list(table.entries), directory.tables_physical[1]
    memory = {frame: bytes(page) for frame, page in pm.memory.items()}
    # Page 1 (RW) is fine; page 2 (RO) faults on a user write.
    fault = vm.WriteVirtualMemory(directory, USER, b"new" + bytes(PAGE_SIZE), True)
    assert fault == PageFault(0x7, USER + PAGE_SIZE)
    fault = vm.ReadVirtualMemory(directory, USER, 3 * PAGE_SIZE, True)  # page 3 supervisor
    assert fault == PageFault(0x5, USER + 2 * PAGE_SIZE)
    assert table.entries == entries and directory.tables_physical[1] == pde
    assert {frame: bytes(page) for frame, page in pm.memory.items()} == memory
    assert vm.ReadVirtualMemory(directory, USER, 3, True) == b"old"


def test_execute_virtual_memory(pages: tuple[System, PageDirectory]) -> None:
    system, directory = pages
    vm = system.vm
    assert vm.WriteVirtualMemory(directory, USER, b"\x90", True) is True
    assert vm.ExecuteVirtualMemory(directory, USER, True) == b"\x90"
    assert vm.ExecuteVirtualMemory(directory, USER + PAGE_SIZE, True) == b"\0"  # no NX
    assert vm.ExecuteVirtualMemory(directory, USER + 2 * PAGE_SIZE, True) == PageFault(
        0x5, USER + 2 * PAGE_SIZE)
    assert vm.ExecuteVirtualMemory(directory, USER + 3 * PAGE_SIZE, False) == PageFault(
        0x0, USER + 3 * PAGE_SIZE)
    assert vm.last_error == ErrorCode.ERROR_NOACCESS


def test_access_argument_errors(pages: tuple[System, PageDirectory]) -> None:
    system, directory = pages
    vm = system.vm
    assert vm.ReadVirtualMemory(directory, USER, -1, True) is None
    assert vm.last_error == ErrorCode.ERROR_INVALID_PARAMETER
    assert vm.ReadVirtualMemory(directory, 0xFFFFFFFF, 2, False) is None  # wraps past 4 GiB
    assert vm.ReadVirtualMemory(directory, USER, 1, 1) is None  # type: ignore[arg-type]
    assert vm.WriteVirtualMemory(directory, USER, "text", True) is False  # type: ignore[arg-type]
    assert vm.last_error == ErrorCode.ERROR_INVALID_PARAMETER
    assert vm.ReadVirtualMemory(PageDirectory(directory.physical_addr), USER, 1, True) is None
    assert vm.last_error == ErrorCode.ERROR_INVALID_HANDLE
    assert vm.ReadVirtualMemory(directory, USER, 0, True) == b""
