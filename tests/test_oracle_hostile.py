"""An untrusted implementation must never crash the oracle or outlive it (issue 17).

Every attack of tests/oracle_impls.py's HOSTILE implementation (at the hello,
at a request, with the processes it starts) is a divergence with a clear
reason, within its timeout, never an oracle traceback, and leaves no process
behind: each run gives its processes a unique tag in their command lines and
/proc is searched for it afterwards. Then the issue's defects one by one
(6 deep nesting, 7 a failed hello, 8 processes left by a passing run, 9 bad
options, 10 the report's marker), and the protocol's checks that the attacks
rely on (every field of a reply checked for its type, nesting measured
without recursion)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

from proofs.oracle.__main__ import EXIT_DIVERGED, EXIT_PASS, EXIT_USAGE, main
from proofs.oracle.families import FAMILIES
from proofs.oracle.protocol import (
    NESTING_LIMIT,
    ProtocolError,
    byte_count,
    check_reply,
    extent,
    nesting,
    parse,
)
from proofs.oracle.report import describe
from proofs.oracle.run import Outcome, replay, search
from proofs.oracle.world import MANAGERS, ModelWorld
from tests.oracle_impls import (
    EXPECTED,
    HARMLESS,
    HOSTILE,
    WRONG_TYPES,
    hostile_impl,
    kill_tagged,
    model_impl,
    python_impl,
    tagged,
)
from tests.test_oracle_faults import OPS

pytestmark = pytest.mark.skipif(not Path("/proc/self/cmdline").exists(),
                                reason="finding left-behind processes needs /proc")

AT_THE_HELLO = ["no-hello", "bad-hello", "garbage-hello", "version", "huge-hello",
                "deep-hello"]
AT_A_REQUEST = [a for a in EXPECTED if a not in AT_THE_HELLO and "@" not in a]
#: Seconds a run may take besides the timeouts it waits (starting Python twice,
#: the set-up calls, ending the processes), on a loaded CI machine.
MARGIN = 10.0


@pytest.fixture
def tag() -> Iterator[str]:
    """A tag for one test's processes; any the test leaves are killed after it."""
    name = f"hostile-{uuid.uuid4().hex}"
    yield name
    kill_tagged(name)


def left_behind(tag: str) -> list[int]:
    """The tagged processes still alive a moment after the run (SIGKILLed ones
    take a few milliseconds to go)."""
    deadline = time.monotonic() + 1.0
    while (alive := tagged(tag)) and time.monotonic() < deadline:
        time.sleep(0.02)
    return alive


def expected(attack: str, mode: str) -> tuple[str, str]:
    return EXPECTED.get(f"{attack}@{mode}", EXPECTED[attack])


def marked(outcome: Outcome) -> tuple[str, str]:
    """The report's row marked "<<" and its why's first line."""
    lines = describe(outcome).splitlines()
    row = next(line for line in lines if line.endswith("<<"))
    return row, lines[lines.index("why:") + 1].strip()


def assert_names_one_request(outcome: Outcome) -> None:
    """The marker and the why name the request whose reply diverged."""
    d = outcome.divergence
    assert d is not None and d.at is not None
    row, why = marked(outcome)
    assert row.startswith(f"#{d.at} ") and why.startswith(f"#{d.at} "), describe(outcome)


# -- every attack ------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["strict", "spec"])
@pytest.mark.parametrize("attack", AT_A_REQUEST)
def test_an_attack_at_a_request_is_a_clear_divergence(tmp_path: Path, tag: str, mode: str,
                                                      attack: str) -> None:
    kind, says = expected(attack, mode)
    timeout = 1.0 if kind == "hang" else 20.0
    outcome = replay(hostile_impl(tmp_path, attack, 9, tag), mode, OPS, timeout=timeout)
    d = outcome.divergence
    assert d is not None and d.kind == kind and says in d.reason, describe(outcome)
    assert d.at in (9, 10)
    assert_names_one_request(outcome)
    assert outcome.seconds < (timeout if kind == "hang" else 0) + MARGIN
    assert left_behind(tag) == []


