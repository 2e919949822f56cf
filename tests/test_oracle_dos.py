"""The oracle's dos family: the model world's DOS manager, the model passing both
modes, broken models caught by name in spec mode, strict mode, traces."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from proofs.machines.dos_memory import DOS_MODEL_VARIANTS
from proofs.oracle.__main__ import main
from proofs.oracle.families.dos import DOS, INITIALIZE, dos_setup
from proofs.oracle.families.dos_registers import (
    from_registers,
    move_write,
    register_problems,
    seed_call,
    to_registers,
)
from proofs.oracle.protocol import ProtocolError, check_hello, check_reply, validate
from proofs.oracle.report import describe
from proofs.oracle.run import Outcome, load_trace, replay, save_trace, search, trace_of
from proofs.oracle.world import MANAGERS, ModelWorld
from tests.oracle_impls import python_impl

DOS_MANAGER = "DosMemoryManager"


def shim(*variant: str, registers: bool = False) -> str:
    return python_impl("-m", "proofs.oracle.model_shim", "--validate",
                       *(("--variant", f"dos:{variant[0]}") if variant else ()),
                       *(("--register-form",) if registers else ()))


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


@pytest.mark.parametrize("registers", [False, True], ids=["seed-form", "register-form"])
@pytest.mark.parametrize("variant", sorted(BREAKING))
def test_spec_mode_names_what_a_broken_model_breaks(variant: str, registers: bool) -> None:
    catches = next(v.catches for v in DOS_MODEL_VARIANTS if v.name == variant)
    outcome = replay(shim(variant, registers=registers), "spec", BREAKING[variant],
                     family="dos")
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
    outcome = search(broken, "spec", max_examples=12, steps=15, seed=1, time_limit=120,
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


# -- the register form (PROTOCOL.md, "Register form") ----------------------------------

#: Every call of dos_registers.TABLE once, in an order where each succeeds (the
#: block at 0801h, XMS handle 1, EMS handle 1) but AllocateDosMemory(FFFFh)
#: (error 8) and the XmsFree of a locked block (ABh).
EVERY_REGISTER_CALL = [
    op("AllocateDosMemory", paragraphs=0x10), op("ResizeDosMemory", segment=0x801,
                                                 paragraphs=0x20),
    op("AllocateDosMemory", paragraphs=0xFFFF), op("GetAllocationStrategy"),
    op("SetAllocationStrategy", strategy=0x80), op("GetUmbLink"), op("SetUmbLink", linked=True),
    op("SetUmbLink", linked=False), op("SetAllocationStrategy", strategy=0),
    op("WriteMemory", address=0x8010, data="0102030405060708"),
    op("XmsQueryFree"), op("XmsAllocate", kb=4), op("XmsLock", handle=1),
    op("XmsGetHandleInfo", handle=1), op("XmsFree", handle=1), op("XmsUnlock", handle=1),
    op("XmsMove", length=8, src_handle=0, src_offset=0x0801 << 16, dst_handle=1, dst_offset=2),
    op("XmsReallocate", handle=1, kb=8),
    op("EmsGetStatus"), op("EmsGetPageFrame"), op("EmsGetPageCounts"), op("EmsAllocate", pages=2),
    op("EmsMap", handle=1, logical=1, physical=2), op("EmsGetHandlePages", handle=1),
    op("EmsGetVersion"), op("EmsGetHandleCount"), op("EmsMap", handle=1, logical=0xFFFF,
                                                     physical=2),
    op("EmsDeallocate", handle=1), op("XmsFree", handle=1), op("FreeDosMemory", segment=0x801)]


def test_registers_say_what_the_seed_calls_return() -> None:
    """Each call in register form, read back, is the seed-level call's result and
    error on a twin world; every register of the reply is the model's Int21h /
    XmsCall / Int67h answer; the register step reads back as the same call."""
    seed, regs = dos_world(), dos_world()
    for step in EVERY_REGISTER_CALL:
        name, args = step["op"], step["args"]
        form = to_registers(name, args)
        assert (form is None) == (name == "WriteMemory"), name
        if form is None:
            assert call(seed, name, **args) == call(regs, name, **args) == (True, 0)
            continue
        if name == "XmsMove":
            assert call(regs, "WriteMemory", **move_write(args)) == (True, 0)
        out, error = regs.call(DOS_MANAGER, *form)
        assert isinstance(out, dict)
        validate(out, "registers")
        assert from_registers(name, out) == call(seed, name, **args), name
        assert error == from_registers(name, out)[1]
        assert register_problems(name, form[1], out) == [], name
        structure = bytes.fromhex(move_write(args)["data"]) if name == "XmsMove" else None
        assert seed_call(form[0], form[1], structure) == (name, args), name
    assert observed(seed) == observed(regs)
    assert seed.observe("ReadPhysical", {"address": 0x110000, "length": 12}) \
        == regs.observe("ReadPhysical", {"address": 0x110000, "length": 12})


def test_what_no_register_holds_stays_in_seed_form() -> None:
    for name, args in (("AllocateDosMemory", {"paragraphs": 0x10000}),
                       ("AllocateDosMemory", {"paragraphs": -1}),
                       ("SetAllocationStrategy", {"strategy": 0x100}),
                       ("SetUmbLink", {"linked": 1}), ("EmsMap", {"handle": 1, "logical": 0,
                                                                  "physical": 0x100}),
                       ("XmsMove", {"length": 1 << 32, "src_handle": 0, "src_offset": 0,
                                    "dst_handle": 1, "dst_offset": 0}),
                       ("GetDosLargestBlock", {}), ("AllocateXmsMemory", {"bytes": 1024})):
        assert to_registers(name, args) is None, name
    assert to_registers("AllocateDosMemory", {"paragraphs": 0xFFFF}) == (
        "Int21h", {"eax": 0x4800, "ebx": 0xFFFF, "ecx": 0, "edx": 0, "esi": 0, "edi": 0,
                   "ds": 0, "es": 0, "carry": False})
    assert to_registers("EmsMap", {"handle": 3, "logical": 5, "physical": 2})[1] == {
        "eax": 0x4402, "ebx": 5, "ecx": 0, "edx": 3, "esi": 0, "edi": 0, "ds": 0, "es": 0,
        "carry": False}


def test_the_protocol_knows_the_register_form() -> None:
    hello = {"protocol": 1, "implementation": "x", "managers": [DOS_MANAGER],
             "observations": [], "register_form": [DOS_MANAGER]}
    assert check_hello(hello).register_form == (DOS_MANAGER,)
    with pytest.raises(ProtocolError):
        check_hello({**hello, "register_form": ["KernelHeap"]})
    assert check_hello({k: v for k, v in hello.items() if k != "register_form"}
                       ).register_form == ()
    sent = {"id": 3, "manager": DOS_MANAGER, "op": "Int21h",
            "args": {**dict.fromkeys(("eax", "ebx", "ecx", "edx", "esi", "edi", "ds", "es"), 0),
                     "carry": False}}
    validate(sent)
    good = {**sent["args"], "eax": 0x801}
    check_reply(sent, {"id": 3, "result": good, "error": 0})
    for bad in (0x801, {**good, "ds": 0x10000}, {**good, "carry": 0},
                {k: v for k, v in good.items() if k != "edi"}, {**good, "eflags": 0}):
        with pytest.raises(ProtocolError):
            check_reply(sent, {"id": 3, "result": bad, "error": 0})
    seed = {"id": 4, "manager": DOS_MANAGER, "op": "AllocateDosMemory",
            "args": {"paragraphs": 1}}
    with pytest.raises(ProtocolError):
        check_reply(seed, {"id": 4, "result": good, "error": 0})


@pytest.mark.parametrize("mode", ["strict", "spec"])
def test_every_call_goes_in_register_form(mode: str) -> None:
    outcome = replay(shim(registers=True), mode, EVERY_REGISTER_CALL, family="dos")
    assert outcome.passed, describe(outcome)
    sent = outcome.coverage.operations
    assert {name for (_, name) in sent} == {"InitializePhysicalMemory", "Initialize",
                                            "WriteMemory", "Int21h", "XmsCall", "Int67h"}
    assert sent[DOS_MANAGER, "Int21h"] == 10 and sent[DOS_MANAGER, "XmsCall"] == 9
    assert sent[DOS_MANAGER, "Int67h"] == 10
    assert sent[DOS_MANAGER, "WriteMemory"] == 2  # the program's and the move structure
    assert outcome.coverage.errors[DOS_MANAGER, "Int21h", 8] == 1
    assert outcome.coverage.errors[DOS_MANAGER, "XmsCall", 0xAB] == 1


@pytest.mark.parametrize(("mode", "examples"), [("strict", 6), ("spec", 3)])
def test_the_model_in_register_form_passes_both_modes(mode: str, examples: int) -> None:
    outcome = search(shim(registers=True), mode, max_examples=examples, steps=15, seed=5,
                     time_limit=120, shrink_seconds=2, families=("dos",))
    assert outcome.passed, describe(outcome)
    dos_ran(outcome)
    assert outcome.coverage.operations[DOS_MANAGER, "Int21h"] > 0
    assert outcome.coverage.operations[DOS_MANAGER, "AllocateDosMemory"] == 0


#: The model in register form, one register of INT 21h's answer wrong: BX as the
#: caller loaded it after error 8 (not the largest block), AX left at 4900h
#: after a successful 49h (not the MCB's segment), or ECX's high word changed.
TAMPERING = """
import json, sys
from proofs.oracle.world import MANAGERS, OBSERVATIONS, ModelWorld
how = sys.argv[1]
def out(message):
    sys.stdout.write(json.dumps(message) + "\\n"); sys.stdout.flush()
