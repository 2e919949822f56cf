"""Shared rules aimed at the cuts where implementations split a view (issue 15:
munmap over part of a view), mixed into the shared family's machine beside the
shared machine's own rules.

The machine's munmap_part cuts whatever view a sequence made; a view with a
middle page (three pages or more) is a matter of luck there. This composite
maps a fresh three-page view and cuts it at once, at each boundary a split
decides at (mm/mmap.c __split_vma: the piece left before keeps the vma, the
one after gets a vm_pgoff of its own; ipc/shm.c shm_open counts the new vma):

- its front page (one piece left, based one page on, its first page 1);
- its last page (one piece left, its base kept);
- its middle page (two pieces, a block's counted twice);

by munmap, or by mmap(MAP_FIXED) of a private page over it (the same cut,
then a mapping of the user layer's), of a block's view (12288 bytes) or of a
file view (the first node's three pages) in the current process.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import precondition, rule

from proofs.machines.shared_memory_harness import MAX_BLOCKS, MAX_VIEWS
from spec.abi import PAGE_READWRITE

#: The page cut of a three-page view, by name.
CUTS = {"front": 0, "middle": 1, "last": 2}


class SharedBoundaryRules:
    """Mixed into the shared family's machine (``self.h`` is its SharedFront)."""

    h: Any

    @precondition(lambda self: len(self.h.views) < MAX_VIEWS
                  and len(self.h.sub.shared_memory.blocks) < MAX_BLOCKS
                  and bool(self.h.sub.syscalls.processes))
    @rule(where=st.sampled_from(tuple(CUTS)), file=st.booleans(), fixed=st.booleans())
    def cut_a_fresh_view(self, where: str, file: bool, fixed: bool) -> None:
        """Map a three-page view in the current process, then cut one page of it."""
        pid = self.h.current()
        if not pid:
            return
        before = set(self.h.views)
        if file:
            self.h.map_file(0, 0, 0, PAGE_READWRITE)
        else:
            shm_id = self.h.create(12288, PAGE_READWRITE)
            if not shm_id:
                return
            self.h.map_block(self.h.sub.syscalls.processes[pid], shm_id, 0, None)
        made = [key for key in self.h.views if key not in before and key[0] == pid]
        if made:
            self.h.munmap(pid, made[0][1], (CUTS[where], 1), fixed=fixed)
