"""SystemCalls: processes and the seed's system calls (seed section 7, issue 4).

A process table (``processes``: pid -> ProcessMemorySpace, ``current``) and the
calls a user program makes, for the current process. Rules, with sources:

- CreateProcess builds a space (its own directory, image, stack: see
  model/process_memory.py) and its process heap, all or nothing; pids count up
  from 1; 0 means failure (ERROR_NOT_ENOUGH_MEMORY, or ERROR_INVALID_PARAMETER
  for a layout that does not fit). DestroyProcess destroys the heap, then the
  space: every frame returns to the PageManager. SwitchProcess loads the
  process's directory (CR3); destroying the current process makes the kernel
  directory current and ``current`` None. A process whose space was destroyed
  under it (its DestroyUserSpace called directly, as a kernel tears down an
  exiting task's mm before the task is reaped) makes no calls: every call of it
  fails with ERROR_INVALID_HANDLE (its Linux calls with -ESRCH), and
  DestroyProcess only reaps it. DestroyProcess first detaches every
  shared-memory and file view (issue 5: file views write their dirty pages
  back, so a process that exits without unmapping loses nothing; its block
  references are dropped as shmdt would on exit).
- The process heap (HeapCreate's heap, Microsoft Learn GetProcessHeap): a
  model.kernel_heap.KernelHeap in the process's directory, user mode
  (supervisor False), inside an ORIGIN_PROCESS_HEAP allocation reserved to the
  heap's maximum (PROCESS_HEAP_MAX) at the Windows-style bottom-up address;
  PROCESS_HEAP_INITIAL bytes committed (HeapCreate commits dwInitialSize, the
  heap never shrinks below it). After every heap call the space's records of
  [start, end) are committed READWRITE and the rest reserved, updating only the
  pages that changed. The handle is the heap's start address.
- HeapAlloc, HeapFree, HeapSize, HeapReAlloc: model/process_heap.py (the
  ProcessHeapCalls mixin) states their rules with sources: 8-aligned pointers,
  HeapSize the size asked for, unknown flag bits ignored, HEAP_ZERO_MEMORY,
  HEAP_REALLOC_IN_PLACE_ONLY, HEAP_GENERATE_EXCEPTIONS as ``raised``.
- SyscallVirtualQuery(address, buffer, length) writes the 28-byte 32-bit
  MEMORY_BASIC_INFORMATION (seven little-endian DWORDs) into the caller's
  memory: length < 28 -> ERROR_BAD_LENGTH (STATUS_INFO_LENGTH_MISMATCH); a buffer
  the process cannot write -> ERROR_NOACCESS (998). SyscallVirtualProtect(address,
  size, new, old_ptr) needs a writable old_ptr, checked before any change (and
  still writable under the new protection): else ERROR_NOACCESS, as
  VirtualProtect with a bad lpflOldProtect fails.
- Syscall(number, *args) -> int: Linux i386 numbers brk 45, mmap 90 (old_mmap:
  ONE argument, a pointer to six 32-bit words in the caller's memory, read
  through its page tables; unreadable -> -EFAULT), munmap 91, mprotect 125,
  mmap2 192 (six register arguments, offset in pages); the Windows-named calls
  at 0x1000 + n (Linux i386 numbers stay below 0x1000): SYS_VIRTUAL_ALLOC
  0x1001, SYS_VIRTUAL_FREE 0x1002, SYS_GET_PROCESS_HEAP 0x1003, SYS_HEAP_ALLOC
  0x1004, SYS_HEAP_FREE 0x1005, SYS_VIRTUAL_QUERY 0x1006, SYS_VIRTUAL_PROTECT
  0x1007, SYS_HEAP_SIZE 0x1008, SYS_HEAP_REALLOC 0x1009; they return their
  uint32 result (0 = failure, GetLastError in the space's last_error).
  Unknown number -> -ENOSYS; wrong argument count or an argument that is not
  a 32-bit integer -> -EINVAL; no current process -> -ESRCH. Never raises.
- A failed call leaves the state as it was, with one exception the hardware
  makes, not the design: old_mmap reads its argument block through the MMU,
  which sets the accessed bit (A) in the PDE and in the PTE of each page read
  (SDM Vol. 3A 4.8) before the call can fail; Linux's old_mmap reads it with
  copy_from_user, which does the same. Those A bits are all a failed old_mmap
  changes. A and D bits are no part of the specified state (spec/user_space.py
  has none; the oracle's observations leave them out), and
  tests/test_fuzz_model.py checks that nothing else changes.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from model import linux_mm
from model.kernel_heap import KernelHeap
from model.process_heap import ProcessHeapCalls
from model.process_memory import ProcessMemorySpace
from model.user_layout import protect_allows
from model.virtual_alloc import (
    VirtualAllocProcessMemory,
    VirtualFreeProcessMemory,
    VirtualProtectProcessMemory,
    VirtualQueryProcessMemory,
)
from model.virtual_memory import VirtualMemoryManager
from model.x86_paging import is_u32
from spec.abi import (
    ALLOCATION_GRANULARITY,
    EFAULT,
    EINVAL,
    ENOSYS,
    ESRCH,
    MEM_PRIVATE,
    MEMORY_BASIC_INFORMATION_SIZE,
    ORIGIN_PROCESS_HEAP,
    PAGE_READWRITE,
    PAGE_SIZE,
    PROCESS_HEAP_INDEX,
    PROCESS_HEAP_INITIAL,
    PROCESS_HEAP_MAX,
    SYS_BRK,
    SYS_GET_PROCESS_HEAP,
    SYS_HEAP_ALLOC,
    SYS_HEAP_FREE,
    SYS_HEAP_REALLOC,
    SYS_HEAP_SIZE,
    SYS_MMAP,
    SYS_MMAP2,
    SYS_MPROTECT,
    SYS_MUNMAP,
    SYS_VIRTUAL_ALLOC,
    SYS_VIRTUAL_FREE,
    SYS_VIRTUAL_PROTECT,
    SYS_VIRTUAL_QUERY,
    USER_TOP,
    ErrorCode,
)

_MMAP_ARGS = struct.Struct("<6I")
_MBI = struct.Struct("<7I")
_SUCCESS = ErrorCode.ERROR_SUCCESS


class SystemCalls(ProcessHeapCalls):
    """Processes over one VirtualMemoryManager, and the calls of the current one."""

    def __init__(self, vmm: VirtualMemoryManager) -> None:
        self.vmm = vmm
        self.processes: dict[int, ProcessMemorySpace] = {}
        self.heaps: dict[int, KernelHeap] = {}
        self.heap_sizes: dict[int, dict[int, int]] = {}
        self.raised = 0
        self.current: ProcessMemorySpace | None = None
        self.next_pid = 1
        self.last_error = _SUCCESS

    # -- processes -----------------------------------------------------------

    def CreateProcess(self, *, image_size: int | None = None, heap_max_size: int | None = None,
                      stack_size: int | None = None) -> int:
        """A new process with its space and heap: its pid, or 0."""
        layout = {name: value for name, value in (("image_size", image_size),
                                                  ("heap_max_size", heap_max_size),
                                                  ("stack_size", stack_size))
                  if value is not None}
        pid = self.next_pid
        space = ProcessMemorySpace(self.vmm, pid, **layout)
        if not space.InitializeUserSpace():
            return self._fail(space.last_error, 0)
        base = space.find_bottom_up(PROCESS_HEAP_MAX, space.windows_floor(), USER_TOP,
                                    ALLOCATION_GRANULARITY)
        heap = KernelHeap(self.vmm, space.page_dir)
        created = base >= 0 and heap.Create(
            base, base + PROCESS_HEAP_INITIAL, base + PROCESS_HEAP_MAX, False, False,
            index_size=PROCESS_HEAP_INDEX, min_size=PROCESS_HEAP_INITIAL) is not None
        if not created:
            space.DestroyUserSpace()
            return self._fail(ErrorCode.ERROR_NOT_ENOUGH_MEMORY, 0)
        space.reserve(base, PROCESS_HEAP_MAX, PAGE_READWRITE, ORIGIN_PROCESS_HEAP, MEM_PRIVATE)
        space.adopt_mapped(base, heap.end_address, PAGE_READWRITE)
        self.processes[pid] = space
        self.heaps[pid] = heap
        self.heap_sizes[pid] = {}
        self.next_pid = pid + 1
        return self._ok(pid)

    def DestroyProcess(self, pid: int) -> bool:
        """Destroy the process's heap and space; every frame goes back. A process
        whose space was destroyed already (its DestroyUserSpace called directly)
        is only reaped: its heap's pages went with the space."""
        space = self.processes.get(pid) if type(pid) is int else None
        if space is None:
            return self._fail(ErrorCode.ERROR_INVALID_HANDLE, False)
        heap = self.heaps.pop(pid)
        del self.heap_sizes[pid]
        if not space.destroyed:
            space.detach_views()
            start, end = heap.start_address, heap.end_address
            heap.Destroy()
            space.disown_unmapped(start, end)
            space.DestroyUserSpace()
        del self.processes[pid]
        if self.current is space:
            self.current = None
        return self._ok(True)

    def SwitchProcess(self, pid: int) -> bool:
        """Make pid the current process (load its directory)."""
        space = self.processes.get(pid) if type(pid) is int else None
        if space is None or space.page_dir is None:
            return self._fail(ErrorCode.ERROR_INVALID_HANDLE, False)
        self.vmm.SwitchPageDirectory(space.page_dir)
        self.current = space
        return self._ok(True)

    # -- Windows-named calls (current process) ----------------------------------

    def SyscallVirtualAlloc(self, address: int, size: int, allocation_type: int,
                            protect: int) -> int:
        space = self._space()
        if space is None:
            return self._fail(ErrorCode.ERROR_INVALID_HANDLE, 0)
        return self._from(space, VirtualAllocProcessMemory(space, address, size,
                                                           allocation_type, protect))

    def SyscallVirtualFree(self, address: int, size: int, free_type: int) -> int:
        space = self._space()
        if space is None:
            return self._fail(ErrorCode.ERROR_INVALID_HANDLE, 0)
        return self._from(space, int(VirtualFreeProcessMemory(space, address, size, free_type)))

    def SyscallVirtualQuery(self, address: int, buffer: int, length: int) -> int:
        space = self._space()
        if space is None:
            return self._fail(ErrorCode.ERROR_INVALID_HANDLE, 0)
        if not is_u32(length):
            return self._fail_in(space, ErrorCode.ERROR_INVALID_PARAMETER, 0)
        if length < MEMORY_BASIC_INFORMATION_SIZE:
            return self._fail_in(space, ErrorCode.ERROR_BAD_LENGTH, 0)
        written, info = VirtualQueryProcessMemory(space, address)
        if info is None:
            return self._from(space, 0)
        if space.WriteUserMemory(buffer, _MBI.pack(*info)) is not True:
            return self._fail_in(space, ErrorCode.ERROR_NOACCESS, 0)
        return self._from(space, written, ok=True)

    def SyscallVirtualProtect(self, address: int, size: int, new_protect: int,
                              old_protect_ptr: int) -> int:
        space = self._space()
        if space is None:
            return self._fail(ErrorCode.ERROR_INVALID_HANDLE, 0)
        if not all(is_u32(value) for value in (address, size, old_protect_ptr)):
            return self._fail_in(space, ErrorCode.ERROR_INVALID_PARAMETER, 0)
        # The call changes whole pages (the range rounded out to page bounds), so the
        # pointer is in a changed page when it is in one of those, not only in the range.
        first, end = address & ~(PAGE_SIZE - 1), -(-(address + size) // PAGE_SIZE) * PAGE_SIZE
        overlaps = old_protect_ptr < end and first < old_protect_ptr + 4
        if space._check_access(old_protect_ptr, 4, "write") is not None or (
                overlaps and not protect_allows(new_protect, "write")):
            return self._fail_in(space, ErrorCode.ERROR_NOACCESS, 0)
        done, old = VirtualProtectProcessMemory(space, address, size, new_protect)
        if not done:
            return self._from(space, 0)
        space.WriteUserMemory(old_protect_ptr, old.to_bytes(4, "little"))
        return self._from(space, 1, ok=True)

    # -- Linux calls (current process) --------------------------------------------

    def SyscallMmap(self, addr: int, length: int, prot: int, flags: int, fd: int,
                    offset: int) -> int:
        space = self._space()
        return self._no_process() if space is None else self._linux(space, linux_mm.SyscallMmap(
            space, addr, length, prot, flags, fd, offset))

    def SyscallMmap2(self, addr: int, length: int, prot: int, flags: int, fd: int,
                     pgoffset: int) -> int:
        space = self._space()
        return self._no_process() if space is None else self._linux(
            space, linux_mm.SyscallMmap2(space, addr, length, prot, flags, fd, pgoffset))

    def SyscallMunmap(self, addr: int, length: int) -> int:
        space = self._space()
        if space is None:
            return self._no_process()
        return self._linux(space, linux_mm.SyscallMunmap(space, addr, length))

    def SyscallMprotect(self, addr: int, length: int, prot: int) -> int:
        space = self._space()
        if space is None:
            return self._no_process()
        return self._linux(space, linux_mm.SyscallMprotect(space, addr, length, prot))

    def SyscallBrk(self, new_brk: int) -> int:
        space = self._space()
        if space is None:
            return self._no_process()
        return self._linux(space, linux_mm.SyscallBrk(space, new_brk))

    def SyscallOldMmap(self, args_ptr: int) -> int:
        """i386 old_mmap (90): the six arguments are read from the caller's memory."""
        space = self._space()
        if space is None:
            return self._no_process()
        block = space.ReadUserMemory(args_ptr, _MMAP_ARGS.size)
        if not isinstance(block, bytes):
            self.last_error = space.last_error
            return -EFAULT
        return self.SyscallMmap(*_MMAP_ARGS.unpack(block))

    def Syscall(self, number: int, *args: int) -> int:
        """Dispatch a system call by number; -ENOSYS / -EINVAL / -ESRCH as documented."""
        entry = self._table().get(number) if type(number) is int else None
        if entry is None:
            return self._fail(ErrorCode.ERROR_INVALID_FUNCTION, -ENOSYS)
        call, count = entry
        if len(args) != count or not all(is_u32(value) for value in args):
            return self._fail(ErrorCode.ERROR_INVALID_PARAMETER, -EINVAL)
        if self._space() is None:
            return self._no_process()
        return call(*args)

    # -- private ------------------------------------------------------------------

    def _no_process(self) -> int:
        """A Linux call without a live current process: -ESRCH (no such process),
        ERROR_INVALID_HANDLE as the Windows-named calls report it."""
        return self._fail(ErrorCode.ERROR_INVALID_HANDLE, -ESRCH)

    def _space(self) -> ProcessMemorySpace | None:
        """The current process's space; None when there is none, or when its space
        was destroyed under it (DestroyUserSpace called directly): a process
        without an address space makes no calls (ERROR_INVALID_HANDLE, -ESRCH)."""
        space = self.current
        return None if space is None or space.destroyed else space

    def _table(self) -> dict[int, tuple[Callable[..., int], int]]:
        return {
            SYS_BRK: (self.SyscallBrk, 1),
            SYS_MMAP: (self.SyscallOldMmap, 1),
            SYS_MUNMAP: (self.SyscallMunmap, 2),
            SYS_MPROTECT: (self.SyscallMprotect, 3),
            SYS_MMAP2: (self.SyscallMmap2, 6),
            SYS_VIRTUAL_ALLOC: (self.SyscallVirtualAlloc, 4),
            SYS_VIRTUAL_FREE: (self.SyscallVirtualFree, 3),
            SYS_GET_PROCESS_HEAP: (self.SyscallGetProcessHeap, 0),
            SYS_HEAP_ALLOC: (self.SyscallHeapAlloc, 3),
            SYS_HEAP_FREE: (self.SyscallHeapFree, 3),
            SYS_VIRTUAL_QUERY: (self.SyscallVirtualQuery, 3),
            SYS_VIRTUAL_PROTECT: (self.SyscallVirtualProtect, 4),
            SYS_HEAP_SIZE: (self.SyscallHeapSize, 3),
            SYS_HEAP_REALLOC: (self.SyscallHeapReAlloc, 4),
        }

    def _linux(self, space: ProcessMemorySpace, result: int) -> int:
        self.last_error = space.last_error
        return result


__all__ = ["SystemCalls"]
