"""VirtualMemoryManager: invariants VMM-1, VMM-2, VMM-4, the translation
claim VMM-3, and the transitions of seed section 2.

ClonePageDirectory and DestroyPageDirectory touch an unbounded number of
pages, so the spec defines them as sequences of steps that are each proved
(as a kernel's loop would be proved with Inv as its loop invariant):

- ClonePageDirectory(src) = CreatePageDirectory, then for each present user
  PTE of src in (slot, index) order: AllocPage(clone, va, not U, R/W) and
  CopyPage(old frame, new frame). All or nothing: refused with
  ERROR_NOT_ENOUGH_MEMORY when the free frames are fewer than 1 + the user
  tables with a present entry + the present user pages.
- DestroyPageDirectory(d) = UnmapVirtualAddress of every present user page,
  then FreeTable of every (now empty) user table, then FreeDirectory.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import z3

from spec.abi import (
    INVALID_PHYSICAL_ADDRESS,
    PTE_ACCESSED,
    PTE_DIRTY,
    PTE_PRESENT,
    PTE_USER,
    PTE_WRITABLE,
    ErrorCode,
)
from spec.page_manager import allocate, is_free, release
from spec.state import (
    DIRECTORY,
    ENTRY,
    FRAME,
    FREE,
    HELD,
    LINK_MASK,
    MAPPED,
    OFFSET,
    RESERVED,
    SLOT,
    TABLE,
    WORD,
    Ref,
    State,
    address_parts,
    bv,
    frame_number,
    frame_of,
    in_memory,
    is_directory,
    is_table,
    ite,
    kernel_slot,
    make_entry,
    page_aligned,
    page_owner,
    present,
    translate,
    user,
    walk,
    writable,
)
from spec.step import Step, Translation, status, step

E = ErrorCode
KERNEL_PDE = PTE_PRESENT | PTE_WRITABLE
USER_PDE = PTE_PRESENT | PTE_WRITABLE | PTE_USER


# -- invariants --------------------------------------------------------------

def vmm_1(s: State) -> Ref:
    """VMM-1: no double-mapped frames.

    Every present PTE is the one its frame's ghost back-pointer names, so no
    two PTEs map one frame; every present PDE links a table at the slot the
    table records, a user table from its one directory, a kernel table from
    the kernel directory's slot (and, by VMM-4, the same slot everywhere).
    """
    t, d, f = z3.Consts("t d f", FRAME)
    i, j = z3.Consts("i j", SLOT)
    table = frame_of(s.pde[d][i])
    return z3.And(
        z3.ForAll([t, j], z3.Implies(
            z3.And(is_table(s, t), present(s.pte[t][j])),
            z3.And(s.map_table[frame_of(s.pte[t][j])] == t,
                   s.map_index[frame_of(s.pte[t][j])] == j))),
        z3.ForAll([d, i], z3.Implies(
            z3.And(is_directory(s, d), present(s.pde[d][i])),
            z3.And(s.table_slot[table] == i,
                   s.table_dir[table] == z3.If(kernel_slot(i), s.kernel_dir, d)))))


def vmm_2(s: State) -> Ref:
    """VMM-2: every present PTE points to an allocated page frame in memory,
    every present PDE to a page table; paging structures exist only with paging,
    and the kernel and current directories are live directories."""
    t, d = z3.Consts("t d", FRAME)
    i, j = z3.Consts("i j", SLOT)
    f = z3.Const("f", FRAME)
    page = frame_of(s.pte[t][j])
    return z3.And(
        z3.ForAll([t, j], z3.Implies(
            z3.And(is_table(s, t), present(s.pte[t][j])),
            z3.And(in_memory(s, page), s.used[page], page_owner(s, page)))),
        z3.ForAll([d, i], z3.Implies(
            z3.And(is_directory(s, d), present(s.pde[d][i])), is_table(s, frame_of(s.pde[d][i])))),
        z3.ForAll([f], z3.Implies(z3.Not(s.paging), z3.And(
            s.owner[f] != DIRECTORY, s.owner[f] != TABLE, s.owner[f] != MAPPED))),
        z3.Implies(s.paging, z3.And(is_directory(s, s.kernel_dir),
                                    is_directory(s, s.current_dir),
                                    present(s.pde[s.kernel_dir][bv(0, SLOT)]))))


def vmm_4(s: State) -> Ref:
    """VMM-4: every directory links the kernel directory's kernel tables
    (PDEs equal but for the A/D bits the hardware sets per directory), and the
    kernel directory maps kernel space only."""
    d = z3.Const("d", FRAME)
    i = z3.Const("i", SLOT)
    return z3.And(
        z3.ForAll([d, i], z3.Implies(
            z3.And(is_directory(s, d), kernel_slot(i)),
            s.pde[d][i] & LINK_MASK == s.pde[s.kernel_dir][i] & LINK_MASK)),
        z3.ForAll([i], z3.Implies(z3.And(s.paging, z3.Not(kernel_slot(i))),
                                  z3.Not(present(s.pde[s.kernel_dir][i])))))


INVARIANTS = {"VMM-1": vmm_1, "VMM-2": vmm_2, "VMM-4": vmm_4}


def vmm_3(pre: State, result: Step) -> Ref:
    """VMM-3: when the step succeeds, every directory live before and after
    translates every page exactly as the step's specification says (unchanged
    when it names no translation change): VirtualToPhysical(Map(v, p)) = p.
    (A refused step leaves the state, hence every translation, unchanged.)"""
    d = z3.Const("d", FRAME)
    i, j = z3.Consts("i j", SLOT)
    post = result.changed
    mapped, frame = translate(post, d, i, j)
    if result.translation is None:
        want_mapped, want_frame = translate(pre, d, i, j)
    else:
        want_mapped, want_frame = result.translation(d, i, j)
    return z3.ForAll([d, i, j], z3.Implies(
        z3.And(live(pre, d), live(post, d)),
        z3.And(mapped == want_mapped, z3.Implies(mapped, frame == want_frame))))


# -- helpers -------------------------------------------------------------------

def live(s: State, d: Ref) -> Ref:
    """d is a directory of the running system."""
    return z3.And(s.paging, is_directory(s, d))


def link_table(s: State, d: Ref, slot: Ref, table: Ref, kernel: bool | None = None) -> State:
    """Link a fresh, empty table at slot: into d, or into every directory in kernel
    space. ``kernel`` says which when the caller knows; None decides by slot."""
    dd = z3.Const("dd", FRAME)
    kernel_pde = z3.Concat(table, bv(KERNEL_PDE, OFFSET))
    user_pde = z3.Concat(table, bv(USER_PDE, OFFSET))
    every = z3.Lambda([dd], z3.If(is_directory(s, dd), z3.Store(s.pde[dd], slot, kernel_pde),
                                  s.pde[dd]))
    one = z3.Store(s.pde, d, z3.Store(s.pde[d], slot, user_pde))
    in_kernel = kernel_slot(slot) if kernel is None else z3.BoolVal(kernel)
    pde = z3.If(in_kernel, every, one) if kernel is None else (every if kernel else one)
    return s.but(pde=pde,
                 pte=z3.Store(s.pte, table, z3.K(SLOT, bv(0, ENTRY))),
                 table_dir=z3.Store(s.table_dir, table, z3.If(in_kernel, s.kernel_dir, d)),
                 table_slot=z3.Store(s.table_slot, table, slot))


def put_entry(s: State, d: Ref, slot: Ref, index: Ref, frame: Ref, entry: Ref) -> State:
    """Write entry (which maps frame) at (slot, index) of d, whose table exists."""
    table = frame_of(s.pde[d][slot])
    return s.but(pte=z3.Store(s.pte, table, z3.Store(s.pte[table], index, entry)),
                 map_table=z3.Store(s.map_table, frame, table),
                 map_index=z3.Store(s.map_index, frame, index))


def placement_translation(s: State, d: Ref, slot: Ref, index: Ref,
                          frame: Ref | None) -> Translation:
    """The page (slot, index) maps frame (or nothing) in d, and in every
    directory when slot is kernel space; every other page is unchanged."""
    def translation(dd: Ref, i: Ref, j: Ref) -> tuple[Ref, Ref]:
        mapped, old = translate(s, dd, i, j)
        hit = z3.And(i == slot, j == index, z3.Or(dd == d, kernel_slot(slot)))
        if frame is None:
            return z3.And(mapped, z3.Not(hit)), old
        return z3.Or(hit, mapped), z3.If(hit, frame, old)
    return translation


def page_checks(s: State, d: Ref, va: Ref, is_kernel: Ref) -> list[tuple[Ref, ErrorCode]]:
    """The checks of a request to place a page, in the model's order."""
    slot, index, _ = address_parts(va)
    return [(z3.Not(live(s, d)), E.ERROR_INVALID_HANDLE),
            (z3.Not(page_aligned(va)), E.ERROR_INVALID_PARAMETER),
            (z3.And(z3.Not(is_kernel), kernel_slot(slot)), E.ERROR_ACCESS_DENIED),
            (z3.And(d == s.kernel_dir, z3.Not(kernel_slot(slot))), E.ERROR_ACCESS_DENIED),
            (walk(s, d, slot, index)[2], E.ERROR_ALREADY_EXISTS)]


