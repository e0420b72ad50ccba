"""Entry point of the local generator: llama-cpp-python's server, each prompt evaluated from scratch.

llama-cpp-python reuses the key/value cache of the previous request's longest common prompt
prefix. Evaluating a prompt in two parts gives slightly different logits than in one, so the
same question asked twice at temperature 0 could get two different answers. Forgetting the
cache before each generation makes a request's answer depend on the request alone (at the cost
of re-reading the shared system prompt, a few hundred tokens).

It also ends every streamed chat completion with a chunk carrying ``usage``, as OpenAI's
``stream_options: {"include_usage": true}`` does (and vLLM): llama-cpp-python's server sends
none, so a streamed answer would report 0 prompt tokens.

Run as ``python -m rag.runtime.llama_entry`` with the arguments of ``python -m llama_cpp.server``.
"""

from __future__ import annotations

import runpy
from collections.abc import Iterator
from typing import Any

from llama_cpp import Llama

_generate = Llama.generate
_chat = Llama.create_chat_completion


def _generate_from_scratch(self: Llama, tokens: Any, *args: Any, **kwargs: Any) -> Any:
    self.reset()  # n_tokens = 0: no prefix of an earlier prompt is reused
    self._rag_usage = [len(tokens), 0]  # type: ignore[attr-defined]
    eos = self.token_eos()
    for token in _generate(self, tokens, *args, **kwargs):
        if token != eos:
            self._rag_usage[1] += 1  # type: ignore[attr-defined]
        yield token


def _chat_with_usage(self: Llama, *args: Any, **kwargs: Any) -> Any:
    result = _chat(self, *args, **kwargs)
    if not kwargs.get("stream"):
        return result
    return _stream_with_usage(self, result)


def _stream_with_usage(llama: Llama, chunks: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """The chunks, then one with no choices and the request's token counts."""
    last: dict[str, Any] = {}
    llama._rag_usage = [0, 0]  # type: ignore[attr-defined]
    for chunk in chunks:
        last = chunk
        yield chunk
    prompt, completion = llama._rag_usage  # type: ignore[attr-defined]
    yield {
        "id": last.get("id", ""),
        "object": "chat.completion.chunk",
        "created": last.get("created", 0),
        "model": last.get("model", ""),
        "choices": [],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
    }


def main() -> None:
    """Patch prefix reuse out and usage into streams, then run llama-cpp-python's server module as ``__main__``."""
    Llama.generate = _generate_from_scratch  # type: ignore[method-assign]
    Llama.create_chat_completion = _chat_with_usage  # type: ignore[method-assign]
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
