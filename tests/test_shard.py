"""``--shard I/N``: N CI jobs that together run every obligation exactly once,
each a near-equal share of the recorded time."""

from __future__ import annotations

import pytest

from proofs.check import main
from proofs.obligation import PROFILES, Kind, Obligation, Verdict
from proofs.runner.discovery import collect
from proofs.runner.pool import longest_first, next_task
from proofs.runner.shard import parse, partition, recorded


def _listed(capsys: pytest.CaptureFixture[str], *args: str) -> list[str]:
    assert main(["--list", *args]) == 0
    return [line.split("\t")[0] for line in capsys.readouterr().out.splitlines()]


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_shards_are_disjoint_cover_the_profile_and_balance(profile: str, count: int) -> None:
    chosen = [o for o in collect() if profile in o.profiles]
    durations = recorded(profile)
    shards = partition(chosen, count, durations)
    ids = [o.id for shard in shards for o in shard]
    assert sorted(ids) == sorted(o.id for o in chosen)  # each exactly once
    for shard in shards:  # in discovery order
        assert [o.id for o in shard] == [o.id for o in chosen if o in shard]
    totals = [sum(durations.get(o.id, 0.0) for o in shard) for shard in shards]
    longest = max(durations.get(o.id, 0.0) for o in chosen)
    assert max(totals) - min(totals) <= longest  # the greedy bound
    assert partition(chosen, count, durations) == shards  # stable


def test_every_obligation_has_a_recorded_duration() -> None:
    """durations.json covers today's registry (record it again after adding some)."""
    for profile in PROFILES:
        missing = [o.id for o in collect() if profile in o.profiles
                   and o.id not in recorded(profile)]
        assert missing == [], profile


def test_an_unknown_obligation_counts_as_the_median() -> None:
    def run(profile: str) -> Verdict:
        return Verdict(Kind.PROVED, "proved")

    items = [Obligation(f"x.{n}.X", "x", str(n), "X", run) for n in range(4)]
    shards = partition(items, 2, {"x.0.X": 10.0, "x.1.X": 1.0, "x.2.X": 1.0})
    assert [[o.id for o in shard] for shard in shards] == [["x.0.X"], ["x.1.X", "x.2.X", "x.3.X"]]


def test_the_cli_lists_and_runs_one_shard(capsys: pytest.CaptureFixture[str]) -> None:
    everything = [o.id for o in collect() if "quick" in o.profiles]
    parts = [_listed(capsys, "--profile", "quick", "--shard", f"{i}/3") for i in (1, 2, 3)]
    assert sorted(sum(parts, [])) == sorted(everything)
    assert all(parts)


@pytest.mark.parametrize("bad", ["0/2", "3/2", "1/0", "a/b", "1", "-1/2"])
def test_a_bad_shard_is_a_usage_error(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert parse(bad) is None
    with pytest.raises(SystemExit) as exit_info:
        main(["--shard", bad, "--list"])
    assert exit_info.value.code == 2
    assert "--shard" in capsys.readouterr().err


# --------------------------------------------------------------------------- the pool's order

def _named(ident: str, shares: frozenset[str] = frozenset()) -> Obligation:
    return Obligation(ident, "x", ident, "X", lambda profile: Verdict(Kind.PROVED, "proved"),
                      shares=shares)


def test_the_pool_starts_the_longest_recorded_first() -> None:
    chosen = [o for o in collect() if "full" in o.profiles]
    order = longest_first(chosen, "full")
    seconds = [recorded("full")[chosen[i].id] for i in order]
    assert seconds == sorted(seconds, reverse=True)
    assert sorted(order) == list(range(len(chosen)))


def test_two_obligations_that_share_a_step_do_not_run_side_by_side() -> None:
    """AllocFrame and AllocPage are proved by the same steps: while one runs, the
    pool starts something else, so the other finds its answers in the cache."""
    by_id = {o.id: o for o in collect()}
    alloc_frame = by_id["page_manager.AllocFrame.VMM-1"]
    alloc_page = by_id["virtual_memory.AllocPage.VMM-1"]
    other = by_id["virtual_memory.Access.VMM-2"]
    assert alloc_frame.shares == alloc_page.shares and alloc_frame.shares
    items = [alloc_page, other]
    assert next_task(items, [0, 1], [alloc_frame]) == 1
    assert next_task(items, [0, 1], [other]) == 0
    assert next_task(items, [0], [alloc_frame]) == 0  # nothing else: run it anyway
    plain = [_named("a"), _named("b")]
    assert next_task(plain, [0, 1], plain) == 0
