"""``rag eval verifier``: how well a :class:`SupportScorer` catches unsupported claims, on human labels.

Two JSONL layouts are read; the layout is detected from the first row.

* **RAGTruth** (``passages``, ``response``, ``spans``, optional ``hallucinated``, ``model``): each response
  is split into claims with :func:`rag.verify.claims.split_claims`, as answers are (framing sentences such as
  "Sure!" are not claims: :func:`rag.verify.claims.is_framing`), and each claim is scored
  against every passage (post-hoc attribution: no citations, a claim's score is its best over the
  passages). A claim is unsupported when its score is below the threshold, and a response is predicted
  hallucinated when any claim is. A claim (a sentence) is gold-unsupported when a gold span overlaps it.
* **SciFact pairs** (``claim``, ``abstract`` or ``abstract_sentences``, ``label`` of ``supported`` /
  ``contradicted`` / ``no_evidence``, optional ``claim_id``): the claim is scored against its abstract;
  supported is judged against the rest.

Any :class:`SupportScorer` can be evaluated. Two optional attributes of a scorer are honoured:

* ``threshold: float | None``: a support threshold fitted with the model; when it is a number it is used
  instead of ``settings.verifier.support_threshold``.
* ``contradiction(claim, sources, context="") -> list[float]``: per source, the probability that it
  contradicts the claim. With it, SciFact pairs get a 3-way confusion matrix: supported when the support
  score reaches the threshold, else contradicted when the contradiction probability reaches
  ``contradiction_threshold`` (an optional attribute, default 0.5), else no evidence.

Latency is the time of a scorer's ``support`` calls for one item (every claim of a response, or one pair),
with one torch and one FAISS thread as when serving. The scorer comes from a factory, called again
whenever an item's sources differ from the previous item's: a cache of source embeddings lives as long as
the sources stay the same (RAGTruth has six consecutive responses per article, as an answer has several
claims against the same sources), and never carries over to other sources. Latency is reported over all
items, over the *cold* ones (sources first seen, what a new answer pays) and over the *warm* ones; the
models behind a factory are loaded once.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import numpy as np

from eval.report import _fmt, _table, _write_json, _write_text
from rag.config import Settings
from rag.errors import ConfigError, FileError, InputError
from rag.verify.claims import ClaimText, is_framing, split_claims
from rag.verify.support import Support, SupportScorer
from rag.verify.verifier import fitted_threshold

if TYPE_CHECKING:
    from rich.console import Console

    from rag.embedding import Embedder

Layout = Literal["ragtruth", "scifact"]
Part = Literal["train", "dev", "test"]
PairLabel = Literal["supported", "contradicted", "no_evidence"]
ScorerFactory = Callable[[], SupportScorer]
"""Returns a scorer with empty caches; called whenever the sources change (see the module docstring)."""

SCORERS: tuple[str, ...] = ("hybrid", "baseline", "model")
"""Scorers :func:`scorer_factory` can build by name: ``hybrid`` is the :class:`HybridSupportScorer` the service
uses when no model is configured; ``baseline`` the same without its contradiction checks
(:mod:`rag.verify.checks`), as it was before them; ``model`` the learned scorer ``RAG_VERIFIER__MODEL`` names."""

SPLIT_FRACTIONS: tuple[float, float, float] = (0.6, 0.2, 0.2)
"""Shares of SciFact claims in the train, dev and test parts of :func:`scifact_split`."""

PUBLISHED_RAGTRUTH_SUMMARY: dict[str, float] = {
    "prompted GPT-4-turbo": 0.476,
    "fine-tuned Llama-2-13B": 0.591,
    "LettuceDetect-large": 0.597,
    "RAG-HAT": 0.676,
    "HHEM-2.1-Open": 0.448,
}
"""RAGTruth summary task, response-level F1 of the hallucinated class: LettuceDetect (arXiv:2502.17125),
Table 1, reproducing the RAGTruth paper's rows; HHEM-2.1-Open from its model card."""

_RAGTRUTH_FIELDS = ("passages", "response", "spans")
_SCIFACT_FIELDS = ("claim", "abstract", "label")
_PAIR_LABELS: dict[str, PairLabel] = {
    "supported": "supported", "support": "supported",
    "contradicted": "contradicted", "contradict": "contradicted",
    "no_evidence": "no_evidence", "not_enough_info": "no_evidence",
}
_EVIDENCE_CHARS = 300


# data ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GoldSpan:
    """A human-marked unsupported span of a response: ``response[start:end]``, with its type."""

    start: int
    end: int
    label: str


@dataclass(frozen=True)
class Response:
    """One RAGTruth-layout record: a generated response to passages, with its gold spans."""

    id: str
    model: str
    passages: tuple[str, ...]
    response: str
    spans: tuple[GoldSpan, ...]
    hallucinated: bool


@dataclass(frozen=True)
class ClaimPair:
    """One SciFact-layout record: a claim, the abstract it cites and the gold label."""

    id: str
    claim_id: str
    claim: str
    abstract: str
    label: PairLabel


@dataclass(frozen=True)
class VerifyDataset:
    """A verifier evaluation set; ``responses`` holds RAGTruth records and ``pairs`` SciFact ones."""

    name: str
    path: Path
    layout: Layout
    responses: tuple[Response, ...] = ()
    pairs: tuple[ClaimPair, ...] = ()

    def __len__(self) -> int:
        return len(self.responses) + len(self.pairs)


