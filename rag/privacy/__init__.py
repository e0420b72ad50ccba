"""Personal data: redaction at ingestion (:mod:`rag.privacy.redact`) and the answer-time check (:mod:`rag.privacy.policy`)."""

from rag.privacy.policy import POLICY_MODES, AnswerPolicy, PolicyResult, StreamGuard
from rag.privacy.redact import KINDS, PLACEHOLDERS, Match, RedactionResult, Redactor, luhn_valid, parse_kinds, redact_document

__all__ = [
    "KINDS",
    "PLACEHOLDERS",
    "POLICY_MODES",
    "AnswerPolicy",
    "Match",
    "PolicyResult",
    "RedactionResult",
    "Redactor",
    "StreamGuard",
    "luhn_valid",
    "parse_kinds",
    "redact_document",
]
