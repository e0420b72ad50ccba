"""Sentence embeddings: batched, L2-normalised, searched by inner product (= cosine).

The model is a sentence-transformers model; it runs on ONNX Runtime by default (``RAG_EMBEDDING__BACKEND``
``onnx`` or ``onnx-int8``, exported and checked by :mod:`rag.embedding.onnx`) and on torch otherwise, or
when the export cannot be used here (the reason is logged once, naming the setting).
"""

from __future__ import annotations

import copy
import logging
import threading
from concurrent.futures import Future
from pathlib import Path

import numpy as np

from rag.config import EmbeddingConfig, cpu_count
from rag.embedding.batching import Encode, QueryBatcher
from rag.models import CPU_BATCH_TOKENS, GPU_BATCH_TOKENS, load_model, resolve_device, token_batches

log = logging.getLogger(__name__)

DEFAULT_CACHE = Path(".rag") / "models"
"""Where exports go when ``EmbeddingConfig.cache_dir`` is unset (``Settings`` sets it to ``<data_dir>/models``)."""

class Embedder:
    """Embeds texts with a sentence-transformers model.

    ``__init__`` is cheap; :meth:`warm_up` loads the model (and its ONNX export).

    Example:
        >>> embedder = Embedder(settings.embedding).warm_up()  # doctest: +SKIP
        >>> passages = embedder.embed_documents(["Travel is approved by your manager."])  # doctest: +SKIP
        >>> passages.shape, embedder.dim, embedder.backend  # doctest: +SKIP
        ((1, 384), 384, 'onnx')
        >>> query = embedder.embed_query("Who approves travel?")  # doctest: +SKIP
        >>> round(float(passages[0] @ query), 2)  # cosine: rows are L2-normalised  # doctest: +SKIP
        0.65
    """

    def __init__(self, config: EmbeddingConfig) -> None:
        self.config = config
        self._model = None
        self._onnx = None
        self._pool = None  # EncoderPool: the documents' sessions when there are several
        self._query_run: Encode | None = None
        self._batcher: QueryBatcher | None = None
        self._lock = threading.Lock()
        self._tokenizer_lock = threading.Lock()
        self._counter = None  # a copy of the tokenizer that only counts tokens
        self.backend = "torch"
        """The backend in use after :meth:`warm_up`: ``torch``, ``onnx`` or ``onnx-int8``."""
        self.onnx_cosine: float | None = None
        """Mean cosine of the ONNX export to torch on the load check, when ONNX is in use."""
        self.query_backend: str | None = None
        """The backend that embeds queries, once the first query (or ``warm_up(queries=True)``) loaded it."""

    @property
    def model_id(self) -> str:
        """The configured model id, recorded in each index manifest."""
        return self.config.model

    def warm_up(self, *, queries: bool = False) -> Embedder:
        """Load the model (idempotent); with ``queries``, the query encoder too (else the first query loads it).

        Raises:
            ModelLoadError: naming ``RAG_EMBEDDING__MODEL`` and what was tried.
        """
        if self._model is None:
            with self._lock:
                if self._model is None:
                    model = self._load_torch()
                    from rag.embedding.onnx import session_split

                    sessions, threads = session_split(self.config.threads or cpu_count(), self.config.sessions)
                    # its own tokenizer: the chunker and token counting call the model's from other threads
                    loaded = self._load_onnx(model, self.config.backend, "RAG_EMBEDDING__BACKEND",
                                             copy.deepcopy(model.tokenizer), threads=threads)
                    if loaded is not None:
                        self._onnx, cosine = loaded
                        self.backend, self.onnx_cosine = self.config.backend, round(cosine, 5)
                        if sessions > 1:
                            self._pool = self._sessions(model, sessions, threads)
                    self._model = model
        if queries:
            self._query_encoder()
        return self

    def _load_torch(self):  # noqa: ANN202 - SentenceTransformer, imported lazily
        from sentence_transformers import SentenceTransformer

        if self.config.threads:
            import torch

            # Per-request intra-op threads fight each other on a busy CPU: a one-sentence query
            # took 490 ms with 2 threads and 13.5 ms with 1 on the loaded 2-core benchmark machine.
            torch.set_num_threads(self.config.threads)
        device = resolve_device(self.config.device)

        def build(name: str, local_only: bool) -> SentenceTransformer:
            return SentenceTransformer(name, local_files_only=local_only, device=device)

        return load_model("RAG_EMBEDDING__MODEL", self.config.model, build)

    def _load_onnx(self, model, backend: str, setting: str, tokenizer=None, threads: int = 0):  # noqa: ANN001, ANN202
        """The checked ONNX encoder of ``backend`` and its cosine to torch, or None (``setting`` names why in the log).

        ``threads``: its intra-op threads (0: ``threads`` of the settings, or one per core).
        """
        if backend == "torch":
            return None
        if str(model.device) != "cpu":
            log.info("%s=%s: the model runs on %s, so torch is used", setting, backend, model.device)
            return None
        from rag.embedding.onnx import PROBES, OnnxUnavailable, load_checked

        reference = self._torch_encode(model, list(PROBES))
        try:
            encoder, cosine = load_checked(
                model, self.config.model, self.config.cache_dir or DEFAULT_CACHE, backend,
                threads=threads or self.config.threads or cpu_count(), reference=reference,
                spin=self.config.spin, tokenizer=tokenizer,
            )
        except OnnxUnavailable as exc:
            log.warning("%s=%s is not usable for %s here, using %s: %s",
                        setting, backend, self.config.model, self.backend, exc)
            return None
        return encoder, cosine

    def _sessions(self, model, sessions: int, threads: int):  # noqa: ANN001, ANN202 - EncoderPool
        """The documents' encoder and ``sessions - 1`` more of the same export, each with its own tokenizer."""
        from rag.embedding.onnx import EncoderPool, OnnxEncoder

        first = self._onnx
        more = [OnnxEncoder(first.path, copy.deepcopy(model.tokenizer), first.shape, threads=threads,
                            spin=self.config.spin) for _ in range(sessions - 1)]
        return EncoderPool([first, *more])

    def _query_encoder(self) -> Encode:
        """What embeds queries: the documents' encoder, or the one ``query_backend`` names, loaded once."""
        if self._query_run is not None:
            return self._query_run
        model = self.model
        with self._lock:
            if self._query_run is None:
                wanted = self.config.query_backend
                if wanted == "auto":
                    wanted = "onnx-int8" if self._onnx is not None else self.backend
                loaded = None
                if wanted != self.backend and wanted != "torch":
                    # its own tokenizer: the documents' encoder may tokenize in another thread meanwhile
                    loaded = self._load_onnx(model, wanted, "RAG_EMBEDDING__QUERY_BACKEND",
                                             copy.deepcopy(model.tokenizer))
                if loaded is not None:
                    self.query_backend, run = wanted, loaded[0].run
                elif wanted == "torch" and self.backend != "torch":
                    self.query_backend, run = "torch", lambda group: self._torch_encode(model, group)
                else:
                    self.query_backend, run = self.backend, self._document_run(model)
                self._query_run = _one_at_a_time(run) if self.query_backend == "onnx-int8" else run
        return self._query_run

    def _document_run(self, model) -> Encode:  # noqa: ANN001
        if self._pool is not None:
            return self._pool.run
        return self._onnx.run if self._onnx is not None else (lambda group: self._torch_encode(model, group))

    @property
    def model(self):  # noqa: ANN201 - SentenceTransformer, imported lazily
        """The loaded SentenceTransformer (also when ONNX embeds: it holds the tokenizer and the reference)."""
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
        """Embed queries (with the encoder of ``query_backend``); same contract as :meth:`embed_documents`."""
        return self._encode([self.config.query_prefix + t for t in texts], self._query_encoder())

    def embed_query(self, text: str) -> np.ndarray:
        """Embed one query of a request, batched with the queries of other requests in flight.

        With ``query_batch_max`` 1 this is ``embed_queries([text])[0]``.
        """
        if self.config.query_batch_max <= 1:
            return self.embed_queries([text])[0]
        return self._query_batcher().embed(text)

    def _query_batcher(self) -> QueryBatcher:
        if self._batcher is None:
            self._query_encoder()  # loads the model too; outside the lock, which it takes
            # int8 queries embed one at a time: a batch would only queue them behind one worker
            alone = self.query_backend == "onnx-int8"
            with self._lock:
                if self._batcher is None:
                    self._batcher = QueryBatcher(self.embed_queries, max_batch=1 if alone else self.config.query_batch_max,
                                                 wait_s=self.config.query_batch_wait_ms / 1000.0,
                                                 workers=self.config.query_batch_workers or cpu_count())
        return self._batcher

    def embed_query_later(self, text: str) -> Future[np.ndarray]:
        """:meth:`embed_query` as a future, so the caller can do other work meanwhile.

        With batching on, the query embeds on the batcher's thread; with ``query_batch_max`` 1 it embeds
        here, before this returns.
        """
        if self.config.query_batch_max <= 1:
            done: Future[np.ndarray] = Future()
            try:
                done.set_result(self.embed_queries([text])[0])
            except Exception as exc:  # noqa: BLE001 - handed to the caller through the future
                done.set_exception(exc)
            return done
        return self._query_batcher().submit(text)

    def close(self) -> None:
        """Stop the query batcher's thread (the model stays loaded)."""
        batcher, self._batcher = self._batcher, None
        if batcher is not None:
            batcher.close()
        if self._pool is not None:
            self._pool.close()

    def _encode(self, texts: list[str], run: Encode | None = None) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self.model
        run = run or self._document_run(model)
        if len(texts) == 1:
            return run(texts)
        lengths = [len(ids) for ids in self._token_ids(texts)]
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        batches = token_batches(lengths, self._batch_tokens(model), self.config.batch_size)
        groups = [[texts[i] for i in rows] for rows in batches]
        if self._pool is not None and run == self._pool.run:
            parts = self._pool.run_batches(groups)
        else:
            parts = [run(group) for group in groups]
        for rows, part in zip(batches, parts):
            out[rows] = part
        return out

    def _batch_tokens(self, model) -> int:  # noqa: ANN001
        if self.config.batch_tokens:
            return self.config.batch_tokens
        return CPU_BATCH_TOKENS if self._onnx is not None or str(model.device) == "cpu" else GPU_BATCH_TOKENS

    def _token_ids(self, texts: list[str]) -> list[list[int]]:
        # A fast tokenizer must not run in two threads at once, and each call re-applies its padding
        # settings; sentence-transformers and the ONNX encoder call the model's tokenizer with padding,
        # so the length pass has a copy of its own.
        with self._tokenizer_lock:
            if self._counter is None:
                self._counter = copy.deepcopy(self.tokenizer)
            return self._counter(texts, truncation=True, max_length=self.max_seq_length)["input_ids"]

    def _torch_encode(self, model, texts: list[str]) -> np.ndarray:  # noqa: ANN001
        vectors = model.encode(
            texts,
            batch_size=len(texts),
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)


def _one_at_a_time(run: Encode) -> Encode:
    """``run`` over each text alone.

    Dynamic int8 quantisation scales activations by the range of the whole batch, so a query embedded
    beside other requests' queries would get another vector (cosine about 0.99) than alone, and the
    same question could rank differently under load. Alone, a query always gets the same vector.
    """

    def each(texts: list[str]) -> np.ndarray:
        return np.vstack([run([t]) for t in texts])

    return each
