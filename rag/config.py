"""Typed settings, read once at an entry point and passed down.

Environment variables use the prefix ``RAG_`` and ``__`` between levels, e.g.
``RAG_CHUNKING__SIZE=384``. An optional TOML file (``--config``) gives defaults
that the environment overrides. Code under ``rag/`` never reads the environment:
it receives a :class:`Settings`.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from rag.errors import ConfigError

DEFAULT_EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_RERANKER_MODEL = "cross-encoder/ms-marco-MiniLM-L6-v2"
DEFAULT_LOCAL_GGUF = "qwen2.5-coder-0.5b-instruct"


class _Section(BaseModel):
    model_config = {"extra": "forbid", "frozen": True}


class EmbeddingConfig(_Section):
    """Embedding model settings."""

    model: str = Field(DEFAULT_EMBEDDING_MODEL, description="HF id or local path")
    backend: Literal["torch", "onnx", "onnx-int8"] = Field(
        "onnx",
        description="onnx / onnx-int8: the model exported by the service to ONNX Runtime (cached under cache_dir, "
        "checked against torch at every load; torch is used when the check fails); torch: sentence-transformers",
    )
    query_backend: Literal["auto", "torch", "onnx", "onnx-int8"] = Field(
        "auto",
        description="the encoder of queries (the same model and vectors as the documents'): auto is onnx-int8 when "
        "documents embed on ONNX Runtime on a CPU, else the documents' backend. On 2 cores int8 embeds a query in "
        "about half the time, and SciFact's dense nDCG@10 was 0.668 against 0.666 for fp32 queries",
    )
    cache_dir: Path | None = Field(None, description="where ONNX exports are kept; default <data_dir>/models")
    batch_size: int = Field(64, ge=1, le=4096, description="texts per encoder batch, at most")
    batch_tokens: int = Field(
        0, ge=0, le=1_000_000,
        description="padded tokens per encoder batch (rows x longest row), at most; 0: 512 on a CPU, 65536 on a GPU. "
        "On 2 cores, 197 chunks of 256 tokens embedded at 39 chunks/s in batches of 4 and at 21 in batches of 64, "
        "whose attention no longer fits in the CPU's cache; on an Intel Xeon, batches of 2 ran 7 % faster than of 4",
    )
    spin: bool = Field(
        True,
        description="onnxruntime's threads spin while they wait for work: faster on cores nothing else uses, much "
        "slower where other processes share them (the Ray engine's embedding actors turn it off)",
    )
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")
    threads: int = Field(
        0, ge=0, le=256, description="torch CPU threads; 0 keeps torch's default. `rag serve` uses 1 unless set"
    )
    sessions: int = Field(
        0, ge=0, le=64,
        description="ONNX sessions that embed a call's batches side by side, sharing `threads` (0: one per thread, "
        "at most 8, each a copy of the model; 1: one session with every thread). Sessions of one thread lose less "
        "to other processes on the same cores: on 2 shared cores 24 against 18-20 chunks/s",
    )
    query_prefix: str = ""
    document_prefix: str = ""
    query_batch_max: int = Field(
        32, ge=1, le=1024, description="queries of concurrent requests embedded in one batch, at most; 1: no batching"
    )
    query_batch_wait_ms: float = Field(
        1.0, ge=0.0, le=20.0, description="longest wait for more queries once two are queued (a lone query never waits)"
    )
    query_batch_workers: int = Field(0, ge=0, le=64, description="threads embedding query batches; 0: one per core")


class ChunkingConfig(_Section):
    """Token-aware chunking with overlap."""

    size: int = Field(256, ge=128, le=1024, description="tokens per chunk")
    overlap: float = Field(0.25, ge=0.0, le=0.5, description="share of size repeated")


DenseKind = Literal["flat", "hnsw", "ivfpq", "auto"]


class DenseConfig(_Section):
    """FAISS index settings."""

    index: str = "auto"
    hnsw_m: int = Field(32, ge=4, le=256)
    hnsw_ef_construction: int = Field(200, ge=8, le=4096)
    hnsw_ef_search: int = Field(128, ge=8, le=4096)
    ivf_nlist: int = Field(0, ge=0, description="0 picks about 4*sqrt(n)")
    ivf_nprobe: int = Field(32, ge=1)
    pq_m: int = Field(48, ge=1, description="PQ sub-quantizers = bytes per code at 8 bits")
    pq_nbits: int = Field(8, ge=4, le=12)
    refine_factor: int = Field(10, ge=1, le=100, description="IVF-PQ candidates re-checked exactly = k * this")
    auto_flat_below: int = 50_000
    auto_hnsw_below: int = 3_000_000
    train_sample: int = Field(100_000, ge=1000)

    @field_validator("index")
    @classmethod
    def _known_index(cls, v: str) -> str:
        valid = ("flat", "hnsw", "ivfpq", "auto")
        if v not in valid:
            raise ValueError(f"unknown index type {v!r}; valid: {' | '.join(valid)}")
        return v


class LexicalConfig(_Section):
    """BM25 (tantivy) settings."""

    stopwords: bool = True
    stemmer: str = "english"


class RetrievalConfig(_Section):
    """Hybrid retrieval settings."""

    top_k: int = Field(10, ge=1, le=1000)
    candidates: int = Field(100, ge=1, le=5000, description="hits per retriever before fusion")
    rrf_k: int = Field(60, ge=1)
    bm25_weight: float = Field(1.0, ge=0.0)
    dense_weight: float = Field(1.0, ge=0.0)


class RerankerConfig(_Section):
    """Cross-encoder settings. ``model=""`` disables reranking."""

    model: str = DEFAULT_RERANKER_MODEL
    top_n: int = Field(0, ge=0, le=1000, description="0: 50 on GPU, 20 on CPU")
    batch_size: int = Field(32, ge=1)
    max_length: int | None = Field(
        None,
        ge=16,
        le=4096,
        description="tokens per (query, passage) pair; empty: the length rag train-reranker trained the model at "
        "(rag_reranker.json in the model directory), else 256",
    )
    device: str = "auto"
    backend: Literal["torch", "onnx", "onnx-int8"] = Field(
        "torch",
        description="torch: sentence-transformers; onnx / onnx-int8: the model directory's onnx/model.onnx or "
        "onnx/model_qint8.onnx (written by rag train-reranker --onnx) on onnxruntime's CPU provider",
    )
    threads: int = Field(0, ge=0, description="onnxruntime intra-op threads (0: its default)")
    weight: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="share of the cross-encoder score in the rerank order, the rest being the retrieval scores "
        "(BM25 and dense, each min-max scaled over the candidates, see lexical_share); empty: the weight rag train-reranker chose on its dev "
        "queries (rag_reranker.json in the model directory), else 1.0",
    )
    lexical_share: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="share of BM25 (the rest: dense) in the retrieval side of the blended rerank order; empty: "
        "the share rag train-reranker fitted on its training queries (rag_reranker.json), else 0.5",
    )


class GeneratorConfig(_Section):
    """OpenAI-compatible chat-completions server."""

    url: str = Field("", description="base URL, e.g. http://vllm:8000/v1; empty starts llama.cpp locally")
    model: str = Field("", description="model name sent to the server; empty asks the server")
    api_key: str = "not-needed"
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    seed: int = 0
    max_tokens: int = Field(200, ge=1, le=8192)
    timeout_s: float = Field(120.0, gt=0)
    context_tokens: int = Field(1000, ge=64, description="token budget for packed sources")
    answer_style: Literal["sentences", "short"] = Field(
        "sentences", description="sentences: a few cited sentences; short: the shortest exact phrase (extractive QA)"
    )
    local_model: str = Field(DEFAULT_LOCAL_GGUF, description="GGUF path, or the name of one that installs from PyPI")
    local_n_ctx: int = Field(4096, ge=512)
    local_threads: int = Field(0, ge=0, description="0: all cores")
    local_start_timeout_s: float = Field(120.0, gt=0)
    structured_output: Literal["auto", "json_schema", "json_object"] = Field(
        "auto",
        description="how a JSON schema is sent for planning calls: json_schema is OpenAI's and vLLM's "
        "response_format; json_object is llama-cpp-python's ({'type': 'json_object', 'schema': ...}); auto "
        "picks json_object when the server's /v1/models says owned_by 'me' (llama-cpp-python), else json_schema",
    )


class PlannerConfig(_Section):
    """Query planning: which retrievals a question gets before it is answered."""

    mode: Literal["auto", "direct", "iterative", "decompose"] = Field(
        "auto",
        description="direct: one retrieval of the question; iterative: retrieve, let the generator name what is "
        "missing, retrieve again (up to max_hops); decompose: one retrieval per sub-question; auto: direct unless "
        "the question reads as multi-hop or a comparison (rules, no generator call)",
    )
    max_hops: int = Field(3, ge=1, le=8, description="retrievals per plan at most, the question's own included")
    max_prompt_tokens: int = Field(
        4000, ge=0, description="prompt tokens all planning calls of one question may use (rewrite included)"
    )
    max_wall_s: float = Field(
        60.0, gt=0, description="seconds of planning per question; when spent, the answer uses what was found"
    )
    max_sub_questions: int = Field(3, ge=1, le=6, description="sub-questions of a decomposition at most")
    passages: int = Field(3, ge=1, le=10, description="passages the iterative check reads: the top of all steps so far, round-robin")
    passage_tokens: int = Field(
        80, ge=16, le=1000,
        description="tokens of each passage shown to the planning call, and of the best passage an expansion searches with",
    )
    expand: bool = Field(
        True,
        description="when the iterative check names nothing to search after the question's own retrieval, search "
        "the question with its best passage once (a hop without a generator call) instead of stopping",
    )
    history_turns: int = Field(4, ge=1, le=20, description="earlier turns shown to the follow-up rewrite")
    step_context_tokens: int = Field(
        500, ge=0, le=8000,
        description="tokens added to the sources' budget (generator.context_tokens) for each retrieval of a plan after "
        "the first that hands on a passage, so that every hop's best passages reach the answer",
    )
    min_step_similarity: float = Field(
        0.25, ge=0.0, le=1.0,
        description="a retrieval after the question's own hands on only the passages whose dense score against its "
        "query (inner product of normalised vectors) reaches this; 0 hands on all",
    )


class VerifierConfig(_Section):
    """Claim verification and abstention thresholds."""

    support_threshold: float = Field(0.55, ge=0.0, le=1.0)
    min_faithfulness: float = Field(0.0, ge=0.0, le=1.0, description="abstain when faithfulness is below this")
    abstain_unsupported: bool = Field(
        True, description="abstain when no claim of the answer is supported by its sources, whatever min_faithfulness"
    )
    min_retrieval_score: float = Field(-1e9, description="abstain when the best rerank score is below this")
    min_fusion_score: float = Field(0.0, ge=0.0, description="abstain when the best RRF score is below this (no reranker)")
    strict: bool = False
    windows_per_claim: int = Field(
        3, ge=0, le=64,
        description="sentence windows embedded per claim, chosen by word overlap (0: whole sources and lexical spans only)",
    )
    model: str = Field(
        "",
        description="a support model directory written by rag train-verifier (claims are then scored by it, against "
        "the threshold fitted with it rather than support_threshold); empty: the hybrid scorer (word overlap, embeddings and the "
        "number, name and contradiction checks)",
    )
    backend: Literal["auto", "torch", "onnx", "onnx-int8"] = Field(
        "auto", description="how the support model runs; auto: its int8 ONNX export when it has one, else torch"
    )
    threads: int = Field(1, ge=0, le=64, description="onnxruntime threads of the support model (0: its default)")


class ApiConfig(_Section):
    """REST API settings and limits."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    max_question_chars: int = Field(4000, ge=1)
    max_top_k: int = Field(100, ge=1)
    max_body_bytes: int = Field(1_000_000, ge=1024)
    max_concurrent_asks: int = Field(4, ge=1)
    search_threads: int = Field(
        0, ge=0, le=256,
        description="searches that run at once (the rest wait their turn in the event loop); 0: 2 per core. With "
        "32 clients each in its own thread, the threads' contention for the interpreter cost a third of a search's CPU",
    )
    body_timeout_s: float = Field(30.0, gt=0, description="seconds a client may take to send a request body; 408 after")
    key_cache_s: float = Field(
        0.5, ge=0.0, le=0.9, description="seconds a server trusts its cached view of a managed key; a revoke is seen after this"
    )
    audit: bool = Field(True, description="write one audit_log row per /v1 call (key id, route, collection, status, time)")
    audit_queries: bool = Field(False, description="also store the query text in audit_log rows; off by default")
    malloc_arenas: int = Field(
        2, ge=0, le=1024,
        description="glibc malloc arenas `rag serve` keeps (mallopt M_ARENA_MAX); 0: glibc's default of 8 per core, "
        "whose per-thread arenas made the server's memory grow under load",
    )


