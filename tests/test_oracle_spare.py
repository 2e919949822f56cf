"""The next sequence's process started ahead (proofs/oracle/spare.py, issue 16): a
search uses it, its verdicts and reports cannot tell, and none outlives the
search, however it ends."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from proofs.oracle import child as child_module
from proofs.oracle.child import Child, ImplementationError
from proofs.oracle.run import Outcome, search
from proofs.oracle.spare import ENVIRONMENT, Spares
from tests.oracle_impls import kill_tagged, python_impl, tagged

pytestmark = pytest.mark.skipif(not Path("/proc/self/cmdline").exists(),
                                reason="finding left-behind processes needs /proc")

#: The model shim (its options after argv[2]), each start logged (its pid, a
#: line of argv[1]); the starts after the first ``argv[2]`` write last words to
#: stderr and exit 3 before their hello.
COUNTED = r'''
import os, runpy, sys
log, healthy = sys.argv[1], int(sys.argv[2])
with open(log, "a") as out:
    out.write(f"{os.getpid()}\n")
with open(log) as out:
    starts = len(out.read().split())
if starts > healthy:
    sys.stderr.write("dying words\n")
    sys.stderr.flush()
    os._exit(3)
sys.argv = [sys.argv[0], *sys.argv[3:]]
runpy.run_module("proofs.oracle.model_shim", run_name="__main__", alter_sys=True)
'''


@pytest.fixture
def tag() -> Iterator[str]:
    """A tag for one test's processes (in their command lines); any the test
    leaves are killed after it."""
    name = f"spare-{uuid.uuid4().hex}"
    yield name
    kill_tagged(name)


def counted(tmp_path: Path, tag: str, healthy: int = 1_000,
            *options: str) -> tuple[str, Path]:
    """The counted implementation and its log of starts; the model shim with
    ``options`` (by default --no-reset: a process per sequence)."""
    script, log = tmp_path / "counted.py", tmp_path / f"{tag}.log"
    script.write_text(COUNTED)
    return python_impl(str(script), str(log), str(healthy),
                       *(options or ("--no-reset",))), log


def starts(log: Path) -> int:
    return len(log.read_text().split()) if log.exists() else 0


def nothing_left(tag: str) -> bool:
    """No tagged process alive a moment after the run (SIGKILLed ones take a few
    milliseconds to go), and no child the oracle has not closed."""
    deadline = time.monotonic() + 1.0
    while tagged(tag) and time.monotonic() < deadline:
        time.sleep(0.02)
    return not tagged(tag) and not child_module._LIVE


def short_search(impl: str) -> Outcome:
    return search(impl, "spec", max_examples=4, steps=3, seed=1, time_limit=120,
                  families=("kernel",))


def test_a_search_starts_one_process_ahead_and_leaves_none(tmp_path: Path, tag: str,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    """Every session (the probe's, each sequence's) takes the spare started
    during the one before: N sessions start N + 1 processes (the last spare is
    never taken), and it is closed when the search ends; with spares turned off,
    N."""
    impl, log = counted(tmp_path, tag)
    outcome = short_search(impl)
    sessions = 1 + outcome.coverage.sessions  # the probe's, then the sequences'
    assert outcome.passed and outcome.coverage.sessions >= 4
    assert starts(log) == sessions + 1
    assert nothing_left(tag)
    log.unlink()
    monkeypatch.setenv(ENVIRONMENT, "0")
    outcome = short_search(impl)
    assert outcome.passed and starts(log) == 1 + outcome.coverage.sessions
    assert nothing_left(tag)


def test_a_spare_that_crashed_is_reported_as_a_fresh_start(tmp_path: Path, tag: str) -> None:
    """A spare that exited before it was taken: its exit status, its last words
    and the hello it never wrote, as a fresh start that crashes reports them."""
    impl, _ = counted(tmp_path, tag, healthy=1)
    spares = Spares()
    try:
        spares.take(impl, 5.0).close()
        spare = spares._spare
        assert spare is not None
        deadline = time.monotonic() + 30
        while spare.status() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert spare.status() == 3, "the spare crashed before it was taken"
        with pytest.raises(ImplementationError) as taken:
            spares.take(impl, 5.0)
        assert spares._spare is None
    finally:
        spares.close()
    with pytest.raises(ImplementationError) as fresh:
        Child(impl, 5.0)
    said = taken.value
    assert (said.kind, said.detail, said.stderr) == \
        (fresh.value.kind, fresh.value.detail, fresh.value.stderr)
    assert said.kind == "crash" and "(exit status 3)" in said.detail
    assert said.stderr == "dying words"
    assert nothing_left(tag)


def test_a_crash_at_the_hello_is_the_same_divergence_with_spares_or_without(
        tmp_path: Path, tag: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first sequence's process crashes before its hello (a spare, started
    during the probe): the search's verdict is the one without spares."""
    impl, log = counted(tmp_path, tag, healthy=1)
    found = []
    for spare in ("1", "0"):
        monkeypatch.setenv(ENVIRONMENT, spare)
        log.unlink(missing_ok=True)
        d = short_search(impl).divergence
        assert d is not None
        found.append((d.kind, d.reason, d.violated, d.detail, len(d.exchanges)))
        assert nothing_left(tag)
    assert found[0] == found[1]
    assert found[0][0] == "crash" and "dying words" in found[0][3]


