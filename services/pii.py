"""Personal data at rest: authenticated encryption plus a keyed hash for equality lookups.

One master key (``XQ_DATA_KEY``) is split with HKDF into an encryption key and a lookup key,
so the blind index can't be used to decrypt and the ciphertext can't be matched across
databases without the key. Ciphertexts carry a version prefix so keys can be rotated.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from functools import lru_cache

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from services.settings import get_settings

_VERSION = "v1"


class _Keys:
    def __init__(self, master: bytes) -> None:
        self.enc = _derive(master, b"xq/pii/encrypt")
        self.index = _derive(master, b"xq/pii/blind-index")
        self.aead = AESGCM(self.enc)


def _derive(master: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(master)


@lru_cache(maxsize=4)
def _keys_for(master: bytes) -> _Keys:
    return _Keys(master)


def _keys() -> _Keys:
    return _keys_for(get_settings().data_key_bytes())


def encrypt(plaintext: str, *, purpose: str) -> str:
    """Encrypt ``plaintext``; ``purpose`` is bound as associated data so an encrypted phone
    can't be swapped into an ID-number column and decrypt there."""
    nonce = os.urandom(12)
    ct = _keys().aead.encrypt(nonce, plaintext.encode(), purpose.encode())
    return f"{_VERSION}:{base64.urlsafe_b64encode(nonce + ct).decode()}"


def decrypt(token: str, *, purpose: str) -> str:
    version, _, payload = token.partition(":")
    if version != _VERSION:
        raise ValueError(f"unknown ciphertext version {version!r}")
    raw = base64.urlsafe_b64decode(payload.encode())
    return _keys().aead.decrypt(raw[:12], raw[12:], purpose.encode()).decode()


def blind_index(value: str, *, purpose: str) -> str:
    """Keyed hash for ``WHERE x_hash = ?`` lookups without storing the value in clear."""
    msg = f"{purpose}\x00{value}".encode()
    return hmac.new(_keys().index, msg, hashlib.sha256).hexdigest()
