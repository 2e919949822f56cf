"""The real systems' recorded behaviour as checks of the model: one obligation per
conformance suite of tests/conformance/ (issue 15's cases ported from Wine,
ReactOS, LTP, MS-DOS, FreeDOS, DOSBox-staging, HimemX and the XMS/EMS
specifications), in both profiles.

The suites are pytest modules (their cases are data, their runners parametrized
tests); here every parametrized case of every runner is called directly, so the
check judges the model against them without pytest. A case pytest marks as a
strict xfail (a deliberate deviation, docs/deviations.md) must still fail: one
that starts passing is reported, as pytest's strict xfail would. The verdict is
"no counterexample in N examples", N the number of cases run; a failing case is
a counterexample naming it and its assertion. The cases run in milliseconds
each, so the quick profile, the CI gate, judges the model's behaviour at the
real systems' boundaries as well as by its proofs and machines (issue 18: the
quick profile alone should catch most of what the tests catch).
"""

from __future__ import annotations

import importlib
import inspect
import traceback
from collections.abc import Callable, Iterator
from typing import Any

from proofs.obligation import Kind, Obligation, Verdict

#: tests/conformance/ modules whose parametrized runners are the cases.
SUITES = ("windows_virtual", "windows_heap", "linux_ltp", "msdos_alloc", "xms_ems",
          "windows_views", "linux_ltp_views")


def _cases(module: Any) -> Iterator[tuple[str, Callable[..., None], dict[str, Any], bool]]:
    """(case id, runner, its arguments, expected to fail) for every parametrized
    case of every ``test_*`` runner of the module."""
    for name, function in sorted(vars(module).items()):
        if not (name.startswith("test_") and inspect.isfunction(function)):
            continue
        for mark in getattr(function, "pytestmark", ()):
            if mark.name != "parametrize":
                continue
            names = [n.strip() for n in mark.args[0].split(",")] if isinstance(
                mark.args[0], str) else list(mark.args[0])
            for index, value in enumerate(mark.args[1]):
                param = hasattr(value, "values") and hasattr(value, "marks")  # pytest.param
                if param:
                    values, marks = value.values, value.marks
                else:
                    values, marks = (value,) if len(names) == 1 else tuple(value), ()
                xfail = any(m.name == "xfail" for m in marks)
                yield f"{name}[{index}]", function, dict(zip(names, values, strict=True)), xfail


def _judge(suite: str) -> Verdict:
    try:
        module = importlib.import_module(f"tests.conformance.{suite}")
    except Exception:
        return Verdict(Kind.ERROR, "the suite failed to import", detail=traceback.format_exc())
    ran = 0
    for case, runner, arguments, xfail in _cases(module):
        ran += 1
        try:
            runner(**arguments)
        except Exception as failure:
            if xfail:
                continue
            shown = f"{type(failure).__name__}: {failure}".strip()
            return Verdict(Kind.COUNTEREXAMPLE, f"{case} disagrees with its source",
                           detail=f"{case} ({arguments!r:.300})\n{shown[:2000]}",
                           violated=("CONFORMANCE",), examples=ran)
        else:
            if xfail:
                return Verdict(Kind.COUNTEREXAMPLE, f"{case} passes but is marked a deviation",
                               detail=f"{case}: a strict xfail passed", violated=("CONFORMANCE",),
                               examples=ran)
    if ran == 0:
        return Verdict(Kind.ERROR, f"tests/conformance/{suite}.py has no parametrized cases")
    return Verdict(Kind.NO_COUNTEREXAMPLE, f"no counterexample in {ran} examples", examples=ran)


def _obligation(suite: str) -> Obligation:
    def run(profile: str) -> Verdict:
        return _judge(suite)

    return Obligation(id=f"conformance.{suite}.CONFORMANCE", manager="conformance",
                      operation=suite, invariant="CONFORMANCE", run=run)


def obligations() -> Iterator[Obligation]:
    yield from (_obligation(suite) for suite in SUITES)