def free_frames(s: State) -> Ref:
    return s.nframes - s.used_count


def table_choice_ok(s: State, d: Ref, slot: Ref, table: Ref) -> Ref:
    return z3.Or(present(s.pde[d][slot]), is_free(s, table))


# -- operations ------------------------------------------------------------------

def InitializePaging(s: State, kernel_dir: Ref, identity_table: Ref) -> Step:
    """Kernel directory with the identity table at slot 0 mapping every reserved frame."""
    code = status((s.paging, E.ERROR_ALREADY_INITIALIZED),
                  (s.nframes == 0, E.ERROR_NOT_READY),
                  (z3.ULT(free_frames(s), 2), E.ERROR_NOT_ENOUGH_MEMORY))
    f = z3.Const("f", FRAME)
    j = z3.Const("j", SLOT)
    s1 = allocate(allocate(s, kernel_dir, DIRECTORY), identity_table, TABLE)
    reserved = s.owner[z3.ZeroExt(10, j)] == RESERVED
    identity = z3.Lambda([j], z3.If(reserved, z3.Concat(z3.ZeroExt(10, j), bv(KERNEL_PDE, OFFSET)),
                                    bv(0, ENTRY)))
    is_reserved_f = s.owner[f] == RESERVED
    post = s1.but(
        pde=z3.Store(s1.pde, kernel_dir, z3.Store(
            z3.K(SLOT, bv(0, ENTRY)), bv(0, SLOT),
            z3.Concat(identity_table, bv(KERNEL_PDE, OFFSET)))),
        pte=z3.Store(s1.pte, identity_table, identity),
        map_table=z3.Lambda([f], z3.If(is_reserved_f, identity_table, s1.map_table[f])),
        map_index=z3.Lambda([f], z3.If(is_reserved_f, z3.Extract(9, 0, f), s1.map_index[f])),
        table_dir=z3.Store(s1.table_dir, identity_table, kernel_dir),
        table_slot=z3.Store(s1.table_slot, identity_table, bv(0, SLOT)),
        kernel_dir=kernel_dir, current_dir=kernel_dir, paging=z3.BoolVal(True))
    choices = z3.And(is_free(s, kernel_dir), is_free(s, identity_table),
                     kernel_dir != identity_table)
    return step(s, code, post, z3.BoolVal(True), z3.BoolVal(False), assume=choices)


