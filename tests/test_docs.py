"""Every ```python block in README.md and docs/**/*.md runs as written, and prints what
the page shows.

Convention for the pages:

- A ```python block is run on its own (a fresh namespace, in an empty temporary
  directory), as the reader would paste it.
- What a block prints is shown in an ```output block that follows it directly (only
  blank lines between the two). The output block must equal the block's standard
  output, line by line, trailing spaces and trailing blank lines aside.
- ``...`` in an output block stands for any text, also across lines (as doctest's
  ELLIPSIS): use it where the output legitimately varies (timings, paths, random
  counterexamples) or to elide a long tensor. Everything else is compared exactly.
- A block that prints must be followed by an output block, so that no printed output is
  shown unchecked (in a comment, say) and none goes unshown.
- Shell examples (```bash) are not run here; the command-line tests cover them.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```\n(?:(?:[ \t]*\n)*^```output\n(.*?)^```)?", re.S | re.M)


def blocks():
    for page in PAGES:
        for i, match in enumerate(BLOCK.finditer(page.read_text(encoding="utf-8"))):
            yield pytest.param(match.group(1), match.group(2), id=f"{page.relative_to(ROOT)}[{i}]")


def _normalise(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.rstrip().splitlines())


def matches(expected: str, actual: str) -> bool:
    """Whether ``actual`` is ``expected`` with each ``...`` standing for any text."""
    pattern = ".*?".join(re.escape(part) for part in _normalise(expected).split("..."))
    return re.fullmatch(pattern, _normalise(actual), re.S) is not None


@pytest.mark.parametrize(("code", "shown"), list(blocks()))
def test_docs_example_runs_and_prints_what_the_page_shows(code, shown, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "<docs>", "exec"), {"__name__": "__docs__"})
    printed = out.getvalue()
    if shown is None:
        assert not printed.strip(), f"the block prints but the page shows no output:\n{printed}"
    else:
        assert matches(shown, printed), f"the page shows:\n{shown}\nthe block prints:\n{printed}"


def test_docs_have_examples():
    assert len(list(blocks())) >= 5
    assert sum(shown is not None for _, shown in (p.values for p in blocks())) >= 20


@pytest.mark.parametrize(
    ("expected", "actual", "ok"),
    [
        ("a\nb", "a\nb\n", True),
        ("a  \nb\n\n", "a\nb", True),
        ("took ... s", "took 1.5 s", True),
        ("x\n...\nz", "x\ny1\ny2\nz", True),
        ("a\nb", "a\nc", False),
        ("a", "a\nextra", False),
        ("a.b", "axb", False),  # only "..." is a wildcard; other text is literal
    ],
)
def test_output_comparison_convention(expected, actual, ok):
    assert matches(expected, actual) is ok
