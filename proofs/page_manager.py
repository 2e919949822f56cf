"""Obligations of the PageManager operations: operation x invariant steps, and
each operation's NON-VACUOUS check (proofs/inductive/vacuity.py)."""

from __future__ import annotations

from collections.abc import Iterator

from proofs.inductive.paging import obligations_for
from proofs.inductive.vacuity import paging_obligations
from proofs.obligation import Obligation


def obligations() -> Iterator[Obligation]:
    yield from obligations_for("page_manager")
    yield from paging_obligations("page_manager")
