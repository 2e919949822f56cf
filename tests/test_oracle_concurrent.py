"""The concurrent oracle (protocol 3; docs/concurrency.md, "Protocol"): the C
fixture's threaded build passes, each of its race switches is caught as a
history that is not linearizable with at most 4 threads and 12 calls, a thread
that does not answer is stopped with its call pending, replies without times
are timed by the oracle, and the command line keeps the oracle's exit codes.

Each switch's search takes a few seconds (the race window is a 200 us sleep
between the check and the act: tests/oracle_impl/memimpl.c); MEMSPEC_SLOW=1
runs it from three seeds with the full 120 s bound."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from proofs.concurrency.history import from_json
from proofs.concurrency.linearize import Outcome
from proofs.concurrency.world import Op, World
from proofs.oracle import concurrent_cli
from proofs.oracle.concurrent import observed_value, run_plan
from proofs.oracle.concurrent_plan import Plan, Step, bad_blocks
from proofs.oracle.concurrent_search import SearchOptions, search, smaller, stress
from proofs.oracle.config import DEFAULTS
from proofs.oracle.protocol import ProtocolError, check_hello
from proofs.oracle.run import search as oracle_search
from proofs.report import main as report_main
from tests.budget import SLOW
from tests.oracle_impls import build_c, python_impl

KERNEL = DEFAULTS["kernel"]
R = Step("RequestFrame")

#: A protocol 3 implementation in Python: the model, answering one request at a
#: time (so every history it gives is linearizable), with or without times;
#: ``hang`` never answers thread 2's second call; ``leak`` reports one frame
#: more used than it holds at the first quiescent FrameCounts (every call's
#: reply right, the state seen broken).
FAKE = r'''
import json, sys, time
from proofs.oracle.world import MANAGERS, OBSERVATIONS, ModelWorld
how = sys.argv[1]
def out(message):
    sys.stdout.write(json.dumps(message) + "\n"); sys.stdout.flush()
out({"protocol": 3, "threads": 4, "implementation": "fake " + how,
     "managers": list(MANAGERS), "observations": list(OBSERVATIONS)})
world, seen, leaked = ModelWorld(), {}, False
for line in sys.stdin:
    request = json.loads(line)
    thread = request.pop("thread", None)
    seen[thread] = seen.get(thread, 0) + 1
    if how == "hang" and thread == 2 and seen[thread] == 2:
        continue
    invoked = time.monotonic_ns()
    reply = world.handle(request)
    if how == "leak" and request.get("observe") == "FrameCounts" and not leaked:
        leaked = True
        reply["observed"]["free"] -= 1
        reply["observed"]["used"] += 1
    if thread is not None:
        reply["thread"] = thread
        if how == "times":
            reply["invoked"], reply["returned"] = invoked, time.monotonic_ns()
        if how == "backwards":
            reply["invoked"], reply["returned"] = 10, 5
    out(reply)
'''


def fake(tmp: Path, how: str) -> str:
    script = tmp / "fake3.py"
    script.write_text(FAKE)
    return python_impl(str(script), how)


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("threads")


def threaded(out: Path, *bugs: str) -> str:
    return build_c(out, "THREADS", *bugs)


def test_a_protocol_3_hello_declares_its_threads() -> None:
    hello = check_hello({"protocol": 3, "threads": 4, "implementation": "x",
                         "managers": ["PageManager"], "observations": []})
    assert hello.threads == 4
    assert check_hello({"protocol": 1, "implementation": "x", "managers": [],
                        "observations": []}).threads == 0
    for wrong in ({"protocol": 3}, {"protocol": 1, "threads": 2},
                  {"protocol": 3, "threads": 0}, {"protocol": 3, "threads": 65}):
        with pytest.raises(ProtocolError):
            check_hello({"implementation": "x", "managers": [], "observations": [], **wrong})


def test_observations_become_the_checkers_replies() -> None:
    assert observed_value("FrameCounts", {"frames": 48, "free": 35, "used": 13}) == (35, 13)
    assert observed_value("FrameBitmap", {"used": [[0, 3], [7, 2]]}) == (0, 1, 2, 7, 8)
    assert observed_value("HeapWalk", {"blocks": [{"header": 8, "size": 40, "hole": True}]}) \
        == ((8, 40, True),)
    assert observed_value("HoleIndex", {"holes": [[40, 8]]}) == ((40, 8),)


def test_a_plan_survives_json_and_shrinks_to_fewer_threads_and_calls() -> None:
    plan = Plan(((R, Step("FreeFrame", "any", 1)), (R,), (Step("GetFreeFrameCount"),)),
                (Step("Alloc", size=20, flags=(False, True)),), (((R,), (R,)),))
    assert Plan.from_json(json.loads(json.dumps(plan.to_json()))) == plan
    sizes = [p.size() for p in smaller(plan)]
    assert {(3, 5), (2, 5), (2, 6), (3, 6)} <= set(sizes)  # a round, threads, a call
    assert all(s < plan.size() for s in sizes)


def test_the_pools_bad_blocks_are_refused_as_the_model_refuses_them() -> None:
    """FreeBlock's ``bad`` blocks, from the run's pool (the checker's, made at
    set-up): off the arena and off a boundary (ERROR_INVALID_ADDRESS), the last
    block, not carved yet (ERROR_INVALID_BLOCK)."""
    world = World(kernel=KERNEL, pool=True)
    pool = world.pool
    assert pool.created and pool.arena
    refused = [world.apply(Op("MemoryPool", "FreeBlock", (block,)))
               for block in bad_blocks(pool.arena, pool.block_size, pool.max_blocks)]
    assert refused == [(False, 487), (False, 487), (False, 9)]


def test_a_pool_run_observes_the_free_list(builds: Path) -> None:
    """With the pool, PoolFreeList is asked at each quiescent point and compared
    with the model's: the blocks carved all freed, then one popped."""
    plan = Plan(((Step("AllocBlock"), Step("FreeBlock", "own", 0)),
                 (Step("AllocBlock"), Step("FreeBlock", "own", 0))),
                (), (((Step("AllocBlock"),), (Step("GetFreeFrameCount"),)),))
    judged = run_plan(threaded(builds), plan, KERNEL, heap=False, timeout=5, pool=True)
    assert judged.verdict is not None and judged.verdict.linearizable, judged.problem
    assert judged.history is not None
    seen = [c.reply for c in judged.history if c.op.name == "PoolFreeList"]
    assert len(seen) == 2 and seen[0] is not None and seen[1] is not None
    (first, carved), _ = seen[0]
    # two blocks carved when the AllocBlocks overlapped, one when a thread freed its
    # block before the other asked (the threads' interleaving decides): all free
    assert carved in (1, 2) and len(first) == carved
    (second, _), _ = seen[1]
    assert second == first[1:]  # the AllocBlock popped the head


