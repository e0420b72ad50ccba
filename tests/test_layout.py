"""The import rules of STYLE.md: api/, indexer/ and eval/ import rag/; none imports another; rag/ imports none."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FRONTS = ("api", "indexer", "eval")


def imported_packages(package: str) -> dict[str, set[str]]:
    """For each module file of a package, the top-level packages it imports."""
    out: dict[str, set[str]] = {}
    for path in (REPO / package).rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        names: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        out[str(path.relative_to(REPO))] = names
    return out


@pytest.mark.parametrize("package", ["rag", *FRONTS])
def test_imports_flow_one_way(package: str) -> None:
    forbidden = {"cli", *FRONTS} - {package}
    if package == "rag":
        forbidden = {"cli", *FRONTS}
    bad = {f: sorted(names & forbidden) for f, names in imported_packages(package).items() if names & forbidden}
    assert not bad, f"{package}/ must not import {sorted(forbidden)}: {bad}"


def test_stages_import_only_types_config_errors() -> None:
    stages = ("chunking", "embedding", "retrieval", "rerank", "generation", "verify")
    for f, _ in imported_packages("rag").items():
        parts = Path(f).parts
        stage = parts[1].removesuffix(".py")
        if stage not in stages:
            continue
        tree = ast.parse((REPO / f).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rag."):
                target = node.module.split(".")[1]
                allowed = {"types", "config", "errors", "models", stage}
                if stage == "retrieval":
                    allowed |= {"index", "embedding"}  # the hybrid retriever runs over an index with the embedder
                assert target in allowed, f"{f} imports rag.{node.module.split('.', 1)[1]}"


def test_cli_lists_subcommands() -> None:
    out = subprocess.run([sys.executable, "-m", "cli.main", "--help"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    for cmd in ("ingest", "delete", "collections", "stats", "compact", "serve", "ask", "eval", "bench", "train-reranker"):
        assert cmd in out.stdout
