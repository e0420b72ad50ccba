"""Sentence embeddings: batched, L2-normalised, searched by inner product (= cosine)."""

from __future__ import annotations

import numpy as np

from rag.config import EmbeddingConfig
from rag.models import load_model, resolve_device


class Embedder:
    """Embeds texts with a sentence-transformers model.

    ``__init__`` is cheap; :meth:`warm_up` loads the model.

    Example:
        >>> embedder = Embedder(settings.embedding).warm_up()  # doctest: +SKIP
        >>> passages = embedder.embed_documents(["Travel is approved by your manager."])  # doctest: +SKIP
        >>> passages.shape, embedder.dim  # doctest: +SKIP
        ((1, 384), 384)
        >>> query = embedder.embed_queries(["Who approves travel?"])[0]  # doctest: +SKIP
        >>> round(float(passages[0] @ query), 2)  # cosine: rows are L2-normalised  # doctest: +SKIP
        0.65
    """

    def __init__(self, config: EmbeddingConfig) -> None:
        self.config = config
        self._model = None

    @property
    def model_id(self) -> str:
        """The configured model id, recorded in each index manifest."""
        return self.config.model

    def warm_up(self) -> Embedder:
        """Load the model (idempotent).

        Raises:
            ModelLoadError: naming ``RAG_EMBEDDING__MODEL`` and what was tried.
        """
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            if self.config.threads:
                import torch

                # Per-request intra-op threads fight each other on a busy CPU: a one-sentence query
                # took 490 ms with 2 threads and 13.5 ms with 1 on the loaded 2-core benchmark machine.
                torch.set_num_threads(self.config.threads)
            device = resolve_device(self.config.device)
            kwargs: dict = {"device": device}
            if self.config.backend == "onnx":
                kwargs["backend"] = "onnx"

            def build(name: str, local_only: bool) -> SentenceTransformer:
                return SentenceTransformer(name, local_files_only=local_only, **kwargs)

            self._model = load_model("RAG_EMBEDDING__MODEL", self.config.model, build)
        return self

    @property
    def model(self):  # noqa: ANN201 - SentenceTransformer, imported lazily
        """The loaded SentenceTransformer."""
        return self.warm_up()._model

    @property
    def dim(self) -> int:
        """Vector dimension."""
        return int(self.model.get_embedding_dimension())

    @property
    def tokenizer(self):  # noqa: ANN201
        """The model's HF tokenizer, used for token-aware chunking."""
        return self.model.tokenizer

    @property
    def max_seq_length(self) -> int:
        """Longest input in tokens, special tokens included."""
        return int(self.model.max_seq_length)

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        """Embed passages.

        Args:
            texts: passage texts (title and chunk text already joined).

        Returns:
            float32 array (len(texts), dim), rows L2-normalised.
        """
        return self._encode([self.config.document_prefix + t for t in texts])

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        """Embed queries; same contract as :meth:`embed_documents`."""
        return self._encode([self.config.query_prefix + t for t in texts])

    def _encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.model.encode(
            texts,
            batch_size=self.config.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)
