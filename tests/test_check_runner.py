"""The runner of ``python -m proofs.check``, driven by fake obligations.

Fake registries are small packages written to a temporary directory and put on
sys.path (spawned workers inherit it); most tests run them in-process
(``--in-process`` / ``jobs=1``), and one runs the worker pool with a hang and a
crash in it. No assertion depends on timing.
"""

from __future__ import annotations

import itertools
import json
import os
import textwrap
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest

from proofs.check import main
from proofs.obligation import Kind, Obligation, Verdict
from proofs.runner.discovery import DuplicateObligationError, collect
from proofs.runner.pool import run_obligations

HEADER = "from proofs.obligation import Kind, Obligation, Verdict\n"

PASSING = HEADER + textwrap.dedent('''
    def _proved(profile):
        return Verdict(Kind.PROVED, "proved")

    def _bounded(profile):
        return Verdict(Kind.PROVED_BOUNDED, "proved up to 8 frames", bound=8)

    def obligations():
        yield Obligation("fake.AllocFrame.FRM-1", "fake", "AllocFrame", "FRM-1", _proved)
        yield Obligation("fake.FreeFrame.FRM-2", "fake", "FreeFrame", "FRM-2", _bounded)
        yield Obligation("other.Map.VMM-1", "other", "Map", "VMM-1", _proved,
                         frozenset({"full"}))
''')

FAILING = {
    "counterexample": HEADER + textwrap.dedent('''
        def _run(profile):
            return Verdict(Kind.COUNTEREXAMPLE, "counterexample",
                           detail="AllocFrame() twice returned frame 3 twice",
                           violated=("FRM-3",))

        def obligations():
            yield Obligation("bad.AllocFrame.FRM-3", "bad", "AllocFrame", "FRM-3", _run)
    '''),
    "unknown": HEADER + textwrap.dedent('''
        def _run(profile):
            return Verdict(Kind.UNKNOWN, "z3 said unknown", detail="incomplete quantifiers")

        def obligations():
            yield Obligation("bad.AllocFrame.FRM-3", "bad", "AllocFrame", "FRM-3", _run)
    '''),
    "error": HEADER + textwrap.dedent('''
        def _run(profile):
            raise RuntimeError("the spec module is broken")

        def obligations():
            yield Obligation("bad.AllocFrame.FRM-3", "bad", "AllocFrame", "FRM-3", _run)
    '''),
}

_names = itertools.count()


@pytest.fixture
def make_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., str]:
    """Write a fake obligations package; return its importable name."""
    monkeypatch.syspath_prepend(str(tmp_path))

    def make(**modules: str) -> str:
        name = f"fake_registry_{os.getpid()}_{next(_names)}"
        package = tmp_path / name
        package.mkdir()
        (package / "__init__.py").write_text("")
        for module, source in modules.items():
            (package / f"{module}.py").write_text(source)
        return name

    return make


def _obligation(run: Callable[[str], Verdict], oid: str = "t.Op.INV-1") -> Obligation:
    return Obligation(oid, "t", "Op", "INV-1", run)


# --------------------------------------------------------------------------- run_obligations


def test_in_process_results_keep_the_given_order() -> None:
    first = _obligation(lambda p: Verdict(Kind.PROVED, "proved"), "a.Op.X")
    second = _obligation(lambda p: Verdict(Kind.CONFIRMED, f"confirmed in {p}"), "b.Op.X")
    results = run_obligations([first, second], "quick", 1)
    assert [(o.id, v.kind, v.summary) for o, v, _ in results] == [
        ("a.Op.X", Kind.PROVED, "proved"), ("b.Op.X", Kind.CONFIRMED, "confirmed in quick")]
    assert all(seconds >= 0 for _, _, seconds in results)


