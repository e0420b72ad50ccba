"""The data cipher: round trips, wrong keys, swapped contexts, keyring files and the start-up check."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import numpy as np
import pytest

from rag.config import load_settings
from rag.errors import ConfigError
from rag.security.crypto import (
    SETTING,
    DataCipher,
    DecryptionError,
    create_key_file,
    open_cipher,
    parse_keyring,
    read_keyring,
)


def _cipher(*ids: str) -> DataCipher:
    return DataCipher(tuple((i, os.urandom(32)) for i in ids))


@pytest.mark.parametrize("data", [b"", b"x", "zqplanted ünïcode".encode(), os.urandom(100_000)])
def test_round_trip(data: bytes) -> None:
    cipher = _cipher("k1")
    blob = cipher.encrypt(data, b"chunks.text")
    assert cipher.decrypt(blob, b"chunks.text") == data
    assert DataCipher.key_id_of(blob) == "k1"
    if len(data) > 4:
        assert data not in blob


def test_each_encryption_uses_a_fresh_nonce() -> None:
    cipher = _cipher("k1")
    assert cipher.encrypt(b"same", b"a") != cipher.encrypt(b"same", b"a")


def test_text_and_json_round_trip() -> None:
    cipher = _cipher("k1")
    sealed = cipher.encrypt_text("Käse zqplanted", b"documents.title")
    assert sealed.startswith("enc1:") and "zqplanted" not in sealed
    assert cipher.decrypt_text(sealed, b"documents.title") == "Käse zqplanted"
    assert DataCipher.text_key_id(sealed) == "k1"
    meta = {"owner": "zq-secret-owner", "n": 3, "tags": ["a"]}
    sealed_json = cipher.encrypt_json(meta, b"documents.metadata")
    assert set(sealed_json) == {"_enc"} and "zq-secret-owner" not in str(sealed_json)
    assert cipher.decrypt_json(sealed_json, b"documents.metadata") == meta
    assert DataCipher.text_key_id(sealed_json) == "k1"


def test_wrong_key_fails() -> None:
    blob = _cipher("k1").encrypt(b"secret", b"chunks.text")
    with pytest.raises(DecryptionError, match="wrong key") as info:
        _cipher("k1").decrypt(blob, b"chunks.text")  # same id, other key bytes
    assert info.value.setting == SETTING
    with pytest.raises(DecryptionError, match="does not hold"):
        _cipher("k2").decrypt(blob, b"chunks.text")


def test_context_mismatch_fails() -> None:
    cipher = _cipher("k1")
    blob = cipher.encrypt(b"secret", b"chunks.text")
    with pytest.raises(DecryptionError):
        cipher.decrypt(blob, b"documents.title")


@pytest.mark.parametrize("where", [0, 5, 20, -1])
def test_tampering_fails(where: int) -> None:
    cipher = _cipher("k1")
    blob = bytearray(cipher.encrypt(b"secret payload", b"x"))
    blob[where] ^= 0x01
    with pytest.raises(DecryptionError):
        cipher.decrypt(bytes(blob), b"x")


def test_plaintext_is_refused() -> None:
    cipher = _cipher("k1")
    with pytest.raises(DecryptionError, match="not encrypted"):
        cipher.decrypt_text("plain words", b"chunks.text")
    with pytest.raises(DecryptionError, match="not encrypted"):
        cipher.decrypt_json({"owner": "x"}, b"documents.metadata")


def test_every_key_decrypts_the_first_encrypts() -> None:
    old = _cipher("old")
    blob = old.encrypt(b"v", b"x")
    both = DataCipher((("new", os.urandom(32)), *old.keys))
    assert both.current_key_id == "new"
    assert both.decrypt(blob, b"x") == b"v"
    assert DataCipher.key_id_of(both.encrypt(b"v", b"x")) == "new"


def test_key_file_is_created_0600_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "data.key"
    key_id = create_key_file(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert [k for k, _ in read_keyring(path)] == [key_id]
    with pytest.raises(ConfigError, match="already exists"):
        create_key_file(path)


@pytest.mark.parametrize(
    "text, match",
    [
        ("", "no key"),
        ("# only a comment\n", "no key"),
        ("k1 " + base64.b64encode(bytes(32)).decode(), "expected"),
        ("k1:not base64!", "base64"),
        ("k1:" + base64.b64encode(bytes(16)).decode(), "16 bytes"),
        ("k1:{0}\nk1:{0}".format(base64.b64encode(bytes(32)).decode()), "twice"),
    ],
)
def test_bad_keyring_names_the_setting(text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        parse_keyring(text)
    assert info.value.setting == SETTING


def test_missing_or_open_key_file_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist") as info:
        read_keyring(tmp_path / "absent.key")
    assert str(info.value).startswith(SETTING)
    path = tmp_path / "open.key"
    create_key_file(path)
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        read_keyring(path)


def test_start_up_check(tmp_path: Path) -> None:
    data = tmp_path / "data"
    key, other = tmp_path / "a.key", tmp_path / "b.key"
    create_key_file(key)
    create_key_file(other)
    on = load_settings(data_dir=data, encryption={"key_file": key})
    assert open_cipher(on) is not None
    assert (data / "encryption.json").is_file()
    assert open_cipher(on) is open_cipher(on)  # cached while the key file is unchanged
    with pytest.raises(ConfigError, match="wrong key") as info:
        open_cipher(load_settings(data_dir=data, encryption={"key_file": other}))
    assert str(info.value).startswith(SETTING)
    with pytest.raises(ConfigError, match="holds encrypted data") as info:
        open_cipher(load_settings(data_dir=data))
    assert str(info.value).startswith(SETTING)


def test_start_up_refuses_plain_indexes(tmp_path: Path) -> None:
    from rag.config import DenseConfig
    from rag.index.dense import DenseIndex

    data = tmp_path / "data"
    plain = DenseIndex.open(data / "collections" / "c" / "dense", DenseConfig(), "m", 2)
    plain.add(np.array([1]), np.array([[1.0, 0.0]], np.float32))
    plain.save()
    assert open_cipher(load_settings(data_dir=data)) is None
    key = tmp_path / "a.key"
    create_key_file(key)
    with pytest.raises(ConfigError, match="without encryption"):
        open_cipher(load_settings(data_dir=data, encryption={"key_file": key}))


def test_encrypted_dense_file_needs_the_key(tmp_path: Path) -> None:
    import faiss

    from rag.config import DenseConfig
    from rag.index.dense import DenseIndex, reencrypt_files

    cipher = _cipher("k1")
    directory = tmp_path / "dense"
    vectors = np.eye(4, dtype=np.float32)
    index = DenseIndex.open(directory, DenseConfig(), "m", 4, cipher=cipher)
    index.add(np.arange(10, 14), vectors)
    index.save()
    (path,) = directory.glob("dense.*.faiss")
    with pytest.raises(RuntimeError):
        faiss.read_index(str(path))
    with pytest.raises(ConfigError, match="encrypted; set the key file"):
        DenseIndex.open(directory, DenseConfig(), "m", 4)
    with pytest.raises(DecryptionError):
        DenseIndex.open(directory, DenseConfig(), "m", 4, cipher=_cipher("k1"))
    again = DenseIndex.open(directory, DenseConfig(), "m", 4, cipher=cipher)
    assert [h.chunk_id for h in again.search(vectors[2], k=1)] == [12]

    rotated = DataCipher((("k2", os.urandom(32)), *cipher.keys))
    assert reencrypt_files(directory, rotated) == 1
    assert reencrypt_files(directory, rotated) == 0
    new_only = DataCipher((rotated.keys[0],))
    assert [h.chunk_id for h in DenseIndex.open(directory, DenseConfig(), "m", 4, cipher=new_only).search(vectors[1], k=1)] == [11]
    with pytest.raises(DecryptionError):
        DenseIndex.open(directory, DenseConfig(), "m", 4, cipher=cipher)
