"""The Linux i386 memory system calls on a process's address space (seed section 7, issue 4).

Results are Python ints: an address, 0, or -errno (the i386 register holds
2**32 - errno; callers of the raw ABI see values above 0xFFFFF000 as errors).
Each call also sets ``space.last_error`` (ERROR_SUCCESS, or the Windows code
closest to the errno). A "mapping" in Linux terms is a committed page; pages a
Windows reservation holds but has not committed are occupied (no mmap or brk
lands on them) but are holes for mprotect and are not listed by linux_maps.

Rules, each with its source (Linux 6.x mm/mmap.c, mm/mprotect.c, mm/nommu-free
paths, the man pages mmap(2), munmap(2), mprotect(2), brk(2); checked against
this machine's kernel where the test can, and against the asserts of the Linux
Test Project's mmap, munmap, mprotect, brk and sbrk tests in
tests/conformance/linux_ltp.py):

- mmap: checks in the kernel's order. Offset not page aligned -> EINVAL
  (old_mmap / sys_mmap, before anything else; mmap2 takes pages). Without
  MAP_ANONYMOUS -> EBADF: no file descriptors exist yet (files are issue 5).
  Length 0 -> EINVAL; PAGE_ALIGN(len) wrapping -> ENOMEM (do_mmap). A hint
  (no MAP_FIXED) is rounded down to a page and raised to mmap_min_addr
  (round_hint_to_min); it is used when [hint, hint+len) is free and below
  TASK_SIZE, else the range is chosen top-down below MMAP_BASE, then
  bottom-up from TASK_UNMAPPED_BASE (arch_get_unmapped_area_topdown); none ->
  ENOMEM. len > TASK_SIZE - mmap_min_addr -> ENOMEM. MAP_FIXED (and
  MAP_FIXED_NOREPLACE, which implies it): addr + len > TASK_SIZE -> ENOMEM, addr
  unaligned -> EINVAL, addr below mmap_min_addr -> EPERM (security_mmap_addr for
  a process without CAP_SYS_RAWIO). MAP_FIXED_NOREPLACE over anything -> EEXIST.
  Then the mapping type: neither MAP_SHARED nor MAP_PRIVATE (MAP_TYPE bits 1 or
  2; MAP_SHARED_VALIDATE included) -> EINVAL. Unknown prot bits are ignored
  (do_mmap does not validate them; observed on the host). TASK_SIZE is
  0xC0000000 and mmap_min_addr is USER_BASE 0x00400000 (DESIGN.md's user space).
- MAP_FIXED replaces whatever is mapped in the range (mmap(2)); all or nothing:
  when the frames (counting those the replaced pages free) do not suffice,
  ENOMEM and nothing changes (the kernel may leave the old range unmapped; the
  model is stricter).
- munmap: addr unaligned, addr > TASK_SIZE or len > TASK_SIZE - addr, or len 0
  -> EINVAL (do_vmi_munmap); a range with nothing mapped succeeds (munmap(2)).
  Mappings are split: the pieces left become allocations of their own.
- mprotect: PROT_GROWSDOWN with PROT_GROWSUP -> EINVAL; addr unaligned ->
  EINVAL; len 0 -> 0 (before prot is validated, as the kernel does); end past
  4 GiB -> ENOMEM; prot bits beyond R|W|X|PROT_SEM -> EINVAL
  (arch_validate_prot); no mapping at addr -> ENOMEM; a grows flag on a mapping
  -> EINVAL (no VM_GROWSDOWN/UP mappings here). It applies mapping by mapping
  and stops at the first hole with ENOMEM, leaving the part before the hole
  changed (do_mprotect_pkey; observed on the host) -- the one failure that
  changes state, because Linux does.
- brk: below start_brk -> the current break (brk(0) is the query); past
  heap_max (RLIMIT_DATA, check_data_rlimit) -> current break; same page ->
  the break moves, no page changes; shrinking unmaps [PAGE_ALIGN(brk),
  PAGE_ALIGN(old)) but only when a mapping intersects it (Linux 6.x: "mapping
  intersects with an existing non-brk vma" else the break stays); growing needs
  [PAGE_ALIGN(old), PAGE_ALIGN(brk) + PAGE_SIZE) free (the guard page of
  "newbrk + PAGE_SIZE > vm_start_gap(next)"); the result is the exact value
  asked (mm->brk = brk) or the old break on any failure (brk(2), "the Linux
  system call returns the new program break on success. On failure, the system
  call returns the current break"). Pages are READWRITE, prot rw-p.
- Interaction with Windows allocations (decisions): munmap, MAP_FIXED and a
  shrinking brk may remove ORIGIN_MMAP and ORIGIN_BRK pages anywhere and a
  VirtualAlloc reservation only whole (Windows releases reservations only
  whole: VirtualFree MEM_RELEASE); touching part of one, or any page of the
  image, the stack or the process heap (kernel-managed) -> EINVAL and nothing
  changes. mprotect changes any committed page (Windows' VirtualProtect allows
  the same) except the process heap's (EACCES: the heap manager needs them
  READWRITE, like a mapping without VM_MAYWRITE).
- Views (issue 5, shm_common): mprotect changes the protection of a view's
  pages as of any mapping's (Linux splits the vma; the model keeps one
  allocation with per-page records), the pages stay shared ("s" in
  linux_maps); asking for PROT_WRITE on a view whose source may not be
  written through it -> EACCES at that page, the pages before it changed
  (model/views.py may_mprotect: VM_MAYWRITE; LTP mprotect01 TC[2], mprotect02).
  munmap and MAP_FIXED over whole views unmap them through their managers
  (ViewOwner.detach: a block's refcount - 1, a destroyed block freed at its
  last view; a file view's dirty pages written back, a write-back the node
  refuses dropped as at exit): munmap(2) of a shm attach or a shared file
  mapping. Over part of a view they unmap exactly the pages of the range
  (ViewOwner.unmap_pages; issue 15): the view shrinks or splits into two
  pieces, each a view of its own with its page offset into the source
  (mm/mmap.c do_vmi_munmap / __split_vma; each piece counted in shm_nattch,
  ipc/shm.c shm_open; a file piece's dirty pages written back first), and
  MAP_FIXED maps its new pages there (LTP munmap01/02 and mmap tests in
  tests/conformance/linux_ltp_views.py). brk never grows into a
  view (the guard-page check above refuses any allocation, as Linux's
  vm_start_gap check refuses any vma: the old break is returned) and a
  shrinking brk only removes brk pages.
"""

