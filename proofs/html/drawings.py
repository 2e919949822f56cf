"""Which drawing shows which observation: the state at one step, as the
observations taken there say it (the names of proofs/oracle/PROTOCOL.md)."""

from __future__ import annotations

import json
from typing import Any

from proofs.html import kernel_drawings, process_drawings
from proofs.html.page import esc

#: Observations shown as a table of their JSON (no drawing of their own).
PLAIN = ("FrameCounts", "XmsHandles", "EmsMappings", "VirtualQuery")


def parts(observed: dict[str, Any], before: dict[str, Any] | None = None,
          focus: set[int] | frozenset[int] = frozenset()) -> list[tuple[str, str, str]]:
    """(key, title, drawing) for every drawing the observations allow; ``before``
    (the previous state's observations) marks what changed where a drawing can,
    ``focus`` (the step's arguments) the heap block the step names."""
    out = []
    walk = observed.get("HeapWalk")
    if isinstance(walk, dict):
        holes = observed.get("HoleIndex")
        out.append(("heap", "kernel heap (HeapWalk, HoleIndex)", kernel_drawings.heap(
            walk, holes.get("holes") if isinstance(holes, dict) else None, focus)))
    bitmap = observed.get("FrameBitmap")
    if isinstance(bitmap, dict):
        counts = observed.get("FrameCounts")
        was = (before or {}).get("FrameBitmap")
        out.append(("frames", "frame bitmap (FrameBitmap)", kernel_drawings.frame_bitmap(
            bitmap, counts if isinstance(counts, dict) else None,
            was if isinstance(was, dict) else None)))
    drawn = {"PageTables": ("page tables (PageTables)", kernel_drawings.page_tables),
             "McbChain": ("DOS MCB chains (McbChain)", process_drawings.mcb_chain),
             "Processes": ("processes (Processes: VirtualQuery regions)",
                           process_drawings.processes),
             "SharedMemory": ("shared blocks and views (SharedMemory)",
                              process_drawings.shared_memory),
             "MappedFiles": ("mapped files and views (MappedFiles)",
                             process_drawings.mapped_files)}
    for name, (title, draw) in drawn.items():
        value = observed.get(name)
        if isinstance(value, dict):
            out.append((name, title, draw(value)))
    for name in PLAIN:
        value = observed.get(name)
        if value is not None:
            out.append((name, name, f'<pre class="plain">{esc(json.dumps(value)[:4000])}</pre>'))
    return out
