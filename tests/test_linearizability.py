"""The linearizability checker (proofs/concurrency/, docs/concurrency.md).

Hand-made histories with a known answer, the tricky ones among them (a pending
call, calls that all overlap, two RequestFrame calls answering one frame, a
Free answered before a concurrent Alloc returns its block, a double-free race),
then properties over random histories made linearizable by construction
(proofs/concurrency/generate.py), the budget's UNDECIDED, and the claims the
checker rests on: states with one key answer alike, and calls the contract
calls independent commute.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proofs.concurrency.__main__ import main as concurrency_main
from proofs.concurrency.generate import corrupt, overlap, sequential_run
from proofs.concurrency.history import (
    Call,
    History,
    MalformedHistoryError,
    Recorder,
    from_json,
    to_json,
)
from proofs.concurrency.linearize import (
    DEFAULT_BUDGET,
    Budget,
    Outcome,
    Verdict,
    check,
    groups,
)
from proofs.concurrency.sequential import Matching, SequentialSpec
from proofs.concurrency.world import HEAP_END, HEAP_MAX, OBSERVE, Op, Reply, World
from spec.abi import NO_FRAME, PAGE_READWRITE, PAGE_SIZE, ErrorCode

E = ErrorCode
OK = int(E.ERROR_SUCCESS)
REQUEST = Op("PageManager", "RequestFrame", (True, True))
ALLOC_BLOCK = Op("MemoryPool", "AllocBlock")
#: The frames RequestFrame hands out first in the world (the lowest free ones).
F0 = World().pm.FirstFreeFrame()
F1, F2, F3 = F0 + PAGE_SIZE, F0 + 2 * PAGE_SIZE, F0 + 3 * PAGE_SIZE


def free_frame(addr: int) -> Op:
    return Op("PageManager", "FreeFrame", (addr,))


def alloc(size: int) -> Op:
    return Op("KernelHeap", "Alloc", (size, False))


def free(p: int) -> Op:
    return Op("KernelHeap", "Free", (p,))


def call(thread: int, op: Op, invoked: float, returned: float | None = None,
         reply: Reply | None = None) -> Call:
    return Call(thread, op, invoked, returned, reply)


def verdict(*calls: Call, matching: Matching = Matching.STRICT, shared: bool = False,
            compositional: bool = True, budget: Budget = DEFAULT_BUDGET) -> Verdict:
    history = History(calls)
    return check(history, SequentialSpec(World(shared=shared), matching), budget,
                 compositional=compositional)


def sequential_replies(*ops: Op, shared: bool = False) -> list[Reply]:
    world = World(shared=shared)
    return [world.apply(op) for op in ops]


def numbers(replies: list[Reply]) -> list[int]:
    return [r[0] for r in replies if type(r[0]) is int]


HEAP_P1, HEAP_P2 = numbers(sequential_replies(alloc(64), alloc(64)))
BLOCK0, BLOCK1 = numbers(sequential_replies(ALLOC_BLOCK, ALLOC_BLOCK))


# -- frames -----------------------------------------------------------------------


def test_sequential_calls_in_order_are_linearizable() -> None:
    result = verdict(call(1, REQUEST, 0, 1, (F0, OK)), call(1, free_frame(F0), 2, 3, (True, OK)),
                     call(2, REQUEST, 4, 5, (F0, OK)))
    assert result.outcome is Outcome.LINEARIZABLE
    assert result.orders == ((0, 1, 2),)


@pytest.mark.parametrize("matching", list(Matching), ids=lambda m: m.value)
def test_two_request_frames_answering_one_frame_are_not_linearizable(matching: Matching) -> None:
    result = verdict(call(1, REQUEST, 0, 2, (F0, OK)), call(2, REQUEST, 1, 3, (F0, OK)),
                     matching=matching)
    assert result.outcome is Outcome.NOT_LINEARIZABLE
    # The closest order takes one of them; the other is the call that cannot follow.
    assert [len(order) for order in result.orders] == [1, 1]
    assert len(result.blocked) == 1 and result.blocked[0].reply == (F0, OK)
    assert result.blocked[0].expected == (F1, OK)


def test_overlapping_request_frames_may_answer_in_either_order() -> None:
    result = verdict(call(1, REQUEST, 0, 2, (F1, OK)), call(2, REQUEST, 1, 3, (F0, OK)))
    assert result.linearizable and result.orders == ((1, 0),)


def test_request_frames_in_real_time_order_must_answer_in_it_strictly() -> None:
    result = verdict(call(1, REQUEST, 0, 1, (F1, OK)), call(2, REQUEST, 2, 3, (F0, OK)))
    assert result.outcome is Outcome.NOT_LINEARIZABLE


def test_any_free_frame_accepts_a_frame_other_than_the_lowest() -> None:
    calls = (call(1, REQUEST, 0, 1, (F3, OK)), call(2, REQUEST, 2, 3, (F0, OK)),
             call(2, free_frame(F3), 4, 5, (True, OK)), call(1, REQUEST, 6, 7, (F1, OK)))
    assert verdict(*calls, matching=Matching.STRICT).outcome is Outcome.NOT_LINEARIZABLE
    assert verdict(*calls, matching=Matching.ANY_FREE_FRAME).linearizable


@pytest.mark.parametrize("frame", [0, F0 + 1, 0x7FFFF000], ids=["reserved", "unaligned", "past"])
def test_any_free_frame_still_refuses_a_frame_that_is_not_free(frame: int) -> None:
    result = verdict(call(1, REQUEST, 0, 1, (frame, OK)), matching=Matching.ANY_FREE_FRAME)
    assert result.outcome is Outcome.NOT_LINEARIZABLE


def test_any_free_frame_refuses_a_frame_held_by_an_earlier_call() -> None:
    result = verdict(call(1, REQUEST, 0, 1, (F2, OK)), call(2, REQUEST, 2, 3, (F2, OK)),
                     matching=Matching.ANY_FREE_FRAME)
    assert result.outcome is Outcome.NOT_LINEARIZABLE


def test_a_failure_reply_must_be_the_models_in_any_mode() -> None:
    result = verdict(call(1, REQUEST, 0, 1, (NO_FRAME, int(E.ERROR_NOT_ENOUGH_MEMORY))),
                     matching=Matching.ANY_FREE_FRAME)
    assert result.outcome is Outcome.NOT_LINEARIZABLE


def test_a_free_frame_count_takes_effect_at_one_instant_too() -> None:
    count = Op("PageManager", "GetFreeFrameCount")
    free = World().pm.free_count()
    request = call(1, REQUEST, 0, 4, (F0, OK))
    # Overlapping the RequestFrame it may count before or after it ...
    for seen in (free, free - 1):
        assert verdict(request, call(2, count, 1, 2, (seen, OK))).linearizable
    # ... after its response, only after; and never a count no state had.
    assert verdict(request, call(2, count, 5, 6, (free, OK))).outcome \
        is Outcome.NOT_LINEARIZABLE
    assert verdict(request, call(2, count, 1, 2, (free - 2, OK))).outcome \
        is Outcome.NOT_LINEARIZABLE


# -- pending calls ------------------------------------------------------------------


def test_a_pending_call_may_have_taken_effect() -> None:
    # t1's RequestFrame has no reply; t2's answer F1 says it took F0 first.
    assert verdict(call(1, REQUEST, 0), call(2, REQUEST, 1, 2, (F1, OK))).linearizable


def test_a_pending_call_may_not_have_taken_effect() -> None:
    assert verdict(call(1, REQUEST, 0), call(2, REQUEST, 1, 2, (F0, OK))).linearizable


def test_a_history_of_pending_calls_only_is_linearizable() -> None:
    result = verdict(call(1, REQUEST, 0), call(2, alloc(64), 1))
    assert result.linearizable and result.orders == ((),)  # one group: the heap can grow


def test_a_pending_call_cannot_explain_everything() -> None:
    # One pending RequestFrame takes one frame at most: F2 needs two before it.
    result = verdict(call(1, REQUEST, 0), call(2, REQUEST, 1, 2, (F2, OK)))
    assert result.outcome is Outcome.NOT_LINEARIZABLE


def test_a_pending_request_frame_may_have_taken_a_frame_another_thread_frees() -> None:
    # t2 frees F3 successfully: only t1's pending RequestFrame can hold it, which
    # strict matching (the lowest frame, F0) rules out and any-free-frame allows.
    calls = (call(1, REQUEST, 0), call(2, free_frame(F3), 1, 2, (True, OK)))
    assert verdict(*calls, matching=Matching.STRICT).outcome is Outcome.NOT_LINEARIZABLE
    assert verdict(*calls, matching=Matching.ANY_FREE_FRAME).linearizable


def test_a_pending_call_with_an_unnamed_frame_leaves_the_named_ones_free() -> None:
    calls = (call(1, REQUEST, 0), call(2, REQUEST, 1, 2, (F0, OK)),
             call(2, REQUEST, 3, 4, (F1, OK)))
    assert verdict(*calls, matching=Matching.ANY_FREE_FRAME).linearizable


# -- every interval overlaps ------------------------------------------------------------


def test_all_overlapping_allocs_may_answer_in_any_order() -> None:
    sizes = (16, 100, 300, 40)
    replies = sequential_replies(*(alloc(s) for s in sizes))
    order = (2, 0, 3, 1)
    # The same replies, each given to its call in the sequential order `order`.
    world = World()
    answered = {i: world.apply(alloc(sizes[i])) for i in order}
    assert sorted(answered.values()) != sorted(replies) or answered != dict(enumerate(replies))
    calls = tuple(call(t + 1, alloc(sizes[t]), 0, 10, answered[t]) for t in range(4))
    result = verdict(*calls)
    assert result.linearizable and sorted(result.orders[0]) == [0, 1, 2, 3]


def test_all_overlapping_allocs_answering_one_block_are_not_linearizable() -> None:
    calls = tuple(call(t, alloc(64), 0, 10, (HEAP_P1, OK)) for t in (1, 2, 3))
    result = verdict(*calls)
    assert result.outcome is Outcome.NOT_LINEARIZABLE
    assert [len(order) for order in result.orders] == [1] * len(result.orders)


# -- a Free and an Alloc of one block --------------------------------------------------------


def test_a_free_answered_before_a_concurrent_alloc_returns_its_block() -> None:
    # t2's Alloc overlaps t1's Free and returns after it: the Free took effect first.
    result = verdict(call(1, alloc(64), 0, 1, (HEAP_P1, OK)),
                     call(1, free(HEAP_P1), 2, 4, (True, OK)),
                     call(2, alloc(64), 3, 6, (HEAP_P1, OK)))
    assert result.linearizable and result.orders == ((0, 1, 2),)


def test_an_alloc_over_before_the_free_began_cannot_reuse_the_block() -> None:
    result = verdict(call(1, alloc(64), 0, 1, (HEAP_P1, OK)),
                     call(2, alloc(64), 1.5, 1.8, (HEAP_P1, OK)),
                     call(1, free(HEAP_P1), 2, 4, (True, OK)))
    assert result.outcome is Outcome.NOT_LINEARIZABLE
    assert result.blocked[0].expected == (HEAP_P2, OK)


def test_a_heap_double_free_race_lets_exactly_one_free_win() -> None:
    first = call(1, alloc(64), 0, 1, (HEAP_P1, OK))
    invalid = (False, int(E.ERROR_INVALID_BLOCK))
    assert verdict(first, call(1, free(HEAP_P1), 2, 5, (True, OK)),
                   call(2, free(HEAP_P1), 3, 4, invalid)).linearizable
    result = verdict(first, call(1, free(HEAP_P1), 2, 5, (True, OK)),
                     call(2, free(HEAP_P1), 3, 4, (True, OK)))
    assert result.outcome is Outcome.NOT_LINEARIZABLE


def test_pool_blocks_popped_twice_are_not_linearizable() -> None:
    assert verdict(call(1, ALLOC_BLOCK, 0, 2, (BLOCK1, OK)),
                   call(2, ALLOC_BLOCK, 1, 3, (BLOCK0, OK))).linearizable
    assert verdict(call(1, ALLOC_BLOCK, 0, 2, (BLOCK0, OK)),
                   call(2, ALLOC_BLOCK, 1, 3, (BLOCK0, OK))).outcome is Outcome.NOT_LINEARIZABLE


def test_shared_memory_ids_race() -> None:
    create = Op("SharedMemoryManager", "CreateSharedMemory", (PAGE_SIZE, PAGE_READWRITE))
    assert verdict(call(1, create, 0, 2, (2, OK)), call(2, create, 1, 3, (1, OK)),
                   shared=True).linearizable
    assert verdict(call(1, create, 0, 2, (1, OK)), call(2, create, 1, 3, (1, OK)),
                   shared=True).outcome is Outcome.NOT_LINEARIZABLE


# -- observations at quiescent points ----------------------------------------------------------


def observe(name: str) -> Op:
    return Op(OBSERVE, name)


USED = World().pm.used_frames()


def test_a_quiescent_observation_is_judged_after_the_order_chosen() -> None:
    race = (call(1, REQUEST, 0, 2, (F1, OK)), call(2, REQUEST, 1, 3, (F0, OK)))
    assert verdict(*race, call(3, observe("FrameBitmap"), 4, 5,
                               (tuple(sorted(USED + (F0 >> 12, F1 >> 12))), OK))).linearizable
    result = verdict(*race, call(3, observe("FrameBitmap"), 4, 5, (USED + (F0 >> 12,), OK)))
    assert result.outcome is Outcome.NOT_LINEARIZABLE


def test_an_observation_sees_the_frame_the_implementation_chose() -> None:
    # Any-free-frame: the state after is the renamed one, which the bitmap must show.
    chose = call(1, REQUEST, 0, 1, (F3, OK))
    shows_f3 = (tuple(sorted(USED + (F3 >> 12,))), OK)
    shows_f0 = (tuple(sorted(USED + (F0 >> 12,))), OK)
    assert verdict(chose, call(2, observe("FrameBitmap"), 2, 3, shows_f3),
                   matching=Matching.ANY_FREE_FRAME).linearizable
    assert verdict(chose, call(2, observe("FrameBitmap"), 2, 3, shows_f0),
                   matching=Matching.ANY_FREE_FRAME).outcome is Outcome.NOT_LINEARIZABLE


def test_a_bitmap_may_show_the_managers_own_frames_elsewhere() -> None:
    """Any-free-frame: the frames no caller holds (the directory, page tables, heap
    pages) may be other free frames than the model's, in the same number; every
    frame a caller holds must show, and the count must be the model's. Strict
    matching wants the model's bitmap exactly."""
    chose = call(1, REQUEST, 0, 1, (F3, OK))
    last = World().pm.frames.nframes - 1
    moved = tuple(sorted((set(USED) - {max(USED)}) | {last, F3 >> 12}))
    assert verdict(chose, call(2, observe("FrameBitmap"), 2, 3, (moved, OK)),
                   matching=Matching.ANY_FREE_FRAME).linearizable
    assert verdict(call(1, REQUEST, 0, 1, (F0, OK)),
                   call(2, observe("FrameBitmap"), 2, 3,
                        (tuple(sorted((set(USED) - {max(USED)}) | {last, F0 >> 12})), OK))
                   ).outcome is Outcome.NOT_LINEARIZABLE
    lost_held = tuple(sorted((set(USED) - {max(USED)}) | {last, F2 >> 12}))
    one_more = tuple(sorted(set(moved) | {last - 1}))
    for wrong in (lost_held, one_more):
        assert verdict(chose, call(2, observe("FrameBitmap"), 2, 3, (wrong, OK)),
                       matching=Matching.ANY_FREE_FRAME).outcome is Outcome.NOT_LINEARIZABLE


