"""The families of sequences the oracle runs.

A family (:class:`~proofs.oracle.managers.Family`) is a world of its own: the
calls every sequence starts with, the rules that generate the rest, what
strict mode compares after each operation and the judge of spec mode. The
oracle runs every family whose managers the implementation declares, in turn
(:func:`runnable`); a trace names its family, so a replay starts the same way.

- **kernel** (:mod:`.kernel`): the page manager, the kernel directory and the
  kernel heap, judged by the paging and heap specs;
- **dos** (:mod:`.dos`): conventional memory, UMBs, XMS and EMS;
- **user** (:mod:`.user`): processes and their system calls;
- **shared** (:mod:`.shared`): shared memory blocks and file views in processes.
"""

from __future__ import annotations

from proofs.oracle.families.dos import DOS
from proofs.oracle.families.kernel import KERNEL
from proofs.oracle.families.shared import SHARED
from proofs.oracle.families.user import USER
from proofs.oracle.managers import Family

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
