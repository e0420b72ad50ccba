"""Mining training pairs and fine-tuning a cross-encoder on a tiny corpus."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import numpy as np
import pytest

from rag.config import RerankerConfig
from rag.errors import InputError
from rag.rerank.cross_encoder import Reranker, passage_text
from eval.training import (
    DevRanking,
    blended_ndcg10,
    choose_lexical_share,
    choose_weight,
    MinedQuery,
    MiningConfig,
    TrainConfig,
    TrainingPair,
    cap_pairs,
    mine,
    mine_query,
    mined_from_export,
    pairs_from_feedback,
    read_hard_negatives,
    split_dev,
    train_cross_encoder,
)
from rag.types import Chunk, Judgment, ScoredChunk

DOCS = {
    "d0": "Aspirin reduces the risk of heart attack in adults over fifty.",
    "d1": "Vitamin D deficiency is linked to weaker bones and fractures.",
    "d2": "Regular exercise lowers blood pressure in most patients.",
    "d3": "Smoking damages the lungs and raises cancer risk.",
    "d4": "Aspirin can cause stomach bleeding at high doses.",
    "d5": "Heart attack symptoms include chest pain and shortness of breath.",
    "d6": "Bones need calcium and vitamin D to stay strong.",
    "d7": "Blood pressure medicine interacts with some painkillers.",
    "d8": "Lung cancer screening finds tumours early in smokers.",
    "d9": "Sleep loss raises blood pressure and heart risk.",
}
QUERIES = {
    "q0": "does aspirin prevent heart attack",
    "q1": "vitamin D and bone fractures",
    "q2": "exercise and blood pressure",
    "q3": "smoking and lung cancer",
    "q4": "side effects of aspirin",
    "q5": "signs of a heart attack",
}
QRELS = {"q0": {"d0": 1}, "q1": {"d1": 1, "d6": 1}, "q2": {"d2": 1}, "q3": {"d3": 1, "d8": 1}, "q4": {"d4": 1}, "q5": {"d5": 1}}


def _chunks() -> dict[str, Chunk]:
    return {
        doc: Chunk(
            chunk_id=i + 1, document_id=i + 1, collection="tiny", external_id=doc, source=f"{doc}.txt",
            title=f"Title {doc}", section="", ordinal=0, char_start=0, char_end=len(text), text=text,
        )
        for i, (doc, text) in enumerate(DOCS.items())
    }


CHUNKS = _chunks()
BY_ID = {c.chunk_id: c for c in CHUNKS.values()}


def retrieve(query: str) -> list[ScoredChunk]:
    """Word overlap, ties by chunk id: a deterministic stand-in for the hybrid retriever."""
    words = set(query.lower().split())
    scored = [ScoredChunk(c, float(len(words & set(c.text.lower().rstrip(".").split())))) for c in CHUNKS.values()]
    return sorted(scored, key=lambda s: (-s.score, s.chunk.chunk_id))


def doc_chunks(doc: str) -> list[Chunk]:
    return [CHUNKS[doc]] if doc in CHUNKS else []


def test_mine_query_positives_and_hard_negatives_exclude_gold() -> None:
    mined = mine_query("q1", QUERIES["q1"], QRELS["q1"], retrieve, doc_chunks, random_pool=list(CHUNKS.values()),
                       config=MiningConfig(hard_negatives=6, random_negatives=2), rng=random.Random(1))
    assert mined.positives == (passage_text(CHUNKS["d1"]), passage_text(CHUNKS["d6"]))
    assert 4 <= len(mined.hard_negatives) <= 8
    gold_texts = set(mined.positives)
    negatives = [*mined.hard_negatives, *mined.random_negatives]
    assert not gold_texts & set(negatives)
    assert len(set(negatives)) == len(negatives)
    # hard negatives follow the retriever's order over non-gold documents
    expected = [passage_text(s.chunk) for s in retrieve(QUERIES["q1"]) if s.chunk.external_id not in QRELS["q1"]][:6]
    assert list(mined.hard_negatives) == expected
    assert len(mined.random_negatives) == 2


def test_mine_all_queries_is_seeded() -> None:
    kwargs = dict(random_pool=list(CHUNKS.values()), config=MiningConfig(hard_negatives=4, random_negatives=2))
    a = mine(QUERIES, QRELS, retrieve, doc_chunks, seed=3, **kwargs)
    b = mine(QUERIES, QRELS, retrieve, doc_chunks, seed=3, **kwargs)
    assert a == b
    assert [m.query_id for m in a] == list(QUERIES)
    for m in a:
        assert len(m.hard_negatives) == 4
        gold = {passage_text(CHUNKS[d]) for d in QRELS[m.query_id]}
        assert not gold & {*m.hard_negatives, *m.random_negatives}


def test_positives_prefer_the_best_ranked_chunk_of_a_gold_doc() -> None:
    first = CHUNKS["d0"]
    second = Chunk(**{**first.__dict__, "chunk_id": 99, "ordinal": 1, "text": "Aspirin prevents heart attack."})
    ranking = [ScoredChunk(second, 2.0), ScoredChunk(CHUNKS["d4"], 1.0)]
    mined = mine_query("q0", QUERIES["q0"], {"d0": 1}, retrieve, lambda d: [first, second], ranking=ranking)
    assert mined.positives == (passage_text(second),)
    assert mined.hard_negatives == (passage_text(CHUNKS["d4"]),)


def test_exported_hard_negatives(tmp_path: Path) -> None:
    path = tmp_path / "hn.jsonl"
    rows = [{"query_id": "q4", "query": QUERIES["q4"], "positives": ["d4"], "hard_negatives": [
        {"doc_id": "d0", "chunk_id": 1, "text": DOCS["d0"], "rank": 1},
        {"doc_id": "d4", "chunk_id": 5, "text": DOCS["d4"], "rank": 2},
        {"doc_id": "d7", "chunk_id": 123, "text": "raw text", "rank": 3},
    ]}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    mined = mined_from_export(read_hard_negatives(path), doc_chunks, chunks=BY_ID)
    assert mined == [MinedQuery("q4", QUERIES["q4"], (passage_text(CHUNKS["d4"]),), (passage_text(CHUNKS["d0"]), "raw text"))]


def test_feedback_pairs_latest_judgment_wins() -> None:
    judgments = [Judgment("aspirin?", 1, False), Judgment("aspirin?", 5, True), Judgment("aspirin?", 1, True),
                 Judgment("gone", 404, True)]
    pairs = pairs_from_feedback(judgments, BY_ID)
    assert pairs == [
        TrainingPair("aspirin?", passage_text(BY_ID[1]), 1.0, "feedback"),
        TrainingPair("aspirin?", passage_text(BY_ID[5]), 1.0, "feedback"),
    ]


def test_split_dev_and_cap_pairs() -> None:
    ids = [f"q{i}" for i in range(20)]
    train, dev = split_dev(ids, 0.1, seed=7)
    assert len(dev) == 2 and not set(train) & set(dev) and sorted(train + dev) == sorted(ids)
    assert split_dev(ids, 0.1, seed=7) == (train, dev)
    with pytest.raises(InputError):
        split_dev(ids, 0.9)
    pairs = [p for m in mine(QUERIES, QRELS, retrieve, doc_chunks, config=MiningConfig(hard_negatives=3, random_negatives=0)) for p in m.pairs()]
    capped = cap_pairs(pairs, 10, seed=1)
    assert len(capped) <= 10
    kept = {p.query for p in capped}
    assert all(sum(p.query == q for p in capped) == sum(p.query == q for p in pairs) for q in kept)


def _ranking(docs: tuple[str, ...], retrieval: tuple[float, ...], rerank: tuple[float, ...], gold: set[str]) -> DevRanking:
    """Candidates whose BM25 and dense scores agree (so any lexical share gives ``retrieval``'s order)."""
    return DevRanking(docs, retrieval, retrieval, retrieval, rerank, frozenset(gold))


def test_blended_ndcg_counts_documents_once_and_missing_gold() -> None:
    # three candidates: two chunks of d1 (not gold), one of gold d2; the retriever puts d2 last, the model first
    r = _ranking(("d1", "d1", "d2"), (0.03, 0.02, 0.01), (0.0, 0.5, 1.0), {"d2"})
    assert blended_ndcg10(r, 1.0) == pytest.approx(1.0)
    assert blended_ndcg10(r, 0.0) == pytest.approx(1 / np.log2(3)), "d1's two chunks count as one document"
    missing = _ranking(("d1", "d2"), (0.02, 0.01), (0.0, 1.0), {"d2", "d9"})
    assert blended_ndcg10(missing, 1.0) == pytest.approx(1.0 / (1.0 + 1 / np.log2(3)))
    assert blended_ndcg10(_ranking((), (), (), {"d1"}), 0.5) == 0.0


def test_choose_weight_follows_the_better_signal() -> None:
    # the model is right on every query and retrieval is wrong: the full model weight wins
    good = [_ranking(("a", "b", "c"), (0.3, 0.2, 0.1), (0.0, 0.1, 2.0), {"c"}) for _ in range(3)]
    weight, table = choose_weight(good)
    assert weight == 1.0 and table[1.0] == pytest.approx(1.0) and table[0.0] < 0.6
    # the model is wrong and retrieval right: the largest weight that still keeps retrieval's top (ties go up)
    bad = [_ranking(("a", "b", "c"), (0.3, 0.2, 0.1), (0.0, 0.1, 2.0), {"a"}) for _ in range(3)]
    weight, table = choose_weight(bad)
    assert weight == 0.5 and table[0.5] == pytest.approx(1.0) and table[0.55] < 1.0
    # each is right on half: a blend where both tops stay near the top beats either alone
    mixed = [
        _ranking(("a", "b", "c", "d"), (1.0, 0.9, 0.0, 0.1), (0.9, 0.0, 1.0, 0.1), {"a"}),
        _ranking(("a", "b", "c", "d"), (1.0, 0.9, 0.0, 0.1), (0.0, 0.1, 1.0, 0.9), {"c"}),
    ]
    weight, table = choose_weight(mixed)
    assert 0.0 < weight < 1.0 and table[weight] > max(table[0.0], table[1.0])
    assert choose_weight([]) == (1.0, {})


def test_choose_lexical_share_follows_the_better_retriever() -> None:
    # BM25 puts the gold document first, dense last
    lexical_right = [DevRanking(("a", "b", "c"), (3.0, 2.0, 1.0), (0.1, 0.2, 0.3), (0.3, 0.2, 0.1), (), frozenset({"a"}))]
    share, table = choose_lexical_share(lexical_right)
    assert share >= 0.5 and table[share] == pytest.approx(1.0) and table[0.0] < 0.6
    dense_right = [DevRanking(("a", "b", "c"), (3.0, 2.0, 1.0), (0.1, 0.2, 0.3), (0.3, 0.2, 0.1), (), frozenset({"c"}))]
    share, table = choose_lexical_share(dense_right)
    assert share < 0.5 and table[0.0] == pytest.approx(1.0)
    assert choose_lexical_share([]) == (0.5, {})


def _train(out: Path) -> tuple[Path, float]:
    mined = mine(QUERIES, QRELS, retrieve, doc_chunks, config=MiningConfig(hard_negatives=1, random_negatives=0))
    pairs = [p for m in mined[:3] for p in m.pairs()]
    config = TrainConfig(epochs=1, batch_size=4, max_length=64, seed=42, device="cpu", evals_per_epoch=1)
    t0 = time.perf_counter()
    report = train_cross_encoder(pairs, mined[3:], out, config, show_progress=False)
    return report.path, time.perf_counter() - t0


def _scores(path: Path) -> list[float]:
    reranker = Reranker(RerankerConfig(model=str(path), device="cpu", max_length=64))
    ranked = reranker.rerank(QUERIES["q0"], retrieve(QUERIES["q0"]))
    assert [s.score for s in ranked] == sorted((s.score for s in ranked), reverse=True)
    return [s.score for s in sorted(ranked, key=lambda s: s.chunk.chunk_id)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    return _train(tmp_path_factory.mktemp("reranker") / "a")


def test_train_saves_a_model_that_loads_and_ranks(trained: tuple[Path, float]) -> None:
    path, _seconds = trained
    assert (path / "config.json").is_file() and (path / "training.json").is_file()
    assert not (path / "_checkpoints").exists()
    report = json.loads((path / "training.json").read_text())
    assert report["pairs"] == {"qrels": 7} and report["positives"] == 4 and report["dev_queries"] == 3
    assert set(report["dev_after"]) == {"ndcg@10", "mrr@10"}
    assert len(_scores(path)) == len(CHUNKS)
    with pytest.raises(InputError):
        _train(path)


def test_same_seed_same_scores(trained: tuple[Path, float], tmp_path: Path) -> None:
    again, _ = _train(tmp_path / "b")
    assert _scores(again) == pytest.approx(_scores(trained[0]), abs=1e-5)


def test_onnx_export_matches_torch(trained: tuple[Path, float]) -> None:
    pytest.importorskip("onnxruntime")
    from sentence_transformers import CrossEncoder

    from eval.training import export_onnx
    from rag.rerank.onnx import OnnxCrossEncoder

    paths = export_onnx(trained[0])
    pairs = [(QUERIES["q0"], passage_text(c)) for c in CHUNKS.values()]
    expected = CrossEncoder(str(trained[0]), device="cpu", max_length=64).predict(pairs)
    fp32 = OnnxCrossEncoder(paths["fp32"], trained[0], max_length=64).predict(pairs)
    assert fp32 == pytest.approx(expected, abs=1e-4)
    # pairs sorted by length into runs of at most 64 padded tokens (about one pair each), back in input order
    small = OnnxCrossEncoder(paths["fp32"], trained[0], max_length=64, batch_tokens=64).predict(pairs)
    assert small == pytest.approx(expected, abs=1e-4)
    assert OnnxCrossEncoder(paths["fp32"], trained[0], max_length=64).predict([]).shape == (0,)
    int8 = OnnxCrossEncoder(paths["int8"], trained[0], max_length=64).predict(pairs)
    assert int8.shape == fp32.shape
    assert np.abs(int8 - fp32).max() < 0.1


def test_reranker_runs_the_onnx_export_when_configured(trained: tuple[Path, float], tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from eval.training import export_onnx
    from rag.errors import ConfigError

    export_onnx(trained[0])
    candidates = [ScoredChunk(c, 0.0) for c in CHUNKS.values()]
    torch_order = Reranker(RerankerConfig(model=str(trained[0]), max_length=64)).rerank(QUERIES["q0"], candidates)
    onnx_order = Reranker(RerankerConfig(model=str(trained[0]), max_length=64, backend="onnx")).rerank(
        QUERIES["q0"], candidates
    )
    assert [c.chunk.chunk_id for c in onnx_order] == [c.chunk.chunk_id for c in torch_order]
    assert [c.score for c in onnx_order] == pytest.approx([c.score for c in torch_order], abs=1e-4)
    with pytest.raises(ConfigError, match="RAG_RERANKER__BACKEND"):
        Reranker(RerankerConfig(model=str(tmp_path), backend="onnx-int8")).warm_up()


def test_store_returns_feedback_oldest_first(tmp_path: Path) -> None:
    from rag.index.store import Store

    store = Store(f"sqlite:///{tmp_path / 'rag.db'}")
    try:
        cid = store.ensure_collection("fb").id
        other = store.ensure_collection("other").id
        store.add_feedback(cid, "q?", 3, True, "k")
        store.add_feedback(other, "q?", 4, True, "k")
        store.add_feedback(cid, "q?", 3, False, "k")
        assert store.feedback(cid) == [Judgment("q?", 3, True), Judgment("q?", 3, False)]
    finally:
        store.close()


def test_exports_are_sealed_with_the_data_key_and_read_back_with_it(tmp_path: Path) -> None:
    import os

    from rag.errors import ConfigError
    from rag.security.crypto import DataCipher

    cipher = DataCipher((("k1", os.urandom(32)),))
    row = {"query_id": "q1", "query": "zqsealed question about lamps", "positives": ["d1"],
           "hard_negatives": [{"doc_id": "d2", "chunk_id": 7, "text": "zqsealed negative passage", "rank": 1}]}
    plain = tmp_path / "plain.jsonl"
    plain.write_text(json.dumps(row) + "\n")
    sealed = tmp_path / "sealed.jsonl"
    from rag.security.crypto import write_export

    write_export(sealed, json.dumps(row) + "\n", cipher)
    assert b"zqsealed" not in sealed.read_bytes()
    assert read_hard_negatives(sealed, cipher) == read_hard_negatives(plain) == [row]
    with pytest.raises(ConfigError, match="RAG_ENCRYPTION__KEY_FILE"):
        read_hard_negatives(sealed)
    with pytest.raises(ConfigError):
        read_hard_negatives(sealed, DataCipher((("k1", os.urandom(32)),)))


def test_layers_train_a_shallower_model_that_loads(tmp_path: Path) -> None:
    mined = mine(QUERIES, QRELS, retrieve, doc_chunks, config=MiningConfig(hard_negatives=1, random_negatives=0))
    pairs = [p for m in mined[:3] for p in m.pairs()]
    config = TrainConfig(epochs=1, batch_size=4, max_length=64, layers=2, seed=42, device="cpu", evals_per_epoch=1)
    report = train_cross_encoder(pairs, mined[3:], tmp_path / "two", config, show_progress=False)
    saved = json.loads((report.path / "config.json").read_text())
    assert saved["num_hidden_layers"] == 2
    assert len(_scores(report.path)) == len(CHUNKS)  # loads as a reranker with its two layers
    with pytest.raises(InputError, match="layers"):
        TrainConfig(layers=-1)
