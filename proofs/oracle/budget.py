"""The search's budget as the rule machines see it (docs/oracle.md, "Campaigns").

In a campaign a sequence that hits a bug already found ends there and is
discarded (hypothesis' ``reject``), so hypothesis keeps generating; it does
not count such sequences towards a chunk's examples and would try hundreds.
:class:`Budget` bounds a chunk: no new sequence is started past the time
budget or past ``cap`` sequences in the chunk, unless a new divergence was
raised in it (hypothesis is then shrinking it, with its own time limit).
"""

from __future__ import annotations

import time
from typing import Any


class Budget:
    """When no new sequence may start in the current chunk."""

    def __init__(self, deadline: float, coverage: Any) -> None:
        self.deadline, self.coverage = deadline, coverage
        self.cap = self.started = 0
        self._last: object = None

    def open(self, cap: int) -> None:
        """A new chunk of at most cap sequences."""
        self.cap, self.started, self._last = cap, 0, self.coverage.last_failure

    def spent(self) -> bool:
        if self.coverage.last_failure is not self._last:
            return False  # hypothesis is shrinking a new divergence
        self.started += 1
        return self.started > self.cap or time.monotonic() > self.deadline
