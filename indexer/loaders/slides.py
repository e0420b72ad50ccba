"""PowerPoint (``.pptx``): the text of every slide and its notes, a section per slide."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

from indexer.loaders.common import Parsed, check_office_zip, describe
from rag.errors import FileError


def parse_pptx(path: Path, data: bytes) -> Parsed:
    """Read the text of a PowerPoint deck, read with python-pptx.

    Each slide gives its shapes' text (grouped shapes and tables included, in the deck's shape
    order) and then its speaker notes; slides are separated by blank lines and each is a section
    ``"slide N: <its title>"`` (``"slide N"`` when it has no title). The title is the deck's
    core-properties title, else the first slide's title, else the file's stem.

    Args:
        path: the file.
        data: its bytes.

    Returns:
        The text, title, slide sections and ``{"slides": N}``.

    Raises:
        FileError: not a ZIP archive, encrypted, not a PowerPoint deck, or no text.
    """
    import pptx  # imported here: only .pptx ingestion pays for python-pptx and lxml
    from pptx.exc import PackageNotFoundError

    check_office_zip(path, data, ".pptx")
    try:
        deck = pptx.Presentation(io.BytesIO(data))
    except (PackageNotFoundError, KeyError, ValueError) as e:
        raise FileError(str(path), f"not a PowerPoint deck ({describe(e)})") from None
    title = " ".join((deck.core_properties.title or "").split())
    parts: list[str] = []
    sections: list[tuple[int, str]] = []
    offset = 0
    n_slides = 0
    for n, slide in enumerate(deck.slides, start=1):
        n_slides = n
        slide_title = ""
        if slide.shapes.title is not None and slide.shapes.title.has_text_frame:
            slide_title = " ".join(slide.shapes.title.text_frame.text.split())
        if not title and slide_title:
            title = slide_title
        lines = [t for t in _shape_texts(slide.shapes) if t]
        if slide.has_notes_slide and slide.notes_slide.notes_text_frame is not None:
            notes = slide.notes_slide.notes_text_frame.text.strip()
            if notes:
                lines.append(notes)
        text = "\n".join(lines)
        if not text:
            continue
        sections.append((offset, f"slide {n}: {slide_title}" if slide_title else f"slide {n}"))
        parts.append(text)
        offset += len(text) + 2
    return Parsed("\n\n".join(parts), title or path.stem, tuple(sections), {"slides": n_slides})


def _shape_texts(shapes: object) -> Iterator[str]:
    from pptx.enum.shapes import MSO_SHAPE_TYPE

    for shape in shapes:  # type: ignore[attr-defined]
        if shape.shape_type == MSO_SHAPE_TYPE.GROUP:
            yield from _shape_texts(shape.shapes)
        elif getattr(shape, "has_table", False) and shape.has_table:
            for row in shape.table.rows:
                cells = [" ".join(c.text.split()) for c in row.cells]
                if any(cells):
                    yield " | ".join(cells)
        elif getattr(shape, "has_text_frame", False) and shape.has_text_frame:
            yield shape.text_frame.text.strip()
