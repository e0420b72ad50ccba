"""A scorer that runs an exported cross-encoder on onnxruntime.

``rag train-reranker --onnx`` writes the files (:func:`eval.training.export_onnx`);
this module only reads them, with ``onnxruntime`` (a ``dev`` extra) and the
model directory's tokenizer.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rag.models import token_batches

INPUTS = ("input_ids", "attention_mask", "token_type_ids")
"""The exported graph's inputs, in order; the scorer feeds them by name."""

RERANK_BATCH_TOKENS = 1024
"""Padded tokens per run: eight pairs of 128 tokens (512 to 4,096 ran alike for the top 20, int8, 2 threads)."""


class OnnxCrossEncoder:
    """Scores (query, passage) pairs with an exported model on onnxruntime's CPU provider.

    Args:
        onnx_path: ``model.onnx`` or ``model_qint8.onnx`` from :func:`eval.training.export_onnx`.
        tokenizer_dir: the saved model directory (its tokenizer).
        max_length: tokens per pair.
        threads: intra-op threads (0: onnxruntime's default).
        batch_tokens: padded tokens per run, at most (pairs sorted by length, as the embedder's batches).
    """

    def __init__(
        self, onnx_path: Path, tokenizer_dir: Path, max_length: int = 256, threads: int = 0,
        batch_tokens: int = RERANK_BATCH_TOKENS,
    ) -> None:
        import onnxruntime as ort
        from transformers import AutoTokenizer

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self.tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
        self.max_length = max_length
        self.batch_tokens = batch_tokens
        self._tokenizer_lock = threading.Lock()  # a fast tokenizer must not run in two threads at once

    def predict(
        self, pairs: Sequence[tuple[str, str]], batch_size: int = 32, show_progress_bar: bool = False
    ) -> np.ndarray:
        """One score per pair, in input order: the sigmoid of the logit, as ``CrossEncoder.predict`` gives.

        Called like ``CrossEncoder.predict``; there is no progress bar to show.
        """
        if not pairs:
            return np.zeros(0, dtype=np.float32)
        queries, passages = [q for q, _ in pairs], [p for _, p in pairs]
        with self._tokenizer_lock:
            enc = self.tokenizer(queries, passages, truncation=True, max_length=self.max_length)
            batches = [
                (rows, self.tokenizer.pad({n: [enc[n][i] for i in rows] for n in INPUTS}, return_tensors="np"))
                for rows in token_batches([len(ids) for ids in enc["input_ids"]], self.batch_tokens, batch_size)
            ]
        logits = np.empty(len(pairs), dtype=np.float32)
        for rows, batch in batches:
            feed = {n: np.asarray(batch[n], dtype=np.int64) for n in INPUTS}
            logits[rows] = self.session.run(["logits"], feed)[0].reshape(-1)
        return 1.0 / (1.0 + np.exp(-logits))
