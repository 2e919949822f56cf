"""The mutation tool's own parts: which mutants it makes, how it names them,
and how it counts (proofs/mutation/). Running mutants is CI's smoke step
(.ci/run) and the documented run (docs/mutation.md)."""

from __future__ import annotations

import ast
import dataclasses
import json

import pytest

from proofs.mutation.__main__ import ROOT, _spread, sample
from proofs.mutation.execute import Outcome
from proofs.mutation.operators import compiles, mutants
from proofs.mutation.report import CAUGHT_FILE, EQUIVALENT_FILE, Result, tally
from proofs.mutation.selection import CoverageMap

SOURCE = b'''"""Docstring: 1 < 2 is not code."""
LIMIT: int = 4096


def fits(size: int, free: int) -> bool:
    """Whether size fits."""
    return size <= free and size > 0


def grow(total: int, step: int = 1) -> int:
    total += step
    return min(total - 1, LIMIT)
'''


def _by_operator(source: bytes) -> dict[str, list[tuple[str, str]]]:
    found: dict[str, list[tuple[str, str]]] = {}
    for mutant in mutants("model.example", "model/example.py", source):
        found.setdefault(mutant.operator, []).append((mutant.original, mutant.mutated))
    return found


def test_every_operator_of_issue_18_applies() -> None:
    found = _by_operator(SOURCE)
    assert ("size <= free", "(size < free)") in found["compare"]
    assert ("size > 0", "(size >= 0)") in found["compare"]
    assert ("4096", "(4097)") in found["number+1"] and ("1", "(0)") in found["number-1"]
    assert ("total - 1", "(total + 1)") in found["arith"]
    assert ("total += step", "total -= step") in found["arith"]
    assert ("size <= free and size > 0", "(size <= free or size > 0)") in found["boolop"]
    assert ("min(total - 1, LIMIT)", "(max(total - 1, LIMIT))") in found["minmax"]
    assert ("total += step", "pass") in found["delete"]
    assert ("size <= free and size > 0", "(not (size <= free and size > 0))") \
        in found["not-return"]


def test_docstrings_and_annotations_are_not_mutated() -> None:
    originals = {original for pairs in _by_operator(SOURCE).values() for original, _ in pairs}
    assert not any("Docstring" in text or "fits." in text for text in originals)
    assert "int" not in originals and "bool" not in originals
    assert "not-return" not in {m.operator for m in mutants(
        "model.example", "model/example.py", SOURCE.replace(b"-> bool", b"-> int"))}


def test_mutants_compile_and_change_only_their_span() -> None:
    for mutant in mutants("model.example", "model/example.py", SOURCE):
        changed = mutant.apply(SOURCE)
        assert compiles(mutant, SOURCE)
        ast.parse(changed)
        assert changed != SOURCE
        assert changed[:mutant.start] == SOURCE[:mutant.start]
        assert changed.endswith(SOURCE[mutant.end:])


def test_keys_survive_edits_elsewhere_and_tell_occurrences_apart() -> None:
    before = {m.key: m for m in mutants("model.example", "model/example.py", SOURCE)}
    shifted = b"# a comment line\n" + SOURCE
    after = {m.key: m for m in mutants("model.example", "model/example.py", shifted)}
    assert set(after) == set(before)
    assert all(after[key].line == before[key].line + 1 for key in before)
    twice = b"def f(a: int) -> int:\n    a = a + 1\n    a = a + 1\n    return a\n"
    keys = [m.key for m in mutants("model.twice", "model/twice.py", twice)
            if m.operator == "arith"]
    assert len(keys) == len(set(keys)) == 2


def test_non_ascii_source_splices_at_byte_offsets() -> None:
    source = "def f(x: int) -> int:\n    y = '—é'  # ≤\n    return x + 1\n".encode()
    [arith] = [m for m in mutants("model.u", "model/u.py", source) if m.operator == "arith"]
    assert arith.apply(source).decode().endswith("return (x - 1)\n")


def test_sample_is_seeded_per_module() -> None:
    first = sample(ROOT, 5, 7, ["frame_bitmap", "hole_index"])
    again = sample(ROOT, 5, 7, ["hole_index", "model.frame_bitmap"])
    alone = sample(ROOT, 5, 7, ["hole_index"])
    assert [m.key for m in first] == [m.key for m in again]
    assert [m.key for m in first if m.module == "model.hole_index"] == [m.key for m in alone]
    assert [m.key for m in sample(ROOT, 5, 8, ["hole_index"])] != [m.key for m in alone]
    assert {m.module for m in _spread(first, 3)} == {"model.frame_bitmap", "model.hole_index"}


def test_every_model_module_but_the_package_has_mutants() -> None:
    for path in sorted((ROOT / "model").glob("*.py")):
        if path.name != "__init__.py":
            assert mutants(f"model.{path.stem}", f"model/{path.name}", path.read_bytes()), path