@pytest.mark.parametrize("attack", AT_THE_HELLO)
def test_an_attack_at_the_hello_is_a_clear_divergence(tmp_path: Path, tag: str,
                                                      attack: str) -> None:
    kind, says = expected(attack, "strict")
    outcome = replay(hostile_impl(tmp_path, attack, 0, tag), "strict", OPS, timeout=20.0)
    d = outcome.divergence
    assert d is not None and d.kind == kind and says in d.reason, describe(outcome)
    assert d.exchanges == [] and "before the first request" in describe(outcome)
    assert outcome.seconds < MARGIN
    assert left_behind(tag) == []


@pytest.mark.parametrize(("wrong", "field", "mode"), [
    ("str", 0, "strict"), ("float", 1, "spec"), ("nan", 2, "strict"), ("big", 3, "spec"),
    ("obj", 4, "strict"), ("null", 5, "spec"), ("list", 1, "strict"), ("bool", 2, "spec")])
def test_a_wrong_type_in_a_reply_is_a_protocol_divergence(tmp_path: Path, tag: str, mode: str,
                                                          wrong: str, field: int) -> None:
    """A reply with a value of another JSON type at one of its fields (the id,
    the result, an observation's field), as the implementation sends it (every
    field of every reply: test_a_wrong_type_at_every_field_of_every_reply_is_refused)."""
    outcome = replay(hostile_impl(tmp_path, f"type-{wrong}", 9, tag, field), mode, OPS,
                     timeout=20.0)
    d = outcome.divergence
    assert d is not None and d.kind == "protocol", describe(outcome)
    assert_names_one_request(outcome)
    assert left_behind(tag) == []


@pytest.mark.parametrize("attack", HARMLESS)
def test_processes_left_by_a_conforming_implementation_are_ended(tmp_path: Path, tag: str,
                                                                 attack: str) -> None:
    """A background child in the group, a daemon (double fork, setsid): both
    modes pass, and nothing is left."""
    for mode in ("strict", "spec"):
        outcome = replay(hostile_impl(tmp_path, attack, 0, tag), mode, OPS, timeout=20.0)
        assert outcome.passed, describe(outcome)
    assert left_behind(tag) == []


def test_megabytes_of_stderr_keep_their_last_lines_escaped(tmp_path: Path, tag: str) -> None:
    outcome = replay(hostile_impl(tmp_path, "stderr", 9, tag), "spec", OPS, timeout=20.0)
    d = outcome.divergence
    assert d is not None and d.kind == "crash"
    assert d.detail.endswith("last words \\x00\\x1b[31m") and "log line 0:" not in d.detail
    assert len(d.detail) < 2000


# -- the defects -------------------------------------------------------------

def run_cli(tmp_path: Path, impl: str, *options: str) -> int:
    return main(["--impl", impl, "--quiet", "--trace-out", str(tmp_path / "trace.json"),
                 "--junit", str(tmp_path / "oracle.xml"), "--shrink-time", "2", *options])


@pytest.mark.parametrize("attack", ["deep-hello", "deep"])
def test_deep_nesting_is_a_divergence_with_its_reports(tmp_path: Path, tag: str,
                                                       attack: str) -> None:
    """Defect 6: 100,000 levels of nesting in the hello or in a reply crashed the
    oracle with RecursionError (no report, no trace, no JUnit)."""
    impl = hostile_impl(tmp_path, attack, 9, tag)
    assert run_cli(tmp_path, impl, "--mode", "strict", "--family", "kernel",
                   "--max-examples", "2") == EXIT_DIVERGED
    junit = ElementTree.parse(tmp_path / "oracle.xml").getroot()
    assert "JSON nested 100000 levels deep" in (junit.findtext(".//failure") or "")
    assert json.loads((tmp_path / "trace.json").read_text())["violated"] == ["protocol"]
    assert left_behind(tag) == []