def CreatePageDirectory(s: State, new_dir: Ref) -> Step:
    """A copy of the kernel directory (which maps kernel space only)."""
    code = status((z3.Not(s.paging), E.ERROR_NOT_READY),
                  (z3.ULT(free_frames(s), 1), E.ERROR_NOT_ENOUGH_MEMORY))
    s1 = allocate(s, new_dir, DIRECTORY)
    post = s1.but(pde=z3.Store(s1.pde, new_dir, s.pde[s.kernel_dir]))
    return step(s, code, post, z3.Concat(new_dir, bv(0, OFFSET)),
                bv(0, WORD), assume=is_free(s, new_dir))


def LinkTable(s: State, dir: Ref, slot: Ref, table: Ref, kernel: bool | None = None) -> Step:
    """AllocPage's and MapVirtualAddress's first step when the slot has no table:
    take a free frame for an empty table and link it (everywhere in kernel space)."""
    guard = z3.And(live(s, dir), z3.Not(present(s.pde[dir][slot])), is_free(s, table),
                   z3.ULT(s.used_count, s.nframes),
                   z3.Or(kernel_slot(slot), dir != s.kernel_dir))
    if kernel is not None:
        guard = z3.And(guard, kernel_slot(slot) if kernel else z3.Not(kernel_slot(slot)))
    return step(s, bv(0, WORD), link_table(allocate(s, table, TABLE), dir, slot, table, kernel),
                assume=guard)


