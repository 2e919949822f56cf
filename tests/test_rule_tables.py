"""Every error code a rule table in docs/ promises is compared by a test the row
cites (issue 18: "every error code a rule table promises is compared by some
check").

A row's codes are read from its rule cell: the names of spec/abi.py's codes
(ERROR_*, XMS_*, EMS_*, errno names), DOS/XMS/EMS status bytes written as
``A0h`` (80h and above), and bare numbers that are Windows or DOS error codes
(``else 487``, ``error 1``), not quantities (``64 KB``). A cited test compares
a code when its source (decorators included: parametrized cases count) holds
the number or the name of a constant with that value. A row whose codes no
cited test names fails here, so a promise in the docs cannot outlive the check
that keeps it.
"""

from __future__ import annotations

import ast
import functools
import importlib
import re
from pathlib import Path

import pytest

from spec import abi

ROOT = Path(__file__).resolve().parents[1]
#: The rule tables: pages whose tables have a rule column and a test column.
PAGES = ("docs/user-space.md", "docs/shared-memory.md", "docs/dos.md")
#: A page's legend letter before bare test names (docs/shared-memory.md: S, F).
LEGENDS = {"S": "tests/test_shared_memory.py", "F": "tests/test_mapped_files.py"}
_NAMED = {name: value for name, value in vars(abi).items()
          if isinstance(value, int) and re.fullmatch(r"(ERROR|XMS|EMS)_[A-Z0-9_]+|E[A-Z]{3,}",
                                                     name)}
_NAMED |= {member.name: int(member) for member in abi.ErrorCode}
_ERROR_VALUES = {int(member) for member in abi.ErrorCode} - {0}
_QUANTITY = re.compile(r"\s*(KB|MB|GB|bytes?|pages?|paragraphs?|frames?|handles?|%|-bit)\b")


def _codes(rule: str) -> set[int]:
    codes = {value for name, value in _NAMED.items() if re.search(rf"\b{name}\b", rule)
             and value != 0}
    codes |= {int(hex_, 16) for hex_ in re.findall(r"\b([0-9A-F]{2})h\b", rule)
              if int(hex_, 16) >= 0x80}
    for match in re.finditer(r"(?<![\w.+-])(\d+)(?![\w.])", rule):
        value = int(match.group(1))
        if value in _ERROR_VALUES and not _QUANTITY.match(rule, match.end()):
            codes.add(value)
    return codes


def _rows() -> list[tuple[str, str, str, str]]:
    """(page, call, rule, test cell) of every rule-table row."""
    rows = []
    for page in PAGES:
        header: list[str] | None = None
        for line in (ROOT / page).read_text().splitlines():
            if not line.startswith("|"):
                header = None
                continue
            cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip()[1:-1])]
            if header is None:
                header = cells
            elif not set(cells[0]) <= set("- ") and "rule" in header and "test" in header:
                rows.append((page, cells[0], cells[header.index("rule")],
                             cells[header.index("test")]))
    return rows


def _cited(cell: str) -> list[tuple[str, str]]:
    """(test file, function or class) of each test the cell cites."""
    cited: list[tuple[str, str]] = []
    legend = None
    for token in re.finditer(r"\b([SF])\s+`|`([\w./]+\.py)(?:::(\w+)[^`]*)?`|`(\w+)`", cell):
        if token.group(1):
            legend = LEGENDS[token.group(1)]
            rest = cell[token.end():]
            name = re.match(r"(\w+)", rest)
            if name:
                cited.append((legend, name.group(1)))
        elif token.group(2):
            path = token.group(2)
            cited.append((path if path.startswith("tests/") else f"tests/{path}",
                          token.group(3) or "")) # "": the whole file
        elif token.group(4) and legend:
            cited.append((legend, token.group(4)))
    return cited


@functools.cache
def _definitions(path: str) -> dict[str, ast.AST]:
    tree = ast.parse((ROOT / path).read_text())
    found: dict[str, ast.AST] = {"": tree}
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            found.setdefault(node.name, node)
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Attribute) \
                and isinstance(node.value.value, ast.Name) and node.value.attr == "TestCase":
            # TestXMachine = XMachine.TestCase (hypothesis' stateful idiom)
            for target in node.targets:
                if isinstance(target, ast.Name):
                    aliases[target.id] = node.value.value.id
    for alias, machine in aliases.items():
        if machine in found:
            found.setdefault(alias, found[machine])
    return found


def _compared(path: str, node: ast.AST) -> set[int]:
    """The codes a test's source names: integer literals, spec/abi.py's codes,
    and the test module's own integer names (``INVALID_PARAMETER = ...``)."""
    module = vars(importlib.import_module(path.removesuffix(".py").replace("/", ".")))
    values: set[int] = set()
    for child in ast.walk(node):
        if isinstance(child, ast.Constant) and type(child.value) is int:
            values.add(child.value)
        name = child.id if isinstance(child, ast.Name) else \
            child.attr if isinstance(child, ast.Attribute) else None
        if name in _NAMED:
            values.add(_NAMED[name])
        elif isinstance(child, ast.Name | ast.Attribute):
            value = _resolve(child, module)
            if isinstance(value, int) and not isinstance(value, bool):
                values.add(int(value))
    return values


def _resolve(node: ast.expr, module: dict[str, object]) -> object:
    """The object a name or a dotted name of the test module stands for."""
    if isinstance(node, ast.Name):
        return module.get(node.id)
    if isinstance(node, ast.Attribute):
        return getattr(_resolve(node.value, module), node.attr, None)
    return None


ROWS = _rows()


def test_the_tables_are_read() -> None:
    """Not vacuous: the pages have rows, rows promise codes, cells cite tests."""
    assert len(ROWS) > 60
    assert sum(bool(_codes(rule)) for _, _, rule, _ in ROWS) > 30
    assert all(_cited(cell) for _, _, _, cell in ROWS if "`" in cell)


def test_code_reading() -> None:
    assert _codes("a range outside user space 487; size 0: 87") == {487, 87}
    assert _codes("an address not a multiple of 64 KB 1132; 8 pages") == {1132}
    assert _codes("A0h no room, A1h no free handle, 41h returns E000h") == {0xA0, 0xA1}
    assert _codes("ERROR_NOT_READY before, mprotect EINVAL") == {21, abi.EINVAL}


@pytest.mark.parametrize(("page", "call", "rule", "cell"), ROWS,
                         ids=[f"{page.split('/')[1]}:{call}:{index}"
                              for index, (page, call, _, _) in enumerate(ROWS)])
def test_every_promised_code_is_compared_by_a_cited_test(page: str, call: str, rule: str,
                                                          cell: str) -> None:
    codes = _codes(rule)
    if not codes:
        return
    compared: set[int] = set()
    for path, name in _cited(cell):
        definition = _definitions(path).get(name)
        assert definition is not None, f"{page} {call}: {path}::{name} does not exist"
        compared |= _compared(path, definition)
    missing = sorted(codes - compared)
    assert not missing, (f"{page} row {call!r} promises codes {missing} that none of its "
                         f"cited tests compares: {_cited(cell)}")
