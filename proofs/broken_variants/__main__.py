"""``python -m proofs.broken_variants``: the table of broken spec variants, each
caught by name or MISSED (exit 1 when any is missed)."""

from __future__ import annotations

import argparse
import fnmatch
import sys
import time
from collections.abc import Sequence

from proofs.broken_variants import VARIANTS, catch, caught


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m proofs.broken_variants",
        description="Inject each broken variant of the spec and show that the check "
                    "catches it by name.",
        epilog="Exit status: 0 every variant caught by name; 1 any missed; 2 usage error.")
    parser.add_argument("--only", action="append", default=[], metavar="PATTERN",
                        help="only the variants whose name or invariant matches PATTERN "
                             "(fnmatch); may be repeated")
    args = parser.parse_args(argv)
    chosen = [v for v in VARIANTS
              if not args.only or any(fnmatch.fnmatchcase(v.name, p)
                                      or fnmatch.fnmatchcase(v.invariant, p) for p in args.only)]
    if not chosen:
        parser.error(f"no variant matches {' or '.join(args.only)}")
    failures = 0
    for variant in chosen:
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
