"""Encryption at rest: AES-256-GCM with a keyring whose key ids make rotation possible.

A keyring file (``RAG_ENCRYPTION__KEY_FILE``) holds one key a line, ``key_id:base64(32 bytes)``;
``#`` starts a comment. The first key is the current one and encrypts; every listed key decrypts,
so a rotation can add a new key first, re-encrypt, then drop the old one
(:mod:`rag.security.rotation`). The file must be readable by the service only (mode 0600).

An encrypted value is ``MAGIC | len(key_id) | key_id | nonce (12) | AES-GCM ciphertext+tag``.
The header and a caller-given context (the table and column, or the file kind) are the
associated data, so a ciphertext moved to another field or another key id fails to decrypt.
Text columns hold ``enc1:`` + base64 of that, so the schema does not change.

The data directory records that it is encrypted in ``encryption.json``: a key check value (a
known token encrypted with the key of the time). :func:`open_cipher` decrypts it at start-up,
so a wrong key, a missing key file or a switch between encrypted and plain data stops the
process with a message naming the setting.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.errors import ConfigError

if TYPE_CHECKING:
    from rag.config import Settings

SETTING = "RAG_ENCRYPTION__KEY_FILE"
MAGIC = b"RGE\x01"
TEXT_PREFIX = "enc1:"
NONCE_BYTES = 12
KEY_BYTES = 32
MARKER_NAME = "encryption.json"
_CHECK_TOKEN = b"rag encryption key check v1"
_CHECK_AAD = b"marker.check"
_KEY_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class DecryptionError(ConfigError):
    """A value cannot be decrypted with the configured keys (wrong key, unknown key id or tampering)."""

    def __init__(self, message: str) -> None:
        super().__init__(SETTING, message)


def new_key_id() -> str:
    """A fresh key id: ``k`` and 12 random hex digits."""
    return "k" + secrets.token_hex(6)


def parse_keyring(text: str, source: str = SETTING) -> list[tuple[str, bytes]]:
    """The (key id, key) pairs of a keyring file's text, current key first.

    Raises:
        ConfigError: naming ``RAG_ENCRYPTION__KEY_FILE`` for a malformed line, a key that is not 32
            bytes, a repeated key id or an empty file.
    """
    keys: list[tuple[str, bytes]] = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        key_id, sep, b64 = line.partition(":")
        key_id = key_id.strip()
        if not sep or not _KEY_ID.fullmatch(key_id):
            raise ConfigError(SETTING, f"{source} line {n}: expected 'key_id:base64-key' (key id: letters, digits, _ . -)")
        try:
            key = base64.b64decode(b64.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(SETTING, f"{source} line {n}: the key is not valid base64") from None
        if len(key) != KEY_BYTES:
            raise ConfigError(SETTING, f"{source} line {n}: the key is {len(key)} bytes; AES-256 needs {KEY_BYTES}")
        if any(k == key_id for k, _ in keys):
            raise ConfigError(SETTING, f"{source} line {n}: key id {key_id!r} appears twice")
        keys.append((key_id, key))
    if not keys:
        raise ConfigError(SETTING, f"{source} holds no key")
    return keys


def format_keyring(keys: list[tuple[str, bytes]]) -> str:
    """A keyring file's text for ``keys``, the first being the current key."""
    lines = ["# rag data keys: key_id:base64(32 bytes); the first encrypts, all decrypt. Keep this file 0600."]
    lines += [f"{key_id}:{base64.b64encode(key).decode()}" for key_id, key in keys]
    return "\n".join(lines) + "\n"


