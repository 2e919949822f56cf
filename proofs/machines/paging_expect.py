"""What the spec expects of one paging call (:class:`Expected`, or :class:`Refused` for an
argument the spec cannot represent), and how a difference is shown: the
changes between two snapshots, the state, a witness where two terms differ."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import z3

from model.page_tables import PageDirectory, PageFault
from proofs.abstractions.paging import (
    Snapshot,
    fits,
    spec_args,
    word_val,
)
from proofs.machines.checks import (
    QUERY_TIMEOUT_MS,
)
from proofs.machines.paging_queries import value_of
from spec.abi import PAGE_SHIFT, ErrorCode, FrameOwner
from spec.catalogue import OPERATIONS_BY_NAME
from spec.state import (
    Ref,
    State,
)
from spec.step import Step


@dataclass
class Expected:
    """What the spec says about one model call.

    ``claims`` are named z3 claims that must all hold (status, result,
    assume, micro-steps); ``post`` is the spec's successor, compared with the
    abstraction of the model's post-state on the real fields.
    """

    status: Ref
    post: State
    claims: list[tuple[str, Ref]]
    result: Ref | None = None
    choices: dict[str, int] = field(default_factory=dict)


#: What the spec is asked about a value it cannot represent (beyond the
#: parameter's width, or a non-bool flag): an unaligned address, refused as
#: ERROR_INVALID_PARAMETER by the same check, in the same order, as the model
#: refuses the unrepresentable value.
UNALIGNED = 1


def substitute(value: object, sort: Ref, replacement: int) -> int:
    """value when the spec can represent it in the bit-vector sort, else replacement."""
    return value if isinstance(value, int) and fits(value, sort) else replacement


@dataclass(frozen=True)
class Refused:
    """An argument the spec cannot represent: the model must refuse it with
    ``code`` and leave the state unchanged."""

    code: ErrorCode
    why: str


def spec_step(name: str, pre: State, **values: object) -> Step:
    """The catalogue's transition ``name`` applied to Python argument values."""
    op = OPERATIONS_BY_NAME[name]
    return op.transition(pre, *spec_args(op.params, values))


def from_step(s: Step, status_claims: Iterable[tuple[str, Ref]] = (),
              choices: Mapping[str, int] | None = None) -> Expected:
    claims = [("assume", s.assume), *status_claims]
    return Expected(s.status, s.post, claims, s.result, dict(choices or {}))


def first_failure(statuses: Sequence[Ref]) -> Ref:
    """The first nonzero status of a sequence, else 0."""
    code = word_val(0)
    for status in reversed(statuses):
        code = z3.If(status != 0, status, code)
    return code


def _error_name(code: object) -> str:
    if isinstance(code, int) and not isinstance(code, bool):
        try:
            return f"{ErrorCode(code).name} ({code})"
        except ValueError:
            return str(code)
    return str(code)


def _fmt(value: object) -> str:
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int):
        return hex(value) if value > 9 else str(value)
    if isinstance(value, PageDirectory):
        return f"<directory {value.physical_addr >> PAGE_SHIFT:#x}>"
    if isinstance(value, PageFault):
        return f"PageFault(error_code={value.error_code:#x}, address={value.address:#x})"
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex() or "b''"
    return repr(value)


def _owner_name(value: int) -> str:
    try:
        return FrameOwner(value).name
    except ValueError:
        return f"owner {value}"


