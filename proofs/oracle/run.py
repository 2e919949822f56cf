"""Search, shrink, replay: the oracle's runs and what they conclude.

:func:`search` lets hypothesis generate sequences (the machines of
:mod:`proofs.oracle.families.rules`) in chunks of examples, each chunk seeded from
``--seed``, until the example budget or the time budget is spent or an
implementation diverges; hypothesis then shrinks the sequence and replays the
minimal one, whose exchanges the :class:`Outcome` carries. :func:`replay`
sends the operations of a saved trace once. Neither ever lets the
implementation's behaviour crash the oracle: every fault is a divergence.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, Verbosity, settings
from hypothesis.database import ExampleDatabase
from hypothesis.errors import Flaky, Unsatisfiable
from hypothesis.stateful import run_state_machine_as_test

from proofs.machines.runner import shrink_limit
from proofs.machines.witness import quiet
from proofs.oracle.config import problems
from proofs.oracle.families import family_named, runnable
from proofs.oracle.families.rules import without_unsupported
from proofs.oracle.managers import Family
from proofs.oracle.protocol import Hello, OperationUnsupported, ProtocolError, validate
from proofs.oracle.session import (
    INSPECTIONS,
    Coverage,
    DivergenceError,
    Exchange,
    OracleUnknownError,
    Session,
    StrictSession,
)
from proofs.oracle.spec_session import Judges, SpecSession
from proofs.oracle.world import MANAGERS, OBSERVATIONS, PARTS_OF, PROTOCOL_VERSION

TRACE_FORMAT = "memspec-oracle-trace"
#: Examples per hypothesis run between two looks at the clock.
CHUNK = 3


@dataclass
class Outcome:
    """What one run of the oracle found."""

    mode: str
    implementation: str = ""
    #: The family of the sequence that diverged (the kernel's until one does).
    family: str = "kernel"
    examples: int = 0
    seconds: float = 0.0
    divergence: DivergenceError | None = None
    unknown: OracleUnknownError | None = None
    skipped: list[str] = field(default_factory=list)
    coverage: Coverage = field(default_factory=Coverage)

    #: Seconds from the start to the first divergence (the rest was shrinking).
    caught_after: float | None = None
    #: The configuration's fields that differ from the defaults (PROTOCOL.md,
    #: "Configuration"), as the sequences used them.
    config: dict[str, Any] = field(default_factory=dict)
    #: Why the model refuses the configuration the hello declares (exit 4).
    refused: str | None = None

    @property
    def passed(self) -> bool:
        return (self.divergence is None and self.unknown is None and self.refused is None
                and self.examples > 0)


def session_factory(command: str, mode: str, timeout: float, coverage: Coverage,
                    judges: Judges | None, family: Family, observe: bool = True,
                    config: dict[str, Any] | None = None) -> Callable[[], Session]:
    """Sessions of a family; ``config``: the command line's configuration, over
    the hello's (:mod:`proofs.oracle.config`)."""
    def new() -> Session:
        if mode == "strict":
            return StrictSession(command, timeout, coverage, family, observe, config)
        assert judges is not None
        return SpecSession(command, timeout, coverage, judges, family, config)
    return new


def _probe(new: Callable[[], Session], outcome: Outcome,
           families: tuple[str, ...] | None = None) -> Session | None:
    """Start the implementation once: its hello (what it supports, what is
    skipped), and its configuration checked against the model's preconditions
    (for the families named, all when None)."""
    try:
        session = new()
    except DivergenceError as exc:
        outcome.divergence = exc
        return None
    hello = session.hello
    outcome.implementation = hello.implementation
    outcome.skipped = ([f"manager {m}" for m in MANAGERS if m not in session.managers]
                       + [f"observation {o}" for o in OBSERVATIONS
                          if o not in hello.observations]
                       + [f"part {part} (not declared: its operations are unsupported)"
                          for part in hello.parts_left_out]
                       + [f"operation {m}.{op} (declared unsupported)"
                          for m, op in sorted(hello.unsupported)
                          if m in session.managers and not _in_left_out(hello, m, op)])
    session.close()
    outcome.config = session.config.declared()
    refused = problems(session.config, families)
    if refused:
        outcome.refused = "; ".join(refused)
        return None
    if not runnable(session.managers):
        outcome.divergence = DivergenceError(
            "the implementation declares no manager a family can start with (PageManager, "
            "or DosMemoryManager): nothing can be set up", ("protocol",), [], kind="protocol")
        return None
    return session


