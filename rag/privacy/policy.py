"""The answer-time privacy check: personal data in an answer that its sources do not hold.

A value in an answer is allowed when the same value (compared in canonical form, see
:attr:`rag.privacy.redact.Match.key`) is in one of the sources the answer was written from.
In a redacting collection the sources hold placeholders only, so every value is caught: an
answer cannot repeat a redacted value, whether the generator took it from the question, the
conversation or its own weights.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from rag.privacy.redact import Match, Redactor, replace_matches
from rag.types import Answer, Claim

PolicyMode = Literal["remove", "flag", "off"]
POLICY_MODES: tuple[str, ...] = ("remove", "flag", "off")


@dataclass(frozen=True)
class PolicyResult:
    """What the check found in one text.

    Attributes:
        text: the text, with the values removed (``remove``) or as it was (``flag``, ``off``).
        found: values not in the sources, per kind.
        action: ``removed``, ``flagged`` or ``none`` (nothing found, or ``off``).
    """

    text: str
    found: dict[str, int]
    action: str

    def note(self) -> dict[str, object]:
        """The response's ``privacy`` note: the action and the counts per kind, never the values."""
        return {"action": self.action, "kinds": dict(sorted(self.found.items()))}


class AnswerPolicy:
    """Flags or removes personal data in answers that is not in their sources.

    Args:
        redactor: what counts as personal data.
        mode: ``remove`` replaces each such value with its placeholder, ``flag`` leaves the text
            and reports it, ``off`` does nothing.
    """

    def __init__(self, redactor: Redactor, mode: PolicyMode = "remove") -> None:
        self.redactor = redactor
        self.mode = mode

    @property
    def active(self) -> bool:
        """Whether the check runs at all."""
        return self.mode != "off" and bool(self.redactor)

    def allowed(self, sources: Iterable[str]) -> frozenset[tuple[str, str]]:
        """The ``(kind, key)`` of every value in ``sources``."""
        return frozenset((m.kind, m.key) for text in sources for m in self.redactor.find(text))

    def unsupported(self, text: str, allowed: frozenset[tuple[str, str]]) -> list[Match]:
        """The values in ``text`` that are not among ``allowed``."""
        return [m for m in self.redactor.find(text) if (m.kind, m.key) not in allowed]

    def check(self, text: str, sources: Sequence[str] | frozenset[tuple[str, str]]) -> PolicyResult:
        """Check one text against its sources (their texts, or :meth:`allowed` of them).

        Returns:
            The text to show and what was found.
        """
        if not self.active:
            return PolicyResult(text, {}, "none")
        allowed = sources if isinstance(sources, frozenset) else self.allowed(sources)
        bad = self.unsupported(text, allowed)
        found: dict[str, int] = {}
        for m in bad:
            found[m.kind] = found.get(m.kind, 0) + 1
        if not bad:
            return PolicyResult(text, {}, "none")
        if self.mode == "flag":
            return PolicyResult(text, found, "flagged")
        return PolicyResult(replace_matches(text, bad), found, "removed")

    def apply(self, answer: Answer) -> Answer:
        """The answer with its text and claims checked against its evidence (the sources it was written from).

        When anything is found, the note (:meth:`PolicyResult.note`) goes into
        ``answer.pipeline["privacy"]``.
        """
        if not self.active:
            return answer
        sources = [e.chunk.text for e in answer.evidence] or [s.chunk.text for s in answer.sources]
        allowed = self.allowed(sources)
        result = self.check(answer.answer, allowed)
        found = dict(result.found)
        if not found:  # claims are the answer's sentences; a value only there is still caught
            for claim in answer.claims:
                for m in self.unsupported(claim.text, allowed):
                    found[m.kind] = found.get(m.kind, 0) + 1
        if not found:
            return answer
        claims = tuple(self._claim(c, allowed) for c in answer.claims)
        note = PolicyResult(result.text, found, "flagged" if self.mode == "flag" else "removed").note()
        return replace(answer, answer=result.text, claims=claims, pipeline={**answer.pipeline, "privacy": note})

    def _claim(self, claim: Claim, allowed: frozenset[tuple[str, str]]) -> Claim:
        if self.mode != "remove":
            return claim
        result = self.check(claim.text, allowed)
        return claim if result.action == "none" else replace(claim, text=result.text)


class StreamGuard:
    """Holds a streamed answer back to sentence ends, so that no piece of a value leaves unchecked.

    A value never spans a sentence end (a full stop, question or exclamation mark followed by
    white space, or a line break), so each finished sentence is checked whole and released.

    Args:
        policy: the check, in ``remove`` mode (other modes pass text through).
        sources: the texts of the sources the answer is written from.
    """

    def __init__(self, policy: AnswerPolicy, sources: Sequence[str]) -> None:
        self.policy = policy
        self.allowed = policy.allowed(sources)
        self.pending = ""
        self.holds = policy.active and policy.mode == "remove"

    def feed(self, text: str) -> str:
        """Text that may be sent now (possibly empty)."""
        if not self.holds:
            return text
        self.pending += text
        cut = _last_boundary(self.pending)
        if cut <= 0:
            return ""
        ready, self.pending = self.pending[:cut], self.pending[cut:]
        return self.policy.check(ready, self.allowed).text

    def flush(self) -> str:
        """The rest, checked, at the end of the stream."""
        ready, self.pending = self.pending, ""
        return self.policy.check(ready, self.allowed).text if self.holds and ready else ready


def _last_boundary(text: str) -> int:
    """The offset just after the last sentence end in ``text``, or 0."""
    best = text.rfind("\n") + 1
    for mark in (". ", "? ", "! ", ".\t", "?\t", "!\t"):
        i = text.rfind(mark)
        if i >= 0:
            best = max(best, i + len(mark))
    return best
