"""Support from a fine-tuned cross-encoder: a learned :class:`~rag.verify.support.SupportScorer`.

``rag train-verifier`` fine-tunes a (claim, passage) cross-encoder and saves it with
``rag_verifier.json`` (:data:`SETTINGS_FILE`): the Platt calibration of its logit, the
support threshold fitted on held-out data, and the window settings it was trained with.
:func:`load_support_scorer` opens such a directory; :class:`CrossEncoderSupportScorer`
scores a claim against *windows* of each source (its best sentences), not the first
tokens of a long chunk, and keeps the number and entity checks of
:class:`~rag.verify.support.HybridSupportScorer`.
"""

from __future__ import annotations

import importlib.util
import json
import math
import threading
from functools import lru_cache
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import ConfigError, ModelLoadError
from rag.verify.checks import CONTRADICTION_CAP, contradiction, negation_flipped, opposite_word, reversed_relation
from rag.verify.lexical import claim_names, content_words, numbers, sentence_spans
from rag.verify.support import Embed, HybridSupportScorer, Support

SETTINGS_FILE = "rag_verifier.json"
"""Written by ``rag train-verifier`` into the model directory (see :func:`read_settings`)."""

ONNX_FILES = {"onnx": "model.onnx", "onnx-int8": "model_qint8.onnx"}
"""Exported graphs under ``<model dir>/onnx/``, by backend name."""

BACKENDS = ("auto", "torch", "onnx", "onnx-int8")
"""``auto`` is ``onnx-int8`` when the directory has it, else ``torch``."""

SETTING = "RAG_VERIFIER__MODEL"
"""The setting named in load errors."""

DEFAULT_MAX_LENGTH = 128
WINDOWS_PER_CLAIM = 3
"""Windows cross-encoded per claim, over all its sources together: a 5-claim answer costs 15 pairs.

MiniLM-L6 costs about 21 MFLOP per token; on the 2-core CPU a pair of ~80 tokens takes
several milliseconds, so the budget is per claim, not per source."""
MAX_WINDOW_SENTENCES = 3
MAX_SENTENCE_CHARS = 600
"""A longer "sentence" (a list, a table row run) is cut into pieces of about this size at spaces."""
MAX_SOURCE_SENTENCES = 256
NUMBER_CAP = HybridSupportScorer.NUMBER_CAP
"""Highest score of a claim with a number its source lacks (0.2, the hybrid scorer's)."""
ENT_PENALTY = HybridSupportScorer.ENT_PENALTY
"""``score *= 1 - ENT_PENALTY * (1 - share of the claim's names found in the source)``: 0.5, the hybrid scorer's."""


@dataclass(frozen=True)
class Window:
    """A passage of a source that a claim is scored against.

    Attributes:
        text: what the cross-encoder reads: one sentence, a few adjacent ones, or the
            source's best sentences joined in source order.
        start: offset in the source of the window's first sentence.
        end: end offset (exclusive) of its last sentence.
    """

    text: str
    start: int
    end: int


@dataclass(frozen=True)
class Calibration:
    """Platt scaling of the cross-encoder's logit: ``p = sigmoid(a * logit + b)`` (Platt, 1999)."""

    a: float = 1.0
    b: float = 0.0

    def __call__(self, logits: np.ndarray) -> np.ndarray:
        """Probabilities in [0, 1], one per logit."""
        z = np.clip(self.a * np.asarray(logits, dtype=np.float64) + self.b, -60.0, 60.0)
        return 1.0 / (1.0 + np.exp(-z))


