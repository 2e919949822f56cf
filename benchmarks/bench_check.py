"""Wall time of ``python -m proofs.check``: cold, warm, and after one-line changes.

Run from the repository root (it takes about as long as two full profiles):

    .venv/bin/python benchmarks/bench_check.py [--jobs N] [--only STEP ...] [--json FILE]

The steps run on a copy of spec/, model/ and proofs/ in a temporary directory
(so the edits never touch the working tree), one after another, each a
``python -m proofs.check`` subprocess with its own JSON report:

* ``cold-quick``: the quick profile with an empty cache;
* ``cold-full``: the full profile with an empty cache (its slowest twenty
  obligations are listed);
* ``warm-full``: the full profile again, every passing verdict in the cache;
* ``change-leaf``: one line of spec/dos_memory.py restated (DOS-1's ``first <= m``
  as ``m >= first``: the same claim in another text), then the full profile:
  only the DOS obligations import that module;
* ``change-root``: one line of spec/page_manager.py restated (FRM-1's
  ``nframes <= FRAME_LIMIT`` as ``FRAME_LIMIT >= nframes``), then the full
  profile: every inductive obligation imports it, and every query whose
  premises hold all of Inv mentions it.

For each it prints the wall time (the report's), how many verdicts came whole
from the cache, how many obligations asked z3 anything (or ran: the machines,
which are never cached, are counted apart with their seconds), and the load average
before and after (other processes on a small machine stretch wall time). This
is a measurement, not a test: an obligation that does not pass is listed
(and the figures kept), and the script exits 1 if any did.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EDITS = {
    "change-leaf": ("spec/dos_memory.py", "s.first <= m, nxt(s, m) <= conv_top(s)",
                    "m >= s.first, nxt(s, m) <= conv_top(s)"),
    "change-root": ("spec/page_manager.py", "z3.ULE(s.nframes, FRAME_LIMIT)",
                    "z3.UGE(FRAME_LIMIT, s.nframes)"),
}
#: The verdict kinds that pass (proofs.obligation.Kind.passed), by name.
PASSED = {"PROVED", "PROVED_BOUNDED", "CONFIRMED", "NO_COUNTEREXAMPLE"}
STEPS = ("cold-quick", "cold-full", "warm-full", "change-leaf", "change-root")


def check(tree: Path, profile: str, cache: Path, jobs: int, name: str) -> dict[str, Any]:
    report = tree / f"{name}.json"
    command = [sys.executable, "-m", "proofs.check", "--profile", profile, "--jobs", str(jobs),
               "--timeout", "3600", "--cache-dir", str(cache), "--json", str(report)]
    load = os.getloadavg()[0]
    start = time.monotonic()
    done = subprocess.run(command, cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)},
                          capture_output=True, text=True)
    elapsed = time.monotonic() - start
    if not report.exists():
        raise SystemExit(f"{name}: proofs.check exited {done.returncode} without a report\n"
                         f"{done.stdout[-3000:]}{done.stderr[-3000:]}")
    data = json.loads(report.read_text())
    obligations = data["obligations"]
    failed = [o["id"] for o in obligations if o["kind"] not in PASSED]
    whole = [o for o in obligations if o["cache"].startswith("the verdict from the cache")]
    asked = [o for o in obligations if not o["cache"].startswith("the verdict from the cache")
             and not o["cache"].startswith("all ")]
    machines = [o for o in obligations if o["invariant"] == "refinement"]
    decided = [o for o in asked if o["invariant"] != "refinement"]
    return {"step": name, "profile": profile, "exit": done.returncode, "failed": failed,
            "machines": len(machines),
            "machine_seconds": round(sum(o["seconds"] for o in machines), 1),
            "slowest_machine": round(max((o["seconds"] for o in machines), default=0.0), 1),
            "decided_seconds": round(sum(o["seconds"] for o in decided), 1),
            "slowest_decided": round(max((o["seconds"] for o in decided), default=0.0), 1),
            "wall": data["totals"]["wall_seconds"],
            "elapsed": round(elapsed, 1), "obligations": len(obligations),
            "whole_from_cache": len(whole), "asked_z3": len(asked),
            "load_before": round(load, 2), "load_after": round(os.getloadavg()[0], 2),
            "slowest": sorted(((o["seconds"], o["id"]) for o in obligations),
                              reverse=True)[:20]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--only", action="append", choices=STEPS,
                        help="run only these steps (repeatable; default: all, in order)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE")
    parser.add_argument("--reports", metavar="DIR",
                        help="keep each step's JSON report as DIR/STEP.json (for "
                             "python -m proofs.inductive.hints and proofs.runner.shard)")
    args = parser.parse_args()
    steps = [step for step in STEPS if not args.only or step in args.only]
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-check-") as temporary:
        tree = Path(temporary)
        for package in ("spec", "model", "proofs"):
            shutil.copytree(ROOT / package, tree / package,
                            ignore=shutil.ignore_patterns("__pycache__"))
        quick_cache, full_cache = tree / "cache-quick", tree / "cache-full"
        for step in steps:
            if step in EDITS:
                path, old, new = EDITS[step]
                text = (tree / path).read_text()
                if text.count(old) != 1:
                    raise SystemExit(f"{step}: {old!r} is not one line of {path}")
                (tree / path).write_text(text.replace(old, new))
            profile = "quick" if step == "cold-quick" else "full"
            cache = quick_cache if profile == "quick" else full_cache
            result = check(tree, profile, cache, args.jobs, step)
            results.append(result)
            if args.reports:
                Path(args.reports).mkdir(parents=True, exist_ok=True)
                shutil.copy(tree / f"{step}.json", Path(args.reports) / f"{step}.json")
            if result["failed"]:
                print(f"{step}: {len(result['failed'])} obligations did not pass: "
                      f"{', '.join(result['failed'])}", flush=True)
            print(f"{step:12} {result['wall']:8.1f} s  {result['obligations']} obligations, "
                  f"{result['whole_from_cache']} whole from the cache, "
                  f"{result['asked_z3']} asked z3 or ran  (load {result['load_before']} -> "
                  f"{result['load_after']})\n{'':12} the {result['machines']} machines (never "
                  f"cached) {result['machine_seconds']} s, the slowest {result['slowest_machine']}"
                  f" s; the other obligations that asked z3 {result['decided_seconds']} s, the "
                  f"slowest {result['slowest_decided']} s", flush=True)
    for result in results:
        if result["step"] == "cold-full":
            print("\nslowest twenty of the cold full profile:")
            for seconds, ident in result["slowest"]:
                print(f"  {seconds:8.1f} s  {ident}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 1 if any(result["failed"] for result in results) else 0


if __name__ == "__main__":
    sys.exit(main())