def test_a_spare_started_with_another_environment_is_not_taken(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment and working directory are those at the take, as a fresh
    start's: a spare started before they changed is closed, not taken."""
    impl = f'echo "$SPARE_PROBE $(pwd)" >&2; {python_impl("-m", "proofs.oracle.model_shim")}'
    spares = Spares()
    try:
        here = os.getcwd()
        first = spares.take(impl, 5.0)
        assert first.hello_stderr == [f" {here}"]
        first.close()
        monkeypatch.setenv("SPARE_PROBE", "changed")
        second = spares.take(impl, 5.0)
        assert second.hello_stderr == [f"changed {here}"]
        second.close()
        monkeypatch.chdir(tmp_path)
        third = spares.take(impl, 5.0)
        assert third.hello_stderr == [f"changed {tmp_path}"]
        third.close()
        assert spares.started == 6  # a fresh child and a spare each time
    finally:
        spares.close()
    assert not child_module._LIVE


def test_an_interrupted_search_closes_its_spare(tmp_path: Path, tag: str) -> None:
    """KeyboardInterrupt in the middle of a search (here from its progress
    callback): the spare is closed on the way out."""
    impl, log = counted(tmp_path, tag)

    def interrupt(outcome: Outcome) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        search(impl, "strict", max_examples=20, steps=3, seed=1, time_limit=120,
               families=("kernel",), progress=interrupt)
    assert starts(log) >= 2
    assert nothing_left(tag)


def test_a_retired_child_is_ended_once_it_exited_or_when_the_pool_closes(tmp_path: Path,
                                                                          tag: str) -> None:
    """A sequence's child, retired at its end, exits while the next sequence
    runs and is ended (reaped, its group killed) at the next retire; the pool's
    close ends the last one and the spare, even one that ignores its closed
    stdin."""
    impl, _ = counted(tmp_path, tag)
    spares = Spares()
    try:
        first = spares.take(impl, 5.0)
        spares.retire(first)
        assert first in child_module._LIVE, "retired, not ended at once"
        deadline = time.monotonic() + 30
        while first.status() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert first.status() == 0, "it exited on its own once its stdin was closed"
        second = spares.take(impl, 5.0)
        spares.retire(second)
        assert first not in child_module._LIVE and first.process.returncode == 0
        assert second in child_module._LIVE
    finally:
        spares.close()
    assert nothing_left(tag)
    sleeper = python_impl("-c", "import json, sys, time; print(json.dumps({'protocol': 1, "
                          "'implementation': 'deaf', 'managers': ['PageManager'], "
                          "'observations': []}), "
                          f"flush=True); time.sleep(300)  # {tag}")
    spares = Spares()
    try:
        deaf = spares.take(sleeper, 5.0)
        spares.retire(deaf)
    finally:
        spares.close()
    assert deaf.process.returncode == -signal.SIGKILL
    assert nothing_left(tag)


def test_a_child_that_declares_reset_serves_the_passing_sequences(tmp_path: Path, tag: str
                                                                  ) -> None:
    """PROTOCOL.md "Reset": after a passing sequence the child is reset and serves
    the next one: a search starts two processes (the first and the spare that
    stands by), whatever the number of sequences."""
    impl, log = counted(tmp_path, tag, 1_000, "--validate")
    outcome = short_search(impl)
    assert outcome.passed and outcome.coverage.sessions >= 4
    assert starts(log) == 2
    assert nothing_left(tag)


#: The model shim declaring reset and ignoring it: every sequence after the
#: first finds the state the one before left.
KEEPS_STATE = r'''
import sys
from proofs.oracle import model_shim
world = model_shim.ModelWorld()
model_shim.ModelWorld = lambda: world
sys.exit(model_shim.main([]))
'''


def test_a_reset_that_keeps_the_state_is_a_divergence_that_does_not_reproduce(
        tmp_path: Path, tag: str) -> None:
    """A child that answers a reset and stays as it was fails its next sequence
    (the set-up finds memory initialized already); reuse then stops, the sequence
    sent again to a fresh process passes, and the verdict says the divergence
    did not reproduce: never a pass, never a bug of a shrunk trace that a fresh
    process does not show."""
    script = tmp_path / "keeps.py"
    script.write_text(KEEPS_STATE)
    outcome = search(python_impl(str(script), tag), "spec", max_examples=6, steps=3, seed=1,
                     time_limit=120, families=("kernel",))
    assert not outcome.passed and outcome.divergence is not None
    assert "not reproducible" in outcome.divergence.reason
    assert nothing_left(tag)


#: The model shim declaring reset and never answering it (its reset makes a new
#: world: the second one never comes).
HANGS_ON_RESET = r'''
import sys, time
from proofs.oracle import model_shim
made = []
class Hanging(model_shim.ModelWorld):
    def __init__(self):
        if made:
            time.sleep(60)
        made.append(1)
        super().__init__()
model_shim.ModelWorld = Hanging
sys.exit(model_shim.main([]))
'''


def test_a_child_that_hangs_on_a_reset_costs_one_timeout_and_the_search_goes_on(
        tmp_path: Path, tag: str) -> None:
    """A reset unanswered within the request timeout ends that child and turns
    resets off for the search: the sequences pass in fresh processes."""
    script = tmp_path / "hangs.py"
    script.write_text(HANGS_ON_RESET)
    spares = Spares()
    impl = python_impl(str(script), tag)
    try:
        first = spares.take(impl, 1.0)
        spares.retire(first, passed=True)
        assert not spares.reusing and spares._reset is None
        second = spares.take(impl, 1.0)
        assert second is not first
        spares.retire(second, passed=True)  # no reset tried: ended at once
        assert spares.reused == 0
    finally:
        spares.close()
    assert nothing_left(tag)
