"""Cross-encoder reranking."""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from rag.config import RerankerConfig
from rag.errors import ConfigError
from rag.models import load_model, resolve_device
from rag.types import Chunk, ScoredChunk

log = logging.getLogger(__name__)


def passage_text(chunk: Chunk) -> str:
    """The text a cross-encoder reads for a chunk: its document title, a newline, then the chunk text.

    Training and reranking both use this, so a trained model sees passages shaped as it will at query time.
    """
    return f"{chunk.title}\n{chunk.text}" if chunk.title else chunk.text


class Reranker:
    """Re-scores candidates with a sentence-transformers CrossEncoder.

    ``__init__`` is cheap; :meth:`warm_up` loads the model.
    """

    def __init__(self, config: RerankerConfig) -> None:
        self.config = config
        self._model = None
        self.device = resolve_device(config.device)

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
            self._model = _load_onnx(self.config)
        if self._model is None:
            from sentence_transformers import CrossEncoder

            def build(name: str, local_only: bool) -> CrossEncoder:
                return CrossEncoder(
                    name, device=self.device, max_length=self.config.max_length, local_files_only=local_only
                )

            self._model = load_model("RAG_RERANKER__MODEL", self.config.model, build)
        return self

    def rerank(self, query: str, candidates: Sequence[ScoredChunk], top_k: int | None = None) -> list[ScoredChunk]:
        """Score (query, chunk) pairs and sort by that score.

        Args:
            query: the question.
            candidates: chunks to score; not modified.
            top_k: how many to return (all by default).

        Returns:
            New ScoredChunk objects, sorted descending by rerank score, with ``scores["rerank"]`` set.
        """
        if not candidates:
            return []
        self.warm_up()
        pairs = [(query, passage_text(c.chunk)) for c in candidates]
        raw = self._model.predict(pairs, batch_size=self.config.batch_size, show_progress_bar=False)
        scored = [
            replace(c, score=float(s), scores={**c.scores, "rerank": float(s)}) for c, s in zip(candidates, raw)
        ]
        scored.sort(key=lambda c: (-c.score, c.chunk.chunk_id))
        return scored[: top_k if top_k is not None else len(scored)]


ONNX_FILES = {"onnx": "model.onnx", "onnx-int8": "model_qint8.onnx"}


def _load_onnx(config: RerankerConfig):  # noqa: ANN202 - OnnxCrossEncoder, imported lazily
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

    return OnnxCrossEncoder(path, model_dir, max_length=config.max_length, threads=config.threads)