@pytest.mark.parametrize("attack", ["bad-hello", "version", "huge-hello"])
def test_a_failed_hello_ends_the_child(tmp_path: Path, tag: str, attack: str) -> None:
    """Defect 7: garbage (then exec sleep), a wrong protocol version, a 50 MB
    line: the child outlived the oracle."""
    impl = hostile_impl(tmp_path, attack, 0, tag)
    assert run_cli(tmp_path, impl, "--mode", "strict") == EXIT_DIVERGED
    assert left_behind(tag) == []


def test_a_passing_run_leaves_no_process(tmp_path: Path, tag: str) -> None:
    """Defect 8, as reported: '(exec sleep 302 &); exec python -m
    proofs.oracle.model_shim' passed and left a sleep behind for every child."""
    sleeper = python_impl("-c", "import time; time.sleep(302)", tag)
    impl = f"({sleeper} &); {model_impl()}"
    assert run_cli(tmp_path, impl, "--family", "kernel", "--max-examples", "2",
                   "--steps", "5") == EXIT_PASS
    assert left_behind(tag) == []


def test_a_setsid_grandchild_does_not_survive_a_search(tmp_path: Path, tag: str) -> None:
    """Defect 8: a grandchild in a session of its own, through hypothesis'
    shrinking (every example and every shrink step a child of its own)."""
    impl = hostile_impl(tmp_path, "setsid", 12, tag)
    assert run_cli(tmp_path, impl, "--family", "kernel", "--mode", "spec",
                   "--max-examples", "3", "--steps", "4") == EXIT_DIVERGED
    assert left_behind(tag) == []


def test_sigterm_to_the_oracle_ends_its_children(tmp_path: Path, tag: str) -> None:
    """The oracle killed in CI (SIGTERM) takes the implementation with it, even
    one that ignores SIGTERM and has a child that does too."""
    impl = hostile_impl(tmp_path, "sigterm", 9, tag)
    oracle = subprocess.Popen([sys.executable, "-m", "proofs.oracle", "--impl", impl,
                               "--mode", "strict", "--request-timeout", "120", "--quiet",
                               "--trace-out", str(tmp_path / "t.json")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              cwd=Path(__file__).resolve().parent.parent)
    try:
        deadline = time.monotonic() + 30
        while len(tagged(tag)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(tagged(tag)) >= 2, "the implementation and its child started"
        time.sleep(0.5)  # at the hung request
        oracle.send_signal(signal.SIGTERM)
        assert oracle.wait(timeout=20) == -signal.SIGTERM
    finally:
        oracle.kill()
        oracle.wait()
    assert left_behind(tag) == []


def ran_marker(tmp_path: Path) -> tuple[str, Path]:
    """An implementation that leaves a file when it starts at all."""
    ran = tmp_path / "ran"
    return f"touch {ran}; exec {sys.executable} -c pass", ran


BAD_OPTIONS = [
    (["--request-timeout", "0"], "--request-timeout"),
    (["--request-timeout", "-1"], "--request-timeout"),
    (["--request-timeout", "nan"], "--request-timeout"),
    (["--request-timeout", "inf"], "--request-timeout"),
    (["--steps", "0"], "--steps"),
    (["--steps", "-3"], "--steps"),
    (["--max-examples", "0"], "--max-examples"),
    (["--max-examples", "-1"], "--max-examples"),
    (["--time", "0"], "--time"),
    (["--time", "-5"], "--time"),
    (["--time", "nan"], "--time"),
    (["--time", "inf"], "--time"),
    (["--shrink-time", "-1"], "--shrink-time"),
    (["--shrink-time", "nan"], "--shrink-time"),
    (["--seed", "-1"], "--seed"),
    (["--seed", "1.5"], "--seed"),
    (["--junit", "{tmp}"], "is a directory"),
    (["--junit", "{tmp}/a-file/oracle.xml"], "is not a directory"),
    (["--trace-out", "{tmp}"], "is a directory"),
    (["--trace-out", "{tmp}/a-file/trace.json"], "is not a directory"),
    (["--impl", " "], "an empty command"),
]


@pytest.mark.parametrize(("options", "says"), BAD_OPTIONS,
                         ids=[" ".join(o) for o, _ in BAD_OPTIONS])
def test_bad_options_are_usage_errors_before_anything_runs(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], options: list[str],
        says: str) -> None:
    """Defect 9: a zero, negative or nan timeout was reported as the
    implementation hanging, --steps 0 was a hypothesis traceback, an unwritable
    --junit or --trace-out a traceback after the whole run."""
    impl, ran = ran_marker(tmp_path)
    (tmp_path / "a-file").write_text("")
    argv = ["--impl", impl, "--mode", "strict"] + [o.format(tmp=tmp_path) for o in options]
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == EXIT_USAGE
    assert says in capsys.readouterr().err
    assert not ran.exists(), "the implementation was started"


def test_edge_values_that_are_allowed(tmp_path: Path) -> None:
    """--shrink-time 0 (no shrinking) and --seed 0 are allowed; a replay does not
    write --trace-out, so its directory is not checked."""
    impl = model_impl()
    trace = tmp_path / "t.json"
    assert run_cli(tmp_path, impl, "--mode", "strict", "--family", "kernel",
                   "--max-examples", "1", "--seed", "0", "--shrink-time", "0") == EXIT_PASS
    trace.write_text(json.dumps({"format": "memspec-oracle-trace", "operations": OPS}))
    assert main(["replay", str(trace), "--impl", impl, "--mode", "strict",
                 "--trace-out", str(tmp_path / "missing" / "t.json")]) == EXIT_PASS


@pytest.mark.parametrize("content", [
    {"operations": [{"bogus": 1}]},
    {"operations": [{"look": {"virtual_addr": "x", "length": 1}}]},
    {"operations": "none"},
    {"operations": [], "family": "nope"},
    {"operations": [], "managers": "PageManager"},
])
def test_a_malformed_trace_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            content: dict[str, Any]) -> None:
    trace = tmp_path / "t.json"
    trace.write_text(json.dumps({"format": "memspec-oracle-trace", **content}))
    impl, ran = ran_marker(tmp_path)
    assert main(["replay", str(trace), "--impl", impl]) == EXIT_USAGE
    assert "cannot read the trace" in capsys.readouterr().err and not ran.exists()


