"""What Linux does with mprotect on shared mappings of files, as the Linux Test
Project records it, as data, run against the model: the file is a FileNode, its
MAP_SHARED mapping a MemoryMappedFiles view (MapFileToMemory, the current
process's), the calls the current process's through model/syscalls.py.

Source: linux-test-project/ltp testcases/kernel/syscalls/mprotect/*.c and
munmap/munmap01.c (its file-backed MAP_SHARED mapping, unmapped whole or but
its first page: issue 15's pieces), each step citing the line of the assert (or
of the call whose failure the test reports).

How the sources are expressed: the file's bytes are the test's buffer (or zeros:
/dev/zero); mmap(PROT_*, MAP_SHARED, fd) is MapFileToMemory with the PAGE_* value
of those bits, the fd's open mode the node's ``writable``; a SIGSEGV the test's
child observes is the model's PageFault at that address. linux_ltp.py has the
same tests with anonymous mappings; these are their file-backed forms, which is
what the tests map (their SAFE_MUNMAP of the whole mapping unmaps the view, its
writes written back). Left out: the forks and the file cleanup.
"""

from __future__ import annotations

from typing import NamedTuple

import pytest

from model.file_node import MemoryFileNode
from model.memory_subsystem import MemorySubsystem
from model.page_tables import PageFault
from model.user_layout import protect_from_prot
from spec.abi import EACCES, PAGE_SIZE, PROT_READ, PROT_WRITE
from tests.conformance.steps import At, Value, resolve
from tests.test_memory_subsystem import booted
from tests.test_process_memory import snapshot
from tests.test_shared_memory import check_world

LTP = "testcases/kernel/syscalls"
MPROTECT01 = f"{LTP}/mprotect/mprotect01.c"
MPROTECT02 = f"{LTP}/mprotect/mprotect02.c"
MPROTECT03 = f"{LTP}/mprotect/mprotect03.c"
MUNMAP01 = f"{LTP}/munmap/munmap01.c"
#: mprotect02/03's buffer, as the model's file bytes (one page: getpagesize() bytes).
BUF = b"abcdefghijklmnopqrstuvwxyz"


class Step(NamedTuple):
    call: str  # map | mprotect | munmap | write
    args: tuple[Value | bytes, ...]
    source: str
    errno: int = 0
    fault: bool = False
    save: str = ""


class Case(NamedTuple):
    name: str
    writable: bool  # the fd's open mode: O_RDWR (True) or O_RDONLY
    data: bytes  # the file's bytes
    steps: tuple[Step, ...]


def mmap(prot: int, source: str, size: int = 0) -> Step:
    """MapFileToMemory of the file's first size bytes (0: all of it)."""
    return Step("map", (prot, size), source, save="addr")


ADDR = At("addr")

MPROTECT01_EACCES = Case("mprotect01_read_only_file_eacces", False, bytes(PAGE_SIZE), (
    mmap(PROT_READ, f"{MPROTECT01}: setup3 mmap(PROT_READ, MAP_SHARED) of /dev/zero opened "
         "O_RDONLY (lines 141, 148)"),
    Step("mprotect", (ADDR, PAGE_SIZE, PROT_WRITE), f"{MPROTECT01}: TC[2] {{NULL, 0, "
         "PROT_WRITE, EACCES}} (line 81), asserted line 108", errno=EACCES),
))

