"""Find files to ingest and turn each one into documents.

Two verbs: :func:`iter_files` walks the paths a user named and yields the
files worth loading (or a :class:`LoadFailure` saying why one was not), and
:func:`load_file` turns one file into :class:`~rag.types.Document` objects.

Bad input is normal here: every failure ends as a one-line reason, never as a
traceback. A whole file that cannot be used raises :class:`~rag.errors.FileError`;
one bad line of a JSONL corpus is yielded as a :class:`LoadFailure` and the
rest of the file goes on.
"""

from __future__ import annotations

import codecs
import errno
import fnmatch
import io
import json
import logging
import os
import re
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from markdown_it import MarkdownIt
from markdown_it.token import Token
from selectolax.lexbor import LexborHTMLParser, LexborNode

from rag.errors import FileError
from rag.types import Document, JsonDict

# pypdf logs a warning for every small defect it repairs; the ingest report
# already says what matters, so only its errors are let through.
logging.getLogger("pypdf").setLevel(logging.ERROR)

FORMATS: dict[str, str] = {
    ".txt": "txt",
    ".md": "md",
    ".markdown": "md",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
    ".jsonl": "jsonl",
}
"""Supported file suffixes (lower case) and the format name each one maps to."""

MAX_HTML_DEPTH = 4096
"""Deepest tag nesting accepted in HTML; lexbor's parse time grows with depth squared."""

_SIZE_SETTING = "RAG_INGEST__MAX_FILE_BYTES"
_SNIFF_BYTES = 8192
_MAX_REASON_CHARS = 300


@dataclass(frozen=True)
class LoadFailure:
    """A file, or one line of a JSONL file, that could not be loaded.

    Attributes:
        path: the file, or ``"<file>:<line number>"`` for one JSONL line.
        reason: why, on one line, e.g. ``"encrypted PDF"``.
    """

    path: str
    reason: str


# --------------------------------------------------------------------------- finding files


def iter_files(
    paths: list[Path],
    include: list[str] | None = None,
    exclude: list[str] | None = None,
) -> Iterator[Path | LoadFailure]:
    """Yield the files to load under ``paths``, in a deterministic order.

    A file named directly is always yielded if its type is supported (the
    globs do not apply to it). A directory is walked recursively, entries
    sorted by name; from it only files with a supported suffix are picked,
    others are skipped silently. Symbolic links are followed; a link to a
    directory already walked (a loop or a second way in) and a dangling link
    are reported, never followed again. A file reached twice is yielded once.

    Args:
        paths: files and directories, as the user named them.
        include: fnmatch globs; when given, a file under a directory is kept
            only if one matches its path relative to that directory or its
            bare name (``"*.md"``, ``"guides/*"``).
        exclude: fnmatch globs, matched the same way, that drop a file; a
            directory that matches is not entered.

    Yields:
        A path to pass to :func:`load_file`, or a :class:`LoadFailure` for a
        path that cannot be loaded (missing, dangling link, symlink loop,
        unsupported type named directly, not a regular file, unreadable
        directory).
    """
    seen_files: set[tuple[int, int]] = set()
    for root in paths:
        root = Path(root)
        st, failure = _stat(root)
        if failure is not None:
            yield failure
        elif stat.S_ISDIR(st.st_mode):
            yield from _walk(root, st, include or [], exclude or [], seen_files)
        else:
            yield from _check_file(root, st, seen_files, direct=True)


def _walk(
    root: Path,
    root_st: os.stat_result,
    include: list[str],
    exclude: list[str],
    seen_files: set[tuple[int, int]],
) -> Iterator[Path | LoadFailure]:
    # An explicit stack, not recursion: depth is whatever the file system holds.
    visited_dirs = {(root_st.st_dev, root_st.st_ino)}
    stack: list[Iterator[os.DirEntry[str]]] = []
    entries, failure = _list_dir(root)
    if failure is not None:
        yield failure
        return
    stack.append(iter(entries))
    while stack:
        entry = next(stack[-1], None)
        if entry is None:
            stack.pop()
            continue
        path = Path(entry.path)
        rel = path.relative_to(root).as_posix()
        st, failure = _stat(path)
        if failure is not None:
            if _wanted(rel, entry.name, include, exclude):
                yield failure
            continue
        if stat.S_ISDIR(st.st_mode):
            if _matches(rel, entry.name, exclude):
                continue
            key = (st.st_dev, st.st_ino)
            if key in visited_dirs:
                yield LoadFailure(str(path), "symlink to a directory already walked (loop or duplicate), skipped")
                continue
            visited_dirs.add(key)
            entries, failure = _list_dir(path)
            if failure is not None:
                yield failure
            else:
                stack.append(iter(entries))
        elif _wanted(rel, entry.name, include, exclude):
            yield from _check_file(path, st, seen_files, direct=False)


