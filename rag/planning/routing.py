"""The ``auto`` planner's decision: does a question read as single-hop, multi-hop or a comparison?

The decision is rules on the question's words, with no generator call, so that a single-hop
question pays nothing for planning (the issue's target: ask latency p50 within 1.2x of
``direct`` on single-hop questions). Measured on the two shared sets (``python -m
rag.planning.routing`` prints the shares): 73 % of the 200 HotpotQA questions (68 % of its bridge
questions, 90 % of its comparisons) are sent to a multi-step planner, and 14 % of the first 100
XQuAD questions (14 % of all 1,190).

The cues are general English, not the wording of one dataset:

* a comparison: ``A or B`` after a question word, or a comparative/superlative together with
  ``or``, or ``both``, ``same``, ``either``, ``in common``, ``compared``;
* a bridge: ``whose``, or a relative clause after a noun phrase (``the team that owns ...``,
  ``the plot that Thomas Arundell was ...``) that describes an entity instead of naming it;
* a long question (16 words or more): descriptions stacked on descriptions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

_COMPARATIVE = (
    r"older|younger|earlier|later|longer|shorter|bigger|larger|smaller|taller|higher|lower|more|fewer|less|"
    r"first|last|oldest|youngest|closer|farther|further|bigger|heavier|lighter|faster|slower|newer"
)
_COMPARISON = re.compile(
    rf"\b(?:both|same|either|in common|compared?|comparison)\b"
    rf"|\b(?:{_COMPARATIVE})\b.*\bor\b|\bor\b.*\b(?:{_COMPARATIVE})\b",
    re.IGNORECASE,
)
# "Which is ..., A or B?": a question word, then two alternatives, the second capitalised or a number.
_ALTERNATIVES = re.compile(
    r"^\s*(?:which|who|what|is|are|was|were|did|do|does)\b.*\w[\"'”’)]?\s*,?\s+or\s+[\"'“‘(]?[A-Z0-9]",
    re.IGNORECASE,
)
# "whose", or a relative clause after a noun phrase: "the team that owns ...", "the plot that Thomas ...".
_BRIDGE = re.compile(
    r"\bwhose\b|\b(?:the|a|an)\s+(?:[\w'-]+\s+){0,3}?[\w'-]+\s+(?:that|which|who|whom|whose)\s+[\w'-]+",
    re.IGNORECASE,
)
LONG_QUESTION_WORDS = 16
"""A question of this many words or more is treated as multi-hop."""

Route = Literal["direct", "iterative", "decompose"]


@dataclass(frozen=True)
class Routing:
    """Where ``auto`` sends a question, and the cue that decided it."""

    mode: Route
    reason: str


def route_question(question: str) -> Routing:
    """Choose the planner for ``question`` from its words alone.

    Example:
        >>> route_question("Which is older, the Eiffel Tower or Big Ben?").mode
        'decompose'
        >>> route_question("What is the former name of the animal whose habitat the reserve protects?").mode
        'iterative'
        >>> route_question("When was the lighthouse built?").mode
        'direct'
    """
    if _COMPARISON.search(question) or _ALTERNATIVES.search(question):
        return Routing("decompose", "comparison")
    if _BRIDGE.search(question):
        return Routing("iterative", "describes an entity it does not name")
    if len(question.split()) >= LONG_QUESTION_WORDS:
        return Routing("iterative", f"{LONG_QUESTION_WORDS} words or more")
    return Routing("direct", "single-hop")


def _shares() -> None:  # pragma: no cover - a measurement, run by hand
    import json
    import sys
    from collections import Counter
    from pathlib import Path

    for directory in sys.argv[1:] or ["../shared/datasets/hotpot_shared", "../shared/datasets/xquad_en"]:
        rows = [json.loads(line) for line in (Path(directory) / "queries.jsonl").open(encoding="utf-8")]
        routed = Counter(route_question(r["text"]).mode for r in rows)
        print(directory, len(rows), {mode: round(n / len(rows), 3) for mode, n in routed.items()})


if __name__ == "__main__":  # pragma: no cover
    _shares()
