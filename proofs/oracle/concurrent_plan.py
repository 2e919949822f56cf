"""What a concurrent run sends: one sequence of calls per thread (a :class:`Plan`).

The calls are the concurrent contract's (docs/concurrency.md, "The contract")
for the kernel family's managers: the PageManager's RequestFrame, FreeFrame and
GetFreeFrameCount, when the heap is in the run the KernelHeap's Alloc and
Free, and when the pool is the MemoryPool's AllocBlock and FreeBlock. Their
arguments are the kernel family's rules' (proofs/oracle/families/kernel.py:
RequestFrame of any kind, FreeFrame of a held frame, twice sometimes, and of
the addresses in ``bad_frames``, which no state holds; the heap's sizes and
page alignment are proofs/machines/kernel_heap.py's); FreeBlock frees a block
a thread got, or one of :func:`bad_blocks` (off the arena, off a block's
boundary, a block not carved yet: model/memory_pool.py's three refusals).

A frame or payload to free is named *symbolically* (:class:`Step`'s ``source``):
``own`` the k-th its thread got, ``any`` the k-th any thread got (in the order
the replies came: two threads may free one frame at once, the race the
contract's "exactly one succeeds" is about), ``bad`` the k-th address of the
kernel family's list that no state holds. The oracle resolves it when it sends
the call, from the replies it has read; a thread that got nothing yet frees a
``bad`` address instead. Hypothesis draws plans (:func:`plans`) and shrinks
them to fewer threads and fewer calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from proofs.oracle.families.kernel import bad_frames

#: The heap's Alloc sizes: the heap machine's small, exact-fit and page-sized ones
#: (proofs/machines/kernel_heap.py, ``sizes``), kept few so that threads collide.
ALLOC_SIZES = (0, 1, 20, 100, 1000, 4096)
#: Addresses Free must refuse in the kernel family's heap: below it, unaligned
#: inside it, past it (the heap machine's ``foreign`` pointers).
BAD_PAYLOADS = (0x1000, 0xC000100D, 0xC0030000)
SOURCES = ("own", "any", "bad")


@dataclass(frozen=True, slots=True)
class Step:
    """One call of a thread. RequestFrame: flags (is_kernel, is_writeable);
    Alloc: size and page_align; FreeFrame and Free: source and k (module
    docstring); GetFreeFrameCount: nothing."""

    op: str
    source: str = ""
    k: int = 0
    size: int = 0
    flags: tuple[bool, bool] = (True, True)

    @property
    def manager(self) -> str:
        if self.op in ("AllocBlock", "FreeBlock"):
            return "MemoryPool"
        return "KernelHeap" if self.op in ("Alloc", "Free") else "PageManager"

    def __str__(self) -> str:
        if self.op == "RequestFrame":
            return f"RequestFrame({self.flags[0]}, {self.flags[1]})"
        if self.op == "Alloc":
            return f"Alloc({self.size}, {self.flags[0]})"
        if self.op in ("FreeFrame", "Free", "FreeBlock"):
            return f"{self.op}({self.source} #{self.k})"
        return f"{self.op}()"

    def to_json(self) -> dict[str, Any]:
        return {"op": self.op, "source": self.source, "k": self.k, "size": self.size,
                "flags": list(self.flags)}

    @staticmethod
    def from_json(data: dict[str, Any]) -> Step:
        flags = data.get("flags", [True, True])
        return Step(str(data["op"]), str(data.get("source", "")), int(data.get("k", 0)),
                    int(data.get("size", 0)), (bool(flags[0]), bool(flags[1])))


Round = tuple[tuple[Step, ...], ...]


@dataclass(frozen=True)
class Plan:
    """Each thread's calls, thread 1 first, after a prefix that thread 1 runs
    alone before the others start (RequestFrame, Alloc and AllocBlock calls: what the
    threads then race to free); then, after a quiescent point where the
    observations are taken, each later round's calls the same way."""

    threads: Round
    prefix: tuple[Step, ...] = ()
    later: tuple[Round, ...] = ()

    @property
    def rounds(self) -> tuple[Round, ...]:
        return (self.threads, *self.later)

    @property
    def calls(self) -> int:
        return len(self.prefix) + sum(len(t) for r in self.rounds for t in r)

    @property
    def used_threads(self) -> int:
        return max(sum(1 for t in r if t) for r in self.rounds)

    def size(self) -> tuple[int, int]:
        """How big it is, as shrinking counts: threads with calls, then calls."""
        return self.used_threads, self.calls

    def __str__(self) -> str:
        first = [f"first t1: {', '.join(map(str, self.prefix))}"] if self.prefix else []
        rounds = ["; ".join(f"t{n}: " + ", ".join(map(str, steps))
                            for n, steps in enumerate(r, 1) if steps) for r in self.rounds]
        return "; ".join(first + [" | observe | ".join(rounds)])

    def to_json(self) -> dict[str, Any]:
        return {"prefix": [step.to_json() for step in self.prefix],
                "threads": _round_json(self.threads),
                "later": [_round_json(r) for r in self.later]}

    @staticmethod
    def from_json(data: object) -> Plan:
        if not (isinstance(data, dict) and isinstance(data.get("threads"), list)):
            raise ValueError("a plan is {prefix: [calls], threads: [[calls], ...], "
                             "later: [[[calls], ...], ...]}")
        return Plan(_round(data["threads"]),
                    tuple(Step.from_json(s) for s in data.get("prefix", [])),
                    tuple(_round(r) for r in data.get("later", [])))


