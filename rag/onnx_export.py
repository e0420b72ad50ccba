"""ONNX export of a Hugging Face transformer, with optional int8 dynamic quantisation.

sentence-transformers' own ONNX backend needs ``optimum``, whose install would
move ``transformers`` to another major version; this module uses only
``torch.onnx`` (the TorchScript exporter) and ``onnxruntime``'s quantiser (a
``dev`` extra). Both are imported when called, never at import time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

TOKEN_AXES = {0: "batch", 1: "tokens"}
"""Dynamic axes of every tokenizer input: any batch size, any sequence length."""


def export_transformer(
    module: Any,
    example: Mapping[str, Any],
    path: Path,
    forward: Callable[[Any, dict[str, Any]], Any],
    *,
    input_names: Sequence[str] | None = None,
    output_name: str = "logits",
    output_axes: Mapping[int, str] | None = None,
    opset: int = 17,
) -> Path:
    """Trace ``forward(module, inputs)`` on an example batch and write it as ONNX.

    The graph's inputs are the tokenizer outputs named ``input_names``, each with
    dynamic batch and token axes; its one output is what ``forward`` returns.
    Tracing runs under ``torch.no_grad()``; put ``module`` in eval mode first.

    Args:
        module: the ``torch.nn.Module`` to export (its weights become the graph's).
        example: a tokenizer's output (``return_tensors="pt"``) for a small batch.
        path: the ``.onnx`` file to write.
        forward: maps ``(module, {input name: tensor})`` to the output tensor, e.g.
            ``lambda m, x: m(**x).last_hidden_state``.
        input_names: which of ``example``'s tensors the graph takes, in this order
            (default: all of them, in ``example``'s order).
        output_name: the graph output's name.
        output_axes: the output's dynamic axes (default ``{0: "batch"}``).
        opset: ONNX opset.

    Returns:
        ``path``.
    """
    import torch

    names = list(input_names if input_names is not None else example)

    class _ByName(torch.nn.Module):
        """Positional graph inputs back to named ones, as ``forward`` takes them."""

        def __init__(self) -> None:
            super().__init__()
            self.inner = module

        def forward(self, *args: Any) -> Any:
            return forward(self.inner, dict(zip(names, args, strict=True)))

    axes = {name: dict(TOKEN_AXES) for name in names}
    with torch.no_grad():
        torch.onnx.export(
            _ByName(), tuple(example[n] for n in names), str(path), dynamo=False, input_names=names,
            output_names=[output_name], dynamic_axes={**axes, output_name: dict(output_axes or {0: "batch"})},
            opset_version=opset,
        )
    return Path(path)


def quantize_int8(fp32: Path, int8: Path, *, per_channel: bool = False) -> Path:
    """Write an int8 copy of an ONNX model with onnxruntime's dynamic quantisation.

    Weights go to int8 once; activations are quantised per batch at run time.

    Args:
        fp32: the exported model.
        int8: where to write the quantised one.
        per_channel: one scale per output channel instead of one per tensor.

    Returns:
        ``int8``.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.WARNING))  # the quantiser logs every tensor it skips at INFO on the root logger
    try:
        quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, per_channel=per_channel)
    finally:
        root.setLevel(level)
    return Path(int8)
