"""MemorySubsystem (seed section 9): SYS-1..3 and the subsystem's frame steps.

At this level a call of the subsystem or of the unified interface is what it
does to frames: every manager takes free frames for itself and gives back
only frames it owns. AllocateKernelStack takes STACK frames (and a TABLE
frame for a new kernel page table), GetFreePage a PAGE frame, MapPage a
MAPPED one (a frame the caller held is handed over: ReleaseFrame of the
HELD frame, then TakeFrame of it as MAPPED), the heap HEAP frames when it
expands, CreateKernelPageDirectory
a DIRECTORY and TABLE frames; the matching frees give them back. Boot
reserves [0, mem_start) (the first MB, the kernel image and the placement
arena), which includes every frame of the first MB. How each manager picks
its frames is proved in its own spec (page_manager, virtual_memory,
kernel_heap); the refinement machine of the subsystem checks that the
model's calls are these steps.
"""

from __future__ import annotations

import z3

from spec.abi import LOW_MEMORY_END, PAGE_SIZE, ErrorCode
from spec.state import ADDR, Ref, SystemState, ite_system
from spec.step import Transition, guarded, status

E = ErrorCode
SystemStep = Transition[SystemState]

#: Owner kinds, in the order MemorySubsystem.frame_owners() names them.
OWNER_KINDS = ("none", "reserved", "directory", "table", "heap", "stack", "page", "mapped",
               "held", "user", "dos", "shared", "file")
NONE, RESERVED = 0, 1
#: Kinds a manager may take a free frame for (all but none and reserved).
TAKEN_KINDS = range(2, len(OWNER_KINDS))
LOW_FRAMES = LOW_MEMORY_END // PAGE_SIZE


def in_memory(s: SystemState, f: Ref) -> Ref:
    return z3.And(0 <= f, f < s.nframes)


# -- invariants ------------------------------------------------------------------

def sys_1(s: SystemState) -> Ref:
    """SYS-1: the frames the managers own are exactly the allocated frames,
    each owned by exactly one manager (owner is a function: one kind each),
    and no frame outside memory is used or owned."""
    f = z3.Const("f", ADDR)
    return z3.Implies(s.booted, z3.ForAll([f], z3.And(
        s.used[f] == (s.owner[f] != NONE),
        z3.Implies(z3.Not(in_memory(s, f)), z3.Not(s.used[f])),
        z3.And(0 <= s.owner[f], s.owner[f] < len(OWNER_KINDS)))))


def sys_2(s: SystemState) -> Ref:
    """SYS-2: total = used + free, as GetTotalMemory, GetUsedMemory and
    GetAvailableMemory report them; total is the memory's frames, and the
    used count is the number of used frames (a ghost bijection with
    [0, used_count), as FRM-2 counts)."""
    f, i = z3.Consts("f i", ADDR)
    return z3.Implies(s.booted, z3.And(
        s.total == s.nframes, s.used_count + s.free_count == s.total,
        0 <= s.used_count, 0 <= s.free_count,
        z3.ForAll([f], z3.Implies(s.used[f], z3.And(
            0 <= s.rank[f], s.rank[f] < s.used_count, s.unrank[s.rank[f]] == f))),
        z3.ForAll([i], z3.Implies(z3.And(0 <= i, i < s.used_count), z3.And(
            s.used[s.unrank[i]], s.rank[s.unrank[i]] == i)))))


def sys_3(s: SystemState) -> Ref:
    """SYS-3: the frames of the first MB (DOS conventional memory, UMBs, the
    BIOS area) stay reserved: the PageManager never hands them out."""
    f = z3.Const("f", ADDR)
    return z3.Implies(s.booted, z3.And(
        s.low_end == LOW_FRAMES, s.low_end <= s.nframes,
        z3.ForAll([f], z3.Implies(z3.And(0 <= f, f < s.low_end), s.owner[f] == RESERVED))))


INVARIANTS = {"SYS-1": sys_1, "SYS-2": sys_2, "SYS-3": sys_3}


# -- steps -----------------------------------------------------------------------

def system_step(pre: SystemState, code: Ref, post: SystemState) -> SystemStep:
    return guarded(pre, code, post, ite_system)


