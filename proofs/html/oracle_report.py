"""The HTML report of an oracle run (search, campaign or replay), from its
JSON report (proofs/oracle/report_data.py).

The run per mode, the operations per manager and the families run; then each
divergence: why, its trace side by side (the implementation's reply and the
model's to each request, replies that differ in red, the implementation's
stderr lines under the step that wrote them, the divergent step marked), and
at that step the state before and after it, drawn from the observations the
trace holds (proofs/html/drawings.py): the implementation's before and after,
and the model's after.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from proofs.html import drawings
from proofs.html.page import attributes, esc, hexa, page, table


def _short(value: Any) -> str:
    if isinstance(value, dict) and "observed" in value:
        return "(observed)"
    if isinstance(value, dict):
        result = value.get("result")
        text = hexa(result) if isinstance(result, int) else json.dumps(result)
        error = value.get("error", 0)
        return f"{text}" + (f" error {error}" if error else "")
    return "(no reply)" if value is None else json.dumps(value)[:80]


def _call(request: dict[str, Any]) -> str:
    args = ", ".join(f"{k}={hexa(v)}" for k, v in dict(request.get("args", {})).items())
    if "op" in request:
        return f"{request.get('manager')}.{request['op']}({args})"
    return f"observe {request.get('observe')}({args})"


def _step_row(step: dict[str, Any], marked: Any) -> str:
    request = step.get("request", {})
    ident = step.get("id")
    is_op = "op" in request
    mark = ident == marked
    classes = ["step", "op" if is_op else "observation"] + (["marked"] if mark else [])
    differs = ' class="diff"' if step.get("differs") else ""
    stderr = "".join(f'<div class="stderr">stderr: {esc(line)}</div>'
                     for line in step.get("stderr", []))
    # the marked step, and a step with stderr lines, are never filtered out
    shown = "op" if is_op or mark or step.get("stderr") else "observe"
    where = attributes(id=f"step-{ident}", data_step=shown, data_marked="true" if mark else None)
    return (f'<tr class="{" ".join(classes)}"{where}>'
            f'<td class="num">#{esc(ident)}{" ◀" if mark else ""}</td>'
            f'<td class="mono">{esc(_call(request))}{stderr}</td>'
            f'<td class="mono"><span{differs}>{esc(_short(step.get("implementation")))}</span>'
            f'</td><td class="mono">{esc(_short(step.get("model")))}</td></tr>\n')


def _observed(steps: list[dict[str, Any]], side: str, first: int, last: int
              ) -> dict[str, Any]:
    """The last value of each observation among the steps with first <= id < last."""
    out: dict[str, Any] = {}
    for step in steps:
        ident, request = step.get("id", 0), step.get("request", {})
        reply = step.get(side)
        if first <= ident < last and "observe" in request and isinstance(reply, dict):
            out[str(request["observe"])] = reply.get("observed")
    return out


def at_step(steps: list[dict[str, Any]], marked: int | None) -> str:
    """The state before and after the marked step, as drawings: for each kind of
    state observed, the implementation's before and after and the model's after,
    one under the other so their address lines line up."""
    if marked is None:
        return "<p>no step to show (the divergence came before the first request)</p>"
    ops = [s["id"] for s in steps if "op" in s.get("request", {})]
    before_op = max((i for i in ops if i < marked), default=0)
    after_op = min((i for i in ops if i > marked), default=1 << 62)
    step = next((s for s in steps if s.get("id") == marked), {})
    focus = {v for v in dict(step.get("request", {}).get("args", {})).values()
             if isinstance(v, int) and not isinstance(v, bool)}
    before = _observed(steps, "implementation", before_op, marked)
    after = _observed(steps, "implementation", marked + 1, after_op)
    model = _observed(steps, "model", marked + 1, after_op)
    sides = [("before", "before the step (implementation)", drawings.parts(before, None, focus)),
             ("after", "after the step (implementation)", drawings.parts(after, before, focus)),
             ("model-after", "after the step (model)", drawings.parts(model, before, focus))]
    keys: dict[str, str] = {}
    for _, _, drawn in sides:
        keys.update((key, title) for key, title, _ in drawn)
    if not keys:
        return "<p>nothing observed around this step</p>"
    sections = []
    for key, title in keys.items():
        rows = []
        for css, label, drawn in sides:
            body = next((html for k, _, html in drawn if k == key),
                        '<p class="note">not observed</p>')
            rows.append(f'<div class="state {css}"><h4>{esc(label)}</h4>{body}</div>')
        now, ours = ([html for k, _, html in drawn if k == key] for _, _, drawn in sides[1:])
        differs = now != ours and bool(now and ours)
        note = ('<p class="diff">the implementation\'s state differs from the model\'s '
                'here</p>' if differs else "")
        sections.append(f'<section class="state-part{" differs" if differs else ""}" '
                        f'data-part="{esc(key)}"><h3>{esc(title)}</h3>{note}{"".join(rows)}'
                        '</section>')
    return "".join(sections)


#: What a campaign says of a bug (proofs/oracle/report_data.py's ``bucket``).
CAMPAIGN = ("found_after", "sequences", "shrunk_from", "operations", "minimal", "hit_again")


def _campaign(found: dict[str, Any]) -> str:
    known = [f"{key.replace('_', ' ')}: {found[key]}" for key in CAMPAIGN if key in found]
    return f'<p class="campaign">{esc("; ".join(known))}</p>' if known else ""


def divergence(n: int, mode: dict[str, Any], found: dict[str, Any]) -> str:
    steps = list(found.get("steps", []))
    marked = found.get("marked")
    bucket = " / ".join(str(found[k]) for k in ("operation", "invariant", "clause")
                        if found.get(k))
    head = (f'<h2 id="divergence-{n}">Divergence {n}: {esc(mode.get("mode"))} mode, family '
            f'{esc(found.get("family"))} — {esc(found.get("kind"))} '
            f'{esc(", ".join(found.get("violated", [])))}</h2>'
            + (f"<p>bug: {esc(bucket)}</p>" if bucket else "")
            + _campaign(found)
            + f'<pre class="reason">{esc(found.get("reason", ""))}</pre>'
            + (f'<pre class="detail">{esc(found.get("detail"))}</pre>'
               if found.get("detail") else "")
            + (f'<p>trace saved: <code>{esc(found["trace"])}</code></p>'
               if found.get("trace") else ""))
    form = (f'<form class="filters" data-filter="trace-{n}"><label>steps<select name="step">'
            f'<option value="op">operations</option><option value="">operations and '
            f'observations</option></select></label><output></output></form>')
    rows = table(["#", "request", "implementation", "model"],
                 [_step_row(s, marked) for s in steps], f"trace-{n}")
    return (f'<section class="divergence" data-index="{n}">{head}<h3>Trace, side by side'
            f'</h3>{form}{rows}<h3>At the divergent step #{esc(marked)}</h3>'
            f'{at_step(steps, marked)}</section>')


def _summary(modes: list[dict[str, Any]]) -> str:
    rows = []
    for mode in modes:
        found = mode.get("divergences", mode.get("bugs", []))
        rows.append(f'<tr><td>{esc(mode.get("mode"))}</td>'
                    f'<td>{esc(mode.get("implementation"))}</td>'
                    f'<td class="{"pass" if mode.get("status") == "passed" else "fail"}">'
                    f'{esc(mode.get("status"))}</td><td>{esc(mode.get("family"))}</td>'
                    f'<td class="num">{esc(mode.get("sequences"))}</td>'
                    f'<td class="num">{esc(mode.get("seconds"))}</td>'
                    f'<td class="num">{len(found)}</td>'
                    f'<td>{esc("; ".join(mode.get("skipped", [])))}</td></tr>')
    per_manager: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for mode in modes:
        for manager, op, count in mode.get("operations", []):
            per_manager[manager][op] += int(count)
    managers = [f'<tr><td>{esc(m)}</td><td class="num">{sum(ops.values())}</td><td>'
                + esc(", ".join(f"{op} {n}" for op, n in sorted(ops.items()))) + "</td></tr>"
                for m, ops in sorted(per_manager.items())]
    families: dict[str, list[str]] = defaultdict(list)
    for mode in modes:
        for found in mode.get("divergences", mode.get("bugs", [])):
            families[str(found.get("family"))].append(
                f"{mode.get('mode')}: {found.get('kind')} {', '.join(found.get('violated', []))}")
    family_rows = [f"<tr><td>{esc(f)}</td><td>{esc('; '.join(v))}</td></tr>"
                   for f, v in sorted(families.items())]
    return ("<h2>Runs</h2>" + table(["mode", "implementation", "status", "family", "sequences",
                                     "seconds", "divergences", "skipped"], rows)
            + "<h2>Per manager</h2>" + table(["manager", "operations", "by operation"],
                                             managers)
            + "<h2>Per family</h2>" + table(["family", "divergences"], family_rows or [
                "<tr><td colspan=2>none diverged</td></tr>"]))


def render(report: dict[str, Any]) -> str:
    """The page of one oracle run's JSON report."""
    modes = list(report.get("modes", []))
    passed = report.get("verdict") == 0
    head = (f'<div class="summary"><div>verdict <span class="badge '
            f'{"pass" if passed else "fail"}">{"PASSED" if passed else "FAILED"}</span> '
            f'(exit {esc(report.get("verdict"))})</div><div>{esc(report.get("command"))}</div>'
            "</div>")
    parts = [head, _summary(modes)]
    n = 0
    for mode in modes:
        for found in mode.get("divergences", mode.get("bugs", [])):
            n += 1
            parts.append(divergence(n, mode, found))
        if mode.get("unknown"):
            undecided = mode.get("undecided") or {}
            steps, marked = list(undecided.get("steps", [])), undecided.get("marked")
            parts.append(f'<section class="undecided"><h2>Undecided ({esc(mode.get("mode"))} '
                         f'mode): z3 answered unknown, not a pass</h2>'
                         f'<pre>{esc(mode["unknown"])}</pre>'
                         + (table(["#", "request", "implementation", "model"],
                                  [_step_row(s, marked) for s in steps])
                            + f"<h3>At step #{esc(marked)}</h3>{at_step(steps, marked)}"
                            if steps else "") + "</section>")
    texts = "".join(f'<details><summary>{esc(m.get("mode"))} mode</summary><pre>'
                    f'{esc(m.get("text", ""))}</pre></details>' for m in modes)
    parts.append(f"<h2>The text report</h2>{texts}")
    return page("memspec oracle report", "".join(parts))