from __future__ import annotations

from model.address_space import AddressSpace, on_a_space
from model.user_layout import page_ceil, prot_from_protect, protect_from_prot
from model.views import may_mprotect
from model.x86_paging import is_u32
from spec.abi import (
    EACCES,
    EBADF,
    EEXIST,
    EINVAL,
    ENOMEM,
    EPERM,
    ESRCH,
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_FIXED_NOREPLACE,
    MAP_PRIVATE,
    MAP_SHARED,
    MAP_TYPE,
    MEM_COMMIT,
    MEM_MAPPED,
    MEM_PRIVATE,
    MMAP_MIN_ADDR,
    ORIGIN_BRK,
    ORIGIN_MMAP,
    ORIGIN_PROCESS_HEAP,
    ORIGIN_VIRTUAL_ALLOC,
    PAGE_READWRITE,
    PAGE_SHIFT,
    PAGE_SIZE,
    PROT_EXEC,
    PROT_GROWSDOWN,
    PROT_GROWSUP,
    PROT_READ,
    PROT_SEM,
    PROT_WRITE,
    TASK_SIZE,
    ErrorCode,
)

_RWX = PROT_READ | PROT_WRITE | PROT_EXEC
_LIMIT = 1 << 32

#: The Windows code each errno leaves in last_error.
_CODES = {
    EPERM: ErrorCode.ERROR_ACCESS_DENIED,
    EBADF: ErrorCode.ERROR_INVALID_HANDLE,
    ENOMEM: ErrorCode.ERROR_NOT_ENOUGH_MEMORY,
    EACCES: ErrorCode.ERROR_ACCESS_DENIED,
    EEXIST: ErrorCode.ERROR_ALREADY_EXISTS,
    EINVAL: ErrorCode.ERROR_INVALID_PARAMETER,
}


