"""The proof cache: a verdict or a z3 answer reused only while what decided it
is unchanged.

Two kinds of entries, both under ``--cache-dir`` of ``python -m proofs.check``
(default ``.memspec-cache``; ``--no-cache`` turns it off; CI can keep it):

* **Verdicts** (``verdicts/<2 hex>/<key>.json``), of obligations that name the
  modules their verdict depends on (``Obligation.depends_on``: the inductive
  proofs and CrossHair's contracts; never the machines). The key
  (:func:`verdict_key`) is the obligation's id, the profile, the versions of
  Python and of the tools, and the SHA-256 of every module in the
  :func:`closure` of those modules: the module that registers it and every
  module of spec, model and proofs they import, transitively. Only a passing
  verdict is kept. This trusts that a verdict is a function of that source: a
  run that patches code at run time (the broken variants) opens no cache.
* **z3's unsat answers** (``unsat/<2 hex>/<key>.json``), one per query of
  ``decide`` (proofs/inductive/paging.py), so an obligation whose verdict is no
  longer current asks z3 only the queries whose formulas changed. The key is a
  SHA-256 of the query's structure (:class:`Structure`), the z3 version and
  the source of the code that turns answers into verdicts. The same formula is
  unsat whoever asks and whenever, so an entry is sound by construction; a sat
  or unknown answer is never kept. ``decided/`` holds hints: which premise set
  decided a goal, so that its query is the one looked up.

An entry holds its own key and when it was decided, and by which obligation.
One that does not parse, or whose key, answer, version or verdict is not what
it must be, is ignored (and counted), never trusted.
"""

from __future__ import annotations

import ast
import dataclasses
import datetime
import functools
import hashlib
import importlib.util
import inspect
import json
import os
import platform
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

import z3
from z3 import z3core as core

from proofs.obligation import Kind, Obligation, Verdict

DEFAULT_DIRECTORY = ".memspec-cache"
Z3_VERSION = z3.get_version_string()
#: The packages whose modules' source is part of a verdict's key.
OUR_PACKAGES = ("spec", "model", "proofs")


@dataclasses.dataclass
class Usage:
    """What one obligation's run took from the cache and added to it."""

    hits: int = 0
    asked: int = 0
    decided: list[str] = dataclasses.field(default_factory=list)  # when the hits were made
    corrupt: int = 0
    verdict: bool = False  # a whole verdict (CrossHair's), not z3 answers

    def describe(self) -> str:
        """One line for the report ("" when the run asked z3 everything)."""
        if not self.hits:
            return ""
        oldest = min(self.decided) if self.decided else "?"
        if self.verdict:
            return f"the verdict from the cache (decided {oldest})"
        whole = "all" if not self.asked else f"{self.hits} of"
        return f"{whole} {self.hits + self.asked} z3 answers from the cache (decided from {oldest})"