def _list_dir(path: Path) -> tuple[list[os.DirEntry[str]], LoadFailure | None]:
    try:
        with os.scandir(path) as it:
            return sorted(it, key=lambda e: e.name), None
    except OSError as e:
        return [], LoadFailure(str(path), f"unreadable directory: {_os_reason(e)}")


def _stat(path: Path) -> tuple[os.stat_result, LoadFailure | None]:
    """Stat through links, turning each way it can fail into a reason."""
    try:
        return os.stat(path), None
    except OSError as e:
        if os.path.islink(path):
            if e.errno == errno.ELOOP:
                return _NO_STAT, LoadFailure(str(path), "symlink loop")
            try:
                target = os.readlink(path)
            except OSError:
                target = "?"
            if isinstance(e, FileNotFoundError):
                return _NO_STAT, LoadFailure(str(path), f"dangling symlink (target {target!r} does not exist)")
        if isinstance(e, FileNotFoundError):
            return _NO_STAT, LoadFailure(str(path), "no such file or directory")
        return _NO_STAT, LoadFailure(str(path), f"unreadable: {_os_reason(e)}")


_NO_STAT = os.stat_result((0,) * 10)


def _wanted(rel: str, name: str, include: list[str], exclude: list[str]) -> bool:
    if Path(name).suffix.lower() not in FORMATS:
        return False
    if include and not _matches(rel, name, include):
        return False
    return not _matches(rel, name, exclude)


def _matches(rel: str, name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(rel, p) or fnmatch.fnmatchcase(name, p) for p in patterns)


def _check_file(
    path: Path, st: os.stat_result, seen_files: set[tuple[int, int]], *, direct: bool
) -> Iterator[Path | LoadFailure]:
    if direct and path.suffix.lower() not in FORMATS:
        yield LoadFailure(str(path), _unsupported(path))
        return
    if not stat.S_ISREG(st.st_mode):
        yield LoadFailure(str(path), f"not a regular file ({_file_kind(st.st_mode)})")
        return
    if not _encodable(str(path)):
        # The database stores names as UTF-8; a name with undecodable bytes would fail the whole ingest there.
        yield LoadFailure(_printable(path), "file name is not valid UTF-8; rename the file")
        return
    key = (st.st_dev, st.st_ino)
    if key not in seen_files:
        seen_files.add(key)
        yield path


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _printable(path: Path) -> str:
    """The path with bytes that are not UTF-8 shown as ``\\xNN`` escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _file_kind(mode: int) -> str:
    kinds = {
        stat.S_ISFIFO: "named pipe",
        stat.S_ISSOCK: "socket",
        stat.S_ISCHR: "character device",
        stat.S_ISBLK: "block device",
        stat.S_ISDIR: "directory",
    }
    return next((name for test, name in kinds.items() if test(mode)), "special file")


def _unsupported(path: Path) -> str:
    supported = " ".join(sorted(FORMATS))
    suffix = path.suffix.lower()
    what = suffix if suffix else "(no extension)"
    return f"unsupported file type {what} (supported: {supported})"


# --------------------------------------------------------------------------- loading


def load_file(path: Path, max_bytes: int) -> Iterator[Document | LoadFailure]:
    """Load one file as documents.

    Whole-file checks (type, size, emptiness, encoding, parsing) run before
    this returns, so a whole-file failure raises here. A JSONL file is then
    streamed line by line: a bad line is yielded as a :class:`LoadFailure`
    named ``"<path>:<line>"`` and loading goes on.

    Single-document files (.txt .md .html .pdf) give one document whose
    ``external_id`` and ``source`` are the resolved path, with metadata
    ``path``, ``format`` and ``modified`` (mtime, ISO-8601 UTC); PDFs add
    ``pages``. JSONL files follow the BEIR corpus format, one
    ``{"_id", "title", "text", "metadata"?}`` object per line, and give one
    document per line with ``source`` = ``str(path)``.

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
    fmt = FORMATS.get(path.suffix.lower())
    with _guard(path):
        if fmt is None:
            raise FileError(str(path), _unsupported(path))
        st = _stat_regular(path)
        if fmt == "jsonl":
            return _guarded_iter(path, _load_jsonl(path, st, max_bytes))
        if st.st_size > max_bytes:
            raise FileError(str(path), _size_reason(st.st_size, max_bytes, _SIZE_SETTING))
        if st.st_size == 0:
            raise FileError(str(path), "empty file")
        data = _read(path, max_bytes)
        text, title, sections, extra = _PARSERS[fmt](path, data)
        if not text.strip():
            raise FileError(str(path), "no text (empty or whitespace only)")
        source = str(path.resolve())
        metadata: JsonDict = {"path": source, "format": fmt, "modified": _iso_mtime(st), **extra}
        doc = Document(source, source, title, text, metadata, tuple(sections))
        return iter([doc])


