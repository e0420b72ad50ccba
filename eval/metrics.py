"""Retrieval and answer metrics.

Ranking metrics are thin wrappers over ranx (Bassani, ECIR 2022), whose
definitions match trec_eval; the tests check them against pytrec_eval. Answer
metrics follow the SQuAD v1.1 evaluation script (Rajpurkar et al., 2016).

Ties in scores are broken by doc id, ascending, everywhere in this module, so a
run's metrics, its TREC file and its hard negatives all see the same ranking.
"""

from __future__ import annotations

import re
import string
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import ranx
from numba.core.errors import NumbaTypeSafetyWarning

from rag.errors import InputError

QrelsMap = Mapping[str, Mapping[str, int]]
RunMap = Mapping[str, Mapping[str, float]]

DEFAULT_KS: tuple[int, ...] = (1, 3, 5, 10, 100)


def ranked(scores: Mapping[str, float]) -> list[tuple[str, float]]:
    """Sort one query's results by score descending, ties by doc id ascending.

    Args:
        scores: doc id -> score.

    Returns:
        ``(doc_id, score)`` pairs, best first.
    """
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))


def _relevant(qrels: QrelsMap) -> dict[str, dict[str, int]]:
    """Qrels of queries with at least one relevant (grade > 0) document, keeping only those documents."""
    judged = {
        str(qid): {str(doc): int(grade) for doc, grade in rels.items() if grade > 0}
        for qid, rels in qrels.items()
    }
    return {qid: rels for qid, rels in judged.items() if rels}


def _judged(qrels: QrelsMap) -> dict[str, dict[str, int]]:
    """:func:`_relevant`, which must not be empty."""
    judged = _relevant(qrels)
    if not judged:
        raise InputError("qrels", "no query has a document with grade > 0")
    return judged


def _per_query(judged: dict[str, dict[str, int]], run: RunMap, names: list[str]) -> tuple[list[str], dict[str, np.ndarray]]:
    """ranx's per-query values of ``names`` for the judged queries the run answered.

    Returns:
        ``(answered query ids in judged order, name -> values in that order)``. Queries
        without results are left out (ranx refuses empty result lists): callers score them 0.
    """
    answered = [qid for qid in judged if run.get(qid)]
    if not answered:
        return answered, {name: np.zeros(0) for name in names}
    sub_qrels = {qid: judged[qid] for qid in answered}
    # Re-score by rank so ranx sees our tie-breaking, not its unstable sort.
    sub_run = {}
    for qid in answered:
        order = ranked({str(doc): float(score) for doc, score in run[qid].items()})
        sub_run[qid] = {doc: float(len(order) - rank) for rank, (doc, _) in enumerate(order)}
    with warnings.catch_warnings():
        # ranx hashes doc ids to uint64 and numba warns on every cast.
        warnings.simplefilter("ignore", NumbaTypeSafetyWarning)
        # With return_mean=False and a single metric, ranx looks its result up by the short name
        # ("ndcg" for "ndcg@10") and raises KeyError; asking for it twice returns the dict.
        scores = ranx.evaluate(sub_qrels, sub_run, names if len(names) > 1 else names * 2, return_mean=False)
    return answered, {name: scores[name] for name in names}


def evaluate_run(qrels: QrelsMap, run: RunMap, ks: Iterable[int] = DEFAULT_KS) -> dict[str, float]:
    """Mean ranking metrics of a run over every query with a relevant document.

    The mean is taken over all queries of ``qrels`` that have a document with
    grade > 0, not over the queries the run answered: a query missing from the
    run or with an empty result list scores 0 on every metric. (ranx refuses
    empty result lists, so those queries are scored here.) Grades <= 0 count as
    non-relevant; nDCG uses the grade as linear gain, as trec_eval's
    ``ndcg_cut`` does. Run entries for queries absent from ``qrels`` are ignored.

    Args:
        qrels: query id -> doc id -> grade.
        run: query id -> doc id -> score (higher is better).
        ks: cutoffs for extra ``recall@k`` keys.

    Returns:
        ``ndcg@10``, ``mrr@10``, ``map@100`` and ``recall@k`` for 10, 100 and
        each k in ``ks``.

    Raises:
        InputError: no query in ``qrels`` has a relevant document, or a cutoff
            is not a positive integer.
    """
    cutoffs = sorted({*ks, 10, 100})
    if any(not isinstance(k, int) or k < 1 for k in cutoffs):
        raise InputError("ks", f"cutoffs must be positive integers, got {list(ks)}")
    names = ["ndcg@10", "mrr@10", "map@100", *(f"recall@{k}" for k in cutoffs)]
    judged = _judged(qrels)

    _, per_query = _per_query(judged, run, names)
    return {name: float(np.sum(per_query[name])) / len(judged) for name in names}


