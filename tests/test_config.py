"""Settings: environment, TOML, validation errors that name the setting, offline model loading."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from rag.config import DEFAULT_RERANKER_MODEL, load_settings
from rag.errors import ConfigError, ModelLoadError
from rag.models import load_model, packaged_path

REPO = Path(__file__).resolve().parents[1]


def test_env_and_toml(tmp_path, monkeypatch) -> None:
    toml = tmp_path / "rag.toml"
    toml.write_text('data_dir = "/srv/rag"\n[chunking]\nsize = 384\noverlap = 0.1\n[retrieval]\nrrf_k = 30\n')
    monkeypatch.setenv("RAG_CHUNKING__SIZE", "512")
    s = load_settings(toml)
    assert s.chunking.size == 512, "the environment overrides the file"
    assert s.chunking.overlap == 0.1 and s.retrieval.rrf_k == 30 and str(s.data_dir) == "/srv/rag"


@pytest.mark.parametrize(
    "var,value,name",
    [
        ("RAG_CHUNKING__SIZE", "64", "RAG_CHUNKING__SIZE"),
        ("RAG_CHUNKING__OVERLAP", "0.9", "RAG_CHUNKING__OVERLAP"),
        ("RAG_DENSE__INDEX", "annoy", "RAG_DENSE__INDEX"),
        ("RAG_API_KEYS", "{not json", "RAG_API_KEYS"),
        ("RAG_RETRIEVAL__TOP_K", "lots", "RAG_RETRIEVAL__TOP_K"),
    ],
)
def test_invalid_setting_names_itself(monkeypatch, var, value, name) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert name in str(err.value)


def test_unknown_index_lists_valid_ones(monkeypatch) -> None:
    monkeypatch.setenv("RAG_DENSE__INDEX", "annoy")
    with pytest.raises(ConfigError, match="flat | hnsw | ivfpq | auto"):
        load_settings()


def test_api_keys_and_shorthands(monkeypatch) -> None:
    monkeypatch.setenv("RAG_API_KEYS", '{"k1": ["a", "b"]}')
    monkeypatch.setenv("RAG_RERANKER", "/models/my-reranker")
    s = load_settings()
    assert s.api_keys == {"k1": ["a", "b"]}
    assert s.reranker.model == "/models/my-reranker" and s.reranker_explicit
    assert not load_settings(reranker={"model": DEFAULT_RERANKER_MODEL}).reranker_explicit


def test_default_embedding_model_is_packaged() -> None:
    path = packaged_path("sentence-transformers/all-MiniLM-L6-v2")
    assert path is not None and (path / "model.safetensors").is_file()


def test_missing_model_names_setting_and_places_tried(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def loader(name: str, local_only: bool) -> None:
        raise OSError(f"{name} not found")

    with pytest.raises(ModelLoadError) as err:
        load_model("RAG_RERANKER__MODEL", "nobody/no-such-model", loader)
    msg = str(err.value)
    assert "RAG_RERANKER__MODEL" in msg and "local HF cache" in msg and "offline" in msg


def test_missing_local_path_is_clear() -> None:
    def loader(name: str, local_only: bool) -> None:
        raise OSError("bad weights")

    with pytest.raises(ModelLoadError, match="RAG_EMBEDDING__MODEL"):
        load_model("RAG_EMBEDDING__MODEL", str(REPO), loader)


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose binary not installed")
def test_docker_compose_file_is_valid() -> None:
    env = {"RAG_API_KEYS": '{"k": ["default"]}', "PATH": "/usr/bin:/bin:/usr/local/bin"}
    out = subprocess.run(["docker-compose", "config", "-q"], cwd=REPO, capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr


def test_docker_compose_has_the_three_services() -> None:
    import yaml

    spec = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    assert set(spec["services"]) == {"api", "postgres", "vllm"}
    assert "RAG_GENERATOR__URL" in spec["services"]["api"]["environment"]


def test_unknown_rag_variable_is_named_with_the_closest_setting() -> None:
    from rag.config import unknown_settings

    warnings = unknown_settings(["RAG_CHUNKNG__SIZE", "RAG_DATA_DIR", "RAG_TEST_POSTGRES_URL", "PATH"])
    assert warnings == ["RAG_CHUNKNG__SIZE is not a setting and is ignored; did you mean RAG_CHUNKING__SIZE?"]


def test_cli_warns_about_an_unknown_rag_variable(tmp_path) -> None:
    import os
    import sys

    env = {**os.environ, "RAG_DATA_DIR": str(tmp_path), "RAG_CHUNKNG__SIZE": "200"}
    r = subprocess.run([sys.executable, "-m", "cli.main", "collections", "list"], capture_output=True, text=True,
                       env=env, cwd=Path(__file__).resolve().parents[1], timeout=120)
    assert "RAG_CHUNKNG__SIZE" in r.stderr and "RAG_CHUNKING__SIZE" in r.stderr


def test_toml_typo_names_the_file_and_the_key(tmp_path) -> None:
    path = tmp_path / "rag.toml"
    path.write_text("[chunking]\nsise = 200\n")
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    text = str(err.value)
    assert str(path) in text and "chunking.sise" in text and "chunking.size" in text
    assert "RAG_CHUNKING__SISE" not in text, "not a variable the user never set"