def LinkKernelTable(s: State, dir: Ref, slot: Ref, table: Ref) -> Step:
    """LinkTable at a kernel slot (proved as its own case: smaller queries)."""
    return LinkTable(s, dir, slot, table, kernel=True)


def LinkUserTable(s: State, dir: Ref, slot: Ref, table: Ref) -> Step:
    """LinkTable at a user slot."""
    return LinkTable(s, dir, slot, table, kernel=False)


def PlaceFrame(s: State, dir: Ref, virtual_addr: Ref, is_kernel: Ref, is_writeable: Ref,
               frame: Ref) -> Step:
    """AllocPage's second step: map a free frame (zero-filled) in an existing table."""
    slot, index, _ = address_parts(virtual_addr)
    guard = z3.And(live(s, dir), present(s.pde[dir][slot]),
                   z3.Not(present(s.pte[frame_of(s.pde[dir][slot])][index])),
                   z3.Or(is_kernel, z3.Not(kernel_slot(slot))), is_free(s, frame),
                   z3.ULT(s.used_count, s.nframes))
    entry = make_entry(frame, is_writeable, z3.Not(is_kernel))
    post = put_entry(allocate(s, frame, MAPPED), dir, slot, index, frame, entry)
    return step(s, bv(0, WORD), post, assume=guard,
                translation=placement_translation(s, dir, slot, index, frame))


def PlaceHeld(s: State, dir: Ref, virtual_addr: Ref, physical_addr: Ref, is_kernel: Ref,
              is_writeable: Ref) -> Step:
    """MapVirtualAddress's second step: map a held frame in an existing table."""
    slot, index, _ = address_parts(virtual_addr)
    frame = frame_number(physical_addr)
    guard = z3.And(live(s, dir), present(s.pde[dir][slot]),
                   z3.Not(present(s.pte[frame_of(s.pde[dir][slot])][index])),
                   z3.Or(is_kernel, z3.Not(kernel_slot(slot))),
                   in_memory(s, frame), s.owner[frame] == HELD)
    entry = make_entry(frame, is_writeable, z3.Not(is_kernel))
    post = put_entry(s.but(owner=z3.Store(s.owner, frame, MAPPED)), dir, slot, index, frame,
                     entry)
    return step(s, bv(0, WORD), post, assume=guard,
                translation=placement_translation(s, dir, slot, index, frame))


def in_space(placement: Callable[..., Step], kernel: bool) -> Callable[..., Step]:
    """A placement step restricted to kernel or user space: each case is proved
    on its own (smaller queries), and together they cover the step."""
    def restricted(s: State, dir: Ref, virtual_addr: Ref, **rest: Ref) -> Step:
        placed = placement(s, dir, virtual_addr, **rest)
        in_kernel = kernel_slot(address_parts(virtual_addr)[0])
        return dataclasses.replace(
            placed, assume=z3.And(placed.assume, in_kernel if kernel else z3.Not(in_kernel)))
    return restricted


def with_table(s: State, dir: Ref, slot: Ref, table: Ref) -> State:
    """The state after LinkTable when the slot has no table, else s."""
    linked = LinkTable(s, dir, slot, table).changed
    return ite(present(s.pde[dir][slot]), s, linked)


