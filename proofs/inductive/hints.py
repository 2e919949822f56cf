"""Proof hints: for each step x claim, the seed and premise set that decided
each conjunct in a recorded run, tried first next time.

``decide`` (proofs/inductive/paging.py) tries several premise sets under
several seeds, each until a timeout; a conjunct that only the fourth set
decides pays three timeouts first (PlaceKernelFrame x VMM-1: three 30 s
timeouts, then 16 s). Trying the recorded winner first removes them. A hint is
an order, never an assumption: every premise set is implied by the hypotheses,
so whichever answers unsat is a proof, and a stale hint costs one try. F*'s
``--record_hints``/``--use_hints`` is the same idea for its SMT queries.

``hints.json`` beside this module maps ``family.Step.CLAIM`` (the ``name`` of
``decide``: ``paging.PlaceKernelFrame.VMM-1``, ``kernel_heap.Take.HEAP-2``) to
``{conjunct index: [seed, premise set, seconds of that query]}``; of two
recorded winners the faster is kept. Record it from JSON reports of full
runs::

    python -m proofs.check --json full.json
    python -m proofs.inductive.hints full.json
"""

from __future__ import annotations

import functools
import json
import re
import sys
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from proofs.runner.recorded import read_reports, recorder

Item = TypeVar("Item", bound=tuple[Any, ...])
Hint = tuple[int, str]

HINTS_FILE = Path(__file__).with_name("hints.json")
#: "<name>: conjuncts decided by 0: seed 0 support (2.1 s); 1: all, from the cache"
DECIDED = re.compile(r"^(\S+): conjuncts decided by (.*)$", re.MULTILINE)
CONJUNCT = re.compile(r"(\d+): (?:seed (\d+) )?([\w+]+)(?: \(([\d.]+) s\))?(?:, from the cache)?$")


@functools.cache
def _table() -> dict[str, dict[int, Hint]]:
    try:
        text = resources.files("proofs.inductive").joinpath("hints.json").read_text()
        raw = json.loads(text)
    except (OSError, ValueError):
        return {}
    table: dict[str, dict[int, Hint]] = {}
    for name, conjuncts in raw.items() if isinstance(raw, dict) else ():
        if isinstance(conjuncts, dict):
            table[name] = {int(index): (int(entry[0]), str(entry[1]))
                           for index, entry in conjuncts.items()}
    return table


def of(name: str) -> dict[int, Hint]:
    """The recorded hints of one step x claim (empty when there are none)."""
    return _table().get(name, {})


def first(hint: Hint | None, attempts: Sequence[tuple[int, Item]]) -> list[tuple[int, Item]]:
    """attempts, (seed, (label, ...)) in their usual order, with the hinted one
    moved to the front (unchanged when it is not among them)."""
    order = list(attempts)
    for position, (seed, item) in enumerate(order):
        if hint is not None and (seed, item[0]) == hint:
            order.insert(0, order.pop(position))
            break
    return order


Entry = list[Any]  # [seed, premise set, seconds of its query or None]


def record(details: Iterable[str]) -> dict[str, dict[str, Entry]]:
    """The hints a run's verdict details show: [seed, premise set, seconds]
    (None for an answer that came from the cache). A step shared by several
    obligations shows up once per obligation: the fastest timed winner is kept."""
    found: dict[str, dict[str, Entry]] = {}
    for detail in details:
        for name, decided in DECIDED.findall(detail):
            for part in decided.split("; "):
                match = CONJUNCT.match(part.strip())
                if match:
                    index, seed, label, seconds = match.groups()
                    entry = [int(seed or 0), label, None if seconds is None else float(seconds)]
                    _keep(found, name, index, entry)
    return found


def merge(old: dict[str, dict[str, Entry]],
          new: dict[str, dict[str, Entry]]) -> dict[str, dict[str, Entry]]:
    """old with new's hints, each conjunct keeping the faster of two timed
    winners (a query near its timeout wins one run and loses the next: the
    fastest winner seen is the one to try first)."""
    merged = {name: dict(conjuncts) for name, conjuncts in old.items()}
    for name, conjuncts in new.items():
        for index, entry in conjuncts.items():
            _keep(merged, name, index, entry)
    return merged


def _keep(table: dict[str, dict[str, Entry]], name: str, index: str, entry: Entry) -> None:
    """Put entry in table unless the entry there is faster (an untimed one
    never is: any timed winner replaces it)."""
    kept = table.setdefault(name, {}).get(index)
    if kept is None or _seconds(entry) < _seconds(kept):
        table[name][index] = entry


def _seconds(entry: Entry) -> float:
    return float(entry[2]) if len(entry) > 2 and entry[2] is not None else float("inf")


def main(argv: Sequence[str] | None = None) -> int:
    parser = recorder("python -m proofs.inductive.hints",
                      "Record proof hints (which premise set decided each conjunct) from "
                      "JSON reports of proofs.check into proofs/inductive/hints.json, "
                      "keeping the hints of steps the reports do not show.")
    reports = read_reports(parser, parser.parse_args(argv).reports)
    details = [str(o.get("detail", "")) for _, _, obligations in reports for o in obligations]
    old = json.loads(HINTS_FILE.read_text()) if HINTS_FILE.exists() else {}
    new = record(details)
    table = merge(old, new)
    lines = [f"{json.dumps(name)}: {json.dumps(table[name], sort_keys=True)}"
             for name in sorted(table)]  # one line per step x claim: readable diffs
    HINTS_FILE.write_text("{\n" + ",\n".join(lines) + "\n}\n")
    print(f"{HINTS_FILE}: {len(new)} steps x claims recorded, {len(table)} in all",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