def _result(tests: str, quick: str, equivalent: str | None = None) -> Result:
    [mutant] = [m for m in mutants("model.example", "model/example.py", SOURCE)
                if m.operator == "minmax"]
    return Result(mutant, {"tests": Outcome(tests, "", 1.0), "quick": Outcome(quick, "", 1.0)},
                  equivalent)


@pytest.mark.parametrize(("tests", "quick", "verdict"), [
    ("killed", "survived", "killed"), ("survived", "killed", "killed"),
    ("timeout", "survived", "timeout"), ("timeout", "killed", "killed"),
    ("survived", "survived", "survived"), ("untested", "survived", "survived"),
    ("error", "survived", "survived"), ("killed", "skipped", "killed"),
])
def test_verdicts(tests: str, quick: str, verdict: str) -> None:
    assert _result(tests, quick).verdict == verdict


def test_equivalent_only_when_nothing_caught_it_and_rates_exclude_it() -> None:
    assert _result("killed", "survived", "same").verdict == "killed"
    results = [_result("survived", "survived", "same"), _result("killed", "survived"),
               _result("survived", "timeout"), _result("survived", "survived")]
    t = tally(results)
    assert (t.mutants, t.equivalent, t.counted) == (4, 1, 3)
    assert (t.tests, t.quick, t.either, t.timeouts) == (1, 1, 2, 1)
    assert t.rate(t.either) == "66.7%"


def test_tests_for_a_line_fastest_first_and_module_fallback() -> None:
    covered = CoverageMap({"model/a.py": {3: ["t::slow", "t::fast"], 4: [], 9: ["t::other"]}},
                          {"t::slow": 5.0, "t::fast": 0.1, "t::other": 1.0})
    assert covered.tests_for("model/a.py", 3) == ["t::fast", "t::slow"]
    assert covered.tests_for("model/a.py", 4) == ["t::fast", "t::other", "t::slow"]
    assert covered.tests_for("model/b.py", 1) == []
    assert covered.seconds(["t::slow", "t::other"]) == 6.0


def test_every_declared_equivalent_is_a_mutant_of_the_current_model() -> None:
    """A stale entry (its line rewritten since) must not excuse anything."""
    declared = json.loads(EQUIVALENT_FILE.read_text())
    current = {m.key: m for module in {entry["module"] for entry in declared.values()}
               for m in mutants(module, f"model/{module.split('.')[1]}.py",
                                (ROOT / "model" / f"{module.split('.')[1]}.py").read_bytes())}
    for key, entry in declared.items():
        assert key in current, (key, entry)
        assert len(entry["reason"]) > 20, key


def test_a_mutant_that_is_not_python_is_known() -> None:
    [mutant] = [m for m in mutants("model.example", "model/example.py", SOURCE)
                if m.operator == "minmax"]
    broken = dataclasses.replace(mutant, mutated="min(")
    assert compiles(mutant, SOURCE) and not compiles(broken, SOURCE)


def test_type_only_statements_are_drawn_but_not_run() -> None:
    source = (b"from typing import TypeVar\n_T = TypeVar('_T')\n_LIMIT = 4\n\n\n"
              b"def first(items: list[_T]) -> _T:\n    return items[_LIMIT - 4]\n")
    kept = {m.original for m in mutants("model.t", "model/t.py", source)}
    marked = [m for m in mutants("model.t", "model/t.py", source, type_only=True)
              if m.type_only]
    assert "_T = TypeVar('_T')" not in kept and "_LIMIT = 4" in kept
    assert [m.original for m in marked] == ["_T = TypeVar('_T')"]


def test_bare_annotations_are_type_only_outside_dataclasses() -> None:
    source = (b"from dataclasses import dataclass\n\n\nclass Plain:\n    code: int\n\n\n"
              b"@dataclass\nclass Record:\n    base: int\n")
    marked = {m.original: m.type_only for m in mutants("model.c", "model/c.py", source,
                                                       type_only=True)}
    assert marked == {"code: int": True, "base: int": False}


def test_every_survivor_said_caught_names_a_current_mutant_and_an_existing_test() -> None:
    """caught.json (checked by ``--verify-caught``) names mutants of the model as it
    is and tests that exist, and no mutant is both caught and equivalent."""
    named = json.loads(CAUGHT_FILE.read_text())
    assert not set(named) & set(json.loads(EQUIVALENT_FILE.read_text()))
    for key, entry in named.items():
        module = entry["module"].split(".")[1]
        path = ROOT / "model" / f"{module}.py"
        assert key in {m.key for m in mutants(entry["module"], f"model/{module}.py",
                                              path.read_bytes(), type_only=True)}, key
        file, _, name = entry["test"].partition("::")
        assert f"def {name}(" in (ROOT / file).read_text(), entry["test"]
