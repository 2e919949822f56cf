"""The implementers' kit (kit/memspec_oracle.h): its worked example
(kit/example/frames.c) passes both modes; a fault or a panic inside a call
becomes a failed call whose stderr line the report shows beside the step; memory
lands at its real virtual address and a taken range is refused. The C fixture
(tests/oracle_impl) is served by the kit too: tests/test_oracle_c.py."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from proofs.oracle.protocol import check_hello, parse
from proofs.oracle.report import describe
from proofs.oracle.run import replay, search
from proofs.oracle.world import BOOL_RESULTS
from tests.oracle_impls import ROOT, compiler

KIT = ROOT / "kit" / "memspec_oracle.h"
EXAMPLE = ROOT / "kit" / "example" / "frames.c"
FLAGS = ["-std=c11", "-O2", "-Wall", "-Wextra", "-Werror"]


def build(out: Path, source: Path, *defines: str, extra: tuple[str, ...] = ()) -> str:
    binary = out / (source.stem + "".join("-" + d.lower() for d in defines) + "".join(extra))
    subprocess.run([compiler(), *FLAGS, *extra, *(f"-D{d}" for d in defines), "-o",
                    str(binary), str(source)], check=True, capture_output=True, text=True)
    return shlex.quote(str(binary))


def test_the_kits_boolean_operations_are_the_protocols() -> None:
    listed = re.search(r"mo__bool_ops\[\] = \{(.*?)NULL\}", KIT.read_text(), re.S)
    assert listed is not None
    names = set(re.findall(r'"(\w+)\.(\w+)"', listed.group(1)))
    assert names == set(BOOL_RESULTS)


def test_the_worked_example_passes_both_modes(tmp_path: Path) -> None:
    binary = build(tmp_path, EXAMPLE)
    for mode in ("strict", "spec"):
        outcome = search(binary, mode, max_examples=12, steps=15, seed=3, time_limit=90)
        assert outcome.passed, describe(outcome)
        assert {m for m, _ in outcome.coverage.operations} == {"PageManager"}


def test_a_fault_is_a_failed_call_beside_its_step(tmp_path: Path) -> None:
    """WILD_FREE reads the guard page above the frame table: SIGSEGV inside
    FreeFrame(0xFF000) is that call's failure (998), its address on stderr, and the
    process answers the next request."""
    binary = build(tmp_path, EXAMPLE, "WILD_FREE")
    ops = [{"manager": "PageManager", "op": "RequestFrame",
            "args": {"is_kernel": True, "is_writeable": True}},
           {"manager": "PageManager", "op": "FreeFrame", "args": {"frame_addr": 0xFF000}}]
    outcome = replay(binary, "spec", ops)
    assert outcome.divergence is not None and outcome.divergence.kind == "divergence"
    report = describe(outcome, ["PageManager"])
    lines = report.splitlines()
    row = next(n for n, line in enumerate(lines) if "FreeFrame(frame_addr=0xff000)" in line)
    assert "NOACCESS" in lines[row] and "INVALID_ADDRESS" in lines[row], report
    assert re.search(r"stderr: memspec_oracle: SIGSEGV in #\d+ PageManager.FreeFrame at "
                     r"address 0x200010cf", lines[row + 1]), report
    requests = "".join(line + "\n" for line in [
        '{"id":1,"manager":"PageManager","op":"InitializePhysicalMemory",'
        '"args":{"mem_start":32768,"mem_end":196608}}',
        '{"id":2,"manager":"PageManager","op":"FreeFrame","args":{"frame_addr":1044480}}',
        '{"id":3,"manager":"PageManager","op":"RequestFrame",'
        '"args":{"is_kernel":true,"is_writeable":true}}'])
    done = subprocess.run(shlex.split(binary), input=requests, capture_output=True, text=True,
                          timeout=20)
    assert done.returncode == 0
    assert done.stdout.splitlines()[2:] == ['{"id":2,"result":false,"error":998}',
                                            '{"id":3,"result":32768,"error":0}']


def test_a_panic_is_a_failed_call_beside_its_step(tmp_path: Path) -> None:
    binary = build(tmp_path, EXAMPLE, "PANIC_WHEN_FULL")
    ops = [{"manager": "PageManager", "op": "RequestFrame",
            "args": {"is_kernel": True, "is_writeable": True}}] * 41  # 40 are free
    outcome = replay(binary, "strict", ops)
    assert outcome.divergence is not None, describe(outcome)
    lines = describe(outcome, ["PageManager"]).splitlines()
    row = next(n for n, line in enumerate(lines) if line.rstrip().endswith("<<"))
    assert "RequestFrame" in lines[row] and "error 1359" in lines[row]
    assert "stderr: memspec_oracle: panic in #" in lines[row + 1]
    assert "out of physical memory (48 frames used)" in lines[row + 1]


PROBE = r'''
#define MEMSPEC_ORACLE_IMPLEMENTATION
#include "memspec_oracle.h"
#include <assert.h>
#include <stdio.h>
#include <string.h>
#define VA 0x30000000u
static struct mo_result call(const char *m, const char *op, const struct mo_args *a) {
    (void)m, (void)a;
    if (!strcmp(op, "Write")) *(volatile uint32_t *)(uintptr_t)(VA + 8) = 7;  /* read-only now */
    if (!strcmp(op, "Assert")) assert(m == NULL);
    return mo_int(*(volatile uint32_t *)(uintptr_t)(VA + 4), 0);
}
int main(void) {
    uint32_t *p = mo_map_at(VA, 8192, 1);
    printf("at %d\n", p == (uint32_t *)(uintptr_t)VA);
    p[1] = 0x1234;
    printf("again %d\n", mo_map_at(VA + 4096, 4096, 1) == NULL);
    printf("unaligned %d\n", mo_map_at(VA + 1, 4096, 1) == NULL);
    mo_protect_at(VA, 8192, 0);
    struct mo_implementation im = {.name = "probe", .call = call};
    struct mo_buf out = {0};
    char one[] = "{\"id\":1,\"manager\":\"PageManager\",\"op\":\"Read\",\"args\":{}}";
    char two[] = "{\"id\":2,\"manager\":\"PageManager\",\"op\":\"Write\",\"args\":{}}";
    char three[] = "{\"id\":3,\"manager\":\"PageManager\",\"op\":\"Read\",\"args\":{}}";
    char four[] = "{\"id\":4,\"manager\":\"PageManager\",\"op\":\"Assert\",\"args\":{}}";
    char five[] = "{\"id\":5,\"manager\":\"PageManager\",\"op\":\"Write\",\"args\":{}}";
    mo_handle(&im, one, &out), mo_handle(&im, two, &out), mo_handle(&im, three, &out);
    mo_handle(&im, four, &out), mo_handle(&im, five, &out);
    fwrite(out.p, 1, out.len, stdout);
    return mo_unmap_at(VA, 8192);
}
'''


@pytest.mark.parametrize("bits", ["native", "-m32"])
def test_memory_at_its_real_address(tmp_path: Path, bits: str) -> None:
    """mo_map_at places pages at exactly the address asked (0x30000000), refuses a
    taken range or an unaligned one; a write to a page made read-only faults inside
    the call, which fails, and the next call runs; a failed assert (SIGABRT) too,
    and the guard still holds after it. -m32 where the compiler has a
    32-bit C library (skipped otherwise)."""
    source = tmp_path / "probe.c"
    source.write_text(PROBE)
    extra = ("-m32",) if bits == "-m32" else ()
    try:
        binary = subprocess.run(
            [compiler(), *FLAGS, *extra, "-I", str(KIT.parent), "-o", str(tmp_path / "probe"),
             str(source)], capture_output=True, text=True)
    except OSError as exc:  # pragma: no cover - the compiler vanished
        pytest.fail(str(exc))
    if binary.returncode and extra:
        pytest.skip(f"no 32-bit C library here: {binary.stderr.splitlines()[:1]}")
    assert binary.returncode == 0, binary.stderr
    done = subprocess.run([str(tmp_path / "probe")], capture_output=True, text=True, timeout=20)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "at 1", "again 1", "unaligned 1", '{"id":1,"result":4660,"error":0}',
        '{"id":2,"result":0,"error":998}', '{"id":3,"result":4660,"error":0}',
        '{"id":4,"result":0,"error":998}', '{"id":5,"result":0,"error":998}']
    assert "SIGSEGV in #2 PageManager.Write at address 0x30000008" in done.stderr
    assert "Assertion `m == NULL' failed" in done.stderr  # assert's own line, then:
    assert "SIGABRT in #4 PageManager.Assert" in done.stderr
    assert "SIGSEGV in #5 PageManager.Write" in done.stderr  # still guarded after abort()
    assert "range in use" in done.stderr or "File exists" in done.stderr


HELLO = r"""
#define MEMSPEC_ORACLE_IMPLEMENTATION
#include "memspec_oracle.h"
#include <stdio.h>
int main(void) {
    static const char *const managers[] = {"DosMemoryManager", 0};
    static const char *const observations[] = {"McbChain", "ReadPhysical", 0};
    static const char *const parts[] = {"DosMemoryManager.conventional", 0};
    static const char *const unsupported[] = {"DosMemoryManager.SetUmbLink", 0};
    struct mo_implementation im = {.name = "an \"emulator\"\t2", .managers = managers,
                                   .observations = observations, .parts = parts,
                                   .unsupported = unsupported};
    struct mo_buf out = {0};
    mo_hello(&out, &im);
    fwrite(out.p, 1, out.len, stdout);
    return 0;
}
"""


def test_the_kits_hello_declares_parts_and_unsupported_operations(tmp_path: Path) -> None:
    source = tmp_path / "hello.c"
    source.write_text(HELLO)
    subprocess.run([compiler(), *FLAGS, "-I", str(KIT.parent), "-o", str(tmp_path / "hello"),
                    str(source)], check=True, capture_output=True, text=True)
    line = subprocess.run([str(tmp_path / "hello")], capture_output=True, check=True,
                          timeout=20).stdout
    hello = check_hello(parse(line.rstrip(b"\n")))
    assert hello.implementation == 'an "emulator"\\x092'  # a control character escaped
    assert ("DosMemoryManager", "SetUmbLink") in hello.unsupported
    assert ("DosMemoryManager", "XmsAllocate") in hello.unsupported  # not in its parts
    assert hello.unserved == {"XmsHandles", "EmsMappings"}
