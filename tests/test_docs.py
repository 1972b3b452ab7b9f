"""The README fits on a few screens and docs/ holds the rest (issue 34): every relative link in them resolves,
every `#anchor` names a heading, nothing points outside the repository, and every page can be reached.

The checkers are plain functions, tested below on small fabricated trees, so each check is known to fail when it
should. External http(s) links (papers, libraries) are left as they are and not fetched.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_LINES = (150, 250)

FENCED = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)  # a fenced code block, fences included
INLINE_CODE = re.compile(r"`[^`]*`")
LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")  # [text](target) and ![alt](target)
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$", re.M)
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
OUTSIDE_TEXT = ("/work/", "shared/DESIGN", "DESIGN.md")  # the workspace around a checkout is not the repository


def markdown_files(root: Path) -> list[Path]:
    """The README and every page under docs/."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def prose(text: str) -> str:
    """The text less fenced code blocks and inline code: a `[x](y)` or `# x` in code is no link or heading."""
    return INLINE_CODE.sub("", FENCED.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, anything but letters, digits, spaces, - and _ dropped, spaces to -."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")  # a link's text, code's content
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every heading's anchor in a Markdown text, a repeated one numbered -1, -2, ... as GitHub does."""
    seen: Counter[str] = Counter()
    out = set()
    for _, heading in HEADING.findall(FENCED.sub("", text)):
        s = slug(heading)
        out.add(s if not seen[s] else f"{s}-{seen[s]}")
        seen[s] += 1
    return out


def links(text: str) -> list[str]:
    return LINK.findall(prose(text))


def link_problems(root: Path, files: list[Path]) -> list[str]:
    """One line per relative link that does not resolve to a file of the repository (or to a heading of it)."""
    root = root.resolve()
    problems = []
    for f in files:
        text = f.read_text(encoding="utf-8")
        name = f.relative_to(root)
        for target in links(text):
            if target.startswith(("http://", "https://")):
                continue  # external: kept as written, not checked
            if not target or SCHEME.match(target) or target.startswith("/"):
                problems.append(f"{name}: {target!r} is not a path inside the repository")
                continue
            path, _, anchor = target.partition("#")
            dest = (f.parent / path).resolve() if path else f.resolve()
            if not dest.is_relative_to(root):
                problems.append(f"{name}: {target!r} points outside the repository")
            elif not dest.exists():
                problems.append(f"{name}: {target!r} does not exist")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest.read_text(encoding="utf-8")):
                problems.append(f"{name}: {target!r}: no heading of {dest.relative_to(root)} has that anchor")
    return problems


def outside_text(root: Path, files: list[Path]) -> list[str]:
    """One line per mention of a place outside the repository, in code blocks too."""
    return [f"{f.relative_to(root)}: mentions {bad!r}"
            for f in files for bad in OUTSIDE_TEXT if bad in f.read_text(encoding="utf-8")]  # fmt: skip


def unreachable(root: Path, files: list[Path]) -> list[str]:
    """The pages that no chain of relative links leads to from README.md or docs/README.md."""
    root = root.resolve()
    todo = [p for p in (root / "README.md", root / "docs" / "README.md") if p.exists()]
    reached = set(todo)
    while todo:
        f = todo.pop()
        for target in links(f.read_text(encoding="utf-8")):
            path = target.partition("#")[0]
            if not path or SCHEME.match(path) or path.startswith("/"):
                continue
            dest = (f.parent / path).resolve()
            if dest.suffix == ".md" and dest.is_file() and dest not in reached:
                reached.add(dest)
                todo.append(dest)
    return [str(f.relative_to(root)) for f in files if f.resolve() not in reached]


def starts_with_the_two_commands(text: str) -> bool:
    """The README opens with a bash block of exactly two commands: `make run`, then `make test`."""
    lines = text.split("\n")
    return (len(lines) > 3 and lines[0] == "```bash" and lines[1].startswith("make run ")
            and lines[2].startswith("make test ") and lines[3] == "```")  # fmt: skip


# --- the repository's own README and docs -----------------------------------------------------------------------


def test_the_docs_are_there():
    pages = markdown_files(ROOT)
    assert (ROOT / "docs" / "README.md") in pages and len(pages) >= 10, pages  # else the checks below prove nothing
    assert sum(len(links(p.read_text(encoding="utf-8"))) for p in pages) > 50


def test_readme_starts_with_the_two_commands():
    assert starts_with_the_two_commands((ROOT / "README.md").read_text(encoding="utf-8"))


def test_readme_fits_on_a_few_screens():
    n = len((ROOT / "README.md").read_text(encoding="utf-8").splitlines())
    assert README_LINES[0] <= n <= README_LINES[1], f"README.md has {n} lines, not {README_LINES[0]}-{README_LINES[1]}"


def test_every_relative_link_resolves():
    assert link_problems(ROOT, markdown_files(ROOT)) == []


def test_nothing_points_outside_the_repository():
    assert outside_text(ROOT, markdown_files(ROOT)) == []


def test_every_page_is_reachable_from_the_readme():
    assert unreachable(ROOT, markdown_files(ROOT)) == []


