"""Teeth: for every invariant, a deliberately broken variant the check must catch.

A check that cannot fail is worth nothing. Each variant below is one bug a
kernel developer could plausibly write, injected into the spec's transition
(``spec``) for the inductive proofs; ``catch`` runs the obligation the bug
must break and reports whether the check answered *counterexample naming the
expected invariant*. The model-level variants (bugs in model/ methods, caught
by the refinement state machine) live in ``proofs.machines.paging``.

``python -m proofs.broken_variants`` prints the table; tests assert every row.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any
from unittest import mock

import z3

import spec.dos_memory as sdm
import spec.ems_os as seo
import spec.himem as shm
import spec.kernel_heap as skh
import spec.memory_pool as smp
import spec.memory_subsystem as sms
import spec.page_manager as spm
import spec.shared_memory as ssm
import spec.user_space as sus
import spec.virtual_memory as svm
from proofs import (
    dos_memory,
    kernel_heap,
    memory_pool,
    memory_subsystem,
    shared_memory,
    user_space,
)
from proofs.inductive import layered, vacuity
from proofs.inductive.paging import prove
from proofs.obligation import Kind, Verdict
from spec.abi import (
    HIMEM_HMA_TOO_SMALL,
    PAGE_EXECUTE_READWRITE,
    PAGE_NOACCESS,
    PAGE_SHIFT,
    XMS_BASE,
    XMS_INVALID_HANDLE,
)
from spec.catalogue import OPERATIONS_BY_NAME
from spec.state import (
    FREE,
    HELD,
    MAPPED,
    RESERVED,
    HeapState,
    PoolState,
    Ref,
    State,
    SystemState,
    address_parts,
    frame_number,
    frame_of,
    in_memory,
    kernel_slot,
    make_entry,
    present,
)
from spec.step import Step, status, step

Patch = tuple[ModuleType, str, object]


@dataclass(frozen=True)
class BrokenVariant:
    name: str
    invariant: str  # the invariant the check must name
    operation: str  # the spec step the bug is in
    description: str
    patches: tuple[Patch, ...] = ()
    transition: Callable[..., Any] | None = None  # a replacement step
    #: the manager whose layer (proofs.inductive.layered) proves the operation; None for
    #: the physical and virtual memory state (proofs.inductive.paging)
    layer: str | None = None


def _release_keeps_count(s: State, f: Ref) -> State:
    last = s.unrank[s.used_count - 1]
    return s.but(used=z3.Store(s.used, f, False), owner=z3.Store(s.owner, f, FREE),
                 rank=z3.Store(s.rank, last, s.rank[f]),
                 unrank=z3.Store(s.unrank, s.rank[f], last))


def _keep_frame(s: State, f: Ref) -> State:
    return s


def _ignore_bitmap(s: State, f: Ref) -> Ref:
    return in_memory(s, f)


def _put_entry_next_index(s: State, d: Ref, slot: Ref, index: Ref, frame: Ref,
                          entry: Ref) -> State:
    return _ORIGINAL_PUT_ENTRY(s, d, slot, index + 1, frame, entry)


def _link_into_one(s: State, d: Ref, slot: Ref, table: Ref, kernel: bool | None = None) -> State:
    kernel_pde = z3.Concat(table, z3.BitVecVal(svm.KERNEL_PDE, 12))
    return s.but(pde=z3.Store(s.pde, d, z3.Store(s.pde[d], slot, kernel_pde)),
                 pte=z3.Store(s.pte, table, z3.K(z3.BitVecSort(10), z3.BitVecVal(0, 32))),
                 table_dir=z3.Store(s.table_dir, table, s.kernel_dir),
                 table_slot=z3.Store(s.table_slot, table, slot))


def _user_always(frame: Ref, is_writable: Ref, is_user: Ref) -> Ref:
    return _ORIGINAL_MAKE_ENTRY(frame, is_writable, z3.BoolVal(True))


def _place_reserved(s: State, dir: Ref, virtual_addr: Ref, physical_addr: Ref, is_kernel: Ref,
                    is_writeable: Ref) -> Step:
    """PlaceHeld that also accepts a reserved frame and leaves it reserved."""
    slot, index, _ = address_parts(virtual_addr)
    frame = frame_number(physical_addr)
    guard = z3.And(svm.live(s, dir), present(s.pde[dir][slot]),
                   z3.Not(present(s.pte[frame_of(s.pde[dir][slot])][index])),
                   z3.Or(is_kernel, z3.Not(kernel_slot(slot))), in_memory(s, frame),
                   z3.Or(s.owner[frame] == HELD, s.owner[frame] == RESERVED))
    owner = z3.If(s.owner[frame] == HELD, MAPPED, s.owner[frame])
    entry = make_entry(frame, is_writeable, z3.Not(is_kernel))
    post = svm.put_entry(s.but(owner=z3.Store(s.owner, frame, owner)), dir, slot, index, frame,
                         entry)
    return step(s, z3.BitVecVal(0, 32), post, assume=guard)


def _stale_footer(s: HeapState, h: Ref) -> skh.HeapStep:
    """AbsorbRight that leaves the absorbed hole's footer (pointing at it) in place."""
    done = skh.AbsorbRight(s, h)
    changed = done.changed.but(back=z3.Store(done.changed.back, h, skh.after(s, h)))
    return skh.heap_step(s, done.status, changed)


def _drop_keeps_entry(s: HeapState, new_end: Ref) -> skh.HeapStep:
    """DropHole that cuts the hole but leaves its index entry."""
    tail = skh.last_block(s)
    ok = z3.And(skh.shrink_ok(s, new_end), tail == new_end)
    post = s.but(block=z3.Store(s.block, tail, False), end=new_end,
                 pte=skh.unmap_pages(s, new_end, s.end))
    return skh.heap_step(s, status(*skh.failed(ok)), post)


