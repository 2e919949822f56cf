"""The HTML report of ``python -m proofs.check``, from its JSON report.

The failing obligations come first (the table can then be sorted by any
column and filtered by manager, kind, time and text); two charts show the
time per manager and per obligation; each failure's counterexample is drawn
as the state it names (its frames; its heap as blocks and holes) beside the
text the text report prints.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from proofs.html import drawings, kernel_drawings
from proofs.html.page import attributes, esc, page, table
from proofs.html.svg import bar_chart

PASSING = ("PROVED", "PROVED_BOUNDED", "CONFIRMED", "NO_COUNTEREXAMPLE")


def failing(obligation: dict[str, Any]) -> bool:
    return obligation.get("kind") not in PASSING


def ordered(obligations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Failing first, then the slowest first."""
    return sorted(obligations, key=lambda o: (not failing(o), -float(o.get("seconds", 0))))


def counterexample(data: dict[str, Any] | None) -> str:
    """A counterexample's concrete state, drawn (empty when it carries none)."""
    if not data:
        return ""
    step = data.get("step", {})
    call = f"{step.get('op', '?')}(" + ", ".join(
        f"{k}={v}" for k, v in dict(step.get("args", {})).items()) + ")"
    parts = [f'<p class="step">step: <code>{esc(call)}</code></p>']
    if data.get("frames"):
        used = data.get("used_count", ["?", "?"])
        parts.append(f"<p>{esc(data.get('nframes'))} frames, used {esc(used[0])} → "
                     f"{esc(used[1])}; kernel directory {esc(data.get('kernel_dir'))}</p>"
                     + kernel_drawings.counterexample_frames(data["frames"]))
    if data.get("entries"):
        parts.append(kernel_drawings.counterexample_entries(data["entries"]))
    if isinstance(data.get("heap"), dict):
        heap = data["heap"]
        named = {int(v) for v in dict(step.get("args", {})).values() if str(v).isdigit()}
        parts.append("<p>the heap before the step (outlined: the block the step names):</p>"
                     + kernel_drawings.heap(heap, heap.get("holes"), named))
    return f'<div class="counterexample">{"".join(parts)}</div>'


def _row(o: dict[str, Any]) -> str:
    bad = failing(o)
    seconds = float(o.get("seconds", 0))
    kind = str(o.get("kind", "?"))
    detail = str(o.get("detail") or "")
    data = o.get("counterexample")
    drawn = drawings.drawn(lambda: counterexample(data if isinstance(data, dict) else None),
                           data)
    more = ""
    if detail or drawn:
        more = (f"<details{' open' if bad else ''}><summary>detail</summary>{drawn}"
                f"<pre>{esc(detail)}</pre></details>")
    return (f'<tr class="obligation{" failing" if bad else ""}"'
            f'{attributes(data_manager=o.get("manager"), data_kind=kind, data_seconds=seconds)}>'
            f'<td class="mono">{esc(o.get("id"))}</td><td>{esc(o.get("manager"))}</td>'
            f'<td>{esc(o.get("operation"))}</td><td>{esc(o.get("invariant"))}</td>'
            f'<td class="{"fail" if bad else "pass"}">{esc(kind)}</td>'
            f'<td class="num" data-value="{seconds}">{seconds:.3f}</td>'
            f'<td class="detail">{esc(o.get("summary"))}'
            f'{esc(" (" + o["cache"] + ")") if o.get("cache") else ""}'
            f'{more}</td></tr>\n')


def _filters(obligations: list[dict[str, Any]]) -> str:
    def choice(name: str, values: set[str]) -> str:
        options = "".join(f"<option>{esc(v)}</option>" for v in sorted(values))
        return (f'<label>{name}<select name="{name}"><option value="">all</option>{options}'
                f'</select></label>')
    return (f'<form class="filters" data-filter="obligations">'
            f'{choice("manager", {str(o.get("manager")) for o in obligations})}'
            f'{choice("kind", {str(o.get("kind")) for o in obligations})}'
            f'<label>at least (s)<input name="seconds" data-op="min" type="number" min="0" '
            f'step="0.1"></label><label>text<input name="text" data-op="text" type="search">'
            f'</label><output></output></form>')


def render(report: dict[str, Any]) -> str:
    """The page of one check run's JSON report."""
    obligations = ordered(list(report.get("obligations", [])))
    totals = report.get("totals", {})
    failures = [o for o in obligations if failing(o)]
    passed = bool(report.get("passed"))
    head = (f'<div class="summary"><div>verdict <span class="badge '
            f'{"pass" if passed else "fail"}">{"PASSED" if passed else "FAILED"}</span></div>'
            f'<div>profile <b>{esc(report.get("profile"))}</b></div>'
            f'<div>{len(obligations)} obligations, {len(failures)} failing</div>'
            + "".join(f"<div>{esc(k)}: <b>{esc(v)}</b></div>" for k, v in totals.items()
                      if not isinstance(v, (dict, list)))
            + "</div>")
    per_manager: dict[str, float] = defaultdict(float)
    for o in obligations:
        per_manager[str(o.get("manager"))] += float(o.get("seconds", 0))
    managers = bar_chart(sorted(((m, s, "") for m, s in per_manager.items()),
                                key=lambda r: -r[1]), label_width=200, chart_id="per-manager")
    slowest = sorted(obligations, key=lambda o: -float(o.get("seconds", 0)))
    each = bar_chart([(str(o.get("id")), float(o.get("seconds", 0)),
                       "failing" if failing(o) else "") for o in slowest],
                     chart_id="per-obligation")
    rows = table(["obligation", "manager", "operation", "invariant", "kind", "seconds",
                  "summary and detail"], [_row(o) for o in obligations], "obligations",
                 {0: "text", 1: "text", 2: "text", 3: "text", 4: "text", 5: "num"})
    body = (f"{head}<h2>Obligations (failing first)</h2>{_filters(obligations)}{rows}"
            f"<h2>Time per manager</h2>{managers}"
            f'<h2>Time per obligation (slowest first)</h2><div class="scroll">{each}</div>')
    return page(f"memspec check: {report.get('profile', '?')} profile", body)
