"""Spec mode's session: every reply judged by the family's judge, from the state
the implementation reports (PROTOCOL.md, "Families").

A :class:`SpecSession` sends each operation through :meth:`~SpecSession.invoke`
and asks observations through :meth:`~SpecSession.observe` (each once per
state); the family's :class:`~proofs.oracle.managers.Judge` decides, and a
judge's CheckError becomes the session's divergence, z3's unknown an
:class:`~proofs.oracle.session.OracleUnknownError` (neither verdict).

Pipelining (PROTOCOL.md, "Requests and replies": the oracle may send several
requests before reading their replies, which come in request order): a judge
with a ``prefetch(manager, op)`` method names the observations it will ask
of the state an operation leaves, and :meth:`~SpecSession.invoke` sends them
with the operation in one write, then reads every reply in order (one round
trip an operation instead of one per request: issue 16, the pipe was 40 % of
the kernel family's search); :meth:`~SpecSession.observe` then answers from
what came. A judge without it is served one request at a time, as before.
What the implementation writes to stderr while several requests are pending
cannot be placed beside one of them: such lines are marked so (as strict
mode's windows are) and the run's sessions go in step from then on
(``Coverage.lockstep``).
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from typing import Any

from proofs.machines.checks import CheckError, SolverUnknownError
from proofs.machines.kernel_heap import Invariants
from proofs.machines.paging_queries import InvariantChecker, Stats
from proofs.oracle.child import ImplementationError
from proofs.oracle.managers import Family, Judge
from proofs.oracle.protocol import (
    SPACE_PAGES,
    Message,
    OperationUnsupported,
    ProtocolError,
    byte_count,
    check_reply,
    extent,
)
from proofs.oracle.session import (
    UNPLACED,
    Coverage,
    DivergenceError,
    Exchange,
    OracleUnknownError,
    Session,
    bad_reply,
    one_origin,
)
from proofs.oracle.spare import Spares
from proofs.oracle.worlds.kernel import READ_LIMIT
from spec.abi import PAGE_SHIFT


class Judges:
    """The z3 judges of spec mode, shared by every session of a run (their
    query caches carry over from one example to the next): the kernel's here,
    other families' under their name in ``caches``."""

    def __init__(self) -> None:
        self.stats = Stats()
        self.paging = InvariantChecker(self.stats)
        self.heap = Invariants()
        self.outcomes: Counter[str] = Counter()
        self.caches: dict[str, Any] = {}