def dataset_file(path: Path) -> Path:
    """The JSONL file to read: ``path`` itself, or the one ``.jsonl`` file in the folder ``path``.

    Raises:
        FileError: the path does not exist, or the folder holds no or several ``.jsonl`` files.
    """
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileError(str(path), "does not exist")
    found = sorted(path.glob("*.jsonl"))
    if len(found) == 1:
        return found[0]
    if not found:
        subdirs = ", ".join(sorted(p.name for p in path.iterdir() if p.is_dir())) or "none"
        raise FileError(str(path), f"no .jsonl file in this folder (sub-folders: {subdirs}); name a file or its folder")
    raise FileError(str(path), f"several .jsonl files ({', '.join(p.name for p in found)}); name one")


def detect_layout(row: Mapping[str, Any], path: Path, line: int = 1) -> Layout:
    """The layout of a record: RAGTruth when it has ``response`` or ``passages``, SciFact when it has ``claim``.

    Raises:
        FileError: naming the file, the line and the fields the record lacks.
    """
    if "response" in row or "passages" in row:
        _require(row, _RAGTRUTH_FIELDS, path, line, "RAGTruth")
        return "ragtruth"
    if "claim" in row:
        fields = _SCIFACT_FIELDS if "abstract_sentences" not in row else ("claim", "label")
        _require(row, fields, path, line, "SciFact")
        return "scifact"
    raise FileError(
        str(path),
        f"line {line}: neither layout: RAGTruth needs fields {', '.join(_RAGTRUTH_FIELDS)}; SciFact needs "
        f"{', '.join(_SCIFACT_FIELDS)} (or abstract_sentences); found {', '.join(sorted(row)) or 'no fields'}",
    )


def _require(row: Mapping[str, Any], fields: Sequence[str], path: Path, line: int, layout: str) -> None:
    missing = [f for f in fields if f not in row]
    if missing:
        raise FileError(str(path), f"line {line}: missing field {', '.join(map(repr, missing))} ({layout} layout)")


