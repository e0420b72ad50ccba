"""Training the support model of the verifier (``rag train-verifier``).

The steps: read SciFact claims and split them by claim (:func:`eval.verifier.scifact_split`:
``train`` trains, ``dev`` calibrates, ``test`` is only reported); make FactCC-style pairs
from text corpora (:mod:`eval.training.claims`), 15 % of their documents held out;
optionally add negatives from the service's feedback; fine-tune a cross-encoder from the
offline MiniLM weights, keeping the checkpoint with the best dev average precision;
export it to ONNX (fp32 and int8); fit the Platt calibration and the support threshold on
the dev pairs with the backend the service runs by default; and save all of it, with the
held-out figures and the latency of a 5-claim answer against 3 passages, next to the model.

The model directory is built beside its destination and moved into place at the end, so
the service never loads a half-written model from ``<data dir>/verifiers/default``.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from eval.metrics import percentiles
from eval.training.claims import SupportPair, group_part, scifact_pairs, synthetic_pairs
from eval.training.trainer import DEFAULT_BASE_MODEL, TrainConfig, _fit, _load_base, keep_layers
from rag.errors import FileError, InputError
from rag.models import resolve_device
from rag.verify.model import (
    FEATURES,
    CrossEncoderSupportScorer,
    DEFAULT_MAX_LENGTH,
    WINDOWS_PER_CLAIM,
    default_model_dir,
    write_settings,
)

Progress = Callable[[str], None]

TEXT_SUFFIXES = (".md", ".txt", ".html", ".rst")


@dataclass(frozen=True)
class VerifierTrainConfig:
    """Fine-tuning settings of the support model.

    Attributes:
        base: HF id or local path of the encoder (a new one-logit head over mean-pooled tokens).
        layers: keep only the encoder's first ``layers`` transformer layers (0: all). Cost is
            linear in the layers, for training and serving alike.
        epochs: passes over the training pairs.
        batch_size: pairs per step.
        learning_rate: peak learning rate of the encoder.
        head_learning_rate: peak learning rate of the new head.
        warmup_ratio: share of steps spent warming up.
        max_length: tokens per (claim, window) pair.
        max_pairs: keep at most this many training pairs: all SciFact and feedback ones, synthetic
            ones drawn at random (0: all).
        evals_per_epoch: dev evaluations (and checkpoints) per epoch.
        dev_pairs: dev pairs scored at each evaluation (drawn at random; calibration uses all).
        seed: seeds the draws, the head's weights, shuffling and dropout.
        device: ``auto`` | ``cpu`` | ``cuda``.
    """

    base: str = DEFAULT_BASE_MODEL
    layers: int = 0
    epochs: int = 1
    batch_size: int = 32
    learning_rate: float = 5e-5
    head_learning_rate: float = 2e-3
    warmup_ratio: float = 0.1
    max_length: int = DEFAULT_MAX_LENGTH
    max_pairs: int = 0
    evals_per_epoch: int = 2
    dev_pairs: int = 400
    seed: int = 42
    device: str = "auto"

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "evals_per_epoch", "dev_pairs"):
            if getattr(self, name) < 1:
                raise InputError(name, f"must be >= 1, got {getattr(self, name)}")
        for name in ("max_pairs", "layers"):
            if getattr(self, name) < 0:
                raise InputError(name, f"must be >= 0, got {getattr(self, name)}")
        if not 16 <= self.max_length <= 4096:
            raise InputError("max_length", f"must be in [16, 4096], got {self.max_length}")


# --- data -----------------------------------------------------------------------------------------


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The records of a JSONL file.

    Raises:
        FileError: the file is missing or a line is not a JSON object.
    """
    path = Path(path)
    if not path.is_file():
        raise FileError(str(path), "no such file")
    rows = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise FileError(str(path), f"line {n} is not JSON: {exc}") from None
            if not isinstance(row, dict):
                raise FileError(str(path), f"line {n} is not a JSON object")
            rows.append(row)
    return rows


