"""An implementation's own configuration (PROTOCOL.md, "Configuration").

The defaults are the set-up values every family used before; a hello's
``config``, ``--config FILE`` and ``--set`` change them, later layers winning;
the schema and the model's preconditions refuse a bad one with a clear
message and a documented exit status (2 from the command line, 4 from a
hello), never a traceback; the sessions, the model world of strict mode and a
saved trace use the values. The C fixture's real-size configuration
(``MEMIMPL_CONFIG=real``) passes both modes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from proofs.oracle.__main__ import EXIT_CONFIG, EXIT_USAGE, main
from proofs.oracle.config import (
    DEFAULTS,
    ConfigError,
    layered,
    parse_setting,
    problems,
    read_file,
)
from proofs.oracle.families import FAMILIES, family_named
from proofs.oracle.report import describe
from proofs.oracle.run import load_trace, replay, save_trace, search
from proofs.oracle.session import Coverage, StrictSession
from proofs.oracle.world import MANAGERS
from tests.oracle_impls import build_c
from tests.test_oracle_c import BUGS

#: The C fixture's real-size configuration, as its hello declares it.
REAL = {"mem_end": 0x1000000, "heap_start": 0xC0000000, "heap_end": 0xC0100000,
        "heap_max": 0xCFFFF000, "index_size": 0x20000, "min_size": 0x70000}


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("oracle_config")


def real(binary: str) -> str:
    return f"MEMIMPL_CONFIG=real {binary}"


def shim(config: Path) -> str:
    return f"{sys.executable} -m proofs.oracle.model_shim --config {config}"


@pytest.mark.parametrize("family", [f.name for f in FAMILIES])
def test_the_defaults_are_the_set_up_every_family_had(family: str) -> None:
    setup = family_named(family).setup
    assert setup(MANAGERS) == setup(MANAGERS, DEFAULTS[family])
    assert problems(layered(), [family]) == []


def test_later_layers_win_field_by_field() -> None:
    config = layered({"kernel": {"index_size": 64, "min_size": 0x2000}},
                     {"kernel": {"index_size": 128}})
    assert config.of("kernel")["index_size"] == 128
    assert config.of("kernel")["min_size"] == 0x2000
    assert config.of("kernel")["mem_end"] == DEFAULTS["kernel"]["mem_end"]
    assert config.declared() == {"kernel": {"index_size": 128, "min_size": 0x2000}}


@pytest.mark.parametrize(("setting", "why"), [
    ("kernel.index_size=0x7FFFFFFF", "KernelHeap.Create"),  # the index past the heap
    ("kernel.heap_end=0xC0000000", "KernelHeap.Create"),  # an empty heap
    ("kernel.mem_end=0x9000", "InitializePaging"),  # no frame for the directory
    ("dos.umb_start=0xF000", "DosMemoryManager.Initialize"),
    ("user.mem_end=0", "PageManager.InitializePhysicalMemory"),
])
def test_the_model_refuses_what_its_preconditions_refuse(setting: str, why: str) -> None:
    family, key, value = parse_setting(setting)
    found = problems(layered({family: {key: value}}), [family])
    assert len(found) == 1 and why in found[0] and "ERROR_" in found[0], found


@pytest.mark.parametrize(("setting", "why"), [
    ("kernel.bogus=1", "bogus"), ("nofamily.mem_end=1", "nofamily"),
    ("kernel.index_size=-1", "kernel.index_size"), ("kernel.index_size=x", "not a number"),
    ("kernel.supervisor=7", "kernel.supervisor"), ("index_size=16", "FAMILY.FIELD=VALUE"),
])
def test_the_schema_refuses_unknown_fields_and_wrong_types(setting: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        parse_setting(setting)


def test_config_files_json_and_toml(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text("[kernel]\nindex_size = 0x20000\nsupervisor = true\n")
    (tmp_path / "c.json").write_text(json.dumps({"kernel": {"index_size": 0x20000}}))
    assert read_file(tmp_path / "c.toml") == {"kernel": {"index_size": 0x20000,
                                                         "supervisor": True}}
    assert read_file(tmp_path / "c.json") == {"kernel": {"index_size": 0x20000}}
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="is not JSON"):
        read_file(tmp_path / "bad.json")
    with pytest.raises(ConfigError, match="cannot read"):
        read_file(tmp_path / "missing.json")


def test_a_bad_command_line_configuration_is_a_usage_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    impl = f"{sys.executable} -m proofs.oracle.model_shim"
    for extra in (["--set", "kernel.index_size=0x7FFFFFFF"], ["--set", "kernel.nope=1"],
                  ["--config", str(tmp_path / "missing.toml")]):
        with pytest.raises(SystemExit) as exit_:
            main(["--impl", impl, "--mode", "strict", "--max-examples", "1", *extra])
        assert exit_.value.code == EXIT_USAGE
        err = capsys.readouterr().err
        assert "Traceback" not in err and ("--set:" in err or "--config:" in err), err


def test_a_refused_hello_configuration_exits_4(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "refused.json"
    path.write_text(json.dumps({"kernel": {"index_size": 0x7FFFFFFF}}))
    code = main(["--impl", shim(path), "--mode", "spec", "--max-examples", "1", "--quiet",
                 "--trace-out", str(tmp_path / "t.json")])
    out = capsys.readouterr().out
    assert code == EXIT_CONFIG, out
    assert "configuration is refused" in out and "KernelHeap.Create" in out


def test_the_hello_configuration_reaches_the_set_up_and_the_model(tmp_path: Path) -> None:
    path = tmp_path / "small.json"
    path.write_text(json.dumps({"kernel": {"index_size": 40, "min_size": 0x3000,
                                           "mem_end": 0x40000}}))
    session = StrictSession(shim(path), 5.0, Coverage(), family_named("kernel"))
    try:
        create = session.setup_calls()[-1][2]
        assert (create["index_size"], create["min_size"]) == (40, 0x3000)
        session.setup()
        assert session.world.heap.index_size == 40
        assert session.world.pm.nframes == 0x40
    finally:
        session.close()
    outcome = search(shim(path), "strict", max_examples=3, steps=10, seed=1, time_limit=60,
                     families=("kernel",))
    assert outcome.passed and outcome.config == {"kernel": {
        "index_size": 40, "min_size": 0x3000, "mem_end": 0x40000}}, describe(outcome)


def test_the_report_names_the_configuration(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"kernel": {"index_size": 40}}))
    code = main(["--impl", shim(path), "--mode", "strict", "--max-examples", "1", "--quiet",
                 "--family", "kernel", "--set", "kernel.min_size=0x3000",
                 "--trace-out", str(tmp_path / "t.json")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "configuration: kernel.index_size=0x28, kernel.min_size=0x3000" in out, out


def test_a_trace_carries_its_configuration(tmp_path: Path) -> None:
    """A divergence found under a configuration replays under it (the trace's
    "config"), whatever the replaying implementation's hello says."""
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"kernel": {"index_size": 40}}))
    broken = f"{sys.executable} -m proofs.oracle.model_shim --variant heap:free_unsorted"
    outcome = search(f"{broken} --config {path}", "spec", max_examples=60, steps=12, seed=0,
                     time_limit=60, shrink_seconds=3, families=("kernel",))
    assert outcome.divergence is not None, describe(outcome)
    from proofs.oracle.run import trace_of
    trace_file = tmp_path / "trace.json"
    save_trace(trace_file, trace_of(outcome, list(MANAGERS)))
    trace = load_trace(trace_file)
    assert trace["config"] == {"kernel": {"index_size": 40}}
    again = replay(broken, "spec", trace["operations"], config=trace["config"])
    assert again.divergence is not None and again.config == trace["config"]
    bad = dict(trace, config={"kernel": {"index_size": "many"}})
    trace_file.write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="config"):
        load_trace(trace_file)