def test_a_failed_free_of_a_frame_no_caller_holds_may_name_either_owner() -> None:
    """Any-free-frame: once a caller freed F3, the implementation's own structures
    may hold it (its heap grew there), so a FreeFrame of it may fail as busy
    where the model fails it as free; not under strict matching, not with any
    other code, and not for a frame a caller holds."""
    got, freed = call(1, REQUEST, 0, 1, (F3, OK)), call(1, free_frame(F3), 2, 3, (True, OK))
    busy = (False, int(E.ERROR_BUSY))
    assert verdict(got, freed, call(2, free_frame(F3), 4, 5, busy),
                   matching=Matching.ANY_FREE_FRAME).linearizable
    assert verdict(got, freed, call(2, free_frame(F3), 4, 5, busy)).outcome \
        is Outcome.NOT_LINEARIZABLE
    assert verdict(got, freed, call(2, free_frame(F3), 4, 5, (False, int(E.ERROR_ACCESS_DENIED))),
                   matching=Matching.ANY_FREE_FRAME).outcome is Outcome.NOT_LINEARIZABLE
    assert verdict(got, call(2, free_frame(F3), 4, 5, busy),
                   matching=Matching.ANY_FREE_FRAME).outcome is Outcome.NOT_LINEARIZABLE


def test_a_heap_walk_after_an_alloc_race() -> None:
    world = World()
    world.apply(alloc(64))
    world.apply(alloc(64))
    walk = world.apply(observe("HeapWalk"))
    race = (call(1, alloc(64), 0, 2, (HEAP_P2, OK)), call(2, alloc(64), 1, 3, (HEAP_P1, OK)))
    assert verdict(*race, call(1, observe("HeapWalk"), 4, 5, walk)).linearizable
    assert verdict(*race, call(1, observe("HoleIndex"), 4, 5, ((1, 2), OK))).outcome \
        is Outcome.NOT_LINEARIZABLE


