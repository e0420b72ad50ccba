"""Learning a cross-encoder from our own judgments, offline (``rag train-reranker``).

* :mod:`~eval.training.mining`: training pairs from qrels with our own retriever's hard negatives;
* :mod:`~eval.training.sources`: pairs from exported hard negatives and from end users' feedback;
* :mod:`~eval.training.trainer`: fine-tuning with sentence-transformers;
* :mod:`~eval.training.blend`: fitting the blend of the rerank order and saving it with the model;
* :mod:`~eval.training.export`: the ONNX export the ``onnx`` reranker backends run, checked against torch.

The serving side (the reranker and its order math) stays in :mod:`rag.rerank`.
"""

from eval.training.blend import (
    TOP_N,
    WEIGHT_GRID,
    Candidates,
    DevRanking,
    blended_ndcg10,
    blended_run,
    calibrate_blend,
    choose_lexical_share,
    choose_weight,
    mean_blended_ndcg10,
)
from eval.training.export import compare_onnx, export_onnx
from eval.training.mining import (
    DocChunksFn,
    MinedQuery,
    MiningConfig,
    RetrieveFn,
    TrainingPair,
    cap_pairs,
    mine,
    mine_query,
    split_dev,
)
from eval.training.sources import mined_from_export, pairs_from_feedback, read_hard_negatives
from eval.training.trainer import DEFAULT_BASE_MODEL, TrainConfig, TrainReport, train_cross_encoder

__all__ = [
    "DEFAULT_BASE_MODEL",
    "TOP_N",
    "WEIGHT_GRID",
    "Candidates",
    "DevRanking",
    "DocChunksFn",
    "MinedQuery",
    "MiningConfig",
    "RetrieveFn",
    "TrainConfig",
    "TrainReport",
    "TrainingPair",
    "blended_ndcg10",
    "blended_run",
    "calibrate_blend",
    "cap_pairs",
    "choose_lexical_share",
    "choose_weight",
    "compare_onnx",
    "export_onnx",
    "mean_blended_ndcg10",
    "mine",
    "mine_query",
    "mined_from_export",
    "pairs_from_feedback",
    "read_hard_negatives",
    "split_dev",
    "train_cross_encoder",
]
