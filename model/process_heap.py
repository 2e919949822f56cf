"""ProcessHeapCalls: the process heap's Win32 calls (issue 15), on model.kernel_heap.

SystemCalls (model/syscalls.py) makes the heap and owns the processes; this
mixin serves the calls of the current process on it. Rules, with sources
("Wine" is dlls/kernel32/tests/heap.c, which records what Windows does; its
asserts are data in tests/conformance/windows_heap.py):

- Pointers: every block the kernel heap gives is a multiple of 8 bytes long
  and starts 8-aligned (its 12-byte header then puts the payload at 4 mod 8);
  the caller's pointer is the payload + 4, so every pointer is a multiple of
  MEMORY_ALLOCATION_ALIGNMENT (8 on 32-bit; Wine test_HeapCreate "test pointer
  alignment": 8-aligned, and some pointers are 8 mod 16). The kernel heap is
  asked for 4 + the size rounded up to 8 bytes.
- Sizes: HeapSize is the size asked for at the last HeapAlloc / HeapReAlloc,
  not the block's rounded size (Wine test_HeapCreate: HeapSize == 1 after
  HeapAlloc(HEAP_ZERO_MEMORY, 1), 0 after HeapAlloc(0) and HeapReAlloc(p, 0)).
  Kept per pointer in ``heap_sizes``; a pointer is live iff it is there.
- Flags: HEAP_NO_SERIALIZE (accepted, no effect: one thread),
  HEAP_GENERATE_EXCEPTIONS, HEAP_ZERO_MEMORY, HEAP_REALLOC_IN_PLACE_ONLY
  (HeapReAlloc); every other bit is ignored (Wine test_block_layout allocates
  with 0xc00 | HEAP_ADD_USER_INFO and gets a block). A flags or size argument
  that is not a 32-bit integer -> ERROR_INVALID_PARAMETER.
- HeapAlloc: size 0 gives a unique non-NULL pointer (Wine test_HeapCreate).
  No room, and any size the heap can never give (~0, ~0 - 7: Wine) -> NULL,
  ERROR_NOT_ENOUGH_MEMORY (STATUS_NO_MEMORY). HEAP_ZERO_MEMORY zero-fills.
- HeapFree: NULL -> TRUE (Wine test_HeapCreate "test some border cases");
  a pointer that is not live (foreign, freed, into a block) -> FALSE,
  ERROR_INVALID_PARAMETER (Wine dlls/ntdll/heap.c RtlFreeHeap:
  STATUS_INVALID_PARAMETER).
- HeapSize: a live pointer -> its size; anything else -> (SIZE_T)-1
  (HEAP_SIZE_FAILED) with ERROR_INVALID_PARAMETER, and an unknown heap handle
  the same (Wine dlls/ntdll/heap.c RtlSizeHeap: STATUS_INVALID_PARAMETER for
  both). Changes nothing.
- HeapReAlloc: NULL -> NULL with ERROR_SUCCESS (Wine test_HeapCreate: Windows
  leaves NO_ERROR); not live -> NULL, ERROR_INVALID_PARAMETER. A size whose
  rounded length fits the block's payload (shrinking, equal, or growing into
  the slack) stays in place; larger: HEAP_REALLOC_IN_PLACE_ONLY -> NULL,
  ERROR_NOT_ENOUGH_MEMORY (Wine test_HeapCreate: Windows fails with it), else
  the block moves: a new block, the old contents up to the smaller size
  copied, the old block freed (Microsoft Learn, HeapReAlloc: "may be moved").
  With HEAP_ZERO_MEMORY the bytes past the old size are zeroed (Wine
  test_HeapCreate "memory wasn't zeroed" after growing). No room -> NULL,
  ERROR_NOT_ENOUGH_MEMORY and the old block stays as it was.
- HEAP_GENERATE_EXCEPTIONS: Windows raises the failure's NTSTATUS as an
  exception instead of returning NULL (Microsoft Learn, HeapAlloc: STATUS_NO_MEMORY,
  STATUS_ACCESS_VIOLATION; Wine heap_set_status raises the call's status). No
  exception escapes this model: the call returns its failure value and
  ``raised`` holds the status it would raise (0 when none): STATUS_NO_MEMORY,
  STATUS_INVALID_PARAMETER, STATUS_INVALID_HANDLE, STATUS_ACCESS_VIOLATION for
  a damaged heap. Every heap call resets ``raised``.
- A damaged heap (a header or footer overwritten) -> ERROR_ARENA_TRASHED, the
  kernel heap's finding; a HeapReAlloc that must move checks the old block
  can be freed before it takes a new one, so a failure changes nothing.
"""

