"""Local files and directories as a document source.

:class:`FileSource` walks the paths (:func:`~indexer.sources.walk.iter_files`), reads each file
with the parser of its format (:mod:`indexer.loaders.registry`) and hands a ``.jsonl`` file to
:class:`~indexer.sources.beir.BeirJsonlSource`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path

from indexer.loaders.common import guard, size_reason
from indexer.loaders.registry import format_of, is_streamed, parser_for
from indexer.sources.beir import BeirJsonlSource, load_jsonl
from indexer.sources.walk import iter_files, stat_regular
from rag.config import IngestConfig
from rag.errors import FileError
from rag.types import Document, JsonDict, LoadFailure

DEFAULT_MAX_FILE_BYTES: int = IngestConfig.model_fields["max_file_bytes"].default
"""Largest file accepted when none is given: the default of ``RAG_INGEST__MAX_FILE_BYTES``."""


class FileSource:
    """The documents in local files and directories, loaded lazily one file at a time.

    Directories are walked as :func:`~indexer.sources.walk.iter_files` says (sorted, globs,
    symlink loops reported). A single-document file (.txt .md .html .pdf .docx .pptx .xlsx
    .csv) gives one document whose ``external_id`` and ``source`` are its absolute resolved
    path, however it was typed, with metadata ``path``, ``format`` and ``modified`` (mtime,
    ISO-8601 UTC), plus what its format adds (``pages`` for a PDF, Markdown front matter). A
    ``.jsonl`` file gives one document per line (:class:`~indexer.sources.beir.BeirJsonlSource`),
    whose ``source`` is the file's absolute resolved path too.

    Files of unsupported types under a directory are not loaded; each is added to
    :attr:`skipped` as the walk passes it. :meth:`count_files` counts the files to load without
    reading them, and :attr:`files_done` counts those loaded so far, for progress bars.

    Args:
        paths: files and directories, as the user named them.
        include: fnmatch globs a file under a directory must match (relative path or name).
        exclude: fnmatch globs that drop a file or a directory under a directory.
        max_file_bytes: largest file accepted, checked before reading; for JSONL, the longest line.

    Example:
        >>> from indexer.sources import FileSource
        >>> source = FileSource([Path("data/docs")], include=["*.md"], max_file_bytes=10_000_000)
        >>> for item in source.iter_documents():  # doctest: +SKIP
        ...     if isinstance(item, LoadFailure):
        ...         print(f"skipped {item.path}: {item.reason}")
        ...     else:
        ...         print(item.title)
    """

    def __init__(
        self,
        paths: Sequence[Path],
        *,
        include: list[str] | None = None,
        exclude: list[str] | None = None,
        max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    ) -> None:
        self.paths = [Path(p) for p in paths]
        self.include = include
        self.exclude = exclude
        self.max_file_bytes = max_file_bytes
        self.skipped: list[LoadFailure] = []
        """Files under a directory left out for their type, with the reason, in walk order."""
        self.files_done = 0
        """Files whose documents have all been yielded by the running :meth:`iter_documents`."""

    def count_files(self) -> int:
        """How many files :meth:`iter_documents` will load: a walk that stats but reads nothing."""
        return sum(1 for item in iter_files(self.paths, self.include, self.exclude) if isinstance(item, Path))

    def iter_documents(self) -> Iterator[Document | LoadFailure]:
        """Each document, or a failure, in walk order; never raises for a bad file.

        Files are read only as the iterator is advanced, so the time spent in ``next()`` is the
        time spent loading, and a caller that stops iterating reads no further file.

        Yields:
            A :class:`~rag.types.Document`, or a :class:`~rag.types.LoadFailure` naming the path
            (``"<path>:<line>"`` for one JSONL line) and a one-line reason.
        """
        self.skipped = []
        self.files_done = 0
        for item in iter_files(self.paths, self.include, self.exclude, on_skip=self.skipped.append):
            if isinstance(item, LoadFailure):
                yield item
                continue
            if is_streamed(item):
                yield from BeirJsonlSource(item, self.max_file_bytes).iter_documents()
            else:
                try:
                    doc = load_document(item, self.max_file_bytes)
                except FileError as e:
                    self.files_done += 1
                    yield LoadFailure(e.path, e.reason)
                    continue
                self.files_done += 1
                yield doc
                continue
            self.files_done += 1


def load_file(path: Path, max_bytes: int) -> Iterator[Document | LoadFailure]:
    """Load one file as documents, raising for a file that cannot be used.

    Whole-file checks (type, size, emptiness, encoding, parsing) run before
    this returns, so a whole-file failure raises here. A JSONL file is then
    streamed line by line: a bad line is yielded as a :class:`~rag.types.LoadFailure`
    named ``"<path>:<line>"`` and loading goes on. Documents are as :class:`FileSource`
    describes; :class:`FileSource` is the way that never raises.

    Args:
        path: the file.
        max_bytes: largest file accepted, checked before reading. For JSONL,
            which is streamed, the limit applies to each line instead.

    Returns:
        An iterator of documents and per-line failures.

    Raises:
        FileError: the whole file cannot be used; ``reason`` is one line. Also
            raised while iterating a JSONL file if reading it fails midway.
    """
    path = Path(path)
    if is_streamed(path):
        return load_jsonl(path, max_bytes)
    return iter([load_document(path, max_bytes)])


def load_document(path: Path, max_bytes: int) -> Document:
    """Load a single-document file (any supported format but JSONL).

    Args:
        path: the file.
        max_bytes: largest file accepted, checked before reading.

    Returns:
        The document.

    Raises:
        FileError: the file cannot be used (unsupported type, missing, not a regular file,
            too large, empty, not decodable, no text, a parser's own reason); one line.
    """
    path = Path(path)
    with guard(path):
        fmt = format_of(path)
        st = stat_regular(path)
        if st.st_size > max_bytes:
            raise FileError(str(path), size_reason(st.st_size, max_bytes))
        if st.st_size == 0:
            raise FileError(str(path), "empty file")
        parsed = parser_for(fmt)(path, _read(path, max_bytes))
        if not parsed.text.strip():
            raise FileError(str(path), "no text (empty or whitespace only)")
        source = str(path.resolve())
        # The file's own keys win over what the format reads (front matter cannot move a document).
        metadata: JsonDict = {**parsed.metadata, "path": source, "format": fmt, "modified": _iso_mtime(st)}
        return Document(source, source, parsed.title, parsed.text, metadata, parsed.sections)


def _read(path: Path, max_bytes: int) -> bytes:
    with open(path, "rb") as f:
        data = f.read(max_bytes + 1)
    # The file may have grown since it was measured.
    if len(data) > max_bytes:
        raise FileError(str(path), size_reason(len(data), max_bytes))
    return data


def _iso_mtime(st: os.stat_result) -> str:
    return datetime.fromtimestamp(st.st_mtime, tz=timezone.utc).isoformat(timespec="seconds")
