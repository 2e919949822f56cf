"""CrossHair obligations: the PEP 316 contracts of the pure helpers.

Every function of ``model/x86_paging.py`` whose docstring holds a contract
(``post:``) is one obligation, ``x86_paging.<function>.contract``. CrossHair
runs symbolically through the function once per postcondition, assuming the
preconditions; the verdict is

* CONFIRMED only when CrossHair itself reports every postcondition
  "Confirmed over all paths" (``MessageType.CONFIRMED``, which CrossHair emits
  only when its path tree is exhausted) *and* its statistics record the
  exhaustion. Nothing weaker is ever reported as confirmed.
* COUNTEREXAMPLE when a postcondition is false, or the body or the
  postcondition raises, for some input meeting the preconditions; the detail
  is CrossHair's message ("false when calling align_up(4097) (which returns
  4096)").
* NO_COUNTEREXAMPLE, "no counterexample in N paths (CrossHair, not
  exhaustive)", when the time budget ran out before the paths did. N is the
  smallest number of paths explored for any postcondition left unconfirmed.
  CrossHair models ``int`` as an unbounded integer and realizes (concretizes)
  it at ``|``, ``^``, ``~`` and ``&`` with a mask that is not ``2**k - 1``, so a
  helper written with those operators is explored value by value and is never
  exhausted; arithmetic (``//``, ``%``, ``*``, ``+``) keeps it symbolic.
* UNKNOWN when no input met the preconditions, when CrossHair reported
  nondeterminism, or when a parameter is annotated ``object`` or ``Any`` (or
  not at all): CrossHair 0.0.113 then explores a single plain ``object()``, so
  a "confirmation" would say nothing about ints. It would confirm
  ``post: __return__ == False`` for ``is_u32``, for instance.

The analysis runs in the calling process (a ``proofs.check`` worker) through
CrossHair's Python API, without the audit wall ``crosshair check`` installs
against side effects: the functions checked here must be pure.

:func:`crosshair_obligation` builds the same obligation for any module-level
function, for later modules (heap arithmetic, ...) to reuse.
"""

from __future__ import annotations

import collections
import enum
import importlib
import inspect
import time
import traceback
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from proofs.obligation import PROFILES, Kind, Obligation, Verdict

# CPU seconds CrossHair may spend on one postcondition (per_condition_timeout).
QUICK_CONDITION_TIMEOUT = 1.0
FULL_CONDITION_TIMEOUT = 20.0

# Quick-profile budgets (CPU seconds per postcondition) for the functions whose
# paths take about QUICK_CONDITION_TIMEOUT or longer to exhaust, so that the
# quick profile confirms them too. A budget only bounds the run: a function
# stops as soon as its paths are exhausted. encode_entry and decode_entry each
# call the other in a postcondition, over the 32 combinations of flags (34
# paths); on the reference machine those postconditions took about 1.6 and
# 0.9 CPU seconds. Raising the default instead would spend the larger budget
# on every function CrossHair can only sample (lowest_clear_bit and
# lowest_set_bit, three postconditions each). The budget also sets CrossHair's
# per-path limit (its square root above 1 s) and half of that is the solver's
# wall-clock limit per query, so the headroom keeps a loaded machine from
# turning slow queries into unexplored paths.
QUICK_TIMEOUT_OVERRIDES: dict[str, float] = {
    "model.x86_paging.encode_entry": 4.0,
    "model.x86_paging.decode_entry": 3.0,
}

# Functions CrossHair can only sample (bit masks: docs/check.md#crosshair), 3 s each in
# the quick profile for "no counterexample in ~95 paths": the full profile
# samples them longer.
FULL_PROFILE_ONLY = frozenset({"model.x86_paging.lowest_set_bit",
                               "model.x86_paging.lowest_clear_bit"})

# (module, manager) pairs whose contract functions are obligations.
CONTRACT_MODULES = (("model.x86_paging", "x86_paging"), ("model.heap_layout", "heap_layout"))


class Status(enum.Enum):
    """What CrossHair established about one postcondition."""

    CONFIRMED = "confirmed over all paths"
    NOT_EXHAUSTED = "no counterexample, not exhaustive"
    COUNTEREXAMPLE = "counterexample"
    UNKNOWN = "unknown"
    ERROR = "error"