class IngestConfig(_Section):
    """Ingestion limits and batching."""

    max_file_bytes: int = Field(50 * 1024 * 1024, ge=1)
    batch_documents: int = Field(64, ge=1)
    commit_interval_s: float = Field(
        10.0, ge=0.0, description="seconds between commits that make staged documents searchable"
    )


class RayConfig(_Section):
    """The Ray engine: `rag ingest --engine ray` and `rag serve --engine ray` (extra `ray`)."""

    address: str = Field(
        "auto",
        description="the cluster to join: auto (the one `ray start` runs here), ray://HOST:PORT, HOST:PORT, "
        "or local (start one in this process)",
    )
    embed_actors: int = Field(1, ge=1, le=1024, description="embedding actors in the ingest's actor pool")
    actor_cpus: float = Field(1.0, gt=0.0, description="CPUs each embedding actor reserves (and its threads)")
    actor_gpus: float = Field(
        -1.0, ge=-1.0, description="GPUs per embedding actor; -1: 1 when the cluster has GPUs, else 0"
    )
    parse_cpus: float = Field(0.5, gt=0.0, description="CPUs each parse task reserves (when parsing runs in tasks)")
    parse_in_actors: bool | None = Field(
        None,
        description="the embedding actors parse their own files (no parse workers beside them); unset: when the "
        "actors use no GPU, so that GPU actors only embed",
    )
    files_per_batch: int = Field(8, ge=1, le=10_000, description="files per parse task and per embedding call")
    api_replicas: int = Field(1, ge=1, le=1024, description="Ray Serve replicas of the API at start")
    max_replicas: int = Field(
        0, ge=0, le=1024, description="autoscale the API up to this many replicas (0: a fixed api_replicas)"
    )
    namespace: str = Field("rag", min_length=1, max_length=64, description="Ray namespace of the shard actors")
    connect_timeout_s: float = Field(
        10.0, gt=0.0, le=600.0,
        description="seconds to wait for a HOST:PORT or ray:// address to accept a connection before giving up "
        "(Ray itself retries an address that does not answer for minutes)",
    )


