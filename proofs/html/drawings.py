"""Which drawing shows which observation: the state at one step, as the
observations taken there say it (the names of proofs/oracle/PROTOCOL.md).

The observations come from the implementation, which may send anything the
schema lets through, or (in a protocol divergence) what it does not: a
drawing that cannot read its observation shows the JSON instead, with why,
and never stops the report from being written (:func:`drawn`)."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

from proofs.html import kernel_drawings, process_drawings
from proofs.html.page import esc

#: Observations shown as a table of their JSON (no drawing of their own).
PLAIN = ("FrameCounts", "XmsHandles", "EmsMappings", "VirtualQuery")


def drawn(draw: Callable[[], str], value: Any) -> str:
    """draw(), or the value as JSON with why it could not be drawn."""
    try:
        return draw()
    except (TypeError, ValueError, KeyError, AttributeError, IndexError, OverflowError) as why:
        return (f'<p class="diff">could not be drawn ({esc(type(why).__name__)}: '
                f'{esc(str(why)[:200])})</p><pre class="plain">'
                f'{esc(json.dumps(value, default=str)[:4000])}</pre>')


def parts(observed: dict[str, Any], before: dict[str, Any] | None = None,
          focus: set[int] | frozenset[int] = frozenset()) -> list[tuple[str, str, str]]:
    """(key, title, drawing) for every drawing the observations allow; ``before``
    (the previous state's observations) marks what changed where a drawing can,
    ``focus`` (the step's arguments) the heap block the step names."""
    out = []
    walk = observed.get("HeapWalk")
    if isinstance(walk, dict):
        holes = observed.get("HoleIndex")
        out.append(("heap", "kernel heap (HeapWalk, HoleIndex)", drawn(
            lambda: kernel_drawings.heap(walk, holes.get("holes") if isinstance(holes, dict)
                                         else None, focus), walk)))
    bitmap = observed.get("FrameBitmap")
    if isinstance(bitmap, dict):
        counts = observed.get("FrameCounts")
        was = (before or {}).get("FrameBitmap")
        out.append(("frames", "frame bitmap (FrameBitmap)", drawn(
            lambda: kernel_drawings.frame_bitmap(bitmap, counts if isinstance(counts, dict)
                                                 else None,
                                                 was if isinstance(was, dict) else None),
            bitmap)))
    by_name = {"PageTables": ("page tables (PageTables)", kernel_drawings.page_tables),
             "McbChain": ("DOS MCB chains (McbChain)", process_drawings.mcb_chain),
             "Processes": ("processes (Processes: VirtualQuery regions)",
                           process_drawings.processes),
             "SharedMemory": ("shared blocks and views (SharedMemory)",
                              process_drawings.shared_memory),
             "MappedFiles": ("mapped files and views (MappedFiles)",
                             process_drawings.mapped_files)}
    for name, (title, draw) in by_name.items():
        value = observed.get(name)
        if isinstance(value, dict):
            out.append((name, title, drawn(functools.partial(draw, value), value)))
    for name in PLAIN:
        value = observed.get(name)
        if value is not None:
            text = json.dumps(value, default=str)[:4000]
            out.append((name, name, f'<pre class="plain">{esc(text)}</pre>'))
    return out
