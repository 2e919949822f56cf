"""Headless Chromium for the HTML report's tests: a screenshot, and the DOM as
the browser left it after the page's script ran, as a small tree.

Debian's ``chromium`` package driven through its own ``--headless
--screenshot`` and ``--dump-dom`` switches (no new Python dependency; .ci/run
installs the package when it is missing). Without it the tests are skipped
with a message, except in CI (``CI`` set, as .ci/run runs), where they fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}
SECONDS = 60


def chromium() -> str:
    """The browser's path (a failure in CI, a skip elsewhere, when it is missing)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        message = ("no headless Chromium (Debian package chromium: apt-get install chromium); "
                   "the HTML report's browser tests cannot run")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def _run(browser: str, page: Path, *switches: str) -> str:
    # a profile of its own: two browsers started at once (pytest -n) with the same
    # profile would hand the second page to the first process
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--no-first-run", "--disable-extensions", f"--user-data-dir={profile}",
             "--window-size=1300,2400", *switches, page.resolve().as_uri()],
            capture_output=True, text=True, timeout=SECONDS, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node] = field(default_factory=list)
    text: str = ""

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def all(self, tag: str = "", css: str = "") -> list[Node]:
        """Every descendant with the tag (any when "") and every class in css."""
        wanted = set(css.split())
        out = []
        for child in self.children:
            if (not tag or child.tag == tag) and wanted <= child.classes:
                out.append(child)
            out += child.all(tag, css)
        return out

    def first(self, tag: str = "", css: str = "") -> Node:
        found = self.all(tag, css)
        assert found, f"no <{tag or '*'} class={css!r}>"
        return found[0]

    def content(self) -> str:
        return self.text + "".join(child.content() for child in self.children)


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(Node("#text", {}, text=data))


def look(page: Path, screenshot: Path) -> Node:
    """Open page in headless Chromium: save its screenshot, return its DOM."""
    browser = chromium()
    _run(browser, page, f"--screenshot={screenshot}")
    assert screenshot.stat().st_size > 10_000, "an empty screenshot"
    builder = _Builder()
    builder.feed(_run(browser, page, "--dump-dom"))
    return builder.root