def _release_beside_hole(s: HeapState, h: Ref, q: Ref) -> skh.HeapStep:
    """Release that does not look left: a hole may end up beside another."""
    ok = z3.And(skh.live(s, h), z3.Not(skh.right_is_hole(s, h)), skh.room(s))
    post = skh.stamp(s, h, s.size[h], z3.BoolVal(True))
    return skh.heap_step(s, status(*skh.failed(ok)), skh.reindex(post, h, q),
                         assume=skh.sorted_at(post, h, q))


def _take_unaligned(s: HeapState, h: Ref, page_align: Ref) -> skh.HeapStep:
    """Take that records page_align without checking the payload's alignment."""
    post = skh.unindex(s, h).but(hole=z3.Store(s.hole, h, False),
                                 aligned=z3.Store(s.aligned, h, page_align))
    return skh.heap_step(s, status(*skh.failed(skh.a_hole(s, h))), post)


def _free_without_push(s: PoolState, block_addr: Ref, block: Ref) -> smp.PoolStep:
    done = smp.FreeBlock(s, block_addr, block)
    changed = done.changed.but(free=s.free, fpos=s.fpos, fcount=s.fcount)
    return smp.pool_step(s, done.status, changed, assume=done.assume)


def _alloc_past_max(s: PoolState) -> smp.PoolStep:
    done = smp.AllocBlock(s.but(max_blocks=s.max_blocks + 1))
    return smp.pool_step(s, done.status, done.changed.but(max_blocks=s.max_blocks))


def _double_free(s: PoolState, block_addr: Ref, block: Ref) -> smp.PoolStep:
    done = smp.FreeBlock(s.but(live=z3.Store(s.live, block, True)), block_addr, block)
    return smp.pool_step(s, done.status, done.changed, assume=done.assume)


def _release_keeps_owner(s: SystemState, frame: Ref, kind: Ref) -> sms.SystemStep:
    done = sms.ReleaseFrame(s, frame, kind)
    return sms.system_step(s, done.status, done.changed.but(owner=s.owner))


def _take_keeps_free_count(s: SystemState, frame: Ref, kind: Ref) -> sms.SystemStep:
    done = sms.TakeFrame(s, frame, kind)
    return sms.system_step(s, done.status, done.changed.but(free_count=s.free_count))


def _commit_anywhere(s: sus.UserState, pid: Ref, first: Ref, count: Ref, protect: Ref,
                     pick: Ref, pinv: Ref, oom: Ref) -> sus.UserStep:
    """VirtualAlloc(MEM_COMMIT) that does not check the range is reserved."""
    with mock.patch.object(sus, "one_allocation", lambda *_: z3.BoolVal(True)):
        return sus.VirtualAllocCommit(s, pid, first, count, protect, pick, pinv, oom)


def _munmap_keeps_owner(s: sus.UserState, pid: Ref, first: Ref, count: Ref) -> sus.UserStep:
    done = sus.Munmap(s, pid, first, count)
    return sus.user_step(s, done.status, done.changed.but(owner=s.owner))


def _brk_past_max(s: sus.UserState, pid: Ref, new_end: Ref, pick: Ref, pinv: Ref,
                  oom: Ref) -> sus.UserStep:
    done = sus.BrkGrow(s.but(heap_max=z3.Store(s.heap_max, pid, new_end)), pid, new_end, pick,
                       pinv, oom)
    return sus.user_step(s, done.status, done.changed.but(heap_max=s.heap_max),
                         assume=done.assume)


def _protect_anywhere(s: sus.UserState, pid: Ref, first: Ref, count: Ref,
                      protect: Ref) -> sus.UserStep:
    """VirtualProtect that checks neither the range nor that its pages are committed."""
    code = sus.status((z3.Not(s.live[pid]), sus.E.ERROR_INVALID_HANDLE),
                      (z3.Not(sus.valid_protect(protect)), sus.E.ERROR_INVALID_PARAMETER))
    return sus.user_step(s, code, sus.protect_pages(s, pid, first, count, protect))


def _access_if_committed(s: sus.UserState, pid: Ref, vpn: Ref, kind: Ref) -> sus.UserStep:
    """Access that looks only at the commit state, not at protection or PTE."""
    code = sus.status((z3.Not(s.live[pid]), sus.E.ERROR_INVALID_HANDLE),
                      (z3.Not(sus.committed(s, pid, vpn)), sus.E.ERROR_NOACCESS))
    return sus.user_step(s, code, s)


def _fits_with_mcb(s: sdm.DosState, m: Ref, n: Ref) -> Ref:
    """A free block "fits" when its MCB paragraph would make up the difference."""
    return z3.And(sdm.free_block(s, m), n <= s.size[m] + 1)


def _coalesce_keeps_inner_mcbs(s: sdm.DosState, mcb: Ref, stop: Ref) -> sdm.DosStep:
    """Coalesce grows the block over the free run but leaves the absorbed MCBs
    standing (is_mcb): blocks inside a block, the tiling broken."""
    done = sdm.Coalesce(s, mcb, stop)
    kept = done.changed.but(is_mcb=z3.Store(s.is_mcb, mcb, True))
    return sdm.dos_step(s, done.status, kept, assume=done.assume)


def _map_keeps_old_slot(s: sdm.DosState, handle: Ref, logical: Ref,
                        physical: Ref) -> sdm.DosStep:
    """EMS map that leaves the page in the slot it showed in before (aliased)."""
    done = sdm.EmsMapPage(s, handle, logical, physical)
    shown = z3.Store(sdm.unmapped(s, physical).slot_used, physical, True)
    return sdm.dos_step(s, done.status, done.changed.but(slot_used=shown))


