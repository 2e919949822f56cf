"""Obligations of the VirtualMemoryManager operations: every operation x invariant inductive step."""

from __future__ import annotations

from collections.abc import Iterator

from proofs.inductive import obligations_for
from proofs.obligation import Obligation


def obligations() -> Iterator[Obligation]:
    return obligations_for("virtual_memory")
