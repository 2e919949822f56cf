"""What the step-sequence suites (windows_virtual.py, linux_ltp.py) share: a value
an earlier step saved, and the run of one case's steps in a fresh process through
the model's user-mode front end (model/syscalls.py), the space checked after."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, NamedTuple, TypeVar

from model.syscalls import SystemCalls
from tests.test_process_memory import check_space, world

StepT = TypeVar("StepT")


class At(NamedTuple):
    """A value an earlier step saved (an address, a break), plus an offset."""

    name: str
    offset: int = 0


Value = int | At


def resolve(value: Value | bytes | None, saved: dict[str, int]) -> Any:
    """A step's argument with any At replaced by the saved value it names."""
    return saved[value.name] + value.offset if isinstance(value, At) else value


def run_case(steps: Iterable[StepT],
             check: Callable[[SystemCalls, StepT, dict[str, int]], None],
             mem_end: int | None = None) -> None:
    """Check each step in one fresh current process, then every space's records."""
    _, vm = world() if mem_end is None else world(mem_end)
    system = SystemCalls(vm)
    assert system.SwitchProcess(system.CreateProcess())
    saved: dict[str, int] = {}
    for step in steps:
        check(system, step, saved)
    for space in system.processes.values():
        check_space(space)
