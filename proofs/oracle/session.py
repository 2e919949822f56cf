"""One sequence: a fresh implementation process, its exchanges, and a judge.

:class:`StrictSession` compares every reply with the model's reply to the same
request (requests are pipelined: the model's replies choose the next
arguments, the implementation's are read in windows and compared in order).
:class:`SpecSession` judges every reply by the spec, from the state the
implementation reports (:mod:`proofs.oracle.spec_session`). Both record every
exchange, so a divergence carries the trace that led to it.
"""

from __future__ import annotations

import functools
import json
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from hypothesis import reject

from proofs.abstractions.kernel_heap import HeapSnapshot, heap_snapshot
from proofs.machines.kernel_heap import HeapHarness
from proofs.oracle.buckets import Bucket, bucket_of
from proofs.oracle.child import Child, ImplementationError
from proofs.oracle.config import Config, layered
from proofs.oracle.managers import Call, Family
from proofs.oracle.protocol import (
    Message,
    OperationUnsupported,
    ProtocolError,
    check_reply,
    observation,
    request,
    same_reply,
)
from proofs.oracle.register_form import REGISTER_OPS, register_differences
from proofs.oracle.spare import Spares
from proofs.oracle.world import NEEDS, ModelWorld

#: Replies the strict session lets the implementation owe before reading them
#: (bytes, estimated from the model's replies; requests and replies of a
#: window each stay below the 64 KB of a pipe, so neither side blocks).
WINDOW_BYTES = 32_768


@dataclass
class Exchange:
    """One request, the implementation's reply and (strict mode) the model's."""

    request: Message
    reply: Message | None = None
    expected: Message | None = None
    #: What the implementation wrote to stderr while this request was answered.
    stderr: list[str] = field(default_factory=list)


#: Observations a rule asks for their own sake (not the judge's): traced as
#: steps of their own, replayed as such.
INSPECTIONS = ("VirtualQuery",)


#: How a stderr line read while several requests were pending begins (it
#: cannot be placed beside one of them).
UNPLACED = "(while #"


def unplaced(exchanges: list[Exchange]) -> bool:
    """Whether some stderr line of the exchanges could not be placed."""
    return any(line.startswith(UNPLACED) for e in exchanges for line in e.stderr)


def last_observed(exchanges: list[Exchange], name: str) -> dict[str, Any] | None:
    """The last reply to an observation called name, in a trace's exchanges."""
    for exchange in reversed(exchanges):
        if exchange.request.get("observe") == name and exchange.reply is not None:
            observed = exchange.reply.get("observed")
            return observed if isinstance(observed, dict) else None
    return None


class DivergenceError(AssertionError):
    """The implementation did what neither the model nor the spec allows."""

    def __init__(self, reason: str, violated: tuple[str, ...], exchanges: list[Exchange],
                 detail: str = "", kind: str = "divergence", at: int | None = None) -> None:
        super().__init__(f"{', '.join(violated)}: {reason}")
        self.reason, self.violated, self.kind = reason, violated, kind
        self.exchanges, self.detail = list(exchanges), detail
        #: The id of the request whose reply diverged (None: the last operation's,
        #: as the judges decide after each operation).
        self.at = at
        #: The session's method that raised it (``finish``: the checks owed at the end).
        self.step = ""


def named(request: Message) -> str:
    """A request as the report's table names it: #id and what it asks."""
    what = (f"{request['manager']}.{request['op']}" if "op" in request
            else f"observe {request.get('observe')}")
    return f"#{request['id']} {what}"


def bad_reply(request: Message, reason: str, exchanges: list[Exchange], kind: str = "protocol",
              detail: str = "") -> DivergenceError:
    """The reply to request broke the protocol (or never came): the reason names
    the request, and the report marks it."""
    return DivergenceError(f"{named(request)}: {reason}", (kind,), exchanges, detail, kind,
                           at=request["id"])


class OracleUnknownError(Exception):
    """z3 could not decide a step: neither a pass nor a divergence."""

    def __init__(self, reason: str, exchanges: list[Exchange]) -> None:
        super().__init__(reason)
        self.reason, self.exchanges = reason, list(exchanges)


_F = TypeVar("_F", bound=Callable[..., Any])