def _ndcg_name(k: int) -> str:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InputError("k", f"must be a positive integer, got {k!r}")
    return f"ndcg@{k}"


def ndcg_per_query(qrels: QrelsMap, run: RunMap, k: int = 10) -> dict[str, float]:
    """nDCG@k of each query of ``qrels``, with ranx (trec_eval's ``ndcg_cut``).

    ``DCG@k = sum over ranks r = 1..k of grade(doc at r) / log2(r + 1)``, over the
    run's order with ties by doc id, divided by the DCG of the ideal order of *all*
    the query's relevant documents, those the run missed included (Järvelin and
    Kekäläinen, 2002). Grades are linear gains; grades <= 0 count as non-relevant.
    A run is a mapping, so each document counts once: a caller that ranks chunks
    pools them into documents first (see :func:`max_pool`).

    Args:
        qrels: query id -> doc id -> grade.
        run: query id -> doc id -> score (higher is better).
        k: the cutoff.

    Returns:
        query id -> nDCG@k in [0, 1] for every query of ``qrels``, in its order; 0.0
        for a query without a relevant document or without results.

    Raises:
        InputError: ``k`` is not a positive integer.
    """
    name = _ndcg_name(k)
    answered, per_query = _per_query(_relevant(qrels), run, [name])
    values = dict(zip(answered, per_query[name].tolist()))
    return {str(qid): float(values.get(str(qid), 0.0)) for qid in qrels}


def ndcg(qrels: QrelsMap, run: RunMap, k: int = 10) -> float:
    """Mean nDCG@k (see :func:`ndcg_per_query`) over the queries of ``qrels`` with a relevant document.

    The ``ndcg@k`` of :func:`evaluate_run`: a query the run did not answer scores 0;
    queries without a relevant document are not counted.

    Args:
        qrels: query id -> doc id -> grade.
        run: query id -> doc id -> score (higher is better).
        k: the cutoff.

    Returns:
        The mean, in [0, 1].

    Raises:
        InputError: no query in ``qrels`` has a relevant document, or ``k`` is not a positive integer.
    """
    name = _ndcg_name(k)
    judged = _judged(qrels)
    _, per_query = _per_query(judged, run, [name])
    return float(np.sum(per_query[name])) / len(judged)


def max_pool(chunk_hits: Iterable[tuple[str, float]]) -> dict[str, float]:
    """Pool chunk hits into document scores by keeping each document's best chunk.

    Args:
        chunk_hits: ``(doc_id, score)`` per retrieved chunk, in any order.

    Returns:
        doc id -> max chunk score, ordered best first (ties by doc id).
    """
    best: dict[str, float] = {}
    for doc_id, score in chunk_hits:
        if doc_id not in best or score > best[doc_id]:
            best[doc_id] = float(score)
    return dict(ranked(best))


def coverage(qrels: QrelsMap, candidates: Mapping[str, Iterable[str]]) -> float:
    """Share of queries with at least one relevant document among the candidates.

    This is the ceiling a reranker over these candidates can reach on recall.

    Args:
        qrels: query id -> doc id -> grade; queries without grade > 0 are skipped.
        candidates: query id -> candidate doc ids (missing queries have none).

    Returns:
        A fraction in [0, 1].

    Raises:
        InputError: no query in ``qrels`` has a relevant document.
    """
    judged = _judged(qrels)
    hits = sum(1 for qid, rels in judged.items() if not rels.keys().isdisjoint(candidates.get(qid, ())))
    return hits / len(judged)


