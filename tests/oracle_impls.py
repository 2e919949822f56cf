"""Implementations for the oracle's tests: the model served over the protocol,
optionally misbehaving at one request (crash, hang, garbage, ...), and the C
implementation of tests/oracle_impl built with the machine's compiler."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

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


def build_c(out_dir: Path, *defines: str) -> str:
    """Build the C implementation with the given -D switches; the binary's path."""
    name = "memimpl" + "".join("-" + d.lower() for d in defines)
    binary = out_dir / name
    if not binary.exists():
        sources = sorted(str(p) for p in C_SOURCES.glob("*.c"))
        subprocess.run([compiler(), "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror",
                        *(f"-D{d}" for d in defines), "-o", str(binary), *sources],
                       check=True, capture_output=True, text=True)
    return shlex.quote(str(binary))