class EncryptionConfig(_Section):
    """Encryption at rest (AES-256-GCM); off unless a key file is set."""

    key_file: Path | None = Field(
        None,
        description="keyring file (mode 0600, `rag keys init-data-key PATH`); when set, chunk texts, metadata, "
        "vectors and FAISS files are encrypted and tantivy stores no text",
    )


class PrivacyConfig(_Section):
    """Personal data: the answer-time check (redaction itself is per collection, `--redact`)."""

    answer_policy: Literal["remove", "flag", "off"] = Field(
        "remove",
        description="personal data in an answer that is not in its sources: remove (typed placeholder), "
        "flag (keep, note it) or off",
    )
    all_collections: bool = Field(
        False, description="run the answer check for every collection, not only those with `--redact`"
    )
    phone_region: str = Field(
        "US", min_length=2, max_length=2, description="country whose conventions apply to phone numbers without +"
    )


class Settings(BaseSettings):
    """All settings of the service.

    Build with :func:`load_settings`, once, at an entry point.
    """

    model_config = SettingsConfigDict(
        env_prefix="RAG_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    data_dir: Path = Path(".rag")
    database_url: str = Field("", description="SQLAlchemy URL; empty means SQLite under data_dir")
    api_keys: Annotated[dict[str, list[str]], NoDecode] = Field(
        default_factory=dict, description='JSON: {"KEY": ["collection", ...]}'
    )
    default_collection: str = "default"
    embedding: Annotated[EmbeddingConfig, NoDecode] = EmbeddingConfig()
    chunking: ChunkingConfig = ChunkingConfig()
    dense: DenseConfig = DenseConfig()
    lexical: LexicalConfig = LexicalConfig()
    retrieval: RetrievalConfig = RetrievalConfig()
    reranker: Annotated[RerankerConfig, NoDecode] = RerankerConfig()
    generator: GeneratorConfig = GeneratorConfig()
    planner: PlannerConfig = PlannerConfig()
    verifier: VerifierConfig = VerifierConfig()
    api: ApiConfig = ApiConfig()
    ingest: IngestConfig = IngestConfig()
    ray: RayConfig = RayConfig()
    privacy: PrivacyConfig = PrivacyConfig()
    encryption: EncryptionConfig = EncryptionConfig()
    log_level: str = "INFO"
    log_queries: bool = Field(
        False,
        description="write query text to the log (debugging only): off, no query, document or answer text is logged",
    )

    @field_validator("api_keys", mode="before")
    @classmethod
    def _parse_keys(cls, v: Any) -> Any:
        if isinstance(v, str):
            import json

            try:
                v = json.loads(v) if v.strip() else {}
            except json.JSONDecodeError as exc:
                raise ValueError(f'must be JSON like {{"KEY": ["collection"]}}: {exc.msg}') from None
        return v

    @field_validator("embedding", "reranker", mode="before")
    @classmethod
    def _model_shorthand(cls, v: Any) -> Any:
        # RAG_RERANKER=PATH and RAG_EMBEDDING=ID are accepted as shorthands for ...__MODEL.
        if isinstance(v, str):
            stripped = v.strip()
            if stripped.startswith("{"):
                import json

                return json.loads(stripped)
            return {"model": stripped}
        return v

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if len(self.api_keys) and any(not isinstance(c, list) for c in self.api_keys.values()):
            raise ValueError("api_keys values must be lists of collection names")
        if self.embedding.cache_dir is None:  # ONNX exports live with the data unless put elsewhere
            object.__setattr__(self, "embedding", self.embedding.model_copy(update={"cache_dir": self.data_dir / "models"}))
        return self

    @property
    def reranker_explicit(self) -> bool:
        """Whether the reranker was chosen by the user rather than left at its default."""
        return self.reranker.model != DEFAULT_RERANKER_MODEL

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL, SQLite under the data dir unless one is configured."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'rag.db').resolve()}"

    _toml_path: Path | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml_path = _TOML_PATH.get("path")
        if toml_path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_path))
        return tuple(sources)


