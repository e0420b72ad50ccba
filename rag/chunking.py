"""Token-aware chunking with overlap and boundary preferences.

The chunker works in the token space of the embedding model's tokenizer so
that every chunk fits the model's window together with the title that is
embedded with it (see :func:`embedding_text`). Each document is tokenized once;
all boundary decisions are then index arithmetic on the token offsets, which
keeps chunking a small fraction of the embedding cost.
"""

from __future__ import annotations

import copy
import re
from bisect import bisect_left, bisect_right
from typing import Any

from rag.config import ChunkingConfig
from rag.errors import ConfigError
from rag.types import ChunkDraft, Document

# Title tokens are subtracted from each chunk's budget, but a very long title
# must not starve the text: beyond this many tokens the title is the embedder's
# problem (it truncates), not the chunker's.
MAX_TITLE_TOKENS = 32

# A preferred boundary (paragraph, sentence, word) is searched for only in the
# last part of the window, so chunks stay close to the budget.
SEARCH_FRACTION = 0.3

# A blank line: a newline, optional horizontal whitespace, another newline.
_PARAGRAPH = re.compile(r"\n[^\S\n]*\n")
# A sentence end: . ! or ? (optionally closed by quotes or brackets) followed by whitespace.
_SENTENCE = re.compile(r"[.!?]+[\"')\]\u2019\u201d]*(?=\s)")


def embedding_text(title: str, text: str) -> str:
    """The text that is embedded and lexically indexed for a chunk.

    Args:
        title: the document title, possibly empty.
        text: the chunk text.

    Returns:
        ``f"{title}\\n{text}"`` when there is a title, else ``text``.
    """
    return f"{title}\n{text}" if title else text