from __future__ import annotations

from typing import TypeVar

from model.errors import ReportsStatus
from model.kernel_heap import KernelHeap
from model.process_memory import ProcessMemorySpace
from model.virtual_memory import VirtualMemoryManager
from model.x86_paging import is_u32
from spec.abi import (
    HEADER_SIZE,
    HEAP_GENERATE_EXCEPTIONS,
    HEAP_REALLOC_IN_PLACE_ONLY,
    HEAP_SIZE_FAILED,
    HEAP_ZERO_MEMORY,
    MEMORY_ALLOCATION_ALIGNMENT,
    MIN_BLOCK,
    PAGE_READWRITE,
    PROCESS_HEAP_MAX,
    STATUS_ACCESS_VIOLATION,
    STATUS_INVALID_HANDLE,
    STATUS_INVALID_PARAMETER,
    STATUS_NO_MEMORY,
    ErrorCode,
)

__all__ = ["POINTER_OFFSET", "ProcessHeapCalls", "block_request"]

_SUCCESS = ErrorCode.ERROR_SUCCESS
_V = TypeVar("_V")
#: The caller's pointer is the kernel heap's payload + 4 (8-aligned; see above).
POINTER_OFFSET = 4
#: The NTSTATUS HEAP_GENERATE_EXCEPTIONS raises for each failure code.
_RAISED = {ErrorCode.ERROR_NOT_ENOUGH_MEMORY: STATUS_NO_MEMORY,
           ErrorCode.ERROR_INVALID_PARAMETER: STATUS_INVALID_PARAMETER,
           ErrorCode.ERROR_INVALID_HANDLE: STATUS_INVALID_HANDLE,
           ErrorCode.ERROR_ARENA_TRASHED: STATUS_ACCESS_VIOLATION}


def block_request(size: int) -> int:
    """The payload the kernel heap is asked for: 4 + size rounded up to 8, so
    every block (payload + 20 bytes of header and footer) is a multiple of 8.

    pre: 0 <= size < 2**32
    post: __return__ % 8 == 4 and __return__ >= size + 4
    post: __return__ < size + 12
    """
    return POINTER_OFFSET + (size + MEMORY_ALLOCATION_ALIGNMENT - 1) \
        // MEMORY_ALLOCATION_ALIGNMENT * MEMORY_ALLOCATION_ALIGNMENT