def _rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8") as f:
        for line, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as exc:
                raise FileError(str(path), f"line {line}: not JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise FileError(str(path), f"line {line}: a record must be a JSON object")
            yield line, row


def load_verify_dataset(path: Path) -> VerifyDataset:
    """Read a RAGTruth- or SciFact-layout JSONL file (or the folder holding one).

    Args:
        path: a ``.jsonl`` file, or a folder with exactly one.

    Returns:
        The records in file order; ``name`` is the folder's name.

    Raises:
        FileError: the file is missing or empty, a line is not a JSON object, or a record lacks a field
            of its layout or has a bad value (the message names the file, line and field).
    """
    file = dataset_file(path)
    layout: Layout | None = None
    responses: list[Response] = []
    pairs: list[ClaimPair] = []
    for line, row in _rows(file):
        layout = layout or detect_layout(row, file, line)
        if layout == "ragtruth":
            _require(row, _RAGTRUTH_FIELDS, file, line, "RAGTruth")
            responses.append(_response(row, file, line))
        else:
            _require(row, ("claim", "label"), file, line, "SciFact")
            pairs.append(_pair(row, file, line))
    if layout is None:
        raise FileError(str(file), "no records")
    return VerifyDataset(file.parent.name, file, layout, tuple(responses), tuple(pairs))


def _bad(path: Path, line: int, field: str, what: str) -> FileError:
    return FileError(str(path), f"line {line}: field {field!r} {what}")


def _response(row: Mapping[str, Any], path: Path, line: int) -> Response:
    passages, response, spans = row["passages"], row["response"], row["spans"]
    if not isinstance(passages, list) or not all(isinstance(p, str) for p in passages):
        raise _bad(path, line, "passages", "must be a list of strings")
    if not isinstance(response, str):
        raise _bad(path, line, "response", "must be a string")
    if not isinstance(spans, list):
        raise _bad(path, line, "spans", "must be a list")
    gold = []
    for span in spans:
        if not isinstance(span, dict) or not isinstance(span.get("start"), int) or not isinstance(span.get("end"), int):
            raise _bad(path, line, "spans", "must hold objects with integer start and end")
        gold.append(GoldSpan(span["start"], span["end"], str(span.get("label_type", span.get("label", "")))))
    hallucinated = row.get("hallucinated", bool(gold))
    return Response(
        str(row.get("id", f"line-{line}")), str(row.get("model", "")), tuple(passages), response, tuple(gold),
        bool(hallucinated),
    )


def _pair(row: Mapping[str, Any], path: Path, line: int) -> ClaimPair:
    claim, label = row["claim"], _PAIR_LABELS.get(str(row["label"]).lower())
    if not isinstance(claim, str):
        raise _bad(path, line, "claim", "must be a string")
    if label is None:
        raise _bad(path, line, "label", f"is {row['label']!r}; expected supported, contradicted or no_evidence")
    abstract = row.get("abstract")
    if abstract is None:
        sentences = row["abstract_sentences"]
        if not isinstance(sentences, list):
            raise _bad(path, line, "abstract_sentences", "must be a list of strings")
        abstract = " ".join(str(s) for s in sentences)
    if not isinstance(abstract, str):
        raise _bad(path, line, "abstract", "must be a string")
    claim_id = str(row.get("claim_id", claim))
    return ClaimPair(str(row.get("id", f"line-{line}")), claim_id, claim, abstract, label)


R = TypeVar("R")


def scifact_part(claim_id: object, seed: int = 13) -> Part:
    """The part of :func:`scifact_split` that a claim id falls in.

    ``u = first 8 bytes of sha256(f"{seed}:{claim_id}")`` read as an integer over 2**64, in [0, 1);
    train when ``u < 0.6``, dev when ``u < 0.8``, else test (:data:`SPLIT_FRACTIONS`).
    """
    digest = hashlib.sha256(f"{seed}:{claim_id}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    train, dev, _ = SPLIT_FRACTIONS
    return "train" if u < train else "dev" if u < train + dev else "test"


def _part(name: str) -> Part:
    if name == "train" or name == "dev" or name == "test":
        return name
    raise InputError("split", f"{name!r} is not one of train, dev, test")


def scifact_split(rows: Sequence[R], part: Part, seed: int = 13) -> list[R]:
    """The rows of one part of a deterministic 60/20/20 split of SciFact pairs by claim.

    Rows are assigned by a hash of their claim id (:func:`scifact_part`), so all pairs of one claim sit in
    the same part, the split does not depend on row order or on Python's hash seed, and a row keeps its
    part when others are added or removed. Training uses ``train`` (and ``dev`` to fit a threshold);
    ``rag eval verifier --split test`` reports on the rest.

    Args:
        rows: raw JSON records (mappings with ``claim_id``, or ``claim`` when it is absent) or
            :class:`ClaimPair` values.
        part: ``train``, ``dev`` or ``test``.
        seed: changes the assignment; keep 13 unless every user of the split changes it.

    Returns:
        The rows of that part, in their input order.

    Raises:
        InputError: ``part`` is not one of the three.
    """
    part = _part(part)

    def claim_id(row: R) -> object:
        if isinstance(row, Mapping):
            return row.get("claim_id", row.get("claim"))
        return getattr(row, "claim_id")

    return [row for row in rows if scifact_part(claim_id(row), seed) == part]


# metrics ------------------------------------------------------------------------------------------


def binary_scores(gold: Sequence[bool], predicted: Sequence[bool]) -> dict[str, float]:
    """Precision, recall and F1 of the positive class, with the counts.

    ``precision = tp / (tp + fp)``, ``recall = tp / (tp + fn)``, ``f1 = 2 p r / (p + r)``; each is 0
    when its denominator is.

    Args:
        gold: per item, whether it is truly positive.
        predicted: per item, whether it was predicted positive.

    Returns:
        ``precision``, ``recall``, ``f1``, ``tp``, ``fp``, ``fn``, ``tn``, ``positives`` (gold) and ``n``.

    Raises:
        InputError: the two sequences differ in length.
    """
    if len(gold) != len(predicted):
        raise InputError("predicted", f"{len(predicted)} predictions for {len(gold)} gold labels")
    tp = sum(g and p for g, p in zip(gold, predicted))
    fp = sum(p and not g for g, p in zip(gold, predicted))
    fn = sum(g and not p for g, p in zip(gold, predicted))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    tn = len(gold) - tp - fp - fn
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": fp, "fn": fn, "tn": tn,
            "positives": tp + fn, "n": len(gold)}


def auroc(positive: Sequence[bool], scores: Sequence[float]) -> float | None:
    """Area under the ROC curve: the chance that a random positive scores above a random negative.

    ``(sum of the positives' ranks - P (P + 1) / 2) / (P N)`` with average ranks for ties, so a tie counts
    one half (the Mann-Whitney U statistic over ``P N``; Hanley and McNeil, 1982).

    Args:
        positive: per item, whether it is in the positive class.
        scores: per item, higher meaning more likely positive.

    Returns:
        The area in [0, 1], or None when either class is empty.
    """
    y = np.asarray(positive, dtype=bool)
    s = np.asarray(scores, dtype=float)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=float)
    sorted_s = s[order]
    # Average ranks (1-based) over runs of equal scores.
    starts = np.flatnonzero(np.r_[True, sorted_s[1:] != sorted_s[:-1]])
    ends = np.r_[starts[1:], len(s)]
    for a, b in zip(starts, ends):
        ranks[order[a:b]] = (a + 1 + b) / 2
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def best_threshold(positive: Sequence[bool], scores: Sequence[float], *, below: bool) -> dict[str, float] | None:
    """The threshold with the best F1 of the positive class on these very labels (a diagnostic only).

    An item is predicted positive when ``score < t`` (``below=True``, e.g. unsupported) or
    ``score >= t`` (``below=False``, e.g. supported). Candidates are every distinct score and one just
    above the highest; ties in F1 go to the lowest threshold.

    Returns:
        ``threshold``, ``precision``, ``recall`` and ``f1``; None for no items.
    """
    y = np.asarray(positive, dtype=bool)
    s = np.asarray(scores, dtype=float)
    if len(s) == 0:
        return None
    candidates = np.unique(np.append(s, np.nextafter(s.max(), np.inf)))
    predicted = s[None, :] < candidates[:, None]
    if not below:
        predicted = ~predicted
    tp = (predicted & y).sum(axis=1)
    fp = (predicted & ~y).sum(axis=1)
    fn = y.sum() - tp
    f1 = np.where(tp > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0)
    i = int(np.argmax(f1))
    return {
        "threshold": float(candidates[i]),
        "precision": float(tp[i] / (tp[i] + fp[i])) if tp[i] + fp[i] else 0.0,
        "recall": float(tp[i] / (tp[i] + fn[i])) if tp[i] + fn[i] else 0.0,
        "f1": float(f1[i]),
    }