def test_the_threaded_fixture_passes(builds: Path) -> None:
    impl = threaded(builds)
    found = search(impl, KERNEL, SearchOptions(heap=True, max_examples=25, attempts=1,
                                               time_limit=60))
    assert found.failure is None and found.undecided is None
    assert found.examples == 25


def test_an_allocator_taking_other_free_frames_passes(builds: Path) -> None:
    """HIGHEST_FRAME takes the highest free frame for callers and for its own page
    tables and heap pages: any free frame is allowed (docs/concurrency.md,
    "Matching replies"). A plan where the heap grows into a frame a caller freed
    (the model takes the lowest) passes too."""
    impl = threaded(builds, "HIGHEST_FRAME")
    found = search(impl, KERNEL, SearchOptions(heap=True, max_examples=20, attempts=1))
    assert found.failure is None and found.undecided is None and found.examples == 20
    grows = Plan(((R,), (R, Step("FreeFrame", "own", 0), Step("Alloc", size=0,
                                                               flags=(True, True)))))
    assert stress(impl, grows, KERNEL, 5, heap=True, timeout=5).failures == 0
    page = Step("Alloc", size=0, flags=(True, True))
    freed_then_grown = Plan(((page,), (R, Step("FreeFrame", "own", 0))), (),
                            (((R,), (Step("FreeFrame", "any", 0),)),))
    assert stress(impl, freed_then_grown, KERNEL, 5, heap=True, timeout=5).failures == 0


