"""``memspec``: the console script pyproject.toml installs.

    memspec check [OPTIONS]          the proof obligations (python -m proofs.check)
    memspec oracle --impl CMD [...]  judge an implementation (python -m proofs.oracle)
    memspec replay TRACE --impl CMD  replay a saved trace (python -m proofs.oracle replay)
    memspec report FILE.json --html OUT  the HTML report of a saved JSON report
    memspec --version

Each command takes the options, and returns the exit status, of the module it
names; ``memspec COMMAND --help`` lists them.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from proofs.version import version

USAGE = __doc__.split("\n\n")[1] if __doc__ else ""
EXIT_USAGE = 2


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(f"usage:\n{USAGE}", file=sys.stdout if args else sys.stderr)
        return 0 if args else EXIT_USAGE
    command, rest = args[0], args[1:]
    if command == "--version":
        print(f"memspec {version()}")
        return 0
    try:
        if command == "check":
            from proofs import check
            return check.main(rest, prog="memspec check")
        if command == "report":
            from proofs import report
            return report.main(rest, prog="memspec report")
        if command in ("oracle", "replay"):
            from proofs.oracle import __main__ as oracle
            replaying = command == "replay" and rest[:1] not in (["--help"], ["-h"])
            return oracle.main(["replay", *rest] if replaying else rest,
                               prog=f"memspec {command}")
    except SystemExit as stop:  # argparse's --help, --version and usage errors
        return stop.code if isinstance(stop.code, int) else int(stop.code is not None)
    print(f"memspec: unknown command {command!r}\nusage:\n{USAGE}", file=sys.stderr)
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
