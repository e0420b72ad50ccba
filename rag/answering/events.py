"""What answering a question yields, in order: the sources, the answer's tokens, the final answer."""

from __future__ import annotations

from dataclasses import dataclass

from rag.types import Answer, Evidence


@dataclass(frozen=True)
class SourcesEvent:
    """The numbered sources the generator sees: ``evidence[i]`` is source ``[i + 1]``; empty when abstaining."""

    evidence: tuple[Evidence, ...]


@dataclass(frozen=True)
class TokenEvent:
    """A piece of the answer as the generator writes it."""

    text: str


@dataclass(frozen=True)
class AnswerEvent:
    """The final, verified answer; always the last event."""

    answer: Answer


AskEvent = SourcesEvent | TokenEvent | AnswerEvent
"""One event of :meth:`rag.answering.Answerer.ask_events`."""
