"""Refinement of the KernelHeap spec by the model, checked on every step of hypothesis runs.

A :class:`~hypothesis.stateful.RuleBasedStateMachine` drives one small
KernelHeap (``make_heap``: [START, END) of [START, MAX), 16 index entries, so
that allocations expand it and frees contract it) with Alloc, Free (live
pointers; freed, foreign and misaligned ones), Expand, Contract,
FindSmallestHole and payload writes through the VMM. After every step
:class:`HeapHarness` checks

1. every invariant of ``spec.kernel_heap.INVARIANTS`` on the abstraction, one
   z3 query of its negation each (sat: violated, named by its id; unknown: a
   failure), the verdict cached per tuple of the terms of the fields it reads
   (z3 hash-conses terms: an unchanged field is the same term);
2. a successful call against the spec's composite of steps (the docstring of
   spec/kernel_heap.py), the implementation's choices read from the pre and
   post snapshots: the hole taken, the new end, the frames mapped (the post
   PTEs), and the index position of each new hole, computed from the
   intermediate state (before the first entry, its own old entry left out,
   whose key is >= its size). Every step must be ``ok`` with its ``assume``
   true, and the composite's final state must equal the post abstraction on
   the real fields, decided by z3: ``block``, ``pte`` and the scalars as
   values (Not(a == b) unsat), the other header maps at every header
   (ForAll a: block[a] -> equal; ``block`` equal makes these the headers of
   either state), ``index`` at every position below count. Else
   ``transition``;
3. a failed call (``last_error`` not ERROR_SUCCESS) returns the failure value,
   with the code model/kernel_heap.py's rules give for the call's arguments on
   the pre-state (:func:`refusals`: ERROR_INVALID_PARAMETER,
   ERROR_INVALID_ADDRESS, ERROR_INVALID_BLOCK, or ERROR_NOT_ENOUGH_MEMORY only
   when no hole fits, the index is full or frames are short; never
   ERROR_ARENA_TRASHED, as the machine damages nothing), else ``transition``;
   and it changes neither the snapshot nor the PageManager's free count
   (``unchanged``);
4. every byte written into a live payload reads back intact (``contents``).

Besides sizes drawn at random, ``alloc_across_page`` asks for the size whose
block ends 1..11 bytes before a page boundary (the next header straddles it)
or 1..7 bytes after one (its own footer does), in the hole the Alloc takes:
the heap writes those in two frames, and the abstraction reads them back
through the page tables.

Costs (CPU on the 2-core development machine, with a z3 run beside it): an
invariant query 3-40 ms (HEAP-2 the slowest; about two thirds are answered
from the cache), a transition 10-40 ms; quick (3 examples x 20 steps,
derandomized, swarm testing off) 2-3 s (10 examples took 6-8 s; the whole
quick profile must stay CI-sized); full (100 x 40, random, swarm
testing on) 80-90 s. Each broken model of HEAP_MODEL_VARIANTS is
caught within 20 quick examples (5-12 in practice): the tests give them 20.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import z3
from hypothesis import strategies as st
from hypothesis.stateful import (
    initialize,
    precondition,
    rule,
)

from model.heap_layout import aligned_header, fits
from model.kernel_heap import KernelHeap, footer_bytes
from model.x86_paging import align_up
from proofs.abstractions.kernel_heap import HeapSnapshot, heap_snapshot, small_heap, to_heap_state
from proofs.machines.checks import (
    CONTENTS,
    QUERY_TIMEOUT_MS,
    TRANSITION,
    UNCHANGED,
    CheckError,
    SolverUnknownError,
    decide,
)
from proofs.machines.kernel_heap_twin import accepts as twin_accepts
from proofs.machines.kernel_heap_twin import needless_growth
from proofs.machines.runner import (
    Budget,
    CheckedMachine,
    ModelVariant,
    machine_obligation,
    run_machine,
)
from proofs.machines.witness import explain
from proofs.obligation import Obligation, Verdict
from spec import kernel_heap as kh
from spec.abi import (
    FOOTER_SIZE,
    HEADER_SIZE,
    MIN_BLOCK,
    PAGE_SHIFT,
    PAGE_SIZE,
    U32_MAX,
    ErrorCode,
)
from spec.state import ADDR, FRAME, HEAP_GHOST_FIELDS, PAGE, HeapState, Ref, bv, symbolic_heap

SUCCESS = ErrorCode.ERROR_SUCCESS
E = ErrorCode
#: The heap every example drives: 4 pages of 0x20000, an index of 16 entries.
START, END, MAX = 0xC0000000, 0xC0002000, 0xC0020000
INDEX_SIZE, MIN_SIZE = 16, 0x1000
#: Hypothesis budget per profile; swarm testing (a random subset of the rules
#: disabled in each example) only in the full profile: in the quick one it
#: makes a few examples a lottery.
BUDGETS = {"quick": Budget(3, 20, 20.0, swarm=False), "full": Budget(100, 40, 60.0)}
#: Where a block may end relative to a page boundary so that a header (-11..-1:
#: the next block's) or a footer (+1..+7: its own) straddles it.
CROSSINGS = (*range(1 - HEADER_SIZE, 0), *range(1, FOOTER_SIZE))
#: What each call returns when it fails.
FAILURE: dict[str, object] = {"Alloc": 0, "Free": False, "Expand": False, "Contract": 0,
                              "FindSmallestHole": -1, "GetBlockSize": 0}
_FIELDS = tuple(f.name for f in dataclasses.fields(HeapState))
REAL_FIELDS = tuple(name for name in _FIELDS if name not in HEAP_GHOST_FIELDS)
#: Header maps compared at the headers; the index at its positions.
_AT_HEADERS = ("size", "hole", "aligned", "magic", "fmagic", "back")
#: The index position argument of a step, before it is computed.
_Q = z3.Const("heap_machine.q", ADDR)


def lit(value: int, sort: Ref = ADDR) -> Ref:
    """A literal of the heap's address (or page) sort: an integer, or a bit-vector."""
    if sort == z3.IntSort():
        return z3.IntVal(value)
    return bv(value % (1 << sort.size()), sort)


