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
as wrong implementations that spec mode must catch by name. With
``--register-form`` its hello declares the DOS manager in register form
(PROTOCOL.md, "Register form"): the oracle's dos family then sends INT 21h,
XMS and INT 67h calls as registers (the world serves both forms). With
``--unsupported MANAGER.OP``, ``--parts MANAGER.PART`` and
``--answer-unsupported MANAGER.OP`` it leaves operations out (PROTOCOL.md,
"Partial managers"): declared in its hello, or answered ``"unsupported"`` at
run time only. With ``--config FILE`` its hello declares that configuration (PROTOCOL.md,
"Configuration"): the set-up calls then carry its values. Its hello declares
``reset`` (PROTOCOL.md, "Reset": a reset request starts a new ModelWorld, the
state of the hello) unless ``--no-reset``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from model.kernel_heap import KernelHeap
from proofs.oracle.register_form import REGISTER_MANAGERS
from proofs.oracle.world import MANAGERS, OBSERVATIONS, PARTS_OF, PROTOCOL_VERSION, ModelWorld

#: The broken models served by ``--variant FAMILY:NAME``: each family's
#: machine module and the name of its variants there (imported only when asked).
VARIANT_MODULES = {"heap": ("proofs.machines.kernel_heap", "HEAP_MODEL_VARIANTS"),
                   "dos": ("proofs.machines.dos_memory", "DOS_MODEL_VARIANTS"),
                   "user": ("proofs.machines.user_space", "USER_MODEL_VARIANTS"),
                   "shared": ("proofs.machines.shared_memory", "SHARED_MODEL_VARIANTS")}


def variant_patches(name: str) -> Mapping[str, object]:
    """The patches of a model variant named FAMILY:NAME (KeyError when unknown);
    only that family's machine is imported."""
    family, _, wanted = name.partition(":")
    module, attribute = VARIANT_MODULES[family]
    variants: tuple[Any, ...] = getattr(importlib.import_module(module), attribute)
    for v in variants:
        if v.name == wanted:
            return v.patches  # type: ignore[no-any-return]
    raise KeyError(name)


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
    from proofs.machines.runner import patched_methods
    owners = {cls.__name__: cls for cls in (KernelHeap, DosMemoryManager, XmsDriver, EmsManager,
                                            ProcessMemorySpace, SystemCalls,
                                            SharedMemoryManager, MemoryMappedFiles)}
    with patched_methods(variant_patches(name), owners):
        yield


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m proofs.oracle.model_shim",
        description="Serve the model over the oracle protocol (PROTOCOL.md) on stdin/stdout.")
    parser.add_argument("--validate", action="store_true",
                        help="check every message against the protocol's schema; exit 65 at "
                             "the first that does not validate")
    parser.add_argument("--variant", metavar="FAMILY:NAME",
                        help="serve a broken model: one of the model machines' variants "
                             f"(families: {', '.join(VARIANT_MODULES)})")
    parser.add_argument("--unsupported", action="append", default=[], metavar="MANAGER.OP",
                        help="declare an operation unsupported in the hello (and answer it "
                             "so if it comes); repeatable")
    parser.add_argument("--parts", action="append", default=[], metavar="MANAGER.PART",
                        help="declare only these parts of a manager (DosMemoryManager."
                             "conventional, .xms, .ems); repeatable")
    parser.add_argument("--answer-unsupported", action="append", default=[],
                        metavar="MANAGER.OP", help="answer an operation \"unsupported\" at "
                        "run time without declaring it; repeatable")
    parser.add_argument("--config", metavar="FILE",
                        help="declare this configuration (PROTOCOL.md, Configuration: JSON) in "
                             "the hello")
    parser.add_argument("--no-reset", action="store_true",
                        help="do not declare reset in the hello: every sequence then starts "
                             "a new process")
    parser.add_argument("--register-form", action="store_true",
                        help="declare DosMemoryManager in register form (Int21h, XmsCall, "
                             "Int67h)")
    args = parser.parse_args(argv)
    if args.variant is not None:
        try:
            variant_patches(args.variant)
        except KeyError:
            parser.error(f"no model variant {args.variant!r}")
    config = None
    if args.config is not None:
        with open(args.config) as file:
            config = json.load(file)
    with variant(args.variant):
        return serve(args.validate, args.register_form, Partial(
            args.unsupported, args.parts, args.answer_unsupported), config, not args.no_reset)


@dataclass(frozen=True)
class Partial:
    """What the shim leaves out (PROTOCOL.md, "Partial managers"): operations
    declared unsupported, the parts declared, operations answered "unsupported"
    without a word in the hello."""

    unsupported: list[str] = field(default_factory=list)
    parts: list[str] = field(default_factory=list)
    answered: list[str] = field(default_factory=list)

    def declines(self, request: dict[str, Any]) -> bool:
        """Whether to answer this request "unsupported"."""
        if "op" not in request:
            return False
        name = f"{request['manager']}.{request['op']}"
        if name in self.unsupported or name in self.answered:
            return True
        manager = request["manager"]
        declared = [p.partition(".")[2] for p in self.parts if p.startswith(manager + ".")]
        return bool(declared) and not any(
            request["op"] in PARTS_OF[manager][part][0] for part in declared)


def serve(checked: bool, register_form: bool = False, partial: Partial | None = None,
          config: Any = None, reset: bool = True) -> int:
    """Speak the protocol on stdin/stdout until stdin closes; with ``reset`` the
    hello declares it and a reset request starts a new model (PROTOCOL.md, "Reset")."""
    if checked:  # only then: the schema's module imports hypothesis, 0.15 s of every start
        from proofs.oracle.protocol import ProtocolError, validate
    partial = partial or Partial()
    world = ModelWorld()
    out = sys.stdout

    def send(message: dict[str, Any]) -> None:
        out.write(json.dumps(message, separators=(",", ":")) + "\n")
        out.flush()

    hello: dict[str, Any] = {"protocol": PROTOCOL_VERSION, "implementation": "memspec model",
                             "managers": list(MANAGERS), "observations": list(OBSERVATIONS)}
    if register_form:
        hello["register_form"] = list(REGISTER_MANAGERS)
    if partial.unsupported:
        hello["unsupported"] = partial.unsupported
    if partial.parts:
        hello["parts"] = partial.parts
    if config is not None:
        hello["config"] = config
    if reset:
        hello["reset"] = True
    send(hello)
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        if reset and request.get("reset") is True:
            world = ModelWorld()  # the state of the hello: a new model, as at the start
            reply: dict[str, Any] = {"id": request["id"], "reset": True}
        else:
            reply = ({"id": request["id"], "unsupported": True} if partial.declines(request)
                     else world.handle(request))
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
