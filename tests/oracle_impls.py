"""Implementations for the oracle's tests: the model served over the protocol,
optionally misbehaving at one request (crash, hang, garbage, ...), and the C
implementation of tests/oracle_impl built with the machine's compiler."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
C_SOURCES = ROOT / "tests" / "oracle_impl"

MISBEHAVING = '''
import json, os, sys, time
from proofs.oracle.world import MANAGERS, OBSERVATIONS, ModelWorld
how, at = sys.argv[1], int(sys.argv[2])
def out(text):
    sys.stdout.write(text + "\\n"); sys.stdout.flush()
if how == "no-hello":
    sys.exit(0)
out("not a hello" if how == "bad-hello" else json.dumps({"protocol": 1,
    "implementation": "misbehaving model", "managers": list(MANAGERS),
    "observations": list(OBSERVATIONS)}))
world = ModelWorld()
for n, line in enumerate(sys.stdin, 1):
    reply = world.handle(json.loads(line))
    if n == at:
        if how == "crash":
            os.abort()
        if how == "exit":
            sys.exit(3)
        if how == "hang":
            time.sleep(60)
        if how == "garbage":
            out("{this is not json"); continue
        if how == "shape":
            reply = {"id": reply["id"], "result": "three", "error": 0} if "result" in reply \\
                else {"id": reply["id"], "observed": {"wrong": 1}}
        if how == "id":
            reply["id"] += 7
    if how == "bool" and n >= at and "result" in reply:
        reply["result"] = 1 if reply["result"] is True else True
    out(json.dumps(reply))
'''


#: A hostile implementation (:func:`hostile_impl`): the model, attacking the oracle
#: at its hello, with the processes it starts, or at request AT (counted from 1).
#: Every process it starts carries TAG in its command line, so a test can look
#: for survivors; ``type-KIND`` replaces the value at path number EXTRA of the reply
#: (depth first, wrapping) by a value of another JSON type, ``value-KIND`` the
#: integer at int path number EXTRA by an extreme one of the right type.
HOSTILE = r'''
import json, os, signal, subprocess, sys, time
attack, at, tag = sys.argv[1], int(sys.argv[2]), sys.argv[3]
extra = int(sys.argv[4]) if len(sys.argv) > 4 else 0
SLEEPER = [sys.executable, "-c", "import signal, time; "
           "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)", tag]
WRONG = {"str": "x", "list": [], "obj": {}, "null": None, "bool": True, "big": 2 ** 64,
         "neg": -5000, "float": 1.5, "nan": float("nan")}
VALUES = {"max": 2 ** 32 - 1, "zero": 0, "one": 1, "min": -4095}


def raw(data):
    view = memoryview(data)
    while view:
        view = view[os.write(1, view):]


def out(message):
    raw(json.dumps(message).encode() + b"\n")


def idle():
    while True:
        time.sleep(300)


def start(*argv, **options):
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, **options)


def paths(value, path=()):
    if path:
        yield path
    if isinstance(value, (dict, list)):
        for key, inner in (value.items() if isinstance(value, dict) else enumerate(value)):
            yield from paths(inner, (*path, key))


def revalue(reply, value, k):
    every = [p for p in paths(reply) if p[0] != "id"]
    ints = [p for p in every if type(get(reply, p)) is int] or every
    *where, last = ints[k % len(ints)]
    get(reply, where)[last] = value


def get(value, path):
    for key in path:
        value = value[key]
    return value


def retype(reply, kind, k):
    every = list(paths(reply))
    *where, last = every[k % len(every)]
    holder = reply
    for key in where:
        holder = holder[key]
    kinds = list(WRONG)
    while type(WRONG[kind]) is type(holder[last]):
        kind = kinds[(kinds.index(kind) + 1) % len(kinds)]
    holder[last] = WRONG[kind]


if attack == "no-hello":
    sys.exit(0)
if attack == "bad-hello":
    raw(b"garbage\n")
    os.execv(SLEEPER[0], SLEEPER)
if attack == "huge-hello":
    raw(b'{"protocol": 1, "implementation": "' + b"x" * (50 << 20) + b'"}\n')
    idle()
if attack == "deep-hello":
    raw(b"[" * 100000 + b"\n")
    idle()
if attack == "setsid":
    start(*SLEEPER, start_new_session=True)
if attack == "group":
    start(*SLEEPER)
if attack == "daemon":
    start(sys.executable, "-c", "import os, subprocess, sys; subprocess.Popen(sys.argv[1:], "
          "start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, "
          "stderr=subprocess.DEVNULL); os._exit(0)", *SLEEPER).wait()
if attack == "sigterm":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    start(*SLEEPER)
if attack == "garbage-hello":
    raw(b"not yet\n")
from proofs.oracle.world import MANAGERS, OBSERVATIONS, ModelWorld
out({"protocol": 2 if attack == "version" else 1, "implementation": "hostile " + attack,
     "managers": list(MANAGERS), "observations": list(OBSERVATIONS)})
if attack == "version":
    idle()
world, held = ModelWorld(), None
for n, line in enumerate(sys.stdin.buffer, 1):
    reply = world.handle(json.loads(line))
    if attack == "swap" and n == at + 1:
        out(reply)
        out(held)
        continue
    if n != at:
        out(reply)
        continue
    if attack == "crash":
        os.abort()
    if attack == "setsid":
        os._exit(3)
    if attack in ("hang", "sigterm"):
        idle()
    if attack == "garbage":
        raw(b"{this is not json\n")
    elif attack == "id":
        reply["id"] += 7
        out(reply)
    elif attack == "twice":
        out(reply)
        out(reply)
    elif attack == "swap":
        held = reply
    elif attack == "partial":
        raw(json.dumps(reply).encode()[:7])
        idle()
    elif attack == "stdout-close":
        os.close(1)
        idle()
    elif attack == "stdin-close":
        os.close(0)
        out(reply)
        idle()
    elif attack == "flood-exit":
        raw(b"x" * (1 << 20))
        os._exit(0)
    elif attack == "spam":
        while True:
            raw(b"x" * 65536)
    elif attack == "newlines":
        while True:
            raw(b"\n" * 65536)
    elif attack == "huge":
        raw(b'{"id": %d, "pad": "' % n + b"x" * (50 << 20) + b'"}\n')
        idle()
    elif attack == "deep":
        raw(b"[" * 100000 + b"\n")
        idle()
    elif attack == "nul":
        raw(b'{"id": %d, "result": 0\x00, "error": 0}\n' % n)
    elif attack == "utf8":
        raw(b'{"id": %d, "result": "\xff\xfe", "error": 0}\n' % n)
    elif attack == "stderr":
        for k in range(200000):
            sys.stderr.write(f"log line {k}: " + "y" * 30 + "\n")
        sys.stderr.write("last words \x00\x1b[31m\n")
        sys.stderr.flush()
        os._exit(3)
    elif attack.startswith("type-"):
        retype(reply, attack[5:], extra)
        out(reply)
    elif attack.startswith("value-"):
        revalue(reply, VALUES[attack[6:]], extra)
        out(reply)
    else:
        out(reply)
'''

#: What each attack of :data:`HOSTILE` must be reported as: (kind, words the
#: reason holds); a mode where it differs would be named ``attack@mode``. Both
#: modes pipeline (spec mode sends an operation's observations with it), so
#: both read a swapped reply early and both wait for the reply of a request
#: written before the implementation closed its input.
EXPECTED: dict[str, tuple[str, str]] = {
    "no-hello": ("crash", "hello: the implementation closed its output"),
    "bad-hello": ("protocol", "hello: not JSON"),
    "garbage-hello": ("protocol", "hello: not JSON"),
    "version": ("protocol", "hello: protocol 2 (this oracle speaks 1, and 3 for concurrency)"),
    "huge-hello": ("protocol", "hello: a line longer than"),
    "deep-hello": ("protocol", "hello: JSON nested 100000 levels deep"),
    "crash": ("crash", "signal SIGABRT"),
    "setsid": ("crash", "exit status 3"),
    "hang": ("hang", "no reply within"),
    "sigterm": ("hang", "no reply within"),
    "garbage": ("protocol", "not JSON"),
    "id": ("protocol", "reply id"),
    "twice": ("protocol", "replied twice"),
    "swap": ("protocol", "reply id"),
    "partial": ("hang", "7 bytes of a line without its end"),
    "stdout-close": ("crash", "closed its output (still running)"),
    "stdout-close/sh": ("hang", "no reply within"),
    "stdin-close": ("hang", "no reply within"),
    "stdin-close/sh": ("hang", "no reply within"),
    "flood-exit": ("crash", "closed its output (exit status 0)"),
    "spam": ("protocol", "a line longer than"),
    "newlines": ("protocol", "not JSON"),
    "huge": ("protocol", "a line longer than"),
    "deep": ("protocol", "JSON nested 100000 levels deep"),
    "nul": ("protocol", "not JSON"),
    "utf8": ("protocol", "not JSON ('utf-8' codec can't decode"),
    "stderr": ("crash", "exit status 3"),
}
#: The attacks an implementation may make and still conform: processes left
#: behind (the oracle must end them all the same).
HARMLESS = ("group", "daemon")
#: The wrong types ``type-KIND`` puts in a reply.
WRONG_TYPES = ("str", "list", "obj", "null", "bool", "big", "neg", "float", "nan")
#: The extreme integers ``value-KIND`` puts in a reply.
EXTREME_VALUES = ("max", "zero", "one", "min")


def hostile_impl(tmp: Path, attack: str, at: int, tag: str, extra: int = 0) -> str:
    """The shell command of a :data:`HOSTILE` implementation; tag marks its processes.
    The shell execs Python (no shell left holding the pipes) unless the attack
    name ends in ``/sh``: then the shell waits for it (and keeps stdin and stdout
    open: a child that closes them then only hangs)."""
    script = tmp / "hostile.py"
    if not script.exists():
        script.write_text(HOSTILE)
    attack, _, shell = attack.partition("/")
    command = python_impl(str(script), attack, str(at), tag, str(extra))
    return command if shell == "sh" else command.replace(" ", " exec ", 1)


def kill_tagged(tag: str) -> None:
    """SIGKILL every live process whose command line holds tag (a test's leftovers)."""
    for pid in tagged(tag):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def tagged(tag: str) -> list[int]:
    """The live processes whose command line holds tag (Linux /proc; zombies,
    whose command line is empty, are not alive)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if tag.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def python_impl(*args: str) -> str:
    """A shell command running Python with the repository importable."""
    return (f"PYTHONPATH={shlex.quote(str(ROOT))} {shlex.quote(sys.executable)} "
            + " ".join(shlex.quote(a) for a in args))


def model_impl() -> str:
    return python_impl("-m", "proofs.oracle.model_shim")


def misbehaving_impl(tmp: Path, how: str, at: int) -> str:
    script = tmp / "misbehaving.py"
    script.write_text(MISBEHAVING)
    return python_impl(str(script), how, str(at))


def compiler() -> str:
    """The C compiler; in CI its absence fails the tests instead of skipping them."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        if os.environ.get("CI"):
            pytest.fail("no C compiler (cc/gcc): the oracle's C tests cannot run")
        pytest.skip("no C compiler (cc/gcc)")
    return cc


#: The C fixture's bug switches (tests/oracle_impl/memimpl.c's header).
C_SWITCHES = ("BUG_FRAME_TWICE", "BUG_INDEX_UNSORTED", "BUG_SPLIT_UNDERFLOW", "BUG_ALIGN",
              "BUG_CONTRACT_LIVE", "BUG_STALE_FOOTER", "BUG_INDEX_FULL", "BUG_ALIGN_GAP",
              "BUG_PAST_MAX", "BUG_WRAP", "BUG_EXACT_FIT", "BUG_BOTH_NEIGHBOURS")
#: The configuration a switch is searched at when the default one cannot show it
#: in 6 operations: a full index needs capacity + 1 holes, each an Alloc and a
#: Free apart, so its switch runs with a 2-entry index (the hello's index_size
#: overridden as ``--set kernel.index_size=2`` would).
C_SWITCH_CONFIG: dict[str, dict[str, Any]] = {"BUG_INDEX_FULL": {"kernel": {"index_size": 2}}}


def build_c(out_dir: Path, *defines: str) -> str:
    """Build the C implementation with the given -D switches; the binary's path."""
    name = "memimpl" + "".join("-" + d.lower() for d in defines)
    binary = out_dir / name
    if not binary.exists():
        sources = sorted(str(p) for p in C_SOURCES.glob("*.c"))
        threads = ["-pthread"] if "THREADS" in defines else []
        subprocess.run([compiler(), "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", *threads,
                        *(f"-D{d}" for d in defines), "-o", str(binary), *sources],
                       check=True, capture_output=True, text=True)
    return shlex.quote(str(binary))
