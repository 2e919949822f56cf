"""The oracle against the model itself, and the protocol's schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from proofs.oracle.protocol import ProtocolError, check_reply, validate
from proofs.oracle.report import describe
from proofs.oracle.run import load_trace, replay, save_trace, search
from proofs.oracle.session import differences
from proofs.oracle.world import MANAGERS, ModelWorld
from proofs.oracle.worlds.kernel import setup_calls
from tests.oracle_impls import python_impl

VALIDATING_MODEL = python_impl("-m", "proofs.oracle.model_shim", "--validate")


@pytest.mark.parametrize(("mode", "examples"), [("strict", 12), ("spec", 12)])
def test_the_model_passes_and_every_message_validates(mode: str, examples: int) -> None:
    """The shim validates every request it receives and every reply it sends and
    stops at the first that does not (a crash): passing means they all did.
    Every family runs (a chunk of 3 examples each), so every manager is used."""
    outcome = search(VALIDATING_MODEL, mode, max_examples=examples, steps=12, seed=3,
                     time_limit=300)
    assert outcome.divergence is None and outcome.unknown is None, describe(outcome)
    assert outcome.passed and outcome.examples >= examples
    managers = {manager for manager, _ in outcome.coverage.operations}
    assert managers == set(MANAGERS)
    assert outcome.skipped == []
    assert "PASSED" in describe(outcome)


def test_schema_rejects_what_the_protocol_does_not_say() -> None:
    validate({"id": 1, "manager": "KernelHeap", "op": "Alloc",
              "args": {"size": 1, "page_align": False}})
    for bad in ({"id": 0, "manager": "KernelHeap", "op": "Alloc", "args": {}},
                {"id": 1, "manager": "Nope", "op": "Alloc", "args": {}},
                {"id": 1, "result": 2 ** 32, "error": 0},
                {"id": 1, "result": 1, "error": -1},
                {"id": 1, "result": 1},
                {"protocol": 2, "implementation": "x", "managers": [], "observations": []}):
        with pytest.raises(ProtocolError):
            validate(bad)
    with pytest.raises(ProtocolError):
        validate({"used": [[1, 2, 3]]}, "FrameBitmap")
    sent = {"id": 4, "observe": "HoleIndex", "args": {}}
    check_reply(sent, {"id": 4, "observed": {"holes": [[20, 3221229568]]}})
    with pytest.raises(ProtocolError):
        check_reply(sent, {"id": 4, "observed": {"holes": [[20, "x"]]}})


def test_world_replies_match_the_model_calls() -> None:
    world = ModelWorld()
    replies = [world.call(manager, op, args) for manager, op, args in setup_calls(MANAGERS)]
    assert replies == [(True, 0)] * 3
    assert world.call("KernelHeap", "Alloc", {"size": 16, "page_align": True}) \
        == (0xC0002000, 0)
    assert world.call("KernelHeap", "Free", {"p": 0xC0002001}) == (False, 487)
    assert world.call("KernelHeap", "Alloc", {"size": 1}) == (False, 87)  # missing argument
    assert world.call("Nope", "Alloc", {}) == (False, 87)
    hex_bad = {"virtual_addr": 0xC0002000, "data": "zz"}
    assert world.call("VirtualMemoryManager", "WriteVirtualMemory", hex_bad) == (False, 87)


def test_differences_name_the_place() -> None:
    got = {"id": 3, "observed": {"holes": [[20, 1], [40, 2]]}}
    want = {"id": 3, "observed": {"holes": [[20, 1], [44, 2]]}}
    assert differences(got, want) == [".observed.holes[1][0]: implementation 40, model 44"]


def test_trace_round_trip(tmp_path: Path) -> None:
    """A saved trace replays; a file that is not a trace is refused."""
    ops = [{"manager": "KernelHeap", "op": "Alloc", "args": {"size": 24, "page_align": False}}]
    outcome = replay(VALIDATING_MODEL, "strict", ops)
    assert outcome.passed
    bogus = tmp_path / "bogus.json"
    bogus.write_text(json.dumps({"operations": ops}))
    with pytest.raises(ValueError):
        load_trace(bogus)
    assert callable(save_trace)