def test_an_observation_overlapping_a_call_is_refused() -> None:
    with pytest.raises(MalformedHistoryError):
        History((call(1, REQUEST, 0, 2, (F0, OK)), call(2, observe("FrameCounts"), 1, 3,
                                                         ((0, 0), OK))))
    with pytest.raises(MalformedHistoryError):
        History((call(1, observe("FrameCounts"), 0),))


# -- groups (P-compositionality) -------------------------------------------------------------


def test_groups_follow_the_contract() -> None:
    history = History((call(1, REQUEST, 0, 1, (F0, OK)), call(2, alloc(8), 0, 1, (HEAP_P1, OK)),
                       call(3, ALLOC_BLOCK, 0, 1, (BLOCK0, OK))))
    growing = SequentialSpec(World())
    assert groups(history, growing) == [[0, 1], [2]]
    fixed = SequentialSpec(World(heap_max=HEAP_END))
    assert not fixed.heap_uses_frames and HEAP_END < HEAP_MAX
    assert groups(history, fixed) == [[0], [1], [2]]


def test_an_expanding_alloc_takes_frames_so_the_heap_is_grouped_with_them() -> None:
    growing = World()
    first = growing.apply(REQUEST)
    growing = World()
    assert growing.apply(alloc(20000))[1] == OK  # no hole fits: the heap expands
    assert growing.apply(REQUEST) != first
    fixed = World(heap_max=HEAP_END)
    assert fixed.apply(alloc(20000))[1] == int(E.ERROR_NOT_ENOUGH_MEMORY)
    assert fixed.apply(REQUEST) == first


