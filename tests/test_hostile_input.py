"""Hostile input to every public operation of PageManager and VirtualMemoryManager.

DESIGN.md: "Bad input never raises a Python exception out of an API call and
never changes state: it returns the documented failure and error code."
Every call here goes through ``call_checked``, which takes a deep ``snapshot``
of the system (and of a second, foreign system whose directories are passed
in) before and after the call and asserts:

- no exception escapes;
- a failed call returns the operation's failure value (False, None,
  0xFFFFFFFF) and leaves a documented ErrorCode other than ERROR_SUCCESS in
  ``last_error``, and the snapshots are equal;
- a PageFault is returned only for a real fault (an independent walk of the
  tables agrees on the error code and address), with ERROR_NOACCESS and an
  unchanged state;
- a successful call leaves ERROR_SUCCESS.

Three kinds of test: exact expectations for each bad argument of each
operation, with hypothesis generating the bad values; explicit scenarios
(double free, destroyed and foreign directories, destroying the current and
the kernel directory, before initialisation, initialising twice, exhausted
memory); and a hypothesis fuzz of call sequences over arbitrary values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model.page_manager import PageManager
from model.page_tables import PageDirectory, PageFault, PageTable
from model.virtual_memory import VirtualMemoryManager
from spec.abi import (
    INVALID_PHYSICAL_ADDRESS,
    KERNEL_SPACE_START,
    NO_FRAME,
    PAGE_SIZE,
    USER_SPACE_START,
    ErrorCode,
)

E = ErrorCode
RESERVED_END = 0x100000  # 256 reserved, identity-mapped frames
MEM_END = 0x1000000  # 4096 frames
USER = USER_SPACE_START
RW_PAGE, RO_PAGE, SUPERVISOR_PAGE, UNMAPPED_PAGE = (USER + i * PAGE_SIZE for i in range(4))
KERNEL_PAGE = KERNEL_SPACE_START

HYPOTHESIS = settings(max_examples=15, deadline=None, database=None,
                      suppress_health_check=[HealthCheck.too_slow])


# -- the state, deeply -----------------------------------------------------------

def snapshot(pm: PageManager, vm: VirtualMemoryManager | None) -> dict[str, Any]:
    """Every piece of manager state, as plain values (identities as id()).

    The bitmap's ``hint`` is left out: it is a search cache (every word below it
    is full, whatever its value), which a lookup may move without changing
    what the bitmap says.
    """
    bitmap = pm.frames
    state: dict[str, Any] = {
        "pm": (pm.initialized, pm.nframes, pm.reserved_end, id(pm.paging),
               bitmap.nframes, list(bitmap.words), [list(level) for level in bitmap.levels],
               bitmap.used, bytes(pm.owner),
               {frame: bytes(page) for frame, page in pm.memory.items()}),
    }
    if vm is not None:
        state["vm"] = (
            id(vm.pageman), id(vm.kernel_directory), id(vm.current_directory),
            vm.placement_address,
            {address: directory_state(directory)
             for address, directory in vm.directories.items()},
            {slot: (id(table), table.physical_addr, list(table.entries))
             for slot, table in vm.kernel_tables.items()},
        )
    return state


def directory_state(directory: PageDirectory) -> tuple[Any, ...]:
    return (id(directory), directory.physical_addr, list(directory.tables_physical),
            [None if table is None else (id(table), table.physical_addr, list(table.entries))
             for table in directory.tables])


# -- worlds to attack ------------------------------------------------------------

@dataclass
class World:
    """A system at some stage of its life, plus a foreign system and stale handles."""

    pm: PageManager
    vm: VirtualMemoryManager | None
    stage: str
    foreign_pm: PageManager
    foreign_vm: VirtualMemoryManager
    user: PageDirectory | None = None
    destroyed: PageDirectory | None = None
    held: int = NO_FRAME

    @property
    def kernel(self) -> PageDirectory:
        assert self.vm is not None and self.vm.kernel_directory is not None
        return self.vm.kernel_directory

    @property
    def target(self) -> PageDirectory:
        """A live user directory when there is one, else a directory nobody knows."""
        return self.user if self.user is not None else PageDirectory(0x101000)

    def foreign_directories(self) -> list[PageDirectory]:
        return list(self.foreign_vm.directories.values())

    def bad_directories(self) -> list[Any]:
        """Directory arguments that are never live here."""
        bad: list[Any] = [None, "x", 1.5, True, 0, 0x101000, PageTable(0x101000),
                          PageDirectory(0x101000), PageDirectory(None),  # type: ignore[arg-type]
                          *self.foreign_directories()]
        if self.destroyed is not None:
            bad.append(self.destroyed)
        if self.user is not None:
            bad.append(PageDirectory(self.user.physical_addr))  # a look-alike
        return bad

    def snapshot(self) -> dict[str, Any]:
        return {"system": snapshot(self.pm, self.vm),
                "foreign": snapshot(self.foreign_pm, self.foreign_vm),
                "destroyed": None if self.destroyed is None else directory_state(self.destroyed)}


def build_foreign() -> tuple[PageManager, VirtualMemoryManager]:
    """Another system laid out like ours, so its directories have our physical addresses."""
    pm = PageManager()
    assert pm.InitializePhysicalMemory(RESERVED_END, 2 * RESERVED_END)
    vm = VirtualMemoryManager(pm)
    assert vm.InitializePaging()
    directory = vm.CreatePageDirectory()
    assert directory is not None and vm.AllocPage(directory, USER, False, True)
    return pm, vm


def build_world(stage: str) -> World:
    """bare: a PageManager alone; fresh: nothing initialised; physical: no paging yet;
    paging: a populated system; current-user: the user directory is current;
    exhausted: paging with every frame allocated (64 frames above the reserved ones)."""
    pm = PageManager()
    foreign_pm, foreign_vm = build_foreign()
    vm = None if stage == "bare" else VirtualMemoryManager(pm)
    world = World(pm, vm, stage, foreign_pm, foreign_vm)
    if stage in ("bare", "fresh"):
        return world
    # Exhausted memory is small, so that taking every frame is quick.
    mem_end = RESERVED_END + 64 * PAGE_SIZE if stage == "exhausted" else MEM_END
    assert pm.InitializePhysicalMemory(RESERVED_END, mem_end)
    world.held = pm.RequestFrame(False, True)
    assert pm.WritePhysicalMemory(world.held, b"held frame")
    if stage == "physical":
        return world
    assert vm is not None and vm.InitializePaging()
    destroyed = vm.CreatePageDirectory()
    assert destroyed is not None and vm.AllocPage(destroyed, USER, False, True)
    assert vm.DestroyPageDirectory(destroyed)
    user = vm.CreatePageDirectory()
    assert user is not None
    assert vm.AllocPage(user, RW_PAGE, False, True)
    assert vm.AllocPage(user, RO_PAGE, False, False)
    assert vm.AllocPage(user, SUPERVISOR_PAGE, True, True)
    assert vm.AllocPage(user, KERNEL_PAGE, True, True)
    assert vm.WriteVirtualMemory(user, RW_PAGE + 5, b"user data", True) is True
    world.user, world.destroyed = user, destroyed
    if stage == "current-user":
        assert vm.SwitchPageDirectory(user)
    if stage == "exhausted":
        while pm.RequestFrame(True, False) != NO_FRAME:
            pass
        assert pm.GetFreeFrameCount() == 0
    return world


# -- the checked call ----------------------------------------------------------

def expected_fault(directory: PageDirectory, address: int, length: int, user_mode: bool,
                   write: bool) -> PageFault | None:
    """The first fault of an access, by an independent walk (SDM Vol. 3A 4.6, 4.7)."""
    cursor, end = address, address + length
    while cursor < end:
        slot = cursor >> 22
        pde = directory.tables_physical[slot]
        table = directory.tables[slot]
        pte = 0 if table is None else table.entries[(cursor >> 12) & 0x3FF]
        present = bool(pde & 1 and pte & 1)
        allowed = (present and (not user_mode or bool(pde & 4 and pte & 4))
                   and (not write or bool(pde & 2 and pte & 2)))
        if not allowed:
            return PageFault(int(present) | (2 if write else 0) | (4 if user_mode else 0), cursor)
        cursor = (cursor & ~0xFFF) + PAGE_SIZE
    return None


@dataclass(frozen=True)
class Operation:
    """A public operation: who has it, its failure value, the codes its failures may leave."""

    manager: str  # "pm" or "vm"
    name: str
    failure: Any  # the failure return value; for VirtualToPhysical 0xFFFFFFFF
    codes: frozenset[ErrorCode]
    access: tuple[bool, bool] | None = None  # (has a length argument, write) for accesses

    def is_failure(self, result: Any, last_error: ErrorCode) -> bool:
        if self.name == "VirtualToPhysical":  # 0xFFFFFFFF is also an address
            return last_error != E.ERROR_SUCCESS
        return result is self.failure if self.failure is not NO_FRAME else result == NO_FRAME


def op(manager: str, name: str, failure: Any, *codes: ErrorCode,
       access: tuple[bool, bool] | None = None) -> Operation:
    return Operation(manager, name, failure, frozenset(codes), access)


ADDRESS_CODES = (E.ERROR_INVALID_PARAMETER, E.ERROR_NOT_READY, E.ERROR_INVALID_ADDRESS)
PLACE_CODES = (E.ERROR_INVALID_HANDLE, E.ERROR_INVALID_PARAMETER, E.ERROR_ACCESS_DENIED,
               E.ERROR_ALREADY_EXISTS, E.ERROR_NOT_ENOUGH_MEMORY)
UNMAP_CODES = (E.ERROR_INVALID_HANDLE, E.ERROR_INVALID_PARAMETER, E.ERROR_INVALID_ADDRESS,
               E.ERROR_ACCESS_DENIED)
ACCESS_CODES = (E.ERROR_INVALID_HANDLE, E.ERROR_INVALID_PARAMETER)

OPERATIONS = {o.name: o for o in [
    op("pm", "InitializePhysicalMemory", False, E.ERROR_ALREADY_INITIALIZED,
       E.ERROR_INVALID_PARAMETER),
    op("pm", "AllocFrame", False, E.ERROR_NOT_READY, *PLACE_CODES),
    op("pm", "FreeFrame", False, *ADDRESS_CODES, E.ERROR_INVALID_BLOCK, E.ERROR_BUSY),
    op("pm", "FirstFreeFrame", NO_FRAME, E.ERROR_NOT_READY, E.ERROR_NOT_ENOUGH_MEMORY),
    op("pm", "RequestFrame", NO_FRAME, E.ERROR_INVALID_PARAMETER, E.ERROR_NOT_READY,
       E.ERROR_NOT_ENOUGH_MEMORY),
    op("pm", "UnreservePage", False, *ADDRESS_CODES, E.ERROR_INVALID_BLOCK),
    op("pm", "CopyPage", False, *ADDRESS_CODES, E.ERROR_ACCESS_DENIED),
    op("pm", "GetFrameCount", object()),
    op("pm", "GetFreeFrameCount", object()),
    op("pm", "GetUsedFrameCount", object()),
    op("pm", "ReadPhysicalMemory", None, *ADDRESS_CODES, E.ERROR_ACCESS_DENIED),
    op("pm", "WritePhysicalMemory", False, *ADDRESS_CODES, E.ERROR_ACCESS_DENIED),
    op("vm", "InitializePaging", False, E.ERROR_ALREADY_INITIALIZED, E.ERROR_NOT_READY,
       E.ERROR_NOT_ENOUGH_MEMORY),
    op("vm", "CreatePageDirectory", None, E.ERROR_NOT_READY, E.ERROR_NOT_ENOUGH_MEMORY),
    op("vm", "DestroyPageDirectory", False, E.ERROR_INVALID_HANDLE, E.ERROR_ACCESS_DENIED,
       E.ERROR_BUSY),
    op("vm", "ClonePageDirectory", None, E.ERROR_INVALID_HANDLE, E.ERROR_NOT_ENOUGH_MEMORY),
    op("vm", "SwitchPageDirectory", False, E.ERROR_INVALID_HANDLE),
    op("vm", "MapVirtualAddress", False, *PLACE_CODES, E.ERROR_INVALID_ADDRESS, E.ERROR_BUSY),
    op("vm", "UnmapVirtualAddress", False, *UNMAP_CODES),
    op("vm", "VirtualToPhysical", INVALID_PHYSICAL_ADDRESS, E.ERROR_INVALID_HANDLE,
       E.ERROR_INVALID_PARAMETER, E.ERROR_INVALID_ADDRESS),
    op("vm", "AllocPage", False, *PLACE_CODES),
    op("vm", "FreePage", False, *UNMAP_CODES),
    op("vm", "ReadVirtualMemory", None, *ACCESS_CODES, access=(True, False)),
    op("vm", "WriteVirtualMemory", False, *ACCESS_CODES, access=(True, True)),
    op("vm", "ExecuteVirtualMemory", None, *ACCESS_CODES, access=(False, False)),
]}


def call_checked(world: World, name: str, *args: Any) -> tuple[Any, ErrorCode]:
    """Call an operation and check the rules of the module docstring; (result, last_error)."""
    operation = OPERATIONS[name]
    manager: Any = world.pm if operation.manager == "pm" else world.vm
    assert manager is not None
    before = world.snapshot()
    try:
        result = getattr(manager, name)(*args)
    except Exception as error:  # noqa: BLE001 - any escape is the bug being looked for
        pytest.fail(f"{name}{args!r} raised {type(error).__name__}: {error}")
    after = world.snapshot()
    code = manager.last_error
    assert isinstance(code, ErrorCode), f"{name}{args!r}: last_error {code!r}"
    if isinstance(result, PageFault):
        assert operation.access is not None, f"{name}{args!r} returned {result}"
        assert code == E.ERROR_NOACCESS, f"{name}{args!r}: {code!r} with {result}"
        assert after == before, f"{name}{args!r} faulted and changed the state"
        has_length, write = operation.access
        length = len(args[2]) if write else args[2] if has_length else 1
        user_mode = args[-1]
        assert result == expected_fault(args[0], args[1], length, user_mode, write), \
            f"{name}{args!r}: {result} is not the fault the tables give"
    elif operation.is_failure(result, code):
        assert result == operation.failure or result is operation.failure, \
            f"{name}{args!r} returned {result!r}"
        assert code != E.ERROR_SUCCESS, f"{name}{args!r} failed with ERROR_SUCCESS"
        assert code in operation.codes, f"{name}{args!r}: undocumented {code!r}"
        assert after == before, f"{name}{args!r} failed ({code.name}) and changed the state"
    else:
        assert code == E.ERROR_SUCCESS, f"{name}{args!r} returned {result!r} with {code!r}"
        if operation.access is not None and world.vm is not None:
            has_length, write = operation.access
            length = len(args[2]) if write else args[2] if has_length else 1
            assert expected_fault(args[0], args[1], length, args[-1], write) is None
    return result, code


def expect_failure(world: World, name: str, expected: ErrorCode, *args: Any) -> None:
    result, code = call_checked(world, name, *args)
    assert code == expected, f"{name}{args!r}: expected {expected.name}, got {code!r} " \
                             f"(returned {result!r})"
    assert not isinstance(result, PageFault)


# -- value strategies --------------------------------------------------------------

JUNK = st.sampled_from([None, "x", "", 1.5, float("nan"), float("inf"), b"\0", [], (), {},
                        object(), 1j, True, False])
NON_U32 = st.one_of(JUNK, st.integers(max_value=-1), st.integers(min_value=1 << 32),
                    st.sampled_from([-1, -PAGE_SIZE, 1 << 32, (1 << 32) + PAGE_SIZE, 1 << 64]),
                    st.floats(0, 2**32).filter(lambda value: value == int(value)))
UNALIGNED_U32 = st.integers(0, (1 << 32) - 1).filter(lambda value: value % PAGE_SIZE != 0)
BAD_ADDRESS = st.one_of(NON_U32, UNALIGNED_U32)
NON_BOOL = st.one_of(st.sampled_from([None, "x", "", 1.5, 0, 1, -1, b"", [], 0.0, 1.0]),
                     st.integers())
BAD_LENGTH = st.one_of(JUNK.filter(lambda value: type(value) is not bool),
                       st.integers(max_value=-1),
                       st.integers(min_value=1 << 32), st.just(True))
BAD_DATA = st.sampled_from([None, "text", 1, 1.5, [1, 2], memoryview(b"ab"), bytearray]
                           ).filter(lambda value: value is not bytearray)

ALIGNED_USER_PAGE = st.integers(USER >> 12, (KERNEL_SPACE_START >> 12) - 1).map(
    lambda page: page * PAGE_SIZE)


# -- exact expectations per bad argument -----------------------------------------

def address_calls(world: World) -> dict[str, Callable[[Any], tuple[Any, ...]]]:
    """For each operation and address argument: the call with that argument bad, others fine."""
    d, held = world.target, world.held
    return {
        "FreeFrame": lambda bad: ("FreeFrame", bad),
        "UnreservePage": lambda bad: ("UnreservePage", bad),
        "CopyPage.src": lambda bad: ("CopyPage", bad, held),
        "CopyPage.dst": lambda bad: ("CopyPage", held, bad),
        "AllocFrame": lambda bad: ("AllocFrame", d, bad, False, True),
        "MapVirtualAddress.virtual": lambda bad: ("MapVirtualAddress", d, bad, held, False, True),
        "MapVirtualAddress.physical": lambda bad: ("MapVirtualAddress", d, UNMAPPED_PAGE, bad,
                                                   False, True),
        "UnmapVirtualAddress": lambda bad: ("UnmapVirtualAddress", d, bad),
        "FreePage": lambda bad: ("FreePage", d, bad),
        "AllocPage": lambda bad: ("AllocPage", d, bad, False, True),
    }


ADDRESS_CASES = list(address_calls(build_world("paging")))


@pytest.mark.parametrize("case", ADDRESS_CASES)
def test_bad_addresses_are_invalid_parameters(case: str) -> None:
    world = build_world("paging")
    make = address_calls(world)[case]

    @HYPOTHESIS
    @given(bad=BAD_ADDRESS)
    def check(bad: Any) -> None:
        name, *args = make(bad)
        expect_failure(world, name, E.ERROR_INVALID_PARAMETER, *args)

    check()


@pytest.mark.parametrize("stage", ["fresh", "physical"])
def test_bad_addresses_before_initialisation(stage: str) -> None:
    """Argument errors come first, then 'not ready'."""
    world = build_world(stage)

    @HYPOTHESIS
    @given(bad=BAD_ADDRESS, name=st.sampled_from(["FreeFrame", "UnreservePage"]))
    def check(bad: Any, name: str) -> None:
        expect_failure(world, name, E.ERROR_INVALID_PARAMETER, bad)

    check()


def test_non_u32_virtual_addresses_in_translation_and_access() -> None:
    world = build_world("paging")
    d = world.target

    @HYPOTHESIS
    @given(bad=NON_U32)
    def check(bad: Any) -> None:
        expect_failure(world, "VirtualToPhysical", E.ERROR_INVALID_PARAMETER, d, bad)
        expect_failure(world, "ReadVirtualMemory", E.ERROR_INVALID_PARAMETER, d, bad, 1, True)
        expect_failure(world, "WriteVirtualMemory", E.ERROR_INVALID_PARAMETER, d, bad, b"x",
                       True)
        expect_failure(world, "ExecuteVirtualMemory", E.ERROR_INVALID_PARAMETER, d, bad, False)
        expect_failure(world, "ReadPhysicalMemory", E.ERROR_INVALID_PARAMETER, bad, 1)
        expect_failure(world, "WritePhysicalMemory", E.ERROR_INVALID_PARAMETER, bad, b"x")

    check()


def test_bad_initialize_physical_memory_arguments() -> None:
    @HYPOTHESIS
    @given(start=st.one_of(NON_U32, st.integers(0x400001, (1 << 32) - 1)),
           end=st.one_of(st.integers(0, (1 << 32) - 1), NON_U32))
    def check(start: Any, end: Any) -> None:
        world = build_world("fresh")
        expect_failure(world, "InitializePhysicalMemory", E.ERROR_INVALID_PARAMETER, start, end)

    @HYPOTHESIS
    @given(start=st.integers(0, 0x400000), end=st.one_of(NON_U32, st.integers(0, 0x401000)))
    def check_empty(start: Any, end: Any) -> None:
        world = build_world("fresh")
        rounded_start = (start + PAGE_SIZE - 1) // PAGE_SIZE
        if type(end) is int and 0 < end <= 1 << 32 and rounded_start < end // PAGE_SIZE:
            return  # a valid range
        expect_failure(world, "InitializePhysicalMemory", E.ERROR_INVALID_PARAMETER, start, end)

    check()
    check_empty()


def flag_calls(world: World) -> dict[str, Callable[[Any], tuple[Any, ...]]]:
    d, held = world.target, world.held
    return {
        "RequestFrame.is_kernel": lambda bad: ("RequestFrame", bad, True),
        "RequestFrame.is_writeable": lambda bad: ("RequestFrame", True, bad),
        "AllocFrame.is_kernel": lambda bad: ("AllocFrame", d, UNMAPPED_PAGE, bad, True),
        "AllocFrame.is_writeable": lambda bad: ("AllocFrame", d, UNMAPPED_PAGE, False, bad),
        "MapVirtualAddress.is_kernel": lambda bad: ("MapVirtualAddress", d, UNMAPPED_PAGE,
                                                    held, bad, True),
        "MapVirtualAddress.is_writeable": lambda bad: ("MapVirtualAddress", d, UNMAPPED_PAGE,
                                                       held, False, bad),
        "AllocPage.is_kernel": lambda bad: ("AllocPage", d, UNMAPPED_PAGE, bad, True),
        "AllocPage.is_writeable": lambda bad: ("AllocPage", d, UNMAPPED_PAGE, True, bad),
        "ReadVirtualMemory.user_mode": lambda bad: ("ReadVirtualMemory", d, RW_PAGE, 4, bad),
        "WriteVirtualMemory.user_mode": lambda bad: ("WriteVirtualMemory", d, RW_PAGE, b"x",
                                                     bad),
        "ExecuteVirtualMemory.user_mode": lambda bad: ("ExecuteVirtualMemory", d, RW_PAGE, bad),
    }


@pytest.mark.parametrize("case", list(flag_calls(build_world("paging"))))
def test_non_bool_flags_are_invalid_parameters(case: str) -> None:
    world = build_world("paging")
    make = flag_calls(world)[case]

    @HYPOTHESIS
    @given(bad=NON_BOOL)
    def check(bad: Any) -> None:
        name, *args = make(bad)
        expect_failure(world, name, E.ERROR_INVALID_PARAMETER, *args)

    check()


def directory_calls(world: World) -> dict[str, Callable[[Any], tuple[Any, ...]]]:
    held = world.held
    return {
        "DestroyPageDirectory": lambda bad: ("DestroyPageDirectory", bad),
        "ClonePageDirectory": lambda bad: ("ClonePageDirectory", bad),
        "SwitchPageDirectory": lambda bad: ("SwitchPageDirectory", bad),
        "MapVirtualAddress": lambda bad: ("MapVirtualAddress", bad, UNMAPPED_PAGE, held, False,
                                          True),
        "UnmapVirtualAddress": lambda bad: ("UnmapVirtualAddress", bad, RW_PAGE),
        "VirtualToPhysical": lambda bad: ("VirtualToPhysical", bad, RW_PAGE),
        "AllocPage": lambda bad: ("AllocPage", bad, UNMAPPED_PAGE, False, True),
        "AllocFrame": lambda bad: ("AllocFrame", bad, UNMAPPED_PAGE, False, True),
        "FreePage": lambda bad: ("FreePage", bad, RW_PAGE),
        "ReadVirtualMemory": lambda bad: ("ReadVirtualMemory", bad, RW_PAGE, 4, True),
        "WriteVirtualMemory": lambda bad: ("WriteVirtualMemory", bad, RW_PAGE, b"x", True),
        "ExecuteVirtualMemory": lambda bad: ("ExecuteVirtualMemory", bad, RW_PAGE, True),
    }


@pytest.mark.parametrize("stage", ["fresh", "physical", "paging"])
@pytest.mark.parametrize("case", list(directory_calls(build_world("paging"))))
def test_dead_directories_are_invalid_handles(case: str, stage: str) -> None:
    """Unknown, destroyed, foreign and look-alike directories, and non-directories."""
    world = build_world(stage)
    make = directory_calls(world)[case]
    for bad in world.bad_directories():
        name, *args = make(bad)
        expect_failure(world, name, E.ERROR_INVALID_HANDLE, *args)


@pytest.mark.parametrize("physical_addr", [[], {}, set(), bytearray(b"\x10"), [0x101000]])
def test_directory_with_unhashable_physical_addr(physical_addr: Any) -> None:
    """A PageDirectory whose physical_addr is not an int is not live either."""
    world = build_world("paging")
    bad = PageDirectory(physical_addr)
    for make in directory_calls(world).values():
        name, *args = make(bad)
        expect_failure(world, name, E.ERROR_INVALID_HANDLE, *args)


def test_bad_lengths_and_data() -> None:
    world = build_world("paging")
    d = world.target

    @HYPOTHESIS
    @given(length=BAD_LENGTH, data=BAD_DATA)
    def check(length: Any, data: Any) -> None:
        expect_failure(world, "ReadVirtualMemory", E.ERROR_INVALID_PARAMETER, d, RW_PAGE,
                       length, True)
        expect_failure(world, "ReadPhysicalMemory", E.ERROR_INVALID_PARAMETER, world.held,
                       length)
        expect_failure(world, "WriteVirtualMemory", E.ERROR_INVALID_PARAMETER, d, RW_PAGE,
                       data, True)
        expect_failure(world, "WritePhysicalMemory", E.ERROR_INVALID_PARAMETER, world.held,
                       data)

    check()


def test_lengths_past_4gib() -> None:
    world = build_world("paging")
    d = world.target

    @HYPOTHESIS
    @given(address=st.integers(0, (1 << 32) - 1), extra=st.integers(1, 1 << 40))
    def check(address: int, extra: int) -> None:
        length = (1 << 32) - address + extra
        expect_failure(world, "ReadVirtualMemory", E.ERROR_INVALID_PARAMETER, d, address,
                       length, False)
        expect_failure(world, "ReadPhysicalMemory", E.ERROR_INVALID_PARAMETER, address, length)

    check()


# -- explicit scenarios -------------------------------------------------------------

def test_double_free() -> None:
    world = build_world("paging")
    assert call_checked(world, "FreeFrame", world.held) == (True, E.ERROR_SUCCESS)
    expect_failure(world, "FreeFrame", E.ERROR_INVALID_BLOCK, world.held)
    assert call_checked(world, "FreePage", world.target, RW_PAGE) == (True, E.ERROR_SUCCESS)
    expect_failure(world, "FreePage", E.ERROR_INVALID_ADDRESS, world.target, RW_PAGE)
    expect_failure(world, "UnmapVirtualAddress", E.ERROR_INVALID_ADDRESS, world.target, RW_PAGE)
    assert call_checked(world, "UnreservePage", 0x5000) == (True, E.ERROR_SUCCESS)
    expect_failure(world, "UnreservePage", E.ERROR_INVALID_BLOCK, 0x5000)


@pytest.mark.parametrize("stage", ["physical", "paging"])
def test_frames_beyond_memory(stage: str) -> None:
    world = build_world(stage)
    for address in (MEM_END, MEM_END + PAGE_SIZE, 0xFFFFF000):
        expect_failure(world, "FreeFrame", E.ERROR_INVALID_ADDRESS, address)
        expect_failure(world, "UnreservePage", E.ERROR_INVALID_ADDRESS, address)
        expect_failure(world, "CopyPage", E.ERROR_INVALID_ADDRESS, world.held, address)
        expect_failure(world, "CopyPage", E.ERROR_INVALID_ADDRESS, address, world.held)
        expect_failure(world, "ReadPhysicalMemory", E.ERROR_INVALID_ADDRESS, address, 1)
        expect_failure(world, "WritePhysicalMemory", E.ERROR_INVALID_ADDRESS, address, b"x")
        if stage == "paging":
            expect_failure(world, "MapVirtualAddress", E.ERROR_INVALID_ADDRESS, world.target,
                           UNMAPPED_PAGE, address, False, True)


def test_frames_not_held_in_the_right_way() -> None:
    world = build_world("paging")
    d = world.target
    assert world.vm is not None
    mapped = world.vm.VirtualToPhysical(d, RW_PAGE)
    table = d.tables[USER >> 22]
    assert table is not None
    free = world.pm.FirstFreeFrame()
    for address in (mapped, table.physical_addr, d.physical_addr, 0x5000):
        expect_failure(world, "FreeFrame", E.ERROR_BUSY, address)
        expect_failure(world, "MapVirtualAddress", E.ERROR_BUSY, d, UNMAPPED_PAGE, address,
                       False, True)
    expect_failure(world, "FreeFrame", E.ERROR_INVALID_BLOCK, free)
    expect_failure(world, "MapVirtualAddress", E.ERROR_INVALID_ADDRESS, d, UNMAPPED_PAGE, free,
                   False, True)
    for address in (mapped, table.physical_addr, world.held, free):
        expect_failure(world, "UnreservePage", E.ERROR_INVALID_BLOCK, address)
    expect_failure(world, "CopyPage", E.ERROR_ACCESS_DENIED, world.held, 0x5000)
    expect_failure(world, "CopyPage", E.ERROR_ACCESS_DENIED, table.physical_addr, world.held)
    expect_failure(world, "CopyPage", E.ERROR_ACCESS_DENIED, world.held, d.physical_addr)
    expect_failure(world, "CopyPage", E.ERROR_INVALID_ADDRESS, free, world.held)
    expect_failure(world, "WritePhysicalMemory", E.ERROR_ACCESS_DENIED, 0x5000, b"x")
    expect_failure(world, "WritePhysicalMemory", E.ERROR_ACCESS_DENIED, d.physical_addr, b"x")
    expect_failure(world, "ReadPhysicalMemory", E.ERROR_ACCESS_DENIED, table.physical_addr, 1)


def test_unmapped_pages_and_protection() -> None:
    world = build_world("paging")
    d = world.target
    for virtual in (UNMAPPED_PAGE, 0x80000000, 0xFFFFF000):
        expect_failure(world, "UnmapVirtualAddress", E.ERROR_INVALID_ADDRESS, d, virtual)
        expect_failure(world, "FreePage", E.ERROR_INVALID_ADDRESS, d, virtual)
        expect_failure(world, "VirtualToPhysical", E.ERROR_INVALID_ADDRESS, d, virtual + 7)
    expect_failure(world, "UnmapVirtualAddress", E.ERROR_ACCESS_DENIED, d, 0x5000)
    for name in ("AllocPage", "AllocFrame"):
        expect_failure(world, name, E.ERROR_ALREADY_EXISTS, d, RW_PAGE, False, True)
        expect_failure(world, name, E.ERROR_ALREADY_EXISTS, d, 0x5000, True, True)
        expect_failure(world, name, E.ERROR_ACCESS_DENIED, d, 0xC0400000, False, True)
        expect_failure(world, name, E.ERROR_ACCESS_DENIED, d, 0x200000, False, True)
    expect_failure(world, "MapVirtualAddress", E.ERROR_ALREADY_EXISTS, d, KERNEL_PAGE,
                   world.held, True, True)
    expect_failure(world, "MapVirtualAddress", E.ERROR_ACCESS_DENIED, d, 0xFFFFF000,
                   world.held, False, True)


def test_faults_are_real_and_change_nothing() -> None:
    world = build_world("paging")
    d = world.target
    faults = [
        ("ReadVirtualMemory", d, SUPERVISOR_PAGE, 1, True),
        ("ReadVirtualMemory", d, RW_PAGE, 1 << 31, True),  # huge, faults on page 3
        ("ReadVirtualMemory", d, RW_PAGE + 100, (1 << 32) - RW_PAGE - 100, False),
        ("WriteVirtualMemory", d, RO_PAGE, b"x", True),
        ("WriteVirtualMemory", d, RW_PAGE + PAGE_SIZE - 2, b"abcd", True),  # page 2 read-only
        ("WriteVirtualMemory", d, KERNEL_PAGE, b"x", True),
        ("ExecuteVirtualMemory", d, UNMAPPED_PAGE, False),
        ("ExecuteVirtualMemory", d, 0x5000, True),
        ("ExecuteVirtualMemory", world.kernel, 0xFFFFFFFF, False),
    ]
    for name, *args in faults:
        result, code = call_checked(world, name, *args)
        assert isinstance(result, PageFault) and code == E.ERROR_NOACCESS, (name, args, result)


def test_destroying_the_current_and_the_kernel_directory() -> None:
    world = build_world("current-user")
    expect_failure(world, "DestroyPageDirectory", E.ERROR_BUSY, world.target)
    expect_failure(world, "DestroyPageDirectory", E.ERROR_ACCESS_DENIED, world.kernel)
    assert call_checked(world, "SwitchPageDirectory", world.kernel) == (True, E.ERROR_SUCCESS)
    expect_failure(world, "DestroyPageDirectory", E.ERROR_ACCESS_DENIED, world.kernel)
    assert call_checked(world, "DestroyPageDirectory", world.target) == (True, E.ERROR_SUCCESS)
    expect_failure(world, "DestroyPageDirectory", E.ERROR_INVALID_HANDLE, world.target)
    expect_failure(world, "SwitchPageDirectory", E.ERROR_INVALID_HANDLE, world.target)


def test_initialising_twice() -> None:
    for stage in ("physical", "paging", "exhausted"):
        world = build_world(stage)
        for args in ((RESERVED_END, MEM_END), (0, 1 << 32), (None, "x"), (0, 0)):
            expect_failure(world, "InitializePhysicalMemory", E.ERROR_ALREADY_INITIALIZED, *args)
        if stage != "physical":
            expect_failure(world, "InitializePaging", E.ERROR_ALREADY_INITIALIZED)


def test_operations_before_initialisation() -> None:
    world = build_world("fresh")
    pm = world.pm
    for name, *args in [("FreeFrame", PAGE_SIZE), ("FreeFrame", 0), ("UnreservePage", 0),
                        ("CopyPage", 0, PAGE_SIZE), ("FirstFreeFrame",),
                        ("RequestFrame", True, True)]:
        expect_failure(world, name, E.ERROR_NOT_READY, *args)
    expect_failure(world, "InitializePaging", E.ERROR_NOT_READY)
    expect_failure(world, "CreatePageDirectory", E.ERROR_NOT_READY)
    assert call_checked(world, "GetFrameCount") == (0, E.ERROR_SUCCESS)
    assert pm.GetFreeFrameCount() == pm.GetUsedFrameCount() == 0
    bare = build_world("bare")
    expect_failure(bare, "AllocFrame", E.ERROR_NOT_READY, PageDirectory(0), USER, False, True)
    expect_failure(bare, "FirstFreeFrame", E.ERROR_NOT_READY)
    physical = build_world("physical")  # memory, but no paging yet
    expect_failure(physical, "CreatePageDirectory", E.ERROR_NOT_READY)
    expect_failure(physical, "AllocFrame", E.ERROR_INVALID_HANDLE, PageDirectory(0x101000),
                   USER, False, True)


def test_physical_memory_access_before_initialisation() -> None:
    """Like every other PageManager call, these report 'not ready' before initialisation
    (errors.py: ERROR_NOT_READY, "the manager is not initialised yet")."""
    world = build_world("fresh")
    expect_failure(world, "ReadPhysicalMemory", E.ERROR_NOT_READY, 0, 16)
    expect_failure(world, "WritePhysicalMemory", E.ERROR_NOT_READY, 0, b"x")


def test_exhausted_memory() -> None:
    world = build_world("exhausted")
    d = world.target
    expect_failure(world, "RequestFrame", E.ERROR_NOT_ENOUGH_MEMORY, False, True)
    expect_failure(world, "FirstFreeFrame", E.ERROR_NOT_ENOUGH_MEMORY)
    expect_failure(world, "CreatePageDirectory", E.ERROR_NOT_ENOUGH_MEMORY)
    expect_failure(world, "ClonePageDirectory", E.ERROR_NOT_ENOUGH_MEMORY, d)
    expect_failure(world, "ClonePageDirectory", E.ERROR_NOT_ENOUGH_MEMORY, world.kernel)
    expect_failure(world, "AllocPage", E.ERROR_NOT_ENOUGH_MEMORY, d, UNMAPPED_PAGE, False, True)
    expect_failure(world, "AllocFrame", E.ERROR_NOT_ENOUGH_MEMORY, d, 0x80000000, False, True)
    # Mapping a held frame needs no new frame in an existing table, one in a new table.
    expect_failure(world, "MapVirtualAddress", E.ERROR_NOT_ENOUGH_MEMORY, d, 0x80000000,
                   world.held, False, True)
    assert call_checked(world, "MapVirtualAddress", d, UNMAPPED_PAGE, world.held, False,
                        True) == (True, E.ERROR_SUCCESS)
    world2 = build_world("physical")
    while world2.pm.RequestFrame(False, False) != NO_FRAME:
        pass
    assert world2.vm is not None
    expect_failure(world2, "InitializePaging", E.ERROR_NOT_ENOUGH_MEMORY)


# -- fuzz: sequences of calls with arbitrary values -------------------------------

#: Populated systems are where most operations can succeed: weight them.
STAGES = ["bare", "fresh", "physical", "paging", "paging", "paging", "current-user",
          "current-user", "exhausted", "exhausted"]


def any_address(world: World) -> st.SearchStrategy[Any]:
    """Mostly addresses that mean something here (mapped, reserved, held, edges), some junk."""
    known = [0, PAGE_SIZE, 0x5000, RESERVED_END - PAGE_SIZE, RESERVED_END, RESERVED_END + 1,
             MEM_END - PAGE_SIZE, MEM_END, 0xFFFFF000, 0xFFFFFFFF, RW_PAGE, RW_PAGE + 5,
             RO_PAGE, SUPERVISOR_PAGE, UNMAPPED_PAGE, KERNEL_PAGE, KERNEL_PAGE + 0xFFE,
             0x80000000]
    if world.held != NO_FRAME:
        known += [world.held, world.held + 1, world.held + PAGE_SIZE]
    if world.vm is not None:
        for directory in world.vm.directories.values():
            known.append(directory.physical_addr)
            known.extend(table.physical_addr for table in directory.tables if table is not None)
    if world.pm.initialized:
        known.append(world.pm.FirstFreeFrame() & 0xFFFFFFFF)
    interesting = st.sampled_from(known)
    return st.one_of(interesting, interesting, interesting, BAD_ADDRESS, ALIGNED_USER_PAGE,
                     st.integers(0, (1 << 20) - 1).map(lambda page: page * PAGE_SIZE))


def any_directory(world: World) -> st.SearchStrategy[Any]:
    """A live directory three times in four (when there is one), else a dead one."""
    bad = st.sampled_from(world.bad_directories())
    if world.vm is None or not world.vm.directories:
        return bad
    live = st.sampled_from(list(world.vm.directories.values()))
    return st.one_of(live, live, live, bad)


ANY_FLAG = st.sampled_from([True, False] * 4 + [None, 0, 1, "x", 1.5, -1, b""])
ANY_LENGTH = st.one_of(st.integers(0, 3 * PAGE_SIZE), st.integers(0, 3 * PAGE_SIZE),
                       BAD_LENGTH, st.sampled_from([1 << 31, (1 << 32) - 1, 1 << 32]))
ANY_DATA = st.one_of(st.binary(max_size=2 * PAGE_SIZE + 10), st.binary(max_size=16),
                     BAD_DATA, st.binary(max_size=16).map(bytearray))


def draw_call(data: st.DataObject, world: World) -> tuple[str, tuple[Any, ...]]:
    names = [name for name, operation in OPERATIONS.items()
             if operation.manager == "pm" or world.vm is not None]
    name = data.draw(st.sampled_from(names), label="operation")
    address, directory = any_address(world), any_directory(world)
    signature: dict[str, list[st.SearchStrategy[Any]]] = {
        "InitializePhysicalMemory": [st.one_of(st.integers(0, 0x400000), BAD_ADDRESS),
                                     st.one_of(st.integers(0, 1 << 25), address)],
        "AllocFrame": [directory, address, ANY_FLAG, ANY_FLAG],
        "FreeFrame": [address],
        "FirstFreeFrame": [],
        "RequestFrame": [ANY_FLAG, ANY_FLAG],
        "UnreservePage": [address],
        "CopyPage": [address, address],
        "GetFrameCount": [],
        "GetFreeFrameCount": [],
        "GetUsedFrameCount": [],
        "ReadPhysicalMemory": [address, ANY_LENGTH],
        "WritePhysicalMemory": [address, ANY_DATA],
        "InitializePaging": [],
        "CreatePageDirectory": [],
        "DestroyPageDirectory": [directory],
        "ClonePageDirectory": [directory],
        "SwitchPageDirectory": [directory],
        "MapVirtualAddress": [directory, address, address, ANY_FLAG, ANY_FLAG],
        "UnmapVirtualAddress": [directory, address],
        "VirtualToPhysical": [directory, address],
        "AllocPage": [directory, address, ANY_FLAG, ANY_FLAG],
        "FreePage": [directory, address],
        "ReadVirtualMemory": [directory, address, ANY_LENGTH, ANY_FLAG],
        "WriteVirtualMemory": [directory, address, ANY_DATA, ANY_FLAG],
        "ExecuteVirtualMemory": [directory, address, ANY_FLAG],
    }
    args = tuple(data.draw(strategy, label=f"{name} argument {i}")
                 for i, strategy in enumerate(signature[name]))
    return name, args


@settings(max_examples=120, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data(), stage=st.sampled_from(STAGES))
def test_fuzz_call_sequences(data: st.DataObject, stage: str) -> None:
    world = build_world(stage)
    for _ in range(data.draw(st.integers(1, 8), label="calls")):
        name, args = draw_call(data, world)
        call_checked(world, name, *args)
    assert world.pm.frames.is_consistent()
