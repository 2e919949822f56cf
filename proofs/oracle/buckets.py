"""Buckets: which divergences are the same bug (docs/oracle.md, "Campaigns").

A campaign keeps searching after a divergence and reports every distinct
bug once, the way fuzzers deduplicate crashes by where they crash. Here a bug
is its :class:`Bucket`: the family; the operation whose reply or post-state
diverged (``end of sequence`` when the checks owed at the end failed, ``hello``
before the first request); what was violated (the invariant ids, the
``transition`` of the spec, ``strict`` for a reply that differs from the
model's, ``register``, or the fault's kind: ``crash``, ``hang``, ``protocol``);
and the clause. In strict mode the operation is the last one up to the reply
or observation that differs (replies are read in windows, at the end of a
sequence too), and the clause is the reply fields that differ (list indices
written ``[*]``); in spec mode the clause is the first line of the reason with
its numbers and argument lists taken out (two frees that break HEAP-2 at other
addresses are one bug; a free that breaks it and reports success, and one that
fails, are two).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from proofs.oracle.session import DivergenceError

#: What the step that raised a divergence was, when not an operation.
END_OF_SEQUENCE = "end of sequence"

_NUMBER = re.compile(r"\b(0x[0-9a-fA-F]+|\d+)\b")
_ARGUMENTS = re.compile(r"(?<=\w)\([^()]*\)")
_REQUEST = re.compile(r"#N\s*")
_INDEX = re.compile(r"\[\d+\]")
_FIELD = re.compile(r"^\s+([.\w\[\]]+|reply): implementation ", re.MULTILINE)


class Bucket(NamedTuple):
    """One bug of a campaign."""

    family: str
    operation: str
    invariant: str
    clause: str

    def __str__(self) -> str:
        clause = f" / {self.clause}" if self.clause else ""
        return f"{self.family}: {self.operation} / {self.invariant}{clause}"


def _operation(divergence: DivergenceError) -> str:
    compared = divergence.violated in (("strict",), ("register",))  # read in windows
    if getattr(divergence, "step", None) == "finish" and divergence.at is None \
            and not compared:
        return END_OF_SEQUENCE
    exchanges = divergence.exchanges
    if divergence.at is not None:
        request = next((e.request for e in exchanges if e.request["id"] == divergence.at), None)
    else:
        request = next((e.request for e in reversed(exchanges) if "op" in e.request), None)
    if request is None:
        return "hello"
    if "op" in request:
        return f"{request['manager']}.{request['op']}"
    return f"observe {request.get('observe')}"


def clause_of(divergence: DivergenceError) -> str:
    """The clause: the fields that differ (strict), else the reason's first
    line with numbers and argument lists written N and ()."""
    if divergence.violated in (("strict",), ("register",)):
        fields = sorted({_INDEX.sub("[*]", f) for f in _FIELD.findall(divergence.reason)})
        if divergence.violated == ("register",):
            fields = sorted(set(re.findall(r"^\s+(\w+): expected", divergence.reason,
                                           re.MULTILINE)))
        return ", ".join(fields)
    first = divergence.reason.splitlines()[0] if divergence.reason else ""
    text = _NUMBER.sub("N", first)
    for _ in range(4):  # nested argument lists, a bounded number of levels
        text = _ARGUMENTS.sub("()", text)
    return _REQUEST.sub("", text).strip()[:160]


def bucket_of(divergence: DivergenceError, family: str) -> Bucket:
    """The bucket of a divergence found in a sequence of family."""
    return Bucket(family, _operation(divergence), ", ".join(sorted(divergence.violated)),
                  clause_of(divergence))


@dataclass
class Finding:
    """One bug a search found: its bucket and its shrunk divergence."""

    bucket: Bucket
    #: The replay of the shrunk trace (what the report shows; its exchanges
    #: are the trace).
    divergence: DivergenceError
    #: Seconds from the start of the search to its first divergence.
    found_after: float
    #: Sequences started by then.
    sequences: int
    #: Operations after the set-up: as hypothesis shrank it, as saved.
    shrunk_from: int = 0
    operations: int = 0
    #: Every single removal was tried (False: the time to shrink ran out, or the
    #: bug did not reproduce by replay and is shown as hypothesis left it).
    minimal: bool = False
    replays: int = 0
    #: The divergence as hypothesis' shrinker left it (before delta debugging).
    first: DivergenceError | None = None