@pytest.mark.parametrize("mode", ["strict", "spec"])
@pytest.mark.parametrize("attack", ["garbage", "id", "twice"])
@pytest.mark.parametrize("at", [7, 8])
def test_the_marker_and_the_why_name_the_same_request(tmp_path: Path, tag: str, mode: str,
                                                      attack: str, at: int) -> None:
    """Defect 10: after a bad-JSON or wrong-id reply the "<<" marked the last
    operation sent while the why named another request (or none); a second
    reply with an id already answered is said to be one, in those words.
    Request 7 is an operation in strict mode and an observation in spec mode, 8
    the other way round."""
    outcome = replay(hostile_impl(tmp_path, attack, at, tag, 1), mode, OPS, timeout=20.0)
    d = outcome.divergence
    assert d is not None and d.at == (at + 1 if attack == "twice" else at), describe(outcome)
    assert_names_one_request(outcome)
    if attack == "twice":
        assert f"replied twice to #{at}" in marked(outcome)[1]
    assert left_behind(tag) == []


FLAKY = '''
import json, os, sys
from proofs.oracle.world import MANAGERS, OBSERVATIONS, ModelWorld
with open(sys.argv[1], "a+") as runs:  # the probe is run 0, the first example run 1
    first = runs.tell() == 1
    runs.write("x")
print(json.dumps({"protocol": 1, "implementation": "fails once", "managers": list(MANAGERS),
                  "observations": list(OBSERVATIONS)}), flush=True)
world = ModelWorld()
for n, line in enumerate(sys.stdin, 1):
    if first and n == 20:
        os._exit(4)
    print(json.dumps(world.handle(json.loads(line))), flush=True)
'''


