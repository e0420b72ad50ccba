"""The embedding model on ONNX Runtime: exported here, cached by model and version, checked against torch.

The export is the sentence-transformers model's transformer traced with :mod:`rag.onnx_export` (no
``optimum``); pooling and normalisation run in numpy, as the model's own Pooling and Normalize modules do.
An export is kept under ``<cache_dir>/<model>-<key>/`` where the key hashes the weights, the torch
version and :data:`EXPORT_FORMAT`, so a new model, new weights or a new exporter make a new export and
an old one is never reused by mistake. Every load compares the ONNX vectors of :data:`PROBES` with
torch's; an export below :data:`MIN_COSINE` is not used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from rag.fileio import atomic_write_text
from rag.onnx_export import TOKEN_AXES, export_transformer, quantize_int8

log = logging.getLogger(__name__)

OnnxBackend = Literal["onnx", "onnx-int8"]

EXPORT_FORMAT = 1
"""Bumped when the export changes in a way that makes earlier cached files wrong."""

MIN_COSINE: dict[str, float] = {"onnx": 0.999, "onnx-int8": 0.99}
"""Mean cosine to torch's vectors over :data:`PROBES` that an export must reach to be used."""

MAX_AUTO_SESSIONS = 8
"""Sessions :func:`session_split` gives documents at most when ``RAG_EMBEDDING__SESSIONS`` is 0."""

PROBES = (
    "Who approves travel requests?",
    "Expense reports are due within thirty days of the trip; receipts over 25 EUR must be attached.",
    "The on-call engineer acknowledges a page within fifteen minutes, then opens an incident in the tracker "
    "and posts a first status update for the affected teams.",
    "Bicycles can be parked for free in the courtyard behind building B.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "1998",
)
"""Texts of varied length and kind on which an export is compared with torch at every load."""

_FILES = {"onnx": "model.onnx", "onnx-int8": "model.int8.onnx"}
_POOLING = {"mean", "cls"}


class OnnxUnavailable(Exception):
    """The model cannot run on ONNX Runtime here; the message says why (the caller falls back to torch)."""


@dataclass(frozen=True)
class ModelShape:
    """What the numpy side does after the transformer: the pooling mode and the input length (rows are always L2-normalised)."""

    pooling: str
    max_length: int


def model_shape(st: Any) -> ModelShape:
    """The pooling of a SentenceTransformer, when it is one the ONNX encoder reproduces.

    Raises:
        OnnxUnavailable: for modules other than Transformer, Pooling (mean or cls) and Normalize.
    """
    names = [type(m).__name__ for m in st]
    if names not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        raise OnnxUnavailable(f"modules {names} (only Transformer, Pooling and Normalize are exported)")
    pooling = str(st[1].get_config_dict().get("pooling_mode", ""))
    if pooling not in _POOLING:
        raise OnnxUnavailable(f"pooling {pooling!r} (only {sorted(_POOLING)})")
    return ModelShape(pooling, int(st.max_seq_length))


def _transformer(st: Any) -> Any:
    first = st[0]
    return getattr(first, "auto_model", None) or first.model


def export_key(st: Any) -> str:
    """A hash of the weights, the torch version and the export format: the cache entry's name."""
    import torch

    h = hashlib.sha256(f"{EXPORT_FORMAT}|{torch.__version__}|".encode())
    for name, tensor in sorted(_transformer(st).state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:20]


def _slug(model_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(model_id).name if Path(model_id).exists() else model_id)[-60:]


def export_dir(st: Any, model_id: str, cache_dir: Path) -> Path:
    """The cache entry of this model's weights: ``<cache_dir>/<model>-<key>``."""
    return Path(cache_dir) / f"{_slug(model_id)}-{export_key(st)}"


