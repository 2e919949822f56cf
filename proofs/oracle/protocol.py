"""Messages of the oracle protocol (PROTOCOL.md) and their validation.

The schema ships with the package (``protocol.schema.json``); fastjsonschema
compiles each definition once into a Python function, so checking a reply
costs microseconds. A message that does not validate is the implementation's
divergence, never the oracle's crash. A line is bounded before it is parsed
(:data:`NESTING_LIMIT`: the decoder and everything after it recurse), and the
protocol's numbers are integers: a fraction, an exponent, NaN or Infinity
(which Python's decoder accepts) is not one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources
from itertools import accumulate
from typing import Any, cast

import fastjsonschema
from hypothesis.errors import UnsatisfiedAssumption

from proofs.oracle.managers import Message
from proofs.oracle.register_form import REGISTER_OPS
from proofs.oracle.world import (
    BOOL_RESULTS,
    OBSERVATIONS,
    OPERATIONS,
    PARTS_OF,
    PROTOCOL_THREADS,
    PROTOCOL_VERSION,
)

#: The deepest nesting of arrays and objects accepted in a line (the protocol's
#: deepest message, a Processes observation, nests 6 deep).
NESTING_LIMIT = 32


class _NotAnIntegerError(ValueError):
    """A JSON number the protocol does not have."""


def _not_an_integer(text: str) -> int:
    raise _NotAnIntegerError(f"{text} is not an integer (the protocol's numbers are)")


_decode = json.JSONDecoder(parse_float=_not_an_integer,
                           parse_constant=_not_an_integer).decode
#: A JSON string (its brackets do not nest), and each byte's step in depth.
_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"')
_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


class ProtocolError(Exception):
    """A message from the implementation that breaks the protocol."""


@cache
def schema() -> Message:
    text = resources.files("proofs.oracle").joinpath("protocol.schema.json").read_text()
    return cast(Message, json.loads(text))


def _local(uri: str) -> Message:
    """The schema itself for a reference to its own ``$id``: fastjsonschema may
    resolve ``#/definitions/...`` against the ``$id`` (when it writes a detailed
    exception, for one), and must never reach for the network."""
    if uri.partition("#")[0] == schema()["$id"]:
        return schema()
    raise ProtocolError(f"the protocol schema refers outside itself: {uri}")


@cache
def _validator(definition: str | None) -> Any:
    whole = schema()
    handlers = {"https": _local, "http": _local}
    if definition is None:
        return fastjsonschema.compile(whole, handlers=handlers)
    return fastjsonschema.compile({"$id": whole["$id"], "$ref": f"#/definitions/{definition}",
                                   "definitions": whole["definitions"]}, handlers=handlers)


def validate(message: object, definition: str | None = None) -> None:
    """Raise ProtocolError unless message validates (against one definition, or
    against the whole schema: any message of the protocol)."""
    try:
        _validator(definition)(message)
    except fastjsonschema.JsonSchemaException as exc:
        shown = json.dumps(message)[:200] if _jsonable(message) else repr(message)[:200]
        raise ProtocolError(f"{definition or 'message'} does not validate: {exc}: "
                            f"{shown}") from None


def _jsonable(value: object) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


@dataclass(frozen=True)
class Hello:
    implementation: str
    managers: tuple[str, ...]
    observations: tuple[str, ...]
    #: The managers served in register form (PROTOCOL.md, "Register form").
    register_form: tuple[str, ...] = ()
    #: The operations never to be sent (PROTOCOL.md, "Partial managers"): those the
    #: hello names, and those of a manager's parts it does not declare.
    unsupported: frozenset[tuple[str, str]] = frozenset()
    #: The observations of those parts: no family needs them.
    unserved: frozenset[str] = frozenset()
    #: The parts of managers it leaves out, as "Manager.part".
    parts_left_out: tuple[str, ...] = ()
    #: The configuration the implementation declares (PROTOCOL.md, "Configuration").
    config: Message | None = None
    #: Protocol 3: the threads it runs concurrently (PROTOCOL.md, "Concurrency
    #: (protocol 3)"); 0: it declares no concurrency (protocol 1).
    threads: int = 0
    #: It answers a reset request by returning to the state of its hello
    #: (PROTOCOL.md, "Reset"): one process may serve several sequences.
    reset: bool = False


def nesting(line: bytes) -> int:
    """How deep the line's arrays and objects nest, without recursion (exact past
    NESTING_LIMIT; below it, perhaps only the number of brackets: a bound)."""
    if line.count(b"[") + line.count(b"{") <= NESTING_LIMIT:
        return line.count(b"[") + line.count(b"{")
    steps = _STRING.sub(b"", line).translate(_STEPS, _NOT_BRACKETS)
    return max(accumulate(memoryview(steps).cast("b")), default=0)


def parse(line: bytes) -> Message:
    """One line from the implementation: a JSON object, bounded before decoding."""
    if line.count(b"[") + line.count(b"{") > NESTING_LIMIT \
            and (depth := nesting(line)) > NESTING_LIMIT:
        raise ProtocolError(f"JSON nested {depth} levels deep (the limit is {NESTING_LIMIT}): "
                            f"{line[:60]!r}")
    try:
        message = _decode(line.decode())
    except _NotAnIntegerError as exc:
        raise ProtocolError(f"not a protocol message: {exc}: {line[:200]!r}") from None
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ProtocolError(f"not JSON ({exc}): {line[:200]!r}") from None
    if not isinstance(message, dict):
        raise ProtocolError(f"not a JSON object: {line[:200]!r}")
    return message


def check_hello(message: Message) -> Hello:
    version = message.get("protocol")
    if version not in (PROTOCOL_VERSION, PROTOCOL_THREADS) and type(version) is int:
        raise ProtocolError(f"protocol {version} (this oracle speaks {PROTOCOL_VERSION}, and "
                            f"{PROTOCOL_THREADS} for concurrency)")
    validate(message, "hello")
    unsupported, unserved = _partial(message)
    declared = set(message.get("parts", ()))
    managers = {name.partition(".")[0] for name in declared}
    left_out = tuple(f"{m}.{part}" for m in sorted(managers) for part in PARTS_OF[m]
                     if f"{m}.{part}" not in declared)
    return Hello(printable(message["implementation"]), tuple(message["managers"]),
                 tuple(message["observations"]), tuple(message.get("register_form", ())),
                 unsupported, unserved, left_out, message.get("config"),
                 int(message.get("threads", 0)), message.get("reset") is True)


def _partial(message: Message) -> tuple[frozenset[tuple[str, str]], frozenset[str]]:
    """The operations a hello's ``unsupported`` and ``parts`` leave out, and the
    observations of the parts it does not declare; a name PROTOCOL.md does not
    have is a protocol error."""
    unsupported: set[tuple[str, str]] = set()
    for name in message.get("unsupported", ()):
        manager, _, op = name.partition(".")
        if op not in OPERATIONS.get(manager, {}):
            raise ProtocolError(f"hello: unsupported names {name!r}, not an operation of "
                                "PROTOCOL.md (Manager.Op)")
        unsupported.add((manager, op))
    declared: dict[str, set[str]] = {}
    for name in message.get("parts", ()):
        manager, _, part = name.partition(".")
        if part not in PARTS_OF.get(manager, {}):
            raise ProtocolError(f"hello: parts names {name!r}, not a part of a manager "
                                f"(PROTOCOL.md: {', '.join(_part_names())})")
        declared.setdefault(manager, set()).add(part)
    unserved: set[str] = set()
    for manager, parts in declared.items():
        for part, (ops, observations) in PARTS_OF[manager].items():
            if part not in parts:
                unsupported |= {(manager, op) for op in ops}
                unserved |= set(observations)
    return frozenset(unsupported), frozenset(unserved)


def _part_names() -> list[str]:
    return [f"{m}.{p}" for m, parts in PARTS_OF.items() for p in parts]


#: Control characters (C0, DEL, C1) as escapes: none reaches a terminal or the
#: JUnit XML (where most are not allowed at all).
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(32), *range(127, 160))}


def printable(text: str, keep: str = "") -> str:
    """text with its control characters (but those in keep) escaped."""
    return text.translate({c: e for c, e in _CONTROLS.items() if chr(c) not in keep})


#: Pages (and frames) of a 32-bit space: the most one observation's runs may cover.
SPACE_PAGES = 1 << 20
#: Pages of the largest file CreateFile makes (1 MB).
FILE_PAGES = 256
#: The runs (first, count) of each observation that a judge expands page by page:
#: where they are (a path; "*" every item), where first and count are in a run,
#: and what bounds first + count ("frames": the physical memory set up).
RUNS: dict[str, tuple[tuple[tuple[str, ...], int | str, int | str, str], ...]] = {
    "FrameBitmap": ((("used",), 0, 1, "frames"),),
    "Processes": ((("processes", "*", "pages"), 0, 1, "pages"),
                  (("processes", "*", "ptes"), 0, 1, "pages")),
    "MappedFiles": ((("views",), "first", "count", "file pages"),),
}


#: Single values a judge counts up to, and what bounds them.
SIZES: dict[str, tuple[tuple[tuple[str, ...], str, str], ...]] = {
    "FrameCounts": (((), "frames", "frames"),),
    "MappedFiles": ((("files",), "size", "file bytes"),),
}


#: The byte observations: the bytes their data must have (an argument, or a number).
BYTE_COUNTS: dict[str, str | int] = {"ReadBytes": "length", "ReadPhysical": "length",
                                     "ProcessBytes": "length", "FileBytes": "length",
                                     "FrameBytes": 4096}


def byte_count(name: str, args: Message, observed: Message) -> str | None:
    """Why a byte observation's data is not the bytes asked for (None: it is, or
    it is null): PROTOCOL.md gives each exactly ``length`` bytes (FrameBytes a
    whole frame), so that no judge reads a short reply as the memory's bytes."""
    wanted = BYTE_COUNTS.get(name)
    data = observed.get("data")
    count = args.get(wanted) if isinstance(wanted, str) else wanted
    if not isinstance(data, str) or type(count) is not int or len(data) == 2 * count:
        return None
    return f"{name} asked for {count} bytes; the reply has {len(data) // 2}"


