"""The ``rag`` command's admin side: ingest, delete, collections, documents, stats, and what it imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import cli.main
from tests.conftest import use_session_embedder
from tests.indexer.test_pipeline import write_corpus

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def rag(rag, monkeypatch: pytest.MonkeyPatch, embedder):  # noqa: ANN001, ANN201 - tests/conftest.py's, with the session's embedder
    """``rag ARGS...`` in this process (tests/conftest.py), with the session's embedder."""
    use_session_embedder(monkeypatch, embedder)
    return rag


def _corpus(tmp_path: Path) -> Path:
    corpus = write_corpus(tmp_path / "corpus")
    (corpus / "security.txt").write_text("Rotate the signing keys every ninety days.\n")
    return corpus


def test_ingest_into_a_missing_collection_names_the_closest(rag, tmp_path: Path) -> None:
    _corpus(tmp_path)
    assert rag("collections", "create", "handbook")[0] == 0
    code, out, err = rag("ingest", "corpus", "-c", "handbok")
    assert code == 2
    assert "collection 'handbok' does not exist (did you mean 'handbook'?)" in err
    assert "rag collections create handbok" in err and "--create" in err and "Traceback" not in err + out
    code, out, _ = rag("collections", "list")
    assert [line.split() for line in out.splitlines()] == [["handbook", "0", "documents", "0", "chunks"]]
    code, out, _ = rag("ingest", "corpus", "-c", "handbok", "--create")
    assert code == 0 and "handbok: 6 added" in out


def test_creating_an_existing_collection_says_so(rag) -> None:
    assert rag("collections", "create", "handbook") == (0, "created handbook\n", "")
    code, _out, err = rag("collections", "create", "handbook")
    assert code == 1 and "collection 'handbook' already exists" in err


def test_eval_ingest_still_creates_its_collection(rag, tmp_path: Path) -> None:
    from rag.config import load_settings
    from rag.index.store import Store

    corpus = _corpus(tmp_path) / "animals.jsonl"
    settings = load_settings()
    summary = cli.main._ingest_corpus(settings, corpus, "eval-animals")
    assert summary["documents_added"] == 3
    assert [c.name for c in Store(settings.sqlalchemy_url).collections()] == ["eval-animals"]


def test_delete_resolves_what_was_typed_and_fails_when_nothing_matched(rag, tmp_path: Path) -> None:
    _corpus(tmp_path)
    assert rag("ingest", "corpus", "-c", "handbook", "--create")[0] == 0
    code, out, _ = rag("delete", "-c", "handbook", "--id", "corpus/security.txt")
    assert (code, out) == (0, "deleted 1 document(s) from handbook\n")
    code, out, err = rag("delete", "-c", "handbook", "--id", "corpus/security.txt")
    assert code == 1 and out == ""
    assert "no document 'corpus/security.txt' in handbook" in err and "rag documents list -c handbook" in err
    code, _, err = rag("delete", "-c", "handbook", "--id", "corpus/instal.md")
    assert code == 1 and repr(str((tmp_path / "corpus" / "install.md").resolve())) in err
    # Files and JSONL documents share one rule: all of them are under corpus/.
    code, out, _ = rag("delete", "-c", "handbook", "--source-prefix", "corpus/")
    assert (code, out) == (0, "deleted 5 document(s) from handbook\n")
    code, _, err = rag("delete", "-c", "handbook", "--source-prefix", "corpus/")
    assert code == 1 and "no document whose source starts with" in err


