"""The model as a protocol implementation: ``python -m proofs.oracle.model_shim``.

Speaks PROTOCOL.md on stdin/stdout with a fresh :class:`ModelWorld`: the
reference an implementer's shim is compared with line by line, and the
implementation the oracle's own tests judge first (it must pass both modes).
With ``--validate`` it checks every line it receives and sends against the
protocol's schema and stops with status 65 at the first that does not
validate (the oracle then reports a crash): the test that the oracle only
sends valid messages. With ``--variant FAMILY:NAME`` it serves a broken model,
one of the model machines' variants (``heap:`` HEAP_MODEL_VARIANTS, ``dos:``
DOS_MODEL_VARIANTS, ``user:`` USER_MODEL_VARIANTS, ``shared:``
SHARED_MODEL_VARIANTS): the oracle's tests use them
as wrong implementations that spec mode must catch by name.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator, Mapping
from typing import Any

from model.kernel_heap import KernelHeap
from proofs.oracle.protocol import ProtocolError, validate
from proofs.oracle.world import MANAGERS, OBSERVATIONS, PROTOCOL_VERSION, ModelWorld


def variant_patches(name: str) -> Mapping[str, object]:
    """The patches of a model variant named FAMILY:NAME (KeyError when unknown);
    only that family's machine is imported."""
    family, _, wanted = name.partition(":")
    if family == "heap":
        from proofs.machines.kernel_heap import HEAP_MODEL_VARIANTS
        return next({f"KernelHeap.{k}": f for k, f in v.patches.items()}
                    for v in HEAP_MODEL_VARIANTS if v.name == wanted)
    variants: tuple[Any, ...]
    if family == "dos":
        from proofs.machines.dos_memory import DOS_MODEL_VARIANTS
        variants = DOS_MODEL_VARIANTS
    elif family == "user":
        from proofs.machines.user_space import USER_MODEL_VARIANTS
        variants = USER_MODEL_VARIANTS
    elif family == "shared":
        from proofs.machines.shared_memory import SHARED_MODEL_VARIANTS
        variants = SHARED_MODEL_VARIANTS
    else:
        raise KeyError(name)
    return next(v.patches for v in variants if v.name == wanted)


@contextlib.contextmanager
def variant(name: str | None) -> Iterator[None]:
    """The model with a variant's methods replaced, for the duration."""
    if name is None:
        yield
        return
    from model.dos_memory import DosMemoryManager
    from model.ems import EmsManager
    from model.mapped_files import MemoryMappedFiles
    from model.process_memory import ProcessMemorySpace
    from model.shared_memory import SharedMemoryManager
    from model.syscalls import SystemCalls
    from model.xms import XmsDriver
    from proofs.machines.memory_pool import patched_methods
    owners = {cls.__name__: cls for cls in (KernelHeap, DosMemoryManager, XmsDriver, EmsManager,
                                            ProcessMemorySpace, SystemCalls,
                                            SharedMemoryManager, MemoryMappedFiles)}
    with patched_methods(variant_patches(name), owners):
        yield


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    checked = "--validate" in args
    chosen = args[args.index("--variant") + 1] if "--variant" in args else None
    with variant(chosen):
        return serve(checked)


def serve(checked: bool) -> int:
    """Speak the protocol on stdin/stdout until stdin closes."""
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