def test_a_heap_at_its_max_but_above_its_floor_still_uses_frames() -> None:
    world = World()
    assert world.heap.Expand(HEAP_MAX - world.heap.start_address)
    assert world.heap.end_address == world.heap.max_address
    # A Free leaving a trailing hole contracts it back towards min_size.
    assert SequentialSpec(world).heap_uses_frames


def test_a_failing_group_fails_the_history() -> None:
    result = verdict(call(1, ALLOC_BLOCK, 0, 1, (BLOCK0, OK)),
                     call(2, REQUEST, 0, 1, (F0, OK)), call(3, REQUEST, 0, 1, (F0, OK)))
    assert result.outcome is Outcome.NOT_LINEARIZABLE and result.groups == 2


def test_the_memo_bounds_the_search() -> None:
    """Lowe's memoization: 3 threads of 6 calls that change nothing, in rounds
    where each round's 3 calls overlap, and a call no order can explain. Without
    the memo the search tries 6**6 orders of the rounds; with it, each set of
    linearized calls (a prefix per thread: at most 7**3) is entered once."""
    invalid = (False, int(E.ERROR_INVALID_BLOCK))
    calls = [call(t, free_frame(F0), 10 * k, 10 * k + 9, invalid)
             for k in range(6) for t in (1, 2, 3)]
    calls.append(call(4, free_frame(F0), 0, 100, (True, OK)))  # F0 was never held
    result = verdict(*sorted(calls, key=lambda c: c.invoked))
    assert result.outcome is Outcome.NOT_LINEARIZABLE
    assert result.nodes <= 7 ** 3
    assert len(result.orders[0]) == 18


