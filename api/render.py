"""Plain-terminal rendering of an answer, shared by ``rag ask`` and the demo."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape

from rag.types import Answer

if TYPE_CHECKING:
    from rag.pipeline import SearchResult

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
            console.print(f"  [{c['n']}] {escape(_place(c))} ({c['kind']})", highlight=False)
            for span in c.get("spans", []):
                quote = " ".join(span["text"].split())
                quote = quote if len(quote) <= 160 else quote[:157] + "..."
                console.print(f"      “{escape(quote)}” [{span['char_start']}:{span['char_end']}]", highlight=False)
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


def _place(c: dict[str, Any]) -> str:
    """``title — source, section, page N``: where a citation points."""
    parts = [c["source"]]
    if c.get("section"):
        parts.append(c["section"])
    if c.get("page") is not None and f"page {c['page']}" not in (c.get("section") or ""):
        parts.append(f"page {c['page']}")
    return f"{c['title'] or '(untitled)'} — {', '.join(parts)}"


def print_search(console: Console, found: SearchResult, *, as_json: bool = False) -> None:
    """Print ranked search results with their stage scores, then the per-stage timings."""
    from api.convert import result_out, search_timings

    reranked = bool(found.pipeline.get("rerank"))
    results = [result_out(r).model_dump() for r in found.results]
    timings = search_timings(found.timings, reranked=reranked).model_dump(exclude_none=True)
    if as_json:
        console.print_json(json.dumps({"results": results, "timings_ms": timings, "pipeline": found.pipeline}))
        return
    if not results:
        console.print("no results")
    for i, r in enumerate(results, 1):
        scores = " ".join(f"{k} {v:.3f}" for k, v in r["scores"].items() if v is not None)
        where = f"{r['source']} [{r['char_start']}:{r['char_end']}]" + (f" · {r['section']}" if r["section"] else "")
        console.print(f"[bold]{i}.[/] {escape(r['title'] or '(untitled)')} — {escape(where)}", highlight=False)
        console.print(f"   {scores}", highlight=False)
        snippet = " ".join(r["text"].split())
        console.print(f"   {snippet[:200]}{'…' if len(snippet) > 200 else ''}", highlight=False, markup=False)
    console.print(" · ".join(f"{k} {v:.1f} ms" for k, v in timings.items()), highlight=False)
