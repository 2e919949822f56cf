"""The sequential specification: the model, its replies matched, its objects.

:class:`SequentialSpec` answers the one question the search asks: from a
state, can this call take effect with the reply it got, and into which
states? The answer comes from running the model (proofs/concurrency/world.py)
on a private copy of the state, and is cached per (state key, operation,
reply): a search meets the same transition many times, the model runs once.

Matching (docs/concurrency.md, "Matching replies"):

- ``Matching.STRICT``: the reply must equal the model's, result and error.
- ``Matching.ANY_FREE_FRAME``: as strict, except that a successful
  RequestFrame may return any frame that is free at its linearization point:
  the model takes the lowest (model/page_manager.py, ``FirstFreeFrame``, the
  tutorial's first_frame), the seed's spec any free one, and a concurrent
  allocator (per-CPU free lists, an atomic bitmap scanned from a per-thread
  cursor) rarely the lowest. The state that follows is the model's with the
  frame renamed: the frame the model took released, the one returned claimed
  as held, both with the PageManager's own helpers (release_frame,
  claim_frame). A pending RequestFrame, whose frame nobody saw, may have taken
  any free frame: the search tries each free frame the history names (in a
  reply or a FreeFrame argument) and one frame it does not name (any other is
  the same to every reply: the history cannot tell them apart). A FrameBitmap
  observation must then show as used every frame a caller holds (one the
  history names that the model has HELD), and as many used frames in all as
  the model: the other used frames are the managers' own (the directory, page
  tables, heap pages), which an implementation may take from any free frame
  too (spec mode allows it: proofs/oracle/PROTOCOL.md, "Modes"), a frame a
  caller freed included, so which they are is not compared (an allocator
  taking the highest frame first, the C fixture's HIGHEST_FRAME, passes).
  For the same reason a failed FreeFrame of a frame that is neither reserved
  nor held by a caller may fail as free (ERROR_INVALID_BLOCK) or as a
  manager's (ERROR_BUSY) whichever the model says: the implementation's heap
  may have grown into a frame a caller freed, the model's into another.

Everything else (heap, pool, shared-memory results) is strict: their
placement is the seed's rule (smallest hole, LIFO free list, lowest id), which
the oracle's strict mode already holds implementations to.

Objects (P-compositionality, docs/concurrency.md, "Independent objects"):
``footprint(op)`` names the objects a call may read or change; calls whose
footprints are disjoint commute and never see each other's effects.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from enum import Enum

from proofs.concurrency.world import OBSERVE, Op, Reply, Snapshot, World
from spec.abi import NO_FRAME, PAGE_SHIFT, ErrorCode, FrameOwner

_HELD = int(FrameOwner.HELD)
_FREE = int(FrameOwner.FREE)
_RESERVED = int(FrameOwner.RESERVED)
_BUSY = int(ErrorCode.ERROR_BUSY)
_INVALID_BLOCK = int(ErrorCode.ERROR_INVALID_BLOCK)
_SUCCESS = int(ErrorCode.ERROR_SUCCESS)


#: At most this many spare worlds are kept (each a thawed copy of a state).
SPARE_WORLDS = 64


class Matching(Enum):
    """How an implementation's reply is matched against the model's."""

    STRICT = "strict"
    ANY_FREE_FRAME = "any-free-frame"


class SequentialSpec:
    """The model as a sequential specification, with a transition cache."""

    def __init__(self, world: World, matching: Matching = Matching.STRICT) -> None:
        self.matching = matching
        self._snapshots: dict[Hashable, Snapshot] = {}
        self.initial = self._intern(world.snapshot())
        #: Whether KernelHeap calls may take or return frames: an Alloc expands
        #: below max_address, a Free contracts down to min_size (model/kernel_heap.py);
        #: a heap at both bounds maps the same pages whatever is called.
        heap = world.heap
        self.heap_uses_frames = (heap.max_address > heap.end_address
                                 or heap.end_address - heap.start_address > heap.min_size)
        self.named_frames: frozenset[int] = frozenset()
        self._transitions: dict[tuple[Hashable, Op, Reply | None], tuple[Snapshot, ...]] = {}
        self._expected: dict[tuple[Hashable, Op], Reply] = {}
        self._spare: dict[Hashable, World] = {}
        #: How often the model ran (cache misses): the search's real cost.
        self.model_runs = 0

    def name_frames(self, ops: Iterable[tuple[Op, Reply | None]]) -> None:
        """Remember the frames a history names (for pending RequestFrame calls)."""
        named = set(self.named_frames)
        for op, reply in ops:
            if op.manager != "PageManager":
                continue
            if op.name == "FreeFrame" and op.args and type(op.args[0]) is int:
                named.add(op.args[0] >> PAGE_SHIFT)
            elif op.name == "RequestFrame" and reply is not None and type(reply[0]) is int \
                    and reply[0] != NO_FRAME:
                named.add(reply[0] >> PAGE_SHIFT)
        self.named_frames = frozenset(named)
        self._transitions = {k: v for k, v in self._transitions.items()
                             if k[2] is not None and k[1].name != "FrameBitmap"}

    # -- the search's questions ---------------------------------------------------

    def outcomes(self, state: Snapshot, op: Op, reply: Reply | None) -> tuple[Snapshot, ...]:
        """The states op can leave when it takes effect in state answering reply
        (None: pending, any reply); empty when the reply is impossible there."""
        cache_key = (state.key, op, reply)
        found = self._transitions.get(cache_key)
        if found is None:
            found = self._transitions[cache_key] = self._run(state, op, reply)
        return found

    def expected(self, state: Snapshot, op: Op) -> Reply:
        """The model's own reply to op in state."""
        cache_key = (state.key, op)
        found = self._expected.get(cache_key)
        if found is None:
            self.model_runs += 1
            world = self._thaw(state)
            found = self._expected[cache_key] = world.apply(op)
            if world.key() == state.key:
                self._keep(world, state.key)
        return found

    def footprint(self, op: Op) -> frozenset[str]:
        """The objects op may read or change (docs/concurrency.md, "Independent objects")."""
        if op.manager == "PageManager" or op.name in ("FrameCounts", "FrameBitmap"):
            return frozenset({"frames"})
        if op.name == "PoolFreeList":
            return frozenset({"pool"})
        if op.manager == OBSERVE:  # HeapWalk, HoleIndex
            return frozenset({"heap"})
        if op.manager == "KernelHeap":
            return frozenset({"heap", "frames"} if self.heap_uses_frames else {"heap"})
        if op.manager == "MemoryPool":
            return frozenset({"pool"})
        if op.manager == "SharedMemoryManager":
            if op.name == "GetSharedMemorySize":
                return frozenset({"shm"})
            if op.name in ("MapSharedMemoryToProcess", "UnmapSharedMemoryFromProcess"):
                return frozenset({"shm", "frames", f"space:{op.args[0]}"})
            return frozenset({"shm", "frames"})
        return frozenset({f"{op.manager}"})

    # -- private ---------------------------------------------------------------------

    def _intern(self, snapshot: Snapshot) -> Snapshot:
        """One snapshot per key: the first one met stands for all."""
        return self._snapshots.setdefault(snapshot.key, snapshot)

    def _freeze(self, world: World) -> Snapshot:
        """world's snapshot: pickled only when its key is new (pickling is the
        dear part; a key is a few microseconds)."""
        key = world.key()
        found = self._snapshots.get(key)
        return found if found is not None else self._intern(world.snapshot(key))

    def _thaw(self, state: Snapshot) -> World:
        """A private world in state: a spare one if a call left one unchanged."""
        spare = self._spare.pop(state.key, None)
        return spare if spare is not None else state.thaw()

    def _keep(self, world: World, key: Hashable) -> None:
        """Keep world (in state key, no longer used) for the next thaw of key."""
        if len(self._spare) >= SPARE_WORLDS:
            self._spare.clear()
        self._spare[key] = world

    def _run(self, state: Snapshot, op: Op, reply: Reply | None) -> tuple[Snapshot, ...]:
        self.model_runs += 1
        world = self._thaw(state)
        owners = bytes(world.pm.owner)
        model_reply = world.apply(op)
        self._expected[(state.key, op)] = model_reply
        renamable = (self.matching is Matching.ANY_FREE_FRAME and op.manager == "PageManager"
                     and op.name == "RequestFrame" and model_reply[1] == _SUCCESS)
        if not renamable and (reply is None or reply == model_reply) or reply == model_reply \
                or self._same_held_frames(op, reply, model_reply, owners) \
                or self._free_or_managers(op, reply, model_reply, owners):
            after = self._freeze(world)
            if after is state:  # the call changed nothing: the world is still state's
                self._keep(world, state.key)
            return (after,)
        if not renamable:
            return ()
        assert type(model_reply[0]) is int  # RequestFrame answers a frame address
        taken = model_reply[0] >> PAGE_SHIFT
        if reply is not None:
            frame = _frame_of(reply, len(owners))
            if frame < 0 or owners[frame] != _FREE:
                return ()
            return (self._freeze(_renamed(world, taken, frame)),)
        choices = sorted(f for f in self.named_frames if f < len(owners) and owners[f] == _FREE)
        unnamed = taken if taken not in self.named_frames else next(
            (f for f, owner in enumerate(owners) if owner == _FREE and f not in self.named_frames),
            -1)
        if unnamed >= 0:
            choices.append(unnamed)
        states = []
        held = taken
        for frame in choices:
            world = _renamed(world, held, frame)
            held = frame
            states.append(self._freeze(world))
        return tuple(states)


    def _same_held_frames(self, op: Op, reply: Reply | None, model_reply: Reply,
                          owners: bytes) -> bool:
        """Any-free-frame: a FrameBitmap that shows every frame a caller holds and
        as many used frames as the model's (module docstring)."""
        if not (self.matching is Matching.ANY_FREE_FRAME and op.name == "FrameBitmap"
                and op.manager == OBSERVE and reply is not None and reply[1] == model_reply[1]
                and isinstance(reply[0], tuple) and isinstance(model_reply[0], tuple)):
            return False
        got = set(reply[0])
        held = {f for f in self.named_frames if f < len(owners) and owners[f] == _HELD}
        return len(got) == len(reply[0]) == len(model_reply[0]) and held <= got


    def _free_or_managers(self, op: Op, reply: Reply | None, model_reply: Reply,
                          owners: bytes) -> bool:
        """Any-free-frame: a FreeFrame that fails as free where the model fails it as
        a manager's frame, or back, on a frame neither reserved nor held by a caller
        (module docstring); it changes nothing either way."""
        codes = {_BUSY, _INVALID_BLOCK}
        if not (self.matching is Matching.ANY_FREE_FRAME and op.manager == "PageManager"
                and op.name == "FreeFrame" and reply is not None and reply[0] is False
                and model_reply[0] is False and reply[1] in codes and model_reply[1] in codes
                and op.args and type(op.args[0]) is int):
            return False
        frame = op.args[0] >> PAGE_SHIFT
        return 0 <= frame < len(owners) and owners[frame] not in (_HELD, _RESERVED)


def _frame_of(reply: Reply, nframes: int) -> int:
    """The frame a successful RequestFrame reply names; -1 when it names none."""
    result, error = reply
    if error != _SUCCESS or type(result) is not int or result & 0xFFF or result < 0:
        return -1
    frame = result >> PAGE_SHIFT
    return frame if frame < nframes else -1


def _renamed(world: World, held: int, frame: int) -> World:
    """world with the caller holding frame instead of held (pre: frame free or held)."""
    if frame != held:
        world.pm.release_frame(held)
        world.pm.claim_frame(frame, _HELD)
    return world
