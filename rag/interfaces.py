"""The seams between stages, as Protocols.

Each stage is a small class with one public verb; these Protocols name those verbs so that a
stage can be swapped (a sharded retriever, another generator, a learned verifier) without its
callers changing. They are structural: a class implements one by having the method, with no
registration or inheritance.

Example:
    >>> from rag.interfaces import Retriever
    >>> def top_titles(retriever: Retriever, query: str) -> list[str]:
    ...     return [s.chunk.title for s in retriever.retrieve(query, None, 3)]
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Protocol, runtime_checkable

from rag.types import (
    Chunk,
    Document,
    Filters,
    FusedHit,
    Generation,
    Hit,
    JsonDict,
    JsonReply,
    LoadFailure,
    Plan,
    Query,
    Restriction,
    ScoredChunk,
    Stopwatch,
    StreamDelta,
    Timings,
    Verification,
)


@runtime_checkable
class Retriever(Protocol):
    """Finds chunks for a query.

    ``retrieve(query, filters, top_k)`` returns at most ``top_k`` chunks of active documents that
    pass ``filters``, best first, each with the scores of the stages that found it.
    """

    def retrieve(self, query: str, filters: Filters | None = None, top_k: int | None = None) -> list[ScoredChunk]:
        """Ranked chunks for ``query``; see the class docstring."""
        ...


@runtime_checkable
class CandidateSource(Protocol):
    """One index-backed ranking that hybrid retrieval fuses (BM25 or dense).

    ``name`` is the stage (``bm25`` or ``dense``). ``hits`` ranks chunk ids inside a resolved
    restriction, without loading chunk rows: fusion needs only ids and scores, and only the fused
    head is loaded. A reader over several shards implements this by merging its shards' hits.
    """

    name: str

    def prepare(self, query: Query) -> Query:
        """``query``, with what this ranking can start in the background while the other one searches
        (the dense ranking starts embedding the text); ``hits`` then takes the returned query."""
        ...

    def hits(self, query: Query, restriction: Restriction, n: int, clock: Stopwatch | None = None) -> list[Hit]:
        """At most ``n`` hits inside ``restriction``, best first; time spent is added to ``clock``."""
        ...


class CollectionView(Protocol):
    """What hybrid retrieval needs of a collection: its two rankings, filters resolved, rows loaded.

    :class:`rag.index.reader.CollectionReader` is one; a reader over several shards is another.
    """

    bm25_retriever: CandidateSource
    dense_retriever: CandidateSource

    def restriction(self, filters: Filters | None) -> Restriction:
        """The chunk ids a search may return under ``filters``."""
        ...

    def hydrate(self, hits: Sequence[FusedHit]) -> list[ScoredChunk]:
        """The hits' chunks, in order, leaving out chunks of documents no longer active."""
        ...


@runtime_checkable
class Reranker(Protocol):
    """Re-orders candidates: ``rerank(query, chunks, top_k) -> list[ScoredChunk]``, best first."""

    top_n: int

    def rerank(self, query: str, chunks: Sequence[ScoredChunk], top_k: int | None = None) -> list[ScoredChunk]:
        """New objects in the new order; the input list is not changed."""
        ...


@runtime_checkable
class Generator(Protocol):
    """A chat-completions model: one reply, or the reply as a stream of deltas."""

    model: str

    def generate(self, messages: list[dict[str, str]]) -> Generation:
        """The whole reply."""
        ...

    def stream(self, messages: list[dict[str, str]]) -> Iterator[StreamDelta]:
        """The reply piece by piece; the last delta has ``done`` set and carries the usage."""
        ...


@runtime_checkable
class Verifier(Protocol):
    """Checks an answer claim by claim against the chunks it could cite."""

    def verify(
        self,
        answer: str,
        sources: Sequence[Chunk],
        *,
        strict: bool | None = None,
        question: str | None = None,
        steps: Sequence[int] | None = None,
    ) -> Verification:
        """Per-claim verdicts, faithfulness and the answer text the user sees (``steps``: the plan step of each source)."""
        ...


StepSearch = Callable[[str], "tuple[Sequence[ScoredChunk], Timings]"]
"""One retrieval for a planner: ``search(query) -> (chunks best first, timings)``.

The answerer binds the collection, ``top_k`` and filters; a planner never reaches the indexes
any other way.
"""


@runtime_checkable
class Planner(Protocol):
    """Plans and runs the retrievals for a question: ``plan(question, search) -> Plan``.

    The default runs one retrieval of the question's own text. Others run several: hops chosen
    from the evidence so far (iterative), or one per sub-question (decompose). Every step
    records what it found, so the answerer can pack the union and cite each source's step.
    A planner never raises for a planning reply that does not parse: it falls back to the
    question's own retrieval and says why in :attr:`Plan.fallback`.
    """

    mode: str

    def plan(self, question: str, search: StepSearch) -> Plan:
        """The steps for ``question``, each already searched with ``search``."""
        ...


@runtime_checkable
class StructuredGenerator(Protocol):
    """A generator that can answer in JSON constrained by a schema (the planners' calls)."""

    def generate_json(
        self, messages: list[dict[str, str]], schema: JsonDict, max_tokens: int, *, name: str = "reply",
        timeout_s: float | None = None,
    ) -> JsonReply:
        """The parsed reply; raises :class:`rag.errors.StructuredOutputError` when it does not match."""
        ...


@runtime_checkable
class Source(Protocol):
    """Where documents come from: ``iter_documents()`` yields each document, or why one failed.

    Local files and directories and BEIR JSONL are sources today; a connector to another system
    is one more class with this method.
    """

    def iter_documents(self) -> Iterator[Document | LoadFailure]:
        """Each document, or a :class:`LoadFailure` naming the file or line and the reason."""
        ...
