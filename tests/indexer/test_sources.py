"""Tests for indexer.sources: FileSource and BeirJsonlSource, the order they yield and how they fail."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import indexer.loaders
import indexer.sources
from indexer.loaders import registry
from indexer.loaders.common import Parsed
from indexer.sources import BeirJsonlSource, FileSource, iter_files, load_file
from indexer.sources import beir as beir_module
from rag.config import IngestConfig
from rag.errors import FileError
from rag.interfaces import Source
from rag.types import Document, LoadFailure
from tests.indexer.badfiles import make_bad_corpus, make_text_pdf

MAX = 1_000_000
REPO = Path(__file__).resolve().parents[2]

Item = Document | LoadFailure


def _write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def _jsonl(*objects: object) -> str:
    return "".join((o if isinstance(o, str) else json.dumps(o)) + "\n" for o in objects)


def _items(paths: list[Path], max_bytes: int = MAX, **globs: list[str] | None) -> list[Item]:
    return list(FileSource(paths, max_file_bytes=max_bytes, **globs).iter_documents())


def _shape(items: list[Item]) -> list[str]:
    """Each item as ``doc <external_id>`` or ``fail <path>: <reason>``, in order."""
    return [f"doc {i.external_id}" if isinstance(i, Document) else f"fail {i.path}: {i.reason}" for i in items]


def _one_line(reason: str) -> bool:
    return bool(reason.strip()) and "\n" not in reason and "Traceback" not in reason


def _old_ingest_loop(paths: list[Path], include, exclude, max_bytes: int) -> list[Item]:
    """What ``Ingestor._documents`` yielded and reported before sources: iter_files + load_file."""
    out: list[Item] = []
    for item in iter_files(paths, include, exclude):
        if isinstance(item, LoadFailure):
            out.append(item)
            continue
        try:
            for result in load_file(item, max_bytes):
                out.append(result)
        except FileError as e:
            out.append(LoadFailure(e.path, e.reason))
    return out


# ---------------------------------------------------------------- FileSource


def test_sources_satisfy_the_protocol(tmp_path: Path) -> None:
    assert isinstance(FileSource([tmp_path]), Source)
    assert isinstance(BeirJsonlSource(tmp_path / "c.jsonl", MAX), Source)
    assert FileSource([tmp_path]).max_file_bytes == IngestConfig().max_file_bytes


def test_documents_come_in_walk_order(tmp_path: Path) -> None:
    _write(tmp_path / "d" / "b.md", "# Bee\n\nText.\n")
    _write(tmp_path / "d" / "a.txt", "alpha")
    _write(tmp_path / "d" / "sub" / "c.html", "<p>see</p>")
    _write(tmp_path / "d" / "skip.xyz", "ignored in a directory")
    first = _write(tmp_path / "z.txt", "named first")
    items = _items([first, tmp_path / "d"])
    assert all(isinstance(i, Document) for i in items)
    names = [Path(i.source).relative_to(tmp_path.resolve()).as_posix() for i in items]
    assert names == ["z.txt", "d/a.txt", "d/b.md", "d/sub/c.html"]
    assert [i.title for i in items] == ["z", "a", "Bee", "c"]
    assert items == _items([first, tmp_path / "d"])


def test_mixed_directory_names_each_failure_in_place(tmp_path: Path) -> None:
    root = tmp_path / "mixed"
    _write(root / "a-good.txt", "fine")
    _write(root / "b-empty.md", b"")
    _write(root / "c-binary.txt", b"ab\x00cd")
    _write(root / "d-good.pdf", make_text_pdf(["Page text."]))
    _write(root / "e-latin1.txt", "caf\xe9".encode("latin-1"))
    items = _items([root, tmp_path / "missing.md", _write(tmp_path / "notes.xyz", "x")])
    assert _shape(items) == [
        f"doc {(root / 'a-good.txt').resolve()}",
        f"fail {root / 'b-empty.md'}: empty file",
        f"fail {root / 'c-binary.txt'}: binary file",
        f"doc {(root / 'd-good.pdf').resolve()}",
        f"fail {root / 'e-latin1.txt'}: not valid UTF-8 (byte 0xe9 at offset 3)",
        f"fail {tmp_path / 'missing.md'}: no such file or directory",
        f"fail {tmp_path / 'notes.xyz'}: " + registry.unsupported(Path("notes.xyz")),
    ]
    assert items[-1].reason.startswith("unsupported file type .xyz (supported: ")


@pytest.mark.parametrize(
    ("include", "exclude", "expected"),
    [
        (None, None, ["a.txt", "docs/b.md", "docs/draft.md"]),
        (["*.md"], None, ["docs/b.md", "docs/draft.md"]),
        (None, ["docs"], ["a.txt"]),
        (["*.md"], ["draft*"], ["docs/b.md"]),
        ([], [], ["a.txt", "docs/b.md", "docs/draft.md"]),
    ],
)
def test_include_and_exclude(tmp_path: Path, include, exclude, expected: list[str]) -> None:
    for rel in ["a.txt", "docs/b.md", "docs/draft.md"]:
        _write(tmp_path / rel, "x")
    items = _items([tmp_path], include=include, exclude=exclude)
    assert [Path(i.source).relative_to(tmp_path.resolve()).as_posix() for i in items] == expected


def test_jsonl_in_a_directory_expands_to_its_lines(tmp_path: Path) -> None:
    _write(tmp_path / "a.txt", "before")
    corpus = _write(
        tmp_path / "b-corpus.jsonl",
        _jsonl({"_id": "d1", "text": "one"}, "{broken", "", {"_id": 2, "title": "Two"}),
    )
    _write(tmp_path / "c.md", "after")
    items = _items([tmp_path])
    assert _shape(items) == [
        f"doc {(tmp_path / 'a.txt').resolve()}",
        "doc d1",
        f"fail {corpus}:2: line 2: invalid JSON (Expecting property name enclosed in double quotes)",
        "doc 2",
        f"doc {(tmp_path / 'c.md').resolve()}",
    ]
    assert items[1] == Document("d1", str(corpus), "", "one", {})


def test_parsing_is_lazy_one_file_per_next(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parsed: list[str] = []

    def counting(path: Path, data: bytes) -> Parsed:
        parsed.append(path.name)
        return Parsed(data.decode(), path.stem)

    monkeypatch.setitem(registry._PARSERS, "txt", counting)
    for name in ["a.txt", "b.txt", "c.txt"]:
        _write(tmp_path / name, name)
    it = FileSource([tmp_path]).iter_documents()
    assert parsed == []
    next(it)
    assert parsed == ["a.txt"]
    next(it)
    assert parsed == ["a.txt", "b.txt"]
    it.close()  # a fail-fast caller stops here: c.txt is never read
    assert parsed == ["a.txt", "b.txt"]


def test_unexpected_parser_error_is_a_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(path: Path, data: bytes) -> Parsed:
        raise RuntimeError("parser bug\nsecond line")

    monkeypatch.setitem(registry._PARSERS, "md", boom)
    bad = _write(tmp_path / "a.md", "x")
    _write(tmp_path / "b.txt", "still loaded")
    items = _items([tmp_path])
    assert items[0] == LoadFailure(str(bad), "could not parse: RuntimeError: parser bug")
    assert isinstance(items[1], Document)


def test_hostile_corpus_never_raises_and_names_every_bad_file(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    corpus = make_bad_corpus(root)
    items = _items([root], corpus["max_bytes"])
    fails = [i for i in items if isinstance(i, LoadFailure)]
    assert all(_one_line(f.reason) for f in fails)
    line_fails = [f for f in fails if f.path.startswith(tuple(f"{p}:" for p in corpus["partial"]))]
    whole_fails = [f for f in fails if f not in line_fails]
    assert sorted(f.path for f in whole_fails) == sorted(str(p) for p in corpus["bad"])
    docs = [i for i in items if isinstance(i, Document)]
    by_source: dict[str, int] = {}
    for d in docs:
        by_source[d.source] = by_source.get(d.source, 0) + 1
    for path in corpus["good"]:
        assert by_source.get(str(path.resolve())) == 1, path
    for path, (n_docs, n_failed) in corpus["partial"].items():
        assert by_source.get(str(path)) == n_docs, path
        assert sum(f.path.startswith(f"{path}:") for f in line_fails) == n_failed, path
    assert len(by_source) == len(corpus["good"]) + len(corpus["partial"])


def test_same_items_as_iter_files_and_load_file(tmp_path: Path) -> None:
    # The ingestion pipeline used to loop over iter_files and load_file itself, turning each
    # FileError into a failure; FileSource must keep every item, in the same order.
    root = tmp_path / "corpus"
    max_bytes = make_bad_corpus(root)["max_bytes"]
    _write(root / "docs" / "guide.md", "# G\n\ntext\n")
    _write(root / "docs" / "draft.md", "# D\n\ntext\n")
    paths = [root / "guide.md", root / "nope.txt", root / "notes.xyz", root]
    for include, exclude in [(None, None), (["*.md", "*.jsonl"], None), (None, ["docs", "*.pdf"])]:
        new = list(FileSource(paths, include=include, exclude=exclude, max_file_bytes=max_bytes).iter_documents())
        assert new == _old_ingest_loop(paths, include, exclude, max_bytes), (include, exclude)


# ---------------------------------------------------------------- BeirJsonlSource


def test_beir_lines_in_order_with_named_failures(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "corpus.jsonl",
        "\ufeff"
        + _jsonl(
            {"_id": "a", "title": "A", "text": "alpha", "metadata": {"year": 2020}},
            ["not", "an", "object"],
            {"_id": "b", "text": "beta"},
            {"_id": "c", "title": 3},
            "   ",
            {"_id": "d", "text": "delta", "metadata": "no"},
        ),
    )
    items = list(BeirJsonlSource(path, MAX).iter_documents())
    assert items == [
        Document("a", str(path), "A", "alpha", {"year": 2020}),
        LoadFailure(f"{path}:2", "line 2: expected a JSON object, got an array"),
        Document("b", str(path), "", "beta", {}),
        LoadFailure(f"{path}:4", "line 4: title is a number, not a string"),
        LoadFailure(f"{path}:6", "line 6: metadata is a string, not an object"),
    ]


def test_beir_long_line_fails_alone(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.jsonl", _jsonl({"_id": "long", "text": "x" * 5000}, {"_id": "ok", "text": "fine"}))
    items = list(BeirJsonlSource(path, 1000).iter_documents())
    assert items[0] == LoadFailure(f"{path}:1", "line 1: longer than the 1.0 kB limit (RAG_INGEST__MAX_FILE_BYTES)")
    assert items[1:] == [Document("ok", str(path), "", "fine", {})]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty file"),
        (b"\n \n\t\n", "no documents (only blank lines)"),
        (b'{"_id": "a"}\x00\x01', "binary file"),
        (None, "no such file or directory"),
    ],
    ids=["empty", "blank", "binary", "missing"],
)
def test_beir_whole_file_failure_is_one_item(tmp_path: Path, data: bytes | None, reason: str) -> None:
    path = tmp_path / "c.jsonl"
    if data is not None:
        _write(path, data)
    assert list(BeirJsonlSource(path, MAX).iter_documents()) == [LoadFailure(str(path), reason)]


def test_beir_failure_midway_ends_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = beir_module._document

    def breaks_on_line_2(raw: bytes, lineno: int, start: int, source: str) -> Document | str | None:
        if lineno == 2:
            raise OSError(5, "Input/output error")
        return real(raw, lineno, start, source)

    monkeypatch.setattr(beir_module, "_document", breaks_on_line_2)
    path = _write(tmp_path / "c.jsonl", _jsonl(*({"_id": str(n), "text": "t"} for n in range(3))))
    items = list(BeirJsonlSource(path, MAX).iter_documents())
    assert items == [Document("0", str(path), "", "t", {}), LoadFailure(str(path), "unreadable: input/output error")]


# ---------------------------------------------------------------- old names


def test_old_names_still_import_from_loaders() -> None:
    from indexer.loaders import LoadFailure as OldFailure
    from indexer.loaders import iter_files as old_iter_files
    from indexer.loaders import load_file as old_load_file

    assert OldFailure is LoadFailure
    assert old_iter_files is indexer.sources.iter_files
    assert old_load_file is indexer.sources.load_file
    with pytest.raises(AttributeError):
        indexer.loaders.no_such_name  # noqa: B018


@pytest.mark.parametrize(
    "statement",
    [
        "from indexer.loaders import LoadFailure, iter_files, load_file",
        "import indexer.loaders.registry",
        "from indexer.sources import FileSource",
        "import indexer.sources.walk",
        "from indexer.sources.beir import BeirJsonlSource",
    ],
)
def test_any_import_order_works(statement: str) -> None:
    # loaders re-exports names from sources, which imports loaders: a fresh interpreter checks each entry point.
    out = subprocess.run([sys.executable, "-c", statement], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr


# ---------------------------------------------------------------- one rule for ids and sources


def test_sources_are_absolute_resolved_paths_however_typed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path / "corpus" / "security.txt", "Rotate keys every 90 days.")
    _write(tmp_path / "corpus" / "more.jsonl", _jsonl({"_id": "j1", "text": "Use the VPN."}))
    monkeypatch.chdir(tmp_path)
    root = (tmp_path / "corpus").resolve()
    items = _items([Path("corpus")])
    assert [(i.external_id, i.source) for i in items] == [
        ("j1", str(root / "more.jsonl")),
        (str(root / "security.txt"), str(root / "security.txt")),
    ]
    (again,) = _items([Path("./corpus/../corpus/more.jsonl")])
    assert again.source == str(root / "more.jsonl")


# ---------------------------------------------------------------- skipped files and counting


def test_unsupported_files_in_a_directory_are_listed_as_skipped(tmp_path: Path) -> None:
    _write(tmp_path / "d" / "a.txt", "alpha")
    _write(tmp_path / "d" / "notes.xyz", "x")
    _write(tmp_path / "d" / "sub" / "Makefile", "all:")
    _write(tmp_path / "d" / "sub" / "b.md", "# B")
    source = FileSource([tmp_path / "d"], exclude=["*.tmp"], max_file_bytes=MAX)
    _write(tmp_path / "d" / "excluded.tmp", "left out on purpose")
    items = list(source.iter_documents())
    assert all(isinstance(i, Document) for i in items), "a skipped file is not a failure"
    assert source.skipped == [
        LoadFailure(str(tmp_path / "d" / "notes.xyz"), "unsupported file type .xyz"),
        LoadFailure(str(tmp_path / "d" / "sub" / "Makefile"), "unsupported file type (no extension)"),
    ]
    # Iterating again starts the list afresh.
    list(source.iter_documents())
    assert len(source.skipped) == 2


def test_files_are_counted_up_front_and_done_as_they_load(tmp_path: Path) -> None:
    _write(tmp_path / "a.txt", "alpha")
    _write(tmp_path / "b.jsonl", _jsonl({"_id": "1", "text": "one"}, {"_id": "2", "text": "two"}))
    _write(tmp_path / "c-empty.md", b"")
    _write(tmp_path / "d.xyz", "skipped")
    source = FileSource([tmp_path, tmp_path / "missing.txt"], max_file_bytes=MAX)
    assert source.count_files() == 3
    done = []
    for _item in source.iter_documents():
        done.append(source.files_done)
    assert done == [1, 1, 1, 3, 3]  # a.txt; the JSONL's two lines; the empty file; the missing path
    assert source.files_done == 3