# -- the budget ----------------------------------------------------------------------------------


def test_an_exhausted_budget_is_undecided_never_a_pass() -> None:
    rng = random.Random(7)
    history = overlap(rng, sequential_run(rng, World(), 4, 10, "kernel"))
    spec = SequentialSpec(World())
    assert check(history, spec).linearizable
    small = check(history, SequentialSpec(World()), Budget(nodes=5))
    assert small.outcome is Outcome.UNDECIDED and not small.linearizable
    assert small.nodes <= 5 and len(small.orders[0]) < len(history)
    assert "undecided" in small.explain(history)


def test_a_time_budget_is_undecided_too() -> None:
    rng = random.Random(8)
    history = overlap(rng, sequential_run(rng, World(), 4, 25, "kernel"))
    result = check(history, SequentialSpec(World()), Budget(seconds=0.0))
    assert result.outcome is Outcome.UNDECIDED and result.nodes == 1


# -- histories ------------------------------------------------------------------------------------


def test_malformed_histories_are_refused() -> None:
    with pytest.raises(MalformedHistoryError):
        History((call(1, REQUEST, 0, 2, (F0, OK)), call(1, REQUEST, 1, 3, (F1, OK))))
    with pytest.raises(MalformedHistoryError):
        History((call(1, REQUEST, 2, 1, (F0, OK)),))
    with pytest.raises(MalformedHistoryError):
        History((call(1, REQUEST, 0), call(1, REQUEST, 1, 2, (F0, OK))))