class ProofCache:
    """unsat answers (and CrossHair verdicts) on disk, by key."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.usage = Usage()

    @staticmethod
    def key(text: str, code: str) -> str:
        """The key of a query, given as text (its :func:`structural` digest, or
        another exact description), asked by code (the source of what turns
        answers into verdicts: a change to it starts its keys afresh)."""
        whole = f"z3 {Z3_VERSION}\ncode {hashlib.sha256(code.encode()).hexdigest()}\n{text}"
        return hashlib.sha256(whole.encode()).hexdigest()

    def _path(self, key: str) -> Path:
        return self.directory / "unsat" / key[:2] / f"{key}.json"

    def _entry(self, path: Path, key: str) -> dict[str, Any] | None:
        """The entry stored at path for key, or None (absent; or damaged, and
        counted as such: unreadable, not JSON, or not an entry of key)."""
        try:
            entry = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            entry = None
        if not (isinstance(entry, dict) and entry.get("key") == key
                and isinstance(entry.get("decided"), str)):
            self.usage.corrupt += 1
            return None
        return entry

    def known_unsat(self, key: str) -> bool:
        """Whether a valid entry says the query of key is unsat."""
        entry = self._entry(self._path(key), key)
        if entry is None:
            return False
        if not (entry.get("answer") == "unsat" and entry.get("z3") == Z3_VERSION):
            self.usage.corrupt += 1
            return False
        self.usage.hits += 1
        self.usage.decided.append(entry["decided"])
        return True

    def remember_unsat(self, key: str, by: str) -> None:
        """Store an unsat answer (atomically: a reader never sees half an entry)."""
        path = self._path(key)
        entry = {"key": key, "answer": "unsat", "z3": Z3_VERSION, "by": by,
                 "decided": datetime.datetime.now(datetime.UTC).isoformat(
                     timespec="seconds")}
        write_atomically(path, json.dumps(entry))

    def decided_by(self, key: str) -> list[str]:
        """The premise sets (labels of ``decide``) that have decided a goal whose
        structure alone has key (several goals can share one: two steps with
        the same post-state, different premises): hints, never verdicts; each
        label's own query must still be :meth:`known_unsat`."""
        try:
            entry = json.loads((self.directory / "decided" / key[:2] / f"{key}.json").read_text())
        except (OSError, ValueError):
            return []
        labels = entry.get("labels") if isinstance(entry, dict) and entry.get("key") == key \
            else None
        return [label for label in labels if isinstance(label, str)] \
            if isinstance(labels, list) else []

    def remember_decided_by(self, key: str, label: str) -> None:
        labels = self.decided_by(key)
        if label not in labels:
            write_atomically(self.directory / "decided" / key[:2] / f"{key}.json",
                             json.dumps({"key": key, "labels": [*labels, label]}))

    def verdict(self, key: str) -> Verdict | None:
        """The passing verdict stored under key, or None."""
        entry = self._entry(self.directory / "verdicts" / key[:2] / f"{key}.json", key)
        if entry is None:
            return None
        try:
            fields = dict(entry["verdict"])
            verdict = Verdict(**{**fields, "kind": Kind[fields["kind"]],
                                 "violated": tuple(fields["violated"])})
            if not verdict.kind.passed or not isinstance(verdict.summary, str):
                raise ValueError("not a passing verdict")
        except (KeyError, TypeError, ValueError):
            self.usage.corrupt += 1
            return None
        self.usage.hits += 1
        self.usage.verdict = True
        self.usage.decided.append(entry["decided"])
        return verdict

    def remember_verdict(self, key: str, verdict: Verdict, by: str) -> None:
        fields = {**dataclasses.asdict(verdict), "kind": verdict.kind.name,
                  "violated": list(verdict.violated), "cache": ""}
        entry = {"key": key, "verdict": fields, "by": by,
                 "decided": datetime.datetime.now(datetime.UTC).isoformat(
                     timespec="seconds")}
        write_atomically(self.directory / "verdicts" / key[:2] / f"{key}.json",
                         json.dumps(entry))


def verdict_key(obligation: Obligation, profile: str) -> str:
    """The key of an obligation's verdict: its id, the profile, the versions of
    Python and of the tools, and the source of its modules and of every module
    of spec, model and proofs they import (:func:`closure`)."""
    modules = sorted(set().union(*(closure(name) for name in obligation.depends_on)))
    text = "\n".join([f"obligation {obligation.id} {profile}", *_tool_versions(),
                      *(f"module {name} {_source_digest(name)}" for name in modules)])
    return ProofCache.key(text, "")


def key_of(obligation: Obligation, profile: str) -> str | None:
    """The obligation's verdict key when a cache is open and it may be cached
    (None otherwise); taken once, before the run, so the verdict is kept under
    the source it was decided by, not one edited while it ran."""
    if _ACTIVE is None or not obligation.depends_on:
        return None
    return verdict_key(obligation, profile)


def reuse(key: str | None) -> Verdict | None:
    """The verdict stored under key in the open cache, if there is one."""
    return None if key is None or _ACTIVE is None else _ACTIVE.verdict(key)


