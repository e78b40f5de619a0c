"""The documentation stays short at the front and whole behind it: README.md within MAX_README_LINES, every
relative link in README.md and docs/*.md resolving to a file, every docs page linked from README.md or
docs/index.md, and docs/recipes.md naming every shipped recipe. Nothing is run: the Markdown is read as text.

    .venv/bin/pytest -q tests/test_docs.py
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
INDEX = DOCS / "index.md"
MAX_README_LINES = 250
# Written from the code (python -m bertkit.config.reference > docs/configuration.md), not by hand: a link to it
# may come before the file itself; tests/test_config.py checks the file once it is there.
GENERATED = {DOCS / "configuration.md"}

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.DOTALL)
INLINE_LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.MULTILINE)
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # http:, https:, mailto:, …


def pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def prose(text: str) -> str:
    """The Markdown without fenced code blocks and code spans, where brackets are code, not links."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def link_targets(page: Path) -> list[str]:
    text = prose(page.read_text(encoding="utf-8"))
    return INLINE_LINK.findall(text) + REFERENCE_LINK.findall(text)


def local_target(page: Path, target: str) -> Path | None:
    """The file a relative link points at, or None for a URL or a link within the page (#anchor)."""
    if SCHEME.match(target) or target.startswith("#"):
        return None
    path = unquote(target.split("#", 1)[0].split("?", 1)[0])
    return (ROOT / path.lstrip("/")) if path.startswith("/") else (page.parent / path)


def test_prose_keeps_links_and_drops_code():
    text = 'See [a](docs/a.md).\n```python\nBUILDERS["nsp"](docs)\n```\nand `x["y"](z)` but ![b](../b.png)\n'
    assert INLINE_LINK.findall(prose(text)) == ["docs/a.md", "../b.png"]


def test_readme_is_short():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, (
        f"README.md has {len(lines)} lines (at most {MAX_README_LINES}); move detail into docs/"
    )


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path):
    broken = []
    for target in link_targets(page):
        path = local_target(page, target)
        if path is not None and not path.exists() and path.resolve() not in GENERATED:
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)}: links to missing files: {', '.join(broken)}"


def test_every_docs_page_is_linked_from_readme_or_index():
    linked = {
        path.resolve()
        for page in (README, INDEX)
        for target in link_targets(page)
        if (path := local_target(page, target)) is not None
    }
    orphans = [p.name for p in sorted(DOCS.glob("*.md")) if p != INDEX and p.resolve() not in linked]
    assert INDEX.resolve() in linked, "README.md does not link docs/index.md"
    assert not orphans, f"docs pages linked from neither README.md nor docs/index.md: {', '.join(orphans)}"


def test_recipes_page_lists_every_recipe():
    text = (DOCS / "recipes.md").read_text(encoding="utf-8")
    missing = [
        str(path.relative_to(ROOT))
        for path in sorted((ROOT / "recipes").rglob("*.yaml"))
        if str(path.relative_to(ROOT)) not in text
    ]
    assert not missing, f"docs/recipes.md does not mention: {', '.join(missing)}"
