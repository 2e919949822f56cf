"""The next sequence's implementation process, started while this one runs.

Every sequence is a fresh implementation process (PROTOCOL.md; unless the
implementation declares reset, below): for the model
shim, a Python interpreter importing the model, its start took 0.11-0.16 s of
each sequence of a search (issue 16: 2.4 s of a 20 s user search was
``Child._greet``). A :class:`Spares` keeps one child started ahead, so its
start overlaps the judging of the current sequence (on another core). Taking it
is starting a fresh child as far as the verdicts and reports can tell:

- it runs the same command, with the request timeout, environment
  (``os.environ``) and working directory a fresh start would have when it is
  taken; a spare started with others is closed and a fresh child started;
- its hello is read when it is taken, with the full hello timeout from then
  (a spare never has less time than a fresh start), and what it wrote to
  stderr before the hello is its own; a spare that exited before it was taken
  is read the same way (its output's end, its exit status, its stderr still in
  the pipe: :meth:`Child.fault` does not reap it), so it reports what a fresh
  start that crashed would;
- a spare that could not be started (``OSError``, say no processes left) is
  not kept: the next session starts its child itself and gets what a fresh
  start gets.

At a sequence's end its child's stdin is closed, and the child is ended (its
group and what it started: :meth:`Child.close`) once it has exited, or its
moment to exit (EXIT_GRACE) is over, at the end of the next sequence
(:meth:`Spares.retire`): the model shim took 20 ms to exit, which the search
waited for at every sequence. Its verdict is given by then; only its exit
overlaps the next sequence.

A child whose hello declares reset (PROTOCOL.md, "Reset") is not retired
after a sequence that passed: it is reset and serves the next sequence (its
start-up is paid once, where a spare only overlaps it). The first divergence
of the search ends that (:meth:`Spares.stop_reusing`), so every divergence
reported happened in a fresh process; so does a reset that fails, which is
then not tried again.

The spare and the retired children are children like the others: in
``child._LIVE`` from their start, so an exception, the oracle's exit or SIGTERM
end them (:func:`child.end_all`); the owner closes the pool when it stops
making sessions (:meth:`Spares.close`; a search does so when it ends, whatever
ended it). An implementation sees two or three of its processes alive at once
(the next sequence's, and the last one's while it exits); one that holds an
exclusive resource turns spares off with :data:`ENVIRONMENT` = ``0`` in the
oracle's environment: each child is then started when its sequence begins and
ended when it ends.
"""

from __future__ import annotations

import os

from proofs.oracle.child import Child

#: The oracle's environment variable that turns spares off ("0").
ENVIRONMENT = "MEMSPEC_ORACLE_SPARE"
#: Children whose sequence is over that may still be exiting, at most.
RETIRED = 1


def wanted() -> bool:
    """Whether the oracle's environment allows spares."""
    return os.environ.get(ENVIRONMENT, "1").strip() != "0"


def _circumstances(command: str, timeout: float) -> tuple[str, float, dict[str, str], str]:
    """What a child's start depends on: its command, request timeout, the
    environment and the working directory it inherits."""
    try:
        cwd = os.getcwd()
    except OSError:  # removed: no spare can match
        cwd = ""
    return command, timeout, dict(os.environ), cwd


class Spares:
    """At most one child started ahead for the next :meth:`take`."""

    def __init__(self) -> None:
        self._spare: Child | None = None
        #: Children whose sequence is over, stdin closed, not ended yet.
        self._retired: list[Child] = []
        self._started_as: tuple[str, float, dict[str, str], str] | None = None
        #: Children this pool started (spares and the fresh ones it had to start).
        self.started = 0
        #: A child whose passing sequence is over, reset to its hello's state, and
        #: how it was started (:meth:`retire`).
        self._reset: tuple[Child, tuple[str, float, dict[str, str], str]] | None = None
        #: Whether a child may serve another sequence after a reset: until a
        #: sequence diverges (:meth:`stop_reusing`).
        self.reusing = True
        #: Sequences served by a child reset after an earlier one.
        self.reused = 0

    def take(self, command: str, timeout: float) -> Child:
        """A greeted child of command: the one reset after the last sequence when
        it was started as this one would be, else the spare when it was, else a
        fresh one (then the next spare is started). An ImplementationError of the
        hello closes the child and starts no spare."""
        now = _circumstances(command, timeout)
        if self._reset is not None:
            (kept, started_as), self._reset = self._reset, None
            if started_as == now:
                self.reused += 1
                return kept
            kept.close()
        child, self._spare = self._spare, None
        if child is not None and self._started_as != now:
            child.close()
            child = None
        if child is None:
            child = self._start(command, timeout)
        child.greet()
        try:
            self._spare = self._start(command, timeout)
        except OSError:  # none this time: the next take starts its own
            self._spare = None
        self._started_as = now
        return child

    def _start(self, command: str, timeout: float) -> Child:
        """A child of command, not greeted yet."""
        child = Child(command, timeout, greet=False)
        self.started += 1
        return child

    def retire(self, child: Child, passed: bool = False) -> None:
        """A sequence's child at its end. After a sequence that ``passed`` (nothing
        diverged, nothing unsupported) a child whose hello declares reset is
        reset and kept for the next :meth:`take`, while the pool is reusing.
        Otherwise (or when the reset fails: then no reset is tried again, so a
        child that hangs on it costs one request timeout, not one a sequence)
        stdin is closed now, and it is ended (its group and what it started, as
        :meth:`Child.close` does) once it has exited, or its moment to exit is
        over, at a later retire or :meth:`close`; at most one waits so, the
        older ones are ended first."""
        if passed and self.reusing and self._reset is None and child.hello.reset \
                and self._started_as is not None:
            if child.reset():
                self._reset = child, self._started_as
                return
            self.reusing = False
        child.retire()
        for old in list(self._retired):
            if old.finish(wait=False):
                self._retired.remove(old)
        self._retired.append(child)
        while len(self._retired) > RETIRED:
            self._retired[0].finish()
            del self._retired[0]

    def stop_reusing(self) -> None:
        """A sequence diverged: from now on every sequence starts in a fresh
        process (its shrinking, delta debugging's replays and a campaign's later
        sequences), so that every divergence reported happened in one."""
        self.reusing = False
        if self._reset is not None:
            self._reset[0].close()
            self._reset = None

    def close(self) -> None:
        """End the spare, the child kept after a reset and the retired children
        (the owner makes no more sessions)."""
        self.stop_reusing()
        child, self._spare = self._spare, None
        try:
            if child is not None:
                child.close()
        finally:
            while self._retired:
                self._retired[0].finish()
                del self._retired[0]