def keep(key: str | None, verdict: Verdict, by: str) -> None:
    """Store a passing verdict under key (failures are always decided again)."""
    if key is not None and _ACTIVE is not None and verdict.kind.passed:
        _ACTIVE.remember_verdict(key, verdict, by)


@functools.cache
def closure(module_name: str) -> frozenset[str]:
    """module_name, its parent packages and every module of spec, model and
    proofs it imports, transitively (read from the source, so an import inside
    a function counts too)."""
    seen: set[str] = set()
    pending = [module_name]
    while pending:
        name = pending.pop()
        if name in seen or name.split(".")[0] not in OUR_PACKAGES:
            continue
        seen.add(name)
        parts = name.split(".")
        pending += [".".join(parts[:i]) for i in range(1, len(parts))]
        pending += _imports(name)
    return frozenset(seen)


def _imports(module_name: str) -> list[str]:
    """The modules module_name's source imports, ``from P import m`` giving P.m
    when m is a module."""
    spec = importlib.util.find_spec(module_name)
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return []
    package = module_name if spec.submodule_search_locations is not None \
        else module_name.rpartition(".")[0]
    names = []
    for node in ast.walk(ast.parse(Path(spec.origin).read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = importlib.util.resolve_name("." * node.level + (node.module or ""),
                                               package) if node.level else node.module or ""
            names.append(base)
            names += [f"{base}.{alias.name}" for alias in node.names
                      if base.split(".")[0] in OUR_PACKAGES and _is_module(f"{base}.{alias.name}")]
    return names


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _source_digest(module_name: str) -> str:
    """The SHA-256 of a module's file as it is now (read each time: cheap, and a
    file edited while a process runs is seen)."""
    spec = importlib.util.find_spec(module_name)
    origin = None if spec is None else spec.origin
    text = Path(origin).read_bytes() if origin and origin.endswith(".py") else b"(none)"
    return hashlib.sha256(text).hexdigest()


@functools.cache
def _tool_versions() -> tuple[str, ...]:
    tools = [f"{name} {metadata.version(name)}"
             for name in ("crosshair-tool", "hypothesis", "z3-solver")]
    return (f"python {platform.python_version()}", *tools)


def structural(formulas: Sequence[z3.ExprRef]) -> str:
    """A SHA-256 of the formulas' structure (see :class:`Structure`)."""
    return Structure().add(formulas).hexdigest()


class Structure:
    """A running digest of formulas' structure: every node in post-order, an
    operator (its kind, name, signature and parameters, such as extract's bit
    positions), a numeral, a bound variable (de Bruijn index and sort) or a
    quantifier (forall, exists or lambda, with its bound sorts), over its
    children's post-order numbers, and every uninterpreted symbol renamed c0,
    c1, ... in the order first met (the spec's fresh states are numbered pre0,
    pre4, ... by how many came before, which must not change a key). Two lists of
    formulas with one digest are the same up to a one-to-one renaming of their
    symbols, so equally satisfiable. z3's own SMT-LIB printer is no key: it
    names shared subterms by their reference counts, which a solver that holds a
    term changes.

    :meth:`copy` lets a caller walk shared premises once and then each goal: the
    formulas added must stay alive while the structure is used (it remembers
    their nodes by z3's ids).
    """

    def __init__(self) -> None:
        self._ctx: Any = None
        self._numbers: dict[int, int] = {}
        self._names: dict[str, str] = {}
        self._decls: dict[int, str] = {}
        self._sorts: dict[int, str] = {}
        self._digest = hashlib.sha256()
        self._roots: list[int] = []

    def copy(self) -> Structure:
        twin = Structure()
        twin._ctx = self._ctx
        twin._numbers, twin._names = dict(self._numbers), dict(self._names)
        twin._decls, twin._sorts = dict(self._decls), dict(self._sorts)
        twin._digest, twin._roots = self._digest.copy(), list(self._roots)
        return twin

    def hexdigest(self) -> str:
        digest = self._digest.copy()
        digest.update(f"roots {self._roots}".encode())
        return digest.hexdigest()

    def add(self, formulas: Sequence[z3.ExprRef]) -> Structure:
        """Walk formulas (after those added before); returns self."""
        for formula in formulas:
            if self._ctx is None:
                self._ctx = formula.ctx.ref()
            self._roots.append(self._walk(formula.as_ast()))
        return self

    def _walk(self, root: Any) -> int:
        """Number root's nodes not yet numbered, children first; its number."""
        ctx, numbers, update = self._ctx, self._numbers, self._digest.update
        ast_id, kind_of, num_args, arg = AST_ID, AST_KIND, APP_NUM_ARGS, APP_ARG
        expanded: set[int] = set()
        # (node, its id) to visit, or (None, id, label, children's ids) to number
        stack: list[tuple[Any, ...]] = [(root, ast_id(ctx, root))]
        while stack:
            item = stack.pop()
            node, ident = item[0], item[1]
            if ident in numbers:
                continue
            if node is None:
                children = ",".join(str(numbers[kid]) for kid in item[3])
                numbers[ident] = len(numbers)
                update(f"{item[2]}({children})\n".encode())
                continue
            if ident in expanded:
                continue
            expanded.add(ident)
            kind = kind_of(ctx, node)
            if kind == core.Z3_APP_AST:
                kids = [arg(ctx, node, i) for i in range(num_args(ctx, node))]
                label = (f"#{core.Z3_get_numeral_string(ctx, node)}:"
                         + self._sort(core.Z3_get_sort(ctx, node))
                         if not kids and _IS_NUMERAL(ctx, node)
                         else self._decl(APP_DECL(ctx, node)))
            elif kind == core.Z3_QUANTIFIER_AST:
                kids = [core.Z3_get_quantifier_body(ctx, node)]
                bound = ",".join(self._sort(core.Z3_get_quantifier_bound_sort(ctx, node, i))
                                 for i in range(core.Z3_get_quantifier_num_bound(ctx, node)))
                quantifier = ("lambda" if core.Z3_is_lambda(ctx, node) else
                              "forall" if core.Z3_is_quantifier_forall(ctx, node) else "exists")
                label = f"{quantifier}[{bound}]"
            elif kind == core.Z3_VAR_AST:
                kids = []
                label = f"var{core.Z3_get_index_value(ctx, node)}:" + \
                    self._sort(core.Z3_get_sort(ctx, node))
            else:  # a sort or a declaration as a term: not in our formulas
                kids = []
                label = f"?{core.Z3_ast_to_string(ctx, node)}"
            kid_ids = [ast_id(ctx, kid) for kid in kids]
            stack.append((None, ident, label, kid_ids))
            stack.extend(pair for pair in zip(reversed(kids), reversed(kid_ids), strict=True)
                         if pair[1] not in numbers)
        return numbers[ast_id(ctx, root)]

    def _sort(self, sort: Any) -> str:
        ident = core.Z3_get_sort_id(self._ctx, sort)
        if ident not in self._sorts:
            self._sorts[ident] = core.Z3_sort_to_string(self._ctx, sort)
        return self._sorts[ident]

    def _decl(self, decl: Any) -> str:
        """An operator's label: its kind, its name (renamed if uninterpreted),
        its signature and its parameters."""
        ctx = self._ctx
        ident = _DECL_ID(ctx, decl)
        if ident in self._decls:
            return self._decls[ident]
        kind = core.Z3_get_decl_kind(ctx, decl)
        name = core.Z3_get_symbol_string(ctx, core.Z3_get_decl_name(ctx, decl))
        signature = ",".join(self._sort(core.Z3_get_domain(ctx, decl, i))
                             for i in range(core.Z3_get_domain_size(ctx, decl)))
        shown = self._names.setdefault(name, f"c{len(self._names)}") \
            if kind == core.Z3_OP_UNINTERPRETED else name
        parameters = [self._parameter(decl, i)
                      for i in range(core.Z3_get_decl_num_parameters(ctx, decl))]
        label = (f"{kind}:{shown}[{';'.join(parameters)}]({signature})"
                 f"->{self._sort(core.Z3_get_range(ctx, decl))}")
        self._decls[ident] = label
        return label

    def _parameter(self, decl: Any, index: int) -> str:
        ctx = self._ctx
        kind = core.Z3_get_decl_parameter_kind(ctx, decl, index)
        if kind == core.Z3_PARAMETER_INT:
            return f"i{core.Z3_get_decl_int_parameter(ctx, decl, index)}"
        if kind == core.Z3_PARAMETER_DOUBLE:
            return f"d{core.Z3_get_decl_double_parameter(ctx, decl, index)!r}"
        if kind == core.Z3_PARAMETER_RATIONAL:
            return f"r{core.Z3_get_decl_rational_parameter(ctx, decl, index)}"
        if kind == core.Z3_PARAMETER_SYMBOL:
            return "y" + str(core.Z3_get_symbol_string(
                ctx, core.Z3_get_decl_symbol_parameter(ctx, decl, index)))
        if kind == core.Z3_PARAMETER_SORT:
            return "s" + self._sort(core.Z3_get_decl_sort_parameter(ctx, decl, index))
        if kind == core.Z3_PARAMETER_FUNC_DECL:  # not renamed: at worst a cache miss
            return "f" + str(core.Z3_func_decl_to_string(
                ctx, core.Z3_get_decl_func_decl_parameter(ctx, decl, index)))
        return "a" + str(core.Z3_ast_to_string(
            ctx, core.Z3_get_decl_ast_parameter(ctx, decl, index)))


def _unchecked(function: Any) -> Any:
    """The ctypes entry point under a z3core wrapper, without its error check (it
    costs as much as the call, and these getters cannot fail on a live term);
    the wrapper itself if z3core is ever built differently."""
    defaults = getattr(function, "__defaults__", None) or ()
    return getattr(defaults[-1], "f", function) if defaults else function


#: The getters :meth:`Structure._walk` and the symbol renaming of
#: proofs.inductive.paging.Asked call for every node.
AST_ID = _unchecked(core.Z3_get_ast_id)
AST_KIND = _unchecked(core.Z3_get_ast_kind)
APP_NUM_ARGS = _unchecked(core.Z3_get_app_num_args)
APP_ARG = _unchecked(core.Z3_get_app_arg)
_IS_NUMERAL = _unchecked(core.Z3_is_numeral_ast)
APP_DECL = _unchecked(core.Z3_get_app_decl)
_DECL_ID = _unchecked(core.Z3_get_func_decl_id)


def write_atomically(path: Path, text: str) -> None:
    """Write text to path through a temporary file and a rename; a failure to
    write (a read-only cache) loses the entry, never the verdict."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(handle, "w") as file:
            file.write(text)
        os.replace(temporary, path)
    except OSError:
        pass


#: The cache of this process and the obligation it is running (set by the runner).
_ACTIVE: ProofCache | None = None
_OBLIGATION = ""


def active() -> ProofCache | None:
    return _ACTIVE


def current_obligation() -> str:
    return _OBLIGATION


def open_cache(directory: str | os.PathLike[str] | None) -> None:
    """Use a cache in directory for this process (None: none)."""
    global _ACTIVE
    _ACTIVE = None if directory is None else ProofCache(directory)


@contextmanager
def opened(directory: str | os.PathLike[str] | None) -> Iterator[ProofCache | None]:
    """A cache in directory (None: none) for this process while the block runs,
    then whatever was open before."""
    global _ACTIVE
    before = _ACTIVE
    open_cache(directory)
    try:
        yield _ACTIVE
    finally:
        _ACTIVE = before


def source(*objects: Any) -> str:
    """The source text of functions or modules (the ``code`` of a key)."""
    return "\n".join(inspect.getsource(obj) for obj in objects)


@contextmanager
def running(obligation_id: str) -> Iterator[Usage]:
    """While one obligation runs: its id for provenance, and a fresh Usage."""
    global _OBLIGATION
    _OBLIGATION = obligation_id
    cache = _ACTIVE
    usage = Usage()
    if cache is not None:
        cache.usage = usage
    try:
        yield usage
    finally:
        _OBLIGATION = ""