def test_ingest_sync_rechunk_metadata_and_skipped_in_the_summary(rag, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = _corpus(tmp_path)
    (corpus / "logo.png").write_bytes(b"\x89PNG")
    code, out, _ = rag("ingest", "corpus", "-c", "handbook", "--create", "--metadata", "team=sec", "--metadata", "year=2024")
    assert code == 0
    assert "6 added, 0 updated, 0 unchanged, 0 failed, 1 files skipped" in out
    assert "skipped corpus/logo.png: unsupported file type .png" in out

    (corpus / "security.txt").rename(corpus / "keys.txt")
    (corpus / "backup.md").unlink()
    code, out, _ = rag("ingest", "corpus", "-c", "handbook", "--sync", "--metadata", "team=sec", "--metadata", "year=2024")
    root = (tmp_path / "corpus").resolve()
    assert code == 0 and "1 renamed, 1 deleted (files gone), 4 unchanged" in out
    assert f"renamed {root / 'security.txt'} -> {root / 'keys.txt'}" in out
    assert f"deleted {root / 'backup.md'}" in out

    monkeypatch.setenv("RAG_CHUNKING__SIZE", "128")
    code, out, _ = rag("ingest", "corpus", "-c", "handbook", "--json", "--metadata", "team=sec", "--metadata", "year=2024")
    summary = json.loads(out)
    assert (summary["documents_rechunked"], summary["documents_unchanged"]) == (5, 0)
    assert summary["chunking"]["size"] == 128
    assert summary["skipped"] == [{"path": "corpus/logo.png", "reason": "unsupported file type .png"}]

    code, out, _ = rag("documents", "list", "-c", "handbook", "--json")
    docs = json.loads(out)["documents"]
    assert len(docs) == 5 and all(d["metadata"]["team"] == "sec" and d["metadata"]["year"] == "2024" for d in docs)
    code, _, err = rag("ingest", "corpus", "-c", "handbook", "--metadata", "oops")
    assert code == 2 and "expected KEY=VALUE" in err and "Traceback" not in err


def test_documents_list_and_show(rag, tmp_path: Path) -> None:
    _corpus(tmp_path)
    rag("ingest", "corpus", "-c", "handbook", "--create")
    rag("delete", "-c", "handbook", "--id", "d1")
    root = (tmp_path / "corpus").resolve()
    code, out, err = rag("documents", "list", "-c", "handbook")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 5 and "5 document(s) in handbook" in err
    assert lines[0] == f"active\t1 chunks\t{root / 'backup.md'}\tBackups"
    assert "d1" not in out
    code, out, _ = rag("documents", "list", "-c", "handbook", "--all")
    assert "deleted\t1 chunks\td1\tZebras" in out.splitlines()

    code, out, _ = rag("documents", "show", "-c", "handbook", "corpus/install.md")
    assert code == 0 and out.splitlines()[0] == str(root / "install.md")
    assert "state:    active · 1 chunks" in out and "#0 [Installing] chars 0-" in out
    code, out, _ = rag("documents", "show", "-c", "handbook", "d3", "--json")
    shown = json.loads(out)
    assert shown["external_id"] == "d3" and shown["state"] == "active" and shown["source"] == str(root / "animals.jsonl")
    assert shown["chunk_list"][0]["text"].startswith("An octopus has three hearts")
    code, _, err = rag("documents", "show", "-c", "handbook", "corpus/nope.md")
    assert code == 1 and "no document 'corpus/nope.md'" in err
    code, _, err = rag("documents", "list", "-c", "handbok")
    assert code == 1 and "did you mean 'handbook'" in err


_PROBE = """
import sys
import cli.main
sys.argv = ["rag", *sys.argv[1:]]
try:
    cli.main.main()
except SystemExit:
    pass
heavy = ["torch", "sentence_transformers", "transformers", "faiss", "tantivy", "fastapi", "alembic", "numpy"]
print("IMPORTED", *[m for m in heavy if m in sys.modules], file=sys.stderr)
"""


def _imported(args: list[str], env: dict[str, str]) -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, *args], capture_output=True, text=True, cwd=REPO, env=env, timeout=120
    )
    line = [x for x in proc.stderr.splitlines() if x.startswith("IMPORTED")]
    assert line, proc.stderr
    return set(line[-1].split()[1:])


def test_quick_commands_do_not_import_heavy_modules(tmp_path: Path) -> None:
    env = {**os.environ, "RAG_DATA_DIR": str(tmp_path / "data")}
    assert "torch" not in _imported(["--help"], env)
    _imported(["collections", "create", "handbook"], env)  # the first call creates and migrates the database
    for args in (["collections", "list"], ["documents", "list", "-c", "handbook"], ["stats"], ["collections"]):
        imported = _imported(args, env)
        assert not imported & {"torch", "sentence_transformers", "transformers", "fastapi"}, (args, imported)
        # No index is opened for an empty collection, and the schema is current: no FAISS, tantivy or Alembic.
        assert not imported & {"faiss", "tantivy", "alembic", "numpy"}, (args, imported)


def test_output_that_is_not_a_terminal_is_not_wrapped(tmp_path: Path) -> None:
    env = {**os.environ, "RAG_DATA_DIR": str(tmp_path / "data"), "COLUMNS": ""}
    name = "a-collection-with-a-rather-long-name-" + "x" * 40
    rag = [sys.executable, "-m", "cli.main"]
    subprocess.run([*rag, "collections", "create", name], cwd=REPO, env=env, check=True, capture_output=True, timeout=120)
    proc = subprocess.run([*rag, "stats"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1 and len(lines[0]) > 80 and lines[0].endswith("0.0 MB")


def test_stats_of_a_filled_collection_read_the_index_metadata_only(tmp_path: Path) -> None:
    """``rag stats`` counts from FAISS's manifest and tantivy's meta.json: no index module is imported."""
    env = {**os.environ, "RAG_DATA_DIR": str(tmp_path / "data")}
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "a.md").write_text("# Owls\n\nOwls hunt at night.\n")
    (tmp_path / "c" / "b.md").write_text("# Bats\n\nBats sleep by day.\n")
    rag = [sys.executable, "-m", "cli.main"]
    done = subprocess.run([*rag, "ingest", str(tmp_path / "c"), "-c", "z", "--create"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert not _imported(["stats"], env) & {"faiss", "tantivy", "numpy", "torch"}
    proc = subprocess.run([*rag, "stats", "--json"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    stats = json.loads(proc.stdout)["collections"]["z"]
    assert (stats["documents"], stats["vectors"], stats["lexical_docs"], stats["tombstones"]) == (2, 2, 2, 0)
    gone = subprocess.run([*rag, "delete", "-c", "z", "--id", str(tmp_path / "c" / "b.md")], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert gone.returncode == 0, gone.stderr
    proc = subprocess.run([*rag, "stats", "--json"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    stats = json.loads(proc.stdout)["collections"]["z"]
    assert stats["documents"] == 1 and stats["vectors"] - stats["tombstones"] == 1