def test_an_implementation_that_fails_once_is_a_divergence(tmp_path: Path) -> None:
    """Hypothesis cannot replay a failure that does not happen again (it raised
    Flaky through the oracle): the verdict is the failure as it happened."""
    script = tmp_path / "flaky.py"
    script.write_text(FLAKY)
    outcome = search(python_impl(str(script), str(tmp_path / "state")), "spec",
                     max_examples=3, steps=8, seed=0, time_limit=60, shrink_seconds=5,
                     families=("kernel",))
    d = outcome.divergence
    assert d is not None and d.kind == "crash" and "not reproducible" in d.reason, \
        describe(outcome)


# -- what the attacks rely on ---------------------------------------------------------

#: Arguments for every observation (an address the heap maps, pid 1, file 1, ...).
ARGS = {"virtual_addr": 0xC0000000, "length": 16, "address": 0x400000, "pid": 1, "file": 1,
        "offset": 0, "frame": 8}
#: A value of every JSON type the protocol does not have at an integer, boolean,
#: string, array or object field (and floats, NaN: not the protocol's numbers).
WRONG: dict[str, Any] = {"str": "x", "list": [], "obj": {}, "null": None, "bool": True,
                         "big": 2 ** 64, "neg": -5000, "float": 1.5, "nan": float("nan")}
#: Where the protocol allows a null: bytes that cannot be read, a reserved page's
#: frame (in a run of Processes' pages).
NULLABLE = {("FileBytes", "data"), ("FrameBytes", "data"), ("ReadBytes", "data"),
            ("ReadPhysical", "data"), ("ProcessBytes", "data"), ("Processes", "pages")}


def model_messages() -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """Each family's set-up calls and every observation after them, with the
    model's replies."""
    for family in FAMILIES:
        world, ident = ModelWorld(), 0
        for manager, op, args in family.setup(tuple(MANAGERS)):
            ident += 1
            request = {"id": ident, "manager": manager, "op": op, "args": args}
            yield request, world.handle(request)
        for name, names in world._observer_args.items():
            ident += 1
            request = {"id": ident, "observe": name, "args": {k: ARGS[k] for k in names}}
            yield request, world.handle(request)