def _solve(formula: Ref) -> z3.CheckSatResult:
    solver = z3.Solver()
    solver.set("timeout", QUERY_TIMEOUT_MS)
    solver.add(formula)
    return solver.check()


def value(term: Ref) -> Any:
    """The int or bool a closed term denotes."""
    simple = z3.simplify(term)
    numeral = z3.is_bv_value(simple) or z3.is_int_value(simple)
    if not (numeral or z3.is_true(simple) or z3.is_false(simple)):
        solver = z3.Solver()
        solver.check()
        simple = solver.model().eval(term, model_completion=True)
        numeral = z3.is_bv_value(simple) or z3.is_int_value(simple)
    return simple.as_long() if numeral else z3.is_true(simple)


def equal_at(mine: Ref, theirs: Ref, points: list[Ref]) -> bool | None:
    """Whether two arrays agree at every point, when z3's simplifier reduces
    both reads to values (None: it does not, z3 must decide). A Store chain
    of values on a constant array is read as a Python dict."""
    reads = [_reader(mine), _reader(theirs)]
    for point in points:
        x, y = (read(point) for read in reads)
        if x is None or y is None:
            return None
        if not x.eq(y):
            return False
    return True


#: term id -> (the term, kept alive; its default; its stores as key id -> value):
#: a spec step's arrays are a few Stores on the last state's (issue 16).
_CHAINS: dict[int, tuple[Ref, Ref, dict[int, Ref]]] = {}


def _chain(array: Ref) -> tuple[Ref, dict[int, Ref]] | None:
    """(default, stores) of a Store chain of values on a constant array."""
    pending = []
    node = array
    while node.get_id() not in _CHAINS and z3.is_app_of(node, z3.Z3_OP_STORE):
        pending.append(node)
        node = node.arg(0)
    if node.get_id() in _CHAINS:
        _, default, base = _CHAINS[node.get_id()]
    elif z3.is_app_of(node, z3.Z3_OP_CONST_ARRAY):
        default, base = z3.simplify(node.arg(0)), {}
        if not _is_value(default):
            return None
    else:
        return None
    table = dict(base)
    for store in reversed(pending):
        key, value = z3.simplify(store.arg(1)), z3.simplify(store.arg(2))
        if not (_is_value(key) and _is_value(value)):
            return None
        table[key.get_id()] = value
    if len(_CHAINS) > 4096:
        _CHAINS.clear()
    _CHAINS[array.get_id()] = (array, default, table)
    return default, table


def _reader(array: Ref) -> Callable[[Ref], Ref | None]:
    """Reads of array at a value: a Store chain of values as a dict, else
    z3's simplifier (None where the read is no value)."""
    chain = _chain(array)
    if chain is not None:
        default, table = chain
        return lambda point: table.get(point.get_id(), default)

    def simplified(point: Ref) -> Ref | None:
        read = z3.simplify(array[point])
        return read if _is_value(read) else None
    return simplified


def valid(claim: Ref) -> bool:
    """A closed claim holds: z3's simplifier says so (a ground formula over
    concrete terms usually simplifies to a value), else z3 decides."""
    return z3.is_true(z3.simplify(claim)) or decide(claim, TRANSITION)


def stored(array: Ref) -> tuple[Ref, list[Ref]] | None:
    """(default, keys) of a chain of Stores on a constant array (None: another
    kind of term)."""
    keys = []
    while z3.is_app_of(array, z3.Z3_OP_STORE):
        keys.append(array.arg(1))
        array = array.arg(0)
    if not z3.is_app_of(array, z3.Z3_OP_CONST_ARRAY):
        return None
    return array.arg(0), keys


def equal_arrays(mine: Ref, theirs: Ref) -> bool | None:
    """Extensional equality of two Store chains on constant arrays: the same
    default and the same value at every key either stores (every other point
    reads the defaults); None when either is another kind of term or a read
    does not simplify to a value."""
    ours, other = stored(mine), stored(theirs)
    if ours is None or other is None:
        return None
    defaults = [z3.simplify(ours[0]), z3.simplify(other[0])]
    if not all(_is_value(d) for d in defaults):
        return None
    if not defaults[0].eq(defaults[1]):
        return False
    keys = {key.get_id(): key for key in map(z3.simplify, (*ours[1], *other[1]))}
    return equal_at(mine, theirs, list(keys.values()))