#: The lock-free frame allocator (tests/oracle_impl/memimpl.c, LOCKFREE_FRAMES), as
#: is and with a sleep between each load and its compare-and-swap (WIDE_CAS: the
#: swaps then race, and fail and retry; the default run has this one only).
LOCKFREE = [("LOCKFREE_FRAMES", "WIDE_CAS"), *([("LOCKFREE_FRAMES",)] if SLOW else [])]
F = Step("FreeFrame", "any", 0)
#: Plans where RequestFrame, FreeFrame and GetFreeFrameCount race on one word of
#: the bitmap, and an Alloc that grows the heap races them for frames.
RACING = [Plan(((R,), (R,))), Plan(((F,), (F,)), (R,)),
          Plan(((R, F, Step("GetFreeFrameCount")), (R, F, Step("GetFreeFrameCount")))),
          Plan(((Step("Alloc", size=4096, flags=(False, True)),), (R, R), (F,)), (R,))]


@pytest.mark.parametrize("switches", LOCKFREE, ids=["-".join(s) for s in LOCKFREE])
def test_a_lock_free_frame_allocator_passes(builds: Path, switches: tuple[str, ...]) -> None:
    """RequestFrame and FreeFrame without a lock, each a compare-and-swap of one
    bitmap word (docs/concurrency.md, "A lock-free frame allocator"): the search
    and the racing plans replayed find nothing; the same build with a store in
    place of the swap (BUG_LOCKFREE_STORE) is caught by the same replays."""
    impl = threaded(builds, *switches)
    for seed in (0, 1, 2) if SLOW else (1,):
        found = search(impl, KERNEL, SearchOptions(heap=True, seed=seed, max_examples=20,
                                                   attempts=1, time_limit=60))
        assert found.failure is None and found.undecided is None, seed
        assert found.examples == 20
    for plan in RACING:
        result = stress(impl, plan, KERNEL, 10, heap=True, timeout=5)
        assert (result.failures, result.undecided) == (0, 0), str(plan)
    if "WIDE_CAS" in switches:
        broken = threaded(builds, *switches, "BUG_LOCKFREE_STORE")
        assert stress(broken, RACING[0], KERNEL, 10, heap=False, timeout=5).failures > 0


def test_a_lock_free_frame_allocator_passes_the_sequential_oracle(builds: Path) -> None:
    """The same build judged one call at a time, spec and strict (frames from the
    lowest, as the model takes them)."""
    impl = threaded(builds, "LOCKFREE_FRAMES")
    for mode in ("spec", "strict"):
        outcome = oracle_search(impl, mode, max_examples=10, time_limit=60, steps=20)
        assert outcome.passed and outcome.examples == 10, mode


def test_the_kit_runs_each_threads_calls_at_once(builds: Path) -> None:
    """Calls of different threads overlap in time (their CLOCK_MONOTONIC
    intervals), which a server answering one request at a time never shows,
    whatever its calls do. Shown on the race build, whose sleep inside
    RequestFrame gives another thread time to start: the correct build's calls
    take about a microsecond, less than waking a thread, and rarely overlap
    (docs/concurrency.md, "Protocol")."""
    impl = threaded(builds, "BUG_RACE_REQUEST")
    plan = Plan(((R, R, R), (R, R, R), (R, R, R)))
    for _ in range(20):
        judged = run_plan(impl, plan, KERNEL, heap=False, timeout=5)
        assert judged.timing == "implementation" and judged.history is not None
        calls = [c for c in judged.history if c.op.manager == "PageManager"]
        if any(not a.precedes(b) and not b.precedes(a) for a in calls for b in calls
               if a is not b):
            return
    pytest.fail("no two calls overlapped in 20 runs")


def test_the_threaded_fixture_passes_with_the_pool(builds: Path) -> None:
    """--pool: the pool made at set-up as the checker's world makes it (same
    arena, same blocks), AllocBlock and FreeBlock racing the frame and heap calls."""
    found = search(threaded(builds), KERNEL, SearchOptions(heap=True, pool=True,
                                                           max_examples=25, attempts=1,
                                                           time_limit=60))
    assert found.failure is None and found.undecided is None
    assert found.examples == 25


#: Each race switch, with whether its calls are the heap's or the pool's.
SWITCHES = [("BUG_RACE_REQUEST", False, False), ("BUG_RACE_FREE", False, False),
            ("BUG_RACE_ALLOC", True, False), ("BUG_RACE_POOL", False, True)]