@on_a_space(-ESRCH)
def SyscallMmap(space: AddressSpace, addr: int, length: int, prot: int, flags: int,
                fd: int, offset: int) -> int:
    """mmap(addr, length, prot, flags, fd, offset): the address or -errno."""
    bad = _bad_arguments(space, addr, length, prot, flags, offset) or _bad_fd(space, fd)
    if bad:
        return bad
    if offset % PAGE_SIZE:
        return _errno(space, EINVAL)
    return _mmap(space, addr, length, prot, flags)


@on_a_space(-ESRCH)
def SyscallMmap2(space: AddressSpace, addr: int, length: int, prot: int, flags: int,
                 fd: int, pgoffset: int) -> int:
    """mmap2: as mmap with the offset in 4096-byte pages."""
    bad = _bad_arguments(space, addr, length, prot, flags, pgoffset) or _bad_fd(space, fd)
    if bad:
        return bad
    return _mmap(space, addr, length, prot, flags)


@on_a_space(-ESRCH)
def SyscallMunmap(space: AddressSpace, addr: int, length: int) -> int:
    """munmap(addr, length): 0 or -errno."""
    bad = _bad_arguments(space, addr, length)
    if bad:
        return bad
    if addr % PAGE_SIZE or addr > TASK_SIZE or length > TASK_SIZE - addr:
        return _errno(space, EINVAL)
    end = page_ceil(addr + length)
    if end == addr:
        return _errno(space, EINVAL)
    error = _unmap_error(space, addr, end)
    if error:
        return _errno(space, error)
    space.cut(addr, end)
    return _done(space, 0)


@on_a_space(-ESRCH)
def SyscallMprotect(space: AddressSpace, addr: int, length: int, prot: int) -> int:
    """mprotect(addr, length, prot): 0 or -errno (pages before a hole stay changed)."""
    bad = _bad_arguments(space, addr, length, prot)
    if bad:
        return bad
    grows = prot & (PROT_GROWSDOWN | PROT_GROWSUP)
    if grows == PROT_GROWSDOWN | PROT_GROWSUP or addr % PAGE_SIZE:
        return _errno(space, EINVAL)
    if length == 0:
        return _done(space, 0)
    end = addr + page_ceil(length)
    if end >= _LIMIT:
        return _errno(space, ENOMEM)
    if (prot & ~grows) & ~(_RWX | PROT_SEM):
        return _errno(space, EINVAL)
    pages = space.pages
    first = pages.get(addr >> PAGE_SHIFT)
    mapped_at_start = first is not None and first.state == MEM_COMMIT
    if grows:
        any_mapped = any((record := pages.get(vpn)) is not None and record.state == MEM_COMMIT
                         for vpn in range(addr >> PAGE_SHIFT, end >> PAGE_SHIFT))
        found = any_mapped if grows == PROT_GROWSDOWN else mapped_at_start
        return _errno(space, EINVAL if found else ENOMEM)
    stop, error = end, 0
    protect = protect_from_prot(prot)
    for page in range(addr, end, PAGE_SIZE):
        record = pages.get(page >> PAGE_SHIFT)
        if record is None or record.state != MEM_COMMIT:
            stop, error = page, ENOMEM
            break
        allocation = space.allocations[record.allocation_base]
        owner = space.views.get(allocation.base)
        if allocation.origin == ORIGIN_PROCESS_HEAP or (
                owner is not None
                and not may_mprotect(protect, owner.may_write(space, allocation.base))):
            stop, error = page, EACCES
            break
    if stop > addr:
        if space.protect_cost(addr, stop, protect) > space.free_frames():
            return _errno(space, ENOMEM)
        space.set_protect(addr, stop, protect, prot & _RWX)
    return _errno(space, error) if error else _done(space, 0)