def _is_value(term: Ref) -> bool:
    return bool(z3.is_int_value(term) or z3.is_bv_value(term) or z3.is_true(term)
                or z3.is_false(term))


# -- invariants ----------------------------------------------------------------

def _fields_read(formula: Ref, sym: HeapState) -> tuple[str, ...]:
    names = {getattr(sym, name).get_id(): name for name in _FIELDS}
    seen: set[int] = set()
    stack = [formula]
    while stack:
        term = stack.pop()
        if term.get_id() not in seen:
            seen.add(term.get_id())
            stack.extend([term.body()] if z3.is_quantifier(term)
                         else term.children() if z3.is_app(term) else [])
    return tuple(name for ident, name in names.items() if ident in seen)


class Invariants:
    """HEAP-1..6 on concrete states, one query each, cached per field terms."""

    def __init__(self) -> None:
        self.compiled: list[tuple[str, tuple[str, ...], HeapState, Ref]] = []
        for ident, holds in kh.INVARIANTS.items():
            sym = symbolic_heap("inv")
            formula = holds(sym)
            self.compiled.append((ident, _fields_read(formula, sym), sym, z3.Not(formula)))
        self.cache: dict[tuple[str, tuple[int, ...]], tuple[Ref, ...]] = {}
        self.queries = self.hits = 0

    def violated(self, state: HeapState) -> list[str]:
        refuted = []
        for ident, fields, sym, negation in self.compiled:
            terms = tuple(getattr(state, name) for name in fields)
            key = (ident, tuple(t.get_id() for t in terms))
            if key in self.cache:
                self.hits += 1
                continue
            self.queries += 1
            result = _solve(z3.substitute(negation, *[(getattr(sym, n), t)
                                                      for n, t in zip(fields, terms, strict=True)]))
            if result == z3.unknown:
                raise SolverUnknownError(f"z3 could not decide {ident}", [ident])
            if result == z3.sat:
                refuted.append(ident)
            else:
                self.cache[key] = terms  # keeps the terms (and so their ids) alive
        return refuted


# -- the harness ---------------------------------------------------------------

def compare(post: HeapState, snap: HeapSnapshot, spec: HeapState, where: str,
            trace: list[str]) -> None:
    """HeapHarness's check that the spec's state equals the reported one
    (``post``, the abstraction of ``snap``): the real fields equal (``block``
    and ``pte`` as arrays, the other header maps at every header, ``index``
    below count). A field that is
    the same term is equal; the header maps and the index are compared
    at their finitely many points (the post-state's headers, positions
    below its count: exactly where the claims' antecedents hold) when both
    sides simplify to values there; the rest is one z3 query, and when it
    fails one query per field names the ones that differ."""
    a = z3.Const("a", ADDR)
    claims = {}
    wrong = []
    headers = [lit(b.header) for b in snap.blocks]
    positions = [lit(i) for i in range(len(snap.index))]
    for name in REAL_FIELDS:
        mine, theirs = getattr(spec, name), getattr(post, name)
        if mine.eq(theirs):  # the same term: equal without asking z3
            continue
        if name in _AT_HEADERS or name == "index":
            equal = equal_at(mine, theirs, headers if name in _AT_HEADERS else positions)
        else:
            equal = equal_arrays(mine, theirs) if z3.is_array(mine) else None
        if equal is False:
            wrong.append(name)
        elif equal is None and name in _AT_HEADERS:
            claims[name] = z3.ForAll([a], z3.Implies(post.block[a], mine[a] == theirs[a]))
        elif equal is None and name == "index":
            claims[name] = z3.ForAll([a], z3.Implies(z3.And(0 <= a, a < post.count),
                                                     mine[a] == theirs[a]))
        elif equal is None:
            claims[name] = mine == theirs
    if not wrong and (not claims or valid(z3.And(list(claims.values())))):
        return
    wrong += [name for name, claim in claims.items() if not decide(claim, TRANSITION)]
    raise CheckError(f"{where}: the model's state differs from the spec's "
                     f"{'; '.join(trace) or 'unchanged state'} on {wrong}",
                     [TRANSITION])


def _hex(value: Any) -> str:
    """An argument or result as the report shows it: addresses in hex."""
    return hex(value) if type(value) is int and value >= 0x1000 else repr(value)


def make_heap() -> KernelHeap:
    return small_heap(END - START, MAX - START, INDEX_SIZE, MIN_SIZE)


