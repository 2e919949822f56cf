"""A family's hypothesis test built once per search (proofs/oracle/machine_test.py,
issue 16): chunk after chunk it draws what ``run_state_machine_as_test`` drew
from the same seeds and settings, and its example database key is the one
hypothesis computes."""

from __future__ import annotations

from typing import ClassVar

from hypothesis import HealthCheck, Phase, Verbosity, settings
from hypothesis import strategies as st
from hypothesis.internal.reflection import function_digest
from hypothesis.stateful import (
    RuleBasedStateMachine,
    get_state_machine_test,
    rule,
    run_state_machine_as_test,
)

from proofs.oracle.machine_test import MachineTest


class Recorder(RuleBasedStateMachine):
    """Records every value its rules draw, and where each example starts."""

    drawn: ClassVar[list[object]] = []

    def __init__(self) -> None:
        super().__init__()
        type(self).drawn.append("example")

    @rule(n=st.integers(0, 1 << 20))
    def number(self, n: int) -> None:
        type(self).drawn.append(n)

    @rule(word=st.text(max_size=4), flag=st.booleans())
    def word(self, word: str, flag: bool) -> None:
        type(self).drawn.append((word, flag))


def chunk_settings(size: int) -> settings:
    return settings(max_examples=size, stateful_step_count=6, deadline=None, database=None,
                    derandomize=False, verbosity=Verbosity.quiet,
                    phases=(Phase.generate, Phase.shrink),
                    suppress_health_check=list(HealthCheck))


CHUNKS = [(7, 3), (8, 3), (1_000_003, 2)]


def test_the_same_draws_chunk_after_chunk() -> None:
    Recorder.drawn = []
    for seed, size in CHUNKS:
        Recorder._hypothesis_internal_use_seed = seed
        run_state_machine_as_test(Recorder, settings=chunk_settings(size))
    expected, Recorder.drawn = Recorder.drawn, []
    test = MachineTest(Recorder, chunk_settings(CHUNKS[0][1]))
    for seed, size in CHUNKS:
        test.run(seed, chunk_settings(size))
    assert Recorder.drawn == expected
    assert expected.count("example") == sum(size for _, size in CHUNKS)


def test_the_database_key_is_hypothesis_own() -> None:
    built = get_state_machine_test(Recorder, settings=chunk_settings(3))
    key = function_digest(built.hypothesis.inner_test)  # type: ignore[attr-defined]
    assert MachineTest(Recorder, chunk_settings(3)).test._hypothesis_internal_database_key == key
