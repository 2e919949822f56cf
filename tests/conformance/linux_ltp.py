"""What Linux does with mmap / munmap / mprotect / brk as the Linux Test Project
records it, as data, run against the model through its user-mode front end
(model/syscalls.py's SystemCalls, the i386 calls of the current process).

Source: linux-test-project/ltp testcases/kernel/syscalls/{mmap,munmap,mprotect,brk,sbrk}/*.c,
each step citing the line of the assert (or of the call whose failure the test
reports through SAFE_* / TST_EXP_*) or the tcases entry it comes from.

How the sources are expressed:

- A fault the test observes as SIGSEGV (in a child, or through a sigsetjmp
  handler) is the model's PageFault at that address; the forks that only catch
  it are not modelled (one process).
- Where a test maps a file only to have some mapping, and the asserted check
  does not depend on the file (munmap01, mmap05, mmap06's length 0 and missing
  type entries, mmap15, mmap17, mprotect02, mprotect03, mprotect05), the
  mapping is anonymous with the same prot and MAP_SHARED / MAP_PRIVATE: the
  model has no file descriptors for mmap (files are issue 5), and a file-less
  mmap is EBADF there, as mmap08 records for a closed descriptor.
- munmap03 passes the addresses of its variables (tc->addr is a char **), so
  the kernel sees unaligned .bss addresses; the cases use the values its header
  comment and setup() describe (RLIMIT_DATA's rlim_max, RLIM_INFINITY =
  0xFFFFFFFF on i386; the mapping with length 0; the mapping + sizeof(char *)),
  each EINVAL as asserted.
- mmap10's children unmap the middle of their copy; here the one process does
  it before the final munmap of the whole range (munmap over a hole succeeds).
- brk01 / brk02 run both variants: the raw system call (the new break, or the
  old one on failure) and libc's brk() (success iff the call returned at least
  the address asked) followed by sbrk(0) (the break now, the brk(0) query).
- sbrk(increment) is glibc's: the break now (brk(0)); increment 0 returns it;
  else brk(now + increment), the old break when the call returned at least
  that, else -1 with ENOMEM (shown as -ENOMEM).

Left out (counted in the issue 15 report): asserts about file contents, file
permissions and truncation, MAP_POPULATE, SIGBUS, mremap, threads, stack
growth (MAP_GROWSDOWN), MAP_LOCKED, KSM, memory cgroups, vm.max_map_count
(munmap04) and a read-only /dev/zero mapping (mprotect01's EACCES entry).

Each step: the call, its arguments (``At(name, offset)`` = a value an earlier
step saved, plus offset), the exact result or the lowest accepted, the errno(s)
accepted on failure, whether the access faults, the bytes read, the
/proc/self/maps-style perms of the region starting at an address, and the source.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import pytest

from model.linux_mm import linux_maps
from model.page_tables import PageFault
from model.syscalls import SystemCalls
from spec.abi import (
    EBADF,
    EEXIST,
    EINVAL,
    ENOMEM,
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_FIXED_NOREPLACE,
    MAP_PRIVATE,
    MAP_SHARED,
    PAGE_SIZE,
    PROT_EXEC,
    PROT_NONE,
    PROT_READ,
    PROT_WRITE,
)
from tests.conformance.steps import At, Value, resolve, run_case
from tests.test_process_memory import snapshot

P = PAGE_SIZE
ANON = MAP_ANONYMOUS
NO_FD = 0xFFFFFFFF  # -1 in the fd register
#: Physical memory for these cases: mmap10 maps 10 MB - 4 KB (frames are taken at mmap).
MEM_END = 0x2000000

LTP = "testcases/kernel/syscalls"
MMAP04 = f"{LTP}/mmap/mmap04.c"
MMAP05 = f"{LTP}/mmap/mmap05.c"
MMAP06 = f"{LTP}/mmap/mmap06.c"
MMAP08 = f"{LTP}/mmap/mmap08.c"
MMAP10 = f"{LTP}/mmap/mmap10.c"
MMAP15 = f"{LTP}/mmap/mmap15.c"
MMAP17 = f"{LTP}/mmap/mmap17.c"
MUNMAP01 = f"{LTP}/munmap/munmap01.c"
MUNMAP03 = f"{LTP}/munmap/munmap03.c"
MPROTECT01 = f"{LTP}/mprotect/mprotect01.c"
MPROTECT02 = f"{LTP}/mprotect/mprotect02.c"
MPROTECT03 = f"{LTP}/mprotect/mprotect03.c"
MPROTECT04 = f"{LTP}/mprotect/mprotect04.c"
MPROTECT05 = f"{LTP}/mprotect/mprotect05.c"
BRK01 = f"{LTP}/brk/brk01.c"
BRK02 = f"{LTP}/brk/brk02.c"
SBRK01 = f"{LTP}/sbrk/sbrk01.c"
SBRK02 = f"{LTP}/sbrk/sbrk02.c"


class Step(NamedTuple):
    call: str  # mmap | munmap | mprotect | brk | sbrk | write | read | execute | maps
    args: tuple[Value | bytes, ...]
    source: str
    returns: Value | bytes | None = None
    at_least: Value | None = None
    errno: tuple[int, ...] = ()
    fault: bool = False
    perms: str = ""
    save: str = ""


class Case(NamedTuple):
    name: str
    steps: tuple[Step, ...]


# -- step builders ------------------------------------------------------------------


def mmap(addr: Value, length: int, prot: int, flags: int, source: str, *, fd: int = NO_FD,
         returns: Value | None = None, errno: tuple[int, ...] = (), save: str = "") -> Step:
    return Step("mmap", (addr, length, prot, flags, fd, 0), source, returns, errno=errno,
                save=save)


def munmap(addr: Value, length: int, source: str, *, errno: tuple[int, ...] = ()) -> Step:
    return Step("munmap", (addr, length), source, None if errno else 0, errno=errno)


def mprotect(addr: Value, length: int, prot: int, source: str, *,
             errno: tuple[int, ...] = ()) -> Step:
    return Step("mprotect", (addr, length, prot), source, None if errno else 0, errno=errno)


def brk(addr: Value, source: str, *, returns: Value | None = None,
        at_least: Value | None = None, save: str = "") -> Step:
    return Step("brk", (addr,), source, returns, at_least, save=save)


def sbrk(increment: int, source: str, *, returns: Value | None = None,
         errno: tuple[int, ...] = ()) -> Step:
    return Step("sbrk", (increment,), source, returns, errno=errno)


def write(addr: Value, data: bytes, source: str, *, fault: bool = False) -> Step:
    return Step("write", (addr, data), source, fault=fault)


def read(addr: Value, length: int, source: str, *, returns: bytes | None = None,
         fault: bool = False) -> Step:
    return Step("read", (addr, length), source, returns, fault=fault)


def execute(addr: Value, source: str, *, returns: bytes) -> Step:
    return Step("execute", (addr,), source, returns)


def maps(addr: Value, perms: str, source: str, *, end: Value | None = None) -> Step:
    """The /proc/self/maps line starting at addr: its perms (and end)."""
    return Step("maps", (addr,), source, end, perms=perms)


# -- mmap ------------------------------------------------------------------------------

#: mmap04.c tcases[] (lines 26-39): prot, flags, the perms /proc/self/maps shows.
_MMAP04_TCASES = (
    (PROT_NONE, MAP_PRIVATE, "---p"), (PROT_NONE, MAP_SHARED, "---s"),
    (PROT_READ, MAP_PRIVATE, "r--p"), (PROT_READ, MAP_SHARED, "r--s"),
    (PROT_WRITE, MAP_PRIVATE, "-w-p"), (PROT_WRITE, MAP_SHARED, "-w-s"),
    (PROT_READ | PROT_WRITE, MAP_PRIVATE, "rw-p"), (PROT_READ | PROT_WRITE, MAP_SHARED, "rw-s"),
    (PROT_READ | PROT_EXEC, MAP_PRIVATE, "r-xp"), (PROT_READ | PROT_EXEC, MAP_SHARED, "r-xs"),
    (PROT_WRITE | PROT_EXEC, MAP_PRIVATE, "-wxp"), (PROT_WRITE | PROT_EXEC, MAP_SHARED, "-wxs"),
    (PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE, "rwxp"),
    (PROT_READ | PROT_WRITE | PROT_EXEC, MAP_SHARED, "rwxs"),
)


def _mmap04_case(index: int) -> Case:
    prot, kind, perms = _MMAP04_TCASES[index]
    src = f"{MMAP04}: the tcases entry {{{perms}}} (line {26 + index})"
    other = MAP_SHARED if kind == MAP_PRIVATE else MAP_PRIVATE
    return Case(f"mmap04_{perms.replace('-', '_')}", (
        mmap(0, 2 * P, PROT_NONE, ANON | other, f"{src}: SAFE_MMAP of two pages, line 57",
             save="addr1"),
        mmap(At("addr1", P), P, prot, ANON | kind | MAP_FIXED,
             f"{src}: SAFE_MMAP MAP_FIXED of the second page, line 59", returns=At("addr1", P)),
        maps(At("addr1", P), perms, f"{src}: the perms in /proc/self/maps, line 65",
             end=At("addr1", 2 * P)),
        munmap(At("addr1"), 2 * P, f"{src}: SAFE_MUNMAP, line 72"),
    ))


MMAP05_CASE = Case("mmap05_prot_none_access_faults", (
    mmap(0, P, PROT_NONE, ANON | MAP_SHARED,
         f"{MMAP05}: line 51 mmap PROT_NONE MAP_SHARED succeeds (anonymous for the file)",
         save="addr"),
    read(At("addr"), 1, f"{MMAP05}: lines 58-61 reading addr[0] raises SIGSEGV", fault=True),
    munmap(At("addr"), P, f"{MMAP05}: SAFE_MUNMAP, line 65"),
))

MMAP06_LENGTH_ZERO = Case("mmap06_length_zero_einval", (
    mmap(0, 0, PROT_READ | PROT_WRITE, ANON | MAP_SHARED,
         f"{MMAP06}: the tcases entry {{0, PROT_READ | PROT_WRITE, MAP_FILE | MAP_SHARED, "
         "EINVAL}} (line 36; anonymous for the file)", errno=(EINVAL,)),
))

MMAP06_NO_TYPE = Case("mmap06_no_map_type_einval", (
    mmap(0, 1024, PROT_READ | PROT_WRITE, ANON,
         f"{MMAP06}: the tcases entry {{MMAPSIZE, PROT_READ | PROT_WRITE, MAP_FILE, EINVAL}} "
         "(line 37; anonymous for the file)", errno=(EINVAL,)),
))

MMAP08_CASE = Case("mmap08_closed_fd_ebadf", (
    mmap(0, P, PROT_WRITE, MAP_SHARED, f"{MMAP08}: lines 28-29 a closed fd is EBADF", fd=3,
         errno=(EBADF,)),
))

_SIZE = 5 << 20
MMAP10_CASE = Case("mmap10_anonymous_partial_unmaps", (
    mmap(0, 2 * _SIZE - P, PROT_READ | PROT_WRITE, ANON | MAP_PRIVATE,
         f"{MMAP10}: the tcases entry {{.anon = 1}} (line 51), SAFE_MMAP line 74",
         save="memory"),
    write(At("memory", _SIZE), b"\0", f"{MMAP10}: memory[SIZE] = 0, line 90"),
    munmap(At("memory", _SIZE + P), _SIZE - 2 * P,
           f"{MMAP10}: the children's SAFE_MUNMAP of the middle, line 94"),
    munmap(At("memory"), 2 * _SIZE - P, f"{MMAP10}: SAFE_MUNMAP of the whole range, line 99"),
))

MMAP15_CASE = Case("mmap15_fixed_at_high_address", (
    mmap(-P & 0xFFFFFFFF, P, PROT_READ, ANON | MAP_SHARED | MAP_FIXED,
         f"{MMAP15}: lines 31 and 39 MAP_FIXED at -page_size fails ENOMEM or EINVAL "
         "(anonymous for the file)", errno=(ENOMEM, EINVAL)),
))

_MSG_LEN = len("Writing to mapped file")
MMAP17_CASE = Case("mmap17_fixed_noreplace_eexist", (
    mmap(0, _MSG_LEN, PROT_WRITE, ANON | MAP_PRIVATE,
         f"{MMAP17}: SAFE_MMAP line 35 (anonymous for the file)", save="mapped"),
    mmap(At("mapped"), _MSG_LEN, PROT_WRITE, ANON | MAP_PRIVATE | MAP_FIXED_NOREPLACE,
         f"{MMAP17}: lines 53-57 MAP_FIXED_NOREPLACE over the mapping is EEXIST",
         errno=(EEXIST,)),
    munmap(At("mapped"), _MSG_LEN, f"{MMAP17}: SAFE_MUNMAP in cleanup, line 46"),
))


# -- munmap ----------------------------------------------------------------------------


def _munmap01_case(partial: bool) -> Case:
    start, length = (P, 2 * P) if partial else (0, 3 * P)
    variant = "partially unmapped" if partial else "unmapped"
    src = f"{MUNMAP01}: variant '{variant} region not accessible'"
    steps = [
        mmap(0, 3 * P, PROT_READ | PROT_WRITE, ANON | MAP_SHARED,
             f"{src}: SAFE_MMAP line 72 (anonymous for the file)", save="base"),
        munmap(At("base", start), length, f"{src}: SAFE_MUNMAP line 37"),
        write(At("base", start), b"\x32", f"{src}: lines 46 and 51 *map_addr = 50 SIGSEGV",
              fault=True),
    ]
    if partial:
        steps.append(munmap(At("base", start), P,
                            f"{src}: cleanup SAFE_MUNMAP of an unmapped page, line 88"))
    return Case(f"munmap01_{variant.replace(' ', '_')}", tuple(steps))


def _munmap03_case(index: int) -> Case:
    entries = (("{ EINVAL, &map_addr_out, &map_len }", 0xFFFFFFFF, 2 * P, "rlim_max"),
               ("{ EINVAL, &map_addr, &map_len_zero }", At("map_addr"), 0, "length_zero"),
               ("{ EINVAL, &map_addr + 1, &map_len }", At("map_addr", 4), 2 * P, "unaligned"))
    entry, addr, length, name = entries[index]
    src = f"{MUNMAP03}: the tcases entry {entry} (line {31 + index})"
    return Case(f"munmap03_{name}", (
        mmap(0, 2 * P, PROT_READ | PROT_WRITE, ANON | MAP_PRIVATE, f"{src}: SAFE_MMAP line 49",
             save="map_addr"),
        munmap(addr, length, f"{src}: TST_EXP_FAIL line 40", errno=(EINVAL,)),
        munmap(At("map_addr"), 2 * P, f"{src}: SAFE_MUNMAP in cleanup, line 59"),
    ))


# -- mprotect --------------------------------------------------------------------------

MPROTECT01_ENOMEM = Case("mprotect01_unmapped_enomem", (
    mprotect(0, P + 1, PROT_READ, f"{MPROTECT01}: TC[0] {{NULL, 0, PROT_READ, ENOMEM}} "
             "(line 70, len from setup1 line 125), asserted line 108", errno=(ENOMEM,)),
))

MPROTECT01_EINVAL = Case("mprotect01_unaligned_einval", (
    brk(0, f"{MPROTECT01}: TC[1] {{NULL, 1024, PROT_READ, EINVAL}} (line 76): malloc's "
        "heap, the break now", save="heap"),
    brk(At("heap", 2 * P), f"{MPROTECT01}: TC[1] malloc(getpagesize()) grows the heap, "
        "line 130", returns=At("heap", 2 * P)),
    mprotect(At("heap", 1), 1024, PROT_READ,
             f"{MPROTECT01}: TC[1] the malloc'd address + 1 (line 136), asserted line 108",
             errno=(EINVAL,)),
))

_BUF = b"abcdefghijklmnopqrstuvwxyz"

MPROTECT02_CASE = Case("mprotect02_read_only_then_writable", (
    mmap(0, len(_BUF) + 1, PROT_READ, ANON | MAP_SHARED,
         f"{MPROTECT02}: SAFE_MMAP PROT_READ line 89 (anonymous for the file)", save="addr"),
    write(At("addr"), _BUF, f"{MPROTECT02}: lines 96 and 108 memcpy raises SIGSEGV",
          fault=True),
    mprotect(At("addr"), len(_BUF) + 1, PROT_WRITE, f"{MPROTECT02}: mprotect PROT_WRITE "
             "line 118 succeeds (line 120)"),
    write(At("addr"), _BUF, f"{MPROTECT02}: lines 126 and 134 memcpy without SIGSEGV"),
    munmap(At("addr"), len(_BUF) + 1, f"{MPROTECT02}: SAFE_MUNMAP line 143"),
))

MPROTECT03_CASE = Case("mprotect03_read_only_write_faults", (
    mmap(0, len(_BUF), PROT_READ | PROT_WRITE, ANON | MAP_SHARED,
         f"{MPROTECT03}: mmap line 87 (anonymous for the file)", save="addr"),
    mprotect(At("addr"), len(_BUF), PROT_READ, f"{MPROTECT03}: mprotect PROT_READ line 95 "
             "succeeds (line 97)"),
    write(At("addr"), _BUF, f"{MPROTECT03}: lines 103 and 114 memcpy raises SIGSEGV",
          fault=True),
    munmap(At("addr"), len(_BUF), f"{MPROTECT03}: SAFE_MUNMAP line 123"),
))

MPROTECT04_NONE = Case("mprotect04_prot_none", (
    mmap(0, P, PROT_READ | PROT_WRITE, ANON | MAP_PRIVATE,
         f"{MPROTECT04}: testfunc_protnone SAFE_MMAP line 102", save="addr"),
    mprotect(At("addr"), P, PROT_NONE, f"{MPROTECT04}: testfunc_protnone mprotect "
             "PROT_NONE line 106"),
    write(At("addr"), b"\x01", f"{MPROTECT04}: testfunc_protnone addr[0] = 1 raises SIGSEGV "
          "(lines 112 and 116)", fault=True),
    munmap(At("addr"), P, f"{MPROTECT04}: testfunc_protnone SAFE_MUNMAP line 128"),
))

_RET = b"\xc3"  # exec_func's body: an i386 ret
MPROTECT04_EXEC = Case("mprotect04_prot_exec", (
    mmap(0, P, PROT_READ | PROT_WRITE, ANON | MAP_PRIVATE,
         f"{MPROTECT04}: testfunc_protexec SAFE_MMAP line 234", save="p"),
    write(At("p", 0x40), _RET, f"{MPROTECT04}: get_func memcpy of exec_func's page, line 218"),
    mprotect(At("p"), P, PROT_EXEC, f"{MPROTECT04}: testfunc_protexec mprotect PROT_EXEC "
             "line 255"),
    execute(At("p", 0x40), f"{MPROTECT04}: testfunc_protexec calling the copy does not "
            "raise SIGSEGV (lines 261 and 268)", returns=_RET),
    munmap(At("p"), P, f"{MPROTECT04}: testfunc_protexec SAFE_MUNMAP line 278"),
))

MPROTECT05_CASE = Case("mprotect05_split_and_merge", (
    mmap(0, 5 * P, PROT_READ, ANON | MAP_SHARED,
         f"{MPROTECT05}: SAFE_MMAP of five pages PROT_READ line 32 (anonymous for the file)",
         save="addr"),
    mprotect(At("addr", P), P, PROT_EXEC, f"{MPROTECT05}: mprotect PROT_EXEC line 34"),
    maps(At("addr", P), "--xs", f"{MPROTECT05}: line 34 splits the mapping",
         end=At("addr", 2 * P)),
    mprotect(At("addr", 3 * P), P, PROT_WRITE, f"{MPROTECT05}: mprotect PROT_WRITE line 37"),
    maps(At("addr", 3 * P), "-w-s", f"{MPROTECT05}: line 37 splits it again",
         end=At("addr", 4 * P)),
    mprotect(At("addr", P), 4 * P, PROT_READ, f"{MPROTECT05}: mprotect PROT_READ of four "
             "pages over three pieces line 40"),
    maps(At("addr"), "r--s", f"{MPROTECT05}: after line 40 the five pages are one r--s "
         "mapping again", end=At("addr", 5 * P)),
    munmap(At("addr"), 5 * P, f"{MPROTECT05}: SAFE_MUNMAP line 43"),
))


# -- brk -------------------------------------------------------------------------------


def _brk_call(addr: Value, libc: bool, source: str, *, exact: bool) -> list[Step]:
    """brk01/brk02's call: the raw system call returns the break (compared exactly by
    brk01, at least the address by brk02); libc's brk() succeeds iff the call returned
    at least addr, then sbrk(0) is the break."""
    if not libc:
        return [brk(addr, f"{source} (syscall variant)", returns=addr if exact else None,
                    at_least=None if exact else addr)]
    return [brk(addr, f"{source} (libc variant: brk() passes)", at_least=addr),
            brk(0, f"{source} (libc variant: sbrk(0))", returns=addr if exact else None,
                at_least=None if exact else addr)]


def _brk01_case(libc: bool) -> Case:
    inc = 2 * P - 1
    start = f"{BRK01}: line {25 if libc else 22} the break now"
    steps = [brk(0, start, save="brk")]
    if libc:
        steps.append(brk(At("brk"), f"{BRK01}: line 34 brk(cur_brk) is a no-op",
                         returns=At("brk")))
    for i in range(33):
        new = At("brk", (inc, inc, 0)[i % 3])
        line = (41, 44, 47)[i % 3]
        steps += _brk_call(new, libc, f"{BRK01}: iteration {i}, new_brk line {line}, "
                           f"line {54 if libc else 52}, cur_brk == new_brk line 58", exact=True)
        if i % 3 == 0:
            steps.append(write(new, b"\0", f"{BRK01}: iteration {i}, *cur_brk = 0 line 67"))
    return Case(f"brk01_{'libc' if libc else 'syscall'}", tuple(steps))


def _brk02_case(libc: bool) -> Case:
    steps = [brk(0, f"{BRK02}: line {41 if libc else 38} the break now", save="brk")]
    if libc:
        steps.append(brk(At("brk"), f"{BRK02}: line 50 brk(brk_addr) is a no-op",
                         returns=At("brk")))
    steps += _brk_call(At("brk", P), libc, f"{BRK02}: line 57 expand by a page", exact=False)
    steps += _brk_call(At("brk", 2 * P), libc, f"{BRK02}: line 63 expand by 2 pages",
                       exact=False)
    steps.append(mprotect(At("brk", P), P, PROT_READ,
                          f"{BRK02}: line 68 mprotect of the second page PROT_READ"))
    steps += _brk_call(At("brk", 3 * P), libc, f"{BRK02}: line 74 expand after mprotect",
                       exact=False)
    steps += _brk_call(At("brk"), libc, f"{BRK02}: line 79 restore the start address",
                       exact=True)
    return Case(f"brk02_{'libc' if libc else 'syscall'}", tuple(steps))


#: sbrk01.c tcases[] (lines 18-20), run in order in one process.
_SBRK01_INCREMENTS = (0, 8192, -8192)


def _sbrk01_case(index: int) -> Case:
    steps = [brk(0, f"{SBRK01}: the break before tcases[0]", save="brk")]
    now = 0
    for i in range(index + 1):
        increment = _SBRK01_INCREMENTS[i]
        steps.append(sbrk(increment, f"{SBRK01}: the tcases entry {{{increment}}} "
                          f"(line {18 + i}), TST_EXP_PASS_PTR_VOID line 27",
                          returns=At("brk", now)))
        now += increment
    steps.append(brk(0, f"{SBRK01}: the break moved by the increments", returns=At("brk", now)))
    return Case(f"sbrk01_{_SBRK01_INCREMENTS[index]}", tuple(steps))


_INC = 16 << 20
SBRK02_CASE = Case("sbrk02_enomem", (
    sbrk(_INC, f"{SBRK02}: setup lines 28-31, the loop's first sbrk(16 MB) already fails: "
         "the break stops a guard page below the process heap at heap_max (RLIMIT_DATA's "
         "part here)", errno=(ENOMEM,)),
    sbrk(2 * _INC, f"{SBRK02}: line 20 TST_EXP_FAIL_PTR_VOID(sbrk(increment), ENOMEM)",
         errno=(ENOMEM,)),
))


CASES: tuple[Case, ...] = (
    *(_mmap04_case(i) for i in range(len(_MMAP04_TCASES))),
    MMAP05_CASE, MMAP06_LENGTH_ZERO, MMAP06_NO_TYPE, MMAP08_CASE, MMAP10_CASE, MMAP15_CASE,
    MMAP17_CASE,
    _munmap01_case(False), _munmap01_case(True), *(_munmap03_case(i) for i in range(3)),
    MPROTECT01_ENOMEM, MPROTECT01_EINVAL, MPROTECT02_CASE, MPROTECT03_CASE, MPROTECT04_NONE,
    MPROTECT04_EXEC, MPROTECT05_CASE,
    _brk01_case(False), _brk01_case(True), _brk02_case(False), _brk02_case(True),
    *(_sbrk01_case(i) for i in range(len(_SBRK01_INCREMENTS))), SBRK02_CASE,
)


# -- the runner -----------------------------------------------------------------------


def perform(system: SystemCalls, step: Step, saved: dict[str, int]) -> object:
    """Run one step: the call's result (an int, bytes, a fault, or the maps line)."""
    space = system.current
    assert space is not None
    args = [resolve(a, saved) for a in step.args]
    calls: dict[str, Callable[..., int]] = {
        "mmap": system.SyscallMmap, "munmap": system.SyscallMunmap,
        "mprotect": system.SyscallMprotect, "brk": system.SyscallBrk}
    if step.call in calls:
        return calls[step.call](*args)
    if step.call == "sbrk":
        return _sbrk(system, step.args[0])
    if step.call == "write":
        return space.WriteUserMemory(*args)
    if step.call == "read":
        return space.ReadUserMemory(*args)
    if step.call == "execute":
        return space.ExecuteUserMemory(*args)
    return next((line for line in linux_maps(space) if line[0] == args[0]), None)


