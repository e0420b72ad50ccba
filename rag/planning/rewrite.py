"""Follow-up questions made standalone before retrieval, with one constrained generator call."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence

from rag.config import PlannerConfig
from rag.errors import GeneratorUnavailableError, StructuredOutputError
from rag.generation.prompts import REWRITE_SCHEMA, rewrite_messages
from rag.interfaces import Generator
from rag.types import Rewrite, Turn, Usage

REWRITE_MAX_TOKENS = 96
"""Completion tokens of the rewrite (``{"question": "<= 300 characters"}``)."""


class ConversationRewriter:
    """Rewrites the last question of a conversation so that it stands alone.

    The first question of a conversation (no history) is searched as asked. A follow-up goes
    through one ``generate_json`` call with :data:`rag.generation.prompts.REWRITE_SCHEMA`; when
    that call fails or its reply does not parse, the follow-up is kept as asked and
    :attr:`Rewrite.fallback` says why: the user still gets an answer.

    Args:
        config: how many earlier turns the rewrite reads, and its time budget.
        generator: answers in JSON (``generate_json``).
        count_tokens: tokens of a text, to keep the prompt within the planning budget.

    Example:
        >>> rewriter = ConversationRewriter(settings.planner, generator, count)  # doctest: +SKIP
        >>> history = [Turn("What is the vacation policy?", "25 days [1].")]
        >>> rewriter.rewrite("And for part-time staff?", history).question  # doctest: +SKIP
        'What is the vacation policy for part-time staff?'
    """

    def __init__(self, config: PlannerConfig, generator: Generator | None, count_tokens: Callable[[str], int]) -> None:
        self.config = config
        self.generator = generator
        self.count_tokens = count_tokens

    def rewrite(self, question: str, history: Sequence[Turn]) -> Rewrite | None:
        """The standalone form of ``question`` after ``history`` (oldest first); None without history."""
        turns = [(t.question, t.answer) for t in history if t.question.strip()][-self.config.history_turns :]
        if not turns:
            return None
        messages = rewrite_messages(question, turns)
        # Older turns go first when the prompt would not fit the planning budget.
        while len(turns) > 1 and sum(self.count_tokens(m["content"]) for m in messages) > self.config.max_prompt_tokens:
            turns = turns[1:]
            messages = rewrite_messages(question, turns)
        generate_json = getattr(self.generator, "generate_json", None)
        if generate_json is None:
            return Rewrite(question, question, fallback="the generator cannot reply in JSON")
        t0 = time.perf_counter()
        try:
            reply = generate_json(
                messages, REWRITE_SCHEMA, REWRITE_MAX_TOKENS, name="rewrite", timeout_s=self.config.max_wall_s
            )
        except (StructuredOutputError, GeneratorUnavailableError) as exc:
            return Rewrite(question, question, Usage(), (time.perf_counter() - t0) * 1000.0, f"rewrite: {exc}")
        ms = (time.perf_counter() - t0) * 1000.0
        standalone = " ".join(str(reply.data["question"]).split())
        if not standalone:
            return Rewrite(question, question, reply.usage, ms, "rewrite: the reply was empty")
        if not _adds_context(question, standalone, turns):
            # Small models often copy an elliptical follow-up unchanged; searched alone it finds nothing
            # of what it refers to, so the earlier question goes with it.
            joined = f"{turns[-1][0].strip()} {question.strip()}"
            return Rewrite(question, joined, reply.usage, ms, "rewrite: the reply added nothing from the conversation; "
                           "the earlier question is searched with it")
        return Rewrite(question, standalone, reply.usage, ms)


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"[^\W_]{3,}", text.lower())}


def _adds_context(question: str, standalone: str, turns: Sequence[tuple[str, str]]) -> bool:
    """Whether the rewrite took at least one word from the earlier turns that the follow-up lacks."""
    earlier = set().union(*(_words(q) | _words(a) for q, a in turns))
    return bool((_words(standalone) - _words(question)) & earlier)
