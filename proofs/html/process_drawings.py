"""DOS memory, processes and shared memory drawn from their observations
(proofs/oracle/PROTOCOL.md): the MCB chains (McbChain), a process's address
space as the regions VirtualQuery reports (Processes), shared blocks and the
views mapping them (SharedMemory), mapped files and their views (MappedFiles).
"""

from __future__ import annotations

from typing import Any

from proofs.html.page import attributes, esc, hexa
from proofs.html.svg import spans, svg
from spec.abi import (
    CONVENTIONAL_TOP,
    MCB_Z,
    MEM_COMMIT,
    MEM_FREE,
    MEM_RESERVE,
    OWNER_DOS,
    OWNER_FREE,
    PAGE_SHIFT,
    UMB_HEAD,
)

WIDTH = 900
#: MCBs, regions, blocks and views drawn at most (a damaged chain may be long).
LIMIT = 128
STATES = {MEM_COMMIT: ("commit", "#8fb3e0"), MEM_RESERVE: ("reserve", "#f3e2a9"),
          MEM_FREE: ("free", "#eeeeee")}


def _owner(owner: int) -> str:
    return "free" if owner == OWNER_FREE else "DOS" if owner == OWNER_DOS else f"PSP {owner:04X}h"


def _chain(mcbs: list[list[int]], y: int, label: str) -> str:
    mcbs = mcbs[:LIMIT]
    boxes = spans([1 + int(size) for _, _, _, size in mcbs], WIDTH - 110, 72.0)
    parts = [f'<text x="0" y="{y + 22}">{esc(label)}</text>']
    for (segment, kind, owner, size), (x, w) in zip(mcbs, boxes, strict=True):
        x += 105
        state = "free" if owner == OWNER_FREE else "owned"
        bad = kind not in (0x4D, MCB_Z)
        fill = "#d9ead3" if state == "free" else "#c9daf8"
        tip = (f"MCB at {segment:04X}h, type {chr(kind) if 32 <= kind < 127 else hex(kind)}, "
               f"owner {_owner(owner)}, {size} paragraphs ({size * 16} bytes)")
        parts.append(
            f'<g class="mcb {state}{" damaged" if bad else ""}"'
            f'{attributes(data_segment=f"{segment:04X}")}><title>{esc(tip)}</title>'
            f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="34" fill="{fill}" '
            f'stroke="{"#b3261e" if bad else "#445"}"/><rect x="{x:.1f}" y="{y}" width="3" '
            f'height="34" fill="#334"/>'
            + (f'<text x="{x + 5:.1f}" y="{y + 14}">{segment:04X} '
               f'{"Z" if kind == MCB_Z else "M"}</text><text x="{x + 5:.1f}" y="{y + 28}">'
               f'{esc(_owner(owner))}</text>' if w > 62 else "") + "</g>")
    return "".join(parts)


def mcb_chain(chain: dict[str, Any]) -> str:
    """The conventional chain from the first MCB up to 9FFFh (first line), and
    the UMB chain (second line), each MCB a box as long as its block."""
    low, high = list(chain.get("low", [])), list(chain.get("high", []))
    body = _chain(low, 4, f"{int(chain.get('first_segment', 0)):04X}h-{UMB_HEAD:04X}h")
    height = 44
    if high:
        body += _chain(high, 48, f"{int(chain.get('umb_start', 0)):04X}h-"
                                 f"{int(chain.get('umb_end', 0)):04X}h")
        height = 88
    note = (f"conventional memory to {CONVENTIONAL_TOP:04X}h, UMBs "
            f"{'linked' if chain.get('linked') else 'not linked'}, strategy "
            f"{chain.get('strategy', '?')}; {len(low)} + {len(high)} MCBs")
    return (f'<figure class="drawing mcbs">{svg(WIDTH, height, body)}'
            f'<figcaption>{esc(note)}</figcaption></figure>')


def regions(pages: list[list[int]]) -> list[tuple[int, int, int, int, int]]:
    """The VirtualQuery regions of a process's page runs ([first_vpn, count,
    state, protect, base_vpn, frame]): adjacent pages with the same state,
    protection and allocation base are one region, as MSDN's VirtualQuery
    says. (first_vpn, pages, state, protect, base_vpn), ascending."""
    out: list[list[int]] = []
    for first, count, state, protect, base, _frame in sorted(pages)[:4096]:
        last = out[-1] if out else None
        if last and last[0] + last[1] == first and last[2:] == [state, protect, base]:
            last[1] += count
        else:
            out.append([first, count, state, protect, base])
    return [(r[0], r[1], r[2], r[3], r[4]) for r in out]