def _map_over_shown_page(s: sdm.DosState, handle: Ref, logical: Ref,
                         physical: Ref) -> sdm.DosStep:
    """EMS map that does not unmap the page the slot showed: two pages claim it."""
    done = sdm.EmsMapPage(s, handle, logical, physical)
    g, k = z3.Ints("g k")
    old = z3.And(s.slot_used[physical], g == s.slot_h[physical], k == s.slot_l[physical],
                 z3.Not(z3.And(g == handle, k == logical)))
    kept = z3.Lambda([g, k], z3.If(old, physical, done.changed.mapped_at[g, k]))
    return sdm.dos_step(s, done.status, done.changed.but(mapped_at=kept))


def _free_locked_xms(s: sdm.DosState, handle: Ref) -> sdm.DosStep:
    """XMS free that does not look at the lock count."""
    code = sdm.status((z3.Not(s.xlive[handle]), XMS_INVALID_HANDLE))
    return sdm.dos_step(s, code, s.but(xlive=z3.Store(s.xlive, handle, False)))


def _disable_below_zero(s: shm.HimemState) -> shm.HimemStep:
    """06h that lowers the count without looking whether it is 0."""
    return shm.himem_step(s, z3.IntVal(0), s.but(a20_count=s.a20_count - 1),
                          s.a20_count > 1)


def _enable_without_limit(s: shm.HimemState) -> shm.HimemStep:
    """05h that raises the count past its limit (the counter wraps on hardware)."""
    return shm.himem_step(s, z3.IntVal(0), s.but(a20_count=s.a20_count + 1), z3.BoolVal(False))


def _hma_given_twice(s: shm.HimemState, wanted: Ref) -> shm.HimemStep:
    """01h that checks /HMAMIN but not whether the HMA is already held."""
    code = shm.status((wanted < s.hma_min, HIMEM_HMA_TOO_SMALL))
    return shm.himem_step(s, code, s.but(hma_owned=z3.BoolVal(True)), z3.BoolVal(True))


def _return_key_keeps_state(s: seo.EmsOsState, function: Ref, presented: Ref,
                            key: Ref) -> seo.EmsOsStep:
    """5Dh/02h that forgets the key but leaves the set as it was (disabled stays
    disabled, and nobody holds a key to enable it)."""
    done = seo.OsFunctionSet(s, function, presented, key)
    returned = z3.And(function == 2, s.key_held)
    post = seo.ite_ems_os(returned, done.changed.but(os_enabled=s.os_enabled), done.changed)
    return seo.ems_os_step(s, done.status, post, done.result, presented, done.assume)


def _key_not_compared(s: seo.EmsOsState, function: Ref, presented: Ref,
                      key: Ref) -> seo.EmsOsStep:
    """5Dh that takes any BX:CX as the outstanding access key."""
    done = seo.OsFunctionSet(s.but(access_key=presented), function, presented, key)
    issued = z3.And(done.status == 0, z3.Not(s.key_held), function != 2)
    post = done.changed.but(access_key=z3.If(issued, key, s.access_key))
    return seo.ems_os_step(s, done.status, post, done.result, presented, done.assume)


def _save_area_linear(s: seo.EmsOsState, function: Ref, bl: Ref, segment: Ref, offset: Ref,
                      corrupt: Ref) -> seo.EmsOsStep:
    """5Bh/01h that keeps ES:DI's linear address in the segment word."""
    done = seo.AlternateMapRegisterSet(s, function, bl, segment, offset, corrupt)
    post = seo.ite_ems_os(function == 1, done.changed.but(alt_segment=segment * 16 + offset),
                          done.changed)
    return seo.ems_os_step(s, done.status, post, done.result, z3.IntVal(0), done.assume)


def _alternate_while_disabled(s: seo.EmsOsState, function: Ref, bl: Ref, segment: Ref,
                              offset: Ref, corrupt: Ref) -> seo.EmsOsStep:
    """5Bh without the A4h check: it answers while the OS/E set is disabled."""
    done = seo.AlternateMapRegisterSet(s.but(os_enabled=z3.BoolVal(True)), function, bl,
                                       segment, offset, corrupt)
    post = done.changed.but(os_enabled=s.os_enabled)
    return seo.ems_os_step(s, done.status, post, done.result, z3.IntVal(0), done.assume)


def _shrink_keeps_slots(s: sdm.DosState, handle: Ref, pages: Ref, pick: Ref, pinv: Ref,
                        short: Ref) -> sdm.DosStep:
    """51h that frees the pages past the new count but leaves the slots showing them."""
    done = sdm.EmsReallocate(s, handle, pages, pick, pinv, short)
    kept = done.changed.but(slot_used=s.slot_used, mapped_at=s.mapped_at)
    return sdm.dos_step(s, done.status, kept, assume=done.assume)


def _free_with_saved_map(s: sdm.DosState, handle: Ref) -> sdm.DosStep:
    """45h without the 86h check: a handle whose mapping is saved is freed."""
    done = sdm.EmsDeallocate(s.but(esaved=z3.K(z3.IntSort(), z3.BoolVal(False))), handle)
    return sdm.dos_step(s, done.status, done.changed.but(esaved=s.esaved))


def _link_without_umbs(s: sdm.DosState, link: Ref) -> sdm.DosStep:
    """AX=5803h that links the chain into upper memory where there are no UMBs."""
    done = sdm.SetUmbLink(s.but(umb_end=s.umb_end + 1), link)
    return sdm.dos_step(s, z3.IntVal(0), done.changed.but(umb_end=s.umb_end))