def _stat_regular(path: Path) -> os.stat_result:
    st, failure = _stat(path)
    if failure is not None:
        raise FileError(str(path), failure.reason)
    if not stat.S_ISREG(st.st_mode):
        raise FileError(str(path), f"not a regular file ({_file_kind(st.st_mode)})")
    return st


def _read(path: Path, max_bytes: int) -> bytes:
    with open(path, "rb") as f:
        data = f.read(max_bytes + 1)
    # The file may have grown since it was measured.
    if len(data) > max_bytes:
        raise FileError(str(path), _size_reason(len(data), max_bytes, _SIZE_SETTING))
    return data


def _size_reason(size: int, limit: int, setting: str) -> str:
    shown, limit_shown = _human_size(size), _human_size(limit)
    if shown == limit_shown:
        shown, limit_shown = f"{size} bytes", f"{limit} bytes"
    return f"file is {shown}, over the {limit_shown} limit ({setting})"


def _human_size(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1_000_000:.1f} MB"
    return f"{n / 1000:.1f} kB" if n >= 1000 else f"{n} bytes"


def _iso_mtime(st: os.stat_result) -> str:
    return datetime.fromtimestamp(st.st_mtime, tz=timezone.utc).isoformat(timespec="seconds")


@contextmanager
def _guard(path: Path) -> Iterator[None]:
    """Turn any exception into a FileError with a one-line reason."""
    try:
        yield
    except FileError as e:
        raise FileError(e.path, _one_line(e.reason)) from None
    except OSError as e:
        raise FileError(str(path), f"unreadable: {_os_reason(e)}") from None
    except Exception as e:  # noqa: BLE001 - a bad file must never surface as a traceback
        raise FileError(str(path), f"could not parse: {_describe(e)}") from None


def _guarded_iter(path: Path, it: Iterator[Document | LoadFailure]) -> Iterator[Document | LoadFailure]:
    with _guard(path):
        yield from it


def _describe(e: BaseException) -> str:
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return _one_line(f"{type(e).__name__}: {first}" if first else type(e).__name__)


def _one_line(reason: str) -> str:
    reason = " ".join(reason.split())
    if len(reason) > _MAX_REASON_CHARS:
        reason = reason[: _MAX_REASON_CHARS - 3] + "..."
    return reason or "unknown error"


def _os_reason(e: OSError) -> str:
    if isinstance(e, PermissionError):
        return "permission denied"
    if isinstance(e, IsADirectoryError):
        return "is a directory"
    return _one_line((e.strerror or str(e)).lower())


