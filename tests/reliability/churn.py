"""A writer that ingests and deletes in a loop through the real CLI, in one process.

Run as ``python -m tests.reliability.churn SRC_DIR COLLECTION SECONDS LOG``, with
``RAG_DATA_DIR`` naming the data dir. Every round rewrites each document in
``SRC_DIR`` with a new version marker, runs ``rag ingest``, then ``rag delete``
on one document. Each finished step appends one JSON line to ``LOG``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

DOCS = 6


def doc_text(k: int, version: int) -> str:
    """The text of document ``k`` at ``version``: its marker words, then filler."""
    filler = " ".join(f"Sentence {i} of the churn document {k} talks about lighthouses and fog." for i in range(40))
    return f"kzmarker document{k} version{version}. {filler}\n"


def write_docs(src: Path, version: int) -> None:
    """Write every document of the corpus at ``version``."""
    src.mkdir(parents=True, exist_ok=True)
    for k in range(DOCS):
        (src / f"doc{k}.txt").write_text(doc_text(k, version))


def _cli(args: list[str]) -> int:
    from cli.main import app

    try:
        result = app(args, standalone_mode=False)
    except SystemExit as exc:  # typer.Exit surfaces as SystemExit in some click versions
        return int(exc.code or 0)
    return int(result or 0)


def main() -> None:
    """Churn until the time is up."""
    src, collection, seconds, log = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3]), Path(sys.argv[4])
    deadline = time.monotonic() + seconds
    version = 0
    with log.open("a") as out:
        while time.monotonic() < deadline:
            version += 1
            write_docs(src, version)
            rc = _cli(["ingest", str(src), "-c", collection, "--json", "--create"])
            out.write(json.dumps({"step": "ingest", "version": version, "rc": rc}) + "\n")
            out.flush()
            victim = (src / f"doc{version % DOCS}.txt").resolve()
            rc = _cli(["delete", "-c", collection, "--id", str(victim)])
            out.write(json.dumps({"step": "delete", "version": version, "rc": rc}) + "\n")
            out.flush()


if __name__ == "__main__":
    main()
