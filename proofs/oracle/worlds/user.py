"""The user managers' side of the model world: processes and their system calls.

One manager, ``SystemCalls`` (PROTOCOL.md, "Processes"), served by a
:class:`model.syscalls.SystemCalls` on the world's VirtualMemoryManager.
Decisions:

- Operations keep the model's names and parameter names; the Windows-named
  calls return their uint32 result and ``error`` is GetLastError (the
  SystemCalls' ``last_error``); the Linux calls return the signed result
  (-errno on failure) and ``error`` is the errno (0 on success; a brk that
  does not move the break where asked reports ENOMEM, as the user machine
  judges it: linux_code, which the user machine imports from here).
- ReadUserMemory / WriteUserMemory / ExecuteUserMemory are user-mode accesses
  in the current process (ProcessMemorySpace's), returning a boolean: true
  when the access was allowed; ``error`` the space's code (998 on a page fault
  or an access the protection refuses, 6 without a current process).
- An argument that is not an integer (a hex string for ``data``) is refused
  before the model sees it: 0 / false with ERROR_INVALID_PARAMETER, -EINVAL
  with EINVAL for the Linux calls; nothing changes.
- Observations never change the state: VirtualQuery saves and restores the
  space's last error; Processes reports the records, not the hardware's
  accessed/dirty bits; ProcessBytes reads frames without touching a PTE.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from model.page_manager import PageManager
from model.process_memory import ProcessMemorySpace
from model.syscalls import SystemCalls
from model.virtual_alloc import VirtualQueryProcessMemory
from model.virtual_memory import VirtualMemoryManager
from proofs.oracle.managers import Calls, Manager, Message, PartFactory, Result, WorldPart
from spec.abi import (
    EINVAL,
    ENOMEM,
    MEM_COMMIT,
    PAGE_SHIFT,
    PAGE_SIZE,
    PTE_PRESENT,
    PTE_USER,
    PTE_WRITABLE,
    USER_END_VPN,
    USER_FIRST_VPN,
    ErrorCode,
)

#: Bytes ProcessBytes reads at most.
READ_LIMIT = PAGE_SIZE
ACCESSES = ("ReadUserMemory", "WriteUserMemory", "ExecuteUserMemory")
MANAGERS: tuple[Manager, ...] = (
    Manager("SystemCalls", ("PageManager", "VirtualMemoryManager"), {
        "CreateProcess": (),
        "DestroyProcess": ("pid",),
        "SwitchProcess": ("pid",),
        "SyscallVirtualAlloc": ("address", "size", "allocation_type", "protect"),
        "SyscallVirtualFree": ("address", "size", "free_type"),
        "SyscallVirtualProtect": ("address", "size", "new_protect", "old_protect_ptr"),
        "SyscallVirtualQuery": ("address", "buffer", "length"),
        "SyscallGetProcessHeap": (),
        "SyscallHeapAlloc": ("heap", "flags", "size"),
        "SyscallHeapFree": ("heap", "flags", "ptr"),
        "SyscallHeapSize": ("heap", "flags", "ptr"),
        "SyscallHeapReAlloc": ("heap", "flags", "ptr", "size"),
        "SyscallMmap": ("addr", "length", "prot", "flags", "fd", "offset"),
        "SyscallMmap2": ("addr", "length", "prot", "flags", "fd", "pgoffset"),
        "SyscallMunmap": ("addr", "length"),
        "SyscallMprotect": ("addr", "length", "prot"),
        "SyscallBrk": ("new_brk",),
        "ReadUserMemory": ("addr",),
        "WriteUserMemory": ("addr", "data"),
        "ExecuteUserMemory": ("addr",),
    }, ("Processes", "VirtualQuery", "ProcessBytes"),
        frozenset({"DestroyProcess", "SwitchProcess", *ACCESSES})),
)
#: The Linux calls the user machine judges (their result is -errno on failure).
LINUX = ("SyscallMmap", "SyscallMunmap", "SyscallMprotect", "SyscallBrk")
#: The calls whose result is signed.
SIGNED = frozenset({*LINUX, "SyscallMmap2"})


def linux_code(name: str, args: tuple[Any, ...], reply: Any) -> int:
    """A Linux call's errno: -reply when negative; a brk that does not move the
    break to the value asked for failed (ENOMEM)."""
    if name == "SyscallBrk":
        return 0 if reply == args[0] else (-reply if isinstance(reply, int) and reply < 0
                                           else ENOMEM)
    return -reply if isinstance(reply, int) and reply < 0 else 0


def page_runs(space: ProcessMemorySpace) -> list[list[Any]]:
    """[first_vpn, count, state, protect, base_vpn, frame or None] runs of the
    space's records: consecutive pages with equal fields and consecutive frames."""
    out: list[list[Any]] = []
    for vpn in sorted(space.pages):
        record = space.pages[vpn]
        base = record.allocation_base >> PAGE_SHIFT
        last = out[-1] if out else None
        if (last is not None and last[0] + last[1] == vpn and last[2:5] == [
                record.state, record.protect, base]
                and (last[5] is None) == (record.frame is None)
                and (record.frame is None or last[5] + last[1] == record.frame)):
            last[1] += 1
            continue
        out.append([vpn, 1, record.state, record.protect, base, record.frame])
    return out


