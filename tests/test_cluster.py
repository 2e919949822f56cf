"""``--scheduler``: the obligations on a Dask cluster give the verdicts of the
local pool, and a worker that dies is retried once and then reported; an
oracle campaign on the cluster; the oracle's shared example database."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

import dask
import pytest
from distributed import LocalCluster

import proofs.runner.cluster as cluster_module
from proofs.check import main
from proofs.oracle.__main__ import main as oracle
from proofs.oracle.campaign import example_database
from proofs.oracle.report import describe
from proofs.oracle.run import load_trace, search
from proofs.runner.cluster import ClusterUnavailableError, connect
from tests.oracle_impls import python_impl

#: Real obligations of four kinds: an inductive step, a layered family, a
#: CrossHair contract and a state machine.
REAL = ["page_manager.FreeFrame.FRM-1", "dos_memory.SetUmbLink.DOS-2",
        "x86_paging.is_page_aligned.contract", "memory_pool.machine.refinement"]

#: A registry whose obligations pass, hang, crash their process, or kill the
#: Dask worker that runs them (once, or every time).
FAKE = '''
import os, signal, time
from pathlib import Path
from proofs.obligation import Kind, Obligation, Verdict

MARK = Path(os.environ["MEMSPEC_TEST_MARK"])

def _pass(profile):
    return Verdict(Kind.PROVED, "proved")

def _hang(profile):
    time.sleep(60)
    return Verdict(Kind.PROVED, "late")

def _crash(profile):
    os._exit(3)

def _kill_worker_once(profile):
    if MARK.exists():
        return Verdict(Kind.PROVED, "proved on the second worker")
    MARK.write_text("killed")
    os.kill(os.getppid(), signal.SIGKILL)  # the Dask worker that spawned this process
    time.sleep(60)

def _kill_worker(profile):
    os.kill(os.getppid(), signal.SIGKILL)
    time.sleep(60)

def obligations():
    yield Obligation("dask.Pass.X", "dask", "Pass", "X", _pass)
    yield Obligation("dask.Hang.X", "dask", "Hang", "X", _hang)
    yield Obligation("dask.Crash.X", "dask", "Crash", "X", _crash)
    yield Obligation("dask.KillOnce.X", "dask", "KillOnce", "X", _kill_worker_once)
    yield Obligation("dask.Kill.X", "dask", "Kill", "X", _kill_worker)
'''


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A LocalCluster of two worker processes, as a test starts one, that can
    import the fake registry and start processes (daemon False); the scheduler
    retries a task once after a worker death (allowed-failures 1)."""
    root = tmp_path_factory.mktemp("cluster")
    (root / "daskfake").mkdir()
    (root / "daskfake" / "__init__.py").write_text("")
    (root / "daskfake" / "proofs.py").write_text(textwrap.dedent(FAKE))
    saved = {name: os.environ.get(name) for name in ("PYTHONPATH", "MEMSPEC_TEST_MARK")}
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(root), *filter(None, [saved["PYTHONPATH"]])])
    os.environ["MEMSPEC_TEST_MARK"] = str(root / "killed-once")
    sys.path.insert(0, str(root))
    try:
        with dask.config.set({"distributed.scheduler.allowed-failures": 1,
                              "distributed.worker.daemon": False}), \
                LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                             dashboard_address=None) as local:
            yield str(local.scheduler_address)
    finally:
        sys.path.remove(str(root))
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _report(path: Path) -> dict[str, tuple[str, str]]:
    return {o["id"]: (o["kind"], o["summary"])
            for o in json.loads(path.read_text())["obligations"]}


def test_real_obligations_get_the_local_pools_verdicts(cluster: str, tmp_path: Path) -> None:
    args = ["--profile", "quick", "--no-cache", *(a for i in REAL for a in ("--only", i))]
    assert main([*args, "--scheduler", cluster, "--json", str(tmp_path / "dask.json")]) == 0
    assert main([*args, "--jobs", "2", "--json", str(tmp_path / "local.json")]) == 0
    on_dask, local = _report(tmp_path / "dask.json"), _report(tmp_path / "local.json")
    assert set(on_dask) == set(REAL)
    assert on_dask == local


def test_hangs_crashes_and_dead_workers(cluster: str, tmp_path: Path) -> None:
    common = ["--registry", "daskfake", "--profile", "quick", "--no-cache", "--timeout", "3"]
    local = tmp_path / "local.json"
    code = main([*common, "--jobs", "2", "--json", str(local),
                 "--only", "dask.Pass.X", "--only", "dask.Hang.X", "--only", "dask.Crash.X"])
    assert code == 1
    on_dask = tmp_path / "dask.json"
    assert main([*common, "--scheduler", cluster, "--json", str(on_dask)]) == 1
    verdicts = _report(on_dask)
    for ident, verdict in _report(local).items():  # as the local pool says
        assert verdicts[ident] == verdict, ident
    assert verdicts["dask.Hang.X"] == ("UNKNOWN", "timeout after 3s")
    assert verdicts["dask.Crash.X"][0] == "ERROR"
    assert verdicts["dask.KillOnce.X"] == ("PROVED", "proved on the second worker")
    assert verdicts["dask.Kill.X"] == ("ERROR", "the Dask workers running it died")
    assert len(verdicts) == 5  # none lost