def _unmap_keeps_brefs(s: ssm.SharedState, pid: Ref, base: Ref,
                       space: Ref | None = None) -> ssm.SharedStep:
    """shmdt that unmaps the view but leaves the block's refcount as it was."""
    done = ssm.UnmapSharedMemoryFromProcess(s, pid, base, space)
    return ssm.shared_step(s, done.status, done.changed.but(brefs=s.brefs))


def _destroy_frees_mapped(s: ssm.SharedState, shm_id: Ref) -> ssm.SharedStep:
    """IPC_RMID that releases the block's frames at once, mapped or not."""
    done = ssm.DestroySharedMemory(s.but(brefs=z3.Store(s.brefs, shm_id, 0)), shm_id)
    return ssm.shared_step(s, done.status, done.changed.but(brefs=s.brefs))


def _last_unmap_frees_live(s: ssm.SharedState, pid: Ref, base: Ref,
                           space: Ref | None = None) -> ssm.SharedStep:
    """shmdt whose last unmap releases the frames even of a block not destroyed."""
    b = s.vsrc[pid, base]
    done = ssm.UnmapSharedMemoryFromProcess(s.but(blive=z3.Store(s.blive, b, False)), pid,
                                            base, space)
    return ssm.shared_step(s, done.status, done.changed.but(blive=s.blive))


def _map_ignores_permissions(s: ssm.SharedState, pid: Ref, space: Ref, shm_id: Ref,
                             base: Ref, protect: Ref, placed: Ref, occupied: Ref,
                             oom: Ref) -> ssm.SharedStep:
    """A view whose protection is not checked against the block's permissions."""
    loose = s.but(bprotect=z3.Store(s.bprotect, shm_id, PAGE_EXECUTE_READWRITE))
    done = ssm.MapSharedMemoryToProcess(loose, pid, space, shm_id, base, protect, placed,
                                        occupied, oom)
    return ssm.shared_step(s, done.status, done.changed.but(bprotect=s.bprotect),
                           assume=done.assume)


def _map_frames_of_next_block(s: ssm.SharedState, pid: Ref, space: Ref, shm_id: Ref,
                              base: Ref, protect: Ref, placed: Ref, occupied: Ref,
                              oom: Ref) -> ssm.SharedStep:
    """A view whose PTEs map the frames of the block with the next id."""
    done = ssm.MapSharedMemoryToProcess(s, pid, space, shm_id, base, protect, placed,
                                        occupied, oom)
    wrong = ssm.set_view_pages(done.changed, pid, base, s.bpages[shm_id],
                               vframe=lambda w: s.bframe[shm_id + 1, w - base])
    return ssm.shared_step(s, done.status, wrong, assume=done.assume)


def _sync_short(s: ssm.SharedState, pid: Ref, base: Ref, invalidate: Ref, space: Ref | None,
                clean_all: bool) -> ssm.SharedStep:
    """msync whose write-back loop stops one page short of the view's end; the
    dirty flags of every page cleared (clean_all) or only of those written."""
    f, first, count = s.vsrc[pid, base], s.vidx[pid, base], s.vcount[pid, base]
    done = ssm.SyncMappedFile(s.but(vcount=ssm.set_view_pages(
        s, pid, base, count, vcount=lambda w: count - 1).vcount), pid, base, invalidate, space)
    post = done.changed.but(vcount=s.vcount)
    if clean_all:
        post = post.but(dirty=ssm.write_back(post, f, first, count).dirty)
    return ssm.shared_step(s, done.status, post)


def _unmap_without_write_back(s: ssm.SharedState, pid: Ref, base: Ref,
                              space: Ref | None = None) -> ssm.SharedStep:
    """munmap of a file view that releases its cache pages without writing them."""
    f, first, count = s.vsrc[pid, base], s.vidx[pid, base], s.vcount[pid, base]
    done = ssm.UnmapFileFromMemory(s, pid, base, space)
    post = done.changed.but(fdata=s.fdata, dirty=ssm.write_back(s, f, first, count).dirty)
    return ssm.shared_step(s, done.status, post)


def _split_not_counted(s: ssm.SharedState, pid: Ref, vpn: Ref, count: Ref,
                       space: Ref | None = None) -> ssm.SharedStep:
    """munmap of a block view's middle that leaves two pieces but counts one (the
    new piece gets no slot of the block's: shm_nattch not raised at the split)."""
    done = ssm.SyscallMunmap(s, pid, vpn, count, space)
    return ssm.shared_step(s, done.status, done.changed.but(brefs=s.brefs))


def _tail_piece_keeps_offset(s: ssm.SharedState, pid: Ref, vpn: Ref, count: Ref,
                             space: Ref | None = None) -> ssm.SharedStep:
    """munmap over part of a view whose right piece restarts at the cut piece's first
    source page (vm_pgoff not advanced by the split)."""
    done = ssm.SyscallMunmap(s, pid, vpn, count, space)
    base, size, end = s.vbase[pid, vpn], s.vcount[pid, vpn], vpn + count
    first = s.vidx[pid, base]
    post = ssm.set_view_pages(done.changed, pid, end, base + size - end,
                              vidx=lambda w: first + w - end)
    return ssm.shared_step(s, done.status, post)


def _munmap_frees_block_pages(s: ssm.SharedState, pid: Ref, vpn: Ref, count: Ref,
                              space: Ref | None = None) -> ssm.SharedStep:
    """munmap over part of a block view that releases the cut pages' frames no other
    view maps, as it releases a file's cache pages, though the block still holds
    them."""
    done = ssm.SyscallMunmap(s, pid, vpn, count, space)
    b, first = s.vsrc[pid, vpn], s.vidx[pid, vpn]
    fr = z3.Int("_fr")
    gone = z3.And(s.vkind[pid, vpn] == ssm.SHM,
                  ssm.in_source(s, fr, z3.IntVal(ssm.SHM), b, first, count), s.refs[fr] == 1)
    post = done.changed.but(kind=z3.Lambda([fr], z3.If(gone, 0, done.changed.kind[fr])))
    return ssm.shared_step(s, done.status, post)


