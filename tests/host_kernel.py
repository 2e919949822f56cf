"""Host side of the Linux differential test (issue 4): the kernel this machine runs.

Not a test module: tests/test_linux_differential.py drives it and the model with
the same operations. Three parts:

- ``host_mmap`` / ``host_munmap`` / ``host_mprotect``: libc's wrappers through
  ctypes (errno kept with use_errno=True), returning the address or 0 on success
  and ``-errno`` on failure, the model's convention (what the kernel returns in a
  register before libc turns it into -1 and errno).
- ``HostWindow``: one PROT_NONE private anonymous mapping of WINDOW_PAGES pages
  that the test owns; every generated operation stays inside it. It is placed
  with MAP_FIXED_NOREPLACE far below the top-down mmap area, so a hole the test
  makes in it is never the highest free gap and nothing else in this process
  (Python's allocators) lands in it. ``pages()`` reads /proc/self/maps.
- ``BrkChild``: the break is never moved inside this process (glibc's malloc
  owns it). brk sequences run in a tiny C program compiled at test time with the
  system compiler, which talks a line protocol over pipes and never calls
  malloc: it uses read/write/syscall only.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

PAGE = 4096
#: One page of a mapping as /proc/self/maps shows it ("rw-p"), None when unmapped.
PageState = str | None
MapsEntry = tuple[int, int, str]

_libc = ctypes.CDLL(None, use_errno=True)
_mmap = getattr(_libc, "mmap64", _libc.mmap)
_mmap.restype = ctypes.c_void_p
_mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                  ctypes.c_int64]
_munmap = _libc.munmap
_munmap.restype = ctypes.c_int
_munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_mprotect = _libc.mprotect
_mprotect.restype = ctypes.c_int
_mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]

_MAP_FAILED = 2**64 - 1 if ctypes.sizeof(ctypes.c_void_p) == 8 else 2**32 - 1
_MAP_PRIVATE_ANON = 0x02 | 0x20
_MAP_FIXED = 0x10
_MAP_FIXED_NOREPLACE = 0x100000
#: Where the window is tried first: far below the mmap area and above the low
#: 4 GB, valid with 39-bit and 47-bit user address spaces.
_WINDOW_CANDIDATES = (0x10_0000_0000, 0x20_0000_0000, 0x1_0000_0000)


def _errno_result(ok: bool, value: int) -> int:
    return value if ok else -ctypes.get_errno()


def host_mmap(addr: int, length: int, prot: int, flags: int, fd: int, offset: int) -> int:
    """mmap(2) on the host: the address, or -errno."""
    ctypes.set_errno(0)
    result = _mmap(addr, length, prot, flags, fd, offset)
    value = 0 if result is None else int(result)
    return _errno_result(value != _MAP_FAILED, value)


def host_munmap(addr: int, length: int) -> int:
    """munmap(2) on the host: 0, or -errno."""
    ctypes.set_errno(0)
    return _errno_result(_munmap(addr, length) == 0, 0)


def host_mprotect(addr: int, length: int, prot: int) -> int:
    """mprotect(2) on the host: 0, or -errno."""
    ctypes.set_errno(0)
    return _errno_result(_mprotect(addr, length, prot) == 0, 0)


def parse_maps(text: str) -> list[MapsEntry]:
    """(start, end, perms) of every line of a /proc/PID/maps text."""
    entries = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 2:
            continue
        start, end = (int(part, 16) for part in fields[0].split("-"))
        entries.append((start, end, fields[1]))
    return entries


def read_maps() -> list[MapsEntry]:
    """/proc/self/maps of this process."""
    with open("/proc/self/maps", encoding="ascii", errors="replace") as maps:
        return parse_maps(maps.read())


def page_states(entries: Sequence[MapsEntry], base: int, npages: int) -> tuple[PageState, ...]:
    """Page by page: the perms of the mapping holding base + i * PAGE, or None."""
    end = base + npages * PAGE
    states: list[PageState] = [None] * npages
    for start, stop, perms in entries:
        if stop <= base or start >= end:
            continue
        first = max(start, base)
        for address in range(first, min(stop, end), PAGE):
            states[(address - base) // PAGE] = perms
    return tuple(states)


class HostWindow:
    """The test's PROT_NONE window in this process."""

    def __init__(self, npages: int) -> None:
        if os.sysconf("SC_PAGE_SIZE") != PAGE:
            raise RuntimeError(f"the host's pages are {os.sysconf('SC_PAGE_SIZE')} bytes; the "
                               f"differential test compares {PAGE}-byte pages with i386")
        self.npages = npages
        self.size = npages * PAGE
        self.base = self._reserve()

    def _reserve(self) -> int:
        for candidate in _WINDOW_CANDIDATES:
            address = host_mmap(candidate, self.size, 0, _MAP_PRIVATE_ANON | _MAP_FIXED_NOREPLACE,
                                -1, 0)
            if address == candidate:
                return address
            if address > 0:
                host_munmap(address, self.size)
        raise RuntimeError("could not reserve the differential-test window: "
                           f"{', '.join(hex(c) for c in _WINDOW_CANDIDATES)} are all taken")

    def contains(self, address: int) -> bool:
        return self.base <= address < self.base + self.size

    def reset(self) -> None:
        """The whole window PROT_NONE again (MAP_FIXED replaces what the last sequence left)."""
        flags = _MAP_PRIVATE_ANON | _MAP_FIXED
        address = host_mmap(self.base, self.size, 0, flags, -1, 0)
        if address != self.base:
            raise RuntimeError(f"resetting the window failed: {address}")

    def pages(self) -> tuple[PageState, ...]:
        return page_states(read_maps(), self.base, self.npages)

    def close(self) -> None:
        host_munmap(self.base, self.size)


