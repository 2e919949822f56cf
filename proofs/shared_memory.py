"""Obligations of shared memory and mapped files (spec/shared_memory.py):
every call (VirtualProtect, VirtualAlloc(MEM_COMMIT) and SyscallMprotect on view
pages included) x
VMM-1, SHM-1..3, MMF-1..2, and the step claims SHM-2D
(DestroySharedMemory), SHM-2U (UnmapSharedMemoryFromProcess), MMF-1S
(SyncMappedFile), MMF-1U (UnmapFileFromMemory), SHM-2M and MMF-1M
(SyscallMunmap: munmap over part of a view, which splits it) and MMF-2W (Write), all
unbounded: reference counts are slot bijections, so no proof counts.

z3 is helped by ground instances of the invariants at the pages, frames,
slots and source pages a step touches (``ground``, tried first: a ground
query is decided in milliseconds when they suffice), then by the invariants
each claim leans on, then by all. Process exit (SystemCalls.DestroyProcess)
is proved through the unmaps it is made of. Reachable states are built by
running the spec's own steps with concrete arguments, so a broken variant's
counterexample comes from a state the spec reaches.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator

import z3

from proofs.inductive.layered import Layer, layer_obligations
from proofs.inductive.paging import conjuncts
from proofs.obligation import Obligation
from spec import shared_memory as sm
from spec.abi import PAGE_READONLY, PAGE_READWRITE
from spec.catalogue import Operation
from spec.shared_memory import FileView, SharedState
from spec.state import Ref

INT, BOOL = z3.IntSort(), z3.BoolSort()
FRAMES = z3.ArraySort(INT, INT)
_SM = "shared_memory"
PID, BASE, SHM_ID, SPACE = ("pid", INT), ("base", INT), ("shm_id", INT), ("space", INT)
CHOICE = (("pick", FRAMES), ("pinv", FRAMES), ("oom", BOOL))

SHARED_OPERATIONS = (
    Operation("CreateSharedMemory", _SM, sm.CreateSharedMemory,
              (("size", INT), ("permissions", INT), SHM_ID, *CHOICE)),
    Operation("MapSharedMemoryToProcess", _SM, sm.MapSharedMemoryToProcess,
              (PID, SPACE, SHM_ID, BASE, ("protect", INT), ("placed", BOOL),
               ("occupied", BOOL), ("oom", BOOL))),
    Operation("UnmapSharedMemoryFromProcess", _SM, sm.UnmapSharedMemoryFromProcess,
              (PID, BASE, SPACE)),
    Operation("DestroySharedMemory", _SM, sm.DestroySharedMemory, (SHM_ID,)),
    Operation("GetSharedMemorySize", _SM, sm.GetSharedMemorySize, (SHM_ID,)),
    Operation("MapFileToMemory", _SM, sm.MapFileToMemory,
              (PID, ("file", INT), ("first", INT), ("count", INT), ("protect", INT), BASE,
               ("occupied", BOOL), *CHOICE, SPACE)),
    Operation("UnmapFileFromMemory", _SM, sm.UnmapFileFromMemory, (PID, BASE, SPACE)),
    Operation("SyscallMunmap", _SM, sm.SyscallMunmap,
              (PID, ("vpn", INT), ("count", INT), SPACE)),
    Operation("SyncMappedFile", _SM, sm.SyncMappedFile,
              (PID, BASE, ("invalidate", BOOL), SPACE)),
    Operation("Write", _SM, sm.Write, (PID, ("vpn", INT), ("token", INT))),
    Operation("Read", _SM, sm.Read, (PID, ("vpn", INT))),
    Operation("VirtualProtect", _SM, sm.VirtualProtect,
              (PID, ("vpn", INT), ("count", INT), ("protect", INT))),
    Operation("VirtualAlloc", _SM, sm.VirtualAlloc,
              (PID, ("vpn", INT), ("count", INT), ("protect", INT))),
    Operation("SyscallMprotect", _SM, sm.SyscallMprotect,
              (PID, ("vpn", INT), ("count", INT), ("protect", INT))),
    # process exit: every view unmapped (file views written back)
    Operation("DestroyProcess", _SM, sm.UnmapSharedMemoryFromProcess, (),
              parts=("UnmapSharedMemoryFromProcess", "UnmapFileFromMemory")),
)


def show(model: z3.ModelRef, pre: SharedState) -> str:
    return f"nframes {model.eval(pre.nframes, model_completion=True)}"


# -- reachable states -------------------------------------------------------------------

def _i(value: int) -> Ref:
    return z3.IntVal(value)


def _frames(first_index: int, first_frame: int) -> tuple[Ref, Ref]:
    """pick[k] = k - first_index + first_frame and its inverse."""
    k = z3.Int("_k")
    return (z3.Lambda([k], k - first_index + first_frame),
            z3.Lambda([k], k - first_frame + first_index))


def _ok(step: sm.SharedStep) -> SharedState:
    """The successor of a step that must succeed (its arguments are concrete)."""
    solver = z3.Solver()
    solver.add(z3.Not(z3.And(step.ok, step.assume)))
    assert solver.check() == z3.unsat, "a reachable state's step failed"
    return step.changed


FILES = {1: FileView(3, True, {0: 11, 1: 12, 2: 13}), 2: FileView(1, False, {0: 21})}


@functools.cache
def shared_states() -> list[tuple[str, SharedState]]:
    """Block 1 (two pages) mapped read-write by pid 1 and read-only by pid 2,
    and written; block 2 (one page, read-only) mapped by pid 1; file 1 mapped
    whole by pid 1 and its pages 1..2 by pid 2, page 2 written (dirty); file 2
    (read-only) mapped by pid 2. Then block 1 destroyed while mapped; then
    pid 2's views of block 1 and file 1 gone and pid 1's file view synced. And,
    from the first, block 3 (three pages) mapped by pids 1 and 2 and pid 1's
    view cut by munmap in its middle (two pieces), pid 1's file view cut in its middle and pid 1's
    view of block 1 cut at its front (issue 15's pieces)."""
    no, yes, rw, ro = z3.BoolVal(False), z3.BoolVal(True), _i(PAGE_READWRITE), _i(PAGE_READONLY)
    s = sm.concrete_shared({}, FILES, {}, {}, {}, {}, 64)
    s = _ok(sm.CreateSharedMemory(s, _i(8192), rw, _i(1), *_frames(0, 10), no))
    s = _ok(sm.MapSharedMemoryToProcess(s, _i(1), _i(0), _i(1), _i(0x500), rw, no, no, no))
    s = _ok(sm.MapSharedMemoryToProcess(s, _i(2), _i(0), _i(1), _i(0x600), ro, yes, no, no))
    s = _ok(sm.Write(s, _i(1), _i(0x501), _i(7)))
    s = _ok(sm.CreateSharedMemory(s, _i(100), ro, _i(2), *_frames(0, 12), no))
    s = _ok(sm.MapSharedMemoryToProcess(s, _i(1), _i(0), _i(2), _i(0x510), ro, no, no, no))
    s = _ok(sm.MapFileToMemory(s, _i(1), _i(1), _i(0), _i(3), rw, _i(0x700), no,
                               *_frames(0, 20), no))
    s = _ok(sm.MapFileToMemory(s, _i(2), _i(1), _i(1), _i(2), ro, _i(0x700), no,
                               *_frames(0, 40), no))
    s = _ok(sm.Write(s, _i(1), _i(0x702), _i(9)))
    s = _ok(sm.MapFileToMemory(s, _i(2), _i(2), _i(0), _i(1), ro, _i(0x710), no,
                               *_frames(0, 23), no))
    mapped = s
    s = _ok(sm.DestroySharedMemory(s, _i(1)))
    destroyed = s
    s = _ok(sm.UnmapSharedMemoryFromProcess(s, _i(2), _i(0x600)))
    s = _ok(sm.UnmapFileFromMemory(s, _i(2), _i(0x700)))
    s = _ok(sm.SyncMappedFile(s, _i(1), _i(0x700), no))
    p = _ok(sm.CreateSharedMemory(mapped, _i(12288), rw, _i(3), *_frames(0, 50), no))
    p = _ok(sm.MapSharedMemoryToProcess(p, _i(1), _i(0), _i(3), _i(0x520), rw, no, no, no))
    p = _ok(sm.MapSharedMemoryToProcess(p, _i(2), _i(0), _i(3), _i(0x620), rw, no, no, no))
    p = _ok(sm.SyscallMunmap(p, _i(1), _i(0x521), _i(1)))
    p = _ok(sm.SyscallMunmap(p, _i(1), _i(0x701), _i(1)))
    p = _ok(sm.SyscallMunmap(p, _i(1), _i(0x500), _i(1)))
    # the non-vacuity witness tries the last first: the pieces' lambdas take z3 longer
    return [("two processes sharing blocks and files", mapped),
            ("a destroyed block still mapped", destroyed),
            ("views cut into pieces by munmap", p),
            ("one process left with the destroyed block and a synced file", s)]


# -- ground instances ---------------------------------------------------------------------

#: The steps that remove mappings (more ground terms: a frame's slot 0, each page's
#: piece base) or change a block's slots (its last and next slot).
UNMAPS = frozenset({"UnmapSharedMemoryFromProcess", "UnmapFileFromMemory", "SyscallMunmap"})
#: The role of a witness or argument, by its name (w3.p, MapFileToMemory.pid).
ROLES = {"p": "pid", "pid": "pid", "v": "vpn", "w": "vpn", "vpn": "vpn", "base": "vpn",
         "fr": "frame", "i": "slot", "b": "block", "shm_id": "block", "f": "file",
         "g": "file", "file": "file", "k": "index", "first": "index", "j": "bslot"}
#: The prefix of a goal's witness constants (proofs.inductive.paging.skolemize).
WITNESS = re.compile(r"w\d+")
Terms = tuple[Ref, ...]


class _Pool:
    """Tuples of terms by kind (page, frame, slot, source, block, triple), deduplicated."""

    def __init__(self) -> None:
        self.terms: dict[str, dict[tuple[int, ...], Terms]] = {}

    def add(self, kind: str, *term: Ref) -> None:
        self.terms.setdefault(kind, {})[tuple(t.get_id() for t in term)] = term

    def get(self, kind: str) -> list[Terms]:
        return list(self.terms.get(kind, {}).values())


def _named(terms: list[Ref]) -> dict[str, list[tuple[str, Ref]]]:
    """The Int constants among terms, grouped by the prefix of their name, as
    (role, term)."""
    groups: dict[str, list[tuple[str, Ref]]] = {}
    for term in terms:
        if term.sort() != INT or not z3.is_const(term):
            continue
        prefix, _, name = str(term).rpartition(".")
        if name in ROLES:
            groups.setdefault(prefix, []).append((ROLES[name], term))
    return groups


def ground_pools(pre: SharedState, terms: list[Ref]) -> _Pool:
    """Pages (pid, vpn), frames, slots (frame, i), source pages (block or
    file, index), blocks and view triples (pid, base, vpn) a step touches:
    the witnesses and arguments; the frames and slots of their pages, each
    frame's last slot; the pages those slots hold and each frame's page in
    the view the step adds or removes; then those pages' frames, slots and
    source pages, and the source pages' frames."""
    pool = _Pool()
    groups = _named(terms)
    step, args = next(((prefix, dict(named)) for prefix, named in groups.items()
                       if not WITNESS.fullmatch(prefix)), ("", {}))
    unmaps = step in UNMAPS
    for named in groups.values():
        roles = dict(named)
        pid = roles.get("pid", args.get("pid"))
        vpns = [term for role, term in named if role == "vpn"]
        if pid is not None:
            for vpn in vpns:
                pool.add("page", pid, vpn)
            if len(vpns) == 2:
                pool.add("triple", pid, *vpns)
        for role in ("frame", "block"):
            if role in roles:
                pool.add(role, roles[role])
        if "frame" in roles and "slot" in roles:
            pool.add("slot", roles["frame"], roles["slot"])
        if "block" in roles and "bslot" in roles:
            pool.add("bslot", roles["block"], roles["bslot"])
        for source in (roles.get("block"), roles.get("file")):
            if source is not None and "index" in roles:
                pool.add("source", source, roles["index"])
    pid, base = args.get("pid"), args.get("vpn")
    first = args.get("index", z3.IntVal(0))
    source_arg = args.get("block", args.get("file"))
    for p, v in pool.get("page"):
        pool.add("frame", pre.vframe[p, v])
    for (fr,) in pool.get("frame"):
        pool.add("slot", fr, pre.refs[fr] - 1)
        if unmaps:  # a second mapping of fr would be in the piece unmapped too
            pool.add("slot", fr, z3.IntVal(0))
        if pid is not None and base is not None:
            pool.add("page", pid, base + pre.idx[fr] - pre.vidx[pid, base])
            pool.add("page", pid, base + pre.idx[fr] - first)
    for fr, i in pool.get("slot"):
        pool.add("page", pre.slot_pid[fr, i], pre.slot_vpn[fr, i])
    for p, v in pool.get("page"):
        pool.add("frame", pre.vframe[p, v])
        pool.add("slot", pre.vframe[p, v], pre.vslot[p, v])
        if unmaps:
            pool.add("triple", p, v, pre.vbase[p, v])
        pool.add("source", pre.vsrc[p, v], pre.vidx[p, v])
        pool.add("block", pre.vsrc[p, v])
        if base is not None:
            pool.add("triple", p, base, v)
            if source_arg is not None:
                pool.add("source", source_arg, first + v - base)
    for (fr,) in pool.get("frame"):
        pool.add("source", pre.src[fr], pre.idx[fr])
        pool.add("block", pre.src[fr])
    for source, k in pool.get("source"):
        pool.add("frame", pre.bframe[source, k])
        pool.add("frame", pre.cframe[source, k])
    # block slots: each page's piece's, each block's last and next
    if step not in UNMAPS | {"MapSharedMemoryToProcess"}:
        return pool
    for p, v in pool.get("page"):
        pool.add("bslot", pre.vsrc[p, v], pre.vbslot[p, v])
    for (b,) in pool.get("block"):
        pool.add("bslot", b, pre.brefs[b] - 1)
        pool.add("bslot", b, pre.brefs[b])
    return pool


#: The pool each shape of quantifier (its variables' names) is instantiated at.
SHAPES = {("p", "v"): "page", ("p", "v", "w"): "triple", ("b", "k"): "source",
          ("f", "k"): "source", ("b",): "block", ("fr",): "frame", ("fr", "i"): "slot",
          ("b", "j"): "bslot"}


def ground(pre: SharedState, invariants: Ref, terms: list[Ref]) -> list[Ref]:
    """Instances of the quantified invariants at the pools of ground_pools, by
    the names of their variables (SHAPES); the ground conjuncts as they are."""
    pool = ground_pools(pre, terms)
    out: list[Ref] = []
    for part in conjuncts(invariants):
        if not (z3.is_quantifier(part) and part.is_forall()):
            out.append(part)
            continue
        names = tuple(part.var_name(n) for n in range(part.num_vars()))
        kind = SHAPES.get(names)
        for combo in [] if kind is None else pool.get(kind):
            out.append(z3.substitute_vars(part.body(), *reversed(combo)))
    return out


#: The invariants each claim's preservation leans on (tried first, alone).
SUPPORT = {"VMM-1": ("VMM-1", "SHM-1", "SHM-2"), "SHM-1": ("VMM-1", "SHM-1", "SHM-2"),
           "SHM-2": ("VMM-1", "SHM-1", "SHM-2"), "SHM-3": ("VMM-1", "SHM-2", "SHM-3"),
           "MMF-1": ("VMM-1", "MMF-1", "MMF-2"), "MMF-2": ("VMM-1", "MMF-2")}

#: Process exit (proved through the unmaps, themselves in the quick profile) and
#: 1 s or more in a quick run (jobs 1, shared machine, 2026-11-29: 1.01 and 1.13 s):
#: the full profile proves them, the quick one stays CI-sized.
FULL_ONLY = frozenset({
    *(f"{_SM}.DestroyProcess.{claim}" for claim in sm.INVARIANTS),
    f"{_SM}.MapSharedMemoryToProcess.VMM-1", f"{_SM}.MapFileToMemory.VMM-1",
})

LAYER = Layer(_SM, sm.symbolic_shared, sm.INVARIANTS, SHARED_OPERATIONS, support=SUPPORT,
              ground=ground, step_claims=sm.STEP_CLAIMS, full_only=FULL_ONLY, show=show,
              reachable=shared_states)


def obligations() -> Iterator[Obligation]:
    return layer_obligations(LAYER)
