"""File formats: one parser per format, chosen by file suffix.

Each parser (:mod:`.text`, :mod:`.markdown`, :mod:`.html`, :mod:`.pdf`, :mod:`.word` for
``.docx``, :mod:`.slides` for ``.pptx``, :mod:`.spreadsheet` for ``.xlsx``, :mod:`.delimited`
for ``.csv``) turns a file's path and bytes into :class:`~indexer.loaders.common.Parsed`; :mod:`.registry` picks it by suffix. Finding
files and turning them into documents is the job of :mod:`indexer.sources`.

``iter_files`` and ``load_file`` moved to :mod:`indexer.sources`; they are still importable from
here for older callers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from indexer.loaders.common import Parsed, Parser
from indexer.loaders.html import MAX_HTML_DEPTH
from indexer.loaders.registry import FORMATS, format_of, parser_for
from rag.types import LoadFailure

if TYPE_CHECKING:
    from indexer.sources import iter_files, load_file

__all__ = [
    "FORMATS",
    "MAX_HTML_DEPTH",
    "LoadFailure",
    "Parsed",
    "Parser",
    "format_of",
    "iter_files",
    "load_file",
    "parser_for",
]

_MOVED = frozenset({"iter_files", "load_file"})


def __getattr__(name: str) -> object:
    # indexer.sources imports this package, so the names that moved there are fetched on first
    # use: importing them here at the top would be an import cycle.
    if name in _MOVED:
        from indexer import sources

        return getattr(sources, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
