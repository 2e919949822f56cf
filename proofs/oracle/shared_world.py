"""The shared-memory and mapped-file managers in the model world (a skeleton for now)."""

from __future__ import annotations

from proofs.oracle.managers import Manager, PartFactory

MANAGERS: tuple[Manager, ...] = ()
PARTS: tuple[PartFactory, ...] = ()