def test_the_fixture_at_real_size_passes_both_modes(build_dir: Path) -> None:
    binary = real(build_c(build_dir))
    strict = search(binary, "strict", max_examples=10, steps=25, seed=3, time_limit=120)
    assert strict.passed, describe(strict)
    assert strict.config == {"kernel": {k: v for k, v in REAL.items()
                                        if DEFAULTS["kernel"][k] != v}}
    spec = search(binary, "spec", max_examples=4, steps=15, seed=3, time_limit=120)
    assert spec.passed, describe(spec)


REAL_TRACES = Path(__file__).resolve().parent / "oracle_traces" / "real"


@pytest.mark.parametrize("bug", sorted(BUGS))
def test_every_bug_switch_is_caught_at_real_size(build_dir: Path, bug: str) -> None:
    """tests/oracle_traces/real holds, for each bug switch, the trace a spec-mode
    search found against the fixture at its real-size configuration
    (``MEMIMPL_CONFIG=real``: what benchmarks/bench_oracle_spec.py and
    docs/oracle.md time): replayed there it diverges by name, and the clean
    build passes it in both modes."""
    trace = load_trace(REAL_TRACES / f"{bug}.json")
    assert trace["config"]["kernel"]["index_size"] == REAL["index_size"]
    caught = replay(real(build_c(build_dir, bug)), "spec", trace["operations"])
    assert caught.config == trace["config"], caught.config
    assert caught.divergence is not None and caught.divergence.violated, describe(caught)
    assert set(caught.divergence.violated) <= BUGS[bug], describe(caught)
    for mode in ("spec", "strict"):
        clean = replay(real(build_c(build_dir)), mode, trace["operations"])
        assert clean.passed, describe(clean)
