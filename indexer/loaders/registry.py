"""Which parser reads which file: file suffix -> format name -> parser.

JSONL is a supported format without a parser here: it holds many documents and is streamed
line by line by :class:`indexer.sources.BeirJsonlSource`.
"""

from __future__ import annotations

from pathlib import Path

from indexer.loaders.common import Parser
from indexer.loaders.delimited import parse_csv
from indexer.loaders.html import parse_html
from indexer.loaders.markdown import parse_markdown
from indexer.loaders.pdf import parse_pdf
from indexer.loaders.slides import parse_pptx
from indexer.loaders.spreadsheet import parse_xlsx
from indexer.loaders.text import parse_text
from indexer.loaders.word import parse_docx
from rag.errors import FileError, InputError

FORMATS: dict[str, str] = {
    ".txt": "txt",
    ".md": "md",
    ".markdown": "md",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
    ".docx": "docx",
    ".pptx": "pptx",
    ".xlsx": "xlsx",
    ".csv": "csv",
    ".jsonl": "jsonl",
}
"""Supported file suffixes (lower case) and the format name each one maps to."""

_STREAMED = "jsonl"  # one document per line, streamed by the BEIR source
_PARSERS: dict[str, Parser] = {
    "txt": parse_text,
    "md": parse_markdown,
    "html": parse_html,
    "pdf": parse_pdf,
    "docx": parse_docx,
    "pptx": parse_pptx,
    "xlsx": parse_xlsx,
    "csv": parse_csv,
}


def format_of(path: Path) -> str:
    """The format name of ``path``, from its suffix in any case (``"md"`` for ``GUIDE.MD``).

    Args:
        path: a file name.

    Returns:
        A value of :data:`FORMATS`.

    Raises:
        FileError: the suffix is not supported; the reason lists the supported ones.
    """
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise FileError(str(path), unsupported(path))
    return fmt


def parser_for(fmt: str) -> Parser:
    """The parser of a single-document format.

    Args:
        fmt: a format name, e.g. ``"pdf"``.

    Returns:
        The parser.

    Raises:
        InputError: ``fmt`` has no parser (unknown, or the streamed ``jsonl``); the message
            lists the formats that have one.
    """
    parser = _PARSERS.get(fmt)
    if parser is None:
        raise InputError("fmt", f"no parser for format {fmt!r} (one of: {' | '.join(sorted(_PARSERS))})")
    return parser


def is_streamed(path: Path) -> bool:
    """Whether ``path`` is a JSONL file, read line by line by the BEIR source rather than parsed whole."""
    return FORMATS.get(path.suffix.lower()) == _STREAMED


def supported(name: str) -> bool:
    """Whether a file called ``name`` has a supported suffix (any case)."""
    return Path(name).suffix.lower() in FORMATS


def unsupported(path: Path, *, short: bool = False) -> str:
    """The reason a file of an unsupported type is refused, listing the supported suffixes.

    Args:
        path: the file.
        short: leave the list of supported suffixes out (for a list of skipped files).
    """
    suffix = path.suffix.lower()
    what = suffix if suffix else "(no extension)"
    if short:
        return f"unsupported file type {what}"
    return f"unsupported file type {what} (supported: {supported_suffixes()})"


def supported_suffixes() -> str:
    """The supported suffixes, sorted, separated by spaces."""
    return " ".join(sorted(FORMATS))
