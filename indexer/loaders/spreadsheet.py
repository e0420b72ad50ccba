"""Excel (``.xlsx``): every sheet's cells, row by row, a section per sheet."""

from __future__ import annotations

import io
from pathlib import Path

from indexer.loaders.common import Parsed, cell_text, check_office_zip, describe, rows_text
from rag.errors import FileError


def parse_xlsx(path: Path, data: bytes) -> Parsed:
    """Read the cells of an Excel workbook, read with openpyxl in read-only mode.

    Formulas give the value Excel last saved with them (openpyxl's ``data_only``); a workbook
    saved by a program that does not compute formulas shows them empty. Rows are rendered by
    :func:`~indexer.loaders.common.rows_text` (values named by the header row); sheets are
    separated by blank lines and each non-empty sheet is a section ``"sheet <name>"``. The title
    is the workbook's core-properties title, else the file's stem.

    Args:
        path: the file.
        data: its bytes.

    Returns:
        The text, title, sheet sections and ``{"sheets": N}`` (every sheet, empty ones included).

    Raises:
        FileError: not a ZIP archive, encrypted, not a workbook, or no text.
    """
    import openpyxl  # imported here: only .xlsx ingestion pays for openpyxl
    from openpyxl.utils.exceptions import InvalidFileException

    check_office_zip(path, data, ".xlsx")
    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (InvalidFileException, KeyError, ValueError) as e:
        raise FileError(str(path), f"not an Excel workbook ({describe(e)})") from None
    try:
        title = " ".join((book.properties.title or "").split())
        parts: list[str] = []
        sections: list[tuple[int, str]] = []
        offset = 0
        for sheet in book.worksheets:
            text = rows_text([cell_text(v) for v in row] for row in sheet.iter_rows(values_only=True))
            if not text:
                continue
            sections.append((offset, f"sheet {sheet.title}"))
            parts.append(text)
            offset += len(text) + 2
        n_sheets = len(book.sheetnames)
    finally:
        book.close()
    return Parsed("\n\n".join(parts), title or path.stem, tuple(sections), {"sheets": n_sheets})
