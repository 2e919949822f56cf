"""A concurrent run (protocol 3): send a plan's threads at once, record, judge.

PROTOCOL.md, "Concurrency (protocol 3)": the implementation declares in its
hello how many threads it runs (``"threads"``); each request of a run carries
its thread, the implementation runs each thread's requests on its own OS thread,
and each reply carries the thread and the call's invocation and response times
(CLOCK_MONOTONIC, nanoseconds). The oracle (:func:`run_plan`):

- starts a fresh child, sends the kernel family's set-up calls one at a time
  (proofs/oracle/worlds/kernel.py, with the hello's configuration) and, when
  the pool is in the run, the pool's Create with the checker's world's size
  (:data:`POOL_SETUP`: the pool an implementation's replies are compared in);
- sends the plan's prefix on thread 1, one call at a time (the frames and
  blocks the threads then race to free), then every thread's first call at
  once, then each thread's next call as soon as its last reply came (one call
  in flight per thread, as a thread makes them);
- stops a thread whose call gets no reply within the request timeout: the call
  stays pending (it may or may not have taken effect) and the thread gets
  nothing more; a late reply is not read into the history;
- when nothing is pending (a quiescent point: the end of a round), asks the
  observations the checker offers (FrameCounts, FrameBitmap; HeapWalk and
  HoleIndex when the heap is in the run; PoolFreeList when the pool is) as
  calls of the history that follow
  every call before them; the plan's next round, if any, then starts as the
  first did (no round starts once a thread was stopped);
- builds the history with the checker's :class:`Recorder`, from the
  implementation's times, or from the oracle's send and receive times (its
  clock) when a reply has none: those intervals are wider, which can only make
  more histories linearizable, never fewer; the result says which
  (``timing``). A pending call is invoked at its send time;
- judges it with :func:`proofs.concurrency.linearize.check`, any-free-frame
  matching, against the checker's world booted as the kernel family is
  (:class:`proofs.concurrency.world.World` with ``kernel``, and ``pool``).

Whatever the implementation does wrong besides (a crash, garbage, a reply to
another thread, times no execution has) is a :class:`Judged` with a
``problem`` and no verdict: a divergence of its own kind, as the sequential
oracle reports it (proofs/oracle/child.py).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from proofs.concurrency.history import History, MalformedHistoryError, Recorder
from proofs.concurrency.linearize import DEFAULT_BUDGET, Budget, Outcome, Verdict, check
from proofs.concurrency.sequential import Matching, SequentialSpec
from proofs.concurrency.world import (
    OBSERVE,
    POOL_BLOCK_SIZE,
    POOL_BLOCKS,
    Op,
    Reply,
    Value,
    World,
)
from proofs.oracle.child import Child, ImplementationError
from proofs.oracle.concurrent_plan import Plan, Resolver, Step, bad_blocks
from proofs.oracle.protocol import Message, ProtocolError, validate
from proofs.oracle.worlds.kernel import setup_calls

#: The managers a concurrent run needs (the kernel family's set-up, paging and heap).
NEEDED = ("PageManager", "VirtualMemoryManager", "KernelHeap")
#: The pool's set-up call (``--pool``): the checker's world's pool
#: (proofs/concurrency/world.py), made from the heap as model/memory_pool.py makes it.
POOL_SETUP = ("MemoryPool", "Create", {"block_size": POOL_BLOCK_SIZE,
                                       "max_blocks": POOL_BLOCKS})
#: The observations asked at the end of a run (the checker's), per footprint.
FRAME_OBSERVATIONS = ("FrameCounts", "FrameBitmap")
HEAP_OBSERVATIONS = ("HeapWalk", "HoleIndex")
POOL_OBSERVATIONS = ("PoolFreeList",)


@dataclass
class Judged:
    """One run of a plan: its history and verdict, or the problem that stopped it."""

    plan: Plan
    history: History | None = None
    verdict: Verdict | None = None
    #: (kind, detail) of what went wrong besides linearizability: crash, hang at
    #: set-up, protocol.
    problem: tuple[str, str] | None = None
    #: "implementation" when every completed call carried its times, else "oracle".
    timing: str = "implementation"
    stopped: list[int] = field(default_factory=list)
    stderr: str = ""

    @property
    def failed(self) -> bool:
        """A divergence: not linearizable, or a problem."""
        return self.problem is not None or (
            self.verdict is not None and self.verdict.outcome is Outcome.NOT_LINEARIZABLE)

    @property
    def undecided(self) -> bool:
        return self.verdict is not None and self.verdict.outcome is Outcome.UNDECIDED


def observed_value(name: str, observed: Mapping[str, Any]) -> Value:
    """An observation's reply in the checker's form (proofs/concurrency/world.py,
    World.observe) from the protocol's (PROTOCOL.md, "Observations")."""
    if name == "FrameCounts":
        return (int(observed["free"]), int(observed["used"]))
    if name == "FrameBitmap":
        return tuple(f for first, count in observed["used"] for f in range(first, first + count))
    if name == "HeapWalk":
        return tuple((int(b["header"]), int(b["size"]), bool(b["hole"]))
                     for b in observed["blocks"])
    if name == "PoolFreeList":
        return (tuple(int(b) for b in observed["blocks"]), int(observed["carved"]))
    return tuple((int(size), int(header)) for size, header in observed["holes"])