def overlaps(start: int, end: int, spans: Sequence[GoldSpan]) -> bool:
    """Whether ``[start, end)`` shares at least one character with any span."""
    return any(s.start < end and start < s.end for s in spans)


def latency_summary(values_ms: Sequence[float]) -> dict[str, float | None]:
    """``p50``, ``p95`` (linear interpolation) and ``mean`` in milliseconds; None for no values."""
    if not values_ms:
        return {"p50": None, "p95": None, "mean": None}
    p50, p95 = np.percentile(np.asarray(values_ms, dtype=float), [50, 95])
    return {"p50": float(p50), "p95": float(p95), "mean": float(np.mean(values_ms))}


# scorers ------------------------------------------------------------------------------------------


def configured_scorer(settings: Settings) -> str:
    """The name of the scorer the settings configure: ``model`` when ``RAG_VERIFIER__MODEL`` is set, else ``hybrid``."""
    return "model" if settings.verifier.model else "hybrid"


def scorer_factory(settings: Settings, name: str, embedder: Embedder | None = None) -> ScorerFactory:
    """A factory of the named scorer; the models behind it are loaded here, once.

    Args:
        settings: service settings (the embedder's, the verifier's).
        name: one of :data:`SCORERS`.
        embedder: a loaded embedder to share; None builds one from ``settings.embedding``.

    Returns:
        A callable returning a scorer with an empty cache; the hybrid ones cost nothing to build,
        the learned model is loaded once and shared.

    Raises:
        InputError: an unknown name, listing the valid ones.
        ConfigError: ``model`` without ``RAG_VERIFIER__MODEL``, or a bad model directory.
        ModelLoadError: a model cannot be loaded.
    """
    _check_scorer(name)
    from rag.embedding import Embedder
    from rag.verify.support import HybridSupportScorer

    if name == "model":
        from rag.verify.model import load_support_scorer

        config = settings.verifier
        if not config.model:
            raise ConfigError("RAG_VERIFIER__MODEL", "is empty: name a directory written by rag train-verifier")
        model = load_support_scorer(config.model, config.backend, threads=config.threads)
        return lambda: model
    embed = (embedder or Embedder(settings.embedding)).warm_up()
    windows = settings.verifier.windows_per_claim
    checks = name == "hybrid"
    return lambda: HybridSupportScorer(embed.embed_documents, windows=windows, contradictions=checks)


def _check_scorer(name: str) -> None:
    if name not in SCORERS:
        raise InputError("compare", f"unknown scorer {name!r}; valid: {' | '.join(SCORERS)}")


def build_scorer(settings: Settings, name: str | None = None, embedder: Embedder | None = None) -> SupportScorer:
    """The scorer the settings configure (or the named one), ready to use.

    Args:
        settings: service settings.
        name: one of :data:`SCORERS`; None means :func:`configured_scorer`.
        embedder: a loaded embedder to share.

    Raises:
        InputError: an unknown name.
    """
    return scorer_factory(settings, name or configured_scorer(settings), embedder)()


def scorer_threshold(scorer: object, default: float) -> tuple[float, str]:
    """The support threshold to judge a scorer by, and where it came from.

    A scorer's own numeric ``threshold`` attribute (fitted with the model) wins over ``default``
    (``settings.verifier.support_threshold``).
    """
    own = fitted_threshold(scorer)
    if own is not None:
        return own, "scorer.threshold"
    return default, "settings.verifier.support_threshold"


# scoring ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Scored:
    """One claim's best support over its sources: the score, the source's index (-1: none) and the span."""

    score: float
    source: int
    start: int
    end: int


def _best(found: Sequence[Support]) -> _Scored:
    if not found:
        return _Scored(0.0, -1, 0, 0)
    i = max(range(len(found)), key=lambda k: found[k].score)
    return _Scored(float(found[i].score), i, found[i].start, found[i].end)


def _timed(scorer: SupportScorer, claims: Sequence[str], sources: Sequence[str]) -> tuple[list[_Scored], float]:
    t0 = time.perf_counter()
    best = [_best(scorer.support(claim, sources)) for claim in claims]
    return best, (time.perf_counter() - t0) * 1000


def _evidence(sources: Sequence[str], scored: _Scored) -> str:
    return sources[scored.source][scored.start : scored.end][:_EVIDENCE_CHARS] if scored.source >= 0 else ""


class _Instances:
    """One scorer per factory, made afresh whenever the sources differ from the last ones asked for."""

    def __init__(self, factories: Mapping[str, ScorerFactory]) -> None:
        self._factories = factories
        self._sources: Sequence[str] | None = None
        self._scorers: dict[str, SupportScorer] = {}

    def for_sources(self, sources: Sequence[str]) -> tuple[dict[str, SupportScorer], bool]:
        """The scorers for these sources, and whether they are new (cold)."""
        cold = self._sources is None or list(sources) != list(self._sources)
        if cold:
            self._sources = sources
            self._scorers = {name: make() for name, make in self._factories.items()}
        return self._scorers, cold


