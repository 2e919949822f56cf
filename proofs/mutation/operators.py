"""The mutants of a module: every place a small, plausible slip could be made.

The operators are the ones issue 18 names (the classic set of Offutt et al.,
"An experimental determination of sufficient mutant operators", 1996, cut to
what a Python kernel model writes):

- ``compare``: ``<`` and ``<=``, ``>`` and ``>=`` swapped (an off-by-one at a
  boundary), ``==`` and ``!=``, ``in`` and ``not in``, ``is`` and ``is not``;
- ``number+1`` / ``number-1``: an integer constant one more or one less;
- ``arith``: ``+`` and ``-``, ``&`` and ``|``, ``<<`` and ``>>`` swapped
  (in expressions and augmented assignments);
- ``boolop``: ``and`` and ``or`` swapped;
- ``minmax``: ``min`` and ``max`` swapped;
- ``delete``: a simple statement (assignment, call, raise, break, continue)
  replaced by ``pass``;
- ``not-return``: ``return x`` in a function declared ``-> bool`` returns
  ``not (x)``.

Annotations, docstrings, ``if TYPE_CHECKING`` blocks and type-only
statements (a private module-level name no code reads at run time, such as
``_T = TypeVar("_T")`` under ``from __future__ import annotations``; a bare
annotation in a class that is no dataclass or NamedTuple) are not
mutated: they exist for the type checker, and a mutant of them is equivalent
by construction (and the costliest kind to run, since every test of the
module executes an import-time line). A
mutant is a splice of the module's source (UTF-8 byte offsets, as ``ast``
gives them): the mutated node's text replaced by the ``ast.unparse`` of the
changed node, parenthesised, so the rest of the file (comments, layout) stays
as written and a report can quote the line.
"""

from __future__ import annotations

import ast
import copy
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

_COMPARE_SWAPS: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In,
    ast.Is: ast.IsNot, ast.IsNot: ast.Is,
}
_ARITH_SWAPS: dict[type[ast.operator], type[ast.operator]] = {
    ast.Add: ast.Sub, ast.Sub: ast.Add, ast.BitAnd: ast.BitOr, ast.BitOr: ast.BitAnd,
    ast.LShift: ast.RShift, ast.RShift: ast.LShift,
}
_DELETABLE = (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Expr, ast.Raise, ast.Break,
              ast.Continue)


@dataclass(frozen=True)
class Mutant:
    """One changed place of one module. ``key`` names it independently of line
    numbers (module, function, operator, both texts and which occurrence of
    that text in the function), so a verdict on it (equivalent, with a reason)
    survives edits elsewhere in the file."""

    module: str
    path: str
    function: str
    line: int
    operator: str
    original: str
    mutated: str
    start: int
    end: int
    occurrence: int
    #: a mutant of a type-only statement (see the module docstring): drawn, and
    #: then passed over, so that the draws of the others stay as they were
    type_only: bool = False

    @property
    def key(self) -> str:
        text = "\0".join((self.module, self.function, self.operator, self.original,
                          self.mutated, str(self.occurrence)))
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def describe(self) -> str:
        return (f"{self.path}:{self.line} ({self.function}) {self.operator}: "
                f"`{_one_line(self.original)}` -> `{_one_line(self.mutated)}`")

    def apply(self, source: bytes) -> bytes:
        """The module's source with this mutant spliced in."""
        return source[:self.start] + self.mutated.encode() + source[self.end:]


def _one_line(text: str, width: int = 70) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[:width - 3] + "..."


def compiles(mutant: Mutant, source: bytes) -> bool:
    """Whether the mutated module is still Python (a mutant that is not would
    be caught by any import, and says nothing about the checks)."""
    try:
        compile(mutant.apply(source), mutant.path, "exec")
    except SyntaxError:
        return False
    return True