@on_a_space(-ESRCH)
def SyscallBrk(space: AddressSpace, new_brk: int) -> int:
    """brk(new_brk): the new break, or the current break when it cannot move."""
    code = space.status()
    if code != ErrorCode.ERROR_SUCCESS:
        return space._fail(code, space.brk)
    current = space.brk
    if not is_u32(new_brk):
        return space._fail(ErrorCode.ERROR_INVALID_PARAMETER, current)
    if new_brk < space.heap_start:
        if new_brk == 0:
            return space._ok(current)
        return space._fail(ErrorCode.ERROR_INVALID_PARAMETER, current)
    if new_brk > space.heap_max:
        return space._fail(ErrorCode.ERROR_NOT_ENOUGH_MEMORY, current)
    new_end, old_end = page_ceil(new_brk), page_ceil(current)
    if new_end == old_end:
        space.brk = new_brk
        return space._ok(new_brk)
    if new_brk < current:
        if space.is_free(new_end, old_end):
            return space._fail(ErrorCode.ERROR_INVALID_ADDRESS, current)
        if _unmap_error(space, new_end, old_end):
            return space._fail(ErrorCode.ERROR_INVALID_PARAMETER, current)
        space.cut(new_end, old_end)
    else:
        if space.allocations_between(old_end, new_end + PAGE_SIZE):
            return space._fail(ErrorCode.ERROR_ALREADY_EXISTS, current)
        if space.commit_cost(old_end, new_end, PAGE_READWRITE) > space.free_frames():
            return space._fail(ErrorCode.ERROR_NOT_ENOUGH_MEMORY, current)
        before = space.allocation_at(old_end - 1)
        if before is not None and before.origin == ORIGIN_BRK and before.end == old_end:
            space.extend(before, new_end)
        else:
            space.reserve(old_end, new_end - old_end, PAGE_READWRITE, ORIGIN_BRK, MEM_PRIVATE)
        space.commit(old_end, new_end, PAGE_READWRITE, PROT_READ | PROT_WRITE)
    space.brk = new_brk
    space.heap_end = new_end
    return space._ok(new_brk)


def linux_maps(space: AddressSpace) -> list[tuple[int, int, str]]:
    """(start, end, perms) like /proc/self/maps: committed pages, runs of equal perms
    inside one allocation merged; perms from prot, else derived from protect."""
    maps: list[tuple[int, int, str]] = []
    pages = space.pages
    for base in space.bases:
        allocation = space.allocations[base]
        run_start, run_perms = -1, ""
        for vpn in range(base >> PAGE_SHIFT, allocation.end >> PAGE_SHIFT):
            record = pages[vpn]
            perms = ""
            if record.state == MEM_COMMIT:
                bits = record.prot if record.prot is not None else prot_from_protect(
                    record.protect)
                perms = ("r" if bits & PROT_READ else "-") + ("w" if bits & PROT_WRITE else "-") \
                    + ("x" if bits & PROT_EXEC else "-") + ("s" if record.shared else "p")
            if perms != run_perms:
                if run_perms:
                    maps.append((run_start, vpn << PAGE_SHIFT, run_perms))
                run_start, run_perms = vpn << PAGE_SHIFT, perms
        if run_perms:
            maps.append((run_start, allocation.end, run_perms))
    return maps


# -- private ------------------------------------------------------------------


