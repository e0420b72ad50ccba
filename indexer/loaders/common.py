"""What every format parser and document source shares: the parse result, decoding, one-line reasons.

Bad input is normal here: every failure ends as a one-line reason, never as a traceback. A parser
raises :class:`~rag.errors.FileError` for a file it cannot use; :func:`guard` turns anything
else it raises into one.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from rag.errors import FileError
from rag.types import JsonDict

SIZE_SETTING = "RAG_INGEST__MAX_FILE_BYTES"
"""The setting that bounds a file's (or a JSONL line's) size, named in size failures."""

_MAX_REASON_CHARS = 300
_T = TypeVar("_T")


@dataclass(frozen=True)
class Parsed:
    """What a parser reads from one file: a document without its identity.

    Attributes:
        text: the plain text.
        title: the title (the file's stem when the format gives none).
        sections: (char_start, heading path) pairs, sorted by start.
        metadata: format-specific metadata, e.g. ``{"pages": 3}`` for a PDF.
    """

    text: str
    title: str
    sections: tuple[tuple[int, str], ...] = ()
    metadata: JsonDict = field(default_factory=dict)


Parser = Callable[[Path, bytes], Parsed]
"""Reads one file's bytes; raises :class:`~rag.errors.FileError` with a one-line reason."""


def decode(path: Path, data: bytes) -> str:
    """Decode UTF-8 (with or without BOM) and nothing else: no encoding is guessed.

    Args:
        path: the file, named in the error.
        data: its bytes.

    Returns:
        The text, with ``\\r\\n`` and ``\\r`` line ends turned into ``\\n``.

    Raises:
        FileError: UTF-16, binary (a NUL byte) or not valid UTF-8.
    """
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise FileError(str(path), "UTF-16 encoded (only UTF-8 is supported)")
    if b"\x00" in data:
        raise FileError(str(path), "binary file")
    bom = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        text = data[bom:].decode("utf-8")
    except UnicodeDecodeError as e:
        offset = bom + e.start
        raise FileError(str(path), f"not valid UTF-8 (byte 0x{data[offset]:02x} at offset {offset})") from None
    return normalize_newlines(text)


def normalize_newlines(text: str) -> str:
    """``text`` with ``\\r\\n`` and lone ``\\r`` line ends turned into ``\\n``."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def size_reason(size: int, limit: int) -> str:
    """Why a file of ``size`` bytes is refused under ``limit``, e.g. ``"file is 2.0 kB, over the 1.0 kB limit (...)"``.

    Sizes that would read the same when rounded are given in bytes.
    """
    shown, limit_shown = human_size(size), human_size(limit)
    if shown == limit_shown:
        shown, limit_shown = f"{size} bytes", f"{limit} bytes"
    return f"file is {shown}, over the {limit_shown} limit ({SIZE_SETTING})"


def human_size(n: int) -> str:
    """``n`` bytes as ``"12 bytes"``, ``"1.5 kB"`` or ``"2.0 MB"`` (powers of 1000)."""
    if n >= 1_000_000:
        return f"{n / 1_000_000:.1f} MB"
    return f"{n / 1000:.1f} kB" if n >= 1000 else f"{n} bytes"


def one_line(reason: str) -> str:
    """``reason`` with its white space folded, cut to 300 characters; never empty."""
    reason = " ".join(reason.split())
    if len(reason) > _MAX_REASON_CHARS:
        reason = reason[: _MAX_REASON_CHARS - 3] + "..."
    return reason or "unknown error"


def describe(e: BaseException) -> str:
    """An exception as one line: its type and the first line of its message."""
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return one_line(f"{type(e).__name__}: {first}" if first else type(e).__name__)


def os_reason(e: OSError) -> str:
    """An operating system error as a short lower-case reason, e.g. ``"permission denied"``."""
    if isinstance(e, PermissionError):
        return "permission denied"
    if isinstance(e, IsADirectoryError):
        return "is a directory"
    return one_line((e.strerror or str(e)).lower())


@contextmanager
def guard(path: Path) -> Iterator[None]:
    """Turn any exception raised inside into a :class:`~rag.errors.FileError` with a one-line reason.

    Args:
        path: the file being read, named when the error does not name one.

    Raises:
        FileError: for whatever was raised inside (``KeyboardInterrupt`` and the like pass).
    """
    try:
        yield
    except FileError as e:
        raise FileError(e.path, one_line(e.reason)) from None
    except OSError as e:
        raise FileError(str(path), f"unreadable: {os_reason(e)}") from None
    except Exception as e:  # noqa: BLE001 - a bad file must never surface as a traceback
        raise FileError(str(path), f"could not parse: {describe(e)}") from None


def guarded(path: Path, items: Iterator[_T]) -> Iterator[_T]:
    """``items``, with anything raised while iterating turned into a FileError by :func:`guard`."""
    with guard(path):
        yield from items


_ZIP_MAGIC = b"PK\x03\x04"
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


def check_office_zip(path: Path, data: bytes, kind: str) -> None:
    """Refuse bytes that cannot be an Office Open XML file before a parser sees them.

    Args:
        path: the file, named in the error.
        data: its bytes.
        kind: the suffix it claims, e.g. ``".docx"``.

    Raises:
        FileError: an encrypted or old binary Office file (both are OLE containers), or not a ZIP.
    """
    if data.startswith(_OLE_MAGIC):
        raise FileError(
            str(path), f"encrypted, or an old binary Office file renamed {kind} (save it as {kind} without a password)"
        )
    if not data.startswith(_ZIP_MAGIC):
        raise FileError(str(path), f"not a {kind} file (not a ZIP archive)")


def cell_text(value: object) -> str:
    """A spreadsheet cell as text: ``""`` for empty, whole floats without ``.0``, dates in ISO-8601."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    isoformat = getattr(value, "isoformat", None)
    if callable(isoformat):
        return str(isoformat())
    return " ".join(str(value).split())


def rows_text(rows: Iterator[list[str]]) -> str:
    """Table rows as text, one line per row, each value named by its column.

    The first non-empty row is the header when it has no empty cell; each later row is then
    ``"header: value; header: value"`` (empty cells left out), so a chunk cut from the middle of
    a table still says what its numbers are. Without a header, cells are joined by ``" | "``.
    Empty rows are dropped.

    Args:
        rows: the cells of each row, as text.

    Returns:
        The lines joined by ``"\\n"``.
    """
    lines: list[str] = []
    header: list[str] | None = None
    first = True
    for cells in rows:
        while cells and not cells[-1]:
            cells = cells[:-1]
        if not any(cells):
            continue
        if first:
            first = False
            if all(cells):
                header = cells
                lines.append(" | ".join(cells))
                continue
        if header is not None:
            named = [
                f"{header[i] if i < len(header) else f'column {i + 1}'}: {v}" for i, v in enumerate(cells) if v
            ]
            lines.append("; ".join(named))
        else:
            lines.append(" | ".join(cells))
    return "\n".join(lines)