def _munmap_without_write_back(s: ssm.SharedState, pid: Ref, vpn: Ref, count: Ref,
                               space: Ref | None = None) -> ssm.SharedStep:
    """munmap over part of a file view that drops the cut pages' dirty data."""
    done = ssm.SyscallMunmap(s, pid, vpn, count, space)
    f, first = s.vsrc[pid, vpn], s.vidx[pid, vpn]
    post = done.changed.but(fdata=s.fdata, dirty=ssm.write_back(
        done.changed, f, first, count, s.vkind[pid, vpn] == ssm.FILE).dirty)
    return ssm.shared_step(s, done.status, post)


def _file_view_always_writable(s: ssm.SharedState, pid: Ref, file: Ref, first: Ref,
                               count: Ref, protect: Ref, base: Ref, occupied: Ref, pick: Ref,
                               pinv: Ref, oom: Ref, space: Ref | None = None) -> ssm.SharedStep:
    """A file view whose PTEs are writable whatever its protection."""
    done = ssm.MapFileToMemory(s, pid, file, first, count, protect, base, occupied, pick,
                               pinv, oom, space)
    post = ssm.set_view_pages(done.changed, pid, base, count,
                              pte_writable=lambda w: z3.BoolVal(True))
    return ssm.shared_step(s, done.status, post, assume=done.assume)


def _write_any_view_page(s: ssm.SharedState, pid: Ref, vpn: Ref, token: Ref) -> ssm.SharedStep:
    """A write that looks for a view page, not for a writable PTE."""
    done = ssm.Write(s.but(pte_writable=ssm.set_view_pages(
        s, pid, vpn, z3.IntVal(1), pte_writable=lambda w: ssm.viewed(s, pid, w)).pte_writable),
        pid, vpn, token)
    return ssm.shared_step(s, done.status, done.changed.but(pte_writable=s.pte_writable))



def _protect_beyond_view(s: ssm.SharedState, pid: Ref, vpn: Ref, count: Ref,
                         protect: Ref) -> ssm.SharedStep:
    """VirtualProtect that checks the new protection against PAGE_EXECUTE_READWRITE,
    not against the view's own (Wine test_mapping's is_compatible_protection)."""
    loose = s.but(vaccess=ssm.set_view_pages(s, pid, vpn, count, vaccess=lambda w: z3.IntVal(
        PAGE_EXECUTE_READWRITE)).vaccess)
    done = ssm.VirtualProtect(loose, pid, vpn, count, protect)
    return ssm.shared_step(s, done.status, done.changed.but(vaccess=s.vaccess), done.result,
                           z3.IntVal(0))


def _commit_file_view_pages(s: ssm.SharedState, pid: Ref, vpn: Ref, count: Ref,
                            protect: Ref) -> ssm.SharedStep:
    """VirtualAlloc(MEM_COMMIT) that re-protects a view's pages with no check of the
    view's access, a file view's too (Wine test_mapping refuses both)."""
    loose = s.but(vaccess=ssm.set_view_pages(s, pid, vpn, count, vaccess=lambda w: z3.IntVal(
        PAGE_EXECUTE_READWRITE)).vaccess, vkind=ssm.set_view_pages(
            s, pid, vpn, count, vkind=lambda w: z3.IntVal(ssm.SHM)).vkind)
    done = ssm.VirtualAlloc(loose, pid, vpn, count, protect)
    return ssm.shared_step(s, done.status, done.changed.but(vaccess=s.vaccess, vkind=s.vkind),
                           done.result, z3.IntVal(0))


def _mprotect_keeps_pte(s: ssm.SharedState, pid: Ref, vpn: Ref, count: Ref,
                        protect: Ref) -> ssm.SharedStep:
    """mprotect that changes the pages' protection but not their PTEs' R/W bit."""
    done = ssm.SyscallMprotect(s, pid, vpn, count, protect)
    return ssm.shared_step(s, done.status, done.changed.but(pte_writable=s.pte_writable),
                           done.result, z3.IntVal(0))

_ORIGINAL_PUT_ENTRY = svm.put_entry
_ORIGINAL_MAKE_ENTRY = make_entry

def _free_frame_nowhere(s: State, frame_addr: Ref) -> Step:
    """FreeFrame whose guard asks for an address below the end of memory
    (nframes pages) and at or above it."""
    freed = spm.FreeFrame(s, frame_addr)
    end = s.nframes << PAGE_SHIFT
    return dataclasses.replace(freed, assume=z3.And(freed.assume, z3.ULT(frame_addr, end),
                                                    z3.UGE(frame_addr, end)))


