"""The kernel's state drawn: the heap on its address line, the frame bitmap and
the page tables as maps, a counterexample's frames.

The shapes are the observations of proofs/oracle/PROTOCOL.md: HeapWalk (the
blocks as memory holds them), HoleIndex ((size, header) in index order),
FrameCounts, FrameBitmap (runs of used frames), PageTables (present PDEs,
non-zero PTEs). A counterexample of ``python -m proofs.check`` carries its
heap in the HeapWalk shape (proofs/kernel_heap.py's ``concrete``), so one
drawing serves both reports.
"""

from __future__ import annotations

from typing import Any

from proofs.html.page import attributes, esc, hexa
from proofs.html.svg import spans, svg
from spec.abi import FOOTER_SIZE, HEADER_SIZE, HEAP_MAGIC, PTE_PRESENT, PTE_USER, PTE_WRITABLE

WIDTH = 900
#: Frames a bitmap map draws at most, PDEs a page-table map draws at most.
MAX_FRAMES, MAX_TABLES = 4096, 16
HOLE, USED, DAMAGED = "#bfe3c6", "#8fb3e0", "#b3261e"


def damaged(block: dict[str, Any]) -> bool:
    """A header or footer that HEAP-2 would refuse: a wrong magic, a footer
    that does not point back at its header."""
    return (block.get("magic") != HEAP_MAGIC or block.get("footer_magic") != HEAP_MAGIC
            or block.get("footer_header") != block.get("header"))


def heap(walk: dict[str, Any], holes: list[list[int]] | None = None,
         focus: set[int] | frozenset[int] = frozenset()) -> str:
    """Blocks and holes along the heap's address line, each with its header
    (left mark) and footer (right mark); the index array before data_start;
    below, the hole index, each entry drawn to the header it points at. A
    block whose header or payload address is in ``focus`` is outlined."""
    blocks = list(walk.get("blocks", []))[:256]
    if not walk.get("created", True) and not blocks:
        return '<p class="note">no heap yet (Create has not succeeded)</p>'
    start, data_start, end = (int(walk.get(k, 0)) for k in ("start", "data_start", "end"))
    pieces: list[tuple[str, int, dict[str, Any] | None]] = []
    if data_start > start:
        pieces.append(("index", data_start - start, None))
    for block in blocks:
        pieces.append(("block", max(int(block.get("size", 0)), 1), block))
    walked = blocks[-1]["header"] + blocks[-1]["size"] if blocks else data_start
    if end > walked:
        pieces.append(("tail", end - walked, None))
    boxes = spans([size for _, size, _ in pieces], WIDTH - 10, 26.0)
    parts, where = [], {}
    for (kind, size, block), (x, w) in zip(pieces, boxes, strict=True):
        x += 5
        if block is None:
            label = "index array" if kind == "index" else "not walked"
            parts.append(f'<g class="{kind}"><title>{esc(label)}: {size} bytes</title>'
                         f'<rect x="{x:.1f}" y="20" width="{w:.1f}" height="36" fill="#e8e8ee" '
                         f'stroke="#99a"/><text x="{x + 3:.1f}" y="42">{esc(label)}</text></g>')
            continue
        header = int(block["header"])
        where[header] = x + w / 2
        bad = damaged(block)
        kind = "hole" if block.get("hole") else "used"
        named = header in focus or header + HEADER_SIZE in focus
        classes = f"block {kind}" + (" damaged" if bad else "") + (" focus" if named else "")
        tip = (f"{'hole' if block.get('hole') else 'block'} at {hexa(header)}, size {size}; "
               f"header magic {hexa(block.get('magic'))}, footer magic "
               f"{hexa(block.get('footer_magic'))} -> {hexa(block.get('footer_header'))}")
        mark = min(4.0, w / 4)
        parts.append(
            f'<g class="{classes}"{attributes(data_header=hex(header), data_size=size)}>'
            f'<title>{esc(tip)}</title>'
            f'<rect class="box" x="{x:.1f}" y="20" width="{w:.1f}" height="36" '
            f'fill="{HOLE if kind == "hole" else USED}" stroke="{DAMAGED if bad else "#445"}" '
            f'stroke-width="{2.5 if bad else 1}"/>'
            f'<rect class="header" x="{x:.1f}" y="20" width="{mark:.1f}" height="36" '
            f'fill="#334"/><rect class="footer" x="{x + w - mark:.1f}" y="20" '
            f'width="{mark:.1f}" height="36" fill="{DAMAGED if bad else "#667"}"/>'
            + (f'<rect x="{x - 2:.1f}" y="17" width="{w + 4:.1f}" height="42" fill="none" '
               f'stroke="#e07a00" stroke-width="2.5" stroke-dasharray="5 3"/>' if named else "")
            + (f'<text x="{x + mark + 2:.1f}" y="35">{size}</text>' if w > 34 else "")
            + (f'<text class="mono" x="{x + 1:.1f}" y="14">{hex(header)[-5:]}</text>'
               if w > 44 else "") + "</g>")
    index = list(holes or [])[:64]
    step = min(70.0, (WIDTH - 10) / max(len(index), 1))
    for n, (size, header) in enumerate(index):
        x = 5 + n * step
        target = where.get(int(header))
        line = (f'<path d="M{x + step / 2:.1f},96 L{target:.1f},58" stroke="#2d6a3e" '
                f'fill="none" marker-end="url(#arrow)"/>' if target is not None else
                f'<text x="{x:.1f}" y="126" fill="{DAMAGED}">dangling</text>')
        parts.append(f'<g class="index-entry"{attributes(data_header=hex(int(header)))}>'
                     f'<title>index[{n}] = ({size}, {hexa(header)})</title>{line}'
                     f'<rect x="{x + 1:.1f}" y="96" width="{step - 2:.1f}" height="18" '
                     f'fill="#f1f8f2" stroke="#2d6a3e"/><text x="{x + 3:.1f}" y="109">'
                     f'[{n}] {size}</text></g>')
    arrow = ('<defs><marker id="arrow" viewBox="0 0 6 6" refX="5" refY="3" markerWidth="6" '
             'markerHeight="6" orient="auto"><path d="M0,0 L6,3 L0,6 z" fill="#2d6a3e"/>'
             '</marker></defs>')
    caption = (f"heap [{hexa(start)}, {hexa(end)}), data from {hexa(data_start)}, "
               f"{len(blocks)} blocks ({sum(1 for b in blocks if b.get('hole'))} holes), "
               f"index {len(index)} of {walk.get('index_size', '?')}; header {HEADER_SIZE} "
               f"and footer {FOOTER_SIZE} bytes drawn as the dark marks")
    return (f'<figure class="drawing heap">{svg(WIDTH, 132, arrow + "".join(parts), "heap")}'
            f'<figcaption>{esc(caption)}</figcaption></figure>')


