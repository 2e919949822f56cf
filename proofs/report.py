"""``python -m proofs.report FILE.json --html OUT`` (``memspec report``): the
HTML report of a saved JSON report, of a check run (``python -m proofs.check
--json``), of an oracle run (``python -m proofs.oracle --json``) or of a verdict
on a concurrent history (``python -m proofs.concurrency --json``, the trace of
``python -m proofs.oracle concurrent``), so an old run can be looked at again.
``--html FILE`` on each of those commands writes the same page at the end of
the run, from the same data.

Exit status: 0 written; 2 usage (unreadable file, not a report of any of these
kinds, an output that cannot be written).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from proofs.concurrency.verdict_data import FORMAT as CONCURRENCY_FORMAT
from proofs.concurrency.verdict_data import TRACE_FORMAT as CONCURRENT_TRACE_FORMAT
from proofs.html import check_report, lanes, oracle_report
from proofs.oracle.report_data import FORMAT as ORACLE_FORMAT
from proofs.runner.report import ensure_parent, unwritable

EXIT_USAGE = 2


def render(data: Any) -> str:
    """The page of a JSON report (ValueError: neither kind)."""
    if isinstance(data, dict) and data.get("format") == ORACLE_FORMAT:
        return oracle_report.render(data)
    if isinstance(data, dict) and data.get("format") == CONCURRENCY_FORMAT:
        return lanes.render(data)
    if isinstance(data, dict) and data.get("format") == CONCURRENT_TRACE_FORMAT:
        return lanes.render_trace(data)
    if isinstance(data, dict) and isinstance(data.get("obligations"), list):
        return check_report.render(data)
    raise ValueError("not a JSON report of proofs.check, proofs.oracle or proofs.concurrency")


def write_html(path: str | Path, data: Any) -> None:
    """Render data and write the page at path (its folders made)."""
    ensure_parent(str(path))
    Path(path).write_text(render(data), encoding="utf-8")


def main(argv: Sequence[str] | None = None, prog: str = "python -m proofs.report") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0],
                                     epilog="Exit status: 0 written; 2 usage error.")
    parser.add_argument("report", help="a JSON report of proofs.check, proofs.oracle or "
                        "proofs.concurrency")
    parser.add_argument("--html", required=True, metavar="OUT", help="the page to write")
    args = parser.parse_args(argv)
    why = unwritable(args.html)
    if why is not None:
        parser.error(f"--html: {why}")
    try:
        data = json.loads(Path(args.report).read_text(encoding="utf-8"))
        write_html(args.html, data)
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as error:
        print(f"{prog}: {args.report}: {error}", file=sys.stderr)
        return EXIT_USAGE
    print(f"HTML report written: {args.html}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