def describe_changes(pre: Snapshot, post: Snapshot, limit: int = 24) -> list[str]:
    """The model's state changes, readable (frame numbers in hex)."""
    lines: list[str] = []
    for name in ("nframes", "used_count", "kernel_dir", "current_dir", "paging"):
        a, b = getattr(pre, name), getattr(post, name)
        if a != b:
            lines.append(f"{name}: {_fmt(a)} -> {_fmt(b)}")
    for frame in sorted(set(pre.used) ^ set(post.used)):
        lines.append(f"used[{frame:#x}]: {frame in pre.used} -> {frame in post.used}")
    for frame in sorted(set(pre.owner) | set(post.owner)):
        a, b = pre.owner.get(frame, 0), post.owner.get(frame, 0)
        if a != b:
            lines.append(f"owner[{frame:#x}]: {_owner_name(a)} -> {_owner_name(b)}")
    for label, x, y in (("pde", pre.pde, post.pde), ("pte", pre.pte, post.pte)):
        for frame in sorted(set(x) | set(y)):
            ex, ey = x.get(frame, {}), y.get(frame, {})
            if frame not in y:
                lines.append(f"{label}[{frame:#x}]: no longer live")
                continue
            for index in sorted(set(ex) | set(ey)):
                a, b = ex.get(index, 0), ey.get(index, 0)
                if a != b:
                    lines.append(f"{label}[{frame:#x}][{index}]: {a:#x} -> {b:#x}")
    for frame in sorted(set(pre.mem) | set(post.mem)):
        if pre.mem.get(frame) != post.mem.get(frame):
            lines.append(f"mem[{frame:#x}]: {len(pre.mem.get(frame, {}))} -> "
                         f"{len(post.mem.get(frame, {}))} nonzero bytes")
    if len(lines) > limit:
        lines = lines[:limit] + [f"... {len(lines) - limit} more"]
    return lines or ["(no change)"]


def describe_state(snap: Snapshot) -> list[str]:
    """Owners, links and mappings of a snapshot, readable."""
    owners: dict[str, list[str]] = {}
    for frame, owner in sorted(snap.owner.items()):
        owners.setdefault(_owner_name(owner), []).append(f"{frame:#x}")
    lines = [f"nframes={snap.nframes:#x} used_count={snap.used_count} paging={snap.paging} "
             f"kernel_dir={snap.kernel_dir:#x} current_dir={snap.current_dir:#x}"]
    lines += [f"{name}: {' '.join(frames)}" for name, frames in owners.items()]
    links = [f"{d:#x}[{slot}]->{t:#x}" for d, slot, t in snap.links()]
    if links:
        lines.append("links: " + " ".join(links))
    maps = [f"{t:#x}[{i}]->{f:#x}" for t, i, f in snap.mappings()]
    if maps:
        lines.append("mappings: " + " ".join(maps[:48]) + (" ..." if len(maps) > 48 else ""))
    return lines


#: Indices :func:`_scan` tries before asking z3 (frames and page-table slots
#: start at 0, so a difference is usually among the first).
SCAN_POINTS = 2048


def _scan(a: Ref, b: Ref) -> str | None:
    """The first index below SCAN_POINTS where two one-dimensional arrays over
    bit-vectors differ, by the simplifier (z3's search for one took about 8 s
    on a 32-frame machine); None when there is none there or they are not such."""
    domain = a.domain()
    if not z3.is_bv_sort(domain) or z3.is_array(a.range()):
        return None
    for k in range(min(SCAN_POINTS, 1 << domain.size())):
        index = z3.BitVecVal(k, domain.size())
        differs = z3.simplify(a[index] != b[index])
        if z3.is_false(differs):
            continue
        if not z3.is_true(differs):
            return None  # the simplifier cannot tell: z3's question
        x, y = z3.simplify(a[index]), z3.simplify(b[index])
        return f"at [{_fmt(k)}]: model {_fmt(value_of(x))}, spec {_fmt(value_of(y))}"
    return None


def _witness(a: Ref, b: Ref) -> str:
    """An index where two arrays differ, and both values there."""
    if not z3.is_array(a):
        return f"model {_fmt(value_of(a))}, spec {_fmt(value_of(b))}"
    found = _scan(a, b)
    if found is not None:
        return found
    i = z3.Const("witness_i", a.domain())
    x, y, index = a[i], b[i], [i]
    if z3.is_array(x):
        j = z3.Const("witness_j", x.domain())
        x, y, index = x[j], y[j], [i, j]
    solver = z3.Solver()
    solver.set("timeout", QUERY_TIMEOUT_MS)
    solver.add(x != y)
    if solver.check() != z3.sat:
        return "(no witness found)"
    model = solver.model()
    where = "".join(f"[{_fmt(model.eval(k, model_completion=True).as_long())}]" for k in index)
    return (f"at {where}: model {_fmt(value_of(model.eval(x, model_completion=True)))}, "
            f"spec {_fmt(value_of(model.eval(y, model_completion=True)))}")


