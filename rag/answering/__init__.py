"""Answering questions: planning, retrieval per step, generation and verification, as one event stream."""

from rag.answering.answerer import NOT_ENOUGH_EVIDENCE, Answerer, Found
from rag.answering.events import AnswerEvent, AskEvent, SourcesEvent, TokenEvent
from rag.planning import DirectPlanner

__all__ = [
    "NOT_ENOUGH_EVIDENCE",
    "AnswerEvent",
    "Answerer",
    "AskEvent",
    "DirectPlanner",
    "Found",
    "SourcesEvent",
    "TokenEvent",
]