def read_corpus(path: Path, *, limit: int = 0, seed: int = 42, exclude: Iterable[str] = ()) -> list[tuple[str, str]]:
    """Documents to make synthetic pairs from: ``(group id, text)``.

    A BEIR ``corpus.jsonl`` (or a directory holding one) gives its records' ``text``; any
    other directory gives its ``.md``, ``.txt``, ``.html`` and ``.rst`` files (HTML tags
    stripped), split at blank lines into paragraphs of at least 200 characters.

    Args:
        path: the corpus.
        limit: keep at most this many documents, drawn at random (0: all).
        seed: seeds the draw.
        exclude: document ids to leave out (SciFact abstracts cited by held-out claims).

    Returns:
        Documents in corpus order; group ids are ``<corpus name>/<id>``.

    Raises:
        FileError: the path holds no documents.
    """
    import re

    path = Path(path)
    corpus = path / "corpus.jsonl" if path.is_dir() and (path / "corpus.jsonl").is_file() else path
    skip = set(map(str, exclude))
    docs: list[tuple[str, str]] = []
    if corpus.is_file():
        name = corpus.parent.name if corpus.name == "corpus.jsonl" else corpus.stem
        for row in read_jsonl(corpus):
            doc_id = str(row.get("_id", row.get("id", len(docs))))
            text = str(row.get("text", "")).strip()
            if text and doc_id not in skip:
                docs.append((f"{name}/{doc_id}", text))
    elif path.is_dir():
        for file in sorted(p for p in path.rglob("*") if p.suffix.lower() in TEXT_SUFFIXES and p.is_file()):
            raw = file.read_text(encoding="utf-8", errors="replace")
            if file.suffix.lower() == ".html":
                raw = re.sub(r"<[^>]+>", " ", raw)
            paragraphs = [re.sub(r"\s+", " ", p).strip(" #*-") for p in re.split(r"\n\s*\n", raw)]
            for n, para in enumerate(p for p in paragraphs if len(p) >= 200):
                docs.append((f"{path.name}/{file.relative_to(path)}#{n}", para))
    if not docs:
        raise FileError(str(path), "no documents (expected a BEIR corpus.jsonl or a directory of text files)")
    if limit and len(docs) > limit:
        keep = set(random.Random(seed).sample(range(len(docs)), limit))
        docs = [d for i, d in enumerate(docs) if i in keep]
    return docs


@dataclass(frozen=True)
class VerifierData:
    """Every pair of one training run, by part.

    Attributes:
        train: training pairs.
        dev: held-out synthetic pairs and SciFact dev pairs (checkpoint choice and calibration).
        scifact_dev: SciFact dev records (threshold fit with the full scorer).
        scifact_test: SciFact test records (reported only).
        documents: documents read per corpus.
    """

    train: list[SupportPair]
    dev: list[SupportPair]
    scifact_dev: list[dict[str, Any]]
    scifact_test: list[dict[str, Any]]
    documents: dict[str, int]


def build_data(
    scifact: Path | None,
    corpora: Sequence[Path],
    *,
    seed: int = 42,
    max_documents: int = 0,
    sentences_per_document: int = 2,
    extra: Sequence[SupportPair] = (),
    progress: Progress | None = None,
) -> VerifierData:
    """Read SciFact and the corpora, make the pairs, and split them (see the module docstring).

    SciFact abstracts cited by dev or test claims are left out of the synthetic documents, so the
    held-out figures are on text the model never trained on.

    Args:
        scifact: SciFact ``train.jsonl`` (None: no SciFact pairs).
        corpora: corpora for synthetic pairs (:func:`read_corpus`).
        seed: seeds the pairs and the document draws.
        max_documents: documents drawn per corpus (0: all).
        sentences_per_document: sentences drawn per document.
        extra: more training pairs (feedback).
        progress: where to report counts.
    """
    from eval.verifier import scifact_split

    rows = read_jsonl(scifact) if scifact is not None else []
    parts = {part: scifact_split(rows, part) for part in ("train", "dev", "test")}
    held_docs = {str(r.get("doc_id")) for part in ("dev", "test") for r in parts[part]}
    synthetic: list[SupportPair] = []
    counts: dict[str, int] = {}
    for corpus in corpora:
        docs = read_corpus(corpus, limit=max_documents, seed=seed, exclude=held_docs)
        counts[str(corpus)] = len(docs)
        made = synthetic_pairs(docs, seed=seed, sentences_per_document=sentences_per_document)
        synthetic.extend(made)
        if progress:
            progress(f"{corpus}: {len(docs)} documents, {len(made)} pairs")
    train = [p for p in synthetic if group_part(p.group) == "train"]
    dev = [p for p in synthetic if group_part(p.group) == "dev"]
    train.extend(scifact_pairs(parts["train"]))
    dev.extend(scifact_pairs(parts["dev"]))
    train.extend(extra)
    return VerifierData(train, dev, parts["dev"], parts["test"], counts)


