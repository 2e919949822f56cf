"""A history drawn as text: one lane per thread, each call an interval.

The drawing a divergence is shown with (docs/concurrency.md, "The checker"):
time runs left to right, scaled so the first invocation is the first column
and the last response the last; a call is ``[#n==]`` from its invocation to
its response, a pending call runs off the right edge as ``[#n==>``. Below the
lanes, each call by number with its operation and reply. The HTML report's
lanes (not built yet) are to draw the same data.
"""

from __future__ import annotations

from proofs.concurrency.history import History

#: Columns of the time axis.
WIDTH = 64


def _column(at: float, low: float, high: float, width: int) -> int:
    if high <= low:
        return 0
    return min(width - 1, max(0, round((at - low) / (high - low) * (width - 1))))


def lanes(history: History, width: int = WIDTH, marked: frozenset[int] = frozenset()) -> str:
    """The lanes of history; calls in marked get a ``*`` in the list below."""
    if not history.calls:
        return "(empty history)"
    low = min(call.invoked for call in history)
    high = max(call.invoked if call.returned is None else call.returned for call in history)
    rows = {thread: [" "] * width for thread in history.threads}
    for number, call in enumerate(history):
        row = rows[call.thread]
        start = _column(call.invoked, low, high, width)
        end = width - 1 if call.returned is None else _column(call.returned, low, high, width)
        end = max(end, start + 1) if start + 1 < width else start
        row[start:end + 1] = ["="] * (end - start + 1)
        row[start] = "["
        row[end] = ">" if call.returned is None else "]"
        label = f"#{number}"
        if end - start - 1 >= len(label):
            row[start + 1:start + 1 + len(label)] = list(label)
    out = [f"t{thread:<3}|{''.join(row)}|" for thread, row in rows.items()]
    out += [f"{'*' if number in marked else ' '}#{number:<3} {call}"
            for number, call in enumerate(history)]
    return "\n".join(out)
