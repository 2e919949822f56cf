"""What the oracle prints and writes: the verdict, the trace, the map, JUnit.

A divergence is shown as the operations of the shrunk sequence, each with the
implementation's reply beside the model's reply to the same request (the
model replayed on a fresh world), the exchange that diverged marked; then
what was violated and why, and a map of the memory involved as the
implementation last reported it: the heap's blocks and the used frames.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple
from xml.etree import ElementTree

from proofs.oracle.families import family_named
from proofs.oracle.register_form import REGISTER_FIELDS, REGISTER_OPS, registers_text
from proofs.oracle.run import Outcome, setup_count
from proofs.oracle.session import Exchange
from proofs.oracle.world import ModelWorld
from spec.abi import ErrorCode


def _value(value: Any) -> str:
    if isinstance(value, dict) and set(value) == set(REGISTER_FIELDS):
        return registers_text(value)
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int):
        return hex(value) if value >= 0x1000 else str(value)
    if isinstance(value, str) and len(value) > 18:
        return json.dumps(value[:16] + "..")
    return json.dumps(value)


def _error(code: int) -> str:
    try:
        return ErrorCode(code).name.removeprefix("ERROR_")
    except ValueError:
        return f"error {code}"


def _reply(reply: dict[str, Any] | None) -> str:
    if reply is None:
        return "(no reply)"
    if "observed" in reply:
        return "(observed)"
    return f"{_value(reply.get('result'))} {_error(int(reply.get('error', 0)))}"


def _arguments(request: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_value(v)}" for k, v in request["args"].items())


def _call(request: dict[str, Any]) -> str:
    if request["op"] in REGISTER_OPS:
        return f"{request['manager']}.{request['op']}({_value(request['args'])})"
    return f"{request['manager']}.{request['op']}({_arguments(request)})"


def _observation(request: dict[str, Any]) -> str:
    return f"observe {request['observe']}({_arguments(request)})"


def side_by_side(exchanges: list[Exchange], at: int | None = None,
                 kind: str = "divergence") -> list[str]:
    """The operations with both replies, the one that diverged marked: the
    request ``at`` (shown even when it is an observation), else the last
    operation; a reply that broke the protocol (``kind``) is not shown."""
    world = ModelWorld()
    shown = [e for e in exchanges if "op" in e.request or e.request["id"] == at]
    mark = at if any(e.request["id"] == at for e in shown) else \
        shown[-1].request["id"] if shown else None
    rows = []
    said = stderr_by_step(exchanges, {e.request["id"] for e in shown})
    for exchange in shown:
        request = exchange.request
        got = "(broken reply)" if request["id"] == at and kind == "protocol" \
            else _reply(exchange.reply)
        if "op" in request:
            cells = (_call(request), got, _reply(world.handle(request)))
        else:
            cells = (_observation(request), got, "(observed)")
        rows.append((f"#{request['id']}", *cells, "<<" if request["id"] == mark else ""))
    widths = [max(len(r[i]) for r in rows) for i in range(4)] if rows else [0] * 4
    head = ("", "operation", "implementation", "model", "")
    lines = []
    for row in [head, *rows]:
        lines.append("  ".join(cell.ljust(widths[i]) if i < 4 else cell
                               for i, cell in enumerate(row)).rstrip())
        ident = int(row[0][1:]) if row[0] else 0
        lines += [f"{'':{widths[0]}}  stderr: {text}" for text in said.get(ident, [])]
    return lines


def stderr_by_step(exchanges: list[Exchange], shown: set[int]) -> dict[int, list[str]]:
    """What the implementation wrote to stderr, by the shown request it belongs
    to: a hidden observation's lines go to the shown request before it (the
    state it observes is that step's), lines before any to the first shown."""
    said: dict[int, list[str]] = {}
    owner: int | None = None
    early: list[str] = []
    for exchange in exchanges:
        ident = exchange.request["id"]
        if ident in shown:
            owner = ident
            said.setdefault(owner, []).extend(early)
            early = []
        if exchange.stderr:
            (early if owner is None else said.setdefault(owner, [])).extend(exchange.stderr)
    return {k: v for k, v in said.items() if v}


