"""The ``memspec`` console script (proofs/cli.py): the commands a user types are
the modules' own, with their options and exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from proofs.cli import main
from proofs.version import version

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(sys.executable).parent / "memspec"


def test_version_is_the_installed_packages(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"memspec {version()}"
    assert version() != "unknown", "memspec is not installed (pip install -e '.[dev]')"


def test_check_is_python_m_proofs_check(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--list", "--only", "page_manager.AllocFrame.FRM-1"]) == 0
    listed = capsys.readouterr().out
    module = subprocess.run([sys.executable, "-m", "proofs.check", "--list", "--only",
                             "page_manager.AllocFrame.FRM-1"], cwd=ROOT, capture_output=True,
                            text=True, check=True)
    assert listed == module.stdout and listed.startswith("page_manager.AllocFrame.FRM-1\t")


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert main(["bogus"]) == 2
    assert main(["replay"]) == 2  # argparse: --impl is required
    assert main(["check", "--only", "no.such.obligation"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'bogus'" in err and "memspec replay" in err


def test_replay_reads_the_trace_it_is_given(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(tmp_path / "missing.json"), "--impl", "true"]) == 2
    assert "cannot read the trace" in capsys.readouterr().err


def test_the_installed_script_runs() -> None:
    if not SCRIPT.exists():
        pytest.fail(f"no {SCRIPT}: the install did not put the console script on the path")
    out = subprocess.run([str(SCRIPT), "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"memspec {version()}"
