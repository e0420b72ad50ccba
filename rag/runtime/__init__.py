"""The composition root: builds the store, models and generator once, for every front end.

The API server, the CLI, evaluation, benchmarks and reranker training all open the same
:class:`~rag.runtime.compose.Runtime` with :func:`open_runtime`, so a setting means the same thing
everywhere. The names are loaded on first use, so that ``rag.runtime.processes`` and the
local generator's entry point do not import the models.

Example:
    >>> from rag.config import load_settings
    >>> with open_runtime(load_settings(), generator=False) as runtime:  # doctest: +SKIP
    ...     hits = runtime.pipeline.search("handbook", "travel approval").results
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rag.runtime.compose import Runtime, load_reranker, open_runtime, reconcile_all

__all__ = ["Runtime", "load_reranker", "open_runtime", "reconcile_all"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from rag.runtime import compose

        return getattr(compose, name)
    raise AttributeError(f"module 'rag.runtime' has no attribute {name!r}")
