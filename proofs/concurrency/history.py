"""Concurrent histories: what each thread invoked, when, and what it got back.

A :class:`Call` is one operation of one thread: its invocation time, and its
response time and reply, or none (a *pending* call: the thread was cut off,
or the run ended, before the reply; it may or may not have taken effect).
Times come from one monotonic clock shared by the threads (docs/concurrency.md,
"Protocol: running it"); only their order matters. Call ``a`` precedes call
``b`` in real time when ``a.returned < b.invoked``; calls that do not precede
one another overlap, and linearizability lets them take effect in either
order (Herlihy and Wing, "Linearizability", TOPLAS 1990, section 2).

A well-formed history (checked by :class:`History`): each thread's calls are
sequential (a thread invokes its next call only after the reply to its last),
so at most one call per thread is pending and it is that thread's last; every
call returns no earlier than it was invoked; an observation (manager
``observe``) has a reply and overlaps no other call: it is taken at a
quiescent point, where it is a call like any other (docs/concurrency.md,
"Observations").
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from proofs.concurrency.world import OBSERVE, Arg, Op, Reply, Value, show_reply


@dataclass(frozen=True, slots=True)
class Call:
    """One call of one thread: invoked at ``invoked``; ``returned`` and ``reply``
    are None while it is pending."""

    thread: int
    op: Op
    invoked: float
    returned: float | None = None
    reply: Reply | None = None

    @property
    def pending(self) -> bool:
        return self.returned is None

    def precedes(self, other: Call) -> bool:
        """Whether this call returned before other was invoked (real-time order)."""
        return self.returned is not None and self.returned < other.invoked

    def __str__(self) -> str:
        if self.returned is None or self.reply is None:
            return f"t{self.thread} {self.op} [{self.invoked:g}, pending)"
        return (f"t{self.thread} {self.op} -> {show_reply(self.reply)} "
                f"[{self.invoked:g}, {self.returned:g}]")


class MalformedHistoryError(ValueError):
    """A history no execution can produce (module docstring)."""


@dataclass(frozen=True)
class History:
    """A concurrent history: its calls, each thread's in its program order."""

    calls: tuple[Call, ...]
    threads: tuple[int, ...] = field(init=False)

    def __post_init__(self) -> None:
        last: dict[int, Call] = {}
        for call in self.calls:
            if (call.returned is None) != (call.reply is None):
                raise MalformedHistoryError(f"{call}: a response time without a reply or back")
            if call.returned is not None and call.returned < call.invoked:
                raise MalformedHistoryError(f"{call}: returns before it is invoked")
            before = last.get(call.thread)
            if before is not None and not before.precedes(call):
                raise MalformedHistoryError(f"{call}: thread {call.thread} invoked it before "
                                       f"the reply to {before}")
            last[call.thread] = call
        for call in self.calls:
            if call.op.manager == OBSERVE and (call.pending or any(
                    other is not call and not (other.precedes(call) or call.precedes(other))
                    for other in self.calls)):
                raise MalformedHistoryError(f"{call}: an observation is taken only at a "
                                            "quiescent point (no other call overlaps it)")
        object.__setattr__(self, "threads", tuple(sorted(last)))

    def __len__(self) -> int:
        return len(self.calls)

    def __iter__(self) -> Iterator[Call]:
        return iter(self.calls)

    def restrict(self, indices: Iterable[int]) -> History:
        """The sub-history of the calls at indices (in history order)."""
        return History(tuple(self.calls[i] for i in sorted(indices)))


class Recorder:
    """Builds a history from invocation and response events, as a driver sees them."""

    def __init__(self) -> None:
        self._calls: list[Call] = []
        self._open: dict[int, int] = {}  # thread -> index of its pending call

    def invoke(self, thread: int, op: Op, time: float) -> None:
        if thread in self._open:
            raise MalformedHistoryError(f"thread {thread} invokes {op} with a call pending")
        self._open[thread] = len(self._calls)
        self._calls.append(Call(thread, op, time))

    def respond(self, thread: int, reply: Reply, time: float) -> None:
        index = self._open.pop(thread, None)
        if index is None:
            raise MalformedHistoryError(f"thread {thread} responds with no call pending")
        call = self._calls[index]
        self._calls[index] = Call(call.thread, call.op, call.invoked, time, reply)

    def history(self) -> History:
        """The calls so far; those with no response yet are pending."""
        return History(tuple(self._calls))


# -- JSON (the form a recorded history is stored and reported in) ----------------------


def _value(value: object) -> Value:
    """A reply's result from JSON: a number, a boolean, or lists back to tuples."""
    if isinstance(value, bool | int):
        return value
    if isinstance(value, list):
        return tuple(_value(v) for v in value)
    raise TypeError(f"not a result: {value!r}")


def _arg(value: object) -> Arg:
    if isinstance(value, bool | int):
        return value
    raise TypeError(f"not an argument: {value!r}")


def to_json(history: History) -> list[dict[str, object]]:
    """history as JSON data: one object per call, in history order; a pending
    call has no ``returned`` and no ``reply``."""
    out: list[dict[str, object]] = []
    for call in history:
        entry: dict[str, object] = {"thread": call.thread, "manager": call.op.manager,
                                    "op": call.op.name, "args": list(call.op.args),
                                    "invoked": call.invoked}
        if call.returned is not None and call.reply is not None:
            entry["returned"] = call.returned
            entry["reply"] = [call.reply[0], call.reply[1]]
        out.append(entry)
    return out


def from_json(data: object) -> History:
    """The history to_json wrote; MalformedHistoryError for anything else."""
    if not isinstance(data, list):
        raise MalformedHistoryError("a history is a JSON list of calls")
    calls = []
    for entry in data:
        try:
            op = Op(str(entry["manager"]), str(entry["op"]),
                    tuple(_arg(a) for a in entry["args"]))
            reply = entry.get("reply")
            returned = entry.get("returned")
            calls.append(Call(int(entry["thread"]), op, float(entry["invoked"]),
                              None if returned is None else float(returned),
                              None if reply is None else (_value(reply[0]), int(reply[1]))))
        except (KeyError, TypeError, ValueError, IndexError) as error:
            raise MalformedHistoryError(f"not a call: {entry!r} ({error})") from error
    return History(tuple(calls))
