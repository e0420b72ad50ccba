"""The README's main job, end to end: ingest ``data/``, serve, ask over REST, print the cited answer."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
from rich.console import Console

from api.render import print_answer
from rag.config import Settings
from rag.runtime.processes import free_port, stop_process


def _rag(*args: str) -> list[str]:
    return [sys.executable, "-m", "cli.main", *args]


def run_demo(settings: Settings, data: Path, question: str, *, console: Console, out: Console) -> int:
    """Run the demo; returns the process exit code."""
    env = dict(os.environ)
    env.setdefault("RAG_DATA_DIR", str(settings.data_dir))
    console.print(f"[bold]1/4[/] ingesting {data} into collection 'guide'")
    rc = subprocess.call(_rag("ingest", str(data), "--collection", "guide", "--create"), env=env)
    if rc not in (0, 1):
        console.print(f"[red]ingest failed with exit code {rc}[/]")
        return rc
    port = free_port()
    console.print(f"[bold]2/4[/] starting the service on 127.0.0.1:{port} (the web page: http://127.0.0.1:{port}/)")
    server = subprocess.Popen(_rag("serve", "--host", "127.0.0.1", "--port", str(port)), env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + settings.generator.local_start_timeout_s + 120
        while True:
            if server.poll() is not None:
                console.print(f"[red]the service exited with code {server.returncode}[/]")
                return 1
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                console.print("[red]the service did not start in time[/]")
                return 1
            time.sleep(0.5)
        console.print(f"[bold]3/4[/] POST {base}/v1/ask  {question!r}")
        resp = httpx.post(
            f"{base}/v1/ask",
            json={"query": question, "collection": "guide", "top_k": 5},
            timeout=settings.generator.timeout_s + 60,
        )
        if resp.status_code != 200:
            console.print(f"[red]/v1/ask answered {resp.status_code}: {resp.text}[/]")
            return 1
        console.print("[bold]4/4[/] the cited, verified answer:")
        print_answer(out, resp.json())
        out.print(
            f"\nThe web page: {base}/ (ask with highlighted citations; admin view on this machine). "
            f"It stops with this demo; to keep it, run `rag serve` and open http://{settings.api.host}:{settings.api.port}/"
        )
        return 0
    finally:
        stop_process(server, timeout_s=20)
