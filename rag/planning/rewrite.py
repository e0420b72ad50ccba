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
from rag.verify.lexical import stem

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
        spliced = next((splice(question, q) for q, _ in reversed(turns) if _stands_alone(q)), None)
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

MAX_FRAGMENT_WORDS = 8
"""A longer follow-up is a question of its own, not a fragment to splice."""

_CLAUSE_START = frozenset(
    "what when where who whom whose which why how is are was were do does did can could will would "
    "should shall may might must has have had".split()
)
"""Words that start a clause ("And when did she join?"): never spliced, never crossed by a replacement."""

_PRONOUNS = frozenset(
    "i me my you your he him his she her hers it its we us our they them their theirs one ones "
    "this that these those there".split()
)
"""A fragment with any of these refers to something the model must resolve, not a rule."""

_DETERMINERS = frozenset("the a an".split())

_PREPOSITIONS = frozenset(
    "for in at on with without about during after before of to from by under over between among "
    "within outside inside per than like since until through".split()
)

_FUNCTION_WORDS = frozenset(
    "and but also the for with about what how when where who whom whose which why this that these those "
    "there then its his her their they them she him you your our does did was were are has have had "
    "can could will would should one ones okay".split()
)

_TOKEN = re.compile(r"\S+")
_EDGE = re.compile(r"^[^\w]+|[^\w]+$")
_TRAILING = re.compile(r"[^\w]*$")


def splice(question: str, earlier: str) -> str | None:
    """An elliptical follow-up put into the earlier question, or None when no rule fits.

    The follow-up must start with "and", "what about" or "how about" and be a short fragment
    with no clause and no pronoun of its own. Then:

    * a prepositional fragment replaces the earlier question's phrase with the same preposition
      when their objects are alike (sharing a word, or both one number, or both one word:
      "in 2019" → "in 2020", "for full-time staff" → "for part-time staff"), and is appended
      otherwise ("What is the vacation policy for part-time staff?");
    * a noun phrase replaces the earlier question's phrase with the same last word, widened to
      the left up to a determiner and never across a clause word ("And the New Pier?" after
      "When was the Old Pier built?" gives "When was the New Pier built?");
    * a bare name replaces the earlier question's last name that follows a preposition ("What
      about Prague?" after "Which river flows through Vienna?").

    A fragment already in the earlier question, or one no rule places, gives None: the caller
    then searches both questions joined.

    Args:
        question: the follow-up.
        earlier: the earlier question it continues.

    Returns:
        The spliced question, ending in "?", or None.

    Example:
        >>> splice("And the premium plan?", "How much does the basic plan cost?")
        'How much does the premium plan cost?'
    """
    asked = question.strip()
    lead = _LEAD.match(asked)
    if lead is None or not lead.group(0):
        return None
    fragment, base = _without_end(asked[lead.end() :]), _without_end(earlier)
    words = fragment.split()
    if not words or not base or len(words) > MAX_FRAGMENT_WORDS:
        return None
    frag = [_key(w) for w in words]
    if frag[0] in _CLAUSE_START or _PRONOUNS & set(frag):
        return None
    tokens = list(_TOKEN.finditer(base))
    keys = [_key(t.group(0)) for t in tokens]
    if any(keys[i : i + len(frag)] == frag for i in range(len(keys) - len(frag) + 1)):
        return None  # already asked: nothing to put in
    if frag[0] in _PREPOSITIONS:
        span = _same_preposition(keys, frag)
        if span is None:
            if words[-1][:1].isupper() and any(t.group(0)[:1].isupper() for t in tokens[1:]):
                return None  # "in Prague" after "... through Vienna?": the place is to be replaced, not added
            return f"{base} {fragment}?"
    else:
        span = _same_head(keys, frag) or _last_name(tokens, keys, words)
    if span is None:
        return None
    a, b = span
    kept = _TRAILING.search(tokens[b - 1].group(0)).group(0)  # "Vienna," keeps its comma
    return f"{base[: tokens[a].start()]}{fragment}{kept}{base[tokens[b - 1].end() :]}?"


