"""The verdict of a hypothesis machine run that failed, shared by the heap,
pool and subsystem machines: a check that failed is a counterexample naming
what it broke, z3's unknown is unknown, anything else an error of the harness
(with its traceback), never a pass."""

from __future__ import annotations

import traceback

from proofs.machines.paging import CheckError, SolverUnknownError
from proofs.obligation import Kind, Verdict


def verdict_of(exc: Exception, printed: str, examples: int) -> Verdict:
    notes = "\n".join(getattr(exc, "__notes__", []))
    if isinstance(exc, SolverUnknownError):
        kind = Kind.UNKNOWN
    elif isinstance(exc, CheckError):
        kind = Kind.COUNTEREXAMPLE
    else:  # the harness itself broke: no verdict on the model
        kind = Kind.ERROR
        notes += "\n" + "".join(traceback.format_exception(exc))
    if "more than five minutes working to shrink" in printed:
        printed = printed.split("WARNING:")[0] + "(shrinking stopped at this run's time limit)"
    detail = f"{notes}\n{printed.strip()}\n{exc}".strip()
    return Verdict(kind, f"{kind.value}: {str(exc).splitlines()[0][:250]}", detail=detail,
                   violated=tuple(getattr(exc, "violated", ())), examples=examples)