def fields(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every field's path, depth first; of an array, its first and last items
    (the schema gives all items one type)."""
    if path:
        yield path
    items = list(value.items()) if isinstance(value, dict) else \
        list(enumerate(value))[:1] + list(enumerate(value))[1:][-1:] \
        if isinstance(value, list) else []
    for key, inner in items:
        yield from fields(inner, (*path, key))


def test_a_wrong_type_at_every_field_of_every_reply_is_refused() -> None:
    """Every field of every reply the model gives after each family's set-up,
    replaced by a value of each other JSON type, as the line the implementation
    would send: parse or check_reply refuses it (or the protocol allows a null
    there), so no judge ever sees a value of the wrong type."""
    assert set(WRONG) == set(WRONG_TYPES) and "WRONG = " in HOSTILE
    refused = allowed = 0
    for request, reply in model_messages():
        what = request.get("observe") or request["op"]
        for path in fields(reply):
            holder = reply
            for key in path[:-1]:
                holder = holder[key]
            right = holder[path[-1]]
            for value in WRONG.values():
                if type(right) is type(value):
                    continue
                holder[path[-1]] = value
                line = json.dumps(reply).encode()
                holder[path[-1]] = right
                try:
                    check_reply(request, parse(line))
                except ProtocolError:
                    refused += 1
                    continue
                last = next(k for k in reversed(path) if isinstance(k, str))
                assert value is None and (what, last) in NULLABLE, (what, path, value)
                allowed += 1
    assert refused > 4000 and allowed < 20


def test_nesting_is_measured_without_recursion() -> None:
    assert nesting(b"[" * 1_000_000) == 1_000_000
    assert nesting(b'{"a": "' + b"[" * 100 + b'", "b": [[1]]}') <= 3
    assert nesting(b'{"a": "\\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}') <= 1
    deepest = b"[" * NESTING_LIMIT + b"]" * NESTING_LIMIT
    assert parse(b'{"a": ' + deepest[1:-1] + b"}")["a"] is not None
    with pytest.raises(ProtocolError, match="nested 33 levels deep"):
        parse(b'{"a": ' + deepest + b"}")
    for number in (b"1.0", b"1e3", b"NaN", b"-Infinity"):
        with pytest.raises(ProtocolError, match="not an integer"):
            parse(b'{"id": ' + number + b"}")


def test_runs_too_large_to_judge_are_refused() -> None:
    """A count the schema allows (up to 2^32 - 1) that a judge would expand page
    by page (the fuzzer's value-max at FrameBitmap's count ran the oracle out of
    memory): runs end inside their space and cover at most 2^20 pages in all."""
    assert extent("FrameBitmap", {"used": [[0, 8], [40, 8]]}, 48) is None
    assert "past the 48 frames" in (extent("FrameBitmap", {"used": [[0, 2 ** 32 - 1]]}, 48)
                                    or "")
    assert "past the 48 frames" in (extent("FrameCounts", {"frames": 49, "free": 49,
                                                           "used": 0}, 48) or "")
    run = [0x400, 0xBFC00, 0x1000, 4, 0x400, None]
    process = {"pages": [run], "ptes": [[0x400, 16, 7, True, True]]}
    assert extent("Processes", {"current": 1, "processes": [process]}, 1024) is None
    assert "pages in all" in (extent("Processes", {"current": 1, "processes": [process] * 2},
                                     1024) or "")
    beyond = {"pages": [], "ptes": [[0xFFFFF, 2, 7, True, True]]}
    assert "past the 1048576 pages" in (extent("Processes", {"current": 1,
                                                             "processes": [beyond]}, 1024) or "")
    files = {"files": [{"id": 1, "size": 2 ** 32 - 1, "writable": True}], "cache": [],
             "views": []}
    assert "past the 1048576 file bytes" in (extent("MappedFiles", files, 1024) or "")
    assert extent("HoleIndex", {"holes": [[2 ** 32 - 1, 0]]}, 48) is None


def test_a_byte_observation_must_have_the_bytes_asked_for() -> None:
    """A short or long ReadBytes, ProcessBytes, ReadPhysical, FileBytes or FrameBytes
    reply is a protocol divergence, not memory the judges compare (null stays
    "not readable")."""
    asked = {"virtual_addr": 0x1000, "length": 4}
    assert byte_count("ReadBytes", asked, {"data": "00112233"}) is None
    assert byte_count("ReadBytes", asked, {"data": None}) is None
    assert byte_count("ReadBytes", asked, {"data": "001122"}) == (
        "ReadBytes asked for 4 bytes; the reply has 3")
    assert "the reply has 5" in (byte_count("ProcessBytes", {"pid": 1, **asked},
                                            {"data": "00" * 5}) or "")
    assert "the reply has 0" in (byte_count("FileBytes", {"file": 1, "offset": 0,
                                                          "length": 1}, {"data": ""}) or "")
    assert byte_count("FrameBytes", {"frame": 3}, {"data": "00" * 4096}) is None
    assert "asked for 4096 bytes" in (byte_count("FrameBytes", {"frame": 3},
                                                 {"data": "00" * 4095}) or "")


def test_an_extreme_count_is_a_divergence_not_an_exhausted_oracle(tmp_path: Path,
                                                                  tag: str) -> None:
    """The fuzzer's find, end to end, with the oracle's memory capped (2 GB) so
    that a judge expanding the run fails here instead of exhausting the machine."""
    impl = hostile_impl(tmp_path, "value-max", 6, tag, 1)  # FrameBitmap's count, spec mode
    script = ("import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))"
              "; from proofs.oracle.__main__ import main; sys.exit(main())")
    out = subprocess.run([sys.executable, "-c", script, "--impl", impl, "--mode", "spec",
                          "--family", "kernel", "--max-examples", "1", "--quiet",
                          "--shrink-time", "1",
                          "--trace-out", str(tmp_path / "t.json")],
                         capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.returncode == EXIT_DIVERGED and "Traceback" not in out.stderr, out.stderr
    assert "FrameBitmap reports a run of 4294967295 frames from 0, past the 48 frames" \
        in out.stdout
    assert left_behind(tag) == []
