"""Builders for test files: a hand-written text PDF and a corpus of hostile files.

Import with ``from tests.indexer.badfiles import make_bad_corpus, make_text_pdf``.
"""

from __future__ import annotations

import io
import json
import os
import random
from pathlib import Path

CORPUS_MAX_BYTES = 256 * 1024
"""The ``max_bytes`` to load :func:`make_bad_corpus` files with: ``big.txt`` is over it."""


def _pdf_string(text: str) -> bytes:
    escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    return b"(" + escaped.encode("latin-1") + b")"


def make_text_pdf(pages: list[str], title: str | None = None) -> bytes:
    """Build a small valid PDF whose pages carry a real text layer.

    pypdf can write pages but not text, so the objects, content streams and
    cross-reference table are written here by hand.

    Args:
        pages: the text of each page; newlines start new lines; latin-1 only.
            An empty string gives a page with no text.
        title: the document title in the info dictionary, if any.

    Returns:
        The bytes of the PDF file.
    """
    n = len(pages)
    # Object numbers: 1 catalog, 2 page tree, 3 font, then page/content pairs, then info.
    page_ids = [4 + 2 * i for i in range(n)]
    info_id = 4 + 2 * n
    objects: dict[int, bytes] = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        2: b"<< /Type /Pages /Kids ["
        + b" ".join(b"%d 0 R" % pid for pid in page_ids)
        + b"] /Count %d >>" % n,
        3: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    }
    for pid, text in zip(page_ids, pages):
        ops = [b"BT", b"/F1 12 Tf", b"14 TL", b"72 720 Td"]
        for line in text.split("\n"):
            ops.append(_pdf_string(line) + b" Tj T*")
        ops.append(b"ET")
        stream = b"\n".join(ops) if text else b""
        objects[pid] = (
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % (pid + 1)
        )
        objects[pid + 1] = b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream"
    if title is not None:
        objects[info_id] = b"<< /Title " + _pdf_string(title) + b" >>"
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets: dict[int, int] = {}
    for num in sorted(objects):
        offsets[num] = out.tell()
        out.write(b"%d 0 obj\n" % num + objects[num] + b"\nendobj\n")
    xref_at = out.tell()
    size = max(objects) + 1
    out.write(b"xref\n0 %d\n" % size)
    out.write(b"0000000000 65535 f \n")
    for num in range(1, size):
        if num in offsets:
            out.write(b"%010d 00000 n \n" % offsets[num])
        else:
            out.write(b"0000000000 65535 f \n")
    trailer = b"<< /Size %d /Root 1 0 R" % size
    if title is not None:
        trailer += b" /Info %d 0 R" % info_id
    out.write(b"trailer\n" + trailer + b" >>\nstartxref\n%d\n%%%%EOF\n" % xref_at)
    return out.getvalue()