# --- training -------------------------------------------------------------------------------------


def _cap(pairs: list[SupportPair], n: int, seed: int) -> list[SupportPair]:
    """At most ``n`` pairs (0: all): every SciFact and feedback pair, and synthetic ones drawn at random for the rest."""
    if not n or len(pairs) <= n:
        return pairs
    kept = [i for i, p in enumerate(pairs) if p.kind.startswith(("scifact", "feedback"))]
    rest = [i for i, p in enumerate(pairs) if not p.kind.startswith(("scifact", "feedback"))]
    keep = set(kept[:n]) | set(random.Random(seed).sample(rest, max(0, min(len(rest), n - len(kept)))))
    return [p for i, p in enumerate(pairs) if i in keep]


def train_model(
    train: Sequence[SupportPair],
    dev: Sequence[SupportPair],
    out: Path,
    config: VerifierTrainConfig = VerifierTrainConfig(),
    *,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Fine-tune the cross-encoder on labelled (claim, window) pairs and save the best checkpoint in ``out``.

    Binary cross-entropy on one logit, ``pos_weight`` = negatives / positives; the encoder and the
    new head train at their own learning rates (:func:`eval.training.trainer._fit`); the checkpoint
    with the best average precision on ``config.dev_pairs`` dev pairs is kept.

    Returns:
        ``pairs``, ``positives``, ``dev_before`` / ``dev_after`` (average precision and F1 of the
        support class), ``seconds`` and ``pairs_per_second``.

    Raises:
        InputError: no positive or no negative pair.
    """
    import torch
    from datasets import Dataset
    from sentence_transformers.cross_encoder.evaluation import CrossEncoderClassificationEvaluator
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss
    from transformers import set_seed

    pairs = _cap(list(train), config.max_pairs, config.seed)
    n_pos = sum(p.label > 0.5 for p in pairs)
    if n_pos == 0 or n_pos == len(pairs):
        raise InputError("pairs", f"need supported and unsupported pairs, got {n_pos} supported of {len(pairs)}")
    set_seed(config.seed)
    device = resolve_device(config.device)
    model = _load_base(TrainConfig(base=config.base, max_length=config.max_length, seed=config.seed), device)
    _shrink(model, config.layers)
    data = Dataset.from_dict(
        {"claim": [p.claim for p in pairs], "passage": [p.passage for p in pairs], "label": [p.label for p in pairs]}
    )
    loss = BinaryCrossEntropyLoss(model, pos_weight=torch.tensor((len(pairs) - n_pos) / n_pos))
    sample = _cap(list(dev), config.dev_pairs, config.seed)
    evaluator = (
        CrossEncoderClassificationEvaluator(
            [[p.claim, p.passage] for p in sample], [int(p.label > 0.5) for p in sample], name="dev",
            batch_size=64, write_csv=False,
        )
        if len({p.label > 0.5 for p in sample}) == 2
        else None
    )
    before = _dev_metrics(evaluator, model)
    steps = max(1, -(-len(pairs) // config.batch_size))
    checkpoints = Path(out) / "_checkpoints"
    args = _training_args(config, checkpoints, steps, evaluator is not None, device, show_progress)
    fit_config = TrainConfig(learning_rate=config.learning_rate, head_learning_rate=config.head_learning_rate)
    seconds = _fit(model, args, data, loss, evaluator, fit_config)
    model.save_pretrained(str(out))
    shutil.rmtree(checkpoints, ignore_errors=True)
    kinds: dict[str, int] = {}
    for p in pairs:
        kinds[p.kind] = kinds.get(p.kind, 0) + 1
    return {
        "pairs": kinds,
        "positives": n_pos,
        "dev_pairs_scored": len(sample),
        "dev_before": before,
        "dev_after": _dev_metrics(evaluator, model),
        "seconds": round(seconds, 1),
        "pairs_per_second": round(len(pairs) * config.epochs / max(seconds, 1e-9), 2),
    }


def _shrink(model: Any, layers: int) -> None:
    """Keep the first ``layers`` transformer layers (0: all) and freeze the word embeddings.

    The embeddings are 12 of MiniLM's 22 million weights; a few thousand pairs cannot teach them
    much, and AdamW would update all of them at every step.
    """
    keep_layers(model, layers)
    model[0].auto_model.embeddings.word_embeddings.weight.requires_grad_(False)


def _training_args(
    config: VerifierTrainConfig, checkpoints: Path, steps_per_epoch: int, has_dev: bool, device: str, show_progress: bool
) -> Any:
    from sentence_transformers.cross_encoder import CrossEncoderTrainingArguments

    eval_steps = max(1, steps_per_epoch // config.evals_per_epoch)
    return CrossEncoderTrainingArguments(
        output_dir=str(checkpoints),
        num_train_epochs=config.epochs,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=64,
        learning_rate=config.learning_rate,
        warmup_steps=int(steps_per_epoch * config.epochs * config.warmup_ratio),
        seed=config.seed,
        data_seed=config.seed,
        eval_strategy="steps" if has_dev else "no",
        eval_steps=eval_steps,
        save_strategy="steps" if has_dev else "no",
        save_steps=eval_steps,
        save_total_limit=2,
        load_best_model_at_end=has_dev,
        metric_for_best_model="eval_dev_average_precision" if has_dev else None,
        greater_is_better=True,
        logging_steps=max(1, eval_steps // 4),
        report_to="none",
        disable_tqdm=not show_progress,
        use_cpu=device == "cpu",
        dataloader_num_workers=0,
    )


def _dev_metrics(evaluator: Any, model: Any) -> dict[str, float]:
    if evaluator is None:
        return {}
    scores = evaluator(model)
    return {k.removeprefix("dev_"): round(float(v), 4) for k, v in scores.items() if k.endswith(("average_precision", "f1"))}


# --- calibration and threshold --------------------------------------------------------------------


def fit_logistic(rows: np.ndarray, labels: Sequence[float], *, iterations: int = 100, ridge: float = 1e-2) -> tuple[list[float], float]:
    """Logistic regression by Newton's method with a ridge on the weights (not the bias).

    Args:
        rows: one row of features per example.
        labels: 1 (supported) or 0 per example.

    Returns:
        ``(weights, bias)``; zeros without data.
    """
    x = np.asarray(rows, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64) > 0.5
    if x.size == 0:
        return [0.0] * (x.shape[1] if x.ndim == 2 else 0), 0.0
    X = np.hstack([x, np.ones((len(x), 1))])
    w = np.zeros(X.shape[1])
    penalty = ridge * np.eye(X.shape[1])
    penalty[-1, -1] = 1e-9
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(X @ w, -60, 60)))
        grad = X.T @ (p - y) + penalty @ w
        hess = (X * (p * (1 - p))[:, None]).T @ X + penalty
        step = np.linalg.solve(hess, grad)
        w = w - step
        if np.abs(step).max() < 1e-9:
            break
    return [float(v) for v in w[:-1]], float(w[-1])


def fit_platt(logits: Sequence[float], labels: Sequence[float], *, iterations: int = 100, ridge: float = 1e-3) -> tuple[float, float]:
    """Platt scaling: the ``a, b`` of ``p = sigmoid(a * logit + b)`` that maximise the likelihood of ``labels``.

    Newton's method on the logistic log-loss with a small ridge on ``a`` and ``b``, with Platt's
    (1999) smoothed targets ``(n+ + 1) / (n+ + 2)`` and ``1 / (n- + 2)`` in place of 1 and 0, so
    that separable data still gives finite values.

    Returns:
        ``(a, b)``; ``(1.0, 0.0)`` without data.

    Example:
        >>> a, b = fit_platt([-2.0, -1.0, 1.0, 2.0, 0.5, -0.5], [0, 0, 1, 1, 0, 1])
        >>> a > 0
        True
    """
    x = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64) > 0.5
    if x.size == 0:
        return 1.0, 0.0
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    t = np.where(y, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))
    X = np.stack([x, np.ones_like(x)], axis=1)
    w = np.array([1.0, 0.0])
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(X @ w, -60, 60)))
        grad = X.T @ (p - t) + ridge * w
        hess = (X * (p * (1 - p))[:, None]).T @ X + ridge * np.eye(2)
        step = np.linalg.solve(hess, grad)
        w = w - step
        if np.abs(step).max() < 1e-9:
            break
    return float(w[0]), float(w[1])


def binary_figures(labels: Sequence[bool], scores: Sequence[float], threshold: float) -> dict[str, float]:
    """Precision, recall and F1 of the *supported* class (score >= threshold) and of the unsupported one.

    Returns:
        ``supported_{precision,recall,f1}``, ``unsupported_{precision,recall,f1}``, ``accuracy`` and ``n``.
    """
    gold = np.asarray(labels, dtype=bool)
    pred = np.asarray(scores, dtype=np.float64) >= threshold
    out: dict[str, float] = {}
    for name, g, p in (("supported", gold, pred), ("unsupported", ~gold, ~pred)):
        tp = float((g & p).sum())
        precision = float(tp / p.sum()) if p.sum() else 0.0
        recall = float(tp / g.sum()) if g.sum() else 0.0
        out[f"{name}_precision"] = round(precision, 4)
        out[f"{name}_recall"] = round(recall, 4)
        out[f"{name}_f1"] = round(2 * precision * recall / (precision + recall) if precision + recall else 0.0, 4)
    out["accuracy"] = round(float((gold == pred).mean()) if gold.size else 0.0, 4)
    out["n"] = int(gold.size)
    return out


THRESHOLD_GRID = tuple(round(0.05 + 0.01 * i, 2) for i in range(91))
"""Thresholds tried by :func:`choose_threshold`: 0.05, 0.06, ..., 0.95."""


def choose_threshold(labels: Sequence[bool], scores: Sequence[float], grid: Sequence[float] = THRESHOLD_GRID) -> tuple[float, dict[str, float]]:
    """The threshold with the best macro F1 (mean of the supported and unsupported classes' F1).

    Macro F1 weighs a wrongly flagged supported claim as much as a missed unsupported one,
    whatever the classes' shares in the dev pairs; ties go to the threshold nearest 0.5,
    where a calibrated probability says "as likely as not".

    Returns:
        ``(threshold, {threshold as text: macro F1})``; ``(0.5, {})`` without data.
    """
    if len(labels) == 0:
        return 0.5, {}
    table = {}
    for t in grid:
        f = binary_figures(labels, scores, t)
        table[t] = (f["supported_f1"] + f["unsupported_f1"]) / 2
    best = max(table, key=lambda t: (round(table[t], 6), -abs(t - 0.5)))
    return best, {f"{t:.2f}": round(v, 4) for t, v in table.items()}


def _scifact_scores(scorer: CrossEncoderSupportScorer, rows: Sequence[Mapping[str, Any]]) -> list[float]:
    return [scorer.support(str(r["claim"]), [str(r["abstract"])])[0].score for r in rows]


def _pair_scores(scorer: CrossEncoderSupportScorer, pairs: Sequence[SupportPair]) -> list[float]:
    return [scorer.support(p.claim, [p.passage])[0].score for p in pairs]


def calibrate(
    model_dir: Path,
    dev: Sequence[SupportPair],
    scifact_dev: Sequence[Mapping[str, Any]],
    *,
    backend: str,
    max_length: int,
    windows_per_claim: int,
    record: Mapping[str, Any],
    stack: bool = True,
) -> dict[str, Any]:
    """Fit Platt scaling on the dev pairs' logits, the stack, then the threshold on the full scorer's dev scores; save them.

    With ``stack``, a logistic regression over :data:`~rag.verify.model.FEATURES` (the model's logit
    and the lexical checks of its best window) is fitted on the same dev items (the dev pairs and the
    SciFact dev claims against their abstracts) and replaces Platt scaling when serving.

    Both use ``backend`` (the one the service runs by default). The threshold is chosen by
    :func:`choose_threshold` over the dev pairs (each scored against its window as a source) and the
    SciFact dev claims (each against its whole abstract), after the name and number checks.

    Returns:
        The settings written to ``rag_verifier.json``.
    """
    settings: dict[str, Any] = {
        **record,
        "calibration": {"a": 1.0, "b": 0.0},
        "threshold": None,
        "max_length": max_length,
        "windows_per_claim": windows_per_claim,
        "calibrated_with": backend,
    }
    write_settings(model_dir, settings)
    logits = CrossEncoderSupportScorer(model_dir, backend).logits([(p.claim, p.passage) for p in dev])
    a, b = fit_platt(logits, [p.label for p in dev])
    settings["calibration"] = {"a": round(a, 6), "b": round(b, 6)}
    write_settings(model_dir, settings)
    labels = [p.label > 0.5 for p in dev] + [r["label"] == "supported" for r in scifact_dev]
    if stack:
        scorer = CrossEncoderSupportScorer(model_dir, backend)
        rows = [scorer.features(p.claim, [p.passage])[0] for p in dev] + [
            scorer.features(str(r["claim"]), [str(r["abstract"])])[0] for r in scifact_dev
        ]
        keep = [i for i, row in enumerate(rows) if row is not None]
        weights, bias = fit_logistic(np.array([rows[i] for i in keep]), [labels[i] for i in keep])
        settings["stack"] = {"features": list(FEATURES), "weights": [round(w, 6) for w in weights], "bias": round(bias, 6)}
        write_settings(model_dir, settings)
    scorer = CrossEncoderSupportScorer(model_dir, backend)
    scores = _pair_scores(scorer, dev) + _scifact_scores(scorer, scifact_dev)
    threshold, table = choose_threshold(labels, scores)
    settings["threshold"] = threshold
    settings["dev"] = {
        "pairs": len(labels),
        "at_threshold": binary_figures(labels, scores, threshold),
        "macro_f1_by_threshold": table,
        "by_kind": _by_kind(dev, scores[: len(dev)], threshold),
    }
    write_settings(model_dir, settings)
    return settings


def _by_kind(pairs: Sequence[SupportPair], scores: Sequence[float], threshold: float) -> dict[str, dict[str, float]]:
    """Per kind of pair: how many, and the share judged correctly at the threshold."""
    out: dict[str, list[int]] = {}
    for p, s in zip(pairs, scores, strict=True):
        hit = (s >= threshold) == (p.label > 0.5)
        out.setdefault(p.kind, [0, 0])
        out[p.kind][0] += 1
        out[p.kind][1] += int(hit)
    return {k: {"n": n, "correct": round(c / n, 4)} for k, (n, c) in sorted(out.items())}


# --- latency --------------------------------------------------------------------------------------


def answer_latency(
    scorer: CrossEncoderSupportScorer, answers: Sequence[tuple[Sequence[str], Sequence[str]]]
) -> dict[str, float]:
    """Time the verify stage's scoring of whole answers: one ``support`` call per claim against all passages.

    One untimed answer warms the model up first.

    Args:
        scorer: the scorer.
        answers: ``(claims, passages)`` per answer (5 claims and 3 passages for the cost target).

    Returns:
        ``p50``, ``p90``, ``p99`` in milliseconds and ``answers``; empty without answers.
    """
    if not answers:
        return {}
    claims, passages = answers[0]
    for c in claims:
        scorer.support(c, passages)
    times = []
    for claims, passages in answers:
        t0 = time.perf_counter()
        for c in claims:
            scorer.support(c, passages)
        times.append((time.perf_counter() - t0) * 1000.0)
    return {**{k: round(v, 1) for k, v in percentiles(times).items()}, "answers": len(answers)}


def latency_answers(rows: Sequence[Mapping[str, Any]], n: int = 20, seed: int = 7) -> list[tuple[list[str], list[str]]]:
    """``n`` answers of 5 claims against 3 passages made from SciFact records: 3 abstracts and 5 of their claims."""
    rng = random.Random(seed)
    usable = [r for r in rows if r.get("abstract")]
    out = []
    for _ in range(n if len(usable) >= 3 else 0):
        chosen = rng.sample(usable, 3)
        claims = [str(rng.choice(chosen)["claim"]) for _ in range(5)]
        out.append((claims, [str(r["abstract"]) for r in chosen]))
    return out


# --- the whole run --------------------------------------------------------------------------------


def default_output(data_dir: Path, name: str = "default") -> Path:
    """``<data dir>/verifiers/<name>``; ``default`` is where the service looks (:func:`rag.verify.model.default_model_dir`)."""
    return default_model_dir(data_dir) if name == "default" else Path(data_dir) / "verifiers" / name


def run_train_verifier(
    out: Path,
    *,
    scifact: Path | None,
    corpora: Sequence[Path],
    config: VerifierTrainConfig = VerifierTrainConfig(),
    max_documents: int = 0,
    sentences_per_document: int = 2,
    windows_per_claim: int = WINDOWS_PER_CLAIM,
    extra: Sequence[SupportPair] = (),
    onnx: bool = True,
    latency_runs: int = 20,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Make the data, train, export, calibrate, measure, and move the model to ``out``.

    Args:
        out: the model directory; an existing one is replaced once the new model is complete.
        scifact: SciFact ``train.jsonl`` (None: none).
        corpora: corpora for synthetic pairs.
        config: training settings.
        max_documents: documents drawn per corpus (0: all).
        sentences_per_document: sentences drawn per document.
        windows_per_claim: windows the scorer reads per source (saved with the model).
        extra: more training pairs (feedback).
        onnx: export ONNX fp32 and int8; the int8 model is then calibrated and served by default.
        latency_runs: answers timed per backend (:func:`answer_latency`).
        progress: where progress lines go (None: quiet).

    Returns:
        The training record, also written to ``training.json`` in the model directory.

    Raises:
        InputError: bad settings or no usable pairs.
        FileError: a data file is missing or unreadable.
    """
    say = progress or (lambda _: None)
    out = Path(out)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    work = out.with_name(f".{out.name}.partial-{stamp}")
    work.mkdir(parents=True)
    try:
        data = build_data(
            scifact, corpora, seed=config.seed, max_documents=max_documents,
            sentences_per_document=sentences_per_document, extra=extra, progress=say,
        )
        say(f"{len(data.train)} training pairs, {len(data.dev)} dev pairs; training -> {out}")
        t0 = time.perf_counter()
        report = train_model(data.train, data.dev, work, config, show_progress=progress is not None)
        backend = "torch"
        if onnx:
            from eval.training.export import export_onnx

            say("exporting ONNX fp32 and int8")
            export_onnx(work)
            backend = "onnx-int8"
        say(f"calibrating on {len(data.dev)} dev pairs and {len(data.scifact_dev)} SciFact dev claims ({backend})")
        record = {
            "base": config.base,
            "trained": stamp,
            "config": asdict(config),
            "documents": data.documents,
            "sentences_per_document": sentences_per_document,
        }
        settings = calibrate(
            work, data.dev, data.scifact_dev, backend=backend, max_length=config.max_length,
            windows_per_claim=windows_per_claim, record=record,
        )
        result = {**settings, "training": report, "train_seconds_total": round(time.perf_counter() - t0, 1)}
        result["scifact_test"] = _scifact_test(work, data.scifact_test, settings["threshold"], backend)
        say("timing 5 claims x 3 passages per backend")
        answers = latency_answers(data.scifact_test or data.scifact_dev, latency_runs)
        result["latency_ms_5_claims_3_passages"] = {
            b: answer_latency(CrossEncoderSupportScorer(work, b), answers)
            for b in (("torch", "onnx", "onnx-int8") if onnx else ("torch",))
        }
        (work / "training.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
        _replace(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    result["path"] = str(out)
    return result


def _scifact_test(model_dir: Path, rows: Sequence[Mapping[str, Any]], threshold: float, backend: str) -> dict[str, Any]:
    """Supported-versus-rest figures on the SciFact test claims (never trained or calibrated on)."""
    if not rows:
        return {}
    scorer = CrossEncoderSupportScorer(model_dir, backend)
    scores = _scifact_scores(scorer, rows)
    return binary_figures([r["label"] == "supported" for r in rows], scores, threshold)


def _replace(work: Path, out: Path) -> None:
    """Move the finished model to ``out``, replacing a previous one with two renames."""
    old = out.with_name(f".{out.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    work.rename(out)
    shutil.rmtree(old, ignore_errors=True)


__all__ = [
    "VerifierData",
    "VerifierTrainConfig",
    "answer_latency",
    "binary_figures",
    "build_data",
    "calibrate",
    "choose_threshold",
    "default_output",
    "fit_logistic",
    "fit_platt",
    "latency_answers",
    "read_corpus",
    "read_jsonl",
    "run_train_verifier",
    "train_model",
]
