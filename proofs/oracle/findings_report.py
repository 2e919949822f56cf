"""A campaign's reports: every bug it found, in text, JSON and JUnit.

The text report is the run's summary, a table of the buckets (the bug, when
it was found, how long its trace was before and after delta debugging, how
many later sequences hit it again) and then each bug as
:func:`proofs.oracle.report.describe` shows a divergence, with the path of
its saved trace. Traces are saved beside ``--trace-out``: the first bug at
that path, the next ones numbered (``oracle-trace.1.json``, ...), numbering
going on across modes.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from proofs.oracle.buckets import Finding
from proofs.oracle.report import Case, case_of, describe
from proofs.oracle.run import Outcome


def numbered(path: Path, number: int) -> Path:
    """The path of the trace of bug number (0: path itself)."""
    return path if number == 0 else path.with_name(f"{path.stem}.{number}{path.suffix}")


def _alone(outcome: Outcome, finding: Finding) -> Outcome:
    """The outcome as if finding were its only divergence."""
    return dataclasses.replace(outcome, divergence=finding.divergence,
                               family=finding.bucket.family,
                               caught_after=finding.found_after, findings=[])


def summary(outcome: Outcome) -> list[str]:
    """The table of the buckets."""
    if not outcome.findings:
        return []
    lines = [f"BUGS: {len(outcome.findings)} distinct (each its own bucket and trace)"]
    for n, f in enumerate(outcome.findings, 1):
        shrunk = (f"{f.operations} operations after the set-up"
                  + (" (1-minimal)" if f.minimal else " (not proven minimal: the time to "
                     "shrink ran out, or it did not reproduce by replay)"))
        lines += [f"  bug {n}: {f.bucket}",
                  f"    found after {f.found_after:.1f} s ({f.sequences} sequences); "
                  f"trace {f.shrunk_from} -> {shrunk}; "
                  f"hit again by {outcome.coverage.known.get(f.bucket, 0)} sequences"]
    return lines


def describe_campaign(outcome: Outcome, managers: list[str],
                      traces: list[str] | None = None) -> str:
    """The text report: the run, the bucket table, each bug (with what traces
    says of its saved trace, in the findings' order)."""
    if len(outcome.findings) < 1:
        return describe(outcome, managers)
    head = describe(dataclasses.replace(outcome, divergence=None, unknown=None), managers)
    head_lines = [line for line in head.splitlines()
                  if not line.startswith(("PASSED", "NOTHING RUN"))]
    parts = ["\n".join(head_lines + summary(outcome))]
    for n, finding in enumerate(outcome.findings):
        text = describe(_alone(outcome, finding), managers).splitlines()
        body = [line for line in text[1:]
                if not line.startswith(("  sequences run", "  operations:", "  skipped"))]
        saved = f"\n\n{traces[n]}" if traces and n < len(traces) else ""
        parts.append(f"--- bug {n + 1}: {finding.bucket}\n" + "\n".join(body).strip("\n")
                     + saved)
    if outcome.unknown is not None:
        parts.append("UNKNOWN: z3 could not decide a step; this is not a pass.\n"
                      + outcome.unknown.reason)
    return "\n\n".join(parts)


def cases_of(outcome: Outcome, report: str) -> list[Case]:
    """The JUnit testcases of a run: one per bug (its name the bucket), or the
    run's own when it found none."""
    if not outcome.findings:
        return [case_of(outcome, report)]
    cases = []
    for finding in outcome.findings:
        alone = _alone(outcome, finding)
        cases.append(case_of(alone, report)._replace(
            name=f"{outcome.mode}: {finding.bucket}", seconds=finding.found_after))
    if outcome.unknown is not None:
        cases.append(case_of(dataclasses.replace(outcome, divergence=None), report))
    return cases


def bug_fields(outcome: Outcome, finding: Finding, trace: str | None) -> dict[str, Any]:
    """What the JSON report says of one bug beside its divergence
    (:func:`proofs.oracle.report_data.divergence_data`): its bucket, its saved
    trace, how far it shrank and when it was found."""
    return {"operation": finding.bucket.operation, "invariant": finding.bucket.invariant,
            "clause": finding.bucket.clause, "trace": trace,
            "operations": finding.operations, "shrunk_from": finding.shrunk_from,
            "minimal": finding.minimal, "found_after": round(finding.found_after, 3),
            "sequences": finding.sequences,
            "hit_again": outcome.coverage.known.get(finding.bucket, 0)}
