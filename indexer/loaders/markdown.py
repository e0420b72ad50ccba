"""Markdown (``.md``, ``.markdown``): the source text, with a section per heading."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.token import Token

from indexer.loaders.common import Parsed, decode
from rag.types import JsonDict

_FRONT_MATTER = re.compile(r"\A---\n(.*?\n)(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.DOTALL)
# Only headings need inline parsing, and inline rules hold the slow cases on
# hostile input (200 kB of "[" takes seconds): the block pass skips them.
_md_blocks = MarkdownIt("commonmark").disable("inline")
_md_inline = MarkdownIt("commonmark")
_MAX_HEADING_CHARS = 1000
# YAML aliases can make a small front matter name a huge tree; past this many values it is dropped.
_MAX_FRONT_MATTER_VALUES = 10_000


def parse_markdown(path: Path, data: bytes) -> Parsed:
    """Read a Markdown file; the text stays Markdown so chunk offsets match the file.

    YAML front matter is taken out of the text: its ``title:`` is the title, every other key is
    document metadata (dates as ISO-8601 strings, other values JSON-serialisable). Front matter
    that is not a YAML mapping, or not valid YAML, gives no metadata (its ``title:`` line is still
    used). The title is the front matter's, else the first level-1 heading, else the file's stem.
    Each heading starts a section named by its heading path (``"Guide > Install > Linux"``), the
    heading's words without their markup.

    Args:
        path: the file.
        data: its bytes.

    Returns:
        The text, title, sections and the front matter's metadata.

    Raises:
        FileError: the bytes are not UTF-8 text.
    """
    text = decode(path, data)
    title = ""
    metadata: JsonDict = {}
    # YAML front matter is metadata, not prose: take it out of the text.
    front = _FRONT_MATTER.match(text)
    if front:
        text = text[front.end() :]
        title, metadata = _front_matter(front.group(1))
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
    return Parsed(text, title or path.stem, tuple(sections), metadata)


def _front_matter(block: str) -> tuple[str, JsonDict]:
    """The title and the other keys of a YAML front matter block."""
    import yaml  # imported here: only Markdown with front matter pays for it

    try:
        data = yaml.safe_load(block)
    except yaml.YAMLError:
        data = None
    if not isinstance(data, dict):
        m = re.search(r"^title:[ \t]*(.+?)[ \t]*$", block, re.MULTILINE)
        return (m.group(1).strip("'\"") if m else ""), {}
    raw_title = data.pop("title", None)
    title = " ".join(str(raw_title).split()) if isinstance(raw_title, (str, int, float)) else ""
    budget = [_MAX_FRONT_MATTER_VALUES]
    try:
        metadata = {str(k): _json_value(v, budget) for k, v in data.items()}
    except _TooLarge:
        metadata = {}
    return title, metadata


class _TooLarge(Exception):
    pass


def _json_value(value: Any, budget: list[int]) -> Any:
    """``value`` as JSON: dates become ISO-8601 strings, unknown scalars their ``str``."""
    budget[0] -= 1
    if budget[0] < 0:
        raise _TooLarge
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else str(value)
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _json_value(v, budget) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_json_value(v, budget) for v in value]
    return str(value)



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