def test_the_recorder_builds_a_history_with_pending_calls() -> None:
    recorder = Recorder()
    recorder.invoke(1, REQUEST, 0)
    recorder.invoke(2, REQUEST, 1)
    recorder.respond(1, (F1, OK), 2)
    with pytest.raises(MalformedHistoryError):
        recorder.respond(3, (F0, OK), 3)
    history = recorder.history()
    assert [c.pending for c in history] == [False, True]
    assert check(history, SequentialSpec(World())).linearizable


# -- properties on random histories ----------------------------------------------------------------

MIX = st.sampled_from(["frames", "kernel", "heap", "pool"])


def replays(history: History, order: tuple[int, ...]) -> bool:
    """Whether order is a linearization, judged by running the model directly:
    it respects real time and every completed call gets its own reply."""
    position = {index: at for at, index in enumerate(order)}
    for a in order:
        for b in range(len(history)):
            if history.calls[b].precedes(history.calls[a]) and position.get(b, len(order)) > \
                    position[a]:
                return False
    if any(not c.pending and i not in position for i, c in enumerate(history.calls)):
        return False
    world = World()
    replies = [(world.apply(history.calls[i].op), history.calls[i]) for i in order]
    return all(c.pending or reply == c.reply for reply, c in replies)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), mix=MIX, pending=st.sampled_from([0.0, 0.5]),
       observe_every=st.sampled_from([0, 4]))
def test_overlapped_model_runs_are_linearizable(seed: int, mix: str, pending: float,
                                                observe_every: int) -> None:
    rng = random.Random(seed)
    history = overlap(rng, sequential_run(rng, World(), 3, 6, mix, observe_every=observe_every),
                      pending=pending)
    for matching in Matching:
        whole = check(history, SequentialSpec(World(), matching), compositional=False)
        assert whole.linearizable, whole.explain(history)
        assert check(history, SequentialSpec(World(), matching)).linearizable
        if matching is Matching.STRICT:
            assert replays(history, whole.orders[0])


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), mix=MIX, observe_every=st.sampled_from([0, 4]))
def test_a_corrupted_reply_is_caught_or_proved_harmless(seed: int, mix: str,
                                                        observe_every: int) -> None:
    rng = random.Random(seed)
    run = sequential_run(rng, World(), 3, 6, mix, observe_every=observe_every)
    history, _ = corrupt(rng, overlap(rng, run))
    whole = check(history, SequentialSpec(World()), compositional=False)
    split = check(history, SequentialSpec(World()))
    assert whole.outcome is split.outcome
    assert whole.outcome is not Outcome.UNDECIDED
    if whole.linearizable:
        # The corruption is another valid answer: the order shows it.
        assert replays(history, whole.orders[0])
    else:
        assert not replays(history, tuple(range(len(history))))


# -- the claims the checker rests on --------------------------------------------------------------


