"""Planners decide which retrievals a question needs; the default plans one."""

from __future__ import annotations

from rag.types import Plan, PlanStep


class DirectPlanner:
    """One retrieval of the question's own text (a :class:`~rag.interfaces.Planner`).

    Example:
        >>> DirectPlanner().plan("Who approves travel?").steps[0].query
        'Who approves travel?'
    """

    mode = "direct"

    def plan(self, question: str) -> Plan:
        """A one-step plan searching ``question``."""
        return Plan((PlanStep(question),), self.mode)
