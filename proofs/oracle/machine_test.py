"""A family's hypothesis test, built once per search and run chunk after chunk.

hypothesis' ``run_state_machine_as_test`` builds the state machine's test afresh
on every call and, on every run, digests it for the example database's key:
``inspect.getsource`` of the machine class (a class ``type()`` made, which it
looks for by parsing its module: about 3 ms) and of the runner (about 5 ms).
The search runs the test once a chunk of 3 sequences (run.py's CHUNK), so that
was 8 ms a chunk, a tenth of the kernel family's search against the C fixture
(issue 16). :class:`MachineTest` builds the test once with
``get_state_machine_test`` (split out of ``run_state_machine_as_test`` for
callers that run the test themselves, hypothesis/stateful.py) and computes its
database key once, as ``run_engine`` would (``function_digest`` of the inner
test); each chunk sets only its seed and settings (the attributes
``run_state_machine_as_test`` and ``@settings`` set). The draws are the seed's,
as before, and the database key is the same: ``--database`` finds what it
saved before.
"""

from __future__ import annotations

from typing import Any

from hypothesis import settings as Settings  # noqa: N812 (hypothesis' own name)
from hypothesis.errors import FlakyStrategyDefinition
from hypothesis.internal.reflection import function_digest
from hypothesis.stateful import get_state_machine_test


class MachineTest:
    """The test of one machine class; the first chunk's settings give the
    per-example ones (the steps of a sequence, verbosity), constant over a search."""

    def __init__(self, machine: type, first: Settings) -> None:
        self._flaky = {"selecting_rule": False}
        test: Any = get_state_machine_test(machine, settings=first, _flaky_state=self._flaky)
        test._hypothesis_internal_database_key = function_digest(test.hypothesis.inner_test)
        self.test = test

    def run(self, seed: int, settings: Settings) -> None:
        """One chunk: the examples ``settings`` asks for, drawn from seed."""
        self.test._hypothesis_internal_use_seed = seed
        self.test._hypothesis_internal_use_settings = settings
        self._flaky["selecting_rule"] = False
        try:
            self.test()
        except FlakyStrategyDefinition as err:  # the note run_state_machine_as_test adds
            if self._flaky["selecting_rule"]:
                err.add_note("while selecting a rule to run. This is usually caused by a "
                             "flaky precondition, or a bundle that was unexpectedly empty.")
            raise
