"""Judge a recorded concurrent history: ``python -m proofs.concurrency history.json``.

The history is the JSON of proofs/concurrency/history.py (``to_json``),
recorded against the checker's world (proofs/concurrency/world.py: the
configuration the implementation must boot to). Prints the verdict and, for
a history that is not linearizable or undecided, the closest orders and the
lanes. Exit status: 0 linearizable, 1 not linearizable, 2 undecided within
budget, 3 the file is no history.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from proofs.concurrency.history import MalformedHistoryError, from_json
from proofs.concurrency.linearize import DEFAULT_BUDGET, Budget, Outcome, check
from proofs.concurrency.sequential import Matching, SequentialSpec
from proofs.concurrency.world import World

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
    return EXIT[verdict.outcome]


if __name__ == "__main__":
    raise SystemExit(main())
