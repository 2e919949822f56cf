"""``--shard i/n``: one of n stable parts of the obligations, for CI systems that
parallelise by job matrix (n jobs, each running ``--shard i/n``, together run
every obligation exactly once).

The partition is a pure function of the obligation ids, the profile and the
recorded durations (``durations.json`` beside this module, written from a full
and a quick run, see its ``recorded`` field): the obligations are taken from
the longest to the shortest (ties by id) and each goes to the shard whose total
is the smallest so far (ties to the lowest index), the classic greedy balance.
An obligation with no recorded duration counts as the median of those that have
one. Every job computes the same partition, whatever machine it runs on.
"""

from __future__ import annotations

import datetime
import json
import re
import statistics
import sys
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from proofs.obligation import Obligation
from proofs.runner.recorded import read_reports, recorder

SHARD = re.compile(r"^([1-9][0-9]*)/([1-9][0-9]*)$")


def parse(text: str) -> tuple[int, int] | None:
    """(i, n) from "i/n" with 1 <= i <= n; None when text is not one."""
    match = SHARD.match(text)
    if match is None:
        return None
    index, count = int(match.group(1)), int(match.group(2))
    return (index, count) if index <= count else None


def recorded(profile: str) -> dict[str, float]:
    """The recorded seconds of each obligation in profile."""
    text = resources.files("proofs.runner").joinpath("durations.json").read_text()
    table = json.loads(text).get(profile, {})
    return {str(k): float(v) for k, v in table.items()}


def costs(obligations: Sequence[Obligation], durations: Mapping[str, float]) -> dict[str, float]:
    """Each obligation's recorded seconds; the median of the known ones for an
    obligation not recorded (1 s when none is)."""
    known = [durations[o.id] for o in obligations if o.id in durations]
    default = statistics.median(known) if known else 1.0
    return {o.id: durations.get(o.id, default) for o in obligations}


def partition(obligations: Sequence[Obligation], count: int,
              durations: Mapping[str, float]) -> list[list[Obligation]]:
    """The obligations in count shards of near-equal recorded time, each shard in
    the order given."""
    cost = costs(obligations, durations)
    totals = [0.0] * count
    chosen: dict[str, int] = {}
    for obligation in sorted(obligations, key=lambda o: (-cost[o.id], o.id)):
        shard = min(range(count), key=lambda index: (totals[index], index))
        chosen[obligation.id] = shard
        totals[shard] += cost[obligation.id]
    return [[o for o in obligations if chosen[o.id] == shard] for shard in range(count)]


def main(argv: Sequence[str] | None = None) -> int:
    """Record durations.json from JSON reports of a full and a quick run."""
    parser = recorder("python -m proofs.runner.shard",
                      "Record each obligation's seconds from JSON reports of proofs.check "
                      "(a full and a quick run) into proofs/runner/durations.json, the "
                      "weights of --shard (figures of obligations the reports do not show "
                      "are kept).")
    reports = read_reports(parser, parser.parse_args(argv).reports)
    target = Path(__file__).with_name("durations.json")
    table: dict[str, Any] = json.loads(target.read_text()) if target.exists() else {}
    for _, profile, obligations in reports:  # a report's figures replace older ones
        table[profile] = {**table.get(profile, {}),
                          **{o["id"]: round(float(o["seconds"]), 2) for o in obligations}}
    notes = [table.get("recorded", "")] if table.get("recorded") else []
    table["recorded"] = "; ".join([*notes, f"{datetime.date.today()}: " + ", ".join(
        f"the {profile} profile ({len(obligations)} obligations)"
        for _, profile, obligations in reports)])
    target.write_text(json.dumps(table, indent=0) + "\n")
    print(f"{target}: {', '.join(p for p in table if p != 'recorded')} recorded",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