@dataclass(frozen=True)
class ConditionResult:
    """CrossHair's result for one postcondition of one function."""

    condition: str
    line: int
    status: Status
    message: str
    paths: int
    seconds: float
    traceback: str = ""


def contract_functions(module_name: str) -> list[str]:
    """Functions defined in the module whose docstring has a ``post:`` clause, in file order."""
    module = importlib.import_module(module_name)
    found = []
    for name, value in vars(module).items():
        if (inspect.isfunction(value) and value.__module__ == module.__name__
                and "post:" in (inspect.getdoc(value) or "")):
            found.append((value.__code__.co_firstlineno, name))
    return [name for _, name in sorted(found)]


def unexplored_parameters(function: Callable[..., object]) -> list[str]:
    """Parameters CrossHair would explore only as a plain ``object()``."""
    try:
        hints: dict[str, object] = typing.get_type_hints(function)
    except Exception:  # unresolvable annotation: judge by its text
        hints = dict(getattr(function, "__annotations__", {}))
    vague = (object, Any, "object", "Any", "typing.Any")
    return [name for name in inspect.signature(function).parameters
            if hints.get(name, Any) in vague]


def _classify(state_name: str, message: str) -> Status:
    if state_name == "CONFIRMED":
        return Status.CONFIRMED
    if state_name == "CANNOT_CONFIRM":
        return Status.NOT_EXHAUSTED
    if state_name == "EXEC_ERR" and "NotDeterministic" in message:
        return Status.UNKNOWN
    if state_name in ("POST_FAIL", "POST_ERR", "EXEC_ERR"):
        return Status.COUNTEREXAMPLE
    if state_name == "PRE_UNSAT":
        return Status.UNKNOWN
    return Status.ERROR  # SYNTAX_ERR, IMPORT_ERR, or a kind this module does not know


def analyze(function: Callable[..., object], condition_timeout: float) -> list[ConditionResult]:
    """Run CrossHair on every postcondition of ``function``, one after another."""
    from crosshair.core_and_libs import analyze_function
    from crosshair.options import AnalysisKind, AnalysisOptionSet

    stats: collections.Counter[str] = collections.Counter()
    options = AnalysisOptionSet(analysis_kind=[AnalysisKind.PEP316],
                                per_condition_timeout=condition_timeout, stats=stats)
    results = []
    for checkable in analyze_function(function, options):
        conditions = getattr(checkable, "conditions", None)
        if conditions is not None and conditions.post:
            condition, line = conditions.post[0].expr_source, conditions.post[0].line
        else:
            condition, line = "(contract)", 0
        paths_before, exhaustions_before = stats["num_paths"], stats["exhaustion"]
        start = time.perf_counter()
        messages = list(checkable.analyze())
        seconds = time.perf_counter() - start
        paths = stats["num_paths"] - paths_before
        exhausted = stats["exhaustion"] > exhaustions_before
        if not messages:
            results.append(ConditionResult(condition, line, Status.UNKNOWN,
                                           "CrossHair reported nothing", paths, seconds))
            continue
        worst = max(messages, key=lambda m: m.state)
        status = _classify(worst.state.name, worst.message)
        message = worst.message
        if status is Status.CONFIRMED and not exhausted:
            status = Status.UNKNOWN
            message = "CrossHair said confirmed, but its statistics record no exhaustion"
        results.append(ConditionResult(condition, line, status, message, paths, seconds,
                                       worst.traceback))
    return results


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _describe(result: ConditionResult) -> str:
    where = f" (line {result.line})" if result.line else ""
    plain = result.status in (Status.CONFIRMED, Status.NOT_EXHAUSTED)
    said = "" if plain else f": {result.message}"
    text = (f"post{where}: {result.condition}\n"
            f"  {result.status.value}{said} [{_plural(result.paths, 'path')}, "
            f"{result.seconds:.2f}s]")
    if result.status is Status.COUNTEREXAMPLE and result.traceback.strip():
        tail = result.traceback.strip().splitlines()[-6:]
        text += "\n" + "\n".join("    " + line for line in tail)
    return text


