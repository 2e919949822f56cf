"""Random concurrent histories that are linearizable by construction, and corruptions.

``sequential_run`` runs random calls of several threads one at a time on the
model (world.py), so every reply is the model's. ``overlap`` then gives each
call an interval around its instant in that run: a call's interval reaches at
most halfway to its thread's previous and next instants, so each thread's
calls stay sequential while calls of different threads overlap at random. The
run's order is a linearization of the result, so it is linearizable
(a test oracle for the checker). With ``observe_every``, a thread of its own
(OBSERVER) takes an observation every few calls and ``overlap`` keeps every
other call clear of it: a quiescent point (docs/concurrency.md,
"Observations"). ``corrupt`` changes one reply.

Arguments name handles the run has seen (frames held, blocks and pointers
live, shared ids and views), and sometimes a stale or bogus one, so failures
(double frees, unknown handles) are in the mix.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from proofs.concurrency.history import Call, History
from proofs.concurrency.world import OBSERVATIONS, OBSERVE, Op, Reply, World
from spec.abi import PAGE_READWRITE, PAGE_SIZE

#: The call kinds of each mix; a mix names the managers a history exercises.
MIXES = {
    "frames": ("RequestFrame", "FreeFrame", "GetFreeFrameCount"),
    "kernel": ("RequestFrame", "FreeFrame", "Alloc", "Free", "AllocBlock", "FreeBlock"),
    "heap": ("Alloc", "Free"),
    "pool": ("AllocBlock", "FreeBlock"),
    "shared": ("CreateSharedMemory", "MapSharedMemoryToProcess",
               "UnmapSharedMemoryFromProcess", "DestroySharedMemory", "RequestFrame"),
}
#: The thread id of the observations sequential_run inserts.
OBSERVER = 0
_FAR = float("inf")


@dataclass
class _Seen:
    """Handles the run has handed out, live or not."""

    frames: list[int] = field(default_factory=list)
    pointers: list[int] = field(default_factory=list)
    blocks: list[int] = field(default_factory=list)
    shm_ids: list[int] = field(default_factory=list)
    views: list[int] = field(default_factory=list)


def _pick(rng: random.Random, seen: list[int], bogus: int) -> int:
    """Mostly a recent handle, sometimes any seen one (stale), rarely a bogus one."""
    if not seen or rng.random() < 0.05:
        return bogus
    return seen[-1 - min(len(seen) - 1, int(rng.expovariate(0.7)))]


def _op(rng: random.Random, kind: str, seen: _Seen, pid: int) -> Op:
    if kind == "RequestFrame":
        return Op("PageManager", kind, (True, True))
    if kind == "GetFreeFrameCount":
        return Op("PageManager", kind)
    if kind == "FreeFrame":
        return Op("PageManager", kind, (_pick(rng, seen.frames, 0x3FF000),))
    if kind == "Alloc":
        return Op("KernelHeap", kind, (rng.choice((0, 8, 24, 100, 500, 3000, 9000)),
                                       rng.random() < 0.1))
    if kind == "Free":
        return Op("KernelHeap", kind, (_pick(rng, seen.pointers, 0xC0000010),))
    if kind == "AllocBlock":
        return Op("MemoryPool", kind)
    if kind == "FreeBlock":
        return Op("MemoryPool", kind, (_pick(rng, seen.blocks, 4),))
    manager = "SharedMemoryManager"
    if kind == "CreateSharedMemory":
        return Op(manager, kind, (rng.choice((1, PAGE_SIZE, 3 * PAGE_SIZE)), PAGE_READWRITE))
    if kind == "MapSharedMemoryToProcess":
        return Op(manager, kind, (pid, _pick(rng, seen.shm_ids, 99), 0, 0))
    if kind == "UnmapSharedMemoryFromProcess":
        return Op(manager, kind, (pid, _pick(rng, seen.views, 0x10000)))
    return Op(manager, kind, (_pick(rng, seen.shm_ids, 99),))


def _remember(seen: _Seen, op: Op, reply: Reply) -> None:
    result = reply[0]
    if reply[1] != 0 or type(result) is not int:
        return
    lists = {"RequestFrame": seen.frames, "Alloc": seen.pointers, "AllocBlock": seen.blocks,
             "CreateSharedMemory": seen.shm_ids, "MapSharedMemoryToProcess": seen.views}
    if op.name in lists:
        lists[op.name].append(result)


def sequential_run(rng: random.Random, world: World, threads: int, calls: int,
                   mix: str = "kernel", *, observe_every: int = 0) -> list[tuple[int, Op, Reply]]:
    """threads x calls random calls run one at a time on world: (thread, op, reply).
    With observe_every = k, thread OBSERVER takes an observation after every k
    calls (overlap makes those points quiescent)."""
    kinds = MIXES[mix]
    seen = _Seen()
    left = {thread: calls for thread in range(1, threads + 1)}
    run = []
    for count in range(threads * calls):
        if observe_every and count and not count % observe_every:
            op = Op(OBSERVE, rng.choice(OBSERVATIONS))
            run.append((OBSERVER, op, world.apply(op)))
        thread = rng.choice([t for t, n in left.items() if n])
        left[thread] -= 1
        op = _op(rng, rng.choice(kinds), seen, world.pid)
        reply = world.apply(op)
        _remember(seen, op, reply)
        run.append((thread, op, reply))
    return run


def overlap(rng: random.Random, run: list[tuple[int, Op, Reply]], *,
            pending: float = 0.0) -> History:
    """Intervals around each call's instant in run (module docstring); each
    thread's last call is left pending with probability ``pending``."""
    instants: dict[int, list[int]] = {}
    for at, (thread, _, _) in enumerate(run):
        instants.setdefault(thread, []).append(at)
    barriers = instants.get(OBSERVER, [])
    calls = []
    for at, (thread, op, reply) in enumerate(run):
        if thread == OBSERVER:  # quiescent: every other call is clamped away from it
            calls.append(Call(thread, op, at - 0.05, at + 0.05, reply))
            continue
        mine = instants[thread]
        k = mine.index(at)
        before = mine[k - 1] if k else at - 2 * len(run)
        after = mine[k + 1] if k + 1 < len(mine) else at + 2 * len(run)
        low = max((b for b in barriers if b < at), default=-_FAR) + 0.1
        high = min((b for b in barriers if b > at), default=_FAR) - 0.1
        invoked = max(low, at - rng.uniform(0, 0.49) * (at - before))
        returned = min(high, at + rng.uniform(0, 0.49) * (after - at))
        # A call in flight at an observation would make that point not quiescent.
        if k + 1 == len(mine) and high == _FAR and rng.random() < pending:
            calls.append(Call(thread, op, invoked))
        else:
            calls.append(Call(thread, op, invoked, returned, reply))
    return History(tuple(sorted(calls, key=lambda c: c.invoked)))


def corrupt(rng: random.Random, history: History) -> tuple[History, int]:
    """history with one completed call's reply changed: (the new history, the call)."""
    completed = [i for i, c in enumerate(history.calls) if c.reply is not None]
    index = rng.choice(completed)
    call = history.calls[index]
    assert call.reply is not None
    result, error = call.reply
    choice = rng.random()
    if type(result) is bool:
        new: Reply = (not result, error) if choice < 0.5 else (result, error ^ 1)
    elif not isinstance(result, int):  # an observation: drop its last entry, or add one
        new = (result[:-1] if result else ((0,),), error)
    elif choice < 0.6 and error == 0:
        new = (result + rng.choice((-1, 1)) * rng.choice((4, 16, PAGE_SIZE)), error)
    elif choice < 0.8:
        new = (result, error ^ 8)
    else:
        new = (0, 8) if result else (PAGE_SIZE * 64, 0)
    changed = Call(call.thread, call.op, call.invoked, call.returned, new)
    return History(history.calls[:index] + (changed,) + history.calls[index + 1:]), index