class HeapHarness:
    """One heap, its last snapshot and abstraction, and what was written into it.

    With ``twin`` (the oracle's), a successful call the twin composite
    (:mod:`proofs.machines.kernel_heap_twin`) accepts is not built in z3; any
    other is judged by the z3 steps. The machine's own harness keeps z3."""

    twin = False

    def __init__(self, checker: Invariants, outcomes: Counter[str] | None = None) -> None:
        self.heap = make_heap()
        self.pm = self.heap.vmm.pageman
        self._begin(checker, outcomes)

    def _begin(self, checker: Invariants, outcomes: Counter[str] | None) -> None:
        """The records and first check, once the heap can be read."""
        self.outcomes: Counter[str] = Counter() if outcomes is None else outcomes
        self.checker = checker
        self.live: dict[int, int] = {}  # payload -> requested size
        self.written: dict[int, dict[int, int]] = {}  # payload -> {address: byte}
        self.freed: list[int] = []
        self.trace: list[str] = []
        self.snap = self._snapshot()
        self._state: tuple[HeapSnapshot, HeapState] | None = None
        self.check_invariants("Create")

    @property
    def state(self) -> HeapState:
        """The abstraction of the last snapshot, built when first asked."""
        if self._state is None or self._state[0] is not self.snap:
            self._state = (self.snap, to_heap_state(self.snap))
        return self._state[1]

    # -- what the harness reads and drives (the oracle drives an implementation) --

    def _snapshot(self) -> HeapSnapshot:
        return heap_snapshot(self.heap)

    def _free_frames(self) -> int:
        return self.pm.free_count()

    def _invoke(self, name: str, args: tuple[Any, ...]) -> tuple[Any, ErrorCode]:
        result = getattr(self.heap, name)(*args)
        return result, self.heap.last_error

    def _read(self, address: int, length: int) -> bytes | None:
        data = self.heap.vmm.ReadVirtualMemory(self.heap.directory,  # type: ignore[arg-type]
                                               address, length, False)
        return data if isinstance(data, bytes) else None

    def _write(self, address: int, data: bytes) -> object:
        return self.heap.vmm.WriteVirtualMemory(self.heap.directory,  # type: ignore[arg-type]
                                                address, data, False)

    def _observe(self) -> None:
        """Snapshot the heap; abstract it anew only when the snapshot changed."""
        snap = self._snapshot()
        if snap != self.snap:
            self.snap = snap

    def check_invariants(self, where: str) -> None:
        broken = self.checker.violated(self.state)
        if broken:
            why = "".join("\n  " + "\n    ".join(explain(kh.INVARIANTS[ident], self.state))
                          for ident in broken)
            raise CheckError(f"{where} breaks {', '.join(broken)}{why}", broken)

    def check_contents(self, where: str) -> None:
        for p, record in self.written.items():
            if not record:
                continue
            low = min(record)
            data = self._read(low, max(record) + 1 - low)
            lost = [a for a, byte in record.items() if data is None or data[a - low] != byte]
            if lost:
                raise CheckError(f"after {where}: bytes written at {[hex(a) for a in lost[:4]]} "
                                 f"(block {p:#x}) read back {data!r:.60}", [CONTENTS])

    def call(self, name: str, *args: Any) -> Any:
        """Call the model, then check invariants, the transition and contents."""
        # Fresh: the harness's own reads and writes set A and D bits in the PTEs.
        pre_snap, free = self._snapshot(), self._free_frames()
        pre = None if self.twin else self.state if pre_snap == self.snap else None
        result, code = self._invoke(name, args)
        self.outcomes[f"{name} {code.name.removeprefix('ERROR_')}"] += 1
        self._observe()
        where = f"{name}({', '.join(map(_hex, args))}) -> {_hex(result)} ({code.name})"
        self.check_invariants(where)
        if name == "GetBlockSize" and (code == SUCCESS) != (args[0] in self.live):
            raise CheckError(f"{where}: GetBlockSize must succeed exactly for the payload of "
                             f"a live block", [TRANSITION])
        if code != SUCCESS:
            if result != FAILURE[name] or type(result) is not type(FAILURE[name]):
                raise CheckError(f"{where}: a failure must return {FAILURE[name]!r}", [TRANSITION])
            after = self._free_frames()
            if self.snap != pre_snap or after != free:
                raise CheckError(f"failed call {where} changed the heap or the free frames "
                                 f"({free} -> {after})", [UNCHANGED])
            allowed = refusals(self.live, name, args, pre_snap, free)
            if code not in allowed:
                raise CheckError(f"{where}: the rules allow "
                                 f"{' or '.join(c.name for c in allowed) or 'no failure'} here",
                                 [TRANSITION])
        else:
            self.trace = []
            if not (self.twin and twin_accepts(name, pre_snap, self.snap, args, result,
                                               self.live)):
                pre = to_heap_state(pre_snap) if pre is None else pre
                expected = getattr(self, f"_{name}")(pre, pre_snap, args, result, where)
                compare(self.state, self.snap, expected, where, self.trace)
            self._record(name, args, result)
        self.check_contents(where)
        return result

    def _fail(self, where: str, why: str) -> CheckError:
        return CheckError(f"{where}: {why} (steps {'; '.join(self.trace)})", [TRANSITION])

    # -- micro-steps -------------------------------------------------------------

    def _step(self, s: HeapState, fn: Callable[..., kh.HeapStep], where: str,
              hole: int | None = None, **args: Any) -> HeapState:
        """Apply one spec step. With ``hole``, the step takes the new hole's index
        position q: built once with q a variable (the hole's size does not depend
        on it), then q is computed from s (before the first entry, its own old
        entry left out, whose key is >= the size) and substituted."""
        terms = {k: (z3.BoolVal(v) if isinstance(v, bool) else lit(v) if isinstance(v, int)
                     else v) for k, v in args.items()}
        shown = {k: (hex(v) if isinstance(v, int) and not isinstance(v, bool) else v)
                 for k, v in args.items() if k != "frames"}
        if hole is None:
            t = fn(s, **terms)
            changed, assume = t.changed, t.assume
        else:
            t = fn(s, **terms, q=_Q)
            size = value(t.changed.size[lit(hole)])
            keys = [value(s.key[lit(i)]) for i in range(value(s.count))
                    if value(s.index[lit(i)]) != hole]
            position = next((i for i, k in enumerate(keys) if k >= size), len(keys))
            shown["q"] = position
            q = (_Q, lit(position))
            changed = HeapState(**{name: z3.substitute(getattr(t.changed, name), q)
                                   for name in _FIELDS})
            assume = z3.substitute(t.assume, q)
        self.trace.append(f"{fn.__name__}({', '.join(f'{k}={v}' for k, v in shown.items())})")
        if not value(t.ok):
            raise self._fail(where, f"the spec refuses {self.trace[-1]}")
        if not valid(assume):
            raise self._fail(where, f"the assume of {self.trace[-1]} is false")
        return changed

    def _grow(self, s: HeapState, pre_snap: HeapSnapshot, where: str) -> HeapState:
        new_end = self.snap.end
        if new_end <= pre_snap.end:
            return s
        frames = z3.K(PAGE, bv(0, FRAME))
        for page, pte in self.snap.ptes:
            if pre_snap.end >> PAGE_SHIFT <= page < new_end >> PAGE_SHIFT:
                frames = z3.Store(frames, lit(page, PAGE), bv(pte >> PAGE_SHIFT, FRAME))
        tail = value(kh.last_block(s))
        if value(s.hole[lit(tail)]):
            return self._step(s, kh.ExpandHole, where, tail, new_end=new_end, frames=frames)
        return self._step(s, kh.ExpandNewHole, where, pre_snap.end, new_end=new_end,
                          frames=frames)

    def _shrink(self, s: HeapState, where: str) -> HeapState:
        new_end = self.snap.end
        if new_end >= value(s.end):
            return s
        tail = value(kh.last_block(s))
        if tail == new_end:
            return self._step(s, kh.DropHole, where, new_end=new_end)
        return self._step(s, kh.ShrinkHole, where, tail, new_end=new_end)

    def _Alloc(self, pre: HeapState, pre_snap: HeapSnapshot, args: tuple[Any, ...],
               p: int, where: str) -> HeapState:
        (size, page_align), x = args, p - HEADER_SIZE
        fit = needless_growth(pre_snap, self.snap, size, page_align)
        if fit is not None:
            raise self._fail(where, f"the heap grew while the hole at {fit:#x} fits")
        s = self._grow(pre, pre_snap, where)
        candidates = [b.header for b in pre_snap.blocks if b.hole] + [pre_snap.end]
        h = next((c for c in candidates if value(kh.a_hole(s, lit(c)))
                  and c <= x < c + value(s.size[lit(c)])), x)
        s = self._step(s, kh.Take, where, h=h, page_align=page_align and x == h)
        if x != h:
            s = self._step(s, kh.CarveHead, where, h, h=h, x=x)
        block = next((b.size for b in self.snap.blocks if b.header == x), None)
        if block != value(s.size[lit(x)]):
            s = self._step(s, kh.CarveTail, where, x + size + MIN_BLOCK, h=x,
                           size=size + MIN_BLOCK)
        return s

    def _Free(self, pre: HeapState, pre_snap: HeapSnapshot, args: tuple[Any, ...],
              result: bool, where: str) -> HeapState:
        h = args[0] - HEADER_SIZE
        s = pre
        if value(kh.right_is_hole(s, lit(h))):
            s = self._step(s, kh.AbsorbRight, where, h=h)
        if value(kh.left_is_hole(s, lit(h))):
            s = self._step(s, kh.AbsorbLeft, where, value(s.owner_of[lit(h - 1)]), h=h)
        else:
            s = self._step(s, kh.Release, where, h, h=h)
        return self._shrink(s, where)

    def _Expand(self, pre: HeapState, pre_snap: HeapSnapshot, args: tuple[Any, ...],
                result: bool, where: str) -> HeapState:
        if result is not True:
            raise self._fail(where, "a successful Expand returns True")
        return self._grow(pre, pre_snap, where)

    def _Contract(self, pre: HeapState, pre_snap: HeapSnapshot, args: tuple[Any, ...],
                  result: int, where: str) -> HeapState:
        if result != self.snap.end - self.snap.start:
            raise self._fail(where, "Contract returns the heap's new length")
        return self._shrink(pre, where)

    def _FindSmallestHole(self, pre: HeapState, pre_snap: HeapSnapshot,
                          args: tuple[Any, ...], result: int, where: str) -> HeapState:
        size, page_align = args
        x = 0
        if 0 <= result < len(pre_snap.index):
            hole = pre_snap.index[result][1]
            x = aligned_header(hole) if page_align else hole
        t = kh.FindSmallestHole(pre, lit(size), z3.BoolVal(page_align), lit(result), lit(x))
        self.trace.append(f"FindSmallestHole(result={result}, x={x:#x})")
        if not (value(t.ok) and valid(t.assume)):
            raise self._fail(where, "the spec does not allow this answer")
        return pre

    def _GetBlockSize(self, pre: HeapState, pre_snap: HeapSnapshot,
                      args: tuple[Any, ...], result: int, where: str) -> HeapState:
        """The seed's GetBlockSize: the size the live block at p was allocated
        with (the harness's record; the spec keeps block sizes, not requests);
        nothing changes."""
        if result != self.live[args[0]]:
            raise CheckError(f"{where}: the block was allocated with "
                             f"{self.live[args[0]]} bytes", [TRANSITION])
        return pre

    # -- what the rules do ------------------------------------------------------------

    def _record(self, name: str, args: tuple[Any, ...], result: Any) -> None:
        """What a successful Alloc or Free changes in the harness's records."""
        if name == "Alloc":
            self.live[result], self.written[result] = args[0], {}
        elif name == "Free":
            del self.live[args[0]], self.written[args[0]]
            self.freed.append(args[0])

    def write(self, p: int, offset: int, data: bytes) -> None:
        """Write into p's payload (clipped to it) through the VMM, as a caller does."""
        size = self.live[p]
        if size == 0:
            return
        offset %= size
        data = data[:size - offset]
        where = f"WriteVirtualMemory({p + offset:#x}, {data!r})"
        done = self._write(p + offset, data)
        if done is not True:
            raise CheckError(f"{where} into a live payload failed: {done!r}", [CONTENTS])
        self.written[p].update({p + offset + i: byte for i, byte in enumerate(data)})
        self._observe()
        self.check_invariants(where)
        self.check_contents(where)

    def pointer(self, how: str, pick: int) -> int:
        """A pointer to free: live, freed before, foreign or misaligned."""
        live = sorted(self.live)
        if how == "live" and live:
            return live[pick % len(live)]
        if how == "double" and self.freed:
            return self.freed[pick % len(self.freed)]
        if how == "misaligned" and live:
            return live[pick % len(live)] + (1, 2, 4, -1, -4)[pick % 5]
        holes = [b.header + HEADER_SIZE for b in self.snap.blocks if b.hole]
        foreign = [0, self.snap.start, self.snap.data_start + pick % 0x3000,
                   self.snap.max + HEADER_SIZE, *holes]
        return foreign[pick % len(foreign)]