def mutants(module: str, path: str, source: bytes, *,
            type_only: bool = False) -> list[Mutant]:
    """Every mutant of the module, in source order (see :func:`compiles`); with
    type_only, those of type-only statements too, marked."""
    tree = ast.parse(source)
    starts = [0]
    for line in source.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    found: list[Mutant] = []
    seen: dict[tuple[str, str, str, str], int] = {}
    skipped = _type_only(tree)
    for function, node, operator, replacement, in_type_only in _Finder(skipped).points(tree):
        if in_type_only and not type_only:
            continue
        assert node.end_lineno is not None and node.end_col_offset is not None
        start = starts[node.lineno - 1] + node.col_offset
        end = starts[node.end_lineno - 1] + node.end_col_offset
        original = source[start:end].decode()
        text = f"({ast.unparse(replacement)})" if isinstance(replacement, ast.expr) \
            else replacement
        identity = (function, operator, original, text)
        seen[identity] = seen.get(identity, -1) + 1
        found.append(Mutant(module, path, function, node.lineno, operator, original, text,
                            start, end, seen[identity], in_type_only))
    return found


Point = tuple[str, "ast.expr | ast.stmt", str, "ast.expr | str"]
Marked = tuple[str, "ast.expr | ast.stmt", str, "ast.expr | str", bool]


def _type_only(tree: ast.Module) -> set[int]:
    """ids of the module-level assignments that bind only private names no code
    reads at run time (every read of them is inside an annotation)."""
    annotations: set[int] = set()
    for node in ast.walk(tree):
        parts: list[ast.expr | None] = []
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            parts = [node.returns, *(a.annotation for a in (
                *node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs,
                *(x for x in (node.args.vararg, node.args.kwarg) if x is not None)))]
        elif isinstance(node, ast.AnnAssign):
            parts = [node.annotation]
        for part in parts:
            if part is not None:
                annotations.update(id(child) for child in ast.walk(part))
    read = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)
            and isinstance(node.ctx, ast.Load) and id(node) not in annotations}
    skipped = {id(statement) for statement in tree.body
               if isinstance(statement, ast.Assign) and all(
                   isinstance(target, ast.Name) and target.id.startswith("_")
                   and target.id not in read for target in statement.targets)}
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and not _makes_fields(node):
            # ``last_error: ErrorCode`` in a plain class only declares a type
            skipped.update(id(statement) for statement in node.body
                           if isinstance(statement, ast.AnnAssign) and statement.value is None)
    return skipped


def _makes_fields(node: ast.ClassDef) -> bool:
    """Whether the class's bare annotations are fields (a dataclass, a NamedTuple,
    a TypedDict): deleting one of those changes the class."""
    names = {ast.unparse(d.func if isinstance(d, ast.Call) else d) for d in node.decorator_list}
    bases = {ast.unparse(base) for base in node.bases}
    return bool({"dataclass", "dataclasses.dataclass"} & names
                or {"NamedTuple", "TypedDict", "typing.NamedTuple"} & bases)