def ensure_export(st: Any, model_id: str, cache_dir: Path, backend: OnnxBackend) -> Path:
    """The cached ONNX file for ``backend``, exported (and quantised for int8) on first use.

    The export is written in a temporary directory beside the entry and renamed into place, so a process
    that stops half-way leaves nothing that a later one would load, and two processes exporting at once
    both end with a complete entry.
    """
    entry = export_dir(st, model_id, cache_dir)
    path = entry / _FILES[backend]
    if path.is_file():
        return path
    entry.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
    try:
        fp32 = entry / _FILES["onnx"]
        if not fp32.is_file():
            tok = st.tokenizer(["a b c", "d e"], padding=True, return_tensors="pt")
            with warnings.catch_warnings():  # the tracer warns about shape-dependent branches it records as constants
                warnings.simplefilter("ignore")
                fp32 = export_transformer(_transformer(st).eval(), tok, work / _FILES["onnx"],
                                          lambda m, x: m(**x).last_hidden_state, output_name="hidden",
                                          output_axes=TOKEN_AXES)
            log.info("exported %s to ONNX under %s", model_id, entry)
        # else: the int8 file is quantised from the fp32 export already cached (and checked when it loads)
        if backend == "onnx-int8":
            quantize_int8(fp32, work / _FILES["onnx-int8"], per_channel=True)
        entry.mkdir(exist_ok=True)
        for f in work.iterdir():
            f.replace(entry / f.name)
        meta = {"model": model_id, "format": EXPORT_FORMAT, "files": sorted(p.name for p in entry.glob("*.onnx"))}
        atomic_write_text(entry / "export.json", json.dumps(meta, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if not path.is_file():  # pragma: no cover - another process replaced the entry between our writes
        raise OnnxUnavailable(f"the export under {entry} is incomplete")
    return path


class OnnxEncoder:
    """Texts to L2-normalised vectors with an exported model on onnxruntime's CPU provider.

    ``run`` embeds its texts as one batch: :class:`~rag.embedding.Embedder` sorts texts by length and
    splits them into batches of a bounded padded size first. It is safe to call from several threads at
    once (onnxruntime sessions are; the tokenizer is called under a lock, which costs microseconds).
    """

    def __init__(self, path: Path, tokenizer: Any, shape: ModelShape, *, threads: int, spin: bool = True) -> None:
        import threading

        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, threads)
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads <= 1 or not spin:
            # A one-thread session never waits on a pool; with more, idle workers would spin against
            # the request threads of a serving process, or against other processes on the same cores.
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self._inputs = {i.name for i in self._session.get_inputs()}
        self._tokenizer = tokenizer
        self._lock = threading.Lock()
        self.shape = shape
        self.path = path

    def run(self, texts: list[str]) -> np.ndarray:
        """Vectors for ``texts``, one row each, in order, computed as one padded batch."""
        with self._lock:
            enc = self._tokenizer(texts, padding=True, truncation=True, max_length=self.shape.max_length,
                                  return_tensors="np")
        feed = {k: np.asarray(v, dtype=np.int64) for k, v in enc.items() if k in self._inputs}
        hidden = self._session.run(None, feed)[0]
        return self._pool(hidden, np.asarray(enc["attention_mask"], dtype=np.float32))

    def _pool(self, hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
        if self.shape.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            pooled = (hidden * mask[..., None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)
        pooled = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return pooled.astype(np.float32, copy=False)


class EncoderPool:
    """One-thread sessions of one export that embed the batches of a call side by side.

    On a CPU that something else also uses (the Ray engine's raylet and driver, a server's request
    threads), one session with N intra-op threads waits at every operator for its slowest thread, and
    a core taken away for a moment stalls the whole batch. N sessions of one thread each, one batch
    apiece, lose only their own batch's time. On 2 cores with a third process busy 30 % of the time,
    400 SciFact chunks embedded at 24 chunks/s this way against 18 (spinning) and 20 (not spinning)
    with one 2-thread session; on idle cores, 24 against 22.

    Args:
        encoders: the sessions, each with its own tokenizer (a fast tokenizer runs in one thread at a time).
    """

    def __init__(self, encoders: list[OnnxEncoder]) -> None:
        import queue
        from concurrent.futures import ThreadPoolExecutor

        self.encoders = encoders
        self._free: queue.SimpleQueue[OnnxEncoder] = queue.SimpleQueue()
        for encoder in encoders:
            self._free.put(encoder)
        self._threads = ThreadPoolExecutor(len(encoders), thread_name_prefix="rag-embed")
        self._closed = False

    def run(self, texts: list[str]) -> np.ndarray:
        """One batch on the first free session (:meth:`OnnxEncoder.run`)."""
        encoder = self._free.get()
        try:
            return encoder.run(texts)
        finally:
            self._free.put(encoder)

    def run_batches(self, batches: list[list[str]]) -> list[np.ndarray]:
        """Each batch's vectors, in order, the batches spread over the sessions."""
        if len(batches) <= 1 or self._closed:
            return [self.run(b) for b in batches]
        return list(self._threads.map(self.run, batches))

    def close(self) -> None:
        """Stop the pool's threads; later calls still embed, one batch after another."""
        self._closed = True
        self._threads.shutdown(wait=False)


def session_split(threads: int, sessions: int) -> tuple[int, int]:
    """``(sessions, threads per session)`` for ``threads`` CPU threads and the ``sessions`` setting (0: auto).

    Auto gives one session per thread up to 8 (each holds its own copy of the model); beyond that each
    session gets ``threads // sessions`` intra-op threads (the remainder is left unused).

    Example:
        >>> session_split(2, 0), session_split(16, 0), session_split(4, 1)
        ((2, 1), (8, 2), (1, 4))
    """
    threads = max(1, threads)
    n = min(threads, MAX_AUTO_SESSIONS) if sessions == 0 else min(sessions, threads)
    return n, max(1, threads // n)


def agreement(onnx_vectors: np.ndarray, torch_vectors: np.ndarray) -> float:
    """Mean cosine between matching rows."""
    a = onnx_vectors / np.maximum(np.linalg.norm(onnx_vectors, axis=1, keepdims=True), 1e-12)
    b = torch_vectors / np.maximum(np.linalg.norm(torch_vectors, axis=1, keepdims=True), 1e-12)
    return float((a * b).sum(1).mean())


def load_checked(st: Any, model_id: str, cache_dir: Path, backend: OnnxBackend, *, threads: int,
                 reference: np.ndarray, spin: bool = True, tokenizer: Any = None) -> tuple[OnnxEncoder, float]:
    """An encoder for the cached (or new) export, and its mean cosine to ``reference`` (torch on :data:`PROBES`).

    A cached export that disagrees is exported again once (a file changed under the cache); one that still
    disagrees raises. ``tokenizer`` (default: the model's) is the one the encoder calls.

    Raises:
        OnnxUnavailable: onnxruntime missing, the model's modules not exportable, or the check failed.
    """
    try:
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise OnnxUnavailable(f"onnxruntime is not installed ({exc})") from None
    shape = model_shape(st)
    problem = ""
    for attempt in range(2):
        try:
            path = ensure_export(st, model_id, cache_dir, backend)
            encoder = OnnxEncoder(path, tokenizer or st.tokenizer, shape, threads=threads, spin=spin)
            cosine = agreement(encoder.run(list(PROBES)), reference)
        except OnnxUnavailable:
            raise
        except Exception as exc:  # the exporter or onnxruntime refused this model or file
            problem = f"export or load failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        else:
            if cosine >= MIN_COSINE[backend]:
                return encoder, cosine
            problem = f"the {backend} export agrees with torch at mean cosine {cosine:.4f} < {MIN_COSINE[backend]}"
        if attempt == 0:  # a cached file that is damaged or stale: export once more
            log.warning("embedding export under %s not usable (%s); exporting again", cache_dir, problem)
            if backend == "onnx-int8":  # the fp32 file beside it may serve the documents: keep it
                (export_dir(st, model_id, cache_dir) / _FILES[backend]).unlink(missing_ok=True)
            else:
                shutil.rmtree(export_dir(st, model_id, cache_dir), ignore_errors=True)
    raise OnnxUnavailable(problem)