_TOML_PATH: dict[str, Path | None] = {"path": None}


def _setting_name(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if not isinstance(p, int)]
    return "RAG_" + "__".join(p.upper() for p in parts) if parts else "RAG_*"


def setting_names() -> list[str]:
    """Every setting as its environment variable, e.g. ``RAG_CHUNKING__SIZE``."""
    names = []
    for name, field in Settings.model_fields.items():
        names.append(f"RAG_{name.upper()}")
        section = field.annotation
        if isinstance(section, type) and issubclass(section, BaseModel):
            names += [f"RAG_{name.upper()}__{sub.upper()}" for sub in section.model_fields]
    return names


def unknown_settings(variables: Iterable[str]) -> list[str]:
    """Warnings for ``RAG_`` variables that name no setting, each with the closest setting.

    ``RAG_TEST_*`` variables belong to the test harness and are left alone.

    Args:
        variables: environment variable names (the caller reads the environment).
    """
    known = setting_names()
    out = []
    for var in sorted(variables):
        if not var.startswith("RAG_") or var.startswith("RAG_TEST_") or var in known:
            continue
        close = difflib.get_close_matches(var, known, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else "; `rag --help` and the README list the settings"
        out.append(f"{var} is not a setting and is ignored{hint}")
    return out


def _toml_error(config_file: Path | None, loc: tuple[Any, ...], msg: str) -> ConfigError | None:
    """The error named as the TOML file's key, when the bad value came from the file."""
    if config_file is None:
        return None
    try:
        data: Any = tomllib.loads(Path(config_file).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    keys = [str(p) for p in loc if not isinstance(p, int)]
    for key in keys:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    known = setting_names()
    env = _setting_name(loc)
    close = difflib.get_close_matches(env, known, n=1, cutoff=0.6) if env not in known else []
    hint = f" (did you mean {close[0].removeprefix('RAG_').lower().replace('__', '.')}?)" if close else ""
    where = ".".join(keys)
    return ConfigError(f"{config_file}: {where}", f"{msg}{hint}")


def load_settings(
    config_file: Path | None = None, *, environment: Iterable[str] = (), **overrides: Any
) -> Settings:
    """Read settings from the environment and an optional TOML file.

    Args:
        config_file: optional TOML file; environment variables override it.
        environment: the names of the environment variables set, so that an error from the TOML
            file is named as the file's key rather than as a variable nobody set.
        **overrides: values that win over both (used by tests and CLI flags).

    Returns:
        The validated settings.

    Raises:
        ConfigError: naming the first invalid setting, as its environment variable.
    """
    if config_file is not None and not Path(config_file).is_file():
        raise ConfigError("--config", f"no such file: {config_file}")
    _TOML_PATH["path"] = Path(config_file) if config_file else None
    _env_names = set(environment)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = first.get("loc", ())
        msg = first.get("msg", "invalid")
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        from_file = _toml_error(config_file, loc, f"{msg}{more}")
        if from_file is not None and _setting_name(loc) not in _env_names:
            raise from_file from None
        raise ConfigError(_setting_name(loc), f"{msg}{more}") from None
    except Exception as exc:  # SettingsError from a source, e.g. undecodable JSON or TOML
        raise ConfigError("settings", str(exc).splitlines()[0]) from None
    finally:
        _TOML_PATH["path"] = None


def cpu_count() -> int:
    """Cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1
