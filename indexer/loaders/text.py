"""Plain text (``.txt``): the whole file is the text, its stem the title."""

from __future__ import annotations

from pathlib import Path

from indexer.loaders.common import Parsed, decode


def parse_text(path: Path, data: bytes) -> Parsed:
    """Read a UTF-8 text file.

    Args:
        path: the file; its stem is the title.
        data: its bytes.

    Returns:
        The decoded text, with no sections.

    Raises:
        FileError: the bytes are not UTF-8 text.
    """
    return Parsed(decode(path, data), path.stem)
