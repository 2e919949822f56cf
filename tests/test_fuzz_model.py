"""Our own fuzzer of the model (issue 17; tests/model_fuzzer.py): every public
operation, found by introspection, called with hostile values in a booted and a
fresh world, then random sequences of valid and invalid calls. No exception
escapes, every call sets its status, a failed call changes nothing, no call takes
a second or allocates in proportion to a hostile size."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.model_fuzzer import HOSTILE, Defect, Operation, call, operations, world

OPERATIONS = operations()
SEQUENCE = settings(max_examples=8, deadline=None, database=None, derandomize=True,
                    suppress_health_check=list(HealthCheck))
STEPS = 25


def test_discovery_finds_every_manager() -> None:
    owners = {op.owner for op in OPERATIONS}
    assert owners >= {"PageManager", "VirtualMemoryManager", "KernelHeap", "KernelMemory",
                      "MemoryPool", "MemorySubsystem", "MemoryInterface", "SystemCalls",
                      "ProcessMemorySpace", "SharedMemoryManager", "MemoryMappedFiles",
                      "DosMemoryManager", "XmsDriver", "EmsManager", "linux_mm",
                      "virtual_alloc"}
    labels = {op.label for op in OPERATIONS}
    assert {"PageManager.AllocFrame", "SystemCalls.Syscall", "virtual_alloc."
            "VirtualAllocProcessMemory", "MemoryMappedFiles.MapFileToMemory"} <= labels


@pytest.mark.parametrize("op", OPERATIONS, ids=lambda op: op.label)
def test_hostile_values_in_every_position(op: Operation, tmp_path: Path) -> None:
    """Each parameter in turn gets hostile values, the others meaningful ones."""
    for stage in ("booted", "fresh"):
        w = world(stage, str(tmp_path))
        required = [p for p in op.params if p.default is p.empty
                    and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        for position in range(max(1, len(required))):
            for turn in range(2):
                hostile = HOSTILE[(hash(op.label) + 3 * position + 11 * turn) % len(HOSTILE)]
                args = [w.values[(position + n + turn) % len(w.values)]
                        for n in range(len(required))]
                if required:
                    args[position] = hostile
                call(w, op, tuple(args), {})


@pytest.mark.parametrize("stage", ["booted", "fresh"])
@SEQUENCE
@given(data=st.data())
def test_random_sequences(stage: str, data: st.DataObject, tmp_path_factory:
                          pytest.TempPathFactory) -> None:
    w = world(stage, str(tmp_path_factory.mktemp("fuzz")))
    for _ in range(STEPS):
        op = data.draw(st.sampled_from(OPERATIONS), label="operation")

        def pick(values: list[object]) -> object:
            return data.draw(st.sampled_from(values))

        def choose(probability: float) -> bool:
            return data.draw(st.integers(0, 99)) < probability * 100

        from tests.model_fuzzer import arguments
        args, kwargs = arguments(op, pick, choose, w)
        call(w, op, args, kwargs)


def test_the_fuzzer_catches_what_it_must(tmp_path: Path) -> None:
    """A call that raises, one that changes state and fails, one that sets no
    status: each is a Defect."""
    w = world("booted", str(tmp_path))
    pm = w.targets["PageManager"]

    def raising(self: object, frame_addr: int) -> bool:
        raise KeyError(frame_addr)

    def leaking(self: object) -> int:
        pm.frames.set_range(0, 1)
        pm.last_error = 8
        return 0

    def silent(self: object) -> int:
        return 0

    for broken, expected in ((raising, "raised KeyError"), (leaking, "changed the state"),
                             (silent, "without setting its status")):
        fake = Operation("PageManager", "Fake", broken, (), True)
        args = (0x1000,) if broken is raising else ()
        with pytest.raises(Defect, match=expected):
            call(w, fake, args, {})