def steps_allowed(s: State, dir: Ref, slot: Ref, table: Ref, placed: Step) -> Ref:
    """The guards of the composite's steps hold where each step runs: the
    composite is one of the step sequences the proofs cover."""
    return z3.And(z3.Or(present(s.pde[dir][slot]), LinkTable(s, dir, slot, table).assume),
                  placed.assume)


def AllocPage(s: State, dir: Ref, virtual_addr: Ref, is_kernel: Ref, is_writeable: Ref,
              frame: Ref, table: Ref) -> Step:
    """Map a free frame (zero-filled) at virtual_addr: LinkTable if the slot has no
    table, then PlaceFrame. ``frame`` and ``table`` are the implementation's choices."""
    slot, index, _ = address_parts(virtual_addr)
    missing = z3.Not(present(s.pde[dir][slot]))
    code = status(*page_checks(s, dir, virtual_addr, is_kernel),
                  (z3.ULT(free_frames(s), z3.If(missing, bv(2, WORD), bv(1, WORD))),
                   E.ERROR_NOT_ENOUGH_MEMORY))
    linked = with_table(s, dir, slot, table)
    placed = PlaceFrame(linked, dir, virtual_addr, is_kernel, is_writeable, frame)
    choices = z3.And(is_free(s, frame), table_choice_ok(s, dir, slot, table),
                     z3.Or(z3.Not(missing), table != frame),
                     steps_allowed(s, dir, slot, table, placed))
    post = placed.changed
    return step(s, code, post, z3.BoolVal(True), z3.BoolVal(False), assume=choices,
                translation=placement_translation(s, dir, slot, index, frame))


def MapVirtualAddress(s: State, dir: Ref, virtual_addr: Ref, physical_addr: Ref,
                      is_kernel: Ref, is_writeable: Ref, table: Ref) -> Step:
    """Map a frame the caller holds (the PTE becomes its owner): LinkTable if the
    slot has no table, then PlaceHeld."""
    slot, index, _ = address_parts(virtual_addr)
    frame = frame_number(physical_addr)
    missing = z3.Not(present(s.pde[dir][slot]))
    code = status(*page_checks(s, dir, virtual_addr, is_kernel),
                  (z3.Not(page_aligned(physical_addr)), E.ERROR_INVALID_PARAMETER),
                  (z3.Or(z3.Not(in_memory(s, frame)), s.owner[frame] == FREE),
                   E.ERROR_INVALID_ADDRESS),
                  (s.owner[frame] != HELD, E.ERROR_BUSY),
                  (z3.And(missing, z3.ULT(free_frames(s), 1)), E.ERROR_NOT_ENOUGH_MEMORY))
    linked = with_table(s, dir, slot, table)
    placed = PlaceHeld(linked, dir, virtual_addr, physical_addr, is_kernel, is_writeable)
    return step(s, code, placed.changed, z3.BoolVal(True), z3.BoolVal(False),
                assume=z3.And(table_choice_ok(s, dir, slot, table),
                              steps_allowed(s, dir, slot, table, placed)),
                translation=placement_translation(s, dir, slot, index, frame))


def UnmapVirtualAddress(s: State, dir: Ref, virtual_addr: Ref) -> Step:
    """Clear the PTE at virtual_addr and free the frame it owned."""
    slot, index, _ = address_parts(virtual_addr)
    _, pte, mapped = walk(s, dir, slot, index)
    frame = frame_of(pte)
    code = status((z3.Not(live(s, dir)), E.ERROR_INVALID_HANDLE),
                  (z3.Not(page_aligned(virtual_addr)), E.ERROR_INVALID_PARAMETER),
                  (z3.Not(mapped), E.ERROR_INVALID_ADDRESS),
                  (s.owner[frame] != MAPPED, E.ERROR_ACCESS_DENIED))
    table = frame_of(s.pde[dir][slot])
    s1 = release(s, frame)
    post = s1.but(pte=z3.Store(s1.pte, table, z3.Store(s1.pte[table], index, bv(0, ENTRY))))
    return step(s, code, post, z3.BoolVal(True), z3.BoolVal(False),
                translation=placement_translation(s, dir, slot, index, None))