def refusals(live: Mapping[int, int], name: str, args: tuple[Any, ...], snap: HeapSnapshot,
              free_frames: int) -> frozenset[ErrorCode]:
    """The codes model/kernel_heap.py's rules allow a failure of the call on the
    pre-state ``snap`` with the payloads ``live`` (empty: it must succeed).
    Damage is never allowed for (the machine writes only inside payloads);
    running out is allowed only where it can happen: no hole fits or the index
    is full (Alloc), the index is full and no neighbour is a hole (Free), the
    index is full or frames are short (Expand)."""
    holes = {header: size for size, header in snap.index}
    room = len(snap.index) < snap.capacity
    length = snap.end - snap.start
    if name in ("Alloc", "FindSmallestHole"):
        size, page_align = args
        if not (type(size) is int and 0 <= size <= U32_MAX - MIN_BLOCK
                and type(page_align) is bool):
            return frozenset({E.ERROR_INVALID_PARAMETER})
        if name == "FindSmallestHole" or room and any(
                fits(h, s, size, page_align) for h, s in holes.items()):
            return frozenset()
        return frozenset({E.ERROR_NOT_ENOUGH_MEMORY})
    if name == "Free":
        header = args[0] - HEADER_SIZE if type(args[0]) is int else -1
        if args[0] not in live:
            return frozenset({E.ERROR_INVALID_BLOCK if header in holes
                              else E.ERROR_INVALID_ADDRESS})
        size = next(b.size for b in snap.blocks if b.header == header)
        if room or header + size in holes or any(
                h + s == header for h, s in holes.items()):
            return frozenset()
        return frozenset({E.ERROR_NOT_ENOUGH_MEMORY})
    if name == "Expand":
        new_size = args[0]
        if not (type(new_size) is int and length <= new_size
                and align_up(new_size) <= snap.max - snap.start):
            return frozenset({E.ERROR_INVALID_PARAMETER})
        tail_hole = any(h + s == snap.end for h, s in holes.items())
        pages = (align_up(new_size) - length) // PAGE_SIZE
        if (tail_hole or room) and free_frames > pages:  # a page table at most
            return frozenset()
        return frozenset({E.ERROR_NOT_ENOUGH_MEMORY})
    if name == "Contract":
        valid = type(args[0]) is int and 0 <= args[0] <= length
        return frozenset() if valid else frozenset({E.ERROR_INVALID_PARAMETER})
    return frozenset({E.ERROR_INVALID_ADDRESS})  # GetBlockSize of no live payload


