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
    through one ``generate_json`` call with :data:`rag.generation.prompts.REWRITE_SCHEMA`. When
    that call fails, its reply does not parse, or the reply does not both keep the follow-up's
    words and add some of the conversation's, the follow-up is spliced into the earlier question
    (:func:`splice`) or, when it is not elliptical, searched joined to it, and
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
        spliced = splice(question, turns[-1][0])
        generate_json = getattr(self.generator, "generate_json", None)
        if generate_json is None:
            return _kept(question, turns, spliced, Usage(), 0.0, "the generator cannot reply in JSON")
        t0 = time.perf_counter()
        try:
            reply = generate_json(
                messages, REWRITE_SCHEMA, REWRITE_MAX_TOKENS, name="rewrite", timeout_s=self.config.max_wall_s
            )
        except (StructuredOutputError, GeneratorUnavailableError) as exc:
            return _kept(question, turns, spliced, Usage(), (time.perf_counter() - t0) * 1000.0, f"rewrite: {exc}")
        ms = (time.perf_counter() - t0) * 1000.0
        standalone = " ".join(str(reply.data["question"]).split())
        if not standalone:
            problem = "was empty"
        elif not _adds_context(question, standalone, turns):
            problem = "added nothing from the conversation"  # small models often copy a follow-up unchanged
        elif not _keeps_follow_up(question, standalone):
            problem = "dropped words of the follow-up"  # ... or copy the earlier question
        else:
            return Rewrite(question, standalone, reply.usage, ms)
        return _kept(question, turns, spliced, reply.usage, ms, f"rewrite: the reply {problem}")


def _kept(
    question: str, turns: Sequence[tuple[str, str]], spliced: str | None, usage: Usage, ms: float, why: str
) -> Rewrite:
    """The rewrite when the model's is not used: the follow-up spliced into the earlier question, or both joined.

    Searched alone, an elliptical follow-up finds nothing of what it refers to; joined to the
    earlier question it does, though the answer then reads two questions (a 0.5B model answers
    the first), which is why a splice, one question, comes first.
    """
    if spliced is not None:
        return Rewrite(question, spliced, usage, ms, f"{why}; the follow-up was put into the earlier question")
    joined = f"{turns[-1][0].strip()} {question.strip()}"
    return Rewrite(question, joined, usage, ms, f"{why}; the earlier question is searched with it")


_LEAD = re.compile(r"^(?:(?:and|but|also|so|then|ok(?:ay)?)[\s,]+)*(?:(?:what|how)\s+about\s+)?", re.IGNORECASE)
"""What an elliptical follow-up starts with: "And ...", "What about ...", "And how about ..."."""

_CLAUSE_START = frozenset(
    "what when where who whom whose which why how is are was were do does did can could will would "
    "should shall may might must has have had i you he she it we they this that there".split()
)
"""First words of a fragment that is a clause of its own ("And when did she join?"), not spliced."""

_PREPOSITIONS = frozenset(
    "for in at on with without about during after before of to from by under over between among "
    "within outside inside per than like since until".split()
)

_FUNCTION_WORDS = frozenset(
    "and but also the for with about what how when where who whom whose which why this that these those "
    "there then its his her their they them she him you your our does did was were are has have had "
    "can could will would should one ones".split()
)

_TOKEN = re.compile(r"\S+")
_EDGE = re.compile(r"^[^\w]+|[^\w]+$")
_TRAILING = re.compile(r"[^\w]*$")


def splice(question: str, earlier: str) -> str | None:
    """An elliptical follow-up put into the earlier question, or None when it is not one.

    A follow-up that is a fragment after "and", "what about" or "how about" is spliced: a
    prepositional phrase is added to the earlier question ("And for part-time staff?" after
    "What is the vacation policy?" becomes "What is the vacation policy for part-time staff?"),
    and a noun phrase takes the place of the earlier question's phrase it shares words with, or
    else, when it is a name, of the earlier question's last name ("And the New Pier?" after "When
    was the Old Pier built?" becomes "When was the New Pier built?"; "What about Prague?" after
    "Which river flows through Vienna?", "Which river flows through Prague?"). Anything else (a
    clause, a pronoun to resolve, a fragment with no place in the earlier question) is left to
    the model.

    Example:
        >>> splice("And the premium plan?", "How much does the basic plan cost?")
        'How much does the premium plan cost?'
    """
    lead = _LEAD.match(question.strip())
    fragment = question.strip()[lead.end() if lead else 0 :].strip().rstrip("?.! ").strip()
    words = fragment.split()
    base = earlier.strip().rstrip("?.! ").strip()
    if not lead or not lead.group(0) or not words or not base or len(words) > 8:
        return None
    first = _EDGE.sub("", words[0]).lower()
    if first in _CLAUSE_START:
        return None
    if first in _PREPOSITIONS:
        return f"{base} {fragment}?"
    tokens = list(_TOKEN.finditer(base))
    keys = [_EDGE.sub("", t.group(0)).lower() for t in tokens]
    frag_keys = [_EDGE.sub("", w).lower() for w in words]
    span = _shared_span(keys, frag_keys) or _last_name(tokens, keys, words)
    if span is None:
        return None
    start, end = tokens[span[0]].start(), tokens[span[1] - 1].end()
    # punctuation glued to the replaced span's last word ("Vienna,") stays
    kept = _TRAILING.search(tokens[span[1] - 1].group(0)).group(0)
    return f"{base[:start]}{fragment}{kept}{base[end:]}?"


def _shared_span(keys: Sequence[str], frag: Sequence[str]) -> tuple[int, int] | None:
    """The span of the earlier question, as long as the fragment, that matches it best.

    Words in the same place count first ("full-time staff" for "part-time staff"), then words
    shared anywhere; at least one shared word must not be a function word, and the last of equal
    spans wins.
    """
    n, best, best_score = len(frag), None, (0, 0)
    wanted = set(frag)
    for i in range(0, len(keys) - n + 1):
        window = keys[i : i + n]
        if window == list(frag):
            return None  # the fragment is already in the earlier question: nothing to substitute
        shared = wanted & set(window)
        if not shared - _FUNCTION_WORDS:
            continue
        score = (sum(a == b for a, b in zip(window, frag, strict=True)), len(shared))
        if score >= best_score:
            best, best_score = (i, i + n), score
    return best


def _last_name(tokens: Sequence[re.Match[str]], keys: Sequence[str], words: Sequence[str]) -> tuple[int, int] | None:
    """The earlier question's last run of capitalised words after its first word, when the fragment is a name."""
    head = next((w for w in words if _EDGE.sub("", w).lower() not in _FUNCTION_WORDS), "")
    if not head[:1].isupper():
        return None
    end = None
    for i in range(len(tokens) - 1, 0, -1):
        capital = tokens[i].group(0)[:1].isupper() and keys[i] not in _FUNCTION_WORDS
        if capital and end is None:
            end = i + 1
        elif not capital and end is not None:
            return (i + 1, end)
    return (1, end) if end is not None else None


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"[^\W_]{3,}", text.lower())}


def _adds_context(question: str, standalone: str, turns: Sequence[tuple[str, str]]) -> bool:
    """Whether the rewrite took at least one word from the earlier turns that the follow-up lacks."""
    earlier = set().union(*(_words(q) | _words(a) for q, a in turns))
    return bool((_words(standalone) - _words(question)) & earlier)


def _keeps_follow_up(question: str, standalone: str) -> bool:
    """Whether the rewrite kept every content word of the follow-up (what it asks about)."""
    return not (_words(question) - _FUNCTION_WORDS) - _words(standalone)