MPROTECT02_FILE = Case("mprotect02_file_read_only_then_writable", True,
                       (BUF * (PAGE_SIZE // len(BUF) + 1))[:PAGE_SIZE], (
    mmap(PROT_READ, f"{MPROTECT02}: SAFE_MMAP(PROT_READ, MAP_SHARED) line 89 of the file "
         "opened O_RDWR (line 74)"),
    Step("write", (ADDR, BUF), f"{MPROTECT02}: lines 96 and 108 memcpy raises SIGSEGV",
         fault=True),
    Step("mprotect", (ADDR, len(BUF) + 1, PROT_WRITE), f"{MPROTECT02}: mprotect PROT_WRITE "
         "line 118 succeeds (line 120)"),
    Step("write", (ADDR, BUF), f"{MPROTECT02}: lines 126 and 134 memcpy without SIGSEGV"),
    Step("munmap", (ADDR, len(BUF) + 1), f"{MPROTECT02}: SAFE_MUNMAP(addr, sizeof(buf)) "
         "line 143 (the whole mapping)"),
))

MPROTECT03_FILE = Case("mprotect03_file_read_only_write_faults", True, BUF, (
    mmap(PROT_READ | PROT_WRITE, f"{MPROTECT03}: mmap(PROT_READ | PROT_WRITE, MAP_SHARED) "
         "line 87 of the file opened O_RDWR (line 79)"),
    Step("mprotect", (ADDR, len(BUF), PROT_READ), f"{MPROTECT03}: mprotect PROT_READ line 95 "
         "succeeds (line 97)"),
    Step("write", (ADDR, BUF), f"{MPROTECT03}: lines 103 and 114 memcpy raises SIGSEGV",
         fault=True),
    Step("munmap", (ADDR, len(BUF)), f"{MPROTECT03}: SAFE_MUNMAP line 123"),
))

#: munmap01's file: 3 pages, then "a" written at offset 3 * page_sz (lines 64-70).
MUNMAP01_DATA = bytes(3 * PAGE_SIZE) + b"a"


def munmap01(variant: int, name: str) -> Case:
    """munmap01's variant: munmap of the whole 3-page mapping (0) or of all but its
    first page (1: map_addr + page_sz, map_len - page_sz, lines 76-79); the write
    at map_addr then faults; cleanup unmaps what is left (lines 84-88)."""
    src = f"{MUNMAP01}: variant '{name}'"
    start, length = (0, 3 * PAGE_SIZE) if variant == 0 else (PAGE_SIZE, 2 * PAGE_SIZE)
    steps = [
        mmap(PROT_READ | PROT_WRITE, f"{src}: SAFE_MMAP(3 * page_sz, PROT_READ | PROT_WRITE, "
             "MAP_FILE | MAP_SHARED) line 72 of the file opened O_RDWR (line 67)",
             3 * PAGE_SIZE),
        Step("munmap", (At("addr", start), length), f"{src}: SAFE_MUNMAP(map_addr, map_len) "
             "line 37"),
        Step("write", (At("addr", start), b"\x32"), f"{src}: *map_addr = 50 line 46 raises "
             "SIGSEGV (asserted line 51)", fault=True),
    ]
    if variant:  # cleanup: SAFE_MUNMAP(map_addr, page_sz) over unmapped pages succeeds
        steps.append(Step("munmap", (At("addr", start), PAGE_SIZE), f"{src}: cleanup "
                          "SAFE_MUNMAP(map_addr, page_sz) line 88"))
    return Case(f"munmap01_file_{name.replace(' ', '_')}", True, MUNMAP01_DATA, tuple(steps))


MUNMAP01_CASES = (munmap01(0, "unmapped region not accessible"),
                  munmap01(1, "partially unmapped region not accessible"))

CASES: tuple[Case, ...] = (MPROTECT01_EACCES, MPROTECT02_FILE, MPROTECT03_FILE,
                           *MUNMAP01_CASES)


def check(sub: MemorySubsystem, node: MemoryFileNode, step: Step,
          saved: dict[str, int]) -> None:
    system = sub.syscalls
    space = system.current
    assert space is not None
    args = [resolve(a, saved) for a in step.args]
    before = snapshot(space)
    where = f"{step.call}{step.args} ({step.source})"
    if step.call == "map":
        base = sub.mapped_files.MapFileToMemory(node, 0, args[1] or len(node.data),
                                                protect_from_prot(args[0]))
        assert base, f"{where}: failed with {sub.mapped_files.last_error}"
        saved[step.save] = base
        return
    if step.call in ("mprotect", "munmap"):
        call = system.SyscallMprotect if step.call == "mprotect" else system.SyscallMunmap
        result: object = call(*args)
    else:
        result = space.WriteUserMemory(*args)
    if step.errno:
        assert result == -step.errno, f"{where}: {result!r}"
        assert snapshot(space) == before, f"{where}: a failure changed the state"
    elif step.fault:
        assert isinstance(result, PageFault) and result.address == args[0], \
            f"{where}: {result!r}, expected a fault"
        assert snapshot(space) == before, f"{where}: a fault changed the state"
    else:
        assert result in (0, True), f"{where}: {result!r}"


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_linux_ltp_views(case: Case) -> None:
    sub = booted()
    system = sub.syscalls
    assert system.SwitchProcess(system.CreateProcess())
    node = MemoryFileNode(case.data, writable=case.writable)
    saved: dict[str, int] = {}
    for step in case.steps:
        check(sub, node, step, saved)
    check_world(sub)


__all__ = ["CASES", "Case", "Step", "test_linux_ltp_views"]
