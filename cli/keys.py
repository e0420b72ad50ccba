"""``rag keys``: create, list and revoke managed API keys (stored only as hashes).

The helpers of :mod:`cli.main` are imported inside the commands: ``cli.main`` registers this
Typer app, so importing it at module level would be circular.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

ConfigOpt = Annotated[Optional[Path], typer.Option("--config", help="TOML settings file; RAG_* variables override it")]

keys_app = typer.Typer(
    help="API keys: create, list, revoke (scopes, expiry, rate limits); and the data-encryption key.", no_args_is_help=True
)


def _keyring(config):  # noqa: ANN001, ANN202 - Path | None -> KeyRing
    from cli.main import _settings, _store
    from rag.security.keys import KeyRing

    return KeyRing(_store(_settings(config)))


@keys_app.command("create")
def keys_create(
    collections: Annotated[str, typer.Option("--collections", help="comma-separated collections the key may use, e.g. a,b")],
    scope: Annotated[str, typer.Option("--scope", help="read | write | admin (each includes the ones before it)")] = "read",
    expires: Annotated[Optional[str], typer.Option("--expires", help="lifetime such as 30d, 12h, 15m, 90s; default: never")] = None,
    rate: Annotated[Optional[str], typer.Option("--rate", help="request rate limit such as 20/s, 600/m, 5000/h; default: none")] = None,
    name: Annotated[str, typer.Option("--name", help="a label shown by `rag keys list`")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="print the key and its record as JSON")] = False,
    config: ConfigOpt = None,
) -> None:
    """Create a key and print it once: only its hash is stored, so it cannot be shown again."""
    from cli.main import RagErrorExit, console, out
    from rag.errors import InputError
    from rag.security.keys import parse_collections, parse_duration, parse_rate, parse_scope

    try:
        spec = (
            parse_collections(collections, param="--collections"),
            parse_scope(scope, param="--scope"),
            parse_duration(expires, param="--expires"),
            parse_rate(rate, param="--rate"),
        )
    except InputError as exc:
        raise RagErrorExit(str(exc), 2) from None
    ring = _keyring(config)
    created = ring.create(name=name, collections=spec[0], scope=spec[1], expires_in=spec[2], rate=spec[3])
    if as_json:
        out.print_json(json.dumps({"key": created.key, **created.info.as_dict()}))
    else:
        out.print(created.key, highlight=False, markup=False)
        info = created.info
        console.print(
            f"key {info.id} ({info.prefix}…) scope={info.scope} collections={','.join(info.collections)} "
            f"expires={info.expires_at.isoformat() if info.expires_at else 'never'} rate={info.rate or 'unlimited'}",
            highlight=False,
            markup=False,
        )
    console.print("[yellow]warning:[/] this key is shown only once; store it now, it cannot be recovered", highlight=False)


@keys_app.command("list")
def keys_list(
    as_json: Annotated[bool, typer.Option("--json", help="print the keys as JSON")] = False,
    config: ConfigOpt = None,
) -> None:
    """List keys with their prefix, scope, collections, expiry and state; never the key itself."""
    from cli.main import out

    ring = _keyring(config)
    infos = ring.list()
    if as_json:
        out.print_json(json.dumps([i.as_dict() for i in infos]))
        return
    for i in infos:  # the name goes last: it may hold spaces
        expires = i.expires_at.isoformat(timespec="seconds") if i.expires_at else "never"
        line = [str(i.id), i.prefix + "…", i.scope, ",".join(i.collections), f"expires={expires}",
                f"rate={i.rate or 'unlimited'}", i.state(), i.name]
        out.print("  ".join(line).rstrip(), highlight=False, markup=False)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[int, typer.Argument(metavar="ID", help="the key's id, as `rag keys list` shows it")],
    config: ConfigOpt = None,
) -> None:
    """Revoke a key; running servers refuse it within a second."""
    from cli.main import RagErrorExit, out
    from rag.errors import NotFoundError

    ring = _keyring(config)
    try:
        info = ring.revoke(key_id)
    except NotFoundError as exc:
        raise RagErrorExit(str(exc), 1) from None
    out.print(f"revoked key {info.id} ({info.prefix}…)", highlight=False, markup=False)


@keys_app.command("audit")
def keys_audit(
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=100_000, help="rows to show, newest first")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="print the rows as JSON")] = False,
    prune: Annotated[Optional[str], typer.Option("--prune", help="delete rows older than this (e.g. 90d) instead of showing rows")] = None,
    config: ConfigOpt = None,
) -> None:
    """Show the newest audit_log rows: time, key id, status, method, route, collection (and query when kept)."""
    from cli.main import RagErrorExit, _settings, _store, out
    from rag.errors import InputError
    from rag.security.audit import AuditLog
    from rag.security.keys import parse_duration

    log = AuditLog(_store(_settings(config)))
    if prune is not None:
        try:
            age = parse_duration(prune, param="--prune")
        except InputError as exc:
            raise RagErrorExit(str(exc), 2) from None
        if age is None:
            raise RagErrorExit("--prune: give an age such as 90d", 2)
        out.print(f"deleted {log.prune(age)} audit rows older than {prune}", highlight=False, markup=False)
        return
    rows = log.rows(limit)
    if as_json:
        out.print_json(json.dumps([
            {"created_at": r.created_at.isoformat(), "key_id": r.key_id, "status": r.status, "method": r.method,
             "route": r.route, "collection": r.collection, "duration_ms": round(r.duration_ms, 1), "query": r.query}
            for r in rows
        ]))
        return
    for r in rows:
        who = f"key={r.key_id}" if r.key_id is not None else ("key=bootstrap" if r.key_hash else "key=-")
        line = [r.created_at.isoformat(timespec="seconds"), who, str(r.status), r.method, r.route, r.collection or "-"]
        out.print("  ".join(line + ([repr(r.query)] if r.query is not None else [])), highlight=False, markup=False)


# data keys (encryption at rest) ------------------------------------------------------------------


@keys_app.command("init-data-key")
def keys_init_data_key(
    path: Annotated[Path, typer.Argument(help="where to create the key file (mode 0600); never overwritten")],
) -> None:
    """Create a data key file for RAG_ENCRYPTION__KEY_FILE (AES-256-GCM encryption at rest)."""
    from cli.main import console, out
    from rag.security.crypto import create_key_file

    key_id = create_key_file(path)
    out.print(f"created data key {key_id} in {path}", highlight=False, markup=False)
    console.print(f"set RAG_ENCRYPTION__KEY_FILE={path} and keep a copy of it: without it the data cannot be read", highlight=False, markup=False)


@keys_app.command("rotate-data-key")
def keys_rotate_data_key(
    keep_old: Annotated[bool, typer.Option("--keep-old", help="keep the old keys in the file (they decrypt, no longer encrypt)")] = False,
    config: ConfigOpt = None,
) -> None:
    """Re-encrypt the database values and FAISS files under a new data key, then retire the old one."""
    from cli.main import _settings, console, out
    from rag.security.rotation import rotate_data_key

    report = rotate_data_key(_settings(config), keep_old=keep_old, log=lambda line: console.print(line, highlight=False, markup=False))
    retired = f"; retired {', '.join(report.retired)}" if report.retired else ""
    out.print(f"data key is now {report.key_id}{retired}; restart running servers", highlight=False, markup=False)
