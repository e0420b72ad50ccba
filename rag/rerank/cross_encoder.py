"""Cross-encoder reranking."""

from __future__ import annotations

import importlib.util
import json
import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from rag.config import RerankerConfig
from rag.errors import ConfigError
from rag.models import load_model, resolve_device
from rag.types import Chunk, ScoredChunk

log = logging.getLogger(__name__)

SETTINGS_FILE = "rag_reranker.json"
"""Written by ``rag train-reranker`` into the model directory: the ``max_length`` it trained at, the
``lexical_share`` it fitted on its training queries and the blend ``weight`` it chose on its dev
queries. Explicit settings override each."""

DEFAULT_MAX_LENGTH = 256


def passage_text(chunk: Chunk) -> str:
    """The text a cross-encoder reads for a chunk: its document title, a newline, then the chunk text.

    Training and reranking both use this, so a trained model sees passages shaped as it will at query time.
    """
    return f"{chunk.title}\n{chunk.text}" if chunk.title else chunk.text


class Reranker:
    """Re-scores candidates with a sentence-transformers CrossEncoder.

    ``__init__`` is cheap; :meth:`warm_up` loads the model.

    Example:
        >>> reranker = Reranker(settings.reranker).warm_up()  # doctest: +SKIP
        >>> fused = HybridRetriever(reader, settings.retrieval).retrieve("Who approves travel?", None, reranker.top_n)  # doctest: +SKIP
        >>> best = reranker.rerank("Who approves travel?", fused, top_k=5)  # doctest: +SKIP
        >>> len(best), best[0].scores.rerank is not None  # doctest: +SKIP
        (5, True)
    """

    def __init__(self, config: RerankerConfig) -> None:
        self.config = config
        self._model = None
        self.device = resolve_device(config.device)
        saved = model_settings(config.model)
        self.max_length: int = config.max_length or saved.get("max_length", DEFAULT_MAX_LENGTH)
        self.weight: float = config.weight if config.weight is not None else saved.get("weight", 1.0)
        """Share of the cross-encoder score in the order (see :func:`blend`)."""
        self.lexical_share: float = (
            config.lexical_share if config.lexical_share is not None else saved.get("lexical_share", 0.5)
        )
        """Share of BM25 in the retrieval side of the order (see :func:`retrieval_mix`)."""

    @property
    def top_n(self) -> int:
        """How many fused candidates go to the reranker: configured, else 50 on GPU and 20 on CPU."""
        if self.config.top_n:
            return self.config.top_n
        return 50 if self.device.startswith("cuda") else 20

    def warm_up(self) -> Reranker:
        """Load the model.

        Raises:
            ModelLoadError: naming ``RAG_RERANKER__MODEL`` and what was tried.
        """
        if self._model is None and self.config.backend != "torch":
            self._model = _load_onnx(self.config, self.max_length)
        if self._model is None:
            from sentence_transformers import CrossEncoder

            def build(name: str, local_only: bool) -> CrossEncoder:
                return CrossEncoder(
                    name, device=self.device, max_length=self.max_length, local_files_only=local_only
                )

            self._model = load_model("RAG_RERANKER__MODEL", self.config.model, build)
        return self

    def rerank(self, query: str, candidates: Sequence[ScoredChunk], top_k: int | None = None) -> list[ScoredChunk]:
        """Score (query, chunk) pairs and sort by that score, blended with the retrieval score.

        Args:
            query: the question.
            candidates: chunks to score, with their fused retrieval scores; not modified.
            top_k: how many to return (all by default).

        Returns:
            New ScoredChunk objects, sorted descending by their new ``score``: the
            :func:`blend` of the cross-encoder score (kept in ``scores.rerank``)
            and the retrieval score, with :attr:`weight`; the cross-encoder score alone at weight 1.
        """
        if not candidates:
            return []
        self.warm_up()
        pairs = [(query, passage_text(c.chunk)) for c in candidates]
        raw = [float(s) for s in self._model.predict(pairs, batch_size=self.config.batch_size, show_progress_bar=False)]
        final = raw
        if self.weight < 1.0:
            mix = retrieval_mix(
                [c.scores.bm25 for c in candidates],
                [c.scores.dense for c in candidates],
                [c.score for c in candidates],
                self.lexical_share,
            )
            final = blend(raw, mix, self.weight)
        scored = [
            replace(c, score=f, scores=c.scores.with_(rerank=s)) for c, s, f in zip(candidates, raw, final)
        ]
        scored.sort(key=lambda c: (-c.score, c.chunk.chunk_id))
        return scored[: top_k if top_k is not None else len(scored)]


