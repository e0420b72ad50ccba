"""Tests for indexer.loaders: every format, the directory walk, and hostile files."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from indexer.loaders import registry as loaders
from indexer.sources import iter_files, load_file
from rag.errors import FileError
from rag.types import Document, LoadFailure
from tests.indexer.badfiles import make_blank_pdf, make_bad_corpus, make_encrypted_pdf, make_text_pdf

MAX = 1_000_000


def _write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def _one(path: Path, max_bytes: int = MAX) -> Document:
    items = list(load_file(path, max_bytes))
    assert len(items) == 1 and isinstance(items[0], Document), items
    return items[0]


def _reason(path: Path, max_bytes: int = MAX) -> str:
    with pytest.raises(FileError) as info:
        list(load_file(path, max_bytes))
    assert info.value.path == str(path)
    return info.value.reason


def _assert_one_line(reason: str) -> None:
    assert reason.strip() and "\n" not in reason and "Traceback" not in reason, reason


# ---------------------------------------------------------------- formats


def test_txt_loads_with_stem_title_and_metadata(tmp_path: Path) -> None:
    path = _write(tmp_path / "notes.txt", "line one\r\nline two\r\n")
    doc = _one(path)
    assert doc.text == "line one\nline two\n"
    assert doc.title == "notes"
    assert doc.external_id == doc.source == str(path.resolve())
    assert doc.metadata["path"] == str(path.resolve())
    assert doc.metadata["format"] == "txt"
    assert doc.metadata["modified"].endswith("+00:00")
    assert doc.sections == ()


def test_markdown_sections_point_at_headings(tmp_path: Path) -> None:
    text = (
        "# Install guide\n\nIntro.\n\n"
        "## From *source*\n\nBuild it.\n\n"
        "### Linux\n\nUse make.\n\n"
        "## From `pip`\n\nEasy.\n\n"
        "```\n# not a heading\n```\n"
    )
    doc = _one(_write(tmp_path / "guide.md", text))
    assert doc.title == "Install guide"
    assert doc.text == text
    assert [s for _, s in doc.sections] == [
        "Install guide",
        "Install guide > From source",
        "Install guide > From source > Linux",
        "Install guide > From pip",
    ]
    starts = [start for start, _ in doc.sections]
    assert starts == sorted(starts)
    assert doc.text[starts[1] :].startswith("## From *source*")
    assert doc.text[starts[3] :].startswith("## From `pip`")
    assert doc.metadata["format"] == "md"


def test_markdown_front_matter_title_and_stem_fallback(tmp_path: Path) -> None:
    doc = _one(_write(tmp_path / "a.markdown", "---\ntitle: 'From YAML'\ndate: 2024\n---\nBody text.\n"))
    assert doc.title == "From YAML"
    assert doc.text == "Body text.\n"
    assert _one(_write(tmp_path / "plain.md", "No heading here.\n")).title == "plain"


def test_html_keeps_main_text_only(tmp_path: Path) -> None:
    html = """<!doctype html><html><head><title> The  Title </title>
    <style>body { color: red }</style><script>var tracking = 1;</script></head>
    <body><header>Site header</header><nav><a href="/">Home</a> | <a>Docs</a></nav>
    <aside>Related links</aside>
    <div><h1>Heading</h1><p>First   paragraph
    continues here.</p><p>Second<br>line two</p><ul><li>item a</li><li>item b</li></ul>
    <pre>code  line 1
  indented</pre></div>
    <footer>Copyright footer</footer><noscript>Enable JS</noscript></body></html>"""
    doc = _one(_write(tmp_path / "page.html", html))
    assert doc.title == "The Title"
    assert doc.text == (
        "Heading\n\nFirst paragraph continues here.\n\nSecond\nline two\n\nitem a\n\nitem b"
        "\n\ncode line 1\nindented"
    )
    for junk in ("Site header", "Home", "Related", "Copyright", "tracking", "color", "Enable JS"):
        assert junk not in doc.text
    assert doc.metadata["format"] == "html"


def test_html_prefers_main_element_and_h1_title(tmp_path: Path) -> None:
    html = "<body><div>Sidebar words</div><main><h1>Real</h1><p>Body.</p></main></body>"
    doc = _one(_write(tmp_path / "p.htm", html))
    assert doc.title == "Real"
    assert doc.text == "Real\n\nBody."


def test_html_deep_nesting_is_refused_not_crashing(tmp_path: Path) -> None:
    path = _write(tmp_path / "deep.html", "<div>" * 10_000 + "x" + "</div>" * 10_000)
    assert "nested too deeply" in _reason(path)
    shallow = _one(_write(tmp_path / "ok.html", "<div>" * 500 + "fine" + "</div>" * 500))
    assert shallow.text == "fine"


def test_pdf_text_pages_and_title(tmp_path: Path) -> None:
    path = _write(tmp_path / "r.pdf", make_text_pdf(["Page one (text).", "", "Page three."], title="Annual Report"))
    doc = _one(path)
    assert doc.title == "Annual Report"
    assert doc.text == "Page one (text).\n\n\n\nPage three."
    assert doc.metadata["pages"] == 3
    assert doc.metadata["format"] == "pdf"
    assert [s for _, s in doc.sections] == ["page 1", "page 2", "page 3"]
    starts = [start for start, _ in doc.sections]
    assert doc.text[starts[0] :].startswith("Page one")
    assert doc.text[starts[2] :] == "Page three."


def test_pdf_without_title_uses_stem(tmp_path: Path) -> None:
    assert _one(_write(tmp_path / "untitled.pdf", make_text_pdf(["Hello."]))).title == "untitled"


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda: make_encrypted_pdf("secret"), "encrypted PDF"),
        (make_blank_pdf, "PDF has no text layer"),
        (lambda: make_text_pdf(["cut short"] * 3)[:200], "truncated PDF"),
        (lambda: b"%PDF-1.7\n" + bytes(range(1, 256)) * 8 + b"\n%%EOF\n", "PDF"),
        (lambda: b"hello, not a pdf", "not a PDF"),
    ],
    ids=["encrypted", "no-text", "truncated", "corrupt", "no-header"],
)
def test_bad_pdfs_fail_with_a_reason(tmp_path: Path, make, expected: str) -> None:
    reason = _reason(_write(tmp_path / "bad.pdf", make()))
    assert expected in reason
    _assert_one_line(reason)


def test_pdf_encrypted_with_empty_user_password_opens(tmp_path: Path) -> None:
    assert _one(_write(tmp_path / "open.pdf", make_encrypted_pdf(user_password=""))).text == "Top secret text."


def test_jsonl_good_and_broken_lines(tmp_path: Path) -> None:
    lines = [
        json.dumps({"_id": "a", "title": "A", "text": "alpha", "metadata": {"year": 2020}}),
        "{broken",
        json.dumps({"_id": "b", "text": "beta"}),
        json.dumps({"title": "no id"}),
        "",
        json.dumps({"_id": "c", "title": "only a title"}),
        json.dumps({"_id": "d", "text": ["not", "a", "string"]}),
        json.dumps({"_id": "e", "title": "", "text": ""}),
    ]
    path = _write(tmp_path / "corpus.jsonl", "\ufeff" + "\n".join(lines))
    items = list(load_file(path, MAX))
    docs = [i for i in items if isinstance(i, Document)]
    fails = [i for i in items if isinstance(i, LoadFailure)]
    assert [d.external_id for d in docs] == ["a", "b", "c"]
    assert docs[0] == Document("a", str(path), "A", "alpha", {"year": 2020})
    assert docs[1].title == "" and docs[2].text == ""
    assert [f.path for f in fails] == [f"{path}:2", f"{path}:4", f"{path}:7", f"{path}:8"]
    assert fails[0].reason == "line 2: invalid JSON (Expecting property name enclosed in double quotes)"
    assert fails[1].reason == "line 4: missing or empty _id"
    assert fails[2].reason.startswith("line 7: text is an array")
    assert fails[3].reason == "line 8: text and title are both empty"


def test_jsonl_is_streamed_and_limits_each_line(tmp_path: Path) -> None:
    long = json.dumps({"_id": "long", "text": "x" * 5000})
    path = _write(tmp_path / "c.jsonl", long + "\n" + json.dumps({"_id": "ok", "text": "fine"}) + "\n")
    items = list(load_file(path, 1000))
    assert isinstance(items[0], LoadFailure) and "limit" in items[0].reason
    assert isinstance(items[1], Document) and items[1].external_id == "ok"


# ---------------------------------------------------------------- whole-file failures


@pytest.mark.parametrize(
    ("name", "data", "expected"),
    [
        ("e.txt", b"", "empty file"),
        ("w.md", b"  \n\t\n", "no text"),
        ("b.txt", b"abc\x00def", "binary file"),
        ("l.txt", b"ok \xff here", "not valid UTF-8 (byte 0xff at offset 3)"),
        ("m.md", "# Café\n".encode() + b"caf\xe9", "not valid UTF-8 (byte 0xe9 at offset 11)"),
        ("u.txt", "hi".encode("utf-16"), "UTF-16"),
        ("s.html", b"<script>x()</script><style>a{}</style>", "no main text"),
        ("x.xyz", b"data", "unsupported file type .xyz"),
        ("noext", b"data", "unsupported file type (no extension)"),
    ],
)
def test_whole_file_failures(tmp_path: Path, name: str, data: bytes, expected: str) -> None:
    reason = _reason(_write(tmp_path / name, data))
    assert expected in reason
    _assert_one_line(reason)


def test_size_is_checked_before_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path / "big.txt", b"a" * 2000)

    def no_open(*args: object, **kwargs: object) -> None:
        raise AssertionError("file was opened")

    monkeypatch.setattr("builtins.open", no_open)
    assert _reason(path, max_bytes=1000) == "file is 2.0 kB, over the 1.0 kB limit (RAG_INGEST__MAX_FILE_BYTES)"


def test_directory_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "x.txt").mkdir()
    assert "not a regular file (directory)" in _reason(tmp_path / "x.txt")
    assert _reason(tmp_path / "gone.md") == "no such file or directory"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "secret.txt", "x")
    path.chmod(0)
    try:
        assert _reason(path) == "unreadable: permission denied"
    finally:
        path.chmod(0o600)


def test_unexpected_errors_become_file_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(path: Path, data: bytes) -> None:
        raise ValueError("first line\nsecond line")

    monkeypatch.setitem(loaders._PARSERS, "txt", boom)
    reason = _reason(_write(tmp_path / "a.txt", "x"))
    assert reason == "could not parse: ValueError: first line"


# ---------------------------------------------------------------- finding files


def _tree(root: Path) -> None:
    for rel in ["b.md", "a.txt", "skip.xyz", "docs/z.html", "docs/draft-1.md", "docs/deep/c.pdf", "build/out.txt"]:
        _write(root / rel, "x")


def _rel(items: list[Path | LoadFailure], root: Path) -> list[str]:
    return [p.relative_to(root).as_posix() for p in items if isinstance(p, Path)]


def test_walk_is_sorted_and_keeps_supported_files(tmp_path: Path) -> None:
    _tree(tmp_path)
    items = list(iter_files([tmp_path], None, None))
    assert _rel(items, tmp_path) == ["a.txt", "b.md", "build/out.txt", "docs/deep/c.pdf", "docs/draft-1.md", "docs/z.html"]
    assert items == list(iter_files([tmp_path], None, None))


@pytest.mark.parametrize(
    ("include", "exclude", "expected"),
    [
        (["*.md"], None, ["b.md", "docs/draft-1.md"]),
        (["docs/*"], None, ["docs/deep/c.pdf", "docs/draft-1.md", "docs/z.html"]),
        (None, ["build", "draft-*"], ["a.txt", "b.md", "docs/deep/c.pdf", "docs/z.html"]),
        (["*.md", "*.pdf"], ["docs/deep"], ["b.md", "docs/draft-1.md"]),
        ([], [], ["a.txt", "b.md", "build/out.txt", "docs/deep/c.pdf", "docs/draft-1.md", "docs/z.html"]),
    ],
)
def test_include_exclude_globs(tmp_path: Path, include, exclude, expected: list[str]) -> None:
    _tree(tmp_path)
    assert _rel(list(iter_files([tmp_path], include, exclude)), tmp_path) == expected


def test_direct_paths(tmp_path: Path) -> None:
    _tree(tmp_path)
    items = list(iter_files([tmp_path / "skip.xyz", tmp_path / "nope.md", tmp_path / "a.txt"], ["*.md"], None))
    assert isinstance(items[0], LoadFailure) and items[0].reason.startswith("unsupported file type .xyz")
    assert items[1] == LoadFailure(str(tmp_path / "nope.md"), "no such file or directory")
    assert items[2] == tmp_path / "a.txt"


def test_same_file_is_yielded_once(tmp_path: Path) -> None:
    _tree(tmp_path)
    items = list(iter_files([tmp_path / "a.txt", tmp_path, tmp_path / "docs"], None, None))
    assert _rel(items, tmp_path).count("a.txt") == 1
    assert _rel(items, tmp_path).count("docs/z.html") == 1


def test_symlink_loops_terminate(tmp_path: Path) -> None:
    _write(tmp_path / "a" / "b" / "doc.md", "x")
    os.symlink("..", tmp_path / "a" / "b" / "up")
    os.symlink("loop2", tmp_path / "a" / "loop1")
    os.symlink("loop1", tmp_path / "a" / "loop2")
    os.symlink("missing.txt", tmp_path / "a" / "dangling.txt")
    start = time.monotonic()
    items = list(iter_files([tmp_path], None, None))
    assert time.monotonic() - start < 5
    assert _rel(items, tmp_path) == ["a/b/doc.md"]
    failures = {Path(f.path).name: f.reason for f in items if isinstance(f, LoadFailure)}
    assert failures["up"].startswith("symlink to a directory already walked")
    assert failures["dangling.txt"].startswith("dangling symlink")
    # Links without a supported suffix are skipped like any other such file.
    assert "loop1" not in failures


# ---------------------------------------------------------------- the hostile corpus


def test_bad_corpus(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    corpus = make_bad_corpus(root)
    assert len(corpus["bad"]) >= 20
    max_bytes = corpus["max_bytes"]
    failures: dict[str, str] = {}
    loaded: dict[str, list[Document]] = {}
    line_failures: dict[str, list[str]] = {}
    start = time.monotonic()
    for item in iter_files([root], None, None):
        if isinstance(item, LoadFailure):
            failures[item.path] = item.reason
            continue
        try:
            for result in load_file(item, max_bytes):
                if isinstance(result, LoadFailure):
                    line_failures.setdefault(str(item), []).append(result.reason)
                else:
                    loaded.setdefault(str(item), []).append(result)
        except FileError as e:
            failures[e.path] = e.reason
    assert time.monotonic() - start < 10

    for reason in [*failures.values(), *(r for rs in line_failures.values() for r in rs)]:
        _assert_one_line(reason)
    assert sorted(failures) == sorted(str(p) for p in corpus["bad"])
    for path in corpus["good"]:
        docs = loaded.get(str(path))
        assert docs and len(docs) == 1 and docs[0].text.strip(), path
    for path, (n_docs, n_failed) in corpus["partial"].items():
        assert len(loaded.get(str(path), [])) == n_docs, path
        assert len(line_failures.get(str(path), [])) == n_failed, path
    assert set(loaded) == {str(p) for p in [*corpus["good"], *corpus["partial"]]}
    for path in corpus["ignored"]:
        (failure,) = iter_files([path], None, None)
        assert isinstance(failure, LoadFailure) and failure.reason.startswith("unsupported file type")


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("brackets.md", "# Title [x\n\n" + "[" * 200_000),
        ("stars.md", "*a" * 200_000),
        ("long-heading.md", "# " + "[" * 200_000),
        ("comments.html", "<p>text</p>" + "<!--" * 500_000),
        ("scripts.html", "<p>text</p>" + "<script>" * 500_000),
        ("angles.html", "<p>text</p>" + "<a" * 500_000),
    ],
)
def test_hostile_text_loads_quickly(tmp_path: Path, name: str, data: str) -> None:
    start = time.monotonic()
    doc = _one(_write(tmp_path / name, data), max_bytes=10_000_000)
    assert time.monotonic() - start < 2
    assert doc.text.strip()


# ---------------------------------------------------------------- Markdown front matter as metadata


def test_markdown_front_matter_becomes_metadata(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "policy.md",
        "---\ntitle: Travel policy\nauthor: Ann Lee\ndate: 2024-05-01\ntags: [travel, money]\n"
        "owner: {team: finance}\npath: /somewhere/else.md\n---\n# Heading\n\nBody.\n",
    )
    doc = _one(path)
    assert doc.title == "Travel policy"
    assert doc.text == "# Heading\n\nBody.\n"
    assert doc.metadata["author"] == "Ann Lee"
    assert doc.metadata["date"] == "2024-05-01"
    assert doc.metadata["tags"] == ["travel", "money"]
    assert doc.metadata["owner"] == {"team": "finance"}
    assert "title" not in doc.metadata
    # The file's own keys are not overridden by front matter.
    assert doc.metadata["path"] == str(path.resolve()) and doc.metadata["format"] == "md"
    json.dumps(doc.metadata)


@pytest.mark.parametrize(
    ("front", "title"),
    [
        ("- a list\n- not a mapping\n", "stem"),
        ("title: [unclosed\n", "[unclosed"),
        # Aliases that would expand to 9**5 values are dropped, not expanded.
        (
            "title: Bomb\na: &a [1,1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
            "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n",
            "Bomb",
        ),
    ],
)
def test_markdown_front_matter_that_is_not_a_mapping_gives_no_metadata(tmp_path: Path, front: str, title: str) -> None:
    doc = _one(_write(tmp_path / "stem.md", f"---\n{front}---\nBody.\n"))
    assert doc.title == title
    assert doc.text == "Body.\n"
    assert set(doc.metadata) == {"path", "format", "modified"}


# ---------------------------------------------------------------- Office formats and CSV


def _docx(path: Path) -> Path:
    import docx

    d = docx.Document()
    d.core_properties.title = ""
    d.add_paragraph("Expense handbook", style="Title")
    d.add_heading("Travel", level=1)
    d.add_paragraph("Book trains for trips under four hours.")
    d.add_heading("Hotels", level=2)
    d.add_paragraph("Hotels up to 150 euros a night are approved.")
    table = d.add_table(rows=2, cols=2)
    for r, (a, b) in enumerate([("City", "Limit"), ("Paris", "180")]):
        table.cell(r, 0).text, table.cell(r, 1).text = a, b
    d.add_heading("Meals", level=1)
    d.add_paragraph("Meals are refunded with a receipt.")
    path.parent.mkdir(parents=True, exist_ok=True)
    d.save(path)
    return path


def test_docx_paragraphs_tables_and_heading_sections(tmp_path: Path) -> None:
    doc = _one(_docx(tmp_path / "handbook.docx"))
    assert doc.title == "Expense handbook"
    assert doc.metadata["format"] == "docx"
    assert doc.text.split("\n\n") == [
        "Expense handbook",
        "Travel",
        "Book trains for trips under four hours.",
        "Hotels",
        "Hotels up to 150 euros a night are approved.",
        "City | Limit\nParis | 180",
        "Meals",
        "Meals are refunded with a receipt.",
    ]
    assert [name for _, name in doc.sections] == ["Travel", "Travel > Hotels", "Meals"]
    for start, name in doc.sections:
        assert doc.text[start:].startswith(name.split(" > ")[-1])


def _pptx(path: Path) -> Path:
    import pptx
    from pptx.util import Inches

    deck = pptx.Presentation()
    s1 = deck.slides.add_slide(deck.slide_layouts[1])
    s1.shapes.title.text = "Quarterly review"
    s1.placeholders[1].text = "Revenue grew 12 percent"
    s1.notes_slide.notes_text_frame.text = "Mention the new office."
    deck.slides.add_slide(deck.slide_layouts[6])  # blank: no text, no section
    s3 = deck.slides.add_slide(deck.slide_layouts[5])
    s3.shapes.title.text = "Next steps"
    box = s3.shapes.add_textbox(Inches(1), Inches(2), Inches(4), Inches(1))
    box.text_frame.text = "Hire two engineers"
    path.parent.mkdir(parents=True, exist_ok=True)
    deck.save(path)
    return path


def test_pptx_slides_are_sections_with_notes(tmp_path: Path) -> None:
    doc = _one(_pptx(tmp_path / "review.pptx"))
    assert doc.title == "Quarterly review"
    assert doc.metadata["slides"] == 3 and doc.metadata["format"] == "pptx"
    assert [name for _, name in doc.sections] == ["slide 1: Quarterly review", "slide 3: Next steps"]
    first, third = doc.text.split("\n\n")
    assert first == "Quarterly review\nRevenue grew 12 percent\nMention the new office."
    assert third == "Next steps\nHire two engineers"
    assert doc.text[doc.sections[1][0] :].startswith("Next steps")


def _xlsx(path: Path) -> Path:
    import datetime

    import openpyxl

    book = openpyxl.Workbook()
    budget = book.active
    budget.title = "Budget"
    for row in [("Item", "Cost", "Due"), ("Laptop", 1200.0, datetime.date(2025, 3, 1)), ("Desk", 300.5, None)]:
        budget.append(row)
    book.create_sheet("Empty")
    staff = book.create_sheet("Staff")
    staff.append(["Ann", "", "engineer"])  # an empty cell: not a header
    staff.append(["Bob", "pm"])
    path.parent.mkdir(parents=True, exist_ok=True)
    book.save(path)
    return path


def test_xlsx_sheets_are_sections_and_rows_name_their_columns(tmp_path: Path) -> None:
    doc = _one(_xlsx(tmp_path / "plan.xlsx"))
    assert doc.title == "plan"
    assert doc.metadata["sheets"] == 3 and doc.metadata["format"] == "xlsx"
    assert [name for _, name in doc.sections] == ["sheet Budget", "sheet Staff"]
    budget, staff = doc.text.split("\n\n")
    assert budget.splitlines() == ["Item | Cost | Due", "Item: Laptop; Cost: 1200; Due: 2025-03-01T00:00:00", "Item: Desk; Cost: 300.5"]
    assert staff.splitlines() == ["Ann |  | engineer", "Bob | pm"]
    assert doc.text[doc.sections[1][0] :].startswith("Ann")


@pytest.mark.parametrize(
    ("data", "lines"),
    [
        ("name,role\nAnn,engineer\nBob,\n", ["name | role", "name: Ann; role: engineer", "name: Bob"]),
        ("name;city\n\"Lee; Ann\";Paris\n", ["name | city", "name: Lee; Ann; city: Paris"]),
        ("a\tb\n1\t2\n", ["a | b", "a: 1; b: 2"]),
    ],
)
def test_csv_rows_name_their_columns(tmp_path: Path, data: str, lines: list[str]) -> None:
    doc = _one(_write(tmp_path / "people.csv", data))
    assert doc.title == "people" and doc.metadata["format"] == "csv"
    assert doc.text.splitlines() == lines
    assert doc.sections == ()


@pytest.mark.parametrize("suffix", [".docx", ".pptx", ".xlsx"])
@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"just some text, not a zip", "(not a ZIP archive)"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100, "encrypted, or an old binary Office file"),
    ],
)
def test_office_files_that_are_not_office_files(tmp_path: Path, suffix: str, data: bytes, expected: str) -> None:
    reason = _reason(_write(tmp_path / f"bad{suffix}", data))
    assert expected in reason
    _assert_one_line(reason)


@pytest.mark.parametrize("suffix", [".docx", ".pptx", ".xlsx"])
def test_office_zip_of_the_wrong_kind_fails_with_a_reason(tmp_path: Path, suffix: str) -> None:
    import zipfile

    path = tmp_path / f"other{suffix}"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("hello.txt", "not an office document")
    reason = _reason(path)
    assert reason.startswith(("not a Word document", "not a PowerPoint deck", "not an Excel workbook", "could not parse"))
    _assert_one_line(reason)


def test_new_formats_are_registered() -> None:
    for suffix, fmt in [(".docx", "docx"), (".pptx", "pptx"), (".xlsx", "xlsx"), (".csv", "csv"), (".CSV", "csv")]:
        assert loaders.format_of(Path(f"f{suffix}")) == fmt
        assert loaders.parser_for(fmt) is not None
