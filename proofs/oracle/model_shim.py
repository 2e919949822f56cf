"""The model as a protocol implementation: ``python -m proofs.oracle.model_shim``.

Speaks PROTOCOL.md on stdin/stdout with a fresh :class:`ModelWorld`: the
reference an implementer's shim is compared with line by line, and the
implementation the oracle's own tests judge first (it must pass both modes).
With ``--validate`` it checks every line it receives and sends against the
protocol's schema and stops with status 65 at the first that does not
validate (the oracle then reports a crash): the test that the oracle only
sends valid messages.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from proofs.oracle.protocol import ProtocolError, validate
from proofs.oracle.world import MANAGERS, OBSERVATIONS, PROTOCOL_VERSION, ModelWorld


def main(argv: list[str] | None = None) -> int:
    checked = "--validate" in (sys.argv[1:] if argv is None else argv)
    world = ModelWorld()
    out = sys.stdout

    def send(message: dict[str, Any]) -> None:
        out.write(json.dumps(message, separators=(",", ":")) + "\n")
        out.flush()

    send({"protocol": PROTOCOL_VERSION, "implementation": "memspec model",
          "managers": list(MANAGERS), "observations": list(OBSERVATIONS)})
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        reply = world.handle(request)
        if checked:
            try:
                validate(request)
                validate(reply)
            except ProtocolError as exc:
                print(exc, file=sys.stderr)
                return 65
        send(reply)
    return 0

if __name__ == "__main__":
    sys.exit(main())