def _decode(path: Path, data: bytes) -> str:
    """Decode UTF-8 (with or without BOM) and nothing else: no encoding is guessed."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise FileError(str(path), "UTF-16 encoded (only UTF-8 is supported)")
    if b"\x00" in data:
        raise FileError(str(path), "binary file")
    bom = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        text = data[bom:].decode("utf-8")
    except UnicodeDecodeError as e:
        offset = bom + e.start
        raise FileError(str(path), f"not valid UTF-8 (byte 0x{data[offset]:02x} at offset {offset})") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


Parsed = tuple[str, str, list[tuple[int, str]], JsonDict]


def _parse_txt(path: Path, data: bytes) -> Parsed:
    return _decode(path, data), path.stem, [], {}


# --------------------------------------------------------------------------- Markdown

_FRONT_MATTER = re.compile(r"\A---\n(.*?\n)(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.DOTALL)
# Only headings need inline parsing, and inline rules hold the slow cases on
# hostile input (200 kB of "[" takes seconds): the block pass skips them.
_md_blocks = MarkdownIt("commonmark").disable("inline")
_md_inline = MarkdownIt("commonmark")
_MAX_HEADING_CHARS = 1000


def _parse_md(path: Path, data: bytes) -> Parsed:
    text = _decode(path, data)
    title = ""
    # YAML front matter is metadata, not prose: drop it, keep its title.
    front = _FRONT_MATTER.match(text)
    if front:
        text = text[front.end() :]
        m = re.search(r"^title:[ \t]*(.+?)[ \t]*$", front.group(1), re.MULTILINE)
        title = m.group(1).strip("'\"") if m else ""
    line_starts = [0]
    for m in re.finditer("\n", text):
        line_starts.append(m.end())
    sections: list[tuple[int, str]] = []
    path_stack: list[tuple[int, str]] = []
    tokens = _md_blocks.parse(text)
    for i, tok in enumerate(tokens):
        if tok.type != "heading_open" or tok.map is None:
            continue
        level = int(tok.tag[1:])
        heading = _inline_text(tokens[i + 1]) if i + 1 < len(tokens) else ""
        if not heading:
            continue
        if level == 1 and not title:
            title = heading
        while path_stack and path_stack[-1][0] >= level:
            path_stack.pop()
        path_stack.append((level, heading))
        sections.append((line_starts[tok.map[0]], " > ".join(h for _, h in path_stack)))
    return text, title or path.stem, sections, {}


def _inline_text(tok: Token) -> str:
    """Plain text of an inline token: the words without the markup."""
    if tok.type != "inline":
        return ""
    parsed = _md_inline.parseInline(tok.content[:_MAX_HEADING_CHARS])
    children = parsed[0].children if parsed else []
    parts = [
        " " if c.type in ("softbreak", "hardbreak") else c.content
        for c in children or []
        if c.type in ("text", "code_inline", "softbreak", "hardbreak")
    ]
    return " ".join("".join(parts).split())


# --------------------------------------------------------------------------- HTML

_DROP_TAGS = [
    "script", "style", "noscript", "template", "head", "header", "footer", "nav", "aside",
    "iframe", "svg", "canvas", "object", "embed", "button", "select", "dialog",
]  # fmt: skip
_BLOCK_TAGS = (
    "p, div, section, article, main, h1, h2, h3, h4, h5, h6, li, ul, ol, dl, dt, dd, "
    "table, tr, blockquote, pre, figure, figcaption, details, summary, address, hr, "
    "caption, fieldset, center"
)
_PARA = "\ue000"  # private-use code points mark block and line breaks during extraction
_LINE = "\ue001"
# No "<" inside a tag: each match attempt then stops at the next "<", so the scan stays linear.
_TAG = re.compile(rb"<(/?)([a-zA-Z][a-zA-Z0-9]*)[^<>]*?(/?)>")
_RAW_TEXT_TAGS = (b"script", b"style", b"textarea", b"title", b"xmp", b"plaintext")
# Elements that never nest (void) or whose end tag may be left out: they do not add depth.
_FLAT_TAGS = frozenset(
    b"area base br col embed hr img input link meta source track wbr p li dt dd tr td th "
    b"option optgroup thead tbody tfoot colgroup caption rb rt rtc rp html head body".split()
)
_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([a-zA-Z0-9_.:-]+)""", re.IGNORECASE)