def write_keyring(path: Path, keys: list[tuple[str, bytes]]) -> None:
    """Write a keyring file atomically with mode 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(format_keyring(keys))
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def create_key_file(path: Path) -> str:
    """Create a keyring file holding one new random key; returns its key id.

    Raises:
        ConfigError: the file already exists (it is never overwritten).
    """
    path = Path(path)
    if path.exists():
        raise ConfigError(SETTING, f"{path} already exists; `rag keys rotate-data-key` replaces the key in it")
    key_id = new_key_id()
    write_keyring(path, [(key_id, secrets.token_bytes(KEY_BYTES))])
    return key_id


def read_keyring(path: Path) -> list[tuple[str, bytes]]:
    """The keys of a keyring file, current first.

    Raises:
        ConfigError: naming ``RAG_ENCRYPTION__KEY_FILE`` when the file is missing, unreadable,
            readable by others, or malformed.
    """
    path = Path(path)
    try:
        st = path.stat()
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(SETTING, f"key file {path} does not exist; create one with `rag keys init-data-key {path}`") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(SETTING, f"cannot read key file {path}: {exc}") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(SETTING, f"key file {path} is readable by other users (mode {st.st_mode & 0o777:o}); chmod 600 it")
    return parse_keyring(text, str(path))


@dataclass(frozen=True)
class DataCipher:
    """AES-256-GCM with a keyring: the current key encrypts, every key decrypts.

    Example:
        >>> cipher = DataCipher((("k1", bytes(32)),))
        >>> blob = cipher.encrypt(b"secret", b"chunks.text")
        >>> cipher.decrypt(blob, b"chunks.text")
        b'secret'
        >>> cipher.decrypt_text(cipher.encrypt_text("hi", b"documents.title"), b"documents.title")
        'hi'
    """

    keys: tuple[tuple[str, bytes], ...]

    def __post_init__(self) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if not self.keys:
            raise ConfigError(SETTING, "the keyring holds no key")
        object.__setattr__(self, "_aead", {k: AESGCM(v) for k, v in self.keys})

    @classmethod
    def from_file(cls, path: Path) -> DataCipher:
        """The cipher of a keyring file (see :func:`read_keyring` for the errors)."""
        return cls(tuple(read_keyring(path)))

    @property
    def current_key_id(self) -> str:
        """The id of the key that encrypts."""
        return self.keys[0][0]

    @property
    def key_ids(self) -> tuple[str, ...]:
        """Every key id that decrypts."""
        return tuple(k for k, _ in self.keys)

    # bytes ---------------------------------------------------------------------------------

    def encrypt(self, data: bytes, aad: bytes) -> bytes:
        """Encrypt ``data`` with the current key, bound to the context ``aad``."""
        key_id = self.current_key_id.encode()
        header = MAGIC + bytes([len(key_id)]) + key_id + secrets.token_bytes(NONCE_BYTES)
        return header + self._aead[self.current_key_id].encrypt(header[-NONCE_BYTES:], bytes(data), header + b"|" + aad)  # type: ignore[attr-defined]

    def decrypt(self, blob: bytes, aad: bytes) -> bytes:
        """Decrypt what :meth:`encrypt` made with the same context.

        Raises:
            DecryptionError: not an encrypted value, a key id not in the keyring, a wrong key,
                another context or tampered bytes.
        """
        from cryptography.exceptions import InvalidTag

        blob = bytes(blob)
        key_id, header = self._header(blob)
        aead = self._aead.get(key_id)  # type: ignore[attr-defined]
        if aead is None:
            raise DecryptionError(f"data was encrypted with key {key_id!r}, which the key file does not hold")
        try:
            return aead.decrypt(header[-NONCE_BYTES:], blob[len(header) :], header + b"|" + aad)
        except InvalidTag:
            raise DecryptionError(
                f"a {aad.decode(errors='replace')} value does not decrypt with key {key_id!r}: wrong key or damaged data"
            ) from None

    @staticmethod
    def _header(blob: bytes) -> tuple[str, bytes]:
        if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + 1:
            raise DecryptionError("a value is not encrypted; it was written while encryption was off")
        n = blob[len(MAGIC)]
        end = len(MAGIC) + 1 + n + NONCE_BYTES
        if len(blob) < end + 16:
            raise DecryptionError("an encrypted value is truncated")
        return blob[len(MAGIC) + 1 : len(MAGIC) + 1 + n].decode("ascii", "replace"), blob[:end]

    @staticmethod
    def key_id_of(blob: bytes) -> str | None:
        """The key id an encrypted value names, or None when it is not one."""
        blob = bytes(blob)
        if not blob.startswith(MAGIC) or len(blob) <= len(MAGIC):
            return None
        n = blob[len(MAGIC)]
        return blob[len(MAGIC) + 1 : len(MAGIC) + 1 + n].decode("ascii", "replace")

    # text and JSON ---------------------------------------------------------------------------

    def encrypt_text(self, text: str, aad: bytes) -> str:
        """``enc1:`` + base64 of the encrypted UTF-8 text, for a Text column."""
        return TEXT_PREFIX + base64.b64encode(self.encrypt(text.encode("utf-8", "surrogatepass"), aad)).decode("ascii")

    def decrypt_text(self, value: str, aad: bytes) -> str:
        """The text :meth:`encrypt_text` encrypted (raises :class:`DecryptionError`)."""
        return self.decrypt(self._unwrap(value), aad).decode("utf-8", "surrogatepass")

    def encrypt_json(self, obj: Any, aad: bytes) -> dict[str, str]:
        """``{"_enc": encrypted JSON text}``, for a JSON column."""
        return {"_enc": self.encrypt_text(json.dumps(obj, default=str), aad)}

    def decrypt_json(self, value: Any, aad: bytes) -> Any:
        """The object :meth:`encrypt_json` encrypted (raises :class:`DecryptionError`)."""
        if not isinstance(value, dict) or set(value) != {"_enc"}:
            raise DecryptionError("a JSON value is not encrypted; it was written while encryption was off")
        return json.loads(self.decrypt_text(value["_enc"], aad))

    @staticmethod
    def _unwrap(value: str) -> bytes:
        if not isinstance(value, str) or not value.startswith(TEXT_PREFIX):
            raise DecryptionError("a text value is not encrypted; it was written while encryption was off")
        try:
            return base64.b64decode(value[len(TEXT_PREFIX) :], validate=True)
        except (binascii.Error, ValueError):
            raise DecryptionError("an encrypted text value is not valid base64") from None

    @staticmethod
    def text_key_id(value: Any) -> str | None:
        """The key id of an ``enc1:`` text or ``{"_enc": ...}`` JSON value, or None."""
        if isinstance(value, dict) and set(value) == {"_enc"}:
            value = value["_enc"]
        if not isinstance(value, str) or not value.startswith(TEXT_PREFIX):
            return None
        try:
            head = base64.b64decode(value[len(TEXT_PREFIX) :], validate=True)
        except (binascii.Error, ValueError):
            return None
        return DataCipher.key_id_of(head)


# the data directory's marker and the start-up check ------------------------------------------


def marker_path(data_dir: Path) -> Path:
    """Where a data directory records that it is encrypted."""
    return Path(data_dir) / MARKER_NAME


def write_marker(data_dir: Path, cipher: DataCipher) -> None:
    """Record that ``data_dir`` is encrypted, with a key check value under the current key."""
    from rag.fileio import atomic_write_text

    Path(data_dir).mkdir(parents=True, exist_ok=True)
    body = {
        "format": 1,
        "algorithm": "AES-256-GCM",
        "key_id": cipher.current_key_id,
        "check": base64.b64encode(cipher.encrypt(_CHECK_TOKEN, _CHECK_AAD)).decode(),
    }
    atomic_write_text(marker_path(data_dir), json.dumps(body, indent=2))


def check_marker(data_dir: Path, cipher: DataCipher) -> bool:
    """Whether the marker exists; raises when its check value does not decrypt with ``cipher``.

    Raises:
        ConfigError: naming ``RAG_ENCRYPTION__KEY_FILE``: wrong key, or an unreadable marker.
    """
    path = marker_path(data_dir)
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
        blob = base64.b64decode(body["check"], validate=True)
    except FileNotFoundError:
        return False
    except (OSError, ValueError, KeyError, TypeError, binascii.Error):
        raise ConfigError(SETTING, f"{path} is damaged; cannot tell which key encrypted {data_dir}") from None
    try:
        ok = cipher.decrypt(blob, _CHECK_AAD) == _CHECK_TOKEN
    except DecryptionError:
        ok = False
    if not ok:
        raise ConfigError(
            SETTING,
            f"wrong key: {data_dir} was encrypted with key {body.get('key_id')!r}, which the key file "
            f"does not hold (it holds {', '.join(cipher.key_ids)})",
        )
    return True


def _holds_plain_indexes(data_dir: Path) -> bool:
    return any(Path(data_dir).glob("collections/*/dense/dense.manifest.json"))


_CACHE: dict[tuple[str, str], tuple[tuple[int, int], DataCipher]] = {}


def open_cipher(settings: Settings) -> DataCipher | None:
    """The data cipher of these settings, after the start-up checks; None when encryption is off.

    With ``RAG_ENCRYPTION__KEY_FILE`` set, the key file must parse and the data directory's
    key check value must decrypt with it; a data directory that already holds indexes written
    without encryption is refused. A new data directory gets its marker. Without the setting, a
    data directory marked as encrypted is refused. The cipher is cached per key file and
    data directory until the key file changes.

    Raises:
        ConfigError: naming ``RAG_ENCRYPTION__KEY_FILE``.
    """
    key_file = settings.encryption.key_file
    data_dir = Path(settings.data_dir)
    if key_file is None:
        if marker_path(data_dir).exists():
            raise ConfigError(
                SETTING, f"{data_dir} holds encrypted data ({MARKER_NAME}); set the key file it was written with"
            )
        return None
    key_file = Path(key_file).expanduser()
    cache_key = (str(key_file.resolve()), str(data_dir.resolve()))
    try:
        st = key_file.stat()
        version = (st.st_mtime_ns, st.st_size)
    except OSError:
        version = (-1, -1)
    hit = _CACHE.get(cache_key)
    if hit is not None and hit[0] == version and marker_path(data_dir).exists():
        return hit[1]
    cipher = DataCipher.from_file(key_file)
    if not check_marker(data_dir, cipher):
        if _holds_plain_indexes(data_dir):
            raise ConfigError(
                SETTING,
                f"{data_dir} holds indexes written without encryption; ingest into a new data directory "
                "(RAG_DATA_DIR) with the key set, or unset the key file",
            )
        write_marker(data_dir, cipher)
    _CACHE[cache_key] = (version, cipher)
    return cipher


EXPORT_AAD = b"export.v1"
"""Associated data of a sealed export file: an export cannot pass for a database value or a FAISS file."""


def write_export(path: Path, text: str, cipher: DataCipher | None) -> Path:
    """Write an export (mined hard negatives, per-question answers): plain without a cipher, sealed whole with one.

    A sealed file is one AES-GCM value (:meth:`DataCipher.encrypt`), so it holds no text in the clear;
    :func:`read_export` opens it with the same key file.
    """
    data = text.encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cipher.encrypt(data, EXPORT_AAD) if cipher is not None else data)
    return path


def read_export(path: Path, cipher: DataCipher | None) -> str:
    """The text of a file written by :func:`write_export`.

    Raises:
        ConfigError: naming ``RAG_ENCRYPTION__KEY_FILE`` when the file is sealed and no key, or the wrong one, is set.
    """
    data = path.read_bytes()
    if not data.startswith(MAGIC):
        return data.decode("utf-8")
    if cipher is None:
        raise ConfigError(SETTING, f"{path} is encrypted; set the key file it was written with")
    return cipher.decrypt(data, EXPORT_AAD).decode("utf-8")
