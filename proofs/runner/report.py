"""Reporting verdicts: the progress lines, the table, the failures' details, the
totals line, and the JSON and JUnit XML reports."""


from __future__ import annotations

import collections
import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from typing import TextIO

from proofs.obligation import Kind, Obligation, Verdict
from proofs.runner.pool import Result


def _label(kind: Kind) -> str:
    label = kind.name.lower().replace("_", "-")
    return label if kind.passed else label.upper()


class ProgressPrinter:
    """One line per finished obligation; on a TTY, passes share one updating line."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.pending_newline = False

    def __call__(self, done: int, total: int, obligation: Obligation, verdict: Verdict,
                 seconds: float) -> None:
        width = len(str(total))
        line = (f"[{done:>{width}}/{total}] {_label(verdict.kind):<17} {obligation.id}"
                f"  {seconds:.2f}s")
        if self.tty and verdict.kind.passed:
            self.stream.write("\r\x1b[K" + line)
            self.pending_newline = True
        else:
            if self.tty:
                self.stream.write("\r\x1b[K")
            self.stream.write(line + "\n")
            self.pending_newline = False
        self.stream.flush()

    def close(self) -> None:
        if self.pending_newline:
            self.stream.write("\n")
            self.stream.flush()
            self.pending_newline = False


def totals(results: Sequence[Result], wall_seconds: float) -> dict[str, object]:
    counts = collections.Counter(verdict.kind for _, verdict, _ in results)
    out: dict[str, object] = {kind.name: counts[kind] for kind in Kind}
    out["obligations"] = len(results)
    out["failed"] = sum(n for kind, n in counts.items() if not kind.passed)
    out["wall_seconds"] = round(wall_seconds, 3)
    return out


def passed(results: Sequence[Result]) -> bool:
    return bool(results) and all(verdict.kind.passed for _, verdict, _ in results)


def _cache_note(verdict: Verdict) -> str:
    """The note " [what came from the proof cache]", or "" when nothing did."""
    return f" [{verdict.cache}]" if verdict.cache else ""


def format_table(results: Sequence[Result]) -> str:
    header = ("obligation", "manager", "invariant", "result", "time")
    rows = [(o.id, o.manager, o.invariant,
             (v.summary if v.kind.passed else f"{_label(v.kind)}: {v.summary}")
             + _cache_note(v),
             f"{s:.2f}s")
            for o, v, s in results]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]
    lines = []
    for row in [header, *rows]:
        cells = [row[i].ljust(widths[i]) for i in range(4)]
        lines.append("  ".join(cells) + "  " + row[4].rjust(7))
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def format_failures(results: Sequence[Result]) -> str:
    blocks = []
    for obligation, verdict, _ in results:
        if verdict.kind.passed:
            continue
        head = f"== {obligation.id}: {_label(verdict.kind)}: {verdict.summary}"
        if verdict.violated:
            head += f"\n   violates: {', '.join(verdict.violated)}"
        body = verdict.detail.rstrip() or "(no detail)"
        blocks.append(head + "\n" + "\n".join("   " + line for line in body.splitlines()))
    return "\n\n".join(blocks)


def format_totals(results: Sequence[Result], wall_seconds: float) -> str:
    counts = collections.Counter(verdict.kind for _, verdict, _ in results)
    parts = [f"{counts[kind]} {kind.name.lower().replace('_', '-')}" for kind in Kind]
    verdict = "PASSED" if passed(results) else "FAILED"
    cached = sum(1 for _, v, _ in results if v.cache)
    reuse = f"; {cached} used the proof cache" if cached else ""
    return (f"{verdict}: {len(results)} obligations: {', '.join(parts)}; "
            f"wall time {wall_seconds:.1f}s{reuse}")


def json_report(results: Sequence[Result], profile: str, wall_seconds: float) -> dict[str, object]:
    return {
        "profile": profile,
        "obligations": [
            {"id": o.id, "manager": o.manager, "operation": o.operation,
             "invariant": o.invariant, "kind": v.kind.name, "summary": v.summary,
             "detail": v.detail, "violated": list(v.violated), "bound": v.bound,
             "examples": v.examples, "cache": v.cache, "seconds": round(s, 3),
             "counterexample": v.counterexample}
            for o, v, s in results],
        "totals": totals(results, wall_seconds),
        "passed": passed(results),
    }


def junit_report(results: Sequence[Result], profile: str, wall_seconds: float) -> ET.ElementTree:
    failures = sum(1 for _, v, _ in results if not v.kind.passed)
    suites = ET.Element("testsuites", name="memspec", tests=str(len(results)),
                        failures=str(failures), errors="0", time=f"{wall_seconds:.3f}")
    suite = ET.SubElement(suites, "testsuite", name=f"proofs.check[{profile}]",
                          tests=str(len(results)), failures=str(failures), errors="0",
                          skipped="0", time=f"{wall_seconds:.3f}")
    for obligation, verdict, seconds in results:
        case = ET.SubElement(suite, "testcase", classname=obligation.manager,
                             name=obligation.id, time=f"{seconds:.3f}")
        if verdict.kind.passed:
            ET.SubElement(case, "system-out").text = verdict.summary + _cache_note(verdict)
        else:
            failure = ET.SubElement(case, "failure", type=verdict.kind.name,
                                    message=verdict.summary)
            failure.text = verdict.detail or verdict.summary
    ET.indent(suites)
    return ET.ElementTree(suites)


def unwritable(path: str) -> str | None:
    """Why a report cannot be written at path (None when it can): checked before a
    run that may take an hour, by creating the file (and its missing parent
    folders are left to :func:`ensure_parent`): a directory, a path under a
    regular file, or a place this process may not write."""
    if os.path.isdir(path):
        return f"{path} is a directory"
    parent = os.path.dirname(os.path.abspath(path))
    existing = parent
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        return f"{existing} is not a directory"
    if existing != parent:
        return None if os.access(existing, os.W_OK) else f"cannot create folders in {existing}"
    created = not os.path.exists(path)
    try:
        with open(path, "a", encoding="utf-8"):
            pass
    except OSError as error:
        return f"cannot write {path}: {error.strerror or error}"
    if created:
        os.remove(path)
    return None


def ensure_parent(path: str) -> None:
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
