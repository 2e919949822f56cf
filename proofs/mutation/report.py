"""A mutation run's verdicts: per mutant, per module, and the three kill rates
issue 18 asks for (the test suite alone, the quick profile alone, both).

A mutant is *killed* by a gate when one of its tests or obligations failed,
and *caught as a hang* when the gate ran past its limit (the harness stopped
it and says so); both count as caught. A survivor is *equivalent* only when
``equivalent.json`` (next to this module) gives the reason no program can
tell it from the model; every other survivor is a gap, listed by name. Rates
are over the non-equivalent mutants.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from proofs.mutation.execute import CAUGHT, Outcome
from proofs.mutation.operators import Mutant

EQUIVALENT_FILE = Path(__file__).with_name("equivalent.json")
#: Survivors of a run and the test written since that kills each (checked by
#: ``python -m proofs.mutation --verify-caught``).
CAUGHT_FILE = Path(__file__).with_name("caught.json")


def equivalents(path: Path = EQUIVALENT_FILE) -> dict[str, str]:
    """Mutant key -> why it is equivalent (the file also quotes the mutant)."""
    if not path.exists():
        return {}
    return {key: entry["reason"] for key, entry in json.loads(path.read_text()).items()}


@dataclass(frozen=True)
class Result:
    mutant: Mutant
    outcomes: Mapping[str, Outcome]
    equivalent_because: str | None

    @property
    def verdict(self) -> str:
        if any(outcome.status in CAUGHT for outcome in self.outcomes.values()):
            if all(outcome.status == "timeout" for outcome in self.outcomes.values()
                   if outcome.status in CAUGHT):
                return "timeout"
            return "killed"
        return "equivalent" if self.equivalent_because else "survived"

    def caught_by(self, gate: str) -> bool:
        outcome = self.outcomes.get(gate)
        return outcome is not None and outcome.status in CAUGHT

    def as_json(self) -> dict[str, Any]:
        mutant = self.mutant
        return {"key": mutant.key, "module": mutant.module, "path": mutant.path,
                "line": mutant.line, "function": mutant.function,
                "operator": mutant.operator, "original": mutant.original,
                "mutated": mutant.mutated, "verdict": self.verdict,
                "equivalent_because": self.equivalent_because,
                **{gate: asdict(outcome) for gate, outcome in self.outcomes.items()}}


@dataclass(frozen=True)
class Tally:
    mutants: int = 0
    equivalent: int = 0
    tests: int = 0
    quick: int = 0
    either: int = 0
    timeouts: int = 0
    quick_skipped: int = 0

    @property
    def counted(self) -> int:
        return self.mutants - self.equivalent

    def rate(self, caught: int) -> str:
        return f"{100 * caught / self.counted:.1f}%" if self.counted else "-"


def tally(results: Iterable[Result]) -> Tally:
    items = list(results)
    return Tally(
        mutants=len(items),
        equivalent=sum(r.verdict == "equivalent" for r in items),
        tests=sum(r.caught_by("tests") for r in items),
        quick=sum(r.caught_by("quick") for r in items),
        either=sum(r.verdict in CAUGHT for r in items),
        timeouts=sum(r.verdict == "timeout" for r in items),
        quick_skipped=sum(r.outcomes.get("quick", Outcome("", "", 0)).status == "skipped"
                          for r in items))


def markdown(results: list[Result], gates: tuple[str, ...], heading: str) -> str:
    """The per-module table, the three rates and every survivor."""
    modules = sorted({r.mutant.module for r in results})
    lines = [heading, "",
             "| module | mutants | equivalent | killed by tests | killed by quick "
             "| killed by either | of which hangs | survived |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for module in [*modules, None]:
        chosen = [r for r in results if module is None or r.mutant.module == module]
        t = tally(chosen)
        name = f"`{module}`" if module else "**all**"
        lines.append(
            f"| {name} | {t.mutants} | {t.equivalent} | {_cell(t, t.tests, 'tests', gates)} "
            f"| {_cell(t, t.quick, 'quick', gates)} | {t.either} ({t.rate(t.either)}) "
            f"| {t.timeouts} | {t.counted - t.either} |")
    survivors = [r for r in results if r.verdict == "survived"]
    equivalent = [r for r in results if r.verdict == "equivalent"]
    lines += ["", f"Survivors ({len(survivors)}):", ""]
    lines += [f"- `{r.mutant.key}` {r.mutant.describe()}" for r in survivors] or ["- none"]
    lines += ["", f"Equivalent ({len(equivalent)}):", ""]
    lines += [f"- `{r.mutant.key}` {r.mutant.describe()}: {r.equivalent_because}"
              for r in equivalent] or ["- none"]
    return "\n".join(lines) + "\n"


def _cell(t: Tally, caught: int, gate: str, gates: tuple[str, ...]) -> str:
    if gate not in gates:
        return "not run"
    if gate == "quick" and t.quick_skipped:
        return f"{caught} of {t.mutants - t.quick_skipped} run"
    return f"{caught} ({t.rate(caught)})"