def _in_left_out(hello: Hello, manager: str, op: str) -> bool:
    """Whether op belongs to a part of manager the hello leaves out."""
    return any(op in PARTS_OF[manager][name.partition(".")[2]][0]
               for name in hello.parts_left_out if name.partition(".")[0] == manager)


def families_of(session: Session, outcome: Outcome,
                wanted: tuple[str, ...] | None = None) -> list[Family]:
    """The families to run on an implementation (of those named in ``wanted``,
    all when None): those whose managers it declares and, in spec mode, whose
    observations it declares; the others are added to what the outcome skipped,
    with the reason."""
    chosen = []
    for family in runnable(session.managers):
        if wanted is not None and family.name not in wanted:
            continue
        missing = [o for o in family.spec_observations
                   if o not in session.observations and o not in session.hello.unserved]
        if missing and outcome.mode == "spec":
            outcome.skipped.append(f"family {family.name} (spec mode needs the observations "
                                   f"{', '.join(missing)})")
        else:
            chosen.append(family)
    return chosen


def search(command: str, mode: str, *, max_examples: int = 100, time_limit: float = 60.0,
           seed: int = 0, steps: int = 25, timeout: float = 5.0, shrink_seconds: float = 30.0,
           progress: Callable[[Outcome], None] | None = None,
           families: tuple[str, ...] | None = None,
           database: ExampleDatabase | None = None,
           config: dict[str, Any] | None = None) -> Outcome:
    """Generate, judge and (on a divergence) shrink sequences against command:
    every runnable family (or those named in ``families``) in turn, a chunk of
    examples each. With a hypothesis example ``database`` (``--database``), the
    failing sequences any run saved there are replayed first, and a new one is
    saved there (hypothesis' reuse phase). ``config``: the command line's
    configuration, over the hello's."""
    outcome = Outcome(mode)
    start = time.monotonic()
    judges = Judges() if mode == "spec" else None
    first = family_named("kernel")
    probe = _probe(session_factory(command, mode, timeout, outcome.coverage, judges, first,
                                   config=config), outcome, families)
    if probe is None:
        outcome.seconds = time.monotonic() - start
        return outcome
    machines = [(family, without_unsupported(family.machine(
        session_factory(command, mode, timeout, outcome.coverage, judges, family,
                        config=config),
        probe.managers), probe.unsupported))
                for family in families_of(probe, outcome, families)]
    chunk = requested = 0
    while machines and requested < max_examples and time.monotonic() - start < time_limit:
        size = min(CHUNK, max_examples - requested)
        requested += size
        family, machine = machines[chunk % len(machines)]
        outcome.family = family.name
        machine._hypothesis_internal_use_seed = seed * 1_000_003 + chunk // len(machines)  # type: ignore[attr-defined]
        chunk += 1
        run_settings = settings(
            max_examples=size, stateful_step_count=steps, deadline=None, database=database,
            derandomize=False, verbosity=Verbosity.quiet, report_multiple_bugs=False,
            phases=(Phase.generate, Phase.shrink) if database is None else
            (Phase.reuse, Phase.generate, Phase.shrink),
            suppress_health_check=list(HealthCheck))
        try:
            with shrink_limit(shrink_seconds), quiet():
                run_state_machine_as_test(machine, settings=run_settings)
        except DivergenceError as exc:
            outcome.divergence = exc
        except OracleUnknownError as exc:
            outcome.unknown = exc
        except Flaky:
            _not_reproduced(outcome)
        except Unsatisfiable:  # every sequence reached an operation it does not support
            outcome.skipped.append(f"family {family.name} (every sequence tried reached an "
                                   "unsupported operation)")
            machines.remove((family, machine))
        outcome.examples = sum(m.examples for _, m in machines)  # type: ignore[attr-defined]
        outcome.seconds = time.monotonic() - start
        if outcome.coverage.first_failure is not None:
            outcome.caught_after = outcome.coverage.first_failure - start
        if progress is not None:
            progress(outcome)
        if outcome.divergence is not None or outcome.unknown is not None:
            break
    if outcome.divergence is not None and mode == "spec":
        _explain(outcome, command, timeout, probe.managers)
    outcome.seconds = time.monotonic() - start
    return outcome


