"""Reading the JSON reports of ``python -m proofs.check --json`` back: the
tools that record from a run what the next runs use (the durations of
``--shard``, proofs/runner/shard.py; the proof hints, proofs/inductive/hints.py).
Imports nothing of ours, so the modules that use it keep their verdict keys."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def recorder(prog: str, description: str) -> argparse.ArgumentParser:
    """The parser of a tool that records something from JSON reports."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("reports", nargs="+", metavar="REPORT.json")
    return parser


def read_reports(parser: argparse.ArgumentParser,
                 paths: Sequence[str]) -> list[tuple[str, str, list[dict[str, Any]]]]:
    """(path, profile, obligations) of each JSON report of ``--json``; a file
    that is not one is the parser's usage error."""
    reports = []
    for path in paths:
        try:
            report = json.loads(Path(path).read_text())
            obligations = [dict(o) for o in report["obligations"]]
            reports.append((path, str(report["profile"]), obligations))
        except (OSError, ValueError, KeyError, TypeError) as error:
            parser.error(f"{path}: not a proofs.check JSON report ({error})")
    return reports