def _units(source: str) -> list[tuple[int, int]]:
    """Sentence spans of ``source``, an over-long sentence cut at spaces into pieces of about ``MAX_SENTENCE_CHARS``."""
    out: list[tuple[int, int]] = []
    for a, b in sentence_spans(source, MAX_SOURCE_SENTENCES):
        while b - a > MAX_SENTENCE_CHARS:
            cut = source.rfind(" ", a + MAX_SENTENCE_CHARS // 2, a + MAX_SENTENCE_CHARS)
            cut = cut if cut > a else a + MAX_SENTENCE_CHARS
            out.append((a, cut))
            a = cut
            while a < b and source[a].isspace():
                a += 1
        if b > a:
            out.append((a, b))
    return out


def _idf(units: list[set[str]]) -> dict[str, float]:
    n = len(units)
    df: dict[str, int] = {}
    for words in units:
        for w in words:
            df[w] = df.get(w, 0) + 1
    return {w: math.log(1.0 + n / d) for w, d in df.items()}


@lru_cache(maxsize=512)
def _prepared(source: str) -> tuple[list[tuple[int, int]], list[set[str]], dict[str, float]]:
    """A source's sentence spans, their terms and the terms' IDF: the same for every claim scored against it."""
    spans = _units(source)
    terms = [_unit_terms(source[a:b]) for a, b in spans]
    return spans, terms, _idf(terms)


def _claim_terms(claim: str) -> set[str]:
    """Content words and numbers: what locates a claim's evidence in a source."""
    return content_words(claim) | {f"#{v:g}" for v in numbers(claim)}


def _unit_terms(text: str) -> set[str]:
    return content_words(text) | {f"#{v:g}" for v in numbers(text)}


def ranked_windows(
    claim: str, source: str, k: int = WINDOWS_PER_CLAIM, max_sentences: int = MAX_WINDOW_SENTENCES
) -> list[tuple[float, Window]]:
    """The ``k`` passages of ``source`` most likely to hold a claim's evidence, best first, with their recall.

    Candidates are every run of 1 to ``max_sentences`` adjacent sentences, plus the
    *gathered* window: up to three sentences chosen greedily, each adding the most claim
    terms not yet covered, joined in source order (a summary sentence often fuses facts
    from sentences apart). Each candidate
    is ranked by the IDF-weighted share of the claim's terms it holds::

        recall(w) = sum(idf(t) for t in T & terms(w)) / sum(idf(t) for t in T)

    with ``T`` the claim's content words and numbers (stemmed, as in
    :class:`~rag.verify.support.HybridSupportScorer`) and ``idf(t) = ln(1 + n / df(t))``
    over the ``n`` sentences of the source; ties go to fewer sentences, then to the
    earlier window. A source of one sentence gives itself.

    Args:
        claim: the claim (with its question, for a short answer).
        source: the source text.
        k: how many windows to return.
        max_sentences: longest run of adjacent sentences.

    Returns:
        Up to ``k`` ``(recall, window)`` pairs with distinct texts; none for an empty source.
    """
    if not source.strip() or k < 1:
        return []
    spans, terms, idf = _prepared(source)
    if not spans:
        return []
    wanted = _claim_terms(claim)
    # fsum: exact, so the ranking does not depend on the order a set is walked in (Python's hash seed).
    total = math.fsum(idf.get(t, math.log(1.0 + len(spans))) for t in wanted) or 1.0

    def recall(found: set[str]) -> float:
        return math.fsum(idf[t] for t in wanted & found) / total

    ranked: list[tuple[float, int, int, Window]] = []
    for i in range(len(spans)):
        found: set[str] = set()
        for n in range(1, max_sentences + 1):
            if i + n > len(spans):
                break
            found |= terms[i + n - 1]
            a, b = spans[i][0], spans[i + n - 1][1]
            ranked.append((-recall(found), n, i, Window(source[a:b], a, b)))
    picked = sorted(_greedy_cover(wanted, terms, recall))
    if len(picked) > 1 and picked[-1] - picked[0] >= len(picked):  # not already an adjacent run
        found = set().union(*(terms[j] for j in picked))
        text = " ".join(source[spans[j][0] : spans[j][1]] for j in picked)
        ranked.append((-recall(found), len(picked), picked[0], Window(text, spans[picked[0]][0], spans[picked[-1]][1])))
    ranked.sort(key=lambda r: r[:3])
    out: list[tuple[float, Window]] = []
    seen: set[str] = set()
    for neg_recall, _, _, window in ranked:
        if window.text not in seen:
            seen.add(window.text)
            out.append((-neg_recall, window))
            if len(out) == k:
                break
    return out


def select_windows(
    claim: str, source: str, k: int = WINDOWS_PER_CLAIM, max_sentences: int = MAX_WINDOW_SENTENCES
) -> list[Window]:
    """The windows of :func:`ranked_windows`, without their recall.

    Example:
        >>> source = "Parking is free. Bikes go in the shed. Cars park outside."
        >>> [w.text for w in select_windows("Bicycles are kept in the shed.", source, k=2)]
        ['Bikes go in the shed.', 'Parking is free. Bikes go in the shed.']
    """
    return [w for _, w in ranked_windows(claim, source, k, max_sentences)]


def _greedy_cover(wanted: set[str], terms: list[set[str]], recall: Any, most: int = 3) -> list[int]:
    """Up to ``most`` sentences, each adding the most of the claim's terms not yet covered (weighted by IDF)."""
    chosen: list[int] = []
    covered: set[str] = set()
    for _ in range(most):
        gains = [(recall((terms[j] & wanted) - covered), -j) for j in range(len(terms)) if j not in chosen]
        if not gains:
            break
        gain, j = max(gains)
        if gain <= 0.0:
            break
        chosen.append(-j)
        covered |= terms[-j] & wanted
    return chosen


def capped(score: float, claim: str, source: str) -> float:
    """The checks that no model overrides, applied to a claim's score against one source.

    ``score * (1 - ENT_PENALTY * (1 - share))`` with ``share`` the share of
    :func:`claim_names` found among the source's words, then at most
    :data:`NUMBER_CAP` when a number of the claim (integer, decimal, percentage,
    year) is not in the source: "founded in 1990" against "founded in 1887" fails
    however alike the sentences read; at most :data:`~rag.verify.checks.CONTRADICTION_CAP`
    when the claim contradicts its anchor sentence (:func:`~rag.verify.checks.contradiction`).
    """
    names = claim_names(claim)
    if names:
        share = len(names & content_words(source)) / len(names)
        score *= 1.0 - ENT_PENALTY * (1.0 - share)
    if not numbers(claim) <= numbers(source):
        score = min(score, NUMBER_CAP)
    if contradiction(claim, source):
        score = min(score, CONTRADICTION_CAP)
    return score


FEATURES = (
    "logit", "window_recall", "source_recall", "names_share", "number_missing", "negation_mismatch",
    "opposite", "order_reversed", "novel_words", "anchor_names_share", "window_novel_words",
)
"""What the stacked calibration reads for a (claim, window, source); see :func:`features`."""



def _anchor(terms: set[str], window: str) -> str:
    """The sentence of a window holding the most of the claim's terms (the window itself when it is one sentence)."""
    spans = sentence_spans(window, MAX_SOURCE_SENTENCES)
    if len(spans) <= 1:
        return window
    return max((window[a:b] for a, b in spans), key=lambda text: len(terms & _unit_terms(text)))


def features(claim: str, window: str, window_recall: float, source: str, logit: float) -> list[float]:
    """The stacked calibration's inputs for one claim and one window of a source, in :data:`FEATURES` order.

    ``logit`` is the model's; ``window_recall`` the IDF-weighted share of the claim's terms in the
    window (:func:`ranked_windows`); ``source_recall`` the share of its content words anywhere in the
    source; ``names_share`` that of :func:`claim_names` (1 without names); ``number_missing`` 1 when a
    number of the claim is not in the source. The next three compare the claim with the window's
    sentence holding most of its terms, by the checks of :mod:`rag.verify.checks`: ``negation_mismatch``
    1 when one of the two negates what the other states (:func:`~rag.verify.checks.negation_flipped`);
    ``opposite`` 1 when the claim has a word whose opposite that sentence has instead
    (:func:`~rag.verify.checks.opposite_word`); ``order_reversed`` 1 when a relation is turned around
    (:func:`~rag.verify.checks.reversed_relation`). ``novel_words`` is the number of the claim's
    content words the source lacks, at most 5, over 5; ``anchor_names_share`` the share of the claim's
    names in that sentence (a name of the source, but of another of its facts: "the Billing team owns
    Atlas" where Platform does); ``window_novel_words`` as ``novel_words`` for the window.
    """
    words = content_words(claim)
    source_words = content_words(source)
    names = claim_names(claim)
    anchor = _anchor(_claim_terms(claim), window)
    return [
        float(logit),
        float(window_recall),
        len(words & source_words) / len(words) if words else 1.0,
        len(names & source_words) / len(names) if names else 1.0,
        float(not numbers(claim) <= numbers(source)),
        float(negation_flipped(claim, anchor)),
        float(opposite_word(claim, anchor) is not None),
        float(reversed_relation(claim, anchor)),
        min(5, len(words - source_words)) / 5.0,
        len(names & content_words(anchor)) / len(names) if names else 1.0,
        min(5, len(words - content_words(window))) / 5.0,
    ]


@dataclass(frozen=True)
class Stack:
    """Stacked calibration: ``p = sigmoid(bias + sum(weights[k] * features[k]))`` over :data:`FEATURES` (logistic regression)."""

    weights: tuple[float, ...]
    bias: float

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        """Probabilities, one per row of features."""
        z = np.clip(np.asarray(rows, dtype=np.float64) @ np.asarray(self.weights) + self.bias, -60.0, 60.0)
        return 1.0 / (1.0 + np.exp(-z))


def read_settings(model_dir: Path) -> dict[str, Any]:
    """The ``rag_verifier.json`` of a model directory, checked.

    Keys: ``calibration`` (``{"a", "b"}``), ``stack`` (null, or ``{"features", "weights", "bias"}``:
    see :class:`Stack`; it replaces ``calibration`` when present), ``threshold`` (in [0, 1] or null),
    ``max_length`` (16..4096), ``windows_per_claim`` (>= 1); others are kept as they are
    (the training record).

    Raises:
        ConfigError: naming the file: missing, not JSON, or a value out of range.
    """
    path = Path(model_dir) / SETTINGS_FILE
    if not path.is_file():
        raise ConfigError(SETTING, f"{path} does not exist: not a model written by rag train-verifier")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(SETTING, f"{path} is unreadable: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(SETTING, f"{path} must hold a JSON object")

    def number(value: Any) -> bool:
        return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)

    cal = data.get("calibration", {"a": 1.0, "b": 0.0})
    if not isinstance(cal, dict) or not all(number(cal.get(k)) for k in ("a", "b")):
        raise ConfigError(SETTING, f"{path}: calibration must be {{\"a\": number, \"b\": number}}, got {cal!r}")
    threshold = data.get("threshold")
    if threshold is not None and not (number(threshold) and 0.0 <= threshold <= 1.0):
        raise ConfigError(SETTING, f"{path}: threshold must be a number in [0, 1] or null, got {threshold!r}")
    max_length = data.get("max_length", DEFAULT_MAX_LENGTH)
    if isinstance(max_length, bool) or not isinstance(max_length, int) or not 16 <= max_length <= 4096:
        raise ConfigError(SETTING, f"{path}: max_length must be an integer in [16, 4096], got {max_length!r}")
    windows = data.get("windows_per_claim", WINDOWS_PER_CLAIM)
    if isinstance(windows, bool) or not isinstance(windows, int) or windows < 1:
        raise ConfigError(SETTING, f"{path}: windows_per_claim must be an integer >= 1, got {windows!r}")
    stack = data.get("stack")
    if stack is not None:
        weights = stack.get("weights") if isinstance(stack, dict) else None
        if (
            not isinstance(stack, dict)
            or stack.get("features") != list(FEATURES)
            or not isinstance(weights, list)
            or len(weights) != len(FEATURES)
            or not all(number(w) for w in weights)
            or not number(stack.get("bias"))
        ):
            raise ConfigError(
                SETTING, f"{path}: stack must be {{\"features\": {list(FEATURES)}, \"weights\": [numbers], \"bias\": number}}"
            )
        stack = {"features": list(FEATURES), "weights": [float(w) for w in weights], "bias": float(stack["bias"])}
    return {
        **data,
        "stack": stack,
        "calibration": {"a": float(cal["a"]), "b": float(cal["b"])},
        "threshold": None if threshold is None else float(threshold),
        "max_length": max_length,
        "windows_per_claim": windows,
    }


def write_settings(model_dir: Path, settings: dict[str, Any]) -> Path:
    """Write ``rag_verifier.json`` (checked by reading it back with :func:`read_settings`).

    Returns:
        The file's path.
    """
    path = Path(model_dir) / SETTINGS_FILE
    path.write_text(json.dumps(settings, indent=2), encoding="utf-8")
    read_settings(model_dir)
    return path


def default_model_dir(data_dir: Path | str) -> Path:
    """Where ``rag train-verifier`` saves by default and the service looks first: ``<data dir>/verifiers/default``."""
    return Path(data_dir) / "verifiers" / "default"


def resolve_backend(model_dir: Path, backend: str) -> str:
    """``auto`` becomes ``onnx-int8`` when ``onnx/model_qint8.onnx`` exists and onnxruntime is installed, else ``torch``.

    Raises:
        ConfigError: an unknown backend name (the valid ones are listed).
    """
    if backend not in BACKENDS:
        raise ConfigError("RAG_VERIFIER__BACKEND", f"unknown backend {backend!r}; valid: {' | '.join(BACKENDS)}")
    if backend != "auto":
        return backend
    if (Path(model_dir) / "onnx" / ONNX_FILES["onnx-int8"]).is_file() and importlib.util.find_spec("onnxruntime"):
        return "onnx-int8"
    return "torch"


class _OnnxLogits:
    """Raw logits of an exported cross-encoder on onnxruntime's CPU provider."""

    INPUTS = ("input_ids", "attention_mask", "token_type_ids")

    def __init__(self, onnx_path: Path, tokenizer_dir: Path, max_length: int, threads: int) -> None:
        import onnxruntime as ort
        from transformers import AutoTokenizer

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        names = {i.name for i in self.session.get_inputs()}
        self.inputs = [n for n in self.INPUTS if n in names]
        self.tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
        self.max_length = max_length

    def __call__(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        enc = self.tokenizer(
            [c for c, _ in pairs], [w for _, w in pairs], padding=True, truncation=True,
            max_length=self.max_length, return_tensors="np",
        )
        feed = {n: enc[n].astype(np.int64) for n in self.inputs}
        return np.asarray(self.session.run(None, feed)[0], dtype=np.float64).reshape(-1)


class _TorchLogits:
    """Raw logits of a saved sentence-transformers CrossEncoder."""

    def __init__(self, model_dir: Path, max_length: int, device: str) -> None:
        import torch
        from sentence_transformers import CrossEncoder

        self._identity = torch.nn.Identity()
        self.model = CrossEncoder(str(model_dir), device=device, max_length=max_length, local_files_only=True)

    def __call__(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        out = self.model.predict(
            list(pairs), batch_size=max(1, len(pairs)), activation_fn=self._identity, show_progress_bar=False
        )
        return np.asarray(out, dtype=np.float64).reshape(-1)


class CrossEncoderSupportScorer:
    """Support from a fine-tuned (claim, passage) cross-encoder, calibrated to a probability.

    For a claim ``c`` and sources ``s_1 .. s_n``::

        W     = the windows_per_claim windows with the highest recall among
                ranked_windows(c, s_i) of all sources (ties: the earlier source)
        z_i   = max logit(c, w) over the w in W from s_i
        w_i   = the best-recall window of s_i in W
        p_i   = Stack(features(c, w_i, recall(w_i), s_i, z_i)) when the model has a stack,
                else sigmoid(a * z_i + b)
        score(s_i) = capped(p_i, c, s_i)

    with ``a, b`` the Platt calibration fitted on held-out pairs by ``rag
    train-verifier`` and :func:`capped` the name penalty and number cap of the hybrid
    scorer. A source none of whose windows is in ``W`` scores 0: every window read holds
    more of the claim's terms than its best one (the verifier passes a cited claim only
    its cited sources, so the budget goes where the citation points). The span is that of
    ``w_i`` (a gathered window spans from its first sentence to its last), or of the
    source's best-recall window when none of it was read. All (claim, window) pairs of
    one call go through the model in one forward pass: a budget per claim rather than per
    source keeps a 5-claim answer at 15 pairs however many sources it cites. :attr:`threshold` is the support threshold fitted with the
    model on data that the test figures do not use.

    ``__init__`` is cheap; :meth:`warm_up` loads the model.

    Args:
        model_dir: a directory written by ``rag train-verifier``.
        backend: ``auto`` | ``torch`` | ``onnx`` | ``onnx-int8`` (see :func:`resolve_backend`).
        embed: unused by the model; kept so that a blend with embedding similarity can be
            fitted later without changing the factory.
        threads: onnxruntime intra-op threads (0: its default).
        device: torch device for the ``torch`` backend.
        windows_per_claim: windows read per claim over all its sources (default: the trained setting).

    Raises:
        ConfigError: ``rag_verifier.json`` is missing or bad, or the backend is unknown.

    Example:
        >>> scorer = load_support_scorer(".rag/verifiers/default")  # doctest: +SKIP
        >>> scorer.support("Bicycles can not be parked for free.", ["Bicycles can be parked for free."])  # doctest: +SKIP
        [Support(score=0.03, start=0, end=32)]
    """

    def __init__(
        self,
        model_dir: Path | str,
        backend: str = "auto",
        *,
        embed: Embed | None = None,
        threads: int = 1,
        device: str = "cpu",
        windows_per_claim: int | None = None,
    ) -> None:
        self.model_dir = Path(model_dir).expanduser()
        self.settings = read_settings(self.model_dir)
        self.backend = resolve_backend(self.model_dir, backend)
        self.calibration = Calibration(**self.settings["calibration"])
        stack = self.settings["stack"]
        self.stack: Stack | None = Stack(tuple(stack["weights"]), stack["bias"]) if stack else None
        self.threshold: float | None = self.settings["threshold"]
        """Support threshold fitted with the model (None: not fitted; use the configured one)."""
        self.max_length: int = self.settings["max_length"]
        self.windows_per_claim: int = windows_per_claim or self.settings["windows_per_claim"]
        self._embed = embed
        self._threads = threads
        self._device = device
        self._logits: _OnnxLogits | _TorchLogits | None = None
        self._lock = threading.Lock()

    def warm_up(self) -> CrossEncoderSupportScorer:
        """Load the model (idempotent).

        Raises:
            ModelLoadError: naming the directory and the file at fault.
        """
        self._model()
        return self

    def _model(self) -> _OnnxLogits | _TorchLogits:
        with self._lock:
            if self._logits is None:
                self._logits = self._load()
            return self._logits

    def _load(self) -> _OnnxLogits | _TorchLogits:
        if self.backend == "torch":
            if not (self.model_dir / "config.json").is_file():
                raise ModelLoadError(SETTING, f"{self.model_dir} has no config.json: not a saved cross-encoder")
            try:
                return _TorchLogits(self.model_dir, self.max_length, self._device)
            except Exception as exc:
                raise ModelLoadError(SETTING, f"could not load the cross-encoder in {self.model_dir}: {_one_line(exc)}") from None
        path = self.model_dir / "onnx" / ONNX_FILES[self.backend]
        if not path.is_file():
            raise ModelLoadError(
                SETTING, f"{path} does not exist (backend {self.backend!r}); rag train-verifier writes it, or use backend 'torch'"
            )
        if importlib.util.find_spec("onnxruntime") is None:
            raise ModelLoadError("RAG_VERIFIER__BACKEND", f"backend {self.backend!r} needs onnxruntime")
        try:
            return _OnnxLogits(path, self.model_dir, self.max_length, self._threads)
        except Exception as exc:
            raise ModelLoadError(SETTING, f"could not load {path}: {_one_line(exc)}") from None

    def logits(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """The model's raw scores of (claim, passage) pairs, in one forward pass."""
        return self._model()(pairs) if pairs else np.zeros(0)

    def probabilities(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """Calibrated support probabilities of (claim, passage) pairs, before the name and number checks."""
        return self.calibration(self.logits(pairs)) if pairs else np.zeros(0)

    def score(self, claim: str, sources: Sequence[str], context: str = "") -> list[float]:
        """The scores of :meth:`support`, alone."""
        return [s.score for s in self.support(claim, sources, context)]

    def support(self, claim: str, sources: Sequence[str], context: str = "") -> list[Support]:
        """Score one claim against a batch of sources (see the class docstring for the formula).

        With a ``context`` (a short answer's question), the model reads context + claim and the
        windows are chosen for it, while the name and number checks look at the claim alone.

        Args:
            claim: one sentence, citation markers removed.
            sources: source texts.
            context: the question of a short answer ("" for sentence answers).

        Returns:
            One :class:`Support` per source; score 0 and an empty span for an empty source.
        """
        best = self._read(claim, sources, context)
        out = []
        for source, found in zip(sources, best, strict=True):
            if found is None:
                out.append(Support(0.0))
                continue
            p, window, _ = found
            value = capped(p, claim, source) if p > 0.0 else 0.0
            out.append(Support(round(min(1.0, max(0.0, value)), 6), window.start, window.end))
        return out

    def features(self, claim: str, sources: Sequence[str], context: str = "") -> list[list[float] | None]:
        """Per source, the :func:`features` its score is computed from (None when none of its windows was read): what the stack is fitted on."""
        return [None if f is None or f[2] is None else f[2] for f in self._read(claim, sources, context)]

    def _read(
        self, claim: str, sources: Sequence[str], context: str
    ) -> list[tuple[float, Window, list[float] | None] | None]:
        """Per source: (probability, window, features) from its windows read (see the class docstring);
        probability 0 and its best-recall window when none was read; None for an empty source."""
        full = f"{context.strip()} {claim}".strip()
        ranked = [ranked_windows(full, s, self.windows_per_claim) for s in sources]
        budget = sorted(
            ((recall, i, r) for i, found in enumerate(ranked) for r, (recall, _) in enumerate(found)),
            key=lambda t: (-t[0], t[1], t[2]),
        )[: self.windows_per_claim]
        chosen = sorted((i, r) for _, i, r in budget)
        logits = self.logits([(full, ranked[i][r][1].text) for i, r in chosen])
        read: dict[int, list[tuple[int, float]]] = {}
        for (i, r), z in zip(chosen, logits, strict=True):
            read.setdefault(i, []).append((r, float(z)))
        best: list[tuple[float, Window, list[float] | None] | None] = [
            (0.0, found[0][1], None) if found else None for found in ranked
        ]
        for i, windows in read.items():
            # The source's best-recall window read carries the checks; the logit is the best of its windows.
            r = min(w for w, _ in windows)
            recall, window = ranked[i][r]
            logit = max(z for _, z in windows)
            row = features(claim, window.text, recall, sources[i], logit)
            p = self.stack(np.array([row]))[0] if self.stack is not None else self.calibration(np.array([logit]))[0]
            best[i] = (float(p), window, row)
        return best


def load_support_scorer(
    path: Path | str, backend: str = "auto", embed: Embed | None = None, *, threads: int = 1
) -> CrossEncoderSupportScorer:
    """Open and load a model written by ``rag train-verifier``.

    Args:
        path: the model directory (e.g. :func:`default_model_dir`).
        backend: ``auto`` | ``torch`` | ``onnx`` | ``onnx-int8``.
        embed: the service's embedder (see :class:`CrossEncoderSupportScorer`).
        threads: onnxruntime intra-op threads (0: its default; 1 serves best on a busy CPU).

    Returns:
        The scorer, warmed up.

    Raises:
        ConfigError: ``path`` is not a directory, its ``rag_verifier.json`` is missing or bad,
            or the backend is unknown.
        ModelLoadError: the model files named cannot be loaded.
    """
    model_dir = Path(path).expanduser()
    if not model_dir.is_dir():
        raise ConfigError(SETTING, f"{model_dir} is not a directory (train one with rag train-verifier)")
    return CrossEncoderSupportScorer(model_dir, backend, embed=embed, threads=threads).warm_up()


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__