def _checker_args(step: Step, args: Mapping[str, Any]) -> tuple[int | bool, ...]:
    """The request's args in the model's parameter order."""
    order = {"RequestFrame": ("is_kernel", "is_writeable"), "FreeFrame": ("frame_addr",),
             "Alloc": ("size", "page_align"), "Free": ("p",),
             "FreeBlock": ("block",)}.get(step.op, ())
    return tuple(args[name] for name in order)


class _Run:
    """The state of one run on one child."""

    def __init__(self, child: Child, plan: Plan, config: Mapping[str, Any], heap: bool,
                 timeout: float, blocks: tuple[int, ...] | None = None) -> None:
        """blocks: the pool's bad blocks, when the pool is in the run."""
        self.child, self.plan, self.heap, self.timeout = child, plan, heap, timeout
        self.pool = blocks is not None
        self.resolver = Resolver(int(config["mem_end"]), blocks or (0,))
        self.next_id = 0
        self.round: tuple[tuple[Step, ...], ...] = plan.threads
        self.next_step = [0] * len(plan.threads)
        #: id -> (thread, step, op, sent at (ns), deadline (monotonic s))
        self.flying: dict[int, tuple[int, Step, Op, int, float]] = {}
        #: (time, order, thread, op or None, reply) events for the Recorder
        self.events: list[tuple[int, int, int, Op | None, Reply | None]] = []
        self.oracle_times = False
        self.stopped: list[int] = []
        self.stopped_ids: set[int] = set()
        self.in_prefix = False

    def request(self, message: Message) -> Message:
        self.next_id += 1
        self.child.send([{"id": self.next_id, **message}])
        reply = self.child.receive()
        if reply.get("id") != self.next_id:
            raise self.child.fault("protocol", f"reply id {reply.get('id')} to request "
                                               f"{self.next_id}")
        return reply

    def send(self, *threads: int) -> None:
        """Send each thread's next call, those that have one, in one write (the
        threads' first calls then reach the implementation at once)."""
        messages = []
        for thread in threads:
            index = self.next_step[thread - 1]
            steps = self.round[thread - 1] if thread <= len(self.round) else ()
            if index < len(steps):
                self.next_step[thread - 1] += 1
                messages.append(self.message(thread, steps[index]))
        if messages:
            self.child.send(messages)

    def send_step(self, thread: int, step: Step) -> None:
        self.child.send([self.message(thread, step)])

    def message(self, thread: int, step: Step) -> Message:
        """The request of step on thread, counted as in flight from now."""
        args = self.resolver.args(thread, step)
        self.next_id += 1
        op = Op(step.manager, step.op, _checker_args(step, args))
        self.flying[self.next_id] = (thread, step, op, time.monotonic_ns(),
                                     time.monotonic() + self.timeout)
        return {"id": self.next_id, "thread": thread, "manager": step.manager,
                "op": step.op, "args": args}

    def receive(self) -> None:
        """Read one reply, or stop the threads whose deadline passed."""
        left = min(d for *_, d in self.flying.values()) - time.monotonic()
        try:
            reply = self.child.receive(max(left, 0.001))
        except ImplementationError as error:
            if error.kind != "hang" or self.child.status() is not None:
                raise
            now = time.monotonic()
            for number, (thread, _, op, sent, deadline) in list(self.flying.items()):
                if deadline <= now:
                    del self.flying[number]
                    self.stopped.append(thread)
                    self.stopped_ids.add(number)
                    self.events.append((sent, 0, thread, op, None))
            return
        received = time.monotonic_ns()
        answered = reply.get("id")
        if answered in self.stopped_ids:
            self.stopped_ids.discard(answered)
            return  # a stopped thread's late reply: its call stays pending
        if not isinstance(answered, int) or answered not in self.flying:
            raise self.child.fault("protocol", f"reply id {answered}: no such call in flight")
        number = answered
        try:
            validate(reply, "unsupported" if "unsupported" in reply else "reply")
        except ProtocolError as exc:
            raise self.child.fault("protocol", str(exc)) from None
        thread, step, op, sent, _ = self.flying.pop(number)
        if reply.get("thread") != thread:
            raise self.child.fault("protocol", f"reply #{number} names thread "
                                               f"{reply.get('thread')}, sent to {thread}")
        if "unsupported" in reply or "result" not in reply:
            raise self.child.fault("protocol", f"reply #{number}: {step} unsupported in a "
                                               "concurrent run")
        result, code = reply["result"], int(reply["error"])
        invoked, returned = reply.get("invoked"), reply.get("returned")
        if isinstance(invoked, int) and isinstance(returned, int):
            start, end = invoked, returned
        else:
            start, end, self.oracle_times = sent, received, True
        self.events.append((start, 0, thread, op, None))
        self.events.append((end, 1, thread, None, (result, code)))
        self.resolver.got(thread, step, result, code)
        if not self.in_prefix:
            self.send(thread)

    def observe(self) -> None:
        """The observations, at a quiescent point: after every call so far."""
        last = max((t for t, *_ in self.events), default=0)
        names = (FRAME_OBSERVATIONS + (HEAP_OBSERVATIONS if self.heap else ())
                 + (POOL_OBSERVATIONS if self.pool else ()))
        for n, name in enumerate(names, 1):
            reply = self.request({"observe": name, "args": {}})
            try:
                validate(reply, "observed")
                validate(reply["observed"], name)
            except ProtocolError as exc:
                raise self.child.fault("protocol", f"observe {name}: {exc}") from None
            value = observed_value(name, reply["observed"])
            op = Op(OBSERVE, name)
            self.events.append((last + 2 * n, 0, 0, op, None))
            self.events.append((last + 2 * n + 1, 1, 0, None, (value, 0)))

    def history(self) -> History:
        """The events in time order through the checker's Recorder; times in
        microseconds from the first invocation (the lanes show them so)."""
        recorder = Recorder()
        events = sorted(self.events, key=lambda e: (e[0], e[1]))
        first = events[0][0] if events else 0
        for at, kind, thread, op, reply in events:
            if kind == 0 and op is not None:
                recorder.invoke(thread, op, (at - first) / 1000)
            elif reply is not None:
                recorder.respond(thread, reply, (at - first) / 1000)
        return recorder.history()


