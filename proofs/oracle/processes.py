"""Ending an implementation and every process it started.

The oracle starts each implementation in a session and process group of its
own (``start_new_session``) with a marker in its environment (:data:`MARKER`,
unique to that child), which every process it starts inherits. At the end of
a sequence, whatever state the child is in, :func:`end_processes` sends SIGKILL
(SIGTERM can be ignored) to, and repeats while a look finds any (a process
may fork while it looks):

- the child's process group (POSIX ``killpg``: everywhere);
- on Linux, through /proc: every process of the child's session or group,
  every process whose parent chain leads to the child, and every process
  started since the child whose environment carries its marker, which finds
  a grandchild that started a session of its own (``setsid``, a daemon's
  double fork) and was re-parented to init.

This is what works here (Linux, as root or as the user who runs the oracle:
``/proc/PID/environ`` is readable for one's own processes) without changing
the host. A per-run cgroup (``cgroup.kill``) would hold even a process that
clears its environment, but the cgroup hierarchy belongs to the host, not to
the oracle; ``PR_SET_CHILD_SUBREAPER`` would make the oracle the parent of
every orphan of whatever program embeds it (pytest, CI), with no way to tell
the implementation's from the program's own. What escapes: a process that
clears its environment (``env -i``), leaves the session and loses its parent.
Without /proc (macOS, the BSDs) only the process group is ended, and
:data:`TRACKING` says so (the CLI prints it).

The child itself is reaped only after all this: until then its pid (the
group's and session's id) cannot be reused, so ``killpg`` never reaches a
stranger.
"""

from __future__ import annotations

import os
import secrets
import signal
import time
from collections.abc import Iterator
from itertools import count
from pathlib import Path
from typing import NamedTuple

#: The environment variable that marks an implementation's processes.
MARKER = "MEMSPEC_ORACLE_CHILD"
PROC = Path("/proc")
#: Whether processes outside the child's group can be found (Linux /proc).
CAN_TRACK = (PROC / "self" / "stat").exists()
#: What the oracle ends at the end of a sequence, as the CLI says it.
TRACKING = ("the implementation's process group, session and descendants, and every "
            "process carrying its environment marker (/proc)" if CAN_TRACK else
            "only the implementation's process group: this system has no /proc, so a "
            "process the implementation starts outside its group may survive")
#: Looks (kill, look again) before giving up on a process that keeps forking.
ROUNDS = 50
_serial = count(1)


def new_marker() -> str:
    """A marker no other child of any oracle carries; it starts with
    :func:`own_prefix`."""
    return f"{own_prefix()}{next(_serial)}-{secrets.token_hex(6)}"


def own_prefix() -> str:
    """How the markers of this oracle's children start."""
    return f"{os.getpid()}-"


def environment(marker: str) -> dict[str, str]:
    """The oracle's environment with the child's marker."""
    return {**os.environ, MARKER: marker}


class Process(NamedTuple):
    """One line of /proc/PID/stat (proc(5)): the fields the search needs."""

    pid: int
    ppid: int
    group: int
    session: int
    #: Clock ticks after boot.
    start: int
    zombie: bool


def _read(path: str) -> bytes | None:
    """A /proc file's bytes (os.open and os.read: a look reads every process's)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


def _stat(pid: int) -> Process | None:
    text = _read(f"/proc/{pid}/stat")
    fields = (text or b"").rpartition(b")")[2].split()  # the name may hold spaces, ')'
    try:
        return Process(pid, int(fields[1]), int(fields[2]), int(fields[3]), int(fields[19]),
                       fields[0] in (b"Z", b"X"))
    except (IndexError, ValueError):
        return None


def now() -> int:
    """The clock of /proc/PID/stat's start field (ticks after boot, proc(5)), one
    tick early: a process started after this call started at or after it."""
    try:
        return int(time.clock_gettime(time.CLOCK_BOOTTIME) * os.sysconf("SC_CLK_TCK")) - 1
    except (AttributeError, ValueError, OSError):
        return 0


def _table() -> dict[int, Process]:
    table = {}
    for name in os.listdir(PROC):
        if name.isdigit() and (process := _stat(int(name))) is not None:
            table[process.pid] = process
    return table


def _descends(process: Process, root: int, table: dict[int, Process]) -> bool:
    seen = set()
    while process.ppid not in seen and process.ppid > 1:
        if process.ppid == root:
            return True
        seen.add(process.ppid)
        parent = table.get(process.ppid)
        if parent is None:
            return False
        process = parent
    return False


def _marked(pid: int, needle: bytes) -> bool:
    return needle in (_read(f"/proc/{pid}/environ") or b"")


def members(root: int, marker: str, since: int = 0) -> Iterator[int]:
    """The live processes of the child root (its group, session, descendants,
    and those started at or after ``since`` that carry its marker)."""
    needle = f"{MARKER}={marker}\0".encode()
    own = os.getpid()
    table = _table()
    for process in table.values():
        if process.pid == own or process.zombie:
            continue
        if (process.group == root or process.session == root
                or _descends(process, root, table)
                or (process.start >= since and _marked(process.pid, needle))):
            yield process.pid


def _kill(pid: int, group: bool = False) -> None:
    try:
        (os.killpg if group else os.kill)(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def end_processes(root: int, marker: str, since: int = 0) -> int:
    """SIGKILL the child root (not yet reaped) and everything it started; the
    number of processes found besides the group (0 when /proc is missing)."""
    found: set[int] = set()
    for _ in range(ROUNDS):
        _kill(root, group=True)
        alive = set(members(root, marker, since)) if CAN_TRACK else set()
        if not alive:
            break
        for pid in alive:
            _kill(pid)
        found |= alive
    return len(found - {root})


def end_marked(prefix: str) -> int:
    """SIGKILL every process whose marker starts with prefix, with its group
    (every child of this oracle, even one started the instant the oracle was
    told to stop, before it knew the child's pid); how many. Linux only."""
    needle = f"{MARKER}={prefix}".encode()
    own, found = os.getpid(), set()
    for _ in range(ROUNDS if CAN_TRACK else 0):
        alive = [p for p in _table().values()
                 if p.pid != own and not p.zombie and _marked(p.pid, needle)]
        if not alive:
            break
        for process in alive:
            _kill(process.pid, group=process.group == process.pid)
            _kill(process.pid)
        found |= {p.pid for p in alive}
    return len(found)


__all__ = ["CAN_TRACK", "MARKER", "TRACKING", "end_marked", "end_processes", "environment",
           "members", "new_marker", "now", "own_prefix"]