# -- the machine ----------------------------------------------------------------

def size_ending_near_page(snap: HeapSnapshot, crossing: int, pages: int) -> int:
    """A payload size whose block ends ``crossing`` bytes from a page boundary
    (the first boundary it can reach, ``pages`` more on) where Alloc(size, False)
    places it in the heap ``snap``: the first hole in index order that fits it
    and leaves a remainder that is a hole (0 or >= MIN_BLOCK bytes: a shorter
    one is absorbed and moves the end), else past the end of the heap: Alloc
    expands it and takes the hole that ends it (or the old end)."""
    def size_for(hole: int, boundaries: int) -> int:
        boundary = align_up(hole + MIN_BLOCK + HEADER_SIZE) + boundaries * PAGE_SIZE
        return boundary + crossing - hole - MIN_BLOCK

    index = snap.index
    for position, (hole_size, hole) in enumerate(index):
        for boundaries in range(pages, pages + 2):
            size = size_for(hole, boundaries)
            rest = hole_size - size - MIN_BLOCK
            if rest < 0:
                break
            if (rest == 0 or rest >= MIN_BLOCK) and all(
                    s < size + MIN_BLOCK for s, _ in index[:position]):
                return size
    tail = next((b.header for b in snap.blocks if b.hole and b.header + b.size == snap.end),
                snap.end)
    boundaries = pages
    while size_for(tail, boundaries) + MIN_BLOCK <= snap.end - tail:
        boundaries += 1
    return size_for(tail, boundaries)


