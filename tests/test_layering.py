"""The layers' direction of trust (DESIGN.md, "Three layers") and the house rules
that keep them readable, checked on the sources themselves.

- spec/ (the trusted base) imports nothing from model/ (the judged code): the
  constants both need are the ABI's (spec/abi.py);
- model/ imports no z3 and nothing from proofs/, and from spec/ only the ABI;
- no import cycle among the modules of model/ or of spec/: the managers'
  dependency order reads top to bottom. Every import counts, wherever it stands
  (at the top, inside a function, under ``if TYPE_CHECKING``);
- no class over 300 lines unless its docstring says why ("Over 300 lines
  because ...").
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("spec", "model", "proofs")
CLASS_LIMIT = 300
REASON = "Over 300 lines because"


def modules(package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    found = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imported(path: Path) -> Iterator[str]:
    """Every module an import statement of the file names, wherever it stands."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def graph(package: str) -> dict[str, set[str]]:
    """module -> the modules of the same package it imports."""
    own = modules(package)
    return {name: {m for m in imported(path) if m in own and m != name}
            for name, path in own.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles (each once, as the strongly connected components of more
    than one module), by Tarjan's algorithm."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(edges[node]):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_spec_imports_nothing_from_model() -> None:
    offenders = {name: sorted(m for m in imported(path) if m.split(".")[0] == "model")
                 for name, path in modules("spec").items()}
    assert {name: found for name, found in offenders.items() if found} == {}


def test_model_imports_only_the_abi_from_the_other_layers() -> None:
    offenders = {}
    for name, path in modules("model").items():
        wrong = sorted(m for m in imported(path)
                       if m.split(".")[0] in ("proofs", "z3", "tests")
                       or (m.split(".")[0] == "spec" and m not in ("spec", "spec.abi")
                           and not m.startswith("spec.abi.")))
        if wrong:
            offenders[name] = wrong
    assert offenders == {}


def test_importing_the_model_loads_no_z3() -> None:
    names = sorted(modules("model"))
    code = ("import sys\n" + "".join(f"import {name}\n" for name in names)
            + "print(sorted(m for m in sys.modules if m == 'z3' or m.startswith('z3.')"
            " or m.split('.')[0] in ('proofs', 'hypothesis')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("package", ["model", "spec"])
def test_no_import_cycles(package: str) -> None:
    assert cycles(graph(package)) == []


def test_the_cycle_finder_finds_cycles() -> None:
    """The check above can fail: a cycle of three and a self-contained pair."""
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"e"}, "e": {"d"}, "f": {"a"}}
    assert cycles(edges) == [["a", "b", "c"], ["d", "e"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_long_class_without_a_reason() -> None:
    long_classes = []
    for package in PACKAGES:
        for name, path in modules(package).items():
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, ast.ClassDef) or node.end_lineno is None:
                    continue
                length = node.end_lineno - node.lineno + 1
                if length > CLASS_LIMIT and REASON not in (ast.get_docstring(node) or ""):
                    long_classes.append(f"{name}.{node.name}: {length} lines")
    assert long_classes == []
