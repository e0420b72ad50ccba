"""PDF (``.pdf``): the text layer of every page, a section per page."""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from indexer.loaders.common import Parsed, describe
from rag.errors import FileError

if TYPE_CHECKING:
    import pypdf

# pypdf logs a warning for every small defect it repairs; the ingest report
# already says what matters, so only its errors are let through.
logging.getLogger("pypdf").setLevel(logging.ERROR)


def parse_pdf(path: Path, data: bytes) -> Parsed:
    """Read the text layer of a PDF, pages joined by a blank line.

    A PDF encrypted only against editing (empty user password) is opened. The title is the
    document's info title, else the file's stem; each page is a section ``"page N"``.

    Args:
        path: the file.
        data: its bytes.

    Returns:
        The text, title, page sections and ``{"pages": N}``.

    Raises:
        FileError: not a PDF, truncated, corrupt, encrypted, no pages or no text layer.
    """
    import pypdf  # imported here: only PDF ingestion pays for it
    from pypdf.errors import DependencyError, FileNotDecryptedError, PdfReadError

    if b"%PDF-" not in data[:1024]:
        raise FileError(str(path), "not a PDF (no %PDF- header)")
    truncated = b"%%EOF" not in data[-2048:]

    def fail(reason: str) -> FileError:
        return FileError(str(path), "truncated PDF (no %EOF marker)" if truncated else reason)

    try:
        reader = pypdf.PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            try:
                # Many PDFs are encrypted only against editing, with an empty user password.
                if not reader.decrypt(""):
                    raise FileError(str(path), "encrypted PDF (password required)")
            except (FileNotDecryptedError, NotImplementedError, DependencyError) as e:
                raise FileError(str(path), f"encrypted PDF ({describe(e)})") from None
        pages = [(page.extract_text() or "").strip() for page in reader.pages]
        title = _title(reader)
    except FileError:
        raise
    except PdfReadError as e:
        raise fail(f"corrupt PDF ({describe(e)})") from None
    except Exception as e:  # noqa: BLE001
        raise fail(f"could not parse PDF: {describe(e)}") from None
    if not pages:
        raise fail("PDF has no pages")
    if not any(pages):
        raise fail("PDF has no text layer (scanned? run OCR first)")
    sections: list[tuple[int, str]] = []
    offset = 0
    for n, page_text in enumerate(pages, start=1):
        sections.append((offset, f"page {n}"))
        offset += len(page_text) + 2
    return Parsed("\n\n".join(pages), title or path.stem, tuple(sections), {"pages": len(pages)})


def _title(reader: pypdf.PdfReader) -> str:
    try:
        meta = reader.metadata
        return " ".join(str(meta.title or "").split()) if meta is not None else ""
    except Exception:  # noqa: BLE001 - a broken info dictionary only costs the title
        return ""
