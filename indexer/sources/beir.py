"""BEIR corpus files: JSONL with one ``{"_id", "title", "text", "metadata"?}`` object per line.

The file is streamed, one line at a time, so a corpus of any size loads in constant memory; each
bad line is a failure of its own and the rest of the file goes on.
"""

from __future__ import annotations

import codecs
import io
import json
from collections.abc import Iterator
from pathlib import Path

from indexer.loaders.common import SIZE_SETTING, guard, guarded, human_size, one_line
from indexer.sources.walk import stat_regular
from rag.errors import FileError
from rag.types import Document, LoadFailure

_SNIFF_BYTES = 8192


class BeirJsonlSource:
    """The documents of one BEIR JSONL corpus file, read lazily line by line.

    Each line gives one document: ``external_id`` is its ``_id`` (a number is turned into a
    string), ``source`` is the file's absolute resolved path (as for every file, however the
    path was typed), and ``metadata`` its ``metadata`` object. Blank lines are skipped; a bad
    line's failure is named ``"<path>:<line>"`` with the path as given.

    Args:
        path: the ``.jsonl`` file.
        max_bytes: longest line accepted (the file itself may be any size).
    """

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes

    def iter_documents(self) -> Iterator[Document | LoadFailure]:
        """Each document, or a failure; never raises for a bad file or line.

        Yields:
            A :class:`~rag.types.Document` per good line; a :class:`~rag.types.LoadFailure`
            named ``"<path>:<line>"`` per bad line, or named ``"<path>"`` when the whole file
            cannot be used (missing, empty, binary, only blank lines, unreadable midway), which
            ends the file.
        """
        try:
            yield from load_jsonl(self.path, self.max_bytes)
        except FileError as e:
            yield LoadFailure(e.path, e.reason)


def load_jsonl(path: Path, max_bytes: int) -> Iterator[Document | LoadFailure]:
    """Open a BEIR JSONL file and stream its documents, raising for a file that cannot be used.

    Whole-file checks (regular file, not empty, not binary) run before this returns.

    Args:
        path: the file.
        max_bytes: longest line accepted.

    Returns:
        An iterator of documents and per-line failures (see :class:`BeirJsonlSource`).

    Raises:
        FileError: the whole file cannot be used; ``reason`` is one line. Also raised while
            iterating if reading fails midway or the file holds only blank lines.
    """
    path = Path(path)
    with guard(path):
        st = stat_regular(path)
        if st.st_size == 0:
            raise FileError(str(path), "empty file")
        f = open(path, "rb")  # noqa: SIM115 - closed by the generator below
        try:
            head = f.read(_SNIFF_BYTES)
            if b"\x00" in head:
                raise FileError(str(path), "binary file")
            f.seek(0)
        except BaseException:
            f.close()
            raise
        return guarded(path, _lines(path, f, max_bytes))


def _lines(path: Path, f: io.BufferedReader, max_bytes: int) -> Iterator[Document | LoadFailure]:
    source = str(path.resolve())
    found = False
    with f:
        lineno = 0
        offset = 0
        while raw := f.readline(max_bytes + 1):
            lineno += 1
            start = offset
            offset += len(raw)
            if len(raw) > max_bytes and not raw.endswith(b"\n"):
                offset += _skip_line(f)
                found = True
                yield LoadFailure(
                    f"{path}:{lineno}", f"line {lineno}: longer than the {human_size(max_bytes)} limit ({SIZE_SETTING})"
                )
                continue
            if lineno == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[3:]
                start += 3
            result = _document(raw, lineno, start, source)
            if result is None:
                continue
            found = True
            yield LoadFailure(f"{path}:{lineno}", one_line(result)) if isinstance(result, str) else result
    if not found:
        raise FileError(str(path), "no documents (only blank lines)")


def _skip_line(f: io.BufferedReader) -> int:
    skipped = 0
    while chunk := f.readline(1 << 20):
        skipped += len(chunk)
        if chunk.endswith(b"\n"):
            break
    return skipped


def _document(raw: bytes, lineno: int, start: int, source: str) -> Document | str | None:
    """One BEIR line as a document, a failure reason, or None for a blank line."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return f"line {lineno}: not valid UTF-8 (byte 0x{raw[e.start]:02x} at offset {start + e.start})"
    if not line.strip():
        return None
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        return f"line {lineno}: invalid JSON ({e.msg})"
    except RecursionError:
        return f"line {lineno}: invalid JSON (nested too deeply)"
    if not isinstance(obj, dict):
        return f"line {lineno}: expected a JSON object, got {_json_type(obj)}"
    doc_id = obj.get("_id")
    if isinstance(doc_id, int) and not isinstance(doc_id, bool):
        doc_id = str(doc_id)
    if not isinstance(doc_id, str) or not doc_id.strip():
        return f"line {lineno}: missing or empty _id"
    title = obj.get("title")
    text = obj.get("text")
    metadata = obj.get("metadata")
    for name, value in (("title", title), ("text", text)):
        if value is not None and not isinstance(value, str):
            return f"line {lineno}: {name} is {_json_type(value)}, not a string"
    if metadata is not None and not isinstance(metadata, dict):
        return f"line {lineno}: metadata is {_json_type(metadata)}, not an object"
    title = title or ""
    text = text or ""
    if not text.strip() and not title.strip():
        return f"line {lineno}: text and title are both empty"
    return Document(doc_id, source, title, text, dict(metadata or {}))


def _json_type(value: object) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")