def _score_responses(
    data: VerifyDataset, scorers: Mapping[str, ScorerFactory], advance: Callable[[], None]
) -> list[dict[str, Any]]:
    """Per response: its claims, their gold labels and, per scorer, their scores and the latency."""
    rows = []
    instances = _Instances(scorers)
    for item in data.responses:
        current, cold = instances.for_sources(item.passages)
        claims: list[ClaimText] = [c for c in split_claims(item.response) if not is_framing(c.text)]
        row: dict[str, Any] = {
            "id": item.id, "model": item.model, "hallucinated": item.hallucinated,
            "spans": [{"start": s.start, "end": s.end, "label": s.label} for s in item.spans],
            "claims": [
                {"text": c.text, "start": c.start, "end": c.end, "gold_unsupported": overlaps(c.start, c.end, item.spans),
                 "score": {}, "evidence": {}}
                for c in claims
            ],
            "latency_ms": {},
            "cold": cold,
        }
        for name, scorer in current.items():
            best, ms = _timed(scorer, [c.text for c in claims], item.passages)
            row["latency_ms"][name] = ms
            for out, scored in zip(row["claims"], best):
                out["score"][name] = scored.score
                out["evidence"][name] = _evidence(item.passages, scored)
        rows.append(row)
        advance()
    return rows


def _score_pairs(
    data: VerifyDataset, scorers: Mapping[str, ScorerFactory], advance: Callable[[], None]
) -> list[dict[str, Any]]:
    """Per pair: the gold label and, per scorer, the support score, a contradiction probability and the latency."""
    rows = []
    instances = _Instances(scorers)
    for pair in data.pairs:
        current, cold = instances.for_sources([pair.abstract])
        row: dict[str, Any] = {
            "id": pair.id, "claim_id": pair.claim_id, "claim": pair.claim, "label": pair.label,
            "score": {}, "contradiction": {}, "evidence": {}, "latency_ms": {}, "cold": cold,
        }
        for name, scorer in current.items():
            (scored,), ms = _timed(scorer, [pair.claim], [pair.abstract])
            row["score"][name], row["latency_ms"][name] = scored.score, ms
            row["evidence"][name] = _evidence([pair.abstract], scored)
            contradiction = getattr(scorer, "contradiction", None)
            if callable(contradiction):
                row["contradiction"][name] = float(contradiction(pair.claim, [pair.abstract])[0])
        rows.append(row)
        advance()
    return rows


def _latency(rows: Sequence[Mapping[str, Any]], name: str) -> dict[str, Any]:
    """Latency of one scorer over all items, with the cold and warm ones apart."""
    return {
        **latency_summary([r["latency_ms"][name] for r in rows]),
        "cold": latency_summary([r["latency_ms"][name] for r in rows if r["cold"]]),
        "warm": latency_summary([r["latency_ms"][name] for r in rows if not r["cold"]]),
        "cold_items": sum(bool(r["cold"]) for r in rows),
    }


# figures ------------------------------------------------------------------------------------------


def _ragtruth_figures(rows: Sequence[Mapping[str, Any]], name: str, threshold: float) -> dict[str, Any]:
    """Response-level, sentence-level, per-model and per-span-type figures of one scorer."""
    claim_rows = [c for r in rows for c in r["claims"]]
    claim_scores = [c["score"][name] for c in claim_rows]
    claim_gold = [c["gold_unsupported"] for c in claim_rows]
    # A response with no claims claims nothing: its score is 1.
    response_scores = [min((c["score"][name] for c in r["claims"]), default=1.0) for r in rows]
    response_gold = [bool(r["hallucinated"]) for r in rows]

    def response_level(subset: Sequence[int]) -> dict[str, Any]:
        gold = [response_gold[i] for i in subset]
        scores = [response_scores[i] for i in subset]
        return {**binary_scores(gold, [s < threshold for s in scores]), "auroc": auroc(gold, [-s for s in scores])}

    models = sorted({str(r["model"]) for r in rows})
    spans_by_type: dict[str, list[bool]] = {}
    for r in rows:
        for span in r["spans"]:
            hit = [c["score"][name] < threshold for c in r["claims"] if overlaps(c["start"], c["end"], [GoldSpan(**span)])]
            spans_by_type.setdefault(span["label"], []).append(any(hit))
    return {
        "threshold": threshold,
        "response": response_level(range(len(rows))),
        "sentence": {
            **binary_scores(claim_gold, [s < threshold for s in claim_scores]),
            "auroc": auroc(claim_gold, [-s for s in claim_scores]),
        },
        "best_threshold": {
            "response": best_threshold(response_gold, response_scores, below=True),
            "sentence": best_threshold(claim_gold, claim_scores, below=True),
        },
        "by_model": {m: response_level([i for i, r in enumerate(rows) if r["model"] == m]) for m in models},
        "spans_caught_by_type": {t: {"caught": sum(v), "spans": len(v)} for t, v in sorted(spans_by_type.items())},
        "latency_ms": _latency(rows, name),
        "claims_per_response": len(claim_rows) / len(rows) if rows else 0.0,
    }