def _explain(outcome: Outcome, command: str, timeout: float, managers: tuple[str, ...]
             ) -> None:
    """The shrunk divergence replayed once with its why in full (the search
    raised it quietly: proofs/machines/witness.py), kept when it fails the same way."""
    divergence = outcome.divergence
    assert divergence is not None
    steps = operations(divergence.exchanges)[setup_count(outcome.family, managers):]
    again = replay(command, outcome.mode, steps, timeout, family=outcome.family)
    if again.divergence is not None and again.divergence.violated == divergence.violated:
        divergence.reason = again.divergence.reason


def _not_reproduced(outcome: Outcome) -> None:
    """Hypothesis ran a failing sequence again and it did not fail the same way
    (a random or timing-dependent implementation): the verdict is the last
    failure as it happened, unshrunk."""
    last = outcome.coverage.last_failure
    if isinstance(last, OracleUnknownError):
        outcome.unknown = last
        return
    if not isinstance(last, DivergenceError):  # hypothesis saw no failure of ours
        last = DivergenceError("the implementation behaved differently when hypothesis "
                               "replayed a sequence", ("nondeterministic",), [])
    last.reason += ("\n(not reproducible: the same sequence, sent again, did not fail the "
                    "same way, so this is the sequence as it first failed, not shrunk)")
    outcome.divergence = last


# -- traces -----------------------------------------------------------------------

def operations(exchanges: list[Exchange]) -> list[dict[str, Any]]:
    """The steps of a trace: its operations, its looks (a VirtualToPhysical,
    then perhaps a ReadBytes of the same address) and its inspections
    (VirtualQuery); the other observations are the judges' own and are asked
    again on replay. A step carries what the implementation wrote to stderr
    while answering it and the observations after it (``stderr``, for the
    reader: a replay ignores it)."""
    steps: list[dict[str, Any]] = []
    for n, e in enumerate(exchanges):
        request = e.request
        if "op" in request:
            steps.append({"manager": request["manager"], "op": request["op"],
                          "args": request["args"]})
        elif request["observe"] in INSPECTIONS:
            steps.append({"inspect": request["observe"], "args": request["args"]})
        elif request["observe"] == "VirtualToPhysical":
            address = request["args"]["virtual_addr"]
            read = next((x.request["args"]["length"] for x in exchanges[n + 1:n + 2]
                         if x.request.get("observe") == "ReadBytes"
                         and x.request["args"]["virtual_addr"] == address), 0)
            steps.append({"look": {"virtual_addr": address, "length": read}})
        if e.stderr and steps:  # what it wrote to stderr: with its step, or the one before
            steps[-1].setdefault("stderr", []).extend(e.stderr)
    return steps


def setup_count(family: str, managers: tuple[str, ...] | list[str]) -> int:
    """The set-up calls sent (those of the declared managers)."""
    return sum(1 for manager, _, _ in family_named(family).setup(tuple(managers))
               if manager in managers)


def trace_of(outcome: Outcome, managers: list[str]) -> dict[str, Any]:
    """The replayable trace of a divergence (its operations after the set-up)."""
    assert outcome.divergence is not None
    ops = operations(outcome.divergence.exchanges)[setup_count(outcome.family, managers):]
    trace = {"format": TRACE_FORMAT, "protocol": PROTOCOL_VERSION, "mode": outcome.mode,
             "implementation": outcome.implementation, "family": outcome.family,
             "managers": managers, "violated": list(outcome.divergence.violated),
             "reason": outcome.divergence.reason, "operations": ops}
    if outcome.config:
        trace["config"] = outcome.config
    return trace


def save_trace(path: Path, trace: dict[str, Any]) -> None:
    path.write_text(json.dumps(trace, indent=1) + "\n")


def managers_of(outcome: Outcome) -> list[str]:
    """The managers the implementation declared (those its hello did not skip)."""
    skipped = {s.removeprefix("manager ") for s in outcome.skipped if s.startswith("manager ")}
    return [m for m in MANAGERS if m not in skipped]


