"""The documentation's links resolve, and the README stays short.

Every ``*.md`` file of the repository (outside ``.git``, virtual environments, build
folders, ``node_modules`` and any dot-folder) is read; each relative link ``[text](path)``
and image ``![alt](path)`` must name an existing file or folder (``#anchor`` and
``?query`` tails are stripped; ``http(s)://``, ``mailto:`` and pure ``#anchor`` links are
skipped). No page may link outside the repository (``../shared`` in particular), and
README.md has at most 200 lines. Standard library + pytest only.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
README_MAX_LINES = 200

# Folders never searched for pages: version control, environments, build outputs.
SKIP_DIRS = {
    ".git",
    ".venv",
    "venv",
    "env",
    "build",
    "dist",
    "node_modules",
    "__pycache__",
    "output",
}

# [text](target) and ![alt](target); the target ends at whitespace or ")" (an optional
# "title" after a space is ignored). Nested brackets in the text are not supported,
# which no page uses.
_LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_FENCE = re.compile(r"^\s*(```|~~~)")
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_SKIP_SCHEMES = ("http://", "https://", "mailto:", "ftp://", "data:")


def markdown_files(root: Path) -> list[Path]:
    """Every .md file under ``root``, outside SKIP_DIRS, egg-info folders and dot-folders."""
    found = []
    for path in sorted(root.rglob("*.md")):
        parts = path.relative_to(root).parts[:-1]
        if any(p in SKIP_DIRS or p.startswith(".") or p.endswith(".egg-info") for p in parts):
            continue
        found.append(path)
    return found


def iter_links(text: str):
    """(line number, target) of every link outside fenced code blocks and inline code."""
    in_fence = False
    for lineno, line in enumerate(text.splitlines(), start=1):
        if _FENCE.match(line):
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        for match in _LINK.finditer(_INLINE_CODE.sub("", line)):
            yield lineno, match.group(1)


def check_file(md: Path, root: Path) -> list[str]:
    """Problems of one page: relative links that resolve to nothing, links out of ``root``."""
    problems = []
    text = md.read_text(encoding="utf-8")
    root = root.resolve()
    for lineno, target in iter_links(text):
        where = f"{md.relative_to(root) if md.is_relative_to(root) else md}:{lineno}"
        if target.startswith(_SKIP_SCHEMES) or target.startswith("#"):
            continue
        path = target.split("#", 1)[0].split("?", 1)[0]
        if not path:
            continue
        if "shared/" in path.replace("\\", "/") and path.startswith(".."):
            problems.append(f"{where}: links outside the repository: {target}")
            continue
        resolved = (root / path.lstrip("/")) if path.startswith("/") else (md.parent / path)
        resolved = resolved.resolve()
        if not resolved.is_relative_to(root):
            problems.append(f"{where}: links outside the repository: {target}")
        elif not resolved.exists():
            problems.append(f"{where}: broken link: {target}")
    return problems


def check_tree(root: Path) -> list[str]:
    problems = []
    for md in markdown_files(root):
        problems.extend(check_file(md, root))
    return problems


def test_every_relative_link_resolves():
    pages = markdown_files(REPO)
    assert REPO / "README.md" in pages
    problems = check_tree(REPO)
    assert not problems, "\n".join(problems)


def test_readme_is_short():
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines (max {README_MAX_LINES})"
    )


def test_no_page_links_to_shared():
    offenders = []
    for md in markdown_files(REPO):
        for lineno, target in iter_links(md.read_text(encoding="utf-8")):
            if "../shared" in target or target.startswith("/work/shared"):
                offenders.append(f"{md.relative_to(REPO)}:{lineno}: {target}")
    assert not offenders, "\n".join(offenders)


def test_the_checker_reports_broken_and_outside_links(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "ok.md").write_text("# ok\n", encoding="utf-8")
    (tmp_path / "img.png").write_bytes(b"")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "ignored.md").write_text("[x](nowhere.md)\n", encoding="utf-8")
    page = tmp_path / "README.md"
    page.write_text(
        "\n".join(
            [
                "[fine](docs/ok.md) [anchor](docs/ok.md#top) [folder](docs/) ![img](img.png)",
                "[web](https://example.org/x.md) [mail](mailto:a@b.c) [here](#section)",
                "[broken](docs/missing.md)",
                "![broken image](pics/nothing.png)",
                "[out](../shared/reference/methods.md)",
                "`[in code](not/checked.md)`",
                "```",
                "[in a fence](not/checked/either.md)",
                "```",
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    assert markdown_files(tmp_path) == [page, tmp_path / "docs" / "ok.md"]
    problems = check_tree(tmp_path)
    assert len(problems) == 3, problems
    assert "README.md:3: broken link: docs/missing.md" in problems[0]
    assert "README.md:4: broken link: pics/nothing.png" in problems[1]
    assert "README.md:5: links outside the repository" in problems[2]