def one_origin(method: _F) -> _F:
    """Raise every divergence from one place, without its context or inner
    traceback: hypothesis tells failures apart by where they were raised (and
    by their context) and shrinks each separately; to the oracle every
    divergence is the same failure, and all of the shrinking goes to it."""
    @functools.wraps(method)
    def judged(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except (DivergenceError, OracleUnknownError) as exc:
            error: Exception = exc
        session = args[0]
        session.failed = True  # its teardown must not raise again
        if isinstance(error, DivergenceError):
            if session.spares is not None:  # every divergence reported happens in a fresh
                session.spares.stop_reusing()  # process: none is reset for reuse from now
            error.step = error.step or method.__name__
            if session.coverage.known_bucket(error, session.family.name):
                reject()  # a bug the campaign has: this sequence is over, the search goes on
        if session.coverage.first_failure is None:
            session.coverage.first_failure = time.monotonic()
            session.coverage.failed_at = session.coverage.sessions
        session.coverage.last_failure = error
        error.__context__ = error.__cause__ = None
        raise error.with_traceback(None)
    return judged  # type: ignore[return-value]


@dataclass
class Coverage:
    """Operations executed (manager -> op -> count) and observations asked."""

    operations: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: When the first divergence was raised (time.monotonic), before shrinking.
    first_failure: float | None = None
    #: The last divergence (or undecided step) raised: the verdict when hypothesis
    #: cannot replay it (an implementation that does not fail the same way twice).
    last_failure: Exception | None = None
    observations: Counter[str] = field(default_factory=Counter)
    errors: Counter[tuple[str, str, int]] = field(default_factory=Counter)
    #: Operations answered "unsupported" (PROTOCOL.md), by (manager, op): each
    #: time one was, a sequence was dropped; none is sent again in this run.
    unsupported: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: Strict mode answers one request at a time (no pipelining): the
    #: implementation writes to stderr, and a line is shown beside the request
    #: it answered only when no other was pending (a replay is always in step).
    lockstep: bool = False
    #: Sessions started (sequences, hypothesis' shrinking included), and how many
    #: had started when the first divergence was raised.
    sessions: int = 0
    failed_at: int = 0
    #: A campaign's bugs found so far, each with the sequences that hit it again
    #: (those sequences end there and count as passes: the search goes on).
    known: Counter[Bucket] = field(default_factory=Counter)

    def known_bucket(self, error: DivergenceError, family: str) -> bool:
        """Whether error is a bug the campaign already has (counted if so)."""
        if not self.known:
            return False
        bucket = bucket_of(error, family)
        if bucket not in self.known:
            return False
        self.known[bucket] += 1
        return True


class Session:
    """A child process speaking the protocol, with the trace of what was said."""

    mode = ""

    def __init__(self, command: str, timeout: float, coverage: Coverage,
                 family: Family, config: Message | None = None,
                 spares: Spares | None = None) -> None:
        self.coverage, self.family = coverage, family
        coverage.sessions += 1
        #: A divergence was raised: the sequence is over.
        self.failed = False
        self.exchanges: list[Exchange] = []
        self.next_id = 1
        self.spares = spares
        try:
            self.child = Child(command, timeout) if spares is None else \
                spares.take(command, timeout)
        except ImplementationError as exc:
            raise self.fault(exc) from None
        self.hello = self.child.hello
        self.heap: HeapHarness | None = None
        self.managers = tuple(m for m in self.hello.managers if m in NEEDS  # not
                              # CONCURRENT_ONLY's, which no sequential family drives
                              and all(n in self.hello.managers for n in NEEDS[m]))
        self.observations = self.hello.observations
        #: The managers the implementation serves in register form.
        self.register_form = self.hello.register_form
        #: The operations never to be sent (its hello's, PROTOCOL.md "Partial managers").
        self.unsupported = self.hello.unsupported
        #: The set-up's values: the defaults, the hello's, then ``config`` (the
        #: command line's, or a replayed trace's) on top.
        self.config: Config = layered(self.hello.config, config)

    def supports(self, manager: str) -> bool:
        return manager in self.managers

    def fault(self, exc: ImplementationError, request: Message | None = None
              ) -> DivergenceError:
        """The child's fault, at request (None: before the first one, at the hello)."""
        detail = f"stderr:\n{exc.stderr}" if exc.stderr else ""
        if request is not None:
            return bad_reply(request, exc.detail, self.exchanges, exc.kind, detail)
        return DivergenceError(exc.detail, (exc.kind,), self.exchanges, detail, exc.kind)

    def _new(self, manager: str | None, name: str, args: Message) -> Message:
        ident, self.next_id = self.next_id, self.next_id + 1
        if manager is None:
            self.coverage.observations[name] += 1
            return observation(ident, name, args)
        self.coverage.operations[manager, name] += 1
        return request(ident, manager, name, args)

    def setup_calls(self) -> list[Call]:
        """The family's set-up calls with this session's configuration."""
        return self.family.setup(self.managers, self.config.of(self.family.name))

    def setup(self) -> None:
        """The family's set-up calls: those of the declared managers are sent (one
        answered "unsupported" is a divergence: a family cannot start without
        it); the others are the model's own (:meth:`model_setup`)."""
        for manager, op, args in self.setup_calls():
            if manager not in self.managers:
                self.model_setup(manager, op, args)
                continue
            try:
                self.execute(manager, op, args)
            except OperationUnsupported as exc:
                said = "is declared unsupported" if exc.declared else "was answered unsupported"
                raise DivergenceError(
                    f"the set-up call {exc.manager}.{exc.op} {said}: the {self.family.name} "
                    "family cannot start without it", ("protocol",), self.exchanges,
                    kind="protocol") from None

    def model_setup(self, manager: str, op: str, args: Message) -> None:
        """A set-up call of a manager the implementation does not declare (the DOS
        family's InitializePhysicalMemory for an implementation of the DOS manager
        alone): the model world makes it; nothing is sent."""

    def unsupported_call(self, manager: str, op: str) -> None:
        """An operation not to send: declared unsupported, or answered so earlier in
        this run; the sequence is dropped (OperationUnsupported) before it is sent."""
        if (manager, op) in self.unsupported or (manager, op) in self.coverage.unsupported:
            self.failed = True
            raise OperationUnsupported(manager, op, declared=(manager, op) in self.unsupported)

    def answered_unsupported(self, exc: OperationUnsupported) -> OperationUnsupported:
        """The implementation answered "unsupported": counted, the sequence ends."""
        self.coverage.unsupported[exc.manager, exc.op] += 1
        self.failed = True
        return exc

    def execute(self, manager: str, op: str, args: Message) -> Any:
        raise NotImplementedError

    def finish(self) -> None:
        """Everything owed is read and judged (strict mode drains its window)."""

    def look(self, address: int, length: int) -> None:
        """Observe VirtualToPhysical(address) and ReadBytes(address, length)."""
        raise NotImplementedError

    def inspect(self, name: str, args: Message) -> None:
        """One of the INSPECTIONS, when declared: strict mode compares it with
        the model's; spec mode's judge checks it against the reported state."""
        raise NotImplementedError

    def close(self) -> None:
        """End the child (from a pool of spares: once it has exited, while the
        next sequence runs; after a passing sequence, reset for the next one when
        its hello declares reset: :meth:`Spares.retire`)."""
        if self.spares is None:
            self.child.close()
        else:
            self.spares.retire(self.child, passed=not self.failed)


# -- strict ------------------------------------------------------------------------

class StrictHeap(HeapHarness):
    """The heap machine's records in strict mode: the model world's replies
    choose the arguments (live pointers, the heap's end); nothing is judged
    here, the session compares replies."""

    def __init__(self, session: StrictSession) -> None:
        self.session = session
        self.heap = session.world.heap
        self.pm = session.world.pm
        self.live: dict[int, int] = {}
        self.written: dict[int, dict[int, int]] = {}
        self.freed: list[int] = []
        self.trace: list[str] = []

    @property
    def snap(self) -> HeapSnapshot:  # type: ignore[override]
        return heap_snapshot(self.heap)


class StrictSession(Session):
    """Every reply must equal the model's reply to the same request."""

    mode = "strict"

    def __init__(self, command: str, timeout: float, coverage: Coverage, family: Family,
                 observe: bool = True, config: Message | None = None,
                 spares: Spares | None = None) -> None:
        super().__init__(command, timeout, coverage, family, config, spares)
        self.world = ModelWorld()
        self.outgoing: list[Message] = []  # written in one go when the window is full
        self.pending: deque[Exchange] = deque()
        self.pending_bytes = 0
        self.after = [name for name in family.state_observations
                      if observe and name in self.observations]
        self.heap = StrictHeap(self) if self.supports("KernelHeap") else None

    def _queue(self, message: Message) -> Message:
        expected = self.world.handle(message)
        exchange = Exchange(message, None, expected)
        self.exchanges.append(exchange)
        self.outgoing.append(message)
        self.pending.append(exchange)
        self.pending_bytes += 96 if "result" in expected else len(json.dumps(expected))
        if self.pending_bytes > WINDOW_BYTES or self.coverage.lockstep:
            self.finish()
        return expected

    def model_setup(self, manager: str, op: str, args: Message) -> None:
        self.world.call(manager, op, args)

    @one_origin
    def execute(self, manager: str, op: str, args: Message) -> Any:
        self.unsupported_call(manager, op)
        if self.family.send is not None and manager in self.register_form:
            return self.family.send(self._execute, manager, op, args)
        return self._execute(manager, op, args)

    def _execute(self, manager: str, op: str, args: Message) -> Any:
        expected = self._queue(self._new(manager, op, args))
        self.coverage.errors[manager, op, expected["error"]] += 1
        if manager == "KernelHeap" and expected["error"] == 0 and self.heap is not None:
            self.heap._record(op, tuple(args.values()), expected["result"])
        for name in self.after:
            self._queue(self._new(None, name, {}))
        return expected["result"]

    @one_origin
    def look(self, address: int, length: int) -> None:
        if "VirtualToPhysical" in self.observations:
            self._queue(self._new(None, "VirtualToPhysical", {"virtual_addr": address}))
        if "ReadBytes" in self.observations:
            self._queue(self._new(None, "ReadBytes", {"virtual_addr": address,
                                                      "length": length}))

    @one_origin
    def inspect(self, name: str, args: Message) -> None:
        if name in self.observations:
            self._queue(self._new(None, name, args))

    @one_origin
    def finish(self) -> None:
        """Write the window's requests, then read and compare their replies. A
        failed write is reported where its reply is missed: when a write fails
        depends on timing, and hypothesis needs an example to fail at the same
        step every time."""
        outgoing, self.outgoing = self.outgoing, []
        try:
            self.child.send(outgoing)
        except ImplementationError:
            pass
        window = [e.request["id"] for e in self.pending]
        while self.pending:
            exchange = self.pending.popleft()
            expected = exchange.expected or {}
            try:
                reply = self.child.receive()
                exchange.stderr = self._stderr(window)
                if "op" not in exchange.request or not same_reply(reply, expected):
                    check_reply(exchange.request, reply)
            except ImplementationError as exc:
                exchange.stderr += self._stderr(window)
                self._truncate(exchange)
                raise self.fault(exc, exchange.request) from None
            except ProtocolError as exc:
                self._truncate(exchange)
                raise bad_reply(exchange.request, str(exc), self.exchanges) from None
            except OperationUnsupported as exc:
                self._truncate(exchange)
                raise self.answered_unsupported(exc) from None
            exchange.reply = reply
            if reply != exchange.expected:
                self._truncate(exchange)
                what = exchange.request.get("op") or exchange.request.get("observe")
                if what in REGISTER_OPS and reply["result"] != expected["result"]:
                    lines = register_differences(reply["result"], expected["result"])
                    raise DivergenceError(
                        f"the registers after #{reply['id']} {what} (AX={named_ax(exchange)})"
                        " differ from the model's:\n" + "\n".join(f"  {x}" for x in lines),
                        ("register",), self.exchanges)
                lines = differences(reply, exchange.expected)
                raise DivergenceError(
                    f"the reply to #{reply['id']} {what} differs from the model's:\n"
                    + "\n".join(f"  {line}" for line in lines), ("strict",), self.exchanges)
        self.pending_bytes = 0

    def _stderr(self, window: list[int]) -> list[str]:
        """The stderr lines read since the last reply; with several requests sent
        at once, which one they belong to is unknown: said so, and the run's
        sessions go in step from now on."""
        lines = self.child.step_stderr()
        if lines and len(window) > 1 and not self.coverage.lockstep:
            self.coverage.lockstep = True
            lines = [f"{UNPLACED}{window[0]}..#{window[-1]} were answered) {line}"
                     for line in lines]
        return lines

    def _truncate(self, last: Exchange) -> None:
        """The trace ends at the exchange that diverged (later ones were only sent)."""
        del self.exchanges[self.exchanges.index(last) + 1:]
        self.pending.clear()


def named_ax(exchange: Exchange) -> str:
    """The function a register call asked for: AX on entry, in hex."""
    return f"{exchange.request['args'].get('eax', 0) & 0xFFFF:04X}h"


def differences(got: Any, want: Any, path: str = "", limit: int = 6) -> list[str]:
    """Where two JSON values differ (at most ``limit`` places), as path: got vs model."""
    if isinstance(got, dict) and isinstance(want, dict):
        out: list[str] = []
        for key in [*want, *(k for k in got if k not in want)]:
            if got.get(key, "(missing)") != want.get(key, "(missing)"):
                out += differences(got.get(key, "(missing)"), want.get(key, "(missing)"),
                                   f"{path}.{key}", limit - len(out))
            if len(out) >= limit:
                break
        return out[:limit]
    if isinstance(got, list) and isinstance(want, list) and got and want:
        out = []
        for i in range(max(len(got), len(want))):
            a = got[i] if i < len(got) else "(missing)"
            b = want[i] if i < len(want) else "(missing)"
            if a != b:
                out += differences(a, b, f"{path}[{i}]", limit - len(out))
            if len(out) >= limit:
                break
        return out[:limit]
    return [f"{path or 'reply'}: implementation {json.dumps(got)}, model {json.dumps(want)}"]
