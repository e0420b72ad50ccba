"""Verdicts: check each sentence of an answer against the sources it cites."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np

from rag.config import VerifierConfig
from rag.types import ABSTAIN_TEXT
from rag.types import Chunk, Claim, Verdict, Verification
from rag.verify.claims import ClaimText, is_framing, rewrite_citations, split_claims
from rag.verify.model import load_support_scorer
from rag.verify.support import BatchSupportScorer, Embed, HybridSupportScorer, Support, SupportScorer

StoredVectors = Callable[[Sequence[Chunk]], "Sequence[np.ndarray | None]"]
"""``vectors(chunks)``: per chunk, the vector stored with it in the collection, or None."""

_TERMINAL_END = re.compile(r"[.!?。！？]+[\"'”’)»]*$")


def _normalise(text: str) -> str:
    return re.sub(r"[\W_]+", " ", text.replace("’", "'").replace("'", "").lower()).strip()


_ABSTAIN_KEY = _normalise(ABSTAIN_TEXT)


def is_abstention(text: str) -> bool:
    """Whether a sentence or answer is the abstention text (case, punctuation and markers ignored)."""
    return _normalise(re.sub(r"[\[【][^\]】]*[\]】]", " ", text)) == _ABSTAIN_KEY


class Verifier:
    """Gives each claim of an answer a verdict from the sources it cites.

    Verdicts:

    - ``supported``: the best valid cited source scores at least
      ``support_threshold``; or the claim cites no valid source and post-hoc
      attribution found one that does (its citation has kind ``attributed``).
    - ``unsupported``: it cites valid sources and none reaches the threshold.
    - ``uncited``: it cites no valid source and no source reaches the threshold.

    A citation outside ``1..len(sources)`` is invalid: it is listed in
    :attr:`Verification.invalid_citations`, left out of the claim's citations
    and never counts as support, so a claim citing only ``[7]`` of two sources
    is treated as uncited (and may still be attributed). In the answer the user
    sees, an invalid marker becomes the attributed source's marker, or is dropped.

    A scorer that scores claims in a batch (:class:`BatchSupportScorer`) gets all claims of
    the answer in one call, with the sources' stored vectors when ``vectors`` is given, so
    verifying costs one embedding call for the claims and nothing for sources seen before.

    Args:
        config: thresholds and the default strictness.
        scorer: scores a claim against source texts.
        vectors: looks up the stored vectors of the sources (the pipeline passes the store's);
            None embeds the source texts instead.

    Example:
        >>> import numpy as np
        >>> from rag.config import VerifierConfig
        >>> from rag.types import Chunk
        >>> from rag.verify.support import HybridSupportScorer
        >>> alike = lambda texts: np.ones((len(texts), 2), np.float32) / np.sqrt(2)  # a stand-in embedder
        >>> source = Chunk(1, 1, "handbook", "travel.md", "travel.md", "Travel", "", 0, 0, 35,
        ...                "Travel is approved by your manager.")
        >>> verifier = Verifier(VerifierConfig(), HybridSupportScorer(alike))
        >>> answer = "Your manager approves travel [1]. Parking is free [1]."
        >>> result = verifier.verify(answer, [source])
        >>> [c.verdict for c in result.claims], result.faithfulness
        (['supported', 'unsupported'], 0.5)
        >>> verifier.verify(answer, [source], strict=True).answer
        'Your manager approves travel [1].'
    """

    def __init__(self, config: VerifierConfig, scorer: SupportScorer, vectors: StoredVectors | None = None) -> None:
        self._config = config
        self._scorer = scorer
        self._vectors = vectors
        fitted = fitted_threshold(scorer)
        self.threshold = config.support_threshold if fitted is None else fitted
        """What a claim's best score must reach to be supported: the scorer's own fitted threshold, else the setting."""

    def verify(
        self,
        answer: str,
        sources: Sequence[Chunk],
        strict: bool | None = None,
        question: str | None = None,
        steps: Sequence[int] | None = None,
    ) -> Verification:
        """Verify every claim of an answer.

        ``faithfulness`` is supported claims / all claims. An answer with no
        claims scores 0.0 (nothing in it is backed by a source), except an
        abstention (:data:`ABSTAIN_TEXT`), which makes no claims and scores 1.0.
        Abstention sentences inside a longer answer are not claims, nor are sentences that only
        frame it ("Sure!", "Here is a summary:"; :func:`rag.verify.claims.is_framing`).

        Args:
            answer: the generated answer with ``[n]`` markers.
            sources: the packed sources; ``sources[i]`` is source number ``i + 1``.
            strict: drop unsupported and uncited claims from the returned
                answer; ``None`` uses ``config.strict``.
            question: set for short answers (answer style ``short``): a phrase such as
                "308" states nothing alone, so each claim is scored in the context of
                the question (see :meth:`SupportScorer.support`).
            steps: per source, the plan step that found it; with a short answer and sources of
                several steps, the question's words may be found in a source of another step
                than the cited one (a multi-hop chain; :class:`HybridSupportScorer` only).

        Returns:
            The claims in answer order, faithfulness, invalid citation numbers
            in order of first appearance, and the answer: the original one, or
            in strict mode the kept claims with their valid and attributed
            markers (:data:`ABSTAIN_TEXT` when none is kept).
        """
        strict = self._config.strict if strict is None else strict
        found = split_claims(answer)
        parts = [c for c in found if not is_abstention(c.text) and not is_framing(c.text)]
        if not parts:
            abstained = any(is_abstention(c.text) for c in found)
            return Verification(claims=(), faithfulness=1.0 if abstained else 0.0, answer=answer)

        texts = [chunk.text for chunk in sources]
        invalid: dict[int, None] = {}
        for part in parts:
            for n in part.citations:
                if not 1 <= n <= len(sources):
                    invalid.setdefault(n, None)
        valid = [tuple(n for n in part.citations if 1 <= n <= len(texts)) for part in parts]
        among = [[n - 1 for n in v] if v else list(range(len(texts))) for v in valid]
        found = self._supports([p.text for p in parts], texts, sources, among, question or "", steps)
        claims = [self._judge(p, v, f) for p, v, f in zip(parts, valid, found, strict=True)]

        supported = sum(c.verdict == "supported" for c in claims)
        kept = _without_invalid(answer, parts, claims, len(sources)) if invalid else answer
        if strict:
            kept = _rebuild(answer, parts, claims) or ABSTAIN_TEXT
        return Verification(
            claims=tuple(claims),
            faithfulness=supported / len(claims),
            invalid_citations=tuple(invalid),
            answer=kept,
        )

    def _supports(
        self,
        claims: list[str],
        texts: list[str],
        sources: Sequence[Chunk],
        among: list[list[int]],
        context: str,
        steps: Sequence[int] | None = None,
    ) -> list[list[Support]]:
        """Per claim, the support of each source of ``among``: one batch when the scorer can."""
        if isinstance(self._scorer, BatchSupportScorer):
            vectors = self._vectors(sources) if self._vectors is not None and sources else None
            return self._scorer.support_many(claims, texts, among, context, vectors, steps)
        return [
            self._scorer.support(c, [texts[i] for i in idx], context) if idx else []
            for c, idx in zip(claims, among, strict=True)
        ]

    def _judge(self, part: ClaimText, valid: tuple[int, ...], found: list[Support]) -> Claim:
        threshold = self.threshold
        if valid:
            best = max(f.score for f in found)
            verdict: Verdict = "supported" if best >= threshold else "unsupported"
            spans = tuple((f.start, f.end) for f in found)
            return Claim(part.text, valid, verdict, best, ("generated",) * len(valid), spans)
        if found and max(f.score for f in found) >= threshold:
            i = max(range(len(found)), key=lambda k: found[k].score)
            return Claim(part.text, (i + 1,), "supported", found[i].score, ("attributed",), ((found[i].start, found[i].end),))
        return Claim(part.text, (), "uncited", max((f.score for f in found), default=0.0))


def _without_invalid(answer: str, parts: list[ClaimText], claims: list[Claim], n_sources: int) -> str:
    """The answer with each invalid marker replaced by the source attributed to its claim, or dropped."""
    out, prev = [], 0
    for part, claim in zip(parts, claims, strict=True):
        attributed = claim.citations[0] if claim.kinds[:1] == ("attributed",) else None

        def keep(n: int, attributed: int | None = attributed) -> int | None:
            return n if 1 <= n <= n_sources else attributed

        out.append(answer[prev : part.start])
        out.append(rewrite_citations(answer[part.start : part.end], keep))
        prev = part.end
    out.append(answer[prev:])
    return "".join(out)


def _rebuild(answer: str, parts: list[ClaimText], claims: list[Claim]) -> str:
    """The kept claims, each with its markers before its final punctuation."""
    out: list[str] = []
    prev_end = 0
    for part, claim in zip(parts, claims, strict=True):
        if claim.verdict == "supported":
            markers = "".join(f"[{n}]" for n in claim.citations)
            end = _TERMINAL_END.search(claim.text)
            cut = end.start() if end else len(claim.text)
            sentence = f"{claim.text[:cut]} {markers}{claim.text[cut:]}"
            if out:
                out.append("\n" if "\n" in answer[prev_end : part.start] else " ")
            out.append(sentence)
            prev_end = part.end
    return "".join(out)


def abstain_needed(verification: Verification, config: VerifierConfig) -> bool:
    """Whether the answer is too unfaithful to show: ``faithfulness < config.min_faithfulness``.

    Args:
        verification: the verifier's result.
        config: holds ``min_faithfulness``.

    Returns:
        True when the pipeline should answer :data:`ABSTAIN_TEXT` instead.
    """
    return verification.faithfulness < config.min_faithfulness


def fitted_threshold(scorer: object) -> float | None:
    """A scorer's own numeric ``threshold`` attribute (fitted with a learned model), or None."""
    own = getattr(scorer, "threshold", None)
    return float(own) if isinstance(own, int | float) and not isinstance(own, bool) else None


def build_scorer(config: VerifierConfig, embed: Embed) -> SupportScorer:
    """The support scorer the settings configure, loaded.

    ``config.model`` names a directory written by ``rag train-verifier``: its
    :class:`~rag.verify.model.CrossEncoderSupportScorer`. Empty: the
    :class:`~rag.verify.support.HybridSupportScorer` over ``embed``.

    Raises:
        ConfigError: the model directory or its ``rag_verifier.json`` is missing or bad (naming
            ``RAG_VERIFIER__MODEL``).
        ModelLoadError: its model files cannot be loaded.
    """
    if not config.model:
        return HybridSupportScorer(embed, windows=config.windows_per_claim)
    return load_support_scorer(config.model, config.backend, embed, threads=config.threads)
