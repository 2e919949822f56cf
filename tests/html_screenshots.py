"""The screenshots of docs/images/ (``python -m tests.html_screenshots DIR``):
one small PNG per kind of drawing of the HTML reports, each taken by headless
Chromium from a page holding that drawing alone.

The data are real runs: the check run and the kernel-heap divergence of
tests/test_html_report.py (the C fixture's BUG_STALE_FOOTER trace), and three
short sequences replayed on the model shim serving a broken model (``dos:
free_merges_neighbours``, ``user: munmap_leaks_frames``, ``shared:
rw_view_of_readonly_block``, the variants tests/test_oracle_dos.py,
test_oracle_user.py and test_oracle_shared.py catch).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from proofs.check import main as check_main
from proofs.html import check_report, oracle_report
from proofs.html.page import page
from tests.browser import chromium
from tests.oracle_impls import ROOT, build_c
from tests.test_html_report import REGISTRY

DOS, SYSCALLS, SHM = "DosMemoryManager", "SystemCalls", "SharedMemoryManager"
USER = ["PageManager", "VirtualMemoryManager", SYSCALLS]
ANONYMOUS = {"prot": 3, "flags": 0x22, "fd": 0xFFFFFFFF, "offset": 0}
#: family -> (broken model, managers, operations after the family's set-up)
SEQUENCES: dict[str, tuple[str, list[str], list[dict[str, Any]]]] = {
    "dos": ("free_merges_neighbours", ["PageManager", DOS], [
        {"manager": DOS, "op": "AllocateDosMemory", "args": {"paragraphs": 0x10}},
        {"manager": DOS, "op": "AllocateDosMemory", "args": {"paragraphs": 0x10}},
        {"manager": DOS, "op": "FreeDosMemory", "args": {"segment": 0x812}}]),
    "user": ("munmap_leaks_frames", USER, [
        {"manager": SYSCALLS, "op": "SyscallMmap",
         "args": {"addr": 0x40000000, "length": 0x1000, **ANONYMOUS}},
        {"manager": SYSCALLS, "op": "SyscallMmap",
         "args": {"addr": 0x40004000, "length": 0x3000, **{**ANONYMOUS, "prot": 1}}},
        {"manager": SYSCALLS, "op": "SyscallMunmap",
         "args": {"addr": 0x40000000, "length": 0x1000}}]),
    "shared": ("rw_view_of_readonly_block", [*USER, SHM, "MemoryMappedFiles"], [
        {"manager": SHM, "op": "CreateSharedMemory", "args": {"size": 4096, "permissions": 2}},
        {"manager": SHM, "op": "MapSharedMemoryToProcess",
         "args": {"pid": 1, "shm_id": 1, "virtual_addr": 0, "protect": 2}},
        {"manager": SHM, "op": "MapSharedMemoryToProcess",
         "args": {"pid": 2, "shm_id": 1, "virtual_addr": 0, "protect": 4}}]),
}
#: (report, drawing) -> (file name, window height)
SHOTS = {("kernel", "heap"): ("html-heap.png", 560),
         ("kernel", "PageTables"): ("html-page-tables.png", 520),
         ("user", "frames"): ("html-frame-bitmap.png", 420),
         ("user", "Processes"): ("html-processes.png", 470),
         ("dos", "McbChain"): ("html-mcb-chain.png", 430),
         ("shared", "SharedMemory"): ("html-shared-views.png", 520)}


def oracle_json(folder: Path, name: str, trace: Path, impl: str) -> dict[str, Any]:
    out = folder / f"{name}.json"
    subprocess.run([sys.executable, "-m", "proofs.oracle", "replay", str(trace), "--impl", impl,
                    "--mode", "spec", "--json", str(out)], cwd=ROOT, check=False,
                   capture_output=True, timeout=300)
    data: dict[str, Any] = json.loads(out.read_text())
    return data


def shoot(html: str, out: Path, height: int, folder: Path, width: int = 1000) -> None:
    source = folder / f"{out.stem}.html"
    source.write_text(html)
    subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu",
                    "--hide-scrollbars", f"--user-data-dir={folder / 'profile'}",
                    f"--window-size={width},{height}", f"--screenshot={out}",
                    source.resolve().as_uri()], check=True, capture_output=True, timeout=60)


def main(target: str) -> None:
    out = Path(target)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        reports = {"kernel": oracle_json(folder, "kernel", ROOT / "tests" / "oracle_traces" /
                                         "BUG_STALE_FOOTER.json",
                                         build_c(folder, "BUG_STALE_FOOTER"))}
        for family, (variant, managers, ops) in SEQUENCES.items():
            trace = folder / f"{family}-trace.json"
            trace.write_text(json.dumps({"format": "memspec-oracle-trace", "protocol": 1,
                                         "family": family, "managers": managers,
                                         "operations": ops}))
            impl = f"{sys.executable} -m proofs.oracle.model_shim --variant {family}:{variant}"
            reports[family] = oracle_json(folder, family, trace, impl)
        for (name, part), (file, height) in SHOTS.items():
            found = reports[name]["modes"][0]["divergences"][0]
            drawn = oracle_report.at_step(found["steps"], found["marked"])
            (section,) = [s for s in re.findall(r'<section class="state-part.*?</section>',
                                                drawn, re.S) if f'data-part="{part}"' in s]
            shoot(page(f"{name} family, step #{found['marked']}", section), out / file,
                  height, folder)
        (folder / "html_registry").mkdir()
        (folder / "html_registry" / "__init__.py").write_text("")
        (folder / "html_registry" / "subset.py").write_text(REGISTRY)
        sys.path.insert(0, str(folder))
        check_main(["--registry", "html_registry", "--in-process", "--no-cache", "--profile",
                    "quick", "--json", str(folder / "check.json")])
        check = json.loads((folder / "check.json").read_text())
        shoot(check_report.render(check), out / "html-check.png", 1100, folder, 1500)

if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "docs" / "images"))
