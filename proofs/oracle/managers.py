"""The protocol's managers: what each offers, and the model's side of it.

A :class:`Manager` is one manager as PROTOCOL.md describes it (its
operations with their parameters in the seed's order, which of them return
a boolean, its observations, the managers it needs). A :class:`WorldPart`
is the model behind one or more managers inside the
:class:`~proofs.oracle.world.ModelWorld`: it hands the world its calls and
its observers. This module imports no model code, so a part can import it
without a cycle through the world.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

Message = dict[str, Any]
#: A protocol result: a JSON boolean or an unsigned (or, where stated, signed) number;
#: the register form's calls return the register object (proofs/oracle/register_form.py).
Result = bool | int | dict[str, Any]
#: (manager, op) -> (the function, the function that reads its error code)
Calls = Mapping[tuple[str, str], tuple[Callable[..., Result], Callable[[], int]]]


@dataclass(frozen=True)
class Manager:
    """One manager of the protocol."""

    name: str
    #: The managers it needs declared too.
    needs: tuple[str, ...]
    #: op -> its parameters, in the seed's order.
    operations: Mapping[str, tuple[str, ...]]
    #: The observations that belong to it.
    observations: tuple[str, ...]
    #: The operations whose result is a JSON boolean (the others return a number).
    bool_results: frozenset[str] = frozenset()
    #: The parts a hello may declare alone (``"parts": ["Manager.part", ...]``):
    #: part -> (its operations, its observations). Every operation and
    #: observation of a manager with parts belongs to exactly one.
    parts: Mapping[str, tuple[frozenset[str], tuple[str, ...]]] = field(default_factory=dict)


#: One call of a set-up: (manager, op, args).
Call = tuple[str, str, Message]


@dataclass(frozen=True)
class Family:
    """A family of sequences: the managers it drives, the calls every sequence
    starts with, the observations strict mode compares after each operation, the
    ones spec mode needs, the rule machine that generates its sequences and the
    judge of spec mode. Sessions and machines are typed loosely here (``Any``):
    this module sits below them."""

    name: str
    #: Every one must be declared for the family to run.
    managers: tuple[str, ...]
    #: The set-up calls, given the declared managers and (optional) the family's
    #: configuration (:mod:`proofs.oracle.config`; None: the defaults).
    setup: Callable[..., list[Call]]
    #: Asked after every operation in strict mode (those declared).
    state_observations: tuple[str, ...]
    #: Spec mode judges the family only when all of these are declared.
    spec_observations: tuple[str, ...]
    #: (session factory, declared managers) -> a RuleBasedStateMachine class.
    machine: Callable[[Callable[[], Any], tuple[str, ...]], type]
    #: A SpecSession -> its Judge.
    judge: Callable[[Any], Judge]
    #: The lines of the report's memory map, from a divergence's exchanges.
    memory_map: Callable[[list[Any]], list[str]]
    #: Strict mode's sender of a call to a manager the implementation serves in
    #: register form: (send one request and return the model's result, manager,
    #: op, args) -> the call's seed-level result (PROTOCOL.md, "Register form").
    send: Callable[[Callable[[str, str, Message], Any], str, str, Message], Any] | None = None


class Judge(Protocol):
    """Spec mode's judge of one sequence of a family. ``execute`` sends the
    operation through the session (``session.invoke``), asks what it needs
    (``session.observe``) and raises proofs.machines.paging.CheckError (with the
    ids violated) when the spec does not allow what the implementation did."""

    def execute(self, manager: str, op: str, args: Message) -> Any:
        """Send and judge one operation; its result as the implementation gave it."""

    def finish(self) -> None:
        """The checks owed at the end of the sequence."""


class WorldPart(Protocol):
    """The model behind some managers, inside the model world."""

    def calls(self) -> Calls:
        """Every operation it serves (results already as the protocol encodes them)."""

    def observers(self) -> Mapping[str, Callable[..., Message]]:
        """Every observation it serves: name -> function of the observation's args."""


#: Makes a part from the world's PageManager, its VirtualMemoryManager and the
#: parts made before it (a part over another's model finds it there: the
#: shared-memory managers map into the processes of the user part).
PartFactory = Callable[[Any, Any, Sequence[WorldPart]], WorldPart]
