"""Word (``.docx``): paragraphs and tables in document order, a section per heading.

Read with python-docx (see ``docs/decisions.md``, "File formats"). A ``.docx`` file has no pages
of its own (Word lays them out when it renders), so sections follow the headings, as in Markdown.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

from indexer.loaders.common import Parsed, check_office_zip, describe
from rag.errors import FileError

_HEADING = re.compile(r"^Heading (\d)$")


def parse_docx(path: Path, data: bytes) -> Parsed:
    """Read the text of a Word document.

    Paragraphs are separated by blank lines; a table gives one line per row, cells joined by
    ``" | "``. A paragraph in a ``Heading N`` style starts a section named by its heading path
    (``"Policy > Travel"``). The title is the document's core-properties title, else the first
    ``Title``-style paragraph or level-1 heading, else the file's stem.

    Args:
        path: the file.
        data: its bytes.

    Returns:
        The text, title and heading sections.

    Raises:
        FileError: not a ZIP archive, encrypted, not a Word document, or no text.
    """
    import docx  # imported here: only .docx ingestion pays for python-docx and lxml
    from docx.opc.exceptions import PackageNotFoundError
    from docx.table import Table

    check_office_zip(path, data, ".docx")
    try:
        document = docx.Document(io.BytesIO(data))
    except (PackageNotFoundError, KeyError, ValueError) as e:
        raise FileError(str(path), f"not a Word document ({describe(e)})") from None
    blocks: list[str] = []
    sections: list[tuple[int, str]] = []
    stack: list[tuple[int, str]] = []
    title = " ".join((document.core_properties.title or "").split())
    offset = 0
    for item in document.iter_inner_content():
        if isinstance(item, Table):
            text = _table_text(item)
            style = ""
        else:
            text = item.text.strip()
            style = item.style.name if item.style is not None else ""
        if not text:
            continue
        level = _heading_level(style)
        if level:
            heading = " ".join(text.split())
            if level == 1 and not title:
                title = heading
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, heading))
            sections.append((offset, " > ".join(h for _, h in stack)))
        elif style == "Title" and not title:
            title = " ".join(text.split())
        blocks.append(text)
        offset += len(text) + 2
    return Parsed("\n\n".join(blocks), title or path.stem, tuple(sections))


def _heading_level(style: str) -> int:
    m = _HEADING.match(style)
    return int(m.group(1)) if m else 0


def _table_text(table: object) -> str:
    lines = []
    for row in table.rows:  # type: ignore[attr-defined]
        cells: list[str] = []
        for cell in row.cells:
            value = " ".join(cell.text.split())
            # A merged cell is returned once per grid column it spans: keep it once.
            if not cells or value != cells[-1]:
                cells.append(value)
        if any(cells):
            lines.append(" | ".join(cells))
    return "\n".join(lines)
