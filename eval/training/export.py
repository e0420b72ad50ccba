"""ONNX export of a trained cross-encoder (fp32 and int8) and its check against torch, for ``rag train-reranker --onnx``.

The service runs the files with :class:`rag.rerank.onnx.OnnxCrossEncoder` when
``RAG_RERANKER__BACKEND`` is ``onnx`` or ``onnx-int8``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

from eval.metrics import ndcg_per_query, percentiles
from eval.training.blend import TOP_N
from eval.training.mining import MinedQuery
from rag.errors import FileError
from rag.onnx_export import export_transformer, quantize_int8
from rag.rerank.cross_encoder import ONNX_FILES, passage_text
from rag.rerank.onnx import INPUTS, OnnxCrossEncoder
from rag.types import ScoredChunk


def export_onnx(model_dir: Path, *, quantize: bool = True, opset: int = 17) -> dict[str, Path]:
    """Write ``<model_dir>/onnx/model.onnx`` and, with ``quantize``, ``model_qint8.onnx``.

    The graph gives the raw score (a classification head's logit or a pooled
    projection alike), before the sigmoid that ``CrossEncoder.predict`` applies;
    int8 is onnxruntime's dynamic quantisation (:func:`rag.onnx_export.quantize_int8`).

    Args:
        model_dir: a saved sentence-transformers CrossEncoder with one label.
        quantize: also write the int8 model.
        opset: ONNX opset.

    Returns:
        ``{"fp32": path, "int8": path}`` (``int8`` only with ``quantize``).

    Raises:
        FileError: ``model_dir`` is not a saved model.
    """
    from sentence_transformers import CrossEncoder

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise FileError(str(model_dir), "not a saved model (no config.json)")
    ce = CrossEncoder(str(model_dir), device="cpu", local_files_only=True).eval()
    example = ce.tokenizer(["query"] * 2, ["a passage"] * 2, padding=True, return_tensors="pt")
    out_dir = model_dir / "onnx"
    out_dir.mkdir(exist_ok=True)
    paths = {
        "fp32": export_transformer(
            ce, example, out_dir / ONNX_FILES["onnx"], lambda model, features: model(features)["scores"],
            input_names=INPUTS, output_name="logits", output_axes={0: "batch"}, opset=opset,
        )
    }
    if quantize:
        paths["int8"] = quantize_int8(paths["fp32"], out_dir / ONNX_FILES["onnx-int8"])
    return paths


def _dev_ndcg10(score: Callable[[list[tuple[str, str]]], Sequence[float]], dev: Sequence[MinedQuery]) -> float:
    """Mean binary nDCG@10 of reranking each dev query's positives among its mined negatives (ties keep mining order)."""
    qrels: dict[str, dict[str, int]] = {}
    run: dict[str, dict[str, float]] = {}
    for n, m in enumerate(dev):
        passages = [*m.positives, *m.hard_negatives, *m.random_negatives]
        s = score([(m.query, p) for p in passages])
        order = sorted(range(len(s)), key=lambda i: -float(s[i]))
        qrels[str(n)] = {str(i): 1 for i in range(len(m.positives))}
        run[str(n)] = {str(i): float(len(order) - r) for r, i in enumerate(order)}
    return sum(ndcg_per_query(qrels, run, 10).values()) / max(len(dev), 1)


def compare_onnx(
    model_dir: Path,
    dev: Sequence[MinedQuery],
    candidates: Sequence[tuple[str, Sequence[ScoredChunk]]],
    *,
    top_n: int = TOP_N,
    max_length: int = 256,
) -> dict[str, dict[str, float]]:
    """Export to ONNX (fp32 and int8) and compare each with the torch model on CPU.

    Quality is dev nDCG@10 over each dev query's mined candidates (binary
    labels); latency is one scoring call over each query's top ``top_n`` fused
    candidates, as in :func:`eval.train_reranker.rerank_latency`.

    Returns:
        Per variant (``torch``, ``onnx-fp32``, ``onnx-int8``): ``dev_ndcg@10``, ``p50``, ``p90``.
    """
    from sentence_transformers import CrossEncoder

    paths = export_onnx(Path(model_dir))
    torch_model = CrossEncoder(str(model_dir), device="cpu", max_length=max_length, local_files_only=True)
    scorers = {
        "torch": lambda pairs: torch_model.predict(pairs, batch_size=32, show_progress_bar=False),
        **{
            f"onnx-{kind}": OnnxCrossEncoder(path, Path(model_dir), max_length).predict
            for kind, path in paths.items()
        },
    }
    work = [(q, [passage_text(s.chunk) for s in list(c)[:top_n]]) for q, c in candidates if c]
    result: dict[str, dict[str, float]] = {}
    for name, score in scorers.items():
        quality = _dev_ndcg10(score, dev)
        times = []
        if work:
            score([(work[0][0], p) for p in work[0][1]])
        for q, passages in work:
            t0 = time.perf_counter()
            score([(q, p) for p in passages])
            times.append((time.perf_counter() - t0) * 1000.0)
        result[name] = {"dev_ndcg@10": quality, **(percentiles(times) if times else {})}
    return result