VARIANTS = (
    BrokenVariant("contradictory-guard", vacuity.CLAIM, "FreeFrame",
                  "FreeFrame's guard asks for an address below the end of memory and at "
                  "or above it: every claim about it would be proved",
                  transition=_free_frame_nowhere),
    BrokenVariant("request-frame-beyond-nframes", "FRM-1", "RequestFrame",
                  "RequestFrame may hand out a free bit beyond nframes",
                  ((spm, "is_free", lambda s, f: z3.Not(s.used[f])),)),
    BrokenVariant("free-keeps-count", "FRM-2", "FreeFrame",
                  "FreeFrame clears the bit but does not decrement the used count",
                  ((spm, "release", _release_keeps_count),)),
    BrokenVariant("unmap-keeps-frame", "FRM-3", "UnmapVirtualAddress",
                  "UnmapVirtualAddress clears the PTE but keeps the frame allocated",
                  ((svm, "release", _keep_frame),)),
    BrokenVariant("alloc-ignores-bitmap", "VMM-1", "PlaceFrame",
                  "AllocFrame takes a frame without looking at the bitmap",
                  ((svm, "is_free", _ignore_bitmap),)),
    BrokenVariant("free-mapped-frame", "VMM-2", "FreeFrame",
                  "FreeFrame frees a frame a PTE still maps",
                  ((spm, "FREEABLE", (HELD, MAPPED)),)),
    BrokenVariant("pte-off-by-one", "VMM-3", "PlaceHeld",
                  "MapVirtualAddress writes the PTE one index too far",
                  ((svm, "put_entry", _put_entry_next_index),)),
    BrokenVariant("kernel-table-not-shared", "VMM-4", "LinkKernelTable",
                  "a new kernel table is linked into one directory only",
                  ((svm, "link_table", _link_into_one),)),
    BrokenVariant("map-reserved-to-user", "PROT-1", "PlaceHeld",
                  "MapVirtualAddress maps a reserved frame for user mode",
                  transition=_place_reserved),
    BrokenVariant("user-bit-on-kernel-page", "PROT-2", "PlaceFrame",
                  "AllocFrame sets U/S in every PTE, kernel pages included",
                  ((svm, "make_entry", _user_always),)),
    BrokenVariant("user-kernel-pde", "PROT-3", "LinkKernelTable",
                  "kernel PDEs get U/S (the tutorial's 0x7 for every PDE)",
                  ((svm, "KERNEL_PDE", 0x7),)),
    BrokenVariant("free-forgets-to-sort", "HEAP-1", "Release",
                  "Free puts the new hole anywhere in the index", (
                      (skh, "sorted_at", lambda s, h, q: z3.And(0 <= q, q <= s.count)),),
                  layer="kernel_heap"),
    BrokenVariant("stale-footer-after-unify", "HEAP-2", "AbsorbRight",
                  "unifying right leaves the absorbed hole's footer (the tutorial's bug)",
                  transition=_stale_footer, layer="kernel_heap"),
    BrokenVariant("contract-below-live-block", "HEAP-3", "ShrinkHole",
                  "Contract cuts the last block even when it is allocated (the index "
                  "then lacks the hole it leaves)", (
                      (skh, "shrink_ok", lambda s, e: z3.And(
                          s.created, e % 4096 == 0, e < s.end, s.floor <= e - s.start)),),
                  layer="kernel_heap"),
    BrokenVariant("drop-keeps-index-entry", "HEAP-3", "DropHole",
                  "Contract cuts the trailing hole but leaves it in the index",
                  transition=_drop_keeps_entry, layer="kernel_heap"),
    BrokenVariant("release-beside-hole", "HEAP-4", "Release",
                  "Free does not unify with the hole on its left",
                  transition=_release_beside_hole, layer="kernel_heap"),
    BrokenVariant("expand-unaligned-end", "HEAP-5", "ExpandNewHole",
                  "Expand moves the end to an address that is not page aligned", (
                      (skh, "growth_ok", lambda s, e: z3.And(s.created, s.end < e, e <= s.max)),),
                  layer="kernel_heap"),
    BrokenVariant("page-align-ignored", "HEAP-6", "Take",
                  "a page_align allocation takes a hole whose payload is not aligned",
                  transition=_take_unaligned, layer="kernel_heap"),
    BrokenVariant("free-forgets-push", "POOL-1", "FreeBlock",
                  "FreeBlock clears the live bit but does not push the block",
                  transition=_free_without_push, layer="memory_pool"),
    BrokenVariant("alloc-past-max", "POOL-2", "AllocBlock",
                  "AllocBlock carves one block more than max_blocks",
                  transition=_alloc_past_max, layer="memory_pool"),
    BrokenVariant("double-free-accepted", "POOL-3", "FreeBlock",
                  "FreeBlock pushes a block that is not live (a double free)",
                  transition=_double_free, layer="memory_pool"),
    BrokenVariant("release-keeps-owner", "SYS-1", "ReleaseFrame",
                  "a manager frees a frame but still claims it",
                  transition=_release_keeps_owner, layer="memory_subsystem"),
    BrokenVariant("take-keeps-free-count", "SYS-2", "TakeFrame",
                  "taking a frame does not lower the available count",
                  transition=_take_keeps_free_count, layer="memory_subsystem"),
    BrokenVariant("dos-frame-released", "SYS-3", "ReleaseFrame",
                  "reserved frames of the first MB may be given back to the allocator", (
                      (sms, "TAKEN_KINDS", range(1, len(sms.OWNER_KINDS))),),
                  layer="memory_subsystem"),
    BrokenVariant("commit-outside-reservation", "USR-1", "VirtualAllocCommit",
                  "VirtualAlloc(MEM_COMMIT) accepts pages outside any reservation",
                  transition=_commit_anywhere, layer="user_space"),
    BrokenVariant("munmap-leaks-frames", "USR-2", "Munmap",
                  "munmap frees the pages but the process still owns their frames",
                  transition=_munmap_keeps_owner, layer="user_space"),
    BrokenVariant("reservation-not-rounded", "USR-3", "VirtualAllocReserve",
                  "VirtualAlloc(MEM_RESERVE) does not round the base to 64 KB", (
                      (sus, "reservation_ok", lambda first, count: sus.user_range(first, count)),),
                  layer="user_space"),
    BrokenVariant("brk-past-heap-max", "USR-4", "BrkGrow",
                  "brk grows the heap beyond heap_max",
                  transition=_brk_past_max, layer="user_space"),
    BrokenVariant("pte-writable-on-readonly", "PROT-2", "VirtualProtect",
                  "the PTE is writable for every present page, PAGE_READONLY included", (
                      (sus, "pte_bits", lambda protect: (protect != PAGE_NOACCESS,) * 2),),
                  layer="user_space"),
    BrokenVariant("protect-kernel-page", "PROT-3", "VirtualProtect",
                  "VirtualProtect raises permissions on a kernel page (no range check)",
                  transition=_protect_anywhere, layer="user_space"),
    BrokenVariant("access-noaccess-page", "PROT-1", "Access",
                  "an access is allowed on a committed PAGE_NOACCESS page",
                  transition=_access_if_committed, layer="user_space"),
    BrokenVariant("dos-alloc-crosses-a000", "DOS-1", "AllocateDosMemory",
                  "AH=48h counts the MCB paragraph as room: the last block runs past A000h",
                  ((sdm, "fits", _fits_with_mcb),), layer="dos_memory"),
    BrokenVariant("dos-coalesce-keeps-inner-mcbs", "DOS-2", "Coalesce",
                  "joining free blocks (ALLOC.ASM Coalesce) leaves the absorbed MCBs standing",
                  transition=_coalesce_keeps_inner_mcbs, layer="dos_memory"),
    BrokenVariant("umb-past-area-end", "DOS-3", "AllocateDosMemory",
                  "a high allocation counts the MCB paragraph: a UMB runs past upper memory",
                  ((sdm, "fits", _fits_with_mcb),), layer="dos_memory"),
    BrokenVariant("umb-link-without-umbs", "DOS-3", "SetUmbLink",
                  "AX=5803h links the chain into upper memory when there are no UMBs",
                  transition=_link_without_umbs, layer="dos_memory.plain"),
    BrokenVariant("xms-blocks-overlap", "DOS-4", "XmsAllocate",
                  "XMS allocate places the block in the pool without looking at the others",
                  ((sdm, "xms_room", lambda s, h, address, kb: z3.And(
                      XMS_BASE <= address, address + 1024 * kb <= s.xms_end)),),
                  layer="dos_memory.plain"),
    BrokenVariant("xms-free-locked-block", "DOS-4F", "XmsFree",
                  "XMS free accepts a locked block (should be error 0xAB)",
                  transition=_free_locked_xms, layer="dos_memory.plain"),
    BrokenVariant("ems-page-in-two-slots", "DOS-5", "EmsMapPage",
                  "EMS map leaves the page in its old slot too (one page in two slots)",
                  transition=_map_keeps_old_slot, layer="dos_memory.plain"),
    BrokenVariant("ems-slot-shows-two-pages", "DOS-5", "EmsMapPage",
                  "EMS map does not unmap the slot's previous page (two pages in one slot)",
                  transition=_map_over_shown_page, layer="dos_memory.plain"),
    BrokenVariant("ems-shrink-keeps-slots", "DOS-5", "EmsReallocate",
                  "EMS 51h frees the pages past the new count but leaves them in their slots",
                  transition=_shrink_keeps_slots, layer="dos_memory.plain"),
    BrokenVariant("ems-free-with-saved-map", "DOS-5", "EmsDeallocate",
                  "EMS 45h frees a handle whose mapping context 47h saved (no 86h)",
                  transition=_free_with_saved_map, layer="dos_memory.plain"),
    BrokenVariant("a20-disable-below-zero", "DOS-6", "LocalDisableA20",
                  "XMS 06h lowers the A20 count without the 82h check at 0",
                  transition=_disable_below_zero, layer="dos_memory.himem"),
    BrokenVariant("a20-enable-past-limit", "DOS-6", "LocalEnableA20",
                  "XMS 05h raises the A20 count past HIMEM's limit",
                  transition=_enable_without_limit, layer="dos_memory.himem"),
    BrokenVariant("hma-given-twice", "DOS-6H", "RequestHma",
                  "XMS 01h gives the HMA to a second caller (no 91h check)",
                  transition=_hma_given_twice, layer="dos_memory.himem"),
    BrokenVariant("ems-return-key-keeps-disabled", "DOS-7", "OsFunctionSet",
                  "EMS 5Dh/02h forgets the access key but leaves the OS/E set disabled",
                  transition=_return_key_keeps_state, layer="dos_memory.ems_os"),
    BrokenVariant("ems-access-key-not-compared", "DOS-7K", "OsFunctionSet",
                  "EMS 5Dh takes any BX:CX as the outstanding access key (no A4h)",
                  transition=_key_not_compared, layer="dos_memory.ems_os"),
    BrokenVariant("ems-save-area-linear", "DOS-8", "AlternateMapRegisterSet",
                  "EMS 5Bh/01h keeps ES:DI's linear address as the save area's segment",
                  transition=_save_area_linear, layer="dos_memory.ems_os"),
    BrokenVariant("ems-alternate-while-disabled", "DOS-7D", "AlternateMapRegisterSet",
                  "EMS 5Bh answers while the OS/E set is disabled (no A4h)",
                  transition=_alternate_while_disabled, layer="dos_memory.ems_os"),
    BrokenVariant("map-frame-of-another-block", "VMM-1", "MapSharedMemoryToProcess",
                  "a shared-memory view maps the frames of another block",
                  transition=_map_frames_of_next_block, layer="shared_memory"),
    BrokenVariant("refcount-not-decremented", "SHM-1", "UnmapSharedMemoryFromProcess",
                  "shmdt unmaps the view but does not decrement the block's refcount",
                  transition=_unmap_keeps_brefs, layer="shared_memory"),
    BrokenVariant("destroy-frees-mapped-frames", "SHM-2", "DestroySharedMemory",
                  "IPC_RMID frees the block's frames while a view still maps them",
                  transition=_destroy_frees_mapped, layer="shared_memory"),
    BrokenVariant("destroy-releases-mapped-frames", "SHM-2D", "DestroySharedMemory",
                  "IPC_RMID releases frames that still have mappings",
                  transition=_destroy_frees_mapped, layer="shared_memory"),
    BrokenVariant("last-unmap-frees-live-block", "SHM-2U", "UnmapSharedMemoryFromProcess",
                  "the last shmdt frees the frames of a block that is not destroyed",
                  transition=_last_unmap_frees_live, layer="shared_memory"),
    BrokenVariant("read-write-mapping-of-read-only-block", "SHM-3",
                  "MapSharedMemoryToProcess",
                  "a view may allow writes (or execution) its block does not",
                  transition=_map_ignores_permissions, layer="shared_memory"),
    BrokenVariant("sync-skips-the-last-page", "MMF-1", "SyncMappedFile",
                  "msync writes back all but the view's last page, yet cleans them all",
                  transition=lambda s, pid, base, invalidate, space=None: _sync_short(
                      s, pid, base, invalidate, space, clean_all=True),
                  layer="shared_memory"),
    BrokenVariant("sync-leaves-the-last-page-dirty", "MMF-1S", "SyncMappedFile",
                  "msync's loop stops one page short: the last page stays dirty",
                  transition=lambda s, pid, base, invalidate, space=None: _sync_short(
                      s, pid, base, invalidate, space, clean_all=False),
                  layer="shared_memory"),
    BrokenVariant("unmap-drops-dirty-data", "MMF-1U", "UnmapFileFromMemory",
                  "munmap of a file view frees dirty cache pages without writing them back",
                  transition=_unmap_without_write_back, layer="shared_memory"),
    BrokenVariant("munmap-split-not-counted", "SHM-1", "SyscallMunmap",
                  "munmap of a block view's middle leaves two pieces but does not count "
                  "the new one in the block's refcount",
                  transition=_split_not_counted, layer="shared_memory"),
    BrokenVariant("munmap-tail-piece-wrong-offset", "VMM-1", "SyscallMunmap",
                  "munmap over part of a view gives the right piece the page offset of the "
                  "cut piece's first page",
                  transition=_tail_piece_keeps_offset, layer="shared_memory"),
    BrokenVariant("munmap-frees-block-pages", "SHM-2M", "SyscallMunmap",
                  "munmap over part of a block view releases the cut pages' frames",
                  transition=_munmap_frees_block_pages, layer="shared_memory"),
    BrokenVariant("munmap-part-drops-dirty-data", "MMF-1M", "SyscallMunmap",
                  "munmap over part of a file view drops the cut pages' dirty data",
                  transition=_munmap_without_write_back, layer="shared_memory"),
    BrokenVariant("writable-pte-on-read-only-view", "MMF-2", "MapFileToMemory",
                  "a read-only file view gets writable PTEs",
                  transition=_file_view_always_writable, layer="shared_memory"),
    BrokenVariant("write-through-read-only-pte", "MMF-2W", "Write",
                  "a user write succeeds on any view page, its PTE read-only or not",
                  transition=_write_any_view_page, layer="shared_memory"),
    BrokenVariant("protect-view-page-beyond-its-view", "SHM-3", "VirtualProtect",
                  "VirtualProtect gives a view page an access its view does not allow",
                  transition=_protect_beyond_view, layer="shared_memory"),
    BrokenVariant("commit-view-page-beyond-its-view", "SHM-3", "VirtualAlloc",
                  "VirtualAlloc(MEM_COMMIT) re-protects any view's pages, beyond the "
                  "view's access, a file view's too",
                  transition=_commit_file_view_pages, layer="shared_memory"),
    BrokenVariant("mprotect-keeps-writable-pte", "MMF-2", "SyscallMprotect",
                  "mprotect of a view page leaves its PTE's R/W bit as it was",
                  transition=_mprotect_keeps_pte, layer="shared_memory"),
)


