"""A concurrent history drawn as lanes, and the page of a verdict on it
(issue 21: "concurrent histories as one lane per thread with call intervals").

Drawn from the verdict's JSON data (proofs/concurrency/verdict_data.py), the
one source the text lanes (proofs/concurrency/lanes.py) also show: one lane
per thread, time left to right from the first invocation to the last
response, each call a box from its invocation to its response (a pending
call runs off the right edge, open). The calls that could have come next
after the closest order, and did not fit (``blocked``), are drawn in red and
marked in the table of calls; the closest orders are listed under it.
"""

from __future__ import annotations

import json
from typing import Any

from proofs.html.page import attributes, esc, hexa, page, table
from proofs.html.svg import svg

#: Pixels: the label column, the time axis, one lane, a box's least width.
LABEL, AXIS, LANE, LEAST = 56, 820, 34, 8


def call_text(call: dict[str, Any]) -> str:
    """``Manager.Op(args)``, addresses in hex."""
    args = ", ".join(hexa(a) for a in call.get("args", []))
    return f"{call.get('manager')}.{call.get('op')}({args})"


def reply_text(reply: Any) -> str:
    """A reply ``[result, error]`` as the reports print it; pending when None."""
    if not isinstance(reply, list) or len(reply) != 2:
        return "pending"
    result, error = reply
    shown = hexa(result) if isinstance(result, int) and not isinstance(result, bool) \
        else str(result)
    return f"{shown}, error {error}" if error else shown


def _ends(call: dict[str, Any], high: float) -> tuple[float, float]:
    returned = call.get("returned")
    return float(call["invoked"]), high if returned is None else float(returned)


def lanes_svg(data: dict[str, Any]) -> str:
    """The history of data as one lane per thread (module docstring)."""
    calls: list[dict[str, Any]] = list(data.get("history", []))
    if not calls:
        return '<p>(empty history)</p>'
    blocked = {b["call"] for b in data.get("blocked", [])}
    low = min(float(c["invoked"]) for c in calls)
    high = max(float(c["invoked"]) if c.get("returned") is None else float(c["returned"])
               for c in calls)
    span = (high - low) or 1.0
    threads = sorted({int(c["thread"]) for c in calls})
    row = {thread: n for n, thread in enumerate(threads)}
    parts = [f'<g class="lane"{attributes(data_thread=t)}><text x="4" y="{n * LANE + 21}">'
             f't{t}</text><line x1="{LABEL}" x2="{LABEL + AXIS}" y1="{n * LANE + 17}" '
             f'y2="{n * LANE + 17}" stroke="#d5d9e0"/></g>' for t, n in row.items()]
    for number, call in enumerate(calls):
        start, end = _ends(call, high)
        x = LABEL + AXIS * (start - low) / span
        width = max(LEAST, AXIS * (end - start) / span)  # a pending call ends at the edge
        y = row[int(call["thread"])] * LANE + 5
        kind = ["call"] + (["pending"] if call.get("returned") is None else []) \
            + (["blocked"] if number in blocked else [])
        fill = "#fde2df" if number in blocked else "#e3ecf8"
        stroke = "#b3261e" if number in blocked else "#4a78b5"
        dash = ' stroke-dasharray="4 3"' if "pending" in kind else ""
        label = f"#{number} {call.get('op')}"
        shown = label if len(label) * 6 < width - 4 else f"#{number}"
        parts.append(
            f'<g class="{" ".join(kind)}"{attributes(data_call=number)}>'
            f'<title>#{number} t{call["thread"]} {esc(call_text(call))} → '
            f'{esc(reply_text(call.get("reply")))}</title>'
            f'<rect x="{x:.1f}" y="{y}" width="{width:.1f}" height="{LANE - 10}" rx="3" '
            f'fill="{fill}" stroke="{stroke}"{dash}/>'
            + (f'<text x="{x + 3:.1f}" y="{y + 16}">{esc(shown)}</text>'
               if len(shown) * 6 < width + 6 else "") + "</g>")
    height = len(threads) * LANE + 18
    parts.append(f'<text x="{LABEL}" y="{height - 3}">time →</text>')
    return svg(LABEL + AXIS + 10, height, "".join(parts), "lanes")


