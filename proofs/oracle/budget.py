"""A chunk's bound on sequences that end at a bug already found (docs/oracle.md,
"Campaigns").

In a campaign a sequence that hits a bug already found ends there and is
discarded (hypothesis' ``reject``), so that hypothesis keeps generating. It
does not count such sequences towards a chunk's examples: by its own
thresholds (``INVALID_THRESHOLD_BASE`` + ``INVALID_PER_VALID`` per valid
example, 458 + 100 in hypothesis 6.170) it would try hundreds, each a process
and a judged sequence, before the time budget is looked at again.
:func:`rejections_limit` lowers them for the duration of a chunk, as
:func:`proofs.machines.runner.shrink_limit` does the shrinking time (both are
module constants of hypothesis' engine). The bound must not depend on the
clock or on a count kept outside hypothesis: a sequence that ran once and is
refused the next time makes hypothesis raise FlakyStrategyDefinition.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from hypothesis.internal.conjecture import engine


@contextlib.contextmanager
def rejections_limit(count: int) -> Iterator[None]:
    """At most about count discarded sequences in a hypothesis run (then it
    ends, with Unsatisfiable when no sequence was kept)."""
    saved = engine.INVALID_THRESHOLD_BASE, engine.INVALID_PER_VALID
    engine.INVALID_THRESHOLD_BASE, engine.INVALID_PER_VALID = count, 1
    try:
        yield
    finally:
        engine.INVALID_THRESHOLD_BASE, engine.INVALID_PER_VALID = saved