def _html_depth_exceeds(data: bytes, limit: int) -> bool:
    """Estimate tag nesting depth without building a tree, in linear time."""
    depth = 0
    for tag in _tags_outside_raw_text(data.lower()):
        name = tag.group(2)
        if name in _FLAT_TAGS or tag.group(3):
            continue
        depth = max(depth - 1, 0) if tag.group(1) else depth + 1
        if depth > limit:
            return True
    return False


def _tags_outside_raw_text(data: bytes) -> Iterator[re.Match[bytes]]:
    """Tags of ``data`` (lower case), skipping comments and script/style bodies.

    A comment or script that never closes runs to the end of the file, as in a
    browser; the search moves forward only, so hostile input stays linear.
    """
    pos = 0
    while (tag := _TAG.search(data, pos)) is not None:
        comment = data.find(b"<!--", pos, tag.start())
        if comment != -1:
            end = data.find(b"-->", comment + 4)
            if end == -1:
                return
            pos = end + 3
            continue
        yield tag
        pos = tag.end()
        name = tag.group(2)
        if name in _RAW_TEXT_TAGS and not tag.group(1):
            end = data.find(b"</" + name, pos)
            if end == -1:
                return
            pos = end


def _decode_html(path: Path, data: bytes) -> str:
    try:
        return _decode(path, data)
    except FileError as utf8_error:
        # An HTML page may declare its encoding; honour it, but never guess one.
        m = _CHARSET.search(data[:4096])
        if m is None or b"\x00" in data:
            raise
        name = m.group(1).decode("ascii")
        try:
            codecs.lookup(name)
        except LookupError:
            raise FileError(str(path), f"{utf8_error.reason}; declared charset {name!r} is unknown") from None
        try:
            return data.decode(name).replace("\r\n", "\n").replace("\r", "\n")
        except UnicodeDecodeError as e:
            raise FileError(str(path), f"not valid {name} (declared charset) at offset {e.start}") from None


def _parse_html(path: Path, data: bytes) -> Parsed:
    if _html_depth_exceeds(data, MAX_HTML_DEPTH):
        raise FileError(str(path), f"HTML nested too deeply (over {MAX_HTML_DEPTH} levels)")
    source = _decode_html(path, data).replace(_PARA, " ").replace(_LINE, " ")
    tree = LexborHTMLParser(source)
    title = _node_text(tree.css_first("title")) or _node_text(tree.css_first("h1")) or path.stem
    tree.strip_tags(_DROP_TAGS)
    main = tree.css_first("main") or tree.css_first("[role=main]") or tree.css_first("article") or tree.body
    text = _block_text(main) if main is not None else ""
    if not text:
        raise FileError(str(path), "HTML has no main text (only scripts, styles, navigation or markup)")
    return text, title, [], {}


def _node_text(node: LexborNode | None) -> str:
    return " ".join(node.text(deep=True).split()) if node is not None else ""


def _block_text(root: LexborNode) -> str:
    """Visible text of ``root``, one paragraph per block element, blank lines between."""
    for pre in root.css("pre"):
        pre.replace_with(_PARA + (pre.text(deep=True) or "").replace("\n", _LINE) + _PARA)
    for node in root.css(_BLOCK_TAGS):
        node.insert_before(_PARA)
        node.insert_after(_PARA)
    for br in root.css("br"):
        br.replace_with(_LINE)
    raw = root.text(deep=True) or ""
    paragraphs = []
    for block in raw.split(_PARA):
        lines = (" ".join(line.split()) for line in block.split(_LINE))
        para = "\n".join(line for line in lines if line)
        if para:
            paragraphs.append(para)
    return "\n\n".join(paragraphs)


# --------------------------------------------------------------------------- PDF


def _parse_pdf(path: Path, data: bytes) -> Parsed:
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
                raise FileError(str(path), f"encrypted PDF ({_describe(e)})") from None
        pages = [(page.extract_text() or "").strip() for page in reader.pages]
        title = ""
        try:
            meta = reader.metadata
            title = " ".join(str(meta.title or "").split()) if meta is not None else ""
        except Exception:  # noqa: BLE001 - a broken info dictionary only costs the title
            title = ""
    except FileError:
        raise
    except PdfReadError as e:
        raise fail(f"corrupt PDF ({_describe(e)})") from None
    except Exception as e:  # noqa: BLE001
        raise fail(f"could not parse PDF: {_describe(e)}") from None
    if not pages:
        raise fail("PDF has no pages")
    if not any(pages):
        raise fail("PDF has no text layer (scanned? run OCR first)")
    sections: list[tuple[int, str]] = []
    offset = 0
    for n, page_text in enumerate(pages, start=1):
        sections.append((offset, f"page {n}"))
        offset += len(page_text) + 2
    return "\n\n".join(pages), title or path.stem, sections, {"pages": len(pages)}


