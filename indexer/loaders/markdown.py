"""Markdown (``.md``, ``.markdown``): the source text, with a section per heading."""

from __future__ import annotations

import re
from pathlib import Path

from markdown_it import MarkdownIt
from markdown_it.token import Token

from indexer.loaders.common import Parsed, decode

_FRONT_MATTER = re.compile(r"\A---\n(.*?\n)(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.DOTALL)
# Only headings need inline parsing, and inline rules hold the slow cases on
# hostile input (200 kB of "[" takes seconds): the block pass skips them.
_md_blocks = MarkdownIt("commonmark").disable("inline")
_md_inline = MarkdownIt("commonmark")
_MAX_HEADING_CHARS = 1000


def parse_markdown(path: Path, data: bytes) -> Parsed:
    """Read a Markdown file; the text stays Markdown so chunk offsets match the file.

    YAML front matter is dropped, keeping its ``title:``. The title is that, else the first
    level-1 heading, else the file's stem. Each heading starts a section named by its heading
    path (``"Guide > Install > Linux"``), the heading's words without their markup.

    Args:
        path: the file.
        data: its bytes.

    Returns:
        The text, title and sections.

    Raises:
        FileError: the bytes are not UTF-8 text.
    """
    text = decode(path, data)
    title = ""
    # YAML front matter is metadata, not prose: drop it, keep its title.
    front = _FRONT_MATTER.match(text)
    if front:
        text = text[front.end() :]
        m = re.search(r"^title:[ \t]*(.+?)[ \t]*$", front.group(1), re.MULTILINE)
        title = m.group(1).strip("'\"") if m else ""
    line_starts = [0]
    for m in re.finditer("\n", text):
        line_starts.append(m.end())
    sections: list[tuple[int, str]] = []
    path_stack: list[tuple[int, str]] = []
    tokens = _md_blocks.parse(text)
    for i, tok in enumerate(tokens):
        if tok.type != "heading_open" or tok.map is None:
            continue
        level = int(tok.tag[1:])
        heading = _inline_text(tokens[i + 1]) if i + 1 < len(tokens) else ""
        if not heading:
            continue
        if level == 1 and not title:
            title = heading
        while path_stack and path_stack[-1][0] >= level:
            path_stack.pop()
        path_stack.append((level, heading))
        sections.append((line_starts[tok.map[0]], " > ".join(h for _, h in path_stack)))
    return Parsed(text, title or path.stem, tuple(sections))



def _inline_text(tok: Token) -> str:
    """Plain text of an inline token: the words without the markup."""
    if tok.type != "inline":
        return ""
    parsed = _md_inline.parseInline(tok.content[:_MAX_HEADING_CHARS])
    children = parsed[0].children if parsed else []
    parts = [
        " " if c.type in ("softbreak", "hardbreak") else c.content
        for c in children or []
        if c.type in ("text", "code_inline", "softbreak", "hardbreak")
    ]
    return " ".join("".join(parts).split())
