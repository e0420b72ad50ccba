"""Entry point of the local generator: llama-cpp-python's server, each prompt evaluated from scratch.

llama-cpp-python reuses the key/value cache of the previous request's longest common prompt
prefix. Evaluating a prompt in two parts gives slightly different logits than in one, so the
same question asked twice at temperature 0 could get two different answers. Forgetting the
cache before each generation makes a request's answer depend on the request alone (at the cost
of re-reading the shared system prompt, a few hundred tokens).

Run as ``python -m rag.runtime.llama_entry`` with the arguments of ``python -m llama_cpp.server``.
"""

from __future__ import annotations

import runpy
from typing import Any

from llama_cpp import Llama

_generate = Llama.generate


def _generate_from_scratch(self: Llama, tokens: Any, *args: Any, **kwargs: Any) -> Any:
    self.reset()  # n_tokens = 0: no prefix of an earlier prompt is reused
    return _generate(self, tokens, *args, **kwargs)


def main() -> None:
    """Patch prefix reuse out, then run llama-cpp-python's server module as ``__main__``."""
    Llama.generate = _generate_from_scratch  # type: ignore[method-assign]
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
