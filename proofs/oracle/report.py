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
from typing import Any
from xml.etree import ElementTree

from proofs.oracle.families import family_named
from proofs.oracle.run import Outcome, setup_count
from proofs.oracle.session import Exchange
from proofs.oracle.world import ModelWorld
from spec.abi import ErrorCode


def _value(value: Any) -> str:
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


def _call(request: dict[str, Any]) -> str:
    args = ", ".join(f"{k}={_value(v)}" for k, v in request["args"].items())
    return f"{request['manager']}.{request['op']}({args})"


def _observation(request: dict[str, Any]) -> str:
    args = ", ".join(f"{k}={_value(v)}" for k, v in request["args"].items())
    return f"observe {request['observe']}({args})"


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
    return ["  ".join(cell.ljust(widths[i]) if i < 4 else cell
                      for i, cell in enumerate(row)).rstrip() for row in [head, *rows]]


def describe(outcome: Outcome, managers: Iterable[str] = ()) -> str:
    """The human report of a run."""
    lines = [f"memspec oracle, {outcome.mode} mode: {outcome.implementation or '?'}",
             f"  sequences run: {outcome.examples} in {outcome.seconds:.1f} s"]
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


def write_junit(path: Path, outcomes: list[Outcome], reports: list[str]) -> None:
    suite = ElementTree.Element("testsuite", name="memspec-oracle", tests=str(len(outcomes)),
                                failures=str(sum(o.divergence is not None for o in outcomes)),
                                errors=str(sum(o.unknown is not None for o in outcomes)),
                                time=f"{sum(o.seconds for o in outcomes):.3f}")
    for outcome, report in zip(outcomes, reports, strict=True):
        case = ElementTree.SubElement(suite, "testcase", classname="memspec.oracle",
                                      name=f"{outcome.mode}: {outcome.implementation}",
                                      time=f"{outcome.seconds:.3f}")
        if outcome.divergence is not None:
            failure = ElementTree.SubElement(case, "failure", message=str(outcome.divergence),
                                             type=outcome.divergence.kind)
            failure.text = report
        elif outcome.unknown is not None:
            error = ElementTree.SubElement(case, "error", message="z3 unknown", type="unknown")
            error.text = report
        elif not outcome.passed:
            ElementTree.SubElement(case, "skipped", message="nothing was run")
        ElementTree.SubElement(case, "system-out").text = report
    ElementTree.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)