out({"protocol": 1, "implementation": "tampering model", "managers": list(MANAGERS),
     "observations": list(OBSERVATIONS), "register_form": ["DosMemoryManager"]})
world = ModelWorld()
for line in sys.stdin:
    request = json.loads(line)
    reply = world.handle(request)
    if request.get("op") == "Int21h":
        regs, sent = reply["result"], request["args"]
        if how == "bx-after-8" and regs["carry"] and regs["eax"] & 0xFFFF == 8:
            regs["ebx"] = sent["ebx"]
        if how == "ax-after-49" and sent["eax"] >> 8 == 0x49 and not regs["carry"]:
            regs["eax"] = sent["eax"]
        if how == "clobbers-ecx":
            regs["ecx"] = 0xDEAD0000
    out(reply)
"""


@pytest.mark.parametrize(("how", "ops", "register"), [
    ("bx-after-8", [op("AllocateDosMemory", paragraphs=0xFFFF)],
     "BX: expected 0x97fe, observed 0xffff"),
    ("ax-after-49", [op("AllocateDosMemory", paragraphs=0x10), op("FreeDosMemory",
                                                                  segment=0x801)],
     "AX: expected 0x0800, observed 0x4900"),
    ("clobbers-ecx", [op("GetUmbLink")], "ECX[31:16]: expected 0x0000, observed 0xdead")])
def test_strict_mode_names_a_wrong_register(tmp_path: Path, how: str, ops: list[Any],
                                            register: str) -> None:
    script = tmp_path / "tampering.py"
    script.write_text(TAMPERING)
    outcome = replay(python_impl(str(script), how), "strict", ops, family="dos")
    assert outcome.divergence is not None, describe(outcome)
    assert outcome.divergence.violated == ("register",)
    assert register in outcome.divergence.reason, outcome.divergence.reason
    assert "Int21h(AX=" in describe(outcome)  # the report shows registers as a debugger does
    assert replay(python_impl(str(script), "none"), "strict", ops, family="dos").passed


def test_a_register_trace_replays_in_both_forms(tmp_path: Path) -> None:
    """A register-form divergence's trace holds Int21h steps; spec mode replays
    them (read back as their seed-level calls) against either form."""
    broken = shim("free_merges_neighbours", registers=True)
    outcome = replay(broken, "spec", BREAKING["free_merges_neighbours"], family="dos")
    assert outcome.divergence is not None, describe(outcome)
    path = tmp_path / "registers.json"
    save_trace(path, trace_of(outcome, [*MANAGERS]))
    steps = load_trace(path)["operations"]
    assert {s["op"] for s in steps} == {"Int21h"}
    again = replay(broken, "spec", steps, family="dos")
    assert again.divergence is not None
    assert again.divergence.violated == outcome.divergence.violated
    assert replay(shim("free_merges_neighbours"), "spec", steps, family="dos").divergence
    assert replay(shim(), "spec", steps, family="dos").passed
    assert replay(shim(registers=True), "strict", steps, family="dos").passed


def register_steps(ops: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """ops as a register-form trace holds them (XmsMove: its structure's store first)."""
    steps = []
    for step in ops:
        form = to_registers(step["op"], step["args"])
        if form is None:
            steps.append(step)
            continue
        if step["op"] == "XmsMove":
            steps.append(op("WriteMemory", **move_write(step["args"])))
        steps.append(op(form[0], **form[1]))
    return steps


def test_spec_mode_reads_register_steps_back_as_seed_calls() -> None:
    """Every register step, XMS 0Bh's structure included, replays in spec mode
    against a seed-form implementation as the call it stands for."""
    outcome = replay(shim(), "spec", register_steps(EVERY_REGISTER_CALL), family="dos")
    assert outcome.passed, describe(outcome)
    sent = outcome.coverage.operations
    assert sent[DOS_MANAGER, "XmsMove"] == 1 and sent[DOS_MANAGER, "EmsMap"] == 2
    assert not {"Int21h", "XmsCall", "Int67h"} & {name for (_, name) in sent}
    unknown = replay(shim(), "spec", [op("Int21h", **{**register_steps(
        EVERY_REGISTER_CALL[:1])[0]["args"], "eax": 0x3000})], family="dos")
    assert unknown.divergence is not None and unknown.divergence.violated == ("setup",)


@pytest.mark.parametrize(("how", "ops", "why"), [
    ("ax-after-49", [op("AllocateDosMemory", paragraphs=0x10), op("FreeDosMemory",
                                                                  segment=0x801)],
     "AX after AX=4900h: expected 0x0800, observed 0x4900"),
    ("clobbers-ecx", [op("GetUmbLink")], "ECX changed from 0x0 to 0xdead0000")])
def test_spec_mode_checks_the_registers_no_state_decides(tmp_path: Path, how: str,
                                                         ops: list[Any], why: str) -> None:
    """Spec mode judges the result the registers say by the spec, and the register
    rules that hold in every state: outputs only, AX after 49h."""
    script = tmp_path / "tampering.py"
    script.write_text(TAMPERING)
    outcome = replay(python_impl(str(script), how), "spec", ops, family="dos")
    assert outcome.divergence is not None, describe(outcome)
    assert outcome.divergence.violated == ("register",)
    assert why in outcome.divergence.reason, outcome.divergence.reason
    assert replay(python_impl(str(script), "none"), "spec", ops, family="dos").passed


def test_register_rules_name_what_changed() -> None:
    sent = to_registers("XmsFree", {"handle": 1})
    assert sent is not None
    regs = sent[1]
    assert register_problems("XmsFree", regs, {**regs, "eax": 1}) == []
    assert register_problems("XmsFree", regs, {**regs, "eax": 0, "ebx": 0xA2}) == []
    assert register_problems("XmsFree", regs, {**regs, "eax": 2}) == [
        "AX after AH=0Ah is 0x0002, not 1 or 0"]
    assert register_problems("XmsFree", regs, {**regs, "eax": 1, "edx": 0}) == [
        "EDX changed from 0x1 to 0x0 (the call writes 0x0 of it)"]
    assert register_problems("XmsFree", regs, {**regs, "eax": 1, "carry": True}) == [
        "CF changed"]
    ems = to_registers("EmsMap", {"handle": 1, "logical": 0, "physical": 3})
    assert ems is not None
    assert register_problems("EmsMap", ems[1], {**ems[1], "eax": 0x8B03}) == []
    assert register_problems("EmsMap", ems[1], {**ems[1], "eax": 0x0000}) == [
        "EAX changed from 0x4403 to 0x0 (the call writes 0xff00 of it)"]
