"""The README and docs/ say only what is true of this repository: every link
resolves (file and heading), every path written in backticks exists, and every
command shown runs: its program answers ``--help`` and knows every ``--option``
the command uses. A page that names a file, a heading or an option that moved
fails here, not in a reader's hands."""

from __future__ import annotations

import functools
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md"),
                ROOT / "proofs" / "oracle" / "PROTOCOL.md"])
#: Programs a page may show that are not ours (a compiler, the install steps);
#: their commands are not run.
FOREIGN = {"cc", "gcc", "pip", "git", "time", "cd", "export", "bash", "sh", "dask"}
#: The dev extra's tools a page may show (their options are checked too).
DEV_TOOLS = {"mypy", "ruff", "pytest"}
#: Paths outside the repository a page may name: the steering repository's design.
OUTSIDE = ("../shared/",)
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
SPAN = re.compile(r"`([^`\n]+)`")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
PATH_LIKE = re.compile(r"^(\.\./|\.ci/|[a-z_]+/)[\w./-]*(::[\w\[\]-]+)?$")


def rel(page: Path) -> str:
    return str(page.relative_to(ROOT))


def slug(heading: str) -> str:
    """A heading's anchor as code hosts make it: lower case, punctuation dropped,
    spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", text))


@functools.cache
def anchors(page: Path) -> frozenset[str]:
    text = FENCE.sub("", page.read_text())
    return frozenset(slug(m) for m in re.findall(r"^#+\s+(.*)$", text, re.M))


def prose(page: Path) -> str:
    """The page without its fenced blocks."""
    return FENCE.sub("", page.read_text())


def links(page: Path) -> Iterator[str]:
    yield from LINK.findall(prose(page))


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_links_resolve(page: Path) -> None:
    broken = []
    for target in links(page):
        if re.match(r"^[a-z]+:", target):
            broken.append(f"{target}: no external links (CI has no network; cite by name)")
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no file {file}")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target}: no heading #{anchor} in {rel(file)}")
    assert broken == []


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_paths_in_backticks_exist(page: Path) -> None:
    missing = []
    for span in SPAN.findall(prose(page)):
        if not PATH_LIKE.match(span) or span.startswith(OUTSIDE):
            continue
        path, _, test = span.partition("::")
        where = ROOT / path
        if not where.exists() and (ROOT / "tests" / path).exists():
            where = ROOT / "tests" / path
        if not where.exists():
            missing.append(span)
        elif test and f"def {test.split('[')[0]}(" not in where.read_text() \
                and f"class {test.split('[')[0]}" not in where.read_text():
            missing.append(f"{span}: no test {test}")
    assert missing == []


def commands(page: Path) -> Iterator[str]:
    """Each command of the page's ``sh`` blocks (continuations joined, ``&&`` chains
    split), and each inline code span that starts with one of our programs."""
    for lang, body in FENCE.findall(page.read_text()):
        if lang != "sh":
            continue
        for line in body.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if line and not line.startswith("#"):
                yield from (part.strip() for part in line.split("&&"))
    for span in SPAN.findall(prose(page)):
        if span.startswith(("python -m ", "python benchmarks/", "memspec ")):
            yield span


def program(command: str) -> tuple[tuple[str, ...], list[str]] | None:
    """(the argv that runs the command's program, the command's arguments); None
    for a program that is not ours."""
    words = shlex.split(command)
    while words and "=" in words[0] and not words[0].startswith("-"):
        words = words[1:]  # VARIABLE=value prefixes
    if not words or Path(words[0]).name in FOREIGN:
        return None
    name = Path(words[0]).name
    if name in ("python", "python3") and words[1:3] == ["-m", "venv"]:
        return None
    if name in ("python", "python3") and words[1:4] == ["-m", "proofs.oracle", "concurrent"]:
        return (sys.executable, "-m", "proofs.oracle", "concurrent"), words[4:]
    if name in ("python", "python3") and words[1:2] == ["-m"]:
        return (sys.executable, "-m", words[2]), words[3:]
    if name in ("python", "python3"):
        return (sys.executable, words[1]), words[2:]
    if name == "memspec":
        sub = words[1:2] if words[1:2] and not words[1].startswith("-") else []
        return (sys.executable, "-m", "proofs.cli", *sub), words[1 + len(sub):]
    if name in DEV_TOOLS:  # installed beside this Python by the dev extra
        sub = words[1:2] if name == "ruff" else []
        return (str(Path(sys.executable).parent / name), *sub), words[1 + len(sub):]
    raise AssertionError(f"unknown program {words[0]!r} in {command!r}")


@functools.cache
def help_text(argv: tuple[str, ...]) -> str:
    out = subprocess.run([*argv, "--help"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, f"{' '.join(argv)} --help exited {out.returncode}:\n{out.stderr}"
    return out.stdout


def all_commands() -> list[tuple[str, str]]:
    return [(rel(page), command) for page in PAGES for command in commands(page)]


@pytest.mark.parametrize(("page", "command"), all_commands(),
                         ids=[f"{p}: {c[:60]}" for p, c in all_commands()])
def test_commands_run(page: str, command: str) -> None:
    found = program(command)
    if found is None:
        return
    argv, arguments = found
    text = help_text(argv)
    unknown = [word.split("=")[0] for word in arguments
               if word.startswith("--") and word.split("=")[0] not in text]
    assert unknown == [], f"{page}: {command}: options not in --help: {unknown}"


def test_there_are_commands_to_check() -> None:
    """The checks above are not vacuous: the pages show commands, links and paths."""
    assert len(all_commands()) > 20
    assert sum(len(list(links(page))) for page in PAGES) > 20


def test_the_checker_catches_what_it_must() -> None:
    assert slug("Exit status") == "exit-status" and slug("`--profile` quick") == "--profile-quick"
    assert PATH_LIKE.match("model/kernel_heap.py") and not PATH_LIKE.match("Free(p)")
    with pytest.raises(AssertionError, match="unknown program"):
        program("./my-kernel-shim --fast")
    assert program("cc -O2 -o x y.c") is None
    argv, arguments = program("python -m proofs.check --profile quick") or ((), [])
    assert argv[1:] == ("-m", "proofs.check") and arguments == ["--profile", "quick"]
    assert "--no-such-option" not in help_text((sys.executable, "-m", "proofs.check"))
