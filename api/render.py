"""Plain-terminal rendering of an answer, shared by ``rag ask`` and the demo."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console

from rag.types import Answer

_VERDICT = {"supported": "[green]supported[/]", "unsupported": "[red]unsupported[/]", "uncited": "[yellow]uncited[/]"}


def answer_dict(a: Answer) -> dict[str, Any]:
    """An answer as the JSON that ``/v1/ask`` returns."""
    from api.convert import answer_out

    return answer_out(a).model_dump()


def print_answer(console: Console, a: Answer | dict[str, Any], *, as_json: bool = False) -> None:
    """Print the answer, its numbered citations and each claim's verdict."""
    data = answer_dict(a) if isinstance(a, Answer) else a
    if as_json:
        console.print_json(json.dumps(data))
        return
    console.print(f"\n[bold]Answer[/]{' (abstained)' if data['abstained'] else ''}:\n{data['answer']}\n", highlight=False)
    if data["citations"]:
        console.print("[bold]Citations[/]")
        for c in data["citations"]:
            where = f"{c['source']} [{c['char_start']}:{c['char_end']}]"
            console.print(f"  [{c['n']}] {c['title'] or '(untitled)'} — {where} ({c['kind']})", highlight=False)
    if data["claims"]:
        console.print("[bold]Verification[/]")
        for cl in data["claims"]:
            cites = ",".join(str(n) for n in cl["citations"]) or "-"
            console.print(f"  {_VERDICT.get(cl['verdict'], cl['verdict'])} ({cl['score']:.2f}) [{cites}] {cl['text']}", highlight=False)
    t = data["timings_ms"]
    console.print(
        f"faithfulness {data['faithfulness']:.2f} · " + " · ".join(f"{k} {v:.0f} ms" for k, v in t.items() if v),
        highlight=False,
    )