def test_no_scheduler_is_a_usage_error(capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cluster_module, "CONNECT_TIMEOUT", 1.0)
    with pytest.raises(ClusterUnavailableError):
        connect("tcp://127.0.0.1:9")
    assert main(["--profile", "quick", "--only", REAL[0], "--scheduler",
                 "tcp://127.0.0.1:9"]) == 2
    assert "no Dask scheduler at tcp://127.0.0.1:9" in capsys.readouterr().err


# --------------------------------------------------------------------------- the oracle

def _shim(*variant: str) -> str:
    return python_impl("-m", "proofs.oracle.model_shim",
                       *(("--variant", f"dos:{variant[0]}") if variant else ()))


def test_an_oracle_campaign_passes_the_model_and_finds_a_broken_one(
        cluster: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    common = ["--scheduler", cluster, "--mode", "strict", "--family", "dos", "--chunks", "2",
              "--max-examples", "4", "--steps", "12", "--shrink-time", "2", "--quiet"]
    assert oracle(["--impl", _shim(), *common]) == 0
    assert "2 chunks: 2 passed, 0 diverged" in capsys.readouterr().out
    trace = tmp_path / "trace.json"
    junit = tmp_path / "campaign.xml"
    assert oracle(["--impl", _shim("free_merges_neighbours"), *common, "--max-examples", "16",
                   "--trace-out", str(trace), "--junit", str(junit)]) == 1
    out = capsys.readouterr().out
    assert "DIVERGED" in out and "trace saved" in out
    assert load_trace(trace)["family"] == "dos"
    cases = ElementTree.parse(junit).getroot().findall("testcase")
    assert sorted(c.get("name") for c in cases) == ["strict.dos.0", "strict.dos.1"]
    assert any(c.find("failure") is not None for c in cases)


def test_a_cluster_campaign_keeps_the_configuration_and_one_trace_per_bug(
        cluster: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--set reaches every chunk (each saved trace carries it); the chunks, which
    search apart, report each bucket once, with its shortest trace."""
    trace = tmp_path / "trace.json"
    assert oracle(["--impl", _shim("free_merges_neighbours"), "--scheduler", cluster,
                   "--mode", "strict", "--family", "dos", "--chunks", "2", "--max-examples",
                   "12", "--steps", "12", "--shrink-time", "2", "--quiet", "--set",
                   "dos.ems_pages=12", "--trace-out", str(trace)]) == 1
    out = capsys.readouterr().out
    saved = sorted(tmp_path.glob("trace*.json"))
    assert saved and f"BUGS: {len(saved)} distinct over the chunks" in out
    buckets = [line.split(": ", 1)[1].rsplit(" (chunk", 1)[0]
               for line in out.splitlines() if line.startswith("  bug ")]
    assert len(buckets) == len(set(buckets)) == len(saved)
    for path in saved:
        assert load_trace(path)["config"]["dos"]["ems_pages"] == 12


def test_a_failure_saved_in_the_shared_database_is_replayed_first(tmp_path: Path) -> None:
    """One run finds a divergence and saves it; a run with another seed and a
    budget of one sequence replays it from the database at once."""
    database = example_database(str(tmp_path / "examples"))
    broken = _shim("free_merges_neighbours")
    first = search(broken, "strict", max_examples=6, steps=12, seed=1, time_limit=120,
                   shrink_seconds=2, families=("dos",), database=database)
    assert first.divergence is not None, describe(first)
    assert any((tmp_path / "examples").iterdir())
    again = search(broken, "strict", max_examples=1, steps=12, seed=99, time_limit=120,
                   shrink_seconds=2, families=("dos",), database=database)
    assert again.divergence is not None, describe(again)
    assert again.divergence.violated == first.divergence.violated


def test_bad_campaign_options_are_usage_errors(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cluster_module, "CONNECT_TIMEOUT", 1.0)
    afile = tmp_path / "a-file"
    afile.write_text("")
    for options in (["--database", str(afile)], ["--chunks", "0"],
                    ["replay", str(afile), "--scheduler", "tcp://127.0.0.1:9"]):
        with pytest.raises(SystemExit) as stop:
            oracle(["--impl", _shim(), *options])
        assert stop.value.code == 2, options
    assert oracle(["--impl", _shim(), "--scheduler", "tcp://127.0.0.1:9"]) == 2
