"""A scorer that runs an exported cross-encoder on onnxruntime.

``rag train-reranker --onnx`` writes the files (:func:`eval.training.export_onnx`);
this module only reads them, with ``onnxruntime`` (a ``dev`` extra) and the
model directory's tokenizer.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

INPUTS = ("input_ids", "attention_mask", "token_type_ids")
"""The exported graph's inputs, in order; the scorer feeds them by name."""


class OnnxCrossEncoder:
    """Scores (query, passage) pairs with an exported model on onnxruntime's CPU provider.

    Args:
        onnx_path: ``model.onnx`` or ``model_qint8.onnx`` from :func:`eval.training.export_onnx`.
        tokenizer_dir: the saved model directory (its tokenizer).
        max_length: tokens per pair.
        threads: intra-op threads (0: onnxruntime's default).
    """

    def __init__(self, onnx_path: Path, tokenizer_dir: Path, max_length: int = 256, threads: int = 0) -> None:
        import onnxruntime as ort
        from transformers import AutoTokenizer

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self.tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
        self.max_length = max_length

    def predict(
        self, pairs: Sequence[tuple[str, str]], batch_size: int = 32, show_progress_bar: bool = False
    ) -> np.ndarray:
        """One score per pair, in input order: the sigmoid of the logit, as ``CrossEncoder.predict`` gives.

        Called like ``CrossEncoder.predict``; there is no progress bar to show.
        """
        out: list[np.ndarray] = []
        for i in range(0, len(pairs), batch_size):
            batch = pairs[i : i + batch_size]
            enc = self.tokenizer(
                [q for q, _ in batch], [p for _, p in batch], padding=True, truncation=True,
                max_length=self.max_length, return_tensors="np",
            )
            feed = {n: enc[n].astype(np.int64) for n in INPUTS}
            out.append(self.session.run(["logits"], feed)[0].reshape(-1))
        logits = np.concatenate(out) if out else np.zeros(0, dtype=np.float32)
        return 1.0 / (1.0 + np.exp(-logits))
