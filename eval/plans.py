"""Scoring query plans: full recall of the evidence a plan collected and handed on, per question type.

``rag eval retrieval --planner MODE[,MODE...]`` runs each planner on every question (questions
outer, modes inner, so that the modes share the machine's load alike) and scores two lists per
plan, at document level:

* **collected**: every chunk the plan's steps retrieved, in the round-robin order in which the
  answerer packs them (:func:`rag.planning.interleave`);
* **handed**: the chunks that fit the generator's context budget (``RAG_GENERATOR__CONTEXT_TOKENS``),
  that is, the evidence the answer is written from.

**Full recall** is the share of questions with *all* their gold documents in the list (HotpotQA's
two supporting paragraphs). ``rag eval answers --planner`` reports the handed full recall beside
the answer scores, from the same plans.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from eval.metrics import full_recall, full_recall_at_k, percentiles
from rag.planning import PLANNER_MODES, interleave
from rag.types import Evidence, Plan

NEEDS_GENERATOR = frozenset({"auto", "iterative", "decompose"})
"""Modes whose plans may call the generator (``auto`` does for the questions it routes on)."""


def parse_planners(text: str | Sequence[str]) -> list[str]:
    """``"direct,iterative"`` (or a list of names) to mode names, in order, without repeats.

    Raises:
        ValueError: for a name that is not a mode (the CLI reports it naming ``--planner``).
    """
    names = text.split(",") if isinstance(text, str) else list(text)
    modes = list(dict.fromkeys(n.strip() for n in names if n.strip()))
    bad = [m for m in modes if m not in PLANNER_MODES]
    if bad:
        raise ValueError(f"unknown planner {bad[0]!r}; valid: {' | '.join(PLANNER_MODES)}")
    return modes


def docs_of(evidence: Iterable[Evidence]) -> list[str]:
    """Document ids of chunks, in order, each once."""
    return list(dict.fromkeys(e.chunk.external_id for e in evidence))


@dataclass(frozen=True)
class PlanRecord:
    """What one plan did for one question."""

    collected: list[str]
    handed: list[str]
    mode: str
    hops: int
    fallback: str
    stop: str
    ms: float
    plan_ms: float
    plan_tokens: int
    queries: list[str]

    @classmethod
    def of(cls, plan: Plan, handed: Sequence[Evidence], ms: float) -> PlanRecord:
        """The record of ``plan``, whose packed evidence is ``handed``, run in ``ms``."""
        return cls(
            collected=docs_of(interleave(plan.steps)),
            handed=docs_of(handed),
            mode=plan.mode,
            hops=len(plan.steps),
            fallback=plan.fallback,
            stop=plan.stop,
            ms=ms,
            plan_ms=plan.timings.plan,
            plan_tokens=plan.usage.total_tokens,
            queries=[s.query for s in plan.steps],
        )

    def as_json(self) -> dict[str, Any]:
        """For the per-question JSONL."""
        return {
            "mode": self.mode, "hops": self.hops, "queries": self.queries, "stop": self.stop,
            "fallback": self.fallback, "collected": self.collected, "handed": self.handed,
            "ms": round(self.ms, 1), "plan_ms": round(self.plan_ms, 1), "plan_tokens": self.plan_tokens,
        }


@dataclass
class PlanRuns:
    """Per mode, per question: the :class:`PlanRecord` of its plan."""

    modes: list[str]
    records: dict[str, dict[str, PlanRecord]] = field(default_factory=dict)

    def run(self, pipeline: Any, collection: str, qid: str, question: str, top_k: int) -> None:
        """Plan ``question`` once per mode, recording what each collected and handed on."""
        for mode in self.modes:
            t0 = time.perf_counter()
            plan, handed = pipeline.evidence(collection, question, top_k, planner=mode)
            ms = (time.perf_counter() - t0) * 1000.0
            self.records.setdefault(mode, {})[qid] = PlanRecord.of(plan, handed, ms)

    def report(self, qrels: Mapping[str, Mapping[str, int]], types: Mapping[str, str], ks: Sequence[int]) -> dict[str, Any]:
        """Per mode: full recall of the collected and the handed evidence, overall and per type."""
        return {mode: plan_metrics(qrels, types, self.records.get(mode, {}), ks) for mode in self.modes}


def plan_metrics(
    qrels: Mapping[str, Mapping[str, int]], types: Mapping[str, str], records: Mapping[str, PlanRecord],
    ks: Sequence[int] = (),
) -> dict[str, Any]:
    """Full recall (collected @k and handed), hops, fallbacks and latency of one mode's plans.

    Args:
        qrels: query id -> doc id -> grade, for the questions planned.
        types: query id -> question type, where known.
        records: query id -> its plan's record.
        ks: cutoffs for the collected list's full recall.
    """
    judged = {q: r for q, r in qrels.items() if q in records}
    out: dict[str, Any] = _recall_block(judged, records, ks)
    out["by_type"] = {
        t: _recall_block({q: r for q, r in judged.items() if types.get(q) == t}, records, ks)
        for t in sorted({types[q] for q in judged if q in types})
    }
    rows = list(records.values())
    out["hops_mean"] = sum(r.hops for r in rows) / len(rows) if rows else 0.0
    out["fallback_rate"] = sum(bool(r.fallback) for r in rows) / len(rows) if rows else 0.0
    out["modes_run"] = dict(Counter(r.mode for r in rows))
    out["stops"] = dict(Counter(r.stop for r in rows).most_common())
    out["plan_tokens_mean"] = sum(r.plan_tokens for r in rows) / len(rows) if rows else 0.0
    if rows:
        out["latency_ms"] = {"plan+retrieval": percentiles([r.ms for r in rows]), "plan": percentiles([r.plan_ms for r in rows])}
    return out


def _recall_block(qrels: Mapping[str, Mapping[str, int]], records: Mapping[str, PlanRecord], ks: Sequence[int]) -> dict[str, Any]:
    if not any(g > 0 for rels in qrels.values() for g in rels.values()):
        return {"questions": 0}
    collected = {q: r.collected for q, r in records.items()}
    handed = {q: r.handed for q, r in records.items()}
    handed_full = full_recall_at_k(qrels, handed, None)
    block: dict[str, Any] = {
        "questions": len(handed_full),
        "handed_full_recall": sum(handed_full.values()) / len(handed_full),
        "handed_recall": _mean_recall(qrels, handed),
        "handed_docs_mean": sum(len(handed.get(q, ())) for q in handed_full) / len(handed_full),
    }
    if ks:
        block.update({f"collected_{k}": v for k, v in full_recall(qrels, collected, ks).items()})
    return block


def _mean_recall(qrels: Mapping[str, Mapping[str, int]], ranked: Mapping[str, Sequence[str]]) -> float:
    """Mean share of each question's relevant documents found in its list."""
    shares = []
    for qid, rels in qrels.items():
        gold = {d for d, g in rels.items() if g > 0}
        if gold:
            shares.append(len(gold & set(ranked.get(qid, ()))) / len(gold))
    return sum(shares) / len(shares) if shares else 0.0
