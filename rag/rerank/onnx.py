"""ONNX export of a trained cross-encoder, with int8 dynamic quantization, and a scorer that runs it.

sentence-transformers' own ONNX backend needs ``optimum``, whose install would
move ``transformers`` to another major version; this module uses only
``torch.onnx`` (the TorchScript exporter) and ``onnxruntime`` (a ``dev`` extra).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rag.errors import FileError

INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def export_onnx(model_dir: Path, *, quantize: bool = True, opset: int = 17) -> dict[str, Path]:
    """Write ``<model_dir>/onnx/model.onnx`` and, with ``quantize``, ``model_qint8.onnx``.

    Int8 is onnxruntime's dynamic quantization: weights to int8 once, activations
    quantized per batch at run time.

    Args:
        model_dir: a saved sentence-transformers CrossEncoder with one label.
        quantize: also write the int8 model.
        opset: ONNX opset.

    Returns:
        ``{"fp32": path, "int8": path}`` (``int8`` only with ``quantize``).

    Raises:
        FileError: ``model_dir`` is not a saved model.
    """
    import torch
    from sentence_transformers import CrossEncoder

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise FileError(str(model_dir), "not a saved model (no config.json)")
    ce = CrossEncoder(str(model_dir), device="cpu", local_files_only=True).eval()

    class _Logits(torch.nn.Module):
        """The model's module chain up to the raw score (a classification head's logit or a pooled
        projection alike), before the sigmoid that ``predict`` applies."""

        def __init__(self) -> None:
            super().__init__()
            self.inner = ce

        def forward(self, input_ids, attention_mask, token_type_ids):  # noqa: ANN001, ANN201
            features = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
            return self.inner(features)["scores"]

    enc = ce.tokenizer(["query"] * 2, ["a passage"] * 2, padding=True, return_tensors="pt")
    out_dir = model_dir / "onnx"
    out_dir.mkdir(exist_ok=True)
    fp32 = out_dir / "model.onnx"
    axes = {name: {0: "batch", 1: "tokens"} for name in INPUTS}
    with torch.no_grad():
        torch.onnx.export(
            _Logits(), tuple(enc[n] for n in INPUTS), str(fp32), dynamo=False, input_names=list(INPUTS),
            output_names=["logits"], dynamic_axes={**axes, "logits": {0: "batch"}}, opset_version=opset,
        )
    paths = {"fp32": fp32}
    if quantize:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        paths["int8"] = out_dir / "model_qint8.onnx"
        root = logging.getLogger()
        level = root.level
        root.setLevel(max(level, logging.WARNING))  # the quantizer logs every tensor it skips at INFO on the root logger
        try:
            quantize_dynamic(str(fp32), str(paths["int8"]), weight_type=QuantType.QInt8)
        finally:
            root.setLevel(level)
    return paths


class OnnxCrossEncoder:
    """Scores (query, passage) pairs with an exported model on onnxruntime's CPU provider.

    Args:
        onnx_path: ``model.onnx`` or ``model_qint8.onnx`` from :func:`export_onnx`.
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