def SwitchPageDirectory(s: State, new_dir: Ref) -> Step:
    code = status((z3.Not(live(s, new_dir)), E.ERROR_INVALID_HANDLE))
    return step(s, code, s.but(current_dir=new_dir), z3.BoolVal(True), z3.BoolVal(False))


def VirtualToPhysical(s: State, dir: Ref, virtual_addr: Ref) -> Step:
    slot, index, offset = address_parts(virtual_addr)
    mapped, frame = translate(s, dir, slot, index)
    code = status((z3.Not(live(s, dir)), E.ERROR_INVALID_HANDLE),
                  (z3.Not(mapped), E.ERROR_INVALID_ADDRESS))
    return step(s, code, s, z3.Concat(frame, offset), bv(INVALID_PHYSICAL_ADDRESS, WORD))


def FreeTable(s: State, dir: Ref, slot: Ref) -> Step:
    """DestroyPageDirectory's middle step: free an empty user table of dir."""
    table = frame_of(s.pde[dir][slot])
    j = z3.Const("j", SLOT)
    guard = z3.And(live(s, dir), z3.Not(kernel_slot(slot)), present(s.pde[dir][slot]),
                   z3.ForAll([j], z3.Not(present(s.pte[table][j]))))
    s1 = release(s, table)
    post = s1.but(pde=z3.Store(s1.pde, dir, z3.Store(s1.pde[dir], slot, bv(0, ENTRY))),
                  pte=z3.Store(s1.pte, table, z3.K(SLOT, bv(0, ENTRY))))
    return step(s, bv(0, WORD), post, assume=guard)


def FreeDirectory(s: State, dir: Ref) -> Step:
    """DestroyPageDirectory's last step: free a directory with no user tables left."""
    i = z3.Const("i", SLOT)
    guard = z3.And(live(s, dir), dir != s.kernel_dir, dir != s.current_dir,
                   z3.ForAll([i], z3.Implies(z3.Not(kernel_slot(i)),
                                             z3.Not(present(s.pde[dir][i])))))
    s1 = release(s, dir)
    return step(s, bv(0, WORD), s1.but(pde=z3.Store(s1.pde, dir, z3.K(SLOT, bv(0, ENTRY)))),
                assume=guard)


def allowed(s: State, d: Ref, va: Ref, user_mode: Ref, write: Ref) -> Ref:
    """The MMU lets the access through (SDM 4.6, CR0.WP=1): PROT-1's reference."""
    slot, index, _ = address_parts(va)
    pde, pte, mapped = walk(s, d, slot, index)
    return z3.And(mapped, z3.Implies(user_mode, z3.And(user(pde), user(pte))),
                  z3.Implies(write, z3.And(writable(pde), writable(pte))))


def Access(s: State, dir: Ref, virtual_addr: Ref, user_mode: Ref, write: Ref,
           value: Ref) -> Step:
    """One byte read or written through dir: A set in the PDE and PTE, D on a
    write, the byte stored on a write; a refused access faults (ERROR_NOACCESS)."""
    slot, index, offset = address_parts(virtual_addr)
    table = frame_of(s.pde[dir][slot])
    frame = frame_of(s.pte[table][index])
    code = status((z3.Not(live(s, dir)), E.ERROR_INVALID_HANDLE),
                  (z3.Not(allowed(s, dir, virtual_addr, user_mode, write)), E.ERROR_NOACCESS))
    pte_bits = z3.If(write, bv(PTE_ACCESSED | PTE_DIRTY, ENTRY), bv(PTE_ACCESSED, ENTRY))
    post = s.but(
        pde=z3.Store(s.pde, dir, z3.Store(s.pde[dir], slot, s.pde[dir][slot] | PTE_ACCESSED)),
        pte=z3.Store(s.pte, table, z3.Store(s.pte[table], index, s.pte[table][index] | pte_bits)),
        mem=z3.If(write, z3.Store(s.mem, frame, z3.Store(s.mem[frame], offset, value)), s.mem))
    return step(s, code, post, s.mem[frame][offset], bv(0, z3.BitVecSort(8)))

