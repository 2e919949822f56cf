"""SVG written here: a horizontal bar chart, and the layout of an address line.

No charting library: a bar chart and boxes along a line are a few rectangles,
and a library would have to be bundled into every file to work offline.
"""

from __future__ import annotations

from collections.abc import Sequence

from proofs.html.page import attributes, esc

#: Bars a chart draws at most (the rest are summed in a last bar).
MAX_BARS = 400


def bar_chart(rows: Sequence[tuple[str, float, str]], unit: str = "s",
              label_width: int = 300, width: int = 760, bar: int = 14,
              chart_id: str | None = None) -> str:
    """Bars of (label, value, css class), longest first as given; the value
    printed at the bar's end."""
    rows = list(rows)
    if len(rows) > MAX_BARS:
        rest = rows[MAX_BARS - 1:]
        rows = rows[:MAX_BARS - 1] + [(f"{len(rest)} more", sum(r[1] for r in rest), "")]
    top = max((value for _, value, _ in rows), default=0.0) or 1.0
    span = width - label_width - 70
    parts = []
    for n, (label, value, kind) in enumerate(rows):
        y = n * (bar + 3)
        length = max(1.0, span * value / top)
        shown = label if len(label) <= 48 else label[:22] + "…" + label[-24:]
        parts.append(
            f'<g class="bar{" " + kind if kind else ""}"{attributes(data_label=label)}>'
            f'<title>{esc(label)}: {value:.3f} {unit}</title>'
            f'<text x="{label_width - 6}" y="{y + bar - 3}" text-anchor="end">{esc(shown)}</text>'
            f'<rect x="{label_width}" y="{y}" width="{length:.1f}" height="{bar}" '
            f'fill="{"#b3261e" if kind == "failing" else "#4a78b5"}"/>'
            f'<text x="{label_width + length + 4:.1f}" y="{y + bar - 3}">{value:.2f} {unit}'
            f'</text></g>')
    height = len(rows) * (bar + 3) + 4
    return (f'<svg{attributes(id=chart_id)} class="chart" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img">{"".join(parts)}</svg>')


def spans(sizes: Sequence[int], width: float, min_px: float = 18.0) -> list[tuple[float, float]]:
    """(x, width) of boxes along a line of ``width`` pixels, one per size: each
    box gets ``min_px`` and a share of the rest proportional to its size, so a
    20-byte block beside a 16 KB hole can still be seen and labelled."""
    total = sum(max(s, 0) for s in sizes) or 1
    spare = max(width - min_px * len(sizes), 0.0)
    out = []
    x = 0.0
    for size in sizes:
        w = min_px + spare * max(size, 0) / total
        out.append((x, w))
        x += w
    return out


def svg(width: int, height: int, body: str, css: str = "") -> str:
    """An SVG element that scales down with its column (its viewBox kept)."""
    return (f'<svg{attributes(**{"class": css or None})} width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" style="max-width:100%;height:auto">{body}</svg>')
