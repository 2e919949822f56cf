"""The oracle's dos family: the model world's DOS manager, the model passing both
modes, broken models caught by name in spec mode, strict mode, traces."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from proofs.machines.dos_memory import DOS_MODEL_VARIANTS
from proofs.oracle.__main__ import main
from proofs.oracle.families.dos import DOS, INITIALIZE, dos_setup
from proofs.oracle.protocol import ProtocolError, validate
from proofs.oracle.report import describe
from proofs.oracle.run import Outcome, load_trace, replay, save_trace, search, trace_of
from proofs.oracle.world import MANAGERS, ModelWorld
from tests.oracle_impls import python_impl

DOS_MANAGER = "DosMemoryManager"


def shim(*variant: str) -> str:
    return python_impl("-m", "proofs.oracle.model_shim", "--validate",
                       *(("--variant", f"dos:{variant[0]}") if variant else ()))


def dos_world() -> ModelWorld:
    world = ModelWorld()
    for manager, op, args in dos_setup(MANAGERS):
        assert world.call(manager, op, args) == (True, 0)
    return world


def call(world: ModelWorld, op: str, **args: Any) -> tuple[Any, int]:
    return world.call(DOS_MANAGER, op, args)


def observed(world: ModelWorld) -> dict[str, Any]:
    return {name: world.observe(name, {}) for name in ("McbChain", "XmsHandles", "EmsMappings")}


def test_setup_builds_the_dos_machines_world() -> None:
    world = ModelWorld()
    assert call(world, "AllocateDosMemory", paragraphs=1) == (0, 21)  # before Initialize
    assert world.observe("McbChain", {})["low"] == []
    world = dos_world()
    assert call(world, "Initialize", **INITIALIZE) == (False, 1247)
    chain = world.observe("McbChain", {})
    assert chain == {"first_segment": 0x800, "umb_start": 0xC800, "umb_end": 0xE000,
                     "linked": False, "strategy": 0,
                     "low": [[0x800, 0x5A, 0, 0x9FFF - 0x801]],  # up to the UMB head
                     "high": [[0xC800, 0x5A, 0, 0x17FF]]}
    assert world.observe("XmsHandles", {}) == {"handles": [], "pool_end": 0x200000}
    assert world.observe("EmsMappings", {}) == {"handles": [[0, []]], "slots": [None] * 4,
                                                "total_pages": 8}
    for name, value in observed(world).items():
        validate(value, name)


def test_calls_encode_results_and_code_spaces() -> None:
    world = dos_world()
    segment, error = call(world, "AllocateDosMemory", paragraphs=0x10)
    assert (segment, error) == (0x801, 0)
    assert call(world, "FreeDosMemory", segment=0x800) == (False, 9)  # DOS error
    assert call(world, "XmsAllocate", kb=4) == (1, 0)
    assert call(world, "XmsLock", handle=1) == (0x110000, 0)
    assert call(world, "XmsFree", handle=1) == (False, 0xAB)  # XMS BL: locked
    assert call(world, "XmsGetHandleInfo", handle=1) == (1 << 24 | 31 << 16 | 4, 0)
    assert call(world, "XmsGetHandleInfo", handle=9) == (0, 0xA2)
    largest = (0x200000 - 0x110000) // 1024 - 4
    assert call(world, "XmsQueryFree") == (largest << 16 | largest, 0)
    assert call(world, "EmsAllocate", pages=9) == (0, 0x87)  # EMS AH
    assert call(world, "AllocateEmsPages", pages=2) == (1, 0)
    assert call(world, "EmsGetPageCounts") == (6 << 16 | 8, 0)
    assert call(world, "FreeEmsPages", handle=5) == (False, 0x83)  # the seed's: EMS code
    assert call(world, "MapEmsPageToPhysical", page_num=1, segment=0xE400) == (True, 0)
    assert world.observe("EmsMappings", {})["slots"] == [None, [1, 1], None, None]


def test_bad_arguments_fail_and_change_nothing() -> None:
    world = dos_world()
    call(world, "AllocateDosMemory", paragraphs=4)
    before = observed(world)
    for op, args in (("AllocateDosMemory", {"paragraphs": -1}),
                     ("ResizeDosMemory", {"segment": "ab", "paragraphs": 1}),
                     ("SetUmbLink", {"linked": 3}), ("XmsMove", dict.fromkeys(
                         ("length", "src_handle", "src_offset", "dst_handle", "dst_offset"), "")),
                     ("EmsMap", {"handle": True, "logical": 0, "physical": 0}),
                     ("WriteMemory", {"address": 0x100000 - 1, "data": "0000"}),
                     ("WriteMemory", {"address": 0x8000, "data": "zz"})):
        result, error = call(world, op, **args)
        assert result in (False, 0) and error != 0, (op, result, error)
    assert call(world, "AllocateDosMemory") == (False, 87)  # missing argument
    assert observed(world) == before
    assert world.observe("ReadPhysical", {"address": 0x400000 - 2, "length": 4}) == {"data": None}


def test_a_write_reads_back_and_a_damaged_chain_is_error_7() -> None:
    world = dos_world()
    assert call(world, "WriteMemory", address=0x8010, data="c0ffee") == (True, 0)
    assert world.observe("ReadPhysical", {"address": 0x8010, "length": 3}) == {"data": "c0ffee"}
    assert call(world, "WriteMemory", address=0x8000, data="00") == (True, 0)
    assert world.observe("McbChain", {})["low"] == [[0x800, 0, 0, 0x9FFF - 0x801]]
    assert call(world, "AllocateDosMemory", paragraphs=1) == (0, 7)


def test_the_schema_knows_the_dos_observations() -> None:
    with pytest.raises(ProtocolError):
        validate({"handles": [[1, 2, 3]], "pool_end": 0}, "XmsHandles")
    with pytest.raises(ProtocolError):
        validate({"handles": [], "slots": [None], "total_pages": 8}, "EmsMappings")
    validate({"id": 1, "observe": "ReadPhysical", "args": {"address": 0, "length": 16}})


def dos_ran(outcome: Outcome) -> None:
    assert outcome.coverage.operations[DOS_MANAGER, "Initialize"] >= 1, describe(outcome)


@pytest.mark.parametrize(("mode", "examples"), [("strict", 4), ("spec", 2)])
def test_the_model_passes_both_modes(mode: str, examples: int) -> None:
    outcome = search(shim(), mode, max_examples=examples, steps=12, seed=2, time_limit=120,
                     shrink_seconds=2, families=("dos",))
    assert outcome.passed, describe(outcome)
    dos_ran(outcome)


def op(name: str, **args: Any) -> dict[str, Any]:
    return {"manager": DOS_MANAGER, "op": name, "args": args}


#: Short sequences on which a broken model breaks what it is named for.
BREAKING = {
    "free_merges_neighbours": [op("AllocateDosMemory", paragraphs=0x10),
                               op("AllocateDosMemory", paragraphs=0x10),
                               op("FreeDosMemory", segment=0x812)],
    "walk_follows_bad_type": [op("AllocateDosMemory", paragraphs=0x10),
                              op("WriteMemory", address=0x8000, data="00"),
                              op("FreeDosMemory", segment=0x801),
                              op("WriteMemory", address=0x8000, data="4d")],
    "xms_free_of_locked_block": [op("XmsAllocate", kb=4), op("XmsLock", handle=1),
                                 op("XmsFree", handle=1)],
    "ems_map_keeps_old_slot": [op("EmsAllocate", pages=2), op("EmsMap", handle=1, logical=0,
                                                               physical=0),
                               op("EmsMap", handle=1, logical=0, physical=1)],
}


@pytest.mark.parametrize("variant", sorted(BREAKING))
def test_spec_mode_names_what_a_broken_model_breaks(variant: str) -> None:
    catches = next(v.catches for v in DOS_MODEL_VARIANTS if v.name == variant)
    outcome = replay(shim(variant), "spec", BREAKING[variant], family="dos")
    assert outcome.divergence is not None, describe(outcome)
    assert set(catches) & set(outcome.divergence.violated), describe(outcome)


def test_the_model_passes_the_breaking_sequences() -> None:
    ops = [step for name in sorted(BREAKING, reverse=True) for step in BREAKING[name]]
    outcome = replay(shim(), "spec", ops, family="dos")
    assert outcome.passed, describe(outcome)
    assert outcome.coverage.errors[DOS_MANAGER, "FreeDosMemory", 7] == 1  # the damaged chain


def test_strict_mode_catches_a_reply_that_differs() -> None:
    outcome = replay(shim("free_merges_neighbours"), "strict", BREAKING["free_merges_neighbours"],
                     family="dos")
    assert outcome.divergence is not None, describe(outcome)
    assert outcome.divergence.violated == ("strict",)
    assert "McbChain" in outcome.divergence.reason


def test_search_finds_a_broken_model_and_its_trace_replays(tmp_path: Path) -> None:
    broken = shim("free_merges_neighbours")
    outcome = search(broken, "spec", max_examples=3, steps=15, seed=1, time_limit=120,
                     shrink_seconds=2, families=("dos",))
    assert outcome.divergence is not None and outcome.family == "dos", describe(outcome)
    assert {"DOS-2", "transition"} & set(outcome.divergence.violated)
    assert any("MCB" in line for line in DOS.memory_map(outcome.divergence.exchanges))
    path = tmp_path / "dos.json"
    save_trace(path, trace_of(outcome, [*MANAGERS]))
    trace = load_trace(path)
    assert trace["family"] == "dos" and trace["operations"]
    again = replay(broken, "spec", trace["operations"], family="dos")
    assert again.divergence is not None, describe(again)
    assert again.divergence.violated == outcome.divergence.violated
    assert replay(shim(), "spec", trace["operations"], family="dos").passed


def test_the_cli_runs_one_family(capsys: pytest.CaptureFixture[str]) -> None:
    """--family dos: only DOS sequences (the set-up's PageManager call aside)."""
    status = main(["--impl", shim(), "--family", "dos", "--mode", "strict", "--max-examples",
                   "3", "--steps", "6", "--quiet"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "DosMemoryManager" in out and "KernelHeap" not in out and "SystemCalls" not in out
