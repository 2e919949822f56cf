"""Delta debugging shrinks every known bug's trace to at most 6 operations
(issue 16, "Campaigns"; docs/oracle.md, "Minimal traces").

``tests/oracle_traces/unshrunk/`` holds, for every bug switch of the C fixture
and every broken model ``model_shim --variant`` serves that a search found,
the trace hypothesis' shrinker left (``operations``), saved by
``benchmarks/bench_campaign.py --save``. Each is replayed against its
implementation and delta-debugged (proofs/oracle/minimize.py): the result
must be in the same bucket, 1-minimal, and at most 6 operations after the
set-up. The C switches run here; a broken model's replay costs a Python start
and, in the user and shared families, seconds of z3 over a whole process
state, so their sweep runs with ``MEMSPEC_SLOW=1`` (and in the benchmark, which
also searches). A variant the benchmark's search did not find within its
budget has no stored trace (docs/oracle.md, Figures, lists them).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from proofs.oracle.buckets import Bucket
from proofs.oracle.families import family_named
from proofs.oracle.minimize import minimize
from proofs.oracle.run import Judges, session_factory
from proofs.oracle.session import Coverage
from tests.budget import SLOW
from tests.oracle_impls import build_c, python_impl

TRACES = Path(__file__).resolve().parent / "oracle_traces" / "unshrunk"
LIMIT = 6
CASES = sorted(p.stem for p in TRACES.glob("*.json"))


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("oracle_minimal")


def command(name: str, build_dir: Path) -> str:
    if name.startswith("BUG_"):
        return build_c(build_dir, name)
    return python_impl("-m", "proofs.oracle.model_shim", "--variant", name.replace(".", ":", 1))


def test_every_known_bug_has_a_stored_trace() -> None:
    """Every C switch and every variant the benchmark found is here."""
    assert {n for n in CASES if n.startswith("BUG_")} >= {
        "BUG_FRAME_TWICE", "BUG_INDEX_UNSORTED", "BUG_SPLIT_UNDERFLOW", "BUG_ALIGN",
        "BUG_CONTRACT_LIVE", "BUG_STALE_FOOTER", "BUG_INDEX_FULL", "BUG_ALIGN_GAP",
        "BUG_PAST_MAX", "BUG_WRAP", "BUG_EXACT_FIT", "BUG_BOTH_NEIGHBOURS"}


@pytest.mark.parametrize("name", CASES)
def test_delta_debugging_reaches_six_operations(build_dir: Path, name: str) -> None:
    saved: dict[str, Any] = json.loads((TRACES / f"{name}.json").read_text())
    family = saved["family"]
    if not name.startswith("BUG_") and not SLOW:
        pytest.skip("a broken model's replays cost a Python start and z3 each: "
                    "MEMSPEC_SLOW=1 runs it")
    new = session_factory(command(name, build_dir), "spec", 30.0, Coverage(), Judges(),
                          family_named(family), config=saved.get("config"))
    bucket = Bucket(**saved["bucket"])
    shrunk = minimize(new, saved["operations"], bucket, family, 600.0)
    assert shrunk is not None, "the stored trace replays to its bucket"
    assert shrunk.minimal
    assert len(shrunk.steps) <= LIMIT, (name, len(saved["operations"]), shrunk.steps)