def percentiles(values_ms: Sequence[float]) -> dict[str, float]:
    """Latency percentiles with linear interpolation (numpy's default).

    Args:
        values_ms: one latency per call, in milliseconds.

    Returns:
        ``{"p50", "p90", "p99"}`` in milliseconds.

    Raises:
        InputError: ``values_ms`` is empty.
    """
    if len(values_ms) == 0:
        raise InputError("values_ms", "no latencies to summarise")
    p50, p90, p99 = np.percentile(np.asarray(values_ms, dtype=float), [50, 90, 99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99)}


def write_trec_run(path: Path, run: RunMap, tag: str) -> Path:
    """Write a run in TREC format: ``qid Q0 docid rank score tag``.

    Queries are written in sorted id order, ranks are 1-based by score
    descending with ties by doc id, and scores are written exactly (``repr``)
    so that re-reading gives the same order. Empty result lists write nothing.

    Args:
        path: output file; parent directories are created.
        run: query id -> doc id -> score.
        tag: run name in the last column.

    Returns:
        ``path``.

    Raises:
        InputError: the tag, a query id or a doc id is empty or has whitespace.
    """
    _check_token("tag", tag)
    lines = []
    for qid in sorted(run):
        _check_token("run", str(qid))
        for rank, (doc, score) in enumerate(ranked(run[qid]), start=1):
            _check_token("run", str(doc))
            lines.append(f"{qid} Q0 {doc} {rank} {float(score)!r} {tag}\n")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(lines), encoding="utf-8")
    return path


def _check_token(param: str, value: str) -> None:
    if not value or any(char.isspace() for char in value):
        raise InputError(param, f"{value!r} must be non-empty and without whitespace in a TREC run")