def scaled(values: Sequence[float]) -> list[float]:
    """Min-max scaling to [0, 1] over one query's candidates; all-equal values scale to zeros."""
    lo, hi = min(values), max(values)
    return [(v - lo) / (hi - lo) if hi > lo else 0.0 for v in values]


def retrieval_mix(
    bm25: Sequence[float | None], dense: Sequence[float | None], fused: Sequence[float], lexical_share: float
) -> list[float]:
    """The retrieval side of the rerank order, in [0, 1]: ``lexical_share`` × BM25 + the rest × dense.

    Each retriever's scores are min-max scaled over the candidates; a candidate
    that retriever did not return counts as its lowest. Candidates without any
    per-retriever score (none of them came from a retriever) fall back to the
    scaled fused score.
    """

    def side(values: Sequence[float | None]) -> list[float] | None:
        known = [v for v in values if v is not None]
        if not known:
            return None
        floor = min(known)
        return scaled([floor if v is None else v for v in values])

    lex, den = side(bm25), side(dense)
    if lex is None and den is None:
        return scaled(fused)
    lex = lex or [0.0] * len(fused)
    den = den or [0.0] * len(fused)
    return [lexical_share * a + (1.0 - lexical_share) * b for a, b in zip(lex, den)]


def blend(rerank: Sequence[float], retrieval: Sequence[float], weight: float) -> list[float]:
    """``weight`` × the min-max scaled cross-encoder score + (1 − ``weight``) × ``retrieval`` (already in [0, 1]).

    A cross-encoder trained on a few hundred queries, or used out of its domain,
    then reorders the retrieval ranking instead of replacing it; ``rag
    train-reranker`` picks the weight on its dev queries.
    """
    return [weight * a + (1.0 - weight) * b for a, b in zip(scaled(rerank), retrieval)]


def model_settings(model: str) -> dict[str, Any]:
    """The ``rag_reranker.json`` of a local model directory: ``max_length``, ``weight`` and ``lexical_share`` when present.

    Empty for a hub id or a directory without the file.

    Raises:
        ConfigError: naming the file, when it is not JSON or a value is out of range.
    """
    path = Path(model).expanduser() / SETTINGS_FILE if model else None
    if path is None or not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError("RAG_RERANKER__MODEL", f"{path} is unreadable: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError("RAG_RERANKER__MODEL", f"{path} must hold a JSON object")
    out: dict[str, Any] = {}
    for key in ("weight", "lexical_share"):
        value = data.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
            raise ConfigError("RAG_RERANKER__MODEL", f"{path}: {key} must be a number in [0, 1], got {value!r}")
        out[key] = float(value)
    max_length = data.get("max_length")
    if max_length is not None:
        if isinstance(max_length, bool) or not isinstance(max_length, int) or not 16 <= max_length <= 4096:
            raise ConfigError("RAG_RERANKER__MODEL", f"{path}: max_length must be an integer in [16, 4096], got {max_length!r}")
        out["max_length"] = max_length
    return out


ONNX_FILES = {"onnx": "model.onnx", "onnx-int8": "model_qint8.onnx"}


def _load_onnx(config: RerankerConfig, max_length: int):  # noqa: ANN202 - OnnxCrossEncoder, imported lazily
    """The exported model of a local reranker directory, on onnxruntime.

    Raises:
        ConfigError: naming the setting at fault (not a directory, no export, no onnxruntime).
    """
    model_dir = Path(config.model).expanduser()
    if not model_dir.is_dir():
        raise ConfigError(
            "RAG_RERANKER__BACKEND",
            f"backend {config.backend!r} needs RAG_RERANKER__MODEL to be a local model directory, got {config.model!r}",
        )
    path = model_dir / "onnx" / ONNX_FILES[config.backend]
    if not path.is_file():
        raise ConfigError(
            "RAG_RERANKER__BACKEND",
            f"{path} does not exist; rag train-reranker --onnx writes it (or use backend 'torch')",
        )
    if importlib.util.find_spec("onnxruntime") is None:
        raise ConfigError("RAG_RERANKER__BACKEND", f"backend {config.backend!r} needs onnxruntime (pip install onnxruntime)")
    from rag.rerank.onnx import OnnxCrossEncoder

    return OnnxCrossEncoder(path, model_dir, max_length=max_length, threads=config.threads)
