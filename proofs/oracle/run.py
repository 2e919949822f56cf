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

from proofs.machines.runner import shrink_limit
from proofs.machines.witness import quiet
from proofs.oracle.buckets import Finding, bucket_of
from proofs.oracle.budget import rejections_limit
from proofs.oracle.config import problems
from proofs.oracle.families import family_named, runnable
from proofs.oracle.families.rules import without_unsupported
from proofs.oracle.machine_test import MachineTest
from proofs.oracle.managers import Family
from proofs.oracle.minimize import minimize
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
from proofs.oracle.spare import Spares
from proofs.oracle.spare import wanted as spare_wanted
from proofs.oracle.spec_session import Judges, SpecSession
from proofs.oracle.world import (
    CONCURRENT_ONLY,
    MANAGERS,
    OBSERVATIONS,
    PARTS_OF,
    PROTOCOL_VERSION,
)

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
    #: Every bug found (a campaign goes on after the first), each shrunk.
    findings: list[Finding] = field(default_factory=list)
    #: What ended the search: "time", "--max-examples N", "the first divergence"...
    stopped: str = ""

    @property
    def passed(self) -> bool:
        return (self.divergence is None and self.unknown is None and self.refused is None
                and self.examples > 0)


def session_factory(command: str, mode: str, timeout: float, coverage: Coverage,
                    judges: Judges | None, family: Family, observe: bool = True,
                    config: dict[str, Any] | None = None, spares: Spares | None = None
                    ) -> Callable[[], Session]:
    """Sessions of a family; ``config``: the command line's configuration, over
    the hello's (:mod:`proofs.oracle.config`); ``spares``: each session's child
    taken from there (:mod:`proofs.oracle.spare`), else started by the session."""
    def new() -> Session:
        if mode == "strict":
            return StrictSession(command, timeout, coverage, family, observe, config, spares)
        assert judges is not None
        return SpecSession(command, timeout, coverage, judges, family, config, spares)
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
                       + [f"manager {m} (judged by python -m proofs.oracle concurrent only)"
                          for m in CONCURRENT_ONLY if m in hello.managers]
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