def _scifact_figures(rows: Sequence[Mapping[str, Any]], name: str, threshold: float, contra_t: float) -> dict[str, Any]:
    """Supported-versus-rest figures of one scorer, with the 2-way or 3-way confusion matrix."""
    scores = [r["score"][name] for r in rows]
    gold = [r["label"] == "supported" for r in rows]
    predicted = [s >= threshold for s in scores]
    three_way = bool(rows) and all(name in r["contradiction"] for r in rows)
    confusion: dict[str, dict[str, int]] = {}
    for r, p in zip(rows, predicted):
        if three_way:
            column = "supported" if p else "contradicted" if r["contradiction"][name] >= contra_t else "no_evidence"
            key = r["label"]
        else:
            column = "supported" if p else "not_supported"
            key = "supported" if r["label"] == "supported" else "not_supported"
        confusion.setdefault(key, {}).setdefault(column, 0)
        confusion[key][column] += 1
    by_label = {
        label: {"pairs": len(s), "mean_score": float(np.mean(s)), "flagged": sum(x < threshold for x in s)}
        for label in ("supported", "contradicted", "no_evidence")
        if (s := [r["score"][name] for r in rows if r["label"] == label])
    }
    return {
        "threshold": threshold,
        "supported": binary_scores(gold, predicted),
        "not_supported": binary_scores([not g for g in gold], [not p for p in predicted]),
        "auroc": auroc(gold, scores),
        "confusion": {"kind": "3-way" if three_way else "2-way", "rows": "gold", "columns": "predicted",
                      "counts": confusion},
        "by_label": by_label,
        "best_threshold": {"supported": best_threshold(gold, scores, below=False)},
        "latency_ms": _latency(rows, name),
    }


# run ----------------------------------------------------------------------------------------------


