"""Fixtures shared by the test modules of shared memory and mapped files."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from model.memory_subsystem import MemorySubsystem
from tests.test_memory_subsystem import booted
from tests.test_shared_memory import check_world


@pytest.fixture
def sub() -> Iterator[MemorySubsystem]:
    """A booted MemorySubsystem, its views and frames checked (check_world) after the
    test."""
    result = booted()
    yield result
    check_world(result)
