"""Judge a recorded concurrent history: ``python -m proofs.concurrency history.json``.

The history is the JSON of proofs/concurrency/history.py (``to_json``),
recorded against the checker's world (proofs/concurrency/world.py: the
configuration the implementation must boot to). Prints the verdict and, for
a history that is not linearizable or undecided, the closest orders and the
lanes; ``--json FILE`` writes the verdict's data (verdict_data.py) and
``--html FILE`` its page, the lanes drawn (proofs/html/lanes.py; ``memspec
report FILE.json --html OUT`` renders a saved one). Exit status: 0
linearizable, 1 not linearizable, 2 undecided within budget, 3 the file is no
history (or a report cannot be written).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from proofs.concurrency.history import MalformedHistoryError, from_json
from proofs.concurrency.linearize import DEFAULT_BUDGET, Budget, Outcome, check
from proofs.concurrency.sequential import Matching, SequentialSpec
from proofs.concurrency.verdict_data import verdict_data
from proofs.concurrency.world import World
from proofs.html.lanes import render

EXIT = {Outcome.LINEARIZABLE: 0, Outcome.NOT_LINEARIZABLE: 1, Outcome.UNDECIDED: 2}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m proofs.concurrency",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("history", help="a history as JSON (history.py, to_json)")
    parser.add_argument("--matching", choices=[m.value for m in Matching],
                        default=Matching.ANY_FREE_FRAME.value,
                        help="how replies are matched (docs/concurrency.md)")
    parser.add_argument("--nodes", type=int, default=DEFAULT_BUDGET.nodes,
                        help="search nodes at most")
    parser.add_argument("--seconds", type=float, default=DEFAULT_BUDGET.seconds,
                        help="CPU seconds at most")
    parser.add_argument("--json", metavar="FILE", help="write the verdict as JSON data")
    parser.add_argument("--html", metavar="FILE", help="write the verdict's HTML page")
    args = parser.parse_args(argv)
    try:
        with open(args.history, encoding="utf-8") as file:
            history = from_json(json.load(file))
    except (OSError, ValueError, MalformedHistoryError) as error:
        print(f"{args.history}: {error}", file=sys.stderr)
        return 3
    shared = any(call.op.manager == "SharedMemoryManager" for call in history)
    spec = SequentialSpec(World(shared=shared), Matching(args.matching))
    verdict = check(history, spec, Budget(args.nodes, args.seconds))
    print(verdict.explain(history))
    data = verdict_data(history, verdict)
    try:
        if args.json:
            Path(args.json).write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        if args.html:
            Path(args.html).write_text(render(data), encoding="utf-8")
    except OSError as error:
        print(f"a report cannot be written: {error}", file=sys.stderr)
        return 3
    return EXIT[verdict.outcome]


if __name__ == "__main__":
    raise SystemExit(main())
