"""The dos managers' side of the model world (a skeleton until their family lands)."""

from __future__ import annotations

from collections.abc import Callable

from model.page_manager import PageManager
from model.virtual_memory import VirtualMemoryManager
from proofs.oracle.managers import Manager, WorldPart

MANAGERS: tuple[Manager, ...] = ()
PARTS: tuple[Callable[[PageManager, VirtualMemoryManager], WorldPart], ...] = ()