_PARSERS: dict[str, Callable[[Path, bytes], Parsed]] = {
    "txt": _parse_txt,
    "md": _parse_md,
    "html": _parse_html,
    "pdf": _parse_pdf,
}


# --------------------------------------------------------------------------- JSONL (BEIR corpus)


def _load_jsonl(path: Path, st: os.stat_result, max_bytes: int) -> Iterator[Document | LoadFailure]:
    if st.st_size == 0:
        raise FileError(str(path), "empty file")
    f = open(path, "rb")  # noqa: SIM115 - closed by the generator below
    try:
        head = f.read(_SNIFF_BYTES)
        if b"\x00" in head:
            raise FileError(str(path), "binary file")
        f.seek(0)
    except BaseException:
        f.close()
        raise
    return _jsonl_lines(path, f, max_bytes)


def _jsonl_lines(path: Path, f: io.BufferedReader, max_bytes: int) -> Iterator[Document | LoadFailure]:
    source = str(path)
    loaded = 0
    failed = 0
    with f:
        lineno = 0
        offset = 0
        while True:
            raw = f.readline(max_bytes + 1)
            if not raw:
                break
            lineno += 1
            start = offset
            offset += len(raw)
            if len(raw) > max_bytes and not raw.endswith(b"\n"):
                offset += _skip_line(f)
                failed += 1
                yield LoadFailure(
                    f"{path}:{lineno}",
                    f"line {lineno}: longer than the {_human_size(max_bytes)} limit ({_SIZE_SETTING})",
                )
                continue
            if lineno == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[3:]
                start += 3
            result = _jsonl_document(raw, lineno, start, source)
            if result is None:
                continue
            if isinstance(result, str):
                failed += 1
                yield LoadFailure(f"{path}:{lineno}", _one_line(result))
            else:
                loaded += 1
                yield result
    if loaded == 0 and failed == 0:
        raise FileError(source, "no documents (only blank lines)")


def _skip_line(f: io.BufferedReader) -> int:
    skipped = 0
    while chunk := f.readline(1 << 20):
        skipped += len(chunk)
        if chunk.endswith(b"\n"):
            break
    return skipped


def _jsonl_document(raw: bytes, lineno: int, start: int, source: str) -> Document | str | None:
    """One BEIR line as a document, a failure reason, or None for a blank line."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return f"line {lineno}: not valid UTF-8 (byte 0x{raw[e.start]:02x} at offset {start + e.start})"
    if not line.strip():
        return None
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        return f"line {lineno}: invalid JSON ({e.msg})"
    except RecursionError:
        return f"line {lineno}: invalid JSON (nested too deeply)"
    if not isinstance(obj, dict):
        return f"line {lineno}: expected a JSON object, got {_json_type(obj)}"
    doc_id = obj.get("_id")
    if isinstance(doc_id, int) and not isinstance(doc_id, bool):
        doc_id = str(doc_id)
    if not isinstance(doc_id, str) or not doc_id.strip():
        return f"line {lineno}: missing or empty _id"
    title = obj.get("title")
    text = obj.get("text")
    metadata = obj.get("metadata")
    for name, value in (("title", title), ("text", text)):
        if value is not None and not isinstance(value, str):
            return f"line {lineno}: {name} is {_json_type(value)}, not a string"
    if metadata is not None and not isinstance(metadata, dict):
        return f"line {lineno}: metadata is {_json_type(metadata)}, not an object"
    title = title or ""
    text = text or ""
    if not text.strip() and not title.strip():
        return f"line {lineno}: text and title are both empty"
    return Document(doc_id, source, title, text, dict(metadata or {}))


def _json_type(value: object) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")
