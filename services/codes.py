"""一码通: person, enterprise and door-plate codes, and the scan that resolves them.

Tokens
- Person code (人码): ``P`` + base64url(version | 9-byte nonce | expiry | HMAC-SHA256/128). The
  HMAC key is derived from the JWT secret with HKDF under its own info string, so a person
  token can't be confused with any other signature in the system. The token carries no person
  id: it is shown on a screen and photographed, and an opaque nonce leaks nothing. Signature
  and expiry are checked without Redis; *what the token stands for* lives only in Redis
  (``code:p:<nonce>``, TTL = the code's life), so a Redis restart turns every person code into
  "请刷新二维码" — the app fetches a new one within a minute anyway.
- Enterprise and door-plate codes: ``L`` + 120 random bits, stored as a SHA-256 hash (plus an
  encrypted copy for re-printing) and cached in Redis with the public view they show, so the
  scan is one Redis GET; a Redis miss falls back to the database and re-fills the cache.

The scan is one Redis round trip in the common case: a Lua script counts it against the
scanner's limit, reads the entry (and, for a staff scan of a person code, the person's cached
desk view, services/deskview.py) and appends the scan log to a Redis list, flushed to the
database in batches. bench/scan_bench.py measures it against a bare one-GET handler.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import io
import itertools
import json
import logging
import math
import os
import re
import secrets
import struct
import time as _time
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from typing import Any

import qrcode
import qrcode.image.svg
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from redis.exceptions import LockError
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from models.catalogue import Hall
from models.codes import CodeKind, DoorPlate, ElectronicLicence, GridAssignment, IssuedCode, ScanLog
from models.enterprises import Enterprise, EnterpriseAgent
from models.users import Person, Role
from services import (
    cache,
    clock,
    db,
    deskview,
    jobs,
    people,
    pii,
    ratelimit,
    scanjournal,
    verification,
)
from services.auth import Principal
from services.doorplate_access import access_doorplate, access_doorplates
from services.errors import AppError, ErrorCode, forbidden, not_found
from services.identity import InvalidCreditCode, validate_uscc
from services.scope import scope_of
from services.settings import get_settings

log = logging.getLogger(__name__)

PERSON_PREFIX = "P"
LONG_PREFIX = "L"
_VERSION = 1
_PAYLOAD = struct.Struct(">B9sI")  # version, nonce, expiry (unix seconds)
_MAC_LEN = 16
_TOKEN_CHARS = re.compile(r"^[A-Za-z0-9_-]+$")
P_TOKEN = "code.token"  # noqa: S105 - a PII purpose label, not a secret

LOG_BUFFER = "scanlog:buffer"
_LOG_LOCK = "scanlog:flush:lock"
_FLUSH_BATCH = 500
LONG_VIEW_TTL = 300
NEGATIVE_TTL = 60
NEAREST_HALLS = 3

ROLE_LABELS = {
    Role.admin.value: "管理员",
    Role.staff.value: "窗口工作人员",
    Role.community_worker.value: "社区工作者",
    Role.helper.value: "帮办员",
    Role.enterprise_agent.value: "企业经办人",
    Role.resident.value: "居民",
}
_ROLE_RANK = [Role.admin, Role.staff, Role.community_worker, Role.helper,
              Role.enterprise_agent, Role.resident]


# --- tokens -------------------------------------------------------------------------------


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


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


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


# --- images -------------------------------------------------------------------------------


def _qr(content: str) -> qrcode.QRCode:
    qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, box_size=8, border=4)
    qr.add_data(content)
    qr.make(fit=True)
    return qr


def qr_png(content: str) -> bytes:
    buf = io.BytesIO()
    _qr(content).make_image().save(buf, format="PNG")
    return buf.getvalue()


def qr_svg(content: str) -> str:
    img = _qr(content).make_image(image_factory=qrcode.image.svg.SvgPathImage)
    return str(img.to_string(encoding="unicode"))


@dataclass(frozen=True)
class IssuedQr:
    token: str
    content: str
    expires_at: datetime | None

    def png(self) -> bytes:
        return qr_png(self.content)

    def svg(self) -> str:
        return qr_svg(self.content)


# --- person code --------------------------------------------------------------------------


def _licence_item(*, kind: str, title: str, number: str, issuer: str, issued_on: date | None,
                  valid_until: date | None) -> dict[str, Any]:
    return {"kind": kind, "title": title, "number": number, "issuer": issuer,
            "issued_on": issued_on.isoformat() if issued_on else None,
            "valid_until": valid_until.isoformat() if valid_until else None}


async def _person_static_view(person: Person) -> dict[str, Any]:
    """The masked identity and licences: fixed for the code's minute, so it rides in Redis
    with the token and the scan reads it without touching the database."""
    licences = [_licence_item(kind="identity_card", title="居民身份证",
                              number=person.id_number_masked, issuer="公安机关",
                              issued_on=None, valid_until=None)]
    # The physical card's issue date is not in our data; it stays empty rather than invented.
    for lic in await ElectronicLicence.filter(person_id=person.id).order_by("kind"):
        licences.append(_licence_item(kind=lic.kind, title=lic.title, number=lic.number_masked,
                                      issuer=lic.issuer, issued_on=lic.issued_on,
                                      valid_until=lic.valid_until))
    return {
        "identity": {"name": person.name_masked, "id_number": person.id_number_masked,
                     "sex": person.sex, "age": people.age_of(person)},
        "licences": licences,
    }


async def issue_person_code(*, user_id: int) -> IssuedQr:
    # The app refreshes about once a minute; a loop fetching codes only fills Redis.
    await ratelimit.hit(f"mecode:{user_id}", limit=30, window_seconds=60)
    # The 人码 shows the person's ID to window staff: only a proven identity gets one.
    person = await verification.require_verified(user_id)
    ttl = get_settings().person_code_ttl_seconds
    now = clock.now()
    expires = int(now.timestamp()) + ttl
    nonce = secrets.token_bytes(9)
    token = sign_person_token(nonce, expires)
    static = await _person_static_view(person)
    await cache.redis().set(f"code:p:{nonce.hex()}", _person_entry(person.id, static), ex=ttl)
    return IssuedQr(token=token, content=code_url(token),
                    expires_at=clock.local(datetime.fromtimestamp(expires, tz=clock.SHANGHAI)))


# --- long-lived codes ---------------------------------------------------------------------


def _active_key(kind: CodeKind, subject_id: int) -> str:
    return f"{kind.value}:{subject_id}"


def _long_cache_key(token: str) -> str:
    return f"code:l:{token_hash(token)}"


async def _issue_long(*, kind: CodeKind, subject_id: int, actor: Principal | None,
                      reissue: bool) -> tuple[IssuedCode, str, bool]:
    """Caller holds the subject row locked. Returns (code, token, newly issued)."""
    key = _active_key(kind, subject_id)
    current = await IssuedCode.get_or_none(active_key=key)
    if current is not None and not reissue:
        return current, pii.decrypt(current.token_enc, purpose=P_TOKEN), False
    revoked_token = None
    if current is not None:
        revoked_token = pii.decrypt(current.token_enc, purpose=P_TOKEN)
        current.active_key = None
        current.revoked_at = clock.now()
        current.revoked_by_id = actor.user_id if actor else None
        await current.save(update_fields=["active_key", "revoked_at", "revoked_by_id"])
    token = LONG_PREFIX + secrets.token_urlsafe(15)
    code = await IssuedCode.create(
        kind=kind, token_hash=token_hash(token), token_enc=pii.encrypt(token, purpose=P_TOKEN),
        active_key=key,
        enterprise_id=subject_id if kind is CodeKind.enterprise else None,
        doorplate_id=subject_id if kind is CodeKind.doorplate else None,
        issued_by_id=actor.user_id if actor else None,
    )
    if revoked_token is not None:
        await _mark_revoked(revoked_token)
    return code, token, True


async def _mark_revoked(token: str) -> None:
    # Overwrite rather than delete: a scan racing the revocation must not re-fill the cache
    # from a read that saw the code still active.
    await cache.redis().set(_long_cache_key(token), "revoked", ex=LONG_VIEW_TTL)


async def _revoke_long(*, kind: CodeKind, subject_id: int, actor: Principal) -> bool:
    code = await IssuedCode.get_or_none(active_key=_active_key(kind, subject_id))
    if code is None:
        return False
    token = pii.decrypt(code.token_enc, purpose=P_TOKEN)
    updated = await IssuedCode.filter(id=code.id, active_key__isnull=False).update(
        active_key=None, revoked_at=clock.now(), revoked_by_id=actor.user_id)
    await _mark_revoked(token)
    return bool(updated)


MAX_ID = 2**63 - 1


async def _can_manage_enterprise(actor: Principal, enterprise_id: int) -> Enterprise:
    # Ids beyond BIGINT can't exist, and SQLite would overflow binding them.
    ent = await Enterprise.get_or_none(id=enterprise_id) if 0 < enterprise_id <= MAX_ID else None
    if ent is None:
        raise not_found("企业")
    if actor.is_staff:
        return ent
    if not await EnterpriseAgent.exists(enterprise_id=enterprise_id, user_id=actor.user_id):
        # Same answer as a missing enterprise: ids of other firms are not confirmed.
        raise not_found("企业")
    return ent


def _checked_uscc(ent: Enterprise) -> str:
    try:
        return validate_uscc(ent.uscc)
    except InvalidCreditCode as exc:
        raise AppError(ErrorCode.conflict,
                       f"企业统一社会信用代码无效，无法生成企业码：{exc}") from exc


async def issue_enterprise_code(*, actor: Principal, enterprise_id: int,
                                reissue: bool = True) -> IssuedQr:
    await _can_manage_enterprise(actor, enterprise_id)
    async with in_transaction():
        ent = await Enterprise.select_for_update().get(id=enterprise_id)
        _checked_uscc(ent)
        try:
            _, token, _ = await _issue_long(kind=CodeKind.enterprise, subject_id=ent.id,
                                            actor=actor, reissue=reissue)
        except IntegrityError as exc:
            raise AppError(ErrorCode.conflict, "企业码正在生成，请稍后重试") from exc
    return IssuedQr(token=token, content=code_url(token), expires_at=None)


async def current_enterprise_code(*, actor: Principal, enterprise_id: int) -> IssuedQr:
    await _can_manage_enterprise(actor, enterprise_id)
    code = await IssuedCode.get_or_none(active_key=_active_key(CodeKind.enterprise,
                                                               enterprise_id))
    if code is None:
        raise not_found("企业码")
    token = pii.decrypt(code.token_enc, purpose=P_TOKEN)
    return IssuedQr(token=token, content=code_url(token), expires_at=None)


async def revoke_enterprise_code(*, actor: Principal, enterprise_id: int) -> None:
    await _can_manage_enterprise(actor, enterprise_id)
    if not await _revoke_long(kind=CodeKind.enterprise, subject_id=enterprise_id, actor=actor):
        raise not_found("企业码")


async def issue_doorplate_codes(*, actor: Principal, plate_codes: list[str],
                                reissue: bool = False) -> list[tuple[DoorPlate, IssuedQr, bool]]:
    """Codes for many plates at once; a plate that already has one keeps it unless
    ``reissue`` (which voids the printed plate)."""
    plates = {p.code: p for p in await access_doorplates(actor, plate_codes, for_change=True)}
    wanted = list(plates)
    out: list[tuple[DoorPlate, IssuedQr, bool]] = []
    async with in_transaction():
        # Lock in a fixed order so two batches over overlapping plates can't deadlock.
        locked = await DoorPlate.filter(id__in=[p.id for p in plates.values()]) \
            .select_for_update().order_by("id")
        by_code = {p.code: p for p in locked}
        for c in wanted:
            plate = by_code[c]
            try:
                _, token, new = await _issue_long(kind=CodeKind.doorplate, subject_id=plate.id,
                                                  actor=actor, reissue=reissue)
            except IntegrityError as exc:
                raise AppError(ErrorCode.conflict, "门牌码正在生成，请稍后重试") from exc
            out.append((plate, IssuedQr(token=token, content=code_url(token), expires_at=None),
                        new))
    return out


async def doorplate_codes(*, actor: Principal, plate_codes: list[str]) -> list[tuple[DoorPlate,
                                                                                   IssuedQr]]:
    """The active codes of these plates, for printing. Plates without one are a 409: printing
    must not silently mint codes."""
    plates = {p.code: p for p in await access_doorplates(actor, plate_codes)}
    wanted = list(plates)
    codes = {c.doorplate_id: c for c in await IssuedCode.filter(  # type: ignore[attr-defined]
        active_key__in=[_active_key(CodeKind.doorplate, p.id) for p in plates.values()])}
    lacking = [c for c in wanted if plates[c].id not in codes]
    if lacking:
        raise AppError(ErrorCode.conflict, "部分门牌尚未生成二维码，请先批量生成",
                       fields={"plate_codes": "、".join(lacking)})
    out = []
    for c in wanted:
        token = pii.decrypt(codes[plates[c].id].token_enc, purpose=P_TOKEN)
        out.append((plates[c], IssuedQr(token=token, content=code_url(token), expires_at=None)))
    return out


async def revoke_doorplate_code(*, actor: Principal, plate_code: str) -> None:
    plate = await access_doorplate(actor, plate_code, for_change=True)
    if not await _revoke_long(kind=CodeKind.doorplate, subject_id=plate.id, actor=actor):
        raise not_found("门牌码")


async def wxacode(*, actor: Principal, kind: CodeKind, subject: str) -> bytes:
    """The mini-program code (getwxacodeunlimit) for an active long-lived code. The scene is
    the token itself (21 characters, within the platform's 32); the image is cached in Redis
    because the platform limits calls and the picture never changes for a token."""
    if kind is CodeKind.enterprise:
        if not subject.isdigit():
            raise not_found("企业")
        await _can_manage_enterprise(actor, int(subject))
        code = await IssuedCode.get_or_none(active_key=_active_key(kind, int(subject)))
    else:
        plate = await access_doorplate(actor, subject)
        code = await IssuedCode.get_or_none(active_key=_active_key(kind, plate.id))
    if code is None:
        raise not_found("二维码")
    r = cache.redis()
    key = f"code:wxa:{code.id}"
    cached = await r.get(key)
    if cached:
        return base64.b64decode(cached)
    from services.wechat import wechat

    token = pii.decrypt(code.token_enc, purpose=P_TOKEN)
    image = await wechat().wxacode_unlimited(scene=token, page="pages/scan/index")
    # decode_responses=True on the shared client: bytes travel as base64 text.
    await r.set(key, base64.b64encode(image).decode(), ex=30 * 24 * 3600)
    return image


# --- views of long-lived codes (cached with the token) -----------------------------------


def distance_m(lat1: float, lng1: float, lat2: float, lng2: float) -> int:
    """Great-circle distance. GCJ-02 offsets are locally uniform, so distances between two
    GCJ-02 points are good to a few metres at city scale."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lng2 - lng1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return round(2 * 6_371_000 * math.asin(math.sqrt(a)))


async def _doorplate_view(plate: DoorPlate) -> dict[str, Any]:
    halls = await Hall.filter(is_active=True).values("code", "name", "address", "phone",
                                                      "lat", "lng")
    nearest = sorted(
        ({"code": h["code"], "name": h["name"], "address": h["address"], "phone": h["phone"],
          "distance_m": distance_m(plate.lat, plate.lng, h["lat"], h["lng"])} for h in halls),
        key=lambda h: h["distance_m"])[:NEAREST_HALLS]
    grid = await GridAssignment.filter(county=plate.county, community=plate.community,
                                       is_active=True).order_by("id")
    worker = ({"name": grid[0].contact_name, "phone": grid[0].contact_phone} if grid else None)
    return {
        "view": {"code": plate.code, "county": plate.county, "street": plate.street,
                 "community": plate.community, "address": plate.address, "lat": plate.lat,
                 "lng": plate.lng, "grid_worker": worker, "nearest_halls": nearest},
        "shown": ["address", "grid_worker", "nearest_halls"],
        # Not shown: who may also see the households.
        "workers": [g.user_id for g in grid],  # type: ignore[attr-defined]
        "id": plate.id,
    }


async def _enterprise_view(ent: Enterprise) -> dict[str, Any]:
    lics = await ElectronicLicence.filter(enterprise_id=ent.id, is_public=True).order_by("kind")
    return {
        "view": {"id": ent.id, "name": ent.name, "uscc": _checked_uscc(ent),
                 "industry": ent.industry, "county": ent.county,
                 "licences": [_licence_item(kind=lic.kind, title=lic.title,
                                            number=lic.number_masked, issuer=lic.issuer,
                                            issued_on=lic.issued_on,
                                            valid_until=lic.valid_until) for lic in lics]},
        "shown": ["profile", "public_licences"],
        "id": ent.id,
    }


async def _load_long(token: str) -> dict[str, Any]:
    """The cache entry for a long-lived token, rebuilt from the database (the truth)."""
    code = await IssuedCode.get_or_none(token_hash=token_hash(token))
    if code is None:
        return {"st": "unknown"}
    if code.active_key is None:
        return {"st": "revoked"}
    if code.kind is CodeKind.doorplate:
        plate = await DoorPlate.get(id=code.doorplate_id)  # type: ignore[attr-defined]
        body = await _doorplate_view(plate)
    else:
        ent = await Enterprise.get(id=code.enterprise_id)  # type: ignore[attr-defined]
        body = await _enterprise_view(ent)
    return {"st": "active", "k": code.kind.value, "c": code.id, **body}


async def invalidate_views(*, enterprise_id: int | None = None,
                           doorplate_id: int | None = None) -> None:
    """Drop the cached view after a change to what it shows (licences, grid worker)."""
    qs = IssuedCode.filter(active_key__isnull=False)
    if enterprise_id is not None:
        qs = qs.filter(enterprise_id=enterprise_id)
    if doorplate_id is not None:
        qs = qs.filter(doorplate_id=doorplate_id)
    keys = [_long_cache_key(pii.decrypt(c.token_enc, purpose=P_TOKEN)) for c in await qs]
    if keys:
        await cache.redis().delete(*keys)


# --- scanning -----------------------------------------------------------------------------
#
# Cache entries are flat strings of JSON fragments: the scan script takes them apart without a
# JSON parser, and the answer is spliced together from them rather than parsed and re-encoded
# (that round trip was most of a scan's time). The separators, U+001F and U+001E, never occur
# in JSON text (json.dumps escapes control characters):
#   person code   code:p:<nonce>  "<person id>␟<shown on a staff scan>␟<identity object>
#                                  ␟<licence object without its closing brace>␞<licence ...>"
#   long-lived    code:l:<hash>   "active␟<kind>␟<id>␟,<grid worker ids>,␟<shown>␟<public view>"
#                                 | "revoked" | "unknown"
# A desk view (services/deskview.py) is the members of a JSON object, without the braces.

_SEP = "\x1f"
_REC = "\x1e"

# One round trip for the common scan: count it against the scanner's limit, read what the
# token stands for, and, when that settles what is shown, append the scan log — so nothing is
# shown whose log entry is not already in Redis. What it can't settle (a person's desk view not
# cached, a long-lived code not cached, a scanner who may see more) it hands back unlogged and
# Python finishes, logging with the same fields.
#   KEYS  1 the scanner's rate counter, 2 the code's entry, 3 the scan-log buffer
#   ARGV  1 the log line's head (``_Scan.head``), 2 mode, 3 what the mode needs:
#     refused  the token failed its own checks; 3 = "<kind>:<outcome>" to log
#     staff    a person code, scanned by hall staff; 3 = today's desk-view key prefix
#     other    a person code, scanned by anyone else; 3 unused
#     long     an enterprise or door-plate code; 3 = "<c><a>,<scanner id>," where c / a is 1
#              if the scanner is a community worker / an enterprise agent (who may see more)
# The limit and its window are part of the script's text: every argument costs the client
# time to encode, and they change only with the settings. The desk-view keys are built here
# from the person id the entry holds — the caller can't know it. On a Redis Cluster they
# would need a hash tag shared with the code entry.
_SCAN_LUA = r"""
local logged = ''
local function main()
local n = redis.call('INCR', KEYS[1])
if redis.call('TTL', KEYS[1]) < 0 then redis.call('EXPIRE', KEYS[1], %(window)d) end
if n > %(limit)d then return {'limited', redis.call('TTL', KEYS[1])} end

local function log(kind, outcome, subject, shown)
  logged = ARGV[1] .. '\31' .. kind .. '\31' .. outcome .. '\31' .. subject .. '\31' .. shown
  redis.call('RPUSH', KEYS[3], logged)
end
local function split(s)
  local out, i = {}, 1
  while true do
    local j = string.find(s, '\31', i, true)
    if not j then out[#out + 1] = string.sub(s, i); return out end
    out[#out + 1] = string.sub(s, i, j - 1)
    i = j + 1
  end
end

local mode = ARGV[2]
if mode == 'refused' then
  local kind, outcome = string.match(ARGV[3], '^(%%a+):(%%a+)$')
  log(kind, outcome, '', '[]')
  return {'refused'}
end
local e = redis.call('GET', KEYS[2])
if mode == 'staff' or mode == 'other' then
  if not e then log('person', 'expired', '', '[]'); return {'expired'} end
  local f = split(e)
  local who = 'person:' .. f[1]
  if mode == 'other' then log('person', 'forbidden', who, '[]'); return {'forbidden'} end
  local gen = redis.call('GET', 'desk:gen:' .. f[1]) or '0'
  local desk = redis.call('GET', ARGV[3] .. f[1])
  if not desk or string.sub(desk, 1, #gen + 1) ~= gen .. '|' then return {'miss', e, gen} end
  log('person', 'ok', who, f[2])
  return {'ok', e, string.sub(desk, #gen + 2)}
end
if not e then return {'miss'} end
local f = split(e)
if f[1] == 'revoked' then log('unknown', 'revoked', '', '[]'); return {'revoked'} end
if f[1] ~= 'active' then log('unknown', 'invalid', '', '[]'); return {'invalid'} end
if (string.sub(ARGV[3], 2, 2) == '1' and f[2] == 'enterprise')
    or (string.sub(ARGV[3], 1, 1) == '1' and f[2] == 'doorplate'
        and string.find(f[4], string.sub(ARGV[3], 3), 1, true)) then
  return {'extra', e}
end
log(f[2], 'ok', f[2] .. ':' .. f[3], f[5])
return {'ok', e}
end
-- The line it logged (or '') rides last, for the caller's local journal (scanjournal.py).
local out = main()
out[#out + 1] = logged
return out
"""

_script: tuple[Any, int, int, Any] | None = None


def _scan_script() -> Any:
    """The script object bound to the current client and limits (tests and workers reopen
    Redis, tests change the limit)."""
    global _script
    r, s = cache.redis(), get_settings()
    limit, window = s.scan_rate_limit, s.scan_rate_window_seconds
    if _script is None or _script[:3] != (r, limit, window):
        _script = (r, limit, window,
                   r.register_script(_SCAN_LUA % {"limit": limit, "window": window}))
    return _script[3]


@dataclass(slots=True)
class Scanned:
    scan_id: str
    kind: str
    at: datetime
    # The whole answer as JSON text, ready to send; api/codes.py's ScanOut is its schema (and
    # the tests hold every kind of answer to it).
    document: str

    @property
    def body(self) -> dict[str, Any]:
        """The scanned code's section, parsed: {"person": {...}} or {"enterprise": ...} ..."""
        return {self.kind: json.loads(self.document)[self.kind]}


def _document(uid: str, kind: str, at: str, section: str) -> str:
    # uid is hex, kind one of three words, at an ISO timestamp: nothing here needs escaping.
    return f'{{"scan_id":"{uid}","kind":"{kind}","scanned_at":"{at}","{kind}":{section}}}'


_hall_names: dict[str, str] = {}
_hall_names_at = -1e9
_hall_names_tried = -1e9


async def hall_name(code: str) -> str | None:
    """Hall names by code, cached in-process for five minutes: the catalogue changes a few
    times a year and the scan should not pay a query for a label. An unknown code re-reads
    at most every ten seconds, so a bad client can't turn every scan into a query."""
    global _hall_names, _hall_names_at, _hall_names_tried
    now = _time.monotonic()
    if now - _hall_names_at > 300 or (code not in _hall_names and now - _hall_names_tried > 10):
        _hall_names_tried = now
        rows = await Hall.all().values_list("code", "name")
        _hall_names = {str(c): str(n) for c, n in rows}
        _hall_names_at = now
    return _hall_names.get(code)


@lru_cache(maxsize=1024)
def _roles_json(roles: frozenset[str]) -> str:
    return json.dumps(sorted(roles))


@lru_cache(maxsize=256)
def _json_str(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


_uid_prefix: tuple[int, str] = (0, "")
_uid_counter = itertools.count()


def _scan_uid() -> str:
    """A scan's id (32 hex characters): a random prefix per process and a counter. It names a
    log line and is printed in the watermark; it is not a secret, so it needn't cost a trip
    to the kernel's random source per scan."""
    global _uid_prefix
    pid = os.getpid()
    if _uid_prefix[0] != pid:  # a forked worker must not share its parent's prefix
        _uid_prefix = (pid, os.urandom(8).hex())
    return f"{_uid_prefix[1]}{next(_uid_counter) & 0xFFFFFFFFFFFFFFFF:016x}"


@dataclass(slots=True)  # not frozen: a frozen dataclass pays object.__setattr__ per field
class _Scan:
    """One scan's identity, for its log line and its watermark."""

    uid: str
    actor: Principal
    org: str
    ref: str
    at: str  # ISO 8601, +08:00

    def head(self, org: str | None = None) -> str:
        """The log line's fields common to every outcome (see the line's format above
        ``_log``)."""
        return _SEP.join([self.uid, str(self.actor.user_id), _roles_json(self.actor.roles),
                          _json_str(self.org if org is None else org), self.ref, self.at])


def role_label(roles: frozenset[str] | list[str]) -> str:
    for role in _ROLE_RANK:
        if role.value in roles:
            return ROLE_LABELS[role.value]
    return ROLE_LABELS[Role.resident.value]


def _person_entry(person_id: int, static: dict[str, Any]) -> str:
    # What a staff scan shows, for its log line, fixed now so the scan script can write it.
    shown = ["identity", "licences:" + ",".join(lic["kind"] for lic in static["licences"]),
             *deskview.sections()]
    licences = _REC.join(json.dumps(lic, ensure_ascii=False)[:-1] for lic in static["licences"])
    return _SEP.join([str(person_id), json.dumps(shown, ensure_ascii=False),
                      json.dumps(static["identity"], ensure_ascii=False), licences])


def _long_entry(data: dict[str, Any]) -> str:
    if data["st"] != "active":
        return str(data["st"])
    workers = ",".join(str(w) for w in data.get("workers", []))
    return _SEP.join(["active", data["k"], str(data["id"]), f",{workers},",
                      json.dumps(data["shown"]), json.dumps(data["view"], ensure_ascii=False)])


# A buffered scan log line is these fields joined by U+001F:
#   uid, scanner id, roles (JSON), org (JSON string), ref, at (ISO 8601), kind, outcome,
#   subject ("person:<id>" | "enterprise:<id>" | "doorplate:<id>" | ""), shown (JSON)
# The JSON values never hold a raw control character and the rest are ids, hex, words and a
# timestamp, so the flush splits lines instead of parsing them and writes the JSON columns as
# they come. ``_Scan.head`` makes the first six; the script's log() or ``_log`` the rest.


async def _log(head: str, *, kind: str, outcome: str, shown: list[str],
               subject: tuple[str, int] | None = None) -> None:
    """The Python-side twin of the script's log(): the same line, for the paths it hands
    back."""
    about = f"{subject[0]}:{subject[1]}" if subject is not None else ""
    line = _SEP.join([head, kind, outcome, about, json.dumps(shown, ensure_ascii=False)])
    scanjournal.append([line])  # durable before the answer promises it
    await cache.redis().rpush(LOG_BUFFER, line)


_LOG_COLUMNS = ("uid", "scanner_id", "scanner_roles", "scanner_org", "kind", "code_ref",
                "subject_person_id", "enterprise_id_ref", "doorplate_id_ref", "outcome", "shown",
                "at")
_INSERT_IGNORE = {"sqlite": "INSERT OR IGNORE", "mysql": "INSERT IGNORE"}
_SUBJECT_COLUMN = {"person": 0, "enterprise": 1, "doorplate": 2}


def _log_row(line: str, at: Any, orgs: dict[str, str]) -> list[Any]:
    if line.startswith("{"):
        # Written as JSON by the release before this one: still in the buffer after a deploy.
        e = json.loads(line)
        subject = next((f"{k}:{e[k]}" for k in _SUBJECT_COLUMN if e.get(k) is not None), "")
        line = _SEP.join([e["uid"], str(e["scanner"]), json.dumps(e["roles"]),
                          json.dumps(e["org"], ensure_ascii=False), e["ref"], e["at"],
                          e["kind"], e["outcome"], subject,
                          json.dumps(e["shown"], ensure_ascii=False)])
    uid, scanner, roles, org, ref, when, kind, outcome, subject, shown = line.split(_SEP)
    ids: list[int | None] = [None, None, None]
    if subject:
        name, _, subject_id = subject.partition(":")
        ids[_SUBJECT_COLUMN[name]] = int(subject_id)
    if org not in orgs:  # a few halls and communities, over and over
        orgs[org] = json.loads(org)
    return [uid, int(scanner), roles, orgs[org], kind, ref, *ids, outcome, shown,
            at.to_db_value(datetime.fromisoformat(when), ScanLog)]


# Rows per INSERT statement: 12 columns x 80 rows stays under SQLite's oldest limit on bound
# variables (999).
_ROWS_PER_INSERT = 80


async def _insert_logs(lines: list[Any]) -> None:
    """Multi-row INSERTs that skip uids already there. Plain SQL rather than ``bulk_create``
    (a model per row cost the serving process more than the scans it logged), and whole
    statements rather than ``executemany``: SQLite's driver hands the GIL back and forth with
    the serving thread once per row, and each handoff costs both threads a context switch."""
    meta = ScanLog._meta
    at = meta.fields_map["at"]
    orgs: dict[str, str] = {}
    rows = [_log_row(line, at, orgs) for line in lines]
    group = f"({', '.join([db.placeholder(meta.db)] * len(_LOG_COLUMNS))})"
    head = (f"{_INSERT_IGNORE[meta.db.capabilities.dialect]} INTO {meta.db_table} "
            f"({', '.join(_LOG_COLUMNS)}) VALUES ")
    async with in_transaction() as conn:  # one commit for the batch
        for i in range(0, len(rows), _ROWS_PER_INSERT):
            chunk = rows[i:i + _ROWS_PER_INSERT]
            await conn.execute_query(head + ", ".join([group] * len(chunk)),
                                     [value for row in chunk for value in row])


@jobs.periodic("codes.flush_scan_logs", every_seconds=2)
async def flush_scan_logs_job() -> None:
    await flush_scan_logs()


@jobs.local("codes.replay_scan_journal", every_seconds=10)
async def replay_scan_journal() -> int:
    """The durable path (services/scanjournal.py): needs only the database, so it runs in every
    worker, Redis or not. Lines the Redis flush already wrote are ignored by uid."""
    return await scanjournal.replay(_insert_logs)


async def flush_scan_logs() -> int:
    """Move buffered scan logs into the database. Read, insert, then trim: a crash between
    insert and trim re-inserts the batch next time, which ``uid``'s unique key ignores."""
    r = cache.redis()
    moved = 0
    lock = r.lock(_LOG_LOCK, timeout=30, blocking_timeout=10)
    if not await lock.acquire():
        return 0
    try:
        while True:
            raw = await r.lrange(LOG_BUFFER, 0, _FLUSH_BATCH - 1)
            if not raw:
                break
            await _insert_logs(raw)
            await r.ltrim(LOG_BUFFER, len(raw), -1)
            moved += len(raw)
    finally:
        # Lost the lock (expired, Redis restarted): harmless, a replayed batch inserts nothing.
        with contextlib.suppress(LockError):
            await lock.release()
    return moved


async def scan(*, actor: Principal, content: str) -> Scanned:
    now = clock.now()  # Asia/Shanghai already: the timestamps in the answer say +08:00
    # Where staff scan is their own hall (their membership), never what the client says: the
    # watermark and the resident's access log name it.
    hall = (await scope_of(actor)).scanning_hall if actor.is_staff else None
    org = (await hall_name(hall) or "") if hall else ""
    ref, token, key, mode, refused = "", "", LOG_BUFFER, "refused", None
    try:
        token = extract_token(content)
        if token[0] == PERSON_PREFIX:
            nonce, _ = verify_person_token(token, now=now.timestamp())
            ref, key = nonce[:16], f"code:p:{nonce}"
            mode = "staff" if actor.is_staff else "other"
        else:
            ref, key, mode = token_hash(token)[:16], _long_cache_key(token), "long"
    except AppError as exc:
        refused = exc
    sc = _Scan(uid=_scan_uid(), actor=actor, org=org, ref=ref, at=now.isoformat())
    # Failed scans count against the limit too, or guessing tokens would be free.
    expired = refused is not None and refused.code is ErrorCode.code_expired
    if mode == "refused":
        detail = "person:expired" if expired else "unknown:invalid"
    elif mode == "long":
        detail = (f"{int(actor.has(Role.community_worker))}"
                  f"{int(actor.has(Role.enterprise_agent))},{actor.user_id},")
    else:
        detail = deskview.day_prefix(now.date())
    reply = await _scan_script()(keys=[f"rl:scan:{actor.user_id}", key, LOG_BUFFER],
                                 args=[sc.head(), mode, detail])
    logged = reply.pop()
    if logged:
        scanjournal.append([logged])  # durable before the answer promises it
    verdict = reply[0]
    if verdict == "limited":
        retry = max(1, int(reply[1]))
        raise AppError(ErrorCode.rate_limited, "扫码过于频繁，请稍后再试",
                       headers={"Retry-After": str(retry)}, extra={"retry_after": retry})
    if refused is not None:
        raise refused
    if mode != "long":
        section = await _person_reply(verdict, reply, sc, now)
        return Scanned(scan_id=sc.uid, kind=CodeKind.person.value, at=now,
                       document=_document(sc.uid, CodeKind.person.value, sc.at, section))
    if verdict == "revoked":
        raise AppError(ErrorCode.code_revoked)
    if verdict == "invalid":
        raise AppError(ErrorCode.code_unrecognised)
    if verdict == "ok":  # the public share, already logged: the cached view is the answer
        _, kind, _, _, _, view = reply[1].split(_SEP)
    else:
        entry = await _fill_long(token) if verdict == "miss" else reply[1]
        kind, view = await _finish_long(actor, entry, sc)
    return Scanned(scan_id=sc.uid, kind=kind, at=now,
                   document=_document(sc.uid, kind, sc.at, view))


async def person_of_code(*, actor: Principal, content: str) -> int:
    """The person a 人码 stands for, for a desk check such as handing over a result (issue 12):
    the same signed token and the same ``code:p:`` Redis entry a scan reads, not a second
    resolution. Logged like a scan, so the resident sees who checked their code."""
    now = clock.now()
    token = extract_token(content)
    if token[0] != PERSON_PREFIX:
        raise AppError(ErrorCode.code_unrecognised, "请出示本人的个人码")
    nonce, _ = verify_person_token(token, now=now.timestamp())
    entry = await cache.redis().get(f"code:p:{nonce}")
    if entry is None:  # signature fine but Redis lost it (restart, flush): ask for a new one
        raise AppError(ErrorCode.code_expired)
    person_id = int(str(entry).split(_SEP, 1)[0])
    hall = (await scope_of(actor)).scanning_hall
    sc = _Scan(uid=_scan_uid(), actor=actor, org=(await hall_name(hall) or "") if hall else "",
               ref=nonce[:16], at=now.isoformat())
    await _log(sc.head(), kind=CodeKind.person.value, outcome="ok", shown=["identity"],
               subject=("person", person_id))
    return person_id


async def _person_reply(verdict: str, reply: list[Any], sc: _Scan, now: datetime) -> str:
    """The person section of a staff scan, as JSON text."""
    if verdict == "expired":
        # Signature and expiry were fine, so Redis lost it (restart, flush): ask for a new one.
        raise AppError(ErrorCode.code_expired)
    if verdict == "forbidden":
        raise forbidden("个人码仅限政务服务窗口工作人员扫描")
    pid_text, shown, identity, licences = reply[1].split(_SEP)
    if verdict == "miss":
        pid = int(pid_text)
        desk = deskview.members(await deskview.load(person_id=pid, now=now))
        await deskview.store(person_id=pid, day=now.date(), generation=reply[2], members=desk)
        await _log(sc.head(), kind=CodeKind.person.value, outcome="ok", shown=json.loads(shown),
                   subject=("person", pid))
    else:
        desk = reply[2]
    stamp = f"{sc.at[:10]} {sc.at[11:19]}"
    watermark = json.dumps(f"仅供{sc.org or '政务服务窗口'}核验使用 {stamp} #{sc.uid[:8]}",
                           ensure_ascii=False)
    tail = f',"shown_at":"{sc.at}","watermark":{watermark}}}'
    lics = ",".join(lic + tail for lic in licences.split(_REC))
    return f'{{"identity":{identity},"licences":[{lics}]{"," if desk else ""}{desk}}}'


async def _fill_long(token: str) -> str:
    """The entry for a long-lived code Redis doesn't hold, from the database (the truth). Set
    only if still absent: a revocation's marker written meanwhile must win over this read."""
    data = await _load_long(token)
    entry = _long_entry(data)
    r = cache.redis()
    ttl = LONG_VIEW_TTL if data["st"] == "active" else NEGATIVE_TTL
    if not await r.set(_long_cache_key(token), entry, ex=ttl, nx=True):
        entry = str(await r.get(_long_cache_key(token)) or entry)
    return entry


async def _finish_long(actor: Principal, entry: str, sc: _Scan) -> tuple[str, str]:
    """What the script hands back for a long-lived code, decided and logged as it would, plus
    what only Python can add: the households a grid's own worker sees, an enterprise's
    policies and cases for its agents. Returns (kind, section as JSON text)."""
    if not entry.startswith("active" + _SEP):
        outcome = "revoked" if entry == "revoked" else "invalid"
        await _log(sc.head(), kind="unknown", outcome=outcome, shown=[])
        raise AppError(ErrorCode.code_revoked if outcome == "revoked"
                       else ErrorCode.code_unrecognised)
    _, kind, subject_text, workers, shown_text, view_text = entry.split(_SEP)
    subject_id, shown, view = int(subject_text), json.loads(shown_text), json.loads(view_text)
    head = sc.head()
    if kind == CodeKind.doorplate.value:
        if actor.has(Role.community_worker) and f",{actor.user_id}," in workers:
            view["households"] = await _households(subject_id)
            shown.append("households")
            head = sc.head(org=view["community"])
    elif actor.has(Role.enterprise_agent) and await EnterpriseAgent.exists(
            enterprise_id=subject_id, user_id=actor.user_id):
        if db.has_model("Policy"):
            view["policies"] = await _matching_policies(subject_id)
            shown.append("policies")
        if db.has_model("Case"):
            view["cases"] = await _enterprise_cases(subject_id)
            shown.append("cases")
    await _log(head, kind=kind, outcome="ok", shown=shown, subject=(kind, subject_id))
    return kind, json.dumps(view, ensure_ascii=False)
async def _households(doorplate_id: int) -> list[dict[str, Any]]:
    from models.codes import Household

    rows = await Household.filter(doorplate_id=doorplate_id).select_related("person") \
        .order_by("id")
    return [{"name": h.person.name_masked, "id_number": h.person.id_number_masked,
             "sex": h.person.sex, "age": people.age_of(h.person), "relation": h.relation}
            for h in rows]


def _policy_matches(criteria: dict[str, Any], ent: Enterprise) -> bool:
    """Enterprise criteria: every key present must match. An unknown key means a rule we
    can't evaluate, so the policy is not claimed to match."""
    facts: dict[str, Any] = {"industry": ent.industry, "size": ent.size, "county": ent.county}
    for key, wanted in criteria.items():
        if key == "tags":
            if not set(wanted) <= set(ent.tags or []):
                return False
        elif key in facts:
            allowed = wanted if isinstance(wanted, list) else [wanted]
            if facts[key] not in allowed:
                return False
        elif key == "max_layoff_rate":
            if ent.layoff_rate is None or ent.layoff_rate > float(wanted):
                return False
        else:
            return False
    return True


async def _matching_policies(enterprise_id: int) -> list[dict[str, Any]]:
    from models.policies import Audience, Policy, PolicyStatus

    ent = await Enterprise.get(id=enterprise_id)
    rows = await Policy.filter(audience=Audience.enterprise, status=PolicyStatus.published) \
        .order_by("-published_at")
    return [{"code": p.code, "title": p.title, "department": p.department, "url": p.url}
            for p in rows if _policy_matches(dict(p.criteria or {}), ent)][:20]


async def _enterprise_cases(enterprise_id: int) -> list[dict[str, Any]]:
    from models.cases import Case

    rows = await Case.filter(enterprise_id=enterprise_id).order_by("-id").limit(20) \
        .values("id", "title", "item_code", "bundle_code", "status", "due_at")
    return [{"id": c["id"], "title": c["title"], "item_code": c["item_code"],
             "bundle_code": c["bundle_code"], "status": str(c["status"]),
             "due_at": clock.local(c["due_at"]).isoformat() if c["due_at"] else None}
            for c in rows]


# --- who scanned my code --------------------------------------------------------------------


@dataclass(frozen=True)
class ScanSeen:
    id: int
    at: datetime
    scanner_role: str
    scanner_org: str
    outcome: str
    shown: list[str]


async def scans_of_my_code(*, user_id: int, cursor: int | None,
                           limit: int) -> tuple[list[ScanSeen], int | None]:
    person = await verification.verified_person_of(user_id)
    if person is None:
        return [], None
    try:
        await flush_scan_logs()  # the resident should see a scan made a second ago
    except Exception:
        # The list still answers from the database; the periodic flush catches up.
        log.exception("scan log flush failed")
    qs = ScanLog.filter(subject_person_id=person.id).order_by("-id")
    if cursor:
        qs = qs.filter(id__lt=cursor)
    rows = await qs.limit(limit + 1)
    page = rows[:limit]
    out = [ScanSeen(id=r.id, at=clock.local(r.at), scanner_role=role_label(list(r.scanner_roles)),
                    scanner_org=r.scanner_org, outcome=r.outcome,
                    shown=[s.split(":", 1)[0] for s in r.shown]) for r in page]
    return out, (page[-1].id if len(rows) > limit else None)


# --- licences and grids (used by seeding and by the other domains) -------------------------


async def grant_licence(*, kind: str, title: str, number_masked: str, issuer: str,
                        issued_on: date, valid_until: date | None = None,
                        person_id: int | None = None, enterprise_id: int | None = None,
                        is_public: bool = False) -> ElectronicLicence:
    if (person_id is None) == (enterprise_id is None):
        raise ValueError("a licence belongs to exactly one person or enterprise")
    lic, _ = await ElectronicLicence.update_or_create(
        person_id=person_id, enterprise_id=enterprise_id, kind=kind,
        defaults={"title": title, "number_masked": number_masked, "issuer": issuer,
                  "issued_on": issued_on, "valid_until": valid_until, "is_public": is_public})
    if enterprise_id is not None:
        await invalidate_views(enterprise_id=enterprise_id)
    return lic


async def assign_grid_worker(*, user_id: int, county: str, community: str,
                             contact_name: str, contact_phone: str) -> GridAssignment:
    grid, _ = await GridAssignment.update_or_create(
        user_id=user_id, county=county, community=community,
        defaults={"contact_name": contact_name, "contact_phone": contact_phone,
                  "is_active": True})
    for plate in await DoorPlate.filter(county=county, community=community):
        await invalidate_views(doorplate_id=plate.id)
    return grid
