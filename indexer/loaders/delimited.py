"""CSV (``.csv``): rows of a delimited text file, read with the standard library's ``csv``."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from indexer.loaders.common import Parsed, decode, rows_text
from rag.errors import FileError

_DELIMITERS = ",;\t|"
_SNIFF_CHARS = 16_384


def parse_csv(path: Path, data: bytes) -> Parsed:
    """Read a CSV file (UTF-8), one line of text per record.

    The delimiter is sniffed among ``, ; TAB |`` from the start of the file (comma when unsure).
    Records are rendered by :func:`~indexer.loaders.common.rows_text`: each value named by its
    column from the header row. The file is one table, so it has no sections; the title is the
    file's stem.

    Args:
        path: the file.
        data: its bytes.

    Returns:
        The text and title.

    Raises:
        FileError: not UTF-8 text, or a malformed record (the reason names its line).
    """
    text = decode(path, data)
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(text[:_SNIFF_CHARS], delimiters=_DELIMITERS)
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text, newline=""), dialect)
    try:
        body = rows_text([" ".join(cell.split()) for cell in row] for row in reader)
    except csv.Error as e:
        raise FileError(str(path), f"malformed CSV at line {reader.line_num}: {e}") from None
    return Parsed(body, path.stem)