def verdict_for(function_name: str, results: list[ConditionResult],
                unexplored: list[str], invariant: str = "contract") -> Verdict:
    """Combine the per-postcondition results into one honest verdict."""
    detail = "\n".join(_describe(r) for r in results)
    by_status = collections.Counter(r.status for r in results)
    if not results:
        return Verdict(Kind.ERROR, "CrossHair found no postcondition to check",
                       detail=f"{function_name} has a 'post:' clause that CrossHair did not "
                              "parse as a PEP 316 postcondition")
    if by_status[Status.ERROR]:
        return Verdict(Kind.ERROR, "CrossHair could not check the contract", detail=detail)
    if by_status[Status.COUNTEREXAMPLE]:
        broken = [r for r in results if r.status is Status.COUNTEREXAMPLE]
        first = broken[0].message.replace("\n", " ")
        return Verdict(Kind.COUNTEREXAMPLE, f"counterexample: {first}",
                       detail="\n".join(_describe(r) for r in broken)
                              + "\n\nall postconditions:\n" + detail,
                       violated=(invariant,))
    if by_status[Status.UNKNOWN]:
        return Verdict(Kind.UNKNOWN, "CrossHair could not decide the contract", detail=detail)
    if unexplored:
        names = ", ".join(unexplored)
        return Verdict(
            Kind.UNKNOWN, f"not checkable by CrossHair: parameter {names} is object/Any",
            detail=f"CrossHair explores a parameter annotated object or Any (or not "
                   f"annotated) as one plain object() only, so its verdict on "
                   f"{function_name} says nothing about other values ({names}).\n" + detail)
    total_paths = sum(r.paths for r in results)
    if by_status[Status.NOT_EXHAUSTED]:
        paths = min(r.paths for r in results if r.status is Status.NOT_EXHAUSTED)
        confirmed = by_status[Status.CONFIRMED]
        return Verdict(Kind.NO_COUNTEREXAMPLE,
                       f"no counterexample in {paths} paths (CrossHair, not exhaustive; "
                       f"{confirmed}/{len(results)} postconditions confirmed)",
                       detail=detail, examples=paths)
    return Verdict(Kind.CONFIRMED,
                   f"confirmed over all paths ({_plural(len(results), 'postcondition')}, "
                   f"{_plural(total_paths, 'path')})",
                   detail=detail, examples=total_paths)


def check_function(module_name: str, function_name: str, condition_timeout: float,
                   invariant: str = "contract") -> Verdict:
    """The verdict of CrossHair on one function's contract."""
    try:
        function = getattr(importlib.import_module(module_name), function_name)
        unexplored = unexplored_parameters(function)
        results = analyze(function, condition_timeout)
    except Exception:
        return Verdict(Kind.ERROR, "CrossHair analysis raised", detail=traceback.format_exc())
    return verdict_for(function_name, results, unexplored, invariant)


def crosshair_obligation(module_name: str, function_name: str, manager: str,
                         invariant: str = "contract", *,
                         quick_timeout: float = QUICK_CONDITION_TIMEOUT,
                         full_timeout: float = FULL_CONDITION_TIMEOUT,
                         profiles: frozenset[str] = frozenset(PROFILES)) -> Obligation:
    """The obligation ``<manager>.<function_name>.<invariant>``: CrossHair on its contract.

    ``quick_timeout`` and ``full_timeout`` are the CPU seconds per postcondition
    in the quick and full profiles.
    """

    def run(profile: str) -> Verdict:
        timeout = quick_timeout if profile == "quick" else full_timeout
        return check_function(module_name, function_name, timeout, invariant)

    return Obligation(id=f"{manager}.{function_name}.{invariant}", manager=manager,
                      operation=function_name, invariant=invariant, run=run,
                      profiles=profiles, depends_on=(module_name, __name__))


def obligations() -> Iterator[Obligation]:
    for module_name, manager in CONTRACT_MODULES:
        for function_name in contract_functions(module_name):
            quick = QUICK_TIMEOUT_OVERRIDES.get(f"{module_name}.{function_name}",
                                                QUICK_CONDITION_TIMEOUT)
            qualified = f"{module_name}.{function_name}"
            profiles = frozenset({"full"} if qualified in FULL_PROFILE_ONLY else PROFILES)
            yield crosshair_obligation(module_name, function_name, manager,
                                       quick_timeout=quick, profiles=profiles)