def frame_bitmap(bitmap: dict[str, Any], counts: dict[str, Any] | None = None,
                 before: dict[str, Any] | None = None) -> str:
    """Frames as a grid, 32 a row: used dark, free light; a frame whose bit
    differs from ``before`` outlined."""
    used = _used(bitmap)
    frames = int((counts or {}).get("frames") or max(used, default=-1) + 1)
    shown = min(frames, MAX_FRAMES)
    was = _used(before) if before is not None else used
    cell, columns = (14, 32) if shown <= 256 else (10, 64)
    parts = []
    for frame in range(shown):
        x, y = (frame % columns) * cell, (frame // columns) * cell
        state = "used" if frame in used else "free"
        changed = (frame in used) != (frame in was)
        parts.append(f'<rect class="frame {state}{" changed" if changed else ""}" x="{x}" '
                     f'y="{y}" width="{cell - 1}" height="{cell - 1}" '
                     f'fill="{"#3d5a80" if state == "used" else "#e6ecf2"}" '
                     f'stroke="{"#e07a00" if changed else "none"}" stroke-width="2">'
                     f'<title>frame {frame} ({hex(frame << 12)}): {state}</title></rect>')
    rows = -(-shown // columns) if shown else 1
    note = f" (the first {shown} drawn)" if shown < frames else ""
    total = (counts or {}).get("used", len(used))
    return (f'<figure class="drawing frames">{svg(columns * cell, rows * cell, "".join(parts))}'
            f'<figcaption>{frames} frames, '
            f'{esc(total)} used{esc(note)}; outlined: changed by the step</figcaption></figure>')


def _used(bitmap: dict[str, Any] | None) -> set[int]:
    """The used frames among the first MAX_FRAMES (those a map draws)."""
    out: set[int] = set()
    for first, count in (bitmap or {}).get("used", [])[:MAX_FRAMES]:
        out.update(range(max(int(first), 0), min(int(first) + int(count), MAX_FRAMES)))
    return out


def page_tables(tables: dict[str, Any]) -> str:
    """The kernel directory's present PDEs, each as a map of its table's 1024
    PTEs (64 a row), coloured by the user and writable bits."""
    ptes: dict[int, dict[int, int]] = {}
    for slot, index, pte in tables.get("ptes", []):
        ptes.setdefault(int(slot), {})[int(index)] = int(pte)
    cell, columns = 7, 64
    figures = []
    for slot, pde in list(tables.get("pdes", []))[:MAX_TABLES]:
        parts = []
        last = max(ptes.get(int(slot), {0: 0}), default=0)
        rows = max(2, last // columns + 1)
        for index, pte in sorted(ptes.get(int(slot), {}).items()):
            if not pte & PTE_PRESENT:
                continue
            kind = ("user " if pte & PTE_USER else "kernel ") + ("rw" if pte & PTE_WRITABLE
                                                                 else "ro")
            colour = {"kernel rw": "#3d5a80", "kernel ro": "#98c1d9", "user rw": "#c0392b",
                      "user ro": "#f5b7a8"}[kind]
            address = (int(slot) << 22) | (index << 12)
            parts.append(f'<rect class="pte" x="{(index % columns) * cell}" '
                         f'y="{(index // columns) * cell}" width="{cell - 1}" '
                         f'height="{cell - 1}" fill="{colour}"><title>{hex(address)} -> frame '
                         f'{pte >> 12} ({hex(pte & ~0xFFF)}), {kind}</title></rect>')
        figures.append(
            f'<figure class="drawing table"><svg width="{columns * cell}" height="{rows * cell}" '
            f'style="background:#f4f5f7">{"".join(parts)}</svg><figcaption>PDE {slot} '
            f'({hex(int(slot) << 22)}): table in frame {int(pde) >> 12}, '
            f'{len(parts)} pages</figcaption></figure>')
    legend = ('<div class="legend"><span><i style="background:#3d5a80"></i>kernel rw</span>'
              '<span><i style="background:#98c1d9"></i>kernel ro</span><span><i '
              'style="background:#c0392b"></i>user rw</span><span><i style="background:'
              '#f5b7a8"></i>user ro</span></div>')
    head = f"<p>directory in frame {esc(tables.get('directory'))}</p>"
    return head + legend + ("".join(figures) or "<p>no page table</p>")


def counterexample_frames(rows: list[dict[str, Any]]) -> str:
    """The frames a paging counterexample names: owner, used bit and rank,
    before -> after the step, changed ones marked."""
    out = []
    for row in rows:
        owner, used, rank = row.get("owner", ["?", "?"]), row.get("used", [None, None]), \
            row.get("rank", ["?", "?"])
        changed = owner[0] != owner[1] or used[0] != used[1] or rank[0] != rank[1]
        out.append(f'<tr class="frame{" changed" if changed else ""}"><td class="mono">'
                   f'{hex(int(row.get("frame", 0)))}</td><td>{esc(owner[0])} → '
                   f'{esc(owner[1])}</td><td>{esc(used[0])} → {esc(used[1])}</td>'
                   f'<td class="num">{esc(rank[0])} → {esc(rank[1])}</td></tr>')
    return ('<table class="frames"><thead><tr><th>frame</th><th>owner</th><th>used</th>'
            f'<th>rank</th></tr></thead><tbody>{"".join(out)}</tbody></table>')


def _flags(entry: int) -> str:
    if not entry & PTE_PRESENT:
        return "not present" if entry == 0 else f"not present ({entry:#x})"
    return (f"frame {entry >> 12:#x} " + ("W" if entry & PTE_WRITABLE else "R")
            + ("U" if entry & PTE_USER else "S"))


def counterexample_entries(rows: list[dict[str, Any]]) -> str:
    """The PDE and PTE a paging counterexample's step writes, decoded, before ->
    after (W/R: writable or not; U/S: user or supervisor)."""
    out = []
    for row in rows:
        pre, post = (int(v) for v in row.get("values", [0, 0]))
        out.append(f'<tr class="entry{" changed" if pre != post else ""}"><td>'
                   f'{esc(row.get("entry"))}</td><td class="mono">{int(row.get("table", 0)):#x}'
                   f'[{int(row.get("index", 0))}]</td><td class="mono">{pre:#010x} '
                   f'({esc(_flags(pre))})</td><td class="mono">{post:#010x} '
                   f'({esc(_flags(post))})</td></tr>')
    return ('<table class="entries"><thead><tr><th>entry</th><th>table[index]</th>'
            f'<th>before</th><th>after</th></tr></thead><tbody>{"".join(out)}</tbody></table>')
