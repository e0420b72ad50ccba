"""The import rules of STYLE.md: api/, indexer/ and eval/ import rag/; none imports another; rag/ imports none."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FRONTS = ("api", "indexer", "eval")


def parse(source: str, filename: str = "<unknown>") -> ast.Module:
    """``ast.parse``, tried again on CPython 3.11's ``SystemError: AST constructor recursion depth mismatch``.

    Python 3.11 keeps the AST converter's recursion depth per interpreter, not per thread, so a parse in
    another thread at the same moment (Ray's driver threads live on in this process once a Ray test ran)
    can fail this one spuriously. Two more tries see the same source; a real syntax error still raises.
    """
    for _attempt in range(2):
        try:
            return ast.parse(source, filename)
        except SystemError:
            continue
    return ast.parse(source, filename)


def imported_packages(package: str) -> dict[str, set[str]]:
    """For each module file of a package, the top-level packages it imports."""
    out: dict[str, set[str]] = {}
    for path in (REPO / package).rglob("*.py"):
        tree = parse(path.read_text(), str(path))
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


STAGES = ("chunking", "embedding", "retrieval", "rerank", "generation", "verify")
# and two helpers with no stage logic: the ONNX exporter (embedding and rerank models) and atomic file writes
STAGE_MAY_IMPORT = {"types", "config", "errors", "interfaces", "models", "onnx_export", "fileio"}


def _rag_imports(path: Path) -> list[str]:
    tree = parse(path.read_text())
    return [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module and n.module.startswith("rag.")]


def test_stages_import_only_types_config_errors_and_interfaces() -> None:
    for f in imported_packages("rag"):
        stage = Path(f).parts[1].removesuffix(".py")
        if stage not in STAGES:
            continue
        for module in _rag_imports(REPO / f):
            target = module.split(".")[1]
            assert target in STAGE_MAY_IMPORT | {stage}, f"{f} imports {module}"


# Calls that write a collection's index files or change documents' states, and the only places allowed to make them.
_STATE_CALLS = {"stage", "activate", "tombstone", "purge"}
_INDEX_CALLS = {"add", "add_with_ids", "rebuild", "save", "commit", "delete"}
_WRITERS = {
    "rag/index/writer.py",  # the one writer of a collection
    "rag/index/store.py",  # defines the state changes
    "rag/index/dense.py",  # defines the FAISS writes
    "rag/index/lexical.py",  # defines the tantivy writes
}
# Raw index build time in a scratch directory, no database and no collection: a measurement, not a write.
_EXEMPT_FUNCTIONS = {
    ("eval/bench/build.py", "build_index_only"),
    ("eval/bm25_table.py", "_scratch_index"),  # BM25 over a whole corpus in a temporary directory, for a table
}


def _receiver(node: ast.expr) -> str:
    return ast.unparse(node).split("(")[0].lower()


def test_only_the_writer_writes_index_files_or_activates_documents() -> None:
    bad = []
    for package in ("rag", "indexer", "eval", "api", "cli", "scripts"):
        for path in (REPO / package).rglob("*.py"):
            rel = str(path.relative_to(REPO))
            if rel in _WRITERS:
                continue
            tree = parse(path.read_text())
            exempt = {
                id(n) for f in ast.walk(tree)
                if isinstance(f, ast.FunctionDef) and (rel, f.name) in _EXEMPT_FUNCTIONS for n in ast.walk(f)
            }
            for node in ast.walk(tree):
                if id(node) in exempt or not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                    continue
                attr, receiver = node.func.attr, _receiver(node.func.value)
                if attr in _STATE_CALLS and receiver.endswith("store"):
                    bad.append(f"{rel}:{node.lineno} {receiver}.{attr}()")
                if attr in _INDEX_CALLS and receiver.endswith(("dense", "lexical", "index", "_index")):
                    bad.append(f"{rel}:{node.lineno} {receiver}.{attr}()")
    assert not bad, f"only rag/index/writer.py writes index files or changes document states: {bad}"


def test_api_routes_import_only_the_service_layer_and_schemas() -> None:
    allowed = ("api.deps", "api.schemas", "api.serving", "api.routes")
    for path in (REPO / "api" / "routes").glob("*.py"):
        tree = parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                top = node.module.split(".")[0]
                if top in ("api", "rag", "indexer", "eval", "cli"):
                    assert node.module.startswith(allowed), f"{path.name} imports {node.module}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    assert alias.name.split(".")[0] not in ("rag", "indexer", "eval", "cli"), f"{path.name} imports {alias.name}"


def test_layout_check_catches_a_writer_outside_the_writer(tmp_path: Path) -> None:
    """The write check is not vacuous: a direct activation in another module is reported."""
    code = "def f(store, idx):\n    store.activate([])\n    idx.dense.save()\n"
    calls = [
        (n.func.attr, _receiver(n.func.value))
        for n in ast.walk(parse(code))
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
    ]
    assert ("activate", "store") in calls and ("save", "idx.dense") in calls


def test_cli_lists_subcommands() -> None:
    out = subprocess.run([sys.executable, "-m", "cli.main", "--help"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    for cmd in ("ingest", "delete", "collections", "stats", "compact", "serve", "ask", "eval", "bench", "train-reranker"):
        assert cmd in out.stdout