@pytest.mark.parametrize(("bug", "heap", "pool"), SWITCHES, ids=[s[0] for s in SWITCHES])
def test_each_race_is_caught_small(builds: Path, bug: str, heap: bool, pool: bool) -> None:
    impl = threaded(builds, bug)
    for seed in (0, 1, 2) if SLOW else (1,):
        found = search(impl, KERNEL, SearchOptions(heap=heap, pool=pool, seed=seed,
                                                   time_limit=120,
                                                   shrink_seconds=30 if SLOW else 3))
        failure = found.failure
        assert failure is not None, f"{bug} not caught from seed {seed}"
        assert failure.plan.used_threads <= 4 and failure.plan.calls <= 12
        assert failure.verdict is not None and failure.history is not None
        assert failure.verdict.outcome is Outcome.NOT_LINEARIZABLE
        assert "not linearizable" in failure.verdict.explain(failure.history)


A = Step("Alloc", size=20, flags=(False, True))
#: The smallest plan each race shows in: two threads at the same call, on a frame
#: or block thread 1 made first where the race is a double free.
SMALLEST = {
    "BUG_RACE_REQUEST": Plan(((R,), (R,))),
    "BUG_RACE_FREE": Plan(((Step("FreeFrame", "any", 0),), (Step("FreeFrame", "any", 0),)),
                          (R,)),
    "BUG_RACE_ALLOC": Plan(((A,), (A,))),
    "BUG_RACE_POOL": Plan(((Step("AllocBlock"),), (Step("AllocBlock"),))),
}


@pytest.mark.parametrize("bug", list(SMALLEST))
def test_stress_counts_how_often_a_race_shows(builds: Path, bug: str) -> None:
    """Replayed 20 times, the smallest plan of each race fails on some runs with
    the race build and on none with the correct one."""
    plan = SMALLEST[bug]
    heap, pool = bug == "BUG_RACE_ALLOC", bug == "BUG_RACE_POOL"
    racy = stress(threaded(builds, bug), plan, KERNEL, 20, heap=heap, timeout=5, pool=pool)
    assert racy.failures > 0 and racy.first_failure is not None
    assert racy.first_failure.plan == plan
    correct = stress(threaded(builds), plan, KERNEL, 20, heap=heap, timeout=5, pool=pool)
    assert (correct.failures, correct.undecided) == (0, 0)


def test_a_silent_thread_is_stopped_and_its_call_left_pending(tmp_path: Path) -> None:
    plan = Plan(((R, R), (R, R, R)))
    judged = run_plan(fake(tmp_path, "hang"), plan, KERNEL, heap=False, timeout=0.5)
    assert judged.stopped == [2] and judged.history is not None
    pending = [c for c in judged.history if c.pending]
    assert [(c.thread, c.op.name) for c in pending] == [(2, "RequestFrame")]
    assert judged.verdict is not None and judged.verdict.linearizable


@pytest.mark.parametrize("how", ["times", "none"])
def test_replies_with_or_without_times_are_judged(tmp_path: Path, how: str) -> None:
    plan = Plan(((R, Step("FreeFrame", "own", 0)), (R, Step("GetFreeFrameCount"))))
    judged = run_plan(fake(tmp_path, how), plan, KERNEL, heap=False, timeout=5)
    assert judged.problem is None and judged.verdict is not None
    assert judged.verdict.linearizable
    assert judged.timing == ("implementation" if how == "times" else "oracle")


def test_a_broken_state_at_the_quiescent_observation_is_a_divergence(tmp_path: Path) -> None:
    plan = Plan(((R, Step("FreeFrame", "own", 0)), (R,)))
    judged = run_plan(fake(tmp_path, "leak"), plan, KERNEL, heap=False, timeout=5)
    assert judged.failed and judged.verdict is not None and judged.history is not None
    assert judged.verdict.outcome is Outcome.NOT_LINEARIZABLE
    blocked = [judged.history.calls[b.call] for b in judged.verdict.blocked]
    assert [c.op.name for c in blocked] == ["FrameCounts"]


def test_a_round_ends_at_a_quiescent_point_observed(tmp_path: Path) -> None:
    """A plan of two rounds: the observations after the first are calls of the
    history between the rounds; a broken state seen there is the divergence."""
    plan = Plan(((R,), (R,)), (), (((Step("FreeFrame", "any", 0),), (R,)),))
    judged = run_plan(fake(tmp_path, "leak"), plan, KERNEL, heap=False, timeout=5)
    assert judged.verdict is not None and judged.history is not None
    names = [c.op.name for c in judged.history]
    assert names[2:4] == ["FrameCounts", "FrameBitmap"] and names[-2:] == names[2:4]
    blocked = [b.call for b in judged.verdict.blocked]
    assert blocked == [2]
    good = run_plan(fake(tmp_path, "times"), plan, KERNEL, heap=False, timeout=5)
    assert good.verdict is not None and good.verdict.linearizable


