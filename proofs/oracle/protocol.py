"""Messages of the oracle protocol (PROTOCOL.md) and their validation.

The schema ships with the package (``protocol.schema.json``); fastjsonschema
compiles each definition once into a Python function, so checking a reply
costs microseconds. A message that does not validate is the implementation's
divergence, never the oracle's crash.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, cast

import fastjsonschema

from proofs.oracle.managers import Message
from proofs.oracle.world import BOOL_RESULTS, OBSERVATIONS, OPERATIONS, PROTOCOL_VERSION

_decode = json.JSONDecoder().decode


class ProtocolError(Exception):
    """A message from the implementation that breaks the protocol."""


@cache
def schema() -> Message:
    text = resources.files("proofs.oracle").joinpath("protocol.schema.json").read_text()
    return cast(Message, json.loads(text))


@cache
def _validator(definition: str | None) -> Any:
    whole = schema()
    if definition is None:
        return fastjsonschema.compile(whole)
    return fastjsonschema.compile({"$ref": f"#/definitions/{definition}",
                                   "definitions": whole["definitions"]})


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


def parse(line: bytes) -> Message:
    try:
        message = _decode(line.decode())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"not JSON ({exc}): {line[:200]!r}") from None
    if not isinstance(message, dict):
        raise ProtocolError(f"not a JSON object: {line[:200]!r}")
    return message


def check_hello(message: Message) -> Hello:
    validate(message, "hello")
    if message["protocol"] != PROTOCOL_VERSION:
        raise ProtocolError(f"protocol {message['protocol']} (this oracle speaks "
                            f"{PROTOCOL_VERSION})")
    return Hello(message["implementation"], tuple(message["managers"]),
                 tuple(message["observations"]))


def request(ident: int, manager: str, op: str, args: Message) -> Message:
    return {"id": ident, "manager": manager, "op": op, "args": args}


def observation(ident: int, name: str, args: Message) -> Message:
    return {"id": ident, "observe": name, "args": args}


def same_reply(reply: Message, expected: Message) -> bool:
    """An operation's reply equal to the model's, types included (True == 1 in
    Python, not in JSON). The model's replies validate (tests/test_oracle_model.py),
    so an equal one needs no schema check: strict mode's fast path."""
    return (reply == expected and len(reply) == 3
            and type(reply.get("result")) is type(expected.get("result"))
            and type(reply.get("error")) is int)


def check_reply(sent: Message, reply: Message) -> None:
    """The reply to ``sent`` has its id and the right shape (result type included)."""
    if "observe" in sent:
        validate(reply, "observed")
        validate(reply["observed"], sent["observe"])
    else:
        validate(reply, "reply")
        want_bool = (sent["manager"], sent["op"]) in BOOL_RESULTS
        if isinstance(reply["result"], bool) != want_bool:
            raise ProtocolError(f"{sent['op']} returns a {'boolean' if want_bool else 'number'}"
                                f", not {json.dumps(reply['result'])}")
    if reply["id"] != sent["id"]:
        raise ProtocolError(f"reply id {reply['id']} to request {sent['id']}")


def known(manager: str, op: str) -> bool:
    return op in OPERATIONS.get(manager, {})


__all__ = ["OBSERVATIONS", "Message", "Hello", "ProtocolError", "check_hello", "check_reply",
           "parse", "request", "observation", "validate", "schema", "known"]
