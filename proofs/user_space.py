"""Obligations of user address spaces (spec/user_space.py): every call x
USR-1..4, PROT-2, PROT-3, and PROT-1 as a claim on Access.

The seed's ProcessMemorySpace calls are proved through the steps they are
made of (AllocUserMemory is VirtualAlloc reserve+commit, ResizeUserHeap and
brk are BrkGrow or BrkShrink, ...). Reachable states are built by running the
spec's own steps with concrete arguments from the empty state, so a broken
variant's counterexample comes from a state the spec reaches.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import z3

from proofs.inductive.layered import Layer, layer_obligations
from proofs.obligation import Obligation
from spec import user_space as us
from spec.abi import PAGE_EXECUTE, PAGE_NOACCESS, PAGE_READONLY, PAGE_READWRITE
from spec.catalogue import Operation
from spec.state import Ref
from spec.user_space import UserState

INT, BOOL = z3.IntSort(), z3.BoolSort()
FRAMES = z3.ArraySort(INT, INT)
_US = "user_space"
PID, FIRST, COUNT, PROTECT = ("pid", INT), ("first", INT), ("count", INT), ("protect", INT)
CHOICE = (("pick", FRAMES), ("pinv", FRAMES), ("oom", BOOL))
RANGE = (PID, FIRST, COUNT)

USER_OPERATIONS = (
    Operation("CreateProcess", _US, us.CreateProcess,
              (PID, ("image_base", INT), ("image_pages", INT), ("image_protect", INT),
               ("heap_start", INT), ("heap_max", INT), ("stack_top", INT),
               ("stack_reserve", INT), ("stack_size", INT), *CHOICE)),
    Operation("InitializeUserSpace", _US, us.CreateProcess, (), parts=("CreateProcess",)),
    Operation("DestroyProcess", _US, us.DestroyProcess, (PID,)),
    Operation("DestroyUserSpace", _US, us.DestroyProcess, (), parts=("DestroyProcess",)),
    Operation("VirtualAllocReserve", _US, us.VirtualAllocReserve, (*RANGE, PROTECT)),
    Operation("VirtualAllocCommit", _US, us.VirtualAllocCommit, (*RANGE, PROTECT, *CHOICE)),
    Operation("VirtualAllocReserveCommit", _US, us.VirtualAllocReserveCommit,
              (*RANGE, PROTECT, *CHOICE)),
    Operation("VirtualAllocReset", _US, us.VirtualAllocReset, (*RANGE, PROTECT)),
    Operation("VirtualFreeDecommit", _US, us.VirtualFreeDecommit, RANGE),
    Operation("VirtualFreeRelease", _US, us.VirtualFreeRelease, (PID, ("base", INT))),
    Operation("VirtualProtect", _US, us.VirtualProtect, (*RANGE, PROTECT)),
    Operation("VirtualQuery", _US, us.VirtualQuery, (PID, ("vpn", INT))),
    Operation("Mmap", _US, us.Mmap, (*RANGE, PROTECT, *CHOICE)),
    Operation("MmapFixed", _US, us.MmapFixed, (*RANGE, PROTECT, *CHOICE)),
    Operation("Munmap", _US, us.Munmap, RANGE),
    # proved through MprotectApplied: its success covers the stop at a hole too
    Operation("Mprotect", _US, us.Mprotect, (), parts=("MprotectApplied",)),
    Operation("MprotectApplied", _US, us.MprotectApplied, (*RANGE, PROTECT, ("stop", INT)),
              internal=True),
    Operation("BrkGrow", _US, us.BrkGrow, (PID, ("new_end", INT), *CHOICE), internal=True),
    Operation("BrkShrink", _US, us.BrkShrink, (PID, ("new_end", INT)), internal=True),
    Operation("Brk", _US, us.BrkGrow, (), parts=("BrkGrow", "BrkShrink")),
    Operation("ResizeUserHeap", _US, us.BrkGrow, (), parts=("BrkGrow", "BrkShrink")),
    Operation("AllocUserMemory", _US, us.VirtualAllocReserveCommit, (),
              parts=("VirtualAllocReserveCommit",)),
    Operation("FreeUserMemory", _US, us.VirtualFreeRelease, (),
              parts=("VirtualFreeDecommit", "VirtualFreeRelease")),
    Operation("MapUserMemory", _US, us.VirtualAllocReserveCommit, (),
              parts=("VirtualAllocReserveCommit", "VirtualAllocCommit")),
    Operation("UnmapUserMemory", _US, us.VirtualFreeRelease, (),
              parts=("VirtualFreeDecommit", "VirtualFreeRelease")),
    Operation("Access", _US, us.Access, (PID, ("vpn", INT), ("kind", INT))),
    # SystemCalls.CreateProcess = CreateProcess, then ProcessHeapCreate
    Operation("ProcessHeapCreate", _US, us.ProcessHeapCreate,
              (*RANGE, ("committed_pages", INT), *CHOICE)),
    Operation("ProcessHeapGrow", _US, us.ProcessHeapGrow, (*RANGE, *CHOICE), internal=True),
    Operation("ProcessHeapShrink", _US, us.ProcessHeapShrink, RANGE, internal=True),
    Operation("SyscallHeapAlloc", _US, us.ProcessHeapGrow, (), parts=("ProcessHeapGrow",)),
    Operation("SyscallHeapFree", _US, us.ProcessHeapShrink, (), parts=("ProcessHeapShrink",)),
    # a HeapReAlloc grows the heap (the new block), shrinks it (the old block freed) or
    # leaves its pages (in place, or a new block from a hole): spec/user_space.py
    Operation("SyscallHeapReAlloc", _US, us.ProcessHeapGrow, (),
              parts=("ProcessHeapGrow", "ProcessHeapShrink", "SyscallHeapSize")),
    Operation("SyscallHeapSize", _US, us.ProcessHeapSize, (PID,)),
)


def show(model: z3.ModelRef, pre: UserState) -> str:
    def value(term: Ref) -> str:
        return str(model.eval(term, model_completion=True))

    return f"nframes {value(pre.nframes)}"


# -- reachable states ---------------------------------------------------------------

def _i(value: int) -> Ref:
    return z3.IntVal(value)


def _frames(first_vpn: int, first_frame: int) -> tuple[Ref, Ref]:
    """pick[v] = v - first_vpn + first_frame and its inverse."""
    v = z3.Int("_v")
    return (z3.Lambda([v], v - first_vpn + first_frame),
            z3.Lambda([v], v - first_frame + first_vpn))


IMAGE, HEAP, HEAP_MAX, STACK_TOP = 0x400, 0x410, 0x420, 0x500


@functools.cache
def user_states() -> list[tuple[str, UserState]]:
    """A process with its image, stack, a brk heap of two pages, a VirtualAlloc
    reservation with a committed READONLY and a NOACCESS page, an
    EXECUTE page, and an mmap of three READWRITE pages; then the same
    after munmap of the mmap's middle page, and a second process; and the
    first process's heap (ProcessHeapCreate), for the heap's own steps."""
    no = z3.BoolVal(False)
    s = us.empty_user(64)
    # the image's page takes frame 1, the two stack pages frames 2 and 3
    s = _ok(us.CreateProcess(s, _i(1), _i(IMAGE), _i(1), _i(PAGE_READONLY), _i(HEAP),
                             _i(HEAP_MAX), _i(STACK_TOP), _i(16), _i(2),
                             *_frames_for(IMAGE, 1, STACK_TOP - 2, 2), no))
    s = _ok(us.BrkGrow(s, _i(1), _i(HEAP + 2), *_frames(HEAP, 4), no))
    s = _ok(us.VirtualAllocReserve(s, _i(1), _i(0x440), _i(4), _i(PAGE_READWRITE)))
    s = _ok(us.VirtualAllocCommit(s, _i(1), _i(0x440), _i(1), _i(PAGE_READONLY),
                                  *_frames(0x440, 6), no))
    s = _ok(us.VirtualAllocCommit(s, _i(1), _i(0x441), _i(1), _i(PAGE_NOACCESS),
                                  *_frames(0x441, 7), no))
    s = _ok(us.VirtualAllocReserveCommit(s, _i(1), _i(0x450), _i(1), _i(PAGE_EXECUTE),
                                         *_frames(0x450, 8), no))
    s = _ok(us.Mmap(s, _i(1), _i(0x460), _i(3), _i(PAGE_READWRITE), *_frames(0x460, 9), no))
    one = s
    split = _ok(us.Munmap(s, _i(1), _i(0x461), _i(1)))
    two = _ok(us.CreateProcess(split, _i(2), _i(IMAGE), _i(1), _i(PAGE_READWRITE), _i(HEAP),
                               _i(HEAP_MAX), _i(STACK_TOP), _i(16), _i(1),
                               *_frames_for(IMAGE, 20, STACK_TOP - 1, 21), no))
    # the first process's heap (HeapCreate): four pages at a 64 KB boundary, two committed
    heap = _ok(us.ProcessHeapCreate(two, _i(1), _i(0x480), _i(4), _i(2), *_frames(0x480, 30),
                                    no))
    return [("one process with every kind of page", one),
            ("an mmap split by munmap", split), ("two processes", two),
            ("two processes, the first with a process heap", heap)]


def _frames_for(image: int, image_frame: int, stack: int, stack_frame: int) -> tuple[Ref, Ref]:
    v = z3.Int("_v")
    pick = z3.Lambda([v], z3.If(v == image, image_frame, v - stack + stack_frame))
    pinv = z3.Lambda([v], z3.If(v == image_frame, image, v - stack_frame + stack))
    return pick, pinv


def _ok(step: us.UserStep) -> UserState:
    """The successor of a step that must succeed (its arguments are concrete)."""
    solver = z3.Solver()
    solver.add(z3.Not(z3.And(step.ok, step.assume)))
    assert solver.check() == z3.unsat, "a reachable state's step failed"
    return step.changed


#: The invariants each claim's preservation leans on (tried first, alone).
SUPPORT = {"USR-1": ("USR-1", "USR-4"), "USR-2": ("USR-1", "USR-2"),
           "USR-3": ("USR-1", "USR-3"), "USR-4": ("USR-1", "USR-4"),
           "PROT-2": ("USR-2", "PROT-2"), "PROT-3": ("USR-1", "PROT-3")}

#: The seed's names for steps proved under their own names in the quick profile.
ALIASES = ("InitializeUserSpace", "DestroyUserSpace", "ResizeUserHeap", "AllocUserMemory",
           "FreeUserMemory", "MapUserMemory", "UnmapUserMemory")
#: 0.9 s or more in a quick run (jobs 1, shared machine, 2026-11-29), and the
#: aliases above: the full profile proves them, the quick one stays CI-sized.
FULL_ONLY = frozenset({
    *(f"{_US}.{name}.{claim}" for name in ALIASES for claim in us.INVARIANTS),
    *(f"{_US}.{name}" for name in (
        "VirtualAllocReserve.USR-4", "VirtualAllocCommit.USR-1", "VirtualAllocCommit.USR-4",
        "VirtualAllocReserveCommit.USR-1", "VirtualFreeDecommit.USR-1", "VirtualProtect.USR-1",
        "Mmap.USR-1", "Mmap.USR-4", "MmapFixed.USR-4", "Munmap.USR-1", "Munmap.USR-4",
        "Mprotect.USR-1",
        "Brk.USR-1", "Brk.USR-4", "Access.USR-1",
        # 0.7-1.5 s in the full profile (2026-11-29)
        "ProcessHeapCreate.USR-1", "SyscallHeapAlloc.USR-1", "SyscallHeapFree.USR-1",
        "SyscallHeapReAlloc.USR-1",
        # 0.75-8 s in an idle quick run of the whole project (2026-11-29)
        "Brk.PROT-3", "MmapFixed.USR-1", "MmapFixed.USR-3", "VirtualAllocReserve.USR-1",
        "VirtualFreeRelease.USR-1",
        # 0.4 s alone, 16.7 s and 48.7 s in whole quick runs (a worker's earlier queries
        # slow z3 down on it; 2026-11-29, after issue 5 changed the order)
        "Munmap.USR-3")),
})

LAYER = Layer(_US, us.symbolic_user, us.INVARIANTS, USER_OPERATIONS, support=SUPPORT,
              step_claims=us.STEP_CLAIMS, full_only=FULL_ONLY, show=show,
              reachable=user_states)


def obligations() -> Iterator[Obligation]:
    return layer_obligations(LAYER)