def test_an_exception_in_run_is_an_error_with_its_traceback() -> None:
    def run(profile: str) -> Verdict:
        raise ValueError("boom")

    [(_, verdict, _)] = run_obligations([_obligation(run)], "quick", 1)
    assert verdict.kind is Kind.ERROR
    assert "ValueError: boom" in verdict.detail
    assert "Traceback" in verdict.detail


def test_a_run_that_returns_no_verdict_is_an_error() -> None:
    [(_, verdict, _)] = run_obligations([_obligation(lambda p: "ok")], "quick", 1)  # type: ignore[arg-type,return-value]
    assert verdict.kind is Kind.ERROR


def test_unknown_profile_is_refused() -> None:
    with pytest.raises(ValueError):
        run_obligations([], "thorough", 1)


# --------------------------------------------------------------------------- discovery


def test_discovery_skips_private_and_runner_modules(make_registry: Callable[..., str]) -> None:
    duplicate = PASSING  # would clash if any of these modules were discovered
    package = make_registry(proofs=PASSING, _private=duplicate, check=duplicate,
                            obligation=duplicate, helpers="X = 1\n")
    assert [o.id for o in collect(package)] == [
        "fake.AllocFrame.FRM-1", "fake.FreeFrame.FRM-2", "other.Map.VMM-1"]


def test_duplicate_ids_are_refused(make_registry: Callable[..., str],
                                   capsys: pytest.CaptureFixture[str]) -> None:
    package = make_registry(first=PASSING, second=PASSING)
    with pytest.raises(DuplicateObligationError, match="fake.AllocFrame.FRM-1"):
        collect(package)
    assert main(["--registry", package, "--in-process"]) == 1
    assert "fake.AllocFrame.FRM-1" in capsys.readouterr().err