def _sbrk(system: SystemCalls, increment: object) -> int:
    """glibc's sbrk over the brk system call (misc/sbrk.c): the old break or -ENOMEM."""
    assert isinstance(increment, int)
    now = system.SyscallBrk(0)
    if increment == 0:
        return now
    asked = now + increment
    if not 0 <= asked < 1 << 32:
        return -ENOMEM
    return now if system.SyscallBrk(asked) >= asked else -ENOMEM


def check(system: SystemCalls, step: Step, saved: dict[str, int]) -> None:
    space = system.current
    assert space is not None
    before = snapshot(space)
    result = perform(system, step, saved)
    where = f"{step.call}{step.args} ({step.source})"
    if step.errno:
        assert isinstance(result, int) and -result in step.errno, f"{where}: {result!r}"
        assert snapshot(space) == before, f"{where}: a failure changed the state"
        return
    if step.fault:
        address = resolve(step.args[0], saved)
        assert isinstance(result, PageFault) and result.address == address, \
            f"{where}: {result!r}, expected a fault"
        assert snapshot(space) == before, f"{where}: a fault changed the state"
        return
    assert not isinstance(result, PageFault), f"{where}: faulted {result!r}"
    if step.call == "maps":
        assert isinstance(result, tuple), f"{where}: no mapping starts there"
        assert result[2] == step.perms, f"{where}: perms {result[2]}"
        if step.returns is not None:
            assert result[1] == resolve(step.returns, saved), f"{where}: ends {result[1]:#x}"
        return
    if step.call == "write":
        assert result is True, f"{where}: {result!r}"
    if isinstance(result, int) and step.call != "brk":
        assert result >= 0, f"{where}: failed with errno {-result}"
    if step.returns is not None:
        assert result == resolve(step.returns, saved), f"{where}: returned {result!r}"
    if step.at_least is not None:
        floor = resolve(step.at_least, saved)
        assert isinstance(result, int) and isinstance(floor, int) and result >= floor, \
            f"{where}: returned {result!r}"
    if step.save:
        assert isinstance(result, int)
        saved[step.save] = result


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_linux_ltp(case: Case) -> None:
    run_case(case.steps, check, MEM_END)


__all__ = ["CASES", "At", "Case", "Step", "test_linux_ltp"]
