"""The proof cache (proofs/runner/cache.py): what it reuses, what invalidates it,
and that a damaged entry is ignored, never trusted."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import z3

import proofs.inductive.paging as paging
import spec.catalogue as catalogue
from proofs.obligation import Kind, Obligation, Verdict
from proofs.runner import cache as proof_cache
from proofs.runner.discovery import collect
from proofs.runner.pool import run_obligations
from spec.catalogue import OPERATIONS_BY_NAME

ROOT = Path(__file__).resolve().parent.parent
#: Fast obligations of two families that share no spec module but the common ones.
DOS = ["dos_memory.SetAllocationStrategy.DOS-1", "dos_memory.SetUmbLink.DOS-2"]
HEAP = ["kernel_heap.Contract.HEAP-1", "kernel_heap.Contract.HEAP-4"]


# --------------------------------------------------------------------------- the key

def test_structure_is_blind_to_names_but_not_to_shape() -> None:
    x, y = z3.BitVecs("x y", 32)
    digest = proof_cache.structural
    assert digest([x + 1 == y]) == digest([y + 1 == x])  # a renaming
    assert digest([x + 1 == y]) != digest([x + 1 == x])  # two constants made one
    assert digest([z3.Extract(3, 0, x) == 0]) != digest([z3.Extract(7, 4, x) == 0])
    assert digest([z3.ForAll([x], x == y)]) == digest([z3.ForAll([y], y == x)])
    assert digest([z3.ForAll([x], x == y)]) != digest([z3.Exists([x], x == y)])
    assert digest([x == 1, y == 2]) != digest([x == 1]) != digest([y == 2])
    first, second = x == 1, y == 2  # alive while walked: a Structure keeps z3's ids
    prefix = proof_cache.Structure().add([first])
    assert prefix.copy().add([second]).hexdigest() == digest([first, second])
    assert prefix.hexdigest() == digest([first])  # a copy leaves its source alone


def test_a_verdict_key_follows_the_source_an_obligation_imports(
        monkeypatch: pytest.MonkeyPatch) -> None:
    by_id = {o.id: o for o in collect()}
    dos, heap = by_id[DOS[0]], by_id[HEAP[0]]
    contract = by_id["x86_paging.lowest_set_bit.contract"]
    machine = by_id["paging_machine.refinement"]
    assert machine.depends_on == ()  # machines are never cached
    assert "spec.dos_memory" in set().union(*map(proof_cache.closure, dos.depends_on))
    keys = {o.id: proof_cache.verdict_key(o, "quick") for o in (dos, heap, contract)}
    assert proof_cache.verdict_key(dos, "full") != keys[dos.id]

    real = proof_cache._source_digest

    def edited(module: str) -> Iterator[None]:
        monkeypatch.setattr(proof_cache, "_source_digest",
                            lambda name: "edited" if name == module else real(name))
        yield
        monkeypatch.setattr(proof_cache, "_source_digest", real)

    for _ in edited("spec.dos_memory"):
        assert proof_cache.verdict_key(dos, "quick") != keys[dos.id]
        assert proof_cache.verdict_key(heap, "quick") == keys[heap.id]
        assert proof_cache.verdict_key(contract, "quick") == keys[contract.id]
    for _ in edited("model.x86_paging"):  # CrossHair's function and its callees
        assert proof_cache.verdict_key(contract, "quick") != keys[contract.id]


# --------------------------------------------------------------------------- verdicts

def _run(ids: list[str], cache_dir: Path | None) -> dict[str, Verdict]:
    return {o.id: v for o, v, _ in run_obligations(ids, "quick", in_process=True,
                                                   cache_dir=None if cache_dir is None
                                                   else str(cache_dir))}


def test_a_warm_run_takes_every_verdict_from_the_cache(tmp_path: Path) -> None:
    cold = _run(DOS + HEAP, tmp_path)
    assert all(v.kind is Kind.PROVED and "verdict from the cache" not in v.cache
               for v in cold.values())
    warm = _run(DOS + HEAP, tmp_path)
    for ident, verdict in warm.items():
        assert verdict.cache.startswith("the verdict from the cache (decided 20"), ident
        assert (verdict.kind, verdict.summary, verdict.detail) == \
            (cold[ident].kind, cold[ident].summary, cold[ident].detail)
    assert proof_cache.active() is None  # an in-process run closes its cache


@pytest.mark.parametrize("damage", ["garbage", "another key", "a failure", "no date"])
def test_a_damaged_entry_is_ignored_never_trusted(tmp_path: Path, damage: str) -> None:
    _run(DOS, tmp_path)
    entries = sorted((tmp_path / "verdicts").rglob("*.json"))
    assert len(entries) == len(DOS)
    for path in entries:
        entry = json.loads(path.read_text())
        if damage == "garbage":
            path.write_text("{not json")
        elif damage == "another key":
            entry["key"] = "0" * 64
            path.write_text(json.dumps(entry))
        elif damage == "a failure":  # a stored failure would hide a fix
            entry["verdict"]["kind"] = "COUNTEREXAMPLE"
            path.write_text(json.dumps(entry))
        else:
            del entry["decided"]
            path.write_text(json.dumps(entry))
    for path in (tmp_path / "unsat").rglob("*.json"):  # and every z3 answer
        path.write_text("")
    proof_cache.open_cache(tmp_path)
    try:
        cache = proof_cache.active()
        assert cache is not None
        by_id = {o.id: o for o in collect()}
        for ident in DOS:
            assert cache.verdict(proof_cache.verdict_key(by_id[ident], "quick")) is None
        assert cache.usage.corrupt == len(DOS)
    finally:
        proof_cache.open_cache(None)
    again = _run(DOS, tmp_path)
    assert all(v.kind is Kind.PROVED and v.cache == "" for v in again.values())


def test_no_cache_reads_and_writes_nothing(tmp_path: Path) -> None:
    from proofs.check import main
    cache_dir = tmp_path / "cache"
    assert main(["--profile", "quick", "--only", DOS[0], "--in-process", "--no-cache",
                 "--cache-dir", str(cache_dir)]) == 0
    assert not cache_dir.exists()
    assert main(["--profile", "quick", "--only", DOS[0], "--in-process",
                 "--cache-dir", str(cache_dir)]) == 0
    assert list((cache_dir / "verdicts").rglob("*.json"))


def test_only_a_passing_verdict_is_kept(tmp_path: Path) -> None:
    failing = Obligation("fake.Op.X", "fake", "Op", "X",
                         lambda profile: Verdict(Kind.COUNTEREXAMPLE, "broken", violated=("X",)),
                         depends_on=("spec.dos_memory",))
    for _ in range(2):
        [(_, verdict, _)] = run_obligations([failing], "quick", in_process=True,
                                            cache_dir=str(tmp_path))
        assert verdict.kind is Kind.COUNTEREXAMPLE and verdict.cache == ""
    assert not (tmp_path / "verdicts").exists()


# --------------------------------------------------------------------------- z3 answers

def _prove(operation: str, claim: str) -> tuple[Verdict, proof_cache.Usage]:
    """One inductive obligation decided through the query cache alone."""
    with proof_cache.running(f"test.{operation}.{claim}") as usage:
        verdict = paging.prove(OPERATIONS_BY_NAME[operation], claim, "quick")
    return verdict, usage


def test_a_changed_spec_line_re_decides_exactly_the_queries_that_mention_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """FreeFrame x FRM-2 is decided from all of Inv, which holds FRM-1; FreeFrame
    x VMM-4 from its support (VMM-2, VMM-4), which does not. FRM-1 restated as
    And(FRM-1, True), the same claim in another text: the first is asked of z3
    again, the second still comes from the cache."""
    with proof_cache.opened(tmp_path):
        for claim in ("FRM-2", "VMM-4"):
            verdict, usage = _prove("FreeFrame", claim)
            assert verdict.kind is Kind.PROVED and usage.asked and not usage.hits
            verdict, usage = _prove("FreeFrame", claim)
            assert verdict.kind is Kind.PROVED and usage.hits and not usage.asked, claim

        restated = tuple(
            catalogue.Invariant(inv.id, inv.manager,
                                lambda s, holds=inv.holds: z3.And(holds(s), True))
            if inv.id == "FRM-1" else inv for inv in catalogue.INVARIANTS)
        monkeypatch.setattr(catalogue, "INVARIANTS", restated)
        monkeypatch.setattr(paging, "INVARIANTS", restated)
        verdict, usage = _prove("FreeFrame", "FRM-2")
        assert verdict.kind is Kind.PROVED and usage.asked and not usage.hits
        verdict, usage = _prove("FreeFrame", "VMM-4")
        assert verdict.kind is Kind.PROVED and usage.hits and not usage.asked
        assert "support, from the cache" in verdict.detail


def test_a_damaged_answer_is_asked_again(tmp_path: Path) -> None:
    with proof_cache.opened(tmp_path):
        _prove("FreeFrame", "VMM-4")
        for path in (tmp_path / "unsat").rglob("*.json"):
            entry = json.loads(path.read_text())
            entry["answer"] = "sat"
            path.write_text(json.dumps(entry))
        verdict, usage = _prove("FreeFrame", "VMM-4")
        assert verdict.kind is Kind.PROVED and usage.asked and not usage.hits
        assert usage.corrupt


# --------------------------------------------------------------------------- a real edit

def test_editing_one_spec_file_re_decides_only_what_imports_it(tmp_path: Path) -> None:
    """A copy of the tree, run three times: cold, warm (every verdict from the
    cache), and after one line of spec/dos_memory.py changed (the DOS verdicts
    decided again, the heap's still from the cache)."""
    for package in ("spec", "model", "proofs"):
        shutil.copytree(ROOT / package, tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    environment = {**os.environ, "PYTHONPATH": str(tmp_path)}

    def check() -> dict[str, str]:
        report = tmp_path / "report.json"
        command = [sys.executable, "-m", "proofs.check", "--profile", "quick",
                   "--in-process", "--json", str(report),
                   *(arg for ident in DOS + HEAP for arg in ("--only", ident))]
        done = subprocess.run(command, cwd=tmp_path, env=environment, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return {o["id"]: o["cache"] for o in json.loads(report.read_text())["obligations"]}

    assert not any("verdict" in note for note in check().values())
    assert all(note.startswith("the verdict from the cache") for note in check().values())
    spec_file = tmp_path / "spec" / "dos_memory.py"
    spec_file.write_text(spec_file.read_text() + "\n# one more line\n")
    after = check()
    assert sorted(ident for ident, note in after.items()
                  if note.startswith("the verdict from the cache")) == sorted(HEAP)


def test_machines_keep_hypothesis_examples_under_the_cache_in_full(tmp_path: Path) -> None:
    """A failure found once is replayed first by the next full run (a derandomized
    quick run has no database: hypothesis' rule)."""
    from hypothesis.database import DirectoryBasedExampleDatabase

    from proofs.machines.runner import Budget, machine_settings
    budget = Budget(examples=3, steps=5, shrink_seconds=1.0)
    assert machine_settings("full", budget).database is None  # no cache open
    with proof_cache.opened(tmp_path):
        full = machine_settings("full", budget).database
        assert isinstance(full, DirectoryBasedExampleDatabase)
        assert Path(full.path) == tmp_path / "hypothesis"
        assert machine_settings("quick", budget).database is None