def TakeFrame(s: SystemState, frame: Ref, kind: Ref) -> SystemStep:
    """A manager takes a free frame for itself (kind: directory ... held); the
    allocator checks its free count first, as the PageManager does."""
    code = status((z3.Not(s.booted), E.ERROR_NOT_READY),
                  (z3.Not(z3.And(kind >= TAKEN_KINDS.start, kind < TAKEN_KINDS.stop)),
                   E.ERROR_INVALID_PARAMETER),
                  (s.free_count == 0, E.ERROR_NOT_ENOUGH_MEMORY),
                  (z3.Not(z3.And(in_memory(s, frame), z3.Not(s.used[frame]))),
                   E.ERROR_NOT_ENOUGH_MEMORY))
    post = s.but(used=z3.Store(s.used, frame, True), owner=z3.Store(s.owner, frame, kind),
                 used_count=s.used_count + 1, free_count=s.free_count - 1,
                 rank=z3.Store(s.rank, frame, s.used_count),
                 unrank=z3.Store(s.unrank, s.used_count, frame))
    return system_step(s, code, post)


def ReleaseFrame(s: SystemState, frame: Ref, kind: Ref) -> SystemStep:
    """A manager gives back a frame it owns; reserved frames are never given."""
    code = status((z3.Not(s.booted), E.ERROR_NOT_READY),
                  (z3.Not(z3.And(kind >= TAKEN_KINDS.start, kind < TAKEN_KINDS.stop)),
                   E.ERROR_INVALID_PARAMETER),
                  (z3.Not(z3.And(in_memory(s, frame), s.owner[frame] == kind)),
                   E.ERROR_INVALID_ADDRESS))
    last = s.unrank[s.used_count - 1]
    post = s.but(used=z3.Store(s.used, frame, False), owner=z3.Store(s.owner, frame, NONE),
                 used_count=s.used_count - 1, free_count=s.free_count + 1,
                 rank=z3.Store(s.rank, last, s.rank[frame]),
                 unrank=z3.Store(s.unrank, s.rank[frame], last))
    return system_step(s, code, post)


def InitializeMemorySubsystem(s: SystemState, nframes: Ref, reserved_end: Ref) -> SystemStep:
    """Boot: frames [0, reserved_end) reserved, the rest free; reserved_end
    covers the first MB (kernel_end >= 1 MB) and leaves free memory."""
    f = z3.Const("f", ADDR)
    code = status((s.booted, E.ERROR_ALREADY_INITIALIZED),
                  (z3.Not(z3.And(LOW_FRAMES <= reserved_end, reserved_end < nframes)),
                   E.ERROR_INVALID_PARAMETER))
    below = z3.And(0 <= f, f < reserved_end)
    post = s.but(booted=z3.BoolVal(True), nframes=nframes, low_end=z3.IntVal(LOW_FRAMES),
                 used=z3.Lambda([f], below),
                 owner=z3.Lambda([f], z3.If(below, z3.IntVal(RESERVED), z3.IntVal(NONE))),
                 total=nframes, used_count=reserved_end, free_count=nframes - reserved_end,
                 rank=z3.Lambda([f], f), unrank=z3.Lambda([f], f))
    return system_step(s, code, post)


# -- calls that change no frame ---------------------------------------------------

def report(s: SystemState, frames: Ref) -> SystemStep:
    """A statistics call: bytes (frames x 4096), no change; ERROR_NOT_READY
    before boot (the model reports 0 then)."""
    return guarded(s, status((z3.Not(s.booted), E.ERROR_NOT_READY)), s, ite_system,
                   frames * PAGE_SIZE, z3.IntVal(0))


def GetTotalMemory(s: SystemState) -> SystemStep:
    return report(s, s.total)


def GetUsedMemory(s: SystemState) -> SystemStep:
    return report(s, s.used_count)


def GetAvailableMemory(s: SystemState) -> SystemStep:
    return report(s, s.free_count)


def EnablePaging(s: SystemState) -> SystemStep:
    """Loads CR3 and sets CR0.PG: no frame changes hands."""
    return guarded(s, status((z3.Not(s.booted), E.ERROR_NOT_READY)), s, ite_system)
