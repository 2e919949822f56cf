"""A verdict on a concurrent history as JSON data: what the text explanation
(:meth:`Verdict.explain`), the HTML lanes (proofs/html/lanes.py) and a saved
report (``memspec report FILE.json --html OUT``) are all made from.

``{"format": FORMAT, "outcome", "groups", "nodes", "seconds", "history":
to_json(history), "orders": [[call, ...], ...], "blocked": [{"call", "reply",
"expected"}, ...]}``: call numbers index ``history``; ``orders`` are the
witness orders of a linearizable history, else the closest orders found (the
longest linearizable prefixes); ``blocked`` the calls that could have come
next after the closest order, each with its reply (None: pending) and the
model's reply there.
"""

from __future__ import annotations

from typing import Any

from proofs.concurrency.history import History, to_json
from proofs.concurrency.linearize import Verdict

#: The ``format`` field of the data.
FORMAT = "memspec-concurrency-verdict"
#: The ``format`` of a concurrent oracle run's trace (proofs/oracle/concurrent_cli.py),
#: whose ``verdict`` is this data.
TRACE_FORMAT = "memspec-concurrent-trace"


def verdict_data(history: History, verdict: Verdict) -> dict[str, Any]:
    """The verdict on history as JSON data (module docstring)."""
    return {
        "format": FORMAT, "outcome": verdict.outcome.value, "groups": verdict.groups,
        "nodes": verdict.nodes, "seconds": round(verdict.seconds, 6),
        "history": to_json(history),
        "orders": [list(order) for order in verdict.orders],
        "blocked": [{"call": b.call, "reply": None if b.reply is None else list(b.reply),
                     "expected": list(b.expected)} for b in verdict.blocked],
    }