def hard_negatives(run: RunMap, qrels: QrelsMap, n: int) -> dict[str, list[str]]:
    """Top-ranked documents that are not relevant, for reranker training.

    Only queries with a relevant document in ``qrels`` are returned, since the
    others have no positive to pair with. Judged non-relevant (grade <= 0) and
    unjudged documents both count as negatives.

    Args:
        run: query id -> doc id -> score.
        qrels: query id -> doc id -> grade.
        n: negatives per query at most.

    Returns:
        query id -> up to ``n`` doc ids, best ranked first.

    Raises:
        InputError: ``n`` is negative or no query has a relevant document.
    """
    if n < 0:
        raise InputError("n", f"must be >= 0, got {n}")
    judged = _judged(qrels)
    negatives = {}
    for qid, scores in run.items():
        if qid not in judged:
            continue
        ids = [doc for doc, _ in ranked(scores) if doc not in judged[qid]]
        negatives[qid] = ids[:n]
    return negatives


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD v1.1 normalisation: lower case, drop punctuation, articles and extra spaces.

    Args:
        text: an answer string.

    Returns:
        The normalised string.
    """
    text = "".join(char for char in text.lower() if char not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, golds: Sequence[str]) -> float:
    """1.0 when the normalised prediction equals any normalised gold answer, else 0.0.

    Args:
        prediction: the predicted answer.
        golds: the gold answers.

    Returns:
        1.0 or 0.0.

    Raises:
        InputError: ``golds`` is empty.
    """
    if not golds:
        raise InputError("golds", "at least one gold answer is needed")
    predicted = normalize_answer(prediction)
    return float(any(predicted == normalize_answer(gold) for gold in golds))


def token_f1(prediction: str, golds: Sequence[str]) -> float:
    """Best bag-of-tokens F1 between the prediction and any gold answer.

    Per gold: ``F1 = 2PR / (P + R)`` with ``P = common / |pred tokens|`` and
    ``R = common / |gold tokens|`` over normalised whitespace tokens, counting
    repeated tokens (SQuAD v1.1). When both sides normalise to no tokens the
    score is 1.0 (as in SQuAD v2; v1.1 gives 0.0 there, which would
    contradict exact match).

    Args:
        prediction: the predicted answer.
        golds: the gold answers.

    Returns:
        The maximum F1 over ``golds``, in [0, 1].

    Raises:
        InputError: ``golds`` is empty.
    """
    if not golds:
        raise InputError("golds", "at least one gold answer is needed")
    predicted = normalize_answer(prediction).split()
    return max(_f1(predicted, normalize_answer(gold).split()) for gold in golds)


def _f1(predicted: list[str], gold: list[str]) -> float:
    if not predicted or not gold:
        return float(predicted == gold)
    common = sum((Counter(predicted) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision = common / len(predicted)
    recall = common / len(gold)
    return 2 * precision * recall / (precision + recall)


def full_recall_at_k(qrels: QrelsMap, ranked_docs: Mapping[str, Sequence[str]], k: int | None) -> dict[str, float]:
    """Per query, 1.0 when *all* its relevant documents are in its top ``k``, else 0.0.

    A multi-hop question needs every one of its gold passages (HotpotQA's two supporting
    paragraphs); recall@k gives half credit for one of two, full recall gives none. Ranked lists
    are documents (pool chunks first, :func:`max_pool`); repeats count once.

    Args:
        qrels: query id -> doc id -> grade; grades <= 0 are not relevant.
        ranked_docs: query id -> doc ids, best first (missing queries found nothing).
        k: the cutoff; None takes the whole list (e.g. the evidence handed to a generator).

    Returns:
        query id -> 0.0 or 1.0 for every query with a relevant document, in qrels order.

    Raises:
        InputError: ``k`` is not a positive integer or None, or no query has a relevant document.
    """
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
        raise InputError("k", f"must be a positive integer or None, got {k!r}")
    judged = _judged(qrels)
    out = {}
    for qid, rels in judged.items():
        top = list(ranked_docs.get(qid, ()))
        head = set(top if k is None else top[:k])
        out[qid] = float(set(rels) <= head)
    return out


def full_recall(qrels: QrelsMap, ranked_docs: Mapping[str, Sequence[str]], ks: Iterable[int]) -> dict[str, float]:
    """Mean :func:`full_recall_at_k` at each cutoff, as ``{"full_recall@k": value}``."""
    out = {}
    for k in sorted({*ks}):
        values = full_recall_at_k(qrels, ranked_docs, k)
        out[f"full_recall@{k}"] = sum(values.values()) / len(values)
    return out


_HOTPOT_SPECIAL = ("yes", "no", "noanswer")


def hotpot_exact_match(prediction: str, golds: Sequence[str]) -> float:
    """HotpotQA's exact match (``hotpot_evaluate_v1.py``): normalised equality with any gold answer.

    The normalisation is SQuAD's (:func:`normalize_answer`), which HotpotQA's script copies.

    Raises:
        InputError: ``golds`` is empty.
    """
    return exact_match(prediction, golds)


def hotpot_f1(prediction: str, golds: Sequence[str]) -> float:
    """HotpotQA's answer F1 (``hotpot_evaluate_v1.py``), the best over ``golds``.

    As SQuAD's token F1, except that when either side normalises to ``yes``, ``no`` or
    ``noanswer`` and the two differ, F1 is 0 (a "yes" never earns partial credit against
    "no"), and that no common token (two empty answers included) scores 0.

    Raises:
        InputError: ``golds`` is empty.
    """
    if not golds:
        raise InputError("golds", "at least one gold answer is needed")
    predicted = normalize_answer(prediction)
    best = 0.0
    for gold in golds:
        expected = normalize_answer(gold)
        if (predicted in _HOTPOT_SPECIAL or expected in _HOTPOT_SPECIAL) and predicted != expected:
            continue
        p_tokens, g_tokens = predicted.split(), expected.split()
        common = sum((Counter(p_tokens) & Counter(g_tokens)).values())
        if common == 0:
            continue
        precision, recall = common / len(p_tokens), common / len(g_tokens)
        best = max(best, 2 * precision * recall / (precision + recall))
    return best
