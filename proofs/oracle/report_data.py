"""The oracle's JSON report (``--json FILE``): the data the HTML report is
rendered from (``--html FILE``, ``python -m proofs.report``).

One entry per mode run, each with its divergences; each divergence carries
every step of its shrunk sequence (set-up calls and observations included):
the request, the implementation's reply, the model's reply to the same
request (the model replayed on a fresh world, as the text report's table
does), the implementation's stderr lines written while answering it (when the
session recorded them) and whether the two replies differ; ``marked`` is the
step the text report marks ``<<``; an undecided run (z3 unknown) carries
its steps the same way (``undecided``). The list of divergences is a list so that
a campaign reporting several (one per bug) fills it the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from proofs.oracle.report import describe
from proofs.oracle.run import Outcome
from proofs.oracle.session import DivergenceError, Exchange
from proofs.oracle.world import ModelWorld

FORMAT = "memspec-oracle-report"
VERSION = 1


def marked_step(exchanges: list[Exchange], at: int | None = None) -> int | None:
    """The id of the step the report marks: the request ``at`` names, else the
    last operation (proofs/oracle/report.py's side_by_side)."""
    if at is not None and at in [e.request["id"] for e in exchanges]:
        return at
    ops = [e.request["id"] for e in exchanges if "op" in e.request]
    return ops[-1] if ops else None


def _differs(got: dict[str, Any] | None, want: dict[str, Any] | None) -> bool:
    if got is None or want is None:
        return got is not want
    keys = ("observed",) if "observe" in want or "observed" in want else ("result", "error")
    return any(got.get(k) != want.get(k) for k in keys)


def steps_of(exchanges: list[Exchange]) -> list[dict[str, Any]]:
    """Every exchange, with the model's reply beside the implementation's."""
    world = ModelWorld()
    out = []
    for exchange in exchanges:
        model = world.handle(exchange.request)
        reply = exchange.reply
        out.append({"id": exchange.request["id"], "request": exchange.request,
                    "implementation": reply, "model": model,
                    "differs": _differs(reply, model),
                    "stderr": list(getattr(exchange, "stderr", []) or [])})
    return out


def divergence_data(divergence: DivergenceError, family: str, trace: str | None = None,
                    **bucket: Any) -> dict[str, Any]:
    """One divergence; ``bucket`` adds what a campaign knows of it (its bucket's
    fields: operation, invariant, clause; when it was found...), which the HTML
    report shows when present."""
    return {**bucket, "family": family, "kind": divergence.kind,
            "violated": list(divergence.violated), "reason": divergence.reason,
            "detail": divergence.detail, "at": divergence.at,
            "marked": marked_step(divergence.exchanges, divergence.at), "trace": trace,
            "steps": steps_of(divergence.exchanges)}


def status(outcome: Outcome) -> str:
    return ("diverged" if outcome.divergence is not None else
            "unknown" if outcome.unknown is not None else
            "passed" if outcome.passed else "ran nothing")


def outcome_data(outcome: Outcome, managers: Iterable[str] = (), trace: str | None = None,
                 divergences: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """One mode's run: its summary, coverage per manager and operation, its
    divergences (each with its steps: ``divergences`` as given, a campaign's
    one per bug, else the run's one divergence, whose trace was saved at
    ``trace``) and the text report."""
    managers = list(managers)
    if divergences is None:
        divergences = [] if outcome.divergence is None else [
            divergence_data(outcome.divergence, outcome.family, trace)]
    return {"mode": outcome.mode, "implementation": outcome.implementation,
            "family": outcome.family, "status": status(outcome),
            "sequences": outcome.examples, "seconds": round(outcome.seconds, 3),
            "stopped": outcome.stopped,
            "caught_after": None if outcome.caught_after is None
            else round(outcome.caught_after, 3),
            "skipped": list(outcome.skipped), "managers": managers,
            "operations": [[m, op, n] for (m, op), n in
                           sorted(outcome.coverage.operations.items())],
            "observations": dict(sorted(outcome.coverage.observations.items())),
            "unknown": None if outcome.unknown is None else outcome.unknown.reason,
            "undecided": None if outcome.unknown is None else {
                "marked": marked_step(outcome.unknown.exchanges),
                "steps": steps_of(outcome.unknown.exchanges)},
            "divergences": divergences, "text": describe(outcome, managers)}


def report_data(command: str, modes: list[dict[str, Any]], verdict: int) -> dict[str, Any]:
    """The whole report: ``command`` "search" or "replay", the exit status."""
    return {"format": FORMAT, "version": VERSION, "command": command, "verdict": verdict,
            "passed": verdict == 0, "modes": modes}