def evaluate(
    data: VerifyDataset,
    scorers: Mapping[str, ScorerFactory],
    default_threshold: float,
    advance: Callable[[], None] = lambda: None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Score every item with every scorer (interleaved, so that machine load hits them alike) and sum up.

    Args:
        data: the records to score.
        scorers: name -> factory; the first is the configured scorer, the others its baselines.
        default_threshold: ``settings.verifier.support_threshold``, for scorers without their own.
        advance: called after each item (a progress bar).

    Returns:
        The ``scorers`` and ``comparison`` parts of the report, and the per-item rows.

    Raises:
        InputError: no scorers.
    """
    if not scorers:
        raise InputError("scorers", "no scorer to evaluate")
    probes = {name: make() for name, make in scorers.items()}
    thresholds = {name: scorer_threshold(p, default_threshold) for name, p in probes.items()}
    if data.layout == "ragtruth":
        rows = _score_responses(data, scorers, advance)
    else:
        rows = _score_pairs(data, scorers, advance)
    results: dict[str, Any] = {}
    for i, (name, probe) in enumerate(probes.items()):
        threshold, source = thresholds[name]
        if data.layout == "ragtruth":
            figures = _ragtruth_figures(rows, name, threshold)
        else:
            figures = _scifact_figures(rows, name, threshold, float(getattr(probe, "contradiction_threshold", 0.5)))
        role = "configured" if i == 0 else "baseline"
        results[name] = {"scorer": type(probe).__name__, "role": role, "threshold_source": source, **figures}
    return {"scorers": results, "comparison": _comparison(data.layout, results)}, rows


def _headline(layout: Layout, figures: Mapping[str, Any]) -> float:
    return float(figures["response"]["f1"] if layout == "ragtruth" else figures["supported"]["f1"])


def _comparison(layout: Layout, results: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The headline F1 of the configured scorer minus each baseline's, measured in the same run."""
    metric = "response-level F1, hallucinated class" if layout == "ragtruth" else "F1, supported class"
    (configured, first), *others = results.items()
    ours = _headline(layout, first)
    return {
        "metric": metric,
        "configured": configured,
        "f1": ours,
        "delta": {name: ours - _headline(layout, figures) for name, figures in others},
    }


def run_verifier_eval(
    settings: Settings,
    dataset: Path,
    *,
    out_dir: Path | None = None,
    limit: int = 0,
    split: str | None = None,
    compare: Sequence[str] = ("baseline",),
    scorers: Mapping[str, ScorerFactory] | None = None,
    console: Console | None = None,
) -> dict[str, Any]:
    """Evaluate the configured verifier scorer (and baselines) on a RAGTruth- or SciFact-layout file.

    Figures, for the unsupported (hallucinated) class unless said otherwise, at the configured
    threshold (see :func:`scorer_threshold`):

    * RAGTruth: precision, recall and F1 per response (hallucinated when any claim scores below the
      threshold) and per sentence (gold-unsupported when a gold span overlaps it); AUROC of the claim
      scores and of the response score (its lowest claim score); the same per generating model; the gold
      spans caught (overlapped by a flagged claim) per span type.
    * SciFact: precision, recall and F1 of the supported class and of the rest; AUROC; the confusion
      matrix (3-way when the scorer has ``contradiction``); mean score and share flagged per gold label.
    * Both: latency per item (p50, p95, mean) and, as a diagnostic only, the threshold with the best F1
      on this data.

    Args:
        settings: service settings; the verifier's threshold and the embedder come from here.
        dataset: a JSONL file, or the folder holding one.
        out_dir: where ``report.json``, ``report.md`` and ``items.jsonl`` go (default
            ``out/eval/<dataset>-verifier``).
        limit: score only the first N items after the split (0: all).
        split: ``train``, ``dev`` or ``test`` of :func:`scifact_split` (SciFact layout only); None: all.
        compare: baseline scorers run beside the configured one; a name equal to the configured
            scorer's is skipped.
        scorers: name -> factory, the first being the configured one; None builds them from the
            settings with :func:`scorer_factory`.
        console: where the progress bar goes.

    Returns:
        The report written to ``report.json``, plus ``out_dir``.

    Raises:
        FileError: the dataset cannot be read (see :func:`load_verify_dataset`).
        InputError: a bad ``limit``, ``split`` or scorer name.
    """
    if limit < 0:
        raise InputError("limit", f"must be 0 (all) or more, not {limit}")
    data = load_verify_dataset(dataset)
    if split is not None:
        if data.layout != "scifact":
            raise InputError("split", "a split applies to the SciFact layout only; RAGTruth is scored whole")
        part = _part(split)
        data = VerifyDataset(data.name, data.path, data.layout, pairs=tuple(scifact_split(data.pairs, part)))
    total = len(data)
    if limit:
        data = VerifyDataset(data.name, data.path, data.layout, data.responses[:limit], data.pairs[:limit])
    if not len(data):
        raise InputError("split" if split else "dataset", f"no records to score in {data.path}")

    from rag.threads import for_queries, query_threads

    settings = for_queries(settings)
    if scorers is None:
        scorers = _configured_factories(settings, compare)
    out = Path(out_dir) if out_dir is not None else Path("out") / "eval" / f"{data.name}-verifier"
    t0, load_before = time.perf_counter(), os.getloadavg()[0]
    with query_threads(), _progress(console, f"verifier {data.name}", len(data)) as advance:
        summary, rows = evaluate(data, scorers, settings.verifier.support_threshold, advance)
    report = {
        "dataset": data.name,
        "file": str(data.path),
        "layout": data.layout,
        "split": split or "all",
        "items": len(data),
        "items_available": total,
        "limit": limit,
        **summary,
        "published": _published(data),
        "config": {
            "support_threshold": settings.verifier.support_threshold,
            "embedding_model": settings.embedding.model,
            "threads": {"torch": 1, "faiss": 1},
            "claims": "rag.verify.claims.split_claims minus is_framing" if data.layout == "ragtruth" else "the claim, whole",
            "seconds": time.perf_counter() - t0,
            # Latency is only comparable between runs on an equally loaded machine.
            "load_average_1m": {"start": load_before, "end": os.getloadavg()[0], "cpus": os.cpu_count()},
        },
    }
    write_verifier_report(out, report, rows)
    return {**report, "out_dir": out}


def _configured_factories(settings: Settings, compare: Sequence[str]) -> dict[str, ScorerFactory]:
    configured = configured_scorer(settings)
    for name in compare:
        _check_scorer(name)  # before any model loads
    from rag.embedding import Embedder

    embedder = Embedder(settings.embedding)
    names = [configured, *(n for n in dict.fromkeys(compare) if n != configured)]
    return {name: scorer_factory(settings, name, embedder) for name in names}


def _published(data: VerifyDataset) -> dict[str, Any]:
    if data.layout != "ragtruth":
        return {}
    return {
        "metric": "RAGTruth summary task, response-level F1 of the hallucinated class",
        "source": "LettuceDetect (arXiv:2502.17125) Table 1, reproducing RAGTruth; HHEM-2.1-Open: its model card",
        "f1": PUBLISHED_RAGTRUTH_SUMMARY,
    }


class _progress:
    """A rich progress bar that yields its advance callable; a no-op without a console."""

    def __init__(self, console: Console | None, label: str, total: int) -> None:
        self._console, self._label, self._total = console, label, total
        self._bar: Any = None

    def __enter__(self) -> Callable[[], None]:
        if self._console is None:
            return lambda: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._bar = Progress(TextColumn(self._label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                             console=self._console, transient=True)
        self._bar.__enter__()
        task = self._bar.add_task("items", total=self._total)
        return lambda: self._bar.advance(task)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)


# report -------------------------------------------------------------------------------------------


def write_verifier_report(out_dir: Path, report: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> list[Path]:
    """Write ``report.json`` (the report unchanged), ``report.md`` and ``items.jsonl`` (one row per item).

    Args:
        out_dir: created if needed.
        report: as returned by :func:`run_verifier_eval` (without ``out_dir``).
        rows: the per-item rows of :func:`evaluate`.

    Returns:
        The three paths.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    items = out_dir / "items.jsonl"
    with items.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    sections = _ragtruth_md(report) if report["layout"] == "ragtruth" else _scifact_md(report)
    head = [
        f"# Verifier report: {report['dataset']} ({report['layout']} layout)",
        f"file: `{report['file']}` · split: **{report['split']}** · items: **{report['items']}** of "
        f"{report['items_available']}",
        _comparison_md(report),
    ]
    config = json.dumps(report["config"], indent=2, ensure_ascii=False)
    text = "\n\n".join([*head, *sections, "## Config", f"```json\n{config}\n```"]) + "\n"
    return [_write_json(out_dir / "report.json", report), _write_text(out_dir / "report.md", text), items]


def _comparison_md(report: Mapping[str, Any]) -> str:
    c = report["comparison"]
    deltas = "; ".join(f"{d:+.3f} against {name}" for name, d in c["delta"].items())
    return f"Headline ({c['metric']}): **{c['f1']:.3f}** for `{c['configured']}`" + (f" ({deltas})" if deltas else "")


def _latency_md(report: Mapping[str, Any], unit: str) -> list[str]:
    rows = []
    for name, r in report["scorers"].items():
        lat = r["latency_ms"]
        for label, part, n in (("all", lat, report["items"]), ("cold", lat["cold"], lat["cold_items"]),
                               ("warm", lat["warm"], report["items"] - lat["cold_items"])):
            rows.append([name, label, str(n), *(_fmt_ms(part[k]) for k in ("p50", "p95", "mean"))])
    return [
        f"## Latency per {unit} (ms, one torch thread)",
        _table(["scorer", "items", "n", "p50", "p95", "mean"], rows),
        "*Cold*: the item's sources were new to the scorer (an answer's first claim pays their embedding); "
        "*warm*: the previous item had the same sources.",
    ]


def _fmt_ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def _prf(m: Mapping[str, Any]) -> list[str]:
    return [_fmt(m["precision"]), _fmt(m["recall"]), _fmt(m["f1"])]


def _ragtruth_md(report: Mapping[str, Any]) -> list[str]:
    scorers: Mapping[str, Mapping[str, Any]] = report["scorers"]
    response = [
        [name, "this run", _fmt(r["threshold"]), *_prf(r["response"]), _fmt(r["response"]["auroc"]),
         f"{r['response']['tp'] + r['response']['fp']} / {r['response']['positives']}"]
        for name, r in scorers.items()
    ]
    response += [[label, "published", "—", "—", "—", _fmt(f1), "—", "—"] for label, f1 in report["published"]["f1"].items()]
    sentence = [
        [name, *_prf(r["sentence"]), _fmt(r["sentence"]["auroc"]), f"{r['sentence']['positives']} / {r['sentence']['n']}"]
        for name, r in scorers.items()
    ]
    best = [
        [name, level, _fmt(b["threshold"]), *_prf(b)]
        for name, r in scorers.items()
        for level, b in r["best_threshold"].items()
        if b is not None
    ]
    models = sorted({m for r in scorers.values() for m in r["by_model"]})
    by_model = [
        [m, str(next(iter(scorers.values()))["by_model"][m]["positives"]),
         *(f"{_fmt(r['by_model'][m]['f1'])} ({r['by_model'][m]['tp']}/{r['by_model'][m]['tp'] + r['by_model'][m]['fp']})"
           for r in scorers.values())]
        for m in models
    ]
    types = sorted({t for r in scorers.values() for t in r["spans_caught_by_type"]})
    spans = [
        [t, *(f"{r['spans_caught_by_type'][t]['caught']} / {r['spans_caught_by_type'][t]['spans']}" for r in scorers.values())]
        for t in types
    ]
    return [
        "## Response level (hallucinated class)",
        _table(["scorer", "source", "threshold", "precision", "recall", "F1", "AUROC", "flagged / hallucinated"], response),
        f"Published rows: {report['published']['source']}. AUROC ranks responses by their lowest claim score.",
        "## Sentence level (unsupported class)",
        _table(["scorer", "precision", "recall", "F1", "AUROC", "gold unsupported / sentences"], sentence),
        "A sentence is a claim of `split_claims` unless it only frames the response (`is_framing`: \"Sure!\"); "
        "it is gold-unsupported when a gold span overlaps it.",
        "## Best threshold on this data (diagnostic, not the headline)",
        _table(["scorer", "level", "threshold", "precision", "recall", "F1"], best),
        "## By generating model (response-level F1, (true / all flagged))",
        _table(["model", "hallucinated", *scorers], by_model),
        "## Gold spans caught (overlapped by a flagged claim), by type",
        _table(["span type", *scorers], spans),
        *_latency_md(report, "response"),
    ]


def _scifact_md(report: Mapping[str, Any]) -> list[str]:
    scorers: Mapping[str, Mapping[str, Any]] = report["scorers"]
    rows = [
        [name, _fmt(r["threshold"]), *_prf(r["supported"]), *_prf(r["not_supported"]), _fmt(r["auroc"])]
        for name, r in scorers.items()
    ]
    sections = [
        "## Supported against contradicted and no evidence",
        _table(["scorer", "threshold", "supported P", "R", "F1", "not supported P", "R", "F1", "AUROC"], rows),
    ]
    for name, r in scorers.items():
        counts: Mapping[str, Mapping[str, int]] = r["confusion"]["counts"]
        columns = sorted({c for row in counts.values() for c in row})
        table = [[gold, *(str(counts[gold].get(c, 0)) for c in columns)] for gold in sorted(counts)]
        labels = [[label, str(v["pairs"]), _fmt(v["mean_score"]), str(v["flagged"])] for label, v in r["by_label"].items()]
        best = r["best_threshold"]["supported"]
        sections += [
            f"## `{name}`: {r['confusion']['kind']} confusion (rows gold, columns predicted)",
            _table(["gold \\ predicted", *columns], table),
            _table(["gold label", "pairs", "mean score", "flagged unsupported"], labels),
            f"Best threshold on this data (diagnostic): {_fmt(best['threshold'])}, supported F1 {_fmt(best['f1'])}."
            if best else "",
        ]
    return [*sections, *_latency_md(report, "pair")]