def _mmap(space: AddressSpace, addr: int, length: int, prot: int, flags: int) -> int:
    if not flags & MAP_ANONYMOUS:
        return _errno(space, EBADF)
    if length == 0:
        return _errno(space, EINVAL)
    fixed = bool(flags & (MAP_FIXED | MAP_FIXED_NOREPLACE))
    if not fixed and addr:
        addr &= ~(PAGE_SIZE - 1)
        if addr < MMAP_MIN_ADDR:
            addr = MMAP_MIN_ADDR
    size = page_ceil(length)
    if size >= _LIMIT or size > TASK_SIZE - MMAP_MIN_ADDR:
        return _errno(space, ENOMEM)
    if fixed:
        base = addr
    elif addr and addr <= TASK_SIZE - size and space.is_free(addr, addr + size):
        base = addr
    else:
        base = space.find_linux_area(size)
        if base < 0:
            return _errno(space, ENOMEM)
    if base > TASK_SIZE - size:
        return _errno(space, ENOMEM)
    if base % PAGE_SIZE:
        return _errno(space, EINVAL)
    if base < MMAP_MIN_ADDR:
        return _errno(space, EPERM)
    end = base + size
    if flags & MAP_FIXED_NOREPLACE and not space.is_free(base, end):
        return _errno(space, EEXIST)
    kind = flags & MAP_TYPE
    if kind not in (MAP_SHARED, MAP_PRIVATE):
        return _errno(space, EINVAL)
    error = _unmap_error(space, base, end)
    if error:
        return _errno(space, error)
    protect = protect_from_prot(prot)
    views = space.views  # a view's frames stay with its manager (counted as not freed)
    freed = sum(1 for vpn in range(base >> PAGE_SHIFT, end >> PAGE_SHIFT)
                if (record := space.pages.get(vpn)) is not None and record.frame is not None
                and record.allocation_base not in views)
    needed = size // PAGE_SIZE + (space.missing_tables(base, end) if prot & _RWX else 0)
    if needed > space.free_frames() + freed:
        return _errno(space, ENOMEM)
    shared = kind == MAP_SHARED
    space.cut(base, end)
    space.reserve(base, size, protect, ORIGIN_MMAP, MEM_MAPPED if shared else MEM_PRIVATE)
    space.commit(base, end, protect, prot & _RWX, shared)
    return _done(space, base)


def _unmap_error(space: AddressSpace, start: int, end: int) -> int:
    """EINVAL when [start, end) holds part of a VirtualAlloc reservation, or any page
    of the image, the stack or the process heap; else 0 (views: any part)."""
    for allocation in space.allocations_between(start, end):
        if allocation.origin in (ORIGIN_MMAP, ORIGIN_BRK):
            continue
        if allocation.base in space.views:  # any part of a view: its owner's pieces
            continue
        whole = start <= allocation.base and allocation.end <= end
        if whole and allocation.origin == ORIGIN_VIRTUAL_ALLOC:
            continue
        return EINVAL
    return 0


def _bad_arguments(space: AddressSpace, *values: int) -> int:
    """-EINVAL when the space is not live or an argument is not a 32-bit value; else 0."""
    code = space.status()
    if code != ErrorCode.ERROR_SUCCESS:
        space.last_error = code
        return -EINVAL
    if not all(is_u32(value) for value in values):
        space.last_error = ErrorCode.ERROR_INVALID_PARAMETER
        return -EINVAL
    return 0


def _bad_fd(space: AddressSpace, fd: int) -> int:
    """fd is a 32-bit register: a u32 or a negative int32 (-1) are both accepted."""
    if type(fd) is int and -(1 << 31) <= fd < _LIMIT:
        return 0
    space.last_error = ErrorCode.ERROR_INVALID_PARAMETER
    return -EINVAL


def _errno(space: AddressSpace, errno: int) -> int:
    space.last_error = _CODES.get(errno, ErrorCode.ERROR_INVALID_PARAMETER)
    return -errno


def _done(space: AddressSpace, value: int) -> int:
    space.last_error = ErrorCode.ERROR_SUCCESS
    return value


__all__ = ["SyscallBrk", "SyscallMmap", "SyscallMmap2", "SyscallMprotect", "SyscallMunmap",
           "linux_maps"]