class _Finder:
    """Walks a module, tracking the enclosing function's qualified name."""

    def __init__(self, skipped: set[int]) -> None:
        self.skipped = skipped
        self.in_type_only = False

    def points(self, tree: ast.Module) -> Iterator[Marked]:
        """Each point, marked True when it lies in a type-only statement."""
        for point in self._body(tree.body, []):
            yield (*point, self.in_type_only)

    def _body(self, body: list[ast.stmt], scope: list[str]) -> Iterator[Point]:
        for index, statement in enumerate(body):
            if index == 0 and _is_docstring(statement):
                continue
            yield from self._statement(statement, scope)

    def _statement(self, node: ast.stmt, scope: list[str]) -> Iterator[Point]:
        name = ".".join(scope) or "<module>"
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            return
        if id(node) in self.skipped:
            self.in_type_only = True
            yield from self._simple(node, name, False)
            self.in_type_only = False
            return
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            inner = [*scope, node.name]
            returns_bool = isinstance(node.returns, ast.Name) and node.returns.id == "bool" \
                or isinstance(node.returns, ast.Constant) and node.returns.value == "bool"
            for default in (*node.args.defaults, *node.args.kw_defaults):
                if default is not None:
                    yield from self._expression(default, name)
            yield from self._function_body(node.body, inner, returns_bool)
            return
        if isinstance(node, ast.ClassDef):
            yield from self._body(node.body, [*scope, node.name])
            return
        yield from self._simple(node, name, False)
        for field in ("body", "orelse", "finalbody"):
            inner_body = getattr(node, field, None)
            if isinstance(inner_body, list):
                yield from self._body(inner_body, scope)
        for handler in getattr(node, "handlers", []):
            yield from self._body(handler.body, scope)
        if isinstance(node, ast.Match):
            for case in node.cases:
                yield from self._body(case.body, scope)

    def _function_body(self, body: list[ast.stmt], scope: list[str],
                       returns_bool: bool) -> Iterator[Point]:
        name = ".".join(scope)
        for index, statement in enumerate(body):
            if index == 0 and _is_docstring(statement):
                continue
            if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                yield from self._statement(statement, scope)
                continue
            yield from self._simple(statement, name, returns_bool)
            for field in ("body", "orelse", "finalbody"):
                inner_body = getattr(statement, field, None)
                if isinstance(inner_body, list):
                    yield from self._function_body(inner_body, scope, returns_bool)
            for handler in getattr(statement, "handlers", []):
                yield from self._function_body(handler.body, scope, returns_bool)

    def _simple(self, node: ast.stmt, name: str, returns_bool: bool) -> Iterator[Point]:
        """The statement's own mutants and those of its expressions (not of the
        statements nested in its body, which the callers walk)."""
        if isinstance(node, _DELETABLE) and not _is_all(node) and not (
                isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)):
            yield name, node, "delete", "pass"
        if isinstance(node, ast.AugAssign) and type(node.op) in _ARITH_SWAPS:
            changed = copy.deepcopy(node)
            changed.op = _ARITH_SWAPS[type(node.op)]()
            yield name, node, "arith", ast.unparse(changed)
        if returns_bool and isinstance(node, ast.Return) and node.value is not None:
            yield name, node.value, "not-return", ast.UnaryOp(ast.Not(), node.value)
        if _is_all(node):
            return
        for field, value in ast.iter_fields(node):
            if field in ("body", "orelse", "finalbody", "handlers", "cases", "annotation",
                         "returns", "type_comment", "target", "targets"):
                continue
            for child in value if isinstance(value, list) else [value]:
                if isinstance(child, ast.expr):
                    yield from self._expression(child, name)
        if isinstance(node, ast.AugAssign | ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Subscript):
                    yield from self._expression(target.slice, name)

    def _expression(self, root: ast.expr, name: str) -> Iterator[Point]:
        for node in ast.walk(root):
            if isinstance(node, ast.JoinedStr):
                continue
            if isinstance(node, ast.Compare):
                for index, op in enumerate(node.ops):
                    if type(op) in _COMPARE_SWAPS:
                        changed = copy.deepcopy(node)
                        changed.ops[index] = _COMPARE_SWAPS[type(op)]()
                        yield name, node, "compare", changed
            elif isinstance(node, ast.BinOp) and type(node.op) in _ARITH_SWAPS:
                changed_op = copy.deepcopy(node)
                changed_op.op = _ARITH_SWAPS[type(node.op)]()
                yield name, node, "arith", changed_op
            elif isinstance(node, ast.BoolOp):
                changed_bool = copy.deepcopy(node)
                changed_bool.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
                yield name, node, "boolop", changed_bool
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                    and node.func.id in ("min", "max"):
                swapped = copy.deepcopy(node)
                swapped.func = ast.Name("max" if node.func.id == "min" else "min", ast.Load())
                yield name, node, "minmax", swapped
            elif isinstance(node, ast.Constant) and type(node.value) is int:
                for step, label in ((1, "number+1"), (-1, "number-1")):
                    yield name, node, label, ast.Constant(node.value + step)


def _is_docstring(node: ast.stmt) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) \
        and isinstance(node.value.value, str)


def _is_type_checking(test: ast.expr) -> bool:
    return isinstance(test, ast.Name) and test.id == "TYPE_CHECKING" \
        or isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _is_all(node: ast.stmt) -> bool:
    return isinstance(node, ast.Assign) and any(
        isinstance(target, ast.Name) and target.id == "__all__" for target in node.targets)
