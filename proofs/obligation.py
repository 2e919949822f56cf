"""What an obligation is and what its verdict may say.

Every check that ``python -m proofs.check`` runs is an :class:`Obligation`
with a stable id (``page_manager.AllocFrame.FRM-1``). Its verdict names the
kind of evidence honestly (DESIGN.md, "Three layers"): only an unsat answer
from z3 to the negated claim is *proved*; a bounded proof says its bound; a
CrossHair run that exhausted every path is *confirmed over all paths*; a
hypothesis run says how many examples it ran. Unknown, timeouts and crashes
are failures, never passes.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

PROFILES = ("quick", "full")


class Kind(enum.Enum):
    """The kind of a verdict; the value is what the report prints."""

    PROVED = "proved"
    PROVED_BOUNDED = "proved up to N"
    CONFIRMED = "confirmed over all paths"
    NO_COUNTEREXAMPLE = "no counterexample in K examples"
    COUNTEREXAMPLE = "counterexample"
    UNKNOWN = "unknown"
    ERROR = "error"

    @property
    def passed(self) -> bool:
        return self in (Kind.PROVED, Kind.PROVED_BOUNDED, Kind.CONFIRMED,
                        Kind.NO_COUNTEREXAMPLE)


@dataclass(frozen=True)
class Verdict:
    """The result of running one obligation.

    ``summary`` is one line for the table ("proved up to 8 frames",
    "no counterexample in 200 examples"); ``detail`` is the readable
    counterexample or the reason for an unknown/error; ``violated`` names the
    invariant a counterexample breaks (a broken variant is caught *by name*
    only when this matches). ``counterexample`` is the same counterexample as
    data (:class:`Explained`), for the HTML report to draw.
    """

    kind: Kind
    summary: str
    detail: str = ""
    violated: tuple[str, ...] = ()
    bound: int | None = None
    examples: int | None = None
    #: Which of its z3 answers (or its CrossHair verdict) came from the proof
    #: cache, and when they were made; "" when everything was decided now.
    cache: str = ""
    counterexample: dict[str, Any] | None = None


class Explained(NamedTuple):
    """A counterexample as text and as data: ``{"step": {"op", "args"}}`` and
    the concrete state it names, ``"frames"`` (each frame's owner, used bit and
    rank before -> after the step) and ``"entries"`` (the PDE and PTE the step
    names, raw, before -> after), or ``"heap"`` (the pre-state's blocks as
    the oracle's HeapWalk observation lists them, and its hole index)."""

    text: str
    state: dict[str, Any] | None = None


@dataclass(frozen=True)
class Obligation:
    """One named claim and the function that decides it.

    ``run`` takes the profile name ("quick" or "full") and returns a Verdict;
    it must not raise (the runner turns an exception into an ERROR verdict
    anyway, and that is a failure). ``profiles`` lists the profiles that run
    this obligation.
    """

    id: str
    manager: str
    operation: str
    invariant: str
    run: Callable[[str], Verdict] = field(compare=False, repr=False)
    profiles: frozenset[str] = frozenset(PROFILES)
    #: The modules whose source decides the verdict (with the modules of spec,
    #: model and proofs they import, and the module that registers it): while
    #: they are unchanged, a passing verdict is reused from the proof cache
    #: (proofs/runner/cache.py). Empty: never reused (the machines').
    depends_on: tuple[str, ...] = field(default=(), compare=False)
    #: The sub-proofs it shares with other obligations (``family.Step.CLAIM``:
    #: AllocFrame and AllocPage are proved by the same steps): the pool runs
    #: two that share one one after the other, so that with the proof cache the
    #: second takes the first's answers instead of deciding them again.
    shares: frozenset[str] = field(default=frozenset(), compare=False)
