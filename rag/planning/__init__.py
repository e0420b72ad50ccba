"""Query planning: which retrievals a question gets before it is answered.

* :mod:`rag.planning.planners`: the ``direct``, ``iterative``, ``decompose`` and ``auto``
  planners, :func:`build_planners` (one per mode), :func:`interleave`, the round-robin order
  in which the answerer packs the evidence of every step, and :func:`handed`, that order without
  a later step's off-topic finds.
* :mod:`rag.planning.routing`: the rules ``auto`` decides by.
* :mod:`rag.planning.rewrite`: a follow-up of a conversation made standalone.

Planners sit above the stages, beside :mod:`rag.answering`: they use the generator (its
``generate_json``) and the prompts of :mod:`rag.generation.prompts`, and reach retrieval only
through the search callable the answerer passes in.
"""

from rag.planning.planners import (
    PLANNER_MODES,
    AutoPlanner,
    DecomposePlanner,
    DirectPlanner,
    IterativePlanner,
    build_planners,
    handed,
    interleave,
    union,
)
from rag.planning.rewrite import ConversationRewriter
from rag.planning.routing import Routing, route_question

__all__ = [
    "PLANNER_MODES",
    "AutoPlanner",
    "ConversationRewriter",
    "DecomposePlanner",
    "DirectPlanner",
    "IterativePlanner",
    "Routing",
    "build_planners",
    "handed",
    "interleave",
    "route_question",
    "union",
]