# --- brk, in a child process -------------------------------------------------

#: The child: reads one command a line on stdin, answers one line on stdout
#: ("maps" answers a byte count line, then the bytes). Addresses are relative to
#: start_brk (field 47 of /proc/self/stat). Commands:
#:   b DELTA            brk(start_brk + DELTA)          -> "R" (result - start_brk)
#:   m OFF LEN PROT FL  mmap(start_brk + OFF, ..., -1, 0) -> "0 REL" | "1 ERRNO"
#:   u OFF LEN          munmap(start_brk + OFF, LEN)    -> "0 0" | "1 ERRNO"
#:   p                  /proc/self/maps
#: At start it prints "ready START_BRK INITIAL_BREAK" (hex) and has moved the
#: break back to start_brk if anything before main had moved it.
BRK_CHILD_SOURCE = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

static char line[512];
static char text[1 << 17];
static char out[128];

static void put(const char *s, long n) {
    while (n > 0) {
        long w = write(1, s, n);
        if (w <= 0) _exit(3);
        s += w; n -= w;
    }
}

static long fmt(char *p, long v, int base) {
    char tmp[32]; long n = 0, k = 0; unsigned long u;
    if (v < 0 && base == 10) { p[k++] = '-'; u = (unsigned long)(-v); } else u = (unsigned long)v;
    do { tmp[n++] = "0123456789abcdef"[u % base]; u /= base; } while (u);
    while (n) p[k++] = tmp[--n];
    return k;
}

static void reply2(long a, long b) {
    long k = fmt(out, a, 10); out[k++] = ' ';
    k += fmt(out + k, b, 10); out[k++] = '\n';
    put(out, k);
}

static long read_line(void) {
    long n = 0;
    for (;;) {
        char c;
        long r = read(0, &c, 1);
        if (r <= 0) return -1;
        if (c == '\n') { line[n] = 0; return n; }
        if (n < (long)sizeof(line) - 1) line[n++] = c;
    }
}

static long read_file(const char *path) {
    int fd = open(path, O_RDONLY);
    long n = 0, r;
    if (fd < 0) _exit(4);
    while ((r = read(fd, text + n, sizeof(text) - 1 - n)) > 0) n += r;
    close(fd);
    text[n] = 0;
    return n;
}

static unsigned long stat_start_brk(void) {
    long n = read_file("/proc/self/stat"), i, field = 2;
    char *p = text;
    for (i = n - 1; i >= 0; i--) if (text[i] == ')') { p = text + i + 1; break; }
    while (*p) {
        while (*p == ' ') p++;
        field++;
        if (field == 47) return strtoul(p, NULL, 10);
        while (*p && *p != ' ') p++;
    }
    _exit(5);
}