def _key(word: str) -> str:
    return _EDGE.sub("", word).lower()


def _without_end(text: str) -> str:
    """The text without its closing ?, ! or full stop (an abbreviation's stop stays: "U.S.")."""
    text = text.strip().rstrip("?!").rstrip()
    if text.endswith(".") and "." not in text.split()[-1][:-1]:
        text = text[:-1].rstrip()
    return text


def _same_preposition(keys: Sequence[str], frag: Sequence[str]) -> tuple[int, int] | None:
    """The earlier question's last phrase with the fragment's preposition, when its object is alike."""
    starts = [i for i, k in enumerate(keys) if k == frag[0]]
    if not starts:
        return None
    a = starts[-1]
    b = a + 1
    while b < len(keys) and keys[b] not in _PREPOSITIONS and keys[b] not in _CLAUSE_START:
        b += 1
    theirs, ours = keys[a + 1 : b], frag[1:]
    alike = (
        bool((set(theirs) & set(ours)) - _FUNCTION_WORDS)
        or (len(theirs) == len(ours) == 1 and theirs[0].isdigit() and ours[0].isdigit())
        or (len(theirs) == len(ours) == 1 and theirs[0].isalpha() and ours[0].isalpha())
    )
    return (a, b) if theirs and alike else None


def _same_head(keys: Sequence[str], frag: Sequence[str]) -> tuple[int, int] | None:
    """The earlier question's phrase ending in the fragment's last word, widened left to a determiner."""
    head = frag[-1]
    if head in _FUNCTION_WORDS:
        return None
    ends = [i for i, k in enumerate(keys) if k == head]
    if not ends:
        return None
    b = ends[-1] + 1
    a = b - 1
    while a > 0 and keys[a - 1] not in _CLAUSE_START | _PREPOSITIONS | _FUNCTION_WORDS:
        a -= 1
    if a > 0 and keys[a - 1] in _DETERMINERS:
        a -= 1
    return (a, b)


def _last_name(tokens: Sequence[re.Match[str]], keys: Sequence[str], words: Sequence[str]) -> tuple[int, int] | None:
    """The earlier question's last run of capitalised words after a preposition, when the fragment is a bare name."""
    if not all(w[:1].isupper() for w in words):
        return None
    end = None
    for i in range(len(tokens) - 1, 0, -1):
        capital = tokens[i].group(0)[:1].isupper()
        if capital and end is None:
            end = i + 1
        elif not capital and end is not None:
            return (i + 1, end) if keys[i] in _PREPOSITIONS else None
    return None


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"[^\W_]{3,}", text.lower())}


def _adds_context(question: str, standalone: str, turns: Sequence[tuple[str, str]]) -> bool:
    """Whether the rewrite took at least one word from the earlier turns that the follow-up lacks."""
    earlier = set().union(*(_words(q) | _words(a) for q, a in turns))
    return bool((_words(standalone) - _words(question)) & earlier)


def _keeps_follow_up(question: str, standalone: str) -> bool:
    """Whether the rewrite kept most of the follow-up's content words (what it asks about), by stem.

    Most, not all: a rewrite may drop a filler that is not in :data:`_FUNCTION_WORDS` ("und" of
    "Und für Teilzeitkräfte?") or change a word's form.
    """
    asked = {stem(w) for w in _words(question) - _FUNCTION_WORDS}
    return not asked or len(asked & {stem(w) for w in _words(standalone)}) * 2 > len(asked)


def _stands_alone(question: str) -> bool:
    """Whether an earlier question can take a splice: not itself a follow-up, and a question ("Thanks." is not)."""
    text = question.strip()
    words = text.split()
    return (
        bool(words)
        and not _LEAD.match(text).group(0)
        and (text.endswith("?") or _key(words[0]) in _CLAUSE_START)
    )
