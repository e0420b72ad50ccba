"""HTML (``.html``, ``.htm``): the main text of a page, one paragraph per block element."""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from pathlib import Path

from selectolax.lexbor import LexborHTMLParser, LexborNode

from indexer.loaders.common import Parsed, decode, normalize_newlines
from rag.errors import FileError

MAX_HTML_DEPTH = 4096
"""Deepest tag nesting accepted in HTML; lexbor's parse time grows with depth squared."""

_DROP_TAGS = [
    "script", "style", "noscript", "template", "head", "header", "footer", "nav", "aside",
    "iframe", "svg", "canvas", "object", "embed", "button", "select", "dialog",
]  # fmt: skip
_BLOCK_TAGS = (
    "p, div, section, article, main, h1, h2, h3, h4, h5, h6, li, ul, ol, dl, dt, dd, "
    "table, tr, blockquote, pre, figure, figcaption, details, summary, address, hr, "
    "caption, fieldset, center"
)
_PARA = "\ue000"  # private-use code points mark block and line breaks during extraction
_LINE = "\ue001"
# No "<" inside a tag: each match attempt then stops at the next "<", so the scan stays linear.
_TAG = re.compile(rb"<(/?)([a-zA-Z][a-zA-Z0-9]*)[^<>]*?(/?)>")
_RAW_TEXT_TAGS = (b"script", b"style", b"textarea", b"title", b"xmp", b"plaintext")
# Elements that never nest (void) or whose end tag may be left out: they do not add depth.
_FLAT_TAGS = frozenset(
    b"area base br col embed hr img input link meta source track wbr p li dt dd tr td th "
    b"option optgroup thead tbody tfoot colgroup caption rb rt rtc rp html head body".split()
)
_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([a-zA-Z0-9_.:-]+)""", re.IGNORECASE)


def parse_html(path: Path, data: bytes) -> Parsed:
    """Read the visible main text of an HTML page.

    Scripts, styles, navigation, headers, footers and asides are dropped; the text comes from
    ``<main>``, ``[role=main]`` or ``<article>`` when there is one, else the body. The title is
    ``<title>``, else the first ``<h1>``, else the file's stem. UTF-8 is read; another encoding
    only when the page declares it in a ``<meta charset>``.

    Args:
        path: the file.
        data: its bytes.

    Returns:
        The text and title, with no sections.

    Raises:
        FileError: nested deeper than :data:`MAX_HTML_DEPTH`, not decodable, or no main text.
    """
    if _html_depth_exceeds(data, MAX_HTML_DEPTH):
        raise FileError(str(path), f"HTML nested too deeply (over {MAX_HTML_DEPTH} levels)")
    source = _decode_html(path, data).replace(_PARA, " ").replace(_LINE, " ")
    tree = LexborHTMLParser(source)
    title = _node_text(tree.css_first("title")) or _node_text(tree.css_first("h1")) or path.stem
    tree.strip_tags(_DROP_TAGS)
    main = tree.css_first("main") or tree.css_first("[role=main]") or tree.css_first("article") or tree.body
    text = _block_text(main) if main is not None else ""
    if not text:
        raise FileError(str(path), "HTML has no main text (only scripts, styles, navigation or markup)")
    return Parsed(text, title)


def _html_depth_exceeds(data: bytes, limit: int) -> bool:
    """Estimate tag nesting depth without building a tree, in linear time."""
    depth = 0
    for tag in _tags_outside_raw_text(data.lower()):
        name = tag.group(2)
        if name in _FLAT_TAGS or tag.group(3):
            continue
        depth = max(depth - 1, 0) if tag.group(1) else depth + 1
        if depth > limit:
            return True
    return False


def _tags_outside_raw_text(data: bytes) -> Iterator[re.Match[bytes]]:
    """Tags of ``data`` (lower case), skipping comments and script/style bodies.

    A comment or script that never closes runs to the end of the file, as in a
    browser; the search moves forward only, so hostile input stays linear.
    """
    pos = 0
    while (tag := _TAG.search(data, pos)) is not None:
        comment = data.find(b"<!--", pos, tag.start())
        if comment != -1:
            end = data.find(b"-->", comment + 4)
            if end == -1:
                return
            pos = end + 3
            continue
        yield tag
        pos = tag.end()
        name = tag.group(2)
        if name in _RAW_TEXT_TAGS and not tag.group(1):
            end = data.find(b"</" + name, pos)
            if end == -1:
                return
            pos = end


def _decode_html(path: Path, data: bytes) -> str:
    try:
        return decode(path, data)
    except FileError as utf8_error:
        # An HTML page may declare its encoding; honour it, but never guess one.
        m = _CHARSET.search(data[:4096])
        if m is None or b"\x00" in data:
            raise
        name = m.group(1).decode("ascii")
        try:
            codecs.lookup(name)
        except LookupError:
            raise FileError(str(path), f"{utf8_error.reason}; declared charset {name!r} is unknown") from None
        try:
            return normalize_newlines(data.decode(name))
        except UnicodeDecodeError as e:
            raise FileError(str(path), f"not valid {name} (declared charset) at offset {e.start}") from None


def _node_text(node: LexborNode | None) -> str:
    return " ".join(node.text(deep=True).split()) if node is not None else ""


def _block_text(root: LexborNode) -> str:
    """Visible text of ``root``, one paragraph per block element, blank lines between."""
    for pre in root.css("pre"):
        pre.replace_with(_PARA + (pre.text(deep=True) or "").replace("\n", _LINE) + _PARA)
    for node in root.css(_BLOCK_TAGS):
        node.insert_before(_PARA)
        node.insert_after(_PARA)
    for br in root.css("br"):
        br.replace_with(_LINE)
    raw = root.text(deep=True) or ""
    paragraphs = []
    for block in raw.split(_PARA):
        lines = (" ".join(line.split()) for line in block.split(_LINE))
        para = "\n".join(line for line in lines if line)
        if para:
            paragraphs.append(para)
    return "\n\n".join(paragraphs)