def load_trace(path: Path) -> dict[str, Any]:
    """A saved trace, its shape checked (ValueError says what is wrong)."""
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or data.get("format") != TRACE_FORMAT:
        raise ValueError(f"{path} is not a memspec oracle trace")
    family_named(str(data.get("family", "kernel")))
    managers = data.get("managers", [])
    if not isinstance(managers, list) or not all(isinstance(m, str) for m in managers):
        raise ValueError(f"{path}: managers is not a list of names")
    if "config" in data:
        try:
            validate(data["config"], "config")
        except ProtocolError as exc:
            raise ValueError(f"{path}: config: {exc}") from None
    operations = data.get("operations")
    if not isinstance(operations, list):
        raise ValueError(f"{path}: no list of operations")
    for n, step in enumerate(operations, 1):
        if not _step_shape(step):
            raise ValueError(f"{path}: operation {n} is not a call, a look or an "
                             f"inspection: {json.dumps(step)[:200]}")
    return data


def _step_shape(step: Any) -> bool:
    """A step as :func:`operations` writes it."""
    def ints(value: Any, *keys: str) -> bool:
        return isinstance(value, dict) and all(type(value.get(k)) is int for k in keys)
    if not isinstance(step, dict):
        return False
    said = step.get("stderr", [])
    if not isinstance(said, list) or not all(isinstance(line, str) for line in said):
        return False
    if "look" in step:
        return ints(step["look"], "virtual_addr", "length")
    if "inspect" in step:
        return isinstance(step["inspect"], str) and isinstance(step.get("args"), dict)
    return (isinstance(step.get("manager"), str) and isinstance(step.get("op"), str)
            and isinstance(step.get("args"), dict))


def replay(command: str, mode: str, ops: list[dict[str, Any]], timeout: float = 5.0,
           observe: bool = True, family: str = "kernel",
           config: dict[str, Any] | None = None) -> Outcome:
    """Run one sequence of a family (its set-up calls, then ops) and judge it.
    ``observe`` False: strict mode compares the operations' replies only (the
    benchmark). A strict divergence whose stderr came while several requests
    were pending is replayed once more in step, so each line is shown beside
    the request it answered. ``config``: the trace's configuration (and the
    command line's), over the hello's."""
    outcome = _replay(command, mode, ops, timeout, observe, family, config, lockstep=False)
    if outcome.divergence is not None and outcome.coverage.lockstep:
        again = _replay(command, mode, ops, timeout, observe, family, config, lockstep=True)
        if again.divergence is not None:  # in step: each stderr line beside its request
            return again
    return outcome


def _replay(command: str, mode: str, ops: list[dict[str, Any]], timeout: float,
            observe: bool, family: str, config: dict[str, Any] | None,
            lockstep: bool) -> Outcome:
    outcome = Outcome(mode, family=family)
    outcome.coverage.lockstep = lockstep
    start = time.monotonic()
    judges = Judges() if mode == "spec" else None
    new = session_factory(command, mode, timeout, outcome.coverage, judges,
                          family_named(family), observe, config)
    probe = _probe(new, outcome, (family,))
    if probe is not None and family not in [f.name for f in families_of(probe, outcome)]:
        if family not in [f.name for f in runnable(probe.managers)]:
            outcome.skipped.append(f"family {family} (its managers are not all declared)")
        probe = None  # families_of said why
    if probe is not None:
        session: Session | None = None
        try:
            session = new()
            session.setup()
            for op in ops:
                if "look" in op:
                    session.look(op["look"]["virtual_addr"], op["look"]["length"])
                elif "inspect" in op:
                    session.inspect(op["inspect"], op["args"])
                elif (op["manager"], op["op"]) in session.unsupported:
                    continue  # declared unsupported: never sent (listed as skipped)
                elif op["manager"] in session.managers:
                    session.execute(op["manager"], op["op"], op["args"])
            session.finish()
            outcome.examples = 1
        except OperationUnsupported as exc:  # answered so: the rest is not run
            outcome.skipped.append(f"operation {exc.manager}.{exc.op} (answered unsupported: "
                                   "the trace's later steps were not sent)")
        except DivergenceError as exc:
            outcome.divergence = exc
        except OracleUnknownError as exc:
            outcome.unknown = exc
        finally:
            if session is not None:
                session.close()
    outcome.seconds = time.monotonic() - start
    return outcome