class Chunker:
    """Splits documents into overlapping, token-bounded chunks.

    Budget per chunk, in tokens (no special tokens)::

        budget = max(size - specials - min(title_tokens, 32), size // 2)

    where ``specials`` is what the model adds around a sequence (``[CLS]``,
    ``[SEP]``) and ``title_tokens`` counts ``title + "\\n"``.

    A chunk ends at the latest paragraph break (blank line) in the last 30 % of
    its window, else at the latest sentence end there, else at the latest word
    boundary there, else exactly at the budget. The next chunk starts
    ``round(overlap * budget)`` tokens before the end, moved forward to the
    next word start, so the overlap between neighbours is at most
    ``round(overlap * budget) <= overlap * budget + 0.5`` tokens and may be
    smaller (never negative: chunks never leave a gap).

    Character ranges cover the whole text: the first chunk starts at 0, the last
    ends at ``len(text)``, and characters the tokenizer drops between two
    chunks (whitespace, control characters) belong to the earlier one.

    Args:
        config: chunk size (tokens) and overlap (share of the budget).
        tokenizer: a HuggingFace fast tokenizer (``PreTrainedTokenizerFast``)
            of the embedding model.
        max_seq_length: the embedding model's maximum sequence length.

    Raises:
        ConfigError: ``RAG_CHUNKING__SIZE`` when the size exceeds
            ``max_seq_length``; ``RAG_EMBEDDING__MODEL`` when the tokenizer is
            not a fast one.

    Example:
        >>> embedder = Embedder(settings.embedding).warm_up()  # doctest: +SKIP
        >>> chunker = Chunker(settings.chunking, embedder.tokenizer, embedder.max_seq_length)  # doctest: +SKIP
        >>> doc = Document("travel.md", "travel.md", "Travel", "Travel is approved by your manager.")  # doctest: +SKIP
        >>> [(c.ordinal, c.char_start, c.char_end) for c in chunker.chunk(doc)]  # doctest: +SKIP
        [(0, 0, 35)]
    """

    def __init__(self, config: ChunkingConfig, tokenizer: Any, max_seq_length: int) -> None:
        if config.size > max_seq_length:
            raise ConfigError(
                "RAG_CHUNKING__SIZE",
                f"chunk size {config.size} tokens exceeds the embedding model's "
                f"max_seq_length {max_seq_length}; set it to {max_seq_length} or less",
            )
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None:
            raise ConfigError("RAG_EMBEDDING__MODEL", "chunking needs a fast (Rust) tokenizer with offsets")
        # The backend may carry truncation/padding from tokenizer.json (all-MiniLM
        # truncates at 128): on a private copy we switch both off, so whole
        # documents tokenize without truncation and without length warnings.
        self._backend = copy.deepcopy(backend)
        self._backend.no_truncation()
        self._backend.no_padding()
        self._config = config
        self._specials = int(tokenizer.num_special_tokens_to_add())

    def budget(self, title: str) -> int:
        """Tokens of chunk text allowed for a document with this title.

        Args:
            title: the document title.

        Returns:
            The per-chunk token budget (see the class docstring).
        """
        size = self._config.size
        title_tokens = min(self._count(title + "\n"), MAX_TITLE_TOKENS) if title else 0
        return max(size - self._specials - title_tokens, size // 2)

    def chunk(self, doc: Document) -> list[ChunkDraft]:
        """Split a document into chunks.

        Args:
            doc: the document; ``doc.text`` is not modified.

        Returns:
            Chunks in document order, ordinals from 0, whose character ranges
            cover ``doc.text`` completely. Empty or whitespace-only text gives
            ``[]``.
        """
        text = doc.text
        if not text.strip():
            return []
        sections = _Sections(doc.sections)
        enc = self._backend.encode(text, add_special_tokens=False)
        offsets = enc.offsets
        n = len(offsets)
        if n == 0:
            # Nothing the tokenizer keeps (e.g. only control characters): one
            # chunk still covers it so no character is lost.
            return [ChunkDraft(0, text, 0, len(text), 0, sections.at(0), sections.within(0, len(text)))]

        starts = [s for s, _ in offsets]
        words = enc.word_ids
        spans = self._spans(text, starts, words, self.budget(doc.title))

        drafts = []
        for k, (i, j) in enumerate(spans):
            char_start = 0 if k == 0 else starts[i]
            if k == len(spans) - 1:
                char_end = len(text)
            else:
                # Dropped characters up to the next chunk's first token stay here.
                char_end = max(offsets[j - 1][1], starts[spans[k + 1][0]])
            drafts.append(
                ChunkDraft(
                    ordinal=k,
                    text=text[char_start:char_end],
                    char_start=char_start,
                    char_end=char_end,
                    token_count=j - i,
                    section=sections.at(char_start),
                    sections=sections.within(char_start, char_end),
                )
            )
        return drafts

    def _spans(
        self, text: str, starts: list[int], words: list[int | None], budget: int
    ) -> list[tuple[int, int]]:
        """Token ranges ``[i, j)`` of the chunks."""
        n = len(starts)
        # Boundaries are token indices j: "cut before token j". Computed once per
        # document by regex, then looked up by bisection for every window.
        paragraphs = _boundaries(_PARAGRAPH, text, starts)
        sentences = _boundaries(_SENTENCE, text, starts)
        overlap = round(self._config.overlap * budget)
        search = max(1, int(budget * SEARCH_FRACTION))

        def clean(j: int) -> bool:
            # A cut between two pre-tokenizer words re-tokenizes identically; a
            # cut inside a word (between word pieces) may not.
            return words[j] is None or words[j] != words[j - 1]

        spans: list[tuple[int, int]] = []
        i = 0
        while True:
            hi = min(i + budget, n)
            j = hi if hi == n else self._cut(i, hi, max(i + 1, hi - search), paragraphs, sentences, clean)
            if (i > 0 and not clean(i)) or (j < n and not clean(j)):
                j = self._fit(text, starts, i, j, budget)
            spans.append((i, j))
            if j >= n:
                return spans
            nxt = j
            if overlap:
                nxt = max(j - overlap, i + 1)
                while nxt < j and not clean(nxt):
                    nxt += 1
            i = nxt

    @staticmethod
    def _cut(i: int, hi: int, lo: int, paragraphs: list[int], sentences: list[int], clean: Any) -> int:
        """The preferred end of a chunk starting at token ``i``, within ``[lo, hi]``."""
        for marks in (paragraphs, sentences):
            k = bisect_right(marks, hi) - 1
            if k >= 0 and marks[k] >= lo:
                return marks[k]
        for j in range(hi, lo - 1, -1):
            if clean(j):
                return j
        return hi

    def _fit(self, text: str, starts: list[int], i: int, j: int, budget: int) -> int:
        """Shrink a chunk cut inside a word until its re-tokenized text fits.

        Only reached for words longer than the search zone (URLs, base64, long
        runs of letters), so the extra tokenizer calls are rare.
        """
        end = starts[j] if j < len(starts) else len(text)
        while j > i + 1:
            excess = self._count(text[starts[i] : end]) - budget
            if excess <= 0:
                break
            j = max(i + 1, j - excess)
            end = starts[j]
        return j

    def _count(self, text: str) -> int:
        return len(self._backend.encode(text, add_special_tokens=False).ids)


def _boundaries(pattern: re.Pattern[str], text: str, starts: list[int]) -> list[int]:
    """Sorted token indices of the first token at or after each match's end."""
    n = len(starts)
    out = []
    for m in pattern.finditer(text):
        j = bisect_left(starts, m.end())
        if 0 < j < n:
            out.append(j)
    return out


class _Sections:
    """Heading path lookup by character offset."""

    def __init__(self, sections: tuple[tuple[int, str], ...]) -> None:
        self._starts = [s for s, _ in sections]
        self._paths = [p for _, p in sections]

    def at(self, char: int) -> str:
        """Heading path of the last section starting at or before ``char``, or ""."""
        k = bisect_right(self._starts, char) - 1
        return self._paths[k] if k >= 0 else ""

    def within(self, start: int, end: int) -> tuple[tuple[int, str], ...]:
        """The sections covering ``start`` or starting before ``end``, offsets relative to ``start``."""
        if not self._starts:
            return ()
        found = [(0, self.at(start))] if self._starts[0] <= start else []
        k = bisect_right(self._starts, start)
        while k < len(self._starts) and self._starts[k] < end:
            found.append((self._starts[k] - start, self._paths[k]))
            k += 1
        return tuple(found)