def _round_json(threads: Round) -> list[list[dict[str, Any]]]:
    return [[step.to_json() for step in steps] for steps in threads]


def _round(data: object) -> Round:
    if not isinstance(data, list):
        raise ValueError("a round is a list of threads, each a list of calls")
    return tuple(tuple(Step.from_json(s) for s in steps) for steps in data)


def bad_blocks(arena: int, stride: int, count: int) -> tuple[int, ...]:
    """Blocks FreeBlock must refuse in a pool of count blocks of stride bytes at
    arena (model/memory_pool.py, FreeBlock): below the arena and off a boundary
    (ERROR_INVALID_ADDRESS), the last block, not carved until every other is
    (ERROR_INVALID_BLOCK)."""
    return (arena - stride, arena + 2, arena + (count - 1) * stride)


class Resolver:
    """The addresses a run's symbolic arguments name, from the replies so far."""

    def __init__(self, mem_end: int, bad_blocks: tuple[int, ...] = (0,)) -> None:
        self.bad_frames = bad_frames(mem_end)
        self.bad_blocks = bad_blocks
        self.blocks: dict[int, list[int]] = {}    # thread -> pool blocks it got
        self.all_blocks: list[int] = []
        self.frames: dict[int, list[int]] = {}    # thread -> frames it got, in order
        self.all_frames: list[int] = []
        self.payloads: dict[int, list[int]] = {}  # thread -> payloads it got
        self.all_payloads: list[int] = []

    def args(self, thread: int, step: Step) -> dict[str, Any]:
        """The request's args for step on thread."""
        if step.op == "RequestFrame":
            return {"is_kernel": step.flags[0], "is_writeable": step.flags[1]}
        if step.op == "Alloc":
            return {"size": step.size, "page_align": step.flags[0]}
        if step.op == "FreeFrame":
            return {"frame_addr": self._pick(step, self.frames.get(thread, []),
                                             self.all_frames, self.bad_frames)}
        if step.op == "Free":
            return {"p": self._pick(step, self.payloads.get(thread, []), self.all_payloads,
                                    BAD_PAYLOADS)}
        if step.op == "FreeBlock":
            return {"block": self._pick(step, self.blocks.get(thread, []), self.all_blocks,
                                        self.bad_blocks)}
        return {}

    @staticmethod
    def _pick(step: Step, own: list[int], every: list[int], bad: tuple[int, ...]) -> int:
        pool = own if step.source == "own" else every if step.source == "any" else []
        return pool[step.k % len(pool)] if pool else bad[step.k % len(bad)]

    def got(self, thread: int, step: Step, result: object, error: int) -> None:
        """Remember what a successful RequestFrame or Alloc handed out."""
        if error != 0 or type(result) is not int:
            return
        if step.op == "RequestFrame":
            self.frames.setdefault(thread, []).append(result)
            self.all_frames.append(result)
        elif step.op == "Alloc" and result:
            self.payloads.setdefault(thread, []).append(result)
            self.all_payloads.append(result)
        elif step.op == "AllocBlock" and result:
            self.blocks.setdefault(thread, []).append(result)
            self.all_blocks.append(result)


def steps(heap: bool, pool: bool = False) -> st.SearchStrategy[Step]:
    """One thread's call: frames always, the heap's calls when heap, the pool's
    when pool."""
    flags = st.tuples(st.booleans(), st.booleans())
    k = st.integers(0, 3)
    frame_calls = [
        st.builds(Step, st.just("RequestFrame"), flags=flags),
        st.builds(Step, st.just("FreeFrame"), st.sampled_from(SOURCES), k),
        st.just(Step("GetFreeFrameCount")),
    ]
    heap_calls = [
        st.builds(Step, st.just("Alloc"), size=st.sampled_from(ALLOC_SIZES),
                  flags=st.tuples(st.booleans(), st.just(True))),
        st.builds(Step, st.just("Free"), st.sampled_from(SOURCES), k),
    ] if heap else []
    pool_calls = [st.just(Step("AllocBlock")),
                  st.builds(Step, st.just("FreeBlock"), st.sampled_from(SOURCES), k),
                  ] if pool else []
    return st.one_of(*frame_calls, *heap_calls, *pool_calls)


@st.composite
def plans(draw: st.DrawFn, threads: int, calls: int, heap: bool, pool: bool = False) -> Plan:
    """A plan of 2..threads threads and at most calls calls in all (each thread at
    least one, a prefix of at most two; a second round one time in three);
    shrinks to fewer threads, rounds and calls."""
    count = draw(st.integers(2, max(2, threads)))
    rounds = 1 + draw(st.sampled_from((0, 0, 1))) if calls >= 2 * count + 2 else 1
    made = st.builds(Step, st.just("RequestFrame"), flags=st.tuples(st.booleans(),
                                                                      st.booleans()))
    if heap:
        made = made | st.builds(Step, st.just("Alloc"), size=st.sampled_from(ALLOC_SIZES),
                                flags=st.tuples(st.booleans(), st.just(True)))
    if pool:
        made = made | st.just(Step("AllocBlock"))
    prefix = tuple(draw(st.lists(made, max_size=min(2, calls - rounds * count))))
    per = max(1, (calls - len(prefix)) // (count * rounds))
    drawn = [tuple(tuple(draw(st.lists(steps(heap, pool), min_size=1, max_size=per)))
                   for _ in range(count)) for _ in range(rounds)]
    return Plan(drawn[0], prefix, tuple(drawn[1:]))
