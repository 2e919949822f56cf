"""How many conformance cases each real-system source contributes (the table of
docs/conformance.md, kept equal to the data by ``test_conformance_table``).

A case's source is the file (or specification) its ``source`` string names
before the first colon: Wine's and ReactOS's tests, the MS-DOS, FreeDOS,
DOSBox-staging and HimemX sources, the Linux Test Project's system call tests,
the XMS 3.0 and LIM EMS 4.0 specifications.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from tests.conformance import (
    linux_ltp,
    linux_ltp_views,
    msdos_alloc,
    windows_heap,
    windows_views,
    windows_virtual,
    xms_ems,
)

PAGE = Path(__file__).resolve().parents[2] / "docs" / "conformance.md"

#: Source file (or specification) -> the project it belongs to, as docs/conformance.md names it.
PROJECTS = {
    "dlls/kernel32/tests/virtual.c": "Wine (wine-mirror/wine)",
    "dlls/ntdll/tests/virtual.c": "Wine (wine-mirror/wine)",
    "dlls/kernel32/tests/heap.c": "Wine (wine-mirror/wine)",
    "modules/rostests/apitests/ntdll/NtAllocateVirtualMemory.c": "ReactOS (reactos/reactos)",
    "v4.0/src/DOS/ALLOC.ASM": "MS-DOS 4.0 (microsoft/MS-DOS)",
    "v4.0/src/DOS/DISP.ASM": "MS-DOS 4.0 (microsoft/MS-DOS)",
    "v4.0/src/DOS/MS_CODE.ASM": "MS-DOS 4.0 (microsoft/MS-DOS)",
    "kernel/memmgr.c": "FreeDOS kernel (FDOS/kernel)",
    "kernel/inthndlr.c": "FreeDOS kernel (FDOS/kernel)",
    "src/ints/xms.cpp": "DOSBox-staging (dosbox-staging/dosbox-staging)",
    "src/ints/ems.cpp": "DOSBox-staging (dosbox-staging/dosbox-staging)",
    "HimemX.asm": "HimemX (Baron-von-Riedesel/HimemX)",
    "XMS 3.0": "eXtended Memory Specification 3.0",
    "LIM 4.0": "Lotus/Intel/Microsoft EMS 4.0",
    **{f"testcases/kernel/syscalls/{name}": "Linux Test Project (linux-test-project/ltp)"
       for name in ("mmap/mmap04.c", "mmap/mmap05.c", "mmap/mmap06.c", "mmap/mmap08.c",
                    "mmap/mmap10.c", "mmap/mmap15.c", "mmap/mmap17.c",
                    "munmap/munmap01.c", "munmap/munmap03.c", "mprotect/mprotect01.c",
                    "mprotect/mprotect02.c", "mprotect/mprotect03.c",
                    "mprotect/mprotect04.c", "mprotect/mprotect05.c", "brk/brk01.c",
                    "brk/brk02.c", "sbrk/sbrk01.c", "sbrk/sbrk02.c")},
}


def _file(source: str) -> str:
    head = source.split(":")[0].split(" (")[0].strip()
    spec = re.match(r"(XMS 3\.0|LIM 4\.0)\b", head)
    return spec.group(1) if spec else head


def sources() -> list[str]:
    """Every case's source string (a step sequence counts once, by its first step's)."""
    cases: list[str] = [step_case.steps[0].source for step_case in windows_virtual.CASES]
    cases += [case.source for case in windows_heap.CASES]
    cases += [case.source for case in (*msdos_alloc.CASES, *msdos_alloc.UMB_CASES)]
    cases += [case.source for case in xms_ems.CASES]
    cases += [step_case.steps[0].source for step_case in linux_ltp.CASES]
    cases += [step_case.steps[0].source for step_case in windows_views.CASES]
    cases += [step_case.steps[0].source for step_case in linux_ltp_views.CASES]
    return cases


def tally() -> Counter[tuple[str, str]]:
    """(project, file) -> the cases citing it."""
    return Counter((PROJECTS[_file(source)], _file(source)) for source in sources())


def table() -> list[str]:
    """The page's table rows, largest project first."""
    counts = tally()
    projects = Counter[str]()
    for (project, _), n in counts.items():
        projects[project] += n
    rows = []
    for project, _ in projects.most_common():
        for (owner, name), n in sorted(counts.items(), key=lambda item: -item[1]):
            if owner == project:
                rows.append(f"| {project} | {name} | {n} |")
    return rows


def test_every_case_cites_a_known_source_and_where_in_it() -> None:
    for source in sources():
        assert _file(source) in PROJECTS, source
        assert ":" in source or source.startswith(("XMS 3.0", "LIM 4.0")), source


def test_conformance_table() -> None:
    text = PAGE.read_text()
    written = [line for line in text.splitlines() if line.startswith("| ")
               and line.rstrip().endswith(" |") and any(p in line for p in PROJECTS.values())]
    assert written == table(), "docs/conformance.md's table; now:\n" + "\n".join(table())
    total = sum(tally().values())
    assert f"{total} cases" in text
