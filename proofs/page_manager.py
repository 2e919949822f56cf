"""Obligations of the PageManager operations: operation x invariant steps."""

from __future__ import annotations

from collections.abc import Iterator

from proofs.inductive.paging import obligations_for
from proofs.obligation import Obligation


def obligations() -> Iterator[Obligation]:
    return obligations_for("page_manager")