def make_encrypted_pdf(user_password: str = "secret", owner_password: str = "owner") -> bytes:
    """A one-page text PDF encrypted with RC4 (pypdf needs no extra package for it).

    Args:
        user_password: password needed to open it; "" makes it open for anyone.
        owner_password: password for full rights.

    Returns:
        The bytes of the PDF file.
    """
    import pypdf

    reader = pypdf.PdfReader(io.BytesIO(make_text_pdf(["Top secret text."])))
    writer = pypdf.PdfWriter()
    for page in reader.pages:
        writer.add_page(page)
    writer.encrypt(user_password=user_password, owner_password=owner_password, algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def make_blank_pdf() -> bytes:
    """A one-page PDF with no text layer, as a scanner without OCR would make."""
    import pypdf

    writer = pypdf.PdfWriter()
    writer.add_blank_page(width=612, height=792)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    path.write_bytes(data)
    return path


def make_bad_corpus(root: Path) -> dict:
    """Fill ``root`` with hostile and broken files mixed with good ones.

    Load the files with ``max_bytes=CORPUS_MAX_BYTES``. Paths are built as
    ``root / relative`` so they compare equal to what ``iter_files([root])``
    yields.

    Args:
        root: an empty (or missing) directory.

    Returns:
        A dict with:
            ``good``: files that load as exactly one document each;
            ``bad``: files (or links) that must end as a failure, either a
            ``LoadFailure`` from ``iter_files`` or a ``FileError`` from ``load_file``;
            ``partial``: ``{path: (documents, failed_lines)}`` for JSONL files
            with some bad lines;
            ``ignored``: files that a directory walk skips silently (unsupported
            suffix) but that fail when named directly;
            ``max_bytes``: the limit to load with.
    """
    rng = random.Random(42)
    root.mkdir(parents=True, exist_ok=True)
    good: list[Path] = []
    bad: list[Path] = []
    partial: dict[Path, tuple[int, int]] = {}
    ignored: list[Path] = []

    # ---- good files, some with awkward names
    good.append(_write(root / "guide.md", "# Guide\n\nIntro text.\n\n## Install\n\nRun the installer.\n"))
    good.append(_write(root / "with space.md", "Plain words in a file with a space in its name.\n"))
    good.append(_write(root / "ünïcødé 文档.txt", "Unicode name, unicode text: naïve café 日本語.\n"))
    good.append(_write(root / "-dash #hash %pct.txt", "Leading dash and shell characters.\n"))
    good.append(_write(root / "UPPER.MD", "# Shouting\n\nUpper-case suffix still counts.\n"))
    good.append(_write(root / "crlf.txt", b"Windows line endings.\r\nSecond line.\r\n"))
    good.append(_write(root / "bom.txt", b"\xef\xbb\xbfUTF-8 with a byte order mark.\n"))
    good.append(_write(root / "control.txt", "Escape codes \x1b[31mred\x1b[0m and a bell \x07 are text.\n"))
    good.append(
        _write(
            root / "page.html",
            "<html><head><title>Page</title><style>p{}</style></head><body>"
            "<nav>Home | About</nav><main><h1>Page</h1><p>Main text.</p></main>"
            "<footer>Copyright</footer></body></html>",
        )
    )
    good.append(
        _write(
            root / "latin1-declared.htm",
            '<html><head><meta charset="iso-8859-1"><title>Caf\xe9</title></head>'.encode("latin-1")
            + "<body><p>Caf\xe9 cr\xe8me.</p></body></html>".encode("latin-1"),
        )
    )
    good.append(_write(root / "report.pdf", make_text_pdf(["First page text.", "Second page text."], title="Report")))
    good.append(_write(root / "open-encrypted.pdf", make_encrypted_pdf(user_password="")))
    good.append(_write(root / "deep-quotes.md", ">" * 5000 + " deeply quoted\n\n" + "[" * 5000 + "\n"))
    good.append(_write(root / "x.txt" / "inside.md", "A file inside a directory named like a file.\n"))
    try:
        good.append(_write(root / "new\nline.txt", "A newline in the file name.\n"))
    except OSError:
        pass

    # ---- whole-file failures
    junk = bytes(rng.randrange(256) for _ in range(2048))
    bad.append(_write(root / "binary.txt", b"\x00" + junk))
    bad.append(_write(root / "binary.md", b"\x7fELF\x02\x01\x01\x00" + junk))
    bad.append(_write(root / "binary.jsonl", b"\x00\x01\x02" + junk))
    bad.append(_write(root / "empty.md", b""))
    bad.append(_write(root / "empty.jsonl", b""))
    bad.append(_write(root / "blank-lines.jsonl", b"\n\n   \n"))
    bad.append(_write(root / "whitespace.txt", b"   \n\n\t \n"))
    bad.append(_write(root / "big.txt", b"word " * (CORPUS_MAX_BYTES // 5 + 100)))
    bad.append(_write(root / "latin1.txt", "Caf\xe9 au lait.\n".encode("latin-1")))
    bad.append(_write(root / "mixed.md", "# Mixed\n\nUTF-8 café, then ".encode() + "latin-1 caf\xe9.\n".encode("latin-1")))
    bad.append(_write(root / "utf16.txt", "UTF-16 text".encode("utf-16")))
    bad.append(_write(root / "front-matter-only.md", "---\ntitle: Nothing\n---\n\n"))
    bad.append(_write(root / "notext.pdf", make_blank_pdf()))
    bad.append(_write(root / "encrypted.pdf", make_encrypted_pdf(user_password="secret")))
    text_pdf = make_text_pdf(["Some text that will be cut off."] * 3)
    bad.append(_write(root / "truncated.pdf", text_pdf[: len(text_pdf) // 3]))
    bad.append(_write(root / "garbage.pdf", junk))
    bad.append(_write(root / "fake.pdf", b"%PDF-1.4\nthis is not really a pdf\n%%EOF\n"))
    bad.append(_write(root / "scripts-only.html", "<html><script>var a = 1;</script><style>p {}</style></html>"))
    bad.append(
        _write(
            root / "nav-only.html",
            "<html><body><header>Logo</header><nav><a href='/'>Home</a></nav><aside>Ads</aside>"
            "<footer>Footer</footer></body></html>",
        )
    )
    bad.append(_write(root / "nested.html", "<html><body>" + "<div>" * 20_000 + "deep" + "</div>" * 20_000))
    bad.append(_write(root / "latin1-undeclared.html", "<p>Caf\xe9</p>".encode("latin-1")))

    # ---- things that are not plain files
    dangling = root / "dangling.md"
    os.symlink(root / "does-not-exist.md", dangling)
    bad.append(dangling)
    self_loop = root / "selfloop.txt"
    os.symlink(self_loop.name, self_loop)
    bad.append(self_loop)
    (root / "sub").mkdir()
    good.append(_write(root / "sub" / "nested-good.txt", "Good file in a subdirectory.\n"))
    loop = root / "sub" / "loop"
    os.symlink("..", loop)  # a directory link to its grandparent: a cycle
    bad.append(loop)
    if hasattr(os, "mkfifo"):
        fifo = root / "pipe.txt"
        os.mkfifo(fifo)
        bad.append(fifo)
    if os.geteuid() != 0:  # root reads through chmod 000
        unreadable = _write(root / "unreadable.txt", "secret\n")
        unreadable.chmod(0)
        bad.append(unreadable)

    # ---- JSONL with good and broken lines
    lines = [
        json.dumps({"_id": "d1", "title": "One", "text": "First document.", "metadata": {"k": 1}}),
        "{not json",
        json.dumps({"title": "no id", "text": "x"}),
        json.dumps({"_id": "", "text": "empty id"}),
        json.dumps({"_id": "d2", "text": 42}),
        json.dumps({"_id": "d3", "title": "", "text": "  "}),
        json.dumps(["an", "array"]),
        "",
        json.dumps({"_id": 7, "title": "Numeric id", "text": "Second document."}),
        "[" * 3000,
    ]
    corpus = _write(root / "corpus.jsonl", "\n".join(lines).encode() + b"\n" + b'{"_id": "d4", "text": "caf\xe9"}\n')
    partial[corpus] = (2, 8)
    long_line = json.dumps({"_id": "big", "text": "w " * CORPUS_MAX_BYTES})
    ok_line = json.dumps({"_id": "small", "text": "Small one."})
    partial[_write(root / "long-line.jsonl", long_line + "\n" + ok_line + "\n")] = (1, 1)

    # ---- skipped by a walk, refused when named
    ignored.append(_write(root / "notes.xyz", "unsupported suffix\n"))
    ignored.append(_write(root / "Makefile", "all:\n"))
    ignored.append(_write(root / "archive.tar.gz", junk))

    return {"good": good, "bad": bad, "partial": partial, "ignored": ignored, "max_bytes": CORPUS_MAX_BYTES}