class SpecSession(Session):
    """Every reply must be allowed by the spec from the reported pre-state; the
    family's judge decides, through :meth:`invoke` and :meth:`observe`."""

    mode = "spec"

    def __init__(self, command: str, timeout: float, coverage: Coverage, judges: Judges,
                 family: Family, config: Message | None = None,
                 spares: Spares | None = None) -> None:
        super().__init__(command, timeout, coverage, family, config, spares)
        self.judges = judges
        self.held: set[int] = set()
        self.aligned: set[int] = set()
        self._seen: dict[tuple[str, tuple[tuple[str, Any], ...]], Message] = {}
        self.judge: Judge = family.judge(self)
        memory = next((args for _, op, args in self.setup_calls()
                       if op == "InitializePhysicalMemory"), None)
        #: The frames of the physical memory the set-up calls give (none past them).
        self.frames = SPACE_PAGES if memory is None else memory["mem_end"] >> PAGE_SHIFT
        #: The frames below the set-up's memory start: reserved.
        self.reserved_end = 0 if memory is None else memory["mem_start"] >> PAGE_SHIFT

    # -- talking -----------------------------------------------------------------

    def _exchange(self, message: Message) -> Message:
        return self._exchanges([message])[0]

    def _exchanges(self, messages: list[Message]) -> list[Message]:
        """Send requests in one write and read their replies in order. A failed
        write is reported where its reply is missed (as strict mode does: when a
        write fails depends on timing); the trace ends at the request whose
        reply failed (the later ones were only sent)."""
        try:
            self.child.send(messages)
        except ImplementationError as exc:
            if len(messages) == 1:
                exchange = Exchange(messages[0], stderr=self.child.step_stderr())
                self.exchanges.append(exchange)
                raise self.fault(exc, messages[0]) from None
        replies = []
        for message in messages:
            exchange = Exchange(message)
            self.exchanges.append(exchange)
            try:
                reply = self.child.receive()
                exchange.stderr = self._stderr(messages)
                check_reply(message, reply)
            except ImplementationError as exc:
                exchange.stderr += self._stderr(messages)
                raise self.fault(exc, message) from None
            except ProtocolError as exc:
                raise bad_reply(message, str(exc), self.exchanges) from None
            except OperationUnsupported as exc:
                raise self.answered_unsupported(exc) from None
            exchange.reply = reply
            replies.append(reply)
        return replies

    def _stderr(self, batch: list[Message]) -> list[str]:
        """The stderr lines read since the last reply; with several requests
        pending, which one they belong to is unknown: said so, and the run's
        sessions go in step from now on."""
        lines = self.child.step_stderr()
        if lines and len(batch) > 1:
            self.coverage.lockstep = True
            lines = [f"{UNPLACED}{batch[0]['id']}..#{batch[-1]['id']} were answered) {line}"
                     for line in lines]
        return lines

    @staticmethod
    def _key(name: str, args: Message) -> tuple[str, tuple[tuple[str, Any], ...]]:
        """What an observation of the current state is remembered by."""
        return name, tuple(sorted(args.items()))

    def observe(self, name: str, **args: int) -> Message:
        """An observation of the current state (asked once per state)."""
        key = self._key(name, args)
        seen = self._seen.get(key)
        if seen is None:
            request = self._new(None, name, dict(args))
            seen = self._exchange(request)["observed"]
            self._keep(key, request, seen)
        return seen

    def _keep(self, key: tuple[str, tuple[tuple[str, Any], ...]], request: Message,
              seen: Message) -> None:
        """Remember an observation of the current state, its extent and its
        bytes' count checked."""
        wrong = extent(request["observe"], seen, self.frames) or byte_count(
            request["observe"], request["args"], seen)
        if wrong is not None:
            raise bad_reply(request, wrong, self.exchanges)
        self._seen[key] = seen

    def observe_all(self, names: tuple[str, ...]) -> None:
        """Ask the observations of the current state not asked yet (those the
        implementation declared), in one write: what :meth:`observe` then
        answers. In step (``Coverage.lockstep``) nothing is asked ahead."""
        wanted = [n for n in names if n in self.observations and (n, ()) not in self._seen]
        if len(wanted) < 2 or self.coverage.lockstep:
            return
        requests = [self._new(None, name, {}) for name in wanted]
        for request, reply in zip(requests, self._exchanges(requests), strict=True):
            self._keep((request["observe"], ()), request, reply["observed"])

    @staticmethod
    def pieces(name: str, key: str, reads: list[tuple[int, int]],
               **fixed: int) -> list[tuple[str, Message]]:
        """The observations :meth:`read` asks for ``reads`` ((address, length)
        each): READ_LIMIT bytes a request (a judge's ``prefetch`` asks them
        with the call that leaves the state)."""
        out: list[tuple[str, Message]] = []
        for address, length in reads:
            while length > 0:
                piece = min(length, READ_LIMIT)
                out.append((name, {**fixed, key: address, "length": piece}))
                address, length = address + piece, length - piece
        return out

    def read(self, name: str, key: str, address: int, length: int,
             **fixed: int) -> bytes | None:
        """length bytes from address through the byte observation ``name`` (its
        address argument ``key``; ``fixed``: its other arguments), READ_LIMIT
        bytes a request; None when any part is not readable (a reply of another
        length is a protocol divergence: :meth:`_keep`)."""
        out = b""
        for _, args in self.pieces(name, key, [(address, length)], **fixed):
            data = self.observe(name, **args)["data"]
            if data is None:
                return None
            out += bytes.fromhex(data)
        return out

    def invoke(self, manager: str, op: str, args: Message) -> tuple[Any, int]:
        """Send one operation, with the observations the judge will ask of the
        state it leaves (its ``prefetch``; none in step); the state may change,
        so forget what was observed before."""
        self._seen.clear()
        prefetch = getattr(self.judge, "prefetch", None)
        wanted: dict[tuple[str, tuple[tuple[str, Any], ...]], Message] = {}
        if prefetch is not None and not self.coverage.lockstep:
            for item in prefetch(manager, op):
                name, asked = (item, {}) if isinstance(item, str) else item
                if name in self.observations:
                    wanted[self._key(name, asked)] = asked
        request = self._new(manager, op, args)
        observations = [self._new(None, key[0], asked) for key, asked in wanted.items()]
        replies = self._exchanges([request, *observations])
        for key, message, seen in zip(wanted, observations, replies[1:], strict=True):
            self._keep(key, message, seen["observed"])
        reply = replies[0]
        result, error = reply["result"], reply["error"]
        self.coverage.errors[manager, op, error] += 1
        if error == 0 and op == "RequestFrame" and isinstance(result, int):
            self.held.add(result >> PAGE_SHIFT)
        elif error == 0 and op == "FreeFrame":
            self.held.discard(args["frame_addr"] >> PAGE_SHIFT)
        return result, error

    # -- judging -------------------------------------------------------------------

    @one_origin
    def execute(self, manager: str, op: str, args: Message) -> Any:
        self.unsupported_call(manager, op)
        with self._verdicts():
            return self.judge.execute(manager, op, args)

    @contextlib.contextmanager
    def _verdicts(self) -> Iterator[None]:
        """A judge's CheckError is a divergence, z3's unknown is neither verdict."""
        try:
            yield
        except CheckError as exc:
            if isinstance(exc.__cause__, (DivergenceError, OperationUnsupported)):
                raise exc.__cause__ from None  # the harness wrapped a fault or a skip
            raise DivergenceError(str(exc), exc.violated, self.exchanges) from None
        except SolverUnknownError as exc:
            raise OracleUnknownError(str(exc), self.exchanges) from None

    @one_origin
    def finish(self) -> None:
        with self._verdicts():
            self.judge.finish()

    @one_origin
    def look(self, address: int, length: int) -> None:
        look = getattr(self.judge, "look", None)
        if look is not None:
            with self._verdicts():
                look(address, length)

    @one_origin
    def inspect(self, name: str, args: Message) -> None:
        inspect = getattr(self.judge, "inspect", None)
        if inspect is not None and name in self.observations:
            with self._verdicts():
                inspect(name, args)
