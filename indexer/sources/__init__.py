"""Where documents come from: sources behind the :class:`~rag.interfaces.Source` protocol.

:class:`FileSource` reads local files and directories, :class:`BeirJsonlSource` one BEIR JSONL
corpus. Both yield documents lazily and turn every bad file or line into a
:class:`~rag.types.LoadFailure`, never an exception.
"""

from __future__ import annotations

from indexer.sources.beir import BeirJsonlSource, load_jsonl
from indexer.sources.files import DEFAULT_MAX_FILE_BYTES, FileSource, load_document, load_file
from indexer.sources.walk import iter_files

__all__ = [
    "DEFAULT_MAX_FILE_BYTES",
    "BeirJsonlSource",
    "FileSource",
    "iter_files",
    "load_document",
    "load_file",
    "load_jsonl",
]
