"""The model's side of the oracle protocol: one world, requests in, replies out.

A :class:`ModelWorld` is the reference implementation of PROTOCOL.md: one
PageManager and its VirtualMemoryManager, and the parts of
:mod:`proofs.oracle.worlds` behind the managers (the kernel's, DOS memory,
processes, shared memory and mapped files), driven by protocol messages.
Strict mode compares an implementation's replies with these;
:mod:`proofs.oracle.model_shim` serves them over stdin/stdout, so the model can
be judged by the oracle like any implementation.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from model.page_manager import PageManager
from model.virtual_memory import VirtualMemoryManager
from proofs.oracle.managers import Manager, Message, PartFactory, Result, WorldPart
from proofs.oracle.worlds import dos, kernel, shared, user
from spec.abi import ErrorCode

PROTOCOL_VERSION = 1
#: The protocol of an implementation that declares concurrency (PROTOCOL.md,
#: "Concurrency (protocol 3)").
PROTOCOL_THREADS = 3
#: The most threads a protocol 3 hello may declare (the schema's bound).
MAX_THREADS = 64
#: Every manager of the protocol, in the order hellos list them.
ALL_MANAGERS: tuple[Manager, ...] = (*kernel.MANAGERS, *dos.MANAGERS, *user.MANAGERS,
                                     *shared.MANAGERS)
MANAGERS = tuple(m.name for m in ALL_MANAGERS)
OBSERVATIONS = tuple(o for m in ALL_MANAGERS for o in m.observations)
#: Managers a hello may declare that only concurrent runs drive (PROTOCOL.md,
#: "Concurrency (protocol 3)": the pool's AllocBlock and FreeBlock, ``python -m
#: proofs.oracle concurrent --pool``); the sequential families leave them out.
CONCURRENT_ONLY = ("MemoryPool",)
#: The managers each manager needs (the heap maps its pages through the VMM).
NEEDS = {m.name: m.needs for m in ALL_MANAGERS}
#: The observations that belong to each manager.
OBSERVATIONS_OF = {m.name: m.observations for m in ALL_MANAGERS}
#: Every operation's parameters, in the seed's order.
OPERATIONS: dict[str, dict[str, tuple[str, ...]]] = {
    m.name: dict(m.operations) for m in ALL_MANAGERS}
#: Each manager's parts (PROTOCOL.md, "Partial managers"): part -> (ops, observations).
PARTS_OF = {m.name: m.parts for m in ALL_MANAGERS}
#: The operations whose result is a JSON boolean (the others return a number).
BOOL_RESULTS = frozenset((m.name, op) for m in ALL_MANAGERS for op in m.bool_results)
#: The model behind the managers past the kernel's, each made from the world's
#: PageManager, VirtualMemoryManager and the parts made before it.
PARTS: tuple[PartFactory, ...] = (*dos.PARTS, *user.PARTS, *shared.PARTS)


class ModelWorld:
    """The model behind the protocol: a PageManager, its VirtualMemoryManager, and
    the kernel's part, then the parts behind the other managers (:data:`PARTS`)."""

    def __init__(self) -> None:
        self.pm = PageManager()
        self.vmm = VirtualMemoryManager(self.pm)
        #: (manager, op) -> (function, its error, parameters, their names as a set)
        self._calls: dict[tuple[str, str], tuple[Callable[..., Any], Callable[[], int],
                                                 tuple[str, ...], frozenset[str]]] = {}
        self._observers: dict[str, Callable[..., Message]] = {}
        self.kernel = kernel.KernelPart(self.pm, self.vmm)
        self.heap = self.kernel.heap
        self.parts: list[WorldPart] = [self.kernel]
        for make in PARTS:
            self.parts.append(make(self.pm, self.vmm, tuple(self.parts)))
        for part in self.parts:
            for key, (fn, error) in part.calls().items():
                params = OPERATIONS[key[0]][key[1]]
                self._calls[key] = (fn, error, params, frozenset(params))
            self._observers.update(part.observers())
        #: Each observation's argument names.
        self._observer_args = {name: frozenset(inspect.signature(observer).parameters)
                               for name, observer in self._observers.items()}

    def handle(self, message: Mapping[str, Any]) -> Message:
        """The reply to one request or observation (PROTOCOL.md)."""
        ident = message["id"]
        if "observe" in message:
            return {"id": ident, "observed": self.observe(message["observe"], message["args"])}
        result, error = self.call(message["manager"], message["op"], message["args"])
        return {"id": ident, "result": result, "error": error}

    def call(self, manager: str, op: str, args: Mapping[str, Any]) -> tuple[Result, int]:
        """Run one operation: (result as the protocol encodes it, error code)."""
        entry = self._calls.get((manager, op))
        if entry is None or args.keys() != entry[3]:
            return False, int(ErrorCode.ERROR_INVALID_PARAMETER)
        fn, error, params, _ = entry
        result = fn(*[args[p] for p in params])
        return (False if result is None else result), int(error())

    def observe(self, name: str, args: Mapping[str, Any]) -> Message:
        """An observation; ``{}`` for one PROTOCOL.md does not define (an unknown
        name, other argument names): the oracle never asks those, an implementer
        piping requests to the model shim sees that it was not understood."""
        observer = self._observers.get(name)
        if observer is None or args.keys() != self._observer_args[name]:
            return {}
        return observer(**args)
