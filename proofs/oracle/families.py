"""The families of sequences the oracle runs, and the kernel's.

A family (:class:`~proofs.oracle.managers.Family`) is a world of its own: the
calls every sequence starts with, the rules that generate the rest, what
strict mode compares after each operation and the judge of spec mode. The
oracle runs every family whose managers the implementation declares, in turn
(:func:`runnable`); a trace names its family, so a replay starts the same way.

- **kernel**: the page manager on 48 frames, the kernel directory and the
  kernel heap (PROTOCOL.md's set-up), judged by the paging and heap specs.
"""

from __future__ import annotations

from typing import Any

from proofs.oracle.dos_family import DOS
from proofs.oracle.machine import kernel_machine
from proofs.oracle.managers import Family
from proofs.oracle.observed import KernelJudge
from proofs.oracle.session import last_observed
from proofs.oracle.shared_family import SHARED
from proofs.oracle.user_family import USER
from proofs.oracle.world import setup_calls


def kernel_map(exchanges: list[Any]) -> list[str]:
    """The heap's blocks and the used frames as last reported."""
    out = []
    walk = last_observed(exchanges, "HeapWalk")
    if walk is not None and walk.get("created"):
        out.append(f"heap [{walk['start']:#x}, {walk['end']:#x}) max {walk['max']:#x}, "
                   f"data from {walk['data_start']:#x}:")
        for b in walk["blocks"]:
            ok = "" if b["magic"] == b["footer_magic"] == 0x123890AB and \
                b["footer_header"] == b["header"] else \
                f"  footer {{magic {b['footer_magic']:#x}, header {b['footer_header']:#x}}}"
            out.append(f"  {b['header']:#x}..{b['header'] + b['size']:#x}  "
                       f"{'hole ' if b['hole'] else 'block'} {b['size']:>6}{ok}")
    holes = last_observed(exchanges, "HoleIndex")
    if holes is not None:
        out.append("hole index: " + ", ".join(f"{size}@{header:#x}"
                                              for size, header in holes["holes"]))
    bitmap = last_observed(exchanges, "FrameBitmap")
    if bitmap is not None:
        out.append("used frames: " + ", ".join(
            f"{first:#x}" if count == 1 else f"{first:#x}-{first + count - 1:#x}"
            for first, count in bitmap["used"]))
    return out


KERNEL = Family(
    name="kernel", managers=("PageManager",), setup=setup_calls,
    state_observations=("FrameCounts", "FrameBitmap", "PageTables", "HeapWalk", "HoleIndex"),
    spec_observations=("FrameCounts", "FrameBitmap"), machine=kernel_machine,
    judge=KernelJudge, memory_map=kernel_map)

#: Every family, in the order the oracle runs them.
FAMILIES: tuple[Family, ...] = (KERNEL, DOS, USER, SHARED)


def runnable(managers: tuple[str, ...]) -> list[Family]:
    """The families whose managers are all declared."""
    return [f for f in FAMILIES if set(f.managers) <= set(managers)]


def family_named(name: str) -> Family:
    """The family of a trace (traces without one are the kernel's)."""
    for family in FAMILIES:
        if family.name == name:
            return family
    raise ValueError(f"no family {name!r}; the oracle knows "
                     f"{', '.join(f.name for f in FAMILIES)}")