def _items(value: Any, path: tuple[str, ...]) -> Iterator[Any]:
    if not path:
        yield from value
        return
    key, *rest = path
    for inner in (value if key == "*" else [value[key]]):
        yield from _items(inner, tuple(rest))


def extent(name: str, observed: Message, frames: int) -> str | None:
    """Why an observation is too large to judge (None: it is not): its runs
    must end inside their space (``frames`` frames of the physical memory set up,
    the 32-bit space's pages, a 1 MB file's pages) and together cover at most
    SPACE_PAGES, its frame count and file sizes stay inside theirs: no reply
    makes a judge build billions of entries or ask for a file page by page
    for ever."""
    limits = {"frames": min(frames, SPACE_PAGES), "pages": SPACE_PAGES,
              "file pages": FILE_PAGES, "file bytes": FILE_PAGES << 12}
    for path, key, space in SIZES.get(name, ()):
        for item in (_items(observed, path) if path else [observed]):
            if item[key] > limits[space]:
                return f"{name} reports {key} {item[key]}, past the {limits[space]} {space}"
    total = 0
    for path, first, count, space in RUNS.get(name, ()):
        for run in _items(observed, path):
            if run[first] + run[count] > limits[space]:
                return (f"{name} reports a run of {run[count]} {space} from {run[first]}, "
                        f"past the {limits[space]} {space} there are")
            total += run[count]
    if total > SPACE_PAGES:
        return f"{name} reports runs of {total} pages in all, more than {SPACE_PAGES} can be"
    return None


