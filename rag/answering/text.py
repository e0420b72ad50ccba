"""Tidying the generator's text before it is verified."""

from __future__ import annotations

import re

# A sentence end, not a list number such as "3."
_SENTENCE_END = re.compile(r"(?<!\s\d)(?<!^\d)[.!?](?:\s*\[[\d,\s\-–]+\])*(?=\s|$)")
# Trailing lines with nothing to say: a list number or bullet the model opened and never filled.
_EMPTY_ITEM = re.compile(r"\n[ \t]*(?:\d{1,2}[.)]|[-*•+])?[ \t]*\Z")
_LAST_FENCE = re.compile(r"\n[ \t]*`{3,}[\w-]*[ \t]*\Z")


def drop_unfinished(text: str) -> str:
    """Cut an answer that hit the token limit back to its last complete sentence (and its citations)."""
    ends = list(_SENTENCE_END.finditer(text))
    return text[: ends[-1].end()].strip() if ends else text


def tidy(text: str) -> str:
    """The answer without trailing empty list items or an unclosed code fence (e.g. "...renamed.\\n3.\\n```")."""
    text = text.strip()
    while True:
        before = text
        text = _EMPTY_ITEM.sub("", text).rstrip()
        fence = _LAST_FENCE.search(text)
        if fence and len(re.findall(r"^[ \t]*`{3,}", text, re.MULTILINE)) % 2:
            text = text[: fence.start()].rstrip()
        if text == before:
            return text