_SIZES = st.one_of(st.integers(0, 40), st.integers(41, 0x1000), st.integers(0x1000, 0x9000),
                   st.sampled_from((0x1C000, 0xFFFFFFEB, 0xFFFFFFEC, -1)))


class HeapMachine(CheckedMachine):
    """The rules; each call's checks are HeapHarness.call's."""

    checker: Invariants

    @classmethod
    def cost(cls) -> str:
        return (f"{cls.checker.queries} invariant queries, {cls.checker.hits} from the cache; "
                + super().cost())

    @initialize()
    def create(self) -> None:
        type(self).examples += 1
        self.h = HeapHarness(self.checker, self.outcomes)

    @rule(size=_SIZES, page_align=st.booleans())
    def alloc(self, size: int, page_align: bool) -> None:
        self.h.call("Alloc", size, page_align)

    @rule(crossing=st.sampled_from(CROSSINGS), pages=st.integers(0, 1))
    def alloc_across_page(self, crossing: int, pages: int) -> None:
        """A block ending ``crossing`` bytes from a page boundary: the next header
        or its own footer straddles two frames."""
        self.h.call("Alloc", size_ending_near_page(self.h.snap, crossing, pages), False)

    @rule(size=st.integers(0, 64))
    def alloc_small(self, size: int) -> None:
        """Small blocks, twice as often: neighbours for Free to unify."""
        self.h.call("Alloc", size, False)

    @precondition(lambda self: self.h.live)
    @rule(picks=st.lists(st.integers(0, 1 << 16), min_size=1, max_size=3))
    def free(self, picks: list[int]) -> None:
        """Free up to three live blocks (as many frees as allocations)."""
        for pick in picks:
            if self.h.live:
                self.h.call("Free", self.h.pointer("live", pick))

    @rule(how=st.sampled_from(("double", "foreign", "misaligned")), pick=st.integers(0, 1 << 16))
    def free_invalid(self, how: str, pick: int) -> None:
        """A pointer freed before (perhaps allocated again since), not a payload, or
        a live one moved a few bytes."""
        self.h.call("Free", self.h.pointer(how, pick))

    @rule(delta=st.one_of(st.integers(-0x2000, 0x1E000), st.sampled_from((0, 1, 0x20000))))
    def expand(self, delta: int) -> None:
        """Expand to the length plus delta: page multiples or not, below the
        length, past max."""
        self.h.call("Expand", self.h.snap.end - self.h.snap.start + delta)

    @rule(cut=st.one_of(st.integers(0, 0x3000), st.sampled_from((-1, 0x7FFFFFFF))))
    def contract(self, cut: int) -> None:
        """Contract to the length minus cut (above the length, or negative, too)."""
        self.h.call("Contract", self.h.snap.end - self.h.snap.start - cut)

    @rule(size=_SIZES, page_align=st.booleans())
    def find_smallest_hole(self, size: int, page_align: bool) -> None:
        self.h.call("FindSmallestHole", size, page_align)

    @rule(pick=st.integers(0, 1 << 16), offset=st.integers(0, 1 << 16),
          data=st.binary(min_size=1, max_size=16))
    def write(self, pick: int, offset: int, data: bytes) -> None:
        live = sorted(self.h.live)
        if live:
            self.h.write(live[pick % len(live)], offset, data)


# -- broken models ----------------------------------------------------------------

_ALLOC, _FREE, _EXPAND, _CONTRACT, _FIND = (
    KernelHeap.Alloc, KernelHeap.Free, KernelHeap.Expand, KernelHeap.Contract, KernelHeap._find)


def _header(p: object) -> int:
    return p - HEADER_SIZE if type(p) is int else -1


def _hole_around(heap: KernelHeap, address: int) -> tuple[int, int] | None:
    return next(((h, size) for size, h in heap.index if h <= address < h + size), None)


def _free_unsorted(self: KernelHeap, p: int) -> bool:
    """Free that appends the merged hole to the index instead of inserting it in order."""
    freed = _FREE(self, p)
    found = _hole_around(self, _header(p)) if freed else None
    if found is not None and found[0] in self.index:
        entry = self.index._keys[found[0]]
        self.index._entries.remove(entry)
        self.index._entries.append(entry)
    return freed


def _free_not_reinserted(self: KernelHeap, p: int) -> bool:
    """Free that forgets to index the merged hole."""
    header = _header(p)
    freed = _FREE(self, p)
    found = _hole_around(self, header) if freed else None
    if found is not None:
        self.index.remove(found[0])
    return freed