def describe(outcome: Outcome, managers: Iterable[str] = ()) -> str:
    """The human report of a run."""
    lines = [f"memspec oracle, {outcome.mode} mode: {outcome.implementation or '?'}",
             f"  sequences run: {outcome.examples} in {outcome.seconds:.1f} s"
             + (f" (ended by {outcome.stopped})" if outcome.stopped else "")]
    per_manager: dict[str, int] = {}
    for (manager, _op), count in outcome.coverage.operations.items():
        per_manager[manager] = per_manager.get(manager, 0) + count
    if per_manager:
        lines.append("  operations: " + ", ".join(f"{m} {n}" for m, n in
                                                  sorted(per_manager.items()))
                     + f"; observations: {sum(outcome.coverage.observations.values())}")
    if outcome.skipped:
        lines.append("  skipped (not declared by the implementation): "
                     + ", ".join(outcome.skipped))
    if outcome.coverage.unsupported:
        lines.append("  skipped at run time (answered unsupported; each time, that sequence "
                     "was dropped): " + ", ".join(
                         f"{m}.{op} {n}x" for (m, op), n in sorted(
                             outcome.coverage.unsupported.items())))
    if outcome.unknown is not None:
        lines += ["UNKNOWN: z3 could not decide a step; this is not a pass.",
                  outcome.unknown.reason]
    elif outcome.divergence is not None:
        d = outcome.divergence
        ops = sum(1 for e in d.exchanges if "op" in e.request)
        fixed = setup_count(outcome.family, list(managers))
        if outcome.caught_after is not None:
            lines.append(f"  first divergence after {outcome.caught_after:.1f} s; shrinking "
                         f"took the rest")
        lines.append(f"DIVERGED ({d.kind}): {', '.join(d.violated)}")
        if d.exchanges:
            lines += [f"  shrunk sequence: {ops} operations ({min(fixed, ops)} set-up calls)",
                      "", *side_by_side(d.exchanges, d.at, d.kind)]
        else:
            lines.append("  before the first request")
        lines += ["", "why:", *("  " + line for line in d.reason.splitlines())]
        if d.detail:
            lines += ["", *d.detail.splitlines()]
        area = family_named(outcome.family).memory_map(d.exchanges)
        if area:
            lines += ["", "memory as the implementation last reported it:", *area]
    else:
        lines.append("PASSED: nothing diverged" if outcome.passed else "NOTHING RUN")
    return "\n".join(lines)


class Case(NamedTuple):
    """One testcase of the JUnit report: a mode's run, or one chunk of a campaign."""

    name: str
    seconds: float
    status: str  # "passed", "diverged", "unknown" or "ran nothing"
    message: str
    kind: str
    report: str


def case_of(outcome: Outcome, report: str) -> Case:
    status = ("diverged" if outcome.divergence is not None else
              "unknown" if outcome.unknown is not None else
              "passed" if outcome.passed else "ran nothing")
    return Case(f"{outcome.mode}: {outcome.implementation}", outcome.seconds, status,
                str(outcome.divergence or ""),
                outcome.divergence.kind if outcome.divergence is not None else "", report)


def write_junit(path: Path, cases: list[Case]) -> None:
    suite = ElementTree.Element("testsuite", name="memspec-oracle", tests=str(len(cases)),
                                failures=str(sum(c.status == "diverged" for c in cases)),
                                errors=str(sum(c.status == "unknown" for c in cases)),
                                time=f"{sum(c.seconds for c in cases):.3f}")
    for case in cases:
        element = ElementTree.SubElement(suite, "testcase", classname="memspec.oracle",
                                         name=case.name, time=f"{case.seconds:.3f}")
        if case.status == "diverged":
            failure = ElementTree.SubElement(element, "failure", message=case.message,
                                             type=case.kind)
            failure.text = case.report
        elif case.status == "unknown":
            error = ElementTree.SubElement(element, "error", message="z3 unknown",
                                           type="unknown")
            error.text = case.report
        elif case.status != "passed":
            ElementTree.SubElement(element, "skipped", message="nothing was run")
        ElementTree.SubElement(element, "system-out").text = case.report
    ElementTree.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)