class ProcessHeapCalls(ReportsStatus):
    """The Win32 heap calls of the current process on its process heap."""

    vmm: VirtualMemoryManager
    heaps: dict[int, KernelHeap]
    #: pid -> {live pointer: the size asked for}
    heap_sizes: dict[int, dict[int, int]]
    #: The NTSTATUS the last heap call would raise under HEAP_GENERATE_EXCEPTIONS.
    raised: int

    def _space(self) -> ProcessMemorySpace | None:
        raise NotImplementedError

    # -- the calls -----------------------------------------------------------------

    def SyscallGetProcessHeap(self) -> int:
        space = self._space()
        if space is None:
            return self._fail(ErrorCode.ERROR_INVALID_HANDLE, 0)
        space.last_error = _SUCCESS
        return self._ok(self.heaps[space.pid].start_address)

    def SyscallHeapAlloc(self, heap: int, flags: int, size: int) -> int:
        """A block of size bytes: its 8-aligned pointer, or NULL."""
        space, kheap = self._heap(heap, flags)
        if space is None or kheap is None:
            return 0
        if not (is_u32(flags) and is_u32(size)):
            return self._heap_fail(space, flags, ErrorCode.ERROR_INVALID_PARAMETER, 0)
        pointer, code = self._take(space, kheap, size)
        if not pointer:
            return self._heap_fail(space, flags, code, 0)
        if flags & HEAP_ZERO_MEMORY:
            self._write(space, pointer, bytes(size))
        self.heap_sizes[space.pid][pointer] = size
        return self._from(space, pointer, ok=True)

    def SyscallHeapFree(self, heap: int, flags: int, ptr: int) -> int:
        """TRUE for NULL or a live block (freed); FALSE otherwise."""
        space, kheap = self._heap(heap, flags)
        if space is None or kheap is None:
            return 0
        if not (is_u32(flags) and is_u32(ptr)):
            return self._heap_fail(space, flags, ErrorCode.ERROR_INVALID_PARAMETER, 0)
        if ptr == 0:
            return self._from(space, 1, ok=True)
        sizes = self.heap_sizes[space.pid]
        if ptr not in sizes:
            return self._heap_fail(space, flags, ErrorCode.ERROR_INVALID_PARAMETER, 0)
        code = self._give_back(space, kheap, ptr)
        if code != _SUCCESS:
            return self._heap_fail(space, flags, code, 0)
        return self._from(space, 1, ok=True)

    def SyscallHeapSize(self, heap: int, flags: int, ptr: int) -> int:
        """The size asked for the live block at ptr; HEAP_SIZE_FAILED otherwise."""
        space = self._space()
        self.raised = 0
        if space is None:
            return self._fail(ErrorCode.ERROR_INVALID_HANDLE, HEAP_SIZE_FAILED)
        sizes = self.heap_sizes[space.pid]
        if not (type(heap) is int and heap == self.heaps[space.pid].start_address
                and is_u32(flags) and type(ptr) is int and ptr in sizes):
            return self._heap_fail(space, flags, ErrorCode.ERROR_INVALID_PARAMETER,
                                   HEAP_SIZE_FAILED)
        return self._from(space, sizes[ptr], ok=True)

    def SyscallHeapReAlloc(self, heap: int, flags: int, ptr: int, size: int) -> int:
        """Resize the live block at ptr: in place when its payload holds the new
        size, else (unless HEAP_REALLOC_IN_PLACE_ONLY) moved; the pointer or NULL."""
        space, kheap = self._heap(heap, flags)
        if space is None or kheap is None:
            return 0
        if not (is_u32(flags) and is_u32(ptr) and is_u32(size)):
            return self._heap_fail(space, flags, ErrorCode.ERROR_INVALID_PARAMETER, 0)
        if ptr == 0:
            return self._from(space, 0, ok=True)
        sizes = self.heap_sizes[space.pid]
        old_size = sizes.get(ptr)
        if old_size is None:
            return self._heap_fail(space, flags, ErrorCode.ERROR_INVALID_PARAMETER, 0)
        capacity = kheap.allocated[ptr - POINTER_OFFSET - HEADER_SIZE].size - MIN_BLOCK
        if block_request(size) <= capacity:
            target = ptr
        elif flags & HEAP_REALLOC_IN_PLACE_ONLY:
            return self._heap_fail(space, flags, ErrorCode.ERROR_NOT_ENOUGH_MEMORY, 0)
        else:
            target, code = self._move(space, kheap, ptr, old_size, size)
            if not target:
                return self._heap_fail(space, flags, code, 0)
        if flags & HEAP_ZERO_MEMORY and size > old_size:
            self._write(space, target + old_size, bytes(size - old_size))
        sizes[target] = size
        return self._from(space, target, ok=True)

    # -- blocks ---------------------------------------------------------------------

    def _take(self, space: ProcessMemorySpace, kheap: KernelHeap,
              size: int) -> tuple[int, ErrorCode]:
        """A new block of size bytes from the kernel heap: (pointer, SUCCESS) or
        (0, why). Sizes the heap can never hold fail without asking it."""
        request = block_request(size)
        if request > PROCESS_HEAP_MAX:
            return 0, ErrorCode.ERROR_NOT_ENOUGH_MEMORY
        old_end = kheap.end_address
        payload = kheap.Alloc(request)
        if payload == 0:
            code = kheap.last_error
            return 0, (code if code == ErrorCode.ERROR_ARENA_TRASHED
                       else ErrorCode.ERROR_NOT_ENOUGH_MEMORY)
        self._sync(space, kheap, old_end)
        return payload + POINTER_OFFSET, _SUCCESS

    def _give_back(self, space: ProcessMemorySpace, kheap: KernelHeap,
                   pointer: int) -> ErrorCode:
        """Free the live block at pointer: SUCCESS, or why not (nothing changed)."""
        old_end = kheap.end_address
        if not kheap.Free(pointer - POINTER_OFFSET):
            code = kheap.last_error
            return (code if code == ErrorCode.ERROR_ARENA_TRASHED
                    else ErrorCode.ERROR_INVALID_PARAMETER)
        del self.heap_sizes[space.pid][pointer]
        self._sync(space, kheap, old_end)
        return _SUCCESS

    def _move(self, space: ProcessMemorySpace, kheap: KernelHeap, ptr: int, old_size: int,
              size: int) -> tuple[int, ErrorCode]:
        """Move the block at ptr to a new one of size bytes: (new pointer, SUCCESS)
        or (0, why) with nothing changed. The old block must be freeable first."""
        code = kheap.free_error(ptr - POINTER_OFFSET)
        if code != _SUCCESS:
            return 0, code
        keep = self._read(space, ptr, min(old_size, size))
        target, code = self._take(space, kheap, size)
        if not target:
            return 0, code
        self._move_contents(space, target, keep)
        self.heap_sizes[space.pid][target] = size
        code = self._give_back(space, kheap, ptr)
        if code != _SUCCESS:  # the index filled up in between: undo the new block
            self._give_back(space, kheap, target)
            return 0, code
        return target, _SUCCESS

    def _move_contents(self, space: ProcessMemorySpace, target: int, data: bytes) -> None:
        """Write the old block's bytes into the new block."""
        self._write(space, target, data)

    def _read(self, space: ProcessMemorySpace, address: int, length: int) -> bytes:
        assert space.page_dir is not None
        data = self.vmm.ReadVirtualMemory(space.page_dir, address, length, True)
        assert isinstance(data, bytes), data
        return data

    def _write(self, space: ProcessMemorySpace, address: int, data: bytes) -> None:
        if data:
            assert space.page_dir is not None
            self.vmm.WriteVirtualMemory(space.page_dir, address, data, True)

    # -- status -------------------------------------------------------------------------

    def _heap(self, handle: int, flags: object = 0
              ) -> tuple[ProcessMemorySpace | None, KernelHeap | None]:
        """The current process and its heap when handle names it; else fails."""
        self.raised = 0
        space = self._space()
        if space is None:
            return self._fail(ErrorCode.ERROR_INVALID_HANDLE, (None, None))
        heap = self.heaps[space.pid]
        if type(handle) is not int or handle != heap.start_address:
            return self._heap_fail(space, flags, ErrorCode.ERROR_INVALID_HANDLE, (space, None))
        return space, heap

    def _heap_fail(self, space: ProcessMemorySpace, flags: object, code: ErrorCode,
                   value: _V) -> _V:
        """Fail with code; under HEAP_GENERATE_EXCEPTIONS note the status raised."""
        if isinstance(flags, int) and is_u32(flags) and flags & HEAP_GENERATE_EXCEPTIONS:
            self.raised = _RAISED.get(code, STATUS_INVALID_PARAMETER)
        return self._fail_in(space, code, value)

    @staticmethod
    def _sync(space: ProcessMemorySpace, heap: KernelHeap, old_end: int) -> None:
        """Keep the space's records of the heap's pages in step with the heap."""
        new_end = heap.end_address
        if new_end > old_end:
            space.adopt_mapped(old_end, new_end, PAGE_READWRITE)
        elif new_end < old_end:
            space.disown_unmapped(new_end, old_end)

    def _from(self, space: ProcessMemorySpace, value: int, ok: bool = False) -> int:
        """Return value, copying the space's status (or setting success when ok)."""
        if ok:
            space.last_error = _SUCCESS
        self.last_error = space.last_error
        return value

    def _fail_in(self, space: ProcessMemorySpace, code: ErrorCode, value: _V) -> _V:
        space.last_error = code
        return self._fail(code, value)