def _free_stale_footer(self: KernelHeap, p: int) -> bool:
    """Free whose merged hole keeps a footer of an absorbed block (the tutorial)."""
    header = _header(p)
    block = self.allocated.get(header)
    freed = _FREE(self, p)
    found = _hole_around(self, header) if freed and block is not None else None
    if block is not None and found is not None and found != (header, block.size):
        hole, size = found
        stale = header if hole != header else header + block.size
        self._write(hole + size - FOOTER_SIZE, footer_bytes(stale))
    return freed


def _free_no_left_unify(self: KernelHeap, p: int) -> bool:
    """Free that never unifies with the hole on its left: adjacent holes."""
    header = _header(p)
    left = self._ends.pop(header, None) if header in self.allocated else None
    try:
        return _FREE(self, p)
    finally:
        if left is not None:
            self._ends[header] = left


def _contract_into_live(self: KernelHeap, new_size: int) -> int:
    """Contract to the requested length (rounded up to a page, never below the floor)
    through whatever blocks are there (the tutorial's contract looks at none)."""
    start, end = self.start_address, self.end_address
    if self._usable() != SUCCESS or type(new_size) is not int or not 0 <= new_size <= end - start:
        return _CONTRACT(self, new_size)
    length = align_up(max(new_size, self.min_size))
    for page in range(start + length, end, PAGE_SIZE):
        self.vmm.UnmapVirtualAddress(self._dir(), page)
    self.end_address = min(end, start + length)
    return self._ok(self.end_address - start)


def _contract_unaligned(self: KernelHeap, new_size: int) -> int:
    """Contract that cuts the trailing hole to exactly new_size bytes (no page rounding)."""
    start, end = self.start_address, self.end_address
    if self._usable() != SUCCESS or type(new_size) is not int or not 0 <= new_size <= end - start:
        return _CONTRACT(self, new_size)
    tail = self._ends[end]
    least = max(new_size, self.min_size, tail - start + MIN_BLOCK)
    if tail not in self.index or least >= end - start:
        return _CONTRACT(self, new_size)
    self._cut(least)
    return self._ok(least)


def _expand_unaligned(self: KernelHeap, new_size: int) -> bool:
    """Expand to exactly new_size bytes (no page rounding)."""
    start = self.start_address
    if (self._usable() != SUCCESS or type(new_size) is not int or new_size % PAGE_SIZE == 0
            or not self.end_address - start < new_size <= self.max_address - start):
        return _EXPAND(self, new_size)
    code = self._growth_error(start + new_size)
    if code != SUCCESS:
        return self._fail(code, False)
    self._grow(start + new_size)
    return self._ok(True)


def _alloc_ignoring_align(self: KernelHeap, size: int, page_align: bool = False) -> int:
    """Alloc that records page_align but places the block as if it were False."""
    p = _ALLOC(self, size, False)
    if p and page_align is True:
        header = p - HEADER_SIZE
        self.allocated[header] = self.allocated[header]._replace(page_align=True)
    return p


def _find_second_fit(self: KernelHeap, size: int, page_align: bool) -> int:
    """The hole search skipping the first hole that fits."""
    first = _FIND(self, size, page_align)
    later = (i for i, (hole_size, hole) in enumerate(self.index)
             if i > first >= 0 and fits(hole, hole_size, size, page_align))
    return next(later, -1)


HEAP_MODEL_VARIANTS = (
    ModelVariant("free_unsorted", ("HEAP-1",), {"KernelHeap.Free": _free_unsorted}),
    ModelVariant("free_not_reinserted", ("HEAP-3",), {"KernelHeap.Free": _free_not_reinserted}),
    ModelVariant("free_stale_footer", ("HEAP-2",), {"KernelHeap.Free": _free_stale_footer}),
    ModelVariant("free_no_left_unify", ("HEAP-4",), {"KernelHeap.Free": _free_no_left_unify}),
    ModelVariant("contract_into_live", ("HEAP-2",), {"KernelHeap.Contract": _contract_into_live}),
    ModelVariant("contract_unaligned", ("HEAP-5",), {"KernelHeap.Contract": _contract_unaligned}),
    ModelVariant("expand_unaligned", ("HEAP-5",), {"KernelHeap.Expand": _expand_unaligned}),
    ModelVariant("alloc_ignoring_align", ("HEAP-6",), {"KernelHeap.Alloc": _alloc_ignoring_align}),
    ModelVariant("find_second_fit", (TRANSITION,), {"KernelHeap._find": _find_second_fit}),
)


# -- the runner ---------------------------------------------------------------------

def run_heap_machine(profile: str, patches: Mapping[str, object] | None = None, *,
                     max_examples: int | None = None, shrink: bool = True) -> Verdict:
    """Run the machine, with KernelHeap methods replaced by ``patches`` (keys
    "Free" or "KernelHeap.Free"; restored afterwards), and return its verdict.
    ``shrink=False`` reports the first failing program as found."""
    replaced = {key if "." in key else f"KernelHeap.{key}": method
                for key, method in (patches or {}).items()}
    return run_machine(HeapMachine, profile, BUDGETS, replaced, {"KernelHeap": KernelHeap},
                       max_examples=max_examples, shrink=shrink,
                       fresh={"checker": Invariants()})


def obligations() -> Iterator[Obligation]:
    yield machine_obligation("kernel_heap.machine.refinement", "kernel_heap", run_heap_machine)
