"""PROTOCOL.md's written facts are the oracle's: each family's starting state (the
JSON blocks of "Starting states") is what the model world reports after that
family's set-up calls, the C fixture reports the kernel family's the same, and
the trace example has the shape a saved trace has."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from proofs.oracle.concurrent import POOL_SETUP
from proofs.oracle.families import FAMILIES, family_named
from proofs.oracle.protocol import check_hello, validate
from proofs.oracle.run import TRACE_FORMAT, _step_shape
from proofs.oracle.world import MANAGERS, ModelWorld
from tests.oracle_impls import build_c

PROTOCOL = Path(__file__).resolve().parent.parent / "proofs" / "oracle" / "PROTOCOL.md"
BLOCK = re.compile(r"^```json\n(.*?)^```", re.M | re.S)


def json_blocks() -> list[dict[str, Any]]:
    out = []
    for body in BLOCK.findall(PROTOCOL.read_text()):
        try:
            value = json.loads(body)
        except json.JSONDecodeError:
            continue  # an example of several messages, one a line
        out.append(value)
    return out


def starting_states() -> dict[str, dict[str, Any]]:
    return {b["family"]: b for b in json_blocks() if "family" in b and "format" not in b}


def after_setup(family: str) -> ModelWorld:
    world = ModelWorld()
    for manager, op, args in family_named(family).setup(MANAGERS):
        assert world.call(manager, op, args)[1] == 0, (family, op)
    return world


def test_every_family_has_its_starting_state_written() -> None:
    assert set(starting_states()) == {f.name for f in FAMILIES}


@pytest.mark.parametrize("family", [f.name for f in FAMILIES])
def test_the_written_starting_state_is_the_worlds(family: str) -> None:
    written = starting_states()[family]
    world = after_setup(family)
    for name, value in written.items():
        if name != "family":
            assert world.observe(name, {}) == value, f"{family}: {name}"


def test_the_c_fixture_starts_where_the_protocol_says(tmp_path: Path) -> None:
    """The kernel family's written state is what the C implementation reports too
    after the same set-up calls (its own, independent code)."""
    written = starting_states()["kernel"]
    calls = family_named("kernel").setup(MANAGERS)
    lines = [json.dumps({"id": n, "manager": m, "op": op, "args": args})
             for n, (m, op, args) in enumerate(calls, 1)]
    names = [k for k in written if k != "family"]
    lines += [json.dumps({"id": len(calls) + n, "observe": name, "args": {}})
              for n, name in enumerate(names, 1)]
    binary = build_c(tmp_path).strip("'")
    done = subprocess.run([binary], input="\n".join(lines) + "\n", capture_output=True,
                          text=True, timeout=20)
    replies = [json.loads(line) for line in done.stdout.splitlines()[1:]]
    assert [r["result"] for r in replies[:len(calls)]] == [True] * len(calls)
    for name, reply in zip(names, replies[len(calls):], strict=True):
        assert reply["observed"] == written[name], name


def test_the_trace_example_is_a_trace() -> None:
    trace = next(b for b in json_blocks() if b.get("format") == TRACE_FORMAT)
    assert trace["family"] in {f.name for f in FAMILIES}
    assert all(_step_shape(step) for step in trace["operations"])
    kinds = {("op" in s) + 2 * ("look" in s) + 4 * ("inspect" in s) for s in trace["operations"]}
    assert kinds == {1, 2, 4}


def test_the_concurrency_examples_are_the_protocols(tmp_path: Path) -> None:
    """PROTOCOL.md's protocol 3 hello is one, each line of its example run
    validates, and the C fixture's THREADS build says hello as written."""
    section = PROTOCOL.read_text().split("## Concurrency (protocol 3)")[1].split("\n## ")[0]
    blocks = BLOCK.findall(section)
    hello = check_hello(json.loads(blocks[0]))
    assert hello.threads == 8
    lines = [json.loads(line) for line in blocks[1].splitlines()]
    for message in lines:
        validate(message)
    threaded = [m for m in lines if "thread" in m and "result" in m]
    assert threaded and all(m["invoked"] <= m["returned"] for m in threaded)
    binary = build_c(tmp_path, "THREADS").strip("'")
    done = subprocess.run([binary], input="", capture_output=True, text=True, timeout=20)
    written = check_hello(json.loads(done.stdout.splitlines()[0]))
    assert written.threads > 0 and "KernelHeap" in written.managers
    assert "MemoryPool" in written.managers  # its pool, for --pool
    create = re.search(r'`(\{"manager": "MemoryPool".*?\})`', section)
    assert create is not None
    message = json.loads(create.group(1))
    validate({"id": 1, **message}, "request")
    assert (message["manager"], message["op"], message["args"]) == POOL_SETUP