def test_a_protocol_3_implementation_is_judged_sequentially_as_before(builds: Path) -> None:
    """python -m proofs.oracle --impl (no thread in any request) passes the
    threaded build in both modes, as it passes the sequential one."""
    impl = threaded(builds)
    for mode in ("spec", "strict"):
        outcome = oracle_search(impl, mode, max_examples=8, time_limit=60, steps=15)
        assert outcome.passed and outcome.examples == 8, mode
        # its pool is for concurrent runs: no sequential family has one
        assert "manager MemoryPool (judged by python -m proofs.oracle concurrent only)" \
            in outcome.skipped


def test_times_no_execution_has_are_a_protocol_error(tmp_path: Path) -> None:
    judged = run_plan(fake(tmp_path, "backwards"), Plan(((R,), (R,))), KERNEL, heap=False,
                      timeout=5)
    assert judged.failed and judged.problem is not None
    assert judged.problem[0] == "protocol" and "no history" in judged.problem[1]


def test_the_command_line_keeps_the_oracles_exit_codes(
        builds: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = tmp_path / "race.json"
    bug = threaded(builds, "BUG_RACE_REQUEST")
    page = tmp_path / "race.html"
    assert concurrent_cli.main(["--impl", bug, "--seed", "1", "--quiet", "--stress", "5",
                                "--shrink-time", "1", "--trace-out", str(trace),
                                "--html", str(page)]) == 1
    out = capsys.readouterr().out
    assert "DIVERGED" in out and "stress:" in out and "closest order" in out
    saved = json.loads(trace.read_text())
    history = from_json(saved["history"])
    assert history and saved["verdict"]["outcome"] == "not linearizable"
    assert saved["verdict"]["blocked"] and saved["verdict"]["orders"]
    drawn = page.read_text()  # one lane per thread, a box per call, the blocked in red
    assert drawn.count('class="lane"') == len(history.threads)
    assert drawn.count('<g class="call') == len(history)
    assert drawn.count(' blocked"') == len(saved["verdict"]["blocked"])
    again = tmp_path / "again.html"
    assert report_main([str(trace), "--html", str(again)]) == 0
    assert again.read_text() == drawn
    assert concurrent_cli.main(["--impl", bug, "--replay", str(trace), "--stress", "20"]) == 1
    good = threaded(builds)
    assert concurrent_cli.main(["--impl", good, "--replay", str(trace), "--stress", "3"]) == 0
    assert concurrent_cli.main(["--impl", good, "--max-examples", "5", "--quiet"]) == 0
    sequential = build_c(builds)
    assert concurrent_cli.main(["--impl", sequential, "--quiet"]) == 2
    assert "does not declare concurrency" in capsys.readouterr().err
    assert concurrent_cli.main(["--impl", fake(tmp_path, "times"), "--pool", "--quiet"]) == 2
    assert "lacks ['MemoryPool']" in capsys.readouterr().err
    assert concurrent_cli.main(["--impl", good, "--max-examples", "3", "--nodes", "1",
                                "--quiet"]) == 3  # undecided: never a pass
    assert "UNDECIDED" in capsys.readouterr().out
    for wrong in (["--threads", "1"], ["--max-examples", "0"], ["--time", "nan"],
                  ["--stress", "-1"]):
        assert concurrent_cli.main(["--impl", good, *wrong]) == 2, wrong


def test_the_command_line_runs_the_pool(builds: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """--pool finds BUG_RACE_POOL and saves it; a replay of the saved plan makes
    the pool again (its calls say so), fails on the race build, passes on the
    correct one."""
    trace = tmp_path / "pool.json"
    bug = threaded(builds, "BUG_RACE_POOL")
    assert concurrent_cli.main(["--impl", bug, "--pool", "--seed", "1", "--quiet",
                                "--shrink-time", "1", "--trace-out", str(trace)]) == 1
    assert "DIVERGED" in capsys.readouterr().out
    assert "AllocBlock" in json.dumps(json.loads(trace.read_text())["plan"])
    good = threaded(builds)
    assert concurrent_cli.main(["--impl", good, "--replay", str(trace), "--stress", "3"]) == 0
    assert concurrent_cli.main(["--impl", bug, "--replay", str(trace), "--stress", "20"]) == 1
