"""Finding the obligations: every module of the ``proofs`` package and its
sub-packages (but the runner's, the oracle's, ``check``, ``obligation``, ``cli``,
``version``, ``__main__`` and private ``_*`` modules) that defines a top-level
``obligations()`` contributes the :class:`~proofs.obligation.Obligation` objects
it yields. Ids are unique across the package. A module that fails to import, or
whose ``obligations()`` raises, contributes one obligation
``<module>.discovery`` that fails with the traceback, so a broken module is
reported rather than silently skipped."""


from __future__ import annotations

import dataclasses
import fnmatch
import importlib
import pkgutil
import traceback
from collections.abc import Iterable, Sequence

from proofs.obligation import Kind, Obligation, Verdict

DEFAULT_PACKAGE = "proofs"
#: Modules and sub-packages that define no obligations: the runner, and the oracle
#: (its own command; importing it in every worker would only cost time).
NOT_OBLIGATION_MODULES = frozenset({"check", "obligation", "__main__", "cli", "version",
                                    "oracle", "runner"})


class DuplicateObligationError(ValueError):
    """Two obligations share an id; reports cite ids, so they must be unique."""


# --------------------------------------------------------------------------- discovery


def obligation_modules(package: str = DEFAULT_PACKAGE) -> list[str]:
    """Names of the modules of ``package`` and of its sub-packages (but the
    oracle's) that may define ``obligations()``."""
    pkg = importlib.import_module(package)
    names = []
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name in NOT_OBLIGATION_MODULES or info.name.startswith("_"):
            continue
        if info.ispkg:
            names.append(f"{package}.{info.name}")  # its __init__ may define some
            names += obligation_modules(f"{package}.{info.name}")
        else:
            names.append(f"{package}.{info.name}")
    return sorted(names)


def _discovery_failure(module_name: str, detail: str) -> Obligation:
    short = module_name.split(".", 1)[-1]

    def run(profile: str) -> Verdict:
        return Verdict(Kind.ERROR, "module failed to import or to list its obligations",
                       detail=detail)

    return Obligation(id=f"{short}.discovery", manager=short, operation="obligations",
                      invariant="discovery", run=run)


def _module_obligations(module_name: str) -> list[Obligation]:
    try:
        module = importlib.import_module(module_name)
        factory = getattr(module, "obligations", None)
        if not callable(factory):
            return []
        found = list(factory())
        for item in found:
            if not isinstance(item, Obligation):
                raise TypeError(f"obligations() yielded {item!r}, not an Obligation")
        return found
    except Exception:
        return [_discovery_failure(module_name, traceback.format_exc())]


def collect(package: str = DEFAULT_PACKAGE) -> list[Obligation]:
    """Every obligation the modules of ``package`` define, in module order.

    Raises :class:`DuplicateObligationError` when two obligations share an id.
    """
    obligations: list[Obligation] = []
    origin: dict[str, str] = {}
    for module_name in obligation_modules(package):
        for obligation in _module_obligations(module_name):
            if obligation.id in origin:
                raise DuplicateObligationError(
                    f"obligation id {obligation.id!r} is defined by {origin[obligation.id]}"
                    f" and by {module_name}")
            origin[obligation.id] = module_name
            if obligation.depends_on and module_name not in obligation.depends_on:
                obligation = dataclasses.replace(
                    obligation, depends_on=(module_name, *obligation.depends_on))
            obligations.append(obligation)
    return obligations


def select(obligations: Iterable[Obligation], patterns: Sequence[str]) -> list[Obligation]:
    """The obligations whose id matches any pattern (fnmatch, or a plain substring)."""
    if not patterns:
        return list(obligations)
    return [o for o in obligations
            if any(fnmatch.fnmatchcase(o.id, p) or p in o.id for p in patterns)]