def run_plan(impl: str, plan: Plan, config: Mapping[str, Any], *, heap: bool,
             timeout: float, budget: Budget = DEFAULT_BUDGET, pool: bool = False) -> Judged:
    """Run plan on a fresh child of impl and judge its history (module docstring);
    pool: the pool is made at set-up (its calls need it)."""
    judged = Judged(plan)
    child: Child | None = None
    world = World(kernel=config, pool=pool)
    model = world.pool
    blocks = bad_blocks(model.arena, model.block_size, model.max_blocks) if pool else None
    setup = [*setup_calls(NEEDED, config), *([POOL_SETUP] if pool else [])]
    try:
        child = Child(impl, timeout)
        run = _Run(child, plan, config, heap, timeout, blocks)
        for manager, op, args in setup:
            reply = run.request({"manager": manager, "op": op, "args": args})
            if reply.get("result") is not True:
                judged.problem = ("setup", f"{manager}.{op} -> {reply}")
                return judged
        run.in_prefix = True
        for step in plan.prefix:  # thread 1, one call at a time, before the others start
            run.send_step(1, step)
            while run.flying:
                run.receive()
        run.in_prefix = False
        for threads in plan.rounds:  # each round ends at a quiescent point, observed
            if run.stopped:
                break
            run.round, run.next_step = threads, [0] * len(threads)
            run.send(*range(1, len(threads) + 1))
            while run.flying:
                run.receive()
            if not run.stopped:
                run.observe()
        judged.timing = "oracle" if run.oracle_times else "implementation"
        judged.stopped = run.stopped
        try:
            judged.history = run.history()
        except MalformedHistoryError as error:
            judged.problem = ("protocol", f"the replies' times are no history: {error}")
            return judged
    except ImplementationError as error:
        judged.problem = (error.kind, error.detail)
        judged.stderr = error.stderr
        return judged
    finally:
        if child is not None:
            judged.stderr = judged.stderr or child.stderr_tail()
            child.close()
    spec = SequentialSpec(world, Matching.ANY_FREE_FRAME)
    judged.verdict = check(judged.history, spec, budget)
    return judged