def request(ident: int, manager: str, op: str, args: Message) -> Message:
    return {"id": ident, "manager": manager, "op": op, "args": args}


def reset_request(ident: int) -> Message:
    """Between two sequences in one process (PROTOCOL.md, "Reset")."""
    return {"id": ident, "reset": True}


def observation(ident: int, name: str, args: Message) -> Message:
    return {"id": ident, "observe": name, "args": args}


def same_reply(reply: Message, expected: Message) -> bool:
    """An operation's reply equal to the model's, types included (True == 1 in
    Python, not in JSON). The model's replies validate (tests/test_oracle_model.py),
    so an equal one needs no schema check: strict mode's fast path."""
    return (reply == expected and len(reply) == 3
            and type(reply.get("result")) is type(expected.get("result"))
            and type(reply.get("error")) is int)


def check_id(sent: Message, reply: Message) -> None:
    """The reply carries the id of ``sent``: replies come in request order, so a
    smaller id was answered already."""
    ident = reply.get("id")
    if ident == sent["id"] or type(ident) is not int:
        return
    if 1 <= ident < sent["id"]:
        raise ProtocolError(f"replied twice to #{ident}: a second reply with id {ident} came "
                            f"where the reply to #{sent['id']} was due")
    raise ProtocolError(f"reply id {ident} where the reply to #{sent['id']} was due "
                        "(replies come in request order)")


class OperationUnsupported(UnsatisfiedAssumption):
    """The implementation does not implement this operation (PROTOCOL.md,
    "Unsupported operations"): declared so in its hello (the oracle never sends
    it) or answered ``{"id": N, "unsupported": true}``. Not a pass, not a
    divergence: the sequence is dropped (hypothesis' assumption, so the search
    goes on with others) and the operation counted as skipped."""

    def __init__(self, manager: str, op: str, declared: bool) -> None:
        super().__init__(f"{manager}.{op} is not supported by the implementation")
        self.manager, self.op, self.declared = manager, op, declared


def check_reply(sent: Message, reply: Message) -> None:
    """The reply to ``sent`` has its id and the right shape (result type included);
    an operation answered "unsupported" raises OperationUnsupported."""
    check_id(sent, reply)
    if "reset" in sent:
        validate(reply, "reset")
        return
    if "op" in sent and "unsupported" in reply:
        validate(reply, "unsupported")
        raise OperationUnsupported(sent["manager"], sent["op"], declared=False)
    if "observe" in sent:
        validate(reply, "observed")
        validate(reply["observed"], sent["observe"])
    else:
        validate(reply, "reply")
        if sent["op"] in REGISTER_OPS:
            validate(reply["result"], "registers")
            return
        if isinstance(reply["result"], dict):
            raise ProtocolError(f"{sent['op']} returns a number or a boolean, not a register "
                                "object")
        want_bool = (sent["manager"], sent["op"]) in BOOL_RESULTS
        if isinstance(reply["result"], bool) != want_bool:
            raise ProtocolError(f"{sent['op']} returns a {'boolean' if want_bool else 'number'}"
                                f", not {json.dumps(reply['result'])}")


def known(manager: str, op: str) -> bool:
    return op in OPERATIONS.get(manager, {})


__all__ = ["OBSERVATIONS", "Message", "Hello", "ProtocolError", "OperationUnsupported",
           "check_hello", "check_reply",
           "parse", "request", "observation", "reset_request", "validate", "schema", "known",
           "printable",
           "NESTING_LIMIT", "SPACE_PAGES", "byte_count", "extent"]
