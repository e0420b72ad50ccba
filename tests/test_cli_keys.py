"""``rag keys create | list | revoke``: the key is printed once, never listed, and bad options are one clear line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag.index.store import Store


def test_create_prints_the_key_once_and_list_never_shows_it(rag, tmp_path: Path) -> None:  # noqa: ANN001
    code, out, err = rag("keys", "create", "--collections", "a,b", "--scope", "write", "--expires", "30d", "--rate", "20/s", "--name", "ci")
    assert code == 0, err
    key = out.strip()
    assert key.startswith("rag_") and len(out.splitlines()) == 1
    assert "shown only once" in err and "scope=write collections=a,b" in err and "rate=20/s" in err
    code, out, err = rag("keys", "list")
    assert code == 0 and key not in out + err
    (line,) = out.splitlines()
    fields = line.split(maxsplit=7)
    assert fields[:4] == ["1", key[:12] + "…", "write", "a,b"]
    assert fields[4].startswith("expires=2") and fields[5:] == ["rate=20/s", "active", "ci"]
    code, out, _ = rag("keys", "list", "--json")
    (listed,) = json.loads(out)
    assert listed["prefix"] == key[:12] and key not in out and "key_hash" not in listed
    assert rag("keys", "revoke", "1") == (0, f"revoked key 1 ({key[:12]}…)\n", "")
    assert json.loads(rag("keys", "list", "--json")[1])[0]["state"] == "revoked"
    store = Store(f"sqlite:///{tmp_path / 'data' / 'rag.db'}")
    assert key not in (tmp_path / "data" / "rag.db").read_bytes().decode("latin-1")
    store.close()


def test_create_json_gives_the_key_with_its_record(rag) -> None:  # noqa: ANN001
    code, out, _ = rag("keys", "create", "--collections", "*", "--scope", "admin", "--json")
    assert code == 0
    made = json.loads(out)
    assert made["key"].startswith("rag_") and made["scope"] == "admin" and made["collections"] == ["*"]
    assert made["expires_at"] is None and made["rate"] is None and made["state"] == "active"


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--scope", "root"], "--scope: unknown scope 'root'; valid: read | write | admin"),
        (["--expires", "3x"], "--expires: '3x' is not a lifetime"),
        (["--rate", "fast"], "--rate: 'fast' is not a rate"),
    ],
)
def test_bad_options_are_one_line_naming_the_option(rag, args: list[str], said: str) -> None:  # noqa: ANN001
    code, out, err = rag("keys", "create", "--collections", "a", *args)
    assert code == 2 and out == ""
    assert said in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert rag("keys", "list") == (0, "", "")  # nothing was made


def test_revoking_an_unknown_id_says_so(rag) -> None:  # noqa: ANN001
    code, out, err = rag("keys", "revoke", "42")
    assert code == 1 and "no API key with id 42" in err and "Traceback" not in err


def test_audit_shows_the_newest_rows(rag, tmp_path: Path) -> None:  # noqa: ANN001
    from rag.security.audit import AuditEntry, AuditLog

    assert rag("keys", "create", "--collections", "a")[0] == 0
    store = Store(f"sqlite:///{tmp_path / 'data' / 'rag.db'}")
    audit = AuditLog(store)
    audit.record(AuditEntry(1, "", "POST", "/v1/search", "a", 200))
    audit.record(AuditEntry(None, "", "GET", "/v1/collections", None, 401))
    audit.flush()
    store.close()
    code, out, _ = rag("keys", "audit", "-n", "5")
    assert code == 0
    assert [line.split()[1:] for line in out.splitlines()] == [
        ["key=-", "401", "GET", "/v1/collections", "-"],
        ["key=1", "200", "POST", "/v1/search", "a"],
    ]
    assert json.loads(rag("keys", "audit", "--json")[1])[1]["route"] == "/v1/search"


def test_audit_prune_deletes_only_rows_older_than_the_age_given(rag, tmp_path: Path) -> None:  # noqa: ANN001
    from datetime import timedelta

    from rag.index.store import utcnow
    from rag.security.audit import AuditEntry, AuditLog

    store = Store(f"sqlite:///{tmp_path / 'data' / 'rag.db'}")
    log = AuditLog(store)
    log.record(AuditEntry(None, "", "POST", "/v1/search", "a", 200, created_at=utcnow() - timedelta(days=100)))
    log.record(AuditEntry(None, "", "POST", "/v1/ask", "a", 200))
    assert log.flush() == 2
    code, _, err = rag("keys", "audit", "--prune", "3x")
    assert code == 2 and "--prune" in err and "Traceback" not in err
    code, out, err = rag("keys", "audit", "--prune", "90d")
    assert code == 0, err
    assert "deleted 1 audit rows older than 90d" in out
    assert [r.route for r in log.rows()] == ["/v1/ask"]
    store.close()