def test_a_module_that_fails_to_import_is_reported(make_registry: Callable[..., str],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    package = make_registry(good=PASSING, broken="import no_such_module_here\n")
    ids = [o.id for o in collect(package)]
    assert "broken.discovery" in ids
    assert main(["--registry", package, "--in-process"]) == 1
    assert "no_such_module_here" in capsys.readouterr().out


# --------------------------------------------------------------------------- command line


def test_all_passing_exits_0(make_registry: Callable[..., str],
                             capsys: pytest.CaptureFixture[str]) -> None:
    package = make_registry(proofs=PASSING)
    assert main(["--registry", package, "--in-process"]) == 0
    captured = capsys.readouterr()
    assert "proved up to 8 frames" in captured.out
    assert "PASSED: 3 obligations" in captured.out
    assert "[1/3] proved" in captured.err


@pytest.mark.parametrize("failure", sorted(FAILING))
def test_any_failure_exits_1(make_registry: Callable[..., str],
                             capsys: pytest.CaptureFixture[str], failure: str) -> None:
    package = make_registry(proofs=PASSING, bad=FAILING[failure])
    assert main(["--registry", package, "--in-process"]) == 1
    out = capsys.readouterr().out
    assert "FAILED: 4 obligations" in out
    assert "== bad.AllocFrame.FRM-3" in out


def test_a_raising_obligation_is_an_error_in_the_report(
        make_registry: Callable[..., str], capsys: pytest.CaptureFixture[str]) -> None:
    package = make_registry(bad=FAILING["error"])
    assert main(["--registry", package, "--in-process"]) == 1
    out = capsys.readouterr().out
    assert "ERROR" in out
    assert "RuntimeError: the spec module is broken" in out


def test_profile_selects_obligations(make_registry: Callable[..., str],
                                     capsys: pytest.CaptureFixture[str]) -> None:
    package = make_registry(proofs=PASSING)
    assert main(["--registry", package, "--in-process", "--profile", "quick"]) == 0
    out = capsys.readouterr().out
    assert "fake.AllocFrame.FRM-1" in out
    assert "other.Map.VMM-1" not in out


def test_unknown_profile_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--profile", "thorough"])
    assert exit_info.value.code == 2


def test_only_filters_by_pattern_or_substring(make_registry: Callable[..., str],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    package = make_registry(proofs=PASSING, bad=FAILING["counterexample"])
    assert main(["--registry", package, "--in-process", "--only", "fake.*"]) == 0
    out = capsys.readouterr().out
    assert "fake.AllocFrame.FRM-1" in out and "fake.FreeFrame.FRM-2" in out
    assert "bad.AllocFrame" not in out

    assert main(["--registry", package, "--in-process", "--only", "FRM-2",
                 "--only", "other.*"]) == 0
    out = capsys.readouterr().out
    assert "PASSED: 2 obligations" in out

    assert main(["--registry", package, "--in-process", "--only", "FRM-3"]) == 1


def test_only_matching_nothing_is_a_usage_error(make_registry: Callable[..., str],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    package = make_registry(proofs=PASSING)
    assert main(["--registry", package, "--in-process", "--only", "nothing.*"]) == 2
    assert "nothing.*" in capsys.readouterr().err


def test_list_prints_ids_and_runs_nothing(make_registry: Callable[..., str],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    package = make_registry(proofs=PASSING, bad=FAILING["error"])
    assert main(["--registry", package, "--list"]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert ["fake.AllocFrame.FRM-1", "fake", "AllocFrame", "FRM-1", "quick,full"] in rows
    assert ["other.Map.VMM-1", "other", "Map", "VMM-1", "full"] in rows
    assert "bad.AllocFrame.FRM-3" in [row[0] for row in rows]


def test_json_and_junit_reports(make_registry: Callable[..., str], tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    package = make_registry(proofs=PASSING, bad=FAILING["counterexample"])
    json_path, junit_path = tmp_path / "out" / "r.json", tmp_path / "out" / "r.xml"
    assert main(["--registry", package, "--in-process", "--profile", "quick",
                 "--json", str(json_path), "--junit", str(junit_path)]) == 1

    report = json.loads(json_path.read_text())
    assert report["profile"] == "quick"
    assert report["passed"] is False
    assert report["totals"]["PROVED"] == 1
    assert report["totals"]["COUNTEREXAMPLE"] == 1
    assert report["totals"]["obligations"] == 3
    by_id = {o["id"]: o for o in report["obligations"]}
    assert set(by_id) == {"fake.AllocFrame.FRM-1", "fake.FreeFrame.FRM-2",
                          "bad.AllocFrame.FRM-3"}
    bad = by_id["bad.AllocFrame.FRM-3"]
    assert bad["kind"] == "COUNTEREXAMPLE"
    assert bad["violated"] == ["FRM-3"]
    assert "frame 3 twice" in bad["detail"]
    assert by_id["fake.FreeFrame.FRM-2"]["bound"] == 8
    assert set(bad) == {"id", "manager", "operation", "invariant", "kind", "summary",
                        "detail", "violated", "bound", "examples", "cache", "seconds",
                        "counterexample"}
    assert bad["counterexample"] is None  # a fake verdict carries its text only

    cases = ET.parse(junit_path).getroot().findall(".//testcase")
    assert {(c.get("classname"), c.get("name")) for c in cases} == {
        ("fake", "fake.AllocFrame.FRM-1"), ("fake", "fake.FreeFrame.FRM-2"),
        ("bad", "bad.AllocFrame.FRM-3")}
    failed = [c for c in cases if c.find("failure") is not None]
    assert [c.get("name") for c in failed] == ["bad.AllocFrame.FRM-3"]
    failure = failed[0].find("failure")
    assert failure is not None and failure.get("type") == "COUNTEREXAMPLE"
    assert "frame 3 twice" in (failure.text or "")
    assert not any(c.find("skipped") is not None for c in cases)


# --------------------------------------------------------------------------- worker pool

POOL = HEADER + textwrap.dedent('''
    import os, time

    def _where(profile):
        return Verdict(Kind.PROVED, f"proved in process {os.getpid()}")

    def _hang(profile):
        time.sleep(3600)
        return Verdict(Kind.PROVED, "never")

    def _crash(profile):
        os._exit(3)

    def obligations():
        yield Obligation("pool.Hang.X", "pool", "Hang", "X", _hang)
        yield Obligation("pool.Crash.X", "pool", "Crash", "X", _crash)
        for n in range(3):
            yield Obligation(f"pool.Where{n}.X", "pool", f"Where{n}", "X", _where)
''')


def test_worker_pool_survives_a_hang_and_a_crash(make_registry: Callable[..., str],
                                                 tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    package = make_registry(pool=POOL)
    json_path = tmp_path / "pool.json"
    code = main(["--registry", package, "--jobs", "2", "--timeout", "1",
                 "--json", str(json_path)])
    assert code == 1
    by_id = {o["id"]: o for o in json.loads(json_path.read_text())["obligations"]}
    assert by_id["pool.Hang.X"]["kind"] == "UNKNOWN"
    assert "timeout" in by_id["pool.Hang.X"]["summary"]
    assert by_id["pool.Crash.X"]["kind"] == "ERROR"
    assert "died" in by_id["pool.Crash.X"]["summary"]
    for n in range(3):
        where = by_id[f"pool.Where{n}.X"]
        assert where["kind"] == "PROVED"
        assert where["summary"] != f"proved in process {os.getpid()}"
    assert "[5/5]" in capsys.readouterr().err


def test_pool_runs_discoverable_obligations_by_id(make_registry: Callable[..., str]) -> None:
    package = make_registry(proofs=PASSING)
    results = run_obligations(["fake.FreeFrame.FRM-2", "fake.AllocFrame.FRM-1"], "quick", 2,
                              timeout=60, package=package)
    assert [(o.id, v.kind) for o, v, _ in results] == [
        ("fake.FreeFrame.FRM-2", Kind.PROVED_BOUNDED), ("fake.AllocFrame.FRM-1", Kind.PROVED)]
    with pytest.raises(KeyError):
        run_obligations([_obligation(lambda p: Verdict(Kind.PROVED, "proved"))], "quick", 2,
                        package=package)


def test_every_module_of_proofs_lists_its_obligations() -> None:
    """The real registry discovers without a single discovery error (a helper
    module exporting a function named obligations() with parameters is one)."""
    found = collect()
    assert [o.id for o in found if o.invariant == "discovery"] == []
    managers = {o.manager for o in found}
    assert {"page_manager", "virtual_memory", "kernel_heap", "memory_pool",
            "memory_subsystem", "x86_paging", "heap_layout"} <= managers


# -- issue 17: bad options are usage errors, found before anything runs ---------------

@pytest.mark.parametrize("timeout", ["nan", "inf", "-inf", "0", "-1"])
def test_a_timeout_that_never_fires_is_a_usage_error(timeout: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["--timeout", timeout, "--list"])
    assert stop.value.code == 2 and "--timeout" in capsys.readouterr().err


def test_report_paths_are_checked_before_the_run(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    regular = tmp_path / "regular"
    regular.write_text("")
    for option, path in (("--json", tmp_path), ("--junit", regular / "below.xml"),
                         ("--json", Path("/proc/memspec-cannot-write-here.json"))):
        with pytest.raises(SystemExit) as stop:
            main([option, str(path), "--only", "no.such.obligation"])
        assert stop.value.code == 2
        assert option in capsys.readouterr().err
    assert main(["--json", str(tmp_path / "new" / "r.json"), "--only", "no.such.obligation"]) == 2
    assert not (tmp_path / "new").exists()  # the check created nothing


@pytest.mark.parametrize("registry", ["no_such_package_here", "proofs.check", "", "."])
def test_a_registry_that_is_not_a_package_is_a_usage_error(
        registry: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["--registry", registry, "--list"])
    assert stop.value.code == 2 and "--registry" in capsys.readouterr().err