@contextlib.contextmanager
def applied(variant: BrokenVariant) -> Iterator[None]:
    with contextlib.ExitStack() as stack:
        for module, attribute, value in variant.patches:
            stack.enter_context(mock.patch.object(module, attribute, value))
        yield


LAYERS = {**{layer.manager: layer for layer in (kernel_heap.LAYER, memory_pool.LAYER,
                                                memory_subsystem.LAYER, user_space.LAYER,
                                                dos_memory.LAYER, shared_memory.LAYER)},
          "dos_memory.plain": dos_memory.PLAIN_LAYER,
          "dos_memory.himem": dos_memory.HIMEM_LAYER,
          "dos_memory.ems_os": dos_memory.EMS_OS_LAYER}


def catch(variant: BrokenVariant, profile: str = "teeth") -> Verdict:
    """Run the obligation the variant must break, with the bug injected."""
    layer = None if variant.layer is None else LAYERS[variant.layer]
    op = (OPERATIONS_BY_NAME[variant.operation] if layer is None
          else layer.operation(variant.operation))
    if variant.transition is not None:
        op = dataclasses.replace(op, transition=variant.transition)
    with applied(variant):
        if variant.invariant == vacuity.CLAIM:
            family = vacuity.PAGING if layer is None else layer.vacuity_family()
            return vacuity.prove(dataclasses.replace(
                family, operations={**family.operations, op.name: op}, holding={}),
                op.name, profile)
        if layer is None:
            return prove(op, variant.invariant, profile)
        return layered.prove(layer, op, variant.invariant, profile)


def caught(variant: BrokenVariant, verdict: Verdict) -> bool:
    return verdict.kind is Kind.COUNTEREXAMPLE and variant.invariant in verdict.violated