def _calls_table(data: dict[str, Any]) -> str:
    blocked = {b["call"]: b for b in data.get("blocked", [])}
    closest = {call: n for n, call in enumerate((data.get("orders") or [[]])[0])}
    rows = []
    for number, call in enumerate(data.get("history", [])):
        why = blocked.get(number)
        mark = (f'<span class="diff">could come next; the model answers '
                f'{esc(reply_text(why["expected"]))}</span>' if why else "")
        rows.append(
            f'<tr class="call{" marked" if why else ""}"{attributes(data_call=number)}>'
            f'<td class="num">#{number}</td><td class="num">t{esc(call.get("thread"))}</td>'
            f'<td class="mono">{esc(call_text(call))}</td>'
            f'<td class="mono">{esc(reply_text(call.get("reply")))}</td>'
            f'<td class="num">{esc(call.get("invoked"))}</td>'
            f'<td class="num">{esc(call.get("returned", "pending"))}</td>'
            f'<td class="num">{closest.get(number, "")}</td><td>{mark}</td></tr>\n')
    return table(["#", "thread", "call", "reply", "invoked", "returned", "in order", ""],
                 rows, "calls")


def verdict_section(data: dict[str, Any]) -> str:
    """The verdict's summary, lanes, calls and closest orders (a section of a page)."""
    outcome = str(data.get("outcome"))
    badge = "pass" if outcome == "linearizable" else "fail"
    heading = "witness orders" if outcome == "linearizable" else "closest orders"
    orders = "".join(f'<li class="mono">{esc(" ; ".join(f"#{c}" for c in order))}</li>'
                     for order in data.get("orders", []))
    return (f'<div class="summary"><div><span class="badge {badge}">{esc(outcome)}</span>'
            f'</div><div>{esc(data.get("groups"))} group(s)</div>'
            f'<div>{esc(data.get("nodes"))} search nodes</div>'
            f'<div>{float(data.get("seconds", 0)) * 1000:.1f} ms</div></div>'
            f'<figure>{lanes_svg(data)}</figure>{_calls_table(data)}'
            f'<h3>{heading}</h3><ol class="orders">{orders}</ol>')


def render(data: dict[str, Any]) -> str:
    """The page of a verdict's JSON data."""
    return page("memspec: a concurrent history", verdict_section(data))


def render_trace(data: dict[str, Any]) -> str:
    """The page of a concurrent oracle run (``python -m proofs.oracle concurrent``):
    its summary, the problem that stopped a run (crash, protocol), whose clock
    timed the calls, and the failing or undecided history's verdict drawn."""
    parts = [f'<p class="summary-line">{esc(data.get("summary", ""))}</p>']
    problem = data.get("problem")
    if problem:
        parts.append(f'<p class="diff">{esc(problem[0])}: {esc(problem[1])}</p>')
    if data.get("stderr"):
        parts.append(f'<div class="stderr">stderr: {esc(data["stderr"])}</div>')
    if data.get("timing") == "oracle":
        parts.append("<p>times: the oracle's, at send and receive (some replies carried "
                     "none): wider intervals</p>")
    if data.get("stopped"):
        parts.append(f"<p>stopped (no reply in time, call pending): threads "
                     f"{esc(', '.join(map(str, data['stopped'])))}</p>")
    if isinstance(data.get("verdict"), dict):
        parts.append(verdict_section(data["verdict"]))
    if data.get("plan") is not None:
        parts.append(f'<h3>plan</h3><pre class="plan">{esc(json.dumps(data["plan"]))}</pre>')
    return page("memspec: a concurrent oracle run", "".join(parts))
