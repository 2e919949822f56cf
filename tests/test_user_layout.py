"""The ABI values of user address spaces (spec/abi.py) and the pure helpers of
model/user_layout.py (issue 4).

The values are the platforms' own (winnt.h, Linux i386 uapi headers): a wrong
number here would make every comparison with a real kernel meaningless.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from model import user_layout as ul
from spec import abi


def test_windows_values() -> None:
    assert (abi.MEM_COMMIT, abi.MEM_RESERVE, abi.MEM_DECOMMIT, abi.MEM_RELEASE, abi.MEM_FREE,
            abi.MEM_TOP_DOWN) == (0x1000, 0x2000, 0x4000, 0x8000, 0x10000, 0x100000)
    assert (abi.MEM_PRIVATE, abi.MEM_MAPPED, abi.MEM_IMAGE) == (0x20000, 0x40000, 0x1000000)
    assert (abi.PAGE_NOACCESS, abi.PAGE_READONLY, abi.PAGE_READWRITE, abi.PAGE_EXECUTE,
            abi.PAGE_EXECUTE_READ, abi.PAGE_EXECUTE_READWRITE) == (1, 2, 4, 0x10, 0x20, 0x40)
    assert (abi.PAGE_SIZE, abi.ALLOCATION_GRANULARITY) == (4096, 0x10000)


def test_user_space_bounds() -> None:
    assert (abi.USER_BASE, abi.USER_TOP, abi.USER_FIRST_VPN, abi.USER_END_VPN) == (
        0x00400000, 0xC0000000, 0x400, 0xC0000)


def test_linux_values() -> None:
    assert (abi.PROT_NONE, abi.PROT_READ, abi.PROT_WRITE, abi.PROT_EXEC,
            abi.PROT_SEM) == (0, 1, 2, 4, 8)
    assert (abi.PROT_GROWSDOWN, abi.PROT_GROWSUP) == (0x01000000, 0x02000000)
    assert (abi.MAP_SHARED, abi.MAP_PRIVATE, abi.MAP_FIXED, abi.MAP_ANONYMOUS,
            abi.MAP_FIXED_NOREPLACE, abi.MAP_TYPE) == (1, 2, 0x10, 0x20, 0x100000, 0xF)
    assert (abi.EPERM, abi.ENOENT, abi.ESRCH, abi.EBADF, abi.ENOMEM, abi.EACCES, abi.EFAULT,
            abi.EEXIST, abi.EINVAL, abi.ENOSYS) == (1, 2, 3, 9, 12, 13, 14, 17, 22, 38)


def test_origins_are_distinct() -> None:
    origins = (abi.ORIGIN_VIRTUAL_ALLOC, abi.ORIGIN_MMAP, abi.ORIGIN_IMAGE, abi.ORIGIN_BRK,
               abi.ORIGIN_STACK, abi.ORIGIN_PROCESS_HEAP)
    assert origins == (1, 2, 3, 4, 5, 6)


@pytest.mark.parametrize("value", [0, 3, 8, 0x80, 0x104, 0x140, 0x204, 0x24, 0x44, -1,
                                   True, 4.0, "4", None])
def test_invalid_protections(value: object) -> None:
    assert not ul.is_valid_protect(value)


def test_valid_protections() -> None:
    assert all(ul.is_valid_protect(p) for p in (1, 2, 4, 0x10, 0x20, 0x40))


def test_microsoft_access_table() -> None:
    table = {p: tuple(ul.protect_allows(p, k) for k in ("read", "write", "execute"))
             for p in sorted(abi.VALID_PROTECTIONS)}
    assert table == {
        abi.PAGE_NOACCESS: (False, False, False),
        abi.PAGE_READONLY: (True, False, False),
        abi.PAGE_READWRITE: (True, True, False),
        abi.PAGE_EXECUTE: (False, False, True),
        abi.PAGE_EXECUTE_READ: (True, False, True),
        abi.PAGE_EXECUTE_READWRITE: (True, True, True),
    }
    assert not ul.protect_allows(0x80, "read")
    assert not ul.protect_allows(abi.PAGE_READWRITE, "fetch")


def test_pte_bits() -> None:
    assert [ul.pte_bits(p) for p in sorted(abi.VALID_PROTECTIONS)] == [
        (False, False), (True, False), (True, True), (True, False), (True, False), (True, True)]


def test_protect_from_prot_all_eight() -> None:
    assert [ul.protect_from_prot(p) for p in range(8)] == [
        abi.PAGE_NOACCESS, abi.PAGE_READONLY, abi.PAGE_READWRITE, abi.PAGE_READWRITE,
        abi.PAGE_EXECUTE, abi.PAGE_EXECUTE_READ, abi.PAGE_EXECUTE_READWRITE,
        abi.PAGE_EXECUTE_READWRITE]
    assert ul.protect_from_prot(abi.PROT_READ | abi.PROT_SEM) == abi.PAGE_READONLY


@given(st.integers(0, 7))
def test_protect_from_prot_grants_at_least_the_bits(prot: int) -> None:
    protect = ul.protect_from_prot(prot)
    granted = ul.prot_from_protect(protect)
    assert granted & prot == prot
    assert ul.protect_from_prot(granted) == protect


def test_rounding_helpers() -> None:
    assert (ul.page_floor(0x1FFF), ul.page_ceil(0x1001), ul.page_ceil(0x1000)) == (
        0x1000, 0x2000, 0x1000)
    assert ul.page_ceil(0xFFFFF001) == 1 << 32
    assert (ul.granularity_floor(0x2FFFF), ul.granularity_ceil(0x20001)) == (0x20000, 0x30000)
    assert ul.is_user_range(0x400000, 1) and not ul.is_user_range(0x3FF000, 0x2000)
    assert not ul.is_user_range(0xBFFFF000, 0x2000) and not ul.is_user_range(0x400000, 0)


@pytest.mark.parametrize("address", [0, 0x10000, 0x20000, 0x7FFF0000, 0xFFFF0000])
def test_granularity_ceil_keeps_an_aligned_address(address: int) -> None:
    """granularity_ceil rounds up to the 64 KB allocation granularity
    (model/user_layout.py, spec/abi.py's ALLOCATION_GRANULARITY): an address
    already on a boundary is its own ceiling, the byte below it rounds up to it,
    and the byte past it to the next boundary (a mutation run found both the
    addend and the mask unchecked at aligned addresses)."""
    assert ul.granularity_ceil(address) == address
    assert ul.granularity_ceil(address + 1) == address + abi.ALLOCATION_GRANULARITY
    if address:
        assert ul.granularity_ceil(address - 1) == address
