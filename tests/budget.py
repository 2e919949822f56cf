"""Test budgets: the default run (CI, the README's command) and the long one.

``MEMSPEC_SLOW=1`` runs every exhaustive sweep whole and every property test at
its full number of examples; without it a test runs the share stated where it
asks (:func:`examples`, :func:`every`), which keeps CI under its 10 minutes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TypeVar

SLOW = os.environ.get("MEMSPEC_SLOW") == "1"
T = TypeVar("T")


def examples(default: int, slow: int) -> int:
    """Hypothesis' max_examples: ``slow`` with MEMSPEC_SLOW=1, else ``default``."""
    return slow if SLOW else default


def every(items: Sequence[T], step: int) -> list[T]:
    """All of items with MEMSPEC_SLOW=1, else every ``step``-th (the first included)."""
    return list(items) if SLOW else list(items[::step])
