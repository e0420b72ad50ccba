"""``rag keys rotate-data-key``: re-encrypt a data directory and its database under a new key.

The order keeps every step recoverable: the new key is written first in the key file, ahead of
the old ones (so every value stays readable whatever is interrupted), then every encrypted
database value and FAISS file is rewritten under it, then the data directory's key check value,
and only then are the old keys dropped from the file. Run it again after an interruption: values
already under the current key are skipped. Collections are locked for writing meanwhile; stop or
restart a running server afterwards, since it holds the old keyring in memory.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from rag.config import Settings
from rag.errors import ConfigError
from rag.security.crypto import (
    KEY_BYTES,
    SETTING,
    DataCipher,
    new_key_id,
    open_cipher,
    read_keyring,
    write_keyring,
    write_marker,
)


@dataclass(frozen=True)
class RotationReport:
    """What a rotation did.

    Attributes:
        key_id: the new current key.
        retired: the key ids removed from the key file (empty with ``keep_old``).
        rows: database rows rewritten, per table.
        files: FAISS files rewritten.
    """

    key_id: str
    retired: tuple[str, ...]
    rows: dict[str, int] = field(default_factory=dict)
    files: int = 0


def rotate_data_key(settings: Settings, *, keep_old: bool = False, log: Callable[[str], None] = print) -> RotationReport:
    """Add a new current key, re-encrypt everything under it, then retire the old keys.

    Args:
        settings: with ``RAG_ENCRYPTION__KEY_FILE`` set.
        keep_old: leave the old keys in the file (they still decrypt, no longer encrypt).
        log: where progress lines go.

    Returns:
        The report.

    Raises:
        ConfigError: naming ``RAG_ENCRYPTION__KEY_FILE``: not set, or the data directory's key
            check value does not decrypt with it.
        CollectionBusyError: an ingestion holds a collection's writer lock.
    """
    from rag.index.collection import CollectionBusyError, WriterLock
    from rag.index.dense import reencrypt_files
    from rag.index.store import Store

    key_file = settings.encryption.key_file
    if key_file is None:
        raise ConfigError(SETTING, "is not set: there is no data key to rotate")
    key_file = Path(key_file).expanduser()
    open_cipher(settings)  # the start-up check: the file holds the key the data was written with
    old = read_keyring(key_file)
    new = (new_key_id(), secrets.token_bytes(KEY_BYTES))
    collections = sorted(p for p in (Path(settings.data_dir) / "collections").glob("*") if p.is_dir())
    with ExitStack() as stack:
        for directory in collections:
            lock = WriterLock(directory)
            if not lock.acquire(blocking=False):
                raise CollectionBusyError(f"collection {directory.name!r} is being written; rotate when it is done")
            stack.callback(lock.release)
        write_keyring(key_file, [new, *old])
        cipher = DataCipher((new, *old))
        log(f"new data key {new[0]}; re-encrypting what {', '.join(k for k, _ in old)} encrypted")
        store = Store(settings.sqlalchemy_url, cipher=cipher)
        try:
            rows = store.reencrypt()
        finally:
            store.close()
        log("database: " + ", ".join(f"{n} {table}" for table, n in rows.items()) + " rows re-encrypted")
        files = sum(reencrypt_files(directory / "dense", cipher) for directory in collections)
        log(f"FAISS: {files} files re-encrypted")
        write_marker(Path(settings.data_dir), cipher)
        retired: tuple[str, ...] = ()
        if not keep_old:
            write_keyring(key_file, [new])
            retired = tuple(k for k, _ in old)
    return RotationReport(key_id=new[0], retired=retired, rows=rows, files=files)