# --- the checkers themselves, on fabricated trees ----------------------------------------------------------------


def tree(tmp_path: Path, readme: str, pages: dict[str, str]) -> Path:
    root = tmp_path / "repo"
    (root / "docs").mkdir(parents=True)
    (root / "README.md").write_text(readme)
    for name, text in pages.items():
        (root / name).write_text(text)
    (tmp_path / "outside.md").write_text("# Outside\n")  # exists, but not in the repository
    return root


PAGE = """# A page

## What `dvc repro` does

## Same

## Same

```bash
# not a heading
```
"""


@pytest.mark.parametrize("link", [
    "[a](docs/a.md)", "[a](docs/a.md#a-page)", "[a](docs/a.md#what-dvc-repro-does)", "[a](docs/a.md#same-1)",
    "[a](docs/)", "[r](#top)", "[p](https://example.org/paper.pdf)", "![figure](docs/a.md)",
    "`[not a link](nowhere.md)`", "```\n[not a link](nowhere.md)\n```",
])  # fmt: skip
def test_link_checker_passes_good_links(tmp_path, link):
    root = tree(tmp_path, f"# Top\n\n{link}\n", {"docs/a.md": PAGE})
    assert link_problems(root, markdown_files(root)) == []


@pytest.mark.parametrize(("link", "problem"), [
    ("[a](docs/missing.md)", "does not exist"),
    ("[a](docs/a.md#nope)", "no heading"),
    ("[a](docs/a.md#same-2)", "no heading"),  # two headings "Same": -1 is the last
    ("[a](docs/a.md#not-a-heading)", "no heading"),  # a `#` line in a code block
    ("[a](#nope)", "no heading"),
    ("[a](../outside.md)", "outside the repository"),
    ("[a](docs/../../outside.md)", "outside the repository"),
    ("[a](/docs/a.md)", "not a path inside"),
    ("[a](file:///etc/hosts)", "not a path inside"),
    ("[a]()", "not a path inside"),
])  # fmt: skip
def test_link_checker_finds_broken_links(tmp_path, link, problem):
    root = tree(tmp_path, f"# Top\n\n{link}\n", {"docs/a.md": PAGE})
    problems = link_problems(root, markdown_files(root))
    assert len(problems) == 1 and problem in problems[0], problems


def test_link_checker_resolves_from_the_linking_file(tmp_path):
    root = tree(tmp_path, "# Top\n", {"docs/a.md": "[b](b.md#b) [top](../README.md#top)\n", "docs/b.md": "# B\n"})
    assert link_problems(root, markdown_files(root)) == []
    (root / "docs" / "a.md").write_text("[b](docs/b.md)\n")  # relative to the README, not to docs/
    assert link_problems(root, markdown_files(root)) == ["docs/a.md: 'docs/b.md' does not exist"]


@pytest.mark.parametrize(("heading", "anchor"), [
    ("What `dvc repro` does", "what-dvc-repro-does"),
    ("What it answers (the committed run)", "what-it-answers-the-committed-run"),
    ("Equivalent, different, or undecided; and seeds added until decided",
     "equivalent-different-or-undecided-and-seeds-added-until-decided"),
    ("`params.yaml` is checked before anything runs", "paramsyaml-is-checked-before-anything-runs"),
    ("snake_case and ×1.1", "snake_case-and-11"),
])  # fmt: skip
def test_slug_is_githubs(heading, anchor):
    assert slug(heading) == anchor


@pytest.mark.parametrize("text", ["see /work/shared/x", "as in shared/DESIGN 3", "the DESIGN.md file"])
def test_outside_text_is_found(tmp_path, text):
    root = tree(tmp_path, "# Top\n", {"docs/a.md": f"```\n{text}\n```\n"})  # in a code block too
    bad = next(b for b in OUTSIDE_TEXT if b in text)
    assert outside_text(root, markdown_files(root)) == [f"docs/a.md: mentions {bad!r}"]


def test_unreachable_pages_are_found(tmp_path):
    pages = {"docs/a.md": "[b](b.md#b)\n", "docs/b.md": "# B\n", "docs/c.md": "# C\n"}
    root = tree(tmp_path, "[a](docs/a.md)\n", pages)
    assert unreachable(root, markdown_files(root)) == ["docs/c.md"]
    (root / "docs" / "README.md").write_text("[c](c.md)\n")  # the docs index is a start too
    assert unreachable(root, markdown_files(root)) == []


@pytest.mark.parametrize(("text", "ok"), [
    ("```bash\nmake run    # x\nmake test   # y\n```\n\n# aegan\n", True),
    ("# aegan\n\n```bash\nmake run    # x\nmake test   # y\n```\n", False),  # not at the start
    ("```bash\nmake test   # y\nmake run    # x\n```\n", False),  # wrong order
    ("```bash\nmake run    # x\nmake test   # y\nmake study\n```\n", False),  # a third command
    ("```sh\nmake run    # x\nmake test   # y\n```\n", False),
])  # fmt: skip
def test_the_two_commands_check(text, ok):
    assert starts_with_the_two_commands(text) is ok