def processes(observed: dict[str, Any]) -> str:
    """Each process's address space: its VirtualQuery regions along a line
    (gaps between them free), its heap and break."""
    figures = []
    for process in list(observed.get("processes", []))[:16]:
        runs = regions(process.get("pages", []))[:LIMIT]
        pieces: list[tuple[int, int, int, int, int]] = []
        cursor = runs[0][0] if runs else 0
        for run in runs:
            if run[0] > cursor:
                pieces.append((cursor, run[0] - cursor, MEM_FREE, 0, 0))
            pieces.append(run)
            cursor = run[0] + run[1]
        boxes = spans([count for _, count, *_ in pieces], WIDTH - 10, 62.0)
        parts = []
        for (first, count, state, protect, base), (x, w) in zip(pieces, boxes, strict=True):
            name, fill = STATES.get(state, (hex(state), "#ddd"))
            tip = (f"{hex(first << PAGE_SHIFT)} +{hex(count << PAGE_SHIFT)}: {name}, protect "
                   f"{hex(protect)}, allocation base {hex(base << PAGE_SHIFT)}")
            parts.append(f'<g class="region {name}"><title>{esc(tip)}</title><rect '
                         f'x="{x + 5:.1f}" y="4" width="{w:.1f}" height="30" fill="{fill}" '
                         f'stroke="#445"/>' + (f'<text x="{x + 8:.1f}" y="16">{esc(name)} '
                                              f'{count}p</text><text class="mono" '
                                              f'x="{x + 8:.1f}" y="29">{first << PAGE_SHIFT:x}'
                                              f'</text>' if w > 56 else "") + "</g>")
        caption = (f"process {process.get('pid')}: {len(runs)} regions; heap "
                   f"{hexa(process.get('heap_start'))}, break {hexa(process.get('brk'))}, "
                   f"{len(process.get('allocations', []))} allocations")
        figures.append(f'<figure class="drawing process">{svg(WIDTH, 38, "".join(parts))}'
                       f'<figcaption>{esc(caption)}</figcaption>'
                       f'</figure>')
    current = observed.get("current")
    return f"<p>current process: {esc(current)}</p>" + "".join(figures)


def _links(left: list[tuple[str, str, str]], right: list[tuple[str, str, str]],
           edges: list[tuple[str, str]], kind: str) -> str:
    """Boxes (key, label, tooltip) on the left and right, and edges between keys."""
    row = 26
    ys = {key: (n * row, "left") for n, (key, _, _) in enumerate(left)}
    ys.update({key: (n * row, "right") for n, (key, _, _) in enumerate(right)})
    parts = []
    for key, target in edges:
        if key in ys and target in ys:
            parts.append(f'<path class="edge" d="M300,{ys[key][0] + 11} C400,{ys[key][0] + 11}'
                         f' 420,{ys[target][0] + 11} 520,{ys[target][0] + 11}" stroke="#557" '
                         f'fill="none"/>')
    for x, side, css in ((0, left, "view"), (520, right, kind)):
        for n, (_key, label, tip) in enumerate(side):
            parts.append(f'<g class="{css}"><title>{esc(tip)}</title><rect x="{x}" '
                         f'y="{n * row}" width="300" height="22" fill="#eef2f8" '
                         f'stroke="#445"/><text x="{x + 5}" y="{n * row + 15}">{esc(label)}'
                         f'</text></g>')
    height = max(len(left), len(right), 1) * row
    return svg(830, height, "".join(parts))


def shared_memory(observed: dict[str, Any]) -> str:
    """Shared blocks (right) and the views that map them (left)."""
    blocks = list(observed.get("blocks", []))[:LIMIT]
    views = list(observed.get("views", []))[:LIMIT]
    right = [(f"b{b.get('id')}", f"block {b.get('id')}: {b.get('size')} bytes, "
              f"{len(b.get('frames', []))} frames, refs {b.get('refcount')}"
              + (" (destroyed)" if b.get("destroyed") else ""),
              f"frames {b.get('frames')}, permissions {b.get('permissions')}") for b in blocks]
    left = [(f"v{n}", f"pid {v.get('pid')} at {hexa(v.get('base'))}",
             f"protect {v.get('protect')}") for n, v in enumerate(views)]
    edges = [(f"v{n}", f"b{v.get('shm_id')}") for n, v in enumerate(views)]
    return (f'<figure class="drawing shared">{_links(left, right, edges, "shm")}'
            f'<figcaption>{len(views)} views of {len(blocks)} shared blocks</figcaption>'
            f'</figure>')


def mapped_files(observed: dict[str, Any]) -> str:
    """Files (right) and the views that map them (left)."""
    files = list(observed.get("files", []))[:LIMIT]
    views = list(observed.get("views", []))[:LIMIT]
    right = [(f"f{f.get('id')}", f"file {f.get('id')}: {f.get('size')} bytes"
              + (" writable" if f.get("writable") else ""), "") for f in files]
    left = [(f"v{n}", f"pid {v.get('pid')} at {hexa(v.get('base'))}: pages "
             f"{v.get('first')}+{v.get('count')}", f"protect {v.get('protect')}")
            for n, v in enumerate(views)]
    edges = [(f"v{n}", f"f{v.get('file')}") for n, v in enumerate(views)]
    cached = len(observed.get("cache", []))
    return (f'<figure class="drawing files">{_links(left, right, edges, "file")}'
            f'<figcaption>{len(views)} views of {len(files)} files; {cached} cached pages'
            f'</figcaption></figure>')
