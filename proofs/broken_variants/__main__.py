"""``python -m proofs.broken_variants``: the table of broken spec variants, each
caught by name or MISSED (exit 1 when any is missed)."""

from __future__ import annotations

import sys
import time

from proofs.broken_variants import VARIANTS, catch, caught


def main() -> int:
    failures = 0
    for variant in VARIANTS:
        start = time.perf_counter()
        verdict = catch(variant)
        ok = caught(variant, verdict)
        failures += not ok
        print(f"{variant.invariant:7} {variant.name:30} "
              f"{'caught' if ok else 'MISSED: ' + verdict.summary:40} "
              f"{time.perf_counter() - start:6.2f}s  {variant.description}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