def pte_runs(space: ProcessMemorySpace) -> list[list[Any]]:
    """[first_vpn, count, first_frame, writable, user] runs of the present PTEs
    of user space in the space's directory."""
    out: list[list[Any]] = []
    directory = space.page_dir
    if directory is None:
        return out
    for slot in range(USER_FIRST_VPN >> 10, USER_END_VPN >> 10):
        table = directory.tables[slot]
        if table is None:
            continue
        entries = table.entries
        for index in [i for i, e in enumerate(entries) if e & PTE_PRESENT]:
            entry = entries[index]
            vpn, frame = (slot << 10) | index, entry >> PAGE_SHIFT
            bits = [bool(entry & PTE_WRITABLE), bool(entry & PTE_USER)]
            last = out[-1] if out else None
            if (last is not None and last[0] + last[1] == vpn and last[2] + last[1] == frame
                    and last[3:] == bits):
                last[1] += 1
            else:
                out.append([vpn, 1, frame, *bits])
    return out


class UserPart:
    """SystemCalls behind the protocol."""

    def __init__(self, pm: PageManager, vmm: VirtualMemoryManager,
                 parts: Sequence[WorldPart] = ()) -> None:
        self.pm = pm
        self.syscalls = SystemCalls(vmm)
        self.error = 0

    def calls(self) -> Calls:
        (manager,) = MANAGERS
        return {(manager.name, op): (self._caller(op), self._error)
                for op in manager.operations}

    def _error(self) -> int:
        return self.error

    def _caller(self, op: str) -> Callable[..., Result]:
        def call(*args: Any) -> Result:
            return self._call(op, args)
        return call

    def _call(self, op: str, args: tuple[Any, ...]) -> Result:
        linux = op in SIGNED
        write = op == "WriteUserMemory"
        typed = all(type(a) is int for a in (args[:1] if write else args))
        data: bytes | None = None
        if write:
            try:
                data = bytes.fromhex(args[1]) if isinstance(args[1], str) else None
            except ValueError:
                data = None
            typed = typed and data is not None
        if not typed:
            self.error = EINVAL if linux else int(ErrorCode.ERROR_INVALID_PARAMETER)
            return -EINVAL if linux else (False if op in MANAGERS[0].bool_results else 0)
        if op in ACCESSES:
            return self._access(op, args[0], data)
        result = getattr(self.syscalls, op)(*args)
        if linux:
            self.error = linux_code(op, args, result)
        else:
            self.error = int(self.syscalls.last_error)
        return bool(result) if op in MANAGERS[0].bool_results else int(result)

    def _access(self, op: str, addr: int, data: bytes | None) -> bool:
        space = self.syscalls.current
        if space is None:
            self.error = int(ErrorCode.ERROR_INVALID_HANDLE)
            return False
        if op == "ReadUserMemory":
            reply: object = space.ReadUserMemory(addr, 1)
        elif op == "ExecuteUserMemory":
            reply = space.ExecuteUserMemory(addr)
        else:
            assert data is not None
            reply = space.WriteUserMemory(addr, data)
        self.error = int(space.last_error)
        return isinstance(reply, bytes) or reply is True

    # -- observations ---------------------------------------------------------------

    def observers(self) -> Mapping[str, Callable[..., Message]]:
        return {"Processes": self._processes, "VirtualQuery": self._virtual_query,
                "ProcessBytes": self._process_bytes}

    def _processes(self) -> Message:
        calls = self.syscalls
        current = calls.current
        return {"current": 0 if current is None else current.pid, "processes": [{
            "pid": pid, "image_base": space.image_base, "heap_start": space.heap_start,
            "brk": space.brk, "heap_max": space.heap_max, "stack_start": space.stack_start,
            "stack_size": space.stack_size, "heap": calls.heaps[pid].start_address,
            "allocations": [[a.base, a.size, a.allocation_protect, a.origin, a.type]
                            for a in (space.allocations[b] for b in space.bases)],
            "pages": page_runs(space), "ptes": pte_runs(space)}
            for pid, space in sorted(calls.processes.items())]}

    def _virtual_query(self, pid: int, address: int) -> Message:
        space = self.syscalls.processes.get(pid) if type(pid) is int else None
        fields = ("base_address", "allocation_base", "allocation_protect", "region_size",
                  "state", "protect", "type")
        if space is None:
            return {"result": 0, "error": int(ErrorCode.ERROR_INVALID_HANDLE),
                    **dict.fromkeys(fields, 0)}
        saved = space.last_error
        written, info = VirtualQueryProcessMemory(space, address)
        error, space.last_error = int(space.last_error), saved
        values = [0] * len(fields) if info is None else list(info)
        return {"result": written, "error": error, **dict(zip(fields, values, strict=True))}

    def _process_bytes(self, pid: int, virtual_addr: int, length: int) -> Message:
        space = self.syscalls.processes.get(pid) if type(pid) is int else None
        if space is None or type(length) is not int or type(virtual_addr) is not int or not (
                0 <= length <= READ_LIMIT and 0 <= virtual_addr <= (1 << 32) - length):
            return {"data": None}
        out = b""
        address, end = virtual_addr, virtual_addr + length
        while address < end:
            record = space.pages.get(address >> PAGE_SHIFT)
            if record is None or record.state != MEM_COMMIT or record.frame is None:
                return {"data": None}
            offset = address & (PAGE_SIZE - 1)
            piece = min(end - address, PAGE_SIZE - offset)
            page = self.pm.memory.get(record.frame)
            out += bytes(piece) if page is None else bytes(page[offset:offset + piece])
            address += piece
        return {"data": out.hex()}


PARTS: tuple[PartFactory, ...] = (UserPart,)