int main(void) {
    unsigned long start = stat_start_brk();
    unsigned long initial = (unsigned long)syscall(SYS_brk, 0);
    char *p;
    if (initial != start) syscall(SYS_brk, start);
    {
        long k = 0;
        const char *ready = "ready ";
        while (ready[k]) { out[k] = ready[k]; k++; }
        k += fmt(out + k, (long)start, 16); out[k++] = ' ';
        k += fmt(out + k, (long)initial, 16); out[k++] = '\n';
        put(out, k);
    }
    while (read_line() >= 0) {
        p = line + 1;
        if (line[0] == 'b') {
            long delta = strtol(p, &p, 10);
            long r = syscall(SYS_brk, start + delta);
            long k = fmt(out, (long)((unsigned long)r - start), 10);
            out[k++] = '\n';
            put(out, k);
        } else if (line[0] == 'm') {
            long off = strtol(p, &p, 10);
            unsigned long len = strtoul(p, &p, 10);
            int prot = (int)strtol(p, &p, 10), flags = (int)strtol(p, &p, 10);
            void *r = mmap((void *)(start + off), len, prot, flags, -1, 0);
            if (r == MAP_FAILED) reply2(1, errno);
            else reply2(0, (long)((unsigned long)r - start));
        } else if (line[0] == 'u') {
            long off = strtol(p, &p, 10);
            unsigned long len = strtoul(p, &p, 10);
            if (munmap((void *)(start + off), len) != 0) reply2(1, errno);
            else reply2(0, 0);
        } else if (line[0] == 'p') {
            long n = read_file("/proc/self/maps");
            long k = fmt(out, n, 10);
            out[k++] = '\n';
            put(out, k);
            put(text, n);
        } else {
            _exit(2);
        }
    }
    return 0;
}
"""


class CompilerMissingError(RuntimeError):
    """No C compiler: the brk half of the differential test cannot run."""


def compile_brk_child(directory: Path) -> Path:
    """Compile BRK_CHILD_SOURCE with the system cc into directory; the executable's path."""
    compiler = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if compiler is None:
        raise CompilerMissingError(
            "no C compiler (cc/gcc/clang) on PATH: the brk differential test needs one to build "
            "its child process (install gcc); it fails rather than skips, because a skipped "
            "differential test proves nothing")
    source = directory / "brk_child.c"
    binary = directory / "brk_child"
    source.write_text(BRK_CHILD_SOURCE, encoding="ascii")
    done = subprocess.run([compiler, "-O1", "-o", str(binary), str(source)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise CompilerMissingError(f"{compiler} failed to build the brk child:\n{done.stderr}")
    return binary


class BrkChild:
    """One child process; addresses are relative to its start_brk."""

    def __init__(self, binary: Path) -> None:
        self.process = subprocess.Popen([str(binary)], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE)
        words = self._line().split()
        if len(words) != 3 or words[0] != "ready":
            raise RuntimeError(f"brk child did not start: {words}")
        self.start_brk = int(words[1], 16)
        self.initial_break = int(words[2], 16)

    def _line(self) -> str:
        assert self.process.stdout is not None
        raw = self.process.stdout.readline()
        if not raw:
            raise RuntimeError(f"brk child died (exit {self.process.wait()})")
        return raw.decode("ascii").strip()

    def _send(self, command: str) -> str:
        assert self.process.stdin is not None
        self.process.stdin.write(command.encode("ascii") + b"\n")
        self.process.stdin.flush()
        return self._line()

    @staticmethod
    def _result(answer: str) -> int:
        failed, value = (int(word) for word in answer.split())
        return -value if failed else value

    def brk(self, delta: int) -> int:
        """brk(start_brk + delta), the result relative to start_brk."""
        return int(self._send(f"b {delta}"))

    def mmap(self, offset: int, length: int, prot: int, flags: int) -> int:
        """Anonymous mmap at start_brk + offset: the relative address or -errno."""
        return self._result(self._send(f"m {offset} {length} {prot} {flags}"))

    def munmap(self, offset: int, length: int) -> int:
        return self._result(self._send(f"u {offset} {length}"))

    def maps(self) -> list[MapsEntry]:
        count = int(self._send("p"))
        assert self.process.stdout is not None
        return parse_maps(self.process.stdout.read(count).decode("ascii", errors="replace"))

    def pages(self, npages: int) -> tuple[PageState, ...]:
        """Pages [start_brk, start_brk + npages * PAGE)."""
        return page_states(self.maps(), self.start_brk, npages)

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
