"""The next sequence's implementation process, started while this one runs.

Every sequence is a fresh implementation process (PROTOCOL.md): for the model
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

The spare is a child like the others: in ``child._LIVE`` from its start, so an
exception, the oracle's exit or SIGTERM end it (:func:`child.end_all`); the
owner closes it when it stops making sessions (:meth:`Spares.close`; a search
does so when it ends, whatever ended it). An implementation sees two of its
processes alive at once; one that holds an exclusive resource turns spares off
with :data:`ENVIRONMENT` = ``0`` in the oracle's environment.
"""

from __future__ import annotations

import os

from proofs.oracle.child import Child

#: The oracle's environment variable that turns spares off ("0").
ENVIRONMENT = "MEMSPEC_ORACLE_SPARE"


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
        self._started_as: tuple[str, float, dict[str, str], str] | None = None
        #: Children this pool started (spares and the fresh ones it had to start).
        self.started = 0

    def take(self, command: str, timeout: float) -> Child:
        """A greeted child of command (the spare when it was started as this one
        would be, else a fresh one); then the next spare is started. An
        ImplementationError of the hello closes the child and starts no spare."""
        now = _circumstances(command, timeout)
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

    def close(self) -> None:
        """End the spare (the owner makes no more sessions)."""
        child, self._spare = self._spare, None
        if child is not None:
            child.close()