def kinds_run(seed: int, mix: str, calls: int) -> tuple[World, list[Op]]:
    rng = random.Random(seed)
    world = World()
    return world, [op for _, op, _ in sequential_run(rng, world, 1, calls, mix)]


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), mix=MIX, at=st.integers(0, 8))
def test_independent_calls_commute_and_reach_one_key(seed: int, mix: str, at: int) -> None:
    """Swap two adjacent calls whose footprints are disjoint: same replies, same
    key, and the same replies to everything after (equal keys answer alike)."""
    _, ops = kinds_run(seed, mix, 12)
    spec = SequentialSpec(World())
    a, b = ops[at], ops[at + 1]
    swapped = ops[:at] + [b, a] + ops[at + 2:]
    first, second = World(), World()
    replies = [first.apply(op) for op in ops]
    others = [second.apply(op) for op in swapped]
    if spec.footprint(a) & spec.footprint(b):
        return
    assert others[at] == replies[at + 1] and others[at + 1] == replies[at]
    assert others[at + 2:] == replies[at + 2:]
    assert first.key() == second.key()


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), mix=MIX)
def test_a_thawed_snapshot_answers_as_the_world_does(seed: int, mix: str) -> None:
    world, ops = kinds_run(seed, mix, 8)
    copy = world.snapshot().thaw()
    assert copy.key() == world.key()
    rng = random.Random(seed + 1)
    tail = [op for _, op, _ in sequential_run(rng, World(), 1, 8, mix)]
    assert [copy.apply(op) for op in ops + tail] == [world.apply(op) for op in ops + tail]


def test_the_explanation_draws_one_lane_per_thread() -> None:
    history = History((call(1, REQUEST, 0, 2, (F0, OK)), call(2, REQUEST, 1, 3, (F0, OK)),
                       call(3, REQUEST, 4)))
    text = check(history, SequentialSpec(World())).explain(history)
    lines = text.splitlines()
    assert lines[0].startswith("not linearizable")
    assert f"but the model answers ({hex(F1)}, 0)" in text
    drawn = [line for line in lines if line.startswith("t")]
    assert [line.split("|")[0].strip() for line in drawn] == ["t1", "t2", "t3"]
    assert drawn[2].rstrip("|").endswith(">")  # the pending call runs off the edge
    assert sum(line.startswith("*#") for line in lines) == 1  # the call that cannot follow


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_shared_memory_histories_judged_alike_whole_and_grouped(seed: int) -> None:
    rng = random.Random(seed)
    history = overlap(rng, sequential_run(rng, World(shared=True), 3, 4, "shared"),
                      pending=0.3)
    assert check(history, SequentialSpec(World(shared=True))).linearizable
    corrupted, _ = corrupt(rng, history)
    whole = check(corrupted, SequentialSpec(World(shared=True)), compositional=False)
    split = check(corrupted, SequentialSpec(World(shared=True)))
    assert whole.outcome is split.outcome is not Outcome.UNDECIDED


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), mix=MIX)
def test_a_history_survives_json(seed: int, mix: str) -> None:
    rng = random.Random(seed)
    history = overlap(rng, sequential_run(rng, World(), 3, 5, mix, observe_every=4),
                      pending=0.5)
    text = json.dumps(to_json(history))
    assert from_json(json.loads(text)) == history


@pytest.mark.parametrize("data", [{}, [{"thread": 1}], [{"thread": 1, "manager": "PageManager",
                                                         "op": "FreeFrame", "args": ["x"],
                                                         "invoked": 0}]],
                         ids=["not-a-list", "no-op", "string-argument"])
def test_json_that_is_no_history_is_refused(data: object) -> None:
    with pytest.raises(MalformedHistoryError):
        from_json(data)


def test_the_command_line_judges_a_history_file(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    good = History((call(1, REQUEST, 0, 2, (F3, OK)), call(2, REQUEST, 1, 3, (F0, OK))))
    bad = History((call(1, REQUEST, 0, 2, (F0, OK)), call(2, REQUEST, 1, 3, (F0, OK))))
    files = []
    for name, history in (("good", good), ("bad", bad)):
        files.append(tmp_path / f"{name}.json")
        files[-1].write_text(json.dumps(to_json(history)))
    assert concurrency_main([str(files[0])]) == 0
    assert concurrency_main([str(files[0]), "--matching", "strict"]) == 1
    assert concurrency_main([str(files[1])]) == 1
    assert "next could be" in capsys.readouterr().out
    assert concurrency_main([str(files[1]), "--nodes", "1"]) == 2
    (tmp_path / "no.json").write_text("{}")
    assert concurrency_main([str(tmp_path / "no.json")]) == 3


@pytest.mark.parametrize("op", [Op("VirtualMemoryManager", "MapVirtualAddress", (1, 2)),
                                Op("KernelHeap", "Expand", (8192,)),
                                Op(OBSERVE, "PageTables")], ids=str)
def test_operations_outside_the_contract_are_refused(op: Op) -> None:
    with pytest.raises(ValueError, match="no such operation"):
        World().apply(op)
