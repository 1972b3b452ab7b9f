"""One report, written as Markdown (reports/report.md) and rendered to self-contained HTML (reports/report.html).

The report is built once as a list of blocks and written as Markdown; the
HTML is markdown-it-py's rendering of that same Markdown (CommonMark plus
tables), with every figure embedded as a data URI and the style inline: it
opens offline, with no external script, style sheet or font. Raw HTML in the
text (a title, say) is escaped, never passed through.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Paragraph:
    text: str


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    note: str = ""


@dataclass
class Figure:
    path: Path  # the PNG on disk
    rel: str  # its path relative to the report files
    caption: str


@dataclass
class Document:
    title: str
    blocks: list = field(default_factory=list)

    def add(self, *blocks) -> None:
        self.blocks.extend(blocks)

    def figures(self) -> list[Figure]:
        return [b for b in self.blocks if isinstance(b, Figure)]


# ------------------------------------------------------------------ Markdown
def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(doc: Document) -> str:
    out = [f"# {doc.title}", ""]
    for b in doc.blocks:
        if isinstance(b, Heading):
            out += ["#" * b.level + " " + b.text, ""]
        elif isinstance(b, Paragraph):
            out += [b.text, ""]
        elif isinstance(b, Bullets):
            out += [f"- {item}" for item in b.items] + [""]
        elif isinstance(b, Table):
            out.append("| " + " | ".join(_md_cell(h) for h in b.header) + " |")
            out.append("|" + "---|" * len(b.header))
            out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in b.rows]
            out += ["", b.note, ""] if b.note else [""]
        elif isinstance(b, Figure):
            out += [f"![{b.caption}]({b.rel})", "", f"*{b.caption}*", ""]
    return "\n".join(out).rstrip() + "\n"


# ------------------------------------------------------------------ HTML
STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; max-width: 1100px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; border-bottom: 2px solid #ddd; padding-bottom: .3em; }
h2 { font-size: 1.25em; margin-top: 1.8em; border-bottom: 1px solid #eee; }
table { border-collapse: collapse; margin: .8em 0; font-size: .88em; display: block; max-width: 100%;
        overflow-x: auto; }
th, td { border: 1px solid #ccc; padding: .3em .55em; text-align: right; vertical-align: top;
         font-variant-numeric: tabular-nums; }
td { white-space: nowrap; }
td.prose { white-space: normal; text-align: left; min-width: 16em; max-width: 40em; }
th { background: #f3f3f3; }
td:first-child, th:first-child { text-align: left; }
tr:nth-child(even) td { background: #fafafa; }
table + p { color: #555; font-size: .88em; }
code { background: #f2f2f2; padding: 0 .25em; border-radius: 3px; font-size: .92em; }
img { max-width: 100%; border: 1px solid #eee; }
"""


PROSE_CHARS = 40  # a table cell longer than this is prose (a verdict with its figures), not a figure


def data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def to_html(doc: Document) -> str:
    """markdown-it-py's HTML of `to_markdown(doc)`, each figure inlined from its PNG (data-file keeps its path)."""
    from markdown_it import MarkdownIt

    files = {f.rel: f.path for f in doc.figures()}
    md = MarkdownIt("commonmark", {"html": False}).enable("table")

    def image(self, tokens, idx, options, env):
        token = tokens[idx]
        rel = token.attrGet("src")
        alt = html.escape(self.renderInlineAsText(token.children, options, env), quote=True)
        return f'<img src="{data_uri(files[rel])}" alt="{alt}" data-file="{html.escape(rel, quote=True)}">'

    def td_open(self, tokens, idx, options, env):
        # a cell of words (a verdict, a reading) wraps and reads left to right; figures stay right-aligned on one line
        text = tokens[idx + 1].content if idx + 1 < len(tokens) else ""
        return '<td class="prose">' if len(text) > PROSE_CHARS else self.renderToken(tokens, idx, options, env)

    md.add_render_rule("image", image)
    md.add_render_rule("td_open", td_open)
    body = md.render(to_markdown(doc))
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(doc.title)}</title>",
        f"<style>{STYLE}</style></head><body>",
        body,
        "</body></html>",
    ]) + "\n"  # fmt: skip
