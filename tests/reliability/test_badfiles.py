"""Item 5: hostile inputs through the real CLI, ``rag ingest DIR --json``, as a subprocess.

The corpus is :func:`tests.indexer.badfiles.make_bad_corpus` plus the extras of
:func:`add_hostile_files` (a 100 MB text file, more broken encodings, a deeper HTML
tree, worse JSONL lines, undecodable and hidden file names). A crash is an exit status
other than 0 or 1, or a traceback on stderr; every file expected to fail must be named
in the report's ``failures``. Figure: ``RELIABILITY badfiles tried=N crashes=C ...``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.indexer.badfiles import make_bad_corpus, make_text_pdf

REPO = Path(__file__).resolve().parents[2]
HUGE_BYTES = 100 * 1024 * 1024


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def add_hostile_files(root: Path) -> dict[str, list[Path]]:
    """Add more hostile files to a :func:`make_bad_corpus` directory.

    Returns:
        ``{"bad": [...], "good": [...]}``: files that must be reported as failures, and
        files that must load (whatever else happens to them).
    """
    bad: list[Path] = []
    good: list[Path] = []
    # 100 MB of real text, written 1 MB at a time: over any sane size limit.
    block = (b"All work and no play makes a very large file. " * 23_000)[: 1024 * 1024]
    with (root / "huge-100mb.txt").open("wb") as f:
        for _ in range(HUGE_BYTES // len(block)):
            f.write(block)
    bad.append(root / "huge-100mb.txt")
    bad.append(_write(root / "invalid-utf8.txt", b"Good start, then \xc0\xaf an overlong slash and \xed\xa0\x80 a surrogate.\n"))
    bad.append(_write(root / "utf32.md", "UTF-32 text".encode("utf-32")))
    bad.append(_write(root / "shift-jis.txt", "日本語のテキスト".encode("shift_jis")))
    bad.append(_write(root / "nul-middle.md", b"# Title\n\nText with a NUL \x00 byte inside.\n"))
    bad.append(_write(root / "truncated-utf8.txt", "Ends mid-character: 日".encode()[:-1]))
    good.append(_write(root / "bogus-charset.html", b'<html><head><meta charset="x-no-such-codec"><title>T</title></head><body><p>Plain ASCII body.</p></body></html>'))
    good.append(_write(root / "utf16-declared.html", b'<html><head><meta charset="utf-16"></head><body><p>Actually UTF-8 text.</p></body></html>'))
    bad.append(_write(root / "nested-200k.html", b"<html><body>" + b"<div><span>" * 100_000 + b"</span></div>" * 100_000))
    good.append(_write(root / "long-line.txt", b"word " * 50_000 + b"\n"))  # 250 kB on one line
    good.append(_write(root / ".hidden.md", b"A hidden file is still a file.\n"))
    pdf = make_text_pdf(["Page text."])
    bad.append(_write(root / "pdf-only-header.pdf", pdf[:16]))
    bad.append(_write(root / "pdf-no-xref.pdf", pdf.split(b"xref")[0]))
    lines = [
        b"\x00" * 50,
        b"[" * 1_000_000,
        json.dumps({"_id": "m", "text": "metadata is a list", "metadata": [1, 2]}).encode(),
        json.dumps({"_id": "nul\u0000id", "text": "NUL in the id"}).encode(),
        b'{"_id": "x", "text": "\\ud800 lone surrogate escape"}',
        b'{"_id": "dup", "text": "first"}',
        b'{"_id": "dup", "text": "second"}',
        b'{"_id": "ok", "text": "A fine line among broken ones."}',
    ]
    bad.append(_write(root / "worse.jsonl", b"\n".join(lines) + b"\n"))
    try:  # a name that is not valid UTF-8
        bad_name = root / os.fsdecode(b"undecodable-\xff\xfe.txt")
        bad.append(_write(bad_name, b"The file name is not UTF-8.\n"))
    except (OSError, UnicodeError):
        pass
    deep = root
    for i in range(60):  # a deep directory tree
        deep = deep / f"d{i}"
    good.append(_write(deep / "bottom.md", b"At the bottom of sixty directories.\n"))
    return {"bad": bad, "good": good}


def _count_entries(root: Path) -> int:
    n = 0
    for _dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        n += len(filenames) + sum(1 for d in dirnames if os.path.islink(os.path.join(_dirpath, d)))
    return n


def _named(path: Path, failures: list[dict]) -> bool:
    names = {str(path), os.path.abspath(path), os.fsencode(path).decode("utf-8", "backslashreplace")}
    try:
        names.add(str(path.resolve()))
    except (OSError, RuntimeError):
        pass
    return any(f["path"] in names or f["path"].split(":")[0] in names for f in failures)


def test_cli_ingest_survives_hostile_files(tmp_path: Path) -> None:
    root = tmp_path / "bad"
    corpus = make_bad_corpus(root)
    extra = add_hostile_files(root)
    tried = _count_entries(root)
    env = {
        **os.environ,
        "RAG_DATA_DIR": str(tmp_path / "data"),
        "RAG_RERANKER__MODEL": "",
        "RAG_INGEST__MAX_FILE_BYTES": str(corpus["max_bytes"]),
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    r = subprocess.run(
        [sys.executable, "-m", "cli.main", "ingest", str(root), "-c", "hostile", "--json", "--create"],
        cwd=REPO, env=env, capture_output=True, timeout=900,
    )
    stdout, stderr = r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")
    crashed = r.returncode not in (0, 1) or "Traceback" in stderr
    report = json.loads(stdout) if stdout.strip().startswith("{") else {}
    failures = report.get("failures", [])
    expected_bad = [p for p in corpus["bad"] + extra["bad"] if p.name != "unreadable.txt" or os.geteuid() != 0]
    unnamed = [str(p) for p in expected_bad if not _named(p, failures)]
    wrongly_failed = [str(p) for p in corpus["good"] + extra["good"] if _named(p, failures)]
    print(
        f"RELIABILITY badfiles tried={tried} crashes={int(crashed)} exit={r.returncode} "
        f"added={report.get('documents_added')} failed={report.get('documents_failed')} "
        f"expected_failures={len(expected_bad)} unnamed_failures={len(unnamed)} good_files_failed={len(wrongly_failed)} "
        f"huge_100mb={'skipped (size limit)' if _named(root / 'huge-100mb.txt', failures) else 'ingested'}"
    )
    assert tried >= 30
    assert not crashed, stderr[-4000:]
    assert report, f"no JSON report on stdout: {stdout[-2000:]} {stderr[-2000:]}"
    assert not unnamed, unnamed
    assert not wrongly_failed, [f for f in failures if any(w in f["path"] for w in wrongly_failed)]