def search(command: str, mode: str, *, max_examples: int | None = 100,
           time_limit: float = 60.0, seed: int = 0, steps: int = 25, timeout: float = 5.0,
           shrink_seconds: float = 30.0, progress: Callable[[Outcome], None] | None = None,
           families: tuple[str, ...] | None = None,
           database: ExampleDatabase | None = None, keep_going: bool = False,
           config: dict[str, Any] | None = None) -> Outcome:
    """Generate, judge and (on a divergence) shrink sequences against command:
    every runnable family (or those named in ``families``) in turn, a chunk of
    examples each, until ``max_examples`` sequences (None: no limit) or
    ``time_limit`` seconds. Each divergence is shrunk by hypothesis for up to
    ``shrink_seconds``, then by delta debugging (:mod:`proofs.oracle.minimize`)
    for up to twice as long. ``keep_going`` (a campaign): the search goes on after a
    divergence, and a later sequence that hits a bug already found ends there
    and counts as a pass, so each bug (:mod:`proofs.oracle.buckets`) is reported
    once, in ``outcome.findings``; else it stops at the first. With a hypothesis
    example ``database`` (``--database``), the failing sequences any run saved
    there are replayed first, and a new one is saved there (hypothesis' reuse
    phase). ``config``: the command line's configuration, over the hello's."""
    outcome = Outcome(mode)
    start = time.monotonic()
    judges = Judges() if mode == "spec" else None
    first = family_named("kernel")
    # the next sequence's process starts while this one is judged (the probe's,
    # every example's, hypothesis' and delta debugging's shrinking): closed when
    # the search ends, however it ends
    spares = Spares() if spare_wanted() else None
    try:
        probe = _probe(session_factory(command, mode, timeout, outcome.coverage, judges, first,
                                       config=config, spares=spares), outcome, families)
        if probe is None:
            outcome.seconds = time.monotonic() - start
            outcome.stopped = "the hello"
            return outcome
        outcome.coverage.sessions = 0  # the probe read the hello: not a sequence
        machines = []
        for family in families_of(probe, outcome, families):
            new = session_factory(command, mode, timeout, outcome.coverage, judges, family,
                                  config=config, spares=spares)
            # delta debugging's replays: a coverage of their own (no buckets to pass
            # over, no counts of the search's)
            replays = session_factory(command, mode, timeout, Coverage(), judges, family,
                                      config=config, spares=spares)
            machine = without_unsupported(family.machine(new, probe.managers), probe.unsupported)
            machines.append((family, machine, replays))
        chunk = requested = 0
        tests: dict[type, MachineTest] = {}
        outcome.stopped = "nothing to run"
        while machines:
            if max_examples is not None and requested >= max_examples:
                outcome.stopped = f"--max-examples {max_examples}"
                break
            if time.monotonic() - start >= time_limit:
                outcome.stopped = "time"
                break
            size = CHUNK if max_examples is None else min(CHUNK, max_examples - requested)
            requested += size
            family, machine, new = machines[chunk % len(machines)]
            outcome.family = family.name
            chunk_seed = seed * 1_000_003 + chunk // len(machines)
            chunk += 1
            run_settings = settings(
                max_examples=size, stateful_step_count=steps, deadline=None, database=database,
                derandomize=False, verbosity=Verbosity.quiet, report_multiple_bugs=False,
                phases=(Phase.generate, Phase.shrink) if database is None else
                (Phase.reuse, Phase.generate, Phase.shrink),
                suppress_health_check=list(HealthCheck))
            try:
                if machine not in tests:
                    tests[machine] = MachineTest(machine, run_settings)
                with shrink_limit(shrink_seconds), rejections_limit(2 * CHUNK), quiet():
                    tests[machine].run(chunk_seed, run_settings)
            except DivergenceError as exc:
                _found(outcome, exc, family.name, new, shrink_seconds, start)
            except Flaky:
                last = outcome.coverage.last_failure
                if keep_going and isinstance(last, DivergenceError):  # replayed, it may still
                    _found(outcome, last, family.name, new, shrink_seconds, start)
                else:
                    _not_reproduced(outcome)
            except OracleUnknownError as exc:
                outcome.unknown = exc
            except Unsatisfiable:
                # every sequence of the chunk was dropped: it hit a bug already found,
                # or (with none found) it reached an operation the implementation
                # does not support
                if not outcome.coverage.known:
                    outcome.skipped.append(f"family {family.name} (every sequence tried reached "
                                           "an unsupported operation)")
                    machines.remove((family, machine, new))
            outcome.examples = sum(m.examples for _, m, _ in machines)  # type: ignore[attr-defined]
            outcome.seconds = time.monotonic() - start
            if outcome.coverage.first_failure is not None and outcome.caught_after is None:
                outcome.caught_after = outcome.coverage.first_failure - start
            if progress is not None:
                progress(outcome)
            if outcome.unknown is not None:
                outcome.stopped = "an undecided step"
                break
            if outcome.divergence is not None and not (keep_going and outcome.findings):
                outcome.stopped = "the first divergence"  # or one that did not reproduce
                break
    finally:
        if spares is not None:
            spares.close()
    if outcome.divergence is not None and mode == "spec" and not outcome.findings:
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
def _found(outcome: Outcome, divergence: DivergenceError, family: str,
           new: Callable[[], Session], shrink_seconds: float, start: float) -> None:
    """A divergence hypothesis shrank: a new bug (delta-debugged, added to the
    findings and to the buckets the search now passes over) or one already
    found (counted)."""
    coverage = outcome.coverage
    bucket = bucket_of(divergence, family)
    if bucket in coverage.known:
        coverage.known[bucket] += 1
        return
    found_at = coverage.first_failure if coverage.first_failure is not None else time.monotonic()
    sequences = coverage.failed_at if coverage.first_failure is not None else coverage.sessions
    coverage.first_failure = None  # the next bug's first divergence is timed afresh
    fixed = setup_count(family, managers_of(outcome))
    steps = operations(divergence.exchanges)[fixed:]
    shrunk = minimize(new, steps, bucket, family, 2 * shrink_seconds)
    finding = Finding(bucket, divergence, found_at - start, sequences, len(steps), len(steps),
                      first=divergence)
    if shrunk is not None:
        finding.divergence, finding.minimal = shrunk.divergence, shrunk.minimal
        finding.operations = len(operations(shrunk.divergence.exchanges)[fixed:])
        finding.replays = shrunk.replays
    else:
        finding.divergence = unreproduced(divergence)
    coverage.known[bucket] = 0
    outcome.findings.append(finding)
    if outcome.divergence is None:
        outcome.divergence = finding.divergence
        outcome.caught_after = finding.found_after


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
    outcome.divergence = unreproduced(last)


def unreproduced(divergence: DivergenceError) -> DivergenceError:
    """A divergence that did not happen again when its sequence was sent again:
    a copy that says so (the sequence as it first failed, not shrunk)."""
    d = divergence
    note = ("\n(not reproducible: the same sequence, sent again, did not fail the same "
            "way, so this is the sequence as it first failed, not shrunk)")
    copy = DivergenceError(d.reason + note, d.violated, d.exchanges, d.detail, d.kind, d.at)
    copy.step = d.step
    return copy


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


def trace_of(outcome: Outcome, managers: list[str], finding: Finding | None = None,
             unknown: bool = False) -> dict[str, Any]:
    """The replayable trace of a divergence (its operations after the set-up):
    finding's, else the outcome's undecided step (``unknown``) or divergence."""
    found: DivergenceError | OracleUnknownError | None = \
        finding.divergence if finding is not None else \
        outcome.unknown if unknown or outcome.divergence is None else outcome.divergence
    assert found is not None
    family = finding.bucket.family if finding is not None else outcome.family
    ops = operations(found.exchanges)[setup_count(family, managers):]
    trace = {"format": TRACE_FORMAT, "protocol": PROTOCOL_VERSION, "mode": outcome.mode,
             "implementation": outcome.implementation, "family": family,
             "managers": managers, "violated": list(getattr(found, "violated", ("unknown",))),
             "reason": found.reason, "operations": ops}
    if finding is not None:
        trace["bucket"] = finding.bucket._asdict()
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
