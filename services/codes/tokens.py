"""Tokens: what a code's QR carries, how it is signed and checked, and how it is found again.

- Person code (人码): ``P`` + base64url(version | 9-byte nonce | expiry | HMAC-SHA256/128). The
  HMAC key is derived from the JWT secret with HKDF under its own info string, so a person
  token can't be confused with any other signature in the system. The token carries no person
  id: it is shown on a screen and photographed, and an opaque nonce leaks nothing. Signature
  and expiry are checked without Redis; *what the token stands for* lives only in Redis
  (``code:p:<nonce>``, TTL = the code's life).
- Enterprise and door-plate codes: ``L`` + 120 random bits, stored as a SHA-256 hash (lookup)
  plus an encrypted copy (re-printing the same plate without voiding it).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import struct
import time as _time
from functools import lru_cache

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from models.codes import IssuedCode
from services import pii
from services.errors import AppError, ErrorCode
from services.settings import get_settings

PERSON_PREFIX = "P"
LONG_PREFIX = "L"
_VERSION = 1
_PAYLOAD = struct.Struct(">B9sI")  # version, nonce, expiry (unix seconds)
_MAC_LEN = 16
_TOKEN_CHARS = re.compile(r"^[A-Za-z0-9_-]+$")
P_TOKEN = "code.token"  # noqa: S105 - a PII purpose label, not a secret


@lru_cache(maxsize=4)
def _person_mac_for(secret: str) -> hmac.HMAC:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
               info=b"xq/codes/person-code/v1").derive(secret.encode())
    return hmac.new(key, digestmod=hashlib.sha256)


def _person_mac(payload: bytes) -> bytes:
    # A copy of a keyed HMAC skips the key schedule (and OpenSSL 3's algorithm lookup) that
    # a fresh one pays on every scan.
    mac = _person_mac_for(get_settings().jwt_secret).copy()
    mac.update(payload)
    return mac.digest()[:_MAC_LEN]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_person_token(nonce: bytes, expires: int) -> str:
    payload = _PAYLOAD.pack(_VERSION, nonce, expires)
    mac = _person_mac(payload)
    return PERSON_PREFIX + _b64(payload + mac)


def verify_person_token(token: str, *, now: float | None = None) -> tuple[str, int]:
    """(nonce hex, expiry) of a genuine, unexpired person token; ``code_unrecognised`` for a
    forged or edited one, ``code_expired`` once its minute is over."""
    try:
        raw = _unb64(token[len(PERSON_PREFIX):])
    except ValueError as exc:
        raise AppError(ErrorCode.code_unrecognised) from exc
    if len(raw) != _PAYLOAD.size + _MAC_LEN:
        raise AppError(ErrorCode.code_unrecognised)
    payload, mac = raw[:_PAYLOAD.size], raw[_PAYLOAD.size:]
    expected = _person_mac(payload)
    if not hmac.compare_digest(mac, expected):
        raise AppError(ErrorCode.code_unrecognised)
    version, nonce, expires = _PAYLOAD.unpack(payload)
    if version != _VERSION:
        raise AppError(ErrorCode.code_unrecognised)
    if expires <= (now if now is not None else _time.time()):
        raise AppError(ErrorCode.code_expired)
    return nonce.hex(), expires


def new_long_token() -> str:
    return LONG_PREFIX + secrets.token_urlsafe(15)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def seal(token: str) -> str:
    """The stored copy of a long-lived token (AES-GCM, its own purpose)."""
    return pii.encrypt(token, purpose=P_TOKEN)


def stored_token(code: IssuedCode) -> str:
    return pii.decrypt(code.token_enc, purpose=P_TOKEN)


def code_url(token: str) -> str:
    # A URL on our own domain: WeChat's "扫普通链接二维码打开小程序" rule routes it into the mini
    # program, and a phone camera outside WeChat lands on our page instead of a bare string.
    return f"{get_settings().public_base_url.rstrip('/')}/c/{token}"


def extract_token(content: str) -> str:
    """The token in what the camera read: our code URL, or the bare token (a mini-program
    code's scene). Anything else — another domain's QR, free text — is not ours."""
    text = content.strip()
    prefix = f"{get_settings().public_base_url.rstrip('/')}/c/"
    if text.startswith(prefix):
        text = text[len(prefix):].split("?", 1)[0].split("#", 1)[0].rstrip("/")
    if not (21 <= len(text) <= 64) or not _TOKEN_CHARS.match(text) or text[0] not in "PL":
        raise AppError(ErrorCode.code_unrecognised)
    return text
