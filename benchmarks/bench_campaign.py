"""How fast spec mode finds each known bug, and how short its trace ends up.

Run from the repository root (builds the C implementation of tests/oracle_impl
with cc):

    .venv/bin/python benchmarks/bench_campaign.py [--seconds S] [--seed N]
        [--only NAME ...] [--json FILE]

For every bug switch of the C fixture (kernel family) and every broken model
the model shim serves (``--variant heap:`` in the kernel family, ``dos:``,
``user:``, ``shared:`` in theirs), one spec-mode search with that seed and a
budget of ``--seconds``: the sequences and seconds to the first divergence,
the operations after the set-up as hypothesis' shrinker left them and after
delta debugging (proofs/oracle/minimize.py), and whether the trace is
1-minimal. The issue's target is at most 6 operations for every one.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from proofs.oracle.model_shim import VARIANT_MODULES, variant_patches  # noqa: E402
from proofs.oracle.run import managers_of, operations, search, setup_count  # noqa: E402
from tests.oracle_impls import build_c, python_impl  # noqa: E402

#: The C fixture's bug switches (tests/oracle_impl/memimpl.c).
C_SWITCHES = ("BUG_FRAME_TWICE", "BUG_INDEX_UNSORTED", "BUG_SPLIT_UNDERFLOW", "BUG_ALIGN",
              "BUG_CONTRACT_LIVE", "BUG_STALE_FOOTER")
#: The family each variant module's broken models run in.
FAMILY_OF = {"heap": "kernel", "dos": "dos", "user": "user", "shared": "shared"}
STEPS = {"kernel": 12, "dos": 25, "user": 25, "shared": 25}
LIMIT = 6


def variants() -> list[str]:
    """Every FAMILY:NAME the model shim serves."""
    import importlib
    names = []
    for family, (module, attribute) in VARIANT_MODULES.items():
        for v in getattr(importlib.import_module(module), attribute):
            variant_patches(f"{family}:{v.name}")
            names.append(f"{family}:{v.name}")
    return names


def targets(build_dir: Path) -> list[tuple[str, str, str]]:
    """(name, command, family) of every known bug."""
    out = [(bug, build_c(build_dir, bug), "kernel") for bug in C_SWITCHES]
    for name in variants():
        out.append((name, python_impl("-m", "proofs.oracle.model_shim", "--variant", name),
                    FAMILY_OF[name.partition(":")[0]]))
    return out


def measure(command: str, family: str, seconds: float, seed: int, shrink: float,
            save: Path | None = None) -> dict[str, Any]:
    """One search; with save, the trace hypothesis left and the minimized one go there."""
    start = time.monotonic()
    outcome = search(command, "spec", max_examples=None, time_limit=seconds, seed=seed,
                     steps=STEPS[family], shrink_seconds=shrink, families=(family,),
                     timeout=30.0)
    row: dict[str, Any] = {"family": family, "sequences_run": outcome.examples,
                           "seconds": round(time.monotonic() - start, 1), "found": False}
    if outcome.findings:
        f = outcome.findings[0]
        if save is not None and f.first is not None:
            fixed = setup_count(family, managers_of(outcome))
            save.write_text(json.dumps({
                "family": family, "bucket": f.bucket._asdict(),
                "operations": operations(f.first.exchanges)[fixed:],
                "minimized": operations(f.divergence.exchanges)[fixed:]}, indent=1) + "\n")
        row.update(found=True, bucket=str(f.bucket), first_divergence=round(f.found_after, 1),
                   sequences=f.sequences, hypothesis_ops=f.shrunk_from, ops=f.operations,
                   minimal=f.minimal, replays=f.replays)
    elif outcome.divergence is not None:
        row.update(found=True, bucket="(not reproducible)", ops=None, minimal=False)
    return row


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60.0, help="budget per bug")
    parser.add_argument("--shrink", type=float, default=30.0,
                        help="seconds for each shrinker (hypothesis', then delta debugging)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", nargs="*", help="bug switches or FAMILY:NAME variants")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--save", type=Path, help="a folder: each bug's traces, before and "
                        "after delta debugging (NAME.json)")
    args = parser.parse_args()
    if args.save is not None:
        args.save.mkdir(parents=True, exist_ok=True)
    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as build:
        for name, command, family in targets(Path(build)):
            if args.only and name not in args.only:
                continue
            save = None if args.save is None else args.save / f"{name.replace(':', '.')}.json"
            rows[name] = row = measure(command, family, args.seconds, args.seed, args.shrink,
                                       save)
            print(f"| {name} | {family} | {row.get('sequences', '-')} | "
                  f"{row.get('first_divergence', '-')} | {row.get('hypothesis_ops', '-')} | "
                  f"{row.get('ops', 'not found')} | {'yes' if row.get('minimal') else 'no'} |",
                  flush=True)
    over = [n for n, r in rows.items() if not r["found"] or (r.get("ops") or 99) > LIMIT]
    print(f"{len(rows) - len(over)} of {len(rows)} found with a trace of at most {LIMIT} "
          f"operations; not: {', '.join(over) or 'none'}")
    if args.json is not None:
        args.json.write_text(json.dumps({"seed": args.seed, "seconds": args.seconds,
                                         "rows": rows}, indent=1) + "\n")
    return 0 if not over else 1


if __name__ == "__main__":
    sys.exit(main())
